//! homewarden: threat intelligence in, Suricata inline blocking out.
//!
//! Data flows one way: intel sources → IoC set → Suricata datasets.

pub mod advisor;
pub mod agent;
pub mod alerts;
pub mod allow;
pub mod child;
pub mod config;
pub mod control;
pub mod explain;
pub mod factory;
pub mod firewall;
pub mod firstboot;
pub mod fsutil;
pub mod intel;
pub mod mail;
pub mod outbox;
pub mod panel;
pub mod placement;
pub mod respond;
pub mod secrets;
pub mod shadow;
pub mod suricata;

/// An error and its causes on one line (`connect: tls: certificate expired`).
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}
