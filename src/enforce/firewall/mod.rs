//! The packet path in the kernel: which traffic goes through Suricata's
//! queues, which flows leave them once Suricata has seen what the rules need
//! (flow bypass), and which bypassed flows are cut when their remote becomes
//! listed. One typed plan renders both the firewall and Suricata's side, so
//! queue numbers, marks and the fail mode can never disagree.

pub mod conntrack;
pub mod health;
pub mod names;
mod rules;

use std::io::Write as _;
use std::net::Ipv4Addr;
use std::path::Path;

use ipnet::IpNet;
use std::process::Stdio;

use crate::config::{Action, Config, FailMode, Network, OpenPort, Placement};
use crate::fsutil;

/// Our nftables table (inet: IPv4 and IPv6 alike).
pub const TABLE: &str = "homewarden";
/// Our xtables chain where the kernel has no nft queue.
pub const XT_CHAIN: &str = "HOMEWARDEN";
/// Packet and conntrack mark bit of a flow Suricata bypassed (`nfq.bypass-mark`).
/// A high bit: the low ones are what policy routing and VPNs use.
pub const BYPASS_MARK: u32 = 0x2000_0000;
/// Conntrack mark bit of a bypassed flow the agent cut (its remote became listed).
pub const CUT_MARK: u32 = 0x4000_0000;
/// Where `up` leaves Suricata's arguments for its unit (`EnvironmentFile=`).
pub const SURICATA_ENV: &str = "/run/homewarden/suricata.env";
/// The variable in that file.
pub const SURICATA_ENV_VAR: &str = "HOMEWARDEN_SURICATA_ARGS";
/// Suricata's address variables, beside the environment file.
pub const VARS_FILE: &str = "suricata-vars.yaml";

/// Most queues worth having: one Suricata worker per core, and a Pi has four.
pub const MAX_AUTO_QUEUES: u16 = 4;

/// What the firewall and Suricata must agree on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PacketPath {
    /// NFQUEUE queues, numbered from 0, one Suricata worker each.
    pub queues: u16,
    /// What happens to traffic Suricata cannot judge.
    pub fail: FailMode,
    /// Flows leave the queue once Suricata bypasses them.
    pub flow_bypass: bool,
    /// How a cut flow ends (drop, or a reset / ICMP error).
    pub action: Action,
    /// The Pi's own protection from the devices' side.
    pub devices: DeviceSide,
    /// The home's networks (`network.home`), Suricata's `$HOME_NET`: the
    /// signatures' direction (`$HOME_NET -> $EXTERNAL_NET`) follows the home,
    /// not Debian's private ranges. Empty: Debian's.
    pub home: Vec<ipnet::IpNet>,
    /// QUIC is refused (`enforcement.quic: block`), not inspected.
    pub quic_block: bool,
}

/// What the devices may reach of the Pi, and what their traffic may not
/// slip past, from the placement.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DeviceSide {
    /// The interface the devices' traffic reaches the Pi on (the bridge in `bridge`).
    pub lan: String,
    /// The Pi's address on a network of the devices' own (ap, two-interface
    /// gateway): input from it is DHCP, DNS and the opened ports only, and
    /// DNS to other resolvers is answered by the Pi. `None` where the devices
    /// share the owner's network (bridge, one-armed gateway).
    pub own_network: Option<Ipv4Addr>,
    /// Who on the devices' side may reach SSH; `None`: anyone.
    pub ssh_from: Option<Vec<IpNet>>,
    /// Ports of the Pi opened to the devices.
    pub open: Vec<OpenPort>,
    /// `bridge` placement: whether br_netfilter hands bridged packets to the
    /// forward hook (and so the queue); without it the bridge must not forward.
    pub bridge: Option<bool>,
}

impl DeviceSide {
    /// The device side the network config describes; a bridge's br_netfilter
    /// state is read when the rules go in.
    pub fn from_config(n: &Network) -> DeviceSide {
        let own = n.routes_own_subnet().then(|| n.lan_address.addr());
        let bridge = n.placement == Placement::Bridge;
        DeviceSide {
            lan: if bridge {
                crate::config::BRIDGE.to_string()
            } else {
                n.lan().to_string()
            },
            own_network: own,
            ssh_from: n.ssh_from.clone().or_else(|| own.map(|_| Vec::new())),
            open: n.lan_open.clone(),
            bridge: bridge.then_some(false),
        }
    }
}

/// Where the kernel lists who holds each NFQUEUE queue.
pub const QUEUE_TABLE: &str = "/proc/net/netfilter/nfnetlink_queue";

/// The kernel makes the queue table root's alone (0440): the agent, its own
/// user, reads it to check Suricata holds every queue. Its lines (queue,
/// holder's port id, counters) tell nothing secret, so the root step that
/// installs the queue opens it to reading (the module is loaded at boot by
/// overlays/etc/modules-load.d, so the table is there by then).
fn share_queue_table() {
    use std::os::unix::fs::PermissionsExt;
    if let Err(e) = std::fs::set_permissions(QUEUE_TABLE, std::fs::Permissions::from_mode(0o444)) {
        tracing::warn!("{QUEUE_TABLE}: cannot make it readable for the agent: {e}");
    }
}

/// Whether br_netfilter hands bridged IPv4 and IPv6 to the forward hook.
pub fn bridge_inspected() -> bool {
    ["iptables", "ip6tables"].iter().all(|t| {
        std::fs::read_to_string(format!("/proc/sys/net/bridge/bridge-nf-call-{t}"))
            .is_ok_and(|v| v.trim() == "1")
    })
}

/// How the kernel queues packets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// nftables `queue`.
    Nft,
    /// The xtables NFQUEUE target through iptables-nft (no CONFIG_NFT_QUEUE).
    Xtables,
}

/// A firewall command that failed.
#[derive(Debug, thiserror::Error)]
pub enum FirewallError {
    /// A tool could not be run or refused the rules.
    #[error("{tool}: {message}")]
    Tool {
        /// The program.
        tool: String,
        /// Its error output, or why it did not run.
        message: String,
    },
    /// The Suricata arguments file could not be written.
    #[error("{path}: {source}")]
    Write {
        /// The file.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
}

impl PacketPath {
    /// The path the config asks for; `fail` overrides the config's fail mode.
    pub fn from_config(cfg: &Config, fail: Option<FailMode>) -> PacketPath {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let auto = u16::try_from(cores).unwrap_or(MAX_AUTO_QUEUES);
        PacketPath {
            queues: cfg
                .suricata
                .queues
                .unwrap_or_else(|| auto.clamp(1, MAX_AUTO_QUEUES)),
            fail: fail.unwrap_or(cfg.enforcement.fail),
            flow_bypass: cfg.suricata.flow_bypass,
            action: cfg.enforcement.action,
            devices: DeviceSide::from_config(&cfg.network),
            home: cfg.network.home.clone(),
            quic_block: cfg.enforcement.quic == crate::config::Quic::Block,
        }
    }

    /// The `EnvironmentFile=` text that hands Suricata its arguments, with
    /// the file of [`PacketPath::vars_yaml`] to include, if any.
    pub fn suricata_env(&self, vars: Option<&Path>) -> String {
        let mut args = self.suricata_args();
        if let Some(v) = vars {
            args.extend(["--include".to_string(), v.display().to_string()]);
        }
        format!(
            "# Written by `homewarden firewall up`: Suricata's side of the packet path.\n\
             {SURICATA_ENV_VAR}={}\n",
            args.join(" ")
        )
    }

    /// A config file for Suricata that makes the home's networks its
    /// `$HOME_NET` (none when `network.home` is unset: Debian's private
    /// ranges stand), with every other variable as `defaults` (Suricata's
    /// own config, [`suricata_vars`]) gives it: an included `vars:` replaces
    /// the whole section. A file, not `--set`: a rule reload reads the
    /// variables again from the config files and forgets a `--set` one
    /// (Suricata 7.0.10, seen in the lab), and the signatures' direction
    /// (`$HOME_NET -> $EXTERNAL_NET`) would silently turn.
    pub fn vars_yaml(&self, defaults: &[(String, String)]) -> Option<String> {
        // Without the rest of the variables the file would take them away
        // ($EXTERNAL_NET first): then Debian's `$HOME_NET` stands instead.
        if self.home.is_empty() || defaults.is_empty() {
            return None;
        }
        let nets: Vec<String> = self.home.iter().map(ToString::to_string).collect();
        let home = format!("[{}]", nets.join(","));
        let mut out = String::from(
            "%YAML 1.1\n---\n# Written by `homewarden firewall up`: network.home as $HOME_NET, the rest as Suricata's config has it.\nvars:\n",
        );
        for group in ["address-groups", "port-groups"] {
            out.push_str(&format!("  {group}:\n"));
            let mut seen_home = false;
            for (name, value) in defaults.iter().filter_map(|(k, v)| {
                k.strip_prefix(group)
                    .and_then(|n| n.strip_prefix('.'))
                    .map(|n| (n, v))
            }) {
                let value = if group == "address-groups" && name == "HOME_NET" {
                    seen_home = true;
                    &home
                } else {
                    value
                };
                out.push_str(&format!("    {name}: {}\n", yaml_quoted(value)));
            }
            if group == "address-groups" && !seen_home {
                out.push_str(&format!("    HOME_NET: {}\n", yaml_quoted(&home)));
            }
        }
        Some(out)
    }

    /// Installs the path: replaces our table (and xtables chain) and writes
    /// Suricata's arguments to `env` (restart Suricata for queue or fail
    /// changes), with its variables from `vars` ([`suricata_vars`]).
    pub fn up(&self, env: &Path, vars: &[(String, String)]) -> Result<Backend, FirewallError> {
        let mut path = self.clone();
        if path.devices.bridge.is_some() {
            path.devices.bridge = Some(bridge_inspected());
        }
        path.install(env, vars)
    }

    fn install(&self, env: &Path, defaults: &[(String, String)]) -> Result<Backend, FirewallError> {
        down_xtables();
        let backend = match nft(&self.nft(true)) {
            Ok(()) => Backend::Nft,
            Err(native) => {
                // No CONFIG_NFT_QUEUE (ENOENT): nft keeps the marks and cuts,
                // the xtables target queues.
                nft(&self.nft(false)).map_err(|_| native)?;
                for args in self.xtables() {
                    for tool in ["iptables-nft", "ip6tables-nft"] {
                        run(tool, &args)?;
                    }
                }
                Backend::Xtables
            }
        };
        share_queue_table();
        if let Some(dir) = env.parent() {
            std::fs::create_dir_all(dir).map_err(|source| FirewallError::Write {
                path: dir.display().to_string(),
                source,
            })?;
        }
        let write = |path: &Path, text: &str| {
            fsutil::write_atomic(path, text.as_bytes()).map_err(|source| FirewallError::Write {
                path: path.display().to_string(),
                source,
            })
        };
        let vars_path = env.with_file_name(VARS_FILE);
        let vars = match self.vars_yaml(defaults) {
            Some(yaml) => {
                write(&vars_path, &yaml)?;
                Some(vars_path.as_path())
            }
            None => {
                let _ = std::fs::remove_file(&vars_path);
                None
            }
        };
        write(env, &self.suricata_env(vars))?;
        Ok(backend)
    }
}

/// A YAML double-quoted scalar.
fn yaml_quoted(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

/// Suricata's rule variables (`address-groups.NAME`, `port-groups.NAME`)
/// as its config `main` with `include` gives them (`suricata --dump-config`).
pub fn suricata_vars(main: &Path, include: &Path) -> Result<Vec<(String, String)>, FirewallError> {
    let out = crate::child::command("suricata")
        .arg("--dump-config")
        .arg("-c")
        .arg(main)
        .arg("--include")
        .arg(include)
        .output()
        .map_err(|e| FirewallError::Tool {
            tool: "suricata --dump-config".into(),
            message: e.to_string(),
        })?;
    let vars = parse_vars(&String::from_utf8_lossy(&out.stdout));
    if !out.status.success() || vars.is_empty() {
        return Err(FirewallError::Tool {
            tool: "suricata --dump-config".into(),
            message: format!(
                "no rule variables in {} ({})",
                main.display(),
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        });
    }
    Ok(vars)
}

/// The `vars.*` lines of `suricata --dump-config`.
fn parse_vars(dump: &str) -> Vec<(String, String)> {
    dump.lines()
        .filter_map(|l| l.strip_prefix("vars."))
        .filter_map(|l| l.split_once(" = "))
        .filter(|(k, _)| k.starts_with("address-groups.") || k.starts_with("port-groups."))
        .map(|(k, v)| (k.to_string(), v.trim().to_string()))
        .collect()
}

/// Removes our table and chains: forwarded traffic is no longer inspected.
pub fn down() {
    let _ = nft(&format!(
        "table inet {TABLE} {{}}\ndelete table inet {TABLE}\ntable bridge {TABLE} {{}}\ndelete table bridge {TABLE}\n"
    ));
    down_xtables();
}

fn down_xtables() {
    for tool in ["iptables-nft", "ip6tables-nft"] {
        let ipt = |args: &[&str]| {
            crate::child::command(tool)
                .args(args)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        };
        while ipt(&["-D", "FORWARD", "-j", XT_CHAIN]) {}
        for p in ["udp", "tcp"] {
            while ipt(&[
                "-D", "INPUT", "!", "-i", "lo", "-p", p, "--dport", "53", "-j", XT_CHAIN,
            ]) {}
            while ipt(&[
                "-D", "OUTPUT", "!", "-o", "lo", "-p", p, "--sport", "53", "-j", XT_CHAIN,
            ]) {}
        }
        ipt(&["-F", XT_CHAIN]);
        ipt(&["-X", XT_CHAIN]);
    }
}

/// Our table and chains as the kernel has them, for a person to read.
pub fn show() -> String {
    let mut out = String::new();
    let capture = |tool: &str, args: &[&str]| {
        crate::child::command(tool)
            .args(args)
            .stderr(Stdio::null())
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default()
    };
    out.push_str(&capture("nft", &["list", "table", "inet", TABLE]));
    out.push_str(&capture("nft", &["list", "table", "bridge", TABLE]));
    for tool in ["iptables-nft", "ip6tables-nft"] {
        out.push_str(&capture(tool, &["-S", XT_CHAIN]));
    }
    out
}

/// Loads an nft script of another table of ours (the quarantine's) in one transaction.
pub fn load(script: &str) -> Result<(), FirewallError> {
    nft(script)
}

/// Loads an nft script in one transaction.
fn nft(script: &str) -> Result<(), FirewallError> {
    let err = |message: String| FirewallError::Tool {
        tool: "nft".into(),
        message,
    };
    let mut child = crate::child::command("nft")
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| err(e.to_string()))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(script.as_bytes())
            .map_err(|e| err(e.to_string()))?;
    }
    let out = child.wait_with_output().map_err(|e| err(e.to_string()))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(err(first_line(&out.stderr)))
    }
}

fn run(tool: &str, args: &[String]) -> Result<(), FirewallError> {
    let out = crate::child::command(tool)
        .args(args)
        .output()
        .map_err(|e| FirewallError::Tool {
            tool: tool.into(),
            message: e.to_string(),
        })?;
    if out.status.success() {
        Ok(())
    } else {
        Err(FirewallError::Tool {
            tool: tool.into(),
            message: format!("{}: {}", args.join(" "), first_line(&out.stderr)),
        })
    }
}

/// The first non-empty line of a tool's error output: errors stay one line.
fn first_line(stderr: &[u8]) -> String {
    String::from_utf8_lossy(stderr)
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("failed")
        .to_string()
}
