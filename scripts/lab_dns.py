#!/usr/bin/python3
"""A tiny authoritative DNS server for the lab's names (A records only).

  lab_dns.py ADDR NAME=IP [NAME=IP ...]

Answers A queries for the given names, NXDOMAIN for others. Standard library
only: the lab must not depend on a resolver package.
"""

import socket
import struct
import sys


def parse_name(msg, off):
    labels = []
    while True:
        n = msg[off]
        off += 1
        if n == 0:
            return ".".join(labels).lower(), off
        if n & 0xC0:
            raise ValueError("compressed names do not occur in queries")
        labels.append(msg[off:off + n].decode("ascii", "replace"))
        off += n


def answer(msg, records):
    ident, flags, qd = struct.unpack(">HHH", msg[:6])
    if qd != 1 or flags & 0x8000:
        return None
    name, end = parse_name(msg, 12)
    qtype, qclass = struct.unpack(">HH", msg[end:end + 4])
    question = msg[12:end + 4]
    ip = records.get(name)
    rcode = 0 if ip else 3
    an = 1 if ip and qtype in (1, 255) and qclass == 1 else 0
    header = struct.pack(">HHHHHH", ident, 0x8400 | (flags & 0x0100) | rcode, 1, an, 0, 0)
    body = question
    if an:
        body += b"\xc0\x0c" + struct.pack(">HHIH", 1, 1, 60, 4) + socket.inet_aton(ip)
    return header + body


def main():
    addr = sys.argv[1]
    records = dict(arg.lower().split("=", 1) for arg in sys.argv[2:])
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((addr, 53))
    while True:
        msg, peer = s.recvfrom(512)
        try:
            reply = answer(msg, records)
        except (ValueError, IndexError, struct.error):
            continue
        if reply:
            s.sendto(reply, peer)


if __name__ == "__main__":
    main()
