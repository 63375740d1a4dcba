//! Where devices are seen: dnsmasq's lease file (ap and gateway placements,
//! where the Pi hands out the addresses) and the kernel's neighbour table
//! (`ip -json neigh`, every placement: whoever talked through the Pi lately).

use std::net::IpAddr;

use serde::Deserialize;

use super::{clean, Mac};

/// Longest DHCP hostname kept (a DNS label).
pub const MAX_HOSTNAME: usize = 63;

/// One device seen at one address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sighting {
    /// The device.
    pub mac: Mac,
    /// The address it has.
    pub ip: IpAddr,
    /// The hostname it gave DHCP.
    pub hostname: Option<String>,
    /// The vendor class it gave DHCP (option 60).
    pub vendor_class: Option<String>,
    /// From a live lease of the Pi's DHCP (not a claim in the neighbour
    /// table, which any device can make for any address).
    pub leased: bool,
}

/// The live leases of a dnsmasq lease file (`expiry mac ip hostname
/// client-id` a line; expiry 0 is an infinite lease). IPv6 leases name no
/// MAC and are left to the neighbour table; lines that do not parse are skipped.
pub fn leases(text: &str, now: u64) -> Vec<Sighting> {
    text.lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            let expiry: u64 = w.next()?.parse().ok()?;
            if expiry != 0 && expiry <= now {
                return None;
            }
            let mac: Mac = w.next()?.parse().ok()?;
            let ip: IpAddr = w.next()?.parse().ok()?;
            let hostname = w
                .next()
                .filter(|h| *h != "*")
                .and_then(|h| clean(h, MAX_HOSTNAME));
            (!mac.multicast()).then_some(Sighting {
                mac,
                ip,
                hostname,
                vendor_class: None,
                leased: true,
            })
        })
        .collect()
}

/// One entry of `ip -json neigh`.
#[derive(Deserialize)]
struct Neighbour {
    dst: IpAddr,
    #[serde(default)]
    lladdr: Option<String>,
    #[serde(default)]
    state: Vec<String>,
}

/// The neighbours `ip -json neigh show dev IF` lists with a link-layer
/// address, unless the kernel gave up on them (FAILED, INCOMPLETE) or they
/// are not really neighbours (NOARP: multicast, point-to-point).
pub fn neighbours(json: &[u8]) -> Result<Vec<Sighting>, serde_json::Error> {
    let all: Vec<Neighbour> = serde_json::from_slice(json)?;
    Ok(all
        .into_iter()
        .filter(|n| {
            !n.state
                .iter()
                .any(|s| matches!(s.as_str(), "FAILED" | "INCOMPLETE" | "NOARP" | "NONE"))
        })
        .filter_map(|n| {
            let mac: Mac = n.lladdr?.parse().ok()?;
            (!mac.multicast() && mac.0 != [0; 6]).then_some(Sighting {
                mac,
                ip: n.dst,
                hostname: None,
                vendor_class: None,
                leased: false,
            })
        })
        .collect())
}

/// Vendor classes from the lines the lease script writes (`mac vendor
/// class…` a line): the lease file itself does not keep option 60.
pub fn vendor_classes(text: &str) -> Vec<(Mac, String)> {
    text.lines()
        .filter_map(|l| {
            let (mac, class) = l.split_once(' ')?;
            Some((mac.parse().ok()?, clean(class, 64)?))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn live_leases_are_devices_and_expired_or_odd_lines_are_not() {
        let text = "\
1733400000 b8:27:eb:00:00:01 198.18.1.50 doorbell 01:b8:27:eb:00:00:01
1733300000 24:0a:c4:00:00:02 198.18.1.51 plug *
0 24:0a:c4:00:00:03 198.18.1.52 * *
duid 00:01:00:01:2c:9a:1b:2e:52:54:00:12:34:56
1733400000 1234 2001:db8::5 tv 00:01:00:01
garbage
1733400000 01:00:5e:00:00:fb 198.18.1.60 x *
";
        let s = leases(text, 1_733_350_000);
        assert_eq!(s.len(), 2, "{s:?}");
        assert_eq!(s[0].mac.to_string(), "b8:27:eb:00:00:01");
        assert_eq!(s[0].hostname.as_deref(), Some("doorbell"));
        assert_eq!(s[0].ip.to_string(), "198.18.1.50");
        // Infinite lease, no hostname.
        assert_eq!(s[1].hostname, None);
        assert_eq!(s[1].ip.to_string(), "198.18.1.52");
    }

    #[test]
    fn neighbours_with_an_address_and_a_live_state_are_devices() {
        let json = br#"[
 {"dst":"198.18.1.2","dev":"pi-iot","lladdr":"4a:11:22:33:44:55","state":["REACHABLE"]},
 {"dst":"198.18.1.9","dev":"pi-iot","state":["FAILED"]},
 {"dst":"198.18.1.8","dev":"pi-iot","lladdr":"4a:11:22:33:44:56","state":["INCOMPLETE"]},
 {"dst":"fe80::1","dev":"pi-iot","lladdr":"4a:11:22:33:44:55","router":null,"state":["STALE"]},
 {"dst":"224.0.0.251","dev":"pi-iot","lladdr":"01:00:5e:00:00:fb","state":["NOARP"]}
]"#;
        let s = neighbours(json).unwrap();
        assert_eq!(s.len(), 2, "{s:?}");
        assert_eq!(s[0].ip.to_string(), "198.18.1.2");
        assert_eq!(s[1].ip.to_string(), "fe80::1");
        assert_eq!(s[0].mac, s[1].mac);
        assert!(neighbours(b"not json").is_err());
        assert!(neighbours(b"[]").unwrap().is_empty());
    }

    #[test]
    fn vendor_classes_are_read_and_cleaned() {
        let v = vendor_classes(
            "b8:27:eb:00:00:01 android-dhcp-13\nbad line\n24:0a:c4:00:00:02 \u{1b}[31mx\n",
        );
        assert_eq!(v.len(), 2);
        assert_eq!(v[0].1, "android-dhcp-13");
        assert_eq!(v[1].1, "[31mx");
    }
}
