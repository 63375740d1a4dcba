"""The push double against the contracts it stands in for.

Matrix: the same requests go to a real Synapse and to the double, and what a
client can see (status, errcode, the answer's keys, a repeated transaction
giving the first event back) must be the same. ntfy and the webhook have no
server that runs here: the double is checked against ntfy's publish
documentation and the README's webhook contract, refusing what they refuse.
"""

import hashlib
import hmac
import json
import time
import uuid
from urllib.parse import quote

from conftest import HOOK_SECRET, NTFY_TOKEN


def shape(answer):
    """What a client sees of an answer: status, errcode, the body's keys."""
    status, body, _ = answer
    body = body if isinstance(body, dict) else {}
    return status, body.get("errcode"), sorted(body)


def send_path(room, txn):
    return f"/_matrix/client/v3/rooms/{quote(room)}/send/m.room.message/{txn}"


def patient(server, *args, **kw):
    """A request to the real homeserver that waits out its rate limit (only the
    burst test below is about the limit)."""
    while True:
        answer = server.call(*args, **kw)
        if answer[0] != 429:
            return answer
        time.sleep(answer[1]["retry_after_ms"] / 1000)


def test_matrix_send_answers_as_synapse_does(synapse, double):
    text = {"msgtype": "m.text", "body": "homewarden: blocked 198.18.1.2 ↔ c2.evil.example",
            "format": "org.matrix.custom.html", "formatted_body": "<b>homewarden</b>"}
    for server in (synapse, double):
        txn = f"inc-{uuid.uuid4().hex}.push-room"
        first = patient(server, "PUT", send_path(synapse.room, txn), text, token=synapse.token)
        assert shape(first) == (200, None, ["event_id"]), (server, first)
        assert first[1]["event_id"].startswith("$")
        again = patient(server, "PUT", send_path(synapse.room, txn), text, token=synapse.token)
        assert again[1] == first[1], f"{server}: a repeated transaction is the same event"

    cases = {
        "no token": dict(body=text),
        "unknown token": dict(body=text, token="syt_not_a_token"),
        "not JSON": dict(raw=b"{not json", token=synapse.token),
    }
    for name, kw in cases.items():
        path = send_path(synapse.room, f"t-{uuid.uuid4().hex}")
        real = shape(patient(synapse, "PUT", path, **kw))
        ours = shape(double.call("PUT", path, **kw))
        assert ours == real, f"{name}: double {ours}, synapse {real}"
    # A room the user is not in: the same refusal from both.
    path = send_path("!notjoined:matrix.test", "t-1")
    assert shape(double.call("PUT", path, text, token=synapse.token))[:2] == \
        shape(patient(synapse, "PUT", path, text, token=synapse.token))[:2]

    # The timeline holds one event per transaction, as sent.
    bodies = [e["content"]["body"] for e in synapse.messages()]
    assert bodies.count(text["body"]) == 1, bodies


def test_a_rate_limited_send_looks_the_same(synapse, double):
    """Synapse's rc_message (one a second, burst of two here) against the double's 429."""
    real = None
    for i in range(10):
        answer = synapse.call("PUT", send_path(synapse.room, f"burst-{uuid.uuid4().hex}"),
                              {"msgtype": "m.text", "body": f"burst {i}"}, token=synapse.token)
        if answer[0] == 429:
            real = answer
            break
    assert real, "Synapse never limited the burst"
    double.fault("matrix", {"status": 429, "retry_after": 2})
    ours = double.call("PUT", send_path(synapse.room, "t-429"), {"msgtype": "m.text", "body": "x"},
                       token=synapse.token)
    assert shape(ours) == shape(real), (ours, real)
    assert isinstance(real[1]["retry_after_ms"], int) and isinstance(ours[1]["retry_after_ms"], int)


def test_ntfy_publish_is_checked_as_the_docs_describe(double):
    ok = {"topic": "hw-home", "title": "t", "message": "m", "priority": 4, "tags": ["rotating_light"],
          "click": "https://misp.example/events/view/1"}
    status, msg, _ = double.call("POST", "/", ok, token=NTFY_TOKEN)
    assert status == 200, msg
    # The published message as ntfy answers it.
    assert {"id", "time", "expires", "event", "topic", "message"} <= set(msg) and msg["event"] == "message"
    for bad, code in [
        ({**ok, "topic": "a/b"}, 400),
        ({**ok, "priority": 6}, 400),
        ({**ok, "tags": "rotating_light"}, 400),
        ({**ok, "click": "javascript:alert(1)"}, 400),
        ({**ok, "titel": "typo"}, 400),
    ]:
        status, err, _ = double.call("POST", "/", bad, token=NTFY_TOKEN)
        assert status == code and err["http"] == code and isinstance(err["code"], int), (bad, err)
    assert double.call("POST", "/", ok, token="tk_wrong")[0] == 401
    assert double.call("POST", "/", ok)[0] == 401


def test_the_webhook_is_refused_unsigned_or_unlike_the_readme(double):
    body = {"version": 1, "id": "inc-1:push-hook", "type": "incident", "appliance": "pi", "sent_at": 1,
            "title": "t", "text": "x", "incidents": []}
    raw = json.dumps(body).encode()
    sig = "sha256=" + hmac.new(HOOK_SECRET.encode(), raw, hashlib.sha256).hexdigest()
    good = {"X-Homewarden-Signature": sig, "X-Homewarden-Delivery": body["id"]}
    assert double.call("POST", "/hook", raw=raw, headers=good)[0] == 200
    assert double.call("POST", "/hook", raw=raw, headers={**good, "X-Homewarden-Signature": "sha256=00"})[0] == 401
    assert double.call("POST", "/hook", raw=raw, headers={**good, "X-Homewarden-Delivery": "other"})[0] == 400
    extra = json.dumps({**body, "surprise": 1}).encode()
    resigned = "sha256=" + hmac.new(HOOK_SECRET.encode(), extra, hashlib.sha256).hexdigest()
    assert double.call("POST", "/hook", raw=extra, headers={**good, "X-Homewarden-Signature": resigned})[0] == 400
