//! Alerts: Suricata's eve records in, incidents out (responders act on them).

pub mod eve;
pub mod hits;
pub mod intake;
pub mod loss;
pub mod triage;
