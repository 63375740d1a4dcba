//! What `/metrics` says, made from one status snapshot: pure, so that every
//! scrape and every test reads the same numbers `homewarden status` shows.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::{Registry, Unit};

use std::sync::atomic::AtomicU64;

use crate::daemon::agent::{Applies, Pulls, State, Status};

type Labels = Vec<(&'static str, String)>;

fn gauge(registry: &mut Registry, name: &str, help: &str, value: i64) {
    let g: Gauge = Gauge::default();
    g.set(value);
    registry.register(name, help, g);
}

fn counter(registry: &mut Registry, name: &str, help: &str, value: u64) {
    let c: Counter = Counter::default();
    c.inc_by(value);
    registry.register(name, help, c);
}

/// Gauges by label set.
fn gauges(values: impl IntoIterator<Item = (Labels, i64)>) -> Family<Labels, Gauge> {
    let f = Family::<Labels, Gauge>::default();
    for (labels, v) in values {
        f.get_or_create(&labels).set(v);
    }
    f
}

/// Counters by label set.
fn counters(
    registry: &mut Registry,
    name: &str,
    help: &str,
    values: impl IntoIterator<Item = (Labels, u64)>,
) {
    let f = Family::<Labels, Counter>::default();
    for (labels, n) in values {
        f.get_or_create(&labels).inc_by(n);
    }
    registry.register(name, help, f);
}

/// Milliseconds as the seconds Prometheus wants.
fn secs(ms: u64) -> f64 {
    ms as f64 / 1000.0
}

fn family(
    registry: &mut Registry,
    name: &str,
    help: &str,
    values: impl IntoIterator<Item = (Labels, i64)>,
) {
    registry.register(name, help, gauges(values));
}

/// A time (unix seconds), when there is one.
fn time(registry: &mut Registry, name: &str, help: &str, value: Option<i64>) {
    if let Some(v) = value {
        let g: Gauge = Gauge::default();
        g.set(v);
        registry.register_with_unit(name, help, Unit::Seconds, g);
    }
}

/// Times (unix seconds) by label set.
fn seconds(
    registry: &mut Registry,
    name: &str,
    help: &str,
    values: impl IntoIterator<Item = (Labels, i64)>,
) {
    registry.register_with_unit(name, help, Unit::Seconds, gauges(values));
}

fn one(key: &'static str, value: impl ToString) -> Labels {
    vec![(key, value.to_string())]
}

fn i(n: impl TryInto<i64>) -> i64 {
    n.try_into().unwrap_or(i64::MAX)
}

/// The registry of one scrape: `status` as it stands, the agent's resident
/// memory (bytes) if known.
pub fn registry(status: &Status, resident_bytes: Option<u64>) -> Registry {
    let mut r = Registry::default();
    family(
        &mut r,
        "homewarden_build_info",
        "The running agent's version (always 1)",
        [(one("version", &status.version), 1)],
    );
    family(
        &mut r,
        "homewarden_state",
        "The appliance's state: 1 for the one it is in (what the LEDs show)",
        [State::Starting, State::Protected, State::Degraded]
            .into_iter()
            .map(|s| (one("state", s), i64::from(status.state == s))),
    );
    gauge(
        &mut r,
        "homewarden_degraded_reasons",
        "Reasons the appliance is not fully protecting the home (see homewarden status)",
        i(status.reasons.len()),
    );
    time(
        &mut r,
        "homewarden_start_time",
        "When the agent started (unix time)",
        Some(i(status.started)),
    );
    let b = &status.blocklist;
    family(
        &mut r,
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
        &mut r,
        "homewarden_indicator_budget",
        "Most indicators all sources together may hold (limits.indicators)",
        i(status.indicator_budget),
    );
    let d = &status.dropped;
    family(
        &mut r,
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
        &mut r,
        "homewarden_source_indicators",
        "Indicators each source holds",
        sources
            .iter()
            .map(|s| (one("source", &s.name), i(s.entries))),
    );
    family(
        &mut r,
        "homewarden_source_up",
        "1 if the source's last pull succeeded and was taken, 0 if it failed or is held",
        sources.iter().map(|s| {
            let up = s.last_error.is_none() && s.held.is_none() && s.last_ok.is_some();
            (one("source", &s.name), i64::from(up))
        }),
    );
    family(
        &mut r,
        "homewarden_source_held",
        "1 while a pull that would shrink the source too much is held back",
        sources
            .iter()
            .map(|s| (one("source", &s.name), i64::from(s.held.is_some()))),
    );
    seconds(
        &mut r,
        "homewarden_source_last_success",
        "When each source's last successful pull ended (unix time)",
        sources
            .iter()
            .filter_map(|s| Some((one("source", &s.name), i(s.last_ok?)))),
    );
    family(
        &mut r,
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
        &mut r,
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
        &mut r,
        "homewarden_source_over_budget",
        "Indicators the source's last pull could not take within limits.indicators",
        sources
            .iter()
            .map(|s| (one("source", &s.name), i(s.stats.over_budget))),
    );
    let su = &status.suricata;
    gauge(
        &mut r,
        "homewarden_suricata_up",
        "1 if Suricata's command socket answers",
        i64::from(su.reachable),
    );
    let ap = &su.applies;
    counters(
        &mut r,
        "homewarden_applies",
        "Renderings applied since the agent started, by how they reached Suricata",
        [
            ("delta", ap.delta),
            ("reload", ap.reload),
            ("unchanged", ap.unchanged),
            ("suricata_down", ap.suricata_down),
            ("failed", ap.failed),
        ]
        .map(|(how, n)| (one("how", how), n)),
    );
    if *ap != Applies::default() {
        let g = Gauge::<f64, AtomicU64>::default();
        g.set(secs(ap.last_ms));
        r.register_with_unit(
            "homewarden_last_apply_duration",
            "How long the last apply took (render, write, tell Suricata)",
            Unit::Seconds,
            g,
        );
    }
    time(
        &mut r,
        "homewarden_suricata_last_change",
        "When the rules in force last changed (unix time)",
        su.last_change.map(i),
    );
    let a = &status.alerts;
    counter(
        &mut r,
        "homewarden_alerts_received",
        "Alerts read from Suricata's eve socket",
        a.intake.alerts,
    );
    counter(
        &mut r,
        "homewarden_eve_records_skipped",
        "Eve records that were not alerts or did not parse",
        a.intake.other + a.intake.malformed,
    );
    counter(
        &mut r,
        "homewarden_alerts_raised",
        "Alerts Suricata says it raised (its detect.alert counter) since the agent began counting",
        a.loss.raised,
    );
    counter(
        &mut r,
        "homewarden_alerts_lost",
        "Of the alerts Suricata raised, those that never reached the agent",
        a.loss.missing,
    );
    family(
        &mut r,
        "homewarden_incidents_open",
        "Open incidents, by severity",
        [
            (one("severity", "high"), i(a.high_open)),
            (
                one("severity", "other"),
                i(a.open.saturating_sub(a.high_open)),
            ),
        ],
    );
    gauge(
        &mut r,
        "homewarden_incidents_unacknowledged",
        "Open high incidents nobody acknowledged (the red LED)",
        i(a.high_unacked),
    );
    time(
        &mut r,
        "homewarden_last_block",
        "When traffic was last blocked (unix time)",
        a.last_block,
    );
    let o = &status.outbox;
    gauge(
        &mut r,
        "homewarden_outbox_pending",
        "Responder actions (MISP reports, advice, mails) waiting to be delivered",
        i(o.pending),
    );
    gauge(
        &mut r,
        "homewarden_outbox_failing",
        "Of those, actions that failed three times or more",
        i(o.failing),
    );
    counter(
        &mut r,
        "homewarden_outbox_dropped",
        "Actions dropped because the outbox was full",
        o.dropped,
    );
    counter(
        &mut r,
        "homewarden_outbox_corrupt",
        "Outbox files that could not be read back (moved aside)",
        o.corrupt,
    );
    gauge(
        &mut r,
        "homewarden_shadow_observed",
        "Indicators observed in shadow mode (alerting, not blocking)",
        i(status.shadow.observed),
    );
    let st = &status.selftest;
    if let Some(ok) = st.ok {
        gauge(
            &mut r,
            "homewarden_selftest_ok",
            "1 if the last self-test passed (a replay through Suricata), 0 if it failed",
            i64::from(ok),
        );
    }
    time(
        &mut r,
        "homewarden_selftest_last_run",
        "When the self-test last ran (unix time)",
        st.last_run.map(i),
    );
    if let Some(bytes) = resident_bytes {
        let g: Gauge = Gauge::default();
        g.set(i(bytes));
        r.register_with_unit(
            "process_resident_memory",
            "The agent's resident memory",
            Unit::Bytes,
            g,
        );
    }
    r
}

/// The agent's resident memory, from `/proc/self/statm` (pages).
pub fn resident_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    // SAFETY: sysconf takes an integer and reads a constant of the system.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    Some(pages * u64::try_from(page).ok()?)
}
