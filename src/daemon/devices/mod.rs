//! The devices' owner: a task of its own that reads dnsmasq's leases and the
//! neighbour table, keeps the inventory and the quarantine, loads the
//! quarantine's table into the kernel, and tells the incidents' owner which
//! device each address is (through a published directory). A new device
//! raises one notice through the outbox. Nothing here is on the alert path:
//! a slow `ip` or `nft` only delays the next scan.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch, Notify};

use crate::config::NewDevice;
use crate::devices::oui::{self, Vendor};
use crate::devices::quarantine::{Hold, Quarantine, MAX_REASON};
use crate::devices::sight::{self, Sighting};
pub use crate::devices::view::DeviceView;
use crate::devices::{Device, Inventory, Mac, Tag};
use crate::intel::unix_now;
use crate::respond::outbox::{Action, Notice, PushNotice};
use crate::respond::{self, SharedOutbox};

mod holds;
mod notice;
mod saved;
mod settings;
mod status;
mod system;

use notice::new_device_text;
pub use saved::{forget as forget_saved, saved_list};
use saved::{load_saved, sort_views, Saved};
pub use settings::Settings;
pub use status::{DevicesStatus, Quarantined};
pub use system::lift_leftover;
use system::{local_infrastructure, neighbours, read_vendor_classes, Local};

use super::shutdown::Stop;
use super::supervisor::Heart;

/// The inventory and quarantine, under the state directory (one file, so
/// the two never disagree after a crash).
pub const DEVICES_FILE: &str = "devices.json";
/// Where the lease script leaves each device's DHCP vendor class, beside the leases.
pub const VENDOR_DIR: &str = "dhcp-vendor";
/// New-device notices per hour at most: a flood of made-up MACs is not a flood of mail.
pub const MAX_NOTICES_PER_HOUR: usize = 10;

/// Which device each address is, for the incidents' owner.
pub type Directory = HashMap<IpAddr, Tag>;

/// Loads an nft script (the system's `nft -f -`, or a test's stand-in).
pub type Loader = Arc<dyn Fn(&str) -> Result<(), String> + Send + Sync>;

/// What others ask of the devices' owner.
#[derive(Debug)]
pub enum Msg {
    /// Every device.
    List(oneshot::Sender<Vec<DeviceView>>),
    /// Name a device (`None` takes the name away).
    Name {
        /// Name, MAC or address.
        device: String,
        /// The new name.
        name: Option<String>,
        /// The device as it is now, or why not.
        reply: oneshot::Sender<Result<DeviceView, String>>,
    },
    /// Quarantine a device.
    Quarantine {
        /// Name, MAC or address.
        device: String,
        /// For how long (seconds); until released if absent.
        for_secs: Option<u64>,
        /// Why.
        reason: Option<String>,
        /// Even a do-not-break device.
        force: bool,
        /// Who asked.
        by: String,
        /// The device as it is now, or why not.
        reply: oneshot::Sender<Result<DeviceView, String>>,
    },
    /// Release a device from quarantine.
    Release {
        /// Name, MAC or address.
        device: String,
        /// The device as it is now, or why not.
        reply: oneshot::Sender<Result<DeviceView, String>>,
    },
    /// Forget every device and release every hold (factory reset).
    Forget(oneshot::Sender<()>),
}

/// The devices' owner.
pub struct Devices {
    s: Settings,
    inv: Inventory,
    q: Quarantine,
    baseline: bool,
    dirty: bool,
    outbox: Option<SharedOutbox>,
    wake: Arc<Notify>,
    directory: watch::Sender<Arc<Directory>>,
    view: watch::Sender<DevicesStatus>,
    heart: Heart,
    /// The table the kernel has, as last loaded.
    loaded: Option<String>,
    /// Why the neighbour table could not be read.
    scan_error: Option<String>,
    /// Why the kernel refused the quarantine's table.
    table_error: Option<String>,
    /// When the inventory was last written (unix seconds).
    saved_at: i64,
    notices: VecDeque<i64>,
    last_new: Option<Tag>,
    /// The Pi's live leases by address (empty where it serves no DHCP).
    leases: HashMap<IpAddr, Mac>,
    /// The Pi's own addresses and default gateways, as the system has them.
    local: Local,
    /// When the agent held a new device by itself (`devices.new: quarantine`).
    auto_holds: VecDeque<i64>,
}

/// How often last-seen times alone are written (seconds).
const SAVE_SEEN_EVERY: i64 = 900;

/// How soon the owner turns again at the latest.
const TURN_WITHIN: Duration = Duration::from_secs(120);

impl Devices {
    /// Reads the inventory back. Returns the owner, the directory of
    /// addresses and what status shows.
    pub fn new(
        s: Settings,
        outbox: Option<SharedOutbox>,
        wake: Arc<Notify>,
    ) -> (
        Devices,
        watch::Receiver<Arc<Directory>>,
        watch::Receiver<DevicesStatus>,
    ) {
        let saved = load_saved(&s.state_dir.join(DEVICES_FILE));
        let (directory, dir_rx) = watch::channel(Arc::new(Directory::new()));
        let (view, view_rx) = watch::channel(DevicesStatus::default());
        let me = Devices {
            s,
            inv: saved.inventory,
            q: saved.quarantine,
            baseline: saved.baseline,
            dirty: false,
            outbox,
            wake,
            directory,
            view,
            heart: Heart::new("devices", TURN_WITHIN),
            loaded: None,
            scan_error: None,
            table_error: None,
            saved_at: unix_now() as i64,
            notices: VecDeque::new(),
            last_new: None,
            leases: HashMap::new(),
            local: Local::default(),
            auto_holds: VecDeque::new(),
        };
        me.publish(unix_now() as i64);
        (me, dir_rx, view_rx)
    }

    /// What this task reports to the supervisor with.
    pub fn heart(&self) -> Heart {
        self.heart.clone()
    }

    /// Puts the quarantine back into the kernel, then scans and answers
    /// until the stop; saves before it lets `stop` go.
    pub async fn run(mut self, mut inbox: mpsc::Receiver<Msg>, mut stop: Stop) {
        let _ = self.sync_table().await;
        let mut tick = tokio::time::interval(self.s.scan);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            self.heart.alive(TURN_WITHIN.max(self.s.scan * 2));
            tokio::select! {
                biased;
                _ = stop.wait() => break,
                Some(msg) = inbox.recv() => self.on_msg(msg).await,
                _ = tick.tick() => {
                    let seen = self.read_sightings().await;
                    self.scan(seen, unix_now() as i64).await;
                }
            }
        }
        self.save();
        drop(stop);
    }

    /// Every sighting the system offers now: leases (with the vendor
    /// classes the lease script kept) and neighbours.
    async fn read_sightings(&mut self) -> Vec<Sighting> {
        let now = unix_now();
        let mut out = match tokio::fs::read_to_string(&self.s.leases).await {
            Ok(t) => sight::leases(&t, now),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => {
                tracing::warn!("{}: {e}", self.s.leases.display());
                Vec::new()
            }
        };
        if !out.is_empty() {
            let classes = read_vendor_classes(&self.s.leases).await;
            for s in &mut out {
                s.vendor_class = classes.get(&s.mac).cloned();
            }
        }
        if let Some(dev) = self.s.interface.clone() {
            match local_infrastructure().await {
                Ok(local) => self.local = local,
                Err(e) => tracing::warn!("{e}"),
            }
            match neighbours(&dev).await {
                Ok(n) => {
                    out.extend(n);
                    self.scan_error = None;
                }
                Err(e) => {
                    if self.scan_error.as_deref() != Some(e.as_str()) {
                        tracing::warn!("{e}");
                    }
                    self.scan_error = Some(e);
                }
            }
        }
        out
    }

    /// Takes in what was seen at `now`: new devices, moves, expired holds,
    /// the bound; then the kernel's table, the directory and the file.
    pub async fn scan(&mut self, seen: Vec<Sighting>, now: i64) {
        self.leases = seen
            .iter()
            .filter(|s| s.leased)
            .map(|s| (s.ip, s.mac))
            .collect();
        let new_macs: Vec<Mac> = seen
            .iter()
            .map(|s| s.mac)
            .filter(|m| self.inv.get(m).is_none())
            .collect();
        let vendors = if new_macs.is_empty() {
            HashMap::new()
        } else {
            let path = self.s.oui.clone();
            tokio::task::spawn_blocking(move || oui::lookup_file(&path, &new_macs))
                .await
                .unwrap_or_default()
        };
        let mut joined = Vec::new();
        for s in &seen {
            let v = vendors.get(&s.mac).cloned().unwrap_or(Vendor::Unknown);
            match self.inv.see(s, now, |_| v) {
                crate::devices::inventory::Seen::New => {
                    self.dirty = true;
                    joined.push(s.mac);
                }
                crate::devices::inventory::Seen::Moved => self.dirty = true,
                crate::devices::inventory::Seen::Again => {}
            }
        }
        // Last-seen times alone are saved every quarter of an hour, not
        // every scan: the card is not written every 10 s for nothing.
        if now - self.saved_at >= SAVE_SEEN_EVERY {
            self.dirty = true;
        }
        if self.baseline {
            for mac in joined {
                self.joined(mac, now);
            }
        } else {
            // The first scan learns the home as it is: no notice, no
            // quarantine, and these devices are never pushed out by others.
            tracing::info!(devices = self.inv.len(), "device inventory started");
            self.inv.mark_baseline();
            self.baseline = true;
            self.dirty = true;
        }
        let q = &self.q;
        let gone = self.inv.bound(self.s.max, |m| q.holds(m));
        if !gone.is_empty() {
            tracing::info!(
                devices = gone.len(),
                "inventory full: longest unseen devices forgotten"
            );
            self.dirty = true;
        }
        if !self.q.expire(now).is_empty() {
            self.dirty = true;
        }
        let _ = self.sync_table().await;
        self.save();
        self.publish(now);
    }

    /// A device seen for the first time: what the config says it raises.
    fn joined(&mut self, mac: Mac, now: i64) {
        let Some(d) = self.inv.get(&mac) else {
            return;
        };
        let tag = d.tag();
        tracing::info!(device = %tag.name, mac = %mac, ip = ?d.current(), "new device");
        self.last_new = Some(tag);
        if self.s.new == NewDevice::Off {
            return;
        }
        let wanted = self.s.new == NewDevice::Quarantine && !self.protected(d);
        let quarantined = wanted && self.may_hold_by_itself(now);
        let Some(d) = self.inv.get(&mac) else {
            return;
        };
        let text = new_device_text(d, quarantined);
        if quarantined {
            self.auto_holds.push_back(now);
            self.q.holds.insert(
                mac,
                Hold {
                    since: now,
                    until: None,
                    reason: Some("new device".into()),
                    by: holds::AUTO.into(),
                },
            );
        }
        while self.notices.front().is_some_and(|&t| now - t >= 3600) {
            self.notices.pop_front();
        }
        if self.notices.len() >= MAX_NOTICES_PER_HOUR {
            tracing::warn!(mac = %mac, "new-device notices: {MAX_NOTICES_PER_HOUR} this hour already; listed only");
            return;
        }
        self.notices.push_back(now);
        let subject = format!(
            "New device on the home network: {}",
            self.inv.get(&mac).map_or(String::new(), Device::label)
        );
        self.notify(&format!("device-new-{mac}"), &subject, &text);
    }

    /// Queues one notice for the mail and each push target, once per key.
    fn notify(&self, key: &str, subject: &str, text: &str) {
        let Some(outbox) = self.outbox.as_ref() else {
            return;
        };
        let notice = Notice {
            subject: subject.to_string(),
            text: text.to_string(),
        };
        let mut actions = Vec::new();
        if self.s.mail_on {
            actions.push((key.to_string(), Action::MailNotice(notice.clone())));
        }
        for target in &self.s.push_to {
            let push = Action::PushNotice(PushNotice {
                target: target.clone(),
                notice: notice.clone(),
            });
            actions.push((format!("{key}:push-{target}"), push));
        }
        let mut outbox = respond::lock(outbox);
        for (key, action) in actions {
            if let Err(e) = outbox.put(&key, action, false, unix_now()) {
                tracing::error!("{e}");
            }
        }
        drop(outbox);
        self.wake.notify_one();
    }

    /// On the do-not-break list by an address that is its own: one another
    /// device (another MAC) was seen at first is a claim, not a protection
    /// (a new device answering ARP for the do-not-break camera must not
    /// escape the auto-hold by it).
    fn protected(&self, d: &Device) -> bool {
        d.addresses.iter().any(|a| {
            self.s.do_not_break.iter().any(|n| n.contains(&a.ip))
                && !self.inv.iter().any(|o| {
                    o.mac != d.mac
                        && o.addresses
                            .iter()
                            .any(|b| b.ip == a.ip && b.first_seen <= a.first_seen)
                })
        })
    }

    async fn on_msg(&mut self, msg: Msg) {
        let now = unix_now() as i64;
        match msg {
            Msg::List(reply) => {
                let _ = reply.send(self.list());
            }
            Msg::Name {
                device,
                name,
                reply,
            } => {
                let r = match self.inv.find(&device).map(|d| d.mac) {
                    Ok(mac) => {
                        self.inv.name(&mac, name.as_deref());
                        self.dirty = true;
                        self.save();
                        self.publish(now);
                        Ok(self.view_of(&mac))
                    }
                    Err(e) => Err(e.to_string()),
                };
                let _ = reply.send(r.and_then(|v| v.ok_or_else(|| "device gone".to_string())));
            }
            Msg::Quarantine {
                device,
                for_secs,
                reason,
                force,
                by,
                reply,
            } => {
                let r = self
                    .quarantine(&device, for_secs, reason, force, by, now)
                    .await;
                let _ = reply.send(r);
            }
            Msg::Release { device, reply } => {
                let r = self.release(&device, now).await;
                let _ = reply.send(r);
            }
            Msg::Forget(reply) => {
                self.forget(now).await;
                let _ = reply.send(());
            }
        }
    }

    /// Forgets every device, name and hold (factory reset): the kernel's
    /// table goes if anyone was held, and so does the file. The next scan learns the home
    /// afresh, silently, as a new appliance's first scan does.
    pub async fn forget(&mut self, now: i64) {
        let held = !self.q.holds.is_empty();
        self.inv = Inventory::default();
        self.q = Quarantine::default();
        self.baseline = false;
        self.last_new = None;
        self.notices.clear();
        // With nobody held the kernel has no table of ours to take away.
        if held {
            let _ = self.sync_table().await;
        }
        saved::forget(&self.s.state_dir);
        self.dirty = false;
        self.publish(now);
    }

    fn view_of(&self, mac: &Mac) -> Option<DeviceView> {
        let d = self.inv.get(mac)?;
        Some(DeviceView {
            label: d.label(),
            device: d.clone(),
            quarantine: self.q.holds.get(mac).cloned(),
            incidents_24h: 0,
            blocked_24h: 0,
        })
    }

    /// Every device, the most recently seen first.
    pub fn list(&self) -> Vec<DeviceView> {
        let mut v: Vec<DeviceView> = self
            .inv
            .iter()
            .filter_map(|d| self.view_of(&d.mac))
            .collect();
        sort_views(&mut v);
        v
    }

    fn publish(&self, now: i64) {
        let mut dir: HashMap<IpAddr, (i64, Tag)> = HashMap::new();
        for d in self.inv.iter() {
            for a in &d.addresses {
                let newer = dir.get(&a.ip).is_none_or(|(t, _)| a.last_seen > *t);
                if newer {
                    dir.insert(a.ip, (a.last_seen, d.tag()));
                }
            }
        }
        self.directory.send_replace(Arc::new(
            dir.into_iter().map(|(ip, (_, t))| (ip, t)).collect(),
        ));
        self.view.send_replace(DevicesStatus {
            enabled: true,
            known: self.inv.len(),
            seen_24h: self
                .inv
                .iter()
                .filter(|d| now - d.last_seen < 86_400)
                .count(),
            quarantined: self
                .q
                .holds
                .iter()
                .map(|(m, h)| Quarantined {
                    mac: m.to_string(),
                    name: self.inv.get(m).map_or(m.to_string(), Device::label),
                    since: h.since,
                    until: h.until,
                    reason: h.reason.clone(),
                })
                .collect(),
            last_new: self.last_new.clone(),
            error: self.table_error.clone().or_else(|| self.scan_error.clone()),
        });
    }

    fn save(&mut self) {
        if !self.dirty {
            return;
        }
        let path = self.s.state_dir.join(DEVICES_FILE);
        let saved = Saved {
            baseline: self.baseline,
            inventory: self.inv.clone(),
            quarantine: self.q.clone(),
        };
        let r = serde_json::to_vec(&saved)
            .map_err(std::io::Error::other)
            .and_then(|b| crate::fsutil::write_atomic(&path, &b));
        match r {
            Ok(()) => {
                self.dirty = false;
                self.saved_at = unix_now() as i64;
            }
            Err(e) => tracing::error!("{}: {e}", path.display()),
        }
    }
}

#[cfg(test)]
mod tests;
