//! The owner's commands: explain, allow, unallow, blocks, self-test, mail test.

use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use homewarden::alerts::eve::format_timestamp;
use homewarden::config::Config;
use homewarden::daemon::control::{self, Command, OwnerCommand};
use homewarden::respond::mail::Mailer;

use crate::cli::*;

/// `homewarden explain`: through the daemon, else from the store.
pub(crate) async fn explain(path: &Path, value: String, json: bool) -> Result<ExitCode> {
    use homewarden::owner::explain::{self, Explanation, SourceView};
    let (cfg, _) = load(path)?;
    // A number is a signature id: no address, name or hash is all digits.
    if let Ok(sid) = value.parse::<u64>() {
        return crate::cli::signatures::explain_sid(&cfg, sid, json).await;
    }
    let cmd = Command::Owner(OwnerCommand::Explain {
        value: value.clone(),
    });
    let x: Explanation =
        match control::request(&cfg.control_socket, &cmd, Duration::from_secs(30)).await {
            Ok(v) => serde_json::from_value(v).context("daemon's explain reply")?,
            // No daemon: the same answer from what it persisted.
            Err(control::ControlError::NotRunning { .. }) => {
                let store = homewarden::intel::store::Store::new(&cfg.state_dir);
                let mut states = Vec::new();
                for s in &cfg.sources {
                    states.push(store.load(s.name())?.unwrap_or_default());
                }
                let views: Vec<SourceView> = cfg
                    .sources
                    .iter()
                    .zip(&states)
                    .map(|(c, st)| SourceView {
                        cfg: c,
                        set: &st.set,
                    })
                    .collect();
                let local = homewarden::owner::allow::LocalAllowlist::load(&cfg.state_dir)?;
                let shadow = homewarden::owner::shadow::Shadow::load(&cfg.state_dir);
                let lists = cfg.warninglists.load(&cfg.state_dir);
                explain::explain(
                    &value,
                    &views,
                    &cfg,
                    &local,
                    &lists,
                    &shadow,
                    homewarden::intel::unix_now(),
                )
                .map_err(|e| anyhow::anyhow!("{value:?}: {e}"))?
            }
            Err(e) => return Err(e.into()),
        };
    if json {
        println!("{}", serde_json::to_string_pretty(&x)?);
    } else {
        print!("{}", explain::render(&x));
    }
    Ok(ExitCode::SUCCESS)
}

/// Allow, unallow and blocks: they change or read the live state, so they need the daemon.
pub(crate) async fn owner(path: &Path, cmd: OwnerCommand, json: bool) -> Result<ExitCode> {
    let cfg = Config::load(path)?;
    let v = control::request(
        &cfg.control_socket,
        &Command::Owner(cmd.clone()),
        Duration::from_secs(120),
    )
    .await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(ExitCode::SUCCESS);
    }
    use homewarden::daemon::control::reply::{AllowReply, BlocksReply, UnallowReply};
    let typed = |what: &str| {
        format!(
            "the daemon's answer to {what} is not what this homewarden reads (another version?)"
        )
    };
    match cmd {
        OwnerCommand::Allow { .. } => {
            let r: AllowReply = serde_json::from_value(v).with_context(|| typed("allow"))?;
            let until = r
                .allowed
                .until
                .map(|u| format!(" until {}", format_timestamp(u as i64)))
                .unwrap_or_default();
            println!(
                "{}: allowed{until} ({} blocklist values lifted, {}); {} false-positive sighting(s) queued for MISP",
                r.allowed.value, r.removed, r.applied, r.false_positive_sightings
            );
        }
        OwnerCommand::Unallow { .. } => {
            let r: UnallowReply = serde_json::from_value(v).with_context(|| typed("unallow"))?;
            println!(
                "{}: enforced again ({} blocklist values back, {})",
                r.unallowed.value, r.added, r.applied
            );
        }
        OwnerCommand::Blocks => {
            let r: BlocksReply = serde_json::from_value(v).with_context(|| typed("blocks"))?;
            let now = homewarden::intel::unix_now();
            let b = &r.blocklist;
            println!(
                "blocklist: {} IPv4, {} IPv6, {} domains, {} md5, {} sha256",
                b.ipv4, b.ipv6, b.domains, b.md5, b.sha256
            );
            if r.recent.is_empty() {
                println!("no blocked traffic in the last 24 hours");
            } else {
                println!("blocked in the last 24 hours (newest first):");
            }
            for hit in &r.recent {
                let by = match hit.sid {
                    Some(sid) => format!("signature {sid}: `homewarden explain {sid}`"),
                    None => hit
                        .listed_by
                        .iter()
                        .map(|p| p.source.as_str())
                        .collect::<Vec<_>>()
                        .join(", "),
                };
                println!(
                    "  {:<40} {:>6} hits, last {}  ({by})",
                    hit.value,
                    hit.hits_24h,
                    ago(now, u64::try_from(hit.last).ok()),
                );
            }
            for a in &r.allowed {
                println!(
                    "  allowed: {} by {}{}",
                    a.value,
                    a.who,
                    a.reason
                        .as_deref()
                        .map(|r| format!(": {r}"))
                        .unwrap_or_default()
                );
            }
        }
        OwnerCommand::Explain { .. } => {}
    }
    Ok(ExitCode::SUCCESS)
}

/// `homewarden selftest`: run it now on the daemon and show the checks.
pub(crate) async fn selftest(path: &Path, json: bool) -> Result<ExitCode> {
    let cfg = Config::load(path)?;
    let v = control::request(
        &cfg.control_socket,
        &Command::Selftest,
        Duration::from_secs(300),
    )
    .await?;
    let st: homewarden::enforce::suricata::selftest::Status =
        serde_json::from_value(v.clone()).context("daemon's self-test reply")?;
    if json {
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        for c in &st.checks {
            println!(
                "{} {}: {}",
                if c.ok { "ok  " } else { "FAIL" },
                c.name,
                c.detail
            );
        }
        match (st.ok, st.rolled_back) {
            (Some(true), _) => println!("self-test passed"),
            (_, Some(t)) => println!(
                "self-test FAILED; rolled back to the last good rendering at {}",
                format_timestamp(t as i64)
            ),
            _ => println!("self-test FAILED"),
        }
    }
    Ok(if st.ok == Some(true) {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// `homewarden mail-test`: one mail through the configured server.
/// Sends a test message to each push target (or the one named); fails if any failed.
pub(crate) async fn notify_test(path: &Path, only: Option<&str>) -> Result<ExitCode> {
    let (cfg, secrets) = load(path)?;
    let targets: Vec<_> = cfg
        .notify
        .iter()
        .filter(|t| only.is_none_or(|n| t.name() == n))
        .collect();
    if targets.is_empty() {
        anyhow::bail!(match only {
            Some(n) => format!("no notify target named {n:?} in the config"),
            None => "no notify targets in the config (notify:)".to_string(),
        });
    }
    let name = homewarden::respond::mail::appliance_name();
    let message = homewarden::respond::push::message::test(&name);
    let mut failed = 0;
    for t in targets {
        let sent = match homewarden::respond::push::Pusher::new(t, &secrets) {
            Ok(p) => {
                let id = format!("test-{}-{}", homewarden::intel::unix_now(), t.name());
                p.send(&message, &id, &name).await
            }
            Err(e) => Err(e),
        };
        match sent {
            Ok(()) => println!("{}: test message sent", t.describe()),
            Err(e) => {
                failed += 1;
                println!("{}: FAILED: {e}", t.describe());
            }
        }
    }
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

pub(crate) async fn mail_test(path: &Path) -> Result<ExitCode> {
    let (cfg, secrets) = load(path)?;
    let mailer = Mailer::new(&cfg.mail, secrets.get(&cfg.mail.password_env))?
        .context("mail is off: set mail.to (and mail.from) in the config")?;
    let name = homewarden::respond::mail::appliance_name();
    let id = format!("test-{}", homewarden::intel::unix_now());
    mailer
        .send(&homewarden::respond::mail::test_letter(&name), &id)
        .await?;
    println!(
        "test mail sent to {} via {}:{}",
        cfg.mail.to.join(", "),
        cfg.mail.host,
        cfg.mail.port()
    );
    Ok(ExitCode::SUCCESS)
}
