//! Shadow mode: a source (or the whole appliance) observes first. Its new
//! indicators raise alerts only, for a while (24 h by default), and are then
//! promoted to blocking, unless one of the home's "do not break" devices
//! talked to them meanwhile: those are held, alert only, until the owner
//! decides (`homewarden allow`, or removing the device from the list).
//!
//! The book of when each indicator arrived and which are held is kept in
//! `<state_dir>/shadow.json` (fsync + rename), so a restart neither restarts
//! nor skips anyone's observation. Arrivals are kept by a 64-bit hash of the
//! indicator, not its text: a million observed indicators cost 13 MB, where
//! their texts in a map cost about 70.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::intel::ioc::Ioc;
use crate::intel::set::SourceSet;

/// The file under the state directory.
pub const FILE: &str = "shadow.json";

/// Why an indicator is not promoted.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Held {
    /// The "do not break" device that talked to it.
    pub device: IpAddr,
    /// Its name in the device inventory, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// When (unix seconds).
    pub at: i64,
}

impl Held {
    /// The device as a person reads it: its name and address, or the address.
    pub fn device_shown(&self) -> String {
        match &self.name {
            Some(n) => format!("{n} ({})", self.device),
            None => self.device.to_string(),
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Saved {
    /// When each observed indicator first arrived.
    since: Arrivals,
    /// Indicators a protected device talked to while they were observed.
    held: HashMap<String, Held>,
}

/// An indicator's key in the book: FNV-1a over its text, stable across
/// builds (it is saved); two of a million collide about once in 30 million.
struct Key;

impl Key {
    fn of(indicator: impl std::fmt::Display) -> u64 {
        crate::fnv::Fnv1a::of(indicator)
    }
}

/// When each observed indicator arrived, sorted by key, in columns.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Arrivals {
    keys: Vec<u64>,
    /// Unix seconds (a `u32` lasts until 2106).
    at: Vec<u32>,
    /// Observed at the last split (to count promotions).
    observed: Vec<bool>,
}

impl Arrivals {
    fn find(&self, key: u64) -> Option<usize> {
        self.keys.binary_search(&key).ok()
    }

    fn contains(&self, indicator: &str) -> bool {
        self.find(Key::of(indicator)).is_some()
    }

    fn since(&self, indicator: &str) -> Option<u64> {
        self.find(Key::of(indicator)).map(|i| u64::from(self.at[i]))
    }

    /// From pairs in any order (a key twice: the earlier arrival).
    fn from_pairs(mut pairs: Vec<(u64, u32)>) -> Arrivals {
        pairs.sort_unstable();
        pairs.dedup_by_key(|p| p.0);
        let observed = vec![false; pairs.len()];
        let (keys, at) = pairs.into_iter().unzip();
        Arrivals { keys, at, observed }
    }

    /// The book for the keys seen now (sorted, each once): those it had keep
    /// their arrival and flag, the others arrive `now`, observed unless in
    /// `not_observed` (sorted). The keys seen become the book's: nothing is
    /// merged into a second copy. True if the keys changed.
    fn renew(&mut self, seen: Vec<u64>, now: u32, not_observed: &[u64]) -> bool {
        if seen == self.keys {
            return false;
        }
        let mut at = Vec::with_capacity(seen.len());
        let mut observed = Vec::with_capacity(seen.len());
        let mut j = 0;
        for &k in &seen {
            while j < self.keys.len() && self.keys[j] < k {
                j += 1;
            }
            if self.keys.get(j) == Some(&k) {
                at.push(self.at[j]);
                observed.push(self.observed[j]);
            } else {
                at.push(now);
                observed.push(not_observed.binary_search(&k).is_err());
            }
        }
        *self = Arrivals {
            keys: seen,
            at,
            observed,
        };
        true
    }
}

impl Serialize for Arrivals {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeSeq;
        let mut seq = s.serialize_seq(Some(self.keys.len()))?;
        for (k, t) in self.keys.iter().zip(&self.at) {
            seq.serialize_element(&(k, t))?;
        }
        seq.end()
    }
}

impl<'de> Deserialize<'de> for Arrivals {
    /// `[[key, since], …]`, or the map of indicator → since that earlier
    /// releases wrote (hashed as it is read: no map of texts is built).
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = Arrivals;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a list of [key, since] pairs")
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut a: A,
            ) -> Result<Arrivals, A::Error> {
                let mut pairs = Vec::with_capacity(a.size_hint().unwrap_or(0).min(1 << 20));
                while let Some((k, t)) = a.next_element::<(u64, u64)>()? {
                    pairs.push((k, clamp(t)));
                }
                Ok(Arrivals::from_pairs(pairs))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut a: A,
            ) -> Result<Arrivals, A::Error> {
                let mut pairs = Vec::new();
                while let Some((indicator, t)) = a.next_entry::<std::borrow::Cow<str>, u64>()? {
                    pairs.push((Key::of(indicator), clamp(t)));
                }
                Ok(Arrivals::from_pairs(pairs))
            }
        }
        d.deserialize_any(Visitor)
    }
}

#[cfg(test)]
impl Saved {
    /// As read back from disk (which flags were observed is not saved).
    fn forget_observed(mut self) -> Saved {
        self.since.observed.iter_mut().for_each(|o| *o = false);
        self
    }
}

/// Unix seconds as kept (past 2106: 2106).
fn clamp(t: u64) -> u32 {
    u32::try_from(t).unwrap_or(u32::MAX)
}

/// Where an indicator stands.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum Standing {
    /// Observed (alert only) until this time.
    Observed {
        /// Promotion time (unix seconds).
        until: u64,
    },
    /// Observed until the owner decides.
    Held(Held),
}

/// The split of the listed indicators for one rendering: one flag per
/// indicator of an observing source, not lists of them (a million
/// references took 8 MB a side).
#[derive(Debug, Default)]
pub struct Split<'a> {
    /// Each source, with where its flags start if it observes.
    sources: Vec<(&'a SourceSet, Option<usize>)>,
    /// Observed (alert only) rather than blocked, per indicator.
    observed: Vec<bool>,
    /// The earliest promotion still to come.
    pub next_promotion: Option<u64>,
    /// Indicators promoted by this split (observed before, blocked now).
    pub promoted: usize,
}

impl<'a> Split<'a> {
    /// Indicators to block.
    pub fn enforce(&self) -> impl Iterator<Item = &'a Ioc> + '_ {
        self.flagged().filter(|(_, o)| !o).map(|(ioc, _)| ioc)
    }

    /// Indicators to observe (alert only).
    pub fn observe(&self) -> impl Iterator<Item = &'a Ioc> + '_ {
        self.flagged().filter(|(_, o)| *o).map(|(ioc, _)| ioc)
    }

    fn flagged(&self) -> impl Iterator<Item = (&'a Ioc, bool)> + '_ {
        self.sources.iter().flat_map(move |&(set, first)| {
            set.iocs()
                .iter()
                .enumerate()
                .map(move |(j, ioc)| (ioc, first.is_some_and(|f| self.observed[f + j])))
        })
    }
}

/// The shadow book.
#[derive(Clone, Debug, Default)]
pub struct Shadow {
    path: PathBuf,
    saved: Saved,
}

impl Shadow {
    /// Reads the book; a missing or unreadable file starts afresh (an
    /// unreadable one is set aside and reported).
    pub fn load(state_dir: &Path) -> Shadow {
        let path = state_dir.join(FILE);
        let saved = match std::fs::File::open(&path) {
            Ok(f) => match serde_json::from_reader(std::io::BufReader::new(f)) {
                Ok(s) => s,
                Err(e) => {
                    let aside = crate::fsutil::set_aside(&path);
                    tracing::error!(
                        "{}: unreadable ({e}); moved to {}: observation starts afresh",
                        path.display(),
                        aside.display()
                    );
                    Saved::default()
                }
            },
            Err(_) => Saved::default(),
        };
        Shadow { path, saved }
    }

    fn save(&self) {
        let saved = crate::fsutil::write_atomic_with(&self.path, |w| {
            serde_json::to_writer(&mut *w, &self.saved).map_err(std::io::Error::other)
        });
        if let Err(e) = saved {
            tracing::error!("{}: {e}", self.path.display());
        }
    }

    /// Splits the sources' indicators into blocked and observed at `now`.
    /// Each source comes with its observation period (`None`: blocks at once).
    /// An indicator listed by a source that blocks at once is never observed.
    pub fn split<'a>(
        &mut self,
        sources: impl IntoIterator<Item = (&'a SourceSet, Option<Duration>)>,
        now: u64,
    ) -> Split<'a> {
        let mut out = Split::default();
        let book = &mut self.saved.since;
        let held = &self.saved.held;
        let mut seen = Vec::new();
        // New ones are observed (the usual case): only the others are noted.
        let mut new_not_observed = Vec::new();
        for (set, period) in sources {
            let Some(period) = period else {
                out.sources.push((set, None));
                continue;
            };
            out.sources.push((set, Some(out.observed.len())));
            for e in set.entries() {
                let key = Key::of(e.ioc);
                seen.push(key);
                let found = book.find(key);
                let since = found.map_or(now, |i| u64::from(book.at[i]));
                let until = since.saturating_add(period.as_secs());
                // Texts only when something is held (rare, and few).
                let is_held = !held.is_empty() && held.contains_key(&e.ioc.to_string());
                let observe = is_held || now < until;
                if observe && !is_held {
                    out.next_promotion = Some(out.next_promotion.map_or(until, |t| t.min(until)));
                }
                out.observed.push(observe);
                match found {
                    Some(i) => {
                        if book.observed[i] && !observe {
                            out.promoted += 1;
                        }
                        book.observed[i] = observe;
                    }
                    None if !observe => new_not_observed.push(key),
                    None => {}
                }
            }
        }
        // An indicator that left its source starts afresh if it comes back.
        seen.sort_unstable();
        seen.dedup();
        new_not_observed.sort_unstable();
        let mut changed = book.renew(seen, clamp(now), &new_not_observed);
        let before = self.saved.held.len();
        let book = &self.saved.since;
        self.saved.held.retain(|k, _| book.contains(k));
        changed |= before != self.saved.held.len();
        if changed {
            self.save();
        }
        out
    }

    /// A protected device talked to an observed indicator: hold it.
    pub fn hold(&mut self, indicator: &str, device: IpAddr, name: Option<String>, at: i64) -> bool {
        if !self.saved.since.contains(indicator) || self.saved.held.contains_key(indicator) {
            return false;
        }
        self.saved
            .held
            .insert(indicator.to_string(), Held { device, name, at });
        self.save();
        true
    }

    /// Where an observed indicator stands, given its period; `None` once blocked.
    pub fn standing(
        &self,
        indicator: &str,
        period: Option<Duration>,
        now: u64,
    ) -> Option<Standing> {
        if let Some(h) = self.saved.held.get(indicator) {
            return Some(Standing::Held(h.clone()));
        }
        let since = self.saved.since.since(indicator)?;
        let until = since.saturating_add(period?.as_secs());
        (now < until).then_some(Standing::Observed { until })
    }

    /// Number of held indicators.
    pub fn held(&self) -> usize {
        self.saved.held.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(values: &[&str]) -> SourceSet {
        let mut s = SourceSet::new();
        for v in values {
            s.push(Ioc::parse_any(v).unwrap(), None, None);
        }
        s
    }

    fn names<'a>(v: impl Iterator<Item = &'a Ioc>) -> Vec<String> {
        let mut n: Vec<String> = v.map(|i| i.to_string()).collect();
        n.sort();
        n
    }

    const DAY: Duration = Duration::from_secs(86_400);

    #[test]
    fn new_indicators_are_observed_for_the_period_then_promoted() {
        let dir = tempfile::tempdir().unwrap();
        let mut sh = Shadow::load(dir.path());
        let feed = set(&["203.0.113.1", "evil.example"]);
        let trusted = set(&["203.0.113.9"]);
        let s = sh.split([(&feed, Some(DAY)), (&trusted, None)], 1000);
        assert_eq!(names(s.enforce()), ["203.0.113.9"]);
        assert_eq!(names(s.observe()), ["203.0.113.1", "evil.example"]);
        assert_eq!(s.next_promotion, Some(1000 + 86_400));
        // A later arrival has its own clock; a restart keeps both.
        let feed = set(&["203.0.113.1", "evil.example", "203.0.113.2"]);
        sh.split([(&feed, Some(DAY))], 50_000);
        let mut sh = Shadow::load(dir.path());
        let s = sh.split([(&feed, Some(DAY))], 1000 + 86_400);
        assert_eq!(names(s.enforce()), ["203.0.113.1", "evil.example"]);
        assert_eq!(names(s.observe()), ["203.0.113.2"]);
        assert_eq!(s.next_promotion, Some(50_000 + 86_400));
        assert_eq!(
            sh.standing("203.0.113.2", Some(DAY), 60_000),
            Some(Standing::Observed { until: 136_400 })
        );
        assert_eq!(sh.standing("203.0.113.1", Some(DAY), 90_000), None);
    }

    #[test]
    fn a_protected_device_holds_an_indicator_until_the_owner_decides() {
        let dir = tempfile::tempdir().unwrap();
        let mut sh = Shadow::load(dir.path());
        let feed = set(&["203.0.113.1", "203.0.113.2"]);
        sh.split([(&feed, Some(DAY))], 1000);
        let tv: IpAddr = "192.168.1.30".parse().unwrap();
        assert!(sh.hold("203.0.113.1", tv, Some("tv".into()), 2000));
        assert!(!sh.hold("203.0.113.1", tv, None, 2001), "held once");
        assert!(
            !sh.hold("198.51.100.1", tv, None, 2001),
            "not observed: nothing to hold"
        );
        let s = sh.split([(&feed, Some(DAY))], 1000 + 2 * 86_400);
        assert_eq!(names(s.enforce()), ["203.0.113.2"]);
        assert_eq!(names(s.observe()), ["203.0.113.1"]);
        assert_eq!(
            s.next_promotion, None,
            "held ones wait for the owner, not the clock"
        );
        assert_eq!(
            Shadow::load(dir.path()).standing("203.0.113.1", Some(DAY), 0),
            Some(Standing::Held(Held {
                device: tv,
                name: Some("tv".into()),
                at: 2000
            }))
        );
        // explain names the device as the inventory did when it talked.
        let Some(Standing::Held(h)) =
            Shadow::load(dir.path()).standing("203.0.113.1", Some(DAY), 0)
        else {
            unreachable!()
        };
        assert_eq!(h.device_shown(), format!("tv ({tv})"));
        // Gone from the source: forgotten; back later: observed afresh.
        let empty = set(&[]);
        sh.split([(&empty, Some(DAY))], 400_000);
        let s = sh.split([(&feed, Some(DAY))], 500_000);
        assert_eq!(names(s.observe()), ["203.0.113.1", "203.0.113.2"]);
        assert_eq!(sh.held(), 0);
    }

    #[test]
    fn promotions_are_counted_once() {
        let dir = tempfile::tempdir().unwrap();
        let mut sh = Shadow::load(dir.path());
        let feed = set(&["203.0.113.1"]);
        assert_eq!(sh.split([(&feed, Some(DAY))], 0).promoted, 0);
        assert_eq!(sh.split([(&feed, Some(DAY))], 86_400).promoted, 1);
        assert_eq!(sh.split([(&feed, Some(DAY))], 86_401).promoted, 0);
    }

    /// A book the previous release wrote (indicator texts) goes on: the
    /// observation neither restarts nor skips, the held stay held.
    #[test]
    fn a_book_of_texts_from_the_previous_release_is_read_on() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join(FILE),
            br#"{"since":{"203.0.113.1":1000,"evil.example":5000},"held":{"evil.example":{"device":"192.168.1.30","at":6000}}}"#,
        )
        .unwrap();
        let mut sh = Shadow::load(dir.path());
        assert_eq!(
            sh.standing("203.0.113.1", Some(DAY), 2000),
            Some(Standing::Observed { until: 87_400 })
        );
        let feed = set(&["203.0.113.1", "evil.example", "203.0.113.2"]);
        let s = sh.split([(&feed, Some(DAY))], 90_000);
        assert_eq!(names(s.enforce()), ["203.0.113.1"]);
        assert_eq!(names(s.observe()), ["203.0.113.2", "evil.example"]);
        assert_eq!(sh.held(), 1);
        // Written back in the new form, and read again the same.
        let again = Shadow::load(dir.path());
        assert_eq!(again.saved, sh.saved.clone().forget_observed());
        assert!(std::fs::read_to_string(dir.path().join(FILE))
            .unwrap()
            .starts_with(r#"{"since":[["#));
    }

    /// Keys are saved: an indicator hashes as its text does.
    #[test]
    fn keys_match_the_text() {
        let ioc = Ioc::parse_any("Evil.Example.").unwrap();
        assert_eq!(Key::of(&ioc), Key::of("evil.example"));
    }

    #[test]
    fn an_unreadable_book_is_set_aside() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(FILE), b"{\"since\": {").unwrap();
        let mut sh = Shadow::load(dir.path());
        assert!(dir.path().join("shadow.json.corrupt").exists());
        let feed = set(&["203.0.113.1"]);
        assert_eq!(sh.split([(&feed, Some(DAY))], 5).observe().count(), 1);
    }
}
