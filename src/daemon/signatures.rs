//! The signatures' owner: a task of its own that keeps the signature
//! ruleset up to date on a schedule (daily by default, with a jitter), on
//! the owner's word (`homewarden signatures update`), and asks Suricata to
//! reload it once `suricata -T` has taken it. An update runs for minutes
//! (a download, a `-T` of thousands of rules): it runs beside this loop, so
//! `signatures status` is answered meanwhile.

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};

use super::shutdown::Stop;
use super::supervisor::Heart;
use crate::config::Config;
use crate::intel::unix_now;
use crate::signatures::profile::Tier;
use crate::signatures::source::Source;
use crate::signatures::update::{self, Good, Paths, Plan, Record, UpdateError};

/// How long after the agent starts the first update runs when none was
/// ever taken: the uplink may need a moment at first boot.
pub const FIRST_AFTER: Duration = Duration::from_secs(60);
/// The first retry after a failed update; each next one waits twice as long,
/// up to the update interval (and never more than six hours).
pub const RETRY_FIRST: Duration = Duration::from_secs(15 * 60);
/// How long a reload of the rules may take (thousands of rules on a Pi).
pub const RELOAD_TIMEOUT: Duration = Duration::from_secs(600);

/// What others ask of the signatures' owner.
#[derive(Debug)]
pub enum Msg {
    /// Update now; from `source` alone if given. The reply comes when it is done.
    Update {
        /// A ruleset for this update only (a URL or a local file).
        source: Option<Source>,
        /// What was taken, or why not.
        reply: oneshot::Sender<Result<Good, String>>,
    },
    /// What `signatures status` shows.
    Status(oneshot::Sender<SignaturesStatus>),
}

/// What `signatures status` shows.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignaturesStatus {
    /// The profile in force (`off`, `core`, `home`, `full`).
    pub tier: String,
    /// Why that one.
    pub why: String,
    /// The ruleset in force and the last attempt.
    pub record: Record,
    /// An update is running now.
    pub updating: bool,
    /// When the next scheduled update runs (unix seconds); none when off.
    pub next_at: Option<i64>,
    /// Why Suricata did not take the last ruleset live (it loads it at its next start).
    pub reload_error: Option<String>,
}

/// Runs one update (the real one: suricata-update, the cut, `suricata -T`).
pub type Updater = Arc<
    dyn Fn(Plan, i64) -> Pin<Box<dyn Future<Output = Result<Good, UpdateError>> + Send>>
        + Send
        + Sync,
>;

/// Asks Suricata to reload its rules; `Err` says why it did not.
pub type Reloader =
    Arc<dyn Fn() -> Pin<Box<dyn Future<Output = Result<(), String>> + Send>> + Send + Sync>;

/// What the owner needs of the config and the system.
#[derive(Clone)]
pub struct Settings {
    /// The update's files.
    pub paths: Paths,
    /// The plan, as configured (the tier already resolved).
    pub plan: Plan,
    /// How often.
    pub every: Duration,
    /// How an update runs.
    pub updater: Updater,
    /// How Suricata is told.
    pub reload: Reloader,
}

impl Settings {
    /// From the config and the board's memory (`MemTotal`).
    pub fn from_config(cfg: &Config, mem_total: u64) -> Settings {
        let s = &cfg.signatures;
        let (tier, why) = s.profile.resolve(mem_total);
        let suricata_yaml = cfg.selftest.suricata_config.clone();
        let include = suricata_yaml.with_file_name("homewarden.yaml");
        let paths = Paths {
            rules_dir: cfg.suricata.rules_dir.clone(),
            work_dir: cfg.state_dir.join("signatures"),
            suricata_yaml,
            include,
        };
        let updater_paths = paths.clone();
        let socket: PathBuf = cfg.suricata.command_socket.clone();
        Settings {
            paths,
            plan: Plan {
                sources: s.sources.clone(),
                tier,
                why,
                overrides: s.overrides(),
                shadow: s.shadow,
                force: false,
            },
            every: s.update,
            updater: Arc::new(move |plan, now| {
                let paths = updater_paths.clone();
                Box::pin(async move { update::run(&paths, &plan, now).await })
            }),
            reload: Arc::new(move || {
                let socket = socket.clone();
                Box::pin(async move { reload(&socket).await })
            }),
        }
    }
}

/// `ruleset-reload-rules` over Suricata's command socket.
async fn reload(socket: &std::path::Path) -> Result<(), String> {
    let mut conn = crate::enforce::suricata::socket::Connection::open(socket, RELOAD_TIMEOUT)
        .await
        .map_err(|e| e.to_string())?;
    match conn.command("ruleset-reload-rules", None).await {
        Ok(r) if r.ok => Ok(()),
        Ok(r) => Err(format!("ruleset-reload-rules: {}", r.message)),
        Err(e) => Err(e.to_string()),
    }
}

/// An update under way: its task, and who waits for its result.
struct Running {
    task: tokio::task::JoinHandle<Result<Good, UpdateError>>,
    waiting: Vec<oneshot::Sender<Result<Good, String>>>,
}

/// The running update's result; never, when none runs.
async fn join(running: &mut Option<Running>) -> Result<Good, UpdateError> {
    match running {
        Some(r) => (&mut r.task)
            .await
            .unwrap_or_else(|e| Err(UpdateError::Write(format!("the update stopped: {e}")))),
        None => std::future::pending().await,
    }
}

/// The signatures' owner.
pub struct Signatures {
    s: Settings,
    record: Record,
    next: Option<i64>,
    running: Option<Running>,
    failures: u32,
    reload_error: Option<String>,
    heart: Heart,
}

/// How soon the owner turns again at the latest.
const TURN_WITHIN: Duration = Duration::from_secs(120);

/// When the next scheduled update is due, from the record at `now`: soon if
/// none was ever taken, an interval after the last good one (plus up to a
/// tenth of it, so a hundred Pis do not ask at the same second), sooner
/// again after failures, backing off.
pub fn next_due(record: &Record, every: Duration, failures: u32, now: i64, jitter: f64) -> i64 {
    let every = every.as_secs() as i64;
    let spread = |of: i64| (of as f64 / 10.0 * jitter.clamp(0.0, 1.0)) as i64;
    if failures > 0 {
        let wait = (RETRY_FIRST.as_secs() as i64)
            .saturating_mul(1 << (failures - 1).min(16))
            .min(every)
            .min(6 * 3600);
        return now + wait + spread(wait);
    }
    match &record.good {
        None => now + FIRST_AFTER.as_secs() as i64,
        Some(g) => (g.at + every + spread(every)).max(now),
    }
}

/// A number in [0, 1) this appliance keeps: its spread within the jitter.
fn jitter() -> f64 {
    let rng = ring::rand::SystemRandom::new();
    let mut b = [0u8; 4];
    match ring::rand::SecureRandom::fill(&rng, &mut b) {
        Ok(()) => f64::from(u32::from_le_bytes(b)) / (f64::from(u32::MAX) + 1.0),
        Err(_) => 0.5,
    }
}

impl Signatures {
    /// The owner, with the record of earlier runs.
    pub fn new(s: Settings) -> Signatures {
        let record = Record::load(&s.paths.work_dir);
        Signatures {
            s,
            record,
            next: None,
            running: None,
            failures: 0,
            reload_error: None,
            heart: Heart::new("signatures", TURN_WITHIN),
        }
    }

    /// What this task reports to the supervisor with.
    pub fn heart(&self) -> Heart {
        self.heart.clone()
    }

    fn status(&self) -> SignaturesStatus {
        SignaturesStatus {
            tier: self.s.plan.tier.name().into(),
            why: self.s.plan.why.clone(),
            record: self.record.clone(),
            updating: self.running.is_some(),
            next_at: self.next,
            reload_error: self.reload_error.clone(),
        }
    }

    /// Updates on schedule and on request until the stop.
    pub async fn run(mut self, mut inbox: mpsc::Receiver<Msg>, mut stop: Stop) {
        let jitter = jitter();
        if self.s.plan.tier != Tier::Off {
            self.next = Some(next_due(
                &self.record,
                self.s.every,
                0,
                unix_now() as i64,
                jitter,
            ));
        } else {
            tracing::info!(why = %self.s.plan.why, "signatures off");
        }
        loop {
            self.heart.alive(TURN_WITHIN);
            let due = self
                .next
                .filter(|_| self.running.is_none())
                .map(|at| Duration::from_secs(at.saturating_sub(unix_now() as i64).max(0) as u64));
            tokio::select! {
                biased;
                _ = stop.wait() => break,
                Some(msg) = inbox.recv() => match msg {
                    Msg::Status(reply) => {
                        let _ = reply.send(self.status());
                    }
                    Msg::Update { source, reply } => self.asked(source, reply),
                },
                result = join(&mut self.running) => self.finished(result, jitter).await,
                _ = tokio::time::sleep(due.unwrap_or(TURN_WITHIN)), if due.is_some() => {
                    self.start(None, true);
                }
                _ = tokio::time::sleep(TURN_WITHIN / 2) => {}
            }
        }
        if let Some(r) = self.running.take() {
            r.task.abort();
        }
        drop(stop);
    }

    fn asked(&mut self, source: Option<Source>, reply: oneshot::Sender<Result<Good, String>>) {
        if self.s.plan.tier == Tier::Off && source.is_none() {
            let _ = reply.send(Err(format!("signatures are off ({})", self.s.plan.why)));
            return;
        }
        if self.running.is_none() {
            self.start(source, false);
        }
        if let Some(r) = self.running.as_mut() {
            r.waiting.push(reply);
        }
    }

    fn start(&mut self, source: Option<Source>, scheduled: bool) {
        let mut plan = self.s.plan.clone();
        // Asked by the owner: fetched now, whatever suricata-update's cache says.
        plan.force = !scheduled;
        if let Some(s) = source {
            plan.sources = vec![s];
            if plan.tier == Tier::Off {
                plan.tier = Tier::Core;
            }
        }
        let updater = self.s.updater.clone();
        let task = tokio::spawn(async move { updater(plan, unix_now() as i64).await });
        tracing::info!(scheduled, "signature update started");
        self.running = Some(Running {
            task,
            waiting: Vec::new(),
        });
    }

    async fn finished(&mut self, result: Result<Good, UpdateError>, jitter: f64) {
        let waiting = self.running.take().map(|r| r.waiting).unwrap_or_default();
        self.record = Record::load(&self.s.paths.work_dir);
        let now = unix_now() as i64;
        let reply = match result {
            Ok(good) => {
                self.failures = 0;
                tracing::info!(
                    dropping = good.counts.dropping,
                    alerting = good.counts.alerting,
                    "signatures taken"
                );
                self.reload_error = match (self.s.reload)().await {
                    Ok(()) => None,
                    Err(e) => {
                        tracing::warn!(
                            "signatures taken; Suricata loads them at its next start: {e}"
                        );
                        Some(e)
                    }
                };
                Ok(good)
            }
            Err(e) => {
                self.failures += 1;
                tracing::error!("signature update: {e}; the ruleset in force stays");
                Err(e.to_string())
            }
        };
        if self.s.plan.tier != Tier::Off {
            self.next = Some(next_due(
                &self.record,
                self.s.every,
                self.failures,
                now,
                jitter,
            ));
        }
        for w in waiting {
            let _ = w.send(reply.clone());
        }
    }
}

#[cfg(test)]
mod tests;
