//! Threat intelligence: sources in, a typed IoC set with provenance out.

pub mod feed;
pub mod fetch;
pub mod ioc;
pub mod list;
pub mod misp;
pub mod set;
pub mod store;
pub mod warninglist;

use std::collections::{BTreeMap, HashSet};
use std::path::Path;

use serde::{Deserialize, Serialize};

use self::ioc::ParseError;
use self::set::{EventInfo, SourceSet};

/// A failure to pull a source. The source's last good set stays in force.
#[derive(Debug, thiserror::Error)]
pub enum IntelError {
    /// Transport failure (DNS, TCP, TLS, timeout).
    #[error("{url}: {message}")]
    Http {
        /// The URL.
        url: String,
        /// The error chain on one line.
        message: String,
    },
    /// The server answered with an error status.
    #[error("{url}: HTTP {status}{}", if body.is_empty() { String::new() } else { format!(": {body}") })]
    Status {
        /// The URL.
        url: String,
        /// The status code.
        status: u16,
        /// Start of the error body, sanitised.
        body: String,
    },
    /// A body we could not understand.
    #[error("{url}: malformed response: {message}")]
    Malformed {
        /// The URL or path.
        url: String,
        /// What was wrong.
        message: String,
    },
    /// A local file problem.
    #[error("{path}: {message}")]
    Io {
        /// The path.
        path: String,
        /// The error.
        message: String,
    },
    /// A body over the size limit.
    #[error("{what}: larger than the {limit_mb} MiB limit (limits.body_mb)")]
    TooLarge {
        /// The URL or file.
        what: String,
        /// The limit.
        limit_mb: usize,
    },
    /// Content that is not the list it should be (HTML, gzip, mostly refused lines).
    #[error("{url}: not a usable list: {message}")]
    Unusable {
        /// The URL or path.
        url: String,
        /// Why.
        message: String,
    },
    /// A missing secret or unusable setting.
    #[error("{0}")]
    Config(String),
}

/// Query parameters that carry a secret when a feed's URL holds one.
const SECRET_PARAMS: &[&str] = &[
    "token",
    "key",
    "apikey",
    "api_key",
    "auth",
    "access_token",
    "secret",
    "password",
    "sig",
];

/// A URL as logs, errors and `explain` show it: a user name, password or
/// secret-looking query parameter (`?token=…`) becomes `***`.
pub fn masked(raw: &str) -> String {
    let Ok(mut url) = url::Url::parse(raw) else {
        return raw.to_string();
    };
    if !url.username().is_empty() || url.password().is_some() {
        let _ = url.set_username("***");
        let _ = url.set_password(None);
    }
    if url.query().is_some() {
        let pairs: Vec<(String, String)> = url
            .query_pairs()
            .map(|(k, v)| {
                let secret = SECRET_PARAMS.iter().any(|p| k.eq_ignore_ascii_case(p));
                (
                    k.into_owned(),
                    if secret { "***".into() } else { v.into_owned() },
                )
            })
            .collect();
        url.query_pairs_mut().clear().extend_pairs(pairs);
    }
    url.to_string()
}

impl IntelError {
    fn http(url: &str, e: reqwest::Error) -> IntelError {
        IntelError::Http {
            url: masked(url),
            // reqwest puts the URL in its message too: once, masked, is enough.
            message: fetch::transport_text(e),
        }
    }

    fn io(path: &Path, e: std::io::Error) -> IntelError {
        IntelError::Io {
            path: path.display().to_string(),
            message: e.to_string(),
        }
    }

    fn malformed(url: impl ToString, e: impl ToString) -> IntelError {
        IntelError::Malformed {
            url: masked(&url.to_string()),
            message: e.to_string(),
        }
    }
}

/// What one successful pull changes in a source's set.
#[derive(Debug)]
pub enum Change {
    /// The pull saw everything: replace the set.
    Replace(SourceSet),
    /// The pull saw only what changed.
    Patch {
        /// Attributes that changed or left (their old entries go).
        remove_attributes: HashSet<String>,
        /// Events that changed or left (their old entries go).
        remove_events: HashSet<String>,
        /// New entries and their events.
        add: SourceSet,
    },
    /// The source says its content is the one the set was taken from.
    Unchanged,
}

impl Change {
    /// Takes no more than `room` entries into the set `old` becomes; returns
    /// how many were left out (the last ones pulled: a list's first lines,
    /// often its strongest, stay).
    pub fn fit(&mut self, old: &SourceSet, room: usize) -> usize {
        let after = self.size_after(old);
        if after <= room {
            return 0;
        }
        let over = after - room;
        match self {
            Change::Replace(set) => {
                set.truncate(room);
                over
            }
            // What the set already holds stays: only additions are refused.
            Change::Patch { add, .. } => {
                let cut = over.min(add.len());
                add.truncate(add.len() - cut);
                cut
            }
            Change::Unchanged => 0,
        }
    }

    /// How many entries `old` would hold after this change (a patch's
    /// additions counted in full: an upper bound where they repeat what stays).
    pub fn size_after(&self, old: &SourceSet) -> usize {
        match self {
            Change::Replace(set) => set.len(),
            Change::Patch {
                remove_attributes,
                remove_events,
                add,
            } => old.len() - old.count_removed(remove_attributes, remove_events) + add.len(),
            Change::Unchanged => old.len(),
        }
    }
}

/// Counters of one pull.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PullStats {
    /// Values seen.
    pub seen: u64,
    /// Values parsed into indicators.
    pub accepted: u64,
    /// Values refused, by reason.
    pub rejected: BTreeMap<String, u64>,
    /// Lines skipped on purpose (a hosts file's localhost lines, a CSV header).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub ignored: u64,
    /// The list format read (`hosts (detected)`), for lists.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<String>,
    /// Indicators not taken: all sources together would have passed
    /// `limits.indicators`.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub over_budget: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl PullStats {
    /// Counts a refused value and logs the first few of a pull.
    pub fn reject(&mut self, source: &str, err: &ParseError) {
        let n = self.rejected.entry(err.label().to_string()).or_insert(0);
        *n += 1;
        let total: u64 = self.rejected.values().sum();
        if total <= 5 {
            tracing::warn!(source, reason = err.label(), "refused value: {err}");
        } else if total == 6 {
            tracing::warn!(
                source,
                "more refused values; see `homewarden status` for counts"
            );
        }
    }
}

/// The result of a pull: the change, its counters and where the source's cursor goes.
#[derive(Debug)]
pub struct Pulled {
    /// What to change.
    pub change: Change,
    /// Counters.
    pub stats: PullStats,
    /// New cursor.
    pub cursor: Cursor,
}

/// Where an incremental source stands.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cursor {
    /// Highest MISP attribute timestamp seen (next pull asks for `>=` it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub misp_timestamp: Option<u64>,
    /// When the last full pull finished (unix seconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_full: Option<u64>,
    /// Next pull asks for events published since this time (unix seconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub publish_since: Option<u64>,
    /// What identified a list's content when it was last taken.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub list: Option<fetch::Validators>,
}

/// Why a pull that would leave `new` of a source's `old` entries is held rather than
/// applied: it loses more than `max_percent` of the set.
pub fn shrink_held(old: usize, new: usize, max_percent: u8) -> Option<String> {
    let gone = old.saturating_sub(new);
    // In u128: no overflow, and exact (a float would round at the edge).
    (gone as u128 * 100 > old as u128 * u128::from(max_percent)).then(|| {
        format!(
            "a pull would leave {new} of {old} entries ({} % gone, more than enforcement.max_shrink {max_percent} %)",
            gone as u128 * 100 / old as u128
        )
    })
}

/// A source's durable state: its set, cursor and last outcome.
#[derive(Clone, Debug, Default)]
pub struct SourceState {
    /// What it contributes: shared, so a pull in the background and the
    /// incidents' provenance index read it without a copy.
    pub set: std::sync::Arc<SourceSet>,
    /// Incremental position.
    pub cursor: Cursor,
    /// Counters of the last successful pull.
    pub stats: PullStats,
    /// Unix time of the last successful pull.
    pub last_ok: Option<u64>,
    /// The last error, if the last attempt failed.
    pub last_error: Option<String>,
}

impl SourceState {
    /// Applies a successful pull.
    pub fn apply(&mut self, pulled: Pulled, now: u64) {
        let unchanged = matches!(pulled.change, Change::Unchanged);
        match pulled.change {
            Change::Replace(mut set) => {
                // A full re-pull replaces the set, not the memory of when events arrived.
                set.stamp_seen(|uuid| self.set.event_by_uuid(uuid).map(|e| e.seen), now);
                set.index();
                self.set = std::sync::Arc::new(set);
            }
            Change::Patch {
                remove_attributes,
                remove_events,
                add,
            } => {
                // Dropped events are gone from the lookup before they are re-added.
                let earlier: std::collections::HashMap<String, u64> = self
                    .set
                    .events()
                    .iter()
                    .map(|e| (e.uuid.clone(), e.seen))
                    .collect();
                // Copied only while a reader (the incidents' index) still holds the old one.
                let set = std::sync::Arc::make_mut(&mut self.set);
                set.remove_attributes(&remove_attributes);
                set.remove_events(&remove_events);
                merge(set, add);
                set.compact_events();
                set.stamp_seen(|uuid| earlier.get(uuid).copied(), now);
                // Incidents trace their hits through it: sorted once here, searched per hit.
                set.index();
            }
            Change::Unchanged => {}
        }
        self.cursor = pulled.cursor;
        // Unchanged: the counters of the pull that made the set stay with it.
        if !unchanged {
            self.stats = pulled.stats;
        }
        self.last_ok = Some(now);
        self.last_error = None;
    }
}

/// Moves the entries of `add` into `into`, renumbering their events.
fn merge(into: &mut SourceSet, add: SourceSet) {
    let remap: Vec<u32> = add.events().iter().map(|e| into.event(e.clone())).collect();
    for e in add.entries() {
        let event = e.event().map(|i| remap[i as usize]);
        into.push(e.ioc.clone(), event, add.attribute_of(e));
    }
}

/// Builds a source set while counting what was refused: the shared core of every source.
pub struct Collector<'a> {
    source: &'a str,
    /// The set being built.
    pub set: SourceSet,
    /// Counters.
    pub stats: PullStats,
}

impl<'a> Collector<'a> {
    /// Starts an empty collection for `source`.
    pub fn new(source: &'a str) -> Self {
        Collector {
            source,
            set: SourceSet::new(),
            stats: PullStats::default(),
        }
    }

    /// Registers an event.
    pub fn event(&mut self, info: EventInfo) -> u32 {
        self.set.event(info)
    }

    /// Parses and adds one value (with its MISP type, if known).
    pub fn value(
        &mut self,
        misp_type: Option<&str>,
        raw: &str,
        event: Option<u32>,
        attribute: Option<&str>,
    ) {
        self.stats.seen += 1;
        let parsed = match misp_type {
            Some(t) => ioc::Ioc::parse_misp(t, raw),
            None => ioc::Ioc::parse_any(raw).map(|i| vec![i]),
        };
        match parsed {
            Ok(iocs) => {
                self.stats.accepted += 1;
                for ioc in iocs {
                    self.set.push(ioc, event, attribute);
                }
            }
            Err(e) => self.stats.reject(self.source, &e),
        }
    }
}

/// Seconds since the epoch.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The first whole second (since the epoch) at least `wait` from now: a peer's
/// `Retry-After` honoured by a clock that counts whole seconds (flooring now
/// would retry up to a second early).
pub fn unix_after(wait: std::time::Duration) -> u64 {
    let at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .saturating_add(wait);
    at.as_secs()
        .saturating_add(u64::from(at.subsec_nanos() > 0))
}

/// Parses MISP's ids and timestamps, which arrive as strings of digits (or numbers).
pub(crate) fn de_num<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        N(u64),
        S(String),
        Null(()),
    }
    Ok(match Option::<Raw>::deserialize(d)? {
        Some(Raw::N(n)) => Some(n),
        Some(Raw::S(s)) => s.trim().parse().ok(),
        _ => None,
    })
}

/// Parses MISP booleans, which arrive as `true`, `1` or `"1"` depending on version and endpoint.
pub(crate) fn de_bool<'de, D: serde::Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        B(bool),
        N(u64),
        S(String),
        Null(()),
    }
    Ok(match Option::<Raw>::deserialize(d)? {
        Some(Raw::B(b)) => b,
        Some(Raw::N(n)) => n != 0,
        Some(Raw::S(s)) => matches!(s.trim(), "1" | "true" | "True"),
        _ => false,
    })
}

#[cfg(test)]
mod tests;
