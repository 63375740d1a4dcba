//! What homewarden writes to MISP, typed: the event of an incident and the
//! later edit of its title. Field names are MISP's (`Event`, `Attribute`,
//! `Tag`); the same types are what the outbox keeps until MISP has them.

use serde::{Deserialize, Serialize};

/// The body of `events/add`: `{"Event": {...}}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewEvent {
    /// The event.
    #[serde(rename = "Event")]
    pub event: EventBody,
}

/// An event as homewarden creates it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventBody {
    /// Derived from the incident: the idempotency key of the event.
    pub uuid: String,
    /// Title.
    pub info: String,
    /// MISP's threat level id as text ("1" high … "4" undefined).
    pub threat_level_id: String,
    /// "0": this organisation only.
    pub distribution: String,
    /// "0": initial.
    pub analysis: String,
    /// Left for a person to publish.
    pub published: bool,
    /// Tags by name.
    #[serde(rename = "Tag")]
    pub tags: Vec<TagName>,
    /// Attributes.
    #[serde(rename = "Attribute")]
    pub attributes: Vec<NewAttribute>,
}

/// A tag by name.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TagName {
    /// e.g. `tlp:amber`.
    pub name: String,
}

/// An attribute of a new event.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewAttribute {
    /// MISP attribute type (`ip-dst`, `domain`, `ip-src`).
    #[serde(rename = "type")]
    pub kind: String,
    /// MISP category.
    pub category: String,
    /// The value.
    pub value: String,
    /// Whether MISP should offer it to detection (IDS) exports.
    pub to_ids: bool,
    /// What it is, for a person.
    pub comment: String,
}

/// The body of `events/edit/<uuid>`: only the title changes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventEdit {
    /// The fields changed.
    #[serde(rename = "Event")]
    pub event: EditBody,
}

/// The fields an edit changes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EditBody {
    /// New title.
    pub info: String,
}
