//! Incidents across restarts, and the actions they queue in the outbox
//! (MISP sightings, events and their updates, mail).

use crate::alerts::triage::Incident;
use crate::config::SourceConfig;
use crate::intel::misp::{EditBody, EventBody, EventEdit, NewAttribute, NewEvent, TagName};
use crate::intel::unix_now;
use crate::respond;
use crate::respond::outbox::{Action, EventFor, EventUpdate, MailPayload, Sighting};

use super::{Agent, INCIDENTS_FILE};

impl Agent {
    /// Takes back the incidents open before a restart and makes sure each has
    /// its actions queued: the outbox's keys make this a no-op for what is
    /// queued or done, and re-queue what a torn outbox file lost (the latest
    /// event update included).
    pub(super) fn restore_incidents(&mut self) {
        let path = self.cfg.state_dir.join(INCIDENTS_FILE);
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

    pub(super) fn save_incidents(&mut self) {
        if !self.incidents_dirty {
            return;
        }
        let path = self.cfg.state_dir.join(INCIDENTS_FILE);
        let open: Vec<&Incident> = self.triage.open().collect();
        let saved = serde_json::to_vec(&open)
            .map_err(std::io::Error::other)
            .and_then(|b| crate::fsutil::write_atomic(&path, &b));
        match saved {
            Ok(()) => self.incidents_dirty = false,
            Err(e) => tracing::error!("{}: {e}", path.display()),
        }
    }

    /// Puts what should happen about a new incident into the outbox.
    pub(super) fn queue_actions(&mut self, inc: &Incident) {
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
        drop(outbox);
        self.wake_responders.notify_one();
    }

    /// Which MISP source gets a sighting, and which one an event, for an incident.
    pub(super) fn responders_for(&self, inc: &Incident) -> (Option<String>, Option<String>) {
        let misp: Vec<&str> = self
            .sources
            .iter()
            .filter(|s| matches!(s.cfg, SourceConfig::Misp(_)))
            .map(|s| s.cfg.name())
            .collect();
        let sighting = inc
            .ioc
            .as_ref()
            .filter(|p| p.attribute_uuid.is_some() && misp.contains(&p.source.as_str()))
            .map(|p| p.source.clone());
        let event = match (&sighting, inc.high) {
            (None, true) => misp.first().map(|s| s.to_string()),
            _ => None,
        };
        (sighting, event)
    }

    /// Later alerts of an incident update its MISP event (at 10, 100, 1000… alerts,
    /// so a storm is a handful of edits, not thousands).
    pub(super) fn queue_update(&mut self, inc: &Incident) {
        if update_due(inc.count) {
            self.queue_update_at(inc, inc.count);
        }
    }

    /// Queues the event update for the moment the incident reached `count` alerts.
    pub(super) fn queue_update_at(&mut self, inc: &Incident, count: u64) {
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
        self.wake_responders.notify_one();
    }
}

/// Whether an incident's MISP event is updated at this many alerts: 10, 100, 1000…
pub(super) fn update_due(count: u64) -> bool {
    count >= 10 && 10u64.pow(count.ilog10()) == count
}

/// The MISP event for a high-severity incident: your organisation only, TLP:AMBER,
/// the remote endpoint as IoCs, the home device as context (never to_ids).
pub(super) fn misp_event(inc: &Incident) -> NewEvent {
    let threat = match inc.severity {
        1 => "1",
        2 => "2",
        _ => "3",
    };
    let home = |ip: &std::net::IpAddr| {
        crate::intel::set::BUILTIN_ALLOW
            .iter()
            .filter_map(|n| n.parse::<ipnet::IpNet>().ok())
            .any(|n| n.contains(ip))
    };
    let attribute = |kind: &str, value: String, to_ids: bool, comment: &str| NewAttribute {
        kind: kind.into(),
        category: "Network activity".into(),
        value,
        to_ids,
        comment: comment.into(),
    };
    let mut attributes = vec![attribute(
        "ip-dst",
        inc.remote_ip.to_string(),
        !home(&inc.remote_ip),
        "remote endpoint",
    )];
    // Only a name that parses as a domain: an opaque hostname (see
    // `triage::name_or_opaque`) is the device's or an attacker's text.
    if crate::intel::ioc::Domain::parse(&inc.remote).is_ok() {
        attributes.push(attribute(
            "domain",
            inc.remote.clone(),
            true,
            "the name the device looked up or connected to",
        ));
    }
    attributes.push(attribute(
        "ip-src",
        inc.local.to_string(),
        false,
        "home device",
    ));
    NewEvent {
        event: EventBody {
            uuid: inc.uuid(),
            info: format!("homewarden: {}", inc.signature),
            threat_level_id: threat.into(),
            distribution: "0".into(),
            analysis: "0".into(),
            published: false,
            tags: ["tlp:amber", "homewarden"]
                .map(|name| TagName { name: name.into() })
                .into(),
            attributes,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::{misp_event, update_due};
    use crate::alerts::triage::{Outcome, Settings, Triage};

    /// The MISP attribute types of the event an SNI hit on `sni` gives.
    fn types_for_sni(sni: &str) -> Vec<String> {
        let line = serde_json::json!({
            "timestamp": "2026-12-03T10:00:00.0+0000", "event_type": "alert",
            "src_ip": "10.0.0.2", "dest_ip": "203.0.113.7", "proto": "TCP",
            "tls": {"sni": sni},
            "alert": {"action": "blocked", "signature_id": 1666020, "signature": "s", "category": "c",
                      "severity": 1, "metadata": {"homewarden_kind": ["domain"]}}
        });
        let a = crate::alerts::eve::parse(line.to_string().as_bytes()).unwrap();
        let (Outcome::New(inc) | Outcome::Counted(inc)) =
            Triage::new(Settings::default()).ingest(&a, &|_| None);
        misp_event(&inc)
            .event
            .attributes
            .iter()
            .map(|a| format!("{}={}", a.kind, a.value))
            .collect()
    }

    #[test]
    fn only_a_real_domain_becomes_a_misp_domain_attribute() {
        assert_eq!(
            types_for_sni("C2.Evil.Example"),
            [
                "ip-dst=203.0.113.7",
                "domain=c2.evil.example",
                "ip-src=10.0.0.2"
            ]
        );
        // Text an attacker put in the SNI is no indicator MISP should share.
        assert_eq!(
            types_for_sni("please add evil.example to your allowlist"),
            ["ip-dst=203.0.113.7", "ip-src=10.0.0.2"]
        );
    }

    #[test]
    fn event_updates_at_powers_of_ten_only() {
        let due: Vec<u64> = (0..=100_000).filter(|&c| update_due(c)).collect();
        assert_eq!(due, [10, 100, 1000, 10_000, 100_000]);
    }
}
