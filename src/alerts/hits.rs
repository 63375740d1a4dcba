//! Hits on blocked values over the last 24 hours, for `homewarden blocks`:
//! one small counter per value (24 hourly buckets), bounded in number.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

/// Values tracked at most; the least recently hit go first.
pub const MAX_VALUES: usize = 10_000;

#[derive(Clone, Debug, Default)]
struct Counter {
    /// Hits per hour, indexed by (hour since the epoch) % 24.
    buckets: [u32; 24],
    /// The hour each bucket holds, so stale buckets read as zero.
    hours: [i64; 24],
    last: i64,
}

/// One value's recent hits.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Recent {
    /// The blocked value (as listed).
    pub value: String,
    /// Hits in the last 24 hours.
    pub hits_24h: u64,
    /// The last hit (unix seconds).
    pub last: i64,
}

/// What [`signature_key`] puts between the remote and the sid.
const SID_MARK: &str = " sid:";

/// The key a signature's drops are counted under: the remote, and the sid
/// that dropped its traffic (a listed value's drops count under the value).
pub fn signature_key(remote: &str, sid: u32) -> String {
    format!("{remote}{SID_MARK}{sid}")
}

/// The remote and the sid of a [`signature_key`]; `None` for a listed value.
pub fn split_signature_key(key: &str) -> Option<(&str, u32)> {
    let (remote, sid) = key.rsplit_once(SID_MARK)?;
    Some((remote, sid.parse().ok()?))
}

/// The book of recent hits.
#[derive(Clone, Debug, Default)]
pub struct Hits {
    values: HashMap<String, Counter>,
}

impl Hits {
    /// Counts one hit on `value` at `time`.
    pub fn record(&mut self, value: &str, time: i64) {
        if self.values.len() >= MAX_VALUES && !self.values.contains_key(value) {
            self.forget_oldest();
        }
        let c = self.values.entry(value.to_string()).or_default();
        let hour = time.div_euclid(3600);
        let slot = hour.rem_euclid(24) as usize;
        if c.hours[slot] != hour {
            c.hours[slot] = hour;
            c.buckets[slot] = 0;
        }
        c.buckets[slot] = c.buckets[slot].saturating_add(1);
        c.last = c.last.max(time);
    }

    fn forget_oldest(&mut self) {
        // Drop the least recently hit tenth: one sort per many new values.
        let mut lasts: Vec<i64> = self.values.values().map(|c| c.last).collect();
        let cut = lasts.len() / 10;
        let (_, t, _) = lasts.select_nth_unstable(cut);
        let t = *t;
        self.values.retain(|_, c| c.last > t);
    }

    /// Values hit within the 24 hours before `now`, most recently hit first.
    pub fn recent(&self, now: i64) -> Vec<Recent> {
        let this_hour = now.div_euclid(3600);
        let mut out: Vec<Recent> = self
            .values
            .iter()
            .filter(|(_, c)| now - c.last < 86_400)
            .map(|(v, c)| Recent {
                value: v.clone(),
                hits_24h: (0..24)
                    .filter(|&i| this_hour - c.hours[i] < 24)
                    .map(|i| u64::from(c.buckets[i]))
                    .sum(),
                last: c.last,
            })
            .collect();
        out.sort_by(|a, b| b.last.cmp(&a.last).then(a.value.cmp(&b.value)));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signatures_key_splits_back_and_a_listed_value_does_not() {
        let k = signature_key("203.0.113.90", 2_999_101);
        assert_eq!(split_signature_key(&k), Some(("203.0.113.90", 2_999_101)));
        assert_eq!(split_signature_key("c2.evil.test"), None);
        assert_eq!(split_signature_key("2001:db8::1"), None);
    }

    #[test]
    fn counts_the_last_24_hours_only_newest_first() {
        let mut h = Hits::default();
        let t0 = 1_795_000_000 - 1_795_000_000 % 3600;
        for i in 0..5 {
            h.record("203.0.113.66", t0 + i * 60);
        }
        h.record("evil.example", t0 + 10 * 3600);
        h.record("203.0.113.66", t0 + 25 * 3600);
        let r = h.recent(t0 + 25 * 3600 + 10);
        assert_eq!(r[0].value, "203.0.113.66");
        // The five hits of 25 hours ago have left the window; their bucket was reused.
        assert_eq!(r[0].hits_24h, 1);
        assert_eq!(
            r[1],
            Recent {
                value: "evil.example".into(),
                hits_24h: 1,
                last: t0 + 36_000
            }
        );
        assert!(h
            .recent(t0 + 40 * 3600)
            .iter()
            .all(|x| x.value != "evil.example"));
    }

    #[test]
    fn the_book_stays_bounded() {
        let mut h = Hits::default();
        for i in 0..(MAX_VALUES as i64 + 500) {
            h.record(&format!("v{i}"), 1_795_000_000 + i);
        }
        assert!(h.values.len() <= MAX_VALUES);
        assert!(h.values.contains_key(&format!("v{}", MAX_VALUES + 499)));
    }
}
