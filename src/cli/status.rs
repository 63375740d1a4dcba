//! `homewarden status`, as a person reads it.

use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use homewarden::config::Config;
use homewarden::daemon::agent::Status;
use homewarden::daemon::control::{self, Command};

/// `homewarden status [--json]`.
pub(crate) async fn status(path: &Path, json: bool) -> Result<ExitCode> {
    let cfg = Config::load(path)?;
    let v = control::request(
        &cfg.control_socket,
        &Command::Status,
        Duration::from_secs(10),
    )
    .await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(ExitCode::SUCCESS);
    }
    let s: Status = serde_json::from_value(v).context("daemon's status reply")?;
    let now = homewarden::intel::unix_now();
    print!("{}", human_status(&s, now));
    // The signatures' owner answers for itself (none with an older daemon).
    let sig = Command::Signatures(homewarden::daemon::control::SignaturesCommand::Status);
    if let Ok(v) = control::request(&cfg.control_socket, &sig, Duration::from_secs(10)).await {
        if let Ok(st) = serde_json::from_value(v) {
            println!("{}", crate::cli::signatures::one_line(&st, now));
        }
    }
    // Where the Pi sits, when homewarden-network rendered it.
    if let Ok(p) = std::fs::read_to_string("/run/homewarden/placement") {
        let leases = std::fs::read_to_string("/run/homewarden/dnsmasq.leases").ok();
        let has_dhcp = Path::new("/run/homewarden/dnsmasq.conf").exists();
        let leases = leases.or_else(|| has_dhcp.then(String::new));
        println!(
            "{}",
            homewarden::appliance::placement::describe(&p, leases.as_deref(), now)
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// The devices that resolved past the home's resolver, encrypted, in 24 h:
/// by name where an incident of theirs names the device.
fn encrypted_dns_line(al: &homewarden::daemon::agent::AlertsStatus, now: u64) -> String {
    let shown: Vec<String> = al
        .encrypted_dns
        .iter()
        .map(|r| {
            let name = al
                .recent
                .iter()
                .filter(|i| i.local.to_string() == r.value)
                .find_map(|i| i.device.as_ref().map(|t| t.name.clone()));
            format!(
                "{}: {} {}, last {}",
                name.map_or(r.value.clone(), |n| format!("{n} ({})", r.value)),
                r.hits_24h,
                if r.hits_24h == 1 { "try" } else { "tries" },
                ago(now, Some(r.last.max(0) as u64))
            )
        })
        .collect();
    format!(
        "encrypted DNS past the home's resolver, last 24 h: {} device{}: {} (`homewarden explain` the incident's sid)",
        shown.len(),
        if shown.len() == 1 { "" } else { "s" },
        shown.join("; ")
    )
}

/// "5m 3s ago", or "never".
pub(crate) fn ago(now: u64, t: Option<u64>) -> String {
    match t {
        None => "never".into(),
        Some(t) => format!(
            "{} ago",
            humantime::format_duration(Duration::from_secs(now.saturating_sub(t)))
        ),
    }
}

/// The packet path in one line of `homewarden status`.
pub(crate) fn path_line(p: &homewarden::enforce::firewall::health::PathStatus) -> String {
    let Some(q) = &p.queue else {
        return "path: NOT queued to Suricata (nothing inspected)".to_string();
    };
    format!(
        "path: {} queues {}-{} ({}), Suricata holds {}; {} packets queued, {} bypassed in the kernel ({} flows now), {} dropped on a full queue{}",
        q.backend,
        q.queues.0,
        q.queues.1,
        if q.bypass { "fail-open" } else { "fail-closed" },
        if p.held.is_empty() {
            "none".to_string()
        } else {
            p.held
                .iter()
                .map(u16::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        },
        q.packets,
        p.bypassed_packets,
        p.bypassed_flows,
        p.queue_full_drops,
        p.suricata_verdicts
            .map(|(a, d)| format!("; Suricata passed {a}, dropped {d}"))
            .unwrap_or_default()
    )
}

/// The status as a person reads it.
pub(crate) fn human_status(s: &Status, now: u64) -> String {
    use std::fmt::Write;
    let mut o = String::new();
    let _ = writeln!(
        o,
        "homewarden {}: {} ({}, {}, fail-{})",
        s.version,
        s.state.to_string().to_uppercase(),
        s.mode.to_string().to_uppercase(),
        s.action,
        s.fail
    );
    for r in &s.reasons {
        let _ = writeln!(o, "  ! {r}");
    }
    for w in &s.warnings {
        let _ = writeln!(o, "  warning: {w}");
    }
    let b = &s.blocklist;
    let _ = writeln!(
        o,
        "blocklist: {} IPv4, {} IPv6, {} domains, {} MD5, {} SHA-256, {} wide networks ({} allowlisted, {} networks too wide)",
        b.ipv4, b.ipv6, b.domains, b.md5, b.sha256, b.networks, s.dropped.allowlisted, s.dropped.too_wide
    );
    if let Some(line) = s.dropped.warninglists_line() {
        let _ = writeln!(o, "  {line}");
    }
    let su = &s.suricata;
    let _ = writeln!(
        o,
        "suricata: {}; last change {} ({}, +{} -{})",
        if su.reachable {
            "reachable"
        } else {
            "NOT reachable"
        },
        ago(now, su.last_change),
        su.last_live.as_deref().unwrap_or("-"),
        su.last_added,
        su.last_removed
    );
    let _ = writeln!(o, "{}", path_line(&s.path));
    let al = &s.alerts;
    let _ = writeln!(
        o,
        "alerts: {} received ({} malformed){}; {} open incidents, {} high",
        al.intake.alerts,
        al.intake.malformed,
        if al.loss.missing > 0 {
            format!(
                "; {} of {} Suricata raised NEVER ARRIVED (the agent fell behind)",
                al.loss.missing, al.loss.raised
            )
        } else {
            String::new()
        },
        al.open,
        al.high_open
    );
    for i in &al.recent {
        let _ = writeln!(
            o,
            "  {} {} -> {} \"{}\" x{} last {}",
            if i.high { "HIGH" } else { "low " },
            i.device_shown(),
            i.remote,
            i.signature,
            i.count,
            ago(now, Some(i.last_seen.max(0) as u64))
        );
    }
    if !al.encrypted_dns.is_empty() {
        let _ = writeln!(o, "{}", encrypted_dns_line(al, now));
    }
    let ob = &s.outbox;
    let _ = writeln!(
        o,
        "outbox: {} actions pending ({} failing), {} dropped, {} unreadable",
        ob.pending, ob.failing, ob.dropped, ob.corrupt
    );
    let _ = writeln!(o, "advice: {}; mail: {}", s.advisor, s.mail);
    let d = &s.devices;
    if d.enabled {
        let _ = writeln!(
            o,
            "devices: {} known, {} seen in 24 h{}{} (`homewarden devices` lists them)",
            d.known,
            d.seen_24h,
            d.last_new.as_ref().map_or(String::new(), |t| format!(
                "; newest: {} ({})",
                t.name, t.mac
            )),
            d.error
                .as_ref()
                .map_or(String::new(), |e| format!("; PROBLEM: {e}"))
        );
        for q in &d.quarantined {
            let _ = writeln!(
                o,
                "  QUARANTINED {} ({}) since {}{}{}",
                q.name,
                q.mac,
                ago(now, Some(q.since.max(0) as u64)),
                q.until.map_or(String::new(), |u| format!(
                    ", ends in {}",
                    humantime::format_duration(Duration::from_secs(
                        u.saturating_sub(now as i64).max(0) as u64
                    ))
                )),
                q.reason
                    .as_ref()
                    .map_or(String::new(), |r| format!(": {r}"))
            );
        }
    }
    if let Some(m) = &s.mqtt {
        let _ = match (&m.error, m.connected) {
            (_, true) => writeln!(
                o,
                "home assistant: connected to {} since {} (node {})",
                m.broker,
                ago(now, m.since),
                m.node
            ),
            (Some(e), false) => writeln!(o, "home assistant: NOT connected to {}: {e}", m.broker),
            (None, false) => writeln!(o, "home assistant: connecting to {}", m.broker),
        };
    }
    for (t, line) in s
        .notify
        .iter()
        .map(|t| (t, t.split(' ').next().unwrap_or("")))
    {
        let p = s.responders.pushes.get(line).cloned().unwrap_or_default();
        let _ = writeln!(
            o,
            "  push {t}; since start {} sent ({} digests folding {} incidents)",
            p.incident + p.digest,
            p.digest,
            p.rate_limited
        );
    }
    let (r, m) = (&s.responders, &s.responders.mails);
    let _ = writeln!(
        o,
        "  since start: {} mails ({} digests folding {} incidents), LLM {} ok / {} rate-limited / {} failed, {} advised offline",
        m.incident + m.digest + m.notice,
        m.digest,
        m.rate_limited,
        r.llm.ok,
        r.llm.rate_limited,
        r.llm.failed,
        r.offline_advice
    );
    for p in &s.presses {
        let _ = writeln!(o, "  button {}: {}", ago(now, Some(p.at)), p.action);
    }
    let held: usize = s.sources.iter().map(|src| src.entries).sum();
    let _ = writeln!(
        o,
        "sources: {held} indicators held, budget {} (limits.indicators)",
        s.indicator_budget
    );
    for src in &s.sources {
        let refused: u64 = src.stats.rejected.values().sum();
        let _ = writeln!(
            o,
            "  {:<16} {:<9} {:>8} IoCs  pulled {}  next in {}  refused {}{}{}{}{}",
            src.name,
            src.kind,
            src.entries,
            ago(now, src.last_ok),
            humantime::format_duration(Duration::from_secs(src.next_pull_in)),
            refused,
            src.stats
                .format
                .as_deref()
                .map(|f| format!("  format {f}"))
                .unwrap_or_default(),
            match src.stats.over_budget {
                0 => String::new(),
                n => format!("  OVER BUDGET: {n} not taken"),
            },
            src.last_error
                .as_deref()
                .map(|e| format!("\n    last error: {e}"))
                .unwrap_or_default(),
            src.held
                .as_deref()
                .map(|h| format!("\n    {h}"))
                .unwrap_or_default()
        );
    }
    o
}
