"""The LLM double is faithful: the official `cohere` and `openai` SDKs, unmodified, drive it
and see what they would see from the real services (replies, typed errors, Retry-After,
their own retries), and the fault queue does what tests will script with it."""

import hashlib
import json
import ssl
import time
import uuid

import cohere
import httpx
import openai
import pytest
import requests
from cohere.core.api_error import ApiError as CohereApiError


# cohere 7.3.1 touches a pydantic v1 attribute on every parse; not ours to fix.
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:cohere.core.unchecked_base_model")

MODEL = "command-a-03-2025"
PROMPT = "Suricata blocked 203.0.113.66 (ET CNC) contacted by the camera 192.0.2.10. What should I do?"


def marker(text):
    return "[llm-double reply to %s]" % hashlib.sha256(text.encode("utf-8")).hexdigest()[:12]


def co(double, **kw):
    kw.setdefault("max_retries", 0)
    return cohere.ClientV2(api_key=kw.pop("api_key", double.key), base_url=double.url, **kw)


def oa(double, **kw):
    kw.setdefault("max_retries", 0)
    return openai.OpenAI(api_key=kw.pop("api_key", double.key), base_url=double.url + "/v1", **kw)


def user(text):
    return [{"role": "system", "content": "You are a home network security advisor."},
            {"role": "user", "content": text}]


# --------------------------------------------------------------------------- Cohere v2

def test_cohere_chat_reply_is_the_doubles_advice(double):
    r = co(double).chat(model=MODEL, messages=user(PROMPT), max_tokens=500, temperature=0.3)
    assert isinstance(r, cohere.V2ChatResponse)
    text = r.message.content[0].text
    assert r.message.content[0].type == "text" and r.message.role == "assistant"
    assert text.startswith("1. Disconnect the device")
    assert text.splitlines()[-1] == marker(PROMPT)
    assert r.finish_reason == "COMPLETE"
    uuid.UUID(r.id)
    assert r.usage.billed_units.output_tokens > 0 and r.usage.tokens.input_tokens > 0

    last = double.requests()[-1]
    assert (last["api"], last["method"], last["path"], last["status"]) == ("cohere", "POST", "/v2/chat", 200)
    assert last["headers"]["authorization"] == f"Bearer {double.key}"
    assert last["json"]["model"] == MODEL and last["json"]["stream"] is False
    assert last["json"]["messages"][1] == {"role": "user", "content": PROMPT}
    assert last["json"]["max_tokens"] == 500


def test_cohere_content_parts_are_joined_for_the_marker(double):
    msgs = [{"role": "user", "content": [{"type": "text", "text": "alert: "}, {"type": "text", "text": "C2 hit"}]}]
    r = co(double).chat(model=MODEL, messages=msgs)
    assert r.message.content[0].text.endswith(marker("alert: C2 hit"))


def test_cohere_marker_follows_the_last_user_turn(double):
    msgs = user("first question") + [{"role": "assistant", "content": "an answer"},
                                      {"role": "user", "content": "second question"}]
    text = co(double).chat(model=MODEL, messages=msgs).message.content[0].text
    assert text.endswith(marker("second question"))


def test_cohere_wrong_key_is_unauthorized(double):
    with pytest.raises(cohere.UnauthorizedError) as exc:
        co(double, api_key="not-the-key").chat(model=MODEL, messages=user(PROMPT))
    assert exc.value.status_code == 401
    assert exc.value.body == {"message": "invalid api token"}


def test_cohere_missing_key_and_bad_bodies_raw(double):
    url = double.url + "/v2/chat"
    auth = {"Authorization": f"Bearer {double.key}"}
    r = requests.post(url, json={"model": MODEL, "messages": user("x")}, timeout=5)
    assert r.status_code == 401 and r.json() == {"message": "no api key supplied"}
    r = requests.post(url, data=b'{"model": "x", "messages": [', headers=auth, timeout=5)
    assert r.status_code == 400 and "could not parse" in r.json()["message"]
    r = requests.post(url, json={"messages": user("x")}, headers=auth, timeout=5)
    assert r.status_code == 400 and "model is required" in r.json()["message"]
    r = requests.post(url, json={"model": MODEL}, headers=auth, timeout=5)
    assert r.status_code == 400 and "messages" in r.json()["message"]
    r = requests.post(url, json={"model": MODEL, "messages": [{"role": "user", "content": ""}]},
                      headers=auth, timeout=5)
    assert r.status_code == 400 and r.json() == {"message": "message must not be empty in a turn"}
    r = requests.post(url, json={"model": MODEL, "messages": [{"role": "chatbot", "content": "x"}]},
                      headers=auth, timeout=5)
    assert r.status_code == 400 and "role" in r.json()["message"]
    r = requests.post(url, json={"model": MODEL, "messages": user("x"), "stream": True}, headers=auth, timeout=5)
    assert r.status_code == 400 and "stream" in r.json()["message"]


def test_cohere_bad_request_is_the_sdks_bad_request_error(double):
    with pytest.raises(cohere.BadRequestError) as exc:
        co(double).chat(model=MODEL, messages=user(PROMPT), max_tokens=0)
    assert "max_tokens" in exc.value.body["message"]


def test_cohere_429_carries_retry_after(double):
    double.queue({"status": 429, "retry_after": 2})
    before = len(double.requests())
    with pytest.raises(cohere.TooManyRequestsError) as exc:
        co(double).chat(model=MODEL, messages=user(PROMPT))
    assert exc.value.status_code == 429
    assert exc.value.headers["retry-after"] == "2"
    assert "per minute request limit" in exc.value.body["message"]
    assert len(double.requests()) == before + 1  # max_retries=0: the SDK did not retry
    assert double.faults() == []


@pytest.mark.parametrize("status,error", [(500, cohere.InternalServerError), (503, cohere.ServiceUnavailableError)])
def test_cohere_5xx_are_server_errors(double, status, error):
    double.queue({"status": status})
    with pytest.raises(error) as exc:
        co(double).chat(model=MODEL, messages=user(PROMPT))
    assert exc.value.status_code == status and isinstance(exc.value.body["message"], str)


def test_cohere_sdk_retries_honour_retry_after(double):
    """The SDK retries 429/5xx itself (default 2 retries); on 429 it sleeps Retry-After seconds."""
    double.queue({"status": 429, "retry_after": 1})
    before = len(double.requests())
    t0 = time.monotonic()
    r = co(double, max_retries=1).chat(model=MODEL, messages=user(PROMPT))
    elapsed = time.monotonic() - t0
    assert r.message.content[0].text.endswith(marker(PROMPT))
    assert [x["status"] for x in double.requests()[before:]] == [429, 200]
    assert 0.9 <= elapsed < 5


def test_cohere_sdk_default_retries_give_up_after_three_attempts(double):
    double.queue({"status": 500}, {"status": 503}, {"status": 500}, {"status": 500})
    before = len(double.requests())
    with pytest.raises(cohere.InternalServerError):
        cohere.ClientV2(api_key=double.key, base_url=double.url).chat(model=MODEL, messages=user(PROMPT))
    assert [x["status"] for x in double.requests()[before:]] == [500, 503, 500]
    assert len(double.faults()) == 1


def test_cohere_malformed_body_raises(double):
    double.queue({"malformed": True})
    with pytest.raises(CohereApiError) as exc:
        co(double).chat(model=MODEL, messages=user(PROMPT))
    assert exc.value.status_code == 200
    assert exc.value.headers["content-type"] == "application/json"
    with pytest.raises(ValueError):
        json.loads(exc.value.body)


def test_cohere_hostile_reply_arrives_intact(double):
    double.queue({"hostile": True})
    text = co(double).chat(model=MODEL, messages=user(PROMPT), max_tokens=50).message.content[0].text
    assert "<script>" in text and "onerror=" in text
    assert "\x00" in text and "\x1b[31m" in text and "\u202e" in text and "\r\nBcc:" in text
    assert len(text) > 100_000  # max_tokens ignored: the client must bound it
    assert text.endswith(marker(PROMPT))


def test_cohere_max_tokens_truncates_like_a_model(double):
    r = co(double).chat(model=MODEL, messages=user(PROMPT), max_tokens=10)
    assert r.finish_reason == "MAX_TOKENS"
    assert len(r.message.content[0].text) == 40
    assert r.message.content[0].text.startswith("1. Disconnect")


def test_cohere_delay_trips_the_client_timeout(double):
    double.queue({"delay": 2.0})
    t0 = time.monotonic()
    with pytest.raises(httpx.TimeoutException):
        co(double, timeout=0.5).chat(model=MODEL, messages=user(PROMPT))
    assert time.monotonic() - t0 < 1.9


def test_cohere_disconnect_raises(double):
    double.queue({"disconnect": True})
    with pytest.raises(httpx.RemoteProtocolError):
        co(double).chat(model=MODEL, messages=user(PROMPT))


def test_cohere_over_tls_with_private_ca(double_process):
    d = double_process(tls=True)
    client = cohere.ClientV2(api_key=d.key, base_url=d.url, max_retries=0,
                             httpx_client=httpx.Client(verify=ssl.create_default_context(cafile=d.ca), timeout=10))
    assert client.chat(model=MODEL, messages=user(PROMPT)).message.content[0].text.endswith(marker(PROMPT))
    with pytest.raises(httpx.ConnectError):  # the system CAs do not know our CA
        cohere.ClientV2(api_key=d.key, base_url=d.url, max_retries=0).chat(model=MODEL, messages=user(PROMPT))


# --------------------------------------------------------------------------- OpenAI-compatible

def test_openai_chat_reply_is_the_doubles_advice(double):
    r = oa(double).chat.completions.create(model="llama-3.2-3b", messages=user(PROMPT), max_tokens=500,
                                           temperature=0.2)
    assert r.object == "chat.completion" and r.model == "llama-3.2-3b" and r.id.startswith("chatcmpl-")
    choice = r.choices[0]
    assert choice.index == 0 and choice.finish_reason == "stop" and choice.message.role == "assistant"
    assert choice.message.content.startswith("1. Disconnect the device")
    assert choice.message.content.splitlines()[-1] == marker(PROMPT)
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens > 0
    assert abs(r.created - time.time()) < 60

    last = double.requests()[-1]
    assert (last["api"], last["path"], last["status"]) == ("openai", "/v1/chat/completions", 200)
    assert last["headers"]["authorization"] == f"Bearer {double.key}"
    assert last["json"]["messages"][1] == {"role": "user", "content": PROMPT}


def test_openai_content_parts(double):
    msgs = [{"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}]
    r = oa(double).chat.completions.create(model="m", messages=msgs)
    assert r.choices[0].message.content.endswith(marker("ab"))


def test_openai_wrong_key_is_authentication_error(double):
    with pytest.raises(openai.AuthenticationError) as exc:
        oa(double, api_key="sk-wrong-key-000000").chat.completions.create(model="m", messages=user(PROMPT))
    assert exc.value.status_code == 401
    assert exc.value.code == "invalid_api_key" and exc.value.type == "invalid_request_error"
    assert "sk-wrong-key" not in exc.value.message  # masked, like OpenAI


def test_openai_bad_request(double):
    with pytest.raises(openai.BadRequestError) as exc:
        oa(double).chat.completions.create(model="m", messages=[])
    assert exc.value.param == "messages"
    r = requests.post(double.url + "/v1/chat/completions", data=b"{", timeout=5,
                      headers={"Authorization": f"Bearer {double.key}"})
    assert r.status_code == 400 and r.json()["error"]["type"] == "invalid_request_error"


def test_openai_429_is_rate_limit_error_with_retry_after(double):
    double.queue({"status": 429, "retry_after": 2})
    with pytest.raises(openai.RateLimitError) as exc:
        oa(double).chat.completions.create(model="m", messages=user(PROMPT))
    assert exc.value.response.headers["retry-after"] == "2"
    assert exc.value.code == "rate_limit_exceeded"


@pytest.mark.parametrize("status", [500, 503])
def test_openai_5xx_is_internal_server_error(double, status):
    double.queue({"status": status})
    with pytest.raises(openai.InternalServerError) as exc:
        oa(double).chat.completions.create(model="m", messages=user(PROMPT))
    assert exc.value.status_code == status and exc.value.type == "server_error"
    assert "retry-after" not in exc.value.response.headers


def test_503_can_carry_retry_after(double):
    double.queue({"status": 503, "retry_after": 7})
    with pytest.raises(openai.InternalServerError) as exc:
        oa(double).chat.completions.create(model="m", messages=user(PROMPT))
    assert exc.value.response.headers["retry-after"] == "7"


def test_openai_sdk_retries_then_succeeds(double):
    """Default max_retries=2: 429 waits Retry-After, 5xx waits 0.5 s doubling (with jitter)."""
    double.queue({"status": 429, "retry_after": 1}, {"status": 500})
    before = len(double.requests())
    t0 = time.monotonic()
    r = openai.OpenAI(api_key=double.key, base_url=double.url + "/v1").chat.completions.create(
        model="m", messages=user(PROMPT))
    assert r.choices[0].message.content.endswith(marker(PROMPT))
    assert [x["status"] for x in double.requests()[before:]] == [429, 500, 200]
    assert time.monotonic() - t0 >= 1.0


def test_openai_malformed_body_raises(double):
    double.queue({"malformed": True})
    with pytest.raises((ValueError, openai.APIError)):
        oa(double).chat.completions.create(model="m", messages=user(PROMPT))


def test_openai_max_tokens_gives_length(double):
    r = oa(double).chat.completions.create(model="m", messages=user(PROMPT), max_tokens=5)
    assert r.choices[0].finish_reason == "length" and len(r.choices[0].message.content) == 20


def test_openai_hostile(double):
    double.queue({"hostile": True})
    text = oa(double).chat.completions.create(model="m", messages=user(PROMPT)).choices[0].message.content
    assert "<script>" in text and "\x00" in text and len(text) > 100_000 and text.endswith(marker(PROMPT))


# --------------------------------------------------------------------------- admin API and process

def test_fault_queue_is_shared_by_both_apis_in_order(double):
    q = double.queue({"status": 500}, {"status": 429})
    assert q["queue"] == [{"status": 500}, {"status": 429}]
    double.queue({"hostile": True}, append=True)
    assert len(double.faults()) == 3
    with pytest.raises(openai.InternalServerError):
        oa(double).chat.completions.create(model="m", messages=user(PROMPT))
    with pytest.raises(cohere.TooManyRequestsError):
        co(double).chat(model=MODEL, messages=user(PROMPT))
    assert "<script>" in co(double).chat(model=MODEL, messages=user(PROMPT)).message.content[0].text
    assert double.faults() == []
    assert "<script>" not in co(double).chat(model=MODEL, messages=user(PROMPT)).message.content[0].text


def test_fault_typos_are_refused(double):
    r = requests.post(double.url + "/__admin/faults", json={"queue": [{"stauts": 500}]}, timeout=5)
    assert r.status_code == 400 and "stauts" in r.json()["error"]
    r = requests.post(double.url + "/__admin/faults", json={"queue": [{"status": 200}]}, timeout=5)
    assert r.status_code == 400 and "status" in r.json()["error"]
    assert double.faults() == []


def test_request_log_file_matches_admin_view(double):
    co(double).chat(model=MODEL, messages=user("log me"))
    lines = [json.loads(x) for x in double.request_log.read_text().splitlines()]
    # The file is written as requests are answered, the admin view lists them as they arrived.
    assert sorted(lines, key=lambda x: x["time"]) == [x for x in double.requests() if x["status"] is not None]
    assert lines[-1]["json"]["messages"][-1]["content"] == "log me"


def test_sigterm_exits_cleanly(double_process):
    d = double_process()
    assert requests.get(d.url + "/__admin/faults", timeout=5).json() == {"queue": []}
    t0 = time.monotonic()
    assert d.stop() == 0
    assert time.monotonic() - t0 < 2


def test_openai_no_auth_mode_for_local_servers(double_process):
    d = double_process(extra=("--openai-no-auth",))
    r = requests.post(d.url + "/v1/chat/completions", json={"model": "llama", "messages": user(PROMPT)}, timeout=5)
    assert r.status_code == 200 and r.json()["choices"][0]["message"]["content"].endswith(marker(PROMPT))
    r = requests.post(d.url + "/v2/chat", json={"model": MODEL, "messages": user(PROMPT)}, timeout=5)
    assert r.status_code == 401  # Cohere still needs its key
