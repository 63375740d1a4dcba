"""Fixtures: run llm_double.py as a real subprocess with the system python, as the lab does."""

import json
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # tests/certs.py
import certs  # noqa: E402

DOUBLE = HERE / "llm_double.py"
SYSTEM_PYTHON = "/usr/bin/python3"  # the double must run without the venv
API_KEY = "hw-llm-test-key-0123456789abcdef"


class LlmDouble:
    def __init__(self, url, key, log, ca, proc):
        self.url, self.key, self.request_log, self.ca, self.proc = url, key, log, ca, proc

    def _admin(self, method, path, body=None):
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
        ctx = None
        if self.ca:
            import ssl
            ctx = ssl.create_default_context(cafile=self.ca)
        with urllib.request.urlopen(req, timeout=10, context=ctx) as resp:
            return json.loads(resp.read())

    def queue(self, *items, append=False):
        return self._admin("POST", "/__admin/faults", {"queue": list(items), "append": append})

    def requests(self):
        return self._admin("GET", "/__admin/requests")

    def faults(self):
        return self._admin("GET", "/__admin/faults")["queue"]

    def stop(self):
        """SIGTERM; returns the exit status."""
        return stop_double(self)


def start_double(tmp: Path, tls=False, extra=()):
    tmp.mkdir(parents=True, exist_ok=True)
    port_file = tmp / "port"
    log = tmp / "requests.jsonl"
    cmd = [SYSTEM_PYTHON, str(DOUBLE), "--listen", "127.0.0.1:0", "--port-file", str(port_file),
           "--api-key", API_KEY, "--request-log", str(log), *extra]
    ca = None
    if tls:
        paths = certs.make_ca_and_server_cert(tmp, common_name="llm-double")
        cmd += ["--tls-cert", str(paths["cert"]), "--tls-key", str(paths["key"])]
        ca = str(paths["ca"])
    # Output to a file, not a pipe nobody reads: a chatty server must never block on a full pipe.
    output = tmp / "output.log"
    with open(output, "w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 15
    while not port_file.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            proc.wait()
            raise RuntimeError(f"llm double did not start:\n{output.read_text()}")
        time.sleep(0.05)
    port = int(port_file.read_text())
    scheme = "https" if tls else "http"
    host = "localhost" if tls else "127.0.0.1"  # exercise hostname verification too
    return LlmDouble(f"{scheme}://{host}:{port}", API_KEY, log, ca, proc)


def stop_double(d):
    d.proc.terminate()
    try:
        return d.proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        d.proc.kill()
        d.proc.wait()
        raise


@pytest.fixture(scope="module")
def llm(tmp_path_factory):
    """One double per module (start-up costs ~0.1 s, but the SDK imports dominate anyway)."""
    d = start_double(tmp_path_factory.mktemp("llm"))
    yield d
    stop_double(d)


@pytest.fixture
def double(llm):
    """The shared double with an empty fault queue, so a test cannot leak faults into the next."""
    llm._admin("DELETE", "/__admin/faults")
    yield llm
    llm._admin("DELETE", "/__admin/faults")


@pytest.fixture
def double_process(tmp_path):
    """Start a double of one's own (e.g. with TLS); stopped at the end of the test."""
    started = []

    def make(**kw):
        d = start_double(tmp_path / f"d{len(started)}", **kw)
        started.append(d)
        return d
    yield make
    for d in started:
        if d.proc.poll() is None:
            stop_double(d)
