//! The `homewarden` command: CLI, logging and signals; the work is in the library.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use homewarden::advisor;
use homewarden::agent::{Agent, Status, SyncReport};
use homewarden::alerts::eve::format_timestamp;
use homewarden::config::{self, Config, FeedSource, ListSource, SourceConfig};
use homewarden::control::{self, Command, OwnerCommand};
use homewarden::intel::set::Provenance;
use homewarden::mail::Mailer;
use homewarden::secrets::Secrets;
use tokio::signal::unix::{signal, SignalKind};

#[derive(Parser)]
#[command(
    name = "homewarden",
    version,
    about = "Threat intel to inline Suricata blocking for a home network"
)]
struct Cli {
    /// Configuration file.
    #[arg(long, short, global = true, env = "HOMEWARDEN_CONFIG", default_value = config::DEFAULT_PATH)]
    config: PathBuf,
    /// Log filter (error, warn, info, debug, trace, or a tracing directive).
    #[arg(long, global = true, env = "HOMEWARDEN_LOG", default_value = "info")]
    log: String,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the daemon.
    Run,
    /// Pull every source now and apply (through the daemon if one runs).
    Sync {
        /// Pull once and exit (the only mode; kept for scripts that say so).
        #[arg(long)]
        once: bool,
        /// Take this source's pull even if it lost more than
        /// `enforcement.max_shrink` of its set (repeat for several).
        #[arg(long, value_name = "SOURCE")]
        accept_shrink: Vec<String>,
    },
    /// Turn sources into Suricata files offline, touching no running Suricata.
    Render {
        /// Output directory (created).
        #[arg(long)]
        out: PathBuf,
        /// A list or MISP feed (path or URL); repeat for several. Without it, the config's sources.
        #[arg(long = "source", value_name = "PATH_OR_URL")]
        sources: Vec<String>,
        /// How `--source` lists are laid out: auto, plain, columns, csv or hosts.
        #[arg(long, default_value = "auto")]
        format: homewarden::intel::list::Format,
        /// The value's column in `--source` lists: 0-based, or a CSV header's name.
        #[arg(long, default_value = "0")]
        column: homewarden::intel::list::Column,
        /// Fail a `--source` list with more refused values than this percentage.
        #[arg(long, default_value_t = homewarden::intel::list::DEFAULT_MAX_REFUSED, value_parser = clap::value_parser!(u8).range(0..=100))]
        max_refused: u8,
    },
    /// Validate the configuration and the secrets it needs.
    CheckConfig,
    /// Trace an address, domain or hash (e.g. from an alert) back to the IoCs and
    /// MISP attributes behind it.
    Lookup {
        /// The value.
        value: String,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Run intake and triage offline over an eve.json and print the incidents it would raise.
    Triage {
        /// The eve.json file.
        #[arg(long)]
        eve: PathBuf,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Acknowledge the open high-severity incidents (what a short button press does).
    Ack,
    /// Press the panel's button (simulated): short acknowledges, 5 s re-syncs, 10 s resets.
    Press {
        /// How long to hold it (e.g. 200ms, 6s).
        #[arg(long, default_value = "200ms", value_parser = humantime::parse_duration)]
        hold: Duration,
    },
    /// Print the panel's LED legend as SVG (the picture in the README is made by this).
    Legend,
    /// Show the simulated panel's LEDs in the terminal (from `panel.state_file`).
    Panel {
        /// Keep redrawing, blinking included (Ctrl-C to stop).
        #[arg(long)]
        watch: bool,
    },
    /// First boot of the SD-card image: import homewarden.yaml from the boot
    /// partition (secrets to .env, SSH keys, config), or show why it cannot be.
    Firstboot {
        /// The user's file on the boot partition.
        #[arg(long, default_value = "/boot/firmware/homewarden.yaml")]
        boot_config: PathBuf,
        /// Blink the fault pattern on the LEDs until stopped (after a failed import).
        #[arg(long)]
        show_fault: bool,
    },
    /// Network placement (ap, bridge, gateway) from `network:` of the config.
    Network {
        #[command(subcommand)]
        action: NetworkAction,
    },
    /// The packet path: forwarded traffic (and DNS queries to the Pi) through
    /// Suricata's queues, flows that Suricata is done with left to the kernel.
    Firewall {
        #[command(subcommand)]
        action: FirewallAction,
    },
    /// Send a test mail with the configured SMTP settings.
    MailTest,
    /// Why is this value blocked (or not)? Sources, MISP event and attribute,
    /// since when, and what overrides it. Works without the daemon too.
    Explain {
        /// An address, domain, URL or hash.
        value: String,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Lift a value from enforcement at once (and tell MISP it was a false positive).
    Allow {
        /// An address, network, domain or URL (its host).
        value: String,
        /// Only for this long (e.g. 2h, 7d).
        #[arg(long = "for", value_parser = humantime::parse_duration)]
        for_: Option<Duration>,
        /// Why (kept with the allowance).
        #[arg(long)]
        reason: Option<String>,
        /// Allow a network wider than /16 (IPv4) or /48 (IPv6).
        #[arg(long)]
        force: bool,
    },
    /// Take back an allowance: the value is enforced again.
    Unallow {
        /// The value as allowed.
        value: String,
    },
    /// Prove enforcement now: Suricata's live datasets and rule count, and the
    /// self-test capture replayed through `suricata -r` (rolls back on failure).
    Selftest {
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// What is being blocked now: values hit in the last 24 hours, newest first.
    Blocks {
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Show the daemon's state.
    Status {
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum NetworkAction {
    /// Write the systemd-networkd, hostapd, dnsmasq and nftables files for the
    /// placement under /run (what homewarden-network.service does at boot).
    Apply {
        /// Where `/` is (a directory for a look at the files without applying them).
        #[arg(long, default_value = "/")]
        root: PathBuf,
    },
}

#[derive(Subcommand)]
enum FirewallAction {
    /// Install the queue rules and write Suricata's arguments for them (what
    /// homewarden-firewall.service does; restart Suricata after a change).
    Up {
        /// Override `enforcement.fail` of the config.
        #[arg(long, value_parser = ["open", "closed"])]
        fail: Option<String>,
        /// Where Suricata's unit reads its arguments (`EnvironmentFile=`).
        #[arg(long, default_value = homewarden::firewall::SURICATA_ENV)]
        suricata_env: PathBuf,
    },
    /// Remove the queue rules: forwarded traffic is no longer inspected.
    Down,
    /// The rules as the kernel has them.
    Status,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(&cli.log);
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("homewarden: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(dispatch(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("homewarden: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Under systemd (JOURNAL_STREAM set) journald adds time and colour is noise.
fn init_logging(filter: &str) {
    let under_journald = std::env::var_os("JOURNAL_STREAM").is_some();
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colour only for a person at a terminal, never into a log file.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr()) && !under_journald;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(ansi);
    if under_journald {
        builder.without_time().init();
    } else {
        builder.init();
    }
}

fn load(path: &Path) -> Result<(Config, Secrets)> {
    let cfg = Config::load(path)?;
    let secrets = Secrets::load(cfg.dir())?;
    Ok((cfg, secrets))
}

async fn dispatch(cli: Cli) -> Result<ExitCode> {
    match cli.cmd {
        Cmd::Run => run(&cli.config).await,
        Cmd::Sync {
            once: _,
            accept_shrink,
        } => sync(&cli.config, accept_shrink).await,
        Cmd::Render {
            out,
            sources,
            format,
            column,
            max_refused,
        } => {
            let layout = homewarden::intel::list::Layout {
                format,
                column,
                max_refused,
            };
            render(&cli.config, &out, &sources, &layout).await
        }
        Cmd::CheckConfig => check_config(&cli.config),
        Cmd::MailTest => mail_test(&cli.config).await,
        Cmd::Network {
            action: NetworkAction::Apply { root },
        } => network_apply(&cli.config, &root),
        Cmd::Firewall { action } => firewall(&cli.config, action),
        Cmd::Explain { value, json } => explain(&cli.config, value, json).await,
        Cmd::Allow {
            value,
            for_,
            reason,
            force,
        } => {
            let cmd = OwnerCommand::Allow {
                value,
                for_secs: for_.map(|d| d.as_secs()),
                reason,
                force,
            };
            owner(&cli.config, cmd, false).await
        }
        Cmd::Unallow { value } => owner(&cli.config, OwnerCommand::Unallow { value }, false).await,
        Cmd::Selftest { json } => selftest(&cli.config, json).await,
        Cmd::Blocks { json } => owner(&cli.config, OwnerCommand::Blocks, json).await,
        Cmd::Status { json } => status(&cli.config, json).await,
        Cmd::Lookup { value, json } => lookup(&cli.config, value, json).await,
        Cmd::Triage { eve, json } => triage(&cli.config, &eve, json).await,
        Cmd::Ack => tell(&cli.config, Command::Ack).await,
        Cmd::Panel { watch } => panel_view(&cli.config, watch).await,
        Cmd::Firstboot {
            boot_config,
            show_fault,
        } => firstboot(&cli.config, boot_config, show_fault).await,
        Cmd::Legend => {
            print!("{}", homewarden::panel::legend::svg());
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Press { hold } => {
            tell(
                &cli.config,
                Command::Press {
                    ms: hold.as_millis() as u64,
                },
            )
            .await
        }
    }
}

async fn firstboot(config: &Path, boot_config: PathBuf, show_fault: bool) -> Result<ExitCode> {
    if show_fault {
        // The last good config's panel; without one, the board's ACT LED.
        let mut backends = Config::load(config)
            .ok()
            .filter(|c| !c.panel.backends.is_empty())
            .map(|c| panel_backends(&c))
            .unwrap_or_default();
        if backends.is_empty() {
            match homewarden::panel::backend::ActLed::new(Path::new("/sys/class/leds/ACT")) {
                Ok(a) => backends.push(Box::new(a)),
                Err(e) => tracing::warn!("{e}"),
            }
        }
        let mut term = signal(SignalKind::terminate())?;
        homewarden::firstboot::show_fault(&mut backends, async move {
            term.recv().await;
        })
        .await;
        return Ok(ExitCode::SUCCESS);
    }
    let paths = homewarden::firstboot::Paths {
        error_file: boot_config.with_file_name("homewarden-error.txt"),
        boot_config,
        config: config.to_path_buf(),
        ..Default::default()
    };
    let r = homewarden::firstboot::import(&paths)?;
    if r.unchanged {
        println!(
            "firstboot: {}: nothing new to import",
            paths.boot_config.display()
        );
    } else {
        println!(
            "firstboot: imported {} into {}; secrets moved to .env: [{}]; SSH keys added: {}, removed: {}",
            paths.boot_config.display(),
            paths.config.display(),
            r.secrets.join(", "),
            r.ssh_keys_added,
            r.ssh_keys_removed
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn network_apply(config: &Path, root: &Path) -> Result<ExitCode> {
    let (cfg, secrets) = load(config)?;
    let pass = secrets.get("HOMEWARDEN_WIFI_PASSPHRASE");
    let files = homewarden::placement::render(&cfg.network, root, pass.as_deref())?;
    let written = homewarden::placement::apply(&files, root)?;
    let n = &cfg.network;
    println!(
        "network: {} placement, uplink {}{}; wrote {}",
        n.placement.as_str(),
        n.uplink,
        if n.lan() == n.uplink {
            String::new()
        } else if n.routes_own_subnet() {
            format!(", devices on {} at {}", n.lan(), n.lan_address)
        } else {
            format!(", devices on {}", n.lan())
        },
        written
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(" ")
    );
    Ok(ExitCode::SUCCESS)
}

fn firewall(config: &Path, action: FirewallAction) -> Result<ExitCode> {
    use homewarden::config::FailMode;
    use homewarden::firewall::{self, Backend, PacketPath};
    match action {
        FirewallAction::Up { fail, suricata_env } => {
            let cfg = Config::load(config)?;
            let fail = fail.map(|f| {
                if f == "closed" {
                    FailMode::Closed
                } else {
                    FailMode::Open
                }
            });
            let path = PacketPath::from_config(&cfg, fail);
            let backend = path.up(&suricata_env)?;
            println!(
                "firewall: {}{} queue{} {}, fail-{}, flow bypass {}; Suricata: {}",
                firewall::health::backend_name(backend),
                if backend == Backend::Xtables {
                    " NFQUEUE (kernel has no nft queue)"
                } else {
                    ""
                },
                if path.queues > 1 { "s" } else { "" },
                if path.queues > 1 {
                    format!("0-{}", path.queues - 1)
                } else {
                    "0".into()
                },
                path.fail,
                if path.flow_bypass { "on" } else { "off" },
                path.suricata_args().join(" ")
            );
        }
        FirewallAction::Down => {
            firewall::down();
            println!("firewall: down (forwarded traffic is not inspected)");
        }
        FirewallAction::Status => print!("{}", firewall::show()),
    }
    Ok(ExitCode::SUCCESS)
}

async fn tell(path: &Path, cmd: Command) -> Result<ExitCode> {
    let cfg = Config::load(path)?;
    control::request(&cfg.control_socket, &cmd, Duration::from_secs(10)).await?;
    Ok(ExitCode::SUCCESS)
}

/// The panel backends the config asks for; one that cannot start is reported and skipped.
fn panel_backends(cfg: &Config) -> Vec<Box<dyn homewarden::panel::backend::Backend>> {
    use homewarden::config::PanelBackend;
    use homewarden::panel::backend::{ActLed, Gpio, Simulated};
    let mut out: Vec<Box<dyn homewarden::panel::backend::Backend>> = Vec::new();
    for b in &cfg.panel.backends {
        let made: Result<Box<dyn homewarden::panel::backend::Backend>, _> = match b {
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

async fn run(path: &Path) -> Result<ExitCode> {
    let (cfg, secrets) = load(path)?;
    let socket = cfg.control_socket.clone();
    let backends: homewarden::panel::Shared =
        std::sync::Arc::new(std::sync::Mutex::new(panel_backends(&cfg)));
    // A panic leaves the LEDs saying so (red), not frozen at the last good state.
    let hook_backends = backends.clone();
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        homewarden::panel::FAULT.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Ok(mut b) = hook_backends.try_lock() {
            homewarden::panel::fault(&mut b);
        }
        default_hook(info);
    }));
    let group_file = std::fs::read_to_string("/etc/group").unwrap_or_default();
    let (access, problems) = control::access::Access::resolve(&cfg.control_access, &group_file);
    for p in problems {
        tracing::error!("{p}");
    }
    let mut agent = Agent::open(cfg, &secrets)?;
    let (tx, rx) = tokio::sync::mpsc::channel(8);
    let (panel_tx, panel_rx) = tokio::sync::mpsc::channel(4);
    agent.set_panel(panel_tx);
    let (panel_stop, panel_stopped) = tokio::sync::oneshot::channel::<()>();
    let panel = tokio::spawn(homewarden::panel::run(
        backends,
        agent.status(),
        panel_rx,
        tx.clone(),
        async {
            let _ = panel_stopped.await;
        },
    ));
    let server = control::serve(&socket, access, agent.status(), tx)
        .with_context(|| format!("control socket {}", socket.display()))?;
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
    server.abort();
    let _ = panel_stop.send(());
    let _ = panel.await;
    let _ = std::fs::remove_file(&socket);
    Ok(match exit {
        homewarden::agent::Exit::Stopped => ExitCode::SUCCESS,
        // EX_TEMPFAIL: systemd's Restart=on-failure starts us again with the factory config.
        homewarden::agent::Exit::Restart => ExitCode::from(75),
    })
}

async fn sync(path: &Path, accept_shrink: Vec<String>) -> Result<ExitCode> {
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

async fn render(
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
    let (counts, dropped, stats) = homewarden::agent::render_offline(&cfg, &secrets, out).await?;
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
fn source_from_arg(i: usize, arg: &str, layout: &homewarden::intel::list::Layout) -> SourceConfig {
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

fn check_config(path: &Path) -> Result<ExitCode> {
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

async fn explain(path: &Path, value: String, json: bool) -> Result<ExitCode> {
    use homewarden::explain::{self, Explanation, SourceView};
    let (cfg, _) = load(path)?;
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
                let local = homewarden::allow::LocalAllowlist::load(&cfg.state_dir)?;
                let shadow = homewarden::shadow::Shadow::load(&cfg.state_dir);
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
async fn owner(path: &Path, cmd: OwnerCommand, json: bool) -> Result<ExitCode> {
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
    let s = |v: &serde_json::Value| v.as_str().unwrap_or("").to_string();
    match cmd {
        OwnerCommand::Allow { .. } => {
            let a = &v["allowed"];
            let until = a["until"]
                .as_i64()
                .map(|u| format!(" until {}", format_timestamp(u)))
                .unwrap_or_default();
            println!(
                "{}: allowed{until} ({} blocklist values lifted, {}); {} false-positive sighting(s) queued for MISP",
                s(&a["value"]),
                v["removed"],
                s(&v["applied"]),
                v["false_positive_sightings"]
            );
        }
        OwnerCommand::Unallow { .. } => println!(
            "{}: enforced again ({} blocklist values back, {})",
            s(&v["unallowed"]["value"]),
            v["added"],
            s(&v["applied"])
        ),
        OwnerCommand::Blocks => {
            let now = homewarden::intel::unix_now();
            let b = &v["blocklist"];
            println!(
                "blocklist: {} IPv4, {} IPv6, {} domains, {} md5, {} sha256",
                b["ipv4"], b["ipv6"], b["domains"], b["md5"], b["sha256"]
            );
            let recent = v["recent"].as_array().cloned().unwrap_or_default();
            if recent.is_empty() {
                println!("no blocked traffic in the last 24 hours");
            } else {
                println!("blocked in the last 24 hours (newest first):");
            }
            for r in &recent {
                let by: Vec<String> = r["listed_by"]
                    .as_array()
                    .map(|a| a.iter().map(|p| s(&p["source"])).collect())
                    .unwrap_or_default();
                println!(
                    "  {:<40} {:>6} hits, last {}  ({})",
                    s(&r["value"]),
                    r["hits_24h"],
                    ago(now, r["last"].as_u64()),
                    by.join(", ")
                );
            }
            for a in v["allowed"].as_array().into_iter().flatten() {
                println!(
                    "  allowed: {} by {}{}",
                    s(&a["value"]),
                    s(&a["who"]),
                    a["reason"]
                        .as_str()
                        .map(|r| format!(": {r}"))
                        .unwrap_or_default()
                );
            }
        }
        OwnerCommand::Explain { .. } => {}
    }
    Ok(ExitCode::SUCCESS)
}

async fn selftest(path: &Path, json: bool) -> Result<ExitCode> {
    let cfg = Config::load(path)?;
    let v = control::request(
        &cfg.control_socket,
        &Command::Selftest,
        Duration::from_secs(300),
    )
    .await?;
    let st: homewarden::suricata::selftest::Status =
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

async fn mail_test(path: &Path) -> Result<ExitCode> {
    let (cfg, secrets) = load(path)?;
    let mailer = Mailer::new(&cfg.mail, secrets.get(&cfg.mail.password_env))?
        .context("mail is off: set mail.to (and mail.from) in the config")?;
    let name = homewarden::mail::appliance_name();
    let id = format!("test-{}", homewarden::intel::unix_now());
    mailer
        .send(&homewarden::mail::test_letter(&name), &id)
        .await?;
    println!(
        "test mail sent to {} via {}:{}",
        cfg.mail.to.join(", "),
        cfg.mail.host,
        cfg.mail.port()
    );
    Ok(ExitCode::SUCCESS)
}

async fn status(path: &Path, json: bool) -> Result<ExitCode> {
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
    // Where the Pi sits, when homewarden-network rendered it.
    if let Ok(p) = std::fs::read_to_string("/run/homewarden/placement") {
        let leases = std::fs::read_to_string("/run/homewarden/dnsmasq.leases").ok();
        let has_dhcp = Path::new("/run/homewarden/dnsmasq.conf").exists();
        let leases = leases.or_else(|| has_dhcp.then(String::new));
        println!(
            "{}",
            homewarden::placement::describe(&p, leases.as_deref(), now)
        );
    }
    Ok(ExitCode::SUCCESS)
}

async fn lookup(path: &Path, value: String, json: bool) -> Result<ExitCode> {
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

async fn triage(path: &Path, eve: &Path, json: bool) -> Result<ExitCode> {
    use homewarden::alerts::{intake, triage};
    use homewarden::intel::ioc::Ioc;
    // A config is optional: without one, defaults (and no IoC provenance).
    let cfg = if path.exists() {
        Config::load(path)?
    } else {
        Config::parse("", path)?
    };
    let store = homewarden::intel::store::Store::new(&cfg.state_dir);
    let sets: Vec<(String, homewarden::intel::set::SourceSet)> = cfg
        .sources
        .iter()
        .filter_map(|s| match store.load(s.name()) {
            Ok(Some(st)) => Some((s.name().to_string(), st.set)),
            _ => None,
        })
        .collect();
    let lookup = |value: &str| -> Option<Provenance> {
        let hit = Ioc::parse_any(value).ok()?;
        sets.iter().find_map(|(name, set)| {
            set.entries()
                .iter()
                .find(|e| e.ioc.covers(&hit))
                .map(|e| set.provenance(name, e))
        })
    };
    let mut t = triage::Triage::new(cfg.triage());
    let counters = intake::Counters::default();
    let mut incidents: Vec<triage::Incident> = Vec::new();
    let mut index = std::collections::HashMap::new();
    intake::read_file(eve, &counters, |a| match t.ingest(&a, &lookup) {
        triage::Outcome::New(inc) => {
            index.insert(inc.id.clone(), incidents.len());
            incidents.push(inc);
        }
        triage::Outcome::Counted(inc) => {
            if let Some(&i) = index.get(&inc.id) {
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

/// Draws the simulated panel in the terminal: ● lit, ○ dark, as the LEDs would be now.
async fn panel_view(path: &Path, watch: bool) -> Result<ExitCode> {
    use homewarden::panel::pattern::Led;
    let cfg = if path.exists() {
        Config::load(path)?
    } else {
        Config::parse("", path)?
    };
    let file = &cfg.panel.state_file;
    let colour = std::io::IsTerminal::is_terminal(&std::io::stdout());
    let start = std::time::Instant::now();
    loop {
        let text = std::fs::read(file).with_context(|| {
            format!(
                "{} (is the simulated panel enabled and the agent running?)",
                file.display()
            )
        })?;
        let v: serde_json::Value =
            serde_json::from_slice(&text).with_context(|| format!("{}", file.display()))?;
        let t = start.elapsed().as_millis() as u64;
        let mut line = String::new();
        for (name, code) in [
            ("green", "32"),
            ("amber", "33"),
            ("red", "31"),
            ("act", "34"),
        ] {
            let led: Led = serde_json::from_value(v[name].clone()).unwrap_or(Led::Off);
            let dot = if led.is_on(t) { "●" } else { "○" };
            let dot = if colour {
                format!("\x1b[{code}m{dot}\x1b[0m")
            } else {
                dot.to_string()
            };
            line.push_str(&format!("{dot} {name} ({})   ", led.describe()));
        }
        if !watch {
            println!("{}", line.trim_end());
            return Ok(ExitCode::SUCCESS);
        }
        print!("\r\x1b[2K{}", line.trim_end());
        let _ = std::io::Write::flush(&mut std::io::stdout());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn ago(now: u64, t: Option<u64>) -> String {
    match t {
        None => "never".into(),
        Some(t) => format!(
            "{} ago",
            humantime::format_duration(Duration::from_secs(now.saturating_sub(t)))
        ),
    }
}

/// The packet path in one line of `homewarden status`.
fn path_line(p: &homewarden::firewall::health::PathStatus) -> String {
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

fn human_status(s: &Status, now: u64) -> String {
    use std::fmt::Write;
    let mut o = String::new();
    let _ = writeln!(
        o,
        "homewarden {}: {} ({}, {}, fail-{})",
        s.version,
        s.state.to_uppercase(),
        s.mode.to_uppercase(),
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
            i.local,
            i.remote,
            i.signature,
            i.count,
            ago(now, Some(i.last_seen.max(0) as u64))
        );
    }
    let ob = &s.outbox;
    let _ = writeln!(
        o,
        "outbox: {} actions pending ({} failing), {} dropped, {} unreadable",
        ob.pending, ob.failing, ob.dropped, ob.corrupt
    );
    let _ = writeln!(o, "advice: {}; mail: {}", s.advisor, s.mail);
    for p in &s.presses {
        let _ = writeln!(o, "  button {}: {}", ago(now, Some(p.at)), p.action);
    }
    let _ = writeln!(o, "sources:");
    for src in &s.sources {
        let refused: u64 = src.stats.rejected.values().sum();
        let _ = writeln!(
            o,
            "  {:<16} {:<9} {:>8} IoCs  pulled {}  next in {}  refused {}{}{}{}",
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
