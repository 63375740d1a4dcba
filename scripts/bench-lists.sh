#!/usr/bin/env bash
# Real-world list sizes through the offline path (not part of the test suite):
#
#   scripts/bench-lists.sh        # ~2.7 M IPv4 + 124 k domains + 1,800 wide networks, ~3 min
#
# The sizes are those of the public lists issue 18 was tried with (firehol
# levels 1-4, blocklist.de, Spamhaus DROP/EDROP/DROPv6, stamparm/ipsum,
# blocklistproject hosts lists, phishing feeds), generated in each list's own
# format (the lists themselves cannot be fetched here): ipsum's `IP<TAB>count`,
# plain addresses, a hosts file with its localhost header, Spamhaus'
# `net ; SBL` lines for v4 and v6. Measured, each with /usr/bin/time:
# 1. `homewarden render` with the shipped warninglists: read, parse, apply
#    the warninglists, build the effective set and write the files;
# 2. `suricata -T` loading that rendering with the appliance's include.
# Results go to target/bench-lists/results.md.
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO"
OUT=$REPO/target/bench-lists
BIN=$REPO/target/release/homewarden
N4=${BENCH_IPV4:-2700000}
ND=${BENCH_DOMAINS:-124000}
scripts/install-deps.sh
cargo build --release --locked --quiet
rm -rf "$OUT" && mkdir -p "$OUT/rules" "$OUT/log"

echo "== generating $N4 IPv4 + $ND domains + Spamhaus-sized wide networks" >&2
/usr/bin/python3 - "$OUT" "$N4" "$ND" <<'PY'
import random, sys
out, n4, nd = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rnd = random.Random(2026)
seen = set()
while len(seen) < n4:
    a = rnd.randrange(0x01000000, 0xDF000000)
    if a >> 24 in (10, 100, 127, 169, 172, 192, 198, 203):
        continue
    seen.add(a)
ips = ['%d.%d.%d.%d' % (a >> 24, a >> 16 & 255, a >> 8 & 255, a & 255) for a in seen]
half = len(ips) // 2
with open(f'{out}/ipsum.txt', 'w') as f:
    f.write('# IPsum Threat Intelligence Feed\n# IP\tnumber of (black)lists\n')
    f.writelines(f'{ip}\t{rnd.randrange(1, 12)}\n' for ip in ips[:half])
with open(f'{out}/firehol.netset', 'w') as f:
    f.write('#\n# firehol_level2\n#\n')
    f.writelines(f'{ip}\n' for ip in ips[half:])
with open(f'{out}/hosts.txt', 'w') as f:
    f.write('# Title: blocklistproject\n127.0.0.1 localhost\n::1 localhost\n0.0.0.0 0.0.0.0\n')
    f.writelines(f'0.0.0.0 h{i}.bad{i % 977}.example\n' for i in range(nd))
with open(f'{out}/drop.txt', 'w') as f:
    f.write('; Spamhaus DROP List\n')
    for i in range(1500):
        plen = rnd.choice([11, 13, 14, 15, 16, 17, 18, 19])
        a = rnd.randrange(0x01000000, 0xDF000000) & (0xFFFFFFFF << (32 - plen))
        f.write('%d.%d.%d.%d/%d ; SBL%d\n' % (a >> 24, a >> 16 & 255, a >> 8 & 255, a & 255, plen, 100000 + i))
with open(f'{out}/dropv6.txt', 'w') as f:
    f.write('; Spamhaus DROPv6 List\n')
    for i in range(300):
        plen = rnd.choice([29, 32, 36, 40, 44, 48])
        a = (0x2000 << 112 | rnd.getrandbits(109) << 3) & ((1 << 128) - (1 << (128 - plen)))
        groups = [(a >> (112 - 16 * k)) & 0xFFFF for k in range(8)]
        f.write('%s/%d ; SBL%d\n' % (':'.join('%x' % g for g in groups), plen, 200000 + i))
PY
cat >"$OUT/homewarden.yaml" <<YAML
warninglists: { dir: $REPO/overlays/usr/share/homewarden/warninglists }
sources:
  - { name: ipsum, type: list, path: $OUT/ipsum.txt }
  - { name: firehol, type: list, path: $OUT/firehol.netset }
  - { name: hosts, type: list, path: $OUT/hosts.txt }
  - { name: drop, type: list, path: $OUT/drop.txt }
  - { name: dropv6, type: list, path: $OUT/dropv6.txt }
YAML

measure() {  # measure NAME CMD... -> sets $secs $mb
    local name=$1; shift
    /usr/bin/time -o "$OUT/log/$name.time" -f "%e %M" "$@" >"$OUT/log/$name.out" 2>&1
    read -r secs kb < <(tail -n 1 "$OUT/log/$name.time")
    mb=$((kb / 1024))
    echo "   $name: ${secs}s, ${mb} MB peak RSS" >&2
}

echo "== render" >&2
measure render "$BIN" --config "$OUT/homewarden.yaml" render --out "$OUT/rules"
render_s=$secs render_mb=$mb
summary=$(grep '^wrote' "$OUT/log/render.out" | sed "s|$OUT/||")
echo "== suricata -T" >&2
measure suricata suricata -T -c /etc/suricata/suricata.yaml --include "$REPO/overlays/etc/suricata/homewarden.yaml" \
    --set default-rule-path="$OUT/rules" -l "$OUT/log"
sur_s=$secs sur_mb=$mb

cat >"$OUT/results.md" <<MD
Real-world list sizes, \`scripts/bench-lists.sh\` ($(date -u +%F), $(nproc) cores):
$N4 IPv4 in ipsum and firehol layouts, $ND names in a hosts file, 1,500
Spamhaus-DROP-style IPv4 networks (/11 to /19) and 300 DROPv6-style ones
(/29 to /48), with the shipped warninglists:

| step | time | peak RSS |
|------|------|----------|
| \`homewarden render\` (read, parse, warninglists, build, write) | ${render_s} s | ${render_mb} MB |
| \`suricata -T\` (load the rendering) | ${sur_s} s | ${sur_mb} MB |

$summary
MD
cat "$OUT/results.md"
