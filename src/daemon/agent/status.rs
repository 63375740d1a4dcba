//! What `homewarden status` shows, and how the agent publishes it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use crate::alerts::intake::CountersSnapshot;
use crate::alerts::triage::Incident;
use crate::appliance::panel::pattern::Condition;
use crate::appliance::panel::{Press, BLOCKING_NOW_SECS};
use crate::config::{Mode, SourceConfig};
use crate::enforce::firewall::health::PathStatus;
use crate::enforce::suricata::apply::Live;
use crate::enforce::suricata::selftest;
use crate::intel::ioc::Kind;
use crate::intel::set::{Dropped, Effective};
use crate::intel::{unix_now, PullStats};
use crate::respond;
use crate::respond::outbox::Stats as OutboxStats;
use crate::respond::tally::Delivered;

use super::Agent;

/// Counts of the enforced blocklist, by kind.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    /// IPv4 addresses.
    pub ipv4: usize,
    /// IPv6 addresses.
    pub ipv6: usize,
    /// Domains.
    pub domains: usize,
    /// File MD5s.
    pub md5: usize,
    /// File SHA-256s.
    pub sha256: usize,
    /// Networks too wide to expand, enforced whole.
    #[serde(default)]
    pub networks: usize,
}

/// One source as shown by `homewarden status`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceStatus {
    /// Name.
    pub name: String,
    /// `misp`, `misp_feed` or `list`.
    pub kind: String,
    /// Indicators held.
    pub entries: usize,
    /// Of those, how many of each kind.
    #[serde(default)]
    pub kinds: BTreeMap<Kind, usize>,
    /// Unix time of the last good pull.
    pub last_ok: Option<u64>,
    /// Error of the last attempt, if it failed.
    pub last_error: Option<String>,
    /// Why the last full pull was held, not applied (it lost too much).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub held: Option<String>,
    /// Counters of the last good pull.
    pub stats: PullStats,
    /// Seconds until the next pull.
    pub next_pull_in: u64,
    /// How its pulls went since the agent started.
    #[serde(default)]
    pub pulls: Pulls,
}

/// How a source's pulls went since the agent started.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pulls {
    /// Pulls whose result was taken.
    pub taken: u64,
    /// Pulls that found the source as it was (nothing read).
    pub unchanged: u64,
    /// Pulls held back (they lost too much of the set).
    pub held: u64,
    /// Pulls that failed.
    pub failed: u64,
    /// How long the last one took, in milliseconds.
    pub last_ms: u64,
}

/// Suricata as the agent last saw it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SuricataStatus {
    /// Socket answered at the last check.
    pub reachable: bool,
    /// Unix time of the last apply that changed something.
    pub last_change: Option<u64>,
    /// How that change reached Suricata (`delta`, `reload`, `suricata_down`).
    pub last_live: Option<String>,
    /// Values added and removed by it.
    pub last_added: usize,
    /// Values removed by it.
    pub last_removed: usize,
    /// Error writing our files, if the last apply failed.
    pub last_error: Option<String>,
    /// How the applies went since the agent started.
    #[serde(default)]
    pub applies: Applies,
}

/// How the agent's applies (render, write, tell Suricata) went since it started.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Applies {
    /// Sent to Suricata as dataset commands.
    pub delta: u64,
    /// Sent as a rule reload.
    pub reload: u64,
    /// Nothing to tell Suricata.
    pub unchanged: u64,
    /// Written while Suricata was down (it reads them when back).
    pub suricata_down: u64,
    /// Files that could not be written.
    pub failed: u64,
    /// How long the last one took, in milliseconds.
    pub last_ms: u64,
}

/// Shadow mode in status.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShadowStatus {
    /// Values observed (alert only) now.
    pub observed: usize,
    /// Of the observed indicators, those held because a do-not-break device talked to them.
    pub held: usize,
    /// When the next observed indicator is promoted to blocking.
    pub next_promotion: Option<u64>,
}

/// Whether the home is protected, in one word.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    /// Before the first apply.
    #[default]
    Starting,
    /// Every check passes.
    Protected,
    /// Something is wrong: `reasons` says what.
    Degraded,
}

impl std::fmt::Display for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            State::Starting => "starting",
            State::Protected => "protected",
            State::Degraded => "degraded",
        })
    }
}

/// The daemon's state, as served over the control socket.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    /// Agent version.
    pub version: String,
    /// Protected, degraded or starting.
    pub state: State,
    /// Why not protected.
    pub reasons: Vec<String>,
    /// IPS or IDS.
    pub mode: crate::config::Mode,
    /// Drop or reject.
    pub action: crate::config::Action,
    /// Open or closed when Suricata is not there.
    pub fail: crate::config::FailMode,
    /// Unix time the daemon started.
    pub started: u64,
    /// Enforced blocklist.
    pub blocklist: Counts,
    /// Most indicators held across all sources (`limits.indicators`, resolved).
    #[serde(default)]
    pub indicator_budget: usize,
    /// What the allowlist and limits kept out.
    pub dropped: Dropped,
    /// Suricata side.
    pub suricata: SuricataStatus,
    /// Sources.
    pub sources: Vec<SourceStatus>,
    /// Alert intake and incidents.
    pub alerts: AlertsStatus,
    /// Responder actions waiting on disk.
    pub outbox: OutboxStats,
    /// What the responders delivered since the agent started.
    #[serde(default)]
    pub responders: Delivered,
    /// Home Assistant's broker, when `mqtt:` is on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mqtt: Option<crate::daemon::homeassistant::Link>,
    /// The home's devices and their quarantine.
    #[serde(default)]
    pub devices: crate::daemon::devices::DevicesStatus,
    /// Shadow mode: indicators observed before they block.
    #[serde(default)]
    pub shadow: ShadowStatus,
    /// The self-test of enforcement.
    #[serde(default)]
    pub selftest: selftest::Status,
    /// The packet path: the queue rule, Suricata on the queues, bypass.
    #[serde(default)]
    pub path: PathStatus,
    /// Who writes advice (`cohere command-a-03-2025`, `offline`).
    #[serde(default)]
    pub advisor: String,
    /// Where incident mail goes (`off`, or recipients and server).
    #[serde(default)]
    pub mail: String,
    /// Where incidents are pushed (`notify:`), one line a target.
    #[serde(default)]
    pub notify: Vec<String>,
    /// A source is failing or has not pulled for three intervals.
    pub intel_stale: bool,
    /// Button presses that did something, newest last.
    pub presses: Vec<Press>,
    /// Settings that weaken protection (plain http, no TLS checks…), from the config.
    #[serde(default)]
    pub warnings: Vec<String>,
}

/// Alerts as `homewarden status` shows them.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlertsStatus {
    /// What the eve intake received.
    pub intake: CountersSnapshot,
    /// Incidents still open (alerts within the window).
    pub open: usize,
    /// Of those, high-severity ones.
    pub high_open: usize,
    /// The most recently active incidents, newest first.
    pub recent: Vec<Incident>,
    /// High incidents nobody acknowledged (button or `homewarden ack`).
    pub high_unacked: usize,
    /// Ids of open incidents that were acknowledged.
    pub acknowledged: Vec<String>,
    /// Unix time of the last blocked alert.
    pub last_block: Option<i64>,
    /// Blocked alerts since local midnight (or the agent's start).
    #[serde(default)]
    pub blocked_today: u64,
    /// Alerts Suricata raised, and how many of them never arrived.
    #[serde(default)]
    pub loss: crate::alerts::loss::LossStatus,
    /// Home devices that tried encrypted DNS past the home's resolver in the
    /// last 24 hours (their address, attempts, the last).
    #[serde(default)]
    pub encrypted_dns: Vec<crate::alerts::hits::Recent>,
}

/// The incidents' owner's view, with what the agent counts itself (what the
/// intake received, what Suricata raised that never arrived).
pub(super) fn merged(
    view: AlertsStatus,
    intake: &crate::alerts::intake::Counters,
    loss: crate::alerts::loss::LossStatus,
) -> AlertsStatus {
    AlertsStatus {
        intake: intake.snapshot(),
        loss,
        ..view
    }
}

impl crate::appliance::panel::Shown for Status {
    fn condition(&self, now: i64) -> Condition {
        Condition {
            protected: self.suricata.reachable
                && self.suricata.last_error.is_none()
                && self.mode == Mode::Ips
                && self.path.problems.is_empty(),
            intel_stale: self.intel_stale,
            suricata_down: !self.suricata.reachable,
            // Actions that failed three times or more: a responder (MISP, mail) is out of reach.
            outbox_backlog: self.outbox.failing > 0,
            selftest_failed: self.selftest.alarm.is_some(),
            unacked_high: self.alerts.high_unacked > 0,
            blocking_now: self
                .alerts
                .last_block
                .is_some_and(|t| now - t <= BLOCKING_NOW_SECS),
            agent_fault: false,
            reset_countdown: None,
        }
    }
}

impl Agent {
    pub(super) fn publish(&mut self) {
        let now_i = Instant::now();
        let now = unix_now();
        let mut reasons = Vec::new();
        if !self.status.suricata.reachable {
            reasons.push("suricata is not reachable".to_string());
        }
        if let Some(e) = &self.status.suricata.last_error {
            reasons.push(format!("cannot write rules: {e}"));
        }
        if self.cfg.enforcement.mode == Mode::Ids {
            reasons.push("IDS mode: threats are reported, not blocked".to_string());
        }
        if let Some(a) = &self.status.selftest.alarm {
            reasons.push(format!("self-test failed: {a}"));
        }
        reasons.extend(
            self.status
                .path
                .problems
                .iter()
                .map(|p| format!("packet path: {p}")),
        );
        self.status.sources = self
            .sources
            .iter()
            .map(|s| {
                let stale_after = 3 * s.cfg.interval().as_secs();
                if s.state.stats.over_budget > 0 {
                    reasons.push(format!(
                        "source {}: {} indicators not enforced, over the budget of {} (limits.indicators)",
                        s.cfg.name(),
                        s.state.stats.over_budget,
                        self.budget
                    ));
                }
                if let Some(held) = &s.held {
                    reasons.push(format!("source {} {held}", s.cfg.name()));
                } else if let Some(err) = &s.state.last_error {
                    reasons.push(format!("source {} failing: {err}", s.cfg.name()));
                } else if s
                    .state
                    .last_ok
                    .is_some_and(|t| now.saturating_sub(t) > stale_after)
                {
                    reasons.push(format!("source {} is stale", s.cfg.name()));
                }
                SourceStatus {
                    name: s.cfg.name().to_string(),
                    kind: kind_name(&s.cfg).to_string(),
                    entries: s.state.set.len(),
                    kinds: s.state.set.kinds(),
                    last_ok: s.state.last_ok,
                    last_error: s.state.last_error.clone(),
                    held: s.held.clone(),
                    stats: s.state.stats.clone(),
                    next_pull_in: s.next.saturating_duration_since(now_i).as_secs(),
                    pulls: s.pulls,
                }
            })
            .collect();
        self.status.state = if reasons.is_empty() {
            State::Protected
        } else {
            State::Degraded
        };
        self.status.reasons = reasons;
        self.status.indicator_budget = self.budget;
        self.status.intel_stale = self.status.reasons.iter().any(|r| r.starts_with("source "));
        self.status.outbox = self
            .outbox
            .as_ref()
            .map(|o| respond::lock(o).stats())
            .unwrap_or_default();
        self.status.responders = self.tally.snapshot();
        self.status.mqtt = self.mqtt.as_ref().and_then(|l| l.borrow().clone());
        self.status.devices = self.devices_view.borrow().clone();
        // The incidents' view as it is at the moment of sending, under the
        // status's own lock: read earlier (before the outbox's lock above),
        // a newer view that `show_incidents` put in meanwhile would be
        // overwritten with an older one (a high incident missing from
        // status until the next change).
        let snapshot = self.status.clone();
        let (view, intake) = (&self.alerts_view, &self.intake);
        self.status_tx.send_modify(|s| {
            *s = snapshot;
            s.alerts = merged(view.borrow().clone(), intake, s.alerts.loss);
        });
        self.status.alerts = self.status_tx.borrow().alerts.clone();
    }
}

/// Blocklist counts by kind.
pub fn counts(eff: &Effective) -> Counts {
    Counts {
        ipv4: eff.ipv4.len(),
        ipv6: eff.ipv6.len(),
        domains: eff.domains.len(),
        md5: eff.md5.len(),
        sha256: eff.sha256.len(),
        networks: eff.wide.len(),
    }
}

pub(super) fn live_name(l: &Live) -> &'static str {
    match l {
        Live::Unchanged => "unchanged",
        Live::Delta => "delta",
        Live::Reload => "reload",
        Live::SuricataDown(_) => "suricata_down",
    }
}

pub(super) fn kind_name(c: &SourceConfig) -> &'static str {
    match c {
        SourceConfig::Misp(_) => "misp",
        SourceConfig::MispFeed(_) => "misp_feed",
        SourceConfig::List(_) => "list",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::appliance::panel::Shown;

    #[test]
    fn the_panel_sees_protection_blocking_and_faults_in_the_status() {
        let mut s = Status {
            mode: Mode::Ips,
            ..Status::default()
        };
        s.suricata.reachable = true;
        assert!(s.condition(0).protected);
        s.alerts.last_block = Some(1000);
        assert!(s.condition(1005).blocking_now);
        assert!(!s.condition(1011).blocking_now);
        s.suricata.reachable = false;
        let c = s.condition(0);
        assert!(c.suricata_down && !c.protected);
        s.suricata.reachable = true;
        s.mode = Mode::Ids;
        assert!(!s.condition(0).protected);
    }
}
