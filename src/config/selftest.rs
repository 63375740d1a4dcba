//! Settings of the self-test (`selftest:`).

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

/// Self-test settings (the `selftest:` section).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SelftestConfig {
    /// Replay the capture through `suricata -r` after rule reloads and on demand.
    pub replay: bool,
    /// The capture (one packet to the canary address).
    pub pcap: PathBuf,
    /// The suricata binary for the replay.
    pub suricata: PathBuf,
    /// Suricata's main config for the replay.
    pub suricata_config: PathBuf,
    /// Longest a replay may take.
    #[serde(deserialize_with = "crate::config::de_duration")]
    pub timeout: Duration,
}

impl Default for SelftestConfig {
    fn default() -> Self {
        SelftestConfig {
            replay: true,
            pcap: PathBuf::from("/usr/share/homewarden/selftest.pcap"),
            suricata: PathBuf::from("/usr/bin/suricata"),
            suricata_config: PathBuf::from("/etc/suricata/suricata.yaml"),
            timeout: Duration::from_secs(120),
        }
    }
}
