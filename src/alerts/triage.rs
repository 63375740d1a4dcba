//! Triage, a pure core: alerts in, incidents out. A scan or a chatty infected
//! device makes one incident with a count, not thousands: alerts are grouped by
//! (signature, remote endpoint, local device) while they keep coming within a
//! window. An incident is high when Suricata says severity 1, or when the IoC
//! behind a dataset hit comes from a MISP event of threat level High. A
//! signature that carries ET's `signature_severity` is judged by it instead
//! (Critical and Major are high, Minor and Informational are not): Suricata's
//! severity comes from the classtype, and a mere policy notice has priority 1.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Duration;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use super::eve::Alert;
use crate::devices::Tag;
use crate::intel::set::{Provenance, BUILTIN_ALLOW};

/// Triage settings.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Alerts of one key further apart than this start a new incident.
    pub window: Duration,
    /// Suricata severities at or below this are high (1 = only the highest).
    pub high_severity: u8,
    /// MISP threat levels that make a hit high (1 = High).
    pub high_threat_levels: Vec<u8>,
    /// Networks of the home's own devices (to tell local from remote).
    pub home: Vec<IpNet>,
    /// Most incidents tracked at once; the least recently seen go first.
    pub max_open: usize,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            window: Duration::from_secs(600),
            high_severity: 1,
            high_threat_levels: vec![1],
            home: BUILTIN_ALLOW
                .iter()
                .filter_map(|s| s.parse().ok())
                .collect(),
            max_open: 10_000,
        }
    }
}

/// What groups alerts into one incident: what was hit, the remote, the device.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Key {
    hit: Hit,
    remote: String,
    local: IpAddr,
}

/// What an alert says was hit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Hit {
    /// A listed indicator (the remote is it, or holds it), whichever of our
    /// rules saw it: a DNS query, a TLS SNI and an HTTP Host for one name
    /// are one incident, not one per rule.
    Listed,
    /// A listed indicator still observed (shadow mode): traffic that passed,
    /// a finding apart from the blocks that come once it is enforced.
    Observed,
    /// Someone else's rule: each signature is its own finding.
    Rule(u32),
}

impl Hit {
    fn of(listed: bool, observed: bool, sid: u32) -> Hit {
        match (listed, observed) {
            (true, true) => Hit::Observed,
            (true, false) => Hit::Listed,
            (false, _) => Hit::Rule(sid),
        }
    }

    /// Its part of an incident's id.
    fn label(self) -> String {
        match self {
            Hit::Listed => "listed".into(),
            Hit::Observed => "observed".into(),
            // As before hits had kinds: a rule's incidents keep their ids across the upgrade.
            Hit::Rule(sid) => sid.to_string(),
        }
    }
}

/// One incident: many alerts between one device and one remote, for one
/// listed indicator (whichever of our rules fired) or one signature of others.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Incident {
    /// Stable id (also the idempotency key of every action taken on it).
    pub id: String,
    /// The hit is a listed indicator (one of our rules), not someone else's signature.
    #[serde(default)]
    pub listed: bool,
    /// The listed indicator is observed (shadow mode): the traffic passed.
    #[serde(default)]
    pub observed: bool,
    /// Signature id (the first alert's).
    pub sid: u32,
    /// Signature text.
    pub signature: String,
    /// Classification.
    pub category: String,
    /// The remote endpoint: the listed name for a domain hit, else the address.
    pub remote: String,
    /// The remote address.
    pub remote_ip: IpAddr,
    /// The home device.
    pub local: IpAddr,
    /// Lowest (most severe) Suricata severity seen.
    pub severity: u8,
    /// High severity (see the module docs).
    pub high: bool,
    /// Suricata blocked at least one of the alerts.
    pub blocked: bool,
    /// First alert (seconds since the epoch).
    pub first_seen: i64,
    /// Last alert.
    pub last_seen: i64,
    /// Alerts so far.
    pub count: u64,
    /// The IoC behind a dataset hit, with its MISP event and attribute.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ioc: Option<Provenance>,
    /// The home device by name, where the inventory knows its address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<Tag>,
    /// The kind of listed indicator our rule matched; none for someone else's rule.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub matched: Option<Matched>,
    /// The remote side's port (the first alert's), where the protocol has ports.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote_port: Option<u16>,
    /// ET's `signature_severity` of someone else's signature (Critical,
    /// Major, Minor, Informational), where the rule carries one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature_severity: Option<String>,
}

/// ET severities that make a signature's incident high.
pub const HIGH_ET_SEVERITIES: &[&str] = &["Critical", "Major"];

/// The kind of listed indicator one of our rules matched: what was listed is
/// the remote address itself only for [`Matched::Address`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Matched {
    /// The remote address.
    Address,
    /// A network the remote address is in.
    Network,
    /// A name the device looked up or connected to (DNS query, TLS SNI, HTTP
    /// Host): the address is the resolver or whichever server it chose.
    Name,
    /// A file's hash: the address is where the file came from.
    Hash,
}

impl Matched {
    /// From a rule's `homewarden_kind` (shadow rules match the same kinds).
    pub fn of_kind(kind: &str) -> Option<Matched> {
        match kind.strip_prefix("shadow-").unwrap_or(kind) {
            "ipv4" | "ipv6" => Some(Matched::Address),
            "net" => Some(Matched::Network),
            "domain" => Some(Matched::Name),
            "md5" | "sha256" => Some(Matched::Hash),
            _ => None,
        }
    }
}

/// What one alert did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// It opened an incident.
    New(Incident),
    /// It was counted into an open one.
    Counted(Incident),
}

/// The triage state: open incidents.
#[derive(Debug, Default)]
pub struct Triage {
    settings: Settings,
    open: HashMap<Key, Incident>,
    /// Incidents dropped to stay within `max_open`.
    pub evicted: u64,
}

impl Triage {
    /// An empty triage.
    pub fn new(settings: Settings) -> Triage {
        Triage {
            settings,
            open: HashMap::new(),
            evicted: 0,
        }
    }

    /// Takes one alert; `lookup` traces a value (address or name) to the IoC behind it.
    pub fn ingest(&mut self, a: &Alert, lookup: &dyn Fn(&str) -> Option<Provenance>) -> Outcome {
        self.ingest_with(a, lookup, &|_| None)
    }

    /// [`Triage::ingest`], naming the home device of a new incident by `device`.
    pub fn ingest_with(
        &mut self,
        a: &Alert,
        lookup: &dyn Fn(&str) -> Option<Provenance>,
        device: &dyn Fn(IpAddr) -> Option<Tag>,
    ) -> Outcome {
        let (local, remote_ip, remote_port) = self.sides(a);
        let kind = a.metadata.get("homewarden_kind");
        let domain_rule =
            kind.is_some_and(|k| k.iter().any(|v| v == "domain" || v == "shadow-domain"));
        // Shadow mode's rules observe: their hits are worth a look, not a page.
        let shadow_rule = kind.is_some_and(|k| k.iter().any(|v| v.starts_with("shadow-")));
        let remote = match (&a.hostname, domain_rule) {
            (Some(h), true) => name_or_opaque(h),
            _ => remote_ip.to_string(),
        };
        let listed = kind.is_some();
        let et_severity = (!listed)
            .then(|| a.metadata.get("signature_severity")?.first().cloned())
            .flatten();
        // ET's word where a signature carries it; Suricata's severity else.
        let high_alert = match &et_severity {
            Some(s) => HIGH_ET_SEVERITIES.contains(&s.as_str()),
            None => a.severity <= self.settings.high_severity,
        };
        let key = Key {
            hit: Hit::of(listed, shadow_rule, a.sid),
            remote,
            local,
        };
        let window = self.settings.window.as_secs() as i64;
        if let Some(inc) = self.open.get_mut(&key) {
            if a.time - inc.last_seen <= window {
                inc.count += 1;
                inc.last_seen = inc.last_seen.max(a.time);
                inc.severity = inc.severity.min(a.severity);
                inc.blocked |= a.action == "blocked";
                inc.high |= !shadow_rule && high_alert;
                return Outcome::Counted(inc.clone());
            }
        }
        let ioc = if listed { lookup(&key.remote) } else { None };
        let high = !shadow_rule
            && (high_alert
                || ioc
                    .as_ref()
                    .and_then(|p| p.threat_level)
                    .is_some_and(|t| self.settings.high_threat_levels.contains(&t)));
        let inc = Incident {
            id: incident_id(&key, a.time),
            listed,
            observed: listed && shadow_rule,
            sid: a.sid,
            signature: a.signature.clone(),
            category: a.category.clone(),
            remote: key.remote.clone(),
            remote_ip,
            local,
            severity: a.severity,
            high,
            blocked: a.action == "blocked",
            first_seen: a.time,
            last_seen: a.time,
            count: 1,
            ioc,
            device: device(local),
            matched: kind.and_then(|k| k.iter().find_map(|k| Matched::of_kind(k))),
            remote_port,
            signature_severity: et_severity,
        };
        if self.open.len() >= self.settings.max_open && !self.open.contains_key(&key) {
            self.make_room(a.time);
        }
        self.open.insert(key, inc.clone());
        Outcome::New(inc)
    }

    /// Closes incidents quiet for longer than the window; returns them.
    pub fn expire(&mut self, now: i64) -> Vec<Incident> {
        let window = self.settings.window.as_secs() as i64;
        let mut closed = Vec::new();
        self.open.retain(|_, inc| {
            let keep = now - inc.last_seen <= window;
            if !keep {
                closed.push(inc.clone());
            }
            keep
        });
        closed
    }

    /// Open incidents.
    pub fn open(&self) -> impl Iterator<Item = &Incident> {
        self.open.values()
    }

    /// Takes back incidents saved before a restart, so alerts that keep coming
    /// count into them instead of opening (and reporting) new ones.
    pub fn restore(&mut self, incidents: Vec<Incident>) {
        for inc in incidents {
            let key = Key {
                hit: Hit::of(inc.listed, inc.observed, inc.sid),
                remote: inc.remote.clone(),
                local: inc.local,
            };
            self.open.insert(key, inc);
        }
    }

    /// Expires, then drops the least recently seen tenth: a storm of distinct keys
    /// costs one sort per many alerts, not a scan per alert.
    fn make_room(&mut self, now: i64) {
        self.expire(now);
        if self.open.len() < self.settings.max_open {
            return;
        }
        let mut seen: Vec<i64> = self.open.values().map(|i| i.last_seen).collect();
        let cut = seen.len() / 10;
        let (_, threshold, _) = seen.select_nth_unstable(cut);
        let threshold = *threshold;
        let before = self.open.len();
        self.open.retain(|_, i| i.last_seen > threshold);
        self.evicted += (before - self.open.len()) as u64;
    }

    /// Which side is the home device: the one in a home network (the source
    /// if both or neither are). Returns it, the remote and the remote's port.
    fn sides(&self, a: &Alert) -> (IpAddr, IpAddr, Option<u16>) {
        let home = |ip: &IpAddr| self.settings.home.iter().any(|n| n.contains(ip));
        if home(&a.dst) && !home(&a.src) {
            (a.dst, a.src, a.src_port)
        } else {
            (a.src, a.dst, a.dst_port)
        }
    }
}

impl Incident {
    /// The home device as a person reads it: its name and address, or the address.
    pub fn device_shown(&self) -> String {
        match &self.device {
            Some(t) => format!("{} ({})", t.name, self.local),
            None => self.local.to_string(),
        }
    }

    /// A UUID derived from the id: the MISP event of this incident, whoever creates it and however often.
    pub fn uuid(&self) -> String {
        let a = fnv1a(0xcbf2_9ce4_8422_2325, &self.id);
        let b = fnv1a(0x84222325_cbf29ce4, &self.id);
        let mut bytes = [0u8; 16];
        bytes[..8].copy_from_slice(&a.to_be_bytes());
        bytes[8..].copy_from_slice(&b.to_be_bytes());
        // RFC 9562 version 8 (custom) and variant bits: a well-formed UUID that says it is derived.
        bytes[6] = (bytes[6] & 0x0f) | 0x80;
        bytes[8] = (bytes[8] & 0x3f) | 0x80;
        let h = crate::intel::ioc::hex(&bytes);
        format!(
            "{}-{}-{}-{}-{}",
            &h[..8],
            &h[8..12],
            &h[12..16],
            &h[16..20],
            &h[20..]
        )
    }
}

/// FNV-1a of `text`: a short, stable id (the same on any run and build).
pub(crate) fn fnv1a(seed: u64, text: &str) -> u64 {
    let mut h = seed;
    for b in text.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// `inc-<first seen>-<hash of the key>`: the same alerts give the same id, on any run.
fn incident_id(key: &Key, first_seen: i64) -> String {
    // FNV-1a: stable across runs and builds, unlike std's randomised hasher.
    let h = fnv1a(
        0xcbf2_9ce4_8422_2325,
        &format!("{}|{}|{}", key.hit.label(), key.remote, key.local),
    );
    format!("inc-{first_seen}-{h:016x}")
}

/// A hostname from eve (SNI, Host, DNS query: the device, or whoever
/// controls the traffic, chose it) as an incident shows it: the normalised
/// domain when it is one, else escaped (`\u{..}`, `\\`, `\"`) and clipped
/// to 64 characters, which never parses as a domain, so it can never become
/// a MISP attribute or pass for a name in a mail.
pub fn name_or_opaque(h: &str) -> String {
    match crate::intel::ioc::Domain::parse(h) {
        Ok(d) => d.as_str().to_string(),
        Err(_) => {
            let escaped: String = h.chars().take(64).flat_map(char::escape_default).collect();
            // escape_default leaves a plain one-label name as it is: mark it.
            format!("\"{escaped}\"")
        }
    }
}

#[cfg(test)]
mod tests;
