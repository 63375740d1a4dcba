"""Peers and the agent failing under the outbox: every incident must still be
reported exactly once — one MISP event, one mail (or one digest line).

Outages are real: the peer process is stopped (connections refused) and
started again on the same port with the state it had. `alerts.retry_first: 1s`
keeps the retries within seconds.
"""

import json
import socket
import ssl
import subprocess
import threading
import time

from conftest import (BIN, Incident, assert_events_once, assert_mailed_once, drained, mails_covering,
                      misp_add_event, misp_sightings, part, reply_marker, wait_for)


def incidents(n, first=10, net="203.0.113", listed=False):
    t = int(time.time())
    return [Incident(f"{net}.{first + i}", t, listed=listed) for i in range(n)]


def kinds(agent, kind, min_attempts=0):
    return [p for p in agent.pending() if p["kind"] == kind and p["attempts"] >= min_attempts]


def test_misp_down_then_up(world):
    agent = world.make_agent().start()
    world.misp.stop()
    incs = incidents(4)
    # The first incident goes on to 12 alerts: its event update (due at 10) is queued during the outage too.
    agent.send(b"".join(i.line() for i in incs) + incs[0].line() * 11)

    wait_for(lambda: len(kinds(agent, "misp-event", 1)) == 4 and len(kinds(agent, "misp-event-update", 1)) == 1,
             30, "every MISP action to fail at least once")
    # Mail does not wait for MISP.
    wait_for(lambda: len(world.smtp.mails()) == 4, 30, "the mails, while MISP is down")
    assert world.misp.events() == []

    world.misp.start()  # same port, same state file
    wait_for(lambda: drained(agent), 60, "the outbox to drain once MISP is back")

    events = assert_events_once(world.misp, incs)
    updated = next(e for e in events if e["uuid"] == incs[0].uuid)
    assert updated["info"].endswith("(10 alerts)"), updated
    assert_mailed_once(world.smtp, incs)
    st = wait_for(lambda: (s := agent.status())["outbox"]["pending"] == 0 and s, 15, "status to show the outbox empty")
    assert st["outbox"]["dropped"] == 0 and st["outbox"]["corrupt"] == 0, st["outbox"]
    # Four events and the update delivered once each; every one failed at least once first.
    counts = agent.counted({"done.misp": 5, "done.mail": 4, "failed.mail": 0, "mails.incident": 4, "llm.ok": 4})
    assert counts["failed"]["misp"] >= 5, counts
    assert agent.alive()


def test_smtp_down_then_up(world):
    agent = world.make_agent().start()
    world.smtp.stop()
    incs = incidents(4)
    agent.send(b"".join(i.line() for i in incs))

    # Two failed deliveries each: the advice obtained on the first try must be kept, not asked again.
    wait_for(lambda: len(kinds(agent, "mail", 2)) == 4, 40, "every mail to fail twice")
    assert all(p["payload"].get("advice") for p in kinds(agent, "mail")), "advice kept in the outbox item"
    wait_for(lambda: len(world.misp.events()) == 4, 30, "the MISP events, while SMTP is down")

    world.smtp.start()  # same port
    wait_for(lambda: drained(agent), 60, "the outbox to drain once SMTP is back")

    assert_events_once(world.misp, incs)
    mails = assert_mailed_once(world.smtp, incs)
    asked = world.llm.requests()
    assert len(asked) == 4, f"{len(asked)} LLM calls for 4 incidents (advice must survive failed deliveries)"
    counts = agent.counted({"done.mail": 4, "mails.incident": 4, "llm.ok": 4, "done.misp": 4, "failed.misp": 0})
    assert counts["failed"]["mail"] >= 8, counts
    markers = {reply_marker(r) for r in asked}
    for m in mails:
        text = part(m, "plain")
        assert "advice by cohere" in text, text
        assert sum(mk in text for mk in markers) == 1, f"the LLM's own words, once: {text}"


def test_smtp_refusing_data_is_retried(world):
    """451 after DATA (a greylisting or busy server): the mail comes again, and only once."""
    world.smtp.stop()
    world.smtp.extra = ["--fail-next", "2"]
    world.smtp.start()  # same port
    agent = world.make_agent().start()
    incs = incidents(2)
    agent.send(b"".join(i.line() for i in incs))
    wait_for(lambda: drained(agent) and len(world.smtp.mails()) == 2, 30, "both mails")
    assert_mailed_once(world.smtp, incs)
    assert agent.log_text().count("451") >= 2, "both first deliveries were refused"
    assert len(world.llm.requests()) == 2, "advice kept across the refused delivery"


def test_digest_past_the_hourly_limit(world):
    agent = world.make_agent(mail={"max_per_hour": 3}).start()
    incs = incidents(8, first=100)
    agent.send(b"".join(i.line() for i in incs))

    wait_for(lambda: drained(agent) and all(mails_covering(world.smtp.mails(), i) for i in incs), 60,
             "every incident mailed and the outbox drained")
    mails = assert_mailed_once(world.smtp, incs, singles=False)
    assert len(mails) <= 3, [m["Subject"] for m in mails]
    digests = [m for m in mails if "Digest:" in m["Subject"]]
    assert len(digests) >= 1, [m["Subject"] for m in mails]
    # A digest's count is the number of incidents it lists.
    for d in digests:
        n = sum(1 for i in incs if mails_covering([d], i))
        assert f"Digest: {n} incidents ({n} high)" in d["Subject"], (d["Subject"], n)
    assert_events_once(world.misp, incs)
    # Nothing more may go out this hour: the window is persisted and full.
    window = json.loads((agent.state / "mail-window.json").read_text())
    assert len(window["sent"]) == len(mails), window
    # Status counts the same: mails by kind, the incidents the limit folded into digests.
    folded = sum(1 for d in digests for i in incs if mails_covering([d], i))
    agent.counted({"mails.digest": len(digests), "mails.incident": len(mails) - len(digests),
                   "mails.rate_limited": folded, "done.mail": len(incs)})


def test_agent_killed_mid_delivery(world):
    agent = world.make_agent(advisor={"timeout": "30s"}).start()
    # The first advice comes at once, the second hangs: the agent is inside that delivery when killed.
    world.llm.queue({}, {"delay": 20})
    incs = incidents(3)
    agent.send(b"".join(i.line() for i in incs))

    def inside_second_delivery():
        reqs = world.llm.requests()
        return len(world.smtp.mails()) == 1 and len(reqs) == 2 and reqs[1]["status"] is None
    wait_for(inside_second_delivery, 30, "one mail sent and the second delivery waiting on the LLM")
    wait_for(lambda: len(agent.saved_incidents()) == 3, 10, "the incidents saved")
    agent.kill()

    agent.start()
    wait_for(lambda: drained(agent), 60, "the outbox to drain after the restart")
    assert_events_once(world.misp, incs)
    assert_mailed_once(world.smtp, incs)

    # Alerts after the restart count into the same incidents: nothing new is reported.
    agent.send(incs[1].line() * 2)
    st = wait_for(lambda: next((i for i in agent.status()["alerts"]["recent"]
                                if i["id"] == incs[1].id and i["count"] == 3), None),
                  15, "the restored incident to count the new alerts")
    assert st["high"]
    # The alerts were taken (status shows them), and queued nothing: no file, no mail, no event.
    assert drained(agent) and len(world.smtp.mails()) == 3 and len(world.misp.events()) == 3


def test_torn_outbox_files_come_back_from_the_saved_incidents(world):
    agent = world.make_agent().start()
    world.misp.stop()
    world.smtp.stop()
    incs = incidents(3)
    # The first incident goes on to 12 alerts: an event update (due at 10) is queued too.
    agent.send(b"".join(i.line() for i in incs) + incs[0].line() * 11)

    wait_for(lambda: len(kinds(agent, "misp-event", 1)) == 3 and len(kinds(agent, "mail", 1)) == 3
             and len(kinds(agent, "misp-event-update", 1)) == 1, 30, "every action to fail at least once")
    wait_for(lambda: len(agent.saved_incidents()) == 3
             and any(i["count"] == 12 for i in agent.saved_incidents()), 10, "the incidents saved")
    assert agent.stop() == 0

    # A power cut's damage: one event, one mail and the update torn to half their length.
    torn = []
    for pattern in ("*_misp-event.json", "*_mail.json", "*_misp-event-update_10.json"):
        p = sorted(agent.outbox.glob(pattern))[0]
        data = p.read_bytes()
        p.write_bytes(data[:len(data) // 2])
        torn.append(p.name)

    world.misp.start()
    world.smtp.start()
    agent.start()
    wait_for(lambda: drained(agent), 60, "the outbox to drain after the restart")

    assert sorted(p.name for p in (agent.outbox / "corrupt").iterdir()) == sorted(torn), "kept for a human"
    st = agent.status()
    assert st["outbox"]["corrupt"] == 3, st["outbox"]
    events = assert_events_once(world.misp, incs)
    updated = next(e for e in events if e["uuid"] == incs[0].uuid)
    assert updated["info"].endswith("(10 alerts)"), updated
    assert_mailed_once(world.smtp, incs)
    # The torn mail item lost its advice with it, so that one incident was advised twice.
    assert len(world.llm.requests()) == 4


def test_hanging_misp_does_not_hold_back_mail(world):
    """A MISP that takes connections and never answers (the source's 60 s timeout applies)
    must not keep the owner's mail waiting behind it."""
    agent = world.make_agent().start()
    world.misp.stop()
    hole = socket.socket()
    hole.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    hole.bind(("127.0.0.1", world.misp.port))
    hole.listen(64)  # the kernel completes the handshakes; nobody ever reads or answers
    try:
        incs = incidents(3)
        agent.send(incs[0].line())
        wait_for(lambda: len(world.smtp.mails()) == 1, 8, "the first mail while MISP hangs")
        # MISP is stuck in the first event (10 s to give up connecting); later incidents'
        # mail must not wait for it either.
        agent.send(incs[1].line() + incs[2].line())
        wait_for(lambda: len(world.smtp.mails()) == 3, 5, "the later mails while MISP hangs")
        assert len(kinds(agent, "misp-event")) == 3, "the events still wait for MISP"
    finally:
        hole.close()  # the hanging requests fail now, and are retried
    world.misp.start()
    wait_for(lambda: drained(agent), 60, "the outbox to drain once MISP answers")
    assert_events_once(world.misp, incs)
    assert_mailed_once(world.smtp, incs)


def test_event_resent_after_a_crash_is_found_not_duplicated(world):
    """Killed after MISP made the event but before the done marker: the retry must find it."""
    agent = world.make_agent(mail={"to": []}).start()  # mail off: only the MISP side here
    world.misp.stop()
    (inc,) = incidents(1)
    agent.send(inc.line())
    wait_for(lambda: len(kinds(agent, "misp-event", 1)) == 1, 30, "the event action to fail once")
    assert agent.stop() == 0
    (item,) = agent.outbox.glob("*_misp-event.json")
    saved = item.read_bytes()

    world.misp.start()
    agent.start()
    wait_for(lambda: drained(agent) and world.misp.events(), 30, "the event made")
    assert agent.stop() == 0
    # The state a SIGKILL between MISP's answer and the done marker leaves behind.
    (agent.outbox / "done" / item.name).unlink()
    item.write_bytes(saved)

    agent.start()
    wait_for(lambda: drained(agent), 30, "the action settled again")
    assert_events_once(world.misp, [inc])
    adds = [r["status"] for r in world.misp.requests() if r["path"].endswith("/events/add")]
    assert adds == [200, 403], f"the second add must be refused as a duplicate: {adds}"
    assert world.smtp.mails() == []


def test_sighting_on_a_misp_attribute_survives_an_outage(world):
    """A hit on an IoC from MISP is reported as a sighting on that very attribute, not a new event."""
    seeded = misp_add_event(world.misp, {
        "info": "Lab C2 server", "threat_level_id": "1", "distribution": "1", "published": True,
        "Attribute": [{"type": "ip-dst", "category": "Network activity", "value": "203.0.113.66", "to_ids": True}]})
    (attr,) = [a for a in seeded["Attribute"]]
    agent = world.make_agent().start()
    wait_for(lambda: agent.status()["sources"][0]["entries"] == 1, 20, "the agent to hold the MISP attribute")
    world.misp.stop()
    (inc,) = incidents(1, first=66, listed=True)
    # Suricata's rule for the dataset hit: severity 3, high only through the event's threat level.
    agent.send(inc.line(severity=3, extra={"alert": {
        "action": "blocked", "signature_id": inc.sid, "signature": "homewarden: ipv4 blocklist",
        "category": "A Network Trojan was detected", "severity": 3, "metadata": {"homewarden_kind": ["ipv4"]}}}))
    wait_for(lambda: len(kinds(agent, "misp-sighting", 1)) == 1, 30, "the sighting to fail once")
    assert kinds(agent, "misp-event") == []

    world.misp.start()
    wait_for(lambda: drained(agent) and world.smtp.mails(), 60, "the sighting and the mail")
    (s,) = misp_sightings(world.misp)
    assert (s["attribute_id"], s["source"], s["type"]) == (int(attr["id"]), "homewarden", "0"), s
    assert s["date_sighting"] == inc.t
    assert [e["uuid"] for e in world.misp.events()] == [seeded["uuid"]], "no event of our own"
    (mail,) = assert_mailed_once(world.smtp, [inc])
    assert "Lab C2 server" in part(mail, "plain") and "threat level high" in part(mail, "plain")


class StalledTls(threading.Thread):
    """A MISP that completes the TLS handshake, reads the request and never answers."""

    def __init__(self, port, tls):
        super().__init__(daemon=True)
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(str(tls["cert"]), str(tls["key"]))
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", port))
        self.sock.listen(16)
        self.held = []

    def run(self):
        while True:
            try:
                conn, _ = self.sock.accept()
                s = self.ctx.wrap_socket(conn, server_side=True)
                s.recv(65536)
                self.held.append(s)
            except OSError:
                if self.sock.fileno() == -1:
                    return

    def close(self):
        self.sock.close()
        for s in self.held:
            s.close()


def test_a_hanging_misp_pull_holds_up_neither_alerts_nor_the_watchdog(world):
    """The intel pulls wait for MISP (here 15 s, its timeout; 60 s by default), the scheduled one
    and a `homewarden sync` alike; alerts keep being triaged and reported, and systemd's watchdog
    keeps hearing from the agent (WatchdogSec=30s, a ping every 5 s)."""
    world.misp.stop()
    stall = StalledTls(world.misp.port, world.tls)
    stall.start()
    notify_path = world.dir / "notify.sock"
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(notify_path))
    notify.settimeout(0.2)
    sync = None
    try:
        agent = world.make_agent(source={"timeout": "15s"})
        agent.start(env={"NOTIFY_SOCKET": str(notify_path)})
        wait_for(lambda: stall.held, 10, "the agent's scheduled pull to reach the stalled MISP")
        started = time.monotonic()
        sync = subprocess.Popen([BIN, "--config", str(agent.config), "sync", "--once"], stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)
        wait_for(lambda: len(stall.held) == 2, 10, "the sync's own pull to reach the stalled MISP")
        (inc,) = incidents(1)
        agent.send(inc.line())
        pings = []
        # A fixed window on purpose: what is measured is the gaps between pings within it.
        while time.monotonic() - started < 11:
            try:
                if b"WATCHDOG=1" in notify.recv(512):
                    pings.append(time.monotonic() - started)
            except socket.timeout:
                pass
        gaps = [b - a for a, b in zip([0.0] + pings, pings + [11.0])]
        assert max(gaps) < 8, f"watchdog pings at {pings}: the agent looked hung"
        assert world.smtp.mails(), "the incident's mail while the pulls hang"
        assert agent.status()["alerts"]["high_open"] == 1
        out, _ = sync.communicate(timeout=30)
        assert sync.returncode == 1 and "misp: FAILED" in out, out
    finally:
        if sync and sync.poll() is None:
            sync.kill()
            sync.wait()
        stall.close()
        notify.close()


def test_sync_through_the_daemon_reports_and_applies(world):
    """`homewarden sync` asks the running daemon, which pulls beside its loop and answers when done."""
    agent = world.make_agent().start()
    wait_for(lambda: agent.status()["sources"][0]["last_ok"], 20, "the first scheduled pull")
    misp_add_event(world.misp, {
        "info": "published later", "threat_level_id": "2", "distribution": "1", "published": True,
        "Attribute": [{"type": "ip-dst", "category": "Network activity", "value": "203.0.113.77", "to_ids": True}]})
    r = subprocess.run([BIN, "--config", str(agent.config), "sync", "--once"], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "misp: ok" in r.stdout and "applied: +1 -0" in r.stdout, r.stdout
    st = agent.status()
    assert st["blocklist"]["ipv4"] == 1 and st["sources"][0]["entries"] == 1, st["blocklist"]
    rules = (agent.dir / "rules").rglob("*")
    assert any("203.0.113.77" in p.read_text(errors="replace") for p in rules if p.is_file()), \
        "the new address is in the dataset files Suricata reads"
    # The button's 5 s press re-syncs the same way; the press is recorded when the pulls are done.
    r = subprocess.run([BIN, "--config", str(agent.config), "press", "--hold", "5500ms"], capture_output=True,
                       text=True, timeout=30)
    assert r.returncode == 0, r.stdout + r.stderr
    wait_for(lambda: any(p["action"] == "re-sync: ok" for p in agent.status()["presses"]), 20,
             "the re-sync recorded in status")
