//! Shadow mode: a source (or the whole appliance) observes first. Its new
//! indicators raise alerts only, for a while (24 h by default), and are then
//! promoted to blocking, unless one of the home's "do not break" devices
//! talked to them meanwhile: those are held, alert only, until the owner
//! decides (`homewarden allow`, or removing the device from the list).
//!
//! The book of when each indicator arrived and which are held is kept in
//! `<state_dir>/shadow.json` (fsync + rename), so a restart neither restarts
//! nor skips anyone's observation.

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
    /// When (unix seconds).
    pub at: i64,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Saved {
    /// When each observed indicator first arrived.
    since: HashMap<String, u64>,
    /// Indicators a protected device talked to while they were observed.
    held: HashMap<String, Held>,
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

/// The split of the listed indicators for one rendering.
#[derive(Debug, Default)]
pub struct Split<'a> {
    /// Indicators to block.
    pub enforce: Vec<&'a Ioc>,
    /// Indicators to observe (alert only).
    pub observe: Vec<&'a Ioc>,
    /// The earliest promotion still to come.
    pub next_promotion: Option<u64>,
    /// Indicators promoted by this split (observed before, blocked now).
    pub promoted: usize,
}

/// The shadow book.
#[derive(Clone, Debug, Default)]
pub struct Shadow {
    path: PathBuf,
    saved: Saved,
    /// Indicators observed at the last split (for `promoted`).
    observed_last: std::collections::HashSet<String>,
}

impl Shadow {
    /// Reads the book; a missing or unreadable file starts afresh (an
    /// unreadable one is set aside and reported).
    pub fn load(state_dir: &Path) -> Shadow {
        let path = state_dir.join(FILE);
        let saved = match std::fs::read(&path) {
            Ok(b) => match serde_json::from_slice(&b) {
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
        Shadow {
            path,
            saved,
            observed_last: Default::default(),
        }
    }

    fn save(&self) {
        let saved = serde_json::to_vec(&self.saved)
            .map_err(std::io::Error::other)
            .and_then(|b| crate::fsutil::write_atomic(&self.path, &b));
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
        let mut seen = std::collections::HashSet::new();
        let mut observed_now = std::collections::HashSet::new();
        let mut changed = false;
        for (set, period) in sources {
            for e in set.entries() {
                let Some(period) = period else {
                    out.enforce.push(&e.ioc);
                    continue;
                };
                let key = e.ioc.to_string();
                let since = *self.saved.since.entry(key.clone()).or_insert_with(|| {
                    changed = true;
                    now
                });
                let until = since.saturating_add(period.as_secs());
                if self.saved.held.contains_key(&key) || now < until {
                    if !self.saved.held.contains_key(&key) {
                        out.next_promotion =
                            Some(out.next_promotion.map_or(until, |t| t.min(until)));
                    }
                    observed_now.insert(key.clone());
                    out.observe.push(&e.ioc);
                } else {
                    out.enforce.push(&e.ioc);
                }
                seen.insert(key);
            }
        }
        // An indicator that left its source starts afresh if it comes back.
        let counts = (self.saved.since.len(), self.saved.held.len());
        self.saved.since.retain(|k, _| seen.contains(k));
        self.saved.held.retain(|k, _| seen.contains(k));
        changed |= counts != (self.saved.since.len(), self.saved.held.len());
        out.promoted = self
            .observed_last
            .iter()
            .filter(|k| !observed_now.contains(*k) && seen.contains(*k))
            .count();
        self.observed_last = observed_now;
        if changed {
            self.save();
        }
        out
    }

    /// A protected device talked to an observed indicator: hold it.
    pub fn hold(&mut self, indicator: &str, device: IpAddr, at: i64) -> bool {
        if !self.saved.since.contains_key(indicator) || self.saved.held.contains_key(indicator) {
            return false;
        }
        self.saved
            .held
            .insert(indicator.to_string(), Held { device, at });
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
        let since = self.saved.since.get(indicator)?;
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

    fn names(v: &[&Ioc]) -> Vec<String> {
        let mut n: Vec<String> = v.iter().map(|i| i.to_string()).collect();
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
        assert_eq!(names(&s.enforce), ["203.0.113.9"]);
        assert_eq!(names(&s.observe), ["203.0.113.1", "evil.example"]);
        assert_eq!(s.next_promotion, Some(1000 + 86_400));
        // A later arrival has its own clock; a restart keeps both.
        let feed = set(&["203.0.113.1", "evil.example", "203.0.113.2"]);
        sh.split([(&feed, Some(DAY))], 50_000);
        let mut sh = Shadow::load(dir.path());
        let s = sh.split([(&feed, Some(DAY))], 1000 + 86_400);
        assert_eq!(names(&s.enforce), ["203.0.113.1", "evil.example"]);
        assert_eq!(names(&s.observe), ["203.0.113.2"]);
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
        assert!(sh.hold("203.0.113.1", tv, 2000));
        assert!(!sh.hold("203.0.113.1", tv, 2001), "held once");
        assert!(
            !sh.hold("198.51.100.1", tv, 2001),
            "not observed: nothing to hold"
        );
        let s = sh.split([(&feed, Some(DAY))], 1000 + 2 * 86_400);
        assert_eq!(names(&s.enforce), ["203.0.113.2"]);
        assert_eq!(names(&s.observe), ["203.0.113.1"]);
        assert_eq!(
            s.next_promotion, None,
            "held ones wait for the owner, not the clock"
        );
        assert_eq!(
            Shadow::load(dir.path()).standing("203.0.113.1", Some(DAY), 0),
            Some(Standing::Held(Held {
                device: tv,
                at: 2000
            }))
        );
        // Gone from the source: forgotten; back later: observed afresh.
        let empty = set(&[]);
        sh.split([(&empty, Some(DAY))], 400_000);
        let s = sh.split([(&feed, Some(DAY))], 500_000);
        assert_eq!(names(&s.observe), ["203.0.113.1", "203.0.113.2"]);
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

    #[test]
    fn an_unreadable_book_is_set_aside() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(FILE), b"{\"since\": {").unwrap();
        let mut sh = Shadow::load(dir.path());
        assert!(dir.path().join("shadow.json.corrupt").exists());
        let feed = set(&["203.0.113.1"]);
        assert_eq!(sh.split([(&feed, Some(DAY))], 5).observe.len(), 1);
    }
}
