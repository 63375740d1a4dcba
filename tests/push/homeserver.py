"""A real Matrix homeserver for the tests: Synapse from PyPI (target/pyenv),
SQLite, on 127.0.0.1 only, federation off, one user who owns one room.

Used by tests/push (the push double's Matrix part answers as Synapse does)
and tests/respond (the agent pushes into a real room).
"""

import json
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

USER, PASSWORD = "homewarden", "homewarden-test-password-0123"


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Synapse:
    """`with Synapse(rc_message=...) as hs:` a running homeserver; hs.token, hs.room."""

    def __init__(self, rc_message=None):
        self.dir = Path(tempfile.mkdtemp(prefix="hw-synapse-"))
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.rc_message = rc_message or {"per_second": 1000, "burst_count": 1000}
        self.proc = None

    def __enter__(self):
        py = sys.executable  # the venv's python, where matrix-synapse is installed
        cfg = self.dir / "homeserver.yaml"
        gen = subprocess.run([py, "-m", "synapse.app.homeserver", "--server-name", "matrix.test",
                              "--config-path", str(cfg), "--data-directory", str(self.dir),
                              "--generate-config", "--report-stats=no"],
                             capture_output=True, text=True, timeout=120, cwd=self.dir)
        assert gen.returncode == 0, gen.stderr
        text = cfg.read_text()
        # One plain-HTTP client listener on loopback; no federation, no registration.
        text = re.sub(r"listeners:.*?\ndatabase:", "listeners:\n"
                      f"  - port: {self.port}\n    bind_addresses: ['127.0.0.1']\n    type: http\n"
                      "    tls: false\n    x_forwarded: false\n    resources:\n      - names: [client]\n"
                      "        compress: false\ndatabase:", text, flags=re.S)
        text += ("\nenable_registration: false\nfederation_domain_whitelist: []\n"
                 "trusted_key_servers: []\nsuppress_key_server_warning: true\n"
                 f"rc_message: {json.dumps(self.rc_message)}\n"
                 "rc_login: {address: {per_second: 1000, burst_count: 1000}, "
                 "account: {per_second: 1000, burst_count: 1000}}\n")
        cfg.write_text(text)
        self.log = self.dir / "synapse.out"
        with open(self.log, "w") as out:
            self.proc = subprocess.Popen([py, "-m", "synapse.app.homeserver", "-c", str(cfg)],
                                         stdout=out, stderr=subprocess.STDOUT, cwd=self.dir)
        deadline = time.monotonic() + 60
        while True:
            try:
                self.call("GET", "/_matrix/client/versions")
                break
            except (urllib.error.URLError, ConnectionError):
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    self.__exit__()
                    raise RuntimeError(f"synapse did not start:\n{self.log.read_text()[-3000:]}")
                time.sleep(0.2)
        reg = subprocess.run([str(Path(py).parent / "register_new_matrix_user"), "-c", str(cfg),
                              "-u", USER, "-p", PASSWORD, "--no-admin", self.url],
                             capture_output=True, text=True, timeout=60)
        assert reg.returncode == 0, reg.stdout + reg.stderr
        self.token = self.login()
        self.room = self.call("POST", "/_matrix/client/v3/createRoom", {"name": "home"},
                              token=self.token)[1]["room_id"]
        return self

    def __exit__(self, *exc):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)

    def login(self):
        """A fresh access token (a new device) for the user."""
        return self.call("POST", "/_matrix/client/v3/login", {
            "type": "m.login.password", "identifier": {"type": "m.id.user", "user": USER},
            "password": PASSWORD})[1]["access_token"]

    def call(self, method, path, body=None, token=None, raw=None):
        """(status, JSON answer, headers) of one client-server API request."""
        data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
        headers = {"Content-Type": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        req = urllib.request.Request(self.url + path, data=data, method=method, headers=headers)
        return call(req)

    def messages(self):
        """The m.room.message events in the room, oldest first."""
        path = f"/_matrix/client/v3/rooms/{urllib.request.quote(self.room)}/messages?dir=b&limit=1000"
        chunk = self.call("GET", path, token=self.token)[1]["chunk"]
        return [e for e in reversed(chunk) if e["type"] == "m.room.message"]


def call(req):
    """(status, JSON body, headers) of a request, errors included."""
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, json.loads(resp.read() or b"null"), dict(resp.headers)
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null"), dict(e.headers)
