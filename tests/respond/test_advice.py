"""The LLM misbehaving: every incident mail still has advice (the LLM's when it
answers in time, else the offline advisor's), what the LLM says never becomes
markup or control characters in the mail, and what the LLM is told never names
a home address or a MAC."""

import re
import time
import unicodedata
from html.parser import HTMLParser

import pytest

from conftest import (DEVICE, Incident, assert_mailed_once, drained, part, reply_marker, wait_for)

# The tags the agent's own mail template uses; anything else came from a value.
OWN_TAGS = {"html", "body", "table", "tr", "th", "td", "h3", "p", "small"}


class Tags(HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.tags, self.attrs = [], []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self.attrs.extend(k for k, _ in attrs)

    handle_startendtag = handle_starttag


def assert_inert_html(html):
    """Markup only from the template: no tag, attribute or control character from a value."""
    p = Tags()
    p.feed(html)
    p.close()
    assert set(p.tags) <= OWN_TAGS, sorted(set(p.tags) - OWN_TAGS)
    assert set(p.attrs) <= {"style", "align", "colspan"}, sorted(set(p.attrs))
    assert not re.search(r"<\s*(script|img|a)\b", html, re.I), "raw markup from a value"
    assert_no_controls(html)


def assert_no_controls(text):
    bad = [hex(ord(c)) for c in text if unicodedata.category(c) == "Cc" and c not in "\n\r\t"]
    assert not bad, f"control characters in the mail: {bad[:10]}"
    bidi = [hex(ord(c)) for c in text if c in "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"]
    assert not bidi, f"bidi overrides in the mail: {bidi}"


def one_incident(agent, net_last=20, **line_kw):
    inc = Incident(f"203.0.113.{net_last}", int(time.time()))
    agent.send(inc.line(**line_kw))
    return inc


def the_mail(world, agent, inc):
    wait_for(lambda: drained(agent) and world.smtp.mails(), 60, "the incident's mail")
    (mail,) = assert_mailed_once(world.smtp, [inc])
    return mail


def test_rate_limited_then_answered_honours_retry_after(world):
    # A minute's backoff would fail the deadline below: only the LLM's Retry-After can bring it in time.
    agent = world.make_agent(alerts={"retry_first": "60s"}).start()
    world.llm.queue({"status": 429, "retry_after": 2})
    inc = one_incident(agent)
    mail = the_mail(world, agent, inc)

    first, second = world.llm.requests()
    assert (first["status"], second["status"]) == (429, 200)
    assert second["time"] - first["time"] >= 1.9, "asked again before the Retry-After"
    text = part(mail, "plain")
    assert reply_marker(second) in text, text
    assert "advice by cohere" in text
    assert reply_marker(second) in part(mail, "html")
    agent.counted({"llm.ok": 1, "llm.rate_limited": 1, "llm.failed": 0, "offline_advice": 0,
                   "mails.incident": 1, "done.mail": 1, "failed.mail": 1})


def test_llm_asking_for_an_hour_does_not_hold_back_the_mail(world):
    """A Retry-After far beyond a useful wait: the owner gets the offline advice now, not in an hour."""
    agent = world.make_agent().start()
    world.llm.queue({"status": 429, "retry_after": 3600})
    inc = one_incident(agent)
    mail = the_mail(world, agent, inc)
    assert [r["status"] for r in world.llm.requests()] == [429]
    assert "advice by offline" in part(mail, "plain")
    agent.counted({"llm.ok": 0, "llm.rate_limited": 1, "offline_advice": 1, "mails.incident": 1})


@pytest.mark.parametrize("fault", [{"disconnect": True}, {"status": 500}, {"delay": 4}],
                         ids=["disconnect", "500", "timeout"])
def test_transient_llm_failure_is_retried_for_the_llms_advice(world, fault):
    agent = world.make_agent(advisor={"timeout": "2s"}).start()
    world.llm.queue(fault)
    inc = one_incident(agent)
    mail = the_mail(world, agent, inc)
    reqs = world.llm.requests()
    assert len(reqs) == 2 and reqs[1]["status"] == 200, [r["status"] for r in reqs]
    text = part(mail, "plain")
    assert reply_marker(reqs[1]) in text and "advice by cohere" in text, text


def test_refused_key_means_offline_advice_at_once(world):
    agent = world.make_agent().start()
    world.llm.queue({"status": 401})
    inc = one_incident(agent)
    mail = the_mail(world, agent, inc)
    assert [r["status"] for r in world.llm.requests()] == [401], "a refused key is not retried"
    text = part(mail, "plain")
    assert "advice by offline" in text and "llm-double" not in text, text
    assert "take it off the network" in text  # the offline steps for a trojan/C2 classification
    agent.counted({"llm.ok": 0, "llm.failed": 1, "offline_advice": 1, "mails.incident": 1})


def test_malformed_reply_means_offline_advice(world):
    agent = world.make_agent().start()
    world.llm.queue({"malformed": True})
    inc = one_incident(agent)
    mail = the_mail(world, agent, inc)
    assert [r["status"] for r in world.llm.requests()] == [200]
    text = part(mail, "plain")
    assert "advice by offline" in text and "llm-double" not in text, text


def test_llm_failing_for_good_falls_back_after_the_configured_tries(world):
    agent = world.make_agent(advisor={"tries": 3}).start()
    world.llm.queue({"status": 503}, {"status": 503}, {"status": 503}, {"status": 503})
    inc = one_incident(agent)
    mail = the_mail(world, agent, inc)
    assert [r["status"] for r in world.llm.requests()] == [503, 503, 503]
    assert "advice by offline" in part(mail, "plain")
    agent.counted({"llm.failed": 3, "offline_advice": 1, "failed.mail": 2, "done.mail": 1})


def test_hostile_reply_is_inert_and_the_prompt_names_no_home_device(world):
    agent = world.make_agent().start()
    world.llm.queue({"hostile": True})
    # Suricata signatures can carry anything: here a home address and a MAC the LLM must not see.
    inc = one_incident(agent, signature=f"ET POLICY device {DEVICE} (aa:bb:cc:dd:ee:0f) beacon to C2")
    mail = the_mail(world, agent, inc)

    (req,) = world.llm.requests()
    prompt = " ".join(m["content"] for m in req["json"]["messages"])
    assert not re.search(r"198\.18\.1\.\d", prompt), prompt
    assert not re.search(r"(?i)\b[0-9a-f]{2}([:-][0-9a-f]{2}){5}\b", prompt), prompt
    assert "[home address]" in prompt and "[MAC]" in prompt, prompt
    assert inc.remote in prompt, "the remote side is what the advice is about"

    html, text = part(mail, "html"), part(mail, "plain")
    assert_inert_html(html)
    assert_no_controls(text)
    assert "&lt;script&gt;" in html, "the LLM's markup is shown as text, not dropped silently"
    # Bounded: of the 100 kB reply at most 40 lines / 4000 characters reach the mail (src/respond/advisor/mod.rs).
    advice = text.split("What to do (advice by cohere", 1)[1].split("Press the appliance's button", 1)[0]
    advice = advice.split(":", 1)[1].strip().replace("\r\n", "\n")
    lines = advice.split("\n")
    assert len(lines) <= 40 and len(advice) <= 4001, (len(lines), len(advice))
    assert advice.startswith("<script>alert('llm-double')</script>"), "plain text keeps what was said"
    # The line with backticks reads as a command to paste: it is taken out (src/respond/advisor/reply.rs).
    assert "`backticks`" not in advice and "a command was removed" in advice
    assert mail.size < 64 * 1024, f"a {mail.size}-byte mail: the LLM's 100 kB were not bounded"
    # Its header injection stays body text: one recipient, no Bcc, one subject line.
    assert mail.envelope["rcpt_tos"] == ["owner@home.test"]
    assert mail["Bcc"] is None and "\n" not in str(mail["Subject"])
