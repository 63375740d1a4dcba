#!/usr/bin/env bash
# Tests the Ansible role without SSH or Docker: provisions a fresh Debian root
# (mmdebstrap) through the community.general.chroot connection, as a user's
# playbook would a Pi, then checks what it left there and that it blocks.
#
#   sudo scripts/ansible-test.sh            amd64 bookworm root, the host's agent build (fast suite)
#   sudo scripts/ansible-test.sh --arm64    arm64 trixie root under qemu-user, the aarch64 cross build
#
# Steps: ansible-lint + yamllint; the playbook twice (the second run must
# change nothing) and once more with --check --diff (nothing either); a value
# the agent rejects fails the run and leaves the config (amd64); the
# files, modes, secrets and enabled units in the root; the agent's
# check-config and `suricata -T` inside the root; then the lab (scripts/lab.sh
# with HW_LAB_ROOT) runs its `pi` namespace on the firewall settings, Suricata
# config and fail mode the role laid into the root, and iot -> C2 must be
# dropped while the benign server answers; then (amd64) a changed setting
# restarts only the units it concerns, and forwarding switched off by a
# hardening baseline's sysctl file is set back.
#
# Environment: HOMEWARDEN_BIN (amd64: default target/debug/homewarden, built if
# missing), HW_ANSIBLE_KEEP=1 keeps the provisioned root in target/ansible-test/.
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO"

ARCH=amd64 SUITE=bookworm
case ${1:-} in
    '') ;;
    --arm64) ARCH=arm64 SUITE=trixie ;;
    *) echo "usage: scripts/ansible-test.sh [--arm64]" >&2; exit 2 ;;
esac
MIRROR=http://deb.debian.org/debian
WORK=$REPO/target/ansible-test
ROOT=$WORK/root-$ARCH
VENV=$REPO/target/ansible-venv
# What Ansible needs inside a target (python3; python3-apt for the apt module)
# and what any Pi has (systemd). Everything else is the role's to install.
ROOT_PACKAGES=python3,python3-apt,systemd
T0=$SECONDS

step() { printf '\n==> [%3ds] %s\n' $((SECONDS - T0)) "$*"; }
die() { echo "ansible-test: $*" >&2; exit 1; }

[ "$(id -u)" -eq 0 ] || die "run as root (mmdebstrap, chroot, network namespaces)"

step "dependencies"
scripts/install-deps.sh
scripts/pyenv.sh
need=()
for pkg in mmdebstrap python3-venv; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'ok installed' || need+=("$pkg")
done
if [ "$ARCH" = arm64 ]; then
    for pkg in qemu-user-static binfmt-support arch-test; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'ok installed' || need+=("$pkg")
    done
fi
if [ ${#need[@]} -gt 0 ]; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
stamp=$VENV/.requirements.sha256
want=$(sha256sum ansible/requirements.txt | cut -d' ' -f1)
if ! [ -x "$VENV/bin/ansible-playbook" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    echo "[ansible-test] creating $VENV" >&2
    rm -rf "$VENV"
    /usr/bin/python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q --disable-pip-version-check -r ansible/requirements.txt
    echo "$want" >"$stamp"
fi
export PATH=$VENV/bin:$PATH

if [ "$ARCH" = arm64 ]; then
    # qemu-user through binfmt_misc runs the arm64 root's programs.
    [ -e /proc/sys/fs/binfmt_misc/status ] || mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
    [ -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ] || update-binfmts --enable qemu-aarch64
    AGENT=$REPO/target/aarch64/aarch64-unknown-linux-gnu/release/homewarden
    if [ ! -x "$AGENT" ]; then
        step "aarch64 agent (scripts/build-aarch64.sh)"
        scripts/build-aarch64.sh
    fi
    # The lab runs on this machine's kernel and CPU: the host's agent.
    LAB_BIN=${HOMEWARDEN_BIN:-$REPO/target/debug/homewarden}
else
    AGENT=${HOMEWARDEN_BIN:-$REPO/target/debug/homewarden}
    LAB_BIN=$AGENT
fi
if [ ! -x "$LAB_BIN" ]; then
    step "agent (cargo build --locked)"
    cargo build --locked --quiet
fi
[ -x "$AGENT" ] || die "no agent binary at $AGENT"

step "ansible-lint, yamllint"
(cd ansible && yamllint -s . && ansible-lint -q)

step "a fresh Debian $SUITE $ARCH root (mmdebstrap, cached by its inputs)"
mkdir -p "$WORK"
key=$(printf '%s\n' "$ARCH" "$SUITE" "$MIRROR" "$ROOT_PACKAGES" | sha256sum | cut -c1-16)
tarball=$WORK/root-$ARCH-$SUITE-$key.tar
if [ ! -f "$tarball" ]; then
    rm -rf "$WORK"/root-"$ARCH"-*.tar "$WORK/partial-$ARCH.tar"
    # mmdebstrap picks the output format from the name: keep it ending in .tar.
    mmdebstrap --quiet --mode=root --variant=minbase --architectures="$ARCH" --include="$ROOT_PACKAGES" \
        "$SUITE" "$WORK/partial-$ARCH.tar" "deb $MIRROR $SUITE main"
    mv "$WORK/partial-$ARCH.tar" "$tarball"
fi

# A snapshot of the agent: a rebuild while the test runs must not look like
# a role that is not idempotent.
cp "$AGENT" "$WORK/homewarden-$ARCH"
AGENT=$WORK/homewarden-$ARCH

mounted=()
cleanup() {
    local i
    for ((i = ${#mounted[@]} - 1; i >= 0; i--)); do umount -l "${mounted[i]}" 2>/dev/null || true; done
    mounted=()
    if [ "${HW_LAB_UP:-0}" = 1 ]; then HW_LAB_DIR=$LABDIR scripts/lab.sh down >/dev/null 2>&1 || true; fi
}
trap cleanup EXIT
# A root left mounted by an interrupted run: unmount, and never delete
# through a bind mount of the host's /dev.
for m in dev sys proc; do
    if mountpoint -q "$ROOT/$m" 2>/dev/null; then umount -l "$ROOT/$m"; fi
done
if findmnt -rn -o TARGET | grep -q "^$ROOT/"; then die "something is still mounted under $ROOT"; fi
rm -rf --one-file-system "$ROOT"
mkdir -p "$ROOT"
tar -C "$ROOT" -xf "$tarball"
# mmdebstrap leaves no resolver behind; apt inside the root needs one.
cp /etc/resolv.conf "$ROOT/etc/resolv.conf"
mount -t proc proc "$ROOT/proc"; mounted+=("$ROOT/proc")

export ANSIBLE_CONFIG=$REPO/ansible/ansible.cfg
export ANSIBLE_NOCOLOR=1 ANSIBLE_FORCE_COLOR=0
playbook() {
    local log=$1; shift
    if ! ansible-playbook -c community.general.chroot -i "$ROOT," "$REPO/ansible/site.yml" \
        -e homewarden_binary_src="$AGENT" -e @"$REPO/tests/ansible/vars.yml" "$@" >"$log" 2>&1; then
        tail -n 40 "$log" >&2
        die "ansible-playbook $* failed (log: $log)"
    fi
    # The recap line of the one host: "ROOT : ok=N changed=N unreachable=0 failed=0 ..."
    grep -E '^\S+ +: ok=' "$log" | tail -n 1
}
changed_of() { grep -E '^\S+ +: ok=' "$1" | tail -n 1 | sed -n 's/.* changed=\([0-9]*\).*/\1/p'; }

step "playbook, first run"
playbook "$WORK/$ARCH-run1.log"
[ "$(changed_of "$WORK/$ARCH-run1.log")" -gt 0 ] || die "the first run changed nothing on a fresh root"

step "playbook, second run: nothing may change"
playbook "$WORK/$ARCH-run2.log"
if [ "$(changed_of "$WORK/$ARCH-run2.log")" != 0 ]; then
    grep -E '^changed:' -B2 "$WORK/$ARCH-run2.log" >&2 || true
    die "the second run changed something (not idempotent; log: $WORK/$ARCH-run2.log)"
fi

step "playbook --check --diff: nothing to change"
playbook "$WORK/$ARCH-check.log" --check --diff
[ "$(changed_of "$WORK/$ARCH-check.log")" = 0 ] || die "--check --diff reports changes (log: $WORK/$ARCH-check.log)"

if [ "$ARCH" = amd64 ]; then
    step "a variable the agent rejects: the run fails with its message, the config stays"
    before=$(sha256sum "$ROOT/etc/homewarden/homewarden.yaml")
    if ansible-playbook -c community.general.chroot -i "$ROOT," "$REPO/ansible/site.yml" \
        -e homewarden_binary_src="$AGENT" -e @"$REPO/tests/ansible/vars.yml" \
        -e '{"homewarden_config_extra": {"alerts": {"window": "5x"}}}' >"$WORK/$ARCH-bad.log" 2>&1; then
        die "a config the agent rejects was accepted (log: $WORK/$ARCH-bad.log)"
    fi
    grep -q 'alerts.window: .*invalid duration' "$WORK/$ARCH-bad.log" || die "no agent message naming alerts.window in $WORK/$ARCH-bad.log"
    [ "$(sha256sum "$ROOT/etc/homewarden/homewarden.yaml")" = "$before" ] || die "a rejected config reached the root"
    grep -o 'homewarden: [^ ]*: alerts.window: [^(]*' "$WORK/$ARCH-bad.log" | head -n 1
fi

step "what the role left in the root"
fail=0
check() { if ! "$@"; then echo "  FAILED: $*" >&2; fail=1; fi; }
mode_owner() { [ "$(stat -c '%a %U:%G' "$ROOT$1")" = "$2" ] || { echo "  $1: $(stat -c '%a %U:%G' "$ROOT$1"), want $2" >&2; return 1; }; }
same() { cmp -s "$1" "$2" || { echo "  $2 differs from $1" >&2; return 1; }; }
enabled() { [ -L "$ROOT/etc/systemd/system/multi-user.target.wants/$1" ] || { echo "  $1 is not enabled" >&2; return 1; }; }
# Every overlay file, byte for byte and with its mode (the factory config sits
# in /usr/share/homewarden; /etc/homewarden/homewarden.yaml is the user's).
while IFS= read -r -d '' f; do
    rel=${f#overlays/}
    dest=/$rel
    [ "$rel" = etc/homewarden/homewarden.yaml ] && dest=/usr/share/homewarden/homewarden.yaml
    check same "$f" "$ROOT$dest"
    check mode_owner "$dest" "$(stat -c '%a' "$f") root:root"
done < <(find overlays -type f -print0)
check same "$AGENT" "$ROOT/usr/bin/homewarden"
check mode_owner /usr/bin/homewarden "755 root:root"
check mode_owner /etc/homewarden/homewarden.yaml "644 root:root"
# Owner and group as the root names them (its ids need not be the host's).
env_owner=$(chroot "$ROOT" stat -c '%a %U:%G' /etc/homewarden/.env)
check test "$env_owner" = "640 root:homewarden"
# The agent's own user, in gpio for the panel and in the control socket's
# groups (so it can hand its socket to either), with no login.
check test "$(chroot "$ROOT" id -nG homewarden)" = "homewarden gpio homewarden-read homewarden-admin"
# The control socket's groups own nothing: nobody is in them but the agent.
check test "$(chroot "$ROOT" getent group homewarden-read | cut -d: -f4)" = homewarden
check test "$(chroot "$ROOT" getent passwd homewarden | cut -d: -f7)" = /usr/sbin/nologin
check grep -qx "MISP_API_KEY='homewarden-lab-key-00000000000000000000'" "$ROOT/etc/homewarden/.env"
check grep -qx "COHERE_API_KEY='test-cohere-key'" "$ROOT/etc/homewarden/.env"
check grep -qx "MAILTRAP_TOKEN='test-mailtrap-token'" "$ROOT/etc/homewarden/.env"
check grep -qx "EXTRA_SECRET='s3cret with spaces'" "$ROOT/etc/homewarden/.env"
check grep -qx "HOMEWARDEN_WIFI_PASSPHRASE='correct horse battery staple'" "$ROOT/etc/homewarden/.env"
# An unset secret is left out, not written empty.
check test "$(grep -c "=''$" "$ROOT/etc/homewarden/.env")" = 0
# The config carries the variables, the extra keys merged over them.
check python3 - "$ROOT/etc/homewarden/homewarden.yaml" <<'PY'
import sys, yaml
c = yaml.safe_load(open(sys.argv[1]))
want = {
    ("enforcement", "mode"): "ips", ("enforcement", "action"): "reject", ("enforcement", "fail"): "open",
    ("network", "gateway"): ["203.0.113.1"], ("network", "dns"): ["203.0.113.53"],
    ("network", "home"): ["198.18.1.0/24"], ("allowlist", "domains"): ["lab-good.test"],
    ("alerts", "window"): "5m", ("mail", "to"): ["owner@example.org"], ("mail", "port"): 2525,
    ("mail", "user"): "api", ("advisor", "backend"): "offline", ("network", "placement"): "ap",
    ("network", "lan"): "wlan1", ("network", "ap"): {"ssid": "homewarden-test", "country": "DE", "channel": 36},
}
bad = [f"{'.'.join(k)} = {c.get(k[0], {}).get(k[1])!r}, want {v!r}" for k, v in want.items()
       if c.get(k[0], {}).get(k[1]) != v]
names = [s["name"] for s in c.get("sources", [])]
if names != ["misp", "blocklist"]:
    bad.append(f"sources {names}, want ['misp', 'blocklist']")
for b in bad:
    print("  config:", b, file=sys.stderr)
sys.exit(1 if bad else 0)
PY
for unit in homewarden-firewall.service homewarden.service suricata.service; do check enabled "$unit"; done
check test ! -e "$ROOT/etc/systemd/system/multi-user.target.wants/nftables.service"
check test ! -e "$ROOT/etc/systemd/system/sysinit.target.wants/nftables.service"
check chroot "$ROOT" sh -c 'suricata -V | grep -q "version 7\."'
for pkg in suricata nftables iptables procps; do
    check chroot "$ROOT" dpkg-query -W "$pkg" >/dev/null
done
if [ "$SUITE" = bookworm ]; then
    check test -f "$ROOT/etc/apt/sources.list.d/homewarden-backports.sources"
    check chroot "$ROOT" sh -c 'apt-cache policy suricata | grep -q "\*\*\*.*bpo"'
fi
check grep -qx 'net.ipv4.ip_forward = 1' "$ROOT/etc/sysctl.d/90-homewarden.conf"
[ $fail = 0 ] || die "the provisioned root is not what the role should have made"
echo "files, modes, secrets, config, packages and enabled units: as expected"

step "inside the root: the agent's check-config and suricata -T"
mount --bind /dev "$ROOT/dev"; mounted+=("$ROOT/dev")
# In a network namespace of their own: nothing here may reach the network (the
# config names the lab's MISP address, which exists only inside the lab).
in_root() { unshare --net chroot "$ROOT" "$@"; }
in_root /usr/bin/homewarden --config /etc/homewarden/homewarden.yaml check-config
# Rules as the agent renders them (one dataset rule per IoC kind), so -T
# loads real rules and datasets, not an empty file.
printf '203.0.113.66\nc2.lab-evil.test\n' >"$ROOT/etc/homewarden/blocklist.txt"
in_root /usr/bin/homewarden --config /etc/homewarden/homewarden.yaml --log warn \
    render --out /var/lib/homewarden/suricata --source /etc/homewarden/blocklist.txt >/dev/null
in_root suricata -T -c /etc/suricata/suricata.yaml --include /etc/suricata/homewarden.yaml \
    -l /tmp >"$WORK/$ARCH-suricata-T.log" 2>&1 || { cat "$WORK/$ARCH-suricata-T.log" >&2; die "suricata -T failed inside the root"; }
grep -E 'rules successfully loaded|Configuration provided was successfully loaded' "$WORK/$ARCH-suricata-T.log" | tail -n 2
grep -q 'dataset' "$ROOT/var/lib/homewarden/suricata/homewarden.rules" || die "rendered rules carry no dataset rule"
umount "$ROOT/dev"; unset 'mounted[-1]'
umount "$ROOT/proc"; unset 'mounted[-1]'

step "the lab's pi namespace on the provisioned root: C2 dropped, benign answers"
LABDIR=/tmp/homewarden-lab-ansible
HW_LAB_UP=1
HW_ANSIBLE_ROOT=$ROOT HW_LAB_DIR=$LABDIR HOMEWARDEN_BIN=$LAB_BIN \
    target/pyenv/bin/python -m pytest -q -p no:cacheprovider tests/ansible
HW_LAB_UP=0

# The role's logic, the same on every architecture: in the fast suite only
# (under qemu-user each further run costs minutes).
if [ "$ARCH" = amd64 ]; then
    step "a changed setting restarts only what it concerns"
    # Live hosts restart exactly the units the role lists here; the chroot shows the list.
    restarts_of() { grep -o 'homewarden restarts: [^(]*' "$1" | tail -n 1 | sed 's/ *$//'; }
    expect_restarts() {
        local log=$1 want=$2
        [ "$(changed_of "$log")" -gt 0 ] || die "no change in $log"
        [ "$(restarts_of "$log")" = "homewarden restarts: $want" ] ||
            die "$(restarts_of "$log"), want: $want (log: $log)"
        echo "  $(restarts_of "$log")"
    }
    mount -t proc proc "$ROOT/proc"; mounted+=("$ROOT/proc")
    playbook "$WORK/$ARCH-fail-closed.log" -e homewarden_fail=closed >/dev/null
    expect_restarts "$WORK/$ARCH-fail-closed.log" "homewarden, homewarden-firewall, suricata"
    rm -rf "$WORK/overlays-changed"
    cp -a overlays "$WORK/overlays-changed"
    echo "# changed by ansible-test" >>"$WORK/overlays-changed/etc/suricata/homewarden.yaml"
    playbook "$WORK/$ARCH-overlay.log" -e homewarden_fail=closed -e homewarden_overlays_dir="$WORK/overlays-changed" >/dev/null
    expect_restarts "$WORK/$ARCH-overlay.log" "suricata"
    playbook "$WORK/$ARCH-same.log" -e homewarden_fail=closed -e homewarden_overlays_dir="$WORK/overlays-changed" >/dev/null
    [ "$(restarts_of "$WORK/$ARCH-same.log")" = "homewarden restarts: nothing" ] || die "an unchanged run restarts something"
    echo "  $(restarts_of "$WORK/$ARCH-same.log")"

    step "a hardening baseline switched forwarding off: set back where it wins at boot"
    # What dev-sec's os_hardening leaves: /etc/sysctl.conf, read as 99-sysctl.conf.
    printf '# hardening\nnet.ipv4.ip_forward = 0\nkernel.kptr_restrict = 2\n' >"$ROOT/etc/sysctl.conf"
    ln -sf ../sysctl.conf "$ROOT/etc/sysctl.d/99-sysctl.conf"
    playbook "$WORK/$ARCH-hardened.log" -e homewarden_fail=closed -e homewarden_overlays_dir="$WORK/overlays-changed" >/dev/null
    [ "$(restarts_of "$WORK/$ARCH-hardened.log")" = "homewarden restarts: nothing" ] || die "a sysctl file fix restarted units"
    grep -qx 'net.ipv4.ip_forward *= *1' "$ROOT/etc/sysctl.conf" || die "forwarding still off in /etc/sysctl.conf"
    grep -qx 'kernel.kptr_restrict *= *2' "$ROOT/etc/sysctl.conf" || die "the hardening's other settings were changed"
    [ -L "$ROOT/etc/sysctl.d/99-sysctl.conf" ] || die "99-sysctl.conf is no longer a link"
    in_root /usr/lib/systemd/systemd-sysctl --cat-config 2>/dev/null | grep 'ip_forward' | tail -n 1
    umount "$ROOT/proc"; unset 'mounted[-1]'
fi

if [ "${HW_ANSIBLE_KEEP:-0}" != 1 ]; then rm -rf --one-file-system "$ROOT"; fi
step "ansible-test ($ARCH): passed"
