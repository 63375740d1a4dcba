"""Fixtures: run misp_double.py as a real subprocess (as the lab does), over HTTP or HTTPS."""

import datetime as dt
import ipaddress
import subprocess
import sys
import time
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
DOUBLE = HERE / "misp_double.py"
SYSTEM_PYTHON = "/usr/bin/python3"  # the double must run without the venv
API_KEY = "hwtestkey0123456789abcdef0123456789abcd"  # 40 chars, like a MISP auth key


def make_ca_and_server_cert(directory: Path):
    """Throwaway CA + server cert for 127.0.0.1/localhost, so clients verify a real chain."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = dt.datetime.now(dt.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "homewarden test CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                       content_commitment=False, key_encipherment=False,
                                       data_encipherment=False, key_agreement=False,
                                       encipher_only=False, decipher_only=False), critical=True)
          .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "misp-double")]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                        x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))
    paths = {"ca": directory / "ca.pem", "cert": directory / "server.pem", "key": directory / "server.key"}
    paths["ca"].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths["cert"].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths["key"].write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                               serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))
    return paths


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
