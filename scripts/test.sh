#!/usr/bin/env bash
# The whole test suite, as CI runs it: `sudo scripts/test.sh` on a fresh Debian 12.
# Installs what it needs (apt packages, a Python venv for the MISP double's tests),
# then runs lint, unit and integration tests, the MISP contract tests and the
# end-to-end lab tests on real Suricata, then the Ansible role, then the SD-card
# image: built, and booted under qemu to "protected"; then its flavours.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)

step() { printf '\n==> %s\n' "$*"; }

step "dependencies"
scripts/install-deps.sh
scripts/pyenv.sh

step "cargo fmt / clippy"
cargo fmt --check
cargo clippy --locked --all-targets -- -D warnings

step "supply chain: cargo deny (advisories from the RustSec snapshot in tests/data/, licences, bans, sources)"
scripts/deny.sh

step "cargo test (unit + integration, suricata -T on every rendering)"
HOMEWARDEN_REQUIRE_SURICATA=1 HOMEWARDEN_REQUIRE_PEERS=1 cargo test --locked

step "unsafe code under valgrind: the packed names' tests and the sets built on them"
unit=$(cargo test --locked --lib --no-run --message-format=json 2>/dev/null \
    | jq -r 'select(.profile.test == true and .target.kind == ["lib"]) | .executable')
valgrind -q --error-exitcode=9 --leak-check=full --show-possibly-lost=no --errors-for-leak-kinds=definite \
    "$unit" -q intel::ioc intel::set intel::store render::b64

step "aarch64 cross build (Debian multiarch toolchain), run under qemu-user"
scripts/build-aarch64.sh --check

step "pytest: MISP double vs PyMISP and the OpenAPI spec, LLM double vs the cohere and openai SDKs, SMTP server, push double vs a real Synapse, end-to-end lab on real Suricata, network placement on real dnsmasq/hostapd/nftables/bridge, responders under faults"
cargo build --locked
# One pytest per directory: each has a conftest of its own that its tests import.
for suite in tests/misp tests/llm tests/smtp tests/push tests/e2e tests/placement \
    tests/respond; do  # responders under faults: outages, SIGKILL, torn outbox, LLM faults, hostile eve, 60 s storm
    echo "--- $suite"
    HOMEWARDEN_BIN="$repo/target/debug/homewarden" target/pyenv/bin/python -m pytest -q -p no:cacheprovider "$suite"
done

step "Ansible role: provisioned into an mmdebstrap root twice (idempotent), lint, checks inside, the lab on what it laid down"
scripts/ansible-test.sh

step "SD-card image: build (mmdebstrap trixie arm64 + the Ansible role, no loop devices), boot under qemu to protected, and with a bad config"
scripts/build-image.sh
scripts/boot-test.sh
scripts/boot-test.sh --bad-config

step "image flavours: package sets, boot files, the raspios flavour's pinned key and sources (real gpg, mmdebstrap and apt against a stand-in archive on 127.0.0.1)"
target/pyenv/bin/python -m pytest -q -p no:cacheprovider tests/image
