"""End to end on real Suricata in the iot — pi — wan lab: intel in, packets dropped out."""

import contextlib
import json
import os
import signal
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from conftest import BENIGN, BIN, C2, DNS, LATE, REPO, wait_for

PROBE = """
import socket, sys, time
addr, want_open, limit = sys.argv[1], sys.argv[2] == "open", float(sys.argv[3])
start = time.monotonic()
while True:
    s = socket.socket(); s.settimeout(0.15)
    try:
        s.connect((addr, 80)); is_open = True
    except OSError:
        is_open = False
    finally:
        s.close()
    t = time.monotonic() - start
    if is_open == want_open:
        print(f"{t:.3f}"); sys.exit(0)
    if t > limit:
        print(f"{t:.3f}"); sys.exit(1)
    time.sleep(0.02)
"""


def seconds_until(lab, addr, state, limit=3.0):
    """Seconds from now until a TCP connect from iot to addr:80 is `open`/`blocked`."""
    r = lab.ns("iot", "/usr/bin/python3", "-c", PROBE, addr, state, str(limit), timeout=limit + 10)
    assert r.returncode == 0, f"{addr} never became {state} within {limit}s ({r.stdout}{r.stderr})"
    return float(r.stdout)


def misp_admin(lab, *args):
    r = lab.ns("pi", str(REPO / "target/pyenv/bin/python"), str(REPO / "tests/e2e/misp_admin.py"), *args)
    assert r.returncode == 0, r.stdout + r.stderr
    return r.stdout.strip()


def test_embedded_feed_blocks_the_c2_and_benign_traffic_passes(lab):
    assert lab.http_ok(BENIGN)
    assert not lab.http_ok(C2)
    # The C2's domain is dropped at the DNS query, subdomains too; other names resolve.
    assert lab.dns_answers("www.lab-good.test")
    assert not lab.dns_answers("c2.lab-evil.test")
    assert not lab.dns_answers("x.y.c2.lab-evil.test")
    st = lab.status()
    assert st["state"] == "protected", st
    assert st["blocklist"]["ipv4"] >= 1 and st["blocklist"]["domains"] >= 1
    # A hit traces back to the feed's event and attribute.
    out = lab.agent("lookup", "x.c2.lab-evil.test").stdout
    assert "listed as c2.lab-evil.test by source lab-feed" in out, out
    assert "event 8c3e5c1e-6f2a-4d4b-9e51-1a9f4c2b7d01" in out and "threat level high" in out, out
    assert "attribute 5b1d7c8e-0a1b-4c2d-8e3f-4a5b6c7d8e02" in out, out
    assert lab.agent("lookup", BENIGN, check=False).returncode == 1


def test_a_blocked_c2_connection_reaches_the_agent_as_a_traced_incident(lab):
    assert not lab.http_ok(C2)

    def incident():
        return next((i for i in lab.status()["alerts"]["recent"] if i["remote"] == C2), None)

    assert wait_for(lambda: incident() is not None, 10), lab.status()["alerts"]
    inc = incident()
    assert inc["local"] == "198.18.1.2" and inc["blocked"] and inc["high"], inc
    assert inc["ioc"]["source"] == "lab-feed"
    assert inc["ioc"]["attribute_uuid"] == "5b1d7c8e-0a1b-4c2d-8e3f-4a5b6c7d8e01"
    assert inc["ioc"]["threat_level"] == 1
    # More attempts are counted into the same incident, not new ones.
    before = inc["count"]
    assert not lab.http_ok(C2)
    assert wait_for(lambda: incident()["count"] > before, 10)
    assert sum(1 for i in lab.status()["alerts"]["recent"] if i["remote"] == C2) == 1
    # A high incident not from MISP becomes one MISP event (organisation only, TLP:AMBER),
    # the C2 as IoC, the home device as context only; more alerts add no second event.

    def events():
        return [json.loads(line) for line in misp_admin(lab, "events").splitlines()
                if any(a[1] == C2 for a in json.loads(line)["attributes"])]

    assert wait_for(lambda: len(events()) == 1, 15), misp_admin(lab, "events")
    ev = events()[0]
    assert ["ip-dst", C2, True] in ev["attributes"] and ["ip-src", "198.18.1.2", False] in ev["attributes"], ev
    assert ev["distribution"] == 0 and ev["threat_level_id"] == 1 and "tlp:amber" in ev["tags"], ev
    assert not lab.http_ok(C2)
    time.sleep(2)
    assert len(events()) == 1
    # As alerts keep coming the event is updated (at 10, 100… alerts), never duplicated.
    for _ in range(15):
        if incident()["count"] >= 10:
            break
        lab.http_ok(C2)
    assert incident()["count"] >= 10
    assert wait_for(lambda: "(10 alerts)" in events()[0]["info"], 15), events()
    assert len(events()) == 1


def test_a_blocked_c2_mails_the_owner_with_advice_over_starttls(lab):
    import email
    import email.policy

    assert not lab.http_ok(C2)
    maildir = lab.dir / "mail"

    def mails():
        out = []
        for eml in sorted(maildir.glob("*.eml"), key=lambda p: int(p.stem)):
            msg = email.message_from_bytes(eml.read_bytes(), policy=email.policy.default)
            meta = json.loads(eml.with_suffix(".json").read_text())
            out.append((msg, meta))
        return [(m, meta) for m, meta in out if C2 in m["Subject"]]

    assert wait_for(lambda: len(mails()) == 1, 30), sorted(p.name for p in maildir.glob("*"))
    msg, meta = mails()[0]
    # Delivered over TLS after a checked login, to the configured owner.
    assert meta["auth_user"] == "api" and meta["tls"].startswith("TLSv1."), meta
    assert meta["rcpt_tos"] == ["owner@lab.test"], meta
    # The home device by the inventory's name for it (iot's own MAC is a random one), and its address.
    assert msg["Subject"].startswith("[homewarden ") and "High: blocked " in msg["Subject"]
    assert "(198.18.1.2) ↔ 203.0.113.66" in msg["Subject"], msg["Subject"]
    text = msg.get_body(("plain",)).get_content()
    html = msg.get_body(("html",)).get_content()
    # The advice came from the LLM (the double's marker), with the MISP context beside it.
    assert "advice by cohere" in text and "[llm-double reply to " in text, text
    assert "Lab C2 server" in text and "threat level high" in text, text
    assert "[llm-double reply to " in html
    # The prompt left the house without the home device's address.
    prompts = [json.loads(line) for line in (lab.dir / "llm-requests.jsonl").read_text().splitlines()]
    assert prompts and all("198.18.1.2" not in json.dumps(p["json"]) for p in prompts), prompts
    # More blocked attempts are the same incident: no second mail.
    assert not lab.http_ok(C2)
    time.sleep(2)
    assert len(mails()) == 1
    st = lab.status()
    assert st["mail"].startswith("to owner@lab.test via 203.0.113.25:587"), st["mail"]
    assert st["advisor"].startswith("cohere "), st["advisor"]
    # The owner can try the mail settings by hand.
    out = lab.ns("pi", BIN, "--config", str(lab.config), "mail-test")
    assert out.returncode == 0 and "test mail sent to owner@lab.test via 203.0.113.25:587" in out.stdout, out
    assert wait_for(lambda: any("Test mail" in email.message_from_bytes(p.read_bytes())["Subject"]
                                for p in maildir.glob("*.eml")), 10)


def test_the_panel_shows_red_after_a_block_and_green_again_after_a_press(lab):

    def panel():
        return json.loads((lab.dir / "panel.json").read_text())

    assert not lab.http_ok(C2)
    assert wait_for(lambda: panel()["red"]["kind"] != "off", 10), panel()
    assert lab.status()["alerts"]["high_unacked"] >= 1
    lab.agent("press", "--hold", "200ms")
    assert wait_for(lambda: lab.status()["alerts"]["high_unacked"] == 0, 5), lab.status()["alerts"]
    assert any("acknowledged" in p["action"] for p in lab.status()["presses"])
    # Red stops once the blocking stops (10 s) and nothing is left to acknowledge.
    assert wait_for(lambda: panel()["red"]["kind"] == "off", 20), panel()
    assert panel()["green"]["kind"] == "on"
    assert panel()["act"]["kind"] == "heartbeat"
    # The same panel in the terminal.
    out = lab.agent("panel").stdout
    assert "green (on)" in out and "red (off)" in out and "act (heartbeat)" in out, out


def test_a_misp_ioc_is_enforced_within_a_second_of_sync_without_restarting_suricata(lab):
    pid = lab.suricata_pid()
    assert lab.http_ok(LATE)
    assert lab.dns_answers("bad.lab-evil.test")
    # An address and a name in one event: one delta of several commands.
    uuids = misp_admin(lab, "add", LATE, "bad.lab-evil.test").split()

    lab.agent("sync", "--once")
    assert seconds_until(lab, LATE, "blocked") < 1.0
    assert not lab.http_ok(LATE)
    assert not lab.dns_answers("bad.lab-evil.test")
    assert lab.http_ok(BENIGN)
    # The blocked attempt reached the agent; the hit on a MISP attribute goes back to
    # MISP as a sighting on exactly that attribute, once.
    assert wait_for(lambda: misp_admin(lab, "sightings", uuids[0]) == "homewarden", 15), \
        misp_admin(lab, "sightings", uuids[0])
    assert not lab.http_ok(LATE)
    time.sleep(2)
    assert misp_admin(lab, "sightings", uuids[0]) == "homewarden", "one incident, one sighting"

    misp_admin(lab, "delete", *uuids)
    lab.agent("sync", "--once")
    assert seconds_until(lab, LATE, "open") < 1.0
    assert lab.http_ok(LATE)
    assert lab.dns_answers("bad.lab-evil.test")
    assert lab.suricata_pid() == pid, "suricata was restarted"
    st = lab.status()
    assert st["suricata"]["last_live"] == "delta", st["suricata"]


STREAM_SERVER = """
import os, socket, sys, time
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], int(sys.argv[2]))); s.listen(1)
c, _ = s.accept(); c.settimeout(20)
c.recv(64)
end = time.monotonic() + 20
try:
    while time.monotonic() < end:
        c.sendall(os.urandom(32768)); time.sleep(0.005)
except OSError:
    pass
"""

STREAM_CLIENT = """
import os, socket, sys, time
c = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=5)
c.sendall(os.urandom(48))
c.settimeout(2.5)
total, last = 0, time.monotonic()
try:
    while time.monotonic() - last < 2.5:
        d = c.recv(65536)
        if not d:
            break
        total += len(d); last = time.monotonic()
        print(f"{last:.3f} {total}", flush=True)
except OSError:
    pass
"""


def bypassed_flow_to(lab, addr, port):
    """True if the kernel holds a bypassed flow to addr:port."""
    out = lab.ns("pi", "conntrack", "-L", "-m", "0x20000000/0x20000000").stdout
    return any(f"dst={addr}" in line and f"dport={port}" in line for line in out.splitlines())


def assert_download_stopped(client, synced):
    """The STREAM_CLIENT's download was going before `synced` (a monotonic
    time) and got no data later than a second after it."""
    out, _ = client.communicate(timeout=30)
    received = [(float(t), int(n)) for t, n in (line.split() for line in out.splitlines())]
    before = [n for t, n in received if t < synced]
    after = [t for t, n in received if t >= synced]
    assert before and before[-1] > 4 << 20, f"the download never got going: {received[-3:]}"
    last = after[-1] if after else received[-1][0]
    assert last - synced < 1.0, f"data still arrived {last - synced:.2f}s after the sync"


def test_a_bypassed_flow_is_cut_when_its_remote_becomes_listed(lab):
    """Flow bypass lets a long download leave Suricata's queue after its first
    packets; Suricata never sees it again. When the remote is published as an
    IoC, the agent cuts the flow in the kernel within a second of the sync."""
    server = subprocess.Popen(["ip", "netns", "exec", "wan", "/usr/bin/python3", "-c", STREAM_SERVER,
                               LATE, "9100"], stdin=subprocess.DEVNULL)
    time.sleep(0.3)
    client = subprocess.Popen(["ip", "netns", "exec", "iot", "/usr/bin/python3", "-c", STREAM_CLIENT,
                               LATE, "9100"], stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True)
    uuids = []
    try:
        assert wait_for(lambda: bypassed_flow_to(lab, LATE, 9100), 5), lab.ns("pi", "conntrack", "-L").stdout
        time.sleep(0.5)
        uuids = misp_admin(lab, "add", LATE).split()
        lab.agent("sync", "--once")
        assert_download_stopped(client, time.monotonic())
        st = lab.ns("pi", "conntrack", "-L", "-m", "0x40000000/0x40000000").stdout
        assert f"dst={LATE}" in st, st
        # New connections are Suricata's again, and dropped there.
        assert not lab.http_ok(LATE)
    finally:
        client.kill()
        server.kill()
        if uuids:
            misp_admin(lab, "delete", *uuids)
            lab.agent("sync", "--once")
    assert seconds_until(lab, LATE, "open") < 1.0


STREAMS_SERVER = """
import os, socket, sys, threading, time
def serve(c):
    c.settimeout(20)
    try:
        c.recv(64)
        end = time.monotonic() + 20
        while time.monotonic() < end:
            c.sendall(os.urandom(32768)); time.sleep(0.005)
    except OSError:
        pass
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], int(sys.argv[2]))); s.listen(8)
while True:
    threading.Thread(target=serve, args=(s.accept()[0],), daemon=True).start()
"""

REUSE_CLIENT = """
import os, socket, struct, sys, time
def connect(port):
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("198.18.1.2", port)); s.settimeout(3)
    s.connect((sys.argv[1], int(sys.argv[2])))
    return s
port = int(sys.argv[3])
s = connect(port)
s.sendall(os.urandom(48))
got = 0
while got < 2 << 20:
    got += len(s.recv(65536))
time.sleep(float(sys.argv[4]))  # the test checks the flow was bypassed meanwhile
# An abortive close (RST): the port is free again at once, as a busy client's would be.
s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)); s.close()
time.sleep(0.3)
for p in (port, port + 1):
    try:
        c = connect(p); c.sendall(b"again"); c.recv(10); print(p, "connected")
    except OSError as e:
        print(p, type(e).__name__)
"""


def test_a_new_connection_on_a_bypassed_flows_ports_is_refused(lab):
    """Suricata 7 remembers a bypassed flow for 100 s and would take a new
    connection on the same addresses and ports for it, uninspected: the
    kernel refuses that one; the next port is Suricata's as usual."""
    server = subprocess.Popen(["ip", "netns", "exec", "wan", "/usr/bin/python3", "-c", STREAMS_SERVER,
                               BENIGN, "9102"], stdin=subprocess.DEVNULL)
    time.sleep(0.3)
    # Above the kernel's ephemeral range (32768-60999): a port an earlier test's
    # client left in TIME_WAIT would refuse the bind.
    port = 61000 + int(time.time()) % 4000
    client = subprocess.Popen(["ip", "netns", "exec", "iot", "/usr/bin/python3", "-c", REUSE_CLIENT,
                               BENIGN, "9102", str(port), "1.5"], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True)
    try:
        def bypassed():
            out = lab.ns("pi", "conntrack", "-L", "-m", "0x20000000/0x20000000").stdout
            return any(f"sport={port} " in line and "dport=9102" in line for line in out.splitlines())
        if not wait_for(bypassed, 5):
            client.kill()
            out, err = client.communicate()
            raise AssertionError(f"client said {out!r} {err!r}; conntrack:\n" + lab.ns("pi", "conntrack", "-L").stdout)
        out, err = client.communicate(timeout=30)
        assert out.splitlines() == [f"{port} ConnectionRefusedError", f"{port + 1} connected"], out + err
    finally:
        client.kill()
        server.kill()


def test_the_owner_explains_allows_and_unallows_a_misp_ioc(lab):
    uuid = misp_admin(lab, "add", LATE).split()[0]
    lab.agent("sync", "--once")
    assert seconds_until(lab, LATE, "blocked") < 1.0
    assert not lab.http_ok(LATE)

    x = json.loads(lab.agent("explain", LATE, "--json").stdout)
    assert x["verdict"] == "blocked", x
    mine = [item for item in x["listings"] if item.get("attribute_uuid") == uuid]
    assert len(mine) == 1, x
    listing = mine[0]
    assert listing["source"] == "lab-misp" and listing["threat_level"] == 1, listing
    assert "tlp:green" in listing["tags"], listing
    assert listing["link"] == f"https://203.0.113.10:8443/events/view/{listing['event_id']}", listing
    assert listing["since"] > 0 and not x["allowed_by"], x
    text = lab.agent("explain", f"http://{LATE}/index.html").stdout
    assert text.startswith(f"{LATE}: BLOCKED"), text
    assert f"attribute {uuid}" in text and "threat level high" in text, text
    # The same answer without the daemon, from what it persisted.
    offline = lab.dir / "offline.yaml"
    offline.write_text(lab.config.read_text().replace(str(lab.dir / "control.sock"), str(lab.dir / "none.sock")))
    r = subprocess.run([BIN, "--config", str(offline), "explain", LATE, "--json"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["verdict"] == "blocked"
    # What is being blocked now, with its hits.
    blocks = json.loads(lab.agent("blocks", "--json").stdout)
    assert any(b["value"] == LATE and b["hits_24h"] >= 1 for b in blocks["recent"]), blocks

    out = lab.agent("allow", LATE, "--for", "1h", "--reason", "the camera vendor's update server").stdout
    assert "allowed until" in out and "1 false-positive sighting" in out, out
    assert seconds_until(lab, LATE, "open") < 1.0
    x = json.loads(lab.agent("explain", LATE, "--json").stdout)
    assert x["verdict"] == "overridden", x
    assert x["allowed_by"][0].startswith("allowed by root on ") and "camera vendor" in x["allowed_by"][0], x
    assert wait_for(lambda: "homewarden 1" in misp_admin(lab, "sighting-types", uuid).splitlines(), 15), \
        misp_admin(lab, "sighting-types", uuid)
    # The allowance survives an agent restart? It is persisted: the file says so.
    saved = json.loads((lab.dir / "state" / "allowlist.json").read_text())
    assert saved[0]["value"] == LATE and saved[0]["who"] == "root", saved

    out = lab.agent("unallow", LATE).stdout
    assert "enforced again" in out, out
    assert seconds_until(lab, LATE, "blocked") < 1.0
    assert json.loads(lab.agent("explain", LATE, "--json").stdout)["verdict"] == "blocked"
    assert lab.agent("unallow", LATE, check=False).returncode != 0
    # Leaving enforcement (to_ids off in MISP) is told back as an expiration sighting.
    misp_admin(lab, "ids-off", uuid)
    lab.agent("sync", "--once")
    assert seconds_until(lab, LATE, "open") < 1.0
    assert wait_for(lambda: "homewarden 2" in misp_admin(lab, "sighting-types", uuid).splitlines(), 15), \
        misp_admin(lab, "sighting-types", uuid)
    misp_admin(lab, "delete", uuid)


def http_from(lab, source, addr, timeout=2):
    r = lab.ns("iot", "curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "-m", str(timeout),
               "--interface", source, f"http://{addr}/", timeout=timeout + 5)
    return r.returncode == 0 and r.stdout.strip() == "200"


def test_shadow_mode_observes_then_blocks_and_holds_for_a_do_not_break_device(lab):
    watch = lab.dir / "watch-list.txt"   # source lab-watch: shadow 4s
    watch.write_text(LATE + "\n")
    lab.agent("sync", "--once")

    def explained():
        return json.loads(lab.agent("explain", LATE, "--json").stdout)

    x = explained()
    assert x["verdict"] == "observed", x
    assert x["listings"][0]["source"] == "lab-watch" and x["listings"][0]["shadow"]["state"] == "observed", x
    assert lab.status()["shadow"]["observed"] >= 1
    # Observed: the traffic passes and raises an alert, which is no page (not high).
    assert lab.http_ok(LATE)

    def incident():
        return next((i for i in lab.status()["alerts"]["recent"]
                     if i["remote"] == LATE and "shadow" in i["signature"]), None)

    assert wait_for(lambda: incident() is not None, 10), lab.status()["alerts"]
    assert not incident()["high"] and not incident()["blocked"], incident()
    # After the observation period (4 s; checked every 5 s) it is promoted, no sync needed.
    assert wait_for(lambda: not lab.http_ok(LATE, timeout=1), 20)
    assert explained()["verdict"] == "blocked"
    assert lab.status()["shadow"]["observed"] == 0

    # Gone from the list and back: observed afresh. This time a do-not-break device
    # talks to it: it is held, alert only, past its period, until the owner decides.
    # An emptied list is held first (it might be a broken download): the owner accepts it.
    watch.write_text("")
    r = lab.agent("sync", "--once", check=False)
    assert r.returncode == 1 and "lab-watch: HELD: a pull would leave 0 of 1 entries" in r.stdout, r.stdout
    assert "--accept-shrink lab-watch" in r.stdout
    assert any(s["name"] == "lab-watch" and s["held"] for s in lab.status()["sources"])
    assert not lab.http_ok(LATE, timeout=1), "held: still blocked"
    lab.agent("sync", "--once", "--accept-shrink", "lab-watch")
    assert seconds_until(lab, LATE, "open") < 1.0
    watch.write_text(LATE + "\n")
    lab.agent("sync", "--once")
    assert explained()["verdict"] == "observed"
    assert http_from(lab, "198.18.1.3", LATE)
    assert wait_for(lambda: (explained()["listings"][0].get("shadow") or {}).get("state") == "held", 10), explained()
    held = explained()["listings"][0]["shadow"]
    assert held["device"] == "198.18.1.3", held
    time.sleep(10)
    assert lab.http_ok(LATE) and explained()["verdict"] == "observed"
    assert "held, alerts only" in lab.agent("explain", LATE).stdout
    assert lab.status()["shadow"]["held"] == 1
    watch.write_text("")
    lab.agent("sync", "--once", "--accept-shrink", "lab-watch")
    assert seconds_until(lab, LATE, "open") < 1.0


def test_selftest_proves_each_change_and_rolls_a_broken_rendering_back(lab):
    import email
    import email.policy
    # A change of the enforced set is followed by a self-test of the live
    # datasets, which looks the new value up. (Waiting for "a newer run" would
    # race with one a change just before this test set off.)
    uuid = misp_admin(lab, "add", LATE).split()[0]
    lab.agent("sync", "--once")

    def late_checked():
        st = lab.status()["selftest"]
        return any(c["name"] == f"{LATE} in hw-ipv4" and c["ok"] for c in st["checks"])
    assert wait_for(late_checked, 15), lab.status()["selftest"]
    assert lab.status()["selftest"]["ok"], lab.status()["selftest"]
    misp_admin(lab, "delete", uuid)
    lab.agent("sync", "--once")

    # On demand, with the capture replayed through suricata -r.
    r = lab.agent("selftest", "--json")
    st = json.loads(r.stdout)
    names = {c["name"]: c for c in st["checks"]}
    assert st["ok"] and names["the capture's canary packet alerts"]["ok"], st
    assert names["192.0.2.254 in hw-ipv4"]["ok"] and names["every rule loaded"]["ok"], st
    good = (lab.dir / "rules" / "homewarden.rules").read_text()

    # A broken rendering on disk: the replay sees the canary go quiet.
    (lab.dir / "rules" / "homewarden.rules").write_text("# broken by the test\n")
    r = lab.agent("selftest", check=False)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "FAIL the capture's canary packet alerts" in r.stdout and "rolled back" in r.stdout, r.stdout
    assert (lab.dir / "rules" / "homewarden.rules").read_text() == good
    st = lab.status()
    assert st["state"] == "degraded" and any(x.startswith("self-test failed") for x in st["reasons"]), st
    assert wait_for(lambda: json.loads((lab.dir / "panel.json").read_text())["amber"]["kind"] == "on", 10)
    assert not lab.http_ok(C2) and lab.http_ok(BENIGN)

    def notices():
        out = []
        for eml in (lab.dir / "mail").glob("*.eml"):
            msg = email.message_from_bytes(eml.read_bytes(), policy=email.policy.default)
            if "Self-test failed" in msg["Subject"]:
                out.append(msg)
        return out

    assert wait_for(lambda: len(notices()) == 1, 20)
    assert "The last rendering that passed was put back" in notices()[0].get_body(("plain",)).get_content()
    # A second failure while the alarm is on sends no second mail.
    (lab.dir / "rules" / "homewarden.rules").write_text("# broken again\n")
    assert lab.agent("selftest", check=False).returncode == 1
    time.sleep(3)
    assert len(notices()) == 1
    (lab.dir / "rules" / "homewarden.rules").write_text(good)
    # Acknowledging puts the amber light out.
    lab.agent("ack")
    assert wait_for(lambda: not any(x.startswith("self-test") for x in lab.status()["reasons"]), 10)


def test_our_misp_requests_match_the_openapi_spec(lab):
    import subprocess
    import sys
    log = lab.dir / "misp-requests.jsonl"
    ours = lab.dir / "ours.jsonl"
    ours.write_text("".join(line + "\n" for line in log.read_text().splitlines() if "homewarden/" in line))
    r = subprocess.run([sys.executable, str(REPO / "tests/misp/validate_requests.py"), str(ours)],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def test_an_agent_restart_sends_suricata_nothing_twice(lab):
    log = lab.restart_agent("homewarden-restarted.log")
    assert wait_for(lambda: lab.status()["state"] == "protected", 10), lab.status()
    st = lab.status()
    assert st["suricata"]["last_live"] is None, st["suricata"]
    assert "blocklist applied" not in log.read_text()
    assert not lab.http_ok(C2) and lab.http_ok(BENIGN)
    # Suricata reconnects its eve output to the new agent: alerts keep coming.
    assert wait_for(lambda: (lab.http_ok(C2) or True) and lab.status()["alerts"]["intake"]["alerts"] > 0, 20)


@contextlib.contextmanager
def pis_resolver(lab):
    """The Pi's own dnsmasq on 198.18.1.1, as the ap and gateway placements
    run it (its unit's command line), forwarding to the lab's resolver."""
    import shlex
    top = Path(tempfile.mkdtemp(prefix="hw-lab-dns-"))
    top.chmod(0o755)  # dnsmasq reads its resolv-file after dropping root
    try:
        cfg = top / "homewarden.yaml"
        cfg.write_text("network: { placement: gateway, uplink: pi-wan, lan: pi-iot, lan_address: 198.18.1.1/24 }\n")
        root = top / "root"
        lab_agent = subprocess.run([BIN, "--config", str(cfg), "network", "apply", "--root", str(root)],
                                   capture_output=True, text=True, timeout=30)
        assert lab_agent.returncode == 0, lab_agent.stderr
        resolv = root / "run/systemd/resolve/resolv.conf"
        resolv.parent.mkdir(parents=True)
        resolv.write_text("nameserver 203.0.113.53\n")
        unit = (REPO / "overlays/etc/systemd/system/homewarden-dhcp.service").read_text()
        cmd = shlex.split(next(l for l in unit.splitlines() if l.startswith("ExecStart=")).split("=", 1)[1])
        cmd = [a.replace("/run/homewarden/", f"{root}/run/homewarden/") for a in cmd]
        dnsmasq = subprocess.Popen(["ip", "netns", "exec", "pi", *cmd], stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
        try:
            assert wait_for(lambda: lab.dns_answers("www.lab-good.test", server="198.18.1.1"), 10)
            yield "198.18.1.1"
        finally:
            dnsmasq.kill()
            dnsmasq.wait()
    finally:
        shutil.rmtree(top, ignore_errors=True)


def test_queries_to_the_pis_own_resolver_are_inspected_too(lab):
    """In the ap and gateway placements the devices ask the Pi's dnsmasq, not a
    resolver beyond it: the firewall's input queue puts those queries before
    Suricata as well."""
    with pis_resolver(lab) as pi:
        assert not lab.dns_answers("c2.lab-evil.test", server=pi)
        assert not lab.dns_answers("x.c2.lab-evil.test", server=pi)
        # Dropped by Suricata on the way in, not refused by dnsmasq: the
        # same query from the Pi itself (over lo, not queued) is answered.
        assert lab.dns_answers("c2.lab-evil.test", server=pi, netns="pi")


def test_a_bypassed_flow_is_cut_when_its_name_becomes_listed(lab):
    """A device resolves a name through the Pi and opens a long download to
    its address; the flow leaves the queue, and nothing in it names the site
    any more. When the *name* is published, the agent finds the address in
    the DNS answers Suricata saw (the Pi's own answers are queued too) and
    cuts the flow within a second of the sync."""
    server = subprocess.Popen(["ip", "netns", "exec", "wan", "/usr/bin/python3", "-c", STREAM_SERVER,
                               LATE, "9104"], stdin=subprocess.DEVNULL)
    client = None
    uuids = []
    try:
        with pis_resolver(lab) as pi:
            assert lab.dns_answers("bad.lab-evil.test", server=pi)
        time.sleep(0.3)
        client = subprocess.Popen(["ip", "netns", "exec", "iot", "/usr/bin/python3", "-c", STREAM_CLIENT,
                                   LATE, "9104"], stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True)
        assert wait_for(lambda: bypassed_flow_to(lab, LATE, 9104), 5), lab.ns("pi", "conntrack", "-L").stdout
        time.sleep(0.5)
        uuids = misp_admin(lab, "add", "bad.lab-evil.test").split()
        lab.agent("sync", "--once")
        assert_download_stopped(client, time.monotonic())
        cut = lab.ns("pi", "conntrack", "-L", "-m", "0x40000000/0x40000000").stdout
        assert f"dst={LATE}" in cut and "dport=9104" in cut, cut
        # The address itself is not listed: a connection by address alone is
        # Suricata's as before; the name is dropped wherever it shows.
        assert lab.http_ok(LATE)
        assert not lab.dns_answers("bad.lab-evil.test")
    finally:
        if client:
            client.kill()
        server.kill()
        if uuids:
            misp_admin(lab, "delete", *uuids)
            lab.agent("sync", "--once")
    assert wait_for(lambda: lab.dns_answers("bad.lab-evil.test"), 3)


def test_status_tells_the_truth_about_the_packet_path(lab):
    """Not just Suricata's socket: the queue rule, its fail mode and Suricata
    on every queue. A path gone wrong is degraded on status and the panel,
    one mail after a grace period, and one more when it is right again."""
    import email
    maildir = lab.dir / "mail"

    def path_mails(word):
        return [p for p in maildir.glob("*.eml")
                if word in email.message_from_bytes(p.read_bytes())["Subject"]]

    def panel():
        return json.loads((lab.dir / "panel.json").read_text())

    st = lab.status()
    assert st["state"] == "protected", st["reasons"]
    q = st["path"]["queue"]
    assert q["bypass"] and st["path"]["held"] == list(range(q["queues"][0], q["queues"][1] + 1)), st["path"]
    firewall = [BIN, "--config", str(lab.config), "firewall"]
    down_at = time.monotonic()
    assert lab.ns("pi", *firewall, "down").returncode == 0
    try:
        assert wait_for(lambda: any("not queued to Suricata" in r for r in lab.status()["reasons"]), 7), \
            lab.status()["reasons"]
        assert lab.status()["state"] == "degraded"
        assert wait_for(lambda: panel()["green"]["kind"] == "off", 5), panel()
        assert "path: NOT queued" in lab.agent("status").stdout
        assert wait_for(lambda: len(path_mails("Packet path degraded")) == 1, 30)
        assert time.monotonic() - down_at >= 14, "mailed before the grace period"
    finally:
        r = lab.ns("pi", *firewall, "up", "--suricata-env", str(lab.dir / "suricata.env"))
        assert r.returncode == 0, r.stderr
    assert wait_for(lambda: lab.status()["state"] == "protected", 7), lab.status()["reasons"]
    assert wait_for(lambda: len(path_mails("Packet path restored")) == 1, 15)
    assert len(path_mails("Packet path degraded")) == 1
    assert wait_for(lambda: panel()["green"]["kind"] == "on", 5), panel()


# The queue rule spreads packets over the queues by a hash of their
# addresses and protocol (not ports): so the flood is what the check after it
# is, TCP from the device to BENIGN, and fills the queue that check lands in.
# One SYN per socket (a non-blocking connect, then close: no RST follows).
FLOOD = """
import socket, sys
for i in range(int(sys.argv[2])):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setblocking(False)
    try:
        s.connect((sys.argv[1], 9))
    except BlockingIOError:
        pass
    s.close()
"""


DNS_FLOOD = """
import socket, struct, sys, time
name, server, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
q = b''.join(bytes([len(p)]) + p.encode() for p in name.split('.')) + b'\\0' + struct.pack('>HH', 1, 1)
first = int(sys.argv[4]) if len(sys.argv) > 4 else 0
# Queries a second, at most (0: as fast as the loop goes). Unpaced, a busy
# 2-core machine fills Suricata's queue and fail-open's queue-bypass lets
# part of the flood through uninspected: fewer alerts raised than queries.
rate = float(sys.argv[5]) if len(sys.argv) > 5 else 0
start = time.monotonic()
for i in range(n):
    if rate and i % 100 == 0:
        ahead = start + i / rate - time.monotonic()
        if ahead > 0:
            time.sleep(ahead)
    # A socket (a flow) each: a dropped flow raises no second alert. With a
    # first port, each query leaves from a port of its own (first, first + 1,
    # ...): the kernel's random ephemeral ports repeat within a flood of
    # thousands, and a repeated port joins a flow Suricata already dropped.
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    if first:
        s.bind(('', first + i))
    s.sendto(struct.pack('>HHHHHH', i & 0xffff, 0x0100, 1, 0, 0, 0) + q, (server, 53))
    s.close()
"""


METRICS = "http://127.0.0.1:9617/metrics"
# Kinds as status names them, as the metrics do.
KIND = {"net": "network"}
METRICS_TOKEN = "homewarden-lab-metrics-token-000000"


def scrape(lab, token=METRICS_TOKEN):
    """(HTTP code, {sample name with labels: value}) of /metrics, from the agent's namespace."""
    r = lab.ns("pi", "curl", "-s", "-m", "5", "-H", f"Authorization: Bearer {token}",
               "-w", "\n%{http_code}", METRICS)
    body, _, code = r.stdout.rpartition("\n")
    samples = {}
    for line in body.splitlines() if code == "200" else []:
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            samples[name] = float(value)
    return code, samples


def test_the_metrics_say_what_status_says_and_a_real_prometheus_scrapes_them(lab):
    assert scrape(lab, token="wrong")[0] == "401"
    # A pull of every source through the agent: the pulls' counters and durations have values.
    lab.agent("sync", "--once")

    def agree():
        s = lab.status()
        code, m = scrape(lab)
        b, a, p, r = s["blocklist"], s["alerts"], s["path"], s["responders"]
        want = {
            f'homewarden_state{{state="{s["state"]}"}}': 1,
            'homewarden_indicators_enforced{kind="ipv4"}': b["ipv4"],
            'homewarden_indicators_enforced{kind="domain"}': b["domains"],
            'homewarden_indicators_enforced{kind="sha256"}': b["sha256"],
            "homewarden_alerts_received_total": a["intake"]["alerts"],
            'homewarden_incidents_open{severity="high"}': a["high_open"],
            "homewarden_suricata_up": int(s["suricata"]["reachable"]),
            'homewarden_applies_total{how="delta"}': s["suricata"]["applies"]["delta"],
            'homewarden_applies_total{how="reload"}': s["suricata"]["applies"]["reload"],
            **{f'homewarden_source_indicators{{source="{src["name"]}",kind="{KIND.get(k, k)}"}}': n
               for src in s["sources"] for k, n in src["kinds"].items()},
            **{f'homewarden_source_pulls_total{{source="{src["name"]}",outcome="taken"}}':
               src["pulls"]["taken"] for src in s["sources"]},
            # The packet path, as the health check last read it.
            "homewarden_path_queued_packets_total": (p["queue"] or {}).get("packets"),
            'homewarden_path_queues{state="unheld"}': 0,
            "homewarden_path_fail_open": (p["queue"] or {}).get("bypass"),
            "homewarden_path_bypassed_flows": p["bypassed_flows"],
            "homewarden_path_queue_full_drops_total": p["queue_full_drops"],
            # Not known before the first health check (then not served either).
            'homewarden_suricata_verdicts_total{verdict="accepted"}': (p["suricata_verdicts"] or [None])[0],
            'homewarden_suricata_verdicts_total{verdict="blocked"}': (p["suricata_verdicts"] or [None, None])[1],
            # The responders.
            **{f'homewarden_outbox_pending{{responder="{who}"}}': s["outbox"]["pending_by"].get(who, 0)
               for who in ("misp", "mail")},
            **{f'homewarden_mails_sent_total{{kind="{k}"}}': r["mails"][k] for k in ("incident", "digest", "notice")},
            **{f'homewarden_llm_calls_total{{outcome="{k}"}}': r["llm"][k] for k in ("ok", "rate_limited", "failed")},
            **{f'homewarden_responder_attempts_total{{responder="{who}",outcome="done"}}': r["done"].get(who, 0)
               for who in ("misp", "mail")},
            # The device inventory.
            "homewarden_devices": s["devices"]["known"],
            "homewarden_devices_seen_24h": s["devices"]["seen_24h"],
            "homewarden_devices_quarantined": len(s["devices"]["quarantined"]),
        }
        agree.last = (want, {k: m.get(k) for k in want})
        return code == "200" and all(m.get(k) == v for k, v in want.items())
    # Status and a scrape are two reads: the same once nothing moves between them.
    assert wait_for(agree, 10, step=0.5), agree.last

    # Prometheus itself scrapes the agent with the token and stores what it read.
    work = Path(tempfile.mkdtemp(prefix="hw-prom-"))
    (work / "prometheus.yml").write_text(
        "global: { scrape_interval: 1s }\n"
        "scrape_configs:\n"
        "  - job_name: homewarden\n"
        f"    authorization: {{ credentials: {METRICS_TOKEN} }}\n"
        "    static_configs: [{ targets: ['127.0.0.1:9617'] }]\n")
    prom = subprocess.Popen(["ip", "netns", "exec", "pi", "prometheus",
                             f"--config.file={work / 'prometheus.yml'}",
                             f"--storage.tsdb.path={work / 'data'}",
                             "--web.listen-address=127.0.0.1:19090"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        def query(q):
            r = lab.ns("pi", "curl", "-s", "-m", "3", "--get", "--data-urlencode", f"query={q}",
                       "http://127.0.0.1:19090/api/v1/query")
            try:
                return json.loads(r.stdout)["data"]["result"]
            except (ValueError, KeyError):
                return []
        assert wait_for(lambda: query('up{job="homewarden"} == 1'), 30, step=0.5), prom.stderr
        domains = query('homewarden_indicators_enforced{kind="domain"}')
        assert domains and float(domains[0]["value"][1]) == lab.status()["blocklist"]["domains"], domains

        # Every query of the Grafana dashboard in docs/ runs on this Prometheus and finds
        # data (Grafana's own variables filled in as Grafana would); a filter such as
        # `== 0` may find none.
        board = json.loads((REPO / "docs/grafana/homewarden.json").read_text())
        for panel in board["panels"]:
            for target in panel["targets"]:
                expr = target["expr"].replace("$__rate_interval", "30s").replace("$instance", ".*")
                found = wait_for(lambda: query(expr), 20, step=1)
                assert found or expr.endswith("== 0"), f'{panel["title"]}: {expr} found nothing'
    finally:
        prom.terminate()
        prom.wait(timeout=10)
        shutil.rmtree(work, ignore_errors=True)


MQTT = ("-h", "198.18.1.2", "-u", "homewarden", "-P", "homewarden-lab-mqtt-password-0000")
# What Home Assistant's MQTT discovery documentation requires of each component.
REQUIRED = {"sensor": {"state_topic"}, "binary_sensor": {"state_topic"}, "button": {"command_topic"}}


def mqtt_retained(lab, topic, count=1):
    """{topic: payload} of (up to `count`) retained messages under `topic`, read
    as Home Assistant would from the broker on the devices' side."""
    r = lab.ns("iot", "mosquitto_sub", *MQTT, "-t", topic, "-v", "--retained-only", "-C", str(count),
               "-W", "3")
    out = {}
    for line in r.stdout.splitlines():
        t, _, payload = line.partition(" ")
        out[t] = payload
    return out


def test_home_assistant_sees_the_appliance_an_incident_and_presses_its_button(lab):
    node = (lab.dir / "state" / "homeassistant-node-id").read_text().strip()
    base = f"homewarden/{node}"
    assert wait_for(lambda: mqtt_retained(lab, f"{base}/availability").get(f"{base}/availability") == "online", 15)
    mqtt = lab.status()["mqtt"]
    assert mqtt["connected"] and mqtt["broker"] == "mqtt://198.18.1.2:1883" and mqtt["node"] == node, mqtt
    assert "home assistant: connected to mqtt://198.18.1.2:1883" in lab.agent("status").stdout

    # Discovery: one device, ten entities (the device inventory's two counts
    # too), each config as the docs require.
    configs = {t: json.loads(p) for t, p in mqtt_retained(lab, "homeassistant/#", 10).items()
               if t.endswith("/config")}
    assert len(configs) == 10, sorted(configs)
    published = mqtt_retained(lab, f"{base}/#", 3)
    shown = json.loads(published[f"{base}/state"])
    assert shown["devices"] >= 3 and shown["quarantined"] == 0, shown
    for topic, cfg in configs.items():
        prefix, component, n, obj, _ = topic.split("/")
        assert (prefix, n) == ("homeassistant", node), topic
        assert REQUIRED[component] <= set(cfg), (topic, cfg)
        # Stable across restarts: made from the node id kept in the state directory.
        assert cfg["unique_id"] == f"homewarden_{node}_{obj}", cfg
        assert cfg["device"]["identifiers"] == [f"homewarden_{node}"], cfg
        assert cfg["availability_topic"] == f"{base}/availability"
        for key in ("state_topic", "json_attributes_topic"):
            if key in cfg:  # a topic the agent really publishes, retained
                assert cfg[key] in published, (topic, key, cfg[key], sorted(published))
        if "value_template" in cfg:  # a key the state has
            key = cfg["value_template"].removeprefix("{{ value_json.").removesuffix(" }}")
            assert key in shown, (topic, cfg["value_template"], shown)

    def state():
        return json.loads(mqtt_retained(lab, f"{base}/state").get(f"{base}/state", "{}"))

    # A fresh listed address (from MISP, threat level high), then a device reaches for it.
    lab.agent("ack")
    assert wait_for(lambda: state().get("threat") != "alert", 10), state()
    fresh = "203.0.113.68"
    uuids = misp_admin(lab, "add", fresh).split()
    try:
        lab.agent("sync", "--once")
        before = state()["blocked_today"]
        assert not lab.http_ok(fresh)
        assert wait_for(lambda: state().get("threat") == "alert", 15), state()
        s = state()
        assert s["open_high"] >= 1 and s["blocked_today"] > before and s["last_incident"].endswith(fresh), s
        attrs = json.loads(mqtt_retained(lab, f"{base}/last_incident")[f"{base}/last_incident"])
        assert attrs["remote"] == fresh and attrs["source"] == "lab-misp", attrs
        assert attrs["misp_event"].startswith("https://203.0.113.10:8443/events/view/"), attrs

        # The Acknowledge button, pressed in Home Assistant, does what the panel's press does.
        r = lab.ns("iot", "mosquitto_pub", *MQTT, "-t", f"{base}/command", "-m", "ack")
        assert r.returncode == 0, r.stderr
        assert wait_for(lambda: lab.status()["alerts"]["high_unacked"] == 0, 10), lab.status()["alerts"]
        assert wait_for(lambda: state().get("threat") != "alert", 10), state()
        assert any("acknowledged" in p["action"] for p in lab.status()["presses"])
    finally:
        misp_admin(lab, "delete", *uuids)
        lab.agent("sync", "--once")


def test_a_listed_name_in_a_quic_handshake_is_dropped_and_an_unlisted_one_passes(lab):
    """Real QUIC (aioquic) from iot to a server nobody lists: the listed name
    in the Initial's SNI is what is dropped, not the address."""
    fresh = "203.0.113.90"
    peer = str(REPO / "tests/e2e/quic_peer.py")
    py = str(REPO / "target/pyenv/bin/python")
    server = subprocess.Popen(["ip", "netns", "exec", "wan", py, peer, "serve", fresh,
                               str(lab.dir / "llm.pem"), str(lab.dir / "llm.key")],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        def handshake(sni):
            return lab.ns("iot", py, peer, "connect", fresh, sni, "3", timeout=20).returncode == 0

        assert wait_for(lambda: handshake("update.lab-fresh.test"), 10), "an unlisted name passes"
        assert not handshake("c2.lab-evil.test")
        assert not handshake("www.c2.lab-evil.test"), "a name under a listed one"
        assert handshake("update.lab-fresh.test"), "the server itself is not blocked"

        def quic_drops():
            out = []
            for line in (lab.dir / "log" / "eve.json").read_text().splitlines():
                ev = json.loads(line)
                if ev.get("event_type") == "alert" and ev["alert"]["signature"].startswith("homewarden: QUIC SNI"):
                    out.append(ev)
            return out

        assert wait_for(lambda: len(quic_drops()) >= 2, 10)
        for ev in quic_drops():
            assert ev["dest_ip"] == fresh and ev["alert"]["action"] == "blocked", ev
            assert ev["quic"]["sni"] in ("c2.lab-evil.test", "www.c2.lab-evil.test"), ev
        # One incident per listed name and device, whichever protocol named it.
        inc = [i for i in lab.status()["alerts"]["recent"] if i["remote"] == "c2.lab-evil.test"
               and i["local"] == "198.18.1.2"]
        assert len(inc) == 1 and inc[0]["blocked"] and inc[0]["listed"], inc
    finally:
        server.kill()
        server.wait()


# A resolver on port 853 in `wan`: TCP (DNS over TLS) and UDP (DNS over QUIC),
# writing one line per connection or datagram it got.
PORT_853 = """
import socket, sys, threading
addr, seen = sys.argv[1], open(sys.argv[2], "a", buffering=1)
t = socket.socket(); t.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
t.bind((addr, 853)); t.listen()
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.bind((addr, 853))
def udp():
    while True:
        data, peer = u.recvfrom(2048); seen.write(f"udp {peer[0]}\\n"); u.sendto(data, peer)
threading.Thread(target=udp, daemon=True).start()
while True:
    c, peer = t.accept(); seen.write(f"tcp {peer[0]}\\n"); c.close()
"""

# From `iot`: a TCP connection and a UDP exchange with port 853, each
# reported as it ended and how long it took.
TRY_853 = """
import socket, sys, time
addr = sys.argv[1]
t0 = time.monotonic()
try:
    socket.create_connection((addr, 853), timeout=3).close(); tcp = "connected"
except ConnectionRefusedError:
    tcp = "refused"
except OSError as e:
    tcp = type(e).__name__
print("tcp", tcp, round(time.monotonic() - t0, 2))
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.settimeout(3); u.connect((addr, 853))
t0 = time.monotonic()
try:
    u.send(b"doq"); u.recv(64); udp = "answered"
except ConnectionRefusedError:
    udp = "refused"
except OSError as e:
    udp = type(e).__name__
print("udp", udp, round(time.monotonic() - t0, 2))
"""


def test_encrypted_dns_past_the_homes_resolver_is_refused_at_once_and_reported(lab):
    """A device resolving over DNS over TLS or over QUIC (port 853) to a
    resolver outside the home: the domain sets would never see its queries.
    By default DNS over TLS is refused at once (a reset: Android's automatic
    Private DNS falls back to plain DNS without waiting) and DNS over QUIC
    dropped, each reported as a low incident (no page), and status names
    the device."""
    fresh = "203.0.113.90"
    seen = lab.dir / "port-853.log"
    seen.write_text("")
    server = subprocess.Popen(["ip", "netns", "exec", "wan", "/usr/bin/python3", "-c", PORT_853, fresh, str(seen)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        # Listening: the Pi itself (not forwarded, not queued) reaches it.
        assert wait_for(lambda: lab.ns("pi", "/usr/bin/python3", "-c",
                                       f"import socket; socket.create_connection(('{fresh}', 853), 2)")
                        .returncode == 0, 10)
        r = lab.ns("iot", "/usr/bin/python3", "-c", TRY_853, fresh, timeout=20)
        assert r.returncode == 0, r.stderr
        got = {line.split()[0]: (line.split()[1], float(line.split()[2])) for line in r.stdout.splitlines()}
        assert got["tcp"][0] == "refused" and got["tcp"][1] < 1.5, got
        # DNS over QUIC is dropped: the client waits out its attempt.
        assert got["udp"][0] == "TimeoutError", got
        assert "198.18.1.2" not in seen.read_text(), "nothing of the device's reached the resolver"

        def incidents():
            return [i for i in lab.status()["alerts"]["recent"] if i["sid"] in (1666080, 1666081)]

        assert wait_for(lambda: len(incidents()) == 2, 10), lab.status()["alerts"]["recent"]
        for inc in incidents():
            assert inc["blocked"] and not inc["high"] and not inc["listed"], inc
            assert inc["local"] == "198.18.1.2" and inc["remote"] == fresh, inc
        tried = lab.status()["alerts"]["encrypted_dns"]
        assert [(t["value"], t["hits_24h"]) for t in tried] == [("198.18.1.2", 2)], tried
        out = lab.agent("status").stdout
        line = next((x for x in out.splitlines() if x.startswith("encrypted DNS past the home's resolver")), "")
        assert line.startswith("encrypted DNS past the home's resolver, last 24 h: 1 device: "), out
        assert "198.18.1.2" in line and ": 2 tries, last " in line, line
        out = lab.agent("explain", "1666080").stdout
        assert "refuses it at once (enforcement.dns_bypass: block)" in out, out
        assert "signature 1666081: `homewarden explain 1666081`" in lab.agent("blocks").stdout
        r = lab.agent("signatures", "allow", "1666080", "198.18.1.2", check=False)
        assert r.returncode != 0 and "add 198.18.1.2 to enforcement.dns_bypass_allow" in r.stderr, r.stderr
        # Plain DNS to the home's resolver is what it falls back to: answered.
        assert lab.dns_answers("www.lab-good.test")
    finally:
        server.kill()
        server.wait()


def test_alerts_the_agent_never_got_are_counted_not_lost_silently(lab):
    """The agent stalls (SIGSTOP) while a device floods queries for a listed
    name: Suricata fills the agent's eve socket and drops what does not fit.
    Its own alert counter says how many it raised; status shows how many of
    those never arrived."""
    pid = int((lab.dir / "homewarden.pid").read_text().strip())
    # The agent must already be comparing with Suricata's counter (its first
    # look sets the base): soon after it starts, a first look taken after the
    # flood, from a counter a stats interval behind, would count only the
    # flood's tail. One alert seen counted proves the comparison runs.
    start = lab.status()["alerts"]["loss"]["raised"]
    assert not lab.http_ok(C2)
    assert wait_for(lambda: lab.status()["alerts"]["loss"]["raised"] > start, 30), lab.status()["alerts"]
    before = lab.status()["alerts"]["loss"]
    os.kill(pid, signal.SIGSTOP)
    try:
        # 20,000 flows from ports 10000-29999, below the kernel's ephemeral
        # range (32768-60999), so no other socket in the namespace holds one;
        # 2,500 a second: every one inspected (and alerted) by Suricata, far
        # more than the agent's stopped socket holds.
        r = lab.ns("iot", "/usr/bin/python3", "-c", DNS_FLOOD, "c2.lab-evil.test", DNS, "20000",
                   "10000", "2500", timeout=120)
        assert r.returncode == 0, r.stderr
        time.sleep(1)
    finally:
        os.kill(pid, signal.SIGCONT)

    # Suricata's counters are a stats interval (8 s) behind and the agent
    # reads them once a tick (5 s): a reading taken in the middle of the
    # flood has part of it. Wait for the whole count, not the first change.
    def counted():
        loss = lab.status()["alerts"]["loss"]
        return loss["raised"] - before["raised"] >= 10000 and loss["missing"] > before["missing"]

    if not wait_for(counted, 60):
        st = lab.status()
        raise AssertionError(f"before {before}, now {st['alerts']['loss']}, intake {st['alerts']['intake']}, "
                             f"suricata {st['suricata']}, path {st['path']}")
    loss = lab.status()["alerts"]["loss"]
    got = lab.status()["alerts"]["intake"]["alerts"]
    assert "NEVER ARRIVED" in lab.agent("status").stdout
    # The books balance: what was raised either arrived or is missing.
    assert loss["missing"] <= loss["raised"] and got > 0, (loss, got)


def test_a_full_queue_passes_everything_when_open_and_nothing_when_closed(lab):
    """Suricata alive but stalled (SIGSTOP) keeps its queues: the firewall's
    `bypass` does not apply, only Suricata's nfq.fail-open, which follows
    enforcement.fail. Flood the queue the check lands in until it is full."""
    import os

    def switch(fail):
        r = lab.ns("pi", BIN, "--config", str(lab.config), "firewall", "up", "--fail", fail,
                   "--suricata-env", str(lab.dir / "suricata.env"))
        assert r.returncode == 0, r.stdout + r.stderr
        lab.run("restart-suricata")
        cmdline = Path(f"/proc/{lab.suricata_pid()}/cmdline").read_bytes().split(b"\0")
        assert f"nfq.fail-open={'yes' if fail == 'open' else 'no'}".encode() in cmdline, cmdline

    def stalled_and_flooded():
        os.kill(lab.suricata_pid(), signal.SIGSTOP)
        floods = [subprocess.Popen(["ip", "netns", "exec", "iot", "taskset", "-c", str(cpu),
                                    "/usr/bin/python3", "-c", FLOOD, BENIGN, "8000"])
                  for cpu in range(os.cpu_count() or 1)]
        for f in floods:
            assert f.wait(timeout=60) == 0

    try:
        stalled_and_flooded()
        # fail-open: with the queues full, packets pass uninspected.
        assert wait_for(lambda: lab.http_ok(BENIGN), 5)
        assert lab.http_ok(C2), "fail-open passes what Suricata would drop: that is its cost"
    finally:
        os.kill(lab.suricata_pid(), signal.SIGCONT)
    assert wait_for(lambda: not lab.http_ok(C2), 10)

    switch("closed")
    # The config still says open: the agent says the kernel disagrees.
    assert wait_for(lambda: any("fail-closed but enforcement.fail is fail-open" in r
                                for r in lab.status()["reasons"]), 10), lab.status()["reasons"]
    try:
        stalled_and_flooded()
        assert not lab.http_ok(BENIGN)
        assert not lab.http_ok(C2)
    finally:
        os.kill(lab.suricata_pid(), signal.SIGCONT)
    assert wait_for(lambda: lab.http_ok(BENIGN), 10)
    assert not lab.http_ok(C2)
    switch("open")
    assert wait_for(lambda: lab.status()["state"] == "protected", 20), lab.status()["reasons"]


def test_suricata_down_fails_open_or_closed_as_configured(lab):
    import os
    os.kill(lab.suricata_pid(), signal.SIGKILL)
    # fail-open: with nobody on the queue, traffic passes uninspected.
    assert wait_for(lambda: lab.http_ok(BENIGN), 5)
    assert lab.http_ok(C2)
    assert wait_for(lambda: lab.status()["state"] == "degraded", 15)
    assert any("suricata" in r for r in lab.status()["reasons"])
    # fail-closed: the same outage stops forwarded traffic.
    r = lab.ns("pi", BIN, "--config", str(lab.config), "firewall", "up", "--fail", "closed",
               "--suricata-env", str(lab.dir / "suricata.env"))
    assert r.returncode == 0, r.stdout + r.stderr
    assert not lab.http_ok(BENIGN)
    assert not lab.http_ok(C2)
    time.sleep(0)  # the module fixture tears the lab down

