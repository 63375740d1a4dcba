#!/usr/bin/env bash
# docs/home-assistant.png: the lab's appliance as a real Home Assistant shows
# it. Needs the lab (scripts/lab.sh up); installs Home Assistant 2023.12 (the
# last release for Debian 12's Python 3.11) into target/ha-venv and Chromium
# from Debian. Home Assistant and Chromium run in the lab's `iot` namespace,
# beside the broker; nothing is left running.
set -euo pipefail
cd "$(dirname "$0")/.."
lab=${HW_LAB_DIR:-/tmp/homewarden-lab}
[ -f "$lab/homewarden.yaml" ] || { echo "ha-screenshot: the lab is not up (scripts/lab.sh up)" >&2; exit 1; }
venv=target/ha-venv conf=target/ha-config out=${1:-docs/home-assistant.png}
command -v chromium >/dev/null || apt-get install -y -qq --no-install-recommends chromium >/dev/null
if [ ! -x $venv/bin/hass ]; then
    /usr/bin/python3 -m venv $venv
    # Pinned: pip's own resolution of 2023.12 today gives packages its frontend breaks on.
    $venv/bin/pip install -q --disable-pip-version-check -r scripts/ha-requirements.txt
fi
rm -rf $conf && mkdir -p $conf
cat >$conf/configuration.yaml <<YAML
homeassistant:
  name: Home
  time_zone: UTC
  country: DE
  unit_system: metric
  currency: EUR
http:
  server_host: 127.0.0.1
  server_port: 8123
frontend:
config:
person:
system_log:
lovelace:
search:
logbook:
history:
device_automation:
repairs:
recorder:
YAML
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT
wait_http() { for _ in $(seq 120); do $1 curl -s -o /dev/null -m 2 http://127.0.0.1:8123/api/ && return 0; sleep 1; done; return 1; }
# First outside the lab: Home Assistant installs its integrations' packages from PyPI.
$venv/bin/hass -c $conf >target/ha-first.log 2>&1 & pids+=($!)
wait_http "" || { tail target/ha-first.log; exit 1; }
$venv/bin/python scripts/ha_screenshot.py onboard $conf/token
kill "${pids[0]}"; wait "${pids[0]}" 2>/dev/null || true; pids=()
ip netns exec iot $venv/bin/hass -c $conf >target/ha.log 2>&1 & pids+=($!)
wait_http "ip netns exec iot" || { tail target/ha.log; exit 1; }
sleep 5
password=$(sed -n 's/^MQTT_PASSWORD=//p' "$lab/.env")
device=$(ip netns exec iot $venv/bin/python scripts/ha_screenshot.py mqtt $conf/token 198.18.1.2 homewarden "$password")
# A blocked connection to the lab's C2, so the page shows an incident.
ip netns exec iot curl -s -m 3 http://203.0.113.66/ >/dev/null || true
sleep 3
ip netns exec iot chromium --headless=new --no-sandbox --disable-gpu --hide-scrollbars \
    --remote-debugging-port=9222 about:blank >target/chromium.log 2>&1 & pids+=($!)
ip netns exec iot $venv/bin/python scripts/ha_screenshot.py shot $conf/token "$device" "$out"
echo "ha-screenshot: $out"
