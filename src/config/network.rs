//! Where the Pi sits in the home's network (`network:`).

use super::*;

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
    /// Where the Pi is the devices' resolver (ap, two-interface gateway):
    /// the answers that tell browsers and phones this network must see DNS.
    pub canaries: Canaries,
}

/// The canary domains the Pi's resolver answers (`network.canaries`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Canaries {
    /// `use-application-dns.net` answers NXDOMAIN: Firefox leaves its
    /// default DNS over HTTPS off (one a person turned on stays on).
    pub firefox: bool,
    /// `mask.icloud.com` and `mask-h2.icloud.com` answer NXDOMAIN: Apple
    /// devices are told iCloud Private Relay is off on this network, as
    /// Apple asks of networks that must see DNS.
    pub private_relay: bool,
}

impl Default for Canaries {
    fn default() -> Self {
        Canaries {
            firefox: true,
            private_relay: true,
        }
    }
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
            canaries: Canaries::default(),
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
