//! `notify:`: push targets beside mail (ntfy, a webhook, a Matrix room).
//! Each gets every high-severity incident through the outbox, with its own
//! hourly limit and digest, like mail.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// What a push target is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PushKind {
    /// An ntfy server (ntfy.sh or your own): JSON publish to a topic.
    Ntfy,
    /// Any HTTPS endpoint: a documented JSON body, signed with HMAC-SHA256.
    Webhook,
    /// A Matrix room, through its homeserver's client-server API.
    Matrix,
}

impl PushKind {
    /// Its name in the config.
    pub fn name(self) -> &'static str {
        match self {
            PushKind::Ntfy => "ntfy",
            PushKind::Webhook => "webhook",
            PushKind::Matrix => "matrix",
        }
    }
}

/// One push target (an entry of `notify:`).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PushTarget {
    /// `ntfy`, `webhook` or `matrix`.
    #[serde(rename = "type")]
    pub kind: PushKind,
    /// Its name in status, logs and the outbox (default: the type).
    #[serde(default)]
    pub name: Option<String>,
    /// The ntfy server, the webhook's URL, or the Matrix homeserver.
    pub url: String,
    /// ntfy: the topic.
    #[serde(default)]
    pub topic: Option<String>,
    /// Matrix: the room id (`!abc:example.org`, or `!abc` in newer rooms).
    #[serde(default)]
    pub room: Option<String>,
    /// The secret holding the access token (ntfy: optional; Matrix: required).
    #[serde(default)]
    pub token_env: Option<String>,
    /// Webhook: the secret holding the HMAC-SHA256 key the body is signed with.
    #[serde(default)]
    pub secret_env: Option<String>,
    /// Most messages an hour; what does not fit goes out as one digest.
    #[serde(default = "default_max_per_hour")]
    pub max_per_hour: u32,
    /// How long one delivery may take.
    #[serde(
        default = "default_timeout",
        deserialize_with = "crate::config::de_duration"
    )]
    pub timeout: Duration,
    /// CA bundle for a server with a private certificate.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
}

fn default_max_per_hour() -> u32 {
    20
}

fn default_timeout() -> Duration {
    Duration::from_secs(15)
}

fn secret_name_ok(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// A push URL as status, warnings and logs show it: scheme, host and port,
/// with `/…` standing for a path or query (where webhooks keep their token).
pub fn shown_url(raw: &str) -> String {
    let Ok(url) = url::Url::parse(raw) else {
        return "(not a URL)".into();
    };
    let host = url.host_str().unwrap_or("");
    let port = url.port().map(|p| format!(":{p}")).unwrap_or_default();
    let rest = if url.path() != "/" || url.query().is_some() {
        "/…"
    } else {
        ""
    };
    format!("{}://{host}{port}{rest}", url.scheme())
}

impl PushTarget {
    /// Its name, default applied.
    pub fn name(&self) -> &str {
        self.name.as_deref().unwrap_or(self.kind.name())
    }

    /// One line for status and check-config. An ntfy topic is all it takes
    /// to read or send to it, and a webhook's path often is its token: the
    /// line shows where pushes go, not those.
    pub fn describe(&self) -> String {
        let url = shown_url(&self.url);
        let at = match self.kind {
            PushKind::Ntfy => format!("a topic at {url}"),
            PushKind::Webhook => url,
            PushKind::Matrix => format!("room {} at {url}", self.room.as_deref().unwrap_or("?")),
        };
        format!(
            "{} ({}): {at}, {} an hour at most",
            self.name(),
            self.kind.name(),
            self.max_per_hour
        )
    }

    /// Checks what the type needs; `(key, message)` on error, the key
    /// being `notify[i].field`.
    pub fn check(&self, i: usize) -> Result<(), (String, String)> {
        let key = |field: &str| format!("notify[{i}].{field}");
        let name = self.name();
        if name.is_empty()
            || name.len() > 40
            || !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err((
                key("name"),
                format!("{name:?} is not a name (letters, digits, - and _, at most 40)"),
            ));
        }
        let url = url::Url::parse(&self.url)
            .map_err(|e| (key("url"), format!("{:?} is not a URL ({e})", self.url)))?;
        if !matches!(url.scheme(), "https" | "http") || url.host_str().is_none() {
            return Err((
                key("url"),
                format!("{:?} is not an http(s) URL with a host", self.url),
            ));
        }
        for (field, v) in [
            ("token_env", &self.token_env),
            ("secret_env", &self.secret_env),
        ] {
            if let Some(v) = v.as_deref().filter(|v| !secret_name_ok(v)) {
                return Err((
                    key(field),
                    format!("{v:?} is not a secret's name (letters, digits and _)"),
                ));
            }
        }
        let wrong = |field: &str| {
            Err((
                key(field),
                format!("is not a setting of a {} target", self.kind.name()),
            ))
        };
        match self.kind {
            PushKind::Ntfy => {
                let topic = self.topic.as_deref().unwrap_or("");
                // ntfy's own rule for topic names.
                if topic.is_empty()
                    || topic.len() > 64
                    || !topic
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
                {
                    return Err((
                        key("topic"),
                        format!(
                            "{topic:?} is not an ntfy topic (letters, digits, - and _, at most 64)"
                        ),
                    ));
                }
                if self.room.is_some() {
                    return wrong("room");
                }
                if self.secret_env.is_some() {
                    return wrong("secret_env");
                }
            }
            PushKind::Webhook => {
                if self.topic.is_some() {
                    return wrong("topic");
                }
                if self.room.is_some() {
                    return wrong("room");
                }
                if self.token_env.is_some() {
                    return wrong("token_env");
                }
            }
            PushKind::Matrix => {
                let room = self.room.as_deref().unwrap_or("");
                // `!opaque:server`, or `!opaque` from room version 12 on.
                if !room.starts_with('!') || room.len() < 2 || room.contains(['/', ' ']) {
                    return Err((
                        key("room"),
                        format!("{room:?} is not a Matrix room id (it starts with !; an alias #name:server is not one)"),
                    ));
                }
                if self.token_env.is_none() {
                    return Err((
                        key("token_env"),
                        "is required: the secret holding the bot account's access token".into(),
                    ));
                }
                if self.topic.is_some() {
                    return wrong("topic");
                }
                if self.secret_env.is_some() {
                    return wrong("secret_env");
                }
            }
        }
        if self.max_per_hour == 0 {
            return Err((key("max_per_hour"), "must be at least 1".into()));
        }
        Ok(())
    }

    /// What weakens the appliance: incidents sent in clear, or unsigned.
    pub fn warning(&self) -> Option<String> {
        if self.url.starts_with("http://") {
            return Some(format!(
                "notify {}: {} is plain http: incidents (and any token) cross the network unencrypted",
                self.name(),
                shown_url(&self.url)
            ));
        }
        (self.kind == PushKind::Webhook && self.secret_env.is_none()).then(|| {
            format!(
                "notify {}: the webhook is not signed (set secret_env): its receiver cannot tell our calls from anyone's",
                self.name()
            )
        })
    }
}

/// Checks every target and that no two share a name.
pub fn check(targets: &[PushTarget]) -> Result<(), (String, String)> {
    for (i, t) in targets.iter().enumerate() {
        t.check(i)?;
        if targets[..i].iter().any(|o| o.name() == t.name()) {
            return Err((
                format!("notify[{i}].name"),
                format!(
                    "{:?} is taken by an earlier target: give each a name",
                    t.name()
                ),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn targets(yaml: &str) -> Vec<PushTarget> {
        serde_yaml_ng::from_str(yaml).unwrap()
    }

    #[test]
    fn each_type_asks_for_what_it_needs_and_errors_name_the_entry() {
        let ok = targets(
            "[{type: ntfy, url: 'https://ntfy.sh', topic: hw-7f3a},
              {type: webhook, url: 'https://hooks.example/hw', secret_env: HOOK_KEY},
              {type: matrix, url: 'https://matrix.example', room: '!a:example', token_env: MX, name: mx},
              {type: matrix, url: 'https://matrix.example', room: '!FoIwDn4TWBAnjgSQOf4veJSbKCtR2Kelkc', token_env: MX}]",
        );
        assert_eq!(check(&ok), Ok(()));
        assert_eq!(ok[1].name(), "webhook");
        assert!(ok.iter().all(|t| t.warning().is_none()));
        for (yaml, key, says) in [
            ("[{type: ntfy, url: 'https://ntfy.sh'}]", "notify[0].topic", "\"\""),
            ("[{type: ntfy, url: 'https://ntfy.sh', topic: 'a/b'}]", "notify[0].topic", "a/b"),
            ("[{type: ntfy, url: 'ntfy.sh', topic: t}]", "notify[0].url", "ntfy.sh"),
            ("[{type: matrix, url: 'https://m.example', room: '#hall:m.example', token_env: T}]", "notify[0].room", "alias"),
            ("[{type: matrix, url: 'https://m.example', room: '!r:m.example'}]", "notify[0].token_env", "required"),
            ("[{type: webhook, url: 'https://h.example', topic: t}]", "notify[0].topic", "webhook"),
            ("[{type: webhook, url: 'https://h.example', secret_env: 'a b'}]", "notify[0].secret_env", "a b"),
            ("[{type: ntfy, url: 'https://ntfy.sh', topic: t, max_per_hour: 0}]", "notify[0].max_per_hour", "at least 1"),
            ("[{type: ntfy, url: 'https://ntfy.sh', topic: t}, {type: ntfy, url: 'https://ntfy.sh', topic: u}]", "notify[1].name", "\"ntfy\""),
        ] {
            let (k, m) = check(&targets(yaml)).unwrap_err();
            assert_eq!(k, key, "{yaml}");
            assert!(m.contains(says), "{yaml}: {m}");
        }
        assert!(serde_yaml_ng::from_str::<Vec<PushTarget>>("[{type: telegram, url: x}]").is_err());
        assert!(
            serde_yaml_ng::from_str::<Vec<PushTarget>>("[{type: ntfy, url: x, topik: t}]").is_err()
        );
    }

    /// The commented example in the shipped config, uncommented, is valid.
    #[test]
    fn the_example_in_the_shipped_config_is_valid() {
        let block = crate::config::shipped_example("notify");
        #[derive(Deserialize)]
        struct Section {
            notify: Vec<PushTarget>,
        }
        let s: Section = serde_yaml_ng::from_str(&block).unwrap();
        assert_eq!(s.notify.len(), 3, "{block}");
        assert_eq!(check(&s.notify), Ok(()));
    }

    #[test]
    fn clear_text_and_unsigned_webhooks_are_warned_about() {
        let t = targets(
            "[{type: ntfy, url: 'http://ntfy.lan', topic: t}, {type: webhook, url: 'https://h.example'}]",
        );
        assert!(t[0].warning().unwrap().contains("plain http"));
        assert!(t[1].warning().unwrap().contains("not signed"));
    }
}
