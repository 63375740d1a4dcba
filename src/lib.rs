//! homewarden: threat intelligence in, Suricata inline blocking out.
//!
//! Data flows one way: intel sources → IoC set → Suricata datasets.

pub mod advisor;
pub mod agent;
pub mod alerts;
pub mod config;
pub mod control;
pub mod firstboot;
pub mod fsutil;
pub mod intel;
pub mod mail;
pub mod outbox;
pub mod panel;
pub mod respond;
pub mod secrets;
pub mod suricata;
