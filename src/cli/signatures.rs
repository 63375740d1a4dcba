//! `signatures status|update|drop|alert|disable|reset|explain`: the
//! signature ruleset, through the daemon (whose owner task keeps it).

use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use homewarden::config::Config;
use homewarden::daemon::control::{self, Command, SignaturesCommand};
use homewarden::daemon::signatures::{SetReply, SignaturesStatus};
use homewarden::signatures::explain::{self, Explained};
use homewarden::signatures::memory::Reading;
use homewarden::signatures::policy::Setting;
use homewarden::signatures::update::Good;

use crate::SignaturesAction;

/// `homewarden signatures …`.
pub(crate) async fn signatures(path: &Path, action: SignaturesAction) -> Result<ExitCode> {
    let cfg = Config::load(path)?;
    match action {
        SignaturesAction::Status { json } => {
            let cmd = Command::Signatures(SignaturesCommand::Status);
            let v = control::request(&cfg.control_socket, &cmd, Duration::from_secs(30)).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&v)?);
                return Ok(ExitCode::SUCCESS);
            }
            let s: SignaturesStatus =
                serde_json::from_value(v).context("daemon's signatures reply")?;
            print!("{}", render_status(&s));
            Ok(ExitCode::SUCCESS)
        }
        SignaturesAction::Update { source } => {
            let cmd = Command::Signatures(SignaturesCommand::Update { source });
            // A download and a `suricata -T` of thousands of rules on a Pi.
            let v =
                control::request(&cfg.control_socket, &cmd, Duration::from_secs(30 * 60)).await?;
            let g: Good = serde_json::from_value(v).context("daemon's signatures reply")?;
            println!("taken: {}", summary(&g));
            Ok(ExitCode::SUCCESS)
        }
        SignaturesAction::Drop { target } => set(&cfg, target, Some(Setting::Drop)).await,
        SignaturesAction::Alert { target } => set(&cfg, target, Some(Setting::Alert)).await,
        SignaturesAction::Disable { target } => set(&cfg, target, Some(Setting::Disable)).await,
        SignaturesAction::Reset { target } => set(&cfg, target, None).await,
        SignaturesAction::Allow { sid, address } => lift(&cfg, sid, address, true).await,
        SignaturesAction::Unallow { sid, address } => lift(&cfg, sid, address, false).await,
        SignaturesAction::Explain { sid, json } => explain_sid(&cfg, sid, json).await,
    }
}

/// `signatures drop|alert|disable|reset TARGET`.
async fn set(cfg: &Config, target: String, setting: Option<Setting>) -> Result<ExitCode> {
    homewarden::signatures::word::Target::parse(&target).map_err(anyhow::Error::msg)?;
    said(cfg, SignaturesCommand::Set { target, setting }).await
}

/// `signatures allow|unallow SID ADDRESS`.
async fn lift(cfg: &Config, sid: u64, address: String, lifted: bool) -> Result<ExitCode> {
    homewarden::signatures::word::parse_net(&address).map_err(anyhow::Error::msg)?;
    // homewarden's own encrypted-DNS rules come from the config, not the ruleset.
    use homewarden::enforce::suricata::render::encrypted_dns;
    if encrypted_dns::owns(sid, cfg.suricata.sid_base) {
        anyhow::bail!(
            "rule {sid} is homewarden's own (encrypted DNS): {} {address} {} enforcement.dns_bypass_allow in the config, then restart the agent",
            if lifted { "add" } else { "take" },
            if lifted { "to" } else { "out of" }
        );
    }
    said(
        cfg,
        SignaturesCommand::Lift {
            sid,
            address,
            lifted,
        },
    )
    .await
}

/// The owner's word to the daemon, and what it does now.
async fn said(cfg: &Config, word: SignaturesCommand) -> Result<ExitCode> {
    let cmd = Command::Signatures(word);
    // A `suricata -T` and a reload of thousands of rules on a Pi.
    let v = control::request(&cfg.control_socket, &cmd, Duration::from_secs(30 * 60)).await?;
    let r: SetReply = serde_json::from_value(v).context("daemon's signatures reply")?;
    match (r.setting, r.lifted) {
        (Some(w), _) => println!(
            "{}: {} (kept until `homewarden signatures reset`)",
            r.target,
            w.word()
        ),
        (None, Some(true)) => println!(
            "{}: lifted (kept until `homewarden signatures unallow`)",
            r.target
        ),
        (None, Some(false)) => println!("{}: no longer lifted", r.target),
        (None, None) => println!(
            "{}: reset (the config's word and the default policy apply again)",
            r.target
        ),
    }
    match (&r.taken, &r.reload_error) {
        (Some(g), None) => println!("in force now: {}", summary(g)),
        (Some(g), Some(e)) => {
            println!("taken: {}; Suricata has not loaded it yet: {e}", summary(g))
        }
        (None, _) => println!("applies to the next ruleset taken (none is cut again now)"),
    }
    if let Some(x) = &r.explained {
        print!("{}", explain::render(x));
    }
    Ok(ExitCode::SUCCESS)
}

/// `signatures explain SID` and `explain SID`.
pub(crate) async fn explain_sid(cfg: &Config, sid: u64, json: bool) -> Result<ExitCode> {
    // homewarden's own rules for what the IPS cannot see are explained by
    // the config that renders them, not by the signature ruleset.
    use homewarden::enforce::suricata::render::{encrypted_dns, Options};
    if let Some(text) = encrypted_dns::explain(sid, &Options::from(cfg)) {
        if json {
            let v = serde_json::json!({"sid": sid, "rule": "homewarden", "explanation": text});
            println!("{}", serde_json::to_string_pretty(&v)?);
        } else {
            print!("{text}");
        }
        return Ok(ExitCode::SUCCESS);
    }
    let cmd = Command::Signatures(SignaturesCommand::Explain { sid });
    let v = control::request(&cfg.control_socket, &cmd, Duration::from_secs(30)).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(ExitCode::SUCCESS);
    }
    let x: Explained = serde_json::from_value(v).context("daemon's signatures reply")?;
    print!("{}", explain::render(&x));
    Ok(ExitCode::SUCCESS)
}

fn summary(g: &Good) -> String {
    let c = &g.counts;
    format!(
        "{} dropping, {} alerting, {} not loaded ({} profile{}; from {})",
        c.dropping,
        c.alerting,
        c.off,
        g.tier,
        if g.shadow {
            ", shadow: drops only reported"
        } else {
            ""
        },
        g.sources.join(", ")
    )
}

/// The ruleset in one line of `homewarden status`.
pub(crate) fn one_line(s: &SignaturesStatus, now: u64) -> String {
    let ago = |t: i64| crate::cli::status::ago(now, u64::try_from(t).ok());
    let mut line = match (&s.record.good, s.tier.as_str()) {
        (_, "off") => format!("signatures: off ({})", s.why),
        (None, _) => format!(
            "signatures: {} profile, no ruleset taken yet (the IoC sets protect meanwhile)",
            s.tier
        ),
        (Some(g), _) => format!(
            "signatures: {} profile, {} dropping, {} alerting, taken {}",
            g.tier,
            g.counts.dropping,
            g.counts.alerting,
            ago(g.at)
        ),
    };
    if let Some(e) = s
        .record
        .last_attempt
        .as_ref()
        .and_then(|a| a.error.as_ref())
    {
        line.push_str(&format!("; last update FAILED: {e}"));
    }
    if let Some(e) = &s.reload_error {
        line.push_str(&format!("; Suricata has not loaded it: {e}"));
    }
    line
}

/// What a person reads.
fn render_status(s: &SignaturesStatus) -> String {
    use std::fmt::Write as _;
    let at = |t: i64| homewarden::alerts::eve::format_timestamp(t);
    let mut out = format!("profile: {} ({})\n", s.tier, s.why);
    match &s.record.good {
        Some(g) => {
            let _ = writeln!(out, "in force: {}, taken {}", summary(g), at(g.at));
            if g.counts.uncut > 0 {
                let _ = writeln!(
                    out,
                    "  {} signatures you lifted for an address have a header that cannot be cut: they apply to everyone",
                    g.counts.uncut
                );
            }
            if g.counts.malformed + g.counts.duplicates > 0 {
                let _ = writeln!(
                    out,
                    "  skipped: {} malformed lines, {} duplicate sids",
                    g.counts.malformed, g.counts.duplicates
                );
            }
        }
        None => {
            out.push_str("in force: none yet (the IoC sets alone protect until the first update)\n")
        }
    }
    if let Some(a) = &s.record.last_attempt {
        match &a.error {
            None => {
                let _ = writeln!(out, "last update: {}: taken", at(a.at));
            }
            Some(e) => {
                let _ = writeln!(
                    out,
                    "last update: {}: FAILED: {e} (the ruleset in force stays)",
                    at(a.at)
                );
            }
        }
    }
    let word: Vec<String> = s
        .word
        .sids
        .iter()
        .map(|(sid, w)| format!("{sid} {}", w.word()))
        .chain(
            s.word
                .categories
                .iter()
                .map(|(c, w)| format!("category {c} {}", w.word())),
        )
        .collect();
    if !word.is_empty() {
        let _ = writeln!(out, "your word: {}", word.join(", "));
    }
    if s.updating {
        out.push_str("updating now\n");
    }
    if let Some(e) = &s.reload_error {
        let _ = writeln!(out, "Suricata has not loaded it yet: {e}");
    }
    if let Some(n) = s.next_at {
        let _ = writeln!(out, "next update: {}", at(n));
    }
    if let Some(m) = &s.suricata_memory {
        let _ = writeln!(out, "{}", memory_line(m, s.record.good.as_ref()));
    }
    out
}

/// Suricata's memory against its budget, and what the ruleset in force cost.
fn memory_line(m: &Reading, good: Option<&Good>) -> String {
    let mib = |b: u64| b >> 20;
    let mut line = match m.limit {
        Some(l) => format!(
            "Suricata's memory: {} MiB of its {} MiB budget",
            mib(m.current),
            mib(l)
        ),
        None => format!(
            "Suricata's memory: {} MiB, no budget set (its unit's MemoryMax=)",
            mib(m.current)
        ),
    };
    if let Some(g) = good {
        if let Some(p) = g.test_peak {
            line.push_str(&format!(
                "; the ruleset in force took {} MiB to load, by {}",
                mib(p),
                g.way.name()
            ));
        }
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;
    use homewarden::signatures::memory::Way;

    #[test]
    fn the_memory_line_says_budget_and_how_the_ruleset_went_in() {
        let m = Reading {
            limit: Some(1200 << 20),
            current: 700 << 20,
        };
        let good = Good {
            at: 0,
            tier: "home".into(),
            why: String::new(),
            sources: Vec::new(),
            counts: Default::default(),
            shadow: false,
            cut: 0,
            test_peak: Some(450 << 20),
            way: Way::Restart,
        };
        assert_eq!(
            memory_line(&m, Some(&good)),
            "Suricata's memory: 700 MiB of its 1200 MiB budget; the ruleset in force took 450 MiB to load, by restart"
        );
        let free = Reading {
            limit: None,
            current: 80 << 20,
        };
        assert_eq!(
            memory_line(&free, None),
            "Suricata's memory: 80 MiB, no budget set (its unit's MemoryMax=)"
        );
    }
}
