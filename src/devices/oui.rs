//! Who made a device, from the first three octets of its MAC: the IEEE's
//! MA-L registry as Debian's ieee-data ships it, read from the card, never
//! fetched. The table is scanned when new devices appear rather than held:
//! 30,000 vendors would cost the agent megabytes for a lookup a day.

use std::collections::{HashMap, HashSet};
use std::io::BufRead;

use super::Mac;

/// Debian's ieee-data copy of the registry.
pub const OUI_FILE: &str = "/usr/share/ieee-data/oui.txt";

/// Longest vendor name kept.
const MAX_VENDOR: usize = 64;

/// What the MAC tells of the maker.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Vendor {
    /// The registry's name for the maker.
    Known(String),
    /// A locally administered (randomised, private) address: no maker to tell.
    Random,
    /// Not in the registry (or no registry on this system).
    Unknown,
}

impl Vendor {
    /// As `devices` shows it.
    pub fn shown(&self) -> String {
        match self {
            Vendor::Known(v) => v.clone(),
            Vendor::Random => "(private address)".into(),
            Vendor::Unknown => "(unknown vendor)".into(),
        }
    }
}

/// The vendors of `macs` from the registry text in `table` (`oui.txt`'s
/// `XX-XX-XX   (hex)\t\tName` lines), in one pass; locally administered
/// addresses are not looked up.
pub fn lookup<R: BufRead>(table: R, macs: &[Mac]) -> HashMap<Mac, Vendor> {
    let mut out: HashMap<Mac, Vendor> = HashMap::new();
    let mut wanted: HashSet<[u8; 3]> = HashSet::new();
    for &m in macs {
        if m.locally_administered() {
            out.insert(m, Vendor::Random);
        } else {
            wanted.insert([m.0[0], m.0[1], m.0[2]]);
        }
    }
    let mut found: HashMap<[u8; 3], String> = HashMap::new();
    if !wanted.is_empty() {
        for line in table.split(b'\n').map_while(Result::ok) {
            let Some(prefix) = parse_prefix(&line) else {
                continue;
            };
            if !wanted.contains(&prefix) {
                continue;
            }
            let name = line
                .rsplit(|&b| b == b'\t')
                .next()
                .map(|n| String::from_utf8_lossy(n).into_owned())
                .and_then(|n| super::clean(&n, MAX_VENDOR));
            if let Some(n) = name {
                found.insert(prefix, n);
                if found.len() == wanted.len() {
                    break;
                }
            }
        }
    }
    for &m in macs {
        out.entry(m).or_insert_with(|| {
            found
                .get(&[m.0[0], m.0[1], m.0[2]])
                .map_or(Vendor::Unknown, |n| Vendor::Known(n.clone()))
        });
    }
    out
}

/// `XX-XX-XX   (hex)` at the start of a line.
fn parse_prefix(line: &[u8]) -> Option<[u8; 3]> {
    if line.len() < 9 || line[2] != b'-' || line[5] != b'-' {
        return None;
    }
    let rest = std::str::from_utf8(&line[8..]).ok()?;
    if !rest.trim_start().starts_with("(hex)") {
        return None;
    }
    let hex = |i: usize| u8::from_str_radix(std::str::from_utf8(&line[i..i + 2]).ok()?, 16).ok();
    Some([hex(0)?, hex(3)?, hex(6)?])
}

/// The vendors of `macs` from the registry file at `path`; every one
/// `Unknown` (locally administered ones `Random`) when it cannot be read.
pub fn lookup_file(path: &std::path::Path, macs: &[Mac]) -> HashMap<Mac, Vendor> {
    match std::fs::File::open(path) {
        Ok(f) => lookup(std::io::BufReader::new(f), macs),
        Err(e) => {
            tracing::warn!(
                "{}: {e}: device vendors unknown (Debian's ieee-data package ships it)",
                path.display()
            );
            lookup(std::io::empty(), macs)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The registry's own layout, as in oui.txt.
    const TABLE: &str = "OUI/MA-L                                                    Organization                                 \n\
company_id                                                  Organization                                 \n\
                                                            Address                                      \n\
\n\
24-0A-C4   (hex)\t\tEspressif Inc.\n\
240AC4     (base 16)\t\tEspressif Inc.\n\
\t\t\t\tShanghai  Shanghai  200000\n\
\t\t\t\tCN\n\
\n\
B8-27-EB   (hex)\t\tRaspberry Pi Foundation\n\
B827EB     (base 16)\t\tRaspberry Pi Foundation\n";

    fn mac(s: &str) -> Mac {
        s.parse().unwrap()
    }

    #[test]
    fn vendors_come_from_the_registry_and_private_addresses_are_said_to_be() {
        let macs = [
            mac("b8:27:eb:00:00:01"),
            mac("24:0a:c4:12:34:56"),
            mac("00:11:22:33:44:55"),
            mac("da:a1:19:00:00:01"),
        ];
        let v = lookup(TABLE.as_bytes(), &macs);
        assert_eq!(v[&macs[0]], Vendor::Known("Raspberry Pi Foundation".into()));
        assert_eq!(v[&macs[1]], Vendor::Known("Espressif Inc.".into()));
        assert_eq!(v[&macs[2]], Vendor::Unknown);
        assert_eq!(v[&macs[3]], Vendor::Random);
        assert_eq!(v[&macs[3]].shown(), "(private address)");
        // No registry: nothing known, nothing lost.
        let none = lookup_file(std::path::Path::new("/nonexistent/oui.txt"), &macs);
        assert_eq!(none[&macs[0]], Vendor::Unknown);
        assert_eq!(none[&macs[3]], Vendor::Random);
    }

    /// The file Debian ships, where the machine has it (the lab and CI install ieee-data).
    #[test]
    fn debians_registry_names_a_raspberry_pi() {
        let path = std::path::Path::new(OUI_FILE);
        if !path.exists() {
            eprintln!("{OUI_FILE} absent: skipped (scripts/install-deps.sh installs ieee-data)");
            return;
        }
        let m = mac("dc:a6:32:00:00:01");
        let v = lookup_file(path, &[m]);
        assert_eq!(v[&m], Vendor::Known("Raspberry Pi Trading Ltd".into()));
    }
}
