#!/usr/bin/python3
"""A small, faithful stand-in for a MISP server, for homewarden's tests.

Standard library only, so it runs with the system /usr/bin/python3 inside the
lab namespaces without a venv.

Behaviour follows real MISP (2.4/2.5, CakePHP) where a client could notice it:
  * JSON shapes: ids, timestamps, distribution, threat levels are strings of
    digits; booleans are JSON booleans; restSearch wraps results in
    {"response": ...}; single objects are wrapped ({"Event": {...}}).
  * Auth: the `Authorization: <key>` header (no "Bearer"); a wrong or missing
    key on a known controller gives MISP's 403 JSON error. Unknown controllers
    give 404 before authentication, as CakePHP routes before the controller's
    auth filter runs.
  * restSearch filter semantics from MISP's Attribute/Event models: `deleted`
    absent/0 -> live only, 1 -> deleted only, [0,1] -> both; `timestamp` is
    ">=" on the attribute timestamp (or a [from, to] range, or "5d"-style
    relative value); page is 1-based.
  * Every write stamps the touched attribute/event with "now", and like MISP it
    unpublishes the event when its attributes change. The clock never goes
    backwards and every write gets a strictly larger timestamp than the one
    before, so incremental pulls by timestamp are exact even when several
    writes land in the same wall-clock second.
  * Soft delete sets deleted=true and bumps the timestamp (so incremental
    pulls see the deletion); sightings do not touch attribute timestamps.

Run `misp_double.py --help` for the CLI.
"""

import argparse
import copy
import datetime as _dt
import gzip
import ipaddress
import json
import os
import re
import ssl
import sys
import threading
import time
import uuid as uuidlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlsplit

MISP_VERSION = "2.5.24"
AUTH_FAILED = ("Authentication failed. Please make sure you pass the API key of an "
               "API enabled user along in the Authorization header.")

ORG = {"id": "1", "name": "HomewardenLab", "uuid": "5f6e7d8c-0000-4000-8000-00000000a001", "local": True}

# Default category and IDS flag per type, as in MISP's describeTypes; only the
# types a home IPS cares about plus common neighbours. Types outside this
# table are refused like MISP refuses unknown types.
SANE_DEFAULTS = {
    "md5": ("Payload delivery", 1), "sha1": ("Payload delivery", 1),
    "sha256": ("Payload delivery", 1), "sha512": ("Payload delivery", 1),
    "ssdeep": ("Payload delivery", 1), "imphash": ("Payload delivery", 1),
    "filename": ("Payload delivery", 1), "filename|md5": ("Payload delivery", 1),
    "filename|sha1": ("Payload delivery", 1), "filename|sha256": ("Payload delivery", 1),
    "ip-src": ("Network activity", 1), "ip-dst": ("Network activity", 1),
    "ip-src|port": ("Network activity", 1), "ip-dst|port": ("Network activity", 1),
    "hostname": ("Network activity", 1), "hostname|port": ("Network activity", 1),
    "domain": ("Network activity", 1), "domain|ip": ("Network activity", 1),
    "url": ("Network activity", 1), "uri": ("Network activity", 1),
    "user-agent": ("Network activity", 0), "AS": ("Network activity", 0),
    "port": ("Network activity", 0), "mac-address": ("Network activity", 0),
    "ja3-fingerprint-md5": ("Network activity", 1), "community-id": ("Network activity", 1),
    "snort": ("Network activity", 1), "pattern-in-traffic": ("Network activity", 1),
    "email": ("Social network", 1), "email-src": ("Payload delivery", 1),
    "email-dst": ("Network activity", 1), "email-subject": ("Payload delivery", 0),
    "mutex": ("Artifacts dropped", 1), "regkey": ("Persistence mechanism", 1),
    "yara": ("Payload installation", 1), "sigma": ("Payload installation", 1),
    "vulnerability": ("External analysis", 0), "cpe": ("External analysis", 0),
    "x509-fingerprint-sha1": ("Network activity", 1), "x509-fingerprint-sha256": ("Network activity", 1),
    "x509-fingerprint-md5": ("Network activity", 1), "btc": ("Financial fraud", 1),
    "threat-actor": ("Attribution", 0), "campaign-name": ("Attribution", 0),
    "malware-type": ("Payload delivery", 0), "link": ("External analysis", 0),
    "comment": ("Other", 0), "text": ("Other", 0), "other": ("Other", 0),
    "hex": ("Other", 0), "boolean": ("Other", 0), "float": ("Other", 0),
    "counter": ("Other", 0), "datetime": ("Other", 0), "size-in-bytes": ("Other", 0),
}
CATEGORIES = [
    "Internal reference", "Targeting data", "Antivirus detection", "Payload delivery",
    "Artifacts dropped", "Payload installation", "Persistence mechanism", "Network activity",
    "Payload type", "Attribution", "External analysis", "Financial fraud", "Support Tool",
    "Social network", "Person", "Other",
]

# A deliberately tiny warninglist so that enforceWarninglist visibly changes
# results: public DNS resolvers (MISP's "List of known IPv4 public DNS
# resolvers") and a few top domains (hostname lists match subdomains too).
WARNING_CIDRS = [ipaddress.ip_network(n) for n in (
    "8.8.8.8/32", "8.8.4.4/32", "1.1.1.1/32", "1.0.0.1/32", "9.9.9.9/32",
    "2001:4860:4860::8888/128", "2606:4700:4700::1111/128")]
WARNING_HOSTNAMES = ("google.com", "cloudflare.com", "microsoft.com")

HASH_LEN = {"md5": 32, "sha1": 40, "sha256": 64, "sha512": 128, "imphash": 32,
            "ja3-fingerprint-md5": 32, "x509-fingerprint-md5": 32,
            "x509-fingerprint-sha1": 40, "x509-fingerprint-sha256": 64}
HOST_RE = re.compile(r"^(?=.{1,253}$)([a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?\.)+[a-z0-9-]{2,63}$")

THREAT_LEVELS = {"1": "High", "2": "Medium", "3": "Low", "4": "Undefined"}
SIGHTING_TYPES = {"0": "sighting", "1": "false-positive", "2": "expiration"}


class MispError(Exception):
    """An error that MISP would render as JSON {name, message, url}."""

    def __init__(self, status, message, extra=None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.extra = extra or {}


# --------------------------------------------------------------------------- helpers

def truthy(v):
    """PHP-ish truthiness, because MISP flags arrive as 1/"1"/true alike."""
    if isinstance(v, str):
        return v.strip().lower() not in ("", "0", "false", "null")
    return bool(v)


def s(v):
    return None if v is None else str(v)


def valid_uuid(v):
    try:
        uuidlib.UUID(str(v))
        return True
    except (ValueError, TypeError, AttributeError):
        return False


def parse_time_filter(v, now):
    """MISP's setTimestampConditions input -> (low, high) inclusive bounds.

    Accepts unix seconds (int/float/str), relative "7d"/"12h"/"30m"/"10s"/"2w",
    or a [from, to] pair of those.
    """
    if isinstance(v, (list, tuple)):
        lo = parse_time_filter(v[0], now)[0] if len(v) > 0 and v[0] not in (None, "") else None
        hi = parse_time_filter(v[1], now)[0] if len(v) > 1 and v[1] not in (None, "") else None
        return lo, hi
    if isinstance(v, (int, float)):
        return int(v), None
    txt = str(v).strip()
    m = re.fullmatch(r"(\d+)([smhdw])", txt)
    if m:
        mult = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}[m.group(2)]
        return now - int(m.group(1)) * mult, None
    try:
        return int(float(txt)), None
    except ValueError:
        pass
    try:  # ISO 8601 date/datetime, which MISP also accepts
        return int(_dt.datetime.fromisoformat(txt).replace(tzinfo=_dt.timezone.utc).timestamp()), None
    except ValueError:
        raise MispError(400, f"Invalid time filter value: {txt}")


def split_filter(v):
    """MISP's convert_filters: value/list/"!neg"/{"OR","AND","NOT"} -> (or, and, not)."""
    ors, ands, nots = [], [], []
    if isinstance(v, dict):
        for k, target in (("OR", ors), ("AND", ands), ("NOT", nots)):
            vals = v.get(k, [])
            target.extend(vals if isinstance(vals, list) else [vals])
        return ors, ands, nots
    for item in (v if isinstance(v, list) else [v]):
        if isinstance(item, str) and item.startswith("!"):
            nots.append(item[1:])
        else:
            ors.append(item)
    return ors, ands, nots


def like(pattern, value):
    """SQL LIKE with MISP's % wildcard, case-insensitive like MySQL's collation."""
    pattern = str(pattern)
    if "%" not in pattern:
        return pattern.lower() == str(value).lower()
    rx = ".*".join(re.escape(p) for p in pattern.split("%"))
    return re.fullmatch(rx, str(value), re.IGNORECASE | re.DOTALL) is not None


def match_filter(v, candidates):
    """True when one of `candidates` satisfies the MISP filter `v`."""
    ors, ands, nots = split_filter(v)
    if nots and any(like(n, c) for n in nots for c in candidates):
        return False
    if ands and not all(any(like(a, c) for c in candidates) for a in ands):
        return False
    if ors:
        return any(like(o, c) for o in ors for c in candidates)
    return True


def normalise_value(atype, value):
    """Validate and canonicalise like MISP's Attribute model; raises MispError(403)."""
    value = str(value).strip()
    if value == "":
        raise MispError(403, "Could not add Attribute", {"errors": {"value": ["Value cannot be empty."]}})

    def ip(v):
        try:
            return str(ipaddress.ip_address(v.strip("[]")))
        except ValueError:
            try:  # MISP accepts CIDR blocks for ip-src/ip-dst
                return str(ipaddress.ip_network(v, strict=False))
            except ValueError:
                raise MispError(403, "Could not add Attribute",
                                {"errors": {"value": ["IP address has an invalid format."]}})

    def host(v):
        v = v.lower().rstrip(".")
        if not HOST_RE.match(v):
            raise MispError(403, "Could not add Attribute",
                            {"errors": {"value": ["Domain name has an invalid format."]}})
        return v

    def port(v):
        if not v.isdigit() or not 0 <= int(v) <= 65535:
            raise MispError(403, "Could not add Attribute", {"errors": {"value": ["Port numbers have to be integers between 1 and 65535."]}})
        return v

    if atype in ("ip-src", "ip-dst"):
        return ip(value)
    if atype in ("ip-src|port", "ip-dst|port"):
        addr, _, p = value.rpartition("|")
        return f"{ip(addr)}|{port(p)}"
    if atype in ("domain", "hostname"):
        return host(value)
    if atype == "hostname|port":
        h, _, p = value.rpartition("|")
        return f"{host(h)}|{port(p)}"
    if atype == "domain|ip":
        d, _, a = value.partition("|")
        return f"{host(d)}|{ip(a)}"
    if atype in HASH_LEN:
        v = value.lower()
        if not re.fullmatch(r"[0-9a-f]{%d}" % HASH_LEN[atype], v):
            raise MispError(403, "Could not add Attribute", {"errors": {"value": [
                f"Checksum has an invalid length or format (expected: {HASH_LEN[atype]} hexadecimal characters). Please double check the value or select type \"other\"."]}})
        return v
    if atype.startswith("filename|") and atype.split("|")[1] in HASH_LEN:
        f, _, h = value.rpartition("|")
        return f"{f}|{normalise_value(atype.split('|')[1], h)}"
    return value


def value_parts(a):
    """value1/value2 as MISP stores composite values; sightings and searches look at both."""
    if "|" in a["type"] and "|" in a["value"]:
        return a["value"].split("|", 1)
    return [a["value"]]


def on_warninglist(a):
    for part in value_parts(a):
        host = part
        if a["type"] in ("url", "uri"):
            host = urlsplit(part if "://" in part else "http://" + part).hostname or ""
        try:
            addr = ipaddress.ip_address(host.strip("[]"))
            if any(addr in n for n in WARNING_CIDRS):
                return True
            continue
        except ValueError:
            pass
        h = host.lower().rstrip(".")
        if any(h == w or h.endswith("." + w) for w in WARNING_HOSTNAMES):
            return True
    return False


# --------------------------------------------------------------------------- store

class Store:
    """All MISP state behind one lock; mutations persist to --state if given."""

    def __init__(self, state_path=None, clock_offset=0):
        self.lock = threading.RLock()
        self.state_path = state_path
        self.clock_offset = clock_offset
        self.events = {}      # id -> event (internal: ints/bools, "attributes": [ids], "tags": [names])
        self.attributes = {}  # id -> attribute
        self.sightings = []
        self.tags = {}        # name -> {"id": int, "colour": str}
        self.next_id = {"event": 1, "attribute": 1, "sighting": 1, "tag": 1}
        self.last_ts = 0
        if state_path and os.path.exists(state_path):
            self._load(state_path)

    # ---- persistence
    def _load(self, path):
        with open(path, encoding="utf-8") as fh:
            d = json.load(fh)
        self.events = {int(k): v for k, v in d["events"].items()}
        self.attributes = {int(k): v for k, v in d["attributes"].items()}
        self.sightings = d["sightings"]
        self.tags = d["tags"]
        self.next_id = d["next_id"]
        self.last_ts = d["last_ts"]

    def save(self):
        if not self.state_path:
            return
        tmp = self.state_path + ".tmp"
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump({"events": self.events, "attributes": self.attributes,
                       "sightings": self.sightings, "tags": self.tags,
                       "next_id": self.next_id, "last_ts": self.last_ts}, fh)
        os.replace(tmp, self.state_path)  # atomic, so a crash never leaves half a state

    # ---- clock and ids
    def now(self):
        """Current time for reads (relative filters); never behind the last write."""
        return max(int(time.time()) + self.clock_offset, self.last_ts)

    def tick(self):
        """Timestamp for one write operation: strictly increasing, never behind wall time."""
        self.last_ts = max(int(time.time()) + self.clock_offset, self.last_ts + 1)
        return self.last_ts

    def new_id(self, kind):
        n = self.next_id[kind]
        self.next_id[kind] = n + 1
        return n

    # ---- lookups
    def find_event(self, ref):
        ref = str(ref)
        if ref.isdigit() and int(ref) in self.events:
            return self.events[int(ref)]
        for e in self.events.values():
            if e["uuid"] == ref:
                return e
        return None

    def find_attribute(self, ref):
        ref = str(ref)
        if ref.isdigit() and int(ref) in self.attributes:
            return self.attributes[int(ref)]
        for a in self.attributes.values():
            if a["uuid"] == ref:
                return a
        return None

    def tag_id(self, name):
        if name not in self.tags:
            self.tags[name] = {"id": self.new_id("tag"), "colour": "#%06x" % (abs(hash(name)) & 0xFFFFFF)}
        return self.tags[name]["id"]

    # ---- builders (input from clients)
    def build_attribute(self, event, data, ts):
        data = data.get("Attribute", data) if isinstance(data, dict) else data
        atype = data.get("type")
        if atype not in SANE_DEFAULTS:
            raise MispError(403, "Could not add Attribute", {"errors": {"type": ["Options depend on the selected category."]}})
        category = data.get("category") or SANE_DEFAULTS[atype][0]
        if category not in CATEGORIES:
            raise MispError(403, "Could not add Attribute", {"errors": {"category": ["Options depend on the selected category."]}})
        value = normalise_value(atype, data.get("value", ""))
        for aid in event["attributes"]:
            other = self.attributes[aid]
            if (not other["deleted"] and other["type"] == atype and other["value"] == value
                    and other["category"] == category):
                raise MispError(403, "Could not add Attribute", {"errors": {"value": ["A similar attribute already exists for this event."]}})
        a = {
            "id": self.new_id("attribute"), "event_id": event["id"], "category": category,
            "type": atype, "value": value,
            "to_ids": truthy(data["to_ids"]) if "to_ids" in data else bool(SANE_DEFAULTS[atype][1]),
            "uuid": data.get("uuid") if valid_uuid(data.get("uuid")) else str(uuidlib.uuid4()),
            "timestamp": ts, "distribution": int(data.get("distribution", 5)),
            "comment": data.get("comment") or "", "deleted": truthy(data.get("deleted", False)),
            "disable_correlation": truthy(data.get("disable_correlation", False)),
            "first_seen": data.get("first_seen"), "last_seen": data.get("last_seen"),
            "tags": [t["name"] if isinstance(t, dict) else str(t) for t in data.get("Tag", [])],
        }
        if self.find_attribute(a["uuid"]):
            raise MispError(403, "Could not add Attribute", {"errors": {"uuid": ["An attribute with this uuid already exists."]}})
        for t in a["tags"]:
            self.tag_id(t)
        self.attributes[a["id"]] = a
        event["attributes"].append(a["id"])
        return a

    def add_event(self, data):
        data = data.get("Event", data)
        if not str(data.get("info", "")).strip():
            raise MispError(403, "Could not add Event", {"errors": {"info": ["Info cannot be empty."]}})
        if valid_uuid(data.get("uuid")) and self.find_event(data["uuid"]):
            existing = self.find_event(data["uuid"])
            raise MispError(403, "Event already exists, if you would like to edit it, use the url in the location header.",
                            {"url_override": f"/events/view/{existing['id']}"})
        ts = self.tick()
        threat = str(data.get("threat_level_id", 4))
        if threat not in THREAT_LEVELS:
            raise MispError(403, "Could not add Event", {"errors": {"threat_level_id": ["Invalid threat level."]}})
        published = truthy(data.get("published", False))
        e = {
            "id": self.new_id("event"), "uuid": data.get("uuid") if valid_uuid(data.get("uuid")) else str(uuidlib.uuid4()),
            "info": str(data["info"]), "threat_level_id": int(threat),
            "analysis": int(data.get("analysis", 0)), "distribution": int(data.get("distribution", 1)),
            "date": str(data.get("date") or _dt.date.today().isoformat()),
            "published": published, "publish_timestamp": ts if published else 0,
            "timestamp": ts, "sighting_timestamp": 0, "attributes": [],
            "tags": [t["name"] if isinstance(t, dict) else str(t) for t in data.get("Tag", [])],
        }
        for t in e["tags"]:
            self.tag_id(t)
        self.events[e["id"]] = e
        for adata in data.get("Attribute", []):
            try:
                self.build_attribute(e, adata, ts)
            except MispError:
                # MISP saves the event and drops attributes that fail validation.
                pass
        return e

    def touch_event(self, e, ts, unpublish=True):
        e["timestamp"] = ts
        if unpublish:
            e["published"] = False

    def edit_attribute(self, a, data, ts):
        data = data.get("Attribute", data)
        if "type" in data and data["type"] != a["type"]:
            if data["type"] not in SANE_DEFAULTS:
                raise MispError(403, "Could not edit Attribute", {"errors": {"type": ["Options depend on the selected category."]}})
            a["type"] = data["type"]
        if "value" in data:
            a["value"] = normalise_value(a["type"], data["value"])
        for key in ("category", "comment", "first_seen", "last_seen"):
            if key in data:
                a[key] = data[key]
        for key in ("to_ids", "deleted", "disable_correlation"):
            if key in data:
                a[key] = truthy(data[key])
        if "distribution" in data:
            a["distribution"] = int(data["distribution"])
        if "Tag" in data:
            a["tags"] = [t["name"] if isinstance(t, dict) else str(t) for t in data["Tag"]]
            for t in a["tags"]:
                self.tag_id(t)
        a["timestamp"] = ts

    # ---- renderers (output in MISP's JSON shapes)
    def tag_json(self, name, local=False):
        t = self.tags[name]
        return {"id": str(t["id"]), "name": name, "colour": t["colour"], "exportable": True,
                "user_id": "0", "hide_tag": False, "numerical_value": None, "is_galaxy": False,
                "is_custom_galaxy": False, "local_only": False, "local": local}

    def attribute_json(self, a, with_event=False, event_uuid=False, event_tags=False, sightings=False):
        out = {
            "id": str(a["id"]), "event_id": str(a["event_id"]), "object_id": "0",
            "object_relation": None, "category": a["category"], "type": a["type"],
            "to_ids": a["to_ids"], "uuid": a["uuid"], "timestamp": str(a["timestamp"]),
            "distribution": str(a["distribution"]), "sharing_group_id": "0",
            "comment": a["comment"], "deleted": a["deleted"],
            "disable_correlation": a["disable_correlation"],
            "first_seen": a["first_seen"], "last_seen": a["last_seen"], "value": a["value"],
        }
        e = self.events[a["event_id"]]
        if with_event:
            out["Event"] = {"org_id": ORG["id"], "distribution": str(e["distribution"]), "id": str(e["id"]),
                            "info": e["info"], "orgc_id": ORG["id"], "uuid": e["uuid"],
                            "publish_timestamp": str(e["publish_timestamp"])}
        if event_uuid:
            out["event_uuid"] = e["uuid"]
        tags = [self.tag_json(t) for t in a["tags"]]
        if event_tags:
            tags += [dict(self.tag_json(t), inherited=1) for t in e["tags"] if t not in a["tags"]]
        if tags:
            out["Tag"] = tags
        if sightings:
            out["Sighting"] = [self.sighting_json(x) for x in self.sightings if x["attribute_id"] == a["id"]]
        return out

    def event_json(self, e, metadata=False, include_deleted=False):
        live = [self.attributes[i] for i in e["attributes"]]
        out = {
            "id": str(e["id"]), "orgc_id": ORG["id"], "org_id": ORG["id"], "date": e["date"],
            "threat_level_id": str(e["threat_level_id"]), "info": e["info"],
            "published": e["published"], "uuid": e["uuid"],
            "attribute_count": str(sum(1 for a in live if not a["deleted"])),
            "analysis": str(e["analysis"]), "timestamp": str(e["timestamp"]),
            "distribution": str(e["distribution"]), "proposal_email_lock": False, "locked": False,
            "publish_timestamp": str(e["publish_timestamp"]), "sharing_group_id": "0",
            "disable_correlation": False, "extends_uuid": "", "protected": None,
            "event_creator_email": "admin@admin.test", "sighting_timestamp": str(e["sighting_timestamp"]),
            "Org": {k: ORG[k] for k in ("id", "name", "uuid", "local")},
            "Orgc": {k: ORG[k] for k in ("id", "name", "uuid", "local")},
        }
        if not metadata:
            out["Attribute"] = [self.attribute_json(a) for a in live if include_deleted or not a["deleted"]]
            out.update({"ShadowAttribute": [], "RelatedEvent": [], "Galaxy": [], "Object": [],
                        "EventReport": [], "CryptographicKey": []})
        out["Tag"] = [self.tag_json(t) for t in e["tags"]]
        return out

    def sighting_json(self, x, with_org=False):
        out = {k: str(x[k]) for k in ("id", "attribute_id", "event_id", "org_id", "date_sighting", "type")}
        out.update({"uuid": x["uuid"], "source": x["source"]})
        if with_org:
            out["Organisation"] = {"id": ORG["id"], "uuid": ORG["uuid"], "name": ORG["name"]}
        return out


# --------------------------------------------------------------------------- API

class Api:
    """Maps (controller, action) to handlers; each returns (status, body[, headers])."""

    def __init__(self, store, keys):
        self.store = store
        self.keys = set(keys)
        self.routes = {
            ("servers", "getversion"): self.get_version,
            ("servers", "getpymispversion"): self.get_pymisp_version,
            ("users", "view"): self.user_view,
            ("attributes", "describetypes"): self.describe_types,
            ("attributes", "restsearch"): self.attribute_rest_search,
            ("attributes", "add"): self.attribute_add,
            ("attributes", "edit"): self.attribute_edit,
            ("attributes", "delete"): self.attribute_delete,
            ("attributes", "restore"): self.attribute_restore,
            ("attributes", "view"): self.attribute_view,
            ("events", "restsearch"): self.event_rest_search,
            ("events", "add"): self.event_add,
            ("events", "view"): self.event_view,
            ("events", "edit"): self.event_edit,
            ("events", "publish"): self.event_publish,
            ("events", "unpublish"): self.event_unpublish,
            ("events", "delete"): self.event_delete,
            ("sightings", "add"): self.sighting_add,
            ("sightings", "index"): self.sighting_index,
            ("sightings", "listsightings"): self.sighting_list,
            ("tags", "attachtagtoobject"): self.tag_attach,
            ("tags", "removetagfromobject"): self.tag_detach,
        }
        self.controllers = {c for c, _ in self.routes}

    # ---- dispatch
    def handle(self, method, path, headers, body):
        """Returns (status, json_body, extra_headers)."""
        parts = [unquote(p) for p in urlsplit(path).path.split("/") if p]
        if parts and parts[-1].endswith(".json"):
            parts[-1] = parts[-1][:-5]  # MISP: a ".json" suffix selects JSON output
        # CakePHP named parameters ("/metadata:1") are not positional arguments.
        named = {}
        while parts and ":" in parts[-1] and len(parts) > 2:
            k, _, v = parts.pop().partition(":")
            named[k] = v
        if len(parts) < 2 and parts and parts[0] in ("events", "attributes"):
            parts.append("index")
        controller = parts[0].lower() if parts else ""
        if controller not in self.controllers:
            raise MispError(404, "Not Found")
        key = headers.get("authorization") or headers.get("x-misp-auth")
        if not key or key.strip() not in self.keys:
            raise MispError(403, AUTH_FAILED)
        action = parts[1].lower() if len(parts) > 1 else "index"
        fn = self.routes.get((controller, action))
        if fn is None:
            raise MispError(404, "Not Found")
        if method == "HEAD":
            method = "GET"
        with self.store.lock:
            res = fn(method, parts[2:], named, body if body is not None else {})
        return res if len(res) == 3 else (res[0], res[1], {})

    @staticmethod
    def need_post(method):
        if method not in ("POST", "PUT", "DELETE"):
            raise MispError(405, "This function can only be accessed via POST requests.")

    def event_or_404(self, ref):
        e = self.store.find_event(ref) if ref is not None else None
        if e is None:
            raise MispError(404, "Invalid event.")
        return e

    def attribute_or_404(self, ref):
        a = self.store.find_attribute(ref) if ref is not None else None
        if a is None:
            raise MispError(404, "Invalid attribute.")
        return a

    def saved(self, name, url, id_=None):
        out = {"saved": True, "success": True, "name": name, "message": name, "url": url}
        if id_ is not None:
            out["id"] = str(id_)
        return out

    # ---- servers / users / describeTypes
    def get_version(self, method, args, named, body):
        return 200, {"version": MISP_VERSION, "pymisp_recommended_version": MISP_VERSION,
                     "perm_sync": False, "perm_sighting": True, "perm_galaxy_editor": False,
                     "request_encoding": ["gzip"], "filter_sightings": True}

    def get_pymisp_version(self, method, args, named, body):
        return 200, {"version": MISP_VERSION}

    def user_view(self, method, args, named, body):
        if not args or args[0] not in ("me", "1"):
            raise MispError(404, "Invalid user")
        user = {"id": "1", "org_id": ORG["id"], "server_id": "0", "email": "admin@admin.test",
                "autoalert": False, "invited_by": "0", "gpgkey": None, "certif_public": "",
                "nids_sid": "4000000", "termsaccepted": True, "newsread": "0", "role_id": "1",
                "change_pw": "0", "contactalert": False, "disabled": False, "expiration": None,
                "current_login": "0", "last_login": "0", "force_logout": False,
                "date_created": "0", "date_modified": "0", "last_api_access": str(self.store.now())}
        perms = ("perm_add perm_modify perm_modify_org perm_publish perm_delegate perm_sync perm_admin "
                 "perm_audit perm_auth perm_site_admin perm_regexp_access perm_tagger perm_template "
                 "perm_sharing_group perm_tag_editor perm_sighting perm_object_template "
                 "perm_publish_zmq perm_publish_kafka perm_decaying perm_galaxy_editor").split()
        role = {"id": "1", "name": "admin", **{p: p != "perm_sync" for p in perms},
                "default_role": False, "memory_limit": "", "max_execution_time": "",
                "restricted_to_site_admin": False, "enforce_rate_limit": False,
                "rate_limit_count": "0", "permission": "3", "permission_description": "publish"}
        # PHP's json_encode renders an empty settings array as [], as real MISP does.
        return 200, {"User": user, "Role": role, "UserSetting": [],
                     "Organisation": {"id": ORG["id"], "name": ORG["name"], "uuid": ORG["uuid"]}}

    def describe_types(self, method, args, named, body):
        mapping = {}
        for t, (cat, _) in SANE_DEFAULTS.items():
            mapping.setdefault(cat, []).append(t)
        for cat in ("Network activity", "Payload delivery", "Other", "External analysis"):
            for t in ("comment", "text", "other", "link"):
                if t not in mapping.setdefault(cat, []):
                    mapping[cat].append(t)
        return 200, {"result": {
            "sane_defaults": {t: {"default_category": c, "to_ids": i} for t, (c, i) in SANE_DEFAULTS.items()},
            "types": list(SANE_DEFAULTS), "categories": CATEGORIES,
            "category_type_mappings": {c: mapping.get(c, ["comment", "text", "other"]) for c in CATEGORIES}}}

    # ---- attributes
    def _attribute_filter(self, q):
        st, now = self.store, self.store.now()
        deleted = q.get("deleted")
        if isinstance(deleted, list):
            allowed = {truthy(d) for d in deleted}
        elif deleted == "only" or (deleted is not None and truthy(deleted)):
            allowed = {True}
        else:
            allowed = {False}
        ranges = []
        for key, getter in (("timestamp", lambda a, e: a["timestamp"]),
                            ("attribute_timestamp", lambda a, e: a["timestamp"]),
                            ("event_timestamp", lambda a, e: e["timestamp"]),
                            ("publish_timestamp", lambda a, e: e["publish_timestamp"]),
                            ("last", lambda a, e: e["publish_timestamp"])):
            if q.get(key) not in (None, "", []):
                ranges.append((getter, parse_time_filter(q[key], now)))
        date_from, date_to = q.get("from"), q.get("to")

        def keep(a):
            e = st.events[a["event_id"]]
            if a["deleted"] not in allowed:
                return False
            for getter, (lo, hi) in ranges:
                v = getter(a, e)
                if (lo is not None and v < lo) or (hi is not None and v > hi):
                    return False
            if date_from and e["date"] < str(date_from):
                return False
            if date_to and e["date"] > str(date_to):
                return False
            if q.get("to_ids") not in (None, ""):
                want = False if q["to_ids"] == "exclude" else truthy(q["to_ids"])
                if a["to_ids"] != want:
                    return False
            if q.get("published") not in (None, "") and e["published"] != truthy(q["published"]):
                return False
            if q.get("type") not in (None, "", []) and not match_filter(q["type"], [a["type"]]):
                return False
            if q.get("category") not in (None, "", []) and not match_filter(q["category"], [a["category"]]):
                return False
            if q.get("value") not in (None, "", []) and not match_filter(q["value"], [a["value"]] + value_parts(a)):
                return False
            if q.get("eventid") not in (None, "", []) and not match_filter(q["eventid"], [str(e["id"]), e["uuid"]]):
                return False
            if q.get("uuid") not in (None, "", []) and not match_filter(q["uuid"], [a["uuid"], e["uuid"]]):
                return False
            if q.get("tags") not in (None, "", []) and not match_filter(q["tags"], a["tags"] + e["tags"] or [""]):
                return False
            if q.get("threat_level_id") not in (None, "") and str(e["threat_level_id"]) != str(q["threat_level_id"]):
                return False
            if truthy(q.get("enforceWarninglist", False)) and on_warninglist(a):
                return False
            return True
        return keep

    @staticmethod
    def _page(items, q):
        limit, page = q.get("limit"), q.get("page")
        if limit in (None, "", 0, "0"):
            return items
        limit = int(limit)
        page = int(page) if page not in (None, "") else 1
        if page < 1:
            raise MispError(400, "Invalid page.")
        return items[(page - 1) * limit: page * limit]

    def _check_format(self, q):
        fmt = q.get("returnFormat", "json")
        if fmt != "json":
            raise MispError(405, f"Invalid return format: the double only speaks json, got {fmt!r}.")

    def attribute_rest_search(self, method, args, named, body):
        self.need_post(method)
        q = {**named, **(body.get("request", body) if isinstance(body, dict) else {})}
        self._check_format(q)
        keep = self._attribute_filter(q)
        hits = sorted((a for a in self.store.attributes.values() if keep(a)), key=lambda a: a["id"])
        hits = self._page(hits, q)
        out = [self.store.attribute_json(a, with_event=True, event_uuid=truthy(q.get("includeEventUuid", False)),
                                         event_tags=truthy(q.get("includeEventTags", False)),
                                         sightings=truthy(q.get("includeSightings", False))) for a in hits]
        return 200, {"response": {"Attribute": out}}, {
            "X-Result-Count": str(len(out)), "X-Export-Module-Used": "json", "X-Response-Format": "json"}

    def attribute_add(self, method, args, named, body):
        self.need_post(method)
        e = self.event_or_404(args[0] if args else None)
        ts = self.store.tick()
        if isinstance(body, list):
            made, errors = [], {}
            for i, item in enumerate(body):
                try:
                    made.append(self.store.build_attribute(e, item, ts))
                except MispError as err:
                    errors[str(i)] = err.extra.get("errors", err.message)
            if made:
                self.store.touch_event(e, ts)
                self.store.save()
            out = {"Attribute": [self.store.attribute_json(a) for a in made]}
            if len(made) == 1:
                out["Attribute"] = out["Attribute"][0]
            if errors:
                out["errors"] = errors
            return 200, out
        a = self.store.build_attribute(e, body, ts)
        self.store.touch_event(e, ts)
        self.store.save()
        return 200, {"Attribute": self.store.attribute_json(a)}

    def attribute_edit(self, method, args, named, body):
        self.need_post(method)
        a = self.attribute_or_404(args[0] if args else None)
        ts = self.store.tick()
        try:
            self.store.edit_attribute(a, body, ts)
        except MispError as err:
            raise MispError(403, "Could not edit Attribute", err.extra)
        self.store.touch_event(self.store.events[a["event_id"]], ts)
        self.store.save()
        return 200, {"Attribute": self.store.attribute_json(a)}

    def attribute_delete(self, method, args, named, body):
        self.need_post(method)
        a = self.attribute_or_404(args[0] if args else None)
        hard = truthy(body.get("hard", 0)) if isinstance(body, dict) else False
        hard = hard or (len(args) > 1 and truthy(args[1]))
        ts = self.store.tick()
        e = self.store.events[a["event_id"]]
        if hard:
            e["attributes"].remove(a["id"])
            del self.store.attributes[a["id"]]
            self.store.sightings = [x for x in self.store.sightings if x["attribute_id"] != a["id"]]
        else:
            if a["deleted"]:
                raise MispError(404, "Invalid attribute.")
            a["deleted"] = True
            a["timestamp"] = ts
        self.store.touch_event(e, ts)
        self.store.save()
        return 200, {"message": "Attribute deleted."}

    def attribute_restore(self, method, args, named, body):
        self.need_post(method)
        a = self.attribute_or_404(args[0] if args else None)
        ts = self.store.tick()
        a["deleted"] = False
        a["timestamp"] = ts
        self.store.touch_event(self.store.events[a["event_id"]], ts)
        self.store.save()
        return 200, {"Attribute": self.store.attribute_json(a)}

    def attribute_view(self, method, args, named, body):
        a = self.attribute_or_404(args[0] if args else None)
        return 200, {"Attribute": self.store.attribute_json(a)}

    # ---- events
    def event_rest_search(self, method, args, named, body):
        self.need_post(method)
        q = {**named, **(body.get("request", body) if isinstance(body, dict) else {})}
        self._check_format(q)
        st, now = self.store, self.store.now()
        attr_keys = ("type", "value", "category", "to_ids", "tags")
        wants_attr = any(q.get(k) not in (None, "", []) for k in attr_keys)
        keep_attr = self._attribute_filter({k: q[k] for k in attr_keys + ("deleted", "enforceWarninglist") if k in q})
        out = []
        for e in sorted(st.events.values(), key=lambda e: e["id"]):
            if q.get("eventid") not in (None, "", []) and not match_filter(q["eventid"], [str(e["id"]), e["uuid"]]):
                continue
            if q.get("uuid") not in (None, "", []) and not match_filter(q["uuid"], [e["uuid"]]):
                continue
            if q.get("published") not in (None, "") and e["published"] != truthy(q["published"]):
                continue
            if q.get("threat_level_id") not in (None, "") and str(e["threat_level_id"]) != str(q["threat_level_id"]):
                continue
            skip = False
            for key, field in (("timestamp", "timestamp"), ("event_timestamp", "timestamp"),
                               ("publish_timestamp", "publish_timestamp"), ("last", "publish_timestamp")):
                if q.get(key) not in (None, "", []):
                    lo, hi = parse_time_filter(q[key], now)
                    if (lo is not None and e[field] < lo) or (hi is not None and e[field] > hi):
                        skip = True
            if skip:
                continue
            if q.get("event_tags") not in (None, "", []) and not match_filter(q["event_tags"], e["tags"] or [""]):
                continue
            if wants_attr and not any(keep_attr(st.attributes[i]) for i in e["attributes"]):
                continue
            out.append(e)
        out = self._page(out, q)
        meta = truthy(q.get("metadata", False))
        return 200, {"response": [{"Event": st.event_json(e, metadata=meta)} for e in out]}, {
            "X-Result-Count": str(len(out)), "X-Export-Module-Used": "json", "X-Response-Format": "json"}

    def event_add(self, method, args, named, body):
        self.need_post(method)
        if not isinstance(body, dict):
            raise MispError(403, "Could not add Event", {"errors": "Invalid request body."})
        e = self.store.add_event(body)
        self.store.save()
        return 200, {"Event": self.store.event_json(e, metadata=truthy(named.get("metadata", 0)))}

    def event_view(self, method, args, named, body):
        e = self.event_or_404(args[0] if args else None)
        inc = isinstance(body, dict) and body.get("deleted") not in (None, 0, "0", False, [])
        return 200, {"Event": self.store.event_json(e, include_deleted=inc)}

    def event_edit(self, method, args, named, body):
        self.need_post(method)
        e = self.event_or_404(args[0] if args else None)
        data = body.get("Event", body) if isinstance(body, dict) else {}
        st = self.store
        ts = st.tick()
        for key in ("info", "date"):
            if key in data:
                e[key] = str(data[key])
        for key in ("threat_level_id", "analysis", "distribution"):
            if key in data:
                e[key] = int(data[key])
        if "Tag" in data:
            e["tags"] = [t["name"] if isinstance(t, dict) else str(t) for t in data["Tag"]]
            for t in e["tags"]:
                st.tag_id(t)
        for adata in data.get("Attribute", []):
            existing = st.find_attribute(adata.get("uuid")) if adata.get("uuid") else None
            if existing and existing["event_id"] == e["id"]:
                # Like MISP, an object carrying a timestamp that is not newer is left alone
                # (PyMISP strips timestamps from objects it edited, so those do update).
                if "timestamp" in adata and int(adata["timestamp"]) <= existing["timestamp"]:
                    continue
                st.edit_attribute(existing, adata, ts)
            else:
                try:
                    st.build_attribute(e, adata, ts)
                except MispError:
                    pass
        st.touch_event(e, ts)
        if truthy(data.get("published", False)):
            e["published"], e["publish_timestamp"] = True, ts
        st.save()
        return 200, {"Event": st.event_json(e, metadata=truthy(named.get("metadata", 0)))}

    def event_publish(self, method, args, named, body):
        self.need_post(method)
        e = self.event_or_404(args[0] if args else None)
        # Publishing does not change the event or attribute timestamps in MISP.
        e["published"], e["publish_timestamp"] = True, self.store.tick()
        self.store.save()
        return 200, self.saved("Event published without alerts", f"/events/publish/{e['id']}", e["id"])

    def event_unpublish(self, method, args, named, body):
        self.need_post(method)
        e = self.event_or_404(args[0] if args else None)
        e["published"] = False
        self.store.save()
        return 200, self.saved("Event unpublished.", f"/events/unpublish/{e['id']}", e["id"])

    def event_delete(self, method, args, named, body):
        self.need_post(method)
        e = self.event_or_404(args[0] if args else None)
        st = self.store
        for aid in e["attributes"]:
            del st.attributes[aid]
        st.sightings = [x for x in st.sightings if x["event_id"] != e["id"]]
        del st.events[e["id"]]
        st.save()
        return 200, self.saved("Event deleted.", f"/events/delete/{e['id']}", e["id"])

    # ---- sightings
    def sighting_add(self, method, args, named, body):
        self.need_post(method)
        st = self.store
        data = body.get("request", body) if isinstance(body, dict) else {}
        data = data.get("Sighting", data)
        ref = args[0] if args else (data.get("uuid") or data.get("id"))
        values = [data["value"]] if "value" in data else data.get("values") or []
        if ref:
            a = st.find_attribute(ref)
            targets = [a] if a and not a["deleted"] else []
        else:
            targets = [a for a in sorted(st.attributes.values(), key=lambda a: a["id"])
                       if not a["deleted"] and any(str(v) in [a["value"]] + value_parts(a) for v in values)]
        if not targets:
            # MISP renders this failure as 200 with a bare message.
            return 200, {"message": "Could not add the Sighting. Reason: No valid attributes found that match the criteria."}
        stype = str(data.get("type", "0"))
        if stype not in SIGHTING_TYPES:
            return 200, {"message": "Could not add the Sighting. Reason: Invalid type, please change it before you POST 1000000 sightings."}
        when = int(float(data["timestamp"])) if data.get("timestamp") not in (None, "") else st.now()
        last = None
        for a in targets:
            last = {"id": st.new_id("sighting"), "attribute_id": a["id"], "event_id": a["event_id"],
                    "org_id": int(ORG["id"]), "date_sighting": when, "uuid": str(uuidlib.uuid4()),
                    "source": str(data.get("source", "")).strip(), "type": stype}
            st.sightings.append(last)
            st.events[a["event_id"]]["sighting_timestamp"] = when
        st.save()
        return 200, {"Sighting": st.sighting_json(last)}

    def sighting_index(self, method, args, named, body):
        """GET /sightings/index/{eventId}: flat list, as MISP's attachToEvent builds it."""
        eid = args[0] if args else None
        rows = [x for x in self.store.sightings if eid is None or str(x["event_id"]) == str(eid)
                or self.store.events.get(x["event_id"], {}).get("uuid") == eid]
        return 200, [self.store.sighting_json(x, with_org=True) for x in rows]

    def sighting_list(self, method, args, named, body):
        """/sightings/listSightings[/{id}/{context}] (PyMISP's sightings())."""
        data = body if isinstance(body, dict) else {}
        ref = data.get("id", args[0] if args else None)
        context = data.get("context", args[1] if len(args) > 1 else "attribute")
        st = self.store
        if context == "attribute":
            a = self.attribute_or_404(ref)
            rows = [x for x in st.sightings if x["attribute_id"] == a["id"]]
        else:
            e = self.event_or_404(ref)
            rows = [x for x in st.sightings if x["event_id"] == e["id"]]
        return 200, [{"Sighting": st.sighting_json(x),
                      "Organisation": {"id": ORG["id"], "uuid": ORG["uuid"], "name": ORG["name"]}} for x in rows]

    # ---- tags
    def _tag_target(self, body):
        data = body if isinstance(body, dict) else {}
        ref, tag = data.get("uuid"), data.get("tag")
        if not ref or not tag:
            raise MispError(403, "Invalid request.")
        st = self.store
        names = []
        for t in (tag if isinstance(tag, list) else [tag]):
            if str(t).isdigit():
                name = next((n for n, v in st.tags.items() if v["id"] == int(t)), None)
                if name is None:
                    raise MispError(404, "Invalid Tag.")
                names.append(name)
            else:
                names.append(str(t))
        target = st.find_event(ref) or st.find_attribute(ref)
        if target is None:
            raise MispError(404, "Invalid Target.")
        return target, names

    def tag_attach(self, method, args, named, body):
        self.need_post(method)
        target, names = self._tag_target(body)
        st = self.store
        ts = st.tick()
        for n in names:
            st.tag_id(n)
            if n not in target["tags"]:
                target["tags"].append(n)
        # Tagging touches the object (and unpublishes the event) in MISP.
        if "event_id" in target:
            target["timestamp"] = ts
            st.touch_event(st.events[target["event_id"]], ts)
        else:
            st.touch_event(target, ts)
        st.save()
        return 200, {"saved": True, "success": "Tag(s) attached.", "check_publish": True}

    def tag_detach(self, method, args, named, body):
        self.need_post(method)
        target, names = self._tag_target(body)
        st = self.store
        ts = st.tick()
        target["tags"] = [t for t in target["tags"] if t not in names]
        if "event_id" in target:
            target["timestamp"] = ts
            st.touch_event(st.events[target["event_id"]], ts)
        else:
            st.touch_event(target, ts)
        st.save()
        return 200, {"saved": True, "success": "Tag removed.", "check_publish": True}


# --------------------------------------------------------------------------- HTTP

class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, like MISP behind Apache/nginx
    server_version = "Apache"
    sys_version = ""

    def log_message(self, fmt, *args):
        if self.server.verbose:
            sys.stderr.write("misp-double: %s - %s\n" % (self.address_string(), fmt % args))

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
        else:
            raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.headers.get("Content-Encoding", "").lower() == "gzip":
            raw = gzip.decompress(raw)
        return raw

    def _serve(self):
        path = self.path
        headers = {k.lower(): v for k, v in self.headers.items()}
        try:
            raw = self._read_body()
        except (ValueError, OSError, EOFError):
            raw, headers["x-double-body-error"] = b"", "unreadable body"
        body, body_error = None, None
        if raw.strip():
            try:
                body = json.loads(raw)
            except ValueError as exc:
                body_error = str(exc)
        status, extra = 500, {}
        try:
            if body_error is not None:
                raise MispError(400, "Invalid JSON input. Make sure that the JSON input is a correctly formatted JSON string.")
            status, out, extra = self.server.api.handle(self.command, path, headers, body)
        except MispError as err:
            status = err.status
            out = {"name": err.message, "message": err.message,
                   "url": err.extra.get("url_override", urlsplit(path).path)}
            out.update({k: v for k, v in err.extra.items() if k != "url_override"})
        except Exception as exc:  # a bug in the double must not look like a hung server
            status = 500
            out = {"name": "An Internal Error Has Occurred.", "message": f"{type(exc).__name__}: {exc}",
                   "url": urlsplit(path).path}
        self.server.log_request_line(self.command, path, headers, body, raw if body is None else None, status)
        payload = json.dumps(out, indent=4, ensure_ascii=False).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=UTF-8")
        self.send_header("Content-Length", str(len(payload)))
        for k, v in extra.items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _serve


class MispDouble(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, addr, api, request_log=None, verbose=False):
        super().__init__(addr, Handler)
        self.api = api
        self.verbose = verbose
        self.request_log = request_log
        self.log_lock = threading.Lock()

    def log_request_line(self, method, path, headers, body, raw, status):
        if not self.request_log:
            return
        rec = {"time": time.time(), "method": method, "path": path, "headers": headers,
               "json": body, "status": status}
        if raw:
            rec["raw_body"] = raw.decode("utf-8", "replace")
        with self.log_lock, open(self.request_log, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(rec, ensure_ascii=False) + "\n")


def load_seed(store, path):
    """Seed events: a list of events, {"events": [...]}, or a restSearch/feed dump."""
    with open(path, encoding="utf-8") as fh:
        data = json.load(fh)
    if isinstance(data, dict):
        data = data.get("events") or data.get("response") or [data]
    with store.lock:
        for item in data:
            store.add_event(item)
        store.save()


def parse_listen(text):
    host, _, port = text.rpartition(":")
    return host.strip("[]") or "127.0.0.1", int(port)


def main(argv=None):
    p = argparse.ArgumentParser(description="MISP server test double (stdlib only).")
    p.add_argument("--listen", default="127.0.0.1:8443", help="HOST:PORT (port 0 = ephemeral)")
    p.add_argument("--api-key", action="append", required=True, help="accepted API key (repeatable)")
    p.add_argument("--tls-cert", help="PEM certificate (chain) for HTTPS")
    p.add_argument("--tls-key", help="PEM private key for HTTPS")
    p.add_argument("--state", help="JSON file to load state from and persist every change to")
    p.add_argument("--seed", help="JSON file of events to preload when the state is empty")
    p.add_argument("--request-log", help="append one JSON line per request (method, path, headers, json, status)")
    p.add_argument("--clock-offset", type=int, default=0, help="seconds added to wall time for timestamps")
    p.add_argument("--port-file", help="write the bound port here once listening (for --listen HOST:0)")
    p.add_argument("--verbose", action="store_true", help="log each request to stderr")
    args = p.parse_args(argv)
    if bool(args.tls_cert) != bool(args.tls_key):
        p.error("--tls-cert and --tls-key go together")

    store = Store(args.state, args.clock_offset)
    if args.seed and not store.events:
        load_seed(store, args.seed)
    server = MispDouble(parse_listen(args.listen), Api(store, args.api_key), args.request_log, args.verbose)
    scheme = "http"
    if args.tls_cert:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.load_cert_chain(args.tls_cert, args.tls_key)
        # Handshake lazily in the per-connection thread, so one stalled client
        # cannot block accept() for everybody else.
        server.socket = ctx.wrap_socket(server.socket, server_side=True, do_handshake_on_connect=False)
        scheme = "https"
    host, port = server.server_address[:2]
    if args.port_file:
        tmp = args.port_file + ".tmp"
        with open(tmp, "w") as fh:
            fh.write(f"{port}\n")
        os.replace(tmp, args.port_file)
    print(f"misp-double listening on {scheme}://{host}:{port}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
