//! The holds: quarantining and releasing a device, and the kernel's table
//! that enforces them, which cuts only what a held device may be cut by.

use std::net::IpAddr;

use ipnet::IpNet;

use super::{DeviceView, Devices, Hold, Mac, MAX_REASON};
use crate::devices::quarantine::{self, Never, MAX_AUTO_HOLDS, MAX_AUTO_HOLDS_PER_HOUR};
use crate::devices::{clean, Device};

/// Who a hold the agent made by itself is by.
pub(super) const AUTO: &str = "homewarden (devices.new: quarantine)";

impl Devices {
    /// A device by name, MAC or address; an address the Pi leased is its
    /// lessee's, not whoever answered ARP for it last.
    pub(super) fn resolve(&self, what: &str) -> Result<Mac, String> {
        if let Some(mac) = what
            .parse::<IpAddr>()
            .ok()
            .and_then(|ip| self.leases.get(&ip))
        {
            if self.inv.get(mac).is_some() {
                return Ok(*mac);
            }
        }
        self.inv
            .find(what)
            .map(|d| d.mac)
            .map_err(|e| e.to_string())
    }

    /// Whether the agent may hold one more new device by itself: a flood of
    /// made-up MACs gets a few holds, not one each.
    pub(super) fn may_hold_by_itself(&mut self, now: i64) -> bool {
        while self.auto_holds.front().is_some_and(|&t| now - t >= 3600) {
            self.auto_holds.pop_front();
        }
        let held = self.q.holds.values().filter(|h| h.by == AUTO).count();
        let ok = held < MAX_AUTO_HOLDS && self.auto_holds.len() < MAX_AUTO_HOLDS_PER_HOUR;
        if !ok {
            tracing::warn!(
                held,
                "devices.new: quarantine: {MAX_AUTO_HOLDS} held at once or {MAX_AUTO_HOLDS_PER_HOUR} this hour already; a new device is listed, not held"
            );
        }
        ok
    }

    pub(super) async fn quarantine(
        &mut self,
        device: &str,
        for_secs: Option<u64>,
        reason: Option<String>,
        force: bool,
        by: String,
        now: i64,
    ) -> Result<DeviceView, String> {
        let mac = self.resolve(device)?;
        let d = self.inv.get(&mac).ok_or("device gone")?;
        if self.protected(d) && !force {
            return Err(format!(
                "{} is on enforcement.do_not_break: add --force to quarantine it anyway",
                d.label()
            ));
        }
        let mac = d.mac;
        let until = match for_secs {
            Some(s) => Some(now.saturating_add(i64::try_from(s).map_err(|_| "--for: too long")?)),
            None => None,
        };
        self.q.holds.insert(
            mac,
            Hold {
                since: now,
                until,
                reason: reason.and_then(|r| clean(&r, MAX_REASON)),
                by,
            },
        );
        self.commit(now).await.map_err(|e| {
            format!("quarantine recorded (tried again every scan), but the kernel refused it: {e}")
        })?;
        tracing::warn!(mac = %mac, until = ?until, "device quarantined");
        self.view_of(&mac).ok_or_else(|| "device gone".into())
    }

    /// After a change of the holds: the kernel's table, the file, status.
    pub(super) async fn commit(&mut self, now: i64) -> Result<(), String> {
        self.dirty = true;
        let loaded = self.sync_table().await;
        self.save();
        self.publish(now);
        loaded
    }

    pub(super) async fn release(&mut self, device: &str, now: i64) -> Result<DeviceView, String> {
        let mac = self.resolve(device)?;
        if self.q.holds.remove(&mac).is_none() {
            return Err(format!(
                "{} is not quarantined",
                self.inv.get(&mac).map_or(mac.to_string(), Device::label)
            ));
        }
        self.commit(now)
            .await
            .map_err(|e| format!("released, but the kernel refused the new table: {e}"))?;
        tracing::info!(mac = %mac, "device released from quarantine");
        self.view_of(&mac).ok_or_else(|| "device gone".into())
    }

    /// What no hold may cut: the config's infrastructure, the Pi's own
    /// addresses and default gateways, the do-not-break devices.
    fn never(&self) -> Never {
        let local = self.local.own.iter().chain(&self.local.gateways);
        let spared = (self
            .s
            .infrastructure
            .iter()
            .chain(&self.s.do_not_break)
            .copied())
        .chain(local.map(|a| IpNet::from(*a)))
        .collect();
        Never { spared }
    }

    /// Loads the quarantine's table when it differs from what the kernel has.
    pub(super) async fn sync_table(&mut self) -> Result<(), String> {
        let never = self.never();
        let held: Vec<(Mac, Vec<IpAddr>)> = self
            .q
            .holds
            .keys()
            .map(|m| {
                (
                    *m,
                    quarantine::addresses_to_cut(&self.inv, m, &self.leases, &never),
                )
            })
            .collect();
        let mut leave = self.s.leave.clone();
        leave.gateway.extend(self.local.gateways.iter().copied());
        let script = quarantine::render(&held, &leave);
        if self.loaded.as_deref() == Some(script.as_str()) {
            return Ok(());
        }
        let load = self.s.load.clone();
        let s = script.clone();
        let r = tokio::task::spawn_blocking(move || load(&s))
            .await
            .unwrap_or_else(|e| Err(e.to_string()));
        match r {
            Ok(()) => {
                self.loaded = Some(script);
                self.table_error = None;
                Ok(())
            }
            // Nobody held, and no table to take away unless this agent (with
            // the right to) made one: an agent run by hand needs none.
            Err(e) if held.is_empty() => {
                tracing::debug!("quarantine table (nobody held): {e}");
                Ok(())
            }
            Err(e) => {
                let e = format!("quarantine table: {e}");
                tracing::error!("{e}");
                self.table_error = Some(e.clone());
                Err(e)
            }
        }
    }
}
