"""Fixtures: run misp_double.py as a real subprocess (as the lab does), over HTTP or HTTPS."""

import subprocess
import sys
import time
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # tests/certs.py, shared with the LLM and SMTP fixtures
import certs  # noqa: E402
DOUBLE = HERE / "misp_double.py"
SYSTEM_PYTHON = "/usr/bin/python3"  # the double must run without the venv
API_KEY = "hwtestkey0123456789abcdef0123456789abcd"  # 40 chars, like a MISP auth key


def make_ca_and_server_cert(directory: Path):
    """Throwaway CA + server cert for 127.0.0.1/localhost, so clients verify a real chain."""
    return certs.make_ca_and_server_cert(directory, common_name="misp-double")


class Double:
    def __init__(self, url, key, log, ca, proc):
        self.url, self.key, self.request_log, self.ca, self.proc = url, key, log, ca, proc


def start_double(tmp: Path, tls=False, extra=()):
    port_file = tmp / "port"
    log = tmp / "requests.jsonl"
    cmd = [SYSTEM_PYTHON, str(DOUBLE), "--listen", "127.0.0.1:0", "--port-file", str(port_file),
           "--api-key", API_KEY, "--request-log", str(log), *extra]
    ca = None
    if tls:
        certs = make_ca_and_server_cert(tmp)
        cmd += ["--tls-cert", str(certs["cert"]), "--tls-key", str(certs["key"])]
        ca = str(certs["ca"])
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 15
    while not port_file.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            out, err = proc.communicate()
            raise RuntimeError(f"misp double did not start: {out}\n{err}")
        time.sleep(0.05)
    port = int(port_file.read_text())
    scheme = "https" if tls else "http"
    host = "localhost" if tls else "127.0.0.1"  # exercise hostname verification too
    return Double(f"{scheme}://{host}:{port}", API_KEY, log, ca, proc)


def stop_double(d):
    d.proc.terminate()
    try:
        d.proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        d.proc.kill()
        d.proc.wait()


@pytest.fixture
def double(tmp_path):
    d = start_double(tmp_path)
    yield d
    stop_double(d)


@pytest.fixture
def tls_double(tmp_path):
    d = start_double(tmp_path, tls=True)
    yield d
    stop_double(d)


@pytest.fixture
def double_factory(tmp_path):
    started = []

    def make(sub="d", **kw):
        p = tmp_path / sub
        p.mkdir()
        d = start_double(p, **kw)
        started.append(d)
        return d
    yield make
    for d in started:
        stop_double(d)
