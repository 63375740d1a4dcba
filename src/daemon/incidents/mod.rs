//! The incidents' owner: a task of its own that reads Suricata's alerts,
//! triages them into incidents, counts hits, remembers acknowledgements and
//! queues what each incident asks of MISP and the mail. Nothing it does waits
//! on enforcement: a long render, apply or self-test replay in the agent never
//! stops alerts from being read (Suricata drops eve records it cannot write).
//! It learns where a hit came from through the [`Index`] the agent publishes,
//! and tells the agent (which owns the shadow book) when a do-not-break device
//! talked to an observed indicator.

use std::collections::HashSet;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use ipnet::IpNet;
use tokio::sync::{mpsc, oneshot, watch, Notify};

use crate::alerts::eve::Alert;
use crate::alerts::hits::{Hits, Recent};
use crate::alerts::triage::{Incident, Outcome, Triage};
use crate::config::{Config, SourceConfig};
use crate::enforce::suricata::render::encrypted_dns;
use crate::intel::misp::{EditBody, EventEdit};
use crate::intel::set::Index;
use crate::intel::unix_now;
use crate::respond::outbox::{Action, EventFor, EventUpdate, MailPayload, PushPayload, Sighting};
use crate::respond::{self, SharedOutbox};

mod report;

use report::{misp_event, update_due};

use super::agent::AlertsStatus;
use super::devices::Directory;
use super::shutdown::Stop;
use super::supervisor::Heart;

/// Acknowledged incident ids, under the state directory.
pub const ACKS_FILE: &str = "acks.json";
/// Open incidents, under the state directory (so a restart does not report them again).
pub const INCIDENTS_FILE: &str = "incidents.json";
/// How often changed incidents are saved and counts published.
const SAVE_EVERY: Duration = Duration::from_secs(1);
/// How often closed incidents are let go.
const EXPIRE_EVERY: Duration = Duration::from_secs(5);
/// Incidents listed in status.
pub const RECENT_INCIDENTS: usize = 10;

/// What others ask of the incidents' owner.
#[derive(Debug)]
pub enum Msg {
    /// Acknowledge every open high incident; the reply is how many were new.
    Ack(oneshot::Sender<usize>),
    /// The values hit in the last 24 hours.
    Recent(oneshot::Sender<Vec<Recent>>),
    /// New incidents and blocked alerts per home address in the last 24 hours.
    PerDevice(oneshot::Sender<(Vec<Recent>, Vec<Recent>)>),
    /// Forget every incident and acknowledgement (factory reset).
    Forget(oneshot::Sender<()>),
}

/// A do-not-break device talked to an observed (shadow) indicator: the
/// agent, which owns the shadow book, holds it for the owner.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Held {
    /// The indicator as listed.
    pub value: String,
    /// The home device.
    pub device: IpAddr,
    /// Its name in the device inventory, when known.
    pub name: Option<String>,
    /// When (unix seconds).
    pub at: i64,
}

/// The incidents' owner.
pub struct Incidents {
    state_dir: PathBuf,
    triage: Triage,
    hits: Hits,
    acked: HashSet<String>,
    dirty: bool,
    last_block: Option<i64>,
    /// Blocked alerts on one local day: (day number, count).
    blocked_today: (i64, u64),
    outbox: Option<SharedOutbox>,
    wake: Arc<Notify>,
    mail_on: bool,
    /// The `notify:` targets' names: each gets every high-severity incident.
    push_to: Vec<String>,
    /// The MISP sources, in config order: sightings go to the one that listed a hit, events to the first.
    misp: Vec<String>,
    do_not_break: Vec<IpNet>,
    index: watch::Receiver<Arc<Index>>,
    /// Which device each address is (from the devices' owner), when kept.
    directory: Option<watch::Receiver<Arc<Directory>>>,
    /// New incidents per home address, over 24 hours.
    by_device: Hits,
    /// Blocked alerts per home address, over 24 hours.
    blocked_by_device: Hits,
    /// Encrypted DNS past the home's resolver per home address, over 24 hours.
    encrypted_dns: Hits,
    view: watch::Sender<AlertsStatus>,
    held: mpsc::Sender<Held>,
    heart: Heart,
}

/// How soon the incidents' loop turns again at the latest (its save tick is 1 s).
const TURN_WITHIN: Duration = Duration::from_secs(15);

impl Incidents {
    /// Reads the acknowledgements back; `index` brings the sets, `held`
    /// goes to the agent. Returns the owner and a view of what it holds.
    pub fn new(
        cfg: &Config,
        outbox: Option<SharedOutbox>,
        wake: Arc<Notify>,
        index: watch::Receiver<Arc<Index>>,
        held: mpsc::Sender<Held>,
        directory: Option<watch::Receiver<Arc<Directory>>>,
    ) -> (Incidents, watch::Receiver<AlertsStatus>) {
        let acked = std::fs::read(cfg.state_dir.join(ACKS_FILE))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        let (view, view_rx) = watch::channel(AlertsStatus::default());
        let misp = cfg
            .sources
            .iter()
            .filter(|s| matches!(s, SourceConfig::Misp(_)))
            .map(|s| s.name().to_string())
            .collect();
        let me = Incidents {
            state_dir: cfg.state_dir.clone(),
            triage: Triage::new(cfg.triage()),
            hits: Hits::default(),
            acked,
            dirty: false,
            last_block: None,
            blocked_today: (0, 0),
            outbox,
            wake,
            mail_on: !cfg.mail.to.is_empty(),
            push_to: cfg.notify.iter().map(|t| t.name().to_string()).collect(),
            misp,
            do_not_break: cfg.enforcement.do_not_break.clone(),
            index,
            directory,
            by_device: Hits::default(),
            blocked_by_device: Hits::default(),
            encrypted_dns: Hits::default(),
            view,
            held,
            heart: Heart::new("incidents", TURN_WITHIN),
        };
        me.publish();
        (me, view_rx)
    }

    /// Reads alerts and requests until the stop, then saves what is open
    /// (and only then drops `stop`, which tells the stopper it is done).
    pub async fn run(
        mut self,
        mut alerts: mpsc::Receiver<Alert>,
        mut inbox: mpsc::Receiver<Msg>,
        mut stop: Stop,
    ) {
        self.restore();
        let mut save = tokio::time::interval(SAVE_EVERY);
        let mut expire = tokio::time::interval(EXPIRE_EVERY);
        save.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        expire.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            self.heart.alive(TURN_WITHIN);
            tokio::select! {
                // Shutdown first: a storm of alerts must not keep the agent from stopping.
                biased;
                _ = stop.wait() => break,
                Some(a) = alerts.recv() => {
                    self.on_alert(&a);
                }
                Some(msg) = inbox.recv() => self.on_msg(msg),
                _ = save.tick() => {
                    if self.dirty {
                        self.save();
                        self.publish();
                    }
                }
                _ = expire.tick() => {
                    if !self.triage.expire(unix_now() as i64).is_empty() {
                        self.dirty = true;
                        self.publish();
                    }
                }
            }
        }
        self.save();
        drop(stop);
    }

    /// What this task reports to the supervisor with.
    pub fn heart(&self) -> Heart {
        self.heart.clone()
    }

    fn on_msg(&mut self, msg: Msg) {
        match msg {
            Msg::Ack(reply) => {
                let _ = reply.send(self.acknowledge());
            }
            Msg::Recent(reply) => {
                let _ = reply.send(self.recent());
            }
            Msg::PerDevice(reply) => {
                let now = unix_now() as i64;
                let _ = reply.send((
                    self.by_device.recent(now),
                    self.blocked_by_device.recent(now),
                ));
            }
            Msg::Forget(reply) => {
                self.forget();
                let _ = reply.send(());
            }
        }
    }

    /// Triages one alert; true if it opened a new incident (shown at once;
    /// counts of open ones are shown with the next tick).
    pub fn on_alert(&mut self, a: &Alert) -> bool {
        let blocked = a.action == "blocked";
        if blocked {
            self.last_block = Some(a.time);
            let day = local_day(a.time);
            self.blocked_today = match self.blocked_today {
                (d, n) if d == day => (d, n + 1),
                _ => (day, 1),
            };
        }
        let outcome = {
            let index = self.index.borrow();
            // Asked only when an alert opens an incident, not on every alert.
            let directory = &self.directory;
            self.triage.ingest_with(a, &|v| index.first(v), &|ip| {
                directory.as_ref()?.borrow().get(&ip).cloned()
            })
        };
        self.dirty = true;
        let inc = match &outcome {
            Outcome::New(i) | Outcome::Counted(i) => i,
        };
        // A listed value by itself; a signature's drop by the remote and the sid.
        let value = match &inc.ioc {
            Some(p) => p.indicator.clone(),
            None if inc.listed => inc.remote.clone(),
            None => crate::alerts::hits::signature_key(&inc.remote, inc.sid),
        };
        let value = &value;
        let new = matches!(outcome, Outcome::New(_));
        if blocked || new {
            let local = inc.local.to_string();
            if blocked {
                self.hits.record(value, a.time);
                self.blocked_by_device.record(&local, a.time);
            }
            if new {
                self.by_device.record(&local, a.time);
            }
        }
        if a.metadata
            .get(encrypted_dns::METADATA.0)
            .is_some_and(|r| r.iter().any(|v| v == encrypted_dns::METADATA.1))
        {
            self.encrypted_dns.record(&inc.local.to_string(), a.time);
        }
        let shadow_hit = a
            .metadata
            .get("homewarden_kind")
            .is_some_and(|k| k.iter().any(|v| v.starts_with("shadow-")));
        if shadow_hit && self.do_not_break.iter().any(|n| n.contains(&inc.local)) {
            let held = Held {
                value: value.clone(),
                device: inc.local,
                name: inc.device.as_ref().map(|t| t.name.clone()),
                at: a.time,
            };
            // Rare, and repeated by the next alert of the same pair if the agent is busy.
            if self.held.try_send(held).is_err() {
                tracing::debug!("agent busy: shadow hold deferred to the next alert");
            }
        }
        match outcome {
            Outcome::Counted(inc) => {
                self.queue_update(&inc);
                false
            }
            Outcome::New(inc) => {
                self.queue_actions(&inc);
                if inc.high {
                    tracing::warn!(incident = %inc.id, local = %inc.local, remote = %inc.remote, sid = inc.sid, "high-severity incident: {}", inc.signature);
                } else {
                    tracing::info!(incident = %inc.id, local = %inc.local, remote = %inc.remote, sid = inc.sid, "incident: {}", inc.signature);
                }
                self.publish();
                true
            }
        }
    }

    /// Acknowledges every open high incident; persisted so a restart keeps it.
    pub fn acknowledge(&mut self) -> usize {
        let open: HashSet<String> = self.triage.open().map(|i| i.id.clone()).collect();
        let new = self
            .triage
            .open()
            .filter(|i| i.high && !self.acked.contains(&i.id))
            .map(|i| i.id.clone())
            .collect::<Vec<_>>();
        // Only open incidents can light the LED: closed ones need no memory.
        self.acked.retain(|id| open.contains(id));
        self.acked.extend(new.iter().cloned());
        let path = self.state_dir.join(ACKS_FILE);
        let saved = serde_json::to_vec(&self.acked)
            .map_err(std::io::Error::other)
            .and_then(|b| crate::fsutil::write_atomic(&path, &b));
        if let Err(e) = saved {
            tracing::error!("{}: {e}", path.display());
        }
        tracing::info!(incidents = new.len(), "acknowledged");
        self.publish();
        new.len()
    }

    /// The values hit in the last 24 hours.
    pub fn recent(&self) -> Vec<Recent> {
        self.hits.recent(unix_now() as i64)
    }

    /// Forgets every incident and acknowledgement, on disk too.
    pub fn forget(&mut self) {
        self.triage.restore(Vec::new());
        self.acked.clear();
        self.hits = Hits::default();
        self.dirty = false;
        for f in [ACKS_FILE, INCIDENTS_FILE] {
            let _ = std::fs::remove_file(self.state_dir.join(f));
        }
        self.publish();
    }

    /// Counts the open incidents and shows the newest few: a partial
    /// selection over references, so a storm of distinct incidents is not
    /// cloned and sorted whole every second.
    fn publish(&self) {
        let newest =
            |a: &&Incident, b: &&Incident| b.last_seen.cmp(&a.last_seen).then(a.id.cmp(&b.id));
        let acked = &self.acked;
        let mut open: Vec<&Incident> = self.triage.open().collect();
        let count = open.len();
        let high_open = open.iter().filter(|i| i.high).count();
        let mut acknowledged: Vec<&Incident> = open
            .iter()
            .copied()
            .filter(|i| acked.contains(&i.id))
            .collect();
        let high_unacked = high_open - acknowledged.iter().filter(|i| i.high).count();
        acknowledged.sort_unstable_by(newest);
        if open.len() > RECENT_INCIDENTS {
            open.select_nth_unstable_by(RECENT_INCIDENTS, newest);
            open.truncate(RECENT_INCIDENTS);
        }
        open.sort_unstable_by(newest);
        self.view.send_replace(AlertsStatus {
            open: count,
            high_open,
            high_unacked,
            acknowledged: acknowledged.into_iter().map(|i| i.id.clone()).collect(),
            last_block: self.last_block,
            blocked_today: match self.blocked_today {
                (d, n) if d == local_day(unix_now() as i64) => n,
                _ => 0,
            },
            recent: open.into_iter().cloned().collect(),
            encrypted_dns: self.encrypted_dns.recent(unix_now() as i64),
            ..AlertsStatus::default()
        });
    }

    /// Takes back the incidents open before a restart and makes sure each has
    /// its actions queued: the outbox's keys make this a no-op for what is
    /// queued or done, and re-queue what a torn outbox file lost (the latest
    /// event update included).
    pub fn restore(&mut self) {
        let path = self.state_dir.join(INCIDENTS_FILE);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return,
            Err(e) => {
                tracing::error!("{}: {e}", path.display());
                return;
            }
        };
        let incidents: Vec<Incident> = match serde_json::from_slice(&bytes) {
            Ok(v) => v,
            Err(e) => {
                let aside = crate::fsutil::set_aside(&path);
                tracing::error!(
                    "{}: unreadable ({e}); moved to {}",
                    path.display(),
                    aside.display()
                );
                return;
            }
        };
        tracing::info!(incidents = incidents.len(), "incidents restored");
        for inc in &incidents {
            self.queue_actions(inc);
            // The latest update due: its key makes this a no-op if it was
            // queued or sent, and brings it back if a torn file lost it.
            if inc.count >= 10 {
                self.queue_update_at(inc, 10u64.pow(inc.count.ilog10()));
            }
        }
        self.triage.restore(incidents);
        self.triage.expire(unix_now() as i64);
        self.publish();
    }

    /// Writes the open incidents, if they changed.
    pub fn save(&mut self) {
        if !self.dirty {
            return;
        }
        let path = self.state_dir.join(INCIDENTS_FILE);
        let open: Vec<&Incident> = self.triage.open().collect();
        let saved = serde_json::to_vec(&open)
            .map_err(std::io::Error::other)
            .and_then(|b| crate::fsutil::write_atomic(&path, &b));
        match saved {
            Ok(()) => self.dirty = false,
            Err(e) => tracing::error!("{}: {e}", path.display()),
        }
    }

    /// Puts what should happen about a new incident into the outbox.
    fn queue_actions(&mut self, inc: &Incident) {
        let now = unix_now();
        let (sighting, event) = self.responders_for(inc);
        let Some(outbox) = self.outbox.as_ref() else {
            return;
        };
        let mut outbox = respond::lock(outbox);
        // A hit on a MISP attribute: tell that MISP it was seen here.
        let attribute = inc.ioc.as_ref().and_then(|p| p.attribute_uuid.clone());
        if let (Some(source), Some(attribute_uuid)) = (sighting, attribute) {
            let seen = Action::MispSighting(Sighting {
                source,
                attribute_uuid,
                time: inc.first_seen,
                kind: crate::intel::misp::SightingType::Seen,
            });
            let key = format!("{}:misp-sighting", inc.id);
            if let Err(e) = outbox.put(&key, seen, inc.high, now) {
                tracing::error!("{e}");
            }
        }
        // Any other high-severity incident: one MISP event, in the first MISP source.
        if let Some(source) = event {
            let new = Action::MispEvent(EventFor {
                source,
                event: misp_event(inc),
            });
            if let Err(e) = outbox.put(&format!("{}:misp-event", inc.id), new, true, now) {
                tracing::error!("{e}");
            }
        }
        // The owner hears of every high-severity incident, with advice.
        if self.mail_on && inc.high {
            let mail = Action::Mail(MailPayload {
                incident: inc.clone(),
                advice: None,
            });
            if let Err(e) = outbox.put(&format!("{}:mail", inc.id), mail, true, now) {
                tracing::error!("{e}");
            }
        }
        // And on every push target: one action each, so one slow target
        // holds up no other.
        for target in self.push_to.iter().filter(|_| inc.high) {
            let push = Action::Push(PushPayload {
                target: target.clone(),
                incident: inc.clone(),
            });
            if let Err(e) = outbox.put(&format!("{}:push-{target}", inc.id), push, true, now) {
                tracing::error!("{e}");
            }
        }
        drop(outbox);
        self.wake.notify_one();
    }

    /// Which MISP source gets a sighting, and which one an event, for an incident.
    fn responders_for(&self, inc: &Incident) -> (Option<String>, Option<String>) {
        let sighting = inc
            .ioc
            .as_ref()
            .filter(|p| p.attribute_uuid.is_some() && self.misp.contains(&p.source))
            .map(|p| p.source.clone());
        let event = match (&sighting, inc.high) {
            (None, true) => self.misp.first().cloned(),
            _ => None,
        };
        (sighting, event)
    }

    /// Later alerts of an incident update its MISP event (at 10, 100, 1000… alerts,
    /// so a storm is a handful of edits, not thousands).
    fn queue_update(&mut self, inc: &Incident) {
        if update_due(inc.count) {
            self.queue_update_at(inc, inc.count);
        }
    }

    /// Queues the event update for the moment the incident reached `count` alerts.
    fn queue_update_at(&mut self, inc: &Incident, count: u64) {
        let (_, Some(source)) = self.responders_for(inc) else {
            return;
        };
        let Some(outbox) = self.outbox.as_ref() else {
            return;
        };
        let update = Action::MispEventUpdate(EventUpdate {
            source,
            uuid: inc.uuid(),
            event: EventEdit {
                event: EditBody {
                    info: format!("homewarden: {} ({count} alerts)", inc.signature),
                },
            },
        });
        let key = format!("{}:misp-event-update:{count}", inc.id);
        let queued = respond::lock(outbox).put(&key, update, true, unix_now());
        if let Err(e) = queued {
            tracing::error!("{e}");
        }
        self.wake.notify_one();
    }
}

/// The day `t` (unix seconds) falls on in the appliance's time zone, as a
/// day number: "blocked today" starts at local midnight.
pub fn local_day(t: i64) -> i64 {
    let offset = {
        let time: libc::time_t = t;
        // SAFETY: localtime_r reads `time` and writes only the `tm` we own.
        let mut tm: libc::tm = unsafe { std::mem::zeroed() };
        let ok = unsafe { !libc::localtime_r(&time, &mut tm).is_null() };
        if ok {
            tm.tm_gmtoff
        } else {
            0
        }
    };
    (t + offset).div_euclid(86_400)
}

#[cfg(test)]
mod tests;
