#!/usr/bin/env bash
# The benchmarks behind the README's figures (not part of the test suite):
#
#   sudo scripts/bench.sh            # 1,000,000 IPv4 + 100,000 domains, ~10 min
#   BENCH_IPV4=100000 BENCH_DOMAINS=10000 sudo scripts/bench.sh    # a quick look
#
# 1. offline render of the set (time, peak RSS);
# 2. Suricata start-up (`suricata -T`: load and check the rules) with our dataset
#    rendering versus the naive one-rule-per-IoC rendering of the same IoCs; the
#    naive run is stopped at 5 minutes (and kept under a 12 GiB address-space cap
#    so it cannot take the machine down);
# 3. in the lab: `homewarden sync --once` applying the set to a running Suricata
#    (time, agent peak RSS), how long until it is enforced, Suricata's RSS, and
#    iperf3 throughput iot -> wan through `pi` with the lab's tiny set and the big one.
# Results go to target/bench/results.md.
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO"
OUT=$REPO/target/bench
N4=${BENCH_IPV4:-1000000}
ND=${BENCH_DOMAINS:-100000}
NAIVE_LIMIT=${BENCH_NAIVE_LIMIT:-300}
export HW_LAB_DIR=$OUT/lab
BIN=$REPO/target/release/homewarden
export HOMEWARDEN_BIN=$BIN

[ "$(id -u)" -eq 0 ] || { echo "bench: run as root (lab namespaces)" >&2; exit 1; }
scripts/install-deps.sh
cargo build --release --locked --quiet
rm -rf "$OUT/ours" "$OUT/naive" "$OUT/state" "$OUT/log" "$OUT/bench.yaml"
mkdir -p "$OUT/ours" "$OUT/naive" "$OUT/log"

echo "== generating $N4 IPv4 + $ND domains" >&2
/usr/bin/python3 - "$OUT" "$N4" "$ND" <<'PY'
import random, sys
out, n4, nd = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rnd = random.Random(2026)
seen = {0xCB007143}  # 203.0.113.67, the lab host the enforcement probe watches
while len(seen) < n4:
    a = rnd.randrange(0x01000000, 0xDF000000)
    top = a >> 24
    if top in (10, 100, 127, 169, 172, 192, 198, 203):  # keep clear of special and lab ranges
        continue
    seen.add(a)
ips = ['%d.%d.%d.%d' % (a >> 24, a >> 16 & 255, a >> 8 & 255, a & 255) for a in seen]
domains = ['h%d.bad%d.example' % (i, i % 977) for i in range(nd)]
with open(f'{out}/iocs.txt', 'w') as f:
    f.write('\n'.join(ips + domains) + '\n')
with open(f'{out}/naive/naive.rules', 'w') as f:
    sid = 3000000
    for ip in ips:
        sid += 1
        f.write(f'drop ip any any -> {ip} any (msg:"IoC {ip}"; sid:{sid}; rev:1;)\n')
    for d in domains:
        sid += 1
        f.write(f'drop dns any any -> any any (msg:"IoC {d}"; dns.query; content:"{d}"; nocase; endswith; sid:{sid}; rev:1;)\n')
PY

measure() {  # measure NAME CMD... -> sets $secs $kb, tolerates failure
    local name=$1; shift
    /usr/bin/time -o "$OUT/log/$name.time" -f "%e %M %x" "$@" >"$OUT/log/$name.out" 2>&1 || true
    # time(1) puts "Command exited with non-zero status N" first when it fails.
    read -r secs kb rc < <(tail -n 1 "$OUT/log/$name.time") || true
    secs=${secs:-?}; kb=${kb:-0}; rc=${rc:-?}
    echo "   $name: ${secs}s, $((kb / 1024)) MB peak RSS, exit $rc" >&2
}

echo "== offline render" >&2
measure render "$BIN" render --out "$OUT/ours" --source "$OUT/iocs.txt"
render_s=$secs render_mb=$((kb / 1024))

echo "== suricata -T: our rendering" >&2
measure ours suricata -T -c /etc/suricata/suricata.yaml --include "$REPO/overlays/etc/suricata/homewarden.yaml" \
    --set default-rule-path="$OUT/ours" -l "$OUT/log"
ours_s=$secs ours_mb=$((kb / 1024)) ours_rc=$rc

echo "== suricata -T: naive one rule per IoC (stopped at ${NAIVE_LIMIT}s)" >&2
measure naive prlimit --as=$((12 * 1024 * 1024 * 1024)) timeout -s KILL "$NAIVE_LIMIT" \
    suricata -T -c /etc/suricata/suricata.yaml --include "$REPO/overlays/etc/suricata/homewarden.yaml" \
    --set default-rule-path="$OUT/naive" --set rule-files.0=naive.rules -l "$OUT/log"
naive_s=$secs naive_mb=$((kb / 1024)) naive_rc=$rc
case $naive_rc in
    0) naive_note="loaded" ;;
    137) naive_note="stopped at ${NAIVE_LIMIT} s, not loaded" ;;
    1) grep -qi "memory\|alloc" "$OUT/log/naive.out" \
           && naive_note="gave up: out of its 12 GiB address space, not loaded" \
           || naive_note="failed (exit 1; see target/bench/log/naive.out)" ;;
    *) naive_note="failed (exit $naive_rc; see target/bench/log/naive.out)" ;;
esac

echo "== lab: throughput with an empty set, then applying the big set live" >&2
scripts/lab.sh up 2>"$OUT/log/lab-up.log"
LAB=$HW_LAB_DIR
ip netns exec wan iperf3 -s -B 203.0.113.80 -D --logfile "$OUT/log/iperf3-server.log"
# From here on the bench's own agent runs: first with an empty list, then the big one.
kill "$(cat "$LAB/homewarden.pid")"
sleep 0.5
bench_config() {  # bench_config LIST -> $OUT/bench.yaml: the lab's config with LIST as its only source
    sed -e '/^sources:/,$d' -e "s#^state_dir:.*#state_dir: $OUT/state#" "$LAB/homewarden.yaml" >"$OUT/bench.yaml"
    printf 'sources:\n  - name: bench\n    type: list\n    path: %s\n    interval: 1h\n' "$1" >>"$OUT/bench.yaml"
}
: >"$OUT/empty.txt"
bench_config "$OUT/empty.txt"
ip netns exec pi "$BIN" --config "$OUT/bench.yaml" --log warn sync --once >/dev/null
sleep 3  # the reload of the now empty sets
ip netns exec iot curl -sf -m 2 -o /dev/null http://203.0.113.66/ || { echo "bench: the empty set still blocks" >&2; exit 1; }
# Median of three 10-second runs: single runs on a shared 2-core VM vary by ±15 %.
iperf() {
    for _ in 1 2 3; do
        ip netns exec iot iperf3 -c 203.0.113.80 -t 10 -J | /usr/bin/python3 -c \
            'import json,sys; print(round(json.load(sys.stdin)["end"]["sum_received"]["bits_per_second"]/1e6))'
    done | sort -n | sed -n 2p
}
mbps_small=$(iperf)
echo "   iperf3 with an empty set: $mbps_small Mbit/s" >&2

bench_config "$OUT/iocs.txt"
start=${EPOCHREALTIME/./}
measure apply ip netns exec pi "$BIN" --config "$OUT/bench.yaml" --log warn sync --once
apply_s=$secs apply_mb=$((kb / 1024))
# Enforced = the lab host 203.0.113.67, one of the million, stops answering.
until ! ip netns exec iot curl -s -o /dev/null -m 0.3 http://203.0.113.67/; do sleep 0.1; done
end=${EPOCHREALTIME/./}
enforced_s=$(( (end - start) / 100000 ))
enforced_s="$((enforced_s / 10)).$((enforced_s % 10))"
echo "   enforced ${enforced_s}s after the sync started" >&2
suricata_mb=$(( $(awk '/VmRSS/ {print $2}' "/proc/$(cat "$LAB/suricata.pid")/status") / 1024 ))
mbps_big=$(iperf)
echo "   iperf3 with the big set: $mbps_big Mbit/s" >&2
scripts/lab.sh down 2>/dev/null

cat >"$OUT/results.md" <<MD
Measured $(date -u +%Y-%m-%d) on $(nproc) cores, Suricata $(suricata -V | grep -o '[0-9][0-9.]*' | head -1), $N4 IPv4 + $ND domains:

| what | figure |
|------|--------|
| offline render (\`homewarden render\`) | ${render_s} s, ${render_mb} MB peak RSS |
| Suricata start-up (\`suricata -T\`), our dataset rendering | ${ours_s} s, ${ours_mb} MB peak RSS |
| Suricata start-up, naive one rule per IoC | ${naive_s} s, ${naive_mb} MB peak RSS: ${naive_note} |
| live apply to a running Suricata (\`homewarden sync --once\`) | ${apply_s} s, agent ${apply_mb} MB peak RSS |
| from sync start until a listed address is dropped | ${enforced_s} s (non-blocking reload, no restart) |
| Suricata RSS with the set loaded (lab) | ${suricata_mb} MB |
| iperf3 iot -> wan through \`pi\`, empty set | ${mbps_small} Mbit/s |
| iperf3 iot -> wan through \`pi\`, big set | ${mbps_big} Mbit/s ($(( mbps_big * 100 / (mbps_small > 0 ? mbps_small : 1) ))%) |
MD
cat "$OUT/results.md"
