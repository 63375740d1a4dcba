#!/bin/sh
# Runs inside the VM of scripts/boot-test.sh (a unit started from systemd.run=
# on the kernel line): waits until the appliance is up, prints what the host
# checks, one "HWTEST" line each, on the serial console, and powers off.
set -u
trap 'systemctl poweroff --no-block' EXIT
say() { echo "HWTEST $*"; }
# Matching lines of a file; 0 when none or no file (one word, whatever happens).
count() { c=$(grep -c "$1" "$2" 2>/dev/null); echo "${c:-0}"; }
limit=${HW_GUEST_LIMIT:-720}

# A config the appliance cannot use: the fault shows, the agent stays down,
# the secret stays on the card, the error is on the card.
if grep -q 'hwtest.mode=bad-config' /proc/cmdline; then
    while [ "$(systemctl is-active homewarden-config-fault.service)" != active ]; do
        up=$(cut -d' ' -f1 /proc/uptime)
        [ "${up%.*}" -lt "$limit" ] || break
        sleep 2
    done
    say "bad-config fault=$(systemctl is-active homewarden-config-fault.service) firstboot=$(systemctl show -P Result homewarden-firstboot.service) homewarden=$(systemctl is-active homewarden.service)"
    sed 's/^/HWTEST error-file| /' /boot/firmware/homewarden-error.txt 2>&1
    say "bad-config env-secret $(count boot-test-misp-key /etc/homewarden/.env) boot-secret-kept $(count boot-test-misp-key /boot/firmware/homewarden.yaml)"
    journalctl -b -u homewarden-firstboot.service -u homewarden-config-fault.service --no-pager -o cat 2>&1 | sed 's/^/HWTEST journal| /'
    say "done"
    exit 0
fi

state=""
last=0
shown=""
while :; do
    up=$(cut -d' ' -f1 /proc/uptime)
    a=$(systemctl is-active homewarden.service)
    s=$(systemctl is-active suricata.service)
    if [ "$a" = active ] && [ "$s" = active ]; then
        state=$(homewarden status --json 2>/dev/null | sed -n 's/.*"state": *"\([a-z]*\)".*/\1/p' | head -n 1)
        [ "$state" = protected ] && break
    fi
    # Progress every 30 s, and the journal of a unit the first time it fails.
    if [ $((${up%.*} - last)) -ge 30 ]; then
        last=${up%.*}
        echo "HWWAIT ${up}s homewarden=$a suricata=$s state=$state firstboot=$(systemctl is-active homewarden-firstboot.service)"
    fi
    for u in homewarden homewarden-firstboot suricata homewarden-firewall; do
        case " $shown " in *" $u "*) continue ;; esac
        if [ "$(systemctl show -P NRestarts "$u.service")" != 0 ] || systemctl is-failed -q "$u.service"; then
            shown="$shown $u"
            journalctl -b -u "$u.service" --no-pager -o cat -n 25 2>&1 | sed "s/^/HWTEST journal-$u| /"
        fi
    done
    if [ "${up%.*}" -ge "$limit" ]; then
        say "gave-up after ${up}s: homewarden=$a suricata=$s state=$state"
        break
    fi
    sleep 2
done
say "protected-after ${up}s"
say "units homewarden=$(systemctl is-active homewarden.service) suricata=$(systemctl is-active suricata.service) homewarden-firewall=$(systemctl is-active homewarden-firewall.service)"
say "state $(homewarden status --json 2>/dev/null | sed -n 's/.*"state": *"\([a-z]*\)".*/\1/p' | head -n 1)"
# network.home as $HOME_NET: a file Suricata reads again on a rule reload (a --set it forgets).
sock=/run/suricata/suricata-command.socket
say "home-net vars-file=$([ -f /run/homewarden/suricata-vars.yaml ] && echo yes || echo no)" \
    "$(suricatasc -c 'conf-get vars.address-groups.HOME_NET' "$sock" 2>&1 | tr -d '\n')" \
    "external $(suricatasc -c 'conf-get vars.address-groups.EXTERNAL_NET' "$sock" 2>&1 | tr -d '\n')"
# Suricata's memory budget (its unit's MemoryMax=), as the agent reads it.
say "suricata-unit memory-max=$(systemctl show -P MemoryMax suricata.service) restart=$(systemctl show -P Restart suricata.service)"
homewarden signatures status 2>&1 | grep "Suricata's memory" | sed 's/^/HWTEST signatures| /'
journalctl -b -u homewarden-firewall.service --no-pager -o cat 2>&1 | grep -i warning | sed 's/^/HWTEST firewall-warning| /'
homewarden status 2>&1 | sed 's/^/HWTEST status| /'
# The forward queue statement as the kernel lists it (nft's own wording).
fwdq=$(nft list chain inet homewarden forward 2>/dev/null | grep -o 'queue .*' | head -n 1)
if [ -n "$fwdq" ]; then
    say "inline nftables $fwdq"
elif iptables-nft -S HOMEWARDEN 2>/dev/null | grep -q 'NFQUEUE'; then
    say "inline iptables-nft $(iptables-nft -S HOMEWARDEN | grep -o 'NFQUEUE.*')"
else
    say "inline none"
    nft list ruleset 2>&1 | sed 's/^/HWTEST nft| /'
fi
# No procps on the image: the command line from /proc.
pid=$(cat /run/suricata.pid 2>/dev/null || echo 0)
if tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q -- ' -q 0 '; then
    say "suricata -q 0 running"
else
    say "suricata not on a queue: $(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null)"
fi
p=/run/homewarden/placement
lanaddr=$(ip -4 -o addr show dev "$(sed -n 's/^lan=//p' "$p" 2>/dev/null)" 2>/dev/null | awk '{print $4}' | head -n 1)
nat=$(nft list table ip homewarden_nat 2>/dev/null | grep -c masquerade)
dnsq=no
nft list chain inet homewarden input 2>/dev/null | grep -q 'dport 53 .*queue' && dnsq=yes
iptables-nft -S INPUT 2>/dev/null | grep -q 'dport 53 -j HOMEWARDEN' && dnsq=yes
say "network $(tr '\n' ' ' <"$p" 2>/dev/null)lan-addr=${lanaddr:-none} dhcp=$(systemctl is-active homewarden-dhcp.service) ap=$(systemctl is-active homewarden-ap.service) nat=$nat dns-queued=$dnsq"
journalctl -b -u homewarden-network.service -u homewarden-dhcp.service --no-pager -o cat 2>&1 | sed 's/^/HWTEST network| /'
say "firstboot result=$(systemctl show -P Result homewarden-firstboot.service)"
journalctl -b -u homewarden-firstboot.service --no-pager -o cat 2>&1 | sed 's/^/HWTEST firstboot| /'
env=/etc/homewarden/.env
if [ -f "$env" ]; then
    line="env mode=$(stat -c %a "$env") owner=$(stat -c %U "$env") group=$(stat -c %G "$env")"
    for k in MISP_API_KEY MAILTRAP_TOKEN HOMEWARDEN_WIFI_PASSPHRASE; do
        if grep -q "^$k=." "$env"; then line="$line $k=set"; else line="$line $k=unset"; fi
    done
    say "$line"
else
    say "env missing"
fi
b=/boot/firmware/homewarden.yaml
err=absent
[ -e /boot/firmware/homewarden-error.txt ] && err=present
say "boot-yaml secrets=$(count 'boot-test-misp-key\|boot-test-mailtrap\|boot test passphrase' "$b") ssh-key-lines=$(count "AAAAC3NzaC1lZDI1NTE5AAAAIGhvbWV3" "$b") error-file=$err"
sed 's/^/HWTEST boot-yaml| /' "$b"
say "ssh-host-keys $(find /etc/ssh -name "ssh_host_*_key" | wc -l)"
say "authorized-keys $(count 'boot-test@homewarden' /root/.ssh/authorized_keys)"
say "machine-id $(cat /etc/machine-id)"
size=$(df -B1M --output=size / | tail -n 1 | tr -d ' ')
# The image's root is ~1 GiB smaller than the test disk: grown means over +768 MiB.
part=$(cat /sys/class/block/vda2/size 2>/dev/null || echo 0)
disk=$(cat /sys/class/block/vda/size 2>/dev/null || echo 0)
if [ $((disk - part)) -lt $((300 * 2048)) ]; then g=yes; else g=no; fi
say "root-grown $g fs=${size}MiB part=$((part / 2048))MiB disk=$((disk / 2048))MiB"
if [ -d /run/log/journal ] && [ -z "$(ls -A /var/log/journal 2>/dev/null)" ]; then
    say "journal volatile"
else
    say "journal persistent"
fi
# The first self-test (RELOAD_SETTLE after Suricata answers) replays the
# canary capture through suricata -r, slowest of all under TCG: it must pass,
# and the agent's watchdog must not have restarted it meanwhile.
replay=none
while :; do
    replay=$(homewarden status --json 2>/dev/null | python3 -c '
import json, sys
st = json.load(sys.stdin).get("selftest") or {}
c = [c for c in st.get("checks", []) if c.get("name") == "the capture'"'"'s canary packet alerts"]
print(("pass" if c[0]["ok"] else "fail") + " " + c[0]["detail"] if c else "none")
' 2>/dev/null || echo none)
    up=$(cut -d' ' -f1 /proc/uptime)
    if [ "${replay%% *}" != none ] || [ "${up%.*}" -ge "$limit" ]; then break; fi
    sleep 2
done
say "selftest replay=$replay after ${up}s"
say "restarts homewarden=$(systemctl show -P NRestarts homewarden.service) suricata=$(systemctl show -P NRestarts suricata.service)"

# The agent's sandbox as the kernel sees it: its own user, in gpio, holding
# CAP_NET_ADMIN (bit 12) and nothing else.
pid=$(systemctl show -P MainPID homewarden.service)
st=/proc/$pid/status
groups=""
for g in $(sed -n 's/^Groups:\t*//p' "$st" 2>/dev/null); do groups="$groups$(getent group "$g" | cut -d: -f1),"; done
say "agent user=$(getent passwd "$(awk '/^Uid:/ {print $2}' "$st" 2>/dev/null)" | cut -d: -f1) groups=${groups%,} cap-eff=$(awk '/^CapEff:/ {print $2}' "$st" 2>/dev/null) cap-bnd=$(awk '/^CapBnd:/ {print $2}' "$st" 2>/dev/null)"
# The ACT LED backend on the stand-in (the VM has no LED): files root's,
# written through the group permission the udev rule gives on a Pi.
led=/run/homewarden/act-standin
say "act-standin trigger=$(cat "$led/trigger" 2>&1) brightness=$(cat "$led/brightness" 2>&1) owner=$(stat -c %U:%G "$led/brightness" 2>&1)"

# Root stays root: the agent (its own user, as one taken over would) swaps
# its rule directory for a link to a directory of root's and has Suricata
# restarted. No root step of Suricata's unit may chown, create or write
# through it: the canary keeps its owner, mode and single file.
rules=/var/lib/homewarden/suricata
canary=/run/homewarden-canary
mkdir -p -m 0755 "$canary" && echo root >"$canary/file" && chmod 0644 "$canary/file"
planted=no
runuser -u homewarden -- sh -c "mv $rules $rules.real && ln -s $canary $rules" && planted=yes
systemctl restart suricata.service 2>&1 | sed 's/^/HWTEST planted-restart| /'
say "planted-link $planted canary=$(stat -c %U:%G:%a "$canary") file=$(stat -c %U:%G:%a "$canary/file") entries=$(ls -A "$canary" | tr '\n' ',')"
runuser -u homewarden -- sh -c "rm $rules && mv $rules.real $rules"
systemctl restart suricata.service 2>&1 | sed 's/^/HWTEST restored-restart| /'
say "rules-restored suricata=$(systemctl is-active suricata.service)"

# Last, as it ends the user's config: a 10 s button press. The agent only
# leaves a marker (it cannot write /etc); its unit's root step restores the
# factory config before the restart.
homewarden press --hold 11s >/dev/null 2>&1
reset=waiting
# Its own time: the hold, the restart delay and a start under emulation.
up=$(cut -d' ' -f1 /proc/uptime)
until=$((${up%.*} + 240))
while :; do
    up=$(cut -d' ' -f1 /proc/uptime)
    if cmp -s /etc/homewarden/homewarden.yaml /usr/share/homewarden/homewarden.yaml \
        && [ "$(systemctl is-active homewarden.service)" = active ] \
        && homewarden status >/dev/null 2>&1; then
        reset=restored
        break
    fi
    [ "${up%.*}" -lt "$until" ] || break
    sleep 2
done
marker=gone
[ ! -e /var/lib/homewarden/factory-reset.pending ] || marker=left
say "factory-reset config=$reset marker=$marker agent=$(systemctl is-active homewarden.service) after ${up}s"
journalctl -b -u homewarden.service --no-pager -o cat 2>&1 | grep -i 'factory' | sed 's/^/HWTEST journal-reset| /'
# The agent just restarted: the placement's files in /run/homewarden are
# still there, so restarting dnsmasq (as a crash or an upgrade would) works.
systemctl restart homewarden-dhcp.service 2>&1 | sed 's/^/HWTEST dhcp-restart| /'
kept=gone
[ -e /run/homewarden/dnsmasq.conf ] && kept=kept
say "after-agent-restart dnsmasq.conf=$kept dhcp=$(systemctl is-active homewarden-dhcp.service)"
systemctl --failed --no-legend 2>&1 | sed 's/^/HWTEST failed-unit| /'
say "done"
