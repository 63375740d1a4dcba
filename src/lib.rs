//! homewarden: threat intelligence in, Suricata inline blocking out.
//!
//! # Layout
//!
//! Data flows one way, and the folders follow the flows:
//!
//! * [`intel`]: sources (MISP, feeds, lists) → the IoC set, with its
//!   allowlists, warninglists and budget.
//! * [`enforce`]: the set → Suricata's rules and datasets
//!   ([`enforce::suricata`]) and the kernel's packet path that queues
//!   traffic to it ([`enforce::firewall`]).
//! * [`signatures`]: a ruleset (Emerging Threats Open, through
//!   suricata-update) → the signatures the board carries, each dropping,
//!   alerting or left out for a reason.
//! * [`alerts`]: Suricata's eve records → incidents (intake, triage, hits,
//!   loss accounting).
//! * [`respond`]: incidents → the world, through a durable outbox: MISP
//!   sightings and events, advice (LLM or offline), mail, push (ntfy, a
//!   signed webhook, Matrix).
//! * [`devices`]: who is on the devices' side (leases, neighbours, the OUI
//!   registry), the owner's names for them, their quarantine's table; alerts
//!   name devices through it.
//! * [`owner`]: what the home owner decides: `allow`, `explain`, shadow mode.
//! * [`appliance`]: the Pi as a box: first boot, network placement, the LED
//!   panel and button, factory reset.
//! * [`daemon`]: the owner tasks of the running appliance: the agent (sources
//!   and enforcement), the incidents' owner (alerts to responders), the
//!   supervisor that feeds systemd's watchdog, the devices' owner, one stop
//!   for all, the control socket the CLI talks to, and the Prometheus endpoint.
//!
//! [`config`] (typed, validated once) sits between them: it parses into
//! intel's and alerts' types and holds the settings of every other folder.
//! Beneath everything: [`secrets`], [`users`], [`untrusted`] (text someone
//! else wrote, made fit to show), [`fsutil`] (atomic writes), [`fnv`] (a
//! stable hash), [`child`] (the tools' environment) and [`civil`] (dates). A folder imports the flows it consumes and what
//! lies beneath them, never around a circle: `tests/layout.rs` checks it.

pub mod alerts;
pub mod appliance;
pub mod child;
pub mod civil;
pub mod config;
pub mod daemon;
pub mod devices;
pub mod enforce;
pub mod fnv;
pub mod fsutil;
pub mod intel;
pub mod owner;
pub mod respond;
pub mod secrets;
pub mod signatures;
pub mod untrusted;
pub mod users;

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
