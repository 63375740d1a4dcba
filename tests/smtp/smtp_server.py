#!/usr/bin/python3
"""A real SMTP server for homewarden's mail tests, on Debian's python3-aiosmtpd.

Run with /usr/bin/python3 (no venv), e.g. inside a lab namespace. It is as
strict as the submission server it stands in for (Mailtrap's
live.smtp.mailtrap.io:587, user `api`, password = token):

  --mode starttls  (default; like port 587) STARTTLS is advertised and required
                   before anything but EHLO/NOOP/QUIT (530 otherwise); AUTH is
                   only advertised and accepted after it.
  --mode implicit  (like port 465) TLS from the first byte; no STARTTLS.

AUTH PLAIN or LOGIN is required before MAIL (530 5.7.0). A wrong user or
password gets 535 5.7.8 and the connection stays usable.

Each accepted message becomes DIR/<n>.json (envelope and AUTH user) and then
DIR/<n>.eml (the message as received), both written to a temporary file,
fsync'd and renamed, so a reader that sees <n>.eml sees both complete. <n>
counts up from 1, continuing after the highest number already in DIR.

--fail-next N answers the next N DATA with "451 4.3.0" (temporary) after the
message was sent, so retry paths can be tested; SIGUSR1 adds one more at run
time. SIGTERM (and SIGINT) stop the server cleanly (exit 0).
"""

import argparse
import asyncio
import hmac
import json
import logging
import os
import re
import signal
import ssl
import sys
import time
from pathlib import Path

from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword

log = logging.getLogger("smtp-server")


class Maildir:
    def __init__(self, directory: Path):
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        nums = [int(m.group(1)) for p in self.dir.iterdir() if (m := re.fullmatch(r"(\d+)\.eml", p.name))]
        self.next = max(nums, default=0) + 1

    def _write(self, name, data: bytes):
        tmp = self.dir / f".{name}.tmp"
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.dir / name)

    def store(self, content: bytes, meta: dict) -> int:
        n = self.next
        self.next += 1
        self._write(f"{n}.json", (json.dumps(meta, indent=2, ensure_ascii=False) + "\n").encode("utf-8"))
        self._write(f"{n}.eml", content)
        dfd = os.open(self.dir, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
        return n


class Handler:
    def __init__(self, maildir: Maildir, fail_next: int):
        self.maildir = maildir
        self.fail_next = fail_next

    async def handle_DATA(self, server, session, envelope):
        if self.fail_next > 0:
            self.fail_next -= 1
            log.info("DATA from %s refused on purpose (--fail-next; %d left)", envelope.mail_from, self.fail_next)
            return "451 4.3.0 Temporary failure, please try again later"
        ssl_obj = server.transport.get_extra_info("ssl_object") if server.transport else None
        content = envelope.original_content if envelope.original_content is not None else envelope.content
        if isinstance(content, str):
            content = content.encode("utf-8")
        auth = session.auth_data
        meta = {
            "mail_from": envelope.mail_from,
            "rcpt_tos": list(envelope.rcpt_tos),
            "auth_user": auth.decode("utf-8", "replace") if isinstance(auth, bytes) else auth,
            "mail_options": list(envelope.mail_options),
            "rcpt_options": list(envelope.rcpt_options),
            "smtputf8": envelope.smtp_utf8,
            "tls": ssl_obj.version() if ssl_obj else None,
            "peer": list(session.peer) if session.peer else None,
            "helo": session.host_name,
            "received": time.time(),
            "size": len(content),
        }
        n = self.maildir.store(content, meta)
        log.info("message %d from %s to %s stored (%d bytes)", n, envelope.mail_from, envelope.rcpt_tos, len(content))
        return f"250 2.0.0 Ok: queued as {n}"


class Authenticator:
    """Checks user and password; a failure is not handled here, so aiosmtpd answers 535 itself.

    AuthResult(success=False, handled=True) would tell aiosmtpd a reply was already
    sent, and the client would wait forever for one.
    """

    def __init__(self, user: str, password: str):
        self.user = user.encode("utf-8")
        self.password = password.encode("utf-8")

    def __call__(self, server, session, envelope, mechanism, auth_data):
        if not isinstance(auth_data, LoginPassword):
            return AuthResult(success=False, handled=False)
        ok_user = hmac.compare_digest(auth_data.login, self.user)
        ok_pass = hmac.compare_digest(auth_data.password, self.password)
        if ok_user and ok_pass:
            return AuthResult(success=True, auth_data=auth_data.login)
        log.info("AUTH %s refused for %r", mechanism, auth_data.login)
        return AuthResult(success=False, handled=False)


def tls_context(cert, key):
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(cert, key)
    return ctx


def parse_listen(text):
    host, _, port = text.rpartition(":")
    return host.strip("[]") or "127.0.0.1", int(port)


async def serve(args):
    ctx = tls_context(args.tls_cert, args.tls_key)
    handler = Handler(Maildir(Path(args.maildir)), args.fail_next)
    auth = Authenticator(args.user, args.password)
    implicit = args.mode == "implicit"

    def factory():
        return SMTP(handler,
                    hostname=args.hostname,
                    ident="ESMTP",
                    data_size_limit=args.max_size,
                    enable_SMTPUTF8=True,
                    # starttls: offer and require STARTTLS. implicit: the socket is TLS
                    # already, and aiosmtpd would otherwise refuse AUTH with 538 since it
                    # only counts STARTTLS as encryption.
                    tls_context=None if implicit else ctx,
                    require_starttls=not implicit,
                    auth_required=True,
                    auth_require_tls=not implicit,
                    authenticator=auth,
                    timeout=args.timeout)

    loop = asyncio.get_running_loop()
    host, port = parse_listen(args.listen)
    server = await loop.create_server(factory, host, port, ssl=ctx if implicit else None, reuse_address=True)
    bound = server.sockets[0].getsockname()[1]
    if args.port_file:
        tmp = args.port_file + ".tmp"
        with open(tmp, "w") as fh:
            fh.write(f"{bound}\n")
        os.replace(tmp, args.port_file)
    print(f"smtp-server listening on {host}:{bound} ({args.mode})", flush=True)

    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    def one_more_failure():
        handler.fail_next += 1
        log.info("SIGUSR1: the next %d DATA will get 451", handler.fail_next)
    loop.add_signal_handler(signal.SIGUSR1, one_more_failure)

    await stop.wait()
    server.close()
    await server.wait_closed()


def main(argv=None):
    p = argparse.ArgumentParser(description="Strict SMTP submission server for tests (aiosmtpd).")
    p.add_argument("--listen", default="127.0.0.1:587", help="HOST:PORT (port 0 = ephemeral)")
    p.add_argument("--port-file", help="write the bound port here once listening")
    p.add_argument("--user", required=True, help="the one accepted AUTH user (Mailtrap: api)")
    p.add_argument("--password", required=True, help="its password (Mailtrap: the API token)")
    p.add_argument("--maildir", required=True, help="directory for <n>.eml and <n>.json")
    p.add_argument("--tls-cert", required=True, help="PEM certificate (chain)")
    p.add_argument("--tls-key", required=True, help="PEM private key")
    p.add_argument("--mode", choices=("starttls", "implicit"), default="starttls")
    p.add_argument("--fail-next", type=int, default=0, metavar="N", help="answer the next N DATA with 451")
    p.add_argument("--hostname", default="smtp.homewarden.test", help="name in the banner and EHLO reply")
    p.add_argument("--max-size", type=int, default=10 * 1024 * 1024, help="SIZE limit in bytes (Mailtrap: 10 MB)")
    p.add_argument("--timeout", type=float, default=300, help="idle seconds before the server hangs up")
    p.add_argument("--verbose", action="store_true", help="log sessions to stderr")
    args = p.parse_args(argv)
    if args.fail_next < 0:
        p.error("--fail-next must be >= 0")
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, stream=sys.stderr,
                        format="%(name)s: %(message)s")
    if not args.verbose:
        logging.getLogger("mail.log").setLevel(logging.ERROR)
    try:
        asyncio.run(serve(args))
    except (OSError, ssl.SSLError) as exc:
        sys.exit(f"smtp-server: {exc}")


if __name__ == "__main__":
    main()
