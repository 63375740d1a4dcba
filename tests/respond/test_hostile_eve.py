"""Hostile input on the eve socket: whatever arrives, the agent keeps running,
counts what it skipped, and what it passes on (signatures, names) reaches the
owner's mail as inert text."""

import json
import re
import time

from conftest import Incident, alert_line, drained, eve_time, mails_naming, part, wait_for
from test_advice import assert_inert_html, assert_no_controls

HOSTILE_SIG = "<script>alert(1)</script><img src=x onerror=alert(2)>\u0007\u001b[31mred\u202etxt.exe"
HOSTILE_NAME = "<img src=x onerror=alert(3)>.EVIL.test"


def test_malformed_lines_are_counted_and_hostile_fields_stay_text(world):
    agent = world.make_agent().start()
    t = int(time.time())
    good = alert_line("198.51.100.1", t).decode()
    malformed = [
        b"not json at all",
        good.encode()[:60],                                     # torn
        b"\xff\xfe\xfd garbage \x00",                           # not UTF-8
        good.encode().replace(b"homewarden test", b"homewarden \xff\xfe"),  # invalid UTF-8 in a string
        good.replace('"src_ip": "198.18.1.2", ', "").encode(),  # no source address
        good.replace(eve_time(t), "yesterday").encode(),          # bad timestamp
        good.replace("homewarden test", "bell \u0007").encode().replace(b"\\u0007", b"\x07"),  # raw control byte
        b"[1, 2, 3]",
        b"{}",
        b'{"event_type": "alert", "alert": {"signature_id": "x"}}',
        b'{"event_type": "alert", "src_ip": "' + b"9" * 300_000 + b'"}',  # long but under the line limit
        b'{"event_type": "alert", "signature": "' + b"A" * (2 << 20) + b'"}',  # over the 1 MiB line limit
    ]
    other = [b'{"timestamp": "%s", "event_type": "stats", "stats": {"uptime": 1}}' % eve_time(t).encode()]
    hostile = [
        Incident("198.51.100.7", t),
        Incident("198.51.100.8", t),
        # No domain: kept as an escaped, quoted string (nothing here needs escaping).
        Incident(f'"{HOSTILE_NAME}"', t, listed=True),
    ]
    lines = [
        hostile[0].line(signature=HOSTILE_SIG, category="<b>A Network Trojan was detected</b>"),
        hostile[1].line(signature="S" * 100_000),
        alert_line("198.51.100.9", t, signature="ET homewarden domain hit",
                   extra={"dns": {"query": [{"rrname": HOSTILE_NAME}]},
                          "alert": {"action": "blocked", "signature_id": 2_100_001, "signature": "domain hit",
                                    "category": "A Network Trojan was detected", "severity": 1,
                                    "metadata": {"homewarden_kind": ["domain"]}}}),
    ]
    stream = b"".join(x + b"\n" for x in malformed + other) + b"".join(lines) + b"\n\n   \n"
    agent.send(stream)
    # A Suricata that dies mid-line: the torn tail is one more malformed line, not a hang.
    agent.send(good.encode()[:100])

    want = {"alerts": 3, "other": 1, "malformed": len(malformed) + 1}
    wait_for(lambda: agent.status()["alerts"]["intake"] == want, 20, f"the intake counters to read {want}")
    assert agent.alive()

    wait_for(lambda: drained(agent) and len(world.smtp.mails()) == 3, 60, "three incident mails")
    mails = world.smtp.mails()
    for inc in hostile:
        (m,) = mails_naming(mails, inc)
        html, text = part(m, "html"), part(m, "plain")
        assert_inert_html(html)
        assert_no_controls(text)
        subject = str(m["Subject"])
        assert "\n" not in subject and not any(ord(c) < 32 for c in subject), repr(subject)
        what = re.search(r"^What\s+(.*)$", text.replace("\r\n", "\n"), re.M).group(1)
        assert len(what) <= 256, f"a {len(what)}-character signature: eve fields must be bounded"
    (first,) = mails_naming(mails, hostile[0])
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in part(first, "html")
    (third,) = mails_naming(mails, hostile[2])
    assert "&lt;img src=x onerror=alert(3)&gt;.EVIL.test" in part(third, "html")

    # Each incident is one MISP event; the hostile name is no domain, so it never becomes an attribute.
    events = world.misp.events()
    uuids = sorted(e["uuid"] for e in events)
    assert uuids == sorted(i.uuid for i in hostile)
    (ev,) = [e for e in events if e["uuid"] == hostile[2].uuid]
    assert ev["values"] and not any("onerror" in v for v in ev["values"]), ev["values"]
    for r in world.misp.requests():
        json.dumps(r)  # the request log is valid JSON: nothing binary reached MISP
    assert agent.alive() and agent.status()["alerts"]["high_open"] == 3
