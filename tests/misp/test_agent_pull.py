"""The agent's MISP client against the double, end to end through `homewarden sync --once`:
full pull, incremental pull (publish, soft delete, to_ids off), an outage keeping the
last good set, TLS with a private CA, and every request we sent checked against
MISP's OpenAPI spec."""

import base64
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from pymisp import PyMISP

from test_pymisp import new_event

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
BIN = os.environ.get("HOMEWARDEN_BIN", str(REPO / "target" / "debug" / "homewarden"))
CANARY = "192.0.2.254"  # src/enforce/suricata/selftest.rs: TEST-NET-1, never a real host


def b64(s):
    return base64.b64encode(s.encode()).decode()


class Agent:
    """A config for the agent pointing at the double, and a way to run `sync --once`."""

    def __init__(self, tmp, double, ca_file=True):
        self.tmp = tmp
        self.rules = tmp / "rules"
        self.state = tmp / "state"
        self.config = tmp / "homewarden.yaml"
        ca = f"    ca_file: {double.ca}\n" if ca_file else ""
        self.config.write_text(
            f"state_dir: {self.state}\n"
            f"control_socket: {tmp / 'control.sock'}\n"
            f"suricata:\n  rules_dir: {self.rules}\n  command_socket: {tmp / 'no-suricata.sock'}\n"
            "sources:\n"
            "  - name: lab-misp\n    type: misp\n"
            f"    url: {double.url}\n{ca}"
            "    interval: 30s\n    timeout: 10s\n"
            "    page_limit: 2\n"  # several pages even for these few attributes
        )
        self.key = double.key

    def sync(self, key=None):
        env = dict(os.environ, MISP_API_KEY=key or self.key, HOMEWARDEN_LOG="warn")
        return subprocess.run([BIN, "--config", str(self.config), "sync", "--once"],
                              capture_output=True, text=True, env=env, timeout=120)

    def lst(self, name):
        """The values of a dataset file, less the self-test's canary (always listed)."""
        p = self.rules / f"hw-{name}.lst"
        values = p.read_text().split() if p.exists() else []
        if name == "ipv4":
            assert CANARY in values, values
            values.remove(CANARY)
        return values

    def stored(self):
        return json.loads((self.state / "intel" / "lab-misp.json").read_text())


def ok(r):
    assert r.returncode == 0, f"sync failed:\n{r.stdout}\n{r.stderr}"
    return r


def test_full_then_incremental_pulls_follow_misp(tls_double, tmp_path):
    misp = PyMISP(tls_double.url, tls_double.key, ssl=tls_double.ca, timeout=10)
    e1 = new_event(misp, "C2 infrastructure", threat=1, publish=True, attrs=[
        ("ip-dst", "203.0.113.67", True),
        ("domain", "bad.lab-evil.test", True),
        ("ip-dst", "203.0.113.99", False),
        ("ip-dst", "8.8.8.8", True),  # on the double's warninglist
    ])
    e2 = new_event(misp, "draft", threat=3, publish=False, attrs=[("ip-dst", "203.0.113.70", True)])
    agent = Agent(tmp_path, tls_double)

    ok(agent.sync())
    assert agent.lst("ipv4") == ["203.0.113.67"]
    assert agent.lst("domain") == [b64("bad.lab-evil.test")]
    # Provenance: the attribute uuid and the event's threat level travel with the IoC.
    stored = agent.stored()
    a67 = next(a for a in e1.attributes if a.value == "203.0.113.67")
    entry = next(e for e in stored["entries"] if e[0] == "203.0.113.67")
    assert entry[2] == a67.uuid
    event = stored["events"][entry[1]]
    assert event["uuid"] == e1.uuid and event["threat_level"] == 1 and event["id"] == int(e1.id)

    # Publishing the draft: its attributes keep their old timestamps, yet arrive.
    misp.publish(e2)
    ok(agent.sync())
    assert agent.lst("ipv4") == ["203.0.113.67", "203.0.113.70"]

    # Soft delete and to_ids off leave the set (the edits unpublish the event: no matter).
    misp.delete_attribute(a67)
    dom = next(a for a in e1.attributes if a.type == "domain")
    dom.to_ids = False
    misp.update_attribute(dom)
    r = ok(agent.sync())
    assert agent.lst("ipv4") == ["203.0.113.70"]
    assert agent.lst("domain") == []
    assert "lab-misp: ok" in r.stdout

    # Nothing changed: nothing is written again.
    before = {p.name: p.stat().st_mtime_ns for p in agent.rules.iterdir()}
    r = ok(agent.sync())
    assert "applied" not in r.stdout or "+0 -0" in r.stdout
    assert {p.name: p.stat().st_mtime_ns for p in agent.rules.iterdir()} == before

    # An outage (here: a key MISP refuses) fails the pull and keeps the last good set.
    r = agent.sync(key="wrong" * 8)
    assert r.returncode == 1
    assert "lab-misp: FAILED" in r.stdout and "403" in r.stdout
    assert agent.lst("ipv4") == ["203.0.113.70"]

    # Paging: the pulls asked for page 2 as well (short pages end a pull).
    pages = [(json.loads(line).get("json") or {}).get("page") for line in tls_double.request_log.read_text().splitlines()]
    assert 2 in pages

    # Every request the agent sent is a documented MISP call with a valid body.
    ours = tmp_path / "ours.jsonl"
    with ours.open("w") as out:
        for line in tls_double.request_log.read_text().splitlines():
            rec = json.loads(line)
            if rec.get("headers", {}).get("user-agent", "").startswith("homewarden/"):
                out.write(line + "\n")
    v = subprocess.run([sys.executable, str(HERE / "validate_requests.py"), str(ours)],
                       capture_output=True, text=True)
    assert v.returncode == 0, v.stdout + v.stderr
    assert "0 problem(s)" in v.stdout


def test_tls_is_verified_by_default(tls_double, tmp_path):
    agent = Agent(tmp_path, tls_double, ca_file=False)
    r = agent.sync()
    assert r.returncode == 1
    assert "lab-misp: FAILED" in r.stdout
    assert "certificate" in r.stdout.lower() or "unknown issuer" in r.stdout.lower(), r.stdout


def test_missing_key_is_a_clear_error(tls_double, tmp_path):
    agent = Agent(tmp_path, tls_double)
    env = {k: v for k, v in os.environ.items() if k != "MISP_API_KEY"}
    r = subprocess.run([BIN, "--config", str(agent.config), "check-config"],
                       capture_output=True, text=True, env=env)
    assert r.returncode == 1
    assert "needs MISP_API_KEY" in r.stderr
