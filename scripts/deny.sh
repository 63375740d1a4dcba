#!/usr/bin/env bash
# Supply chain: `cargo deny check` (advisories, licences, bans, sources; see
# deny.toml). Our machines cannot reach GitHub, so advisories come from the
# RustSec snapshot in tests/data/ (its date is in the file name); with
# network, `scripts/deny.sh --fetch` checks against today's database.
set -euo pipefail
cd "$(dirname "$0")/.."

SNAPSHOT=tests/data/rustsec-advisory-db-2026-08-21.tar.gz
# cargo-deny's directory name for db-urls' https://github.com/rustsec/advisory-db.
DB=target/advisory-dbs/advisory-db-3157b0e258782691

command -v cargo-deny >/dev/null || { echo "deny.sh: cargo-deny missing (scripts/install-deps.sh installs it)" >&2; exit 1; }

if [ "${1:-}" = --fetch ]; then
    rm -rf "$DB"
    exec cargo deny check
fi

stamp=$(sha256sum "$SNAPSHOT" | cut -d' ' -f1)
if [ "$(cat "$DB/.snapshot" 2>/dev/null)" != "$stamp" ]; then
    rm -rf "$DB"
    mkdir -p "$DB"
    tar -xzf "$SNAPSHOT" -C "$DB" --strip-components=1
    # cargo-deny reads the database's date from git: one commit, dated as the snapshot.
    date=$(basename "$SNAPSHOT" .tar.gz | grep -o '[0-9]\{4\}-[0-9]\{2\}-[0-9]\{2\}')
    git -C "$DB" init -q
    git -C "$DB" add -A
    GIT_AUTHOR_DATE="${date}T00:00:00Z" GIT_COMMITTER_DATE="${date}T00:00:00Z" \
        git -C "$DB" -c user.name=snapshot -c user.email=snapshot@localhost commit -qm "RustSec advisory-db of $date"
    echo "$stamp" >"$DB/.snapshot"
fi
# cargo metadata wants every package of the lock file, other platforms' too.
cargo fetch --locked --quiet
cargo deny --offline check
