//! The agent's configuration: one YAML file, typed, validated once at start.
//!
//! Every error names the file, the key and the offending value, on one line.

pub mod appliance;
pub mod expansion;
mod limits;
pub mod respond;
mod selftest;
mod sources;
mod warninglists;

pub use appliance::{AccessConfig, Pins, BRIDGE};
pub use limits::Limits;
pub use respond::{AdvisorConfig, MailConfig};
pub use selftest::SelftestConfig;
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
}

impl Default for Enforcement {
    fn default() -> Self {
        let l = ExpandLimits::default();
        Enforcement {
            mode: Mode::Ips,
            action: Action::Drop,
            fail: FailMode::Open,
            match_subdomains: true,
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
        }
    }
}

/// The home network's own infrastructure.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Network {
    /// Gateway addresses (never blocked).
    pub gateway: Vec<IpAddr>,
    /// DNS resolvers (never blocked).
    pub dns: Vec<IpAddr>,
    /// Networks of the home's devices, to tell the local side of an alert
    /// (default: the private, link-local and unique-local ranges).
    pub home: Vec<IpNet>,
    /// Where the Pi sits between the home's devices and the internet.
    pub placement: Placement,
    /// The interface towards the internet router.
    pub uplink: String,
    /// The interface towards the home's devices (default: `wlan0` for `ap`, `eth1` otherwise).
    pub lan: Option<String>,
    /// The Pi's address and prefix on the devices' side in `ap` and two-interface
    /// `gateway` placement; the devices get leases from the rest of the subnet.
    pub lan_address: Ipv4Net,
    /// The Wi-Fi access point of the `ap` placement (its passphrase is the
    /// secret `HOMEWARDEN_WIFI_PASSPHRASE`).
    pub ap: AccessPoint,
    /// Addresses on the devices' side that may reach the Pi's SSH. Default:
    /// none where the devices have a network of their own (ap, two-interface
    /// gateway: the owner comes from the uplink side), anyone where they share
    /// the owner's (bridge, one-armed gateway).
    pub ssh_from: Option<Vec<IpNet>>,
    /// Ports of the Pi the devices may reach besides DHCP and DNS, where they
    /// have a network of their own (`tcp/8123`, `udp/5353`).
    pub lan_open: Vec<OpenPort>,
}

/// A port of the Pi opened to the devices' side.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OpenPort {
    /// `tcp` or `udp`.
    pub udp: bool,
    /// The port.
    pub port: u16,
}

impl std::fmt::Display for OpenPort {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", if self.udp { "udp" } else { "tcp" }, self.port)
    }
}

impl<'de> Deserialize<'de> for OpenPort {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<OpenPort, D::Error> {
        let t = String::deserialize(d)?;
        let bad = || {
            serde::de::Error::custom(format!(
                "{t:?} is not a port: write tcp/PORT or udp/PORT (e.g. \"tcp/8123\")"
            ))
        };
        let (proto, port) = t.split_once('/').ok_or_else(bad)?;
        let udp = match proto {
            "tcp" => false,
            "udp" => true,
            _ => return Err(bad()),
        };
        match port.parse::<u16>() {
            Ok(port) if port > 0 => Ok(OpenPort { udp, port }),
            _ => Err(bad()),
        }
    }
}

impl Default for Network {
    fn default() -> Self {
        Network {
            gateway: Vec::new(),
            dns: Vec::new(),
            home: Vec::new(),
            placement: Placement::default(),
            uplink: "eth0".to_string(),
            lan: None,
            lan_address: Ipv4Net::new(Ipv4Addr::new(192, 168, 73, 1), 24)
                .expect("a /24 is a valid prefix"),
            ap: AccessPoint::default(),
            ssh_from: None,
            lan_open: Vec::new(),
        }
    }
}

impl Network {
    /// The interface towards the home's devices, defaults applied.
    pub fn lan(&self) -> &str {
        match (&self.lan, self.placement) {
            (Some(l), _) => l,
            (None, Placement::Ap) => "wlan0",
            (None, _) => "eth1",
        }
    }

    /// Whether the devices sit on a subnet of their own behind the Pi (served
    /// by its DHCP and NATed), rather than on the uplink's (bridge, one-armed gateway).
    pub fn routes_own_subnet(&self) -> bool {
        match self.placement {
            Placement::Ap => true,
            Placement::Gateway => self.lan() != self.uplink,
            Placement::Bridge => false,
        }
    }
}

/// How forwarded traffic reaches the Pi (all three send it through the same queue).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Placement {
    /// The Pi's Wi-Fi is the IoT network, NATed to the uplink (no extra hardware).
    Ap,
    /// A transparent bridge between two interfaces.
    Bridge,
    /// The devices use the Pi as their router.
    #[default]
    Gateway,
}

impl Placement {
    /// The name as written in the config.
    pub fn as_str(self) -> &'static str {
        match self {
            Placement::Ap => "ap",
            Placement::Bridge => "bridge",
            Placement::Gateway => "gateway",
        }
    }
}

/// The `ap` placement's Wi-Fi network.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AccessPoint {
    /// Network name (1-32 bytes).
    pub ssid: String,
    /// ISO 3166 country code: the regulatory domain decides the legal channels.
    pub country: String,
    /// 2.4 GHz (1-14) or 5 GHz (36-177) channel.
    pub channel: u8,
}

impl Default for AccessPoint {
    fn default() -> Self {
        AccessPoint {
            ssid: "homewarden".to_string(),
            country: "GB".to_string(),
            channel: 6,
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
            state_file: PathBuf::from("/run/homewarden/panel.json"),
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
            eve_socket: PathBuf::from("/run/homewarden/eve.sock"),
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
        PathBuf::from("/run/homewarden/control.sock")
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

/// Accepts `"90s"`, `"5m"`, `"1h 30m"` or a number of seconds.
pub(crate) fn de_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Secs(u64),
        Text(String),
    }
    match Raw::deserialize(d)? {
        Raw::Secs(s) => Ok(Duration::from_secs(s)),
        Raw::Text(t) => humantime::parse_duration(&t).map_err(|e| {
            serde::de::Error::custom(format!(
                "invalid duration {t:?} ({e}); write e.g. \"30s\", \"5m\", \"1h\""
            ))
        }),
    }
}

/// Most NFQUEUE queues a config may ask for.
pub const MAX_QUEUES: u16 = 16;

/// `auto` (one queue per core) or a number of queues.
fn de_queues<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u16>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Count(i64),
        Text(String),
    }
    match Raw::deserialize(d)? {
        Raw::Text(t) if t == "auto" => Ok(None),
        Raw::Count(n) if (1..=i64::from(MAX_QUEUES)).contains(&n) => Ok(Some(n as u16)),
        Raw::Count(n) => Err(serde::de::Error::custom(format!(
            "{n} queues: write auto or a number from 1 to {MAX_QUEUES}"
        ))),
        Raw::Text(t) => Err(serde::de::Error::custom(format!(
            "invalid queue count {t:?}: write auto or a number from 1 to {MAX_QUEUES}"
        ))),
    }
}

/// The default observation period of shadow mode.
pub const SHADOW_DEFAULT: Duration = Duration::from_secs(24 * 3600);

/// `true` (24 h), `false` (off), or a duration.
fn de_shadow<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Flag(bool),
        Secs(u64),
        Text(String),
    }
    let bad = |t: String| {
        serde::de::Error::custom(format!(
            "invalid shadow setting {t:?}; write true (24h), false, or a duration such as \"12h\""
        ))
    };
    match Raw::deserialize(d)? {
        Raw::Flag(false) => Ok(None),
        Raw::Flag(true) => Ok(Some(SHADOW_DEFAULT)),
        Raw::Secs(0) => Ok(None),
        Raw::Secs(s) => Ok(Some(Duration::from_secs(s))),
        Raw::Text(t) => match humantime::parse_duration(&t) {
            Ok(d) if d.is_zero() => Ok(None),
            Ok(d) => Ok(Some(d)),
            Err(_) => Err(bad(t)),
        },
    }
}

fn de_source_shadow<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Option<Duration>>, D::Error> {
    de_shadow(d).map(Some)
}

fn de_opt_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    de_duration(d).map(Some)
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
            message: m.into(),
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

    fn validate(&self) -> Result<(), ConfigError> {
        self.allowlist()?;
        self.warninglists
            .check()
            .map_err(|(key, message)| self.err(key, message))?;
        self.control_access
            .check()
            .map_err(|(key, message)| self.err(key, message))?;
        self.limits
            .check()
            .map_err(|(key, message)| self.err(key, message))?;
        let e = &self.enforcement;
        // Each listed network becomes one dataset entry per address: a /8 or
        // a /64 from a feed would be millions (or 2^64) of them.
        if !(MIN_IPV4_PREFIX..=32).contains(&e.max_ipv4_prefix) {
            return Err(self.err(
                "enforcement.max_ipv4_prefix",
                format!("{} is not a prefix length of {MIN_IPV4_PREFIX}-32 (each network is expanded into its addresses: at most 65,536)", e.max_ipv4_prefix),
            ));
        }
        if e.max_shrink > 100 {
            return Err(self.err(
                "enforcement.max_shrink",
                format!("{} is not a percentage (0-100)", e.max_shrink),
            ));
        }
        if !(MIN_IPV6_PREFIX..=128).contains(&e.max_ipv6_prefix) {
            return Err(self.err(
                "enforcement.max_ipv6_prefix",
                format!("{} is not a prefix length of {MIN_IPV6_PREFIX}-128 (each network is expanded into its addresses: at most 65,536)", e.max_ipv6_prefix),
            ));
        }
        // Suricata's socket path is a sun_path: 107 bytes at most.
        for (key, p) in [
            ("control_socket", &self.control_socket),
            ("suricata.command_socket", &self.suricata.command_socket),
            ("alerts.eve_socket", &self.alerts.eve_socket),
            ("suricata.dns_socket", &self.dns_socket()),
        ] {
            if p.as_os_str().len() > 107 {
                return Err(self.err(
                    key,
                    format!(
                        "{:?} is longer than a unix socket path may be (107 bytes)",
                        p
                    ),
                ));
            }
        }
        for (i, t) in self.alerts.high_threat_levels.iter().enumerate() {
            if !(1..=4).contains(t) {
                return Err(self.err(
                    format!("alerts.high_threat_levels[{i}]"),
                    format!(
                        "{t} is not a MISP threat level (1 High, 2 Medium, 3 Low, 4 Undefined)"
                    ),
                ));
            }
        }
        if !(1..=4).contains(&self.alerts.high_severity) {
            return Err(self.err(
                "alerts.high_severity",
                format!(
                    "{} is not a Suricata severity (1-4)",
                    self.alerts.high_severity
                ),
            ));
        }
        let retry = self.alerts.retry_first;
        if retry < Duration::from_secs(1) || retry > Duration::from_secs(respond::MAX_BACKOFF_SECS)
        {
            return Err(self.err(
                "alerts.retry_first",
                format!(
                    "{} is out of range: write 1s to 1h",
                    humantime::format_duration(retry)
                ),
            ));
        }
        self.validate_network()?;
        self.mail.check().map_err(|(k, m)| self.err(k, m))?;
        if let Some(u) = &self.advisor.url {
            check_url(u).map_err(|m| self.err("advisor.url", m))?;
        }
        if self.advisor.tries == 0 {
            return Err(self.err("advisor.tries", "must be at least 1"));
        }
        for (key, ca) in [
            ("advisor.ca_file", &self.advisor.ca_file),
            ("mail.ca_file", &self.mail.ca_file),
        ] {
            if let Some(ca) = ca {
                if !ca.is_file() {
                    return Err(self.err(key, format!("{ca:?} is not a readable file")));
                }
            }
        }
        let mut names = HashSet::new();
        for (i, s) in self.sources.iter().enumerate() {
            let at = |k: &str| format!("sources[{i}].{k}");
            let name = s.name();
            let name_ok = !name.is_empty()
                && name.len() <= 64
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.');
            if !name_ok {
                return Err(self.err(
                    at("name"),
                    format!("{name:?} must be 1-64 of [A-Za-z0-9._-]"),
                ));
            }
            if !names.insert(name) {
                return Err(self.err(at("name"), format!("{name:?} is used by another source")));
            }
            if s.interval() < Duration::from_secs(1) {
                return Err(self.err(at("interval"), "must be at least 1s"));
            }
            match s {
                SourceConfig::Misp(m) => {
                    let u = check_url(&m.url).map_err(|msg| self.err(at("url"), msg))?;
                    if u.scheme() == "http" && !m.allow_plain_http {
                        return Err(self.err(
                            at("url"),
                            format!("{:?} is plain http: the API key would cross the network in clear (set allow_plain_http: true to accept)", m.url),
                        ));
                    }
                    if m.types.is_empty() {
                        return Err(self.err(at("types"), "must name at least one attribute type"));
                    }
                    if m.page_limit == 0 {
                        return Err(self.err(at("page_limit"), "must be at least 1"));
                    }
                    if let Some(ca) = &m.ca_file {
                        if !ca.is_file() {
                            return Err(
                                self.err(at("ca_file"), format!("{:?} is not a readable file", ca))
                            );
                        }
                    }
                }
                SourceConfig::List(l) if l.max_refused > 100 => {
                    return Err(self.err(
                        at("max_refused"),
                        format!("{} is not a percentage (0-100)", l.max_refused),
                    ));
                }
                SourceConfig::List(l)
                    if l.column != Column::Index(0)
                        && matches!(l.format, Format::Plain | Format::Hosts) =>
                {
                    return Err(self.err(
                        at("column"),
                        format!(
                            "a {} list has no columns (column is for csv, columns and auto)",
                            l.format
                        ),
                    ));
                }
                SourceConfig::MispFeed(FeedSource { url, path, .. })
                | SourceConfig::List(ListSource { url, path, .. }) => match (url, path) {
                    (Some(u), None) => {
                        check_url(u).map_err(|msg| self.err(at("url"), msg))?;
                    }
                    (None, Some(_)) => {}
                    _ => return Err(self.err(at("url"), "give exactly one of url and path")),
                },
            }
        }
        Ok(())
    }

    fn validate_network(&self) -> Result<(), ConfigError> {
        let n = &self.network;
        // Linux interface names: at most 15 bytes, no '/', no whitespace.
        let iface_ok = |i: &str| {
            !i.is_empty()
                && i.len() <= 15
                && i.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._-@".contains(&b))
        };
        if !iface_ok(&n.uplink) {
            return Err(self.err(
                "network.uplink",
                format!(
                    "{:?} is not an interface name (1-15 of [A-Za-z0-9._@-])",
                    n.uplink
                ),
            ));
        }
        if let Some(l) = &n.lan {
            if !iface_ok(l) {
                return Err(self.err(
                    "network.lan",
                    format!("{l:?} is not an interface name (1-15 of [A-Za-z0-9._@-])"),
                ));
            }
        }
        if n.lan() == n.uplink && n.placement != Placement::Gateway {
            return Err(self.err(
                "network.lan",
                format!(
                    "{:?} is also the uplink: {} placement needs two interfaces",
                    n.lan(),
                    match n.placement {
                        Placement::Ap => "the ap",
                        _ => "the bridge",
                    }
                ),
            ));
        }
        let ssid = &n.ap.ssid;
        if ssid.is_empty() || ssid.len() > 32 || ssid.chars().any(char::is_control) {
            return Err(self.err(
                "network.ap.ssid",
                format!("{ssid:?} must be 1-32 bytes without control characters"),
            ));
        }
        let cc = &n.ap.country;
        if cc.len() != 2 || !cc.bytes().all(|b| b.is_ascii_uppercase()) {
            return Err(self.err(
                "network.ap.country",
                format!("{cc:?} is not a two-letter country code such as \"GB\" or \"DE\""),
            ));
        }
        let ch = n.ap.channel;
        if !((1..=14).contains(&ch) || (36..=177).contains(&ch)) {
            return Err(self.err(
                "network.ap.channel",
                format!("{ch} is not a Wi-Fi channel (1-14 or 36-177)"),
            ));
        }
        let a = n.lan_address;
        let host = a.addr();
        if !(8..=30).contains(&a.prefix_len()) || host == a.network() || host == a.broadcast() {
            return Err(self.err(
                "network.lan_address",
                format!("\"{a}\" must be the Pi's own address with a /8 to /30 prefix, such as \"192.168.73.1/24\""),
            ));
        }
        Ok(())
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

    /// Settings that are valid but weaken the appliance: the agent logs them
    /// at start and `status` shows them, so a lab setting left on is seen.
    pub fn warnings(&self) -> Vec<String> {
        let mut out = Vec::new();
        let plain = |url: &str| {
            url.get(..7)
                .is_some_and(|s| s.eq_ignore_ascii_case("http://"))
        };
        for (i, s) in self.sources.iter().enumerate() {
            let at = format!("sources[{i}] ({})", s.name());
            let url = match s {
                SourceConfig::Misp(m) => {
                    if !m.verify_tls {
                        out.push(format!("{at}: verify_tls is off: anyone on the path can pose as the MISP server and read its API key"));
                    }
                    Some(m.url.as_str())
                }
                SourceConfig::MispFeed(f) => f.url.as_deref(),
                SourceConfig::List(l) => l.url.as_deref(),
            };
            if url.is_some_and(plain) {
                out.push(format!(
                    "{at}: plain http: anyone on the path can change what is blocked"
                ));
            }
        }
        let m = &self.mail;
        if !m.to.is_empty() && m.security == respond::Security::None && !is_local_host(&m.host) {
            out.push(format!("mail: security none to {}: mail (incident details) crosses the network unencrypted and unauthenticated", m.host));
        }
        out
    }
}

/// `localhost` or a loopback address: a relay on the Pi itself.
fn is_local_host(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

fn check_url(u: &str) -> Result<url::Url, String> {
    let url = url::Url::parse(u).map_err(|e| format!("{u:?} is not a URL ({e})"))?;
    match url.scheme() {
        "http" | "https" if url.host().is_some() => Ok(url),
        _ => Err(format!("{u:?} must be an http(s) URL with a host")),
    }
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
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

#[cfg(test)]
mod tests;
