//! The devices as status (and /metrics) show them.

use serde::{Deserialize, Serialize};

use crate::devices::Tag;

/// A quarantined device in status.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Quarantined {
    /// Its MAC.
    pub mac: String,
    /// Its name.
    pub name: String,
    /// Since when (unix seconds).
    pub since: i64,
    /// Until when; until released if absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<i64>,
    /// Why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// The devices as status shows them.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DevicesStatus {
    /// The inventory is kept.
    pub enabled: bool,
    /// Devices known.
    pub known: usize,
    /// Of those, seen in the last 24 hours.
    pub seen_24h: usize,
    /// The quarantined ones.
    pub quarantined: Vec<Quarantined>,
    /// The last device that joined (after the first scan).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_new: Option<Tag>,
    /// Why the inventory or the quarantine is not what it should be.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}
