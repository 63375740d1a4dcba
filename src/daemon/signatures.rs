//! The signatures' owner: a task of its own that keeps the signature
//! ruleset up to date on a schedule (daily by default, with a jitter), on
//! the owner's word (`homewarden signatures update`), and asks Suricata to
//! reload it once `suricata -T` has taken it. An update runs for minutes
//! (a download, a `-T` of thousands of rules): it runs beside this loop, so
//! `signatures status` is answered meanwhile.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};

use super::shutdown::Stop;
use super::supervisor::Heart;
use crate::intel::unix_now;
use crate::signatures::explain::{self, Explained};
use crate::signatures::memory::{self, Reading, Way};
use crate::signatures::policy::{Overrides, Setting};
use crate::signatures::profile::Tier;
use crate::signatures::source::Source;
use crate::signatures::update::{self, Fetch, Good, Plan, Record, UpdateError};
use crate::signatures::word::{self, Target, Word};

/// How long after the agent starts the first update runs when none was
/// ever taken: the uplink may need a moment at first boot.
pub const FIRST_AFTER: Duration = Duration::from_secs(60);
/// The first retry after a failed update; each next one waits twice as long,
/// up to the update interval (and never more than six hours).
pub const RETRY_FIRST: Duration = Duration::from_secs(15 * 60);

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
    /// The owner's word on a signature or a category; the kept ruleset
    /// is cut again and reloaded before the reply.
    Set {
        /// The word.
        word: Word,
        /// What it does now, or why the word was not kept.
        reply: oneshot::Sender<Result<SetReply, String>>,
    },
    /// What one signature does here, and why.
    Explain {
        /// Its id.
        sid: u64,
        /// The answer.
        reply: oneshot::Sender<Explained>,
    },
    /// What `signatures status` shows.
    Status(oneshot::Sender<SignaturesStatus>),
}

/// What `signatures drop|alert|disable|reset|allow|unallow` answers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SetReply {
    /// The sid or category (and the address), as the owner named it.
    pub target: String,
    /// The owner's word on it now (`None`: reset, or an allowance).
    pub setting: Option<Setting>,
    /// For an allowance: lifted now, or no longer.
    #[serde(default)]
    pub lifted: Option<bool>,
    /// The ruleset cut again with it (none when no ruleset was fetched yet:
    /// the word applies to the first one).
    pub taken: Option<Good>,
    /// Why Suricata did not take it live.
    pub reload_error: Option<String>,
    /// For a sid: what it does now.
    pub explained: Option<Explained>,
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
    /// The owner's word given on the command line (above the config's).
    #[serde(default)]
    pub word: Overrides,
    /// Suricata's memory now and its budget, when its cgroup says.
    #[serde(default)]
    pub suricata_memory: Option<Reading>,
}

/// Who waits for a run to end.
#[derive(Debug)]
enum Waiter {
    /// `signatures update`.
    Update(oneshot::Sender<Result<Good, String>>),
    /// `signatures drop|alert|disable|reset|allow|unallow`.
    Set {
        word: Word,
        reply: oneshot::Sender<Result<SetReply, String>>,
    },
}

/// How a run ended: the update, then Suricata's reload of what it took.
struct Done {
    result: Result<Good, UpdateError>,
    reload: Option<Result<(), String>>,
}

/// A run under way: its task, and who waits for its result.
struct Running {
    task: tokio::task::JoinHandle<Done>,
    waiting: Vec<Waiter>,
}

/// The running update's result; never, when none runs.
async fn join(running: &mut Option<Running>) -> Done {
    match running {
        Some(r) => (&mut r.task).await.unwrap_or_else(|e| Done {
            result: Err(UpdateError::Write(format!("the update stopped: {e}"))),
            reload: None,
        }),
        None => std::future::pending().await,
    }
}

/// The signatures' owner.
pub struct Signatures {
    s: Settings,
    record: Record,
    /// The owner's word from the command line; `Err` if its file could not
    /// be read (then no new word is taken: it would replace what is there).
    word: Result<Overrides, String>,
    next: Option<i64>,
    running: Option<Running>,
    /// Who gave a word while a run was under way: the ruleset is cut again
    /// after it (none: nothing to cut again).
    recut: Vec<Waiter>,
    failures: u32,
    reload_error: Option<String>,
    heart: Heart,
    /// What status shows, for /metrics (which never waits on this task).
    published: tokio::sync::watch::Sender<SignaturesStatus>,
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
    /// The owner, with the record of earlier runs and the owner's word.
    pub fn new(s: Settings) -> Signatures {
        let record = Record::load(&s.paths.work_dir);
        let word = word::load(&s.paths.work_dir).map_err(|e| e.to_string());
        if let Err(e) = &word {
            tracing::error!(
                "the signatures' overrides: {e}; the config's alone apply until it is fixed"
            );
        }
        Signatures {
            s,
            record,
            word,
            next: None,
            running: None,
            recut: Vec::new(),
            failures: 0,
            reload_error: None,
            heart: Heart::new("signatures", TURN_WITHIN),
            published: tokio::sync::watch::Sender::new(SignaturesStatus::default()),
        }
    }

    /// What status shows, as it changes.
    pub fn watch(&self) -> tokio::sync::watch::Receiver<SignaturesStatus> {
        self.published.subscribe()
    }

    /// What this task reports to the supervisor with.
    pub fn heart(&self) -> Heart {
        self.heart.clone()
    }

    fn word(&self) -> Overrides {
        self.word.clone().unwrap_or_default()
    }

    /// The plan as it stands: the config's, with the command line's word laid on.
    fn plan(&self, fetch: Fetch) -> Plan {
        let mut plan = self.s.plan.clone();
        plan.overrides = word::layered(&self.s.plan.overrides, &self.word());
        plan.fetch = fetch;
        plan
    }

    fn status(&self) -> SignaturesStatus {
        SignaturesStatus {
            tier: self.s.plan.tier.name().into(),
            why: self.s.plan.why.clone(),
            record: self.record.clone(),
            updating: self.running.is_some(),
            next_at: self.next,
            reload_error: self.reload_error.clone(),
            word: self.word(),
            suricata_memory: memory::read(&self.s.paths.cgroup),
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
            // The profile, shadow mode or the owner's word changed while the
            // agent was down: the kept ruleset is cut again, no download.
            if self
                .record
                .good
                .as_ref()
                .is_some_and(|g| g.cut != self.plan(Fetch::Kept).cut())
            {
                self.start(Fetch::Kept, None);
            }
        } else {
            tracing::info!(why = %self.s.plan.why, "signatures off");
            if self.record.good.is_some() {
                self.switch_off();
            }
        }
        loop {
            self.heart.alive(TURN_WITHIN);
            let now = self.status();
            self.published.send_if_modified(|s| {
                let changed = *s != now;
                *s = now;
                changed
            });
            let due = self
                .next
                .filter(|_| self.running.is_none())
                .map(|at| Duration::from_secs(at.saturating_sub(unix_now() as i64).max(0) as u64));
            tokio::select! {
                biased;
                _ = stop.wait() => break,
                Some(msg) = inbox.recv() => self.handle(msg),
                done = join(&mut self.running) => self.finished(done, jitter),
                _ = tokio::time::sleep(due.unwrap_or(TURN_WITHIN)), if due.is_some() => {
                    self.start(Fetch::Cached, None);
                }
                _ = tokio::time::sleep(TURN_WITHIN / 2) => {}
            }
        }
        if let Some(r) = self.running.take() {
            r.task.abort();
        }
        drop(stop);
    }

    fn handle(&mut self, msg: Msg) {
        match msg {
            Msg::Status(reply) => {
                let _ = reply.send(self.status());
            }
            Msg::Update { source, reply } => self.asked(source, reply),
            Msg::Set { word, reply } => self.set(word, reply),
            Msg::Explain { sid, reply } => {
                let explain = self.explainer();
                // The index of ET Open is megabytes of JSON: read beside the loop.
                tokio::task::spawn_blocking(move || {
                    let _ = reply.send(explain(sid));
                });
            }
        }
    }

    /// Signatures were turned off: Suricata loads none from now on.
    fn switch_off(&mut self) {
        let target = self.s.paths.rules_dir.join(crate::signatures::RULES_FILE);
        if let Err(e) = crate::fsutil::write_atomic(&target, crate::signatures::EMPTY.as_bytes()) {
            tracing::error!("{}: {e}; the last ruleset stays loaded", target.display());
            return;
        }
        self.record.good = None;
        if let Err(e) = self.record.save(&self.s.paths.work_dir) {
            tracing::error!("{e}");
        }
        let reload = self.s.reload.clone();
        let task = tokio::spawn(async move {
            Done {
                result: Err(UpdateError::Empty(0)),
                reload: Some(reload(Way::Live).await),
            }
        });
        tracing::info!("signatures turned off: the ruleset is unloaded");
        self.running = Some(Running {
            task,
            waiting: Vec::new(),
        });
    }

    fn asked(&mut self, source: Option<Source>, reply: oneshot::Sender<Result<Good, String>>) {
        if self.s.plan.tier == Tier::Off {
            let _ = reply.send(Err(format!(
                "signatures are off ({}): set signatures.profile (home, say) to take a ruleset",
                self.s.plan.why
            )));
            return;
        }
        match (self.running.as_mut(), source) {
            (None, None) => {
                self.start(Fetch::Now, None);
                if let Some(r) = self.running.as_mut() {
                    r.waiting.push(Waiter::Update(reply));
                }
            }
            (None, Some(s)) => self.start(Fetch::Now, Some((s, Waiter::Update(reply)))),
            // The run under way answers a plain update…
            (Some(r), None) => r.waiting.push(Waiter::Update(reply)),
            // …not one from another source.
            (Some(_), Some(_)) => {
                let _ = reply.send(Err(
                    "an update is running: ask again when `homewarden signatures status` says it is done".into(),
                ));
            }
        }
    }

    fn set(&mut self, said: Word, reply: oneshot::Sender<Result<SetReply, String>>) {
        let mut word = match &self.word {
            Ok(w) => w.clone(),
            Err(e) => {
                let _ = reply.send(Err(format!("{e}: fix or remove it first")));
                return;
            }
        };
        let changed = word::apply(&mut word, &said);
        if changed {
            if let Err(e) = word::save(&self.s.paths.work_dir, &word) {
                let _ = reply.send(Err(e.to_string()));
                return;
            }
            self.word = Ok(word);
        }
        let waiter = Waiter::Set { word: said, reply };
        // Nothing to cut again: off, never fetched, or the same word again.
        let kept = self.record.good.is_some() && self.s.plan.tier != Tier::Off;
        if !kept || !changed {
            self.answer(waiter, None, None);
            return;
        }
        if self.running.is_some() {
            self.recut.push(waiter);
        } else {
            self.start(Fetch::Kept, None);
            if let Some(r) = self.running.as_mut() {
                r.waiting.push(waiter);
            }
        }
    }

    /// Starts a run: `fetch` from the configured sources, or a one-off
    /// `source` with the one who asked for it.
    fn start(&mut self, fetch: Fetch, one_off: Option<(Source, Waiter)>) {
        let mut plan = self.plan(fetch);
        let mut waiting = Vec::new();
        if let Some((source, who)) = one_off {
            plan.sources = vec![source];
            waiting.push(who);
        } else if fetch == Fetch::Kept {
            // Cut what was fetched, from where it was fetched (a one-off too).
            if let Some(g) = &self.record.good {
                plan.sources = Plan::sources_of(g);
            }
        }
        let (updater, reload) = (self.s.updater.clone(), self.s.reload.clone());
        let task = tokio::spawn(async move {
            let result = updater(plan, unix_now() as i64).await;
            let reload = match &result {
                Ok(g) => Some(reload(g.way).await),
                Err(_) => None,
            };
            Done { result, reload }
        });
        tracing::info!(?fetch, "signature update started");
        self.running = Some(Running { task, waiting });
    }

    fn finished(&mut self, done: Done, jitter: f64) {
        let waiting = self.running.take().map(|r| r.waiting).unwrap_or_default();
        self.record = Record::load(&self.s.paths.work_dir);
        let now = unix_now() as i64;
        if let Some(r) = &done.reload {
            self.reload_error = r.as_ref().err().cloned();
        }
        let result = match done.result {
            Ok(good) => {
                self.failures = 0;
                tracing::info!(
                    dropping = good.counts.dropping,
                    alerting = good.counts.alerting,
                    "signatures taken"
                );
                if let Some(e) = &self.reload_error {
                    tracing::warn!("signatures taken; Suricata loads them at its next start: {e}");
                }
                Ok(good)
            }
            // Switched off: nothing was to be taken.
            Err(UpdateError::Empty(0)) if self.s.plan.tier == Tier::Off => {
                Err("signatures are off".to_string())
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
            match result.clone() {
                Ok(g) => self.answer(w, Some(g), self.reload_error.clone()),
                Err(e) => match w {
                    Waiter::Update(reply) => {
                        let _ = reply.send(Err(e));
                    }
                    Waiter::Set { reply, .. } => {
                        let _ = reply.send(Err(format!(
                            "the word is kept, but the ruleset could not be cut again: {e}"
                        )));
                    }
                },
            }
        }
        if !self.recut.is_empty() {
            self.start(Fetch::Kept, None);
            if let Some(r) = self.running.as_mut() {
                r.waiting.append(&mut self.recut);
            }
        }
    }

    /// What explains a sid from the index of the ruleset in force and the
    /// owner's word as they stand now: a blocking read, for beside the loop.
    fn explainer(&self) -> impl FnOnce(u64) -> Explained + Send + 'static {
        let (config, word) = (self.s.plan.overrides.clone(), self.word());
        let work_dir = self.s.paths.work_dir.clone();
        move |sid| {
            let index = update::load_index(&work_dir);
            let entry = index.get(&sid).cloned();
            explain::explain(sid, entry, index.len(), &config, &word)
        }
    }

    /// Answers one who waited, with what was taken.
    fn answer(&self, w: Waiter, taken: Option<Good>, reload_error: Option<String>) {
        match w {
            Waiter::Update(reply) => {
                let _ = reply.send(taken.ok_or_else(|| "nothing was taken".to_string()));
            }
            Waiter::Set { word: said, reply } => {
                let explain = self.explainer();
                tokio::task::spawn_blocking(move || {
                    let sid = match &said {
                        Word::Set {
                            target: Target::Sid(sid),
                            ..
                        }
                        | Word::Lift { sid, .. } => Some(*sid),
                        Word::Set { .. } => None,
                    };
                    let explained = sid.map(explain);
                    let (setting, lifted) = match &said {
                        Word::Set { setting, .. } => (*setting, None),
                        Word::Lift { lifted, .. } => (None, Some(*lifted)),
                    };
                    let _ = reply.send(Ok(SetReply {
                        target: said.to_string(),
                        setting,
                        lifted,
                        taken,
                        reload_error,
                        explained,
                    }));
                });
            }
        }
    }
}

mod settings;
pub use settings::{Reloader, Settings, Updater, RELOAD_TIMEOUT};

#[cfg(test)]
mod tests;
