//! The agent: owns the IoC store, pulls each source on its own schedule,
//! and keeps Suricata's datasets equal to the effective set.

use std::path::Path;
use std::time::Duration;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot, watch, Notify};
use tokio::time::Instant;

use crate::alerts::eve::Alert;
use crate::alerts::hits::Hits;
use crate::alerts::intake::{self, Counters, CountersSnapshot};
use crate::alerts::triage::{Incident, Outcome, Triage};
use crate::allow::LocalAllowlist;
use crate::config::{Action, Config, FailMode, Mode, SourceConfig};
use crate::intel::fetch::{self, Location};
use crate::intel::ioc::Ioc;
use crate::intel::set::{Dropped, Effective, Provenance, SourceSet};
use crate::intel::store::Store;
use crate::intel::{
    feed, list, misp, unix_now, Cursor, IntelError, PullStats, Pulled, SourceState,
};
use crate::outbox::{Outbox, Stats as OutboxStats};
use crate::panel::button::Action as ButtonAction;
use crate::panel::{Input as PanelInput, Press};
use crate::respond::{
    self, Responders, SharedOutbox, MAIL, MISP_EVENT, MISP_EVENT_UPDATE, SIGHTING,
};
use crate::secrets::Secrets;
use crate::suricata::apply::{Applier, ApplyReport, Live};
use crate::suricata::render::{self, Options};
use crate::suricata::selftest::{self, Probe};
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
#[derive(Clone)]
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
    /// A scheduled pull is running in the background.
    pulling: bool,
    /// Bumped whenever a pull's result is taken: a background pull that
    /// started from an older state is dropped, never applied over a newer one.
    generation: u64,
}

/// What a background pull hands back: the source's index, the generation it
/// started from, the result, and when it started.
type PullDone = (usize, u64, Result<Pulled, IntelError>, std::time::Instant);

/// Who waits for a sync of every source.
enum SyncAsker {
    /// `homewarden sync`, over the control socket.
    Control(oneshot::Sender<SyncReport>),
    /// A 5 s press of the button.
    Button,
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
    /// Shadow mode: indicators observed before they block.
    #[serde(default)]
    pub shadow: ShadowStatus,
    /// The self-test of enforcement.
    #[serde(default)]
    pub selftest: selftest::Status,
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
    /// Run the self-test now (with the capture replay).
    Selftest(oneshot::Sender<selftest::Status>),
    /// The owner's question or correction, with who asked (peer credentials).
    Owner(
        crate::control::OwnerCommand,
        String,
        oneshot::Sender<Result<serde_json::Value, String>>,
    ),
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
    local_allow: LocalAllowlist,
    hits: Hits,
    shadow: crate::shadow::Shadow,
    /// When the next self-test is due (unix seconds), and whether it replays the capture.
    selftest_due: Option<(u64, bool)>,
    /// Values the live self-test looks up, from the last rendering.
    probes: Vec<Probe>,
    /// A rendering that failed its self-test: not applied again.
    bad_rendering: Option<u64>,
    /// The fingerprint of the last rendering applied.
    applied: Option<u64>,
    /// The last self-test failed and the last good rendering was put back.
    rolled_back: bool,
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
                pulling: false,
                generation: 0,
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
            Ok(o) => Some(Arc::new(std::sync::Mutex::new(
                o.with_first_backoff(cfg.alerts.retry_first.as_secs()),
            ))),
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
            local_allow: load_local_allowlist(&cfg.state_dir),
            hits: Hits::default(),
            shadow: crate::shadow::Shadow::load(&cfg.state_dir),
            selftest_due: None,
            probes: Vec::new(),
            bad_rendering: None,
            applied: None,
            rolled_back: false,
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
        // Scheduled pulls run beside the loop: a MISP that takes its full timeout
        // must not hold up alert triage, requests or the watchdog.
        let mut pulls: tokio::task::JoinSet<PullDone> = tokio::task::JoinSet::new();
        let mut pulling: HashMap<tokio::task::Id, usize> = HashMap::new();
        let mut scheduled: HashMap<usize, tokio::task::AbortHandle> = HashMap::new();
        // A sync of every source (control socket, button) runs beside the loop too;
        // whoever asks while one runs gets its report.
        let mut syncs: tokio::task::JoinSet<Vec<PullDone>> = tokio::task::JoinSet::new();
        let mut askers: Vec<SyncAsker> = Vec::new();
        loop {
            let next = self
                .sources
                .iter()
                .filter(|s| !s.pulling)
                .map(|s| s.next)
                .min();
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
                    for i in 0..self.sources.len() {
                        let src = &mut self.sources[i];
                        if src.next > now || src.pulling {
                            continue;
                        }
                        src.pulling = true;
                        let (cfg, client) = (src.cfg.clone(), src.client.clone());
                        let (set, cursor) = (src.state.set.clone(), src.state.cursor.clone());
                        let generation = src.generation;
                        let task = pulls.spawn(async move {
                            let started = std::time::Instant::now();
                            let result = pull_from(&cfg, &client, &set, &cursor).await;
                            (i, generation, result, started)
                        });
                        pulling.insert(task.id(), i);
                        scheduled.insert(i, task);
                    }
                }
                Some(done) = pulls.join_next_with_id(), if !pulls.is_empty() => match done {
                    Ok((id, (i, generation, result, started))) => {
                        pulling.remove(&id);
                        scheduled.remove(&i);
                        if !syncs.is_empty() {
                            // Finished just as a sync began: the sync's own pull is newer.
                        } else if self.take_pull(i, generation, result, started) {
                            let _ = self.enforce().await;
                        } else {
                            self.publish();
                        }
                    }
                    Err(e) if e.is_cancelled() => {
                        // Stopped for a sync, which pulls this source itself.
                        if let Some(i) = pulling.remove(&e.id()) {
                            scheduled.remove(&i);
                        }
                    }
                    Err(e) => {
                        // A pull that panicked: schedule it again like a failed one.
                        if let Some(i) = pulling.remove(&e.id()) {
                            scheduled.remove(&i);
                            let src = &mut self.sources[i];
                            src.pulling = false;
                            src.failures += 1;
                            src.next = Instant::now() + retry_delay(src.failures, src.cfg.interval());
                            tracing::error!(source = %src.cfg.name(), "pull task failed: {e}");
                        }
                    }
                },
                Some(req) = requests.recv() => match req {
                    Request::Sync(reply) => {
                        if syncs.is_empty() {
                            self.start_sync(&mut syncs, &mut scheduled);
                        }
                        askers.push(SyncAsker::Control(reply));
                    }
                    Request::Lookup(value, reply) => {
                        let _ = reply.send(self.lookup(&value));
                    }
                    Request::Selftest(reply) => {
                        let _ = reply.send(self.selftest(true).await);
                    }
                    Request::Owner(cmd, who, reply) => {
                        let _ = reply.send(self.owner(cmd, &who).await);
                    }
                    Request::Press(d) => {
                        if let Some(p) = &self.panel {
                            let _ = p.send(PanelInput::Press(d)).await;
                        }
                    }
                    Request::Button(ButtonAction::Resync) => {
                        if syncs.is_empty() {
                            self.start_sync(&mut syncs, &mut scheduled);
                        }
                        askers.push(SyncAsker::Button);
                    }
                    Request::Button(action) => {
                        if self.on_button(action).await == Exit::Restart {
                            drop(responders);
                            return Exit::Restart;
                        }
                    }
                },
                Some(done) = syncs.join_next(), if !syncs.is_empty() => {
                    let report = self.finish_sync(done).await;
                    for asker in askers.drain(..) {
                        match asker {
                            SyncAsker::Control(reply) => {
                                let _ = reply.send(report.clone());
                            }
                            SyncAsker::Button => self.pressed(format!(
                                "re-sync: {}",
                                if report.ok() { "ok" } else { "failed" }
                            )),
                        }
                    }
                }
                Some(a) = alerts.recv() => self.on_alert(&a),
                _ = save.tick() => self.save_incidents(),
                _ = health.tick() => {
                    let _ = sd_notify::notify(&[sd_notify::NotifyState::Watchdog]);
                    self.check_suricata().await;
                    if !self.triage.expire(unix_now() as i64).is_empty() {
                        self.incidents_dirty = true;
                    }
                    self.expire_allowances().await;
                    if let Some((_, replay)) = self.selftest_due.filter(|(t, _)| *t <= unix_now()) {
                        self.selftest_due = None;
                        self.selftest(replay).await;
                    }
                    if self.status.shadow.next_promotion.is_some_and(|t| t <= unix_now()) {
                        if let Err(e) = self.enforce().await {
                            tracing::error!("{e}");
                        }
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
    /// queued or done, and re-queue what a torn outbox file lost (the latest
    /// event update included).
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
                let aside = crate::fsutil::set_aside(&path);
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
            // The latest update due: its key makes this a no-op if it was
            // queued or sent, and brings it back if a torn file lost it.
            if inc.count >= 10 {
                self.queue_update_at(inc, 10u64.pow(inc.count.ilog10()));
            }
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
        if update_due(inc.count) {
            self.queue_update_at(inc, inc.count);
        }
    }

    /// Queues the event update for the moment the incident reached `count` alerts.
    fn queue_update_at(&mut self, inc: &Incident, count: u64) {
        let (_, Some(source)) = self.responders_for(inc) else {
            return;
        };
        let Some(outbox) = self.outbox.as_ref() else {
            return;
        };
        let payload = serde_json::json!({
            "source": source,
            "uuid": inc.uuid(),
            "event": {"Event": {"info": format!("homewarden: {} ({count} alerts)", inc.signature)}},
        });
        let key = format!("{}:misp-event-update:{count}", inc.id);
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
        // Acknowledging also puts out a self-test alarm (the mail said what happened).
        self.status.selftest.alarm = None;
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
                // Only the loop starts a re-sync (it owns the background pulls);
                // the press is recorded when the pulls are done.
                return Exit::Stopped;
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
        self.pressed(label);
        Exit::Stopped
    }

    /// Records what a press did, for status.
    fn pressed(&mut self, label: String) {
        self.status.presses.push(Press {
            at: unix_now(),
            action: label,
        });
        let excess = self.status.presses.len().saturating_sub(PRESSES_SHOWN);
        self.status.presses.drain(..excess);
        self.publish();
    }

    /// Starts pulling every source in the background, one after the other as
    /// `sync --once` always did; scheduled pulls in flight are stopped (the
    /// sync's are newer) and none start until it is done.
    fn start_sync(
        &mut self,
        syncs: &mut tokio::task::JoinSet<Vec<PullDone>>,
        scheduled: &mut HashMap<usize, tokio::task::AbortHandle>,
    ) {
        for (_, task) in scheduled.drain() {
            task.abort();
        }
        let jobs: Vec<_> = self
            .sources
            .iter_mut()
            .enumerate()
            .map(|(i, src)| {
                src.pulling = true;
                (
                    i,
                    src.cfg.clone(),
                    src.client.clone(),
                    src.state.set.clone(),
                    src.state.cursor.clone(),
                    src.generation,
                )
            })
            .collect();
        syncs.spawn(async move {
            let mut done = Vec::new();
            for (i, cfg, client, set, cursor, generation) in jobs {
                let started = std::time::Instant::now();
                let result = pull_from(&cfg, &client, &set, &cursor).await;
                done.push((i, generation, result, started));
            }
            done
        });
    }

    /// Takes a sync's results and applies them: the report `sync` prints.
    async fn finish_sync(
        &mut self,
        done: Result<Vec<PullDone>, tokio::task::JoinError>,
    ) -> SyncReport {
        let mut report = SyncReport::default();
        let mut changed = false;
        match done {
            Ok(results) => {
                for (i, generation, result, started) in results {
                    let error = result.as_ref().err().map(|e| e.to_string());
                    changed |= self.take_pull(i, generation, result, started);
                    report
                        .sources
                        .push((self.sources[i].cfg.name().to_string(), error));
                }
            }
            Err(e) => {
                tracing::error!("sync task failed: {e}");
                report.sources = self
                    .sources
                    .iter()
                    .map(|s| (s.cfg.name().to_string(), Some(format!("sync failed: {e}"))))
                    .collect();
            }
        }
        // Whatever came of it, every source is free for its schedule again.
        for src in &mut self.sources {
            src.pulling = false;
        }
        self.enforce_into(report, changed).await
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
        let inc = match &outcome {
            Outcome::New(i) | Outcome::Counted(i) => i,
        };
        let value = inc.ioc.as_ref().map_or(&inc.remote, |p| &p.indicator);
        if a.action == "blocked" {
            self.hits.record(value, a.time);
        }
        // A device that must not break talked to an observed indicator: hold it for the owner.
        let shadow_hit = a
            .metadata
            .get("homewarden_kind")
            .is_some_and(|k| k.iter().any(|v| v.starts_with("shadow-")));
        if shadow_hit
            && self
                .cfg
                .enforcement
                .do_not_break
                .iter()
                .any(|n| n.contains(&inc.local))
            && self.shadow.hold(value, inc.local, a.time)
        {
            tracing::warn!(indicator = %value, device = %inc.local, "observed indicator held: a do-not-break device talks to it");
            self.status.shadow.held = self.shadow.held();
        }
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

    /// Answers the owner: explain, allow, unallow, blocks.
    async fn owner(
        &mut self,
        cmd: crate::control::OwnerCommand,
        who: &str,
    ) -> Result<serde_json::Value, String> {
        use crate::control::OwnerCommand as C;
        match cmd {
            C::Explain { value } => {
                serde_json::to_value(self.explain(&value)?).map_err(|e| e.to_string())
            }
            C::Allow {
                value,
                for_secs,
                reason,
            } => {
                let before = self.explain(&value)?;
                let now = unix_now();
                let entry = self
                    .local_allow
                    .add(
                        &value,
                        who,
                        now,
                        for_secs.map(|s| now + s),
                        reason.as_deref(),
                    )
                    .map_err(|e| e.to_string())?;
                tracing::warn!(value = %entry.value, who = %entry.who, until = ?entry.until, "allowed by the owner");
                let applied = self.enforce().await?;
                let sightings = self.queue_false_positives(&before, &entry);
                Ok(serde_json::json!({
                    "allowed": entry,
                    "applied": live_name(&applied.live),
                    "removed": applied.removed,
                    "false_positive_sightings": sightings,
                }))
            }
            C::Unallow { value } => {
                let gone = self.local_allow.remove(&value).map_err(|e| e.to_string())?;
                let Some(gone) = gone else {
                    return Err(format!("{value:?} is not on the owner's allowlist"));
                };
                tracing::warn!(value = %gone.value, who, "allowance taken back");
                let applied = self.enforce().await?;
                Ok(serde_json::json!({
                    "unallowed": gone,
                    "applied": live_name(&applied.live),
                    "added": applied.added,
                }))
            }
            C::Blocks => {
                let now = unix_now() as i64;
                let recent: Vec<serde_json::Value> = self
                    .hits
                    .recent(now)
                    .into_iter()
                    .map(|r| {
                        let by = Ioc::parse_any(&r.value)
                            .map(|i| lookup_in(&self.sources, &i))
                            .unwrap_or_default();
                        serde_json::json!({"value": r.value, "hits_24h": r.hits_24h, "last": r.last, "listed_by": by})
                    })
                    .collect();
                Ok(serde_json::json!({
                    "blocklist": self.status.blocklist,
                    "recent": recent,
                    "allowed": self.local_allow.entries(),
                }))
            }
        }
    }

    /// The explanation of a value against the live sets.
    pub fn explain(&self, value: &str) -> Result<crate::explain::Explanation, String> {
        let views: Vec<crate::explain::SourceView> = self
            .sources
            .iter()
            .map(|s| crate::explain::SourceView {
                cfg: &s.cfg,
                set: &s.state.set,
            })
            .collect();
        crate::explain::explain(
            value,
            &views,
            &self.cfg,
            &self.local_allow,
            &self.shadow,
            unix_now(),
        )
        .map_err(|e| format!("{value:?}: {e}"))
    }

    /// Tells each MISP that listed a value the owner allowed: a false positive here.
    fn queue_false_positives(
        &mut self,
        before: &crate::explain::Explanation,
        entry: &crate::allow::Allowed,
    ) -> usize {
        let misp: HashSet<&str> = self
            .sources
            .iter()
            .filter(|s| matches!(s.cfg, SourceConfig::Misp(_)))
            .map(|s| s.cfg.name())
            .collect();
        let Some(outbox) = self.outbox.as_ref() else {
            return 0;
        };
        let mut ob = respond::lock(outbox);
        let mut n = 0;
        for l in &before.listings {
            let p = &l.provenance;
            let Some(attr) = p
                .attribute_uuid
                .as_deref()
                .filter(|_| misp.contains(p.source.as_str()))
            else {
                continue;
            };
            let payload = serde_json::json!({
                "source": p.source, "attribute_uuid": attr, "time": entry.at,
                "type": crate::intel::misp::SightingType::FalsePositive,
            });
            let key = format!("fp-{attr}-{}", entry.at);
            match ob.put(SIGHTING, &key, payload, true, unix_now()) {
                Ok(_) => n += 1,
                Err(e) => tracing::error!("{e}"),
            }
        }
        drop(ob);
        self.wake_responders.notify_one();
        n
    }

    /// Proves enforcement: Suricata's live state, and (with `replay`) the
    /// capture through `suricata -r`. A pass keeps the rendering as the last
    /// good one; a failure puts the last good one back, lights amber and mails once.
    async fn selftest(&mut self, replay: bool) -> selftest::Status {
        let cfg = &self.cfg;
        let mut checks = selftest::live(
            &cfg.suricata.command_socket,
            cfg.suricata.socket_timeout,
            &self.probes,
        )
        .await;
        if replay && cfg.selftest.replay {
            checks.push(
                selftest::replay(&selftest::Replay {
                    suricata: cfg.selftest.suricata.clone(),
                    config: cfg.selftest.suricata_config.clone(),
                    pcap: cfg.selftest.pcap.clone(),
                    rules_dir: cfg.suricata.rules_dir.clone(),
                    sid: cfg.suricata.sid_base + selftest::CANARY_SID_OFFSET,
                    timeout: cfg.selftest.timeout,
                })
                .await,
            );
        }
        let now = unix_now();
        let failed: Vec<String> = checks
            .iter()
            .filter(|c| !c.ok)
            .map(|c| format!("{} ({})", c.name, c.detail))
            .collect();
        let good_dir = cfg.state_dir.join("last-good");
        let st = &mut self.status.selftest;
        st.last_run = Some(now);
        st.ok = Some(failed.is_empty());
        st.checks = checks;
        if failed.is_empty() {
            tracing::info!(replay, "self-test passed");
            if let Err(e) = selftest::copy_rendering(&cfg.suricata.rules_dir, &good_dir) {
                tracing::error!(
                    "{}: cannot keep the last good rendering: {e}",
                    good_dir.display()
                );
            }
            // A pass right after a rollback proves the old rendering, not a new one.
            if !self.rolled_back {
                st.alarm = None;
            }
            self.rolled_back = false;
        } else {
            let what = failed.join("; ");
            tracing::error!("self-test failed: {what}");
            let first = st.alarm.is_none();
            st.alarm = Some(what.clone());
            if !self.rolled_back && good_dir.join(render::RULES_FILE).exists() {
                self.rolled_back = true;
                st.rolled_back = Some(now);
                self.bad_rendering = self.applied;
                // What the bad rendering listed is gone again: only the canary is sure.
                self.probes.truncate(1);
                match selftest::copy_rendering(&good_dir, &cfg.suricata.rules_dir) {
                    Ok(_) => {
                        tracing::warn!("rolled back to the last good rendering");
                        if let Ok(mut c) = Connection::open(
                            &cfg.suricata.command_socket,
                            cfg.suricata.socket_timeout,
                        )
                        .await
                        {
                            let _ = c.command("ruleset-reload-nonblocking", None).await;
                        }
                        self.selftest_due = Some((now + RELOAD_SETTLE, true));
                    }
                    Err(e) => tracing::error!("rollback failed: {e}"),
                }
            }
            if first {
                self.queue_notice(
                    "Self-test failed: enforcement rolled back",
                    &format!(
                        "The appliance checked that Suricata enforces what it was given, and it does not:\n\n{what}\n\n{}\nThe amber light stays on until you acknowledge (short press, or `homewarden ack`). `homewarden selftest` runs the test again; `homewarden status` shows the checks.\n",
                        if self.rolled_back {
                            "The last rendering that passed was put back, so the home stays protected by the previous blocklist."
                        } else {
                            "No earlier good rendering was kept, so nothing could be rolled back."
                        }
                    ),
                );
            }
        }
        self.publish();
        self.status.selftest.clone()
    }

    /// Queues a mail about the appliance itself.
    fn queue_notice(&mut self, subject: &str, text: &str) {
        let (Some(outbox), true) = (self.outbox.as_ref(), self.mail_on) else {
            return;
        };
        let now = unix_now();
        let payload = serde_json::json!({"subject": subject, "text": text});
        let queued = respond::lock(outbox).put(
            respond::MAIL_NOTICE,
            &format!("notice-{now}"),
            payload,
            true,
            now,
        );
        if let Err(e) = queued {
            tracing::error!("{e}");
        }
        self.wake_responders.notify_one();
    }

    /// Tells MISP (expiration sightings) which of its attributes stopped being enforced here.
    fn queue_expirations(&mut self, expired: &[(String, String)]) {
        if expired.is_empty() {
            return;
        }
        let Some(outbox) = self.outbox.as_ref() else {
            return;
        };
        let now = unix_now();
        let mut ob = respond::lock(outbox);
        for (source, attr) in expired {
            let payload = serde_json::json!({
                "source": source, "attribute_uuid": attr, "time": now,
                "type": crate::intel::misp::SightingType::Expiration,
            });
            if let Err(e) = ob.put(SIGHTING, &format!("exp-{attr}-{now}"), payload, false, now) {
                tracing::error!("{e}");
            }
        }
        drop(ob);
        tracing::info!(attributes = expired.len(), "expiration sightings queued");
        self.wake_responders.notify_one();
    }

    /// Drops allowances whose time is up and enforces again.
    async fn expire_allowances(&mut self) {
        match self.local_allow.expire(unix_now()) {
            Ok(gone) if !gone.is_empty() => {
                for g in &gone {
                    tracing::warn!(value = %g.value, "allowance expired; enforced again");
                }
                if let Err(e) = self.enforce().await {
                    tracing::error!("{e}");
                }
            }
            Ok(_) => {}
            Err(e) => tracing::error!("{e}"),
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
            let started = std::time::Instant::now();
            let result = pull(&self.sources[i]).await;
            let error = result.as_ref().err().map(|e| e.to_string());
            changed |= self.settle(i, result, started);
            report
                .sources
                .push((self.sources[i].cfg.name().to_string(), error));
        }
        self.enforce_into(report, changed).await
    }

    /// Ends a sync: enforces what changed (recording how in the report), or just
    /// publishes the sources' new state.
    async fn enforce_into(&mut self, mut report: SyncReport, changed: bool) -> SyncReport {
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

    /// Takes a background pull's result, unless a newer pull was taken since it
    /// started; true if the state changed (and needs enforcing).
    fn take_pull(
        &mut self,
        i: usize,
        generation: u64,
        result: Result<Pulled, IntelError>,
        started: std::time::Instant,
    ) -> bool {
        self.sources[i].pulling = false;
        if self.sources[i].generation != generation {
            tracing::info!(source = %self.sources[i].cfg.name(), "a newer pull was taken meanwhile; this one is dropped");
            return false;
        }
        self.settle(i, result, started)
    }

    /// Takes a pull's result into the source's state and schedules its next
    /// pull; true if the state changed (and needs enforcing).
    fn settle(
        &mut self,
        i: usize,
        result: Result<Pulled, IntelError>,
        started: std::time::Instant,
    ) -> bool {
        let src = &mut self.sources[i];
        let name = src.cfg.name().to_string();
        src.generation += 1;
        match result {
            Ok(pulled) => {
                let tell_expiry = self.cfg.enforcement.expiration_sightings
                    && matches!(src.cfg, SourceConfig::Misp(_));
                let before = tell_expiry.then(|| attribute_uuids(&src.state.set));
                src.state.apply(pulled, unix_now());
                let expired: Vec<(String, String)> = match before {
                    Some(before) => {
                        let after = attribute_uuids(&src.state.set);
                        before
                            .into_iter()
                            .filter(|a| !after.contains(a))
                            .map(|a| (name.clone(), a))
                            .collect()
                    }
                    None => Vec::new(),
                };
                src.failures = 0;
                src.next = Instant::now() + src.cfg.interval();
                tracing::info!(source = %name, entries = src.state.set.len(), ms = started.elapsed().as_millis() as u64, "pulled");
                if let Err(e) = self.store.save(&name, &src.state) {
                    tracing::error!("intel store: {e}");
                }
                self.queue_expirations(&expired);
                true
            }
            Err(e) => {
                src.failures += 1;
                let wait = retry_delay(src.failures, src.cfg.interval());
                src.next = Instant::now() + wait;
                tracing::warn!(source = %name, retry_in = ?wait, "pull failed, keeping the last good set: {e}");
                src.state.last_error = Some(e.to_string());
                false
            }
        }
    }

    /// Renders the effective set and applies it.
    async fn enforce(&mut self) -> Result<ApplyReport, String> {
        let allow = match self.cfg.allowlist() {
            Ok(mut a) => {
                let (nets, domains) = self.local_allow.targets();
                a.extend(nets, domains);
                a
            }
            Err(e) => return Err(e.to_string()),
        };
        let limits = self.cfg.expand_limits();
        let global = self.cfg.enforcement.shadow;
        // The self-test's canary, always listed, never a real host; built in with
        // the rest, so a million-entry list is never copied to make room for it.
        let canary = Ioc::Ipv4(selftest::CANARY);
        let (eff, observed, dropped) =
            if self.sources.iter().any(|s| s.cfg.shadow(global).is_some()) {
                let sources = &self.sources;
                let split = self.shadow.split(
                    sources.iter().map(|s| (&s.state.set, s.cfg.shadow(global))),
                    unix_now(),
                );
                let (eff, mut dropped) = Effective::from_iocs(
                    split.enforce.iter().copied().chain([&canary]),
                    &allow,
                    limits,
                );
                let (mut observed, more) =
                    Effective::from_iocs(split.observe.iter().copied(), &allow, limits);
                observed.remove_all(&eff);
                dropped.allowlisted += more.allowlisted;
                dropped.too_wide += more.too_wide;
                if split.promoted > 0 {
                    tracing::info!(
                        promoted = split.promoted,
                        "observed indicators promoted to blocking"
                    );
                }
                self.status.shadow = ShadowStatus {
                    observed: observed.len(),
                    held: self.shadow.held(),
                    next_promotion: split.next_promotion,
                };
                (eff, Some(observed), dropped)
            } else {
                self.status.shadow = ShadowStatus::default();
                let (eff, dropped) = Effective::from_iocs(
                    self.sources
                        .iter()
                        .flat_map(|s| s.state.set.entries().iter().map(|e| &e.ioc))
                        .chain([&canary]),
                    &allow,
                    limits,
                );
                (eff, None, dropped)
            };
        // What the owner's sources list: the canary is ours, not theirs.
        self.status.blocklist = counts(&eff);
        if eff.ipv4.binary_search(&selftest::CANARY).is_ok() {
            self.status.blocklist.ipv4 -= 1;
        }
        self.probes = probes(&eff, &self.local_allow);
        let rendered = render::render(
            &eff,
            observed.as_ref(),
            allow.domains(),
            &Options::from(&self.cfg),
        );
        let fingerprint = render::fingerprint(&rendered);
        if self.bad_rendering == Some(fingerprint) {
            tracing::warn!("this rendering failed its self-test before; the last good one stays");
            self.publish();
            return Ok(ApplyReport {
                added: 0,
                removed: 0,
                files_written: 0,
                live: Live::Unchanged,
            });
        }
        self.status.dropped = dropped;
        let result = self.applier.apply(&rendered).await;
        self.applied = Some(fingerprint);
        let s = &mut self.status.suricata;
        let out = match result {
            Ok(r) => {
                // Prove the change: at once after a delta, once a reload has had time to land.
                match r.live {
                    Live::Delta => self.selftest_due = Some((unix_now(), false)),
                    Live::Reload => self.selftest_due = Some((unix_now() + RELOAD_SETTLE, true)),
                    _ => {}
                }
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
            self.selftest_due = Some((unix_now() + RELOAD_SETTLE, true));
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
        if let Some(a) = &self.status.selftest.alarm {
            reasons.push(format!("self-test failed: {a}"));
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

/// How long a non-blocking reload gets before the self-test looks.
const RELOAD_SETTLE: u64 = 15;

/// Values the live self-test looks up: the canary and a few listed values must
/// be in their datasets, a few of the owner's allowances must not.
fn probes(eff: &Effective, local: &LocalAllowlist) -> Vec<Probe> {
    let v4 = |a: std::net::Ipv4Addr, want: bool| Probe {
        set: "hw-ipv4",
        settype: "ipv4",
        value: a.to_string(),
        label: a.to_string(),
        want,
    };
    let mut out = vec![v4(selftest::CANARY, true)];
    let listed: Vec<_> = eff
        .ipv4
        .iter()
        .filter(|a| **a != selftest::CANARY)
        .collect();
    for i in [0, listed.len() / 2, listed.len().saturating_sub(1)] {
        if let Some(a) = listed.get(i) {
            if !out.iter().any(|p| p.value == a.to_string()) {
                out.push(v4(**a, true));
            }
        }
    }
    if let Some(d) = eff.domains.first() {
        out.push(Probe {
            set: "hw-domain",
            settype: "string",
            value: render::b64(d.as_str()),
            label: d.as_str().to_string(),
            want: true,
        });
    }
    let allowed = local.targets().0.into_iter().filter_map(|n| match n {
        ipnet::IpNet::V4(n) if n.prefix_len() == 32 => Some(n.addr()),
        _ => None,
    });
    out.extend(allowed.take(3).map(|a| v4(a, false)));
    out
}

/// The MISP attribute uuids a set holds.
fn attribute_uuids(set: &crate::intel::set::SourceSet) -> HashSet<String> {
    set.entries()
        .iter()
        .filter_map(|e| set.attribute_of(e).map(str::to_string))
        .collect()
}

/// Aborts a task when dropped, so no responder outlives the agent loop.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The owner's allowlist; an unreadable one is set aside (never overwritten) and reported.
fn load_local_allowlist(state_dir: &Path) -> LocalAllowlist {
    match LocalAllowlist::load(state_dir) {
        Ok(l) => l,
        Err(e) => {
            let aside = crate::fsutil::set_aside(&state_dir.join(crate::allow::FILE));
            tracing::error!(
                "{e}; moved to {}: the owner's allowances must be re-entered",
                aside.display()
            );
            LocalAllowlist::load(state_dir).unwrap_or_default()
        }
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
    pull_from(&src.cfg, &src.client, &src.state.set, &src.state.cursor).await
}

/// Pulls a source from what it held (its set and incremental cursor).
async fn pull_from(
    cfg: &SourceConfig,
    client: &Client,
    set: &SourceSet,
    cursor: &Cursor,
) -> Result<Pulled, IntelError> {
    let now = unix_now();
    match (cfg, client) {
        (SourceConfig::Misp(m), Client::Misp(c)) => misp::pull(m, c, set, cursor, now).await,
        (SourceConfig::MispFeed(f), Client::Feed(loc, http)) => {
            feed::pull(&f.name, loc, set, f.max_age, http, f.timeout, now).await
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
            pulling: false,
            generation: 0,
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
    let rendered = render::render(&eff, None, allow.domains(), &Options::from(cfg));
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

    #[tokio::test]
    async fn a_background_pull_overtaken_by_a_newer_one_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().display();
        let list = dir.path().join("list.txt");
        let cfg = dir.path().join("homewarden.yaml");
        std::fs::write(
            &cfg,
            format!(
                "state_dir: {d}/state\nenforcement: {{ mode: ids }}\n\
                 sources: [{{ name: l, type: list, path: {d}/list.txt }}]\n"
            ),
        )
        .unwrap();
        let mut agent = Agent::open(Config::load(&cfg).unwrap(), &Secrets::default()).unwrap();
        // A scheduled pull starts from generation 0 and sees the old list…
        std::fs::write(&list, "203.0.113.1\n").unwrap();
        let old = pull(&agent.sources[0]).await;
        // …meanwhile a manual sync takes the new one.
        std::fs::write(&list, "203.0.113.2\n").unwrap();
        let new = pull(&agent.sources[0]).await;
        assert!(agent.settle(0, new, std::time::Instant::now()));
        assert!(!agent.take_pull(0, 0, old, std::time::Instant::now()));
        let held: Vec<String> = agent.sources[0]
            .state
            .set
            .entries()
            .iter()
            .map(|e| e.ioc.to_string())
            .collect();
        assert_eq!(held, ["203.0.113.2"], "the older result must not win");
        assert!(!agent.sources[0].pulling);
        // A result from the current generation is taken.
        let again = pull(&agent.sources[0]).await;
        assert!(agent.take_pull(0, 1, again, std::time::Instant::now()));
        assert_eq!(agent.sources[0].generation, 2);
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
