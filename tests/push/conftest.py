"""Fixtures: the push double (with the system python, as the respond tests run
it) and a real Synapse homeserver to hold its Matrix part to."""

import json
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from homeserver import Synapse, call  # noqa: E402

DOUBLE = HERE / "push_double.py"
NTFY_TOKEN = "tk_contracttest0123456789abcdef"
HOOK_SECRET = "contract-webhook-secret"


class Double:
    def __init__(self, url, proc):
        self.url, self.proc = url, proc

    def call(self, method, path, body=None, token=None, raw=None, headers=None):
        data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
        h = {"Content-Type": "application/json", **(headers or {})}
        if token:
            h["Authorization"] = f"Bearer {token}"
        return call(urllib.request.Request(self.url + path, data=data, method=method, headers=h))

    def fault(self, service, *items):
        return self.call("POST", "/__admin/faults", {"service": service, "queue": list(items)})


@pytest.fixture(scope="session")
def synapse():
    # Messages limited to one a second with a burst of two: the third in a row gets a real 429.
    with Synapse(rc_message={"per_second": 1, "burst_count": 2}) as hs:
        yield hs


@pytest.fixture
def double(tmp_path, synapse):
    """The double, holding the same Matrix token and room as the real homeserver."""
    port_file = tmp_path / "port"
    proc = subprocess.Popen(["/usr/bin/python3", str(DOUBLE), "--listen", "127.0.0.1:0",
                             "--port-file", str(port_file), "--state", str(tmp_path / "state.json"),
                             "--ntfy-token", NTFY_TOKEN, "--webhook-secret", HOOK_SECRET,
                             "--matrix-token", synapse.token, "--matrix-room", synapse.room])
    deadline = time.monotonic() + 10
    while not port_file.exists():
        assert proc.poll() is None and time.monotonic() < deadline, "the push double did not start"
        time.sleep(0.05)
    yield Double(f"http://127.0.0.1:{port_file.read_text()}", proc)
    proc.terminate()
    proc.wait(timeout=10)
