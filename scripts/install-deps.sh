#!/usr/bin/env bash
# Installs what the lab and the test suite need on a fresh Debian 12 machine.
# Idempotent: a second run only checks. bookworm-backports is added pinned low so
# nothing but what we ask for by name comes from it.
set -euo pipefail

log() { printf '[install-deps] %s\n' "$*" >&2; }

if [ "$(id -u)" -ne 0 ]; then
    echo "install-deps.sh: run as root (it calls apt-get)" >&2
    exit 1
fi

export DEBIAN_FRONTEND=noninteractive

. "$(dirname "$0")/backports.sh"
if add_backports; then
    log "added bookworm-backports (pinned low)"
    rm -f /var/lib/apt/periodic/homewarden-updated
fi

need=()
for pkg in nftables iproute2 iptables ethtool curl python3 python3-venv python3-aiosmtpd \
    iperf3 procps psmisc jq ca-certificates openssl time dnsmasq-base hostapd udhcpc conntrack valgrind prometheus mosquitto mosquitto-clients ieee-data; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'ok installed' || need+=("$pkg")
done
have_suricata=0
if command -v suricata >/dev/null 2>&1 && suricata -V 2>/dev/null | grep -q 'version 7'; then
    have_suricata=1
fi

if [ ${#need[@]} -gt 0 ] || [ $have_suricata -eq 0 ]; then
    log "apt-get update"
    apt-get update -qq
fi
if [ ${#need[@]} -gt 0 ]; then
    log "installing: ${need[*]}"
    apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
# Prometheus (its promtool lints /metrics in the tests) and mosquitto (the
# Home Assistant tests' broker) start servers on install; the tests run their own.
for svc in prometheus mosquitto; do
    if [[ " ${need[*]} " == *" $svc "* ]]; then
        systemctl disable --now "$svc" >/dev/null 2>&1 || true
    fi
done
if [ $have_suricata -eq 0 ]; then
    log "installing suricata 7 from bookworm-backports"
    apt-get install -y -qq --no-install-recommends -t bookworm-backports suricata >/dev/null
    # The package starts an af-packet Suricata on install; the lab runs its own.
    systemctl disable --now suricata >/dev/null 2>&1 || true
fi
suricata -V >&2
# suricata-update fetches and merges signature rulesets (the signatures
# tests run it on a generated ruleset in ET Open's layout, from a local file).
if ! command -v suricata-update >/dev/null 2>&1; then
    log "installing suricata-update from bookworm-backports"
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends -t bookworm-backports suricata-update >/dev/null
fi

# cargo-deny (scripts/deny.sh): built from crates.io, pinned, once per machine.
DENY_VERSION=0.20.2
if ! cargo deny --version 2>/dev/null | grep -qx "cargo-deny $DENY_VERSION"; then
    log "installing cargo-deny $DENY_VERSION (cargo install, a few minutes)"
    cargo install --quiet --locked cargo-deny --version "$DENY_VERSION"
fi
