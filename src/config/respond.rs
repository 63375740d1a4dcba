//! Settings of the responders: the advisor (`advisor:`), mail (`mail:`) and
//! the outbox's retry bounds.

use std::path::PathBuf;
use std::time::Duration;

use lettre::message::Mailbox;
use serde::{Deserialize, Serialize};

/// Longest wait between two attempts of one action.
pub const MAX_BACKOFF_SECS: u64 = 3600;
/// First wait after a failure by default (`alerts.retry_first`); doubles with each further failure.
pub const FIRST_BACKOFF_SECS: u64 = 30;

/// Which advisor writes the steps.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// Cohere's v2 chat API.
    #[default]
    Cohere,
    /// Any OpenAI-compatible `/v1/chat/completions` (llama.cpp, Ollama, vLLM…).
    Openai,
    /// No LLM: steps from the rule's classification and the MISP context.
    Offline,
}

/// Advisor settings (the `advisor:` section).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdvisorConfig {
    /// `cohere`, `openai` or `offline`.
    pub backend: Backend,
    /// Base URL (default: Cohere's API, or a local llama.cpp server for `openai`).
    pub url: Option<String>,
    /// Model name (default: `command-a-03-2025` for Cohere, `default` otherwise).
    pub model: Option<String>,
    /// Name of the secret holding the API key (optional for `openai`).
    pub api_key_env: Option<String>,
    /// How long one call may take.
    #[serde(deserialize_with = "crate::config::de_duration")]
    pub timeout: Duration,
    /// Replace home addresses and MACs in prompts (off only for a model you run yourself).
    pub redact: bool,
    /// CA bundle for an endpoint with a private certificate.
    pub ca_file: Option<PathBuf>,
    /// Calls per incident before the offline advice is used instead.
    pub tries: u32,
}

impl Default for AdvisorConfig {
    fn default() -> Self {
        AdvisorConfig {
            backend: Backend::Cohere,
            url: None,
            model: None,
            api_key_env: None,
            timeout: Duration::from_secs(30),
            redact: true,
            ca_file: None,
            tries: 3,
        }
    }
}

impl AdvisorConfig {
    /// The base URL, defaults applied.
    pub fn url(&self) -> &str {
        match (&self.url, self.backend) {
            (Some(u), _) => u,
            (None, Backend::Openai) => "http://127.0.0.1:8080",
            (None, _) => "https://api.cohere.com",
        }
    }

    /// The model, defaults applied.
    pub fn model(&self) -> &str {
        match (&self.model, self.backend) {
            (Some(m), _) => m,
            (None, Backend::Cohere) => "command-a-03-2025",
            (None, _) => "default",
        }
    }

    /// Who writes advice with this config, given whether its key is set.
    pub fn describe(&self, key_set: bool) -> String {
        match self.backend {
            Backend::Cohere if key_set => format!("cohere {}", self.model()),
            Backend::Cohere => "offline (no Cohere key)".to_string(),
            Backend::Openai => format!("{} at {}", self.model(), crate::intel::masked(self.url())),
            Backend::Offline => "offline".to_string(),
        }
    }

    /// The secret's name, defaults applied (the seed project's `COHERE_API_KEY` for Cohere).
    pub fn api_key_env(&self) -> Option<&str> {
        match (&self.api_key_env, self.backend) {
            (Some(k), _) => Some(k),
            (None, Backend::Cohere) => Some("COHERE_API_KEY"),
            (None, _) => None,
        }
    }
}

/// How the SMTP connection is protected.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Security {
    /// Plain connection upgraded with STARTTLS, which is required (port 587).
    #[default]
    Starttls,
    /// TLS from the first byte (port 465).
    Tls,
    /// No TLS and no login: only for a relay on this machine.
    None,
}

/// Mail settings (the `mail:` section); mail is off while `to` is empty.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MailConfig {
    /// Recipients.
    pub to: Vec<String>,
    /// Sender (Mailtrap sends only from a domain you verified there).
    pub from: Option<String>,
    /// SMTP server.
    pub host: String,
    /// Port (default: 587 for starttls, 465 for tls, 25 for none).
    pub port: Option<u16>,
    /// `starttls`, `tls` or `none`.
    pub security: Security,
    /// Login name (Mailtrap: `api`).
    pub user: String,
    /// Name of the secret holding the password (Mailtrap: the API token).
    pub password_env: String,
    /// CA bundle for a server with a private certificate.
    pub ca_file: Option<PathBuf>,
    /// Most mails an hour; what does not fit goes out as one digest.
    pub max_per_hour: u32,
    /// How long one delivery may take.
    #[serde(deserialize_with = "crate::config::de_duration")]
    pub timeout: Duration,
}

impl Default for MailConfig {
    fn default() -> Self {
        MailConfig {
            to: Vec::new(),
            from: None,
            host: "live.smtp.mailtrap.io".to_string(),
            port: None,
            security: Security::Starttls,
            user: "api".to_string(),
            password_env: "MAILTRAP_TOKEN".to_string(),
            ca_file: None,
            max_per_hour: 10,
            timeout: Duration::from_secs(30),
        }
    }
}

impl MailConfig {
    /// The port, defaults applied.
    pub fn port(&self) -> u16 {
        self.port.unwrap_or(match self.security {
            Security::Starttls => 587,
            Security::Tls => 465,
            Security::None => 25,
        })
    }

    /// Where mail goes, for status and check-config.
    pub fn describe(&self) -> String {
        match self.to.len() {
            0 => "off".to_string(),
            _ => format!(
                "to {} via {}:{} ({} an hour at most)",
                self.to.join(", "),
                self.host,
                self.port(),
                self.max_per_hour
            ),
        }
    }

    /// Checks the addresses; the error names the key and the value.
    pub fn check(&self) -> Result<(), (String, String)> {
        for (i, to) in self.to.iter().enumerate() {
            to.parse::<Mailbox>().map_err(|e| {
                (
                    format!("mail.to[{i}]"),
                    format!("{to:?} is not a mail address ({e})"),
                )
            })?;
        }
        match &self.from {
            Some(f) => {
                f.parse::<Mailbox>().map_err(|e| {
                    (
                        "mail.from".to_string(),
                        format!("{f:?} is not a mail address ({e})"),
                    )
                })?;
            }
            None if !self.to.is_empty() => return Err((
                "mail.from".into(),
                "is required when mail.to is set (Mailtrap sends only from your verified domain)"
                    .into(),
            )),
            None => {}
        }
        if self.host.is_empty() || self.host.chars().any(|c| c.is_whitespace() || c == '/') {
            return Err((
                "mail.host".into(),
                format!("{:?} is not a host name", self.host),
            ));
        }
        if self.max_per_hour == 0 {
            return Err(("mail.max_per_hour".into(), "must be at least 1".into()));
        }
        Ok(())
    }
}
