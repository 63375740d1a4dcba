//! What the responders did since the agent started, for `homewarden status`
//! and `/metrics`. Only the responders' task writes it; the agent reads a
//! copy when it publishes the status.

use std::collections::BTreeMap;
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use super::outbox::Action;

/// Who delivers an action.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Responder {
    /// Events and sightings to MISP.
    Misp,
    /// Incident mails, digests and notices about the appliance.
    Mail,
    /// Pushes to the `notify:` targets (ntfy, webhook, Matrix).
    Push,
}

impl Responder {
    /// Every responder, for metrics that show zeros too.
    pub const ALL: [Responder; 3] = [Responder::Misp, Responder::Mail, Responder::Push];

    /// The responder that delivers `action`.
    pub fn of(action: &Action) -> Responder {
        match action {
            Action::MispSighting(_) | Action::MispEvent(_) | Action::MispEventUpdate(_) => {
                Responder::Misp
            }
            Action::Mail(_) | Action::MailNotice(_) => Responder::Mail,
            Action::Push(_) | Action::PushNotice(_) => Responder::Push,
        }
    }

    /// Its name in status and metrics.
    pub fn name(self) -> &'static str {
        match self {
            Responder::Misp => "misp",
            Responder::Mail => "mail",
            Responder::Push => "push",
        }
    }
}

/// Counters of the responders' work (since the agent started).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delivered {
    /// Actions that left the outbox done, by responder.
    pub done: BTreeMap<Responder, u64>,
    /// Attempts that failed (the action stays and is retried), by responder.
    pub failed: BTreeMap<Responder, u64>,
    /// Mails the SMTP server took.
    pub mails: Mails,
    /// LLM calls, by outcome.
    pub llm: LlmCalls,
    /// Messages the push targets took, by target: one incident each, or digests.
    #[serde(default)]
    pub pushes: BTreeMap<String, Pushes>,
    /// Incidents whose advice was written offline because the LLM failed
    /// for good (or asked to wait too long).
    pub offline_advice: u64,
}

/// Mails sent, by what they were.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mails {
    /// One incident each.
    pub incident: u64,
    /// Digests: the hourly limit folded several incidents into one mail.
    pub digest: u64,
    /// Notices about the appliance (self-test, sources).
    pub notice: u64,
    /// Incidents that went out in a digest instead of a mail of their own.
    pub rate_limited: u64,
}

/// Messages one push target took.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pushes {
    /// One incident each.
    pub incident: u64,
    /// Digests: the target's hourly limit folded several incidents into one.
    pub digest: u64,
    /// Incidents that went out in a digest instead of a message of their own.
    pub rate_limited: u64,
    /// Notices about the home (a new device).
    #[serde(default)]
    pub notice: u64,
}

/// LLM calls, by outcome.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LlmCalls {
    /// Answered with advice.
    pub ok: u64,
    /// Refused with 429 (too many requests).
    pub rate_limited: u64,
    /// Any other failure (server error, timeout, refused key, bad reply).
    pub failed: u64,
}

/// The counters, shared between the responders (writing) and the agent.
#[derive(Debug, Default)]
pub struct Tally(Mutex<Delivered>);

impl Tally {
    /// Changes the counters.
    pub fn note(&self, f: impl FnOnce(&mut Delivered)) {
        f(&mut self.0.lock().unwrap_or_else(|p| p.into_inner()));
    }

    /// A copy of the counters.
    pub fn snapshot(&self) -> Delivered {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

impl Delivered {
    /// Counts one attempt at an action of `responder`.
    pub fn attempt(&mut self, responder: Responder, ok: bool) {
        let by = if ok { &mut self.done } else { &mut self.failed };
        *by.entry(responder).or_insert(0) += 1;
    }
}
