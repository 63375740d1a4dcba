//! The home's devices: who is on the devices' side (from dnsmasq's leases
//! and the kernel's neighbour table), the vendor behind each MAC, the
//! owner's names for them, and their quarantine in the kernel. Pure: the
//! daemon's devices owner reads the files and runs the tools.

pub mod inventory;
pub mod oui;
pub mod quarantine;
pub mod sight;
pub mod view;

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

pub use inventory::{Device, Inventory, Tag};

/// A link-layer (Ethernet / Wi-Fi) address.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Mac(pub [u8; 6]);

/// A value that is not a MAC address.
#[derive(Debug, thiserror::Error)]
#[error("{0:?} is not a MAC address (write it as aa:bb:cc:dd:ee:ff)")]
pub struct BadMac(pub String);

impl Mac {
    /// Set by the device itself, not by its maker (the privacy addresses of
    /// phones and laptops): the vendor cannot be told from it.
    pub fn locally_administered(self) -> bool {
        self.0[0] & 0x02 != 0
    }

    /// A group address: never one device's.
    pub fn multicast(self) -> bool {
        self.0[0] & 0x01 != 0
    }
}

impl FromStr for Mac {
    type Err = BadMac;

    /// `aa:bb:cc:dd:ee:ff` or `AA-BB-CC-DD-EE-FF`.
    fn from_str(s: &str) -> Result<Mac, BadMac> {
        let bad = || BadMac(s.chars().take(64).collect());
        let mut out = [0u8; 6];
        let mut parts = s.split([':', '-']);
        for b in &mut out {
            let p = parts.next().ok_or_else(bad)?;
            if p.len() != 2 {
                return Err(bad());
            }
            *b = u8::from_str_radix(p, 16).map_err(|_| bad())?;
        }
        if parts.next().is_some() {
            return Err(bad());
        }
        Ok(Mac(out))
    }
}

impl fmt::Display for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [a, b, c, d, e, g] = self.0;
        write!(f, "{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{g:02x}")
    }
}

impl Serialize for Mac {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Mac {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Mac, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// At most `max` characters of `s`, without control characters: names,
/// hostnames and vendor classes come from the devices themselves.
pub fn clean(s: &str, max: usize) -> Option<String> {
    let t: String = s
        .chars()
        .filter(|c| !c.is_control())
        .take(max)
        .collect::<String>()
        .trim()
        .to_string();
    (!t.is_empty()).then_some(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn macs_parse_either_way_print_one_way_and_tell_random_ones() {
        let m: Mac = "B8-27-EB-01-02-0A".parse().unwrap();
        assert_eq!(m.to_string(), "b8:27:eb:01:02:0a");
        assert_eq!("b8:27:eb:01:02:0a".parse::<Mac>().unwrap(), m);
        assert!(!m.locally_administered() && !m.multicast());
        // A phone's private Wi-Fi address: the second-lowest bit of the first octet.
        assert!("da:a1:19:00:00:01"
            .parse::<Mac>()
            .unwrap()
            .locally_administered());
        assert!("01:00:5e:00:00:fb".parse::<Mac>().unwrap().multicast());
        for bad in [
            "",
            "b8:27:eb:01:02",
            "b8:27:eb:01:02:0a:0b",
            "b8:27:eb:1:02:0a",
            "zz:27:eb:01:02:0a",
        ] {
            let e = bad.parse::<Mac>().unwrap_err();
            assert!(e.to_string().contains("not a MAC address"), "{e}");
        }
        let json = serde_json::to_string(&m).unwrap();
        assert_eq!(json, "\"b8:27:eb:01:02:0a\"");
        assert_eq!(serde_json::from_str::<Mac>(&json).unwrap(), m);
    }

    #[test]
    fn what_devices_say_of_themselves_is_cut_and_cleaned() {
        assert_eq!(clean(" tv\u{7}\nbox ", 64).as_deref(), Some("tvbox"));
        assert_eq!(clean("abcdef", 3).as_deref(), Some("abc"));
        assert_eq!(clean("\u{1b}", 3), None);
    }
}
