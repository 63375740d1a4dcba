#!/usr/bin/python3
"""Writes the self-test capture: one TCP SYN from a home device to the canary
address 192.0.2.254 (TEST-NET-1, never a real host), which the agent keeps in
every rendering. `suricata -r` over it with the current rules must fire the
"IPv4 destination on blocklist" rule.

  scripts/make-selftest-pcap.py overlays/usr/share/homewarden/selftest.pcap

Deterministic: the same bytes every time (fixed timestamp, addresses, ports).
"""
import struct
import sys


def checksum(b):
    if len(b) % 2:
        b += b"\0"
    s = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    s = (s >> 16) + (s & 0xFFFF)
    s += s >> 16
    return ~s & 0xFFFF


def main(path):
    src, dst = bytes([198, 18, 1, 2]), bytes([192, 0, 2, 254])
    tcp = struct.pack("!HHIIBBHHH", 40000, 80, 1, 0, 5 << 4, 0x02, 64240, 0, 0)
    pseudo = src + dst + struct.pack("!BBH", 0, 6, len(tcp))
    tcp = tcp[:16] + struct.pack("!H", checksum(pseudo + tcp)) + tcp[18:]
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp), 1, 0, 64, 6, 0, src, dst)
    ip = ip[:10] + struct.pack("!H", checksum(ip)) + ip[12:]
    eth = bytes.fromhex("020000000002" "020000000001") + b"\x08\x00"
    pkt = eth + ip + tcp
    header = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)
    record = struct.pack("<IIII", 1795000000, 0, len(pkt), len(pkt))
    with open(path, "wb") as f:
        f.write(header + record + pkt)


if __name__ == "__main__":
    main(sys.argv[1])
