//! Families of the intel side: indicators held, enforced and refused; pulls.

use std::sync::atomic::AtomicU64;

use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::{Registry, Unit};

use super::{counters, family, gauge, i, kind_label, one, seconds, secs, Labels};
use crate::daemon::agent::{Pulls, Status};

/// Registers this part's families.
pub(super) fn register(r: &mut Registry, status: &Status) {
    let b = &status.blocklist;
    family(
        r,
        "homewarden_indicators_enforced",
        "Indicators in force after the allowlist and the warninglists, by kind",
        [
            ("ipv4", b.ipv4),
            ("ipv6", b.ipv6),
            ("domain", b.domains),
            ("md5", b.md5),
            ("sha256", b.sha256),
            ("network", b.networks),
        ]
        .into_iter()
        .map(|(kind, n)| (one("kind", kind), i(n))),
    );
    gauge(
        r,
        "homewarden_indicator_budget",
        "Most indicators all sources together may hold (limits.indicators)",
        i(status.indicator_budget),
    );
    let d = &status.dropped;
    family(
        r,
        "homewarden_indicators_not_enforced",
        "Indicators held but not enforced, by reason (and warninglist)",
        [
            (one("reason", "allowlisted"), i(d.allowlisted)),
            (one("reason", "too_wide"), i(d.too_wide)),
        ]
        .into_iter()
        .chain(d.warninglisted.iter().map(|(list, n)| {
            (
                vec![
                    ("reason", "warninglisted".to_string()),
                    ("list", list.clone()),
                ],
                i(*n),
            )
        })),
    );
    let sources = &status.sources;
    family(
        r,
        "homewarden_source_indicators",
        "Indicators each source holds, by kind (before the allowlist and the warninglists)",
        sources.iter().flat_map(|s| {
            s.kinds.iter().map(|(kind, n)| {
                let labels = vec![
                    ("source", s.name.clone()),
                    ("kind", kind_label(*kind).into()),
                ];
                (labels, i(*n))
            })
        }),
    );
    family(
        r,
        "homewarden_source_up",
        "1 if the source's last pull succeeded and was taken, 0 if it failed or is held",
        sources.iter().map(|s| {
            let up = s.last_error.is_none() && s.held.is_none() && s.last_ok.is_some();
            (one("source", &s.name), i64::from(up))
        }),
    );
    family(
        r,
        "homewarden_source_held",
        "1 while a pull that would shrink the source too much is held back",
        sources
            .iter()
            .map(|s| (one("source", &s.name), i64::from(s.held.is_some()))),
    );
    seconds(
        r,
        "homewarden_source_last_success",
        "When each source's last successful pull ended (unix time)",
        sources
            .iter()
            .filter_map(|s| Some((one("source", &s.name), i(s.last_ok?)))),
    );
    family(
        r,
        "homewarden_source_refused",
        "Values the source's last pull refused, by reason",
        sources.iter().flat_map(|s| {
            s.stats.rejected.iter().map(|(reason, n)| {
                (
                    vec![("source", s.name.clone()), ("reason", reason.clone())],
                    i(*n),
                )
            })
        }),
    );
    counters(
        r,
        "homewarden_source_pulls",
        "Pulls of each source since the agent started, by outcome",
        sources.iter().flat_map(|s| {
            let p = &s.pulls;
            [
                ("taken", p.taken),
                ("unchanged", p.unchanged),
                ("held", p.held),
                ("failed", p.failed),
            ]
            .map(|(outcome, n)| {
                let labels = vec![("source", s.name.clone()), ("outcome", outcome.to_string())];
                (labels, n)
            })
        }),
    );
    let took = Family::<Labels, Gauge<f64, AtomicU64>>::default();
    for s in sources.iter().filter(|s| s.pulls != Pulls::default()) {
        took.get_or_create(&one("source", &s.name))
            .set(secs(s.pulls.last_ms));
    }
    r.register_with_unit(
        "homewarden_source_last_pull_duration",
        "How long each source's last pull took",
        Unit::Seconds,
        took,
    );
    family(
        r,
        "homewarden_source_over_budget",
        "Indicators the source's last pull could not take within limits.indicators",
        sources
            .iter()
            .map(|s| (one("source", &s.name), i(s.stats.over_budget))),
    );
}
