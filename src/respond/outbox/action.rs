//! What an outbox item asks a responder to do, typed. On disk an action is
//! the `kind` and `payload` fields items have always had (an adjacently
//! tagged enum, flattened into the item), so an outbox written by an older
//! release reads back as it was (tests/data/outbox-0.1.0).

use serde::{Deserialize, Serialize};

use crate::alerts::triage::Incident;
use crate::intel::misp::{EventEdit, NewEvent, SightingType};
use crate::respond::advisor::Advice;

/// One action for a responder.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "payload")]
pub enum Action {
    /// Tell a MISP source one of its attributes was seen here (or judged a
    /// false positive, or no longer enforced).
    #[serde(rename = "misp-sighting")]
    MispSighting(Sighting),
    /// Create an incident's MISP event.
    #[serde(rename = "misp-event")]
    MispEvent(EventFor),
    /// Retitle an incident's MISP event (its alert count grew).
    #[serde(rename = "misp-event-update")]
    MispEventUpdate(EventUpdate),
    /// Mail the owner about an incident, with advice.
    #[serde(rename = "mail")]
    Mail(MailPayload),
    /// Push an incident to one of the `notify:` targets.
    #[serde(rename = "push")]
    Push(PushPayload),
    /// Mail the owner about the appliance itself.
    #[serde(rename = "mail-notice")]
    MailNotice(Notice),
    /// Push a notice (a new device…) to one of the `notify:` targets.
    #[serde(rename = "push-notice")]
    PushNotice(PushNotice),
}

impl Action {
    /// The kind as written on disk and in logs.
    pub fn kind(&self) -> &'static str {
        match self {
            Action::MispSighting(_) => "misp-sighting",
            Action::MispEvent(_) => "misp-event",
            Action::MispEventUpdate(_) => "misp-event-update",
            Action::Mail(_) => "mail",
            Action::MailNotice(_) => "mail-notice",
            Action::Push(_) => "push",
            Action::PushNotice(_) => "push-notice",
        }
    }

    /// Mails wait for the hourly limit and may go out as a digest.
    pub fn is_incident_mail(&self) -> bool {
        matches!(self, Action::Mail(_))
    }

    /// The push round's: an incident's or a notice's push.
    pub fn is_push(&self) -> bool {
        matches!(self, Action::Push(_) | Action::PushNotice(_))
    }
}

/// A sighting for one MISP attribute.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sighting {
    /// The MISP source (its name in the config).
    pub source: String,
    /// The attribute.
    pub attribute_uuid: String,
    /// When (unix seconds).
    pub time: i64,
    /// Seen, false positive or expiration (actions of older releases carry
    /// none: they were all plain sightings).
    #[serde(rename = "type", default = "seen")]
    pub kind: SightingType,
}

fn seen() -> SightingType {
    SightingType::Seen
}

/// A new MISP event, and the source it goes to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventFor {
    /// The MISP source.
    pub source: String,
    /// The event.
    pub event: NewEvent,
}

/// An edit of an incident's MISP event.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventUpdate {
    /// The MISP source.
    pub source: String,
    /// The event's (derived) uuid.
    pub uuid: String,
    /// What changes.
    pub event: EventEdit,
}

/// What a mail action carries.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MailPayload {
    /// The incident as it was when queued.
    pub incident: Incident,
    /// Advice, once obtained (so a failed delivery does not ask again).
    #[serde(default)]
    pub advice: Option<Advice>,
}

/// A mail about the appliance (a source held, the self-test failing…).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notice {
    /// Subject line.
    pub subject: String,
    /// Body text.
    pub text: String,
}

/// What a push action carries.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PushPayload {
    /// The `notify:` target, by name.
    pub target: String,
    /// The incident as it was when queued.
    pub incident: Incident,
}

/// What a notice's push carries.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PushNotice {
    /// The `notify:` target, by name.
    pub target: String,
    /// The notice.
    pub notice: Notice,
}
