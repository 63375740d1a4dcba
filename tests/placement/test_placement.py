"""Network placement on real parts, in network namespaces of its own.

`homewarden network apply --root DIR` renders the files; these tests then
run them the way the appliance's units do: the real dnsmasq (DHCP and DNS)
with the rendered file and the unit's command line, a real DHCP client
(busybox udhcpc) on a device, the rendered nftables NAT in the real kernel,
a real bridge with br_netfilter in front of the firewall's queue, the Pi
closed to its devices by `homewarden firewall up`, and
the real hostapd reading the rendered access point. systemd-networkd cannot
run without systemd as init, so the addresses and bridge ports its rendered
files name are set with ip(8) from those files.
"""

import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BIN = os.environ.get("HOMEWARDEN_BIN", str(REPO / "target" / "debug" / "homewarden"))
UNITS = REPO / "overlays" / "etc" / "systemd" / "system"
NS = ("hwpl-dev", "hwpl-pi", "hwpl-up")
UPLINK_PI, UPLINK_ADDR = "203.0.113.1", "203.0.113.1/24"
UP_HOST = "203.0.113.2"
DNS_UP = "203.0.113.53"

if os.geteuid() != 0:
    pytest.skip("needs root (network namespaces)", allow_module_level=True)


def sh(*cmd, check=True, timeout=30, **kw):
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kw)
    if check and r.returncode != 0:
        raise AssertionError(f"{' '.join(map(str, cmd))} failed ({r.returncode}):\n{r.stdout}\n{r.stderr}")
    return r


def ns(name, *cmd, **kw):
    return sh("ip", "netns", "exec", name, *cmd, **kw)


def wait_for(pred, secs):
    end = time.monotonic() + secs
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(0.2)
    return pred()


def exec_start(unit, index=0):
    """The unit file's ExecStart= command lines, as the appliance runs them."""
    lines = [l.split("=", 1)[1] for l in (UNITS / unit).read_text().splitlines() if l.startswith("ExecStart=")]
    return shlex.split(lines[index])


def networkd(root, name):
    """One rendered systemd-networkd file as {key: value} (keys unique in ours)."""
    text = (root / "run/systemd/network" / name).read_text()
    return dict(re.findall(r"^(\w+)=(.*)$", text, re.M))


@pytest.fixture
def net(tmp_path):
    """Three namespaces: a device, the Pi, and the uplink side (router, DNS, a server)."""
    procs = []
    for n in NS:
        sh("ip", "netns", "del", n, check=False)
        sh("ip", "netns", "add", n)
        ns(n, "ip", "link", "set", "lo", "up")
    sh("ip", "link", "add", "dev0", "netns", "hwpl-dev", "type", "veth", "peer", "name", "lan0", "netns", "hwpl-pi")
    sh("ip", "link", "add", "up0", "netns", "hwpl-pi", "type", "veth", "peer", "name", "wan0", "netns", "hwpl-up")
    for n, dev in (("hwpl-dev", "dev0"), ("hwpl-pi", "lan0"), ("hwpl-pi", "up0"), ("hwpl-up", "wan0")):
        ns(n, "ip", "link", "set", dev, "up")

    # dnsmasq reads its resolv-file after dropping root: the tree must be
    # readable by others, as /run is (pytest's tmp_path is root's alone).
    top = Path(tempfile.mkdtemp(prefix="hwpl-"))
    top.chmod(0o755)

    class Net:
        root = top / "root"
        config = top / "homewarden.yaml"

        def spawn(self, name, *cmd, env=None):
            log = open(tmp_path / f"{name}.log", "w")
            p = subprocess.Popen(["ip", "netns", "exec", *cmd], stdout=log, stderr=subprocess.STDOUT,
                                 stdin=subprocess.DEVNULL, env=env)
            procs.append(p)
            return p

        def log(self, name):
            return (tmp_path / f"{name}.log").read_text()

        def apply(self, yaml, env=None):
            self.config.write_text(yaml)
            return sh(BIN, "--config", str(self.config), "network", "apply", "--root", str(self.root),
                      env=dict(os.environ, **(env or {})))

        def dnsmasq(self):
            """dnsmasq as homewarden-dhcp.service starts it, on the rendered file,
            with the lease script the image installs (from overlays/) keeping
            vendor classes under the root."""
            script = self.root / "usr/lib/homewarden/dhcp-lease"
            script.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / "overlays/usr/lib/homewarden/dhcp-lease", script)
            cmd = [a.replace("/run/homewarden/", f"{self.root}/run/homewarden/")
                   for a in exec_start("homewarden-dhcp.service")]
            assert cmd[0] == "/usr/sbin/dnsmasq"
            # As homewarden-dhcp.service makes it: the lease script runs as dnsmasq
            # (dhcp-scriptuser), into a directory of its own.
            vendor = self.root / "run/homewarden/dhcp-vendor"
            vendor.mkdir(parents=True, exist_ok=True)
            shutil.chown(vendor, user="dnsmasq")
            env = dict(os.environ, HOMEWARDEN_DHCP_VENDOR_DIR=str(vendor))
            return self.spawn("dnsmasq", "hwpl-pi", *cmd, env=env)

    yield Net()
    for p in procs:
        p.kill()
        p.wait()
    for n in NS:
        sh("ip", "netns", "del", n, check=False)
    shutil.rmtree(top, ignore_errors=True)


def uplink_side(net):
    """What the home router gives the Pi's uplink (its DHCP is emulated by a static address)."""
    ns("hwpl-pi", "ip", "addr", "add", UPLINK_ADDR, "dev", "up0")
    ns("hwpl-up", "ip", "addr", "add", f"{UP_HOST}/24", "dev", "wan0")
    ns("hwpl-up", "ip", "addr", "add", f"{DNS_UP}/32", "dev", "wan0")
    ns("hwpl-pi", "sysctl", "-qw", "net.ipv4.ip_forward=1")
    # The canary names resolve upstream: only the Pi's own answer makes them NXDOMAIN.
    net.spawn("dns-up", "hwpl-up", sys.executable, str(REPO / "scripts/lab_dns.py"), DNS_UP,
              "www.lab-good.test=203.0.113.80", "use-application-dns.net=203.0.113.81",
              "mask.icloud.com=203.0.113.82", "mask-h2.icloud.com=203.0.113.83")
    serve_peer(net, UP_HOST)


def serve_peer(net, addr):
    """A server on the uplink side that answers each connection with the address it came from."""
    peer = ("import socket\ns=socket.socket();s.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)\n"
            f"s.bind(({addr!r},8080));s.listen()\n"
            "while True:\n c,a=s.accept();c.sendall(a[0].encode());c.close()\n")
    net.spawn("peer", "hwpl-up", sys.executable, "-c", peer)
    assert wait_for(lambda: f"{addr}:8080" in ns("hwpl-up", "ss", "-ltn", check=False).stdout, 10)


def dhcp_lease(net):
    """A lease for the device from whatever DHCP server is on its link (busybox udhcpc)."""
    script = net.root.parent / "udhcpc.sh"
    out = net.root.parent / "lease.env"
    script.write_text(f"#!/bin/sh\n[ \"$1\" = bound ] || exit 0\nenv > {out}\n"
                      "ip addr add \"$ip/$mask\" dev \"$interface\"\n"
                      "for r in $router; do ip route add default via \"$r\"; done\n")
    script.chmod(0o755)
    ns("hwpl-dev", "udhcpc", "-i", "dev0", "-n", "-q", "-f", "-t", "10", "-T", "1", "-s", str(script),
       "-V", "homewarden-test-device",
       timeout=60)
    return dict(l.split("=", 1) for l in out.read_text().splitlines() if "=" in l)


def ask(server, name, netns, timeout, then):
    """Sends an A query for `name` to `server` from `netns`; `then` is the
    Python that judges the reply `d` against the query `q`."""
    code = (
        "import socket,struct,sys\n"
        f"n={name!r};q=struct.pack('>HHHHHH',0x4242,0x0100,1,0,0,0)"
        "+b''.join(bytes([len(p)])+p.encode() for p in n.split('.'))+b'\\0'+struct.pack('>HH',1,1)\n"
        f"s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM);s.settimeout({timeout})\n"
        f"s.sendto(q,({server!r},53))\n"
        "try:\n d=s.recv(512)\nexcept socket.timeout:\n sys.exit(2)\n" + then)
    return ns(netns, sys.executable, "-c", code, check=False, timeout=timeout + 5)


def query(server, name, netns="hwpl-dev", timeout=2):
    """True if `server` answers an A query for `name` sent from `netns`."""
    then = "sys.exit(0 if d[:2]==q[:2] and struct.unpack('>H',d[6:8])[0]>0 else 1)\n"
    return ask(server, name, netns, timeout, then).returncode == 0


def rcode(server, name, netns="hwpl-dev", timeout=2):
    """The response code `server` gives an A query for `name` (3: NXDOMAIN), None without an answer."""
    r = ask(server, name, netns, timeout, "print(d[3] & 0x0f if d[:2]==q[:2] else -1)\n")
    return int(r.stdout) if r.returncode == 0 else None


def seen_by_server(server=UP_HOST, netns="hwpl-dev"):
    """The address the uplink side's server saw the device's connection come from (None: no connection)."""
    r = ns(netns, sys.executable, "-c",
           f"import socket;s=socket.create_connection(({server!r},8080),timeout=2);print(s.recv(64).decode())",
           check=False)
    return r.stdout.strip() if r.returncode == 0 else None


GATEWAY = "network: { placement: gateway, uplink: up0, lan: lan0, lan_address: 192.168.73.1/24 }\n"


def test_gateway_serves_dhcp_and_dns_and_nats_the_devices(net):
    r = net.apply(GATEWAY)
    assert "gateway placement, uplink up0, devices on lan0 at 192.168.73.1/24" in r.stdout, r.stdout
    uplink_side(net)
    lan = networkd(net.root, "10-homewarden-lan.network")
    assert lan["Name"] == "lan0"
    ns("hwpl-pi", "ip", "addr", "add", lan["Address"], "dev", "lan0")
    resolv = net.root / "run/systemd/resolve/resolv.conf"
    resolv.parent.mkdir(parents=True)
    resolv.write_text(f"nameserver {DNS_UP}\n")
    dnsmasq = net.dnsmasq()

    lease = dhcp_lease(net)
    assert lease["router"] == "192.168.73.1" and lease["dns"].strip() == "192.168.73.1", lease
    assert lease["mask"] == "24", lease
    last = int(lease["ip"].rsplit(".", 1)[1])
    assert lease["ip"].startswith("192.168.73.") and 2 <= last <= 254, lease
    leases = (net.root / "run/homewarden/dnsmasq.leases").read_text()
    assert leases.count(lease["ip"]) == 1
    # The lease script kept what the lease file does not: the device's vendor class.
    mac = next(l.split()[1] for l in leases.splitlines() if lease["ip"] in l)
    kept = net.root / "run/homewarden/dhcp-vendor" / mac
    assert wait_for(kept.exists, 5), net.log("dnsmasq")
    assert kept.read_text() == "homewarden-test-device\n"
    # The Pi answers DNS, forwarding to the resolvers the uplink learned.
    assert wait_for(lambda: query("192.168.73.1", "www.lab-good.test"), 10), net.log("dnsmasq")
    assert dnsmasq.poll() is None

    # Routed but not NATed, the uplink side has no way back to 192.168.73.0/24 …
    assert seen_by_server() is None
    # … with the rendered table (loaded as homewarden-network.service does) it
    # sees the Pi's uplink address.
    nft = exec_start("homewarden-network.service", 1)
    assert nft[:2] == ["/usr/sbin/nft", "-f"]
    ns("hwpl-pi", "nft", "-f", str(net.root / "run/homewarden/network.nft"))
    assert seen_by_server() == UPLINK_PI
    # Loading it again (a re-apply) replaces it, never stacks a second rule.
    ns("hwpl-pi", "nft", "-f", str(net.root / "run/homewarden/network.nft"))
    assert ns("hwpl-pi", "nft", "list", "table", "ip", "homewarden_nat").stdout.count("masquerade") == 1
    assert seen_by_server() == UPLINK_PI


def test_the_pi_answers_its_devices_only_dhcp_dns_and_what_is_opened(net):
    """On a network of the devices' own, the Pi is closed to them but for
    DHCP, DNS (asked of any resolver, answered by the Pi) and the ports the
    owner opens; DNS over TLS goes to the configured upstream only."""
    import socket
    net.apply(GATEWAY.rstrip().rstrip("}") + f", lan_open: [tcp/8123], dns: [{DNS_UP}] }}\n")
    uplink_side(net)
    lan = networkd(net.root, "10-homewarden-lan.network")
    ns("hwpl-pi", "ip", "addr", "add", lan["Address"], "dev", "lan0")
    resolv = net.root / "run/systemd/resolve/resolv.conf"
    resolv.parent.mkdir(parents=True)
    resolv.write_text(f"nameserver {DNS_UP}\n")
    net.dnsmasq()
    ns("hwpl-pi", "nft", "-f", str(net.root / "run/homewarden/network.nft"))
    # The Pi's SSH and another service, and a DNS-over-TLS port upstream and elsewhere.
    listen = ("import socket,sys,threading\n"
              "def serve(a,p):\n"
              " s=socket.socket();s.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1);s.bind((a,p));s.listen()\n"
              " while True:\n  c,_=s.accept();c.sendall(b'hi');c.close()\n"
              "for a,p in [x.split(':') for x in sys.argv[1:]]:\n"
              " threading.Thread(target=serve,args=(a,int(p))).start()\n")
    net.spawn("pi-services", "hwpl-pi", sys.executable, "-c", listen, "192.168.73.1:22", "192.168.73.1:8123",
              "192.168.73.1:8124")
    net.spawn("dot", "hwpl-up", sys.executable, "-c", listen, f"{DNS_UP}:853", f"{UP_HOST}:853")
    assert wait_for(lambda: ":853" in ns("hwpl-up", "ss", "-ltn", check=False).stdout, 10)

    ns("hwpl-pi", BIN, "--config", str(net.config), "firewall", "up",
       "--suricata-env", str(net.root / "suricata.env"))
    lease = dhcp_lease(net)
    assert lease["ip"].startswith("192.168.73."), lease

    def reach(addr, port):
        r = ns("hwpl-dev", sys.executable, "-c",
               f"import socket;s=socket.create_connection(({addr!r},{port}),timeout=1.5);print(s.recv(8))",
               check=False)
        return r.returncode == 0

    assert wait_for(lambda: query("192.168.73.1", "www.lab-good.test"), 10), net.log("dnsmasq")
    assert reach("192.168.73.1", 8123)
    assert not reach("192.168.73.1", 22), "SSH from the devices' side is off by default"
    assert not reach("192.168.73.1", 8124)
    # A resolver that does not exist answers: the Pi took the query.
    assert query("203.0.113.99", "www.lab-good.test")
    # DNS over TLS is Suricata's to refuse and report (enforcement.dns_bypass,
    # tests/render_suricata.rs and the lab): the firewall alone passes it.
    assert reach(DNS_UP, 853) and reach(UP_HOST, 853)
    # The canaries: Firefox keeps DNS over HTTPS off, Apple devices Private
    # Relay, because the Pi's resolver says no such name (upstream has them).
    assert query(DNS_UP, "use-application-dns.net", netns="hwpl-up")
    for canary in ["use-application-dns.net", "mask.icloud.com", "mask-h2.icloud.com"]:
        assert rcode("192.168.73.1", canary) == 3, canary
    assert query("192.168.73.1", "www.lab-good.test")
    assert seen_by_server() == UPLINK_PI, "forwarding itself is untouched"
    # Without the firewall the Pi is open, and the made-up resolver silent.
    ns("hwpl-pi", BIN, "--config", str(net.config), "firewall", "down")
    assert reach("192.168.73.1", 22)
    assert not query("203.0.113.99", "www.lab-good.test")


def test_one_armed_gateway_masquerades_the_hairpin(net):
    """Devices on the uplink's own link that use the Pi as their router."""
    net.apply("network: { placement: gateway, uplink: up0, lan: up0 }\n")
    assert not (net.root / "run/homewarden/dnsmasq.conf").exists()
    uplink_side(net)
    # The device sits on the uplink's link: move it there, through a bridge in
    # the uplink namespace.
    sh("ip", "-n", "hwpl-dev", "link", "del", "dev0")
    sh("ip", "link", "add", "dev0", "netns", "hwpl-dev", "type", "veth", "peer", "name", "hub1", "netns", "hwpl-up")
    ns("hwpl-up", "ip", "link", "add", "hub", "type", "bridge")
    ns("hwpl-up", "ip", "link", "set", "wan0", "master", "hub")
    ns("hwpl-up", "ip", "link", "set", "hub1", "master", "hub")
    ns("hwpl-up", "ip", "addr", "flush", "dev", "wan0")
    ns("hwpl-up", "ip", "addr", "add", f"{UP_HOST}/24", "dev", "hub")
    for dev in ("hub", "hub1"):
        ns("hwpl-up", "ip", "link", "set", dev, "up")
    ns("hwpl-dev", "ip", "link", "set", "dev0", "up")
    ns("hwpl-dev", "ip", "addr", "add", "203.0.113.9/24", "dev", "dev0")
    # The device's route to the server goes through the Pi, not directly.
    ns("hwpl-dev", "ip", "route", "add", f"{UP_HOST}/32", "via", UPLINK_PI)
    ns("hwpl-pi", "sysctl", "-qw", "net.ipv4.conf.all.send_redirects=0", "net.ipv4.conf.up0.send_redirects=0")
    ns("hwpl-pi", "nft", "-f", str(net.root / "run/homewarden/network.nft"))
    # The server answers the Pi, so the reply comes back through it (and Suricata).
    assert seen_by_server() == UPLINK_PI


def test_bridge_sends_bridged_traffic_through_the_firewall_queue(net):
    net.apply("network: { placement: bridge, uplink: up0, lan: lan0 }\n")
    dev = networkd(net.root, "10-homewarden-bridge.netdev")
    assert dev["Kind"] == "bridge"
    ns("hwpl-pi", "ip", "link", "add", dev["Name"], "type", "bridge")
    for f in ("10-homewarden-uplink.network", "10-homewarden-lan.network"):
        port = networkd(net.root, f)
        ns("hwpl-pi", "ip", "link", "set", port["Name"], "master", port["Bridge"])
    ns("hwpl-pi", "ip", "link", "set", dev["Name"], "up")
    ns("hwpl-dev", "ip", "addr", "add", "10.9.0.2/24", "dev", "dev0")
    ns("hwpl-up", "ip", "addr", "add", "10.9.0.3/24", "dev", "wan0")
    serve_peer(net, "10.9.0.3")

    def ping():
        return seen_by_server("10.9.0.3") == "10.9.0.2"

    # The unit's bridge step (less the modprobe: br_netfilter is built in or loaded here).
    step = exec_start("homewarden-network.service", 2)
    assert "br_netfilter" in step[-1] and "bridge-nf-call-iptables=1" in step[-1]
    ns("hwpl-pi", "sysctl", "-qw", "net.bridge.bridge-nf-call-iptables=1", "net.bridge.bridge-nf-call-ip6tables=1")
    assert wait_for(ping, 10)
    # Fail-closed with no Suricata on the queue: bridged traffic stops, so it
    # goes through the queue like routed traffic does.
    firewall = [BIN, "--config", str(net.config), "firewall"]
    env = ["--suricata-env", str(net.root / "suricata.env")]
    ns("hwpl-pi", *firewall, "up", "--fail", "closed", *env)
    try:
        assert not ping()
    finally:
        ns("hwpl-pi", *firewall, "down")
    assert ping()
    # VLAN-tagged frames would cross the bridge without reaching the queue:
    # the firewall drops them, untagged traffic still passes (fail-open here).
    def crosses(ethertype, tag=b""):
        """True if a raw frame of this ethertype sent by the device arrives on the uplink side."""
        marker = f"homewarden-probe-{ethertype:04x}".encode()
        sniff = subprocess.Popen(
            ["ip", "netns", "exec", "hwpl-up", sys.executable, "-c",
             "import socket,sys,time\n"
             "s=socket.socket(socket.AF_PACKET,socket.SOCK_RAW,socket.htons(3));s.bind(('wan0',0));s.settimeout(0.2)\n"
             "end=time.time()+2\n"
             "while time.time()<end:\n"
             " try:\n  d=s.recv(2048)\n except socket.timeout:\n  continue\n"
             f" if {marker!r} in d: print('seen'); break\n"],
            stdout=subprocess.PIPE, text=True)
        time.sleep(0.3)
        frame = b"\xff" * 6 + b"\x02\x00\x00\x00\x00\x09" + ethertype.to_bytes(2, "big") + tag + marker
        ns("hwpl-dev", sys.executable, "-c",
           "import socket,sys\n"
           "s=socket.socket(socket.AF_PACKET,socket.SOCK_RAW);s.bind(('dev0',0))\n"
           f"[s.send({frame!r}) for _ in range(5)]\n")
        return sniff.communicate(timeout=10)[0].strip() == "seen"

    vlan7 = b"\x00\x07\x08\x00"  # VLAN 7, carrying IPv4
    tagged = [(0x8100, vlan7), (0x88a8, vlan7), (0x8864, b"\x11\x00\x00\x01\x00\x10")]
    assert all(crosses(t, tag) for t, tag in tagged)
    ns("hwpl-pi", *firewall, "up", *env)
    try:
        assert not any(crosses(t, tag) for t, tag in tagged)
        assert ping()
    finally:
        ns("hwpl-pi", *firewall, "down")
    # Without br_netfilter's hand-over the bridge would bypass the queue: the
    # firewall then lets it forward nothing at all, and the agent says why.
    ns("hwpl-pi", "sysctl", "-qw", "net.bridge.bridge-nf-call-iptables=0")
    ns("hwpl-pi", *firewall, "up", *env)
    try:
        assert not ping()
        assert "drop" in ns("hwpl-pi", "nft", "list", "table", "bridge", "homewarden").stdout
    finally:
        ns("hwpl-pi", *firewall, "down")
    assert ping()
    # The rendered NAT file of a bridge only removes the table.
    ns("hwpl-pi", "nft", "-f", str(net.root / "run/homewarden/network.nft"))
    assert ns("hwpl-pi", "nft", "list", "table", "ip", "homewarden_nat", check=False).returncode != 0


def test_hostapd_reads_the_rendered_access_point(net):
    yaml = 'network: { placement: ap, ap: { ssid: "Home: IoT #2", country: DE, channel: 36 } }\n'
    r = net.apply(yaml, env={"HOMEWARDEN_WIFI_PASSPHRASE": "correct horse battery"})
    conf = net.root / "run/homewarden/hostapd.conf"
    assert conf.stat().st_mode & 0o777 == 0o600
    assert "devices on wlan0" in r.stdout
    cmd = [a.replace("/run/homewarden/", f"{net.root}/run/homewarden/") for a in exec_start("homewarden-ap.service")]
    # No Wi-Fi here: hostapd reads the whole file, then stops at the driver.
    out = ns("hwpl-pi", *cmd, "-dd", check=False, timeout=20)
    text = out.stdout + out.stderr
    assert "errors found in configuration file" not in text and not re.search(r"^Line \d+:", text, re.M), text
    assert "Failed to initialize driver 'nl80211'" in text, text
    # The control: a file hostapd cannot take is reported as such.
    bad = net.root / "bad.conf"
    bad.write_text(conf.read_text().replace("wpa_passphrase=correct horse battery", "wpa_passphrase=short"))
    out = ns("hwpl-pi", "/usr/sbin/hostapd", str(bad), check=False, timeout=20)
    assert "errors found in configuration file" in out.stdout + out.stderr
    # Without a passphrase nothing is written and the error says which secret.
    conf.unlink()
    r = sh(BIN, "--config", str(net.config), "network", "apply", "--root", str(net.root),
           check=False, env={k: v for k, v in os.environ.items() if k != "HOMEWARDEN_WIFI_PASSPHRASE"})
    assert r.returncode == 1 and not conf.exists()
    assert r.stderr.strip().endswith(
        "network.placement: ap needs the Wi-Fi passphrase HOMEWARDEN_WIFI_PASSPHRASE "
        "(secrets.wifi_passphrase on the boot partition): it is not set"), r.stderr
