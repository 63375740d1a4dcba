"""Publish or delete an IoC in the lab's MISP double with unmodified PyMISP.

Runs inside the `pi` namespace (the double lives in `wan`):
  misp_admin.py add VALUE...       -> prints the attribute uuids, one per line
  misp_admin.py delete UUID...
  misp_admin.py ids-off UUID...    -> the attributes stay, but are no longer for IDSes
  misp_admin.py sightings UUID     -> the source of each sighting, one per line
  misp_admin.py sighting-types UUID -> "source type" of each sighting (0 seen, 1 false positive, 2 expired)
  misp_admin.py events             -> the events this appliance created, one JSON line each
"""

import os
import sys
from pathlib import Path

from pymisp import MISPEvent, PyMISP

lab = Path(os.environ["HW_LAB_DIR"])
key = next(line.split("=", 1)[1].strip().strip('"')
           for line in (lab / ".env").read_text().splitlines() if line.startswith("MISP_API_KEY="))
misp = PyMISP("https://203.0.113.10:8443", key, ssl=str(lab / "misp-ca.pem"), timeout=10)

if sys.argv[1] == "add":
    ev = MISPEvent()
    ev.info = "homewarden e2e: C2 seen at a neighbour"
    ev.threat_level_id = 1
    ev.distribution = 0
    ev.add_tag("tlp:green")
    for value in sys.argv[2:]:
        ev.add_attribute("domain" if value[0].isalpha() else "ip-dst", value, to_ids=True)
    created = misp.add_event(ev, pythonify=True)
    misp.publish(created)
    print("\n".join(a.uuid for a in created.attributes))
elif sys.argv[1] == "delete":
    for uuid in sys.argv[2:]:
        r = misp.delete_attribute(uuid)
        assert "errors" not in r, r
elif sys.argv[1] == "ids-off":
    for uuid in sys.argv[2:]:
        a = misp.get_attribute(uuid, pythonify=True)
        a.to_ids = False
        r = misp.update_attribute(a)
        assert "errors" not in r, r
elif sys.argv[1] == "events":
    import json
    for ev in misp.search(controller="events", tags=["homewarden"], pythonify=True):
        print(json.dumps({"uuid": ev.uuid, "info": ev.info, "threat_level_id": int(ev.threat_level_id),
                          "distribution": int(ev.distribution), "tags": sorted(t.name for t in ev.tags),
                          "attributes": sorted([a.type, a.value, bool(a.to_ids)] for a in ev.attributes)}))
elif sys.argv[1] == "sightings":
    attr = misp.get_attribute(sys.argv[2], pythonify=True)
    for s in misp.sightings(attr, pythonify=True):
        print(s.source)
elif sys.argv[1] == "sighting-types":
    attr = misp.get_attribute(sys.argv[2], pythonify=True)
    for s in misp.sightings(attr, pythonify=True):
        print(s.source, s.type)
else:
    sys.exit(f"unknown command {sys.argv[1]!r}")
