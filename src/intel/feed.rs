//! MISP feeds (the CIRCL OSINT format): `manifest.json` lists events by uuid
//! with their timestamps; each event is `<uuid>.json`. Only events whose
//! timestamp changed are fetched again.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use serde::Deserialize;

use super::fetch::{Fetch, Location};
use super::set::{EventInfo, SourceSet};
use super::{de_bool, de_num, Change, Collector, Cursor, IntelError, Pulled};

#[derive(Debug, Deserialize)]
struct ManifestEntry {
    #[serde(default)]
    info: String,
    #[serde(default, deserialize_with = "de_num")]
    timestamp: Option<u64>,
    #[serde(default, deserialize_with = "de_num")]
    threat_level_id: Option<u64>,
}

#[derive(Debug, Deserialize)]
struct EventFile {
    #[serde(rename = "Event")]
    event: FeedEvent,
}

#[derive(Debug, Deserialize)]
struct FeedEvent {
    uuid: String,
    #[serde(default, deserialize_with = "de_num")]
    id: Option<u64>,
    #[serde(default)]
    info: String,
    #[serde(default, deserialize_with = "de_num")]
    threat_level_id: Option<u64>,
    #[serde(default, deserialize_with = "de_num")]
    timestamp: Option<u64>,
    // Feeds only carry published events, but an exported event may say otherwise.
    #[serde(default = "yes", deserialize_with = "de_bool")]
    published: bool,
    #[serde(default, rename = "Attribute")]
    attributes: Vec<FeedAttribute>,
    #[serde(default, rename = "Object")]
    objects: Vec<FeedObject>,
    #[serde(default, rename = "Tag")]
    tags: Vec<super::misp::TagRef>,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Deserialize)]
struct FeedObject {
    #[serde(default, rename = "Attribute")]
    attributes: Vec<FeedAttribute>,
}

#[derive(Debug, Deserialize)]
struct FeedAttribute {
    #[serde(rename = "type")]
    kind: String,
    value: String,
    #[serde(default, deserialize_with = "de_bool")]
    to_ids: bool,
    #[serde(default, deserialize_with = "de_bool")]
    deleted: bool,
    #[serde(default)]
    uuid: Option<String>,
}

/// True for the canonical 8-4-4-4-12 hex form: the only thing we join onto a feed's URL or path.
fn is_uuid(s: &str) -> bool {
    s.len() == 36
        && s.bytes().enumerate().all(|(i, b)| match i {
            8 | 13 | 18 | 23 => b == b'-',
            _ => b.is_ascii_hexdigit(),
        })
}

/// Pulls a feed; events already held with the same timestamp are not fetched again.
pub async fn pull(
    name: &str,
    base: &Location,
    known: &SourceSet,
    max_age: Option<Duration>,
    fetch: &Fetch,
    now: u64,
) -> Result<Pulled, IntelError> {
    let manifest_loc = base.join("manifest.json")?;
    let body = manifest_loc.read(fetch).await?;
    let manifest: HashMap<String, ManifestEntry> =
        serde_json::from_slice(&body).map_err(|e| IntelError::malformed(&manifest_loc, e))?;

    let oldest = max_age.map(|a| now.saturating_sub(a.as_secs()));
    let mut wanted: Vec<(&String, &ManifestEntry)> = manifest
        .iter()
        .filter(|(uuid, m)| {
            let fresh = match (oldest, m.timestamp) {
                (Some(o), Some(t)) => t >= o,
                _ => true,
            };
            if !is_uuid(uuid) {
                tracing::warn!(
                    source = name,
                    "manifest key {:?} is not a uuid; skipped",
                    uuid.chars().take(40).collect::<String>()
                );
            }
            fresh && is_uuid(uuid)
        })
        .collect();
    // Fetch in a stable order so logs and partial failures are reproducible.
    wanted.sort_by(|a, b| a.0.cmp(b.0));

    let wanted_uuids: HashSet<&str> = wanted.iter().map(|(u, _)| u.as_str()).collect();
    let mut remove_events: HashSet<String> = known
        .events()
        .iter()
        .filter(|e| !wanted_uuids.contains(e.uuid.as_str()))
        .map(|e| e.uuid.clone())
        .collect();

    let mut c = Collector::new(name);
    let mut fetched = 0usize;
    for (uuid, m) in wanted {
        let held = known.event_by_uuid(uuid);
        if held.is_some_and(|h| Some(h.timestamp) == m.timestamp) {
            continue;
        }
        let loc = base.join(&format!("{uuid}.json"))?;
        let body = loc.read(fetch).await?;
        let file: EventFile =
            serde_json::from_slice(&body).map_err(|e| IntelError::malformed(&loc, e))?;
        let ev = file.event;
        if !ev.uuid.eq_ignore_ascii_case(uuid) {
            return Err(IntelError::malformed(
                &loc,
                format!("event uuid {:?} differs from its manifest key", ev.uuid),
            ));
        }
        fetched += 1;
        remove_events.insert(uuid.clone());
        if !ev.published {
            continue;
        }
        let idx = c.event(EventInfo {
            uuid: uuid.clone(),
            id: ev.id,
            threat_level: ev
                .threat_level_id
                .or(m.threat_level_id)
                .and_then(|t| u8::try_from(t).ok()),
            info: if ev.info.is_empty() {
                m.info.clone()
            } else {
                ev.info
            },
            timestamp: m.timestamp.or(ev.timestamp).unwrap_or(0),
            tags: super::set::clean_tags(ev.tags.iter().map(|t| t.name.as_str())),
            seen: 0,
        });
        let attrs = ev
            .attributes
            .iter()
            .chain(ev.objects.iter().flat_map(|o| o.attributes.iter()));
        for a in attrs.filter(|a| a.to_ids && !a.deleted) {
            c.value(Some(&a.kind), &a.value, Some(idx), a.uuid.as_deref());
        }
    }
    tracing::debug!(
        source = name,
        events = manifest.len(),
        fetched,
        "feed pulled"
    );
    Ok(Pulled {
        change: Change::Patch {
            remove_attributes: HashSet::new(),
            remove_events,
            add: c.set,
        },
        stats: c.stats,
        cursor: Cursor::default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::intel::SourceState;

    const E1: &str = "5f2d3f0a-0000-4000-8000-000000000001";
    const E2: &str = "5f2d3f0a-0000-4000-8000-000000000002";

    fn write_feed(dir: &std::path::Path, e1_ts: &str, with_e2: bool) {
        write_manifest(dir, e1_ts, with_e2);
        let e1 = serde_json::json!({"Event": {
            "uuid": E1, "info": "C2 servers", "threat_level_id": "1", "timestamp": e1_ts, "published": true,
            "Attribute": [
                {"type": "ip-dst", "value": "203.0.113.66", "to_ids": true, "uuid": "a-1"},
                {"type": "comment", "value": "x", "to_ids": false, "uuid": "a-2"},
                {"type": "ip-dst", "value": "203.0.113.99", "to_ids": false, "uuid": "a-3"},
                {"type": "ip-dst", "value": "evil\"; drop", "to_ids": true, "uuid": "a-4"}
            ],
            "Object": [{"name": "domain-ip", "Attribute": [
                {"type": "domain", "value": "c2.lab-evil.test", "to_ids": true, "uuid": "a-5"}
            ]}]
        }});
        std::fs::write(dir.join(format!("{E1}.json")), e1.to_string()).unwrap();
        let e2 = serde_json::json!({"Event": {"uuid": E2, "info": "old", "published": true,
            "Attribute": [{"type": "md5", "value": "d41d8cd98f00b204e9800998ecf8427e", "to_ids": "1", "uuid": "b-1"}]}});
        std::fs::write(dir.join(format!("{E2}.json")), e2.to_string()).unwrap();
    }

    async fn pull_into(
        st: &mut SourceState,
        dir: &std::path::Path,
        max_age: Option<Duration>,
    ) -> Pulled {
        let fetch = Fetch::new(reqwest::Client::new(), Duration::from_secs(5));
        let p = pull(
            "feed",
            &Location::Path(dir.to_path_buf()),
            &st.set,
            max_age,
            &fetch,
            1_000_000,
        )
        .await
        .unwrap();
        p
    }

    #[tokio::test]
    async fn the_size_a_patch_would_leave_is_known_before_it_is_applied() {
        let dir = tempfile::tempdir().unwrap();
        write_feed(dir.path(), "1000", true);
        let mut st = SourceState::default();
        let p = pull_into(&mut st, dir.path(), None).await;
        st.apply(p, 1);
        assert_eq!(st.set.len(), 3);
        // E2 leaves the manifest: its one entry would go.
        write_manifest(dir.path(), "1000", false);
        let p = pull_into(&mut st, dir.path(), None).await;
        assert_eq!(p.change.size_after(&st.set), 2);
        // An empty manifest (a broken feed server): everything would go.
        std::fs::write(dir.path().join("manifest.json"), "{}").unwrap();
        let p = pull_into(&mut st, dir.path(), None).await;
        assert_eq!(p.change.size_after(&st.set), 0);
        assert_eq!(st.set.len(), 3, "nothing applied yet");
    }

    #[tokio::test]
    async fn reads_attributes_and_objects_with_to_ids_only() {
        let dir = tempfile::tempdir().unwrap();
        write_feed(dir.path(), "1000", true);
        let mut st = SourceState::default();
        let p = pull_into(&mut st, dir.path(), None).await;
        assert_eq!(p.stats.rejected.get("bad_ip"), Some(&1));
        st.apply(p, 1);
        let mut vals: Vec<String> = st.set.entries().map(|e| e.ioc.to_string()).collect();
        vals.sort();
        assert_eq!(
            vals,
            [
                "203.0.113.66",
                "c2.lab-evil.test",
                "d41d8cd98f00b204e9800998ecf8427e"
            ]
        );
        let e = st
            .set
            .entries()
            .find(|e| e.ioc.to_string() == "203.0.113.66")
            .unwrap();
        let prov = st.set.provenance("feed", e);
        assert_eq!(prov.threat_level, Some(1));
        assert_eq!(prov.attribute_uuid.as_deref(), Some("a-1"));
        assert_eq!(prov.event_uuid.as_deref(), Some(E1));
    }

    #[tokio::test]
    async fn unchanged_events_are_not_refetched_and_vanished_ones_leave() {
        let dir = tempfile::tempdir().unwrap();
        write_feed(dir.path(), "1000", true);
        let mut st = SourceState::default();
        let p = pull_into(&mut st, dir.path(), None).await;
        st.apply(p, 1);
        // Make E1's file unreadable: an unchanged timestamp must not fetch it.
        std::fs::write(dir.path().join(format!("{E1}.json")), "garbage").unwrap();
        write_manifest(dir.path(), "1000", false);
        let p = pull_into(&mut st, dir.path(), None).await;
        assert_eq!(p.stats.seen, 0);
        st.apply(p, 2);
        let vals: Vec<String> = st.set.entries().map(|e| e.ioc.to_string()).collect();
        assert_eq!(vals.len(), 2, "{vals:?}");
        assert!(st.set.event_by_uuid(E2).is_none());
    }

    fn write_manifest(dir: &std::path::Path, e1_ts: &str, with_e2: bool) {
        let mut manifest = serde_json::json!({
            E1: {"info": "C2 servers", "timestamp": e1_ts, "threat_level_id": "1", "date": "2026-11-01",
                 "analysis": "2", "Orgc": {"name": "lab"}, "Tag": []},
        });
        if with_e2 {
            manifest[E2] =
                serde_json::json!({"info": "old", "timestamp": "100", "threat_level_id": "3"});
        }
        std::fs::write(dir.join("manifest.json"), manifest.to_string()).unwrap();
    }

    #[tokio::test]
    async fn max_age_skips_old_events_and_bad_keys_are_ignored() {
        let dir = tempfile::tempdir().unwrap();
        write_feed(dir.path(), "999990", true);
        let mut m: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.path().join("manifest.json")).unwrap())
                .unwrap();
        m["../../etc/passwd"] = serde_json::json!({"timestamp": "999999"});
        std::fs::write(dir.path().join("manifest.json"), m.to_string()).unwrap();
        let mut st = SourceState::default();
        let p = pull_into(&mut st, dir.path(), Some(Duration::from_secs(60))).await;
        st.apply(p, 1);
        assert_eq!(st.set.events().len(), 1);
        assert_eq!(st.set.events()[0].uuid, E1);
    }

    #[tokio::test]
    async fn a_broken_event_fails_the_whole_pull() {
        let dir = tempfile::tempdir().unwrap();
        write_feed(dir.path(), "1000", false);
        std::fs::write(dir.path().join(format!("{E1}.json")), "{\"Event\": 3}").unwrap();
        let fetch = Fetch::new(reqwest::Client::new(), Duration::from_secs(5));
        let r = pull(
            "feed",
            &Location::Path(dir.path().to_path_buf()),
            &SourceSet::new(),
            None,
            &fetch,
            0,
        )
        .await;
        let e = r.unwrap_err().to_string();
        assert!(e.contains(E1) && e.contains("malformed"), "{e}");
    }
}
