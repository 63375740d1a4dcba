//! The `homewarden` command: CLI, logging and signals; the work is in the library.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Result;
use clap::{Parser, Subcommand};
use homewarden::config::{self};
use homewarden::daemon::control::{Command, DeviceCommand, OwnerCommand};
use homewarden::owner::refang;

mod cli;
use cli::*;

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
    /// Restore the factory config if the button asked for it (the agent's unit
    /// runs this as root before each start; nothing to do otherwise).
    ApplyFactoryReset,
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
    /// Send a test message to each `notify:` target (or the one named).
    NotifyTest {
        /// Only this target.
        target: Option<String>,
    },
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
    /// The home's devices: name, vendor, address, MAC, first and last seen,
    /// incidents and blocked connections in the last 24 hours.
    Devices {
        #[command(subcommand)]
        action: Option<DevicesAction>,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Cut a device off: it may reach only the Pi's DHCP and DNS (and
    /// devices.quarantine_allow), enforced by the kernel at once and kept over reboots.
    Quarantine {
        /// Its name, MAC or address.
        device: String,
        /// Only for this long (e.g. 2h, 7d).
        #[arg(long = "for", value_parser = humantime::parse_duration)]
        for_: Option<Duration>,
        /// Why (kept with the quarantine, shown in status).
        #[arg(long)]
        reason: Option<String>,
        /// Quarantine a device on enforcement.do_not_break too.
        #[arg(long)]
        force: bool,
    },
    /// Let a quarantined device back onto the internet.
    Release {
        /// Its name, MAC or address.
        device: String,
    },
    /// The signature ruleset (Emerging Threats Open by default): what is
    /// loaded and why, and updating it.
    Signatures {
        #[command(subcommand)]
        action: SignaturesAction,
    },
    /// Show the daemon's state.
    Status {
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
pub(crate) enum DevicesAction {
    /// Give a device a name ("" takes the name away).
    Name {
        /// Its MAC, address or current name.
        device: String,
        /// The name, e.g. "front doorbell".
        name: String,
    },
}

#[derive(Subcommand)]
pub(crate) enum SignaturesAction {
    /// The profile and why, the ruleset in force (sources, counts), the last
    /// update and its outcome, the next one.
    Status {
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Fetch the rulesets now, cut them to the profile, check them with
    /// `suricata -T` and have Suricata load them; a failure keeps the ruleset in force.
    Update {
        /// This ruleset alone, this once: `etopen`, an https:// URL, or a
        /// local `.tar.gz` (ET Open's layout) or `.rules` file.
        #[arg(long)]
        source: Option<String>,
    },
    /// Drop on a signature or a whole category (kept until `reset`).
    Drop {
        /// A signature id (2030000) or a category (malware).
        target: String,
    },
    /// Only report a signature or a whole category, never drop on it.
    Alert {
        /// A signature id or a category.
        target: String,
    },
    /// Do not load a signature or a whole category.
    Disable {
        /// A signature id or a category.
        target: String,
    },
    /// Take back what `drop`, `alert` or `disable` said (the config's word
    /// and the default policy apply again).
    Reset {
        /// A signature id or a category.
        target: String,
    },
    /// Lift a signature for one device or one destination (a false positive
    /// there), not for the whole home: it no longer matches their traffic.
    Allow {
        /// The signature id.
        sid: u64,
        /// The device's or destination's address or network.
        address: String,
    },
    /// Take back what `signatures allow` lifted.
    Unallow {
        /// The signature id.
        sid: u64,
        /// The address or network as allowed.
        address: String,
    },
    /// What one signature does here, why, and how to change it (also `homewarden explain SID`).
    Explain {
        /// The signature id.
        sid: u64,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
pub(crate) enum NetworkAction {
    /// Write the systemd-networkd, hostapd, dnsmasq and nftables files for the
    /// placement under /run (what homewarden-network.service does at boot).
    Apply {
        /// Where `/` is (a directory for a look at the files without applying them).
        #[arg(long, default_value = "/")]
        root: PathBuf,
    },
}

#[derive(Subcommand)]
pub(crate) enum FirewallAction {
    /// Install the queue rules and write Suricata's arguments for them (what
    /// homewarden-firewall.service does; restart Suricata after a change).
    Up {
        /// Override `enforcement.fail` of the config.
        #[arg(long, value_parser = ["open", "closed"])]
        fail: Option<String>,
        /// Where Suricata's unit reads its arguments (`EnvironmentFile=`).
        #[arg(long, default_value = homewarden::enforce::firewall::SURICATA_ENV)]
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
        Cmd::ApplyFactoryReset => apply_factory_reset(&cli.config),
        Cmd::MailTest => mail_test(&cli.config).await,
        Cmd::NotifyTest { target } => notify_test(&cli.config, target.as_deref()).await,
        Cmd::Network {
            action: NetworkAction::Apply { root },
        } => network_apply(&cli.config, &root),
        Cmd::Firewall { action } => firewall(&cli.config, action),
        // Values copied from a mail or a report may be defanged.
        Cmd::Explain { value, json } => explain(&cli.config, refang(&value), json).await,
        Cmd::Allow {
            value,
            for_,
            reason,
            force,
        } => {
            let cmd = OwnerCommand::Allow {
                value: refang(&value),
                for_secs: for_.map(|d| d.as_secs()),
                reason,
                force,
            };
            owner(&cli.config, cmd, false).await
        }
        Cmd::Unallow { value } => {
            let value = refang(&value);
            owner(&cli.config, OwnerCommand::Unallow { value }, false).await
        }
        Cmd::Selftest { json } => selftest(&cli.config, json).await,
        Cmd::Blocks { json } => owner(&cli.config, OwnerCommand::Blocks, json).await,
        Cmd::Status { json } => status(&cli.config, json).await,
        Cmd::Signatures { action } => signatures(&cli.config, action).await,
        Cmd::Devices { action: None, json } => devices(&cli.config, json).await,
        Cmd::Devices {
            action: Some(DevicesAction::Name { device, name }),
            json,
        } => {
            let name = (!name.trim().is_empty()).then_some(name);
            device_command(&cli.config, DeviceCommand::Name { device, name }, json).await
        }
        Cmd::Quarantine {
            device,
            for_,
            reason,
            force,
        } => {
            let cmd = DeviceCommand::Quarantine {
                device,
                for_secs: for_.map(|d| d.as_secs()),
                reason,
                force,
            };
            device_command(&cli.config, cmd, false).await
        }
        Cmd::Release { device } => {
            device_command(&cli.config, DeviceCommand::Release { device }, false).await
        }
        Cmd::Lookup { value, json } => lookup(&cli.config, refang(&value), json).await,
        Cmd::Triage { eve, json } => triage(&cli.config, &eve, json).await,
        Cmd::Ack => cli::daemon::ack(&cli.config).await,
        Cmd::Panel { watch } => panel_view(&cli.config, watch).await,
        Cmd::Firstboot {
            boot_config,
            show_fault,
        } => firstboot(&cli.config, boot_config, show_fault).await,
        Cmd::Legend => {
            print!("{}", homewarden::appliance::panel::legend::svg());
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

#[cfg(test)]
mod tests {
    use clap::CommandFactory;
    use homewarden::respond::advisor::reply::{COMMANDS, READ_ONLY_COMMANDS};

    use super::Cli;

    /// The LLM-reply cleaner knows every subcommand, and each one it keeps
    /// takes only `--json` and the value the cleaner expects: a flag added
    /// here must be judged there.
    #[test]
    fn the_reply_cleaner_knows_the_cli() {
        let cli = Cli::command();
        let mut names: Vec<&str> = cli.get_subcommands().map(|c| c.get_name()).collect();
        let mut known = COMMANDS.to_vec();
        names.sort_unstable();
        known.sort_unstable();
        assert_eq!(names, known);
        for (name, takes_value) in READ_ONLY_COMMANDS {
            let sub = cli.find_subcommand(name).expect("a subcommand");
            let args: Vec<_> = sub
                .get_arguments()
                .filter(|a| !matches!(a.get_id().as_str(), "help" | "version"))
                .collect();
            let values = args.iter().filter(|a| a.is_positional()).count();
            let flags: Vec<_> = args.iter().filter_map(|a| a.get_long()).collect();
            assert_eq!(values, usize::from(*takes_value), "{name}");
            assert_eq!(flags, ["json"], "{name}");
        }
    }
}
