//! Quarantine: a device that may reach only the Pi's DHCP and DNS (and what
//! the config allows), enforced by the kernel in a table of its own, so it
//! holds when Suricata is down, bypassed or being reloaded, and when the
//! packet path's table is replaced. Matched by MAC where the frame still
//! carries one and by every address the device was seen at, in both
//! directions: a cut takes its open connections too.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::IpAddr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

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

/// What a quarantined device may still reach.
#[derive(Clone, Debug, Default)]
pub struct Leave {
    /// What the config allows (`devices.quarantine_allow`).
    pub allow: Vec<IpNet>,
    /// The home's resolvers (`network.dns`): DNS to them stays open.
    pub dns: Vec<IpAddr>,
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
        let dns: Vec<String> = leave
            .dns
            .iter()
            .filter(|a| a.is_ipv4() == v4)
            .map(IpAddr::to_string)
            .collect();
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
        (
            "        udp dport 67 return\n        meta l4proto { tcp, udp } th dport 53 return\n"
                .into(),
            "        udp sport 67 return\n        meta l4proto { tcp, udp } th sport 53 return\n"
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
        // On the owner's network, the router's DHCP and DNS through the Pi.
        let shared = render(&held, &Leave::default());
        let from = shared.split("chain from_device").nth(1).unwrap();
        assert!(
            from.contains("th dport 53 return") && from.contains("udp dport 67 return"),
            "{shared}"
        );
        // Nobody held: no table at all (one left by an earlier run goes).
        let empty = render(&[], &Leave::default());
        assert_eq!(
            empty,
            "table inet homewarden_quarantine {}\ndelete table inet homewarden_quarantine\n"
        );
    }
}
