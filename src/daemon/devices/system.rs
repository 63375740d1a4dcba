//! The system around the devices' owner: the vendor classes the lease
//! script kept, the kernel's neighbour table, and a leftover quarantine
//! table taken away when the inventory is off.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use super::VENDOR_DIR;
use crate::devices::quarantine;
use crate::devices::sight::{self, Sighting};
use crate::devices::{clean, Mac};

/// The vendor classes the lease script left beside the leases (a file per MAC).
pub(super) async fn read_vendor_classes(leases: &Path) -> HashMap<Mac, String> {
    let Some(dir) = leases.parent().map(|p| p.join(VENDOR_DIR)) else {
        return HashMap::new();
    };
    let mut out = HashMap::new();
    let Ok(mut entries) = tokio::fs::read_dir(&dir).await else {
        return out;
    };
    while let Ok(Some(e)) = entries.next_entry().await {
        let Some(mac) = e.file_name().to_str().and_then(|n| n.parse::<Mac>().ok()) else {
            continue;
        };
        if let Ok(text) = tokio::fs::read_to_string(e.path()).await {
            if let Some(c) = clean(text.lines().next().unwrap_or(""), 64) {
                out.insert(mac, c);
            }
        }
        if out.len() >= crate::config::devices::MAX_DEVICES {
            break;
        }
    }
    out
}

/// The neighbours of `dev` from `ip -json neigh`.
pub(super) async fn neighbours(dev: &str) -> Result<Vec<Sighting>, String> {
    let out = tokio::time::timeout(
        Duration::from_secs(5),
        crate::child::tokio_command("ip")
            .args(["-json", "neigh", "show", "dev", dev])
            .kill_on_drop(true)
            .output(),
    )
    .await
    .map_err(|_| "ip neigh: no answer within 5 s".to_string())?
    .map_err(|e| format!("ip neigh: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "ip neigh show dev {dev}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    sight::neighbours(&out.stdout).map_err(|e| format!("ip neigh: {e}"))
}

/// With the inventory off no hold may outlive it, unseen in status: a
/// quarantine table an earlier run left (it lasts until a reboot) is taken
/// away, and the log says so.
pub async fn lift_leftover() {
    let table = crate::child::tokio_command("nft")
        .args(["list", "table", "inet", quarantine::TABLE])
        .kill_on_drop(true)
        .output();
    let listed = tokio::time::timeout(Duration::from_secs(5), table)
        .await
        .is_ok_and(|o| o.is_ok_and(|o| o.status.success()));
    if !listed {
        return;
    }
    let script = quarantine::render(&[], &quarantine::Leave::default());
    let r = tokio::task::spawn_blocking(move || crate::enforce::firewall::load(&script))
        .await
        .map_err(|e| e.to_string())
        .and_then(|r| r.map_err(|e| e.to_string()));
    match r {
        Ok(()) => tracing::warn!("devices.enabled is false: every quarantine lifted"),
        Err(e) => tracing::error!(
            "devices.enabled is false, but the quarantine's table (inet {}) stays: {e}",
            quarantine::TABLE
        ),
    }
}
