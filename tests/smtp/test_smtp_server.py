"""The test SMTP server is a strict, real peer: Python's smtplib against it, over real TLS."""

import email
import email.policy
import json
import signal
import smtplib
import ssl
import subprocess
import time
from email.message import EmailMessage
from pathlib import Path

import pytest

FROM = "homewarden@home.test"
TO = ["owner@home.test", "second@home.test"]


def message(subject="homewarden: C2 blocked", body="1. Disconnect the camera.\n.hidden line\n.\nend\n"):
    m = EmailMessage()
    m["From"], m["To"], m["Subject"] = FROM, ", ".join(TO), subject
    m.set_content(body)
    return m


def starttls_client(s, timeout=5):
    c = smtplib.SMTP(s.host, s.port, timeout=timeout)
    c.starttls(context=s.client_context())
    c.ehlo()  # smtplib forgets the pre-TLS capabilities and does not ask again by itself
    return c


def test_banner_and_ehlo_before_starttls(smtp):
    with smtplib.SMTP(smtp.host, smtp.port, timeout=5) as c:
        code, banner = c.ehlo()
        assert code == 250
        assert c.has_extn("starttls") and not c.has_extn("auth")  # no AUTH in clear text
        assert c.has_extn("size") and c.esmtp_features["size"] == str(10 * 1024 * 1024)
    with smtplib.SMTP(smtp.host, smtp.port, timeout=5) as c:
        assert c.noop()[0] == 250
        code, _ = c.docmd("HELO", "me")  # not allowed before STARTTLS
        assert code == 530


def test_mail_and_auth_without_starttls_are_refused(smtp):
    with smtplib.SMTP(smtp.host, smtp.port, timeout=5) as c:
        c.ehlo()
        assert c.docmd("MAIL", f"FROM:<{FROM}>") == (530, b"Must issue a STARTTLS command first")
        assert c.docmd("AUTH", "PLAIN AGFwaQB4")[0] == 530
        with pytest.raises(smtplib.SMTPSenderRefused) as exc:
            c.send_message(message())
        assert exc.value.smtp_code == 530
    assert smtp.messages() == []


def test_mail_after_starttls_without_auth_is_refused(smtp):
    with starttls_client(smtp) as c:
        assert c.has_extn("auth") and "PLAIN" in c.esmtp_features["auth"] and "LOGIN" in c.esmtp_features["auth"]
        assert not c.has_extn("starttls")
        code, msg = c.docmd("MAIL", f"FROM:<{FROM}>")
        assert (code, msg) == (530, b"5.7.0 Authentication required")
    assert smtp.messages() == []


@pytest.mark.parametrize("mechanism", ["PLAIN", "LOGIN"])
@pytest.mark.parametrize("user,password", [("api", "wrong"), ("apx", None), ("", "")])
def test_wrong_credentials_get_535_without_hanging(smtp, mechanism, user, password):
    with starttls_client(smtp, timeout=5) as c:
        c.ehlo()
        c.user, c.password = user, smtp.password if password is None else password
        t0 = time.monotonic()
        with pytest.raises(smtplib.SMTPAuthenticationError) as exc:
            c.auth(mechanism, getattr(c, f"auth_{mechanism.lower()}"))
        assert exc.value.smtp_code == 535 and b"5.7.8" in exc.value.smtp_error
        assert time.monotonic() - t0 < 2
        # The session is still usable: the right credentials work on the same connection.
        c.user, c.password = smtp.user, smtp.password
        assert c.auth(mechanism, getattr(c, f"auth_{mechanism.lower()}"))[0] == 235


def test_starttls_delivery_is_stored_atomically_and_parses(smtp):
    body = "1. Disconnect the camera.\n.hidden line\n.\nSchöne Grüße <b>not html</b>\n"
    with starttls_client(smtp) as c:
        c.login(smtp.user, smtp.password)
        refused = c.send_message(message(subject="homewarden: C2 blocked — kamera", body=body))
        assert refused == {}
    assert [p.name for p in smtp.messages()] == ["1.eml"]
    assert sorted(p.name for p in smtp.maildir.iterdir()) == ["1.eml", "1.json"]  # no temp files left
    parsed = email.message_from_bytes((smtp.maildir / "1.eml").read_bytes(), policy=email.policy.default)
    assert parsed["Subject"] == "homewarden: C2 blocked — kamera"
    assert parsed["From"] == FROM and parsed["To"] == ", ".join(TO)
    assert parsed.get_content().replace("\r\n", "\n") == body  # dot-stuffing undone, UTF-8 intact
    meta = json.loads((smtp.maildir / "1.json").read_text())
    assert meta["mail_from"] == FROM and meta["rcpt_tos"] == TO
    assert meta["auth_user"] == "api"
    assert meta["tls"] in ("TLSv1.2", "TLSv1.3")
    assert meta["size"] == (smtp.maildir / "1.eml").stat().st_size


def test_messages_are_numbered_in_order(smtp):
    with starttls_client(smtp) as c:
        c.login(smtp.user, smtp.password)
        for i in range(3):
            c.send_message(message(subject=f"n{i}"))
    subjects = [email.message_from_bytes(p.read_bytes(), policy=email.policy.default)["Subject"]
                for p in smtp.messages()]
    assert subjects == ["n0", "n1", "n2"]
    assert [p.name for p in smtp.messages()] == ["1.eml", "2.eml", "3.eml"]


def test_numbering_continues_after_a_restart(smtp_factory):
    first = smtp_factory()
    with starttls_client(first) as c:
        c.login(first.user, first.password)
        c.send_message(message(subject="before"))
    assert first.stop() == 0
    second = smtp_factory(extra=("--maildir", str(first.maildir)))  # argparse: the last --maildir wins
    with starttls_client(second) as c:
        c.login(second.user, second.password)
        c.send_message(message(subject="after"))
    assert [p.name for p in first.messages()] == ["1.eml", "2.eml"]
    assert b"Subject: after" in (first.maildir / "2.eml").read_bytes()


def test_certificate_is_checked_by_the_client(smtp):
    c = smtplib.SMTP(smtp.host, smtp.port, timeout=5)
    with pytest.raises(ssl.SSLCertVerificationError):
        c.starttls(context=ssl.create_default_context())  # system CAs do not know the test CA
    c.close()


def test_implicit_tls(smtp_factory):
    s = smtp_factory(mode="implicit")
    with smtplib.SMTP_SSL(s.host, s.port, timeout=5, context=s.client_context()) as c:
        c.ehlo()
        assert not c.has_extn("starttls") and c.has_extn("auth")
        assert c.docmd("MAIL", f"FROM:<{FROM}>")[0] == 530  # TLS alone is not enough: AUTH first
        c.login(s.user, s.password)
        assert c.send_message(message(subject="over 465")) == {}
    parsed = email.message_from_bytes((s.maildir / "1.eml").read_bytes(), policy=email.policy.default)
    assert parsed["Subject"] == "over 465"
    assert json.loads((s.maildir / "1.json").read_text())["tls"] in ("TLSv1.2", "TLSv1.3")
    # A clear-text client gets no banner: the server waits for a TLS ClientHello.
    with pytest.raises((smtplib.SMTPServerDisconnected, TimeoutError, OSError)):
        smtplib.SMTP(s.host, s.port, timeout=1)


def test_fail_next_gives_451_once_then_accepts(smtp_factory):
    s = smtp_factory(extra=("--fail-next", "1"))
    with starttls_client(s) as c:
        c.login(s.user, s.password)
        with pytest.raises(smtplib.SMTPDataError) as exc:
            c.send_message(message(subject="first try"))
        assert exc.value.smtp_code == 451
        assert s.messages() == []
        assert c.send_message(message(subject="second try")) == {}
    assert [p.name for p in s.messages()] == ["1.eml"]
    assert b"Subject: second try" in (s.maildir / "1.eml").read_bytes()


def test_sigusr1_queues_one_more_failure(smtp):
    smtp.proc.send_signal(signal.SIGUSR1)
    time.sleep(0.2)
    with starttls_client(smtp) as c:
        c.login(smtp.user, smtp.password)
        with pytest.raises(smtplib.SMTPDataError):
            c.send_message(message())
        assert c.send_message(message()) == {}
    assert len(smtp.messages()) == 1


def test_size_limit(smtp_factory):
    s = smtp_factory(extra=("--max-size", "2000"))
    with starttls_client(s) as c:
        c.login(s.user, s.password)
        with pytest.raises(smtplib.SMTPSenderRefused) as exc:
            c.send_message(message(body="x" * 3000 + "\n"))
        assert exc.value.smtp_code == 552
    assert s.messages() == []


def test_sigterm_exits_cleanly(smtp):
    with starttls_client(smtp) as c:  # an open session must not keep it from stopping
        c.ehlo()
        t0 = time.monotonic()
        assert smtp.stop() == 0
        assert time.monotonic() - t0 < 5


def test_bad_certificate_path_is_a_one_line_error(tmp_path):
    server = Path(__file__).resolve().parent / "smtp_server.py"
    r = subprocess.run(["/usr/bin/python3", str(server), "--listen", "127.0.0.1:0", "--user", "u", "--password", "p",
                        "--maildir", str(tmp_path / "m"), "--tls-cert", str(tmp_path / "nope.pem"),
                        "--tls-key", str(tmp_path / "nope.key")], capture_output=True, text=True, timeout=20)
    assert r.returncode != 0
    assert r.stderr.startswith("smtp-server: ") and len(r.stderr.strip().splitlines()) == 1
    assert "Traceback" not in r.stderr


@pytest.mark.parametrize("mode,scheme", [("starttls", "smtp"), ("implicit", "smtps")])
def test_curl_as_a_second_independent_client(smtp_factory, tmp_path, mode, scheme):
    """curl (libcurl's own SMTP code over OpenSSL) delivers too, and fails cleanly on a wrong token."""
    s = smtp_factory(mode=mode)
    msg = tmp_path / "msg.eml"
    msg.write_bytes(b"From: <homewarden@home.test>\r\nTo: <owner@home.test>\r\nSubject: via curl\r\n\r\nbody\r\n")

    def curl(password):
        return subprocess.run(["curl", "-sS", "--max-time", "10", "--url", f"{scheme}://{s.host}:{s.port}",
                               "--ssl-reqd", "--cacert", s.ca, "--user", f"{s.user}:{password}",
                               "--mail-from", "homewarden@home.test", "--mail-rcpt", "owner@home.test",
                               "--upload-file", str(msg)], capture_output=True, text=True, timeout=20)
    bad = curl("wrong-token")
    assert bad.returncode == 67, bad.stderr  # CURLE_LOGIN_DENIED, not a timeout (28)
    assert s.messages() == []
    good = curl(s.password)
    assert good.returncode == 0, good.stderr
    assert (s.maildir / "1.eml").read_bytes().endswith(b"Subject: via curl\r\n\r\nbody\r\n")
    assert json.loads((s.maildir / "1.json").read_text())["rcpt_tos"] == ["owner@home.test"]
