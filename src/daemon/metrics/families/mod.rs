//! What `/metrics` says, made from one status snapshot: pure, so that every
//! scrape and every test reads the same numbers `homewarden status` shows.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::{Registry, Unit};

mod intel;
mod respond;
pub mod signatures;
mod suricata;

use crate::appliance::panel::Shown;
use crate::daemon::agent::{State, Status};
use crate::intel::ioc::Kind;

type Labels = Vec<(&'static str, String)>;

fn gauge(registry: &mut Registry, name: &str, help: &str, value: i64) {
    let g: Gauge = Gauge::default();
    g.set(value);
    registry.register(name, help, g);
}

/// A gauge of bytes (`<name>_bytes`).
fn bytes(registry: &mut Registry, name: &str, help: &str, value: u64) {
    let g: Gauge = Gauge::default();
    g.set(i(value));
    registry.register_with_unit(name, help, Unit::Bytes, g);
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

/// A kind as `homewarden_indicators_enforced` names it.
fn kind_label(kind: Kind) -> &'static str {
    match kind {
        Kind::Ipv4 => "ipv4",
        Kind::Ipv6 => "ipv6",
        Kind::Net => "network",
        Kind::Domain => "domain",
        Kind::Md5 => "md5",
        Kind::Sha256 => "sha256",
    }
}

fn one(key: &'static str, value: impl ToString) -> Labels {
    vec![(key, value.to_string())]
}

fn i(n: impl TryInto<i64>) -> i64 {
    n.try_into().unwrap_or(i64::MAX)
}

/// The registry of one scrape: `status` as it stands at `now` (unix
/// seconds), the agent's resident memory (bytes) if known.
pub fn registry(status: &Status, now: i64, resident_bytes: Option<u64>) -> Registry {
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
    let c = status.condition(now);
    family(
        &mut r,
        "homewarden_condition",
        "What the LEDs show: 1 for each condition of the legend that holds now",
        [
            ("protected", c.protected),
            ("intel_stale", c.intel_stale),
            ("suricata_down", c.suricata_down),
            ("outbox_backlog", c.outbox_backlog),
            ("selftest_failed", c.selftest_failed),
            ("unacked_high", c.unacked_high),
            ("blocking_now", c.blocking_now),
        ]
        .map(|(name, on)| (one("condition", name), i64::from(on))),
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
    intel::register(&mut r, status);
    suricata::register(&mut r, status);
    respond::register(&mut r, status);
    gauge(
        &mut r,
        "homewarden_shadow_observed",
        "Indicators observed in shadow mode (alerting, not blocking)",
        i(status.shadow.observed),
    );
    if let Some(m) = &status.mqtt {
        gauge(
            &mut r,
            "homewarden_mqtt_connected",
            "1 while the agent is connected to Home Assistant's MQTT broker",
            i64::from(m.connected),
        );
    }
    if status.devices.enabled {
        gauge(
            &mut r,
            "homewarden_devices",
            "Devices the inventory knows on the devices' side",
            status.devices.known as i64,
        );
        gauge(
            &mut r,
            "homewarden_devices_seen_24h",
            "Of those, devices seen in the last 24 hours",
            status.devices.seen_24h as i64,
        );
        gauge(
            &mut r,
            "homewarden_devices_quarantined",
            "Devices the kernel holds in quarantine (DHCP and DNS only)",
            status.devices.quarantined.len() as i64,
        );
    }
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
    if let Some(v) = resident_bytes {
        bytes(
            &mut r,
            "process_resident_memory",
            "The agent's resident memory",
            v,
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
