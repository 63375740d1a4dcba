//! `run`, `sync` and the factory reset's root step: the daemon and what talks to it.

use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use homewarden::config::{self, Config};
use homewarden::daemon::agent::{Agent, SyncReport};
use homewarden::daemon::control::{self, Command};
use tokio::signal::unix::{signal, SignalKind};

use crate::cli::*;

/// Sends the daemon a command whose answer is only "taken".
pub(crate) async fn tell(path: &Path, cmd: Command) -> Result<ExitCode> {
    let cfg = Config::load(path)?;
    control::request(&cfg.control_socket, &cmd, Duration::from_secs(10)).await?;
    Ok(ExitCode::SUCCESS)
}

/// `homewarden ack`: acknowledges the open high incidents (as a short press
/// does) and says how many were new.
pub(crate) async fn ack(path: &Path) -> Result<ExitCode> {
    let cfg = Config::load(path)?;
    let v = control::request(&cfg.control_socket, &Command::Ack, Duration::from_secs(10)).await?;
    let r: control::reply::AckReply = serde_json::from_value(v).context("daemon's ack reply")?;
    println!("acknowledged {} incident(s)", r.acknowledged);
    Ok(ExitCode::SUCCESS)
}

/// The panel backends the config asks for; one that cannot start is reported and skipped.
pub(crate) fn panel_backends(
    cfg: &Config,
) -> Vec<Box<dyn homewarden::appliance::panel::backend::Backend>> {
    use homewarden::appliance::panel::backend::{ActLed, Gpio, Simulated};
    use homewarden::config::PanelBackend;
    let mut out: Vec<Box<dyn homewarden::appliance::panel::backend::Backend>> = Vec::new();
    for b in &cfg.panel.backends {
        let made: Result<Box<dyn homewarden::appliance::panel::backend::Backend>, _> = match b {
            PanelBackend::Simulated => Ok(Box::new(Simulated::new(&cfg.panel.state_file))),
            PanelBackend::Act => ActLed::new(&cfg.panel.act_led).map(|l| Box::new(l) as _),
            PanelBackend::Gpio => Gpio::new(cfg.panel.pins).map(|g| Box::new(g) as _),
        };
        match made {
            Ok(b) => out.push(b),
            Err(e) => tracing::error!("{e}"),
        }
    }
    out
}

/// The config may be the broken one a reset is meant to replace: its state
/// directory and factory file when it loads, the defaults otherwise.
pub(crate) fn apply_factory_reset(path: &Path) -> Result<ExitCode> {
    let (state_dir, factory) = match Config::load(path) {
        Ok(c) => (c.state_dir, c.panel.factory_config),
        Err(_) => (
            config::default_state_dir(),
            config::PanelConfig::default().factory_config,
        ),
    };
    match homewarden::appliance::factory::apply_pending(&state_dir, path, &factory)
        .context("factory reset")?
    {
        homewarden::appliance::factory::Applied::Nothing => {}
        homewarden::appliance::factory::Applied::Restored => println!(
            "factory reset: {} restored from {}",
            path.display(),
            factory.display()
        ),
    }
    Ok(ExitCode::SUCCESS)
}

/// `homewarden run`: the daemon.
pub(crate) async fn run(path: &Path) -> Result<ExitCode> {
    homewarden::daemon::memory::tune();
    let (cfg, secrets) = load(path)?;
    // Run by hand (no unit's root step before it): apply a pending reset if
    // this user may write the config, else say who will.
    let (cfg, secrets) = match homewarden::appliance::factory::apply_pending(
        &cfg.state_dir,
        path,
        &cfg.panel.factory_config,
    ) {
        Ok(homewarden::appliance::factory::Applied::Restored) => load(path)?,
        Ok(homewarden::appliance::factory::Applied::Nothing) => (cfg, secrets),
        Err(e) => {
            tracing::error!(
                "factory reset pending: {e}; `homewarden apply-factory-reset` as root applies it"
            );
            (cfg, secrets)
        }
    };
    let socket = cfg.control_socket.clone();
    let backends: homewarden::appliance::panel::Shared =
        std::sync::Arc::new(std::sync::Mutex::new(panel_backends(&cfg)));
    // A panic leaves the LEDs saying so (red), not frozen at the last good state.
    let hook_backends = backends.clone();
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        homewarden::appliance::panel::FAULT.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Ok(mut b) = hook_backends.try_lock() {
            homewarden::appliance::panel::fault(&mut b);
        }
        default_hook(info);
    }));
    let group_file = std::fs::read_to_string("/etc/group").unwrap_or_default();
    let (access, problems) = control::access::Access::resolve(&cfg.control_access, &group_file);
    for p in problems {
        tracing::error!("{p}");
    }
    let metrics = match (&cfg.metrics.listen, &cfg.metrics.token_env) {
        (Some(addr), Some(name)) => match secrets.get(name) {
            Some(token) => Some((*addr, Some(token))),
            None => anyhow::bail!("metrics.token_env: the secret {name} is not set"),
        },
        (Some(addr), None) => Some((*addr, None)),
        (None, _) => None,
    };
    let mqtt = {
        let password = cfg
            .mqtt
            .password_env
            .as_deref()
            .and_then(|n| secrets.get(n));
        let misp = cfg
            .sources
            .iter()
            .filter_map(|s| match s {
                config::SourceConfig::Misp(m) => Some((m.name.clone(), m.url.clone())),
                _ => None,
            })
            .collect();
        homewarden::daemon::homeassistant::Settings::new(&cfg.mqtt, password, &cfg.state_dir, misp)?
            .map(|s| s.with_devices(cfg.devices.enabled))
    };
    let signatures = homewarden::daemon::signatures::Settings::from_config(
        &cfg,
        config::mem_total().unwrap_or(0),
    );
    let mut agent = Agent::open(cfg, &secrets)?;
    let (signatures_tx, signatures_inbox) = tokio::sync::mpsc::channel(8);
    let signatures = homewarden::daemon::signatures::Signatures::new(signatures);
    let signatures_status = signatures.watch();
    agent.supervise(signatures.heart());
    tokio::spawn(signatures.run(signatures_inbox, agent.stop_handle()));
    let (tx, rx) = tokio::sync::mpsc::channel(8);
    let (panel_tx, panel_rx) = tokio::sync::mpsc::channel(4);
    agent.set_panel(panel_tx);
    // The panel and the control server hear the agent's stop, and the agent
    // returns once they are done (the LEDs set, the socket removed).
    let (panel_stop, status, requests) = (agent.stop_handle(), agent.status(), tx.clone());
    tokio::spawn(async move {
        let mut stopping = panel_stop.clone();
        homewarden::appliance::panel::run(backends, status, panel_rx, requests, async move {
            stopping.wait().await
        })
        .await;
        drop(panel_stop);
    });
    if let Some(settings) = mqtt {
        let (link_tx, link_rx) = tokio::sync::watch::channel(None);
        agent.set_mqtt(link_rx);
        let (status, requests, stop) = (agent.status(), tx.clone(), agent.stop_handle());
        tokio::spawn(homewarden::daemon::homeassistant::run(
            settings, status, requests, link_tx, stop,
        ));
    }
    let mut routes = agent.routes(tx);
    routes.signatures = Some(signatures_tx);
    control::serve(&socket, access, routes, agent.stop_handle())
        .with_context(|| format!("control socket {}", socket.display()))?;
    if let Some((addr, token)) = metrics {
        let listener = homewarden::daemon::metrics::bind(addr).await?;
        homewarden::daemon::metrics::serve(
            listener,
            token,
            agent.status(),
            Some(signatures_status),
            agent.stop_handle(),
        );
        tracing::info!("metrics at http://{addr}/metrics");
    }
    let mut term = signal(SignalKind::terminate()).context("SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("SIGINT handler")?;
    let shutdown = async move {
        tokio::select! {
            _ = term.recv() => {},
            _ = int.recv() => {},
        }
    };
    tracing::info!(config = %path.display(), "homewarden {} starting", env!("CARGO_PKG_VERSION"));
    let exit = agent.run(rx, shutdown).await;
    Ok(match exit {
        homewarden::daemon::agent::Exit::Stopped => ExitCode::SUCCESS,
        // EX_TEMPFAIL: systemd's Restart=on-failure starts us again with the factory config.
        homewarden::daemon::agent::Exit::Restart => ExitCode::from(75),
    })
}

/// `homewarden sync`: through the daemon if one runs, else here.
pub(crate) async fn sync(path: &Path, accept_shrink: Vec<String>) -> Result<ExitCode> {
    let (cfg, secrets) = load(path)?;
    if let Some(unknown) = accept_shrink
        .iter()
        .find(|a| !cfg.sources.iter().any(|s| s.name() == a.as_str()))
    {
        anyhow::bail!(
            "--accept-shrink {unknown:?}: no source of that name in {}",
            path.display()
        );
    }
    // A running daemon owns the store: ask it rather than racing it.
    let cmd = Command::Sync {
        accept_shrink: accept_shrink.clone(),
    };
    let report: SyncReport =
        match control::request(&cfg.control_socket, &cmd, Duration::from_secs(3600)).await {
            Ok(v) => serde_json::from_value(v).context("daemon's sync reply")?,
            Err(control::ControlError::NotRunning { .. }) => {
                let mut agent = Agent::open(cfg, &secrets)?;
                agent.sync_once(&accept_shrink).await
            }
            Err(e) => return Err(e.into()),
        };
    for (name, err) in &report.sources {
        match err {
            None => println!("{name}: ok"),
            Some(e) if e.starts_with("held: ") => println!("{name}: HELD: {}", &e[6..]),
            Some(e) => println!("{name}: FAILED: {e}"),
        }
    }
    if let Some(a) = &report.apply {
        println!(
            "applied: +{} -{} ({} files written)",
            a.added, a.removed, a.files_written
        );
    }
    if let Some(e) = &report.apply_error {
        println!("apply FAILED: {e}");
    }
    Ok(if report.ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
