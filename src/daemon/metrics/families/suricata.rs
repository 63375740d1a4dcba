//! Families of the enforcing side: Suricata and the packet path.

use std::sync::atomic::AtomicU64;

use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::{Registry, Unit};

use super::{counter, counters, family, gauge, i, one, secs, time};
use crate::daemon::agent::{Applies, Status};
use crate::enforce::firewall::health::PathStatus;

/// Registers this part's families.
pub(super) fn register(r: &mut Registry, status: &Status) {
    let su = &status.suricata;
    gauge(
        r,
        "homewarden_suricata_up",
        "1 if Suricata's command socket answers",
        i64::from(su.reachable),
    );
    let ap = &su.applies;
    counters(
        r,
        "homewarden_applies",
        "Renderings applied since the agent started, by how they reached Suricata",
        [
            ("delta", ap.delta),
            ("reload", ap.reload),
            ("unchanged", ap.unchanged),
            ("suricata_down", ap.suricata_down),
            ("failed", ap.failed),
        ]
        .map(|(how, n)| (one("how", how), n)),
    );
    if *ap != Applies::default() {
        let g = Gauge::<f64, AtomicU64>::default();
        g.set(secs(ap.last_ms));
        r.register_with_unit(
            "homewarden_last_apply_duration",
            "How long the last apply took (render, write, tell Suricata)",
            Unit::Seconds,
            g,
        );
    }
    time(
        r,
        "homewarden_suricata_last_change",
        "When the rules in force last changed (unix time)",
        su.last_change.map(i),
    );
    path(r, &status.path);
}

/// The packet path's counters: the kernel's (queue rule, bypass rule, queue
/// table, conntrack) and Suricata's verdicts. The kernel does not count the
/// packets a fail-open queue lets pass unread; `homewarden_path_fail_open`
/// with `homewarden_path_queues{state="unheld"}` says when that happens.
fn path(r: &mut Registry, p: &PathStatus) {
    if let Some(q) = &p.queue {
        counter(
            r,
            "homewarden_path_queued_packets",
            "Forwarded packets the firewall handed to Suricata's queues (since the rule was made)",
            q.packets,
        );
        gauge(
            r,
            "homewarden_path_fail_open",
            "1 if traffic passes uninspected when Suricata does not read a queue, 0 if it stops",
            i64::from(q.bypass),
        );
        let all = q.queues.0..=q.queues.1;
        let held = all.clone().filter(|n| p.held.contains(n)).count();
        family(
            r,
            "homewarden_path_queues",
            "The firewall's queues, by whether Suricata reads them",
            [
                (one("state", "held"), i(held)),
                (one("state", "unheld"), i(all.count() - held)),
            ],
        );
    }
    counter(
        r,
        "homewarden_path_bypassed_packets",
        "Packets of flows Suricata bypassed that the kernel forwarded without it",
        p.bypassed_packets,
    );
    gauge(
        r,
        "homewarden_path_bypassed_flows",
        "Flows Suricata bypassed, still in the kernel's connection table",
        i(p.bypassed_flows),
    );
    counter(
        r,
        "homewarden_path_queue_full_drops",
        "Packets the kernel dropped because a queue was full (fail-closed)",
        p.queue_full_drops,
    );
    if let Some((accepted, blocked)) = p.suricata_verdicts {
        counters(
            r,
            "homewarden_suricata_verdicts",
            "Queued packets Suricata let through or dropped (ips.accepted, ips.blocked) since it started",
            [("accepted", accepted), ("blocked", blocked)].map(|(v, n)| (one("verdict", v), n)),
        );
    }
    if let Some(on) = p.bridge_inspected {
        gauge(
            r,
            "homewarden_path_bridge_inspected",
            "bridge placement: 1 if bridged traffic is handed to Suricata (br_netfilter on)",
            i64::from(on),
        );
    }
}
