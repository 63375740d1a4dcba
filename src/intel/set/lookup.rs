//! Provenance lookup: which held entries explain a hit. The entries are
//! sorted by indicator once per change of the set ([`SourceSet::index`]);
//! each hit is then a few binary searches (the value, each parent name, each
//! network prefix that could hold the address), never a scan of the set.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::{Entry, Origin, Provenance, SourceSet};
use crate::intel::ioc::{Ioc, Kind};
use ipnet::{IpNet, Ipv4Net, Ipv6Net};

/// Every source's set as it stands, shared (not copied) with whoever traces
/// hits: the incidents' owner, `lookup`, `blocks`, offline triage.
#[derive(Clone, Debug, Default)]
pub struct Index {
    sources: Vec<(String, Arc<SourceSet>)>,
}

impl Index {
    /// The sets of these sources, by name.
    pub fn new(sources: impl IntoIterator<Item = (String, Arc<SourceSet>)>) -> Index {
        Index {
            sources: sources.into_iter().collect(),
        }
    }

    /// Every held entry, in every source, that explains a hit on `hit`.
    pub fn lookup(&self, hit: &Ioc) -> Vec<Provenance> {
        self.sources
            .iter()
            .flat_map(|(name, set)| {
                set.covering(hit)
                    .into_iter()
                    .map(move |e| set.provenance(name, e))
            })
            .collect()
    }

    /// The first explanation of a hit on `value`, if it parses and is held.
    pub fn first(&self, value: &str) -> Option<Provenance> {
        let hit = Ioc::parse_any(value).ok()?;
        self.sources
            .iter()
            .find_map(|(name, set)| set.covering(&hit).first().map(|e| set.provenance(name, *e)))
    }
}

impl SourceSet {
    /// Sorts the entries by indicator, so that [`SourceSet::covering`] searches them.
    pub fn index(&mut self) {
        if !self.sorted {
            // In place: a million entries must not need a second copy on a Pi.
            if self.origins.is_empty() {
                self.iocs.sort_unstable();
            } else {
                let (iocs, origins) = (&self.iocs, &self.origins);
                let mut order: Vec<u32> = (0..iocs.len() as u32).collect();
                order.sort_unstable_by_key(|&i| (&iocs[i as usize], origins[i as usize]));
                permute(&mut self.iocs, &mut self.origins, &mut order);
            }
            self.sorted = true;
        }
    }

    /// How many entries of each kind the set holds (kinds it has none of are
    /// left out). A sorted set keeps each kind together, so this is a few
    /// binary searches, not a scan: status asks on every tick.
    pub fn kinds(&self) -> BTreeMap<Kind, usize> {
        let mut out = BTreeMap::new();
        if !self.sorted {
            for ioc in &self.iocs {
                *out.entry(ioc.kind()).or_insert(0) += 1;
            }
            return out;
        }
        let mut rest = &self.iocs[..];
        while let Some(first) = rest.first() {
            let kind = first.kind();
            let n = rest.partition_point(|i| i.kind() == kind);
            out.insert(kind, n);
            rest = &rest[n..];
        }
        out
    }

    /// Every entry that covers `hit`: the indicator itself, a listed parent of
    /// a name, a listed network holding an address.
    pub fn covering(&self, hit: &Ioc) -> Vec<Entry<'_>> {
        if !self.sorted {
            // A set still being built (offline tools, tests): right, not fast.
            return self.entries().filter(|e| e.ioc.covers(hit)).collect();
        }
        let at = |i: usize| Entry {
            ioc: &self.iocs[i],
            origin: self.origin(i),
        };
        let mut out: Vec<Entry> = self.equal(hit).map(at).collect();
        let mut take = |key: Ioc| out.extend(self.equal(&key).map(at));
        match hit {
            Ioc::Domain(d) => d.parents().for_each(|p| take(Ioc::Domain(p))),
            Ioc::Ipv4(a) => (0..32)
                .filter_map(|len| Ipv4Net::new(*a, len).ok())
                .for_each(|n| take(Ioc::Net(Box::new(IpNet::V4(n.trunc()))))),
            Ioc::Ipv6(a) => (0..128)
                .filter_map(|len| Ipv6Net::new(**a, len).ok())
                .for_each(|n| take(Ioc::Net(Box::new(IpNet::V6(n.trunc()))))),
            _ => {}
        }
        out
    }

    /// Where the entries whose indicator is `key` are (sorted entries only).
    fn equal(&self, key: &Ioc) -> std::ops::Range<usize> {
        let lo = self.iocs.partition_point(|i| i < key);
        let len = self.iocs[lo..].partition_point(|i| i == key);
        lo..lo + len
    }
}

/// Puts both columns in `order` (`order[i]`: where position i's entry is now),
/// following its cycles: no second copy of either column. `order` is used up.
fn permute(iocs: &mut [Ioc], origins: &mut [Origin], order: &mut [u32]) {
    for start in 0..order.len() {
        let mut at = start;
        loop {
            let from = order[at] as usize;
            order[at] = at as u32; // done
            if from == start || from == at {
                break;
            }
            iocs.swap(at, from);
            origins.swap(at, from);
            at = from;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ioc(v: &str) -> Ioc {
        Ioc::parse_any(v).unwrap()
    }

    /// Values from small pools, so that hits, parents and networks meet often.
    fn value() -> impl Strategy<Value = String> {
        prop_oneof![
            (0u8..4, 0u8..4).prop_map(|(a, b)| format!("10.0.{a}.{b}")),
            (0u8..4, prop_oneof![Just(8u8), Just(16), Just(24), Just(30)])
                .prop_map(|(a, l)| format!("10.0.{a}.0/{l}")),
            (
                0u8..3,
                prop_oneof![Just(32u8), Just(48), Just(64), Just(127)]
            )
                .prop_map(|(a, l)| format!("2001:db8::{a}/{l}")),
            (0u8..3).prop_map(|a| format!("2001:db8::{a}")),
            prop::sample::select(vec![
                "evil.test",
                "a.evil.test",
                "b.a.evil.test",
                "evil2.test",
                "x.evil2.test"
            ])
            .prop_map(str::to_string),
            Just("d41d8cd98f00b204e9800998ecf8427e".to_string()),
        ]
    }

    proptest! {
        /// The search finds exactly what a scan of every entry finds (and counts).
        #[test]
        fn the_index_finds_what_a_scan_finds(
            held in prop::collection::vec((value(), 0u32..3), 0..40),
            hits in prop::collection::vec(value(), 1..10),
        ) {
            let mut set = SourceSet::new();
            for (v, ev) in &held {
                set.push(ioc(v), Some(*ev), Some(v.as_str()));
            }
            let scan = set.clone();
            set.index();
            // The counts by kind: binary searches on the sorted set, a scan before.
            prop_assert_eq!(set.kinds(), scan.kinds());
            prop_assert_eq!(set.kinds().values().sum::<usize>(), held.len());
            for h in hits.iter().map(|h| ioc(h)) {
                let key = |e: &Entry| (e.ioc.clone(), e.origin);
                let mut found: Vec<_> = set.covering(&h).iter().map(key).collect();
                let mut want: Vec<_> = scan.covering(&h).iter().map(key).collect();
                found.sort();
                want.sort();
                prop_assert_eq!(found, want, "hit {}", h);
            }
        }
    }

    /// Once found by the property above (kept as a plain case so no
    /// regressions folder sits at the crate root).
    #[test]
    fn a_listed_name_never_covers_an_address() {
        let mut set = SourceSet::new();
        set.push(ioc("evil.test"), Some(0), Some("evil.test"));
        set.index();
        assert!(set.covering(&ioc("10.0.0.0")).is_empty());
    }

    #[test]
    fn the_shared_index_traces_a_hit_through_every_source() {
        let set = |vals: &[&str]| {
            let mut s = SourceSet::new();
            for v in vals {
                s.push(ioc(v), None, None);
            }
            s.index();
            Arc::new(s)
        };
        let index = Index::new([
            ("feed".to_string(), set(&["evil.test", "198.51.100.0/24"])),
            ("misp".to_string(), set(&["c2.evil.test"])),
        ]);
        let by: Vec<(String, String)> = index
            .lookup(&ioc("x.c2.evil.test"))
            .into_iter()
            .map(|p| (p.source, p.indicator))
            .collect();
        assert_eq!(
            by,
            [
                ("feed".to_string(), "evil.test".to_string()),
                ("misp".to_string(), "c2.evil.test".to_string())
            ]
        );
        assert_eq!(index.first("198.51.100.9").unwrap().source, "feed");
        assert!(index.first("not a value").is_none());
        assert!(Index::default().lookup(&ioc("evil.test")).is_empty());
    }

    #[test]
    fn a_name_is_traced_to_its_listed_parent_and_an_address_to_its_network() {
        let mut set = SourceSet::new();
        for v in ["evil.test", "198.51.100.0/24", "203.0.113.9", "other.test"] {
            set.push(ioc(v), None, None);
        }
        set.index();
        fn shown(set: &SourceSet, hit: &str) -> Vec<String> {
            set.covering(&ioc(hit))
                .iter()
                .map(|e| e.ioc.to_string())
                .collect()
        }
        assert_eq!(shown(&set, "c2.evil.test"), ["evil.test"]);
        assert_eq!(shown(&set, "evil.test"), ["evil.test"]);
        assert!(shown(&set, "notevil.test").is_empty());
        assert_eq!(shown(&set, "198.51.100.77"), ["198.51.100.0/24"]);
        assert_eq!(shown(&set, "203.0.113.9"), ["203.0.113.9"]);
        assert!(shown(&set, "203.0.113.10").is_empty());
        // A push after the index falls back to the scan until indexed again.
        set.push(ioc("new.test"), None, None);
        assert_eq!(shown(&set, "a.new.test"), ["new.test"]);
    }
}
