"""Drive the MISP double with unmodified PyMISP: if PyMISP is happy, MISP-shaped clients are."""

import json
import time

import pytest
import requests
from pymisp import MISPAttribute, MISPEvent, PyMISP, PyMISPError


def connect(d):
    return PyMISP(d.url, d.key, ssl=d.ca if d.ca else False, timeout=10)


def new_event(misp, info="homewarden test", threat=2, attrs=(), publish=False):
    ev = MISPEvent()
    ev.info = info
    ev.threat_level_id = threat
    ev.distribution = 0
    for atype, value, to_ids in attrs:
        ev.add_attribute(atype, value, to_ids=to_ids)
    created = misp.add_event(ev, pythonify=True)
    assert isinstance(created, MISPEvent), created
    if publish:
        misp.publish(created)
    return created


def attr_search(misp, **kw):
    res = misp.search(controller="attributes", pythonify=True, **kw)
    assert isinstance(res, list), res
    return res


def test_constructor_handshake(double):
    misp = connect(double)
    assert misp.misp_instance_version["version"].count(".") == 2
    assert "ip-dst" in misp.describe_types["types"]
    user = misp.get_user("me", pythonify=True)
    assert user.email == "admin@admin.test"
    # PyMISP's constructor hit exactly these endpoints (recommended version comes from getVersion).
    paths = [json.loads(line)["path"] for line in double.request_log.read_text().splitlines()]
    assert "/servers/getVersion" in paths and "/users/view/me" in paths
    assert "/attributes/describeTypes.json" in paths


def test_wrong_key_is_403_like_misp(double):
    with pytest.raises(PyMISPError):
        PyMISP(double.url, "wrong" * 8, ssl=False, timeout=10)
    r = requests.post(f"{double.url}/attributes/restSearch", json={"returnFormat": "json"},
                      headers={"Authorization": "nope", "Accept": "application/json"}, timeout=10)
    assert r.status_code == 403
    body = r.json()
    assert body["name"].startswith("Authentication failed.")
    assert body["url"] == "/attributes/restSearch"
    r = requests.post(f"{double.url}/attributes/restSearch", json={}, timeout=10)  # no key at all
    assert r.status_code == 403
    r = requests.get(f"{double.url}/nosuchcontroller/x", timeout=10)
    assert r.status_code == 404 and r.json()["name"] == "Not Found"


def test_add_event_and_attribute_search(double):
    misp = connect(double)
    ev = new_event(misp, threat=1, attrs=[("ip-dst", "203.0.113.66", True),
                                          ("domain", "c2.lab-evil.test", True),
                                          ("md5", "D41D8CD98F00B204E9800998ECF8427E", True),
                                          ("domain", "benign.lab-good.test", False)])
    assert len(ev.attributes) == 4
    assert ev.attributes[2].value == "d41d8cd98f00b204e9800998ecf8427e"  # MISP lowercases hashes
    # Unpublished: a published-only pull sees nothing yet.
    assert attr_search(misp, type_attribute=["ip-dst", "domain"], published=1) == []
    misp.publish(ev)
    hits = attr_search(misp, type_attribute=["ip-dst", "domain"], to_ids=1, published=1)
    assert sorted(a.value for a in hits) == ["203.0.113.66", "c2.lab-evil.test"]
    assert all(a.Event.info == "homewarden test" for a in hits)
    single = attr_search(misp, type_attribute="md5")
    assert [a.type for a in single] == ["md5"]
    assert {a.value for a in attr_search(misp, to_ids=0)} == {"benign.lab-good.test"}
    # Wire format: ids and timestamps are strings of digits, flags are booleans.
    raw = misp.search(controller="attributes", type_attribute="ip-dst")
    a = raw["Attribute"][0]
    assert a["id"].isdigit() and a["event_id"].isdigit() and a["timestamp"].isdigit()
    assert a["to_ids"] is True and a["deleted"] is False and a["object_relation"] is None
    assert a["Event"]["publish_timestamp"].isdigit() and a["Event"]["publish_timestamp"] != "0"
    # events restSearch with metadata gives threat levels without attributes.
    evs = misp.search(controller="events", eventid=[str(ev.id)], metadata=True)
    assert evs[0]["Event"]["threat_level_id"] == "1" and "Attribute" not in evs[0]["Event"]


def test_paging_is_one_based_and_short_page_ends(double):
    misp = connect(double)
    new_event(misp, attrs=[("ip-dst", f"198.51.100.{i}", True) for i in range(1, 8)], publish=True)
    seen, page = [], 1
    while True:
        chunk = attr_search(misp, type_attribute="ip-dst", limit=3, page=page)
        seen += [a.value for a in chunk]
        if len(chunk) < 3:
            break
        page += 1
    assert page == 3 and len(seen) == 7 and len(set(seen)) == 7


def test_timestamp_filter_incremental(double):
    misp = connect(double)
    ev = new_event(misp, attrs=[("ip-dst", "203.0.113.10", True)], publish=True)
    first = attr_search(misp, type_attribute="ip-dst")[0]
    mark = int(first.timestamp.timestamp())
    added = misp.add_attribute(ev, {"type": "domain", "value": "new.lab-evil.test"}, pythonify=True)
    assert int(added.timestamp.timestamp()) > mark  # strictly later even within the same second
    newer = attr_search(misp, timestamp=mark + 1)
    assert [a.value for a in newer] == ["new.lab-evil.test"]
    assert {a.value for a in attr_search(misp, timestamp=mark)} == {"203.0.113.10", "new.lab-evil.test"}
    # Adding an attribute unpublishes the event, as in MISP.
    assert misp.get_event(ev, pythonify=True).published is False


def test_edit_to_ids_and_soft_delete_bump_timestamp(double):
    misp = connect(double)
    ev = new_event(misp, attrs=[("ip-dst", "203.0.113.66", True), ("ip-dst", "203.0.113.67", True)],
                   publish=True)
    a66, a67 = sorted(ev.attributes, key=lambda a: a.value)
    before = int(misp.get_attribute(a66, pythonify=True).timestamp.timestamp())

    upd = MISPAttribute()
    upd.id = a66.id
    upd.to_ids = False
    res = misp.update_attribute(upd, a66.id, pythonify=True)
    assert res.to_ids is False and int(res.timestamp.timestamp()) > before

    assert misp.delete_attribute(a67) == {"message": "Attribute deleted."}
    # Default search hides soft-deleted attributes; deleted=[0,1] shows them, flagged.
    assert {a.value for a in attr_search(misp, type_attribute="ip-dst")} == {"203.0.113.66"}
    both = {a.value: a for a in attr_search(misp, type_attribute="ip-dst", deleted=[0, 1])}
    assert both["203.0.113.67"].deleted is True
    assert int(both["203.0.113.67"].timestamp.timestamp()) > int(res.timestamp.timestamp())
    only = attr_search(misp, type_attribute="ip-dst", deleted=1)
    assert [a.value for a in only] == ["203.0.113.67"]
    # An incremental pull from just after the edit sees the deletion.
    inc = attr_search(misp, timestamp=int(res.timestamp.timestamp()) + 1, deleted=[0, 1])
    assert [(a.value, a.deleted) for a in inc] == [("203.0.113.67", True)]


def test_sightings_by_value_and_by_attribute(double):
    misp = connect(double)
    ev = new_event(misp, attrs=[("ip-dst", "203.0.113.66", True)], publish=True)
    attr = ev.attributes[0]
    ts_before = misp.get_attribute(attr, pythonify=True).timestamp

    s1 = misp.add_sighting({"value": "203.0.113.66", "source": "homewarden"}, pythonify=True)
    assert s1.source == "homewarden" and str(s1.attribute_id) == str(attr.id)
    s2 = misp.add_sighting({"source": "homewarden", "type": "1"}, attr, pythonify=True)
    assert str(s2.type) == "1"
    listed = misp.sightings(misp.get_attribute(attr, pythonify=True), pythonify=True)
    assert [s.source for s in listed] == ["homewarden", "homewarden"]
    r = requests.get(f"{double.url}/sightings/index/{ev.id}", headers={"Authorization": double.key,
                                                                          "Accept": "application/json"}, timeout=10)
    assert len(r.json()) == 2
    # Sightings never bump the attribute timestamp (they must not trigger re-downloads).
    assert misp.get_attribute(attr, pythonify=True).timestamp == ts_before
    miss = misp.add_sighting({"value": "192.0.2.200"})
    assert "No valid attributes" in miss["message"]


def test_warninglist_enforcement(double):
    misp = connect(double)
    new_event(misp, attrs=[("ip-dst", "8.8.8.8", True), ("domain", "www.google.com", True),
                           ("ip-dst", "203.0.113.66", True)], publish=True)
    assert len(attr_search(misp, to_ids=1)) == 3
    kept = attr_search(misp, to_ids=1, enforce_warninglist=True)
    assert [a.value for a in kept] == ["203.0.113.66"]


def test_tags_publish_unpublish_and_delete_event(double):
    misp = connect(double)
    ev = new_event(misp, attrs=[("url", "http://c2.lab-evil.test/x", True)])
    misp.tag(ev, "tlp:green")
    assert [t.name for t in misp.get_event(ev, pythonify=True).tags] == ["tlp:green"]
    assert misp.publish(ev)["success"] is True
    assert misp.get_event(ev, pythonify=True).published is True
    misp.unpublish(ev)
    assert misp.get_event(ev, pythonify=True).published is False
    assert misp.delete_event(ev)["message"] == "Event deleted."
    assert "errors" in misp.get_event(ev)


def test_invalid_values_are_refused(double):
    misp = connect(double)
    ev = new_event(misp)
    bad = misp.add_attribute(ev, {"type": "ip-dst", "value": "not-an-ip"})
    assert bad["errors"][0] == 403
    dup1 = misp.add_attribute(ev, {"type": "ip-dst", "value": "192.0.2.1"})
    assert "Attribute" in dup1
    dup2 = misp.add_attribute(ev, {"type": "ip-dst", "value": "192.0.2.1"})
    assert dup2["errors"][0] == 403


def test_https_with_private_ca(tls_double):
    misp = connect(tls_double)
    new_event(misp, attrs=[("ip-dst", "203.0.113.66", True)], publish=True)
    assert [a.value for a in attr_search(misp, published=1)] == ["203.0.113.66"]
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(f"{tls_double.url}/servers/getVersion", timeout=10)  # system CAs do not trust it


def test_state_persists_across_restart(double_factory, tmp_path):
    state = tmp_path / "state.json"
    d1 = double_factory("a", extra=("--state", str(state)))
    misp = connect(d1)
    new_event(misp, attrs=[("ip-dst", "203.0.113.66", True)])
    last = int(attr_search(misp)[0].timestamp.timestamp())
    d1.proc.terminate()
    d1.proc.wait(timeout=10)
    d2 = double_factory("b", extra=("--state", str(state), "--clock-offset", "-3600"))
    misp2 = connect(d2)
    assert [a.value for a in attr_search(misp2)] == ["203.0.113.66"]
    # Even with the wall clock set back an hour, new writes never go back in time.
    ev2 = new_event(misp2, attrs=[("ip-dst", "203.0.113.67", True)])
    assert int(ev2.attributes[0].timestamp.timestamp()) > last


def test_seed_file(double_factory, tmp_path):
    seed = tmp_path / "seed.json"
    seed.write_text(json.dumps({"events": [{"Event": {
        "info": "seeded", "threat_level_id": "1", "published": True,
        "Attribute": [{"type": "ip-dst", "value": "203.0.113.66", "to_ids": True}]}}]}))
    d = double_factory("s", extra=("--seed", str(seed)))
    misp = connect(d)
    hits = attr_search(misp, published=1, to_ids=1)
    assert [(a.value, a.Event.info) for a in hits] == [("203.0.113.66", "seeded")]
    assert time.time() - 120 < int(hits[0].timestamp.timestamp())
