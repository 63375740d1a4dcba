//! Push targets (`notify:`): an ntfy topic, a signed webhook, a Matrix room.
//! Each delivery is one HTTP request; whatever fails is retried by the
//! outbox (at the time a 429 asks for, else with backoff), and a success is
//! recorded before the action is forgotten, so each incident goes out once.
//! Matrix makes that hold across a crash too: the transaction id is derived
//! from the outbox key, and the homeserver drops a repeat of it.

pub mod message;

use std::time::Duration;

use ring::hmac;

use crate::config::{PushKind, PushTarget};
use crate::secrets::Secrets;
use message::Message;

/// Largest answer read from a push service (its error text, or an event id).
const MAX_ANSWER: usize = 64 * 1024;
/// The webhook's signature header: `sha256=` and the hex HMAC of the body.
pub const SIGNATURE_HEADER: &str = "X-Homewarden-Signature";
/// The webhook's delivery id header (the body's `id`).
pub const DELIVERY_HEADER: &str = "X-Homewarden-Delivery";

/// Why a push did not go out.
#[derive(Debug, thiserror::Error)]
pub enum PushError {
    /// The target cannot be built from the config and secrets.
    #[error("notify {target}: {message}")]
    Config {
        /// The target's name.
        target: String,
        /// What is wrong.
        message: String,
    },
    /// The service did not take it; the outbox tries again.
    #[error("{message}")]
    Failed {
        /// What happened (status and the service's words, or the transport error).
        message: String,
        /// When the service asked us to come back.
        retry_after: Option<Duration>,
    },
}

impl PushError {
    fn failed(message: String) -> PushError {
        PushError::Failed {
            message,
            retry_after: None,
        }
    }

    /// How long the service asked us to wait, if it did.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            PushError::Failed { retry_after, .. } => *retry_after,
            PushError::Config { .. } => None,
        }
    }
}

/// One push target, built once at start.
pub struct Pusher {
    name: String,
    kind: PushKind,
    http: reqwest::Client,
    url: url::Url,
    topic: String,
    room: String,
    token: Option<String>,
    key: Option<hmac::Key>,
    /// Most messages an hour.
    pub max_per_hour: u32,
}

impl std::fmt::Debug for Pusher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL (a webhook's path, a topic), token and HMAC key stay out
        // of every log and panic message.
        f.debug_struct("Pusher")
            .field("name", &self.name)
            .field("kind", &self.kind)
            .field("url", &crate::config::notify::shown_url(self.url.as_str()))
            .field("token", &self.token.as_ref().map(|_| "***"))
            .field("key", &self.key.as_ref().map(|_| "***"))
            .field("max_per_hour", &self.max_per_hour)
            .finish_non_exhaustive()
    }
}

impl Pusher {
    /// Builds the target (no connection yet); the secrets it names must be set.
    pub fn new(cfg: &PushTarget, secrets: &Secrets) -> Result<Pusher, PushError> {
        let err = |message: String| PushError::Config {
            target: cfg.name().to_string(),
            message,
        };
        let secret = |name: &Option<String>, what: &str| -> Result<Option<String>, PushError> {
            match name {
                None => Ok(None),
                Some(n) => secrets.get(n).map(Some).ok_or_else(|| {
                    err(format!("the secret {n} ({what}) is not set in the secrets"))
                }),
            }
        };
        let token = secret(&cfg.token_env, "token_env")?;
        let key = secret(&cfg.secret_env, "secret_env")?
            .map(|k| hmac::Key::new(hmac::HMAC_SHA256, k.as_bytes()));
        let http = crate::intel::fetch::builder(cfg.ca_file.as_deref(), true)
            .and_then(|b| {
                b.timeout(cfg.timeout)
                    .build()
                    .map_err(|e| crate::intel::IntelError::Config(e.to_string()))
            })
            .map_err(|e| err(e.to_string()))?;
        let url = url::Url::parse(&cfg.url).map_err(|e| err(format!("url: {e}")))?;
        Ok(Pusher {
            name: cfg.name().to_string(),
            kind: cfg.kind,
            http,
            url,
            topic: cfg.topic.clone().unwrap_or_default(),
            room: cfg.room.clone().unwrap_or_default(),
            token,
            key,
            max_per_hour: cfg.max_per_hour,
        })
    }

    /// The target's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Sends `m` as delivery `id` (the outbox key: the same on every retry).
    pub async fn send(&self, m: &Message, id: &str, appliance: &str) -> Result<(), PushError> {
        let req = match self.kind {
            PushKind::Ntfy => {
                // JSON publish goes to the server's root; the topic is in the body.
                let mut root = self.url.clone();
                root.set_path("/");
                self.http.post(root).json(&message::ntfy(&self.topic, m))
            }
            PushKind::Webhook => {
                let now = crate::intel::unix_now();
                let body = serde_json::to_vec(&message::webhook(m, id, appliance, now))
                    .map_err(|e| PushError::failed(e.to_string()))?;
                let mut req = self
                    .http
                    .post(self.url.clone())
                    .header(reqwest::header::CONTENT_TYPE, "application/json")
                    .header(DELIVERY_HEADER, id);
                if let Some(key) = &self.key {
                    req = req.header(SIGNATURE_HEADER, signature(key, &body));
                }
                req.body(body)
            }
            PushKind::Matrix => self
                .http
                .put(matrix_send_url(&self.url, &self.room, id))
                .json(&message::matrix(m)),
        };
        let req = match &self.token {
            Some(t) => req.bearer_auth(t),
            None => req,
        };
        let resp = req
            .send()
            .await
            .map_err(|e| PushError::failed(crate::intel::fetch::transport_text(e)))?;
        let status = resp.status().as_u16();
        let header_wait = resp
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let body = crate::intel::fetch::capped_body(resp, MAX_ANSWER)
            .await
            .unwrap_or_default();
        answer(status, header_wait, &body).map_err(|e| self.scrub(e))
    }

    /// A service may quote what it was sent in its error (the token, the
    /// URL): those words go to the outbox and logs without them.
    fn scrub(&self, e: PushError) -> PushError {
        let PushError::Failed {
            message,
            retry_after,
        } = e
        else {
            return e;
        };
        let url = self.url.as_str();
        let path = self.url.path();
        let query = self.url.query().unwrap_or("");
        let secrets = [
            self.token.as_deref().unwrap_or(""),
            url,
            path,
            query,
            &self.topic,
        ];
        PushError::Failed {
            message: crate::secrets::redact(&message, &secrets),
            retry_after,
        }
    }
}

/// The signature header's value for `body`.
pub fn signature(key: &hmac::Key, body: &[u8]) -> String {
    let tag = hmac::sign(key, body);
    let hex: String = tag.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256={hex}")
}

/// `PUT /_matrix/client/v3/rooms/{room}/send/m.room.message/{txn}`: the
/// transaction id comes from the delivery id, so a repeat is the same event.
pub fn matrix_send_url(homeserver: &url::Url, room: &str, id: &str) -> url::Url {
    let txn: String = id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' {
                c
            } else {
                '.'
            }
        })
        .collect();
    let mut url = homeserver.clone();
    if let Ok(mut path) = url.path_segments_mut() {
        path.pop_if_empty().extend([
            "_matrix",
            "client",
            "v3",
            "rooms",
            room,
            "send",
            "m.room.message",
            &txn,
        ]);
    }
    url
}

/// What a service's answer means: taken, or failed (and when to retry).
fn answer(status: u16, header_wait: Option<Duration>, body: &[u8]) -> Result<(), PushError> {
    if (200..300).contains(&status) {
        return Ok(());
    }
    #[derive(serde::Deserialize, Default)]
    struct Said {
        // ntfy: {"error": "..."}; Matrix: {"errcode", "error", "retry_after_ms"}.
        error: Option<String>,
        errcode: Option<String>,
        retry_after_ms: Option<u64>,
    }
    let said: Said = serde_json::from_slice(body).unwrap_or_default();
    let words = said
        .error
        .unwrap_or_else(|| String::from_utf8_lossy(body).into_owned());
    let words: String = crate::respond::mail::one_line(&words, 200);
    let code = said.errcode.map(|c| format!("{c} ")).unwrap_or_default();
    let retry_after = header_wait.or(said
        .retry_after_ms
        .map(|ms| Duration::from_millis(ms.max(1000))));
    // A 429 without a wait (ntfy's) gets the outbox's usual backoff.
    Err(PushError::Failed {
        message: format!("HTTP {status}: {code}{words}"),
        retry_after,
    })
}

#[cfg(test)]
mod tests;
