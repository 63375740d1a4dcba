//! The durable outbox between triage and every remote side effect (MISP,
//! advisor, mail). An action is on disk (fsync + rename) before anything acts
//! on it; it leaves only once done, and a "done" marker written first means a
//! restart, a SIGKILL or a power cut between "sent" and "forgotten" never sends
//! it twice. Each action has an idempotency key; queueing the same key again
//! is a no-op. Bounded: when full, the oldest low-severity actions go first,
//! and are counted.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::tally::Responder;
use crate::config::respond::{FIRST_BACKOFF_SECS, MAX_BACKOFF_SECS};
use crate::fsutil;

mod action;
#[cfg(test)]
use crate::intel::misp::SightingType;
pub use action::{
    Action, EventFor, EventUpdate, MailPayload, Notice, PushNotice, PushPayload, Sighting,
};

/// Done markers older than this are forgotten (the keys they guard are long gone).
pub const DONE_KEEP_SECS: u64 = 30 * 86400;

/// An outbox failure (disk trouble).
#[derive(Debug, thiserror::Error)]
#[error("outbox {path}: {message}")]
pub struct OutboxError {
    /// File or directory.
    pub path: String,
    /// What went wrong.
    pub message: String,
}

/// One pending action.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Item {
    /// Idempotency key, e.g. `inc-1795578626-…:misp-sighting`.
    pub key: String,
    /// What the responder does (on disk: `kind` and `payload`).
    #[serde(flatten)]
    pub action: Action,
    /// From a high-severity incident (kept longest when the outbox is full).
    pub high: bool,
    /// When it was queued (unix seconds).
    pub created: u64,
    /// Attempts so far.
    pub attempts: u32,
    /// Not before this time (unix seconds).
    pub next_at: u64,
    /// The last failure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

/// What queueing did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Queued {
    /// Written to disk.
    New,
    /// Already waiting: nothing changed.
    AlreadyQueued,
    /// Already done: nothing changed.
    AlreadyDone,
    /// The outbox is full of more important work: this one was dropped (and counted).
    Dropped,
}

/// Counters for status.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stats {
    /// Actions waiting.
    pub pending: usize,
    /// Of those, actions that failed three times or more.
    pub failing: usize,
    /// Dropped because the outbox was full.
    pub dropped: u64,
    /// Files that could not be read back, moved to `corrupt/`.
    pub corrupt: u64,
    /// Actions waiting, by the responder that delivers them.
    #[serde(default)]
    pub pending_by: BTreeMap<Responder, usize>,
}

/// The outbox directory.
#[derive(Debug)]
pub struct Outbox {
    dir: PathBuf,
    max_items: usize,
    first_backoff: u64,
    items: HashMap<String, Item>,
    stats: Stats,
}

/// File name for a key: keys are ours, but never trust them with a path.
fn file_name(key: &str) -> String {
    let safe: String = key
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .take(200)
        .collect();
    format!("{safe}.json")
}

/// Wait before attempt `attempts + 1`: `first` (30 s by default), then
/// doubling, up to an hour.
pub fn backoff(first: u64, attempts: u32) -> u64 {
    first
        .max(1)
        .saturating_mul(1 << attempts.saturating_sub(1).min(16))
        .min(MAX_BACKOFF_SECS)
}

impl Outbox {
    /// Opens (creating) the outbox and reads back what was pending.
    pub fn open(dir: &Path, max_items: usize, now: u64) -> Result<Outbox, OutboxError> {
        let err = |p: &Path, e: std::io::Error| OutboxError {
            path: p.display().to_string(),
            message: e.to_string(),
        };
        let done = dir.join("done");
        std::fs::create_dir_all(&done).map_err(|e| err(&done, e))?;
        let mut ob = Outbox {
            dir: dir.to_path_buf(),
            max_items,
            first_backoff: FIRST_BACKOFF_SECS,
            items: HashMap::new(),
            stats: Stats::default(),
        };
        for entry in std::fs::read_dir(dir).map_err(|e| err(dir, e))? {
            let Ok(entry) = entry else { continue };
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') && name.contains(".tmp-") {
                // A write that never reached its rename: the item was never queued.
                let _ = std::fs::remove_file(&path);
                continue;
            }
            if !name.ends_with(".json") {
                continue;
            }
            let parsed = std::fs::read(&path)
                .ok()
                .and_then(|b| serde_json::from_slice::<Item>(&b).ok());
            match parsed {
                Some(item) if done.join(file_name(&item.key)).exists() => {
                    // Done, but killed before forgetting it: forget it now.
                    let _ = std::fs::remove_file(&path);
                }
                Some(item) => {
                    ob.items.insert(item.key.clone(), item);
                }
                None => {
                    let aside = dir.join("corrupt");
                    let _ = std::fs::create_dir_all(&aside);
                    let _ = std::fs::rename(&path, aside.join(&name));
                    ob.stats.corrupt += 1;
                    tracing::error!(file = %path.display(), "outbox item unreadable; moved to corrupt/");
                }
            }
        }
        ob.prune_done(now);
        Ok(ob)
    }

    /// Sets the first wait after a failure (`alerts.retry_first`, in seconds).
    pub fn with_first_backoff(mut self, secs: u64) -> Outbox {
        self.first_backoff = secs.clamp(1, MAX_BACKOFF_SECS);
        self
    }

    fn path(&self, key: &str) -> PathBuf {
        self.dir.join(file_name(key))
    }

    fn done_path(&self, key: &str) -> PathBuf {
        self.dir.join("done").join(file_name(key))
    }

    fn write(&self, item: &Item) -> Result<(), OutboxError> {
        let path = self.path(&item.key);
        let bytes = serde_json::to_vec(item).map_err(|e| OutboxError {
            path: path.display().to_string(),
            message: e.to_string(),
        })?;
        fsutil::write_atomic(&path, &bytes).map_err(|e| OutboxError {
            path: path.display().to_string(),
            message: e.to_string(),
        })
    }

    /// Queues an action unless its key is already queued or done.
    pub fn put(
        &mut self,
        key: &str,
        action: Action,
        high: bool,
        now: u64,
    ) -> Result<Queued, OutboxError> {
        if self.items.contains_key(key) {
            return Ok(Queued::AlreadyQueued);
        }
        if self.done_path(key).exists() {
            return Ok(Queued::AlreadyDone);
        }
        if self.items.len() >= self.max_items && !self.make_room(high) {
            // Full of more important work: this one is the one dropped.
            self.stats.dropped += 1;
            tracing::warn!(key, "outbox full; dropped");
            return Ok(Queued::Dropped);
        }
        let item = Item {
            key: key.to_string(),
            action,
            high,
            created: now,
            attempts: 0,
            next_at: now,
            last_error: None,
        };
        self.write(&item)?;
        self.items.insert(key.to_string(), item);
        Ok(Queued::New)
    }

    /// Drops the oldest low-severity item (or, for a high newcomer, the oldest item);
    /// false if nothing may make room for it.
    fn make_room(&mut self, high: bool) -> bool {
        let victim = self
            .items
            .values()
            .filter(|i| !i.high || high)
            .min_by_key(|i| (i.high, i.created, i.key.clone()))
            .map(|i| i.key.clone());
        let Some(key) = victim else { return false };
        let _ = std::fs::remove_file(self.path(&key));
        self.items.remove(&key);
        self.stats.dropped += 1;
        tracing::warn!(key, "outbox full; dropped the oldest low-severity action");
        true
    }

    /// Actions due at `now`, high ones first, oldest first.
    pub fn due(&self, now: u64) -> Vec<Item> {
        self.due_if(now, |_| true)
    }

    /// Those of the actions due at `now` that `keep` picks, in the same order.
    pub fn due_if(&self, now: u64, keep: impl Fn(&Item) -> bool) -> Vec<Item> {
        let mut due: Vec<Item> = self
            .items
            .values()
            .filter(|i| i.next_at <= now && keep(i))
            .cloned()
            .collect();
        due.sort_by(|a, b| {
            b.high
                .cmp(&a.high)
                .then(a.created.cmp(&b.created))
                .then(a.key.cmp(&b.key))
        });
        due
    }

    /// Records success: the done marker first, then the item goes.
    pub fn done(&mut self, key: &str) -> Result<(), OutboxError> {
        let marker = self.done_path(key);
        fsutil::write_atomic(&marker, b"").map_err(|e| OutboxError {
            path: marker.display().to_string(),
            message: e.to_string(),
        })?;
        let _ = std::fs::remove_file(self.path(key));
        self.items.remove(key);
        Ok(())
    }

    /// Records a failure: the next attempt waits longer.
    pub fn failed(&mut self, key: &str, error: &str, now: u64) -> Result<(), OutboxError> {
        self.failed_until(key, error, now, None)
    }

    /// Records a failure; the next attempt waits until `retry_at` if the peer
    /// said when (HTTP `Retry-After`), else the usual backoff.
    pub fn failed_until(
        &mut self,
        key: &str,
        error: &str,
        now: u64,
        retry_at: Option<u64>,
    ) -> Result<(), OutboxError> {
        let Some(mut item) = self.items.get(key).cloned() else {
            return Ok(());
        };
        item.attempts += 1;
        // A wait that ends now means now (not the backoff of a time long past).
        item.next_at = retry_at
            .filter(|t| *t >= now)
            .map_or(now + backoff(self.first_backoff, item.attempts), |t| {
                t.min(now + MAX_BACKOFF_SECS)
            });
        item.last_error = Some(
            error
                .chars()
                .filter(|c| !c.is_control())
                .take(300)
                .collect(),
        );
        self.write(&item)?;
        self.items.insert(key.to_string(), item);
        Ok(())
    }

    /// Replaces a pending item's action (e.g. a mail with the advice obtained,
    /// so a retry of the delivery does not ask again).
    pub fn amend(&mut self, key: &str, action: Action) -> Result<(), OutboxError> {
        let Some(mut item) = self.items.get(key).cloned() else {
            return Ok(());
        };
        item.action = action;
        self.write(&item)?;
        self.items.insert(key.to_string(), item);
        Ok(())
    }

    /// Counters.
    pub fn stats(&self) -> Stats {
        let mut pending_by = BTreeMap::new();
        for item in self.items.values() {
            *pending_by.entry(Responder::of(&item.action)).or_insert(0) += 1;
        }
        Stats {
            pending: self.items.len(),
            failing: self.items.values().filter(|i| i.attempts >= 3).count(),
            pending_by,
            ..self.stats.clone()
        }
    }

    /// Forgets done markers older than [`DONE_KEEP_SECS`].
    fn prune_done(&self, now: u64) {
        let Ok(dir) = std::fs::read_dir(self.dir.join("done")) else {
            return;
        };
        for entry in dir.flatten() {
            let old = entry
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .is_some_and(|t| now.saturating_sub(t.as_secs()) > DONE_KEEP_SECS);
            if old {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }
}

#[cfg(test)]
mod tests;
