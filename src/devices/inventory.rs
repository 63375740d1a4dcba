//! The inventory: every device seen on the devices' side, keyed by MAC,
//! with its addresses over time and the owner's name for it. Bounded: a
//! few addresses per device, and the longest-unseen unnamed devices leave
//! when there are too many (a neighbour table flooded with made-up MACs
//! must not grow the agent or the card).

use std::collections::BTreeMap;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use super::oui::Vendor;
use super::sight::Sighting;
use super::{clean, Mac};

/// Addresses kept per device (the current one first).
pub const MAX_ADDRESSES: usize = 8;
/// Longest owner-given name.
pub const MAX_NAME: usize = 64;
/// An address seen this close to the device's latest sighting is in use.
pub(crate) const IN_USE_SECS: i64 = 600;

/// One address a device had.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Address {
    /// The address.
    pub ip: IpAddr,
    /// First seen at it (unix seconds).
    pub first_seen: i64,
    /// Last seen at it.
    pub last_seen: i64,
}

/// One device.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Device {
    /// Its link-layer address: what it is known by.
    pub mac: Mac,
    /// The owner's name for it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The hostname it gave DHCP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    /// The vendor class it gave DHCP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vendor_class: Option<String>,
    /// Its maker, from the MAC; `None` for a private (randomised) address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vendor: Option<String>,
    /// The MAC is locally administered (randomised by the device).
    #[serde(default)]
    pub private_mac: bool,
    /// Addresses, most recently seen first.
    pub addresses: Vec<Address>,
    /// First seen (unix seconds).
    pub first_seen: i64,
    /// Last seen.
    pub last_seen: i64,
    /// Was on the network when the inventory began: the home as it was.
    /// Never forgotten to make room, never held by `devices.new: quarantine`.
    #[serde(default)]
    pub baseline: bool,
}

impl Device {
    /// What a person reads: the owner's name, else the hostname, else the
    /// maker and the end of the MAC.
    pub fn label(&self) -> String {
        if let Some(n) = self.name.as_ref().or(self.hostname.as_ref()) {
            return n.clone();
        }
        let [.., d, e, f] = self.mac.0;
        let maker = match (&self.vendor, self.private_mac) {
            (Some(v), _) => v.as_str(),
            (None, true) => "private-address device",
            (None, false) => "device",
        };
        format!("{maker} …{d:02x}:{e:02x}:{f:02x}")
    }

    /// The address it was seen at last: its IPv4 one when it has one in
    /// use (a person reads 192.168.73.23 more easily than fe80::…).
    pub fn current(&self) -> Option<IpAddr> {
        let newest = self.addresses.first()?;
        self.addresses
            .iter()
            .find(|a| a.ip.is_ipv4() && newest.last_seen - a.last_seen <= IN_USE_SECS)
            .unwrap_or(newest)
            .ip
            .into()
    }

    /// The tag incidents and notices carry.
    pub fn tag(&self) -> Tag {
        Tag {
            mac: self.mac,
            name: self.label(),
        }
    }
}

/// A device as an incident or a notice names it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tag {
    /// Its MAC.
    pub mac: Mac,
    /// Its name as the owner reads it.
    pub name: String,
}

/// What a sighting changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Seen {
    /// A device never seen before.
    New,
    /// A known device at a new address (or with a new hostname).
    Moved,
    /// Nothing but the time.
    Again,
}

/// Why a device could not be found.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum FindError {
    /// Nothing matches.
    #[error("no device {0:?} (give its name, MAC or address: `homewarden devices` lists them)")]
    None(String),
    /// More than one device matches a name.
    #[error("{0:?} names {1} devices: give the MAC instead")]
    Many(String, usize),
}

/// The devices, by MAC.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Inventory {
    devices: BTreeMap<Mac, Device>,
}

impl Inventory {
    /// Every device, by MAC.
    pub fn iter(&self) -> impl Iterator<Item = &Device> {
        self.devices.values()
    }

    /// How many.
    pub fn len(&self) -> usize {
        self.devices.len()
    }

    /// None yet.
    pub fn is_empty(&self) -> bool {
        self.devices.is_empty()
    }

    /// The device with this MAC.
    pub fn get(&self, mac: &Mac) -> Option<&Device> {
        self.devices.get(mac)
    }

    /// Records a sighting at `now`; `vendor` is asked only for a new device.
    pub fn see(&mut self, s: &Sighting, now: i64, vendor: impl FnOnce(Mac) -> Vendor) -> Seen {
        let Some(d) = self.devices.get_mut(&s.mac) else {
            let v = vendor(s.mac);
            self.devices.insert(
                s.mac,
                Device {
                    mac: s.mac,
                    name: None,
                    hostname: s.hostname.clone(),
                    vendor_class: s.vendor_class.clone(),
                    vendor: match v {
                        Vendor::Known(n) => Some(n),
                        _ => None,
                    },
                    private_mac: s.mac.locally_administered(),
                    addresses: vec![Address {
                        ip: s.ip,
                        first_seen: now,
                        last_seen: now,
                    }],
                    first_seen: now,
                    last_seen: now,
                    baseline: false,
                },
            );
            return Seen::New;
        };
        d.last_seen = d.last_seen.max(now);
        let mut seen = Seen::Again;
        if s.hostname.is_some() && s.hostname != d.hostname {
            d.hostname = s.hostname.clone();
            seen = Seen::Moved;
        }
        if s.vendor_class.is_some() {
            d.vendor_class = s.vendor_class.clone();
        }
        match d.addresses.iter().position(|a| a.ip == s.ip) {
            Some(i) => {
                d.addresses[i].last_seen = now;
                // IPv4 and IPv6 addresses are seen side by side: only a
                // newer sighting moves one to the front.
                if i != 0 && d.addresses[i].last_seen > d.addresses[0].last_seen {
                    let a = d.addresses.remove(i);
                    d.addresses.insert(0, a);
                    seen = Seen::Moved;
                }
            }
            None => {
                d.addresses.insert(
                    0,
                    Address {
                        ip: s.ip,
                        first_seen: now,
                        last_seen: now,
                    },
                );
                d.addresses.truncate(MAX_ADDRESSES);
                seen = Seen::Moved;
            }
        }
        seen
    }

    /// Marks every device known now as the home's own (the first scan).
    pub fn mark_baseline(&mut self) {
        for d in self.devices.values_mut() {
            d.baseline = true;
        }
    }

    /// Keeps at most `max` devices, never one the owner named, one of the
    /// baseline or one `keep` holds (a quarantined one). The ones the home
    /// has had for the shortest time go first (a flood of made-up MACs, each
    /// seen once), then the longest unseen. Returns the MACs let go.
    pub fn bound(&mut self, max: usize, keep: impl Fn(&Mac) -> bool) -> Vec<Mac> {
        if self.devices.len() <= max {
            return Vec::new();
        }
        let mut candidates: Vec<((i64, i64), Mac)> = self
            .devices
            .values()
            .filter(|d| d.name.is_none() && !d.baseline && !keep(&d.mac))
            .map(|d| ((d.last_seen - d.first_seen, d.last_seen), d.mac))
            .collect();
        candidates.sort();
        let excess = self.devices.len() - max;
        let gone: Vec<Mac> = candidates
            .into_iter()
            .take(excess)
            .map(|(_, m)| m)
            .collect();
        for m in &gone {
            self.devices.remove(m);
        }
        gone
    }

    /// The device at this address now (the one seen there last).
    pub fn at(&self, ip: IpAddr) -> Option<&Device> {
        self.devices
            .values()
            .filter_map(|d| {
                let a = d.addresses.iter().find(|a| a.ip == ip)?;
                Some((a.last_seen, d))
            })
            .max_by_key(|(t, _)| *t)
            .map(|(_, d)| d)
    }

    /// A device by the owner's name (or hostname), MAC or address.
    pub fn find(&self, what: &str) -> Result<&Device, FindError> {
        if let Ok(mac) = what.parse::<Mac>() {
            return self
                .devices
                .get(&mac)
                .ok_or_else(|| FindError::None(what.into()));
        }
        if let Ok(ip) = what.parse::<IpAddr>() {
            return self.at(ip).ok_or_else(|| FindError::None(what.into()));
        }
        for by_name in [true, false] {
            let hits: Vec<&Device> = self
                .devices
                .values()
                .filter(|d| {
                    let n = if by_name { &d.name } else { &d.hostname };
                    n.as_deref().is_some_and(|n| n.eq_ignore_ascii_case(what))
                })
                .collect();
            match hits.len() {
                0 => continue,
                1 => return Ok(hits[0]),
                n => return Err(FindError::Many(what.into(), n)),
            }
        }
        Err(FindError::None(what.into()))
    }

    /// Names a device (`None` takes the name away); the name is cleaned
    /// and cut. Returns the device as it is now.
    pub fn name(&mut self, mac: &Mac, name: Option<&str>) -> Option<&Device> {
        let d = self.devices.get_mut(mac)?;
        d.name = name.and_then(|n| clean(n, MAX_NAME));
        Some(d)
    }

    /// Every device's addresses, for the quarantine to follow a device that moves.
    pub fn addresses(&self, mac: &Mac) -> Vec<IpAddr> {
        self.devices
            .get(mac)
            .map(|d| d.addresses.iter().map(|a| a.ip).collect())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sight(mac: &str, ip: &str, host: Option<&str>) -> Sighting {
        Sighting {
            mac: mac.parse().unwrap(),
            ip: ip.parse().unwrap(),
            hostname: host.map(str::to_string),
            vendor_class: None,
            leased: false,
        }
    }

    fn espressif(_: Mac) -> Vendor {
        Vendor::Known("Espressif Inc.".into())
    }

    #[test]
    fn a_device_is_new_once_then_moves_and_keeps_its_history() {
        let mut inv = Inventory::default();
        let s = sight("24:0a:c4:00:00:02", "198.18.1.51", None);
        assert_eq!(inv.see(&s, 100, espressif), Seen::New);
        assert_eq!(
            inv.see(&s, 110, |_| panic!("vendor asked twice")),
            Seen::Again
        );
        let d = inv.get(&s.mac).unwrap();
        assert_eq!((d.first_seen, d.last_seen), (100, 110));
        assert_eq!(d.label(), "Espressif Inc. …00:00:02");
        // DHCP gave it another address, and it told its hostname.
        let moved = sight("24:0a:c4:00:00:02", "198.18.1.60", Some("plug"));
        assert_eq!(inv.see(&moved, 200, espressif), Seen::Moved);
        let d = inv.get(&s.mac).unwrap();
        assert_eq!(d.current(), Some("198.18.1.60".parse().unwrap()));
        assert_eq!(d.addresses.len(), 2);
        assert_eq!(d.label(), "plug");
        // The old address now belongs to another device.
        let other = sight("b8:27:eb:00:00:01", "198.18.1.51", None);
        inv.see(&other, 300, |_| Vendor::Unknown);
        assert_eq!(
            inv.at("198.18.1.51".parse().unwrap()).unwrap().mac,
            other.mac
        );
        assert_eq!(inv.at("198.18.1.60".parse().unwrap()).unwrap().mac, s.mac);
        // Its IPv6 link-local address, seen last, is not what a person looks for.
        inv.see(
            &sight("24:0a:c4:00:00:02", "fe80::260a:c4ff:fe00:2", None),
            250,
            espressif,
        );
        assert_eq!(
            inv.get(&s.mac).unwrap().current(),
            Some("198.18.1.60".parse().unwrap())
        );
        // Addresses per device are bounded.
        for i in 0..20 {
            inv.see(
                &sight("24:0a:c4:00:00:02", &format!("198.18.1.{}", 100 + i), None),
                400 + i,
                espressif,
            );
        }
        assert_eq!(inv.get(&s.mac).unwrap().addresses.len(), MAX_ADDRESSES);
    }

    #[test]
    fn devices_are_found_by_name_mac_or_address_and_named_by_the_owner() {
        let mut inv = Inventory::default();
        let a = sight("24:0a:c4:00:00:02", "198.18.1.51", Some("esp-1"));
        let b = sight("da:a1:19:00:00:01", "198.18.1.52", Some("esp-1"));
        inv.see(&a, 1, espressif);
        inv.see(&b, 1, |_| Vendor::Random);
        assert_eq!(inv.get(&b.mac).unwrap().label(), "esp-1");
        assert!(inv.get(&b.mac).unwrap().private_mac);
        assert_eq!(
            inv.find("esp-1").unwrap_err(),
            FindError::Many("esp-1".into(), 2)
        );
        inv.name(&a.mac, Some("Front doorbell\n"));
        assert_eq!(inv.find("front DOORBELL").unwrap().mac, a.mac);
        assert_eq!(inv.find("24-0A-C4-00-00-02").unwrap().mac, a.mac);
        assert_eq!(inv.find("198.18.1.52").unwrap().mac, b.mac);
        assert!(matches!(inv.find("the fridge"), Err(FindError::None(_))));
        assert_eq!(inv.get(&a.mac).unwrap().tag().name, "Front doorbell");
        inv.name(&a.mac, None);
        assert_eq!(inv.get(&a.mac).unwrap().label(), "esp-1");
        let unnamed = Device {
            hostname: None,
            vendor: None,
            ..inv.get(&b.mac).unwrap().clone()
        };
        assert_eq!(unnamed.label(), "private-address device …00:00:01");
    }

    #[test]
    fn too_many_devices_lose_the_longest_unseen_unnamed_ones() {
        let mut inv = Inventory::default();
        for i in 0..10u8 {
            let s = sight(
                &format!("24:0a:c4:00:00:{i:02x}"),
                &format!("198.18.1.{i}"),
                None,
            );
            inv.see(&s, i64::from(i), espressif);
        }
        let named: Mac = "24:0a:c4:00:00:00".parse().unwrap();
        let held: Mac = "24:0a:c4:00:00:01".parse().unwrap();
        inv.name(&named, Some("old but named"));
        let gone = inv.bound(5, |m| *m == held);
        assert_eq!(gone.len(), 5);
        assert_eq!(inv.len(), 5);
        assert!(inv.get(&named).is_some() && inv.get(&held).is_some());
        assert!(inv.get(&"24:0a:c4:00:00:09".parse().unwrap()).is_some());
        assert!(inv.get(&"24:0a:c4:00:00:02".parse().unwrap()).is_none());
        assert!(inv.bound(5, |_| false).is_empty());
    }

    #[test]
    fn a_flood_of_made_up_macs_never_pushes_out_the_homes_own_devices() {
        let mut inv = Inventory::default();
        // The home when the inventory began, and a device that joined later
        // and has been around for a day.
        for i in 0..3u8 {
            inv.see(
                &sight(
                    &format!("b8:27:eb:00:00:{i:02x}"),
                    &format!("198.18.1.{i}"),
                    None,
                ),
                0,
                espressif,
            );
        }
        inv.mark_baseline();
        let tv = sight("fc:65:de:00:00:01", "198.18.1.9", None);
        inv.see(&tv, 10, espressif);
        inv.see(&tv, 86_400, espressif);
        // A flood, each made-up MAC seen once, after the home's devices last talked.
        for i in 0..1000u32 {
            let [_, _, a, b] = i.to_be_bytes();
            inv.see(
                &sight(
                    &format!("da:00:00:00:{a:02x}:{b:02x}"),
                    "198.18.1.200",
                    None,
                ),
                90_000,
                espressif,
            );
        }
        inv.bound(8, |_| false);
        assert_eq!(inv.len(), 8);
        for i in 0..3u8 {
            assert!(inv
                .get(&format!("b8:27:eb:00:00:{i:02x}").parse().unwrap())
                .is_some_and(|d| d.baseline));
        }
        assert!(
            inv.get(&tv.mac).is_some(),
            "the day-old device was pushed out by made-up ones"
        );
    }
}
