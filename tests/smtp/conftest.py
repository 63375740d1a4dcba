"""Fixtures: run smtp_server.py as a real subprocess with the system python (python3-aiosmtpd)."""

import ssl
import subprocess
import sys
import time
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # tests/certs.py
import certs  # noqa: E402

SERVER = HERE / "smtp_server.py"
SYSTEM_PYTHON = "/usr/bin/python3"  # the server must run without the venv
USER = "api"  # Mailtrap's fixed SMTP user name
PASSWORD = "hw-mailtrap-token-0123456789abcdef"


class SmtpServer:
    def __init__(self, host, port, maildir, ca, proc, mode):
        self.host, self.port, self.maildir, self.ca, self.proc, self.mode = host, port, maildir, ca, proc, mode
        self.user, self.password = USER, PASSWORD

    def client_context(self):
        return ssl.create_default_context(cafile=self.ca)

    def messages(self):
        return sorted(self.maildir.glob("*.eml"), key=lambda p: int(p.stem))

    def stop(self):
        self.proc.terminate()
        try:
            return self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise


@pytest.fixture(scope="session")
def server_certs(tmp_path_factory):
    return certs.make_ca_and_server_cert(tmp_path_factory.mktemp("smtp-certs"), common_name="smtp-server")


@pytest.fixture
def smtp_factory(tmp_path, server_certs):
    started = []

    def start(mode="starttls", extra=()):
        d = tmp_path / f"s{len(started)}"
        d.mkdir()
        port_file, maildir = d / "port", d / "mail"
        cmd = [SYSTEM_PYTHON, str(SERVER), "--listen", "127.0.0.1:0", "--port-file", str(port_file),
               "--user", USER, "--password", PASSWORD, "--maildir", str(maildir),
               "--tls-cert", str(server_certs["cert"]), "--tls-key", str(server_certs["key"]),
               "--mode", mode, *extra]
        # Output to a file, not a pipe nobody reads: a chatty server must never block on a full pipe.
        output = d / "output.log"
        with open(output, "w") as out:
            proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 15
        while not port_file.exists():
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                proc.wait()
                raise RuntimeError(f"smtp server did not start:\n{output.read_text()}")
            time.sleep(0.05)
        # "localhost", so clients check the certificate's name as well as its chain.
        s = SmtpServer("localhost", int(port_file.read_text()), maildir, str(server_certs["ca"]), proc, mode)
        started.append(s)
        return s
    yield start
    for s in started:
        if s.proc.poll() is None:
            s.stop()


@pytest.fixture
def smtp(smtp_factory):
    return smtp_factory()
