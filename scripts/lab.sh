#!/usr/bin/env bash
# The homewarden lab: three network namespaces on this machine,
#
#   iot (198.18.1.2) ── pi (198.18.1.1 | 203.0.113.1) ── wan (203.0.113.0/24)
#   iot-cam, iot-speaker: two more devices on iot's link (macvlan, MACs of
#   their own), addressed by DHCP from dnsmasq in `pi`
#
# with real Suricata inline (NFQUEUE) in `pi`, configured from overlays/, the
# agent running in `pi`, and in `wan`: a known-bad C2 (.66), a benign web
# server (.80), a second web server the tests turn bad through MISP (.67), a
# DNS server (.53), the MISP double over HTTPS (.10:8443), a real SMTP server
# (.25:587, STARTTLS and login required; mail lands in $LAB/mail) and the LLM
# double answering as Cohere's API (.30:443). The embedded
# lab feed (tests/data/lab-feed) makes 203.0.113.66 / c2.lab-evil.test bad.
#
#   scripts/lab.sh up | down | status | restart-suricata | exec NS CMD...
#   scripts/lab.sh join NAME MAC [HOSTNAME [VENDOR_CLASS]]   # one more device (iot-NAME)
#
# Environment: HW_LAB_SIGNATURES=home|off (default home: the lab's own ruleset
# in ET Open's layout, tests/data/lab-rules, taken through suricata-update;
# off: the IoC sets alone, as the benchmarks' "IoCs only" runs),
# HW_LAB_DIR (default /tmp/homewarden-lab), HW_LAB_FAIL=open|closed
# (default open), HOMEWARDEN_BIN (default target/debug/homewarden, built if missing).
# HW_LAB_ROOT=DIR: a root the Ansible role provisioned (scripts/ansible-test.sh):
# `pi` then runs the firewall on DIR's homewarden.yaml (its fail mode, queues
# and flow bypass, as homewarden-firewall.service does), DIR's suricata.yaml
# and homewarden include, instead of overlays/ and the host's suricata.yaml.
# Everything stays inside the namespaces: the host's own network is not touched.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
LAB=${HW_LAB_DIR:-/tmp/homewarden-lab}
BIN=${HOMEWARDEN_BIN:-$REPO/target/debug/homewarden}
ROOT=${HW_LAB_ROOT:-}
FILES=${ROOT:-$REPO/overlays}
SURICATA_YAML=$ROOT/etc/suricata/suricata.yaml
FAIL=${HW_LAB_FAIL:-open}
SIGNATURES=${HW_LAB_SIGNATURES:-home}
KEY=homewarden-lab-key-00000000000000000000
COHERE_KEY=homewarden-lab-cohere-key-0000000000
MAIL_TOKEN=homewarden-lab-mailtrap-token-000000
METRICS_TOKEN=homewarden-lab-metrics-token-000000
MQTT_PASSWORD=homewarden-lab-mqtt-password-0000
NAMESPACES=(iot pi wan)
PY=/usr/bin/python3
T0=${EPOCHREALTIME/./}

say() {
    local us=$(( ${EPOCHREALTIME/./} - T0 ))
    printf '[lab %3d.%01ds] %s\n' $((us / 1000000)) $((us / 100000 % 10)) "$*" >&2
}
die() { echo "lab: $*" >&2; exit 1; }
in_ns() { local ns=$1; shift; ip netns exec "$ns" "$@"; }
# Starts a long-running process in a namespace, detached, logging to a file.
spawn() {
    local ns=$1 name=$2; shift 2
    setsid ip netns exec "$ns" "$@" </dev/null >>"$LAB/log/$name.log" 2>&1 &
    echo $! >"$LAB/$name.pid"
}
wait_until() {
    local what=$1 tries=$2; shift 2
    for _ in $(seq "$tries"); do
        if "$@" >/dev/null 2>&1; then return 0; fi
        sleep 0.2
    done
    die "$what did not come up (logs in $LAB/log)"
}

suricata_answers() {
    in_ns pi "$PY" - "$LAB/suricata.sock" <<'PYEOF'
import json, socket, sys
s = socket.socket(socket.AF_UNIX)
s.settimeout(2)
s.connect(sys.argv[1])
s.sendall(b'{"version": "0.2"}\n')
assert json.loads(s.recv(4096))["return"] == "OK"
s.sendall(b'{"command": "uptime"}\n')
assert json.loads(s.recv(4096))["return"] == "OK"
PYEOF
}

agent_protected() {
    "$BIN" --config "$LAB/homewarden.yaml" status --json | grep -q '"state": "protected"'
}

# The lab's namespaces: the three, and a device's each (iot-NAME).
lab_namespaces() {
    echo "${NAMESPACES[@]}"
    ip netns list | awk '{print $1}' | grep -E '^iot-' || true
}

down() {
    local all
    # Before anything under $LAB is removed: the bound cgroup is not ours to empty.
    ! mountpoint -q "$LAB/cgroup" 2>/dev/null || umount "$LAB/cgroup"
    all=$(lab_namespaces)
    for ns in $all; do
        ip netns list | grep -qw "^$ns" || continue
        # Everything the lab started lives in one of its namespaces.
        pids=$(ip netns pids "$ns" || true)
        [ -n "$pids" ] && kill $pids 2>/dev/null || true
    done
    for _ in $(seq 25); do
        left=""
        for ns in $all; do
            ip netns list | grep -qw "^$ns" && left="$left$(ip netns pids "$ns" 2>/dev/null || true)"
        done
        [ -z "$left" ] && break
        sleep 0.2
    done
    for ns in $all; do
        if ip netns list | grep -qw "^$ns"; then
            pids=$(ip netns pids "$ns" || true)
            [ -n "$pids" ] && kill -9 $pids 2>/dev/null || true
            ip netns del "$ns"
        fi
    done
    rm -f "$LAB"/*.pid "$LAB"/*.sock
}

# One private CA (as a home's own servers would have) and a certificate per wan service.
make_certs() {
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
        -subj "/CN=homewarden lab CA" -keyout "$LAB/misp-ca.key" -out "$LAB/misp-ca.pem" \
        -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign 2>/dev/null
    for svc in misp:10 smtp:25 llm:30; do
        local name=${svc%%:*} ip=203.0.113.${svc#*:}
        openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
            -subj "/CN=$name.lab" -keyout "$LAB/$name.key" -out "$LAB/$name.csr" 2>/dev/null
        printf 'subjectAltName=IP:%s,DNS:%s.lab\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n' \
            "$ip" "$name" >"$LAB/$name.ext"
        openssl x509 -req -in "$LAB/$name.csr" -CA "$LAB/misp-ca.pem" -CAkey "$LAB/misp-ca.key" \
            -CAcreateserial -days 2 -extfile "$LAB/$name.ext" -out "$LAB/$name.pem" 2>/dev/null
    done
}

make_namespaces() {
    for ns in "${NAMESPACES[@]}"; do
        ip netns add "$ns"
        in_ns "$ns" ip link set lo up
    done
    ip link add iot0 netns iot type veth peer name pi-iot netns pi
    ip link add pi-wan netns pi type veth peer name wan0 netns wan
    in_ns iot ip addr add 198.18.1.2/24 dev iot0
    # A second device, on the do-not-break list (shadow mode holds what it talks to).
    in_ns iot ip addr add 198.18.1.3/24 dev iot0
    in_ns pi ip addr add 198.18.1.1/24 dev pi-iot
    in_ns pi ip addr add 203.0.113.1/24 dev pi-wan
    in_ns wan ip addr add 203.0.113.2/24 dev wan0
    for a in 10 25 30 53 66 67 80 90; do in_ns wan ip addr add "203.0.113.$a/32" dev wan0; done
    for pair in iot:iot0 pi:pi-iot pi:pi-wan wan:wan0; do
        ns=${pair%%:*} dev=${pair#*:}
        in_ns "$ns" ip link set "$dev" up
        # Suricata must see real frames, not GRO/GSO super-frames.
        in_ns "$ns" ethtool -K "$dev" gro off gso off tso off >/dev/null 2>&1 || true
    done
    in_ns iot ip route add default via 198.18.1.1
    in_ns wan ip route add default via 203.0.113.1
    in_ns pi sysctl -qw net.ipv4.ip_forward=1
}

start_wan_services() {
    # fresh: a server nobody listed (signatures, not the IoC sets, must catch what goes there).
    for host in 66:c2 67:late 80:benign 90:fresh; do
        addr=203.0.113.${host%%:*} name=${host#*:}
        mkdir -p "$LAB/www/$name"
        echo "homewarden lab: $name server at $addr" >"$LAB/www/$name/index.html"
        spawn wan "web-$name" "$PY" -m http.server --bind "$addr" --directory "$LAB/www/$name" 80
    done
    spawn wan dns "$PY" "$REPO/scripts/lab_dns.py" 203.0.113.53 \
        c2.lab-evil.test=203.0.113.66 bad.lab-evil.test=203.0.113.67 www.lab-good.test=203.0.113.80 \
        update.lab-fresh.test=203.0.113.90
    [ -f "$REPO/tests/misp/misp_double.py" ] || die "tests/misp/misp_double.py missing"
    spawn wan misp "$PY" "$REPO/tests/misp/misp_double.py" --listen 203.0.113.10:8443 \
        --tls-cert "$LAB/misp.pem" --tls-key "$LAB/misp.key" --api-key "$KEY" \
        --request-log "$LAB/misp-requests.jsonl"
    spawn wan smtp "$PY" "$REPO/tests/smtp/smtp_server.py" --listen 203.0.113.25:587 --mode starttls \
        --user api --password "$MAIL_TOKEN" --maildir "$LAB/mail" --hostname smtp.lab \
        --tls-cert "$LAB/smtp.pem" --tls-key "$LAB/smtp.key"
    spawn wan llm "$PY" "$REPO/tests/llm/llm_double.py" --listen 203.0.113.30:443 --api-key "$COHERE_KEY" \
        --tls-cert "$LAB/llm.pem" --tls-key "$LAB/llm.key" --request-log "$LAB/llm-requests.jsonl"
    wait_until "web server" 50 in_ns wan curl -sf -m 1 http://203.0.113.80/
    wait_until "MISP double" 50 in_ns pi curl -sf -m 1 --cacert "$LAB/misp-ca.pem" \
        -H "Authorization: $KEY" -H "Accept: application/json" https://203.0.113.10:8443/servers/getVersion
    wait_until "SMTP server" 50 in_ns pi bash -c 'exec 3<>/dev/tcp/203.0.113.25/587'
    wait_until "LLM double" 50 in_ns pi curl -s -m 1 --cacert "$LAB/misp-ca.pem" -o /dev/null \
        https://203.0.113.30/__admin/faults
}

# Home Assistant's broker, on the devices' side as at home (mosquitto, with a login).
start_home_broker() {
    command -v mosquitto >/dev/null || die "mosquitto missing (scripts/install-deps.sh installs it)"
    mosquitto_passwd -b -c "$LAB/mqtt.passwd" homewarden "$MQTT_PASSWORD"
    cat >"$LAB/mosquitto.conf" <<EOF
user root
listener 1883 198.18.1.2
allow_anonymous false
password_file $LAB/mqtt.passwd
persistence false
EOF
    spawn iot mqtt mosquitto -c "$LAB/mosquitto.conf"
    wait_until "MQTT broker" 50 in_ns iot bash -c 'exec 3<>/dev/tcp/198.18.1.2/1883'
}

write_config() {
    cat >"$LAB/homewarden.yaml" <<YAML
# homewarden lab config (written by scripts/lab.sh)
state_dir: $LAB/state
control_socket: $LAB/control.sock
enforcement:
  mode: ips
  action: drop
  fail: $FAIL
  do_not_break: [198.18.1.3/32]
  expiration_sightings: true
suricata:
  rules_dir: $LAB/rules
  command_socket: $LAB/suricata.sock
  include: $LAB/suricata-include.yaml
  cgroup: $(cat "$LAB/suricata-cgroup")
alerts:
  eve_socket: $LAB/eve.sock
panel:
  backends: [simulated]
  state_file: $LAB/panel.json
network:
  gateway: [203.0.113.1]
  dns: [203.0.113.53]
  home: [198.18.1.0/24]
allowlist:
  cidrs: [203.0.113.80/32]
  domains: [lab-good.test]
sources:
  - name: lab-feed
    type: misp_feed
    path: $REPO/tests/data/lab-feed
    interval: 1h
  - name: lab-misp
    type: misp
    url: https://203.0.113.10:8443
    ca_file: $LAB/misp-ca.pem
    interval: 1h
  - name: lab-watch
    type: list
    path: $LAB/watch-list.txt
    interval: 1h
    shadow: 4s
advisor:
  backend: cohere
  url: https://203.0.113.30
  ca_file: $LAB/misp-ca.pem
  timeout: 10s
selftest:
  pcap: $FILES/usr/share/homewarden/selftest.pcap
mail:
  to: [owner@lab.test]
  from: homewarden <homewarden@lab.test>
  host: 203.0.113.25
  ca_file: $LAB/misp-ca.pem
metrics:
  listen: 127.0.0.1:9617
  token_env: METRICS_TOKEN
mqtt:
  url: mqtt://198.18.1.2:1883
  user: homewarden
  password_env: MQTT_PASSWORD
  buttons: true
# Signatures from the lab's own ruleset in ET Open's layout (tests/data/lab-rules),
# taken through suricata-update when the lab comes up: nothing from the internet.
signatures:
  profile: $SIGNATURES
  sources: [$LAB/lab-rules.tar.gz]
  update: 30d
devices:
  leases: $LAB/dnsmasq.leases
  interface: pi-iot
  scan: 1s
YAML
    : >"$LAB/watch-list.txt"
    printf 'MISP_API_KEY=%s\nCOHERE_API_KEY=%s\nMAILTRAP_TOKEN=%s\nMETRICS_TOKEN=%s\nMQTT_PASSWORD=%s\n' \
        "$KEY" "$COHERE_KEY" "$MAIL_TOKEN" "$METRICS_TOKEN" "$MQTT_PASSWORD" >"$LAB/.env"
    chmod 600 "$LAB/.env"
}

# The packet path as homewarden-firewall.service installs it: the queue rules
# in `pi`, and Suricata's arguments for them in $LAB/suricata.env. With a
# root, from the root's config (before the lab's own config is written, which
# then follows the root's fail mode); otherwise from the lab's config.
firewall_up() {
    if [ -n "$ROOT" ] && [ -z "${HW_LAB_FAIL:-}" ]; then
        say "pi: firewall on $ROOT's config, as its unit runs it"
        in_ns pi "$BIN" --config "$ROOT/etc/homewarden/homewarden.yaml" firewall up \
            --suricata-env "$LAB/suricata.env" >&2
        grep -q 'nfq.fail-open=no' "$LAB/suricata.env" && FAIL=closed || FAIL=open
    else
        say "pi: firewall (fail-$FAIL)"
        in_ns pi "$BIN" --config "$LAB/homewarden.yaml" firewall up --suricata-env "$LAB/suricata.env" >&2
    fi
}

# The overlay's include, with the lab's eve socket paths: `--set` cannot reach
# into the include's outputs list (Suricata then keeps Debian's outputs).
write_include() {
    sed -e "s#/run/homewarden/agent/eve.sock#$LAB/eve.sock#" -e "s#/run/homewarden/agent/dns.sock#$LAB/dns.sock#" \
        "$FILES/etc/suricata/homewarden.yaml" \
        >"$LAB/suricata-include.yaml"
}

# Suricata's memory cgroup, as its unit has one (MemoryMax=): the agent reads
# Suricata's budget and memory there. Made once, under the lab's own cgroup
# (v1's memory hierarchy or v2), with no limit until a test sets one. `ip netns
# exec` mounts a /sys of its own without the cgroups, so the agent in `pi` sees
# it bound at $LAB/cgroup (the path kept in $LAB/suricata-cgroup). None (a
# warning) where cgroups cannot be made.
make_suricata_cgroup() {
    local line base dir
    if line=$(grep -m1 '^[0-9]*:memory:' /proc/self/cgroup); then
        base=/sys/fs/cgroup/memory${line#*:memory:}
    elif line=$(grep -m1 '^0::' /proc/self/cgroup); then
        base=/sys/fs/cgroup${line#0::}
        echo +memory >"$base/cgroup.subtree_control" 2>/dev/null || true
    fi
    dir=${base%/}/homewarden-lab-suricata
    rmdir "$dir" 2>/dev/null || true
    if [ -n "${base:-}" ] && mkdir -p "$dir" 2>/dev/null \
        && { [ -e "$dir/memory.max" ] || [ -e "$dir/memory.limit_in_bytes" ]; } \
        && mkdir -p "$LAB/cgroup" && mount --bind "$dir" "$LAB/cgroup"; then
        echo "$LAB/cgroup" >"$LAB/suricata-cgroup"
    else
        say "warning: no memory cgroup for Suricata here; its budget is not read"
        echo "$LAB/no-cgroup" >"$LAB/suricata-cgroup"
    fi
}

start_suricata() {
    write_include
    local args cgroup
    args=$(sed -n 's/^HOMEWARDEN_SURICATA_ARGS=//p' "$LAB/suricata.env")
    [ -n "$args" ] || die "$LAB/suricata.env holds no Suricata arguments"
    cgroup=$(cat "$LAB/suricata-cgroup")
    # Nice=-10, as its unit runs it; in its cgroup from its first byte, so
    # all its memory is charged there.
    # shellcheck disable=SC2086 # the arguments are words, as systemd splits them
    sh -c '[ ! -d "$1" ] || echo $$ >"$1/cgroup.procs"; shift; exec "$@"' sh "$cgroup" \
        ip netns exec pi nice -n -10 suricata -c "$SURICATA_YAML" --include "$LAB/suricata-include.yaml" $args \
        --set default-rule-path="$LAB/rules" --set unix-command.filename="$LAB/suricata.sock" \
        -l "$LAB/log" --pidfile "$LAB/suricata.pid" -D >>"$LAB/log/suricata-start.log" 2>&1
    wait_until "Suricata" 150 suricata_answers
}

# DHCP for the devices' side, as homewarden-dhcp.service runs it in the ap and
# gateway placements: dnsmasq's leases (and the vendor classes its lease
# script keeps, from overlays/) are where the agent's inventory looks first.
start_dhcp() {
    cat >"$LAB/dnsmasq.conf" <<EOF
interface=pi-iot
bind-interfaces
except-interface=lo
# DHCP only: the lab's DNS is wan's.
port=0
dhcp-range=198.18.1.100,198.18.1.150,255.255.255.0,12h
dhcp-option=option:router,198.18.1.1
dhcp-option=option:dns-server,203.0.113.53
dhcp-authoritative
dhcp-leasefile=$LAB/dnsmasq.leases
dhcp-script=$LAB/dhcp-lease
dhcp-scriptuser=dnsmasq
EOF
    # As on the appliance: the lease script runs as dnsmasq, into a directory
    # of its own (a copy of the overlay's: the checkout may not be readable
    # by dnsmasq's user).
    install -m 0755 "$FILES/usr/lib/homewarden/dhcp-lease" "$LAB/dhcp-lease"
    install -d -o dnsmasq -m 0755 "$LAB/dhcp-vendor"
    HOMEWARDEN_DHCP_VENDOR_DIR=$LAB/dhcp-vendor spawn pi dnsmasq \
        dnsmasq --keep-in-foreground --conf-file="$LAB/dnsmasq.conf" --user=root --pid-file="$LAB/dnsmasq.pid"
    cat >"$LAB/udhcpc.sh" <<'EOF'
#!/bin/sh
# A device's DHCP client: the leased address and route, nothing else.
[ "$1" = bound ] || exit 0
ip addr add "$ip/$mask" dev "$interface"
for r in $router; do ip route add default via "$r"; done
EOF
    chmod 755 "$LAB/udhcpc.sh"
}

# One more device on iot's link: namespace iot-NAME with a macvlan of iot0
# (so its frames carry its own MAC), addressed by DHCP from the Pi.
join() {
    local name=$1 mac=$2 host=${3:-} class=${4:-} ns=iot-$1 dev=dev-$1
    ip netns add "$ns"
    in_ns "$ns" ip link set lo up
    in_ns iot ip link add "$dev" link iot0 address "$mac" type macvlan mode bridge
    in_ns iot ip link set "$dev" netns "$ns"
    in_ns "$ns" ip link set "$dev" up
    in_ns "$ns" ethtool -K "$dev" gro off gso off tso off >/dev/null 2>&1 || true
    local opts=(-i "$dev" -n -q -f -t 10 -T 1 -s "$LAB/udhcpc.sh")
    [ -z "$host" ] || opts+=(-x "hostname:$host")
    [ -z "$class" ] || opts+=(-V "$class")
    in_ns "$ns" udhcpc "${opts[@]}" >>"$LAB/log/udhcpc-$name.log" 2>&1 \
        || die "$name got no DHCP lease (logs in $LAB/log)"
    say "$ns: $mac has $(in_ns "$ns" ip -4 -o addr show dev "$dev" | awk '{print $4}')"
}

up() {
    [ "$(id -u)" -eq 0 ] || die "run as root (namespaces, firewall)"
    case $FAIL in open|closed) ;; *) die "HW_LAB_FAIL must be open or closed" ;; esac
    case $SIGNATURES in home|off) ;; *) die "HW_LAB_SIGNATURES must be home or off" ;; esac
    if [ -n "$ROOT" ]; then
        for f in etc/systemd/system/homewarden-firewall.service etc/suricata/homewarden.yaml etc/suricata/suricata.yaml \
            etc/homewarden/homewarden.yaml; do
            [ -e "$ROOT/$f" ] || die "HW_LAB_ROOT: $ROOT/$f missing (not a provisioned root?)"
        done
    fi
    "$REPO/scripts/install-deps.sh"
    if [ ! -x "$BIN" ]; then
        say "building the agent"
        (cd "$REPO" && cargo build --locked --quiet)
    fi
    down
    rm -rf "$LAB"
    mkdir -p "$LAB/log" "$LAB/rules" "$LAB/state"
    # As ET packs its archive: rules/emerging-*.rules.
    tar -C "$REPO/tests/data/lab-rules" -czf "$LAB/lab-rules.tar.gz" rules
    say "certificates"; make_certs
    say "namespaces iot — pi — wan"; make_namespaces
    make_suricata_cgroup
    say "wan: web servers, DNS, MISP double, SMTP server, LLM double"; start_wan_services
    say "iot: Home Assistant's MQTT broker"; start_home_broker
    say "pi: DHCP for the devices (dnsmasq)"; start_dhcp
    join cam 24:0a:c4:12:34:56 doorbell-cam "ESP32 camera"
    join speaker 44:65:0d:12:34:56 kitchen-speaker amazon-echo
    write_include
    [ -z "$ROOT" ] || firewall_up
    write_config
    [ -n "$ROOT" ] || firewall_up
    say "first sync (rules and datasets for Suricata to start with)"
    in_ns pi "$BIN" --config "$LAB/homewarden.yaml" --log warn sync --once >"$LAB/log/first-sync.log" 2>&1 \
        || die "first sync failed: $(cat "$LAB/log/first-sync.log")"
    # The agent first: it listens on the eve socket Suricata's alert output connects to.
    say "pi: agent"
    spawn pi homewarden "$BIN" --config "$LAB/homewarden.yaml" run
    wait_until "agent" 50 test -S "$LAB/eve.sock"
    say "pi: Suricata inline on NFQUEUE"; start_suricata
    wait_until "agent" 100 agent_protected
    if [ "$SIGNATURES" != off ]; then
        say "pi: signatures (the lab's ruleset, through suricata-update)"
        "$BIN" --config "$LAB/homewarden.yaml" signatures update >"$LAB/log/signatures-update.log" 2>&1 \
            || die "signature update failed: $(cat "$LAB/log/signatures-update.log")"
    fi
    wait_until "iot -> benign" 25 in_ns iot curl -sf -m 1 http://203.0.113.80/
    say "up"
    cat >&2 <<EOF

  The lab is up (files and logs in $LAB).
    scripts/lab.sh exec iot curl -m 3 http://203.0.113.80/   # benign: answers
    scripts/lab.sh exec iot curl -m 3 http://203.0.113.66/   # C2: dropped (times out)
    scripts/lab.sh exec iot curl -m 3 -A hwlab-bot -d x http://203.0.113.90/gate.php   # a signature drops it
    $BIN --config $LAB/homewarden.yaml status
    scripts/lab.sh down
EOF
}

status() {
    for ns in "${NAMESPACES[@]}"; do
        if ip netns list | grep -qw "^$ns"; then
            echo "$ns: $(ip netns pids "$ns" | wc -l) processes"
        else
            echo "$ns: down"
        fi
    done
    [ -S "$LAB/control.sock" ] && "$BIN" --config "$LAB/homewarden.yaml" status || true
}

# Suricata again with what $LAB/suricata.env says now, as its unit restarts
# it after `homewarden firewall up` changed the queues or the fail mode.
restart_suricata() {
    local pid
    pid=$(cat "$LAB/suricata.pid" 2>/dev/null || true)
    if [ -n "$pid" ]; then
        kill -CONT "$pid" 2>/dev/null || true
        kill "$pid" 2>/dev/null || true
        for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -9 "$pid" 2>/dev/null || true
    fi
    rm -f "$LAB/suricata.pid"
    say "pi: Suricata inline on NFQUEUE"; start_suricata
}

case ${1:-} in
    up) up ;;
    restart-suricata) restart_suricata ;;
    down) down; echo "lab: down" >&2 ;;
    status) status ;;
    join) shift; [ $# -ge 2 ] || die "usage: lab.sh join NAME MAC [HOSTNAME [VENDOR_CLASS]]"; join "$@" ;;
    exec) shift; [ $# -ge 2 ] || die "usage: lab.sh exec NS CMD..."; ns=$1; shift; exec ip netns exec "$ns" "$@" ;;
    *) echo "usage: scripts/lab.sh up | down | status | restart-suricata | join NAME MAC [HOSTNAME [CLASS]] | exec NS CMD..." >&2; exit 2 ;;
esac
