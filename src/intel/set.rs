//! The IoC set: what each source contributed, with provenance, and the
//! effective blocklist after the allowlist.

use std::collections::{HashMap, HashSet};

use serde::{Deserialize, Serialize};

use super::ioc::{Ioc, Names};

/// MISP threat levels (`threat_level_id`): 1 High, 2 Medium, 3 Low, 4 Undefined.
pub type ThreatLevel = u8;

/// The MISP event an indicator came from.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventInfo {
    /// Event uuid (the key: ids differ between instances, uuids do not).
    pub uuid: String,
    /// Numeric event id on the source instance, if it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<u64>,
    /// `threat_level_id`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threat_level: Option<ThreatLevel>,
    /// Event title.
    #[serde(default)]
    pub info: String,
    /// Event timestamp (feeds use it to skip unchanged events).
    #[serde(default)]
    pub timestamp: u64,
    /// The event's tags (`tlp:amber`, `misp-galaxy:…`), as the source gave them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    /// When this appliance first held the event (unix seconds; 0 until stamped).
    #[serde(default)]
    pub seen: u64,
}

use crate::untrusted::clean_text;

/// Tags from a feed are untrusted text: bounded in number and length, cleaned as [`clean_text`].
pub fn clean_tags<'a>(tags: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    tags.into_iter()
        .map(|t| clean_text(t, MAX_TAG))
        .filter(|t| !t.is_empty())
        .take(32)
        .collect()
}

/// Longest tag kept (characters).
const MAX_TAG: usize = 128;
/// Longest event title kept (characters); MISP's own are far shorter.
const MAX_INFO: usize = 256;

/// Marks "no event" / "no attribute" in an [`Origin`].
const NONE: u32 = u32::MAX;

/// Where one indicator came from: indexes into its set's events and attributes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Origin {
    event: u32,
    attribute: u32,
}

impl Origin {
    const UNKNOWN: Origin = Origin {
        event: NONE,
        attribute: NONE,
    };
}

/// One indicator of a set with where it came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Entry<'a> {
    /// The indicator.
    pub ioc: &'a Ioc,
    origin: Origin,
}

impl Entry<'_> {
    /// Index into the source's events, if it came from an event.
    pub fn event(&self) -> Option<u32> {
        (self.origin.event != NONE).then_some(self.origin.event)
    }
}

/// Everything one source currently contributes.
#[derive(Clone, Debug, Default)]
pub struct SourceSet {
    /// Events referenced by entries.
    events: Vec<EventInfo>,
    event_index: HashMap<String, u32>,
    /// MISP attribute uuids referenced by entries.
    attributes: Vec<Box<str>>,
    /// Indicators; sorted by indicator once [`SourceSet::index`] ran and
    /// nothing was pushed since (see `lookup.rs`).
    iocs: Vec<Ioc>,
    /// Where each indicator came from, beside it; empty while none has an
    /// origin (plain lists: 8 bytes an indicator saved, a million of them on a Pi).
    origins: Vec<Origin>,
    sorted: bool,
    /// Where this set's names are packed.
    names: Names,
}

/// Where one indicator came from, resolved for display and tracing.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Provenance {
    /// Source name from the config.
    pub source: String,
    /// MISP event uuid.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event_uuid: Option<String>,
    /// MISP event id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event_id: Option<u64>,
    /// MISP attribute uuid.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attribute_uuid: Option<String>,
    /// MISP threat level of the event.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub threat_level: Option<ThreatLevel>,
    /// Event title.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event_info: Option<String>,
    /// The event's tags.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    /// When this appliance first held the event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<u64>,
    /// The indicator as listed (a hit on `x.evil.example` may come from `evil.example`).
    pub indicator: String,
}

impl SourceSet {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers (or updates) an event and returns its index; its title and
    /// tags are cleaned here, where every source's events come in.
    pub fn event(&mut self, mut info: EventInfo) -> u32 {
        info.info = clean_text(&info.info, MAX_INFO);
        info.tags = clean_tags(info.tags.iter().map(String::as_str));
        if let Some(&i) = self.event_index.get(&info.uuid) {
            let slot = &mut self.events[i as usize];
            // Keep what we knew if the newer record lacks it (attribute searches
            // do not carry the threat level).
            let threat = info.threat_level.or(slot.threat_level);
            let tags = if info.tags.is_empty() {
                std::mem::take(&mut slot.tags)
            } else {
                info.tags.clone()
            };
            let seen = match (slot.seen, info.seen) {
                (0, s) | (s, 0) => s,
                (a, b) => a.min(b),
            };
            *slot = EventInfo {
                threat_level: threat,
                tags,
                seen,
                ..info
            };
            return i;
        }
        let i = u32::try_from(self.events.len()).unwrap_or(u32::MAX);
        self.event_index.insert(info.uuid.clone(), i);
        self.events.push(info);
        i
    }

    /// Registers `events` (in order, as indexed by the entries) and forgets
    /// event references that point nowhere. Used when loading the store.
    pub fn with_events(mut self, events: Vec<EventInfo>) -> SourceSet {
        for ev in events {
            self.event(ev);
        }
        let n = self.events.len() as u32;
        for o in &mut self.origins {
            if o.event != NONE && o.event >= n {
                o.event = NONE;
            }
        }
        self.index();
        self
    }

    /// Looks an event up by uuid.
    pub fn event_by_uuid(&self, uuid: &str) -> Option<&EventInfo> {
        self.event_index
            .get(uuid)
            .map(|&i| &self.events[i as usize])
    }

    /// Stamps events not seen before with when they were first held: the time
    /// `earlier` knows for the uuid (a previous set of the source), else `now`.
    pub fn stamp_seen(&mut self, earlier: impl Fn(&str) -> Option<u64>, now: u64) {
        for ev in &mut self.events {
            if ev.seen == 0 {
                ev.seen = earlier(&ev.uuid).filter(|t| *t > 0).unwrap_or(now);
            }
        }
    }

    /// Sets the tags of a known event.
    pub fn set_tags(&mut self, uuid: &str, tags: Vec<String>) {
        if let Some(&i) = self.event_index.get(uuid) {
            self.events[i as usize].tags = tags;
        }
    }

    /// Sets the threat level of a known event.
    pub fn set_threat_level(&mut self, uuid: &str, level: ThreatLevel) {
        if let Some(&i) = self.event_index.get(uuid) {
            self.events[i as usize].threat_level = Some(level);
        }
    }

    /// All events.
    pub fn events(&self) -> &[EventInfo] {
        &self.events
    }

    /// Adds an indicator.
    pub fn push(&mut self, ioc: Ioc, event: Option<u32>, attribute: Option<&str>) {
        let ioc = match ioc {
            Ioc::Domain(d) => Ioc::Domain(d.packed(&mut self.names)),
            other => other,
        };
        let attribute = match attribute {
            Some(a) => {
                // Composite attributes (domain|ip) add two entries for one uuid in a row.
                if self.attributes.last().is_some_and(|l| &**l == a) {
                    (self.attributes.len() - 1) as u32
                } else {
                    self.attributes.push(a.into());
                    (self.attributes.len() - 1) as u32
                }
            }
            None => NONE,
        };
        let origin = Origin {
            event: event.unwrap_or(NONE),
            attribute,
        };
        if origin != Origin::UNKNOWN || !self.origins.is_empty() {
            // The first origin gives the entries before it theirs (none).
            self.origins.resize(self.iocs.len(), Origin::UNKNOWN);
            self.origins.push(origin);
        }
        self.iocs.push(ioc);
        self.sorted = false;
    }

    fn origin(&self, i: usize) -> Origin {
        self.origins.get(i).copied().unwrap_or(Origin::UNKNOWN)
    }

    /// The MISP attribute uuid of an entry of this set.
    pub fn attribute_of(&self, e: Entry) -> Option<&str> {
        self.attributes
            .get(e.origin.attribute as usize)
            .map(|a| &**a)
    }

    /// All entries.
    pub fn entries(&self) -> impl ExactSizeIterator<Item = Entry<'_>> + '_ {
        self.iocs.iter().enumerate().map(|(i, ioc)| Entry {
            ioc,
            origin: self.origin(i),
        })
    }

    /// The indicators alone.
    pub fn iocs(&self) -> &[Ioc] {
        &self.iocs
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.iocs.len()
    }

    /// True when the source contributes nothing.
    pub fn is_empty(&self) -> bool {
        self.iocs.is_empty()
    }

    /// How many entries [`Self::remove_attributes`] and [`Self::remove_events`]
    /// with these uuids would take out, without taking them.
    pub fn count_removed(&self, attributes: &HashSet<String>, events: &HashSet<String>) -> usize {
        let gone: HashSet<u32> = events
            .iter()
            .filter_map(|u| self.event_index.get(u).copied())
            .collect();
        self.origins
            .iter()
            .filter(|o| {
                gone.contains(&o.event)
                    || self
                        .attributes
                        .get(o.attribute as usize)
                        .is_some_and(|u| attributes.contains(&**u))
            })
            .count()
    }

    /// Keeps the entries whose origin `keep` approves, in order.
    fn retain_origins(&mut self, keep: impl Fn(Origin) -> bool) {
        if self.origins.is_empty() {
            return; // nothing came from an event or attribute
        }
        let mut kept = 0;
        for i in 0..self.origins.len() {
            if keep(self.origins[i]) {
                self.origins.swap(kept, i);
                self.iocs.swap(kept, i);
                kept += 1;
            }
        }
        self.origins.truncate(kept);
        self.iocs.truncate(kept);
    }

    /// Keeps the first `n` entries (in the order pulled) and forgets the
    /// events and attributes only the others referred to.
    pub fn truncate(&mut self, n: usize) {
        if n < self.iocs.len() {
            self.iocs.truncate(n);
            self.origins.truncate(n);
            self.compact_events();
            self.compact_attributes();
        }
    }

    /// Drops every entry of the given attribute uuids (MISP incremental updates).
    pub fn remove_attributes(&mut self, uuids: &HashSet<String>) {
        if uuids.is_empty() {
            return;
        }
        let attributes = std::mem::take(&mut self.attributes);
        self.retain_origins(|o| {
            attributes
                .get(o.attribute as usize)
                .is_none_or(|u| !uuids.contains(&**u))
        });
        self.attributes = attributes;
        self.compact_attributes();
    }

    /// Drops attribute uuids no entry refers to any more.
    fn compact_attributes(&mut self) {
        let mut remap = vec![NONE; self.attributes.len()];
        let mut kept: Vec<Box<str>> = Vec::new();
        for o in &mut self.origins {
            if o.attribute == NONE {
                continue;
            }
            let old = o.attribute as usize;
            if remap[old] == NONE {
                remap[old] = kept.len() as u32;
                kept.push(std::mem::take(&mut self.attributes[old]));
            }
            o.attribute = remap[old];
        }
        self.attributes = kept;
    }

    /// Drops every entry of the given event uuids (feed events that changed or left).
    pub fn remove_events(&mut self, event_uuids: &HashSet<String>) {
        if event_uuids.is_empty() {
            return;
        }
        let gone: HashSet<u32> = event_uuids
            .iter()
            .filter_map(|u| self.event_index.get(u).copied())
            .collect();
        self.retain_origins(|o| !gone.contains(&o.event));
        self.compact_events();
        self.compact_attributes();
    }

    /// Removes events no entry refers to and renumbers the rest.
    pub fn compact_events(&mut self) {
        let used: HashSet<u32> = self
            .origins
            .iter()
            .map(|o| o.event)
            .filter(|&e| e != NONE)
            .collect();
        if used.len() == self.events.len() {
            return;
        }
        let mut remap = vec![None; self.events.len()];
        let mut kept = Vec::with_capacity(used.len());
        for (i, ev) in std::mem::take(&mut self.events).into_iter().enumerate() {
            if used.contains(&(i as u32)) {
                remap[i] = Some(kept.len() as u32);
                kept.push(ev);
            }
        }
        for o in &mut self.origins {
            o.event = remap
                .get(o.event as usize)
                .copied()
                .flatten()
                .unwrap_or(NONE);
        }
        self.event_index = kept
            .iter()
            .enumerate()
            .map(|(i, ev)| (ev.uuid.clone(), i as u32))
            .collect();
        self.events = kept;
    }

    /// Provenance of an entry of this source.
    pub fn provenance(&self, source: &str, entry: Entry) -> Provenance {
        let ev = entry.event().map(|i| &self.events[i as usize]);
        Provenance {
            source: source.to_string(),
            event_uuid: ev.map(|e| e.uuid.clone()),
            event_id: ev.and_then(|e| e.id),
            attribute_uuid: self.attribute_of(entry).map(str::to_string),
            threat_level: ev.and_then(|e| e.threat_level),
            event_info: ev.map(|e| e.info.clone()),
            tags: ev.map(|e| e.tags.clone()).unwrap_or_default(),
            since: ev.map(|e| e.seen).filter(|t| *t > 0),
            indicator: entry.ioc.to_string(),
        }
    }
}

mod effective;
mod lookup;
pub use effective::{
    Allowlist, Dropped, Effective, ExpandLimits, Guard, WideNet, BUILTIN_ALLOW, MAX_EXCEPTIONS,
    MAX_WIDE_NETS, MIN_WIDE_V4_PREFIX, MIN_WIDE_V6_PREFIX,
};
pub use lookup::Index;

#[cfg(test)]
mod tests;
