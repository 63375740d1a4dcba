//! The owner's own allowlist: values they lifted from enforcement with
//! `homewarden allow`, with who, when, why and until when. Kept beside the
//! intel store (`<state_dir>/allowlist.json`, fsync + rename), so it survives
//! restarts and re-syncs, and merged into the config's allowlist at every apply.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::intel::ioc::{Domain, Ioc};

/// The file under the state directory.
pub const FILE: &str = "allowlist.json";

/// A value the owner allowed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Allowed {
    /// The value as normalised: an address, a network or a domain.
    pub value: String,
    /// Who allowed it (the user behind the command).
    pub who: String,
    /// When (unix seconds).
    pub at: u64,
    /// Until when, if only for a while.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<u64>,
    /// Why, in the owner's words.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// What an allowed value stands for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// An address or a network.
    Net(IpNet),
    /// A domain and everything under it.
    Domain(Domain),
}

/// A value that cannot be allowed.
#[derive(Debug, thiserror::Error)]
pub enum AllowError {
    /// Not an address, network, domain or URL.
    #[error("{value:?}: {message}")]
    Value {
        /// What was given.
        value: String,
        /// Why it is refused.
        message: String,
    },
    /// The file cannot be written.
    #[error("{path}: {message}")]
    Io {
        /// The allowlist file.
        path: String,
        /// What went wrong.
        message: String,
    },
}

/// Narrowest prefix `allow` takes without `force`: an IPv4 /16, an IPv6 /48
/// (a site). Wider lifts enforcement from a large part of the internet.
pub const WIDEST_WITHOUT_FORCE: (u8, u8) = (16, 48);

/// Longest `allow --for`: ten years (for good, leave it out).
pub const MAX_FOR_SECS: u64 = 10 * 365 * 24 * 3600;

/// Checks a new allowance beyond its syntax: a network given with host bits
/// (`203.0.113.7/3` would lift `192.0.0.0/3`) is refused, and so is one wider
/// than [`WIDEST_WITHOUT_FORCE`] unless `force`.
fn check_new(value: &str, t: &Target, force: bool) -> Result<(), AllowError> {
    let Target::Net(n) = t else {
        return Ok(());
    };
    let bad = |message: String| AllowError::Value {
        value: value.chars().take(200).collect(),
        message,
    };
    // The indicator parser keeps the network only: look at what was typed.
    if let Ok(typed) = value.trim().parse::<IpNet>() {
        if typed.addr() != typed.network() {
            return Err(bad(format!(
                "host bits set: as a network this is {}; give {} for the address or {} for the network",
                typed.trunc(),
                typed.addr(),
                typed.trunc()
            )));
        }
    }
    let widest = match n {
        IpNet::V4(_) => WIDEST_WITHOUT_FORCE.0,
        IpNet::V6(_) => WIDEST_WITHOUT_FORCE.1,
    };
    if n.prefix_len() < widest && !force {
        return Err(bad(format!(
            "wider than /{widest}: this lifts enforcement for 2^{} addresses; add --force if you mean it",
            n.max_prefix_len() - n.prefix_len()
        )));
    }
    Ok(())
}

/// Parses what an owner may allow: an address, a network, a domain or a URL (its host).
pub fn target(value: &str) -> Result<Target, AllowError> {
    let bad = |message: String| AllowError::Value {
        value: value.chars().take(200).collect(),
        message,
    };
    match Ioc::parse_any(value.trim()).map_err(|e| bad(e.to_string()))? {
        Ioc::Ipv4(a) => Ok(Target::Net(IpNet::from(IpAddr::V4(a)))),
        Ioc::Ipv6(a) => Ok(Target::Net(IpNet::from(IpAddr::V6(*a)))),
        Ioc::Net(n) => Ok(Target::Net(*n)),
        Ioc::Domain(d) => Ok(Target::Domain(d)),
        Ioc::Md5(_) | Ioc::Sha256(_) => Err(bad(
            "file hashes cannot be allowed; allow the address or domain instead".into(),
        )),
    }
}

impl Target {
    /// The normalised text (`203.0.113.7/32` is `203.0.113.7`).
    pub fn text(&self) -> String {
        match self {
            Target::Net(n) if n.prefix_len() == n.max_prefix_len() => n.addr().to_string(),
            Target::Net(n) => n.to_string(),
            Target::Domain(d) => d.as_str().to_string(),
        }
    }

    /// True if this allowance covers the indicator (a network its addresses,
    /// a domain its subdomains).
    pub fn covers(&self, ioc: &Ioc) -> bool {
        match (self, ioc) {
            (Target::Net(n), Ioc::Ipv4(a)) => n.contains(&IpAddr::V4(*a)),
            (Target::Net(n), Ioc::Ipv6(a)) => n.contains(&IpAddr::V6(**a)),
            (Target::Net(n), Ioc::Net(m)) => n.contains(&**m),
            (Target::Domain(d), Ioc::Domain(x)) => x.is_within(d),
            _ => false,
        }
    }
}

/// The owner's allowlist.
#[derive(Clone, Debug, Default)]
pub struct LocalAllowlist {
    path: PathBuf,
    entries: Vec<Allowed>,
}

impl LocalAllowlist {
    /// Reads the list from the state directory; a missing file is an empty list,
    /// an unreadable one is an error (never silently forgotten).
    pub fn load(state_dir: &Path) -> Result<LocalAllowlist, AllowError> {
        let path = state_dir.join(FILE);
        let io = |e: String| AllowError::Io {
            path: path.display().to_string(),
            message: e,
        };
        let entries = match std::fs::read(&path) {
            Ok(b) => serde_json::from_slice(&b).map_err(|e| io(format!("unreadable: {e}")))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(io(e.to_string())),
        };
        Ok(LocalAllowlist { path, entries })
    }

    fn save(&self) -> Result<(), AllowError> {
        let bytes = serde_json::to_vec_pretty(&self.entries).map_err(|e| AllowError::Io {
            path: self.path.display().to_string(),
            message: e.to_string(),
        })?;
        crate::fsutil::write_atomic(&self.path, &bytes).map_err(|e| AllowError::Io {
            path: self.path.display().to_string(),
            message: e.to_string(),
        })
    }

    /// Allows a value for `for_secs` from `now`, or for good (replacing an
    /// earlier entry for it); returns the entry. `force` takes a network
    /// wider than [`WIDEST_WITHOUT_FORCE`].
    pub fn add(
        &mut self,
        value: &str,
        who: &str,
        now: u64,
        for_secs: Option<u64>,
        reason: Option<&str>,
        force: bool,
    ) -> Result<Allowed, AllowError> {
        let t = target(value)?;
        check_new(value, &t, force)?;
        let until = match for_secs {
            Some(s) if s > MAX_FOR_SECS => {
                return Err(AllowError::Value {
                    value: value.chars().take(200).collect(),
                    message: format!(
                        "--for {s}s is longer than ten years; leave --for out to allow for good"
                    ),
                })
            }
            Some(s) => Some(now.saturating_add(s.max(1))),
            None => None,
        };
        let clean = |s: &str, n: usize| -> String {
            s.chars().filter(|c| !c.is_control()).take(n).collect()
        };
        let entry = Allowed {
            value: t.text(),
            who: clean(who, 64),
            at: now,
            until,
            reason: reason.map(|r| clean(r, 500)).filter(|r| !r.is_empty()),
        };
        let before = self.entries.clone();
        self.entries.retain(|e| e.value != entry.value);
        self.entries.push(entry.clone());
        if let Err(e) = self.save() {
            self.entries = before;
            return Err(e);
        }
        Ok(entry)
    }

    /// Removes a value; returns the entry it had, if any.
    pub fn remove(&mut self, value: &str) -> Result<Option<Allowed>, AllowError> {
        let text = target(value)?.text();
        let Some(i) = self.entries.iter().position(|e| e.value == text) else {
            return Ok(None);
        };
        let gone = self.entries.remove(i);
        if let Err(e) = self.save() {
            self.entries.insert(i, gone);
            return Err(e);
        }
        Ok(Some(gone))
    }

    /// Drops entries whose time is up; returns them.
    pub fn expire(&mut self, now: u64) -> Result<Vec<Allowed>, AllowError> {
        let (gone, kept): (Vec<Allowed>, Vec<Allowed>) = self
            .entries
            .iter()
            .cloned()
            .partition(|e| e.until.is_some_and(|u| u <= now));
        if gone.is_empty() {
            return Ok(gone);
        }
        let before = std::mem::replace(&mut self.entries, kept);
        if let Err(e) = self.save() {
            self.entries = before;
            return Err(e);
        }
        Ok(gone)
    }

    /// The entries, oldest first.
    pub fn entries(&self) -> &[Allowed] {
        &self.entries
    }

    /// Networks and domains to merge into the enforcement allowlist.
    pub fn targets(&self) -> (Vec<IpNet>, Vec<Domain>) {
        let mut nets = Vec::new();
        let mut domains = Vec::new();
        for e in &self.entries {
            match target(&e.value) {
                Ok(Target::Net(n)) => nets.push(n),
                Ok(Target::Domain(d)) => domains.push(d),
                Err(_) => {}
            }
        }
        (nets, domains)
    }

    /// The entry that covers an indicator, if any.
    pub fn covering(&self, ioc: &Ioc) -> Option<&Allowed> {
        self.entries
            .iter()
            .find(|e| target(&e.value).is_ok_and(|t| t.covers(ioc)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_normalised_and_hashes_refused() {
        assert_eq!(target("203.0.113.7").unwrap().text(), "203.0.113.7");
        assert_eq!(target("203.0.113.7/32").unwrap().text(), "203.0.113.7");
        assert_eq!(target("203.0.113.0/24").unwrap().text(), "203.0.113.0/24");
        assert_eq!(
            target("https://Cdn.Example.ORG/x?y").unwrap().text(),
            "cdn.example.org"
        );
        assert_eq!(target("Example.org.").unwrap().text(), "example.org");
        let e = target("d41d8cd98f00b204e9800998ecf8427e")
            .unwrap_err()
            .to_string();
        assert!(e.contains("cannot be allowed"), "{e}");
        let e = target("a b; drop").unwrap_err().to_string();
        assert!(e.starts_with("\"a b; drop\""), "{e}");
    }

    #[test]
    fn entries_persist_expire_and_cover_subdomains_and_networks() {
        let dir = tempfile::tempdir().unwrap();
        let mut l = LocalAllowlist::load(dir.path()).unwrap();
        l.add(
            "example.org",
            "alice",
            100,
            None,
            Some("our printer's cloud"),
            false,
        )
        .unwrap();
        l.add("198.51.100.0/24", "bob", 110, Some(90), None, false)
            .unwrap();
        // Allowing again replaces, never duplicates.
        l.add(
            "example.org",
            "alice",
            120,
            None,
            Some("still the printer"),
            false,
        )
        .unwrap();
        let l2 = LocalAllowlist::load(dir.path()).unwrap();
        assert_eq!(l2.entries().len(), 2);
        assert_eq!(l2.entries()[1].reason.as_deref(), Some("still the printer"));
        let sub = Ioc::parse_any("cdn.example.org").unwrap();
        assert_eq!(l2.covering(&sub).unwrap().who, "alice");
        assert!(l2
            .covering(&Ioc::parse_any("198.51.100.9").unwrap())
            .is_some());
        assert!(l2
            .covering(&Ioc::parse_any("198.51.101.9").unwrap())
            .is_none());

        let mut l = l2;
        assert!(l.expire(199).unwrap().is_empty());
        let gone = l.expire(200).unwrap();
        assert_eq!(gone[0].value, "198.51.100.0/24");
        assert_eq!(LocalAllowlist::load(dir.path()).unwrap().entries().len(), 1);
        assert_eq!(
            l.remove("https://example.org/").unwrap().unwrap().who,
            "alice"
        );
        assert!(l.remove("example.org").unwrap().is_none());
        assert!(LocalAllowlist::load(dir.path())
            .unwrap()
            .entries()
            .is_empty());
    }

    #[test]
    fn host_bits_wide_networks_and_endless_durations_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut l = LocalAllowlist::load(dir.path()).unwrap();
        let mut add = |v: &str, for_secs: Option<u64>, force: bool| {
            l.add(v, "root", 1000, for_secs, None, force)
                .map_err(|e| e.to_string())
        };
        let e = add("203.0.113.7/3", None, true).unwrap_err();
        assert!(
            e.contains("host bits set: as a network this is 192.0.0.0/3"),
            "{e}"
        );
        let e = add("10.0.0.0/8", None, false).unwrap_err();
        assert!(e.contains("wider than /16") && e.contains("2^24"), "{e}");
        assert_eq!(add("10.0.0.0/8", None, true).unwrap().value, "10.0.0.0/8");
        assert!(add("198.51.0.0/16", None, false).is_ok());
        let e = add("2001:db8::/32", None, false).unwrap_err();
        assert!(e.contains("wider than /48"), "{e}");
        assert!(add("2001:db8:1::/48", None, false).is_ok());
        let e = add("example.org", Some(u64::MAX), false).unwrap_err();
        assert!(e.contains("longer than ten years"), "{e}");
        let until = add("example.org", Some(MAX_FOR_SECS), false).unwrap().until;
        assert_eq!(until, Some(1000 + MAX_FOR_SECS));
        // Nothing refused was written.
        let kept: Vec<String> = LocalAllowlist::load(dir.path())
            .unwrap()
            .entries()
            .iter()
            .map(|e| e.value.clone())
            .collect();
        assert_eq!(
            kept,
            [
                "10.0.0.0/8",
                "198.51.0.0/16",
                "2001:db8:1::/48",
                "example.org"
            ]
        );
    }

    #[test]
    fn an_unreadable_file_is_an_error_not_an_empty_list() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(FILE), b"[{\"value\": \"exa").unwrap();
        let e = LocalAllowlist::load(dir.path()).unwrap_err().to_string();
        assert!(
            e.contains("allowlist.json") && e.contains("unreadable"),
            "{e}"
        );
    }

    #[test]
    fn a_failed_write_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let mut l = LocalAllowlist::load(&dir.path().join("missing-dir")).unwrap();
        assert!(l.add("example.org", "a", 1, None, None, false).is_err());
        assert!(l.entries().is_empty());
    }
}
