//! The push round: incidents for the `notify:` targets, each target with its
//! own hourly window (saved, so a restart does not reset it) and digest.

use std::collections::HashMap;

use super::mail::{Plan, RateWindow};
use super::outbox::{Action, Item};
use super::push::{message, Pusher};
use super::{advisor, lock, Responders};
use crate::alerts::triage::Incident;
use crate::intel::{unix_after, unix_now};

/// The windows, by target.
pub type Windows = HashMap<String, RateWindow>;

impl Responders {
    fn window_file(&self, target: &str) -> std::path::PathBuf {
        self.state_dir.join(format!("push-window-{target}.json"))
    }

    /// Every target's window as saved.
    pub(super) fn load_push_windows(&self) -> Windows {
        self.push
            .iter()
            .map(|p| {
                let w = std::fs::read(self.window_file(p.name()))
                    .ok()
                    .and_then(|b| serde_json::from_slice(&b).ok())
                    .unwrap_or_default();
                (p.name().to_string(), w)
            })
            .collect()
    }

    fn sent(&self, windows: &mut Windows, target: &str) {
        let w = windows.entry(target.to_string()).or_default();
        w.record(unix_now());
        let path = self.window_file(target);
        let saved = serde_json::to_vec(w)
            .map_err(std::io::Error::other)
            .and_then(|b| crate::fsutil::write_atomic(&path, &b));
        if let Err(e) = saved {
            tracing::error!("{}: {e}", path.display());
        }
    }

    /// One pass over the pushes that are due, target by target.
    pub async fn push_round(&self, windows: &mut Windows, now: u64) {
        let due = lock(&self.outbox).due_if(now, |i| i.action.is_push());
        let mut by_target: HashMap<String, Vec<(Item, Incident)>> = HashMap::new();
        let mut notices = Vec::new();
        for item in due {
            match &item.action {
                Action::Push(p) => {
                    let (target, inc) = (p.target.clone(), p.incident.clone());
                    by_target.entry(target).or_default().push((item, inc));
                }
                Action::PushNotice(n) => notices.push((n.clone(), item)),
                _ => {}
            }
        }
        // Notices (a new device) are few by their making: each goes as it is.
        for (n, item) in notices {
            let Some(pusher) = self.push.iter().find(|p| p.name() == n.target) else {
                tracing::warn!(key = %item.key, target = n.target, "no such notify target any more; not sending");
                self.record(&item, Ok(()));
                continue;
            };
            let m = message::notice(&self.appliance, &n.notice);
            let sent = pusher.send(&m, &item.key, &self.appliance).await;
            if sent.is_ok() {
                self.sent(windows, &n.target);
                self.tally
                    .note(|t| t.pushes.entry(n.target.clone()).or_default().notice += 1);
            }
            self.record(&item, sent.map_err(retry));
        }
        for (target, items) in by_target {
            match self.push.iter().find(|p| p.name() == target) {
                Some(pusher) => self.push_to(pusher, items, windows, now).await,
                None => {
                    // The target left the config since: that is the owner's word.
                    for (item, _) in &items {
                        tracing::warn!(key = %item.key, target, "no such notify target any more; not sending");
                        self.record(item, Ok(()));
                    }
                }
            }
        }
    }

    async fn push_to(
        &self,
        pusher: &Pusher,
        items: Vec<(Item, Incident)>,
        windows: &mut Windows,
        now: u64,
    ) {
        let target = pusher.name();
        let plan = windows.entry(target.to_string()).or_default().plan(
            now,
            pusher.max_per_hour,
            items.len(),
        );
        match plan {
            Plan::Wait(_) => {}
            Plan::Each(n) => {
                for (item, inc) in items.into_iter().take(n) {
                    // The offline advisor's steps: a push must not wait on an
                    // LLM (the mail carries its advice).
                    let advice = advisor::offline(&inc);
                    let m =
                        message::incident(&self.appliance, &inc, &advice, self.event_link(&inc));
                    let sent = pusher.send(&m, &item.key, &self.appliance).await;
                    if sent.is_ok() {
                        self.sent(windows, target);
                        self.tally.note(|t| {
                            t.pushes.entry(target.to_string()).or_default().incident += 1
                        });
                    }
                    self.record(&item, sent.map_err(retry));
                }
            }
            Plan::Digest => {
                let incs: Vec<Incident> = items.iter().map(|(_, i)| i.clone()).collect();
                let m = message::digest(&self.appliance, &incs);
                let id = format!("digest-{}", items[0].0.key);
                match pusher.send(&m, &id, &self.appliance).await {
                    Ok(()) => {
                        self.sent(windows, target);
                        tracing::info!(target, incidents = incs.len(), "digest pushed");
                        self.tally.note(|t| {
                            let p = t.pushes.entry(target.to_string()).or_default();
                            p.digest += 1;
                            p.rate_limited += incs.len() as u64;
                        });
                        for (item, _) in &items {
                            self.record(item, Ok(()));
                        }
                    }
                    Err(e) => {
                        let e = retry(e);
                        for (item, _) in &items {
                            self.record(item, Err(e.clone()));
                        }
                    }
                }
            }
        }
    }

    /// The MISP event's page, when the incident's indicator came from one.
    fn event_link(&self, inc: &Incident) -> Option<String> {
        let p = inc.ioc.as_ref()?;
        self.misp.get(&p.source)?.event_url(p.event_id?)
    }
}

/// A failed push as the outbox records it: the words, and when to retry if
/// the service said (counted from its answer, never before).
fn retry(e: super::push::PushError) -> (String, Option<u64>) {
    (e.to_string(), e.retry_after().map(unix_after))
}
