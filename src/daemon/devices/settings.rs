//! What the devices' owner takes from the config.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use ipnet::IpNet;

use super::Loader;
use crate::config::{Config, NewDevice};
use crate::devices::oui;
use crate::devices::quarantine;

/// What the owner needs of the config.
#[derive(Clone)]
pub struct Settings {
    /// Where the inventory is saved.
    pub state_dir: PathBuf,
    /// dnsmasq's lease file.
    pub leases: PathBuf,
    /// The interface whose neighbours are read; `None`: no neighbour table (tests).
    pub interface: Option<String>,
    /// How often.
    pub scan: Duration,
    /// What a new device raises.
    pub new: NewDevice,
    /// What quarantined devices may still reach.
    pub leave: quarantine::Leave,
    /// Most devices kept.
    pub max: usize,
    /// Devices that ask `--force` to be quarantined.
    pub do_not_break: Vec<IpNet>,
    /// Addresses no hold may cut, as the config names them (the gateways,
    /// resolvers, the Pi's devices-side address); the Pi's addresses and
    /// default routes are added as the system has them.
    pub infrastructure: Vec<IpNet>,
    /// The OUI registry.
    pub oui: PathBuf,
    /// Notices go out by mail.
    pub mail_on: bool,
    /// And to these `notify:` targets.
    pub push_to: Vec<String>,
    /// How the quarantine's table reaches the kernel.
    pub load: Loader,
}

impl Settings {
    /// From the config; the table goes in with the system's nft.
    pub fn from_config(cfg: &Config) -> Settings {
        let d = &cfg.devices;
        Settings {
            state_dir: cfg.state_dir.clone(),
            leases: d.leases.clone(),
            interface: Some(d.interface.clone().unwrap_or_else(|| {
                crate::enforce::firewall::DeviceSide::from_config(&cfg.network).lan
            })),
            scan: d.scan,
            new: d.new,
            leave: quarantine::Leave {
                allow: d.quarantine_allow.clone(),
                dns: cfg.network.dns.clone(),
                gateway: cfg.network.gateway.clone(),
                own_network: cfg.network.routes_own_subnet(),
            },
            max: d.max,
            do_not_break: cfg.enforcement.do_not_break.clone(),
            infrastructure: infrastructure(&cfg.network),
            oui: PathBuf::from(oui::OUI_FILE),
            mail_on: !cfg.mail.to.is_empty(),
            push_to: cfg.notify.iter().map(|t| t.name().to_string()).collect(),
            load: Arc::new(|script: &str| {
                crate::enforce::firewall::load(script).map_err(|e| e.to_string())
            }),
        }
    }
}

/// What the config says the home's infrastructure is: no hold may cut it.
fn infrastructure(n: &crate::config::Network) -> Vec<IpNet> {
    let mut out: Vec<IpNet> = n
        .gateway
        .iter()
        .chain(&n.dns)
        .map(|a| IpNet::from(*a))
        .collect();
    if n.routes_own_subnet() {
        out.push(IpNet::from(std::net::IpAddr::V4(n.lan_address.addr())));
    }
    out
}
