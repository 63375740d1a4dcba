//! The signature ruleset's families: what `homewarden signatures status` says.

use prometheus_client::registry::Registry;

use super::{bytes, family, gauge, i, one, time};
use crate::daemon::signatures::SignaturesStatus;

/// Adds the ruleset's families to `r`.
pub fn add(r: &mut Registry, s: &SignaturesStatus) {
    family(
        r,
        "homewarden_signatures_profile",
        "The signature profile in force: 1 for the one that is (off, core, home, full)",
        ["off", "core", "home", "full"].map(|t| (one("profile", t), i64::from(s.tier == t))),
    );
    let counts = s.record.good.as_ref().map(|g| g.counts).unwrap_or_default();
    family(
        r,
        "homewarden_signatures_rules",
        "Signatures of the ruleset in force by what they do here (off: read, not loaded)",
        [
            ("drop", counts.dropping),
            ("alert", counts.alerting),
            ("off", counts.off),
        ]
        .map(|(v, n)| (one("verdict", v), i(n))),
    );
    time(
        r,
        "homewarden_signatures_last_success_timestamp",
        "When the ruleset in force was taken",
        s.record.good.as_ref().map(|g| g.at),
    );
    time(
        r,
        "homewarden_signatures_last_attempt_timestamp",
        "When a ruleset update was last tried",
        s.record.last_attempt.as_ref().map(|a| a.at),
    );
    gauge(
        r,
        "homewarden_signatures_last_update_failed",
        "1 when the last update was not taken (the ruleset in force stays)",
        i64::from(
            s.record
                .last_attempt
                .as_ref()
                .is_some_and(|a| a.error.is_some()),
        ),
    );
    gauge(
        r,
        "homewarden_signatures_reload_failed",
        "1 when Suricata did not load the ruleset taken live (it does at its next start)",
        i64::from(s.reload_error.is_some()),
    );
    gauge(
        r,
        "homewarden_signatures_updating",
        "1 while an update runs",
        i64::from(s.updating),
    );
    if let Some(m) = &s.suricata_memory {
        bytes(
            r,
            "homewarden_suricata_memory",
            "What Suricata's cgroup holds now",
            m.current,
        );
        if let Some(limit) = m.limit {
            bytes(
                r,
                "homewarden_suricata_memory_budget",
                "Suricata's memory budget (its unit's MemoryMax=)",
                limit,
            );
        }
    }
}
