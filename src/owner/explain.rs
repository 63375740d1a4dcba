//! "Why is this blocked?" in one answer: which sources list a value, with the
//! MISP event and attribute behind each listing, since when, and whatever
//! keeps it from being enforced (an allowlist entry, the gateway, a built-in
//! range, the owner's own allowance, a network too wide). A pure function over
//! the sources' sets, the config and the owner's allowlist, so the daemon and
//! the offline command give the same answer.

use std::net::IpAddr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::config::{Config, Mode, SourceConfig};
use crate::intel::ioc::{Domain, Ioc, ParseError};
use crate::intel::set::{
    Provenance, SourceSet, BUILTIN_ALLOW, MIN_WIDE_V4_PREFIX, MIN_WIDE_V6_PREFIX,
};
use crate::intel::warninglist::{Verdict as ListVerdict, Warninglists};
use crate::owner::allow::LocalAllowlist;
use crate::owner::shadow::{Shadow, Standing};

/// What the appliance does with a value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Listed and enforced: traffic is dropped (or rejected).
    Blocked,
    /// Listed and watched: alerts only (IDS mode).
    Alerted,
    /// Listed, but still observed (shadow mode): alerts only for now.
    Observed,
    /// Listed, but something keeps it from being enforced.
    Overridden,
    /// No source lists it.
    NotListed,
}

/// One source's listing of the value.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Listing {
    /// Source, MISP event and attribute, threat level, tags, since when.
    #[serde(flatten)]
    pub provenance: Provenance,
    /// Where to read more: the event on the MISP instance, or the feed or list.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link: Option<String>,
    /// Why this listing is not enforced, if it is not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_enforced: Option<String>,
    /// Shadow mode: observed until when, or held for the owner.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shadow: Option<Standing>,
}

/// The whole answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Explanation {
    /// The value as understood (a URL's host, a normalised domain or address).
    pub value: String,
    /// What happens to it.
    pub verdict: Verdict,
    /// Every listing, enforced or not.
    pub listings: Vec<Listing>,
    /// What keeps the value itself from ever being blocked.
    pub allowed_by: Vec<String>,
    /// Things worth knowing (warninglists, IDS mode).
    pub notes: Vec<String>,
}

/// A source as `explain` sees it.
pub struct SourceView<'a> {
    /// Its config.
    pub cfg: &'a SourceConfig,
    /// What it currently contributes.
    pub set: &'a SourceSet,
}

/// Explains `value` (an address, a network, a domain, a URL or a hash).
pub fn explain(
    value: &str,
    sources: &[SourceView],
    cfg: &Config,
    local: &LocalAllowlist,
    lists: &Warninglists,
    shadow: &Shadow,
    now: u64,
) -> Result<Explanation, ParseError> {
    let hit = Ioc::parse_any(value)?;
    let allowed_by = guards(&hit, cfg, local);
    let mut listings = Vec::new();
    let mut notes = Vec::new();
    for s in sources {
        let set = s.set;
        for e in set.covering(&hit) {
            let provenance = set.provenance(s.cfg.name(), e);
            let link = link(s.cfg, &provenance);
            let not_enforced = if !allowed_by.is_empty() {
                Some("the value is allowlisted".to_string())
            } else {
                hold_back(e.ioc, &hit, cfg, local)
                    .or_else(|| warninglisted(e.ioc, &hit, cfg, lists, &mut notes))
            };
            let standing = shadow.standing(
                &e.ioc.to_string(),
                s.cfg.shadow(cfg.enforcement.shadow),
                now,
            );
            listings.push(Listing {
                provenance,
                link,
                not_enforced,
                shadow: standing,
            });
        }
    }
    let live = |l: &&Listing| l.not_enforced.is_none();
    let enforced = listings.iter().filter(live).any(|l| l.shadow.is_none());
    let observed = listings.iter().filter(live).any(|l| l.shadow.is_some());
    let verdict = match (
        listings.is_empty(),
        enforced,
        observed,
        cfg.enforcement.mode,
    ) {
        (true, ..) => Verdict::NotListed,
        (false, false, false, _) => Verdict::Overridden,
        (false, false, true, _) => Verdict::Observed,
        (false, true, _, Mode::Ips) => Verdict::Blocked,
        (false, true, _, Mode::Ids) => Verdict::Alerted,
    };
    if cfg.enforcement.mode == Mode::Ids {
        notes.push("IDS mode: listed values raise alerts, traffic is not stopped".to_string());
    }
    let warninglists: Vec<&str> = sources
        .iter()
        .filter_map(|s| match s.cfg {
            SourceConfig::Misp(m) if m.enforce_warninglist => Some(m.name.as_str()),
            _ => None,
        })
        .collect();
    if !warninglists.is_empty() {
        notes.push(format!(
            "MISP applies its warninglists for {} (enforceWarninglist): a value on one never reaches this appliance",
            warninglists.join(", ")
        ));
    }
    Ok(Explanation {
        value: hit.to_string(),
        verdict,
        listings,
        allowed_by,
        notes,
    })
}

/// A listing an exempt warninglist keeps from being enforced; a warn list
/// or the owner's override goes into the notes instead.
fn warninglisted(
    listed: &Ioc,
    hit: &Ioc,
    cfg: &Config,
    lists: &Warninglists,
    notes: &mut Vec<String>,
) -> Option<String> {
    let anyway = lists.enforced_anyway(listed);
    let verdict = match (listed, hit) {
        (Ioc::Net(_), Ioc::Ipv4(a)) if !anyway => lists.verdict_ip(IpAddr::V4(*a)),
        (Ioc::Net(_), Ioc::Ipv6(a)) if !anyway => lists.verdict_ip(IpAddr::V6(**a)),
        _ => lists.verdict(listed),
    };
    let title = |name: &str| {
        lists
            .lists()
            .iter()
            .find(|l| l.name == name)
            .map(|l| format!("{name} ({})", l.title))
            .unwrap_or_else(|| name.to_string())
    };
    let file = cfg.path.display();
    match verdict {
        ListVerdict::Exempt(name) => Some(format!(
            "on warninglist {}: not blocked; to block it anyway add {listed} to warninglists.enforce_anyway in {file}",
            title(name)
        )),
        ListVerdict::Warn(name) => {
            let note = format!(
                "{listed} is on warninglist {}: blocked, but an address there may serve many sites",
                title(name)
            );
            if !notes.contains(&note) {
                notes.push(note);
            }
            None
        }
        ListVerdict::Clear if anyway => {
            let on: Vec<&str> = lists.all_on(listed).iter().map(|l| l.name.as_str()).collect();
            if on.is_empty() {
                return None;
            }
            notes.push(format!(
                "{listed} is on warninglist {}, enforced anyway (warninglists.enforce_anyway in {file})",
                on.join(", ")
            ));
            None
        }
        ListVerdict::Clear => None,
    }
}

/// Why a listing that the value itself does not escape is still not enforced.
fn hold_back(listed: &Ioc, hit: &Ioc, cfg: &Config, local: &LocalAllowlist) -> Option<String> {
    let e = &cfg.enforcement;
    match listed {
        Ioc::Net(n) => {
            let widest = match **n {
                IpNet::V4(_) => MIN_WIDE_V4_PREFIX,
                IpNet::V6(_) => MIN_WIDE_V6_PREFIX,
            };
            if n.prefix_len() < widest {
                return Some(format!(
                    "the network {n} is wider than /{widest}, the widest enforced"
                ));
            }
        }
        Ioc::Domain(_) if listed != hit && !e.match_subdomains => {
            return Some(
                "a parent domain is listed and enforcement.match_subdomains is off".into(),
            );
        }
        Ioc::Domain(d) => {
            // A listed parent domain that is allowed keeps its subdomains too.
            let listed_ioc = Ioc::Domain(d.clone());
            if let Some(g) = guards(&listed_ioc, cfg, local).into_iter().next() {
                return Some(g);
            }
        }
        _ => {}
    }
    None
}

/// Everything that keeps a value from being blocked, in words.
fn guards(hit: &Ioc, cfg: &Config, local: &LocalAllowlist) -> Vec<String> {
    let mut out = Vec::new();
    let file = cfg.path.display();
    if let Some(a) = local.covering(hit) {
        let mut s = format!(
            "allowed by {} on {} (homewarden allow {})",
            a.who,
            crate::alerts::eve::format_timestamp(a.at as i64),
            a.value
        );
        if let Some(u) = a.until {
            s.push_str(&format!(
                " until {}",
                crate::alerts::eve::format_timestamp(u as i64)
            ));
        }
        if let Some(r) = &a.reason {
            s.push_str(&format!(": {r}"));
        }
        out.push(s);
    }
    match hit {
        Ioc::Ipv4(_) | Ioc::Ipv6(_) => {
            let ip: IpAddr = match hit {
                Ioc::Ipv4(a) => IpAddr::V4(*a),
                Ioc::Ipv6(a) => IpAddr::V6(**a),
                _ => return out,
            };
            for c in &cfg.allowlist.cidrs {
                let net = c
                    .parse::<IpNet>()
                    .or_else(|_| c.parse::<IpAddr>().map(IpNet::from));
                if net.is_ok_and(|n| n.contains(&ip)) {
                    out.push(format!("allowlist.cidrs entry {c} in {file}"));
                }
            }
            if cfg.network.gateway.contains(&ip) {
                out.push(format!("the gateway (network.gateway in {file})"));
            }
            if cfg.network.dns.contains(&ip) {
                out.push(format!("a DNS resolver (network.dns in {file})"));
            }
            if cfg.allowlist.builtin {
                if let Some(r) = BUILTIN_ALLOW
                    .iter()
                    .find(|r| r.parse::<IpNet>().is_ok_and(|n| n.contains(&ip)))
                {
                    out.push(format!(
                        "the built-in never-block range {r} (private, local or multicast)"
                    ));
                }
            }
        }
        Ioc::Domain(d) => {
            for a in &cfg.allowlist.domains {
                if Domain::parse(a).is_ok_and(|a| d.is_within(&a)) {
                    out.push(format!("allowlist.domains entry {a} in {file}"));
                }
            }
        }
        _ => {}
    }
    out
}

/// Where a listing can be read about.
fn link(cfg: &SourceConfig, p: &Provenance) -> Option<String> {
    match cfg {
        SourceConfig::Misp(m) => p.event_id.map(|id| {
            format!(
                "{}/events/view/{id}",
                crate::intel::masked(&m.url).trim_end_matches('/')
            )
        }),
        SourceConfig::MispFeed(f) => match (&f.url, &f.path, &p.event_uuid) {
            (Some(u), _, Some(ev)) => Some(format!("{}/{ev}.json", u.trim_end_matches('/'))),
            (_, Some(path), Some(ev)) => {
                Some(path.join(format!("{ev}.json")).display().to_string())
            }
            _ => None,
        },
        SourceConfig::List(l) => l
            .url
            .clone()
            .or_else(|| l.path.as_ref().map(|p| p.display().to_string())),
    }
}

/// The explanation for people.
pub fn render(x: &Explanation) -> String {
    use crate::alerts::eve::format_timestamp;
    use crate::intel::misp::threat_level_name;
    let mut o = format!(
        "{}: {}\n",
        x.value,
        match x.verdict {
            Verdict::Blocked => "BLOCKED",
            Verdict::Alerted => "listed (alerts only, not blocked)",
            Verdict::Observed => "OBSERVED (shadow mode: alerts only until promoted)",
            Verdict::Overridden => "listed but NOT blocked",
            Verdict::NotListed => "not listed by any source",
        }
    );
    for l in &x.listings {
        let p = &l.provenance;
        o.push_str(&format!(
            "  listed as {} by source {}",
            p.indicator, p.source
        ));
        if let Some(info) = &p.event_info {
            o.push_str(&format!(", event \"{info}\""));
        }
        if let Some(id) = p.event_id {
            o.push_str(&format!(" (#{id})"));
        }
        o.push('\n');
        let mut facts = Vec::new();
        if let Some(t) = p.threat_level {
            facts.push(format!("threat level {}", threat_level_name(t)));
        }
        if !p.tags.is_empty() {
            facts.push(format!("tags {}", p.tags.join(", ")));
        }
        if let Some(s) = p.since {
            facts.push(format!("held since {}", format_timestamp(s as i64)));
        }
        if let Some(u) = &p.event_uuid {
            facts.push(format!("event {u}"));
        }
        if let Some(a) = &p.attribute_uuid {
            facts.push(format!("attribute {a}"));
        }
        if !facts.is_empty() {
            o.push_str(&format!("    {}\n", facts.join("; ")));
        }
        if let Some(link) = &l.link {
            o.push_str(&format!("    {link}\n"));
        }
        if let Some(why) = &l.not_enforced {
            o.push_str(&format!("    not enforced: {why}\n"));
        }
        match &l.shadow {
            Some(Standing::Observed { until }) => o.push_str(&format!(
                "    shadow mode: observed (alerts only) until {}\n",
                format_timestamp(*until as i64)
            )),
            Some(Standing::Held(h)) => o.push_str(&format!(
                "    shadow mode: held, alerts only, since {} (do-not-break device) talked to it at {}: allow it or take the device off enforcement.do_not_break\n",
                h.device_shown(),
                format_timestamp(h.at)
            )),
            None => {}
        }
    }
    for a in &x.allowed_by {
        o.push_str(&format!("  never blocked: {a}\n"));
    }
    for n in &x.notes {
        o.push_str(&format!("  note: {n}\n"));
    }
    o
}

#[cfg(test)]
mod tests;
