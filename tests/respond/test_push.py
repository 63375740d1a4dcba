"""Push targets (`notify:`) under the outbox: ntfy, the signed webhook and a
Matrix room, each answering as its published API does (tests/push/push_double.py;
tests/push/test_synapse.py runs the Matrix part against a real homeserver).
Every incident reaches every target exactly once, through outages, 429s with
a wait, 5xx answers, the hourly limit and a crash mid-delivery.
"""

import subprocess
import sys
import time

from conftest import BIN, TESTS, Incident, drained, mentions, wait_for

sys.path.insert(0, str(TESTS / "push"))
from homeserver import Synapse  # noqa: E402


def incidents(n, first=10, net="203.0.113"):
    t = int(time.time())
    return [Incident(f"{net}.{first + i}", t) for i in range(n)]


def pushed(world):
    """Every service's deliveries as {service: [text it shows]}."""
    p = world.push
    return {
        "ntfy": [m["title"] + "\n" + m["message"] for m in p.delivered("ntfy")],
        "webhook": [b["title"] + "\n" + b["text"] for b in p.delivered("webhook")],
        "matrix": [e["content"]["body"] for e in p.delivered("matrix")],
    }


def assert_each_once(world, incs, singles=True):
    """Every target told of every incident exactly once: its own message (or, with
    singles=False, its own message or one digest line)."""
    for service, texts in pushed(world).items():
        for inc in incs:
            own = [t for t in texts if inc.id in t]
            covering = [t for t in texts if mentions(t, inc.remote)]
            if singles:
                assert len(own) == 1 and len(covering) == 1, (service, inc, texts)
            else:
                assert len(covering) == 1, (service, inc, texts)


def test_every_incident_reaches_every_target_once_as_each_api_wants(world):
    agent = world.make_agent(notify=world.push.targets()).start()
    incs = incidents(3)
    agent.send(b"".join(i.line() for i in incs))
    wait_for(lambda: drained(agent) and all(len(v) == 3 for v in pushed(world).values()), 30,
             "three pushes on each target")
    assert_each_once(world, incs)

    ntfy = world.push.delivered("ntfy")[0]
    assert ntfy["topic"] == "hw-home" and ntfy["priority"] == 4, ntfy
    assert "homewarden explain" in ntfy["message"] and "\n1. " in ntfy["message"], ntfy["message"]
    hooks = world.push.delivered("webhook")
    # Signed (the double refuses a bad signature), one delivery id per incident and target.
    assert sorted(h["id"] for h in hooks) == sorted(f"{i.id}:push-hook" for i in incs)
    assert all(h["type"] == "incident" and h["incidents"][0]["id"] in h["id"] for h in hooks), hooks
    assert all(h["advice"]["by"] == "offline" and len(h["advice"]["steps"]) == 2 for h in hooks), hooks
    events = world.push.delivered("matrix")
    assert {e["content"]["msgtype"] for e in events} == {"m.text"}
    assert all("<b>homewarden" in e["content"]["formatted_body"] for e in events), events

    # The mails go out as before; status counts each target.
    wait_for(lambda: len(world.smtp.mails()) == 3, 30, "the mails")
    counts = agent.counted({"pushes.phone.incident": 3, "pushes.hook.incident": 3, "pushes.room.incident": 3,
                            "done.push": 9, "failed.push": 0})
    assert counts["mails"]["incident"] == 3, counts
    st = agent.status()
    # Where each target sends, never the topic or a webhook's path (its secret).
    assert any(n.startswith("phone (ntfy): a topic at ") for n in st["notify"]), st["notify"]
    assert not any("hw-home" in n for n in st["notify"]), st["notify"]


def test_a_target_down_then_up_gets_everything_once_and_holds_up_no_mail(world):
    agent = world.make_agent(notify=world.push.targets()).start()
    world.push.stop()
    incs = incidents(2, first=20)
    agent.send(b"".join(i.line() for i in incs))
    wait_for(lambda: len([p for p in agent.pending() if p["kind"] == "push" and p["attempts"] >= 1]) == 6, 30,
             "every push to fail at least once")
    wait_for(lambda: len(world.smtp.mails()) == 2, 30, "the mails, while the push services are down")
    world.push.start()  # same port, same state
    wait_for(lambda: drained(agent), 60, "the outbox to drain once they are back")
    assert_each_once(world, incs)
    counts = agent.counted({"done.push": 6})
    assert counts["failed"]["push"] >= 6, counts


def test_a_429_with_a_wait_is_honoured_and_5xx_is_retried(world):
    # A minute's backoff would miss the deadline below: only the service's own wait brings it in time.
    agent = world.make_agent(alerts={"retry_first": "60s"},
                             notify=world.push.targets(ntfy={"max_per_hour": 5})).start()
    world.push.fault("matrix", {"status": 429, "retry_after": 2})
    world.push.fault("webhook", {"status": 429, "retry_after": 2})
    (inc,) = incidents(1, first=30)
    agent.send(inc.line())
    wait_for(lambda: len(pushed(world)["matrix"]) == 1 and len(pushed(world)["webhook"]) == 1, 20,
             "the retries the services asked for")
    for service in ("matrix", "webhook"):
        tries = [r for r in world.push.requests() if r["service"] == service]
        assert [r["status"] for r in tries] == [429, 200], tries
        assert tries[1]["time"] - tries[0]["time"] >= 1.9, f"{service}: asked again before the wait"
    agent.stop()

    # 5xx: retried with the usual backoff (1 s here), delivered once.
    agent.alerts["retry_first"] = "1s"
    agent.write_config()
    agent.start()
    for service in ("ntfy", "webhook", "matrix"):
        world.push.fault(service, {"status": 500}, {"status": 503})
    (inc2,) = incidents(1, first=31)
    agent.send(inc2.line())
    wait_for(lambda: drained(agent) and all(len(v) == 2 for v in pushed(world).values()), 30,
             "the second incident on every target after two 5xx each")
    assert_each_once(world, [inc, inc2])


def test_past_the_hourly_limit_a_target_gets_a_digest(world):
    agent = world.make_agent(notify=world.push.targets(ntfy={"max_per_hour": 3})).start()
    incs = incidents(8, first=100)
    agent.send(b"".join(i.line() for i in incs))
    wait_for(lambda: drained(agent) and all(any(mentions(t, i.remote) for t in pushed(world)["ntfy"]) for i in incs),
             60, "every incident pushed to ntfy, one way or another")
    assert_each_once(world, incs, singles=False)
    ntfy = world.push.delivered("ntfy")
    assert len(ntfy) <= 3, [m["title"] for m in ntfy]
    digests = [m for m in ntfy if " incidents (" in m["title"]]
    assert digests, [m["title"] for m in ntfy]
    folded = sum(1 for d in digests for i in incs if mentions(d["message"], i.remote))
    agent.counted({"pushes.phone.digest": len(digests), "pushes.phone.rate_limited": folded,
                   "pushes.hook.incident": 8})
    # The other targets have their own limit (the default): one message each.
    assert len(world.push.delivered("webhook")) == 8


def test_killed_mid_delivery_matrix_keeps_one_event(world):
    """The homeserver takes the event while the agent is killed before it
    could record it: the agent sends again after its restart, with the same
    transaction id, and the room still has one event."""
    agent = world.make_agent(notify=[t for t in world.push.targets() if t["type"] == "matrix"]).start()
    world.push.fault("matrix", {"delay": 3})
    (inc,) = incidents(1, first=40)
    agent.send(inc.line())
    wait_for(lambda: any(r["service"] == "matrix" for r in world.push.requests()), 10,
             "the agent inside its Matrix delivery")
    agent.kill()
    wait_for(lambda: len(world.push.delivered("matrix")) == 1, 10, "the homeserver to take the event")
    agent.start()
    wait_for(lambda: drained(agent), 30, "the outbox to drain after the restart")
    sends = [r for r in world.push.requests() if r["service"] == "matrix"]
    assert len(sends) == 2 and sends[1]["path"] == sends[0]["path"], sends
    assert len(world.push.delivered("matrix")) == 1


def test_a_real_homeserver_gets_one_event_per_incident_through_its_rate_limit(world):
    """Synapse (from PyPI), limiting the bot to a message a second after a
    burst of two: the agent waits as its M_LIMIT_EXCEEDED asks (a minute's
    backoff would miss the deadline) and the room ends with each incident once."""
    with Synapse(rc_message={"per_second": 1, "burst_count": 2}) as hs:
        agent = world.make_agent(alerts={"retry_first": "60s"}, notify=[{
            "type": "matrix", "name": "home", "url": hs.url, "room": hs.room, "token_env": "SYNAPSE_TOKEN",
            "timeout": "10s"}])
        agent.secrets["SYNAPSE_TOKEN"] = hs.token
        agent.write_config()
        agent.start()
        incs = incidents(5, first=50)
        agent.send(b"".join(i.line() for i in incs))
        wait_for(lambda: len(hs.messages()) == 5 and drained(agent), 30, "five events in the room")
        bodies = [e["content"]["body"] for e in hs.messages()]
        for inc in incs:
            assert sum(inc.id in b for b in bodies) == 1, (inc, bodies)
        counts = agent.counted({"done.push": 5, "pushes.home.incident": 5})
        assert counts["failed"]["push"] >= 1, f"the homeserver never limited the agent: {counts}"
        assert "M_LIMIT_EXCEEDED" in agent.log_text()


def test_notify_test_reaches_each_target_and_says_which_failed(world):
    agent = world.make_agent(notify=world.push.targets())
    run = lambda *a: subprocess.run([BIN, "--config", str(agent.config), "notify-test", *a],  # noqa: E731
                                    capture_output=True, text=True, timeout=60)
    r = run()
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.count("test message sent") == 3, r.stdout
    assert [len(world.push.delivered(s)) for s in ("ntfy", "webhook", "matrix")] == [1, 1, 1]
    assert world.push.delivered("webhook")[0]["type"] == "test"
    world.push.fault("matrix", {"status": 503})
    r = run()
    assert r.returncode == 1 and "room (matrix)" in r.stdout and "FAILED: HTTP 503" in r.stdout, r.stdout
    r = run("nosuch")
    assert r.returncode != 0 and "no notify target named \"nosuch\"" in r.stderr, r.stderr


def test_a_new_device_is_pushed_once_to_every_target_and_mailed(world):
    """The device inventory's notice goes the way of every notification: the
    outbox, then each target (the webhook's `type` is `notice`) and the mail."""
    leases = world.dir / "dnsmasq.leases"
    far = int(time.time()) + 3600
    leases.write_text(f"{far} 24:0a:c4:12:34:56 192.168.73.20 doorbell-cam *\n")
    agent = world.make_agent(notify=world.push.targets(),
                             devices={"leases": str(leases), "interface": "lo", "scan": "1s"}).start()
    # The home as it is at the first scan raises nothing.
    wait_for(lambda: agent.status()["devices"]["known"] == 1, 15, "the first scan")
    leases.write_text(leases.read_text() + f"{far} fc:65:de:12:34:56 192.168.73.21 living-room-tv *\n")
    wait_for(lambda: all(len(v) == 1 for v in pushed(world).values()), 30, "one notice on each target")
    time.sleep(2)
    for service, texts in pushed(world).items():
        assert len(texts) == 1 and "New device on the home network: living-room-tv" in texts[0], (service, texts)
        assert "homewarden quarantine fc:65:de:12:34:56" in texts[0], (service, texts)
    hook = world.push.delivered("webhook")[0]
    assert hook["type"] == "notice" and hook["id"] == "device-new-fc:65:de:12:34:56:push-hook", hook
    assert world.push.delivered("ntfy")[0]["priority"] != 4, "a notice is not an alarm"
    wait_for(lambda: any("living-room-tv" in m["Subject"] for m in world.smtp.mails()), 30, "the mail")
    agent.counted({"pushes.phone.notice": 1, "pushes.hook.notice": 1, "pushes.room.notice": 1})
