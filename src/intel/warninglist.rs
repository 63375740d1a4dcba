//! MISP warninglists applied to every source: the internet's most used
//! sites, public resolvers and cloud ranges that phishing and scanner feeds
//! list by mistake. A value on an "exempt" list is not enforced; one on a
//! "warn" list is enforced and counted, so `explain` can say why it may
//! hurt.
//!
//! Lists are read from MISP's own format (`<dir>/<name>/list.json`), shipped
//! with the appliance. Names under a listed site count as on the list (a
//! top-sites ranking names `google.com`, the family uses `docs.google.com`),
//! except under a public suffix (`blogspot.com`, `web.app`): there every
//! subdomain is someone else's site.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::path::Path;

use ipnet::IpNet;
use serde::Deserialize;

use super::ioc::{Domain, Ioc};

/// Largest list file read (the biggest MISP list, cloudflare-top1m, is ~25 MB).
const MAX_FILE: u64 = 64 * 1024 * 1024;
/// At most this many lists (one bit each in a mask).
pub const MAX_LISTS: usize = 64;
/// The lists that say where public suffixes are (always read when present).
pub const SUFFIX_LISTS: &[&str] = &["second-level-tlds", "tlds"];

/// What a hit on a list does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Not enforced.
    Exempt,
    /// Enforced, counted and explained.
    Warn,
}

/// What the lists say about one value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict<'a> {
    /// On no list (or the owner enforces it anyway).
    Clear,
    /// On this exempt list: not enforced.
    Exempt(&'a str),
    /// On this warn list (and no exempt one): enforced.
    Warn(&'a str),
}

/// One list as MISP ships it.
#[derive(Deserialize)]
struct ListFile {
    name: String,
    #[serde(default)]
    version: u64,
    #[serde(rename = "type")]
    kind: String,
    list: Vec<String>,
}

/// A loaded list, for status and explain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListInfo {
    /// Directory name (`cisco_top10k`).
    pub name: String,
    /// MISP's title for it.
    pub title: String,
    /// MISP's version number of it.
    pub version: u64,
    /// What a hit does.
    pub action: Action,
    /// Entries read.
    pub entries: usize,
}

/// The chosen warninglists, merged for lookups that stay cheap with a
/// million indicators: one hash map for names and hashes, one sorted run
/// of disjoint ranges per address family.
#[derive(Debug, Default)]
pub struct Warninglists {
    lists: Vec<ListInfo>,
    exempt: u64,
    strings: HashMap<Box<str>, u64>,
    v4: Vec<(u32, u32, u64)>,
    v6: Vec<(u128, u128, u64)>,
    suffixes: HashSet<Box<str>>,
    anyway: HashSet<Ioc>,
    /// Lists that could not be used, one line each.
    pub problems: Vec<String>,
}

impl Warninglists {
    /// Reads the chosen lists; a list that cannot be read is a problem
    /// (reported), never a reason to enforce nothing.
    ///
    /// Each list is read from whichever of `dirs` holds its highest version
    /// (the shipped copy, or a newer one a refresh wrote).
    pub fn load(dirs: &[&Path], exempt: &[String], warn: &[String], anyway: &[Ioc]) -> Self {
        let mut w = Warninglists {
            anyway: anyway.iter().cloned().collect(),
            ..Warninglists::default()
        };
        if (!exempt.is_empty() || !warn.is_empty()) && !dirs.iter().any(|d| d.is_dir()) {
            w.problems.push(format!(
                "warninglists: {} is not a directory: no warninglist applies",
                dirs.first()
                    .map(|d| d.display().to_string())
                    .unwrap_or_default()
            ));
            return w;
        }
        let mut v4 = Vec::new();
        let mut v6 = Vec::new();
        let chosen = exempt
            .iter()
            .map(|n| (n, Action::Exempt))
            .chain(warn.iter().map(|n| (n, Action::Warn)));
        for (name, action) in chosen {
            if w.lists.len() == MAX_LISTS {
                w.problems
                    .push(format!("warninglist {name}: more than {MAX_LISTS} lists"));
                continue;
            }
            let file = match read_best(dirs, name) {
                Ok(f) => f,
                Err(e) => {
                    w.problems.push(format!("warninglist {name}: {e}"));
                    continue;
                }
            };
            if !matches!(file.kind.as_str(), "string" | "hostname" | "cidr") {
                w.problems.push(format!(
                    "warninglist {name}: type {:?} is not supported (string, hostname and cidr are)",
                    file.kind
                ));
                continue;
            }
            let bit = 1u64 << w.lists.len();
            if action == Action::Exempt {
                w.exempt |= bit;
            }
            let mut entries = 0;
            for raw in &file.list {
                let e = raw.trim().trim_start_matches('.').trim_end_matches('.');
                if let Some(net) = as_net(e) {
                    match net {
                        IpNet::V4(n) => {
                            v4.push((u32::from(n.network()), u32::from(n.broadcast()), bit))
                        }
                        IpNet::V6(n) => {
                            v6.push((u128::from(n.network()), u128::from(n.broadcast()), bit))
                        }
                    }
                    entries += 1;
                } else if file.kind != "cidr" {
                    if let Some(key) = as_string_key(e) {
                        *w.strings.entry(key).or_insert(0) |= bit;
                        entries += 1;
                    }
                }
            }
            w.lists.push(ListInfo {
                name: name.clone(),
                title: crate::untrusted::clean_text(&file.name, 120),
                version: file.version,
                action,
                entries,
            });
        }
        w.v4 = partition(v4);
        w.v6 = partition(v6);
        for name in SUFFIX_LISTS {
            if let Ok(f) = read_best(dirs, name) {
                w.suffixes.extend(f.list.iter().map(|s| {
                    s.trim()
                        .trim_matches('.')
                        .to_ascii_lowercase()
                        .into_boxed_str()
                }));
            }
        }
        w
    }

    /// No lists at all.
    pub fn none() -> &'static Warninglists {
        static NONE: std::sync::LazyLock<Warninglists> =
            std::sync::LazyLock::new(Warninglists::default);
        &NONE
    }

    /// The lists read.
    pub fn lists(&self) -> &[ListInfo] {
        &self.lists
    }

    /// What the lists say about an indicator (a network: about its own
    /// range; [`Warninglists::verdict_ip`] judges its addresses one by one).
    pub fn verdict(&self, ioc: &Ioc) -> Verdict<'_> {
        if self.lists.is_empty() || self.anyway.contains(ioc) {
            return Verdict::Clear;
        }
        self.judge(self.mask_of(ioc))
    }

    /// What the lists say about one address of an expanded network.
    pub fn verdict_ip(&self, ip: IpAddr) -> Verdict<'_> {
        if self.lists.is_empty() {
            return Verdict::Clear;
        }
        self.judge(match ip {
            IpAddr::V4(a) => lookup(&self.v4, u32::from(a)),
            IpAddr::V6(a) => lookup(&self.v6, u128::from(a)),
        })
    }

    /// Every list an indicator is on, whatever the owner's override (for `explain`).
    pub fn all_on(&self, ioc: &Ioc) -> Vec<&ListInfo> {
        let mask = self.mask_of(ioc);
        self.lists
            .iter()
            .enumerate()
            .filter(|(i, _)| mask & (1 << i) != 0)
            .map(|(_, l)| l)
            .collect()
    }

    fn mask_of(&self, ioc: &Ioc) -> u64 {
        match ioc {
            Ioc::Ipv4(a) => lookup(&self.v4, u32::from(*a)),
            Ioc::Ipv6(a) => lookup(&self.v6, u128::from(**a)),
            Ioc::Net(n) => self.net_mask(n),
            Ioc::Domain(d) => self.domain_mask(d),
            Ioc::Md5(_) | Ioc::Sha256(_) => self
                .strings
                .get(ioc.to_string().as_str())
                .copied()
                .unwrap_or(0),
        }
    }

    /// The parts of `net` on exempt lists, as networks (the whole of it
    /// first if all of it is), with the first such list's name.
    pub fn exempt_within(&self, net: &IpNet) -> (Vec<IpNet>, Option<&str>) {
        let mut out = Vec::new();
        let mut name = None;
        let mut note = |mask: u64| {
            if name.is_none() {
                name = Some(
                    self.lists[(mask & self.exempt).trailing_zeros() as usize]
                        .name
                        .as_str(),
                );
            }
        };
        match net {
            IpNet::V4(n) => {
                let (lo, hi) = (u32::from(n.network()), u32::from(n.broadcast()));
                let first = self.v4.partition_point(|r| r.1 < lo);
                for &(s, e, m) in self.v4[first..].iter().take_while(|r| r.0 <= hi) {
                    if m & self.exempt != 0 {
                        note(m);
                        let (s, e) = (s.max(lo).into(), e.min(hi).into());
                        out.extend(ipnet::Ipv4Subnets::new(s, e, 0).map(IpNet::V4));
                    }
                }
            }
            IpNet::V6(n) => {
                let (lo, hi) = (u128::from(n.network()), u128::from(n.broadcast()));
                let first = self.v6.partition_point(|r| r.1 < lo);
                for &(s, e, m) in self.v6[first..].iter().take_while(|r| r.0 <= hi) {
                    if m & self.exempt != 0 {
                        note(m);
                        let (s, e) = (s.max(lo).into(), e.min(hi).into());
                        out.extend(ipnet::Ipv6Subnets::new(s, e, 0).map(IpNet::V6));
                    }
                }
            }
        }
        (out, name)
    }

    /// True if the owner enforces this value whatever the lists say.
    pub fn enforced_anyway(&self, ioc: &Ioc) -> bool {
        self.anyway.contains(ioc)
    }

    fn judge(&self, mask: u64) -> Verdict<'_> {
        if mask == 0 {
            return Verdict::Clear;
        }
        let pick = |m: u64| self.lists[m.trailing_zeros() as usize].name.as_str();
        if mask & self.exempt != 0 {
            Verdict::Exempt(pick(mask & self.exempt))
        } else {
            Verdict::Warn(pick(mask))
        }
    }

    /// Lists holding the name itself or a parent below the nearest public suffix.
    fn domain_mask(&self, d: &Domain) -> u64 {
        let name = d.as_str();
        let mut mask = self.strings.get(name).copied().unwrap_or(0);
        let mut rest = name;
        while let Some((_, parent)) = rest.split_once('.') {
            if !parent.contains('.') || self.suffixes.contains(parent) {
                break;
            }
            mask |= self.strings.get(parent).copied().unwrap_or(0);
            rest = parent;
        }
        mask
    }

    /// Lists holding any address of the network.
    fn net_mask(&self, net: &IpNet) -> u64 {
        match net {
            IpNet::V4(n) => overlap(&self.v4, u32::from(n.network()), u32::from(n.broadcast())),
            IpNet::V6(n) => overlap(&self.v6, u128::from(n.network()), u128::from(n.broadcast())),
        }
    }
}

/// The copy of a list with the highest version among `dirs` (the first
/// on a tie); the first error when there is none.
fn read_best(dirs: &[&Path], name: &str) -> Result<ListFile, String> {
    let mut best: Option<ListFile> = None;
    let mut first_err = None;
    for dir in dirs {
        match read(dir, name) {
            Ok(f) if best.as_ref().is_none_or(|b| f.version > b.version) => best = Some(f),
            Ok(_) => {}
            Err(e) => {
                first_err.get_or_insert(e);
            }
        }
    }
    best.ok_or_else(|| first_err.unwrap_or_else(|| format!("{name}: no directory to read from")))
}

fn read(dir: &Path, name: &str) -> Result<ListFile, String> {
    // Names come from the config, which allows [a-z0-9_.-] only; checked
    // again here so a path never leaves `dir`.
    if name.is_empty()
        || name.starts_with('.')
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
    {
        return Err(format!("{name:?} is not a list name"));
    }
    let path = dir.join(name).join("list.json");
    let size = std::fs::metadata(&path)
        .map_err(|e| format!("{}: {e}", path.display()))?
        .len();
    if size > MAX_FILE {
        return Err(format!(
            "{}: larger than {} MiB",
            path.display(),
            MAX_FILE >> 20
        ));
    }
    let bytes = std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    serde_json::from_slice(&bytes).map_err(|e| format!("{}: {e}", path.display()))
}

fn as_net(e: &str) -> Option<IpNet> {
    e.parse::<IpNet>()
        .ok()
        .map(|n| n.trunc())
        .or_else(|| e.parse::<IpAddr>().ok().map(IpNet::from))
}

/// A name or a hash as the map keys it (lower case); other entries (URLs,
/// wildcards) are not values this appliance enforces and are skipped.
fn as_string_key(e: &str) -> Option<Box<str>> {
    let lower = e.to_ascii_lowercase();
    let is_hash = matches!(lower.len(), 32 | 64) && lower.bytes().all(|b| b.is_ascii_hexdigit());
    if is_hash {
        return Some(lower.into_boxed_str());
    }
    Domain::parse(&lower)
        .ok()
        .map(|d| d.as_str().to_string().into_boxed_str())
}

/// Turns possibly overlapping ranges into sorted disjoint ones, each with
/// the union of the lists that cover it.
fn partition<T: Copy + Ord + Bounded>(ranges: Vec<(T, T, u64)>) -> Vec<(T, T, u64)> {
    // A range starts covering at `start` and stops at the point after `end`
    // (none when it reaches the top of the address space).
    let mut points: Vec<(T, bool, u64)> = Vec::with_capacity(ranges.len() * 2);
    for (s, e, bit) in ranges {
        points.push((s, true, bit));
        if let Some(after) = e.next() {
            points.push((after, false, bit));
        }
    }
    points.sort_unstable_by_key(|p| p.0);
    let mut counts = [0u32; MAX_LISTS];
    let mut out = Vec::new();
    let mut open: Option<(T, u64)> = None;
    let mut i = 0;
    while i < points.len() {
        let at = points[i].0;
        while i < points.len() && points[i].0 == at {
            let (_, starts, bit) = points[i];
            let k = bit.trailing_zeros() as usize;
            counts[k] = if starts {
                counts[k] + 1
            } else {
                counts[k].saturating_sub(1)
            };
            i += 1;
        }
        let mask = (0..MAX_LISTS)
            .filter(|k| counts[*k] > 0)
            .fold(0u64, |m, k| m | 1 << k);
        if let Some((start, m)) = open.take() {
            // `at` is past `start`: positions only grow.
            if let Some(before) = at.prev() {
                out.push((start, before, m));
            }
        }
        if mask != 0 {
            open = Some((at, mask));
        }
    }
    if let Some((start, m)) = open {
        out.push((start, T::MAX_VALUE, m));
    }
    out
}

/// Integer address types.
trait Bounded: Sized {
    const MAX_VALUE: Self;
    fn next(self) -> Option<Self>;
    fn prev(self) -> Option<Self>;
}

impl Bounded for u32 {
    const MAX_VALUE: Self = u32::MAX;
    fn next(self) -> Option<Self> {
        self.checked_add(1)
    }
    fn prev(self) -> Option<Self> {
        self.checked_sub(1)
    }
}

impl Bounded for u128 {
    const MAX_VALUE: Self = u128::MAX;
    fn next(self) -> Option<Self> {
        self.checked_add(1)
    }
    fn prev(self) -> Option<Self> {
        self.checked_sub(1)
    }
}

fn lookup<T: Copy + Ord>(ranges: &[(T, T, u64)], at: T) -> u64 {
    let i = ranges.partition_point(|r| r.0 <= at);
    match i.checked_sub(1).map(|i| ranges[i]) {
        Some((_, end, mask)) if at <= end => mask,
        _ => 0,
    }
}

fn overlap<T: Copy + Ord>(ranges: &[(T, T, u64)], start: T, end: T) -> u64 {
    let first = ranges.partition_point(|r| r.1 < start);
    ranges[first..]
        .iter()
        .take_while(|r| r.0 <= end)
        .fold(0, |m, r| m | r.2)
}

pub mod refresh;

#[cfg(test)]
mod tests;
