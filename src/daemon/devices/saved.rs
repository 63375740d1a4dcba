//! The devices' file (inventory and quarantine in one, written by the
//! owner's `save`), read back at start and by `devices` without an agent.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::{DeviceView, DEVICES_FILE};
use crate::devices::quarantine::Quarantine;
use crate::devices::Inventory;

/// What is saved.
#[derive(Default, Serialize, Deserialize)]
pub(super) struct Saved {
    /// The first scan is done: devices after it are new.
    #[serde(default)]
    pub baseline: bool,
    /// The devices.
    #[serde(default)]
    pub inventory: Inventory,
    /// Who is held.
    #[serde(default)]
    pub quarantine: Quarantine,
}

/// The devices as the last running agent saved them, for `devices` without
/// a daemon (no 24-hour counts: those live in the running agent only).
pub fn saved_list(state_dir: &Path) -> std::io::Result<Vec<DeviceView>> {
    let path = state_dir.join(DEVICES_FILE);
    let bytes = match std::fs::read(&path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        r => r.map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", path.display())))?,
    };
    let saved: Saved = serde_json::from_slice(&bytes).map_err(|e| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("{}: {e}", path.display()),
        )
    })?;
    let (s, q) = (saved.inventory, saved.quarantine);
    let mut v: Vec<DeviceView> = s
        .iter()
        .map(|d| DeviceView {
            label: d.label(),
            device: d.clone(),
            quarantine: q.holds.get(&d.mac).cloned(),
            incidents_24h: 0,
            blocked_24h: 0,
        })
        .collect();
    sort_views(&mut v);
    Ok(v)
}

/// Removes the devices' file (factory reset), whether or not an owner runs.
pub fn forget(state_dir: &Path) {
    let path = state_dir.join(DEVICES_FILE);
    match std::fs::remove_file(&path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            tracing::error!("{}: {e}", path.display());
        }
        _ => {}
    }
}

/// The most recently seen first, then by name.
pub(super) fn sort_views(v: &mut [DeviceView]) {
    v.sort_by(|a, b| {
        b.device
            .last_seen
            .cmp(&a.device.last_seen)
            .then(a.label.cmp(&b.label))
    });
}

/// The saved inventory; an unreadable file is set aside (and said so), not lost.
pub(super) fn load_saved(path: &Path) -> Saved {
    match std::fs::read(path) {
        Ok(b) => match serde_json::from_slice(&b) {
            Ok(s) => s,
            Err(e) => {
                let aside = crate::fsutil::set_aside(path);
                tracing::error!(
                    "{}: unreadable ({e}); moved to {}",
                    path.display(),
                    aside.display()
                );
                Saved::default()
            }
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Saved::default(),
        Err(e) => {
            tracing::error!("{}: {e}", path.display());
            Saved::default()
        }
    }
}
