#!/usr/bin/env bash
# Boots the built SD-card image under qemu-system-aarch64 (-M virt, software
# emulation) the way a user boots a Pi: a homewarden.yaml with secrets on the
# boot partition, first boot, then the appliance. It reads over the serial
# console that systemd reports the agent and Suricata active, that Suricata is
# inline (NFQUEUE), that `homewarden status` says protected and what first boot
# did, waits for the first self-test's replay to pass without a restart, then
# the VM powers off.
#
#   scripts/boot-test.sh [--bad-config] [IMAGE]     default: target/image/homewarden-<version>-arm64.img
#
# --bad-config boots with a homewarden.yaml the appliance cannot use instead:
# the error must be on the boot partition, the fault unit running, the agent
# down, and the secret still on the card (nothing lost).
#
# The image itself is not changed: the test boots a sparse copy, 1 GiB larger
# (first boot must grow the root to it). The VM's NIC is qemu user networking
# with restrict=on: DHCP from qemu, nothing leaves the host.
set -euo pipefail
# One function, parsed whole before it runs (edits during a run cannot derail it).
main() {
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO"

VERSION=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)
mode=good
if [ "${1:-}" = --bad-config ]; then
    mode=bad-config
    shift
fi
IMG=${1:-$REPO/target/image/homewarden-$VERSION-arm64.img}
WORK=$REPO/target/image/boot-test
TIMEOUT=${HW_BOOT_TIMEOUT:-900}

T0=$(date +%s)
log() { printf '[boot-test %4ds] %s\n' "$(( $(date +%s) - T0 ))" "$*" >&2; }
die() { printf 'boot-test: %s\n' "$*" >&2; exit 1; }

[ -f "$IMG" ] || die "no image at $IMG (run scripts/build-image.sh first)"
need=()
for pkg in mtools fdisk; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'ok installed' || need+=("$pkg")
done
if [ ${#need[@]} -gt 0 ] || ! command -v qemu-system-aarch64 >/dev/null; then
    [ "$(id -u)" -eq 0 ] || die "missing ${need[*]} qemu-system-arm; run as root once"
    apt-get update -qq
    [ ${#need[@]} -eq 0 ] || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
    command -v qemu-system-aarch64 >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
        --no-install-recommends -t bookworm-backports qemu-system-arm >/dev/null
fi
export MTOOLS_SKIP_CHECK=1

rm -rf "$WORK"
mkdir -p "$WORK"
disk=$WORK/disk.img
cp --sparse=always "$IMG" "$disk"
orig_bytes=$(stat -c %s "$disk")
truncate -s +1G "$disk"

# Partition offsets from the table the build wrote.
boot_off=$(sfdisk -J "$disk" | python3 -c 'import json,sys; p=json.load(sys.stdin)["partitiontable"]["partitions"]; print(p[0]["start"]*512)')
fat="$disk@@$boot_off"
mcopy -n -i "$fat" ::cmdline.txt "$WORK/cmdline.txt"
kernel=$(mdir -b -i "$fat" :: | sed -n 's|^::/||p' | grep -E '^vmlinuz' | sort | tail -n 1)
initrd=$(mdir -b -i "$fat" :: | sed -n 's|^::/||p' | grep -E '^initrd' | sort | tail -n 1)
if [ -z "$kernel" ] || [ -z "$initrd" ]; then
    if mdir -b -i "$fat" ::kernel8.img >/dev/null 2>&1; then
        die "$(basename "$IMG") is a raspios image: its Raspberry Pi kernels boot on a Pi, not on qemu's virt machine"
    fi
    die "no vmlinuz/initrd on the boot partition"
fi
mcopy -n -i "$fat" "::$kernel" "$WORK/vmlinuz"
mcopy -n -i "$fat" "::$initrd" "$WORK/initrd"
log "image $(basename "$IMG"): kernel $kernel, initrd $initrd, cmdline: $(cat "$WORK/cmdline.txt")"

# What a user does: edit homewarden.yaml on the boot partition. The VM has no
# Wi-Fi, so the placement is the default: a gateway between its two virtio
# NICs, eth0 the uplink and eth1 the devices' side.
cat >"$WORK/homewarden.yaml" <<'YAML'
# boot test: a user's config with secrets, as written on the boot partition
enforcement:
  mode: ips
  fail: open
sources: []
# The devices' side of the gateway placement: Suricata's $HOME_NET.
network:
  home: [192.168.73.0/24]
# The VM reaches out through qemu's user network: no ruleset is fetched.
signatures:
  profile: off
secrets:
  misp_api_key: boot-test-misp-key-0123456789
  mailtrap_token: boot-test-mailtrap-token
  wifi_passphrase: "boot test passphrase"
ssh_authorized_keys:
  - ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGhvbWV3YXJkZW4tYm9vdC10ZXN0LWtleS0wMTIzNDU2 boot-test@homewarden
panel:
  backends: [act]
  act_led: /run/homewarden/act-standin
YAML
if [ $mode = bad-config ]; then
    sed -i 's/^  mode: ips$/  mode: ipz/' "$WORK/homewarden.yaml"
fi
mcopy -o -i "$fat" "$WORK/homewarden.yaml" ::homewarden.yaml
cp "$REPO/image/boot-test-guest.sh" "$WORK/guest.sh"
mcopy -o -i "$fat" "$WORK/guest.sh" ::homewarden-boot-test.sh

# The image's own boot line, with qemu's serial console instead of the Pi's.
# The in-guest check starts as a unit of its own (systemd-run --no-block from
# systemd.run=): run directly, systemd's boot would wait for it while it waits
# for the boot. systemd.run= alone would boot to kernel-command-line.target
# instead of the appliance: systemd.unit= keeps multi-user.target and
# systemd.wants= adds the command to it. The check prints to the console and
# powers the VM off at its end; the serial getty is masked, its vhangup of the
# console would cut the check's output.
# The VM has no ACT LED: a stand-in for /sys/class/leds/ACT, its files
# root's and writable by group homewarden as the image's udev rule leaves the
# real ones, made at boot by systemd-tmpfiles from a credential (the image
# itself stays untouched).
standin=$(printf '%s\n' \
    'd /run/homewarden/act-standin 0755 root root -' \
    'f /run/homewarden/act-standin/trigger 0664 root homewarden - mmc0' \
    'f /run/homewarden/act-standin/brightness 0664 root homewarden - 0' | base64 -w0)
root=$(grep -o 'root=[^ ]*' "$WORK/cmdline.txt")
append="console=ttyAMA0 $root rw rootwait fsck.repair=yes net.ifnames=0 systemd.show_status=1 \
systemd.run=\"/usr/bin/systemd-run --no-block --unit=homewarden-boot-test -p StandardOutput=tty \
/bin/sh /boot/firmware/homewarden-boot-test.sh\" \
systemd.run_success_action=none systemd.run_failure_action=poweroff \
systemd.unit=multi-user.target systemd.wants=kernel-command-line.service \
systemd.mask=serial-getty@ttyAMA0.service hwtest.mode=$mode \
systemd.set_credential_binary=tmpfiles.extra:$standin"

log "booting under qemu-system-aarch64 -M virt (software emulation, 2 vCPU, 2 GiB)"
serial=$WORK/serial.log
boot_start=$(date +%s)
set +e
timeout "$TIMEOUT" qemu-system-aarch64 -M virt -cpu cortex-a72 -smp 2 -m 2048 -nographic -no-reboot \
    -kernel "$WORK/vmlinuz" -initrd "$WORK/initrd" -append "$append" \
    -drive "file=$disk,if=virtio,format=raw" \
    -netdev user,id=n0,restrict=on -device virtio-net-pci,netdev=n0,romfile= \
    -netdev user,id=n1,restrict=on -device virtio-net-pci,netdev=n1,romfile= \
    -serial "file:$serial" -monitor none -display none </dev/null >"$WORK/qemu.out" 2>&1
rc=$?
set -e
boot_secs=$(( $(date +%s) - boot_start ))
[ $rc -eq 0 ] || { tail -n 60 "$serial" >&2; die "qemu exited with $rc after ${boot_secs}s (124: timeout ${TIMEOUT}s)"; }
tr -d '\r' <"$serial" >"$WORK/serial.txt"
grep '^HWTEST' "$WORK/serial.txt" >&2 || true

fail=0
expect() {
    if grep -qE "^HWTEST $1\$" "$WORK/serial.txt"; then
        log "ok: $2"
    else
        log "FAIL: $2 (no line matching 'HWTEST $1')"
        fail=1
    fi
}
if [ $mode = bad-config ]; then
    expect 'bad-config fault=active firstboot=exit-code homewarden=inactive' "bad config: fault pattern unit running, first boot failed, the agent not started"
    expect 'error-file\| .*homewarden.yaml: enforcement.mode: .*ipz.*' "bad config: one line naming file, key and value in homewarden-error.txt"
    expect 'bad-config env-secret 0 boot-secret-kept 1' "bad config: the secret stays on the card, nothing moved"
    if [ $fail -ne 0 ]; then
        tail -n 60 "$WORK/serial.txt" >&2
        die "boot test (bad config) failed (serial log: $WORK/serial.txt)"
    fi
    echo "boot-test: passed (bad config): error on the boot partition, fault shown, agent down, secret kept; VM run ${boot_secs}s"
    exit 0
fi
expect 'units homewarden=active suricata=active homewarden-firewall=active' "systemd reports the agent, Suricata and the firewall active"
expect 'state protected' "homewarden status says protected"
expect 'inline (nftables queue .*bypass.*|iptables-nft NFQUEUE .*bypass.*)' "forwarded traffic is queued to Suricata (NFQUEUE), fail-open"
expect 'suricata -q 0 running' "Suricata runs on NFQUEUE 0"
expect 'home-net vars-file=yes .*"message": "\[192.168.73.0/24\]".* external .*"message": "!\$HOME_NET".*' \
    "network.home is Suricata's \$HOME_NET through the file the sandboxed firewall unit wrote (suricata --dump-config in it), \$EXTERNAL_NET kept"
expect 'suricata-unit memory-max=[0-9]+ restart=always' "Suricata's unit holds it to a memory budget and starts it again when the agent shuts it down for a ruleset"
expect "signatures\\| Suricata's memory: [0-9]+ MiB of its [0-9]+ MiB budget" "the agent reads Suricata's budget from its unit's cgroup"
expect 'status\| path: nftables queues 0-1 \(fail-open\), Suricata holds 0, 1;.*' \
    "the agent's path check: native nft queue fanned out over both vCPUs, Suricata holding each queue"
expect 'network placement=gateway uplink=eth0 lan=eth1 lan-addr=192.168.73.1/24 dhcp=active ap=inactive nat=1 dns-queued=yes' \
    "gateway placement rendered: eth1 at 192.168.73.1/24, dnsmasq serving it, NAT to eth0, the devices' DNS queued to Suricata"
expect 'status\| network: gateway placement, uplink eth0, devices on eth1 \(0 DHCP leases\)' "homewarden status shows the placement"
expect 'firstboot result=success' "first boot succeeded"
expect 'env mode=640 owner=root group=homewarden MISP_API_KEY=set MAILTRAP_TOKEN=set HOMEWARDEN_WIFI_PASSPHRASE=set' "secrets moved to /etc/homewarden/.env, 0640 root:homewarden (the agent reads, cannot change)"
expect 'boot-yaml secrets=0 ssh-key-lines=1 error-file=absent' "boot partition copy rewritten without secrets (public key kept)"
expect 'ssh-host-keys [1-9][0-9]*' "SSH host keys generated"
expect 'authorized-keys 1' "SSH public key installed"
expect 'machine-id [0-9a-f]{32}' "machine-id generated"
expect 'root-grown yes .*' "root file system grown to the card"
expect 'journal volatile' "journal in RAM (/run/log/journal), nothing under /var/log/journal"
expect 'selftest replay=pass sid [0-9]+ fired after .*' "the first self-test replayed the canary capture through suricata -r on the image: the canary rule fired"
expect 'restarts homewarden=0 suricata=0' "neither the agent nor Suricata restarted (the watchdog did not fire during the slow replay)"
expect 'agent user=homewarden groups=[a-z,-]*gpio[a-z,-]* cap-eff=0000000000001000 cap-bnd=0000000000001000' \
    "the agent runs sandboxed as its own user, in group gpio, with CAP_NET_ADMIN alone (and still reached protected)"
expect 'act-standin trigger=none brightness=[01] owner=root:homewarden' \
    "the ACT LED backend drove the stand-in LED through the group permission (trigger none, brightness set)"
expect 'planted-link yes canary=root:root:755 file=root:root:644 entries=file,' \
    "the agent swapped its rule directory for a link to root's and Suricata restarted: nothing of root's changed hands or gained a file"
expect 'rules-restored suricata=active' "Suricata back on the agent's own rule directory"
expect 'factory-reset config=restored marker=gone agent=active .*' \
    "a 10 s button press: the unit's root step restored the factory config, the sandboxed agent came back"
expect 'after-agent-restart dnsmasq.conf=kept dhcp=active' \
    "the placement's files outlive an agent restart: dnsmasq restarts after it"
protected_at=$(sed -n 's/^HWTEST protected-after \([0-9.]*\)s.*/\1/p' "$WORK/serial.txt")
[ -n "$protected_at" ] || { log "FAIL: no protected-after line"; fail=1; }
if [ $fail -ne 0 ]; then
    tail -n 80 "$WORK/serial.txt" >&2
    die "boot test failed (serial log: $WORK/serial.txt)"
fi
log "image $(( orig_bytes / 1048576 )) MB; protected ${protected_at}s after kernel start (guest uptime); VM powered off after ${boot_secs}s"
echo "boot-test: passed: protected after ${protected_at}s of guest uptime, whole VM run ${boot_secs}s"
}

main "$@"; exit
