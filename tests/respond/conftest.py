"""Fixtures for the responder fault tests: the real agent binary between the
MISP double, the LLM double and the real SMTP server (python3-aiosmtpd), all
on 127.0.0.1 with TLS from one throwaway CA. Each peer can be stopped and
started again on the same port, so outages are real refused connections.

Everything a test asserts is read from the peers' own records: the MISP
double's state file and request log, the SMTP server's maildir, and the LLM
double's /__admin/requests.
"""

import email
import email.policy
import hashlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
TESTS = REPO / "tests"
sys.path.insert(0, str(TESTS))  # tests/certs.py
import certs  # noqa: E402

BIN = os.environ.get("HOMEWARDEN_BIN", str(REPO / "target" / "debug" / "homewarden"))
SYSTEM_PYTHON = "/usr/bin/python3"  # the peers run without the venv, as in the lab
MISP_KEY = "hwtestkey0123456789abcdef0123456789abcd"
LLM_KEY = "hw-llm-test-key-0123456789abcdef"
SMTP_USER = "api"
SMTP_PASSWORD = "hw-mailtrap-token-0123456789abcdef"
OWNER = "owner@home.test"
NTFY_TOKEN = "tk_homewardentest0123456789abcd"
HOOK_SECRET = "hw-webhook-secret-0123456789abcdef"
MATRIX_TOKEN = "syt_homewarden_test_token"
MATRIX_ROOM = "!home:matrix.test"
HOME_NET = "198.18.1.0/24"
DEVICE = "198.18.1.2"


def wait_for(pred, timeout, what, step=0.1):
    """Polls pred until it returns something truthy; fails naming `what` at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        got = pred()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(step)


# --------------------------------------------------------------------------- incident ids, as the agent derives them

MASK = (1 << 64) - 1


def fnv1a(seed, text):
    h = seed
    for b in text.encode("utf-8"):
        h ^= b
        h = (h * 0x100000001B3) & MASK
    return h


def incident_id(hit, remote, local, first_seen):
    """src/alerts/triage.rs incident_id: the same alerts give the same id on any run.

    `hit` is "listed" for our own rules' alerts (keyed by the indicator, not
    the rule), the sid for anyone else's."""
    return f"inc-{first_seen}-{fnv1a(0xCBF29CE484222325, f'{hit}|{remote}|{local}'):016x}"


def incident_uuid(inc_id):
    """src/alerts/triage.rs Incident::uuid: the MISP event's uuid, derived from the id."""
    a = fnv1a(0xCBF29CE484222325, inc_id)
    b = fnv1a(0x84222325CBF29CE4, inc_id)
    raw = bytearray(a.to_bytes(8, "big") + b.to_bytes(8, "big"))
    raw[6] = (raw[6] & 0x0F) | 0x80
    raw[8] = (raw[8] & 0x3F) | 0x80
    h = raw.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def eve_time(t):
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + ".000000+0000"


def alert_line(remote, t, sid=2_100_001, severity=1, signature="ET MALWARE homewarden test C2 beacon",
               category="A Network Trojan was detected", local=DEVICE, extra=None):
    """One eve alert line as Suricata 7 writes it (home device -> remote)."""
    rec = {"timestamp": eve_time(t), "flow_id": 1234567890, "in_iface": "eth1", "event_type": "alert",
           "src_ip": local, "src_port": 51234, "dest_ip": remote, "dest_port": 443, "proto": "TCP",
           "alert": {"action": "blocked", "gid": 1, "signature_id": sid, "rev": 1, "signature": signature,
                     "category": category, "severity": severity}}
    if extra:
        rec.update(extra)
    return (json.dumps(rec, ensure_ascii=False) + "\n").encode("utf-8")


class Incident:
    """What a test raised: the id the agent must derive, and its remote address."""

    def __init__(self, remote, t, sid=2_100_001, local=DEVICE, listed=False):
        """`listed`: raised by one of our rules (`homewarden_kind` in its metadata)."""
        self.remote, self.t, self.sid, self.local = remote, t, sid, local
        self.id = incident_id("listed" if listed else sid, remote, local, t)
        self.uuid = incident_uuid(self.id)

    def line(self, **kw):
        return alert_line(self.remote, self.t, sid=self.sid, local=self.local, **kw)

    def __repr__(self):
        return f"Incident({self.remote}, {self.id})"


# --------------------------------------------------------------------------- peers


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Peer:
    """A server subprocess that can be stopped and started again on the same port."""

    name = "peer"

    def __init__(self, directory: Path, tls):
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        self.tls = tls
        self.port = None
        self.proc = None
        self.output = self.dir / "output.log"

    def command(self, listen, port_file):
        raise NotImplementedError

    def start(self):
        port_file = self.dir / "port"
        port_file.unlink(missing_ok=True)
        listen = f"127.0.0.1:{self.port or 0}"
        with open(self.output, "a") as out:
            # Output to a file, not a pipe nobody reads.
            self.proc = subprocess.Popen(self.command(listen, port_file), stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 15
        while not port_file.exists():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.kill()
                raise RuntimeError(f"{self.name} did not start:\n{self.output.read_text()}")
            time.sleep(0.05)
        self.port = int(port_file.read_text())
        return self

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.proc = None


class AdminPeer(Peer):
    """A double with a JSON admin API (/__admin/...) on its HTTPS port."""

    @property
    def url(self):
        return f"https://127.0.0.1:{self.port}"

    def _admin(self, method, path, body=None):
        import ssl
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
        ctx = ssl.create_default_context(cafile=str(self.tls["ca"]))
        with urllib.request.urlopen(req, timeout=10, context=ctx) as resp:
            return json.loads(resp.read())


class Misp(Peer):
    name = "misp double"

    def command(self, listen, port_file):
        return [SYSTEM_PYTHON, str(TESTS / "misp" / "misp_double.py"), "--listen", listen,
                "--port-file", str(port_file), "--api-key", MISP_KEY,
                "--state", str(self.dir / "state.json"), "--request-log", str(self.dir / "requests.jsonl"),
                "--tls-cert", str(self.tls["cert"]), "--tls-key", str(self.tls["key"])]

    @property
    def url(self):
        return f"https://127.0.0.1:{self.port}"

    def events(self):
        """Every event the double holds, with its attributes' values (from its state file)."""
        path = self.dir / "state.json"
        if not path.exists():
            return []
        st = json.loads(path.read_text())
        attrs = st["attributes"]
        return [{"uuid": e["uuid"], "info": e["info"], "tags": e["tags"], "distribution": e["distribution"],
                 "values": [attrs[str(a)]["value"] for a in e["attributes"] if str(a) in attrs]}
                for e in st["events"].values()]

    def requests(self):
        path = self.dir / "requests.jsonl"
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]

    def adds_ok(self):
        """uuid -> number of /events/add the double answered 200."""
        out = {}
        for r in self.requests():
            if r["method"] == "POST" and r["path"].rstrip("/").endswith("/events/add") and r["status"] == 200:
                body = r["json"] or {}
                u = body.get("Event", body).get("uuid")
                out[u] = out.get(u, 0) + 1
        return out


class Llm(AdminPeer):
    name = "llm double"

    def command(self, listen, port_file):
        return [SYSTEM_PYTHON, str(TESTS / "llm" / "llm_double.py"), "--listen", listen,
                "--port-file", str(port_file), "--api-key", LLM_KEY,
                "--request-log", str(self.dir / "requests.jsonl"),
                "--tls-cert", str(self.tls["cert"]), "--tls-key", str(self.tls["key"])]

    def queue(self, *items):
        return self._admin("POST", "/__admin/faults", {"queue": list(items)})

    def requests(self):
        return self._admin("GET", "/__admin/requests")


def user_text(record):
    """The last user message of a recorded chat request."""
    for m in reversed((record.get("json") or {}).get("messages", [])):
        if m.get("role") == "user" and isinstance(m.get("content"), str):
            return m["content"]
    return ""


def reply_marker(record):
    """The marker line the LLM double put into its answer to this request."""
    return "[llm-double reply to %s]" % hashlib.sha256(user_text(record).encode("utf-8")).hexdigest()[:12]


class Smtp(Peer):
    name = "smtp server"
    extra = ()

    def command(self, listen, port_file):
        return [SYSTEM_PYTHON, str(TESTS / "smtp" / "smtp_server.py"), "--listen", listen,
                "--port-file", str(port_file), "--user", SMTP_USER, "--password", SMTP_PASSWORD,
                "--maildir", str(self.dir / "mail"),
                "--tls-cert", str(self.tls["cert"]), "--tls-key", str(self.tls["key"]), *self.extra]

    def mails(self):
        """Every message received, parsed, oldest first (with its envelope as .envelope)."""
        d = self.dir / "mail"
        if not d.exists():
            return []
        out = []
        for p in sorted(d.glob("*.eml"), key=lambda p: int(p.stem)):
            m = email.message_from_bytes(p.read_bytes(), policy=email.policy.default)
            m.envelope = json.loads(p.with_suffix(".json").read_text())
            m.size = p.stat().st_size
            out.append(m)
        return out


class Push(AdminPeer):
    """The push double: ntfy, the webhook and a Matrix homeserver's send API on one port."""
    name = "push double"

    def command(self, listen, port_file):
        return [SYSTEM_PYTHON, str(TESTS / "push" / "push_double.py"), "--listen", listen,
                "--port-file", str(port_file), "--state", str(self.dir / "state.json"),
                "--ntfy-token", NTFY_TOKEN, "--webhook-secret", HOOK_SECRET,
                "--matrix-token", MATRIX_TOKEN, "--matrix-room", MATRIX_ROOM,
                "--tls-cert", str(self.tls["cert"]), "--tls-key", str(self.tls["key"])]

    def fault(self, service, *items):
        return self._admin("POST", "/__admin/faults", {"service": service, "queue": list(items)})

    def delivered(self, service):
        """What the service took (read from the state file: it survives the double's restarts)."""
        path = self.dir / "state.json"
        return json.loads(path.read_text())[service] if path.exists() else []

    def requests(self):
        return self._admin("GET", "/__admin/requests")

    def targets(self, **override):
        """`notify:` entries for all three services on this double."""
        ca = str(self.tls["ca"])
        t = {
            "ntfy": {"type": "ntfy", "name": "phone", "url": self.url, "topic": "hw-home", "token_env": "NTFY_TOKEN",
                     "ca_file": ca, "timeout": "5s"},
            "webhook": {"type": "webhook", "name": "hook", "url": self.url + "/hook", "secret_env": "HOOK_SECRET",
                        "ca_file": ca, "timeout": "5s"},
            "matrix": {"type": "matrix", "name": "room", "url": self.url, "room": MATRIX_ROOM,
                       "token_env": "MATRIX_TOKEN", "ca_file": ca, "timeout": "5s"},
        }
        for k, v in override.items():
            t[k] = {**t[k], **v}
        return list(t.values())


def part(msg, subtype):
    """The decoded text of the message's text/<subtype> part."""
    for p in msg.walk():
        if p.get_content_type() == f"text/{subtype}":
            return p.get_content()
    raise AssertionError(f"no text/{subtype} part in {msg['Subject']!r}")


# --------------------------------------------------------------------------- the agent


class Agent:
    """homewarden run, with a config pointing at the peers; restartable on the same state."""

    def __init__(self, directory: Path, misp, llm, smtp, tls, alerts=None, mail=None, advisor=None,
                 source=None, notify=None, devices=None):
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        self.misp, self.llm, self.smtp, self.tls = misp, llm, smtp, tls
        self.config = directory / "homewarden.yaml"
        self.state = directory / "state"
        self.outbox = self.state / "outbox"
        self.eve_socket = directory / "eve.sock"
        self.log = directory / "agent.log"
        self.proc = None
        self.alerts = {"eve_socket": str(self.eve_socket), "window": "10m", "outbox_max": 10000,
                       "retry_first": "1s", **(alerts or {})}
        self.mail = {"to": [OWNER], "from": "homewarden@home.test", "host": "127.0.0.1", "port": smtp.port,
                     "security": "starttls", "ca_file": str(tls["ca"]), "user": SMTP_USER,
                     "max_per_hour": 10, "timeout": "10s", **(mail or {})}
        self.advisor = {"backend": "cohere", "url": llm.url, "ca_file": str(tls["ca"]), "timeout": "5s",
                        "tries": 3, **(advisor or {})}
        self.source = {"name": "misp", "type": "misp", "url": misp.url, "ca_file": str(tls["ca"]),
                       "interval": "1h", **(source or {})}
        self.notify = notify or []
        # The device inventory is off unless a test gives it leases to read.
        self.devices = devices or {"enabled": False}
        self.secrets = {}  # more .env lines, by name
        self.write_config()

    def write_config(self):
        d = self.dir
        cfg = {
            "state_dir": str(self.state),
            "control_socket": str(d / "control.sock"),
            # No Suricata here: the agent runs degraded, which these tests do not mind.
            "suricata": {"rules_dir": str(d / "rules"), "command_socket": str(d / "none.sock")},
            "alerts": self.alerts,
            "network": {"home": [HOME_NET]},
            "sources": [self.source],
            "advisor": self.advisor,
            "mail": self.mail,
            "notify": self.notify,
            "devices": self.devices,
            # No ruleset download from a test: nothing here may leave the machine.
            "signatures": {"profile": "off"},
        }
        # JSON is YAML; no PyYAML needed to write it.
        self.config.write_text(json.dumps(cfg, indent=2) + "\n")
        (d / ".env").write_text(f"MISP_API_KEY={MISP_KEY}\nCOHERE_API_KEY={LLM_KEY}\n"
                                f"MAILTRAP_TOKEN={SMTP_PASSWORD}\nNTFY_TOKEN={NTFY_TOKEN}\n"
                                f"HOOK_SECRET={HOOK_SECRET}\nMATRIX_TOKEN={MATRIX_TOKEN}\n"
                                + "".join(f"{k}={v}\n" for k, v in self.secrets.items()))

    def start(self, env=None):
        assert self.proc is None or self.proc.poll() is not None, "already running"
        env = dict(os.environ, HOMEWARDEN_LOG="info", **(env or {}))
        with open(self.log, "a") as out:
            out.write(f"---- start {time.time():.3f}\n")
            out.flush()
            self.proc = subprocess.Popen([BIN, "--config", str(self.config), "run"], stdout=out,
                                         stderr=subprocess.STDOUT, env=env)
        # Up: past its first apply (status answers before that, still "starting").
        wait_for(lambda: self.proc.poll() is not None
                 or (self.try_status() or {"state": "starting"})["state"] != "starting",
                 30, "the agent past its first apply")
        if self.proc.poll() is not None:
            raise AssertionError(f"the agent exited with {self.proc.returncode}:\n{self.log.read_text()[-4000:]}")
        # A killed agent leaves its socket file behind: wait until it answers.
        wait_for(self.eve_listening, 10, "the eve socket")
        return self

    def eve_listening(self):
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            try:
                s.connect(str(self.eve_socket))
                return True
            except OSError:
                return False

    def try_status(self):
        try:
            return self.status()
        except (AssertionError, subprocess.TimeoutExpired, json.JSONDecodeError):
            return None

    def status(self):
        r = subprocess.run([BIN, "--config", str(self.config), "status", "--json"], capture_output=True,
                           text=True, timeout=10)
        if r.returncode != 0:
            raise AssertionError(f"status failed ({r.returncode}): {r.stderr.strip()}")
        return json.loads(r.stdout)

    def counted(self, want, timeout=15):
        """Waits until status's responder counters hold `want` ({"llm.ok": 1,
        "done.mail": 2, ...}; absent counts as 0) and returns them."""
        def at(d, path):
            for k in path.split("."):
                d = d.get(k, 0) if isinstance(d, dict) else 0
            return d
        deadline = time.monotonic() + timeout
        while True:
            got = self.status()["responders"]
            if all(at(got, k) == v for k, v in want.items()):
                return got
            if time.monotonic() > deadline:
                raise AssertionError(f"status counts {got}, want {want}")
            time.sleep(0.2)

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self):
        """SIGTERM, as systemd stops it; returns the exit status."""
        if not self.alive():
            return None
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError("the agent did not stop on SIGTERM within 20 s")

    def kill(self):
        """SIGKILL: no chance to save or clean up anything."""
        if self.alive():
            self.proc.kill()
            self.proc.wait()

    def pending(self):
        """Outbox items on disk (the truth; status lags by up to the health tick)."""
        if not self.outbox.exists():
            return []
        out = []
        for p in self.outbox.glob("*.json"):
            try:
                out.append(json.loads(p.read_bytes()))
            except (ValueError, FileNotFoundError):
                out.append({"key": p.name, "kind": "?", "attempts": 0, "unreadable": True})
        return out

    def saved_incidents(self):
        p = self.state / "incidents.json"
        return json.loads(p.read_text()) if p.exists() else []

    def send(self, data: bytes):
        """One connection to the eve socket, as Suricata's unix_stream output makes."""
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.connect(str(self.eve_socket))
            s.sendall(data)

    def log_text(self):
        return self.log.read_text(errors="replace") if self.log.exists() else ""


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="session")
def tls():
    d = Path(tempfile.mkdtemp(prefix="hwr-ca-"))
    paths = certs.make_ca_and_server_cert(d, common_name="homewarden-respond-tests",
                                          dns_names=("localhost",), ip_addresses=("127.0.0.1",))
    yield paths
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def world(tls, request):
    """MISP double, LLM double, SMTP server and an agent (not started), torn down whatever happens.

    A short directory under /tmp, not tmp_path: unix socket paths must stay under 108 bytes.
    """
    if not Path(BIN).is_file():
        pytest.fail(f"no agent binary at {BIN}: run `cargo build --locked` or set HOMEWARDEN_BIN")
    d = Path(tempfile.mkdtemp(prefix="hwr-", dir="/tmp"))
    started = []

    class World:
        dir = d

        def __init__(self):
            self.tls = tls
            self.misp = Misp(d / "misp", tls).start()
            started.append(self.misp)
            self.llm = Llm(d / "llm", tls).start()
            started.append(self.llm)
            self.smtp = Smtp(d / "smtp", tls).start()
            started.append(self.smtp)
            self.push = Push(d / "push", tls).start()
            started.append(self.push)
            self.agent = None

        def make_agent(self, **kw):
            assert self.agent is None, "one agent per test"
            self.agent = Agent(d / "agent", self.misp, self.llm, self.smtp, tls, **kw)
            return self.agent

    w = None
    try:
        w = World()
        yield w
    finally:
        failed = getattr(request.node, "rep_call", None)
        if w is not None and w.agent is not None:
            w.agent.kill()
            if failed is not None and failed.failed:
                sys.stderr.write(f"\n---- agent log (last 6000 chars):\n{w.agent.log_text()[-6000:]}\n")
        for p in started:
            p.kill()
        if os.environ.get("HW_KEEP_TEST_DIRS"):
            sys.stderr.write(f"kept {d}\n")
        else:
            shutil.rmtree(d, ignore_errors=True)


@pytest.hookimpl(tryfirst=True, hookwrapper=True)
def pytest_runtest_makereport(item, call):
    # Lets the fixture show the agent's log when the test body failed.
    outcome = yield
    rep = outcome.get_result()
    setattr(item, "rep_" + rep.when, rep)


# --------------------------------------------------------------------------- assertions shared by the tests



def mentions(text, addr):
    """The address as a whole token (203.0.113.1 is not in 203.0.113.10)."""
    return re.search(r"(?<![\d.])" + re.escape(addr) + r"(?![\d])(?!\.\d)", text) is not None


def mails_naming(mails, inc):
    """Single incident mails carry the incident id in their facts."""
    return [m for m in mails if inc.id in part(m, "plain")]


def mails_covering(mails, inc):
    """Mails that tell the owner about the incident: its own mail, or a digest listing its remote."""
    return [m for m in mails if mentions(part(m, "plain"), inc.remote)]


def assert_events_once(misp, incidents):
    """Exactly one MISP event per incident, under the uuid derived from its id, naming its remote."""
    events = misp.events()
    by_uuid = Counter(e["uuid"] for e in events)
    want = {i.uuid for i in incidents}
    assert set(by_uuid) == want, f"events {sorted(by_uuid)} != incidents' uuids {sorted(want)}"
    assert all(n == 1 for n in by_uuid.values()), by_uuid
    adds = misp.adds_ok()
    for inc in incidents:
        assert adds.get(inc.uuid) == 1, f"{inc}: {adds.get(inc.uuid)} successful /events/add"
        ev = next(e for e in events if e["uuid"] == inc.uuid)
        assert inc.remote in ev["values"], (inc, ev)
        assert "tlp:amber" in ev["tags"] and ev["distribution"] == 0, ev
    return events


def assert_mailed_once(smtp, incidents, singles=True):
    """Every incident told to the owner exactly once (its own mail, or one digest line)."""
    mails = smtp.mails()
    for m in mails:
        assert m.envelope["rcpt_tos"] == [OWNER], m.envelope
        assert m.envelope["auth_user"] == SMTP_USER and m.envelope["tls"], m.envelope
    for inc in incidents:
        if singles:
            got = mails_naming(mails, inc)
            assert len(got) == 1, f"{inc}: {len(got)} mails ({[m['Subject'] for m in got]})"
        got = mails_covering(mails, inc)
        assert len(got) == 1, f"{inc}: covered by {len(got)} mails ({[m['Subject'] for m in got]})"
    if singles:
        assert len(mails) == len(incidents), [m["Subject"] for m in mails]
    return mails


def drained(agent):
    return not agent.pending()


def misp_add_event(misp, event):
    """Adds an event through the double's REST API, as a MISP user would."""
    import ssl
    req = urllib.request.Request(misp.url + "/events/add", data=json.dumps({"Event": event}).encode(),
                                 method="POST", headers={"Authorization": MISP_KEY, "Accept": "application/json",
                                                         "Content-Type": "application/json"})
    ctx = ssl.create_default_context(cafile=str(misp.tls["ca"]))
    with urllib.request.urlopen(req, timeout=10, context=ctx) as resp:
        return json.loads(resp.read())["Event"]


def misp_sightings(misp):
    path = misp.dir / "state.json"
    return json.loads(path.read_text())["sightings"] if path.exists() else []
