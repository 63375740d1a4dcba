//! Families of the alert side: alerts, incidents, the outbox and its responders.

use prometheus_client::registry::Registry;

use super::{counter, counters, family, gauge, i, one, time};
use crate::daemon::agent::Status;
use crate::respond::tally::{Delivered, Responder};

/// Registers this part's families.
pub(super) fn register(r: &mut Registry, status: &Status) {
    let a = &status.alerts;
    counter(
        r,
        "homewarden_alerts_received",
        "Alerts read from Suricata's eve socket",
        a.intake.alerts,
    );
    counter(
        r,
        "homewarden_eve_records_skipped",
        "Eve records that were not alerts or did not parse",
        a.intake.other + a.intake.malformed,
    );
    counter(
        r,
        "homewarden_alerts_raised",
        "Alerts Suricata says it raised (its detect.alert counter) since the agent began counting",
        a.loss.raised,
    );
    counter(
        r,
        "homewarden_alerts_lost",
        "Of the alerts Suricata raised, those that never reached the agent",
        a.loss.missing,
    );
    family(
        r,
        "homewarden_incidents_open",
        "Open incidents, by severity",
        [
            (one("severity", "high"), i(a.high_open)),
            (
                one("severity", "other"),
                i(a.open.saturating_sub(a.high_open)),
            ),
        ],
    );
    gauge(
        r,
        "homewarden_incidents_unacknowledged",
        "Open high incidents nobody acknowledged (the red LED)",
        i(a.high_unacked),
    );
    time(
        r,
        "homewarden_last_block",
        "When traffic was last blocked (unix time)",
        a.last_block,
    );
    let o = &status.outbox;
    family(
        r,
        "homewarden_outbox_pending",
        "Responder actions (MISP reports, advice, mails) waiting to be delivered, by responder",
        Responder::ALL.map(|who| {
            let n = o.pending_by.get(&who).copied().unwrap_or(0);
            (one("responder", who.name()), i(n))
        }),
    );
    gauge(
        r,
        "homewarden_outbox_failing",
        "Of those, actions that failed three times or more",
        i(o.failing),
    );
    counter(
        r,
        "homewarden_outbox_dropped",
        "Actions dropped because the outbox was full",
        o.dropped,
    );
    counter(
        r,
        "homewarden_outbox_corrupt",
        "Outbox files that could not be read back (moved aside)",
        o.corrupt,
    );
    responders(r, &status.responders);
}

/// What the responders delivered: per responder, mails, the LLM.
fn responders(r: &mut Registry, d: &Delivered) {
    let by =
        |m: &std::collections::BTreeMap<Responder, u64>, who| m.get(&who).copied().unwrap_or(0);
    counters(
        r,
        "homewarden_responder_attempts",
        "Deliveries tried since the agent started, by responder and outcome (a failed one is retried)",
        Responder::ALL.into_iter().flat_map(|who| {
            [("done", by(&d.done, who)), ("failed", by(&d.failed, who))].map(|(outcome, n)| {
                let labels = vec![
                    ("responder", who.name().to_string()),
                    ("outcome", outcome.to_string()),
                ];
                (labels, n)
            })
        }),
    );
    let m = &d.mails;
    counters(
        r,
        "homewarden_mails_sent",
        "Mails the SMTP server took, by kind",
        [
            ("incident", m.incident),
            ("digest", m.digest),
            ("notice", m.notice),
        ]
        .map(|(kind, n)| (one("kind", kind), n)),
    );
    counter(
        r,
        "homewarden_mail_rate_limited",
        "Incidents mailed in a digest because the hourly limit (mail.max_per_hour) was reached",
        m.rate_limited,
    );
    let l = &d.llm;
    counters(
        r,
        "homewarden_llm_calls",
        "Calls to the LLM advisor, by outcome",
        [
            ("ok", l.ok),
            ("rate_limited", l.rate_limited),
            ("failed", l.failed),
        ]
        .map(|(outcome, n)| (one("outcome", outcome), n)),
    );
    counters(
        r,
        "homewarden_pushes_sent",
        "Messages each push target (notify:) took, by kind",
        d.pushes.iter().flat_map(|(target, p)| {
            [
                ("incident", p.incident),
                ("digest", p.digest),
                ("notice", p.notice),
            ]
            .map(|(kind, n)| {
                let labels = vec![("target", target.clone()), ("kind", kind.to_string())];
                (labels, n)
            })
        }),
    );
    counters(
        r,
        "homewarden_push_rate_limited",
        "Incidents pushed in a digest because the target's max_per_hour was reached",
        d.pushes
            .iter()
            .map(|(target, p)| (one("target", target), p.rate_limited)),
    );
    counter(
        r,
        "homewarden_offline_advice",
        "Incidents advised offline because the LLM failed for good",
        d.offline_advice,
    );
}
