//! Newer warninglists from upstream, where the Pi has internet: each chosen
//! list is fetched, checked against the copy in use and written atomically
//! beside the agent's state; anything wrong keeps the copy in use.

use std::path::Path;

use ipnet::IpNet;

use super::{as_net, read_best, ListFile, SUFFIX_LISTS};
use crate::intel::fetch::{Fetch, Location};

/// Where MISP publishes the lists (`<base><name>/list.json`).
pub const UPSTREAM: &str = "https://raw.githubusercontent.com/MISP/misp-warninglists/main/lists/";

/// Shortest IPv4 prefix a refreshed list may hold: a /8 is the largest block
/// ever held by one network (upstream's own widest, Apple's and RFC 1918's),
/// while a `0.0.0.0/0` would exempt every address.
pub const WIDEST_V4: u8 = 8;
/// Shortest IPv6 prefix a refreshed list may hold. Registries hand networks
/// /29s and /32s, and upstream's widest is Akamai's /24: a /20 leaves room
/// for that to grow, and refuses `::/0` and whole registry blocks.
pub const WIDEST_V6: u8 = 20;
/// Most IPv4 addresses one refreshed list may exempt in all (a quarter of
/// the space): 256 /8s pass the per-entry bound and exempt everything. The
/// widest list upstream (vpn-ipv4) covers about 2^28.5.
pub const MOST_V4: u128 = 1 << 30;
/// The same for IPv6 (upstream's widest, vpn-ipv6, covers about 2^106).
pub const MOST_V6: u128 = 1 << 112;
/// Versions up to this are counters (upstream's highest is 27); above it
/// and short of a date, a version is a typo (upstream once published 202000923).
const MAX_COUNTER: u64 = 9_999;
/// How far past this year a dated version may point.
pub const YEARS_AHEAD: i64 = 2;
/// The shipped lists' year: a clock not set yet (a Pi has none of its own)
/// does not make today's versions look like the future.
const FLOOR_YEAR: i64 = 2026;

/// What one refresh did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Report {
    /// Lists written, as `name v3 -> v4`.
    pub updated: Vec<String>,
    /// Lists already current.
    pub current: usize,
    /// Lists kept as they were, with why.
    pub kept: Vec<String>,
    /// Networks wider than [`WIDEST_V4`] or [`WIDEST_V6`] left out of the lists written.
    pub left_out: usize,
}

/// Fetches `names` (and the public-suffix lists) from `upstream`; writes
/// each that passes the checks to `into/<name>/list.json`. `dirs` are where
/// the copies in use are read from, as [`super::Warninglists::load`] reads them.
pub async fn refresh(
    upstream: &Location,
    names: &[String],
    dirs: &[&Path],
    into: &Path,
    fetch: &Fetch,
) -> Report {
    let mut report = Report::default();
    let this_year = year_of(crate::intel::unix_now());
    let all = names
        .iter()
        .map(String::as_str)
        .chain(SUFFIX_LISTS.iter().copied());
    for name in all {
        let current = read_best(dirs, name).ok();
        let fetched = match upstream.join(&format!("{name}/list.json")) {
            Ok(loc) => loc.read(fetch).await.map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        let body = match fetched {
            Ok(b) => b,
            Err(e) => {
                report.kept.push(format!("{name}: {e}"));
                continue;
            }
        };
        match check(name, &body, current.as_ref(), this_year) {
            Ok(None) => report.current += 1,
            Ok(Some(taken)) => {
                let path = into.join(name).join("list.json");
                let written = std::fs::create_dir_all(into.join(name)).and_then(|()| {
                    crate::fsutil::write_atomic(&path, taken.body.as_deref().unwrap_or(&body))
                });
                match written {
                    Ok(()) => {
                        report.left_out += taken.left_out;
                        report.updated.push(taken.line);
                    }
                    Err(e) => report.kept.push(format!("{name}: {}: {e}", path.display())),
                }
            }
            Err(why) => report.kept.push(format!("{name}: {why}")),
        }
    }
    report
}

/// A list that passed the checks.
#[derive(Debug)]
struct Taken {
    /// `name v3 -> v4`, and what was left out.
    line: String,
    /// The body to write when entries were left out (else the one fetched).
    body: Option<Vec<u8>>,
    /// Networks left out.
    left_out: usize,
}

/// `Ok(None)`: nothing newer; `Ok(Some(_))`: take it; `Err(why)`: keep the copy in use.
fn check(
    name: &str,
    body: &[u8],
    current: Option<&ListFile>,
    this_year: i64,
) -> Result<Option<Taken>, String> {
    if body.len() as u64 > super::MAX_FILE {
        return Err("larger than the limit".into());
    }
    let mut new: ListFile =
        serde_json::from_slice(body).map_err(|e| format!("not a warninglist: {e}"))?;
    if new.list.is_empty() {
        return Err("an empty list".into());
    }
    // A copy in use whose own version is absurd (written before this check)
    // must not hold every later one back.
    let sane = current
        .map(|c| c.version)
        .filter(|v| version_problem(*v, None, this_year).is_none());
    if let Some(why) = version_problem(new.version, sane, this_year) {
        return Err(why);
    }
    if let Some(cur) = current {
        if new.kind != cur.kind {
            return Err(format!(
                "type {:?} where the copy in use is {:?}",
                new.kind, cur.kind
            ));
        }
    }
    if sane.is_some_and(|v| new.version <= v) {
        return Ok(None);
    }
    let total = new.list.len();
    new.list
        .retain(|e| !as_net(e.trim().trim_matches('.')).is_some_and(too_wide));
    let left_out = total - new.list.len();
    // A few bad entries cost only themselves; a list mostly made of them is
    // a broken publication, whatever the rest says.
    if left_out * 2 > total {
        return Err(format!(
            "v{}: {left_out} of {total} entries are networks wider than /{WIDEST_V4} (IPv4) or /{WIDEST_V6} (IPv6)",
            new.version
        ));
    }
    if let Some(why) = too_much(&new.list) {
        return Err(format!("v{}: {why}", new.version));
    }
    let line = match current {
        None => format!("{name} v{} (new)", new.version),
        Some(cur) => {
            // A ranking or a range list does not lose half its entries in a
            // week: that is a broken publication, not news.
            if new.list.len() * 2 < cur.list.len() {
                return Err(format!(
                    "v{} holds {} entries where v{} holds {}",
                    new.version,
                    new.list.len(),
                    cur.version,
                    cur.list.len()
                ));
            }
            format!("{name} v{} -> v{}", cur.version, new.version)
        }
    };
    if left_out == 0 {
        return Ok(Some(Taken {
            line,
            body: None,
            left_out,
        }));
    }
    // Rewritten with the rest of upstream's fields, so the copy on disk is
    // the one checked.
    let mut doc: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| format!("not a warninglist: {e}"))?;
    doc["list"] = serde_json::json!(new.list);
    let body = serde_json::to_vec(&doc).map_err(|e| e.to_string())?;
    Ok(Some(Taken {
        line: format!(
            "{line} ({left_out} of {total} entries left out: networks wider than /{WIDEST_V4} or /{WIDEST_V6})"
        ),
        body: Some(body),
        left_out,
    }))
}

/// Why a list's networks exempt too much address space together, if they
/// do (overlaps counted twice: the bound errs towards refusing).
fn too_much(list: &[String]) -> Option<String> {
    let (mut v4, mut v6) = (0u128, 0u128);
    for net in list
        .iter()
        .filter_map(|e| as_net(e.trim().trim_matches('.')))
    {
        match net {
            IpNet::V4(n) => v4 = v4.saturating_add(1 << (32 - u32::from(n.prefix_len()))),
            IpNet::V6(n) => {
                v6 = v6.saturating_add(
                    1u128
                        .checked_shl(128 - u32::from(n.prefix_len()))
                        .unwrap_or(u128::MAX),
                )
            }
        }
    }
    if v4 > MOST_V4 {
        return Some(format!(
            "its networks cover {v4} IPv4 addresses, more than {MOST_V4}"
        ));
    }
    (v6 > MOST_V6).then(|| format!("its networks cover {v6} IPv6 addresses, more than 2^112"))
}

/// Whether a network is wider than a refreshed list may hold.
fn too_wide(net: IpNet) -> bool {
    match net {
        IpNet::V4(n) => n.prefix_len() < WIDEST_V4,
        IpNet::V6(n) => n.prefix_len() < WIDEST_V6,
    }
}

/// What a version is: upstream numbers lists with a counter, a `YYYYMMDD`
/// date or a `YYMMDDHH` hour (the scanner lists).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stamp {
    Counter,
    /// `YYYYMMDD`, with its year.
    Date(i64),
    /// `YYMMDDHH`, with its year.
    Hour(i64),
}

fn is_date(s: Stamp) -> bool {
    matches!(s, Stamp::Date(_))
}

/// What `v` is, if it is any of them.
fn stamp(v: u64) -> Option<Stamp> {
    if v <= MAX_COUNTER {
        return Some(Stamp::Counter);
    }
    if !(10_000_000..100_000_000).contains(&v) {
        return None;
    }
    let day = |m: u64, d: u64| (1..=12).contains(&m) && (1..=31).contains(&d);
    let (y, m, d) = (v / 10_000, v / 100 % 100, v % 100);
    if (2000..=2099).contains(&y) && day(m, d) {
        return Some(Stamp::Date(y as i64));
    }
    let (yy, m, d, h) = (v / 1_000_000, v / 10_000 % 100, v / 100 % 100, v % 100);
    (day(m, d) && h <= 23).then_some(Stamp::Hour(2000 + yy as i64))
}

/// Why `version` cannot be taken (a later one would never look newer), if it cannot.
fn version_problem(version: u64, current: Option<u64>, this_year: i64) -> Option<String> {
    let last = this_year.max(FLOOR_YEAR) + YEARS_AHEAD;
    match stamp(version) {
        None => Some(format!(
            "version {version} is neither a counter nor a date (YYYYMMDD or YYMMDDHH)"
        )),
        Some(Stamp::Date(y) | Stamp::Hour(y)) if y > last => Some(format!(
            "version {version} is dated {y}, more than {YEARS_AHEAD} years ahead"
        )),
        // A YYMMDDHH from 2021 on is above every YYYYMMDD of this century:
        // once taken, the list's next dates would all look older.
        Some(Stamp::Hour(_)) if current.and_then(stamp).is_some_and(is_date) => Some(format!(
            "version {version} is an hour stamp (YYMMDDHH) where the copy in use is dated (YYYYMMDD)"
        )),
        _ => None,
    }
}

/// The calendar year of a Unix time.
fn year_of(unix: u64) -> i64 {
    let days = i64::try_from(unix / 86_400).unwrap_or(i64::MAX / 2);
    crate::civil::civil_from_days(days).0
}

#[cfg(test)]
mod tests;
