//! The agent: owns the IoC store, pulls each source on its own schedule,
//! and keeps Suricata's datasets equal to the effective set.

use std::path::Path;
use std::time::Duration;

use std::collections::HashSet;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot, watch, Notify};
use tokio::time::Instant;

use crate::alerts::eve::Alert;
use crate::alerts::intake::{self, Counters, CountersSnapshot};
use crate::alerts::triage::{Incident, Outcome, Triage};
use crate::config::{Action, Config, FailMode, Mode, SourceConfig};
use crate::intel::fetch::{self, Location};
use crate::intel::ioc::Ioc;
use crate::intel::set::{Dropped, Effective, Provenance};
use crate::intel::store::Store;
use crate::intel::{feed, list, misp, unix_now, IntelError, PullStats, Pulled, SourceState};
use crate::outbox::{Outbox, Stats as OutboxStats};
use crate::panel::button::Action as ButtonAction;
use crate::panel::{Input as PanelInput, Press};
use crate::respond::{
    self, Responders, SharedOutbox, MAIL, MISP_EVENT, MISP_EVENT_UPDATE, SIGHTING,
};
use crate::secrets::Secrets;
use crate::suricata::apply::{Applier, ApplyReport, Live};
use crate::suricata::render::{self, Options};
use crate::suricata::socket::Connection;

/// First retry after a failed pull; doubles up to the source's interval.
const FIRST_RETRY: Duration = Duration::from_secs(15);
/// How often Suricata's socket is checked when nothing else happens.
const HEALTH_EVERY: Duration = Duration::from_secs(5);

/// A failure to start the agent.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// A source cannot be set up (missing key, unreadable CA…).
    #[error("source {source_name:?}: {error}")]
    Source {
        /// Source name.
        source_name: String,
        /// Why.
        error: IntelError,
    },
    /// The advisor or the mailer cannot be set up (missing token, unreadable CA…).
    #[error("{0}")]
    Responder(String),
}

/// How a source is reached, built once at start.
enum Client {
    Misp(misp::Client),
    Feed(Location, reqwest::Client),
    List(Location, reqwest::Client),
}

struct Source {
    cfg: SourceConfig,
    client: Client,
    state: SourceState,
    next: Instant,
    failures: u32,
}

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
    /// Unix time of the last good pull.
    pub last_ok: Option<u64>,
    /// Error of the last attempt, if it failed.
    pub last_error: Option<String>,
    /// Counters of the last good pull.
    pub stats: PullStats,
    /// Seconds until the next pull.
    pub next_pull_in: u64,
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
}

/// The daemon's state, as served over the control socket.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    /// Agent version.
    pub version: String,
    /// `protected`, `degraded` or `starting`.
    pub state: String,
    /// Why not protected.
    pub reasons: Vec<String>,
    /// `ips` or `ids`.
    pub mode: String,
    /// `drop` or `reject`.
    pub action: String,
    /// `open` or `closed`.
    pub fail: String,
    /// Unix time the daemon started.
    pub started: u64,
    /// Enforced blocklist.
    pub blocklist: Counts,
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
    /// Who writes advice (`cohere command-a-03-2025`, `offline`).
    #[serde(default)]
    pub advisor: String,
    /// Where incident mail goes (`off`, or recipients and server).
    #[serde(default)]
    pub mail: String,
    /// A source is failing or has not pulled for three intervals.
    pub intel_stale: bool,
    /// Button presses that did something, newest last.
    pub presses: Vec<Press>,
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
}

/// Acknowledged incident ids, under the state directory.
const ACKS_FILE: &str = "acks.json";
/// Open incidents, under the state directory (so a restart does not report them again).
const INCIDENTS_FILE: &str = "incidents.json";
/// How often changed incidents are saved.
const SAVE_EVERY: Duration = Duration::from_secs(1);

/// Incidents listed in status.
const RECENT_INCIDENTS: usize = 10;

/// Outcome of a sync of every source.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct SyncReport {
    /// Per source: `None` if fine, else the error.
    pub sources: Vec<(String, Option<String>)>,
    /// What the apply did (if the blocklist changed or Suricata was told).
    pub apply: Option<ApplyReport>,
    /// Error writing files, if any.
    pub apply_error: Option<String>,
}

impl SyncReport {
    /// True if every source pulled and the files were written.
    pub fn ok(&self) -> bool {
        self.apply_error.is_none() && self.sources.iter().all(|(_, e)| e.is_none())
    }
}

/// Requests the control socket forwards to the agent loop.
pub enum Request {
    /// Pull every source now and apply.
    Sync(oneshot::Sender<SyncReport>),
    /// Which held indicators (with provenance) explain a hit on this value.
    Lookup(String, oneshot::Sender<Result<Vec<Provenance>, String>>),
    /// The button was pressed (or released during a countdown).
    Button(ButtonAction),
    /// A simulated press of this length for the panel.
    Press(Duration),
}

/// Why the agent loop ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exit {
    /// Asked to stop.
    Stopped,
    /// Factory reset done: the service manager should start us afresh.
    Restart,
}

/// Presses kept in status.
const PRESSES_SHOWN: usize = 10;

/// The agent.
pub struct Agent {
    outbox: Option<SharedOutbox>,
    /// Taken by `run`, which gives them a task of their own.
    responders: Option<Responders>,
    wake_responders: Arc<Notify>,
    mail_on: bool,
    incidents_dirty: bool,
    triage: Triage,
    acked: HashSet<String>,
    panel: Option<mpsc::Sender<PanelInput>>,
    intake: Arc<Counters>,
    cfg: Config,
    store: Store,
    sources: Vec<Source>,
    applier: Applier,
    status: Status,
    status_tx: watch::Sender<Status>,
}

impl Agent {
    /// Opens the store and builds every source's client; fails on a missing key or CA.
    pub fn open(cfg: Config, secrets: &Secrets) -> Result<Agent, AgentError> {
        let store = Store::new(&cfg.state_dir);
        let now = Instant::now();
        let mut sources = Vec::new();
        for sc in &cfg.sources {
            let client = build_client(sc, secrets).map_err(|error| AgentError::Source {
                source_name: sc.name().to_string(),
                error,
            })?;
            let state = match store.load(sc.name()) {
                Ok(Some(s)) => s,
                Ok(None) => SourceState::default(),
                Err(e) => {
                    tracing::error!("intel store: {e}; the source starts empty");
                    SourceState::default()
                }
            };
            // A source pulled recently enough keeps its schedule across restarts.
            let age = state.last_ok.map(|t| unix_now().saturating_sub(t));
            let next = match age {
                Some(a) if a < sc.interval().as_secs() => {
                    now + Duration::from_secs(sc.interval().as_secs() - a)
                }
                _ => now,
            };
            sources.push(Source {
                cfg: sc.clone(),
                client,
                state,
                next,
                failures: 0,
            });
        }
        let applier = Applier::new(
            &cfg.suricata.rules_dir,
            Some(&cfg.suricata.command_socket),
            cfg.suricata.socket_timeout,
        );
        let status = Status {
            version: env!("CARGO_PKG_VERSION").to_string(),
            state: "starting".into(),
            mode: cfg.enforcement.mode.to_string(),
            action: match cfg.enforcement.action {
                Action::Drop => "drop".into(),
                Action::Reject => "reject".into(),
            },
            fail: match cfg.enforcement.fail {
                FailMode::Open => "open".into(),
                FailMode::Closed => "closed".into(),
            },
            started: unix_now(),
            advisor: cfg.advisor.describe(
                cfg.advisor
                    .api_key_env()
                    .is_some_and(|k| secrets.get(k).is_some()),
            ),
            mail: cfg.mail.describe(),
            ..Status::default()
        };
        let (status_tx, _) = watch::channel(status.clone());
        let acked = std::fs::read(cfg.state_dir.join(ACKS_FILE))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        let outbox = match Outbox::open(
            &cfg.state_dir.join("outbox"),
            cfg.alerts.outbox_max,
            unix_now(),
        ) {
            Ok(o) => Some(Arc::new(std::sync::Mutex::new(o))),
            Err(e) => {
                tracing::error!("{e}; responders are off");
                None
            }
        };
        let responders = match &outbox {
            Some(o) => Some(build_responders(&cfg, secrets, &sources, o.clone())?),
            None => None,
        };
        Ok(Agent {
            outbox,
            responders,
            wake_responders: Arc::new(Notify::new()),
            mail_on: !cfg.mail.to.is_empty(),
            incidents_dirty: false,
            acked,
            panel: None,
            triage: Triage::new(cfg.triage()),
            intake: Arc::new(Counters::default()),
            cfg,
            store,
            sources,
            applier,
            status,
            status_tx,
        })
    }

    /// A receiver that always holds the latest status.
    pub fn status(&self) -> watch::Receiver<Status> {
        self.status_tx.subscribe()
    }

    /// Connects the panel task, which takes simulated presses.
    pub fn set_panel(&mut self, tx: mpsc::Sender<PanelInput>) {
        self.panel = Some(tx);
    }

    /// Runs until `shutdown` resolves (or a factory reset asks for a restart).
    pub async fn run(
        mut self,
        mut requests: mpsc::Receiver<Request>,
        shutdown: impl std::future::Future<Output = ()>,
    ) -> Exit {
        // Re-apply what the store holds: the files on disk decide what is new, so a
        // restart sends nothing twice. A failure is logged and shown in status.
        let _ = self.enforce().await;
        self.check_suricata().await;
        self.restore_incidents();
        let (alert_tx, mut alerts) = mpsc::channel(1024);
        let _intake = self.start_intake(alert_tx);
        let responders = self
            .responders
            .take()
            .map(|r| AbortOnDrop(tokio::spawn(r.run(self.wake_responders.clone()))));
        // systemd: started, and alive at every health tick (WatchdogSec restarts a hung agent).
        let _ = sd_notify::notify(&[sd_notify::NotifyState::Ready]);
        tokio::pin!(shutdown);
        let mut health = tokio::time::interval_at(Instant::now() + HEALTH_EVERY, HEALTH_EVERY);
        let mut save = tokio::time::interval(SAVE_EVERY);
        loop {
            let next = self.sources.iter().map(|s| s.next).min();
            let due = async {
                match next {
                    Some(t) => tokio::time::sleep_until(t).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = &mut shutdown => break,
                _ = due => {
                    let now = Instant::now();
                    let idx: Vec<usize> = (0..self.sources.len()).filter(|&i| self.sources[i].next <= now).collect();
                    self.pull_and_enforce(&idx).await;
                }
                Some(req) = requests.recv() => match req {
                    Request::Sync(reply) => {
                        let all: Vec<usize> = (0..self.sources.len()).collect();
                        let report = self.pull_and_enforce(&all).await;
                        let _ = reply.send(report);
                    }
                    Request::Lookup(value, reply) => {
                        let _ = reply.send(self.lookup(&value));
                    }
                    Request::Press(d) => {
                        if let Some(p) = &self.panel {
                            let _ = p.send(PanelInput::Press(d)).await;
                        }
                    }
                    Request::Button(action) => {
                        if self.on_button(action).await == Exit::Restart {
                            drop(responders);
                            return Exit::Restart;
                        }
                    }
                },
                Some(a) = alerts.recv() => self.on_alert(&a),
                _ = save.tick() => self.save_incidents(),
                _ = health.tick() => {
                    let _ = sd_notify::notify(&[sd_notify::NotifyState::Watchdog]);
                    self.check_suricata().await;
                    if !self.triage.expire(unix_now() as i64).is_empty() {
                        self.incidents_dirty = true;
                    }
                    self.publish();
                }
            }
        }
        drop(responders);
        self.save_incidents();
        tracing::info!("agent stopped");
        Exit::Stopped
    }

    /// Takes back the incidents open before a restart and makes sure each has
    /// its actions queued: the outbox's keys make this a no-op for what is
    /// queued or done, and re-queue what a torn outbox file lost.
    fn restore_incidents(&mut self) {
        let path = self.cfg.state_dir.join(INCIDENTS_FILE);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return,
            Err(e) => {
                tracing::error!("{}: {e}", path.display());
                return;
            }
        };
        let incidents: Vec<Incident> = match serde_json::from_slice(&bytes) {
            Ok(v) => v,
            Err(e) => {
                let aside = path.with_extension("json.corrupt");
                let _ = std::fs::rename(&path, &aside);
                tracing::error!(
                    "{}: unreadable ({e}); moved to {}",
                    path.display(),
                    aside.display()
                );
                return;
            }
        };
        tracing::info!(incidents = incidents.len(), "incidents restored");
        for inc in &incidents {
            self.queue_actions(inc);
        }
        self.triage.restore(incidents);
        self.triage.expire(unix_now() as i64);
        self.publish();
    }

    fn save_incidents(&mut self) {
        if !self.incidents_dirty {
            return;
        }
        let path = self.cfg.state_dir.join(INCIDENTS_FILE);
        let open: Vec<&Incident> = self.triage.open().collect();
        let saved = serde_json::to_vec(&open)
            .map_err(std::io::Error::other)
            .and_then(|b| crate::fsutil::write_atomic(&path, &b));
        match saved {
            Ok(()) => self.incidents_dirty = false,
            Err(e) => tracing::error!("{}: {e}", path.display()),
        }
    }

    /// Puts what should happen about a new incident into the outbox.
    fn queue_actions(&mut self, inc: &Incident) {
        let now = unix_now();
        let (sighting, event) = self.responders_for(inc);
        let Some(outbox) = self.outbox.as_ref() else {
            return;
        };
        let mut outbox = respond::lock(outbox);
        // A hit on a MISP attribute: tell that MISP it was seen here.
        if let (Some(source), Some(p)) = (sighting, &inc.ioc) {
            let payload = serde_json::json!({"source": source, "attribute_uuid": p.attribute_uuid, "time": inc.first_seen});
            if let Err(e) = outbox.put(
                SIGHTING,
                &format!("{}:misp-sighting", inc.id),
                payload,
                inc.high,
                now,
            ) {
                tracing::error!("{e}");
            }
        }
        // Any other high-severity incident: one MISP event, in the first MISP source.
        if let Some(source) = event {
            let payload = serde_json::json!({"source": source, "event": misp_event(inc)});
            if let Err(e) = outbox.put(
                MISP_EVENT,
                &format!("{}:misp-event", inc.id),
                payload,
                true,
                now,
            ) {
                tracing::error!("{e}");
            }
        }
        // The owner hears of every high-severity incident, with advice.
        if self.mail_on && inc.high {
            let payload = serde_json::json!({"incident": inc});
            if let Err(e) = outbox.put(MAIL, &format!("{}:mail", inc.id), payload, true, now) {
                tracing::error!("{e}");
            }
        }
        drop(outbox);
        self.wake_responders.notify_one();
    }

    /// Which MISP source gets a sighting, and which one an event, for an incident.
    fn responders_for(&self, inc: &Incident) -> (Option<String>, Option<String>) {
        let misp: Vec<&str> = self
            .sources
            .iter()
            .filter(|s| matches!(s.cfg, SourceConfig::Misp(_)))
            .map(|s| s.cfg.name())
            .collect();
        let sighting = inc
            .ioc
            .as_ref()
            .filter(|p| p.attribute_uuid.is_some() && misp.contains(&p.source.as_str()))
            .map(|p| p.source.clone());
        let event = match (&sighting, inc.high) {
            (None, true) => misp.first().map(|s| s.to_string()),
            _ => None,
        };
        (sighting, event)
    }

    /// Later alerts of an incident update its MISP event (at 10, 100, 1000… alerts,
    /// so a storm is a handful of edits, not thousands).
    fn queue_update(&mut self, inc: &Incident) {
        if !update_due(inc.count) {
            return;
        }
        let (_, Some(source)) = self.responders_for(inc) else {
            return;
        };
        let Some(outbox) = self.outbox.as_ref() else {
            return;
        };
        let payload = serde_json::json!({
            "source": source,
            "uuid": inc.uuid(),
            "event": {"Event": {"info": format!("homewarden: {} ({} alerts)", inc.signature, inc.count)}},
        });
        let key = format!("{}:misp-event-update:{}", inc.id, inc.count);
        let queued = respond::lock(outbox).put(MISP_EVENT_UPDATE, &key, payload, true, unix_now());
        if let Err(e) = queued {
            tracing::error!("{e}");
        }
        self.wake_responders.notify_one();
    }

    /// Acknowledges every open high incident; persisted so a restart keeps it.
    pub fn acknowledge(&mut self) -> usize {
        let open: HashSet<String> = self.triage.open().map(|i| i.id.clone()).collect();
        let new = self
            .triage
            .open()
            .filter(|i| i.high && !self.acked.contains(&i.id))
            .map(|i| i.id.clone())
            .collect::<Vec<_>>();
        // Only open incidents can light the LED: closed ones need no memory.
        self.acked.retain(|id| open.contains(id));
        self.acked.extend(new.iter().cloned());
        let path = self.cfg.state_dir.join(ACKS_FILE);
        let saved = serde_json::to_vec(&self.acked)
            .map_err(std::io::Error::other)
            .and_then(|b| crate::fsutil::write_atomic(&path, &b));
        if let Err(e) = saved {
            tracing::error!("{}: {e}", path.display());
        }
        tracing::info!(incidents = new.len(), "acknowledged");
        self.publish();
        new.len()
    }

    async fn on_button(&mut self, action: ButtonAction) -> Exit {
        let label = match action {
            ButtonAction::Ack => format!("acknowledged {} incident(s)", self.acknowledge()),
            ButtonAction::Resync => {
                let all: Vec<usize> = (0..self.sources.len()).collect();
                let r = self.pull_and_enforce(&all).await;
                format!("re-sync: {}", if r.ok() { "ok" } else { "failed" })
            }
            ButtonAction::CountdownStarted => "factory reset countdown".into(),
            ButtonAction::CountdownCancelled => "factory reset cancelled".into(),
            ButtonAction::Ignored(ms) => format!("ignored a {ms} ms press"),
            ButtonAction::FactoryReset => match self.factory_reset() {
                Ok(()) => return Exit::Restart,
                Err(e) => {
                    tracing::error!("factory reset failed: {e}");
                    format!("factory reset failed: {e}")
                }
            },
        };
        self.status.presses.push(Press {
            at: unix_now(),
            action: label,
        });
        let excess = self.status.presses.len().saturating_sub(PRESSES_SHOWN);
        self.status.presses.drain(..excess);
        self.publish();
        Exit::Stopped
    }

    /// Restores the factory config and forgets all state (IoC store, acknowledgements).
    fn factory_reset(&mut self) -> std::io::Result<()> {
        let factory = std::fs::read(&self.cfg.panel.factory_config).map_err(|e| {
            std::io::Error::other(format!("{}: {e}", self.cfg.panel.factory_config.display()))
        })?;
        crate::fsutil::write_atomic(&self.cfg.path, &factory)?;
        let intel = self.cfg.state_dir.join("intel");
        if intel.exists() {
            std::fs::remove_dir_all(&intel)?;
        }
        let _ = std::fs::remove_file(self.cfg.state_dir.join(ACKS_FILE));
        let _ = std::fs::remove_file(self.cfg.state_dir.join(INCIDENTS_FILE));
        tracing::warn!(config = %self.cfg.path.display(), "factory reset: config restored, state cleared; restarting");
        Ok(())
    }

    /// Traces a value (a dataset hit) back to the indicators and MISP attributes behind it.
    pub fn lookup(&self, value: &str) -> Result<Vec<Provenance>, String> {
        let hit = Ioc::parse_any(value).map_err(|e| e.to_string())?;
        Ok(lookup_in(&self.sources, &hit))
    }

    /// Listens on the eve socket, or follows the configured eve file.
    fn start_intake(&mut self, tx: mpsc::Sender<Alert>) -> Option<tokio::task::JoinHandle<()>> {
        let counters = self.intake.clone();
        match &self.cfg.alerts.eve_file {
            Some(file) => Some(tokio::spawn(intake::follow(
                file.clone(),
                false,
                Duration::from_millis(250),
                counters,
                tx,
            ))),
            None => match intake::listen(&self.cfg.alerts.eve_socket, counters, tx) {
                Ok(task) => Some(task),
                Err(e) => {
                    tracing::error!(socket = %self.cfg.alerts.eve_socket.display(), "cannot listen for Suricata's alerts: {e}");
                    None
                }
            },
        }
    }

    fn on_alert(&mut self, a: &Alert) {
        if a.action == "blocked" {
            self.status.alerts.last_block = Some(a.time);
        }
        let sources = &self.sources;
        let lookup = |v: &str| {
            Ioc::parse_any(v)
                .ok()
                .and_then(|hit| lookup_in(sources, &hit).into_iter().next())
        };
        let outcome = self.triage.ingest(a, &lookup);
        self.incidents_dirty = true;
        if let Outcome::Counted(inc) = &outcome {
            self.queue_update(inc);
        }
        if let Outcome::New(inc) = outcome {
            self.queue_actions(&inc);
            if inc.high {
                tracing::warn!(incident = %inc.id, local = %inc.local, remote = %inc.remote, sid = inc.sid, "high-severity incident: {}", inc.signature);
            } else {
                tracing::info!(incident = %inc.id, local = %inc.local, remote = %inc.remote, sid = inc.sid, "incident: {}", inc.signature);
            }
            // New incidents show at once; counts of open ones with the next periodic publish.
            self.publish();
        }
    }

    /// Pulls every source once and applies (the `sync --once` path).
    pub async fn sync_once(&mut self) -> SyncReport {
        let all: Vec<usize> = (0..self.sources.len()).collect();
        self.pull_and_enforce(&all).await
    }

    async fn pull_and_enforce(&mut self, idx: &[usize]) -> SyncReport {
        let mut report = SyncReport::default();
        let mut changed = false;
        for &i in idx {
            let src = &mut self.sources[i];
            let name = src.cfg.name().to_string();
            let started = std::time::Instant::now();
            match pull(src).await {
                Ok(pulled) => {
                    src.state.apply(pulled, unix_now());
                    src.failures = 0;
                    src.next = Instant::now() + src.cfg.interval();
                    tracing::info!(source = %name, entries = src.state.set.len(), ms = started.elapsed().as_millis() as u64, "pulled");
                    if let Err(e) = self.store.save(&name, &src.state) {
                        tracing::error!("intel store: {e}");
                    }
                    changed = true;
                    report.sources.push((name, None));
                }
                Err(e) => {
                    src.failures += 1;
                    let wait = retry_delay(src.failures, src.cfg.interval());
                    src.next = Instant::now() + wait;
                    tracing::warn!(source = %name, retry_in = ?wait, "pull failed, keeping the last good set: {e}");
                    src.state.last_error = Some(e.to_string());
                    report.sources.push((name, Some(e.to_string())));
                }
            }
        }
        if changed {
            match self.enforce().await {
                Ok(r) => report.apply = Some(r),
                Err(e) => report.apply_error = Some(e),
            }
        } else {
            self.publish();
        }
        report
    }

    /// Renders the effective set and applies it.
    async fn enforce(&mut self) -> Result<ApplyReport, String> {
        let allow = match self.cfg.allowlist() {
            Ok(a) => a,
            Err(e) => return Err(e.to_string()),
        };
        let (eff, dropped) = Effective::build(
            self.sources.iter().map(|s| &s.state.set),
            &allow,
            self.cfg.expand_limits(),
        );
        let rendered = render::render(&eff, allow.domains(), &Options::from(&self.cfg));
        self.status.blocklist = counts(&eff);
        self.status.dropped = dropped;
        let result = self.applier.apply(&rendered).await;
        let s = &mut self.status.suricata;
        let out = match result {
            Ok(r) => {
                if r.live != Live::Unchanged {
                    s.last_change = Some(unix_now());
                    s.last_live = Some(live_name(&r.live).to_string());
                    s.last_added = r.added;
                    s.last_removed = r.removed;
                    s.reachable = !matches!(r.live, Live::SuricataDown(_));
                    tracing::info!(
                        added = r.added,
                        removed = r.removed,
                        live = live_name(&r.live),
                        "blocklist applied"
                    );
                }
                s.last_error = None;
                Ok(r)
            }
            Err(e) => {
                tracing::error!("cannot write suricata files: {e}");
                s.last_error = Some(e.to_string());
                Err(e.to_string())
            }
        };
        self.publish();
        out
    }

    async fn check_suricata(&mut self) {
        let sock = &self.cfg.suricata.command_socket;
        let ok = match Connection::open(sock, Duration::from_secs(5)).await {
            Ok(mut c) => c
                .command("uptime", None)
                .await
                .map(|r| r.ok)
                .unwrap_or(false),
            Err(_) => false,
        };
        if ok && !self.status.suricata.reachable {
            tracing::info!("suricata reachable");
            // It may have (re)started since our last change: make sure it has the files' state.
            self.status.suricata.reachable = true;
            if let Err(e) = self.enforce().await {
                tracing::error!("{e}");
            }
        } else if !ok && self.status.suricata.reachable {
            tracing::warn!(socket = %sock.display(), "suricata not reachable");
        }
        self.status.suricata.reachable = ok;
        self.publish();
    }

    fn publish(&mut self) {
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
        self.status.sources = self
            .sources
            .iter()
            .map(|s| {
                let stale_after = 3 * s.cfg.interval().as_secs();
                if let Some(err) = &s.state.last_error {
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
                    last_ok: s.state.last_ok,
                    last_error: s.state.last_error.clone(),
                    stats: s.state.stats.clone(),
                    next_pull_in: s.next.saturating_duration_since(now_i).as_secs(),
                }
            })
            .collect();
        let mut recent: Vec<Incident> = self.triage.open().cloned().collect();
        recent.sort_by_key(|i| std::cmp::Reverse(i.last_seen));
        let acked = &self.acked;
        self.status.alerts = AlertsStatus {
            intake: self.intake.snapshot(),
            open: recent.len(),
            high_open: recent.iter().filter(|i| i.high).count(),
            high_unacked: recent
                .iter()
                .filter(|i| i.high && !acked.contains(&i.id))
                .count(),
            acknowledged: recent
                .iter()
                .filter(|i| acked.contains(&i.id))
                .map(|i| i.id.clone())
                .collect(),
            last_block: self.status.alerts.last_block,
            recent: recent.into_iter().take(RECENT_INCIDENTS).collect(),
        };
        self.status.state = if reasons.is_empty() {
            "protected"
        } else {
            "degraded"
        }
        .to_string();
        self.status.reasons = reasons;
        self.status.intel_stale = self.status.reasons.iter().any(|r| r.starts_with("source "));
        self.status.outbox = self
            .outbox
            .as_ref()
            .map(|o| respond::lock(o).stats())
            .unwrap_or_default();
        self.status_tx.send_replace(self.status.clone());
    }
}

/// Whether an incident's MISP event is updated at this many alerts: 10, 100, 1000…
fn update_due(count: u64) -> bool {
    count >= 10 && 10u64.pow(count.ilog10()) == count
}

/// The MISP event for a high-severity incident: your organisation only, TLP:AMBER,
/// the remote endpoint as IoCs, the home device as context (never to_ids).
fn misp_event(inc: &Incident) -> serde_json::Value {
    let threat = match inc.severity {
        1 => "1",
        2 => "2",
        _ => "3",
    };
    let home = |ip: &std::net::IpAddr| {
        crate::intel::set::BUILTIN_ALLOW
            .iter()
            .filter_map(|n| n.parse::<ipnet::IpNet>().ok())
            .any(|n| n.contains(ip))
    };
    let mut attributes = vec![serde_json::json!({
        "type": "ip-dst", "category": "Network activity", "value": inc.remote_ip.to_string(),
        "to_ids": !home(&inc.remote_ip), "comment": "remote endpoint",
    })];
    if inc.remote != inc.remote_ip.to_string() {
        attributes.push(serde_json::json!({
            "type": "domain", "category": "Network activity", "value": inc.remote, "to_ids": true,
            "comment": "the name the device looked up or connected to",
        }));
    }
    attributes.push(serde_json::json!({
        "type": "ip-src", "category": "Network activity", "value": inc.local.to_string(),
        "to_ids": false, "comment": "home device",
    }));
    serde_json::json!({"Event": {
        "uuid": inc.uuid(),
        "info": format!("homewarden: {}", inc.signature),
        "threat_level_id": threat,
        "distribution": "0",
        "analysis": "0",
        "published": false,
        "Tag": [{"name": "tlp:amber"}, {"name": "homewarden"}],
        "Attribute": attributes,
    }})
}

/// Wait before retrying a source after its `failures`-th failure in a row:
/// 15 s, 30 s, 60 s… but never longer than its interval.
fn retry_delay(failures: u32, interval: Duration) -> Duration {
    let doublings = failures.clamp(1, 11) - 1;
    FIRST_RETRY.saturating_mul(1 << doublings).min(interval)
}

/// Every held indicator that explains a hit, with its provenance.
fn lookup_in(sources: &[Source], hit: &Ioc) -> Vec<Provenance> {
    sources
        .iter()
        .flat_map(|s| {
            let set = &s.state.set;
            set.entries()
                .iter()
                .filter(|e| e.ioc.covers(hit))
                .map(|e| set.provenance(s.cfg.name(), e))
        })
        .collect()
}

fn live_name(l: &Live) -> &'static str {
    match l {
        Live::Unchanged => "unchanged",
        Live::Delta => "delta",
        Live::Reload => "reload",
        Live::SuricataDown(_) => "suricata_down",
    }
}

fn kind_name(c: &SourceConfig) -> &'static str {
    match c {
        SourceConfig::Misp(_) => "misp",
        SourceConfig::MispFeed(_) => "misp_feed",
        SourceConfig::List(_) => "list",
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
    }
}

/// Aborts a task when dropped, so no responder outlives the agent loop.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

fn build_responders(
    cfg: &Config,
    secrets: &Secrets,
    sources: &[Source],
    outbox: SharedOutbox,
) -> Result<Responders, AgentError> {
    let misp = sources
        .iter()
        .filter_map(|s| match &s.client {
            Client::Misp(c) => Some((s.cfg.name().to_string(), c.clone())),
            _ => None,
        })
        .collect();
    let key = cfg.advisor.api_key_env().and_then(|k| secrets.get(k));
    let advisor = crate::advisor::Client::new(&cfg.advisor, key, cfg.triage().home)
        .map_err(|e| AgentError::Responder(format!("advisor: {e}")))?;
    let mailer = crate::mail::Mailer::new(&cfg.mail, secrets.get(&cfg.mail.password_env))
        .map_err(|e| AgentError::Responder(e.to_string()))?;
    Ok(Responders {
        outbox,
        misp,
        sighting_source: cfg.alerts.sighting_source.clone(),
        advisor,
        advice_tries: cfg.advisor.tries,
        mailer,
        max_per_hour: cfg.mail.max_per_hour,
        state_dir: cfg.state_dir.clone(),
        appliance: crate::mail::appliance_name(),
    })
}

fn build_client(sc: &SourceConfig, secrets: &Secrets) -> Result<Client, IntelError> {
    Ok(match sc {
        SourceConfig::Misp(m) => {
            let key = secrets.get(&m.api_key_env).ok_or_else(|| {
                IntelError::Config(format!(
                    "no API key: set {} in the environment, in .env beside the config, or as a systemd credential",
                    m.api_key_env
                ))
            })?;
            let http = fetch::client(m.ca_file.as_deref(), m.verify_tls)?;
            Client::Misp(misp::Client::new(http, &m.url, key, m.timeout)?)
        }
        SourceConfig::MispFeed(f) => Client::Feed(
            Location::new(f.url.as_deref(), f.path.as_deref())?,
            fetch::client(None, true)?,
        ),
        SourceConfig::List(l) => Client::List(
            Location::new(l.url.as_deref(), l.path.as_deref())?,
            fetch::client(None, true)?,
        ),
    })
}

async fn pull(src: &Source) -> Result<Pulled, IntelError> {
    let now = unix_now();
    match (&src.cfg, &src.client) {
        (SourceConfig::Misp(m), Client::Misp(c)) => {
            misp::pull(m, c, &src.state.set, &src.state.cursor, now).await
        }
        (SourceConfig::MispFeed(f), Client::Feed(loc, http)) => {
            feed::pull(
                &f.name,
                loc,
                &src.state.set,
                f.max_age,
                http,
                f.timeout,
                now,
            )
            .await
        }
        (SourceConfig::List(l), Client::List(loc, http)) => {
            list::pull(&l.name, loc, l.column, http, l.timeout).await
        }
        _ => Err(IntelError::Config("source and client disagree".into())),
    }
}

/// Pulls the given sources once and writes the rendering to `out`, touching no Suricata.
pub async fn render_offline(
    cfg: &Config,
    secrets: &Secrets,
    out: &Path,
) -> anyhow::Result<(Counts, Dropped, Vec<(String, PullStats)>)> {
    let mut stats = Vec::new();
    let mut states = Vec::new();
    for sc in &cfg.sources {
        let client = build_client(sc, secrets)
            .map_err(|e| anyhow::anyhow!("source {:?}: {e}", sc.name()))?;
        let src = Source {
            cfg: sc.clone(),
            client,
            state: SourceState::default(),
            next: Instant::now(),
            failures: 0,
        };
        let pulled = pull(&src)
            .await
            .map_err(|e| anyhow::anyhow!("source {:?}: {e}", sc.name()))?;
        let mut st = SourceState::default();
        stats.push((sc.name().to_string(), pulled.stats.clone()));
        st.apply(pulled, unix_now());
        states.push(st);
    }
    let allow = cfg.allowlist()?;
    let (eff, dropped) =
        Effective::build(states.iter().map(|s| &s.set), &allow, cfg.expand_limits());
    let rendered = render::render(&eff, allow.domains(), &Options::from(cfg));
    Applier::new(out, None, Duration::from_secs(1))
        .apply(&rendered)
        .await?;
    Ok((counts(&eff), dropped, stats))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn agent_in(dir: &std::path::Path, factory: Option<&str>) -> Agent {
        let d = dir.display();
        if let Some(text) = factory {
            std::fs::write(dir.join("factory.yaml"), text).unwrap();
        }
        let cfg = dir.join("homewarden.yaml");
        std::fs::write(
            &cfg,
            format!(
                "state_dir: {d}/state\nenforcement: {{ mode: ids }}\n\
                 panel: {{ factory_config: {d}/factory.yaml }}\n"
            ),
        )
        .unwrap();
        std::fs::create_dir_all(dir.join("state/intel")).unwrap();
        std::fs::write(dir.join("state/intel/misp.json"), "{}").unwrap();
        std::fs::write(dir.join("state/acks.json"), "[]").unwrap();
        Agent::open(Config::load(&cfg).unwrap(), &Secrets::default()).unwrap()
    }

    #[tokio::test]
    async fn factory_reset_restores_the_config_and_clears_state() {
        let dir = tempfile::tempdir().unwrap();
        let mut agent = agent_in(dir.path(), Some("# factory defaults\n"));
        assert_eq!(
            agent.on_button(ButtonAction::FactoryReset).await,
            Exit::Restart
        );
        let cfg = std::fs::read_to_string(dir.path().join("homewarden.yaml")).unwrap();
        assert_eq!(cfg, "# factory defaults\n");
        assert!(!dir.path().join("state/intel").exists());
        assert!(!dir.path().join("state/acks.json").exists());
    }

    #[tokio::test]
    async fn a_failed_factory_reset_changes_nothing_and_says_so() {
        let dir = tempfile::tempdir().unwrap();
        let mut agent = agent_in(dir.path(), None);
        let before = std::fs::read_to_string(dir.path().join("homewarden.yaml")).unwrap();
        assert_eq!(
            agent.on_button(ButtonAction::FactoryReset).await,
            Exit::Stopped
        );
        assert_eq!(
            std::fs::read_to_string(dir.path().join("homewarden.yaml")).unwrap(),
            before
        );
        assert!(dir.path().join("state/intel/misp.json").exists());
        assert!(
            agent.status.presses[0]
                .action
                .starts_with("factory reset failed"),
            "{:?}",
            agent.status.presses
        );
    }

    #[tokio::test]
    async fn acknowledging_is_remembered_across_restarts() {
        let dir = tempfile::tempdir().unwrap();
        let mut agent = agent_in(dir.path(), None);
        let alert = crate::alerts::eve::parse(
            br#"{"timestamp":"2026-11-25T03:50:26.1+0000","event_type":"alert","src_ip":"10.0.0.2","dest_ip":"203.0.113.66","proto":"TCP","alert":{"action":"blocked","signature_id":1,"signature":"s","category":"c","severity":1}}"#,
        )
        .unwrap();
        agent.on_alert(&alert);
        assert_eq!(agent.status.alerts.high_unacked, 1);
        assert_eq!(agent.acknowledge(), 1);
        assert_eq!(agent.status.alerts.high_unacked, 0);
        let saved: Vec<String> =
            serde_json::from_slice(&std::fs::read(dir.path().join("state/acks.json")).unwrap())
                .unwrap();
        assert_eq!(saved.len(), 1);
        let again = Agent::open(agent.cfg.clone(), &Secrets::default()).unwrap();
        assert!(again.acked.contains(&saved[0]));
    }

    #[test]
    fn event_updates_at_powers_of_ten_only() {
        let due: Vec<u64> = (0..=100_000).filter(|&c| update_due(c)).collect();
        assert_eq!(due, [10, 100, 1000, 10_000, 100_000]);
    }

    #[test]
    fn retries_back_off_up_to_the_interval() {
        let hour = Duration::from_secs(3600);
        let secs = |n| retry_delay(n, hour).as_secs();
        assert_eq!([secs(1), secs(2), secs(3), secs(4)], [15, 30, 60, 120]);
        assert_eq!(secs(9), 3600);
        assert_eq!(secs(1000), 3600);
        assert_eq!(
            retry_delay(3, Duration::from_secs(20)),
            Duration::from_secs(20)
        );
    }
}
