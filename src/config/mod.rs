//! The agent's configuration: one YAML file, typed, validated once at start.
//!
//! Every error names the file, the key and the offending value, on one line.

pub mod appliance;
mod de;
pub mod devices;
pub mod expansion;
pub mod homeassistant;
mod limits;
mod metrics;
mod network;
pub mod notify;
pub mod respond;
mod selftest;
pub mod signatures;
mod sources;
mod validate;
mod warninglists;

pub use appliance::{AccessConfig, Pins, BRIDGE};
pub(crate) use de::de_duration;
use de::{de_opt_duration, de_queues, de_shadow, de_source_shadow};
pub use de::{MAX_QUEUES, SHADOW_DEFAULT};
pub use devices::{DevicesConfig, NewDevice};
pub use homeassistant::MqttConfig;
pub use limits::{mem_total, Limits};
pub use metrics::MetricsConfig;
pub use network::{AccessPoint, Canaries, Network, OpenPort, Placement};
pub use notify::{PushKind, PushTarget};
pub use respond::{AdvisorConfig, MailConfig};
pub use selftest::SelftestConfig;
pub use signatures::SignaturesConfig;
use sources::PATH_MARK;
pub use sources::{FeedSource, ListSource, MispSource, SourceConfig};
pub use warninglists::WarninglistConfig;

use std::collections::HashSet;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use ipnet::{IpNet, Ipv4Net};
use serde::{Deserialize, Deserializer};

use crate::intel::ioc::Domain;
use crate::intel::list::{Column, Format};
use crate::intel::set::{Allowlist, ExpandLimits};

/// Where the config lives on the appliance.
pub const DEFAULT_PATH: &str = "/etc/homewarden/homewarden.yaml";

/// A configuration error: `file: key: message`.
#[derive(Debug, thiserror::Error)]
#[error("{file}: {key}: {message}")]
pub struct ConfigError {
    /// The config file.
    pub file: String,
    /// Dotted path of the key (`sources[0].url`), or `-` for the whole file.
    pub key: String,
    /// What is wrong, quoting the value.
    pub message: String,
}

/// The whole configuration.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Directory for the IoC store and other durable state.
    #[serde(default = "defaults::state_dir")]
    pub state_dir: PathBuf,
    /// Unix socket where `homewarden status` reaches the daemon.
    #[serde(default = "defaults::control_socket")]
    pub control_socket: PathBuf,
    /// Who besides root may use the control socket.
    #[serde(default)]
    pub control_access: AccessConfig,
    /// How matches are acted on.
    #[serde(default)]
    pub enforcement: Enforcement,
    /// Where Suricata reads our rules and listens for commands.
    #[serde(default)]
    pub suricata: SuricataConfig,
    /// Addresses of this network that must keep working whatever the feeds say.
    #[serde(default)]
    pub network: Network,
    /// Never-block list.
    #[serde(default)]
    pub allowlist: AllowlistConfig,
    /// Alert intake and triage.
    #[serde(default)]
    pub alerts: AlertsConfig,
    /// LEDs and button.
    #[serde(default)]
    pub panel: PanelConfig,
    /// Who writes mitigation advice.
    #[serde(default)]
    pub advisor: AdvisorConfig,
    /// Incident mail.
    #[serde(default)]
    pub mail: MailConfig,
    /// The self-test of enforcement.
    #[serde(default)]
    pub selftest: SelftestConfig,
    /// MISP warninglists applied to every source.
    #[serde(default)]
    pub warninglists: WarninglistConfig,
    /// Intel sources.
    #[serde(default)]
    pub sources: Vec<SourceConfig>,
    /// Bounds on what is read from sources and the LLM.
    #[serde(default)]
    pub limits: Limits,
    /// The Prometheus endpoint.
    #[serde(default)]
    pub metrics: MetricsConfig,
    /// Push targets beside mail (ntfy, webhook, Matrix); none by default.
    #[serde(default)]
    pub notify: Vec<PushTarget>,
    /// Home Assistant over MQTT; off by default.
    #[serde(default)]
    pub mqtt: MqttConfig,
    /// The inventory of the home's devices and their quarantine.
    #[serde(default)]
    pub devices: DevicesConfig,
    /// The signature ruleset (Emerging Threats Open) beside the IoC sets.
    #[serde(default)]
    pub signatures: SignaturesConfig,
    /// The file this was read from (not a YAML key).
    #[serde(skip)]
    pub path: PathBuf,
}

/// IPS or IDS.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Inline: matching traffic is stopped.
    #[default]
    Ips,
    /// Passive: matching traffic only raises alerts.
    Ids,
}

/// What an IPS does with a match.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Silently drop (the client waits for its timeout).
    #[default]
    Drop,
    /// Drop and answer with a TCP reset / ICMP unreachable (the client fails fast).
    Reject,
}

/// What happens to forwarded traffic when Suricata is not there to judge it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FailMode {
    /// Traffic passes uninspected: the home keeps its internet.
    #[default]
    Open,
    /// Traffic stops until Suricata is back.
    Closed,
}

/// Widest networks `max_ipv4_prefix` / `max_ipv6_prefix` may let through: 65,536 addresses.
const MIN_IPV4_PREFIX: u8 = 16;
const MIN_IPV6_PREFIX: u8 = 112;

/// Enforcement settings.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Enforcement {
    /// `ips` or `ids`.
    pub mode: Mode,
    /// `drop` or `reject` (IPS only).
    pub action: Action,
    /// `open` or `closed`: the firewall's queue and Suricata's `nfq.fail-open`
    /// both follow it (`homewarden firewall up`), shown in status.
    pub fail: FailMode,
    /// Also block subdomains of a listed domain (`x.evil.example` for `evil.example`).
    pub match_subdomains: bool,
    /// Widest IPv4 network expanded into the blocklist; wider ones are refused.
    pub max_ipv4_prefix: u8,
    /// Widest IPv6 network expanded into the blocklist; wider ones are refused.
    pub max_ipv6_prefix: u8,
    /// Shadow mode for every source: new indicators only raise alerts for this
    /// long before they block (`true` is 24 h; `false`, the default, blocks at once).
    #[serde(deserialize_with = "de_shadow")]
    pub shadow: Option<Duration>,
    /// Home devices that must not break: an indicator one of them talks to
    /// while observed is held (alert only) for the owner to decide.
    pub do_not_break: Vec<IpNet>,
    /// Tell MISP (an expiration sighting) when one of its attributes stops being enforced here.
    pub expiration_sightings: bool,
    /// A full pull that loses more than this share (percent) of a source's
    /// set is held, not applied: an emptied list or a broken feed must not
    /// lift protection unnoticed (`sync --accept-shrink` takes it; 100: off).
    pub max_shrink: u8,
    /// QUIC (HTTP/3 on UDP port 443): `inspect` (the default: its Initial
    /// names the server, which the rules read as a TLS SNI) or `block`
    /// (refused, so browsers and apps fall back to TLS over TCP, where
    /// signatures see more of the handshake).
    pub quic: Quic,
    /// DNS past the home's resolver, encrypted (DNS over TLS and over QUIC,
    /// port 853), where the domain sets never see a query: `block` (the
    /// default), `alert` or `off`.
    pub dns_bypass: DnsBypass,
    /// Devices (addresses or networks) whose encrypted DNS is let be.
    #[serde(deserialize_with = "de::de_devices")]
    pub dns_bypass_allow: Vec<IpNet>,
}

/// What Suricata does with encrypted DNS (`enforcement.dns_bypass`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DnsBypass {
    /// DNS over TLS refused at once (a TCP reset), so a client that may fall
    /// back to plain DNS does so without waiting; DNS over QUIC dropped;
    /// both reported.
    #[default]
    Block,
    /// Reported, let through.
    Alert,
    /// Not looked at.
    Off,
}

/// What the firewall does with QUIC (`enforcement.quic`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Quic {
    /// Queued to Suricata like any flow: a listed name in its SNI is dropped.
    #[default]
    Inspect,
    /// Refused at once (ICMP port unreachable): clients use TLS over TCP.
    Block,
}

impl Default for Enforcement {
    fn default() -> Self {
        let l = ExpandLimits::default();
        Enforcement {
            mode: Mode::Ips,
            action: Action::Drop,
            fail: FailMode::Open,
            match_subdomains: true,
            quic: Quic::Inspect,
            dns_bypass: DnsBypass::Block,
            dns_bypass_allow: Vec::new(),
            max_ipv4_prefix: l.max_v4_prefix,
            max_ipv6_prefix: l.max_v6_prefix,
            shadow: None,
            do_not_break: Vec::new(),
            expiration_sightings: false,
            max_shrink: 50,
        }
    }
}

/// Suricata integration.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SuricataConfig {
    /// Suricata's `default-rule-path`: our rules file and dataset files go here.
    pub rules_dir: PathBuf,
    /// Suricata's unix command socket.
    pub command_socket: PathBuf,
    /// First signature id of ours (we use a block of 100).
    pub sid_base: u32,
    /// How long one socket conversation may take.
    #[serde(deserialize_with = "de_duration")]
    pub socket_timeout: Duration,
    /// NFQUEUE queues Suricata reads, one worker each (`auto`, the default:
    /// one per core, at most 4).
    #[serde(deserialize_with = "de_queues")]
    pub queues: Option<u16>,
    /// Flows leave the queue once Suricata has seen what the rules need
    /// (past the stream depth, once TLS is encrypted): near line rate.
    pub flow_bypass: bool,
    /// Where Suricata writes the DNS answers it sees (an eve `unix_stream`
    /// output): the addresses whose flows are cut when their name is listed.
    /// Unset: `dns.sock` beside `alerts.eve_socket` (see [`Config::dns_socket`]).
    pub dns_socket: Option<PathBuf>,
    /// homewarden's include for Suricata's main config (`selftest.suricata_config`):
    /// a signature ruleset is tested with `suricata -T` under both, as Suricata runs.
    pub include: PathBuf,
    /// Suricata's cgroup (its unit's): the memory budget its `MemoryMax=`
    /// sets and what it holds, read before a new ruleset goes in.
    pub cgroup: PathBuf,
}

impl Default for SuricataConfig {
    fn default() -> Self {
        SuricataConfig {
            rules_dir: PathBuf::from("/var/lib/homewarden/suricata"),
            command_socket: PathBuf::from("/run/suricata/suricata-command.socket"),
            sid_base: 1_666_000,
            socket_timeout: Duration::from_secs(30),
            queues: None,
            flow_bypass: true,
            dns_socket: None,
            include: PathBuf::from("/etc/suricata/homewarden.yaml"),
            cgroup: PathBuf::from("/sys/fs/cgroup/system.slice/suricata.service"),
        }
    }
}

/// A panel backend.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PanelBackend {
    /// LEDs and button on the GPIO header.
    Gpio,
    /// The board's ACT LED.
    Act,
    /// A state file (tests, the lab, a Pi without hardware you want to watch from afar).
    Simulated,
}

/// LEDs and button.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PanelConfig {
    /// Where to show the status: any of gpio, act, simulated (none: no panel).
    pub backends: Vec<PanelBackend>,
    /// The simulated panel's state file.
    pub state_file: PathBuf,
    /// The ACT LED's sysfs directory.
    pub act_led: PathBuf,
    /// GPIO pins (BCM numbers) and polarity.
    pub pins: Pins,
    /// The config a very long button press restores.
    pub factory_config: PathBuf,
}

impl Default for PanelConfig {
    fn default() -> Self {
        PanelConfig {
            backends: Vec::new(),
            state_file: PathBuf::from("/run/homewarden/agent/panel.json"),
            act_led: PathBuf::from("/sys/class/leds/ACT"),
            pins: Pins::default(),
            factory_config: PathBuf::from("/usr/share/homewarden/homewarden.yaml"),
        }
    }
}

/// Alert intake and triage.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AlertsConfig {
    /// Unix socket Suricata's eve `unix_stream` output connects to.
    pub eve_socket: PathBuf,
    /// Follow this eve.json instead of listening on the socket.
    pub eve_file: Option<PathBuf>,
    /// Alerts of one (signature, remote, device) further apart than this open a new incident.
    #[serde(deserialize_with = "de_duration")]
    pub window: Duration,
    /// Suricata severities at or below this are high.
    pub high_severity: u8,
    /// MISP threat levels (1 High … 4 Undefined) that make an IoC hit high.
    pub high_threat_levels: Vec<u8>,
    /// Most actions the outbox holds on disk; the oldest low-severity ones go first.
    pub outbox_max: usize,
    /// The `source` of sightings this appliance adds to MISP.
    pub sighting_source: String,
    /// First wait after a failed MISP, LLM or mail action; doubles with each
    /// further failure, up to an hour (a peer's `Retry-After` wins).
    #[serde(deserialize_with = "de_duration")]
    pub retry_first: Duration,
}

impl Default for AlertsConfig {
    fn default() -> Self {
        AlertsConfig {
            eve_socket: PathBuf::from("/run/homewarden/agent/eve.sock"),
            eve_file: None,
            window: Duration::from_secs(600),
            high_severity: 1,
            high_threat_levels: vec![1],
            outbox_max: 10_000,
            sighting_source: "homewarden".to_string(),
            retry_first: Duration::from_secs(respond::FIRST_BACKOFF_SECS),
        }
    }
}

/// Never-block list as written in the file.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AllowlistConfig {
    /// Networks (`192.0.2.0/24`) or single addresses.
    pub cidrs: Vec<String>,
    /// Domains; their subdomains are allowed too.
    pub domains: Vec<String>,
    /// Also allow private, loopback, link-local and multicast ranges.
    pub builtin: bool,
}

impl Default for AllowlistConfig {
    fn default() -> Self {
        AllowlistConfig {
            cidrs: Vec::new(),
            domains: Vec::new(),
            builtin: true,
        }
    }
}

/// Where state lives when the config does not say.
pub use defaults::state_dir as default_state_dir;

mod defaults {
    use std::path::PathBuf;
    use std::time::Duration;

    pub fn state_dir() -> PathBuf {
        PathBuf::from("/var/lib/homewarden")
    }
    pub fn control_socket() -> PathBuf {
        PathBuf::from("/run/homewarden/agent/control.sock")
    }
    pub fn misp_key_env() -> String {
        "MISP_API_KEY".to_string()
    }
    pub fn yes() -> bool {
        true
    }
    pub fn misp_interval() -> Duration {
        Duration::from_secs(300)
    }
    pub fn max_refused() -> u8 {
        crate::intel::list::DEFAULT_MAX_REFUSED
    }
    pub fn feed_interval() -> Duration {
        Duration::from_secs(3600)
    }
    pub fn full_resync() -> Duration {
        Duration::from_secs(6 * 3600)
    }
    pub fn http_timeout() -> Duration {
        Duration::from_secs(60)
    }
    pub fn page_limit() -> u32 {
        5000
    }
    pub fn misp_types() -> Vec<String> {
        [
            "ip-dst",
            "ip-src",
            "ip-dst|port",
            "ip-src|port",
            "domain",
            "hostname",
            "domain|ip",
            "url",
            "md5",
            "sha256",
            "filename|md5",
            "filename|sha256",
        ]
        .map(String::from)
        .to_vec()
    }
}

impl Config {
    /// The socket Suricata's DNS answers come in on: `suricata.dns_socket`,
    /// or `dns.sock` beside the eve socket (so a lab or a test that moves one
    /// moves both).
    pub fn dns_socket(&self) -> PathBuf {
        self.suricata
            .dns_socket
            .clone()
            .unwrap_or_else(|| self.alerts.eve_socket.with_file_name("dns.sock"))
    }

    /// Reads, parses and validates a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            file: path.display().to_string(),
            key: "-".into(),
            message: format!("cannot read: {e}"),
        })?;
        Config::parse(&text, path)
    }

    /// Parses and validates config text; `path` is only used in messages.
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let file = path.display().to_string();
        expansion::check(text, expansion::budget(text.len())).map_err(|m| ConfigError {
            file: file.clone(),
            key: "-".into(),
            message: m,
        })?;
        // An empty file is a valid config: every default applies.
        let de =
            serde_yaml_ng::Deserializer::from_str(if text.trim().is_empty() { "{}" } else { text });
        let mut cfg: Config = serde_path_to_error::deserialize(de).map_err(|e| {
            let mut key = e.path().to_string();
            let mut message = e.inner().to_string();
            // A source's own key path travels inside the message (see SourceConfig).
            let marked = message.split_once(PATH_MARK).and_then(|(pre, rest)| {
                rest.split_once(PATH_MARK)
                    .map(|(k, m)| (pre.to_string(), k.to_string(), m.to_string()))
            });
            if let Some((_, inner_key, rest)) = marked {
                key = format!("{key}.{inner_key}");
                message = rest;
            }
            // serde_yaml_ng puts the path in some messages itself: say it once.
            if let Some(rest) = message.strip_prefix(&format!("{key}: ")) {
                message = rest.to_string();
            }
            ConfigError {
                file: file.clone(),
                key: if key == "." { "-".into() } else { key },
                message: one_line(&message),
            }
        })?;
        cfg.path = path.to_path_buf();
        cfg.validate()?;
        Ok(cfg)
    }

    fn err(&self, key: impl Into<String>, message: impl Into<String>) -> ConfigError {
        ConfigError {
            file: self.path.display().to_string(),
            key: key.into(),
            message: message.into(),
        }
    }

    /// The never-block list: configured entries plus gateway and DNS addresses.
    pub fn allowlist(&self) -> Result<Allowlist, ConfigError> {
        let mut nets = Vec::new();
        for (i, c) in self.allowlist.cidrs.iter().enumerate() {
            let net = c
                .parse::<IpNet>()
                .or_else(|_| c.parse::<IpAddr>().map(IpNet::from))
                .map_err(|_| {
                    self.err(
                        format!("allowlist.cidrs[{i}]"),
                        format!("{c:?} is not an IP network"),
                    )
                })?;
            nets.push(net);
        }
        nets.extend(
            self.network
                .gateway
                .iter()
                .chain(&self.network.dns)
                .map(|ip| IpNet::from(*ip)),
        );
        let mut domains = Vec::new();
        for (i, d) in self.allowlist.domains.iter().enumerate() {
            domains.push(
                Domain::parse(d)
                    .map_err(|e| self.err(format!("allowlist.domains[{i}]"), e.to_string()))?,
            );
        }
        Ok(Allowlist::new(nets, domains, self.allowlist.builtin))
    }

    /// Network expansion limits.
    pub fn expand_limits(&self) -> ExpandLimits {
        ExpandLimits {
            max_v4_prefix: self.enforcement.max_ipv4_prefix,
            max_v6_prefix: self.enforcement.max_ipv6_prefix,
        }
    }

    /// Triage settings.
    pub fn triage(&self) -> crate::alerts::triage::Settings {
        let mut t = crate::alerts::triage::Settings {
            window: self.alerts.window,
            high_severity: self.alerts.high_severity,
            high_threat_levels: self.alerts.high_threat_levels.clone(),
            ..Default::default()
        };
        if !self.network.home.is_empty() {
            t.home = self.network.home.clone();
        }
        t
    }

    /// The directory the config file sits in (where `.env` is looked for).
    pub fn dir(&self) -> &Path {
        self.path.parent().unwrap_or(Path::new("."))
    }
}

impl fmt::Display for FailMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FailMode::Open => "open",
            FailMode::Closed => "closed",
        })
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Action::Drop => "drop",
            Action::Reject => "reject",
        })
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Mode::Ips => "ips",
            Mode::Ids => "ids",
        })
    }
}

/// An error message on one line (serde's span several).
fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests;

/// The commented example of `section` in the shipped config, uncommented:
/// from its `# section:` line while lines are comments (the tests of each
/// section check that what owners are shown parses and validates).
#[cfg(test)]
pub(crate) fn shipped_example(section: &str) -> String {
    include_str!("../../overlays/etc/homewarden/homewarden.yaml")
        .lines()
        .skip_while(|l| !l.starts_with(&format!("# {section}:")))
        .take_while(|l| l.starts_with('#'))
        .map(|l| {
            format!(
                "{}\n",
                l.strip_prefix("# ").unwrap_or(l).trim_start_matches('#')
            )
        })
        .collect()
}
