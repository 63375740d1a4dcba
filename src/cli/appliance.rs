//! The appliance's own steps: first boot, the network placement, the firewall, the panel view.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use homewarden::config::Config;
use tokio::signal::unix::{signal, SignalKind};

use crate::cli::*;
use crate::FirewallAction;

/// `homewarden firstboot`: import the boot partition's config, or blink the fault.
pub(crate) async fn firstboot(
    config: &Path,
    boot_config: PathBuf,
    show_fault: bool,
) -> Result<ExitCode> {
    if show_fault {
        // The last good config's panel; without one, the board's ACT LED.
        let mut backends = Config::load(config)
            .ok()
            .filter(|c| !c.panel.backends.is_empty())
            .map(|c| panel_backends(&c))
            .unwrap_or_default();
        if backends.is_empty() {
            match homewarden::appliance::panel::backend::ActLed::new(Path::new(
                "/sys/class/leds/ACT",
            )) {
                Ok(a) => backends.push(Box::new(a)),
                Err(e) => tracing::warn!("{e}"),
            }
        }
        let mut term = signal(SignalKind::terminate())?;
        homewarden::appliance::firstboot::show_fault(&mut backends, async move {
            term.recv().await;
        })
        .await;
        return Ok(ExitCode::SUCCESS);
    }
    let paths = homewarden::appliance::firstboot::Paths {
        error_file: boot_config.with_file_name("homewarden-error.txt"),
        boot_config,
        config: config.to_path_buf(),
        ..Default::default()
    };
    let r = homewarden::appliance::firstboot::import(&paths)?;
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

/// `homewarden network apply`: render the placement's files under `root`.
pub(crate) fn network_apply(config: &Path, root: &Path) -> Result<ExitCode> {
    let (cfg, secrets) = load(config)?;
    let pass = secrets.get("HOMEWARDEN_WIFI_PASSPHRASE");
    let files = homewarden::appliance::placement::render(&cfg.network, root, pass.as_deref())?;
    let written = homewarden::appliance::placement::apply(&files, root)?;
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

/// `homewarden firewall up|down|status`.
pub(crate) fn firewall(config: &Path, action: FirewallAction) -> Result<ExitCode> {
    use homewarden::config::FailMode;
    use homewarden::enforce::firewall::{self, Backend, PacketPath};
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
            // Only a home of the owner's own needs Suricata's variables
            // rewritten; the queue must go up whatever becomes of that.
            let vars = if cfg.network.home.is_empty() {
                Vec::new()
            } else {
                firewall::suricata_vars(&cfg.selftest.suricata_config, &cfg.suricata.include)
                    .unwrap_or_else(|e| {
                        eprintln!(
                            "warning: {e}: Suricata's $HOME_NET stays Debian's (signatures may not see network.home's devices)"
                        );
                        Vec::new()
                    })
            };
            let backend = path.up(&suricata_env, &vars)?;
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

/// Draws the simulated panel in the terminal: ● lit, ○ dark, as the LEDs would be now.
pub(crate) async fn panel_view(path: &Path, watch: bool) -> Result<ExitCode> {
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
        let lights: homewarden::appliance::panel::pattern::Lights =
            serde_json::from_slice(&text).with_context(|| format!("{}", file.display()))?;
        let t = start.elapsed().as_millis() as u64;
        let mut line = String::new();
        for (name, code, led) in [
            ("green", "32", lights.green),
            ("amber", "33", lights.amber),
            ("red", "31", lights.red),
            ("act", "34", lights.act),
        ] {
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
