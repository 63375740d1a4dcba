"""Throwaway CA + server certificate, so test clients verify a real chain (and the host name).

Used by the MISP, LLM and SMTP test fixtures; also a CLI for scripts that need
a cert for a lab address:

  python3 tests/certs.py DIR [--cn NAME] [--dns NAME]... [--ip ADDR]...
  -> DIR/ca.pem, DIR/server.pem, DIR/server.key
"""

import argparse
import datetime as dt
import ipaddress
from pathlib import Path


def make_ca_and_server_cert(directory: Path, common_name="test-server", dns_names=("localhost",),
                            ip_addresses=("127.0.0.1",)):
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    directory = Path(directory)
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
    sans = [x509.DNSName(n) for n in dns_names] + [x509.IPAddress(ipaddress.ip_address(a)) for a in ip_addresses]
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(sans), critical=False)
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
    paths["key"].chmod(0o600)
    return paths


def main():
    p = argparse.ArgumentParser(description="Write a throwaway CA and a server certificate signed by it.")
    p.add_argument("dir", type=Path)
    p.add_argument("--cn", default="test-server")
    p.add_argument("--dns", action="append", default=None, help="DNS subjectAltName (repeatable; default localhost)")
    p.add_argument("--ip", action="append", default=None, help="IP subjectAltName (repeatable; default 127.0.0.1)")
    a = p.parse_args()
    a.dir.mkdir(parents=True, exist_ok=True)
    paths = make_ca_and_server_cert(a.dir, a.cn, a.dns if a.dns is not None else ("localhost",),
                                    a.ip if a.ip is not None else ("127.0.0.1",))
    for k in ("ca", "cert", "key"):
        print(paths[k])


if __name__ == "__main__":
    main()
