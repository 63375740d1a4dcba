//! Intel offline: `render`, `check-config`, `lookup`, `triage`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use homewarden::config::{Config, FeedSource, ListSource, SourceConfig};
use homewarden::daemon::control::{self, Command};
use homewarden::intel::set::Provenance;
use homewarden::respond::advisor;
use homewarden::respond::mail::Mailer;
use homewarden::secrets::Secrets;

use crate::cli::*;

/// `homewarden render`: sources to Suricata files offline.
pub(crate) async fn render(
    path: &Path,
    out: &Path,
    sources: &[String],
    layout: &homewarden::intel::list::Layout,
) -> Result<ExitCode> {
    let (mut cfg, secrets) = if sources.is_empty() || path.exists() {
        load(path)?
    } else {
        // Trying a list needs no config at all.
        (Config::parse("", path)?, Secrets::default())
    };
    if !sources.is_empty() {
        cfg.sources = sources
            .iter()
            .enumerate()
            .map(|(i, s)| source_from_arg(i, s, layout))
            .collect();
    }
    let (counts, dropped, stats) =
        homewarden::daemon::agent::render_offline(&cfg, &secrets, out).await?;
    for (name, st) in &stats {
        let rejected: u64 = st.rejected.values().sum();
        println!(
            "{name}: {}{} values, {} accepted, {} refused {:?}{}",
            st.format
                .as_deref()
                .map(|f| format!("{f} list, "))
                .unwrap_or_default(),
            st.seen,
            st.accepted,
            rejected,
            st.rejected,
            if st.ignored > 0 {
                format!(
                    ", {} lines skipped (hosts-file header, CSV header)",
                    st.ignored
                )
            } else {
                String::new()
            }
        );
    }
    println!(
        "wrote {}: {} IPv4, {} IPv6, {} domains, {} MD5, {} SHA-256, {} wide networks ({} allowlisted, {} networks too wide)",
        out.display(),
        counts.ipv4,
        counts.ipv6,
        counts.domains,
        counts.md5,
        counts.sha256,
        counts.networks,
        dropped.allowlisted,
        dropped.too_wide
    );
    if let Some(line) = dropped.warninglists_line() {
        println!("{line}");
    }
    Ok(ExitCode::SUCCESS)
}

/// A `--source` argument: a MISP feed if it is a directory with a manifest or a URL
/// ending in `/` or `manifest.json`, a plain list otherwise.
pub(crate) fn source_from_arg(
    i: usize,
    arg: &str,
    layout: &homewarden::intel::list::Layout,
) -> SourceConfig {
    let name = format!("source-{}", i + 1);
    let is_url = arg.starts_with("http://") || arg.starts_with("https://");
    let (url, path) = if is_url {
        (Some(arg.to_string()), None)
    } else {
        (None, Some(PathBuf::from(arg)))
    };
    let feed_base = if is_url {
        if arg.ends_with('/') {
            Some((Some(arg.to_string()), None))
        } else {
            arg.strip_suffix("manifest.json")
                .map(|b| (Some(b.to_string()), None))
        }
    } else {
        let p = Path::new(arg);
        if p.join("manifest.json").is_file() {
            Some((None, Some(p.to_path_buf())))
        } else if p.file_name().is_some_and(|f| f == "manifest.json") {
            Some((None, p.parent().map(Path::to_path_buf)))
        } else {
            None
        }
    };
    let timeout = Duration::from_secs(60);
    let interval = Duration::from_secs(3600);
    match feed_base {
        Some((url, path)) => SourceConfig::MispFeed(FeedSource {
            name,
            url,
            path,
            token_env: None,
            interval,
            timeout,
            max_age: None,
            shadow: None,
        }),
        None => SourceConfig::List(ListSource {
            name,
            url,
            path,
            token_env: None,
            interval,
            timeout,
            format: layout.format,
            column: layout.column.clone(),
            max_refused: layout.max_refused,
            shadow: None,
        }),
    }
}

/// `homewarden check-config`: the config and the secrets it needs.
pub(crate) fn check_config(path: &Path) -> Result<ExitCode> {
    let (cfg, secrets) = load(path)?;
    let mut missing = Vec::new();
    for s in &cfg.sources {
        let needed = match s {
            SourceConfig::Misp(m) => Some(m.api_key_env.as_str()),
            _ => s.token_env(),
        };
        if let Some(env) = needed.filter(|e| secrets.get(e).is_none()) {
            missing.push(format!("source {:?} needs {env} (environment, .env beside the config, or systemd credential)", s.name()));
        }
    }
    if let Err(e) = Mailer::new(&cfg.mail, secrets.get(&cfg.mail.password_env)) {
        missing.push(e.to_string());
    }
    let key = cfg.advisor.api_key_env().and_then(|k| secrets.get(k));
    let advisor = cfg.advisor.describe(key.is_some());
    if let Err(e) = advisor::Client::new(&cfg.advisor, key, cfg.triage().home) {
        missing.push(format!("advisor: {e}"));
    }
    if !missing.is_empty() {
        for m in &missing {
            eprintln!("{}: {m}", path.display());
        }
        return Ok(ExitCode::FAILURE);
    }
    println!(
        "{}: ok ({} sources, {} mode; advice: {advisor}; mail: {})",
        path.display(),
        cfg.sources.len(),
        cfg.enforcement.mode,
        cfg.mail.describe()
    );
    Ok(ExitCode::SUCCESS)
}

/// `homewarden lookup`: the indicators and MISP attributes behind a value.
pub(crate) async fn lookup(path: &Path, value: String, json: bool) -> Result<ExitCode> {
    let cfg = Config::load(path)?;
    let v = control::request(
        &cfg.control_socket,
        &Command::Lookup {
            value: value.clone(),
        },
        Duration::from_secs(30),
    )
    .await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&v)?);
    }
    let found: Vec<Provenance> =
        serde_json::from_value(v["found"].clone()).context("daemon's lookup reply")?;
    if !json {
        if found.is_empty() {
            println!("{value}: not on the blocklist");
        }
        for p in &found {
            let level = match p.threat_level {
                Some(1) => "high",
                Some(2) => "medium",
                Some(3) => "low",
                _ => "undefined",
            };
            println!(
                "{value}: listed as {} by source {}{}{}",
                p.indicator,
                p.source,
                p.event_uuid
                    .as_deref()
                    .map(|u| format!(
                        ", event {u}{} \"{}\" (threat level {level})",
                        p.event_id.map(|i| format!(" (id {i})")).unwrap_or_default(),
                        p.event_info.as_deref().unwrap_or("")
                    ))
                    .unwrap_or_default(),
                p.attribute_uuid
                    .as_deref()
                    .map(|a| format!(", attribute {a}"))
                    .unwrap_or_default()
            );
        }
    }
    Ok(if found.is_empty() {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// `homewarden triage --eve`: intake and triage offline over an eve.json.
pub(crate) async fn triage(path: &Path, eve: &Path, json: bool) -> Result<ExitCode> {
    use homewarden::alerts::{intake, triage};
    // A config is optional: without one, defaults (and no IoC provenance).
    let cfg = if path.exists() {
        Config::load(path)?
    } else {
        Config::parse("", path)?
    };
    let store = homewarden::intel::store::Store::new(&cfg.state_dir);
    let index = homewarden::intel::set::Index::new(cfg.sources.iter().filter_map(|s| {
        match store.load(s.name()) {
            Ok(Some(st)) => Some((s.name().to_string(), st.set)),
            _ => None,
        }
    }));
    let lookup = |value: &str| -> Option<Provenance> { index.first(value) };
    let mut t = triage::Triage::new(cfg.triage());
    let counters = intake::Counters::default();
    let mut incidents: Vec<triage::Incident> = Vec::new();
    let mut by_id = std::collections::HashMap::new();
    intake::read_file(eve, &counters, |a| match t.ingest(&a, &lookup) {
        triage::Outcome::New(inc) => {
            by_id.insert(inc.id.clone(), incidents.len());
            incidents.push(inc);
        }
        triage::Outcome::Counted(inc) => {
            if let Some(&i) = by_id.get(&inc.id) {
                incidents[i] = inc;
            }
        }
    })
    .await
    .with_context(|| format!("{}", eve.display()))?;
    let c = counters.snapshot();
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({"incidents": incidents, "lines": c}))?
        );
        return Ok(ExitCode::SUCCESS);
    }
    for i in &incidents {
        let when = humantime::format_rfc3339_seconds(
            std::time::UNIX_EPOCH + Duration::from_secs(i.first_seen.max(0) as u64),
        );
        println!(
            "{} {when} {} -> {} sid {} \"{}\" x{}{}{}",
            if i.high { "HIGH" } else { "low " },
            i.local,
            i.remote,
            i.sid,
            i.signature,
            i.count,
            if i.blocked { " blocked" } else { "" },
            i.ioc
                .as_ref()
                .map(|p| format!(
                    " [{} {}{}]",
                    p.source,
                    p.indicator,
                    p.attribute_uuid
                        .as_deref()
                        .map(|a| format!(" attribute {a}"))
                        .unwrap_or_default()
                ))
                .unwrap_or_default()
        );
    }
    println!(
        "{} incidents ({} high) from {} alerts; {} other records, {} malformed lines skipped",
        incidents.len(),
        incidents.iter().filter(|i| i.high).count(),
        c.alerts,
        c.other,
        c.malformed
    );
    Ok(ExitCode::SUCCESS)
}
