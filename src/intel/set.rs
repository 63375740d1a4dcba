//! The IoC set: what each source contributed, with provenance, and the
//! effective blocklist after the allowlist.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use super::ioc::{Domain, Ioc, Md5, Sha256};
use super::warninglist::{Verdict, Warninglists};

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

/// Marks "no event" / "no attribute" in an [`Entry`] (keeps entries at 32 bytes:
/// a million-IoC list must fit a Pi's memory).
const NONE: u32 = u32::MAX;

/// One indicator with where it came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// The indicator.
    pub ioc: Ioc,
    event: u32,
    attribute: u32,
}

impl Entry {
    /// Index into the source's events, if it came from an event.
    pub fn event(&self) -> Option<u32> {
        (self.event != NONE).then_some(self.event)
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
    entries: Vec<Entry>,
    sorted: bool,
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
        for e in &mut self.entries {
            if e.event != NONE && e.event >= n {
                e.event = NONE;
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
        self.entries.push(Entry {
            ioc,
            event: event.unwrap_or(NONE),
            attribute,
        });
        self.sorted = false;
    }

    /// The MISP attribute uuid of an entry of this set.
    pub fn attribute_of(&self, e: &Entry) -> Option<&str> {
        self.attributes.get(e.attribute as usize).map(|a| &**a)
    }

    /// All entries.
    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when the source contributes nothing.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// How many entries [`Self::remove_attributes`] and [`Self::remove_events`]
    /// with these uuids would take out, without taking them.
    pub fn count_removed(&self, attributes: &HashSet<String>, events: &HashSet<String>) -> usize {
        let gone: HashSet<u32> = events
            .iter()
            .filter_map(|u| self.event_index.get(u).copied())
            .collect();
        self.entries
            .iter()
            .filter(|e| {
                e.event().is_some_and(|i| gone.contains(&i))
                    || self
                        .attributes
                        .get(e.attribute as usize)
                        .is_some_and(|u| attributes.contains(&**u))
            })
            .count()
    }

    /// Keeps the first `n` entries (in the order pulled) and forgets the
    /// events and attributes only the others referred to.
    pub fn truncate(&mut self, n: usize) {
        if n < self.entries.len() {
            self.entries.truncate(n);
            self.compact_events();
            self.compact_attributes();
        }
    }

    /// Drops every entry of the given attribute uuids (MISP incremental updates).
    pub fn remove_attributes(&mut self, uuids: &HashSet<String>) {
        if uuids.is_empty() {
            return;
        }
        let attributes = &self.attributes;
        self.entries.retain(|e| {
            attributes
                .get(e.attribute as usize)
                .is_none_or(|u| !uuids.contains(&**u))
        });
        self.compact_attributes();
    }

    /// Drops attribute uuids no entry refers to any more.
    fn compact_attributes(&mut self) {
        let mut remap = vec![NONE; self.attributes.len()];
        let mut kept: Vec<Box<str>> = Vec::new();
        for e in &mut self.entries {
            if e.attribute == NONE {
                continue;
            }
            let old = e.attribute as usize;
            if remap[old] == NONE {
                remap[old] = kept.len() as u32;
                kept.push(std::mem::take(&mut self.attributes[old]));
            }
            e.attribute = remap[old];
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
        self.entries
            .retain(|e| e.event().is_none_or(|i| !gone.contains(&i)));
        self.compact_events();
        self.compact_attributes();
    }

    /// Removes events no entry refers to and renumbers the rest.
    pub fn compact_events(&mut self) {
        let used: HashSet<u32> = self.entries.iter().filter_map(Entry::event).collect();
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
        for e in &mut self.entries {
            e.event = e.event().and_then(|i| remap[i as usize]).unwrap_or(NONE);
        }
        self.event_index = kept
            .iter()
            .enumerate()
            .map(|(i, ev)| (ev.uuid.clone(), i as u32))
            .collect();
        self.events = kept;
    }

    /// Provenance of an entry of this source.
    pub fn provenance(&self, source: &str, entry: &Entry) -> Provenance {
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

/// What may never be blocked: configured networks and domains plus, by default,
/// the special-purpose ranges a home network lives in.
#[derive(Clone, Debug, Default)]
pub struct Allowlist {
    nets: Vec<IpNet>,
    domains: Vec<Domain>,
}

/// Ranges that are never a remote attacker from a home's point of view:
/// blocking them would cut the LAN, the gateway or multicast discovery.
pub const BUILTIN_ALLOW: &[&str] = &[
    "0.0.0.0/8",
    "10.0.0.0/8",
    "100.64.0.0/10",
    "127.0.0.0/8",
    "169.254.0.0/16",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "224.0.0.0/4",
    "240.0.0.0/4",
    "::/128",
    "::1/128",
    "fc00::/7",
    "fe80::/10",
    "ff00::/8",
];

impl Allowlist {
    /// Builds an allowlist.
    pub fn new(nets: Vec<IpNet>, domains: Vec<Domain>, builtin: bool) -> Self {
        let mut nets = nets;
        if builtin {
            nets.extend(BUILTIN_ALLOW.iter().filter_map(|s| s.parse::<IpNet>().ok()));
        }
        Allowlist { nets, domains }
    }

    /// Adds more never-block networks and domains (the owner's own allowances).
    pub fn extend(&mut self, nets: Vec<IpNet>, domains: Vec<Domain>) {
        self.nets.extend(nets);
        self.domains.extend(domains);
    }

    /// True if the address must never be blocked.
    pub fn allows_ip(&self, ip: IpAddr) -> bool {
        self.nets.iter().any(|n| n.contains(&ip))
    }

    /// True if the domain is, or is under, an allowlisted domain.
    pub fn allows_domain(&self, d: &Domain) -> bool {
        self.domains.iter().any(|a| d.is_within(a))
    }

    /// Allowlisted domains (rendered as pass rules so subdomain blocking never catches them).
    pub fn domains(&self) -> &[Domain] {
        &self.domains
    }

    /// True if any allowlisted network overlaps `net`.
    fn overlaps(&self, net: &IpNet) -> bool {
        self.nets.iter().any(|a| a.contains(net) || net.contains(a))
    }
}

/// Limits on expanding networks into single addresses (Suricata datasets hold addresses, not CIDRs).
#[derive(Clone, Copy, Debug)]
pub struct ExpandLimits {
    /// Widest IPv4 network expanded (prefix length); wider ones are refused.
    pub max_v4_prefix: u8,
    /// Widest IPv6 network expanded (prefix length); wider ones are refused.
    pub max_v6_prefix: u8,
}

impl Default for ExpandLimits {
    fn default() -> Self {
        // /20 = 4096 addresses: a hosting range, never a whole provider.
        ExpandLimits {
            max_v4_prefix: 20,
            max_v6_prefix: 116,
        }
    }
}

/// What keeps listed values out of the effective set.
#[derive(Clone, Copy)]
pub struct Guard<'a> {
    /// Never blocked.
    pub allow: &'a Allowlist,
    /// How far networks are expanded.
    pub limits: ExpandLimits,
    /// Warninglists: exempt values are left out, warn values counted.
    pub lists: &'a Warninglists,
}

impl<'a> Guard<'a> {
    /// An allowlist and expansion limits, no warninglists.
    pub fn new(allow: &'a Allowlist, limits: ExpandLimits) -> Self {
        Guard {
            allow,
            limits,
            lists: Warninglists::none(),
        }
    }
}

/// The blocklist Suricata enforces, by kind, sorted and de-duplicated.
///
/// Sorted vectors rather than trees: a million addresses take 4 MB, not 40.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Effective {
    /// IPv4 addresses.
    pub ipv4: Vec<Ipv4Addr>,
    /// IPv6 addresses.
    pub ipv6: Vec<Ipv6Addr>,
    /// Domains (subdomains match too, unless allowlisted).
    pub domains: Vec<Domain>,
    /// File MD5s.
    pub md5: Vec<Md5>,
    /// File SHA-256s.
    pub sha256: Vec<Sha256>,
    /// Networks too wide to expand, enforced as address groups in rules.
    pub wide: Vec<WideNet>,
}

/// A network wider than the expansion limit, with the parts of it that are
/// never blocked (the allowlist's networks, exempt warninglist ranges).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct WideNet {
    /// The listed network.
    pub net: IpNet,
    /// Never-blocked networks inside it.
    pub except: Vec<IpNet>,
}

impl WideNet {
    /// True if `ip` is in the network and in none of its exceptions.
    pub fn contains(&self, ip: IpAddr) -> bool {
        self.net.contains(&ip) && !self.except.iter().any(|e| e.contains(&ip))
    }
}

/// Widest networks enforced at all (as address groups): a /8 or a /16 of
/// IPv6 is a whole provider; anything wider is refused as `too_wide`.
pub const MIN_WIDE_V4_PREFIX: u8 = 8;
/// The IPv6 counterpart of [`MIN_WIDE_V4_PREFIX`].
pub const MIN_WIDE_V6_PREFIX: u8 = 16;
/// Most wide networks enforced (Spamhaus DROP, EDROP and DROPv6 together
/// hold ~1,800); more are refused as `too_wide`.
pub const MAX_WIDE_NETS: usize = 10_000;
/// Most warninglist exceptions kept inside one wide network (a /8 may hold
/// thousands of public resolvers; beyond this many they are blocked with it).
pub const MAX_EXCEPTIONS: usize = 64;

/// Addresses in a network (saturating at 2^128 - 1 for ::/0).
fn size(n: &IpNet) -> u128 {
    let host_bits = u32::from(n.max_prefix_len() - n.prefix_len());
    1u128.checked_shl(host_bits).unwrap_or(u128::MAX)
}

fn sort_dedup<T: Ord>(v: &mut Vec<T>) {
    v.sort_unstable();
    v.dedup();
    v.shrink_to_fit();
}

/// Counts of what did not make it into the effective set, and why.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dropped {
    /// Matched the allowlist (or the gateway/DNS addresses).
    pub allowlisted: u64,
    /// Networks wider than the expansion limit.
    pub too_wide: u64,
    /// Not enforced: on an exempt warninglist, by list.
    #[serde(default)]
    pub warninglisted: BTreeMap<String, u64>,
    /// Enforced, but on a warn warninglist, by list.
    #[serde(default)]
    pub warned: BTreeMap<String, u64>,
}

impl Dropped {
    /// Adds another count (shadow mode builds two sets).
    pub fn merge(&mut self, other: Dropped) {
        self.allowlisted += other.allowlisted;
        self.too_wide += other.too_wide;
        for (k, v) in other.warninglisted {
            *self.warninglisted.entry(k).or_insert(0) += v;
        }
        for (k, v) in other.warned {
            *self.warned.entry(k).or_insert(0) += v;
        }
    }

    /// One line on what the warninglists did, if anything.
    pub fn warninglists_line(&self) -> Option<String> {
        let list = |m: &BTreeMap<String, u64>| {
            let total: u64 = m.values().sum();
            let each: Vec<String> = m.iter().map(|(k, v)| format!("{k} {v}")).collect();
            (total, each.join(", "))
        };
        let mut parts = Vec::new();
        if !self.warninglisted.is_empty() {
            let (n, each) = list(&self.warninglisted);
            parts.push(format!("{n} not enforced ({each})"));
        }
        if !self.warned.is_empty() {
            let (n, each) = list(&self.warned);
            parts.push(format!("{n} enforced on a warn list ({each})"));
        }
        (!parts.is_empty()).then(|| format!("warninglists: {}", parts.join("; ")))
    }

    /// Counts a warninglist verdict; true if the value is to be left out.
    fn judged(&mut self, v: Verdict<'_>) -> bool {
        match v {
            Verdict::Clear => false,
            Verdict::Exempt(name) => {
                *self.warninglisted.entry(name.to_string()).or_insert(0) += 1;
                true
            }
            Verdict::Warn(name) => {
                *self.warned.entry(name.to_string()).or_insert(0) += 1;
                false
            }
        }
    }
}

impl Effective {
    /// Merges all sources, applies the allowlist and expands networks.
    pub fn build<'a>(
        sources: impl IntoIterator<Item = &'a SourceSet>,
        guard: Guard<'_>,
    ) -> (Effective, Dropped) {
        Effective::from_iocs(
            sources
                .into_iter()
                .flat_map(|s| s.entries().iter().map(|e| &e.ioc)),
            guard,
        )
    }

    /// The same from indicators picked one by one (shadow mode splits sources).
    pub fn from_iocs<'a>(
        iocs: impl IntoIterator<Item = &'a Ioc>,
        guard: Guard<'_>,
    ) -> (Effective, Dropped) {
        let mut eff = Effective::default();
        let mut dropped = Dropped::default();
        for ioc in iocs {
            eff.add(ioc, guard, &mut dropped);
        }
        sort_dedup(&mut eff.ipv4);
        sort_dedup(&mut eff.ipv6);
        sort_dedup(&mut eff.domains);
        sort_dedup(&mut eff.md5);
        sort_dedup(&mut eff.sha256);
        sort_dedup(&mut eff.wide);
        (eff, dropped)
    }

    fn add(&mut self, ioc: &Ioc, guard: Guard<'_>, dropped: &mut Dropped) {
        let Guard {
            allow,
            limits,
            lists,
        } = guard;
        match ioc {
            Ioc::Ipv4(a) => {
                if allow.allows_ip(IpAddr::V4(*a)) {
                    dropped.allowlisted += 1;
                } else if !dropped.judged(lists.verdict(ioc)) {
                    self.ipv4.push(*a);
                }
            }
            Ioc::Ipv6(a) => {
                if allow.allows_ip(IpAddr::V6(**a)) {
                    dropped.allowlisted += 1;
                } else if !dropped.judged(lists.verdict(ioc)) {
                    self.ipv6.push(**a);
                }
            }
            Ioc::Net(net) => {
                let (max, min) = match **net {
                    IpNet::V4(_) => (limits.max_v4_prefix, MIN_WIDE_V4_PREFIX),
                    IpNet::V6(_) => (limits.max_v6_prefix, MIN_WIDE_V6_PREFIX),
                };
                if net.prefix_len() < max {
                    if net.prefix_len() < min || self.wide.len() >= MAX_WIDE_NETS {
                        dropped.too_wide += 1;
                    } else {
                        self.add_wide(ioc, net, guard, dropped);
                    }
                    return;
                }
                let check_each = allow.overlaps(net);
                // Addresses of the network one by one only where a list
                // holds some of them; counted once per network.
                let listed = lists.verdict(ioc);
                let anyway = lists.enforced_anyway(ioc);
                let mut exempted = None;
                for host in net.hosts_all() {
                    if check_each && allow.allows_ip(host) {
                        continue;
                    }
                    if listed != Verdict::Clear && !anyway {
                        if let Verdict::Exempt(name) = lists.verdict_ip(host) {
                            exempted = Some(name);
                            continue;
                        }
                    }
                    match host {
                        IpAddr::V4(a) => self.ipv4.push(a),
                        IpAddr::V6(a) => self.ipv6.push(a),
                    };
                }
                if check_each {
                    dropped.allowlisted += 1;
                }
                match (exempted, listed) {
                    (Some(name), _) => {
                        dropped.judged(Verdict::Exempt(name));
                    }
                    (None, Verdict::Warn(_)) if !anyway => {
                        dropped.judged(listed);
                    }
                    _ => {}
                }
            }
            Ioc::Domain(d) => {
                if allow.allows_domain(d) {
                    dropped.allowlisted += 1;
                } else if !dropped.judged(lists.verdict(ioc)) {
                    self.domains.push(d.clone());
                }
            }
            Ioc::Md5(h) => {
                if !dropped.judged(lists.verdict(ioc)) {
                    self.md5.push(h.clone());
                }
            }
            Ioc::Sha256(h) => {
                if !dropped.judged(lists.verdict(ioc)) {
                    self.sha256.push(h.clone());
                }
            }
        }
    }

    /// A wide network with its never-blocked parts cut out; left out when
    /// nothing of it would be blocked.
    fn add_wide(&mut self, ioc: &Ioc, net: &IpNet, guard: Guard<'_>, dropped: &mut Dropped) {
        let Guard { allow, lists, .. } = guard;
        if allow.nets.iter().any(|a| a.contains(net)) {
            dropped.allowlisted += 1;
            return;
        }
        let mut except: Vec<IpNet> = allow
            .nets
            .iter()
            .filter(|a| net.contains(*a))
            .copied()
            .collect();
        let allowed_inside = !except.is_empty();
        if !lists.enforced_anyway(ioc) {
            let (exempt, name) = lists.exempt_within(net);
            if exempt.first() == Some(net) {
                dropped.judged(Verdict::Exempt(name.unwrap_or_default()));
                return;
            }
            if exempt.len() <= MAX_EXCEPTIONS {
                except.extend(exempt);
            }
            if let Verdict::Warn(name) = lists.verdict(ioc) {
                dropped.judged(Verdict::Warn(name));
            }
        }
        // Only the outermost exceptions: one inside another adds nothing.
        except.sort_by_key(|n| (n.network(), n.prefix_len()));
        except.dedup_by(|inner, outer| outer.contains(&*inner));
        let covered: u128 = except.iter().map(size).sum();
        if covered >= size(net) {
            dropped.allowlisted += 1;
            return;
        }
        if allowed_inside {
            dropped.allowlisted += 1;
        }
        self.wide.push(WideNet { net: *net, except });
    }

    /// Removes every value `other` holds (what is enforced need not be shadowed).
    pub fn remove_all(&mut self, other: &Effective) {
        fn minus<T: Ord>(v: &mut Vec<T>, o: &[T]) {
            v.retain(|x| o.binary_search(x).is_err());
        }
        minus(&mut self.ipv4, &other.ipv4);
        minus(&mut self.ipv6, &other.ipv6);
        minus(&mut self.domains, &other.domains);
        minus(&mut self.md5, &other.md5);
        minus(&mut self.sha256, &other.sha256);
        minus(&mut self.wide, &other.wide);
    }

    /// True if `ip` is on the address blocklist.
    pub fn contains_ip(&self, ip: std::net::IpAddr) -> bool {
        let single = match ip {
            std::net::IpAddr::V4(a) => self.ipv4.binary_search(&a).is_ok(),
            std::net::IpAddr::V6(a) => self.ipv6.binary_search(&a).is_ok(),
        };
        single || self.wide.iter().any(|w| w.contains(ip))
    }

    /// Total number of blocked values.
    pub fn len(&self) -> usize {
        self.ipv4.len()
            + self.ipv6.len()
            + self.domains.len()
            + self.md5.len()
            + self.sha256.len()
            + self.wide.len()
    }

    /// True when nothing is blocked.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Every address of a network, network and broadcast included (an attacker's /28
/// uses all of them, unlike a LAN).
trait HostsAll {
    fn hosts_all(&self) -> Box<dyn Iterator<Item = IpAddr>>;
}

impl HostsAll for IpNet {
    fn hosts_all(&self) -> Box<dyn Iterator<Item = IpAddr>> {
        match *self {
            IpNet::V4(n) => {
                let start = u32::from(n.network());
                let end = u32::from(n.broadcast());
                Box::new((start..=end).map(|x| IpAddr::V4(Ipv4Addr::from(x))))
            }
            IpNet::V6(n) => {
                let start = u128::from(n.network());
                let end = u128::from(n.broadcast());
                Box::new((start..=end).map(|x| IpAddr::V6(Ipv6Addr::from(x))))
            }
        }
    }
}

mod lookup;
pub use lookup::Index;

#[cfg(test)]
mod tests;
