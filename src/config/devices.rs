//! `devices:`: the inventory of the home's devices, what a new one raises,
//! and what a quarantined one may still reach.

use std::path::PathBuf;
use std::time::Duration;

use ipnet::IpNet;
use serde::Deserialize;

/// Most devices kept: far past any home, and a bound on memory and disk.
pub const MAX_DEVICES: usize = 4096;

/// What a device seen for the first time raises.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum NewDevice {
    /// Nothing: it is only listed.
    Off,
    /// One low-severity notice (mail), at most once per device.
    #[default]
    Notice,
    /// The notice, and the device is quarantined until the owner releases it.
    Quarantine,
}

/// The device inventory and quarantine.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DevicesConfig {
    /// Keep an inventory at all.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// What a new device raises.
    #[serde(default)]
    pub new: NewDevice,
    /// How often the leases and the neighbour table are read.
    #[serde(default = "scan", deserialize_with = "super::de::de_duration")]
    pub scan: Duration,
    /// dnsmasq's lease file (the placement's, where the Pi hands out addresses).
    #[serde(default = "leases")]
    pub leases: PathBuf,
    /// The interface whose neighbours are the devices (default: the placement's devices' side).
    #[serde(default)]
    pub interface: Option<String>,
    /// What a quarantined device may still reach besides the Pi's DHCP and
    /// DNS (a vendor's update server, say).
    #[serde(default)]
    pub quarantine_allow: Vec<IpNet>,
    /// Most devices kept; the longest unseen unnamed ones go first.
    #[serde(default = "max")]
    pub max: usize,
}

fn yes() -> bool {
    true
}
fn scan() -> Duration {
    Duration::from_secs(10)
}
fn leases() -> PathBuf {
    PathBuf::from("/run/homewarden/dnsmasq.leases")
}
fn max() -> usize {
    1024
}

impl Default for DevicesConfig {
    fn default() -> Self {
        DevicesConfig {
            enabled: true,
            new: NewDevice::default(),
            scan: scan(),
            leases: leases(),
            interface: None,
            quarantine_allow: Vec::new(),
            max: max(),
        }
    }
}

impl DevicesConfig {
    /// Checks the bounds; `(key, message)` on error.
    pub fn check(&self) -> Result<(), (String, String)> {
        if !(1..=MAX_DEVICES).contains(&self.max) {
            return Err((
                "devices.max".into(),
                format!("{} is not a number of devices of 1-{MAX_DEVICES}", self.max),
            ));
        }
        if self.scan < Duration::from_secs(1) || self.scan > Duration::from_secs(3600) {
            return Err((
                "devices.scan".into(),
                format!(
                    "{} is not an interval of 1s-1h",
                    humantime::format_duration(self.scan)
                ),
            ));
        }
        if let Some(i) = &self.interface {
            if i.is_empty() || i.len() > 15 || i.contains(['/', ' ', '"']) {
                return Err((
                    "devices.interface".into(),
                    format!("{i:?} is not an interface name"),
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn on_by_default_with_a_notice_and_bounds_are_checked() {
        let d: DevicesConfig = serde_yaml_ng::from_str("{}").unwrap();
        assert!(d.enabled && d.new == NewDevice::Notice && d.check().is_ok());
        let q: DevicesConfig =
            serde_yaml_ng::from_str("new: quarantine\nquarantine_allow: [192.0.2.0/24]").unwrap();
        assert_eq!(q.new, NewDevice::Quarantine);
        for (yaml, key) in [
            ("max: 0", "devices.max"),
            ("max: 100000", "devices.max"),
            ("scan: 0s", "devices.scan"),
            ("interface: \"eth0 x\"", "devices.interface"),
        ] {
            let d: DevicesConfig = serde_yaml_ng::from_str(yaml).unwrap();
            assert_eq!(d.check().unwrap_err().0, key, "{yaml}");
        }
        assert!(serde_yaml_ng::from_str::<DevicesConfig>("new: maybe").is_err());
    }

    /// The commented example in the shipped config, uncommented, is valid.
    #[test]
    fn the_example_in_the_shipped_config_is_valid() {
        let block = crate::config::shipped_example("devices");
        #[derive(Deserialize)]
        struct Section {
            devices: DevicesConfig,
        }
        let s: Section = serde_yaml_ng::from_str(&block).unwrap();
        assert_eq!(s.devices.new, NewDevice::Notice, "{block}");
        assert_eq!(s.devices.quarantine_allow.len(), 1, "{block}");
        assert_eq!(s.devices.check(), Ok(()));
    }
}
