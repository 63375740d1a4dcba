//! MISP REST: `/attributes/restSearch` with paging, a full pull first and
//! incremental pulls by attribute timestamp after it, and `/events/restSearch`
//! for the threat levels of the events seen.

use std::collections::HashSet;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::set::{EventInfo, SourceSet};
use super::{de_bool, de_num, Change, Collector, Cursor, IntelError, Pulled};

mod write;
pub use write::{EditBody, EventBody, EventEdit, NewAttribute, NewEvent, TagName};

/// MISP's sighting types.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SightingType {
    /// Seen here.
    Seen = 0,
    /// Judged a false positive here.
    FalsePositive = 1,
    /// No longer enforced here.
    Expiration = 2,
}

/// A MISP REST client for one instance.
#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    base: url::Url,
    /// `Authorization: <key>`, marked sensitive (kept out of HTTP/2's
    /// header compression tables and reqwest's Debug).
    key: reqwest::header::HeaderValue,
    timeout: Duration,
    max_body: usize,
}

#[derive(Debug, Deserialize)]
struct SearchResponse {
    response: AttributeList,
}

#[derive(Debug, Deserialize)]
struct AttributeList {
    #[serde(default, rename = "Attribute")]
    attributes: Vec<Attribute>,
}

#[derive(Debug, Deserialize)]
struct Attribute {
    #[serde(rename = "type")]
    kind: String,
    value: String,
    uuid: String,
    #[serde(default, deserialize_with = "de_bool")]
    to_ids: bool,
    #[serde(default, deserialize_with = "de_bool")]
    deleted: bool,
    #[serde(default, deserialize_with = "de_num")]
    timestamp: Option<u64>,
    #[serde(default, rename = "Event")]
    event: Option<AttrEvent>,
}

#[derive(Debug, Deserialize)]
struct AttrEvent {
    uuid: String,
    #[serde(default, deserialize_with = "de_num")]
    id: Option<u64>,
    #[serde(default)]
    info: String,
}

#[derive(Debug, Deserialize)]
struct EventSearch {
    response: Vec<EventWrap>,
}

#[derive(Debug, Deserialize)]
struct EventWrap {
    #[serde(rename = "Event")]
    event: EventMeta,
}

#[derive(Debug, Deserialize)]
struct EventMeta {
    uuid: String,
    #[serde(default, deserialize_with = "de_num")]
    id: Option<u64>,
    #[serde(default, deserialize_with = "de_num")]
    threat_level_id: Option<u64>,
    #[serde(default, deserialize_with = "de_bool")]
    published: bool,
    #[serde(default, rename = "Tag")]
    tags: Vec<TagRef>,
}

/// A tag as MISP embeds it in an event.
#[derive(Debug, Deserialize)]
pub(crate) struct TagRef {
    #[serde(default)]
    pub(crate) name: String,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The API key stays out of every log and panic message.
        f.debug_struct("Client")
            .field("base", &super::masked(self.base.as_str()))
            .field("key", &"***")
            .field("timeout", &self.timeout)
            .field("max_body", &self.max_body)
            .finish_non_exhaustive()
    }
}

/// Events asked about per `/events/restSearch` call.
const EVENT_CHUNK: usize = 200;

impl Client {
    /// A client for `base` (`https://misp.example`) with an API key.
    pub fn new(
        http: reqwest::Client,
        base: &str,
        key: String,
        timeout: Duration,
    ) -> Result<Client, IntelError> {
        let mut base =
            url::Url::parse(base).map_err(|e| IntelError::Config(format!("{base:?}: {e}")))?;
        if !base.path().ends_with('/') {
            base.set_path(&format!("{}/", base.path()));
        }
        let mut key = reqwest::header::HeaderValue::try_from(key).map_err(|_| {
            IntelError::Config("the MISP key holds characters an HTTP header cannot carry".into())
        })?;
        key.set_sensitive(true);
        Ok(Client {
            http,
            base,
            key,
            timeout,
            max_body: super::fetch::DEFAULT_MAX_BODY,
        })
    }

    /// The page of event `id` in MISP's web interface (for a person to open).
    pub fn event_url(&self, id: u64) -> Option<String> {
        self.base
            .join(&format!("events/view/{id}"))
            .ok()
            .map(String::from)
    }

    /// Caps the replies read (`limits.body_mb`).
    pub fn with_max_body(mut self, max_body: usize) -> Client {
        self.max_body = max_body;
        self
    }

    async fn post(&self, path: &str, body: &Value) -> Result<Vec<u8>, IntelError> {
        let url = self
            .base
            .join(path)
            .map_err(|e| IntelError::Config(format!("{path}: {e}")))?;
        let resp = self
            .http
            .post(url.clone())
            .timeout(self.timeout)
            .header("Authorization", self.key.clone())
            .header("Accept", "application/json")
            .json(body)
            .send()
            .await
            .map_err(|e| IntelError::http(url.as_str(), e))?;
        let status = resp.status();
        let bytes = match super::fetch::capped_body(resp, self.max_body).await {
            Ok(b) => b,
            Err(super::fetch::CappedError::TooLarge) => {
                return Err(IntelError::TooLarge {
                    what: super::masked(url.as_str()),
                    limit_mb: self.max_body / 1024 / 1024,
                })
            }
            Err(super::fetch::CappedError::Transport(e)) => {
                return Err(IntelError::http(url.as_str(), e))
            }
        };
        if !status.is_success() {
            // MISP explains itself in a JSON `message`/`name`; keep it, short and printable.
            let body: String = serde_json::from_slice::<Value>(&bytes)
                .ok()
                .and_then(|v| {
                    v.get("message")
                        .or_else(|| v.get("name"))
                        .and_then(Value::as_str)
                        .map(str::to_string)
                })
                .unwrap_or_default()
                .chars()
                .filter(|c| !c.is_control())
                .take(200)
                .collect();
            return Err(IntelError::Status {
                url: super::masked(url.as_str()),
                status: status.as_u16(),
                body,
            });
        }
        Ok(bytes.to_vec())
    }

    /// All pages of an attribute search.
    async fn search_attributes(
        &self,
        filters: Value,
        limit: u32,
    ) -> Result<Vec<Attribute>, IntelError> {
        let mut out = Vec::new();
        for page in 1u32.. {
            let mut body = filters.clone();
            body["page"] = json!(page);
            body["limit"] = json!(limit);
            let bytes = self.post("attributes/restSearch", &body).await?;
            let parsed: SearchResponse = serde_json::from_slice(&bytes).map_err(|e| {
                IntelError::malformed(
                    self.base
                        .join("attributes/restSearch")
                        .map(|u| u.to_string())
                        .unwrap_or_default(),
                    e,
                )
            })?;
            let n = parsed.response.attributes.len();
            out.extend(parsed.response.attributes);
            if n < limit as usize {
                break;
            }
        }
        Ok(out)
    }

    /// Adds a sighting to an attribute: "seen (or found false, or expired) by
    /// this appliance at `timestamp`".
    pub async fn add_sighting(
        &self,
        attribute_uuid: &str,
        source: &str,
        timestamp: i64,
        kind: SightingType,
    ) -> Result<(), IntelError> {
        let body = json!({
            "uuid": attribute_uuid,
            "source": source,
            "type": (kind as u8).to_string(),
            "timestamp": timestamp.to_string(),
        });
        let reply = self.post("sightings/add", &body).await?;
        sighting_outcome(&reply, attribute_uuid)
    }

    /// Creates an event; one with the same uuid already there counts as created
    /// (the uuid is the idempotency key: a retry never makes a second event).
    pub async fn add_event(&self, event: &NewEvent) -> Result<(), IntelError> {
        let body = serde_json::to_value(event).map_err(|e| IntelError::Config(e.to_string()))?;
        match self.post("events/add", &body).await {
            Err(IntelError::Status {
                status: 403, body, ..
            }) if body.starts_with("Event already exists") => Ok(()),
            other => other.map(|_| ()),
        }
    }

    /// Edits an event (by uuid) with the fields given.
    pub async fn edit_event(&self, uuid: &str, event: &EventEdit) -> Result<(), IntelError> {
        // Only ever our own derived uuids; still, nothing but a uuid goes into the path.
        if uuid.len() != 36 || !uuid.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-') {
            return Err(IntelError::Config(format!("{uuid:?} is not a uuid")));
        }
        let body = serde_json::to_value(event).map_err(|e| IntelError::Config(e.to_string()))?;
        self.post(&format!("events/edit/{uuid}"), &body)
            .await
            .map(|_| ())
    }

    /// Metadata (threat level, published) of the given events.
    async fn events(&self, ids: &[u64]) -> Result<Vec<EventMeta>, IntelError> {
        let mut out = Vec::new();
        for chunk in ids.chunks(EVENT_CHUNK) {
            let ids: Vec<String> = chunk.iter().map(u64::to_string).collect();
            let body = json!({"returnFormat": "json", "eventid": ids, "metadata": true});
            let bytes = self.post("events/restSearch", &body).await?;
            let parsed: EventSearch = serde_json::from_slice(&bytes)
                .map_err(|e| IntelError::malformed("events/restSearch", e))?;
            out.extend(parsed.response.into_iter().map(|w| w.event));
        }
        Ok(out)
    }
}

/// MISP answers a sighting it could not add with 200 and a bare message.
/// An attribute that is gone (deleted) will never take one: that is final,
/// not worth retrying; anything else unexpected is an error.
fn sighting_outcome(reply: &[u8], attribute_uuid: &str) -> Result<(), IntelError> {
    let v: Value =
        serde_json::from_slice(reply).map_err(|e| IntelError::malformed("sightings/add", e))?;
    if v.get("Sighting").is_some() {
        return Ok(());
    }
    let msg = v["message"].as_str().unwrap_or_default();
    if msg.contains("No valid attributes") {
        tracing::warn!(
            attribute = attribute_uuid,
            "MISP has no such attribute any more; sighting dropped"
        );
        return Ok(());
    }
    Err(IntelError::Malformed {
        url: "sightings/add".into(),
        message: format!(
            "no sighting in the reply: {}",
            msg.chars()
                .filter(|c| !c.is_control())
                .take(200)
                .collect::<String>()
        ),
    })
}

/// Re-read this much before the last pull's start when asking for newly
/// published events: covers clock skew between MISP and us (re-reads are idempotent).
const PUBLISH_OVERLAP: u64 = 600;

/// What one source asks its MISP instance for (from `sources[].misp` of the config).
#[derive(Clone, Copy, Debug)]
pub struct Query<'a> {
    /// The source's name, for provenance.
    pub name: &'a str,
    /// Attribute types to pull.
    pub types: &'a [String],
    /// Ask MISP to drop values on its warninglists.
    pub enforce_warninglist: bool,
    /// Attributes per page.
    pub page_limit: u32,
    /// How often a full pull replaces the incremental ones.
    pub full_resync: std::time::Duration,
}

/// Pulls a MISP instance: a full pull when due, an incremental one otherwise.
///
/// MISP unpublishes an event when one of its attributes changes, and publishing
/// does not touch attribute timestamps. So an incremental pull asks twice:
/// (1) attributes changed since the cursor, whatever their state, and drops those
/// now deleted or without `to_ids`; (2) the enforceable attributes of events
/// published since the last pull, which replace what we held for them. Events
/// unpublished without any change are caught by the periodic full pull.
pub async fn pull(
    cfg: Query<'_>,
    client: &Client,
    known: &SourceSet,
    cursor: &Cursor,
    now: u64,
) -> Result<Pulled, IntelError> {
    let full = match (
        cursor.last_full,
        cursor.misp_timestamp,
        cursor.publish_since,
    ) {
        (Some(last), Some(_), Some(_)) => now.saturating_sub(last) >= cfg.full_resync.as_secs(),
        _ => true,
    };
    let mut enforceable = json!({
        "returnFormat": "json",
        "type": cfg.types,
        "published": 1,
        "to_ids": 1,
        "deleted": 0,
        "enforceWarninglist": u8::from(cfg.enforce_warninglist),
    });
    let mut removed = HashSet::new();
    let mut max_ts = cursor.misp_timestamp;
    if !full {
        let changed = json!({
            "returnFormat": "json",
            "type": cfg.types,
            "timestamp": cursor.misp_timestamp.unwrap_or(0).to_string(),
            "deleted": [0, 1],
        });
        for a in client.search_attributes(changed, cfg.page_limit).await? {
            max_ts = max_ts.max(a.timestamp);
            if a.deleted || !a.to_ids {
                removed.insert(a.uuid);
            }
        }
        enforceable["publish_timestamp"] = json!(cursor.publish_since.unwrap_or(0).to_string());
    }
    let attrs = client
        .search_attributes(enforceable, cfg.page_limit)
        .await?;

    let mut c = Collector::new(cfg.name);
    for a in &attrs {
        max_ts = max_ts.max(a.timestamp);
        // Upserted: whatever we held for this attribute goes, the new value comes.
        removed.insert(a.uuid.clone());
        if !a.to_ids || a.deleted {
            continue;
        }
        let event = a.event.as_ref().map(|e| {
            c.event(EventInfo {
                uuid: e.uuid.clone(),
                id: e.id,
                threat_level: known.event_by_uuid(&e.uuid).and_then(|k| k.threat_level),
                info: e.info.clone(),
                timestamp: 0,
                tags: known
                    .event_by_uuid(&e.uuid)
                    .map(|k| k.tags.clone())
                    .unwrap_or_default(),
                seen: 0,
            })
        });
        c.value(Some(&a.kind), &a.value, event, Some(&a.uuid));
    }

    // Threat levels: attribute searches do not carry them. Ask for the events we
    // have not seen before (all of them on a full pull, to pick up edits).
    let unknown: Vec<u64> = c
        .set
        .events()
        .iter()
        .filter(|e| full || e.threat_level.is_none())
        .filter_map(|e| e.id)
        .collect();
    if !unknown.is_empty() {
        for meta in client.events(&unknown).await? {
            if let Some(level) = meta.threat_level_id.and_then(|t| u8::try_from(t).ok()) {
                c.set.set_threat_level(&meta.uuid, level);
            }
            c.set.set_tags(
                &meta.uuid,
                super::set::clean_tags(meta.tags.iter().map(|t| t.name.as_str())),
            );
            tracing::trace!(
                event = meta.id,
                published = meta.published,
                "event metadata"
            );
        }
    }

    let change = if full {
        Change::Replace(c.set)
    } else {
        Change::Patch {
            remove_attributes: removed,
            remove_events: HashSet::new(),
            add: c.set,
        }
    };
    Ok(Pulled {
        change,
        stats: c.stats,
        cursor: Cursor {
            misp_timestamp: max_ts,
            last_full: if full { Some(now) } else { cursor.last_full },
            publish_since: Some(now.saturating_sub(PUBLISH_OVERLAP)),
            list: None,
        },
    })
}

/// MISP's threat level names.
pub fn threat_level_name(t: u8) -> &'static str {
    match t {
        1 => "high",
        2 => "medium",
        3 => "low",
        _ => "undefined",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_misp_reply_over_the_cap_is_refused_not_read() {
        // A reply that says it is huge, and then sends nothing.
        let head = b"HTTP/1.1 200 OK\r\nContent-Length: 900000000\r\n\r\n";
        let url = super::super::fetch::canned_server(head.to_vec()).await;
        let c = Client::new(
            reqwest::Client::new(),
            &url,
            "k".into(),
            Duration::from_secs(20),
        )
        .unwrap()
        .with_max_body(2 << 20);
        let e = c.search_attributes(json!({}), 10).await.unwrap_err();
        assert!(matches!(e, IntelError::TooLarge { limit_mb: 2, .. }), "{e}");
    }

    #[tokio::test]
    async fn the_key_and_a_token_in_the_url_stay_out_of_debug_and_errors() {
        let head = b"HTTP/1.1 403 Forbidden\r\nContent-Length: 2\r\n\r\n{}";
        let url = super::super::fetch::canned_server(head.to_vec()).await;
        let c = Client::new(
            reqwest::Client::new(),
            &format!("{url}/?token=t0ken-in-url"),
            "m1sp-auth-k3y".into(),
            Duration::from_secs(5),
        )
        .unwrap();
        assert!(c.key.is_sensitive());
        let broken = Client::new(
            reqwest::Client::new(),
            "https://misp.example",
            "m1sp-auth-k3y\r\nX-Evil: 1".into(),
            Duration::from_secs(5),
        )
        .unwrap_err()
        .to_string();
        assert!(
            !broken.contains("m1sp-auth-k3y") && broken.contains("MISP key"),
            "{broken}"
        );
        let debug = format!("{c:?}");
        assert!(!debug.contains("m1sp-auth-k3y"), "{debug}");
        assert!(!debug.contains("t0ken-in-url"), "{debug}");
        let e = c
            .post("events/restSearch?token=t0ken-in-url", &json!({}))
            .await;
        let e = e.unwrap_err().to_string();
        assert!(e.contains("HTTP 403") && e.contains("token=***"), "{e}");
        assert!(!e.contains("t0ken-in-url"), "{e}");
    }

    #[test]
    fn sighting_replies_added_gone_or_refused() {
        assert!(sighting_outcome(br#"{"Sighting": {"id": "1"}}"#, "a").is_ok());
        let gone = br#"{"message": "Could not add the Sighting. Reason: No valid attributes found that match the criteria."}"#;
        assert!(
            sighting_outcome(gone, "a").is_ok(),
            "a deleted attribute never takes one: final"
        );
        let refused = br#"{"message": "Could not add the Sighting. Reason: Invalid type"}"#;
        let e = sighting_outcome(refused, "a").unwrap_err().to_string();
        assert!(e.contains("Invalid type"), "{e}");
        assert!(sighting_outcome(b"<html>", "a").is_err());
    }

    fn scalar() -> impl proptest::strategy::Strategy<Value = Value> {
        use proptest::prelude::*;
        prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            "[ -~\u{1b}\u{7}\u{202e}\n]{0,40}".prop_map(Value::from),
            "(203\\.0\\.113\\.[0-9]{1,3}|[a-z]{1,8}\\.test|[0-9a-f]{32})".prop_map(Value::from),
        ]
    }

    /// Mostly text, as MISP sends it; now and then anything else.
    fn text() -> impl proptest::strategy::Strategy<Value = Value> {
        use proptest::prelude::*;
        prop_oneof![
            9 => "([ -~\u{1b}\u{7}\u{202e}\n]{0,40}|203\\.0\\.113\\.[0-9]{1,3}|[a-z]{1,8}\\.test)"
                .prop_map(Value::from),
            1 => scalar(),
        ]
    }

    proptest::proptest! {
        /// Whatever a MISP (or something posing as one) answers to
        /// restSearch: attributes, or one parse error; never a panic, and
        /// what is kept holds no control character.
        #[test]
        fn any_rest_search_reply_is_attributes_or_one_parse_error(
            attrs in proptest::collection::vec(
                (proptest::sample::select(vec!["ip-dst", "domain", "url", "md5", "yara", "domain|ip"]),
                 text(), text(), scalar(), scalar(), text(), text()),
                0..6,
            ),
            shape in 0u8..4,
        ) {
            let list: Vec<Value> = attrs
                .iter()
                .map(|(k, v, u, t, ts, ev, info)| json!({
                    "type": k, "value": v, "uuid": u, "to_ids": t, "timestamp": ts,
                    "Event": {"uuid": ev, "id": ts, "info": info},
                }))
                .collect();
            let body = match shape {
                0 => json!({"response": {"Attribute": list}}),
                1 => json!({"response": list}),
                2 => json!({"response": {}}),
                _ => json!(list),
            };
            match serde_json::from_slice::<SearchResponse>(body.to_string().as_bytes()) {
                Ok(r) => {
                    let mut c = Collector::new("p");
                    for a in &r.response.attributes {
                        let ev = a.event.as_ref().map(|e| c.event(EventInfo {
                            uuid: e.uuid.clone(),
                            id: e.id,
                            info: e.info.clone(),
                            ..EventInfo::default()
                        }));
                        c.value(Some(&a.kind), &a.value, ev, Some(&a.uuid));
                    }
                    proptest::prop_assert_eq!(c.stats.seen as usize, r.response.attributes.len());
                    proptest::prop_assert_eq!(
                        c.stats.accepted + c.stats.rejected.values().sum::<u64>(),
                        c.stats.seen
                    );
                    for e in c.set.events() {
                        proptest::prop_assert!(!e.info.chars().any(char::is_control), "{:?}", e.info);
                    }
                }
                Err(e) => proptest::prop_assert!(!e.to_string().contains('\n')),
            }
        }
    }
}
