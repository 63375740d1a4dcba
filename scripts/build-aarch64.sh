#!/usr/bin/env bash
# Cross-builds the agent for aarch64 (Raspberry Pi 3/4/400/CM4 with a 64-bit OS)
# on a Debian 12 x86_64 machine, with no Docker: Debian's multiarch Rust
# toolchain (rustc-web with an arm64 std) and aarch64-linux-gnu-gcc as linker.
#
#   scripts/build-aarch64.sh           -> target/aarch64/aarch64-unknown-linux-gnu/release/homewarden
#   scripts/build-aarch64.sh --check   also runs `--version` and `check-config` under qemu-user
#
# --locked, stripped, paths remapped and SOURCE_DATE_EPOCH set: two builds of
# the same commit give the same bytes. With Docker, `cross build --release
# --target aarch64-unknown-linux-gnu` (Cross.toml) does the same job.
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO"
TARGET=aarch64-unknown-linux-gnu
OUT=$REPO/target/aarch64

log() { printf '[build-aarch64] %s\n' "$*" >&2; }

need=()
dpkg --print-foreign-architectures | grep -qx arm64 || need+=(arch)
for pkg in gcc-aarch64-linux-gnu libc6-dev-arm64-cross rustc-web cargo-web libstd-rust-web-dev \
    libstd-rust-web-dev:arm64 qemu-user-static libc6:arm64; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'ok installed' || need+=("$pkg")
done
if [ ${#need[@]} -gt 0 ]; then
    [ "$(id -u)" -eq 0 ] || { echo "build-aarch64: missing packages (${need[*]}); run as root once" >&2; exit 1; }
    log "installing the cross toolchain"
    dpkg --add-architecture arm64
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends gcc-aarch64-linux-gnu \
        libc6-dev-arm64-cross rustc-web cargo-web libstd-rust-web-dev libstd-rust-web-dev:arm64 \
        qemu-user-static libc6:arm64 >/dev/null
fi

# Debian's cargo and rustc, not a rustup toolchain that may sit earlier on PATH.
export PATH=/usr/bin:/bin
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git -C "$REPO" log -1 --format=%ct 2>/dev/null || echo 0)}
export CARGO_TARGET_DIR=$OUT
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc
export CC_aarch64_unknown_linux_gnu=aarch64-linux-gnu-gcc
# Paths in panic messages and debug info must not depend on where the build ran.
export RUSTFLAGS="--remap-path-prefix=$REPO=/build/homewarden --remap-path-prefix=${CARGO_HOME:-$HOME/.cargo}=/cargo"

log "$(rustc --version), SOURCE_DATE_EPOCH=$SOURCE_DATE_EPOCH"
start=$(date +%s)
cargo build --locked --release --target "$TARGET"
BIN=$OUT/$TARGET/release/homewarden
log "built $BIN ($(stat -c %s "$BIN") bytes, $(( $(date +%s) - start )) s): $(sha256sum "$BIN" | cut -d' ' -f1)"

if [ "${1:-}" = "--check" ]; then
    # binfmt may be off on a build machine: call the emulator directly.
    qemu-aarch64-static "$BIN" --version
    tmp=$(mktemp -d)
    trap 'rm -rf "$tmp"' EXIT
    cp overlays/etc/homewarden/homewarden.yaml "$tmp/homewarden.yaml"
    qemu-aarch64-static "$BIN" --config "$tmp/homewarden.yaml" check-config
    printf 'enforcement: { mode: ipz }\n' >"$tmp/bad.yaml"
    if qemu-aarch64-static "$BIN" --config "$tmp/bad.yaml" check-config 2>"$tmp/err"; then
        echo "build-aarch64: the aarch64 binary accepted a bad config" >&2
        exit 1
    fi
    grep -q "enforcement.mode" "$tmp/err" || { cat "$tmp/err" >&2; exit 1; }
    # The GPIO panel on a machine without the Pi's GPIO: a clear message, no panic.
    cat >"$tmp/gpio.yaml" <<YAML
state_dir: $tmp/state
control_socket: $tmp/control.sock
suricata: { rules_dir: $tmp/rules, command_socket: $tmp/none.sock }
alerts: { eve_socket: $tmp/eve.sock }
panel: { backends: [gpio] }
YAML
    timeout 5 qemu-aarch64-static "$BIN" --config "$tmp/gpio.yaml" run 2>"$tmp/run.log" || true
    if grep -q panicked "$tmp/run.log" || ! grep -q "panel gpio: " "$tmp/run.log"; then
        cat "$tmp/run.log" >&2
        echo "build-aarch64: the gpio backend did not fail cleanly without GPIO" >&2
        exit 1
    fi
    log "gpio backend without GPIO: $(grep -o 'panel gpio: .*' "$tmp/run.log" | head -1)"
    log "aarch64 binary runs under qemu-user: --version, check-config and run ok"
fi
