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

    /// Allows a value (replacing an earlier entry for it); returns the entry.
    pub fn add(
        &mut self,
        value: &str,
        who: &str,
        now: u64,
        until: Option<u64>,
        reason: Option<&str>,
    ) -> Result<Allowed, AllowError> {
        let t = target(value)?;
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
        )
        .unwrap();
        l.add("198.51.100.0/24", "bob", 110, Some(200), None)
            .unwrap();
        // Allowing again replaces, never duplicates.
        l.add("example.org", "alice", 120, None, Some("still the printer"))
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
        assert!(l.add("example.org", "a", 1, None, None).is_err());
        assert!(l.entries().is_empty());
    }
}
