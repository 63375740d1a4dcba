#!/usr/bin/python3
"""A stand-in for the push services homewarden's `notify:` targets talk to.

Standard library only (runs with /usr/bin/python3, no venv). Three services
on one port, each as its published API describes it:

  POST /                   ntfy, "Publish as JSON" (docs.ntfy.sh/publish):
                           a JSON object with `topic` (required, [-_A-Za-z0-9]{1,64}),
                           `message`, `title`, `tags` (strings), `priority` (1-5),
                           `click` and the other documented fields; access
                           token as `Authorization: Bearer`. Answers the
                           message JSON ({"id","time","event":"message",...});
                           errors as {"code","http","error"}.
  POST /hook               the homewarden webhook (README): body as documented,
                           `X-Homewarden-Signature: sha256=<hex HMAC-SHA256 of
                           the raw body>` checked with --webhook-secret.
  PUT  /_matrix/client/v3/rooms/{roomId}/send/{eventType}/{txnId}
                           Matrix client-server API: `Authorization: Bearer`
                           (M_MISSING_TOKEN / M_UNKNOWN_TOKEN), the room must be
                           one the token's user joined (M_FORBIDDEN), an
                           m.room.message needs string `msgtype` and `body`;
                           a repeated txnId (same token) returns the first
                           event_id and adds nothing. 429 is M_LIMIT_EXCEEDED
                           with `retry_after_ms` (and Retry-After).

Stricter than the real services where that finds our mistakes: unknown ntfy
fields are refused (the real server ignores them).

Delivered messages live in --state (JSON), so a stop and start on the same
port keeps them (and Matrix's transaction ids). Admin paths (no auth):

  POST   /__admin/faults   {"service": "ntfy"|"webhook"|"matrix", "queue": [ITEM...]}
  GET    /__admin/state    everything delivered
  GET    /__admin/requests one record per service request, from its arrival
                           (time, service, method, path, fault; status null
                           while in flight, 0 for a disconnect)

An ITEM: {"status": 4xx|5xx, "retry_after": SECONDS} answers that status in
the service's error shape (a 429 also gets the service's wait: Retry-After
for the webhook, retry_after_ms and Retry-After for Matrix, none for ntfy,
which sends none); {"disconnect": true} closes without answering;
{"delay": SECONDS} waits first.
"""

import argparse
import hashlib
import hmac
import json
import os
import re
import secrets
import signal
import socket
import ssl
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote

NTFY_FIELDS = {"topic", "message", "title", "tags", "priority", "actions", "click", "attach", "markdown",
               "icon", "filename", "delay", "email", "call"}
TOPIC = re.compile(r"^[-_A-Za-z0-9]{1,64}$")
MATRIX_SEND = re.compile(r"^/_matrix/client/v3/rooms/([^/]+)/send/([^/]+)/([^/]+)$")
WEBHOOK_KEYS = {"version", "id", "type", "appliance", "sent_at", "title", "text", "incidents"}
WEBHOOK_OPTIONAL = {"link", "advice"}


class Reply(Exception):
    def __init__(self, status, body, headers=None):
        super().__init__(status)
        self.status, self.body, self.headers = status, body, headers or {}


def ntfy_error(status, code, text):
    return Reply(status, {"code": code, "http": status, "error": text})


def matrix_error(status, errcode, text, **extra):
    return Reply(status, {"errcode": errcode, "error": text, **extra})


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        if self.server.verbose:
            sys.stderr.write("push-double: " + fmt % args + "\n")

    def _send(self, status, body, headers=None):
        raw = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(raw)

    def _body(self):
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def do_GET(self):
        self._route("GET")

    def do_POST(self):
        self._route("POST")

    def do_PUT(self):
        self._route("PUT")

    def _route(self, method):
        raw = self._body()
        path = self.path.split("?", 1)[0]
        srv = self.server
        if path.startswith("/__admin/"):
            return self._admin(method, path, raw)
        if method == "POST" and path == "/":
            service = "ntfy"
        elif method == "POST" and path == "/hook":
            service = "webhook"
        elif method == "PUT" and MATRIX_SEND.match(path):
            service = "matrix"
        else:
            return self._send(404, {"error": f"no {method} {path} here"})
        fault = srv.next_fault(service)
        rec = {"time": time.time(), "service": service, "method": method, "path": path, "fault": fault,
               "status": None}
        # Logged on arrival: a test can see a request in flight (status still null).
        srv.log_request_record(rec)
        try:
            if fault and fault.get("delay"):
                time.sleep(fault["delay"])
            if fault and fault.get("disconnect"):
                rec["status"] = 0
                self.close_connection = True
                self.connection.shutdown(socket.SHUT_RDWR)
                return
            if fault and fault.get("status"):
                raise srv.fault_reply(service, fault)
            status, body = getattr(self, service)(raw, path)
            rec["status"] = status
            self._send(status, body)
        except Reply as r:
            rec["status"] = r.status
            self._send(r.status, r.body, r.headers)

    # ---------------------------------------------------------------- ntfy

    def ntfy(self, raw, _path):
        srv = self.server
        if srv.ntfy_token is not None:
            auth = self.headers.get("Authorization", "")
            if auth != f"Bearer {srv.ntfy_token}":
                raise ntfy_error(401, 40101, "unauthorized")
        try:
            m = json.loads(raw)
        except ValueError:
            raise ntfy_error(400, 40024, "invalid request: request body must be message JSON")
        if not isinstance(m, dict):
            raise ntfy_error(400, 40024, "invalid request: request body must be message JSON")
        unknown = set(m) - NTFY_FIELDS
        if unknown:
            raise ntfy_error(400, 40024, f"invalid request: unknown fields {sorted(unknown)}")
        topic = m.get("topic")
        if not isinstance(topic, str) or not TOPIC.match(topic):
            raise ntfy_error(400, 40009, "invalid request: topic invalid")
        for k in ("message", "title", "click", "icon", "attach", "filename", "delay", "email", "call"):
            if k in m and not isinstance(m[k], str):
                raise ntfy_error(400, 40024, f"invalid request: {k} must be a string")
        if "tags" in m and not (isinstance(m["tags"], list) and all(isinstance(t, str) for t in m["tags"])):
            raise ntfy_error(400, 40024, "invalid request: tags must be a list of strings")
        if "priority" in m and (not isinstance(m["priority"], int) or not 1 <= m["priority"] <= 5):
            raise ntfy_error(400, 40007, "invalid request: priority invalid")
        if "click" in m and not re.match(r"^(https?|mailto|geo)://?", m["click"]):
            raise ntfy_error(400, 40013, "invalid request: click URL invalid")
        msg = {"id": secrets.token_hex(6), "time": int(time.time()), "expires": int(time.time()) + 43200,
               "event": "message", "topic": topic, "message": m.get("message", "triggered")}
        for k in ("title", "tags", "priority", "click"):
            if k in m:
                msg[k] = m[k]
        srv.deliver("ntfy", msg)
        return 200, msg

    # ---------------------------------------------------------------- webhook

    def webhook(self, raw, _path):
        srv = self.server
        if not self.headers.get("Content-Type", "").startswith("application/json"):
            raise Reply(415, {"error": "JSON only"})
        if srv.webhook_secret is not None:
            want = "sha256=" + hmac.new(srv.webhook_secret.encode(), raw, hashlib.sha256).hexdigest()
            if not hmac.compare_digest(self.headers.get("X-Homewarden-Signature", ""), want):
                raise Reply(401, {"error": "bad signature"})
        try:
            body = json.loads(raw)
        except ValueError:
            raise Reply(400, {"error": "not JSON"})
        keys = set(body)
        if not WEBHOOK_KEYS <= keys or keys - WEBHOOK_KEYS - WEBHOOK_OPTIONAL or body["version"] != 1:
            raise Reply(400, {"error": f"not the documented body: {sorted(keys)}"})
        if self.headers.get("X-Homewarden-Delivery") != body["id"]:
            raise Reply(400, {"error": "X-Homewarden-Delivery is not the body's id"})
        srv.deliver("webhook", body)
        return 200, {"ok": True}

    # ---------------------------------------------------------------- matrix

    def matrix(self, raw, path):
        srv = self.server
        room, event_type, txn = (unquote(p) for p in MATRIX_SEND.match(path).groups())
        auth = self.headers.get("Authorization", "")
        if not auth.startswith("Bearer "):
            raise matrix_error(401, "M_MISSING_TOKEN", "Missing access token")
        token = auth[len("Bearer "):]
        if token != srv.matrix_token:
            raise matrix_error(401, "M_UNKNOWN_TOKEN", "Unknown access token", soft_logout=False)
        if room != srv.matrix_room:
            raise matrix_error(403, "M_FORBIDDEN", f"User not in room {room}")
        try:
            content = json.loads(raw)
        except ValueError:
            raise matrix_error(400, "M_NOT_JSON", "Content not JSON.")
        if not isinstance(content, dict):
            raise matrix_error(400, "M_BAD_JSON", "Content must be a JSON object.")
        if event_type == "m.room.message":
            for k in ("msgtype", "body"):
                if not isinstance(content.get(k), str):
                    raise matrix_error(400, "M_BAD_JSON", f"'{k}' not in content or not a string")
            if "formatted_body" in content and content.get("format") != "org.matrix.custom.html":
                raise matrix_error(400, "M_BAD_JSON", "formatted_body without format org.matrix.custom.html")
        with srv.lock:
            key = f"{token}\n{txn}"
            seen = srv.state["matrix_txns"].get(key)
            if seen:
                return 200, {"event_id": seen}
            event_id = "$" + secrets.token_urlsafe(16)
            srv.state["matrix_txns"][key] = event_id
        srv.deliver("matrix", {"event_id": event_id, "room_id": room, "type": event_type, "txn_id": txn,
                               "content": content})
        return 200, {"event_id": event_id}

    # ---------------------------------------------------------------- admin

    def _admin(self, method, path, raw):
        srv = self.server
        if path == "/__admin/faults" and method == "POST":
            body = json.loads(raw or b"{}")
            with srv.lock:
                srv.faults.setdefault(body["service"], []).extend(body.get("queue", []))
            return self._send(200, {"queued": len(body.get("queue", []))})
        if path == "/__admin/state" and method == "GET":
            with srv.lock:
                return self._send(200, srv.state)
        if path == "/__admin/requests" and method == "GET":
            with srv.lock:
                return self._send(200, srv.requests)
        return self._send(404, {"error": "no such admin path"})


class PushDouble(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, addr, args):
        super().__init__(addr, Handler)
        self.lock = threading.Lock()
        self.verbose = args.verbose
        self.state_path = args.state
        self.ntfy_token = args.ntfy_token
        self.webhook_secret = args.webhook_secret
        self.matrix_token = args.matrix_token
        self.matrix_room = args.matrix_room
        self.faults = {}
        self.requests = []
        self.state = {"ntfy": [], "webhook": [], "matrix": [], "matrix_txns": {}}
        if self.state_path and os.path.exists(self.state_path):
            with open(self.state_path) as f:
                self.state.update(json.load(f))

    def next_fault(self, service):
        with self.lock:
            q = self.faults.get(service) or []
            return q.pop(0) if q else None

    def fault_reply(self, service, fault):
        status, wait = fault["status"], fault.get("retry_after")
        if service == "ntfy":
            if status == 429:
                return ntfy_error(429, 42901, "limit reached: too many requests, please be nice")
            return ntfy_error(status, status * 100 + 1, "internal server error")
        if service == "matrix":
            if status == 429:
                wait = wait if wait is not None else 1
                return matrix_error(429, "M_LIMIT_EXCEEDED", "Too many requests", retry_after_ms=int(wait * 1000))
            return matrix_error(status, "M_UNKNOWN", "Internal server error")
        headers = {"Retry-After": str(wait)} if wait is not None else {}
        return Reply(status, {"error": f"fault {status}"}, headers)

    def deliver(self, service, record):
        with self.lock:
            self.state[service].append(record)
            if self.state_path:
                tmp = self.state_path + ".tmp"
                with open(tmp, "w") as f:
                    json.dump(self.state, f)
                os.replace(tmp, self.state_path)

    def log_request_record(self, rec):
        with self.lock:
            self.requests.append(rec)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--listen", default="127.0.0.1:0")
    p.add_argument("--port-file")
    p.add_argument("--state")
    p.add_argument("--ntfy-token")
    p.add_argument("--webhook-secret")
    p.add_argument("--matrix-token", default="syt_homewarden_test_token")
    p.add_argument("--matrix-room", default="!home:matrix.test")
    p.add_argument("--tls-cert")
    p.add_argument("--tls-key")
    p.add_argument("--verbose", action="store_true")
    args = p.parse_args(argv)
    host, port = args.listen.rsplit(":", 1)
    srv = PushDouble((host, int(port)), args)
    if args.tls_cert:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(args.tls_cert, args.tls_key)
        srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
    if args.port_file:
        with open(args.port_file + ".tmp", "w") as f:
            f.write(str(srv.server_address[1]))
        os.replace(args.port_file + ".tmp", args.port_file)
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=srv.shutdown).start())
    srv.serve_forever()


if __name__ == "__main__":
    main()
