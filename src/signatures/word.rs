//! The owner's word on single signatures and whole categories, given on the
//! command line (`homewarden signatures drop|alert|disable|reset`): kept in
//! the agent's state, above what the config says, until reset.

use std::path::Path;

use serde::{Deserialize, Deserializer};

use super::policy::{Overrides, Setting};

/// The file beside the update's record.
pub const FILE: &str = "overrides.json";

/// A sid or a category, as the owner names one.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Target {
    /// One signature.
    Sid(u64),
    /// A whole category (`malware`, `policy`…).
    Category(String),
}

impl Target {
    /// A sid (digits) or a category name (letters, digits, `_`, `-`).
    pub fn parse(s: &str) -> Result<Target, String> {
        if let Ok(n) = s.parse::<u64>() {
            return (n > 0)
                .then_some(Target::Sid(n))
                .ok_or_else(|| "0 is not a signature id".to_string());
        }
        let ok = !s.is_empty()
            && s.len() <= 64
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if ok {
            Ok(Target::Category(s.to_ascii_lowercase()))
        } else {
            Err(format!("{s:?} is neither a signature id nor a category"))
        }
    }
}

impl<'de> Deserialize<'de> for Target {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Sid(u64),
            Name(String),
        }
        match Raw::deserialize(d)? {
            Raw::Sid(0) => Err(serde::de::Error::custom("0 is not a signature id")),
            Raw::Sid(n) => Ok(Target::Sid(n)),
            Raw::Name(s) => Target::parse(&s).map_err(serde::de::Error::custom),
        }
    }
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::Sid(n) => write!(f, "{n}"),
            Target::Category(c) => write!(f, "category {c}"),
        }
    }
}

/// Why the owner's word could not be kept.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {message}")]
pub struct WordError {
    path: String,
    message: String,
}

/// One word of the owner's.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Word {
    /// Drop, alert or disable (`None`: reset) a sid or a category.
    Set {
        /// What it is about.
        target: Target,
        /// The setting.
        setting: Option<Setting>,
    },
    /// Lift a sid for one device or destination (`lifted: false` takes it back).
    Lift {
        /// The signature.
        sid: u64,
        /// The device's or the destination's address or network.
        net: ipnet::IpNet,
        /// Lifted, or no longer.
        lifted: bool,
    },
}

impl std::fmt::Display for Word {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Word::Set { target, .. } => write!(f, "{target}"),
            Word::Lift { sid, net, .. } => write!(f, "{sid} for {net}"),
        }
    }
}

/// Takes `w` into `o`; whether it changed anything.
pub fn apply(o: &mut Overrides, w: &Word) -> bool {
    match w {
        Word::Set { target, setting } => set(o, target, *setting),
        Word::Lift { sid, net, lifted } => {
            let nets = o.except.entry(*sid).or_default();
            let changed = if *lifted {
                nets.insert(*net)
            } else {
                nets.remove(net)
            };
            if nets.is_empty() {
                o.except.remove(sid);
            }
            changed
        }
    }
}

/// An address or a network, as the owner names the device or destination a
/// signature is lifted for (a bare address is its /32 or /128).
pub fn parse_net(s: &str) -> Result<ipnet::IpNet, String> {
    s.parse::<ipnet::IpNet>()
        .or_else(|_| s.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
        .map(|n| n.trunc())
        .map_err(|_| format!("{s:?} is not an address or a network"))
}

/// Sets (`Some`) or resets (`None`) `target` in `o`; whether it changed.
pub fn set(o: &mut Overrides, target: &Target, setting: Option<Setting>) -> bool {
    let before = o.clone();
    match (target, setting) {
        (Target::Sid(n), Some(s)) => {
            o.sids.insert(*n, s);
        }
        (Target::Sid(n), None) => {
            o.sids.remove(n);
        }
        (Target::Category(c), Some(s)) => {
            o.categories.insert(c.clone(), s);
        }
        (Target::Category(c), None) => {
            o.categories.remove(c);
        }
    }
    *o != before
}

/// `over` laid on `base`: the command line's word wins over the config's
/// (and lifts a signature for its addresses too).
pub fn layered(base: &Overrides, over: &Overrides) -> Overrides {
    let mut o = base.clone();
    o.sids.extend(over.sids.iter().map(|(k, v)| (*k, *v)));
    o.categories
        .extend(over.categories.iter().map(|(k, v)| (k.clone(), *v)));
    for (sid, nets) in &over.except {
        o.except
            .entry(*sid)
            .or_default()
            .extend(nets.iter().copied());
    }
    o
}

/// What `target` is set to in `o`, if anything.
pub fn get(o: &Overrides, target: &Target) -> Option<Setting> {
    match target {
        Target::Sid(n) => o.sids.get(n).copied(),
        Target::Category(c) => o.categories.get(c).copied(),
    }
}

/// The owner's word kept in `work_dir` (none yet: empty). A file that
/// cannot be read is an error, not silently nothing: the owner's word is
/// never dropped unseen.
pub fn load(work_dir: &Path) -> Result<Overrides, WordError> {
    let path = work_dir.join(FILE);
    let err = |message: String| WordError {
        path: path.display().to_string(),
        message,
    };
    match std::fs::read(&path) {
        Ok(b) => serde_json::from_slice(&b).map_err(|e| err(e.to_string())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Overrides::default()),
        Err(e) => Err(err(e.to_string())),
    }
}

/// Keeps `o` in `work_dir`, whole or not at all.
pub fn save(work_dir: &Path, o: &Overrides) -> Result<(), WordError> {
    let path = work_dir.join(FILE);
    let err = |message: String| WordError {
        path: path.display().to_string(),
        message,
    };
    std::fs::create_dir_all(work_dir).map_err(|e| err(e.to_string()))?;
    let bytes = serde_json::to_vec_pretty(o).map_err(|e| err(e.to_string()))?;
    crate::fsutil::write_atomic(&path, &bytes).map_err(|e| err(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_lines_word_is_kept_layered_and_reset() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(load(dir.path()).unwrap(), Overrides::default());
        let mut o = Overrides::default();
        assert!(set(&mut o, &Target::Sid(7), Some(Setting::Alert)));
        assert!(!set(&mut o, &Target::Sid(7), Some(Setting::Alert)));
        assert!(set(
            &mut o,
            &Target::parse("Policy").unwrap(),
            Some(Setting::Drop)
        ));
        save(dir.path(), &o).unwrap();
        assert_eq!(load(dir.path()).unwrap(), o);
        let mut config = Overrides::default();
        config.sids.insert(7, Setting::Drop);
        config.sids.insert(8, Setting::Disable);
        let l = layered(&config, &o);
        assert_eq!(l.sids[&7], Setting::Alert, "the later word wins");
        assert_eq!(l.sids[&8], Setting::Disable);
        assert_eq!(l.categories["policy"], Setting::Drop);
        assert!(set(&mut o, &Target::Sid(7), None));
        assert_eq!(
            get(&layered(&config, &o), &Target::Sid(7)),
            Some(Setting::Drop)
        );
        // A file that cannot be read says so, naming it.
        std::fs::write(dir.path().join(FILE), b"{not json").unwrap();
        let e = load(dir.path()).unwrap_err().to_string();
        assert!(e.contains(FILE), "{e}");
    }

    #[test]
    fn a_signature_is_lifted_for_an_address_and_taken_back() {
        let mut o = Overrides::default();
        let net = parse_net("198.18.1.2").unwrap();
        assert_eq!(net.to_string(), "198.18.1.2/32");
        let lift = |lifted| Word::Lift {
            sid: 7,
            net,
            lifted,
        };
        assert!(apply(&mut o, &lift(true)));
        assert!(!apply(&mut o, &lift(true)));
        assert_eq!(o.except[&7].len(), 1);
        assert_eq!(lift(true).to_string(), "7 for 198.18.1.2/32");
        assert!(apply(&mut o, &lift(false)));
        assert!(o.except.is_empty(), "nothing left behind");
        assert_eq!(
            parse_net("2001:db8::1/64").unwrap().to_string(),
            "2001:db8::/64"
        );
        assert!(parse_net("cam").unwrap_err().contains("not an address"));
    }

    #[test]
    fn targets_are_sids_or_category_names() {
        assert_eq!(Target::parse("2030000"), Ok(Target::Sid(2_030_000)));
        assert_eq!(
            Target::parse("Mobile_Malware"),
            Ok(Target::Category("mobile_malware".into()))
        );
        assert!(Target::parse("0")
            .unwrap_err()
            .contains("not a signature id"));
        assert!(Target::parse("a b").unwrap_err().contains("neither"));
        assert!(Target::parse("").is_err());
    }
}
