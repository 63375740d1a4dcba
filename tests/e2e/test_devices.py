"""The device inventory and quarantine in the lab, on real parts: dnsmasq hands
the devices their leases (its lease script keeps their vendor classes), the
kernel's neighbour table sees them, the agent names them from Debian's OUI
registry, and a quarantine is the kernel's own nftables table, holding with
Suricata and the agent out of the way.

Devices: iot (the lab's first, static 198.18.1.2/.3), iot-cam (Espressif,
"doorbell-cam") and iot-speaker (Amazon) from lab.sh up; iot-tv joins here.
"""

import email
import email.policy
import json
import os
import signal
import time

from conftest import BENIGN, C2, wait_for

CAM = "24:0a:c4:12:34:56"
SPEAKER = "44:65:0d:12:34:56"
TV = "fc:65:de:12:34:56"


def devices(lab):
    return {d["mac"]: d for d in json.loads(lab.agent("devices", "--json").stdout)["devices"]}


def address(lab, name):
    """The IPv4 address DHCP gave a device's namespace."""
    out = lab.ns(f"iot-{name}", "ip", "-4", "-o", "addr", "show", "dev", f"dev-{name}").stdout
    return out.split()[3].split("/")[0]


def reaches(lab, name, addr, timeout=1, source=None):
    """True if device `name` gets an answer from a web server at addr."""
    cmd = ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "-m", str(timeout)]
    if source:
        cmd += ["--interface", source]
    r = lab.ns(f"iot-{name}", *cmd, f"http://{addr}/", timeout=timeout + 5)
    return r.returncode == 0 and r.stdout.strip() == "200"


def notices(lab, subject_part):
    out = []
    for eml in (lab.dir / "mail").glob("*.eml"):
        msg = email.message_from_bytes(eml.read_bytes(), policy=email.policy.default)
        if subject_part in msg["Subject"]:
            out.append(msg)
    return out


def test_devices_are_listed_named_and_a_newcomer_raises_one_notice(lab):
    assert wait_for(lambda: {CAM, SPEAKER} <= set(devices(lab)), 10), devices(lab)
    d = devices(lab)
    cam, speaker = d[CAM], d[SPEAKER]
    # From the lease: hostname, and the vendor class the lease script kept;
    # from Debian's ieee-data: the makers.
    assert cam["hostname"] == "doorbell-cam" and cam["vendor_class"] == "ESP32 camera", cam
    assert cam["vendor"] == "Espressif Inc." and speaker["vendor"] == "Amazon Technologies Inc.", d
    assert cam["addresses"][0]["ip"] == address(lab, "cam"), cam
    assert cam["label"] == "doorbell-cam"
    # The lab's first device has a random (locally administered) MAC, seen in
    # the neighbour table: said to be private, not given a maker.
    first = [x for x in d.values() if any(a["ip"] == "198.18.1.2" for a in x["addresses"])]
    assert first and first[0]["private_mac"] and "vendor" not in first[0], d
    table = lab.agent("devices").stdout
    assert "doorbell-cam" in table and "Espressif Inc." in table and "Amazon Technologies" in table, table

    out = lab.agent("devices", "name", CAM, "front doorbell").stdout
    assert 'is now called "front doorbell"' in out, out
    assert devices(lab)[CAM]["name"] == "front doorbell"

    # The home as it was at the first scan raised nothing; a newcomer raises
    # one notice, however long it stays.
    assert not notices(lab, "New device")
    lab.run("join", "tv", TV, "living-room-tv")
    assert wait_for(lambda: TV in devices(lab), 10)
    assert wait_for(lambda: len(notices(lab, "New device")) == 1, 30)
    time.sleep(3)
    msgs = notices(lab, "New device")
    assert len(msgs) == 1, [m["Subject"] for m in msgs]
    assert "living-room-tv" in msgs[0]["Subject"], msgs[0]["Subject"]
    text = msgs[0].get_body(("plain",)).get_content()
    assert "Amazon Technologies Inc." in text and f"homewarden quarantine {TV}" in text, text
    st = lab.status()
    assert st["devices"]["last_new"]["mac"] == TV and st["devices"]["known"] >= 4, st["devices"]


def test_an_incident_names_the_device(lab):
    assert not reaches(lab, "cam", C2)
    cam_ip = address(lab, "cam")

    def named():
        for i in lab.status()["alerts"]["recent"]:
            if i["local"] == cam_ip and (i.get("device") or {}).get("name") == "front doorbell":
                return i
        return None

    assert wait_for(named, 15), lab.status()["alerts"]["recent"]
    assert named()["device"]["mac"] == CAM
    subject = f"front doorbell ({cam_ip})"
    assert wait_for(lambda: notices(lab, subject), 30), "no incident mail naming the device"
    text = notices(lab, subject)[0].get_body(("plain",)).get_content()
    assert f"homewarden quarantine {CAM}" in text, text
    d = devices(lab)[CAM]
    assert d["incidents_24h"] >= 1 and d["blocked_24h"] >= 1, d


def test_quarantine_cuts_one_device_at_once_keeps_dhcp_and_dns_and_outlives_a_restart(lab):
    assert reaches(lab, "cam", BENIGN) and reaches(lab, "speaker", BENIGN)
    t0 = time.monotonic()
    out = lab.agent("quarantine", "front doorbell", "--reason", "talked to a C2").stdout
    took = time.monotonic() - t0
    assert "QUARANTINED" in out, out
    # Live when the command returns, and it returns within a second.
    assert took < 1.0, took
    assert not reaches(lab, "cam", BENIGN)
    # The other device keeps working.
    assert reaches(lab, "speaker", BENIGN)
    # Its DHCP still answers (a renewal from the Pi) and so does DNS.
    renew = lab.ns("iot-cam", "udhcpc", "-i", "dev-cam", "-n", "-q", "-f", "-t", "3", "-T", "1",
                   "-s", "/bin/true", timeout=20)
    assert renew.returncode == 0, renew.stderr
    assert lab.dns_answers("www.lab-good.test", netns="iot-cam")
    # A new address does not let it out: the kernel matches its MAC too.
    lab.ns("iot-cam", "ip", "addr", "add", "198.18.1.222/24", "dev", "dev-cam")
    assert not reaches(lab, "cam", BENIGN, source="198.18.1.222")
    q = lab.status()["devices"]["quarantined"]
    assert [x["name"] for x in q] == ["front doorbell"] and q[0]["reason"] == "talked to a C2", q
    assert "QUARANTINED front doorbell" in lab.agent("status").stdout

    # The kernel holds it with Suricata stopped, and across the agent's restart…
    suricata = lab.suricata_pid()
    os.kill(suricata, signal.SIGSTOP)
    try:
        assert not reaches(lab, "cam", BENIGN)
    finally:
        os.kill(suricata, signal.SIGCONT)
    lab.restart_agent("homewarden-devices-restart.log")
    assert not reaches(lab, "cam", BENIGN)
    # …and the restarted agent knows the devices and the quarantine.
    d = devices(lab)
    assert d[CAM]["name"] == "front doorbell" and d[CAM]["quarantine"]["reason"] == "talked to a C2", d[CAM]
    assert TV in d

    out = lab.agent("release", CAM).stdout
    assert "released" in out, out
    assert wait_for(lambda: reaches(lab, "cam", BENIGN), 5)
    assert lab.status()["devices"]["quarantined"] == []
    # A device on the do-not-break list (iot, by its second address) asks for --force.
    lab.ns("iot", "curl", "-s", "-m", "2", "--interface", "198.18.1.3", f"http://{BENIGN}/")
    assert wait_for(lambda: any(a["ip"] == "198.18.1.3" for d in devices(lab).values() for a in d["addresses"]), 10)
    r = lab.agent("quarantine", "198.18.1.3", check=False)
    assert r.returncode != 0 and "--force" in r.stderr, r.stderr


# An ARP request to the Pi from `dev`, claiming `ip` is at `mac`: the Pi's
# kernel takes it into its neighbour table, as it would from any device.
ARP_CLAIM = """
import socket, struct, sys, time
dev, mac, ip, pi = sys.argv[1:5]
m = bytes.fromhex(mac.replace(':', ''))
arp = struct.pack('!HHBBH6s4s6s4s', 1, 0x0800, 6, 4, 1, m, socket.inet_aton(ip), bytes(6), socket.inet_aton(pi))
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind((dev, 0))
for _ in range(3):
    s.send(b'\\xff' * 6 + m + b'\\x08\\x06' + arp)
    time.sleep(0.2)
"""
PI = "198.18.1.1"


def claim(lab, name, mac, ip):
    r = lab.ns(f"iot-{name}", "/usr/bin/python3", "-c", ARP_CLAIM, f"dev-{name}", mac, ip, PI)
    assert r.returncode == 0, r.stderr


def held_set(lab):
    r = lab.ns("pi", "nft", "-j", "list", "set", "inet", "homewarden_quarantine", "held_ip")
    if r.returncode != 0:
        return set()
    sets = [o["set"] for o in json.loads(r.stdout)["nftables"] if "set" in o]
    return {e for s in sets for e in s.get("elem", [])}


def test_a_held_device_that_claims_the_router_or_a_neighbour_cuts_only_itself(lab):
    """A quarantined device answers ARP for the Pi (the devices' router) and
    for its neighbour: the kernel's neighbour table believes it, the hold
    does not. The neighbour, once its own ARP puts the table right, works."""
    speaker_ip = address(lab, "speaker")
    cam_ip = address(lab, "cam")
    lab.agent("quarantine", CAM, "--reason", "spoofing test")
    try:
        assert wait_for(lambda: cam_ip in held_set(lab), 5), held_set(lab)
        for ip in (PI, speaker_ip):
            claim(lab, "cam", CAM, ip)
        neigh = lab.ns("pi", "ip", "neigh", "show", speaker_ip, "dev", "pi-iot").stdout
        assert CAM in neigh, neigh
        # Taken into the inventory as the camera's claim (a scan a second)…
        assert wait_for(lambda: any(a["ip"] == speaker_ip for a in devices(lab)[CAM]["addresses"]), 10), \
            devices(lab)[CAM]
        time.sleep(2)
        # …and not into the hold: the lease says whose the address is.
        held = held_set(lab)
        assert cam_ip in held and speaker_ip not in held and PI not in held, held
        # Asked by address, the lease decides whose it is, not the last ARP.
        lab.agent("quarantine", speaker_ip, "--reason", "by address")
        try:
            d = devices(lab)
            assert d[SPEAKER].get("quarantine") and d[CAM]["quarantine"]["reason"] == "spoofing test", d
        finally:
            lab.agent("release", SPEAKER)
        # The speaker puts the Pi's table right with an ARP of its own and works.
        claim(lab, "speaker", SPEAKER, speaker_ip)
        assert wait_for(lambda: reaches(lab, "speaker", BENIGN), 10)
        assert not reaches(lab, "cam", BENIGN)
    finally:
        lab.agent("release", CAM)
        claim(lab, "cam", CAM, cam_ip)
    assert wait_for(lambda: reaches(lab, "cam", BENIGN), 10)


def test_turning_the_inventory_off_lifts_every_quarantine(lab):
    """No hold outlives `devices.enabled: false` unseen: the agent takes the
    table away at start; turned on again, the saved holds come back (shown)."""
    lab.agent("quarantine", CAM, "--reason", "suspended")
    assert not reaches(lab, "cam", BENIGN)
    text = lab.config.read_text()
    assert "\ndevices:\n" in text, text
    lab.config.write_text(text.replace("\ndevices:\n", "\ndevices:\n  enabled: false\n", 1))
    try:
        log = lab.restart_agent("homewarden-devices-off.log")
        assert wait_for(lambda: reaches(lab, "cam", BENIGN), 5)
        assert wait_for(lambda: "every quarantine lifted" in log.read_text(), 5), log.read_text()
        assert lab.status()["devices"]["quarantined"] == []
    finally:
        lab.config.write_text(text)
        lab.restart_agent("homewarden-devices-on.log")
    assert wait_for(lambda: not reaches(lab, "cam", BENIGN), 5)
    assert [q["reason"] for q in lab.status()["devices"]["quarantined"]] == ["suspended"]
    lab.agent("release", CAM)
    assert wait_for(lambda: reaches(lab, "cam", BENIGN), 5)
