//! The daemon's answers to the owner's commands, typed on both ends: the
//! agent builds them, the CLI reads them back; on the socket they are the
//! JSON objects they always were (`--json` prints them as they come).

use serde::{Deserialize, Serialize};

use crate::daemon::agent::Counts;
use crate::intel::set::Provenance;
use crate::owner::allow::Allowed;
use crate::owner::explain::Explanation;

/// The answer to `ack`.
#[derive(Debug, PartialEq, Serialize, Deserialize)]
pub struct AckReply {
    /// Open high incidents acknowledged now (not before).
    pub acknowledged: usize,
}

/// An answer to an [`super::OwnerCommand`].
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum OwnerReply {
    /// To `explain`.
    Explained(Box<Explanation>),
    /// To `allow`.
    Allowed(AllowReply),
    /// To `unallow`.
    Unallowed(UnallowReply),
    /// To `blocks`.
    Blocks(BlocksReply),
}

/// A value lifted from enforcement.
#[derive(Debug, PartialEq, Serialize, Deserialize)]
pub struct AllowReply {
    /// The allowance as recorded.
    pub allowed: Allowed,
    /// Which Suricata files now run (`live_name`).
    pub applied: String,
    /// Blocklist values lifted by it.
    pub removed: usize,
    /// False-positive sightings queued for the MISP sources that listed it.
    pub false_positive_sightings: usize,
}

/// An allowance taken back.
#[derive(Debug, PartialEq, Serialize, Deserialize)]
pub struct UnallowReply {
    /// The allowance that was removed.
    pub unallowed: Allowed,
    /// Which Suricata files now run.
    pub applied: String,
    /// Blocklist values enforced again.
    pub added: usize,
}

/// What is being blocked now.
#[derive(Debug, PartialEq, Serialize, Deserialize)]
pub struct BlocksReply {
    /// The enforced blocklist by kind.
    pub blocklist: Counts,
    /// Values blocked in the last 24 hours, most recent first.
    pub recent: Vec<RecentBlock>,
    /// The owner's allowances.
    pub allowed: Vec<Allowed>,
}

/// One value blocked recently, and who lists it.
#[derive(Debug, PartialEq, Serialize, Deserialize)]
pub struct RecentBlock {
    /// The blocked value (as listed).
    pub value: String,
    /// Hits in the last 24 hours.
    pub hits_24h: u64,
    /// The last hit (unix seconds).
    pub last: i64,
    /// The indicators behind it.
    pub listed_by: Vec<Provenance>,
    /// The signature that dropped it, when no listed value did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sid: Option<u32>,
}

/// The answer to `devices`.
#[derive(Debug, PartialEq, Serialize, Deserialize)]
pub struct DevicesReply {
    /// Every device, the most recently seen first.
    pub devices: Vec<crate::daemon::devices::DeviceView>,
}
