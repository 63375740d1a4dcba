//! Quarantine: a device that may reach only the Pi's DHCP and DNS (and what
//! the config allows), enforced by the kernel in a table of its own, so it
//! holds when Suricata is down, bypassed or being reloaded, and when the
//! packet path's table is replaced. Matched by MAC where the frame still
//! carries one and by every address the device was seen at, in both
//! directions: a cut takes its open connections too.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::net::IpAddr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use super::inventory::{Inventory, IN_USE_SECS};
use super::Mac;

/// The quarantine's nftables table (inet: IPv4 and IPv6).
pub const TABLE: &str = "homewarden_quarantine";

/// Longest reason kept.
pub const MAX_REASON: usize = 200;

/// One quarantined device.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hold {
    /// Since when (unix seconds).
    pub since: i64,
    /// Until when; for good if absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<i64>,
    /// Why, in the owner's words (or "new device").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Who asked (a user, or the agent for a new device).
    pub by: String,
}

/// The quarantined devices, by MAC.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Quarantine {
    /// The holds.
    pub holds: BTreeMap<Mac, Hold>,
}

impl Quarantine {
    /// Lets go of the holds whose time is up; returns their MACs.
    pub fn expire(&mut self, now: i64) -> Vec<Mac> {
        let due: Vec<Mac> = self
            .holds
            .iter()
            .filter(|(_, h)| h.until.is_some_and(|u| u <= now))
            .map(|(m, _)| *m)
            .collect();
        for m in &due {
            self.holds.remove(m);
        }
        due
    }

    /// Whether this device is held.
    pub fn holds(&self, mac: &Mac) -> bool {
        self.holds.contains_key(mac)
    }
}

/// Holds the agent makes by itself (`devices.new: quarantine`) at most at
/// once: a flood of made-up MACs must not grow the table or the file.
pub const MAX_AUTO_HOLDS: usize = 32;
/// And at most this many an hour.
pub const MAX_AUTO_HOLDS_PER_HOUR: usize = 10;

/// Addresses a hold never cuts, whoever claims them.
#[derive(Clone, Debug, Default)]
pub struct Never {
    /// The home's gateways and resolvers, the Pi's own addresses, and the
    /// `do_not_break` devices: a do-not-break device held with `--force` is
    /// held by its MAC alone, so no device can make one cut by claiming its address.
    pub spared: Vec<IpNet>,
}

/// The addresses of held device `mac` a hold may cut: the ones it uses now
/// (seen within minutes of its latest sighting) that nobody else has a
/// better claim to. A device that answers ARP for the router, a resolver,
/// the Pi or a neighbour gets those addresses into the neighbour table; a
/// hold on them would cut the whole home. So an address is left out when
/// `never` spares it, when `leases` (where the Pi serves DHCP, its live
/// leases by address) give it to another device, or when another device was
/// seen at it more recently.
pub fn addresses_to_cut(
    inv: &Inventory,
    mac: &Mac,
    leases: &HashMap<IpAddr, Mac>,
    never: &Never,
) -> Vec<IpAddr> {
    let Some(d) = inv.get(mac) else {
        return Vec::new();
    };
    d.addresses
        .iter()
        .filter(|a| d.last_seen - a.last_seen <= IN_USE_SECS)
        .filter(|a| !never.spared.iter().any(|n| n.contains(&a.ip)))
        .filter(|a| leases.get(&a.ip).is_none_or(|m| m == mac))
        .filter(|a| inv.at(a.ip).is_none_or(|other| other.mac == *mac))
        .map(|a| a.ip)
        .collect()
}

/// What a quarantined device may still reach.
#[derive(Clone, Debug, Default)]
pub struct Leave {
    /// What the config allows (`devices.quarantine_allow`).
    pub allow: Vec<IpNet>,
    /// The home's resolvers (`network.dns`): DNS to them stays open.
    pub dns: Vec<IpAddr>,
    /// The home's gateways (`network.gateway` and the Pi's default routes):
    /// on the owner's network they answer DHCP and often DNS.
    pub gateway: Vec<IpAddr>,
    /// The devices use the Pi's DHCP and DNS (ap, two-interface gateway)
    /// rather than the router's, through the Pi (bridge, one-armed gateway).
    pub own_network: bool,
}

/// The table as the kernel should have it: `held` is every quarantined
/// device with its addresses. Replaces the table in one transaction; with
/// nobody held there is no table (no hook on every packet for nothing).
pub fn render(held: &[(Mac, Vec<IpAddr>)], leave: &Leave) -> String {
    let (allow, own_network) = (&leave.allow, leave.own_network);
    let mut t = String::new();
    let _ = writeln!(t, "table inet {TABLE} {{}}\ndelete table inet {TABLE}");
    if held.is_empty() {
        return t;
    }
    let _ = writeln!(t, "table inet {TABLE} {{");
    let elements = |v: Vec<String>| {
        if v.is_empty() {
            String::new()
        } else {
            format!("\n        elements = {{ {} }}", v.join(", "))
        }
    };
    let macs = held.iter().map(|(m, _)| m.to_string()).collect();
    let _ = writeln!(
        t,
        "    set macs {{\n        type ether_addr{}\n    }}",
        elements(macs)
    );
    for (ip, kind, v4) in [("ip", "ipv4_addr", true), ("ip6", "ipv6_addr", false)] {
        let mut addrs: Vec<String> = held
            .iter()
            .flat_map(|(_, a)| a.iter())
            .filter(|a| a.is_ipv4() == v4)
            .map(IpAddr::to_string)
            .collect();
        addrs.sort();
        addrs.dedup();
        let allowed: Vec<String> = allow
            .iter()
            .filter(|n| matches!(n, IpNet::V4(_)) == v4)
            .map(IpNet::to_string)
            .collect();
        // The Pi answers where the devices have a network of their own; on
        // the owner's network the resolvers and the gateways do.
        let servers = leave
            .dns
            .iter()
            .chain(leave.gateway.iter().filter(|_| !own_network));
        let mut dns: Vec<String> = servers
            .filter(|a| a.is_ipv4() == v4)
            .map(IpAddr::to_string)
            .collect();
        dns.sort();
        dns.dedup();
        let _ = writeln!(
            t,
            "    set held_{ip} {{\n        type {kind}{}\n    }}\n    set allow_{ip} {{\n        type {kind}\n        flags interval{}\n    }}\n    set dns_{ip} {{\n        type {kind}{}\n    }}",
            elements(addrs),
            elements(allowed),
            elements(dns)
        );
    }
    // Neighbour discovery keeps the device's link working (and its
    // quarantine answerable); it is never forwarded past the link.
    let nd = "icmpv6 type { nd-router-solicit, nd-router-advert, nd-neighbor-solicit, nd-neighbor-advert } return";
    // Ahead of the packet path's chains (priority filter): a drop here is
    // final whatever Suricata's queue would have said.
    let _ = writeln!(
        t,
        "    chain forward {{\n        type filter hook forward priority filter - 20; policy accept;\n        \
         ether saddr @macs jump from_device\n        \
         ip saddr @held_ip jump from_device\n        \
         ip6 saddr @held_ip6 jump from_device\n        \
         ip daddr @held_ip jump to_device\n        \
         ip6 daddr @held_ip6 jump to_device\n    }}"
    );
    let _ = writeln!(
        t,
        "    chain input {{\n        type filter hook input priority filter - 20; policy accept;\n        \
         ether saddr @macs jump to_pi\n        \
         ip saddr @held_ip jump to_pi\n        \
         ip6 saddr @held_ip6 jump to_pi\n    }}"
    );
    // The Pi answers DHCP and DNS itself where the devices have a network
    // of their own; elsewhere the router does, through the Pi.
    let (dhcp_dns_out, dhcp_dns_back): (String, String) = if own_network {
        // Queries to other resolvers are redirected to the Pi before this
        // hook; the home's own resolvers stay reachable all the same.
        (
            "        meta l4proto { tcp, udp } th dport 53 ip daddr @dns_ip return\n        meta l4proto { tcp, udp } th dport 53 ip6 daddr @dns_ip6 return\n".into(),
            "        meta l4proto { tcp, udp } th sport 53 ip saddr @dns_ip return\n        meta l4proto { tcp, udp } th sport 53 ip6 saddr @dns_ip6 return\n".into(),
        )
    } else {
        // DHCP as a broadcast (the router answers) or to a server of the
        // home's, DNS only to those: port 53 to any host would be a way out.
        (
            "        udp dport 67 ip daddr 255.255.255.255 return\n        udp dport 67 ip daddr @dns_ip return\n        meta l4proto { tcp, udp } th dport 53 ip daddr @dns_ip return\n        meta l4proto { tcp, udp } th dport 53 ip6 daddr @dns_ip6 return\n"
                .into(),
            "        udp sport 67 ip saddr @dns_ip return\n        meta l4proto { tcp, udp } th sport 53 ip saddr @dns_ip return\n        meta l4proto { tcp, udp } th sport 53 ip6 saddr @dns_ip6 return\n"
                .into(),
        )
    };
    let _ = writeln!(
        t,
        "    chain from_device {{\n{dhcp_dns_out}        {nd}\n        ip daddr @allow_ip return\n        ip6 daddr @allow_ip6 return\n        counter drop\n    }}"
    );
    let _ = writeln!(
        t,
        "    chain to_device {{\n{dhcp_dns_back}        {nd}\n        ip saddr @allow_ip return\n        ip6 saddr @allow_ip6 return\n        counter drop\n    }}"
    );
    let _ = writeln!(
        t,
        "    chain to_pi {{\n        udp dport 67 return\n        meta l4proto {{ tcp, udp }} th dport 53 return\n        {nd}\n        counter drop\n    }}"
    );
    let _ = writeln!(t, "}}");
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holds_expire_when_their_time_is_up_and_not_before() {
        let mut q = Quarantine::default();
        let a: Mac = "24:0a:c4:00:00:02".parse().unwrap();
        let b: Mac = "b8:27:eb:00:00:01".parse().unwrap();
        let hold = |until| Hold {
            since: 0,
            until,
            reason: None,
            by: "owner".into(),
        };
        q.holds.insert(a, hold(Some(100)));
        q.holds.insert(b, hold(None));
        assert!(q.expire(99).is_empty());
        assert_eq!(q.expire(100), vec![a]);
        assert!(q.holds(&b) && !q.holds(&a));
        let json = serde_json::to_string(&q).unwrap();
        assert_eq!(serde_json::from_str::<Quarantine>(&json).unwrap(), q);
    }

    #[test]
    fn the_table_holds_each_device_by_mac_and_addresses_both_ways() {
        let mac: Mac = "24:0a:c4:00:00:02".parse().unwrap();
        let held = vec![(
            mac,
            vec!["198.18.1.51".parse().unwrap(), "fe80::1".parse().unwrap()],
        )];
        let allow = ["192.0.2.0/24".parse().unwrap()];
        let leave = Leave {
            allow: allow.to_vec(),
            dns: vec!["192.0.2.53".parse().unwrap()],
            // Not reached through the Pi where it is the devices' router.
            gateway: vec!["192.0.2.1".parse().unwrap()],
            own_network: true,
        };
        let t = render(&held, &leave);
        assert!(
            t.starts_with(
                "table inet homewarden_quarantine {}\ndelete table inet homewarden_quarantine\n"
            ),
            "{t}"
        );
        assert!(
            t.contains("type ether_addr\n        elements = { 24:0a:c4:00:00:02 }"),
            "{t}"
        );
        assert!(t.contains("elements = { 198.18.1.51 }"), "{t}");
        assert!(t.contains("elements = { fe80::1 }"), "{t}");
        assert!(t.contains("elements = { 192.0.2.0/24 }"), "{t}");
        assert!(t.contains("ip daddr @held_ip jump to_device"), "{t}");
        assert!(t.contains("priority filter - 20"), "{t}");
        // The Pi's own DHCP and DNS, and the home's resolvers: no other
        // DNS forwarded, and no DHCP.
        let from = t.split("chain from_device").nth(1).unwrap();
        let from = from.split("chain").next().unwrap();
        assert!(
            from.contains("th dport 53 ip daddr @dns_ip return"),
            "{from}"
        );
        assert!(
            !from.contains("th dport 53 return") && !from.contains("dport 67"),
            "{from}"
        );
        assert!(
            t.contains("set dns_ip {\n        type ipv4_addr\n        elements = { 192.0.2.53 }"),
            "{t}"
        );
        // On the owner's network, the router's DHCP and DNS through the
        // Pi, and no DNS or DHCP to any other host (a C2 on port 53).
        let shared = render(
            &held,
            &Leave {
                gateway: vec!["192.168.1.1".parse().unwrap()],
                dns: vec!["192.168.1.53".parse().unwrap()],
                ..Leave::default()
            },
        );
        let from = shared.split("chain from_device").nth(1).unwrap();
        let from = from.split("chain").next().unwrap();
        assert!(
            from.contains("th dport 53 ip daddr @dns_ip return")
                && from.contains("udp dport 67 ip daddr 255.255.255.255 return")
                && from.contains("udp dport 67 ip daddr @dns_ip return"),
            "{shared}"
        );
        assert!(!from.contains("th dport 53 return") && !from.contains("udp dport 67 return"));
        assert!(
            shared.contains("set dns_ip {\n        type ipv4_addr\n        elements = { 192.168.1.1, 192.168.1.53 }"),
            "{shared}"
        );
        let to = shared.split("chain to_device").nth(1).unwrap();
        let to = to.split("chain").next().unwrap();
        assert!(
            !to.contains("sport 53 return") && to.contains("th sport 53 ip saddr @dns_ip return"),
            "{to}"
        );
        // Nobody held: no table at all (one left by an earlier run goes).
        let empty = render(&[], &Leave::default());
        assert_eq!(
            empty,
            "table inet homewarden_quarantine {}\ndelete table inet homewarden_quarantine\n"
        );
    }

    fn inventory(seen: &[(&str, &str, i64)]) -> Inventory {
        let mut inv = Inventory::default();
        for (mac, ip, at) in seen {
            let s = super::super::sight::Sighting {
                mac: mac.parse().unwrap(),
                ip: ip.parse().unwrap(),
                hostname: None,
                vendor_class: None,
                leased: false,
            };
            inv.see(&s, *at, |_| super::super::oui::Vendor::Unknown);
        }
        inv
    }

    const HELD: &str = "24:0a:c4:00:00:02";
    const ROUTER: &str = "b8:27:eb:00:00:01";
    const OTHER: &str = "44:65:0d:00:00:03";

    fn cut(inv: &Inventory, leases: &HashMap<IpAddr, Mac>, never: &Never) -> Vec<String> {
        addresses_to_cut(inv, &HELD.parse().unwrap(), leases, never)
            .iter()
            .map(IpAddr::to_string)
            .collect()
    }

    #[test]
    fn a_held_device_that_claims_the_router_does_not_take_the_router_with_it() {
        // The router talked last at 100; the held device answers ARP for it at 200.
        let inv = inventory(&[
            (ROUTER, "192.168.1.1", 100),
            (HELD, "192.168.1.50", 150),
            (HELD, "192.168.1.1", 200),
        ]);
        let nobody = HashMap::new();
        // As 2ae014e held it: every address the device was ever seen at.
        assert_eq!(inv.addresses(&HELD.parse().unwrap()).len(), 2);
        let gateway = Never {
            spared: vec!["192.168.1.1/32".parse().unwrap()],
        };
        assert_eq!(cut(&inv, &nobody, &gateway), ["192.168.1.50"]);
        // The Pi's own address, a resolver: the same.
        let pi = Never {
            spared: vec!["192.168.1.0/31".parse().unwrap()],
        };
        assert_eq!(cut(&inv, &nobody, &pi), ["192.168.1.50"]);
    }

    #[test]
    fn an_address_another_device_leases_or_used_later_is_not_cut() {
        let never = Never::default();
        // The Pi leased .120 to another device: the held one claiming it is lying.
        let inv = inventory(&[
            (OTHER, "198.18.1.120", 100),
            (HELD, "198.18.1.51", 150),
            (HELD, "198.18.1.120", 200),
        ]);
        let leases = HashMap::from([("198.18.1.120".parse().unwrap(), OTHER.parse().unwrap())]);
        assert_eq!(cut(&inv, &leases, &never), ["198.18.1.51"]);
        // Without leases (bridge): the other device seen there after the claim wins it back.
        let inv = inventory(&[
            (HELD, "198.18.1.51", 150),
            (HELD, "198.18.1.120", 200),
            (OTHER, "198.18.1.120", 260),
        ]);
        assert_eq!(cut(&inv, &HashMap::new(), &never), ["198.18.1.51"]);
        // An address given up long ago (a stale lease, reused since) is not cut either.
        let inv = inventory(&[
            (HELD, "198.18.1.77", 100),
            (HELD, "198.18.1.51", 100 + IN_USE_SECS + 1),
        ]);
        assert_eq!(cut(&inv, &HashMap::new(), &never), ["198.18.1.51"]);
    }

    #[test]
    fn do_not_break_addresses_are_never_cut() {
        let never = Never {
            spared: vec!["192.168.1.30/32".parse().unwrap()],
        };
        let spoof = inventory(&[(HELD, "192.168.1.50", 100), (HELD, "192.168.1.30", 110)]);
        assert_eq!(cut(&spoof, &HashMap::new(), &never), ["192.168.1.50"]);
        // Quarantined with --force, the listed device is held by its MAC alone.
        let forced = inventory(&[(HELD, "192.168.1.30", 100)]);
        assert!(cut(&forced, &HashMap::new(), &never).is_empty());
    }
}
