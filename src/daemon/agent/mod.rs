//! The agent: owns the IoC store, pulls each source on its own schedule,
//! and keeps Suricata's datasets equal to the effective set.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot, watch, Notify};
use tokio::time::Instant;

use crate::alerts::eve::Alert;
use crate::alerts::intake::{self, Counters};
use crate::appliance::panel::button::Action as ButtonAction;
use crate::appliance::panel::{Input as PanelInput, Press};
use crate::config::{Config, SourceConfig};
use crate::daemon::devices::{self, Devices, DevicesStatus};
use crate::daemon::incidents::{self, Held, Incidents};
use crate::daemon::shutdown::{Stop, Stopper};
use crate::daemon::supervisor::{Heart, Supervisor};
use crate::daemon::AbortOnDrop;
use crate::enforce::firewall::names;
use crate::enforce::suricata::apply::{Applier, ApplyReport};
use crate::enforce::suricata::selftest::{self, Probe};
use crate::intel::fetch::{self, Location};
use crate::intel::set::Index;
use crate::intel::store::Store;
use crate::intel::{misp, unix_now, IntelError, Pulled, SourceState};
use crate::owner::allow::LocalAllowlist;
use crate::respond::outbox::Outbox;
use crate::respond::{Responders, SharedOutbox};
use crate::secrets::Secrets;

mod button;
mod health;
mod lists;
mod open;
mod owner;
mod prepare;
mod status;
mod sync;
mod verify;
use verify::SelftestRun;

pub use status::{
    counts, AlertsStatus, Applies, Counts, Pulls, ShadowStatus, SourceStatus, State, Status,
    SuricataStatus,
};
pub use sync::render_offline;

use owner::load_local_allowlist;
use status::live_name;
use sync::{pull_from, retry_delay};

/// First retry after a failed pull; doubles up to the source's interval.
const FIRST_RETRY: Duration = Duration::from_secs(15);
/// How often Suricata's socket is checked when nothing else happens.
const HEALTH_EVERY: Duration = Duration::from_secs(5);
/// Longest an apply may take before the agent counts as hung (the watchdog
/// then restarts it): a first apply of a million indicators takes seconds
/// (see the README's figures), a big diff told over the socket a few minutes.
const APPLY_BOUND: Duration = Duration::from_secs(600);

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
    Feed(Location, fetch::Fetch),
    List(Location, fetch::Fetch),
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
    /// Why the last full pull was held rather than applied (it lost too much).
    held: Option<String>,
    /// How its pulls went.
    pulls: Pulls,
}

impl Source {
    /// A pull was answered (taken, unchanged or held): no backoff, the next at its interval.
    fn answered(&mut self) {
        self.failures = 0;
        self.next = Instant::now() + self.cfg.interval();
    }
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

impl From<ButtonAction> for Request {
    fn from(a: ButtonAction) -> Self {
        Request::Button(a)
    }
}

/// Requests the control socket forwards to the agent loop.
pub enum Request {
    /// Pull every source now and apply; the named sources' pulls are taken
    /// even when they shrink past `enforcement.max_shrink`.
    Sync(Vec<String>, oneshot::Sender<SyncReport>),
    /// The control socket acknowledged this many incidents with their owner.
    Acknowledged(usize),
    /// The button was pressed (or released during a countdown).
    Button(ButtonAction),
    /// A simulated press of this length for the panel.
    Press(Duration),
    /// Run the self-test now (with the capture replay).
    Selftest(oneshot::Sender<selftest::Status>),
    /// The owner's question or correction, with who asked (peer credentials).
    Owner(
        crate::daemon::control::OwnerCommand,
        String,
        oneshot::Sender<Result<crate::daemon::control::reply::OwnerReply, String>>,
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

/// The agent.
pub struct Agent {
    /// Most indicators held across all sources (`limits.indicators`, resolved).
    budget: usize,
    outbox: Option<SharedOutbox>,
    /// What the responders delivered (they count, status shows).
    tally: Arc<crate::respond::tally::Tally>,
    /// Taken by `run`, which gives them a task of their own.
    responders: Option<Responders>,
    wake_responders: Arc<Notify>,
    mail_on: bool,
    /// Taken by `run`, which gives it a task of its own (with its inbox); then
    /// reached through `incidents_tx`.
    incidents: Option<(Incidents, mpsc::Receiver<incidents::Msg>)>,
    incidents_tx: mpsc::Sender<incidents::Msg>,
    /// Taken by `run` like the incidents' owner; `None` with `devices.enabled: false`.
    devices: Option<(Devices, mpsc::Receiver<devices::Msg>)>,
    devices_tx: Option<mpsc::Sender<devices::Msg>>,
    /// What the devices' owner shows in status.
    devices_view: watch::Receiver<DevicesStatus>,
    /// Every task's stop, the control server's and the panel's too; taken by `run`.
    stopper: Stopper,
    /// What the incidents' owner shows in status.
    alerts_view: watch::Receiver<AlertsStatus>,
    /// Every source's set, for the incidents' provenance and `lookup`.
    index: watch::Sender<Arc<Index>>,
    /// Shadow holds the incidents' owner found.
    held: mpsc::Receiver<Held>,
    /// Reports to the supervisor: each turn of the loop, and each long step's bound.
    heart: Heart,
    /// Owners started beside the agent (the signatures'): the supervisor
    /// feeds systemd's watchdog only while they turn too.
    hearts: Vec<Heart>,
    local_allow: LocalAllowlist,
    /// Shared only with the rendering's blocking thread, which the loop awaits.
    shadow: Arc<std::sync::Mutex<crate::owner::shadow::Shadow>>,
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
    panel: Option<mpsc::Sender<PanelInput>>,
    /// The Home Assistant task's connection, for status.
    mqtt: Option<watch::Receiver<Option<crate::daemon::homeassistant::Link>>>,
    intake: Arc<Counters>,
    cfg: Config,
    store: Store,
    sources: Vec<Source>,
    applier: Applier,
    status: Status,
    /// What the panel and the control socket read; the incidents' view is
    /// merged in by a task of its own too, so it shows while this loop is busy.
    status_tx: Arc<watch::Sender<Status>>,
    /// The packet path the config asks for, checked on every health tick.
    packet_path: crate::enforce::firewall::PacketPath,
    /// Since when (unix seconds) the path has been wrong, and whether the owner was told.
    path_wrong: Option<(u64, bool)>,
    /// The book of names the devices resolved (its task runs while `run` does).
    names: Option<mpsc::Sender<names::Msg>>,
    /// Sources whose next pull is taken however much it shrinks (the owner said so).
    accept_shrink: HashSet<String>,
    /// The warninglists every source's values are checked against.
    warninglists: Arc<crate::intel::warninglist::Warninglists>,
    /// Alerts Suricata raised against those that arrived.
    loss: crate::alerts::loss::Loss,
}

impl Agent {
    /// A receiver that always holds the latest status.
    pub fn status(&self) -> watch::Receiver<Status> {
        self.status_tx.subscribe()
    }

    /// Where the control server sends each request; `requests` reaches this
    /// agent's loop.
    pub fn routes(&self, requests: mpsc::Sender<Request>) -> crate::daemon::control::Routes {
        crate::daemon::control::Routes {
            status: self.status(),
            agent: requests,
            incidents: self.incidents_tx.clone(),
            devices: self.devices_tx.clone(),
            signatures: None,
            index: self.index.subscribe(),
        }
    }

    /// A stop handle for a task started beside the agent (the control server,
    /// the panel): `run` asks it to stop and returns once it has dropped it.
    pub fn stop_handle(&self) -> Stop {
        self.stopper.handle()
    }

    /// Watches an owner started beside the agent: a hung one stops the
    /// watchdog being fed, and systemd restarts the daemon.
    pub fn supervise(&mut self, heart: Heart) {
        self.hearts.push(heart);
    }

    /// Connects the panel task, which takes simulated presses.
    pub fn set_panel(&mut self, tx: mpsc::Sender<PanelInput>) {
        self.panel = Some(tx);
    }

    /// Connects the Home Assistant task, whose connection status shows.
    pub fn set_mqtt(&mut self, link: watch::Receiver<Option<crate::daemon::homeassistant::Link>>) {
        self.mqtt = Some(link);
    }

    /// Runs until `shutdown` resolves (or a factory reset asks for a restart).
    pub async fn run(
        mut self,
        mut requests: mpsc::Receiver<Request>,
        shutdown: impl std::future::Future<Output = ()>,
    ) -> Exit {
        // The sockets first: Suricata connects as soon as they exist, whatever
        // the first apply of a big set costs.
        let (alert_tx, alerts) = mpsc::channel(1024);
        let intake = self.start_intake(alert_tx).map(AbortOnDrop);
        let _names = self.start_names();
        // Every task below (and those given a handle before) hears one stop
        // and is waited for (see `shutdown`).
        let stopper = std::mem::take(&mut self.stopper);
        // The incidents' owner reads the alerts in a task of its own, so no
        // step of this loop (a big apply, a self-test replay) holds them up.
        let mut supervisor = Supervisor::default();
        supervisor.watch(self.heart.clone());
        for h in self.hearts.drain(..) {
            supervisor.watch(h);
        }
        if let Some((book, inbox)) = self.incidents.take() {
            supervisor.watch(book.heart());
            // Its handle lives as long as its `run`: past the last save.
            tokio::spawn(book.run(alerts, inbox, stopper.handle()));
        }
        tokio::spawn(show_incidents(
            self.alerts_view.clone(),
            self.status_tx.clone(),
            self.intake.clone(),
            stopper.handle(),
        ));
        if let Some((owner, inbox)) = self.devices.take() {
            supervisor.watch(owner.heart());
            tokio::spawn(owner.run(inbox, stopper.handle()));
        } else if self.devices_tx.is_none() {
            tokio::spawn(devices::lift_leftover());
        }
        tokio::spawn(show_devices(
            self.devices_view.clone(),
            self.status_tx.clone(),
            stopper.handle(),
        ));
        // Re-apply what the store holds: the files on disk decide what is new, so a
        // restart sends nothing twice. A failure is logged and shown in status.
        let _ = self.enforce().await;
        self.check_suricata().await;
        if let Some(r) = self.responders.take() {
            // Cut mid-round on a stop: the outbox sends it again under the same key.
            let (mut stop, wake) = (stopper.handle(), self.wake_responders.clone());
            tokio::spawn(async move {
                tokio::select! {
                    _ = stop.wait() => {}
                    _ = r.run(wake) => {}
                }
            });
        }
        // systemd: started; then alive while every owner task reports in
        // (WatchdogSec restarts a hung agent).
        let _ = sd_notify::notify(&[sd_notify::NotifyState::Ready]);
        tokio::spawn(supervisor.run(HEALTH_EVERY, watchdog_ping, stopped(stopper.handle())));
        tokio::pin!(shutdown);
        let mut health = tokio::time::interval_at(Instant::now() + HEALTH_EVERY, HEALTH_EVERY);
        // After a long step (a slow replay) one catch-up tick does, not a burst of them.
        health.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // Scheduled pulls run beside the loop: a MISP that takes its full timeout
        // must not hold up alert triage, requests or the watchdog.
        let mut pulls: tokio::task::JoinSet<PullDone> = tokio::task::JoinSet::new();
        let mut pulling: HashMap<tokio::task::Id, usize> = HashMap::new();
        let mut scheduled: HashMap<usize, tokio::task::AbortHandle> = HashMap::new();
        // A sync of every source (control socket, button) runs beside the loop too;
        // whoever asks while one runs gets its report.
        let mut syncs: tokio::task::JoinSet<Vec<PullDone>> = tokio::task::JoinSet::new();
        let mut askers: Vec<SyncAsker> = Vec::new();
        // Newer warninglists, where the Pi has internet: fetched beside the loop.
        let mut refreshes: tokio::task::JoinSet<lists::Report> = tokio::task::JoinSet::new();
        let mut refresh_at = lists::first_refresh(&self.cfg);
        // The self-test runs beside the loop too (a replay may take two
        // minutes); who asked for one gets the next verdict with a replay.
        let mut tests = SelftestRun::default();
        let mut exit = Exit::Stopped;
        let within = loop_within(&self.cfg);
        loop {
            self.heart.alive(within);
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
                        } else if self.take_pull(i, generation, result, started).await {
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
                    Request::Sync(accept, reply) => {
                        self.accept_shrink.extend(accept);
                        if syncs.is_empty() {
                            self.start_sync(&mut syncs, &mut scheduled);
                        }
                        askers.push(SyncAsker::Control(reply));
                    }
                    Request::Acknowledged(n) => self.acknowledged(n),
                    Request::Selftest(reply) => {
                        tests.askers.push(reply);
                        self.start_selftest(&mut tests, true);
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
                            exit = Exit::Restart;
                            break;
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
                _ = lists::until(refresh_at), if refreshes.is_empty() => {
                    self.start_refresh(&mut refreshes);
                    refresh_at = lists::next_refresh(&self.cfg);
                }
                Some(done) = refreshes.join_next(), if !refreshes.is_empty() => {
                    if let Ok(report) = done {
                        self.finish_refresh(report).await;
                    }
                }
                Some(done) = tests.running.join_next(), if !tests.running.is_empty() => {
                    self.finish_selftest(&mut tests, done).await;
                }
                Some(h) = self.held.recv() => self.hold(h),
                _ = health.tick() => {
                    self.check_suricata().await;
                    self.expire_allowances().await;
                    if let Some((_, replay)) = self.selftest_due.filter(|(t, _)| *t <= unix_now()) {
                        self.selftest_due = None;
                        self.start_selftest(&mut tests, replay);
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
        // No new alerts, no more requests (a panel or client waiting to hand
        // one over hears that we stopped), then every task's way out (the
        // incidents' owner saves what is open) before the agent says it stopped.
        drop(intake);
        drop(requests);
        stopper.stop().await;
        tracing::info!("agent stopped");
        exit
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

    /// Starts the book of resolved names and the socket Suricata's DNS
    /// answers come in on; only flow bypass needs it (to cut bypassed flows).
    fn start_names(&mut self) -> Vec<AbortOnDrop> {
        if !self.cfg.suricata.flow_bypass {
            return Vec::new();
        }
        let (tx, rx) = mpsc::channel(1024);
        let path = &self.cfg.dns_socket();
        let read = |line: Option<&[u8]>| line.and_then(names::parse).map(names::Msg::Learn);
        match intake::listen_lines(path, "dns", read, tx.clone()) {
            Ok(listener) => {
                self.names = Some(tx);
                vec![
                    AbortOnDrop(tokio::spawn(names::run(rx))),
                    AbortOnDrop(listener),
                ]
            }
            Err(e) => {
                tracing::error!(socket = %path.display(), "cannot listen for Suricata's DNS answers (flows to a newly listed name will not be cut): {e}");
                Vec::new()
            }
        }
    }

    /// Holds an observed indicator a do-not-break device talked to (the
    /// incidents' owner found it; the shadow book is ours).
    fn hold(&mut self, h: Held) {
        let mut book = self.shadow.lock().unwrap_or_else(|e| e.into_inner());
        if book.hold(&h.value, h.device, h.name.clone(), h.at) {
            tracing::warn!(indicator = %h.value, device = %h.device, "observed indicator held: a do-not-break device talks to it");
            self.status.shadow.held = book.held();
            drop(book);
            self.publish();
        }
    }

    /// Shares every source's set, as it now stands, with whoever traces hits.
    fn publish_index(&self) {
        self.index.send_replace(Arc::new(index_of(&self.sources)));
    }
}

/// How soon the loop turns again at the latest: a health tick, plus two
/// socket waits it may make in it.
fn loop_within(cfg: &Config) -> Duration {
    3 * HEALTH_EVERY + 2 * cfg.suricata.socket_timeout
}

/// Tells systemd the agent is alive.
fn watchdog_ping() {
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Watchdog]);
}

/// Puts the incidents' owner's view into the published status whenever it
/// changes: a new high incident lights the LED and shows in `status` even
/// while the agent's loop is in a long step.
async fn show_incidents(
    mut view: watch::Receiver<AlertsStatus>,
    status: Arc<watch::Sender<Status>>,
    intake: Arc<Counters>,
    mut stop: Stop,
) {
    loop {
        tokio::select! {
            _ = stop.wait() => break,
            changed = view.changed() => if changed.is_err() { break },
        }
        let v = view.borrow_and_update().clone();
        status.send_modify(|s| s.alerts = status::merged(v, &intake, s.alerts.loss));
    }
}

/// Keeps status's devices as their owner shows them, while this loop is busy too.
async fn show_devices(
    mut view: watch::Receiver<DevicesStatus>,
    status: Arc<watch::Sender<Status>>,
    mut stop: Stop,
) {
    loop {
        let v = view.borrow_and_update().clone();
        status.send_modify(|s| s.devices = v);
        tokio::select! {
            _ = stop.wait() => break,
            changed = view.changed() => if changed.is_err() { break },
        }
    }
}

/// A future that resolves on the stop, for a task with nothing to do on its
/// way out (the handle goes with the future).
async fn stopped(mut stop: Stop) {
    stop.wait().await;
}

/// Every source's set, shared.
fn index_of(sources: &[Source]) -> Index {
    Index::new(
        sources
            .iter()
            .map(|s| (s.cfg.name().to_string(), s.state.set.clone())),
    )
}

/// How long a non-blocking reload gets before the self-test looks.
const RELOAD_SETTLE: u64 = 15;

#[cfg(test)]
mod storm_tests;
#[cfg(test)]
mod tests;
