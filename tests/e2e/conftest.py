"""The lab as a pytest fixture: `scripts/lab.sh up` once per module, `down` after."""

import json
import os
import signal
import socket
import struct
import subprocess
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
LAB = REPO / "scripts" / "lab.sh"
BIN = os.environ.get("HOMEWARDEN_BIN", str(REPO / "target" / "debug" / "homewarden"))
LAB_DIR = Path(os.environ.get("HW_LAB_DIR", "/tmp/homewarden-lab-test"))

C2 = "203.0.113.66"        # bad in the embedded lab feed
BENIGN = "203.0.113.80"    # allowlisted web server
LATE = "203.0.113.67"      # published through the MISP double during the test
MISP = "https://203.0.113.10:8443"
DNS = "203.0.113.53"


class Lab:
    def __init__(self, directory):
        self.dir = directory
        self.config = directory / "homewarden.yaml"

    def run(self, *args, check=True, timeout=120, env=None):
        e = dict(os.environ, HW_LAB_DIR=str(self.dir), HOMEWARDEN_BIN=BIN, **(env or {}))
        r = subprocess.run([str(LAB), *args], capture_output=True, text=True, timeout=timeout, env=e)
        if check and r.returncode != 0:
            raise AssertionError(f"lab.sh {' '.join(args)} failed ({r.returncode}):\n{r.stdout}\n{r.stderr}")
        return r

    def ns(self, name, *cmd, timeout=30):
        return subprocess.run(["ip", "netns", "exec", name, *cmd], capture_output=True, text=True,
                              timeout=timeout, env=dict(os.environ, HW_LAB_DIR=str(self.dir)))

    def http_ok(self, addr, timeout=2):
        """True if a web server at addr answers an HTTP GET from the iot namespace."""
        r = self.ns("iot", "curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "-m", str(timeout),
                    f"http://{addr}/", timeout=timeout + 5)
        return r.returncode == 0 and r.stdout.strip() == "200"

    def dns_answers(self, name, timeout=2, server=DNS, netns="iot"):
        """True if a resolver (the lab's by default) answers a query for name sent from netns."""
        code = (
            "import socket,struct,sys\n"
            f"n={name!r};q=struct.pack('>HHHHHH',0x1234,0x0100,1,0,0,0)"
            "+b''.join(bytes([len(p)])+p.encode() for p in n.split('.'))+b'\\0'+struct.pack('>HH',1,1)\n"
            f"s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM);s.settimeout({timeout})\n"
            f"s.sendto(q,({server!r},53))\n"
            "try:\n d=s.recv(512);sys.exit(0 if d[:2]==q[:2] else 1)\n"
            "except socket.timeout:\n sys.exit(1)\n")
        return self.ns(netns, "/usr/bin/python3", "-c", code, timeout=timeout + 5).returncode == 0

    def agent(self, *args, check=True):
        r = subprocess.run([BIN, "--config", str(self.config), *args], capture_output=True, text=True,
                           timeout=120)
        if check and r.returncode != 0:
            raise AssertionError(f"homewarden {' '.join(args)} failed:\n{r.stdout}\n{r.stderr}")
        return r

    def status(self):
        return json.loads(self.agent("status", "--json").stdout)

    def suricata_pid(self):
        return int((self.dir / "suricata.pid").read_text().strip())

    def restart_agent(self, log_name):
        """Stops the agent (SIGTERM) and starts it again on the same state, as
        systemd would; returns its new log."""
        pid_file = self.dir / "homewarden.pid"
        os.kill(int(pid_file.read_text()), signal.SIGTERM)
        assert wait_for(lambda: not (self.dir / "control.sock").exists(), 10)
        log = self.dir / "log" / log_name
        with open(log, "w") as out:
            p = subprocess.Popen(["ip", "netns", "exec", "pi", BIN, "--config", str(self.config), "run"],
                                 stdin=subprocess.DEVNULL, stdout=out, stderr=out, start_new_session=True)
        pid_file.write_text(str(p.pid))
        assert wait_for(lambda: (self.dir / "control.sock").exists(), 10)
        return log


def wait_for(pred, timeout, step=0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(step)
    return pred()


@pytest.fixture(scope="module")
def lab():
    if os.geteuid() != 0:
        pytest.skip("the lab needs root (network namespaces, nftables)")
    lab = Lab(LAB_DIR)
    lab.run("up", timeout=300)
    try:
        yield lab
    finally:
        lab.run("down", check=False)
