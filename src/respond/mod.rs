//! Responders: work through the outbox in a task of their own, so a slow
//! MISP, LLM or SMTP server never delays enforcement, alert intake or the
//! watchdog. Each action leaves the outbox only when done; failures retry
//! with backoff (or when the peer asked, `Retry-After`).

pub mod advisor;
pub mod mail;
pub mod outbox;
pub mod push;
mod pushing;
pub mod tally;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::Notify;

use crate::alerts::triage::Incident;
use crate::intel::{misp, unix_after, unix_now};
use advisor::Advice;
use mail::{Mailer, Plan, RateWindow};
pub use outbox::MailPayload;
use outbox::{Action, Item, Outbox};
use tally::{Responder, Tally};

/// How often the outbox is looked at when nobody wakes the responders.
const EVERY: Duration = Duration::from_secs(1);
/// Longest an incident mail waits for an LLM that asked to be left alone
/// (`Retry-After`); asked for longer, the offline advice goes out now: the
/// owner must hear of an incident in minutes, not when the LLM's quota resets.
pub const MAX_ADVICE_WAIT: Duration = Duration::from_secs(120);
/// The hourly mail window, under the state directory.
const MAIL_WINDOW_FILE: &str = "mail-window.json";

/// The outbox, shared by the agent (which queues) and the responders (which deliver).
pub type SharedOutbox = Arc<Mutex<Outbox>>;

/// Locks the outbox; a panic elsewhere while it was held leaves it usable
/// (every change is on disk before it is in memory).
pub fn lock(outbox: &SharedOutbox) -> MutexGuard<'_, Outbox> {
    outbox.lock().unwrap_or_else(|p| p.into_inner())
}

/// Everything the responders need, built once at start.
pub struct Responders {
    /// The outbox.
    pub outbox: SharedOutbox,
    /// MISP clients by source name.
    pub misp: HashMap<String, misp::Client>,
    /// The `source` of our sightings.
    pub sighting_source: String,
    /// The LLM, if one is configured (else the offline advisor).
    pub advisor: Option<advisor::Client>,
    /// LLM calls per incident before the offline advice is used.
    pub advice_tries: u32,
    /// The mailer, if mail is configured.
    pub mailer: Option<Mailer>,
    /// Most mails an hour.
    pub max_per_hour: u32,
    /// Where the hourly window is kept.
    pub state_dir: PathBuf,
    /// This appliance's name, for mails.
    pub appliance: String,
    /// What was delivered, for status.
    pub tally: Arc<Tally>,
    /// The `notify:` targets.
    pub push: Vec<push::Pusher>,
}

impl Responders {
    /// Works until the task is dropped; `wake` makes it look at once.
    ///
    /// MISP and mail each go their own way: a MISP that hangs until its
    /// timeout (a minute, for every due action) must not keep the owner's
    /// mail waiting, nor a slow LLM or SMTP server MISP.
    pub async fn run(self, wake: Arc<Notify>) {
        let mut window = self.load_window();
        let mut push_windows = self.load_push_windows();
        let (misp_wake, mail_wake, push_wake) = (Notify::new(), Notify::new(), Notify::new());
        let fan_out = async {
            loop {
                wake.notified().await;
                misp_wake.notify_one();
                mail_wake.notify_one();
                push_wake.notify_one();
            }
        };
        let misp = async {
            loop {
                self.misp_round(unix_now()).await;
                tokio::select! {
                    _ = tokio::time::sleep(EVERY) => {}
                    _ = misp_wake.notified() => {}
                }
            }
        };
        let mail = async {
            loop {
                self.mail_round(&mut window, unix_now()).await;
                tokio::select! {
                    _ = tokio::time::sleep(EVERY) => {}
                    _ = mail_wake.notified() => {}
                }
            }
        };
        // Pushes go their own way too: a phone must not wait on SMTP.
        let push = async {
            loop {
                self.push_round(&mut push_windows, unix_now()).await;
                tokio::select! {
                    _ = tokio::time::sleep(EVERY) => {}
                    _ = push_wake.notified() => {}
                }
            }
        };
        tokio::join!(fan_out, misp, mail, push);
    }

    fn load_window(&self) -> RateWindow {
        std::fs::read(self.state_dir.join(MAIL_WINDOW_FILE))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default()
    }

    fn save_window(&self, w: &RateWindow) {
        let path = self.state_dir.join(MAIL_WINDOW_FILE);
        let saved = serde_json::to_vec(w)
            .map_err(std::io::Error::other)
            .and_then(|b| crate::fsutil::write_atomic(&path, &b));
        if let Err(e) = saved {
            tracing::error!("{}: {e}", path.display());
        }
    }

    /// One pass over the MISP actions that are due, one by one.
    pub async fn misp_round(&self, now: u64) {
        let due =
            lock(&self.outbox).due_if(now, |i| !i.action.is_incident_mail() && !i.action.is_push());
        for item in due {
            let result = self.perform(&item).await;
            self.record(&item, result.map_err(|e| (e, None)));
        }
    }

    /// One pass over the mails that are due, as the hourly limit allows.
    pub async fn mail_round(&self, window: &mut RateWindow, now: u64) {
        let mails = lock(&self.outbox).due_if(now, |i| i.action.is_incident_mail());
        if !mails.is_empty() {
            self.deliver(mails, window, now).await;
        }
    }

    fn record(&self, item: &Item, result: Result<(), (String, Option<u64>)>) {
        let responder = Responder::of(&item.action);
        self.tally.note(|t| t.attempt(responder, result.is_ok()));
        let mut ob = lock(&self.outbox);
        let recorded = match &result {
            Ok(()) => {
                tracing::info!(key = %item.key, kind = item.action.kind(), "done");
                ob.done(&item.key)
            }
            Err((e, retry_at)) => {
                tracing::warn!(key = %item.key, attempt = item.attempts + 1, "responder failed, will retry: {e}");
                ob.failed_until(&item.key, e, unix_now(), *retry_at)
            }
        };
        if let Err(e) = recorded {
            tracing::error!("{e}");
        }
    }

    /// Performs one MISP action (or a notice: mails about the appliance are
    /// not held to the incidents' hourly limit).
    async fn perform(&self, item: &Item) -> Result<(), String> {
        let client = |name: &str| {
            self.misp
                .get(name)
                .ok_or_else(|| format!("no MISP source {name:?} in the config any more"))
        };
        match &item.action {
            Action::MispSighting(s) => client(&s.source)?
                .add_sighting(&s.attribute_uuid, &self.sighting_source, s.time, s.kind)
                .await
                .map_err(|e| e.to_string()),
            Action::MispEvent(e) => client(&e.source)?
                .add_event(&e.event)
                .await
                .map_err(|e| e.to_string()),
            Action::MispEventUpdate(u) => client(&u.source)?
                .edit_event(&u.uuid, &u.event)
                .await
                .map_err(|e| e.to_string()),
            Action::MailNotice(n) => {
                let Some(mailer) = &self.mailer else {
                    tracing::warn!(key = %item.key, "mail is off in the config; notice not sent");
                    return Ok(());
                };
                let letter = mail::notice_letter(&self.appliance, &n.subject, &n.text);
                mailer
                    .send(&letter, &item.key)
                    .await
                    .map_err(|e| e.to_string())?;
                self.tally.note(|t| t.mails.notice += 1);
                Ok(())
            }
            Action::Mail(_) => Err("an incident mail is the mail round's".into()),
            Action::Push(_) | Action::PushNotice(_) => Err("a push is the push round's".into()),
        }
    }

    /// Sends the due mails one by one while the hour allows, else as one digest.
    async fn deliver(&self, mails: Vec<Item>, window: &mut RateWindow, now: u64) {
        let Some(mailer) = &self.mailer else {
            // Mail was switched off since these were queued: that is the owner's word.
            for item in &mails {
                tracing::warn!(key = %item.key, "mail is off in the config; not sending");
                self.record(item, Ok(()));
            }
            return;
        };
        let parsed: Vec<(Item, MailPayload)> = mails
            .into_iter()
            .filter_map(|item| match &item.action {
                Action::Mail(p) => {
                    let p = p.clone();
                    Some((item, p))
                }
                _ => None,
            })
            .collect();
        match window.plan(now, self.max_per_hour, parsed.len()) {
            Plan::Wait(_) => {}
            Plan::Each(n) => {
                for (item, mut p) in parsed.into_iter().take(n) {
                    let advice = match p.advice.clone() {
                        Some(a) => a,
                        None => match self.advise(&item, &p.incident).await {
                            Ok(a) => {
                                p.advice = Some(a.clone());
                                let amended = Action::Mail(p.clone());
                                if let Err(e) = lock(&self.outbox).amend(&item.key, amended) {
                                    tracing::error!("{e}");
                                }
                                a
                            }
                            Err(retry) => {
                                self.record(&item, Err(retry));
                                continue;
                            }
                        },
                    };
                    let letter = mail::incident_letter(&self.appliance, &p.incident, &advice);
                    let sent = mailer.send(&letter, &item.key).await;
                    if sent.is_ok() {
                        window.record(unix_now());
                        self.save_window(window);
                        self.tally.note(|t| t.mails.incident += 1);
                    }
                    self.record(&item, sent.map_err(|e| (e.to_string(), None)));
                }
            }
            Plan::Digest => {
                // Advice written offline: a storm must not become a storm of LLM calls.
                let incs: Vec<(Incident, Advice)> = parsed
                    .iter()
                    .map(|(_, p)| {
                        let a = p
                            .advice
                            .clone()
                            .unwrap_or_else(|| advisor::offline(&p.incident));
                        (p.incident.clone(), a)
                    })
                    .collect();
                let letter = mail::digest_letter(&self.appliance, &incs);
                let id = format!("digest-{}", parsed[0].0.key);
                match mailer.send(&letter, &id).await {
                    Ok(()) => {
                        window.record(unix_now());
                        self.save_window(window);
                        tracing::info!(incidents = parsed.len(), "digest mail sent");
                        self.tally.note(|t| {
                            t.mails.digest += 1;
                            t.mails.rate_limited += parsed.len() as u64;
                        });
                        for (item, _) in &parsed {
                            self.record(item, Ok(()));
                        }
                    }
                    Err(e) => {
                        for (item, _) in &parsed {
                            self.record(item, Err((e.to_string(), None)));
                        }
                    }
                }
            }
        }
    }

    /// Advice for an incident: the LLM's, or offline steps once it has failed
    /// for good; `Err` (with the time to retry) while a retry is worth it.
    async fn advise(&self, item: &Item, inc: &Incident) -> Result<Advice, (String, Option<u64>)> {
        let Some(llm) = &self.advisor else {
            return Ok(advisor::offline(inc));
        };
        let answer = llm.advise(inc).await;
        self.tally.note(|t| match &answer {
            Ok(_) => t.llm.ok += 1,
            Err(advisor::AdvisorError::RateLimited { .. }) => t.llm.rate_limited += 1,
            Err(_) => t.llm.failed += 1,
        });
        match answer {
            Ok(a) => Ok(a),
            Err(e)
                if e.retryable()
                    && item.attempts + 1 < self.advice_tries
                    && e.retry_after().is_none_or(|d| d <= MAX_ADVICE_WAIT) =>
            {
                let at = e.retry_after().map(unix_after);
                Err((format!("advisor: {e}"), at))
            }
            Err(e) => {
                tracing::warn!(key = %item.key, "advisor failed, using offline advice: {e}");
                self.tally.note(|t| t.offline_advice += 1);
                Ok(advisor::offline(inc))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// An LLM endpoint that answers every request with 429 and this Retry-After.
    async fn rate_limited_llm(retry_after: u64) -> String {
        let body = r#"{"message":"You are past the per minute request limit"}"#;
        let reply = format!(
            "HTTP/1.1 429 Too Many Requests\r\nRetry-After: {retry_after}\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        crate::intel::fetch::canned_server(reply.into_bytes()).await
    }

    fn responders(dir: &std::path::Path, llm: Option<advisor::Client>) -> Responders {
        Responders {
            outbox: Arc::new(Mutex::new(
                Outbox::open(&dir.join("outbox"), 10, 1000).unwrap(),
            )),
            misp: HashMap::new(),
            sighting_source: "homewarden".into(),
            advisor: llm,
            advice_tries: 3,
            mailer: None,
            max_per_hour: 10,
            state_dir: dir.to_path_buf(),
            appliance: "pi".into(),
            tally: Arc::default(),
            push: Vec::new(),
        }
    }

    fn incident() -> Incident {
        serde_json::from_value(json!({
            "id": "inc-1-1", "sid": 1, "signature": "s", "category": "A Network Trojan was detected",
            "remote": "203.0.113.9", "remote_ip": "203.0.113.9", "local": "198.18.1.2",
            "severity": 1, "high": true, "blocked": true, "first_seen": 1, "last_seen": 1, "count": 1,
        }))
        .unwrap()
    }

    #[tokio::test]
    async fn an_llm_asking_for_a_short_wait_gets_it_a_long_one_means_offline_advice_now() {
        let dir = tempfile::tempdir().unwrap();
        for (retry_after, waits) in [(30, true), (3600, false)] {
            let cfg = crate::config::AdvisorConfig {
                url: Some(rate_limited_llm(retry_after).await),
                ..Default::default()
            };
            let llm = advisor::Client::new(&cfg, Some("key".into()), Vec::new())
                .unwrap()
                .unwrap();
            let r = responders(dir.path(), Some(llm));
            let item = Item {
                key: "inc-1-1:mail".into(),
                action: Action::Mail(MailPayload {
                    incident: incident(),
                    advice: None,
                }),
                high: true,
                created: 1,
                attempts: 0,
                next_at: 1,
                last_error: None,
            };
            let got = r.advise(&item, &incident()).await;
            match (waits, got) {
                (true, Err((_, Some(at)))) => {
                    assert!(at >= unix_now() + 30 && at <= unix_now() + 31)
                }
                (false, Ok(a)) => assert_eq!(a.by, "offline"),
                (w, other) => panic!("Retry-After {retry_after} (wait: {w}): {other:?}"),
            }
        }
    }

    #[tokio::test]
    async fn a_hanging_misp_does_not_hold_back_mail() {
        let dir = tempfile::tempdir().unwrap();
        let outbox = Arc::new(Mutex::new(
            Outbox::open(&dir.path().join("outbox"), 10, 1000).unwrap(),
        ));
        // A MISP that takes the connection and never answers.
        let hole = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", hole.local_addr().unwrap());
        let client = misp::Client::new(
            reqwest::Client::new(),
            &url,
            "key".into(),
            Duration::from_secs(600),
        )
        .unwrap();
        let update = Action::MispEventUpdate(crate::respond::outbox::EventUpdate {
            source: "misp".into(),
            uuid: incident().uuid(),
            event: misp::EventEdit {
                event: misp::EditBody { info: "x".into() },
            },
        });
        lock(&outbox)
            .put("a:misp-event", update, true, 1000)
            .unwrap();
        let r = Responders {
            outbox: outbox.clone(),
            misp: HashMap::from([("misp".to_string(), client)]),
            sighting_source: "homewarden".into(),
            advisor: None,
            advice_tries: 1,
            // Mail off: a mail action is settled at once, when it gets its turn.
            mailer: None,
            max_per_hour: 10,
            state_dir: dir.path().to_path_buf(),
            appliance: "pi".into(),
            tally: Arc::default(),
            push: Vec::new(),
        };
        let wake = Arc::new(Notify::new());
        let task = tokio::spawn(r.run(wake.clone()));
        let pending = || -> Vec<String> {
            lock(&outbox)
                .due(u64::MAX)
                .into_iter()
                .map(|i| i.key)
                .collect()
        };
        // MISP is hanging by now; a mail comes in (the agent queues, then wakes).
        tokio::time::sleep(Duration::from_millis(200)).await;
        let mail = Action::Mail(MailPayload {
            incident: incident(),
            advice: None,
        });
        lock(&outbox).put("a:mail", mail, true, unix_now()).unwrap();
        wake.notify_one();
        for _ in 0..300 {
            if pending().len() == 1 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(pending(), ["a:misp-event"], "mail waited for MISP");
        assert!(!task.is_finished());
        task.abort();
    }
}
