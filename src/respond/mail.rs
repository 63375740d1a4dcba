//! Incident mail: a plain-text and an HTML part (every value escaped), sent
//! over SMTP with STARTTLS or implicit TLS (Mailtrap by default), at most
//! `max_per_hour` mails an hour, with the overflow folded into one digest.

use lettre::message::{header::ContentType, Mailbox, MultiPart, SinglePart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use serde::{Deserialize, Serialize};

use crate::alerts::eve::format_timestamp;
use crate::alerts::triage::Incident;
pub use crate::config::respond::Security;
use crate::config::MailConfig;
use crate::intel::misp::threat_level_name;
use crate::respond::advisor::Advice;

/// A delivery failure.
#[derive(Debug, thiserror::Error)]
pub enum MailError {
    /// The config cannot make a transport (bad address, unreadable CA).
    #[error("{0}")]
    Config(String),
    /// The server or the network refused or failed.
    #[error("smtp {host}: {message}")]
    Smtp {
        /// The server.
        host: String,
        /// What it said.
        message: String,
    },
}

/// A composed mail, before addressing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Letter {
    /// One line, no control characters.
    pub subject: String,
    /// The plain-text part.
    pub text: String,
    /// The HTML part (every value escaped).
    pub html: String,
}

/// Escapes text for HTML element content and attribute values.
pub fn escape_html(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A value from the network as a mail may show it: no control characters and
/// no bidirectional overrides, which make text read other than it is (a
/// signature or host name ending in U+202E `exe.txt` reads as `txt.exe`).
fn inert(s: &str) -> String {
    crate::untrusted::inert(s, usize::MAX)
}

/// A subject must stay one line of printable text.
pub(crate) fn one_line(s: &str, max: usize) -> String {
    let s: String = s
        .chars()
        .filter(|c| !crate::untrusted::is_bidi_control(*c))
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let s = s.split_whitespace().collect::<Vec<_>>().join(" ");
    if s.chars().count() > max {
        format!("{}…", s.chars().take(max).collect::<String>())
    } else {
        s
    }
}

/// The facts of an incident as (label, value) rows, shared by both parts.
fn facts(inc: &Incident) -> Vec<(&'static str, String)> {
    let mut rows = vec![
        ("What", inc.signature.clone()),
        ("Home device", inc.device_shown()),
        ("Remote", inc.remote.clone()),
        (
            "Action",
            if inc.blocked {
                "blocked".to_string()
            } else {
                "observed (not blocked)".to_string()
            },
        ),
        ("Alerts", inc.count.to_string()),
        ("First seen", format_timestamp(inc.first_seen)),
        ("Last seen", format_timestamp(inc.last_seen)),
        ("Severity", inc.severity.to_string()),
    ];
    if !inc.category.is_empty() {
        rows.push(("Classification", inc.category.clone()));
    }
    if !inc.listed {
        // Someone else's signature: what the owner types to look it up or change it.
        let mut v = format!("sid {}", inc.sid);
        if let Some(s) = &inc.signature_severity {
            v.push_str(&format!(", rated {s} by its ruleset"));
        }
        v.push_str(&format!(" (homewarden explain {})", inc.sid));
        rows.push(("Signature", v));
    }
    if let Some(p) = &inc.ioc {
        let mut v = format!("{} (source {})", p.indicator, p.source);
        if let Some(info) = &p.event_info {
            v.push_str(&format!(", event \"{info}\""));
        }
        if let Some(id) = p.event_id {
            v.push_str(&format!(" #{id}"));
        }
        if let Some(t) = p.threat_level {
            v.push_str(&format!(", threat level {}", threat_level_name(t)));
        }
        rows.push(("Threat intel", v));
    }
    // The device's MAC where it is known: its address may change with DHCP.
    let device = inc
        .device
        .as_ref()
        .map_or(inc.local.to_string(), |t| t.mac.to_string());
    rows.push(("Cut it off", format!("homewarden quarantine {device}")));
    rows.push(("Incident", inc.id.clone()));
    rows.into_iter().map(|(k, v)| (k, inert(&v))).collect()
}

const FOOTER: &str = "Press the appliance's button briefly (or run `homewarden ack`) to acknowledge: the red light goes off.";

/// The mail for one incident.
pub fn incident_letter(appliance: &str, inc: &Incident, advice: &Advice) -> Letter {
    let level = if inc.high { "High" } else { "Notice" };
    let verb = if inc.blocked { "blocked" } else { "saw" };
    let subject = one_line(
        &format!(
            "[homewarden {appliance}] {level}: {verb} {} ↔ {}: {}",
            inc.device_shown(),
            inc.remote,
            inc.signature
        ),
        200,
    );
    let rows = facts(inc);
    let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    let mut text = String::new();
    for (k, v) in &rows {
        text.push_str(&format!("{k:width$}  {v}\n"));
    }
    text.push_str(&format!(
        "\nWhat to do (advice by {}):\n\n{}\n\n{FOOTER}\n",
        advice.by, advice.text
    ));
    let mut html =
        String::from("<!DOCTYPE html><html><body style=\"font-family:sans-serif\"><table>");
    for (k, v) in &rows {
        html.push_str(&format!(
            "<tr><th align=\"left\">{}</th><td>{}</td></tr>",
            escape_html(k),
            escape_html(v)
        ));
    }
    html.push_str(&format!(
        "</table><h3>What to do</h3><p style=\"white-space:pre-wrap\">{}</p><p><small>Advice by {}. {}</small></p></body></html>",
        escape_html(&advice.text),
        escape_html(&advice.by),
        escape_html(FOOTER)
    ));
    Letter {
        subject,
        text,
        html,
    }
}

/// Most incidents a digest lists one by one.
pub const DIGEST_LISTED: usize = 200;

/// One mail for incidents the hourly limit held back.
pub fn digest_letter(appliance: &str, incs: &[(Incident, Advice)]) -> Letter {
    let high = incs.iter().filter(|(i, _)| i.high).count();
    let subject = one_line(
        &format!(
            "[homewarden {appliance}] Digest: {} incidents ({high} high)",
            incs.len()
        ),
        200,
    );
    let mut text =
        "More incidents than the hourly mail limit allows; here they are in one mail.\n\n"
            .to_string();
    let mut html = String::from(
        "<!DOCTYPE html><html><body style=\"font-family:sans-serif\"><p>More incidents than the hourly mail limit allows; here they are in one mail.</p><table><tr><th>Last seen</th><th>Level</th><th>Device</th><th>Remote</th><th>Alerts</th><th>What</th></tr>",
    );
    for (inc, _) in incs.iter().take(DIGEST_LISTED) {
        let level = if inc.high { "High" } else { "Notice" };
        let last = format_timestamp(inc.last_seen);
        let (remote, signature) = (inert(&inc.remote), inert(&inc.signature));
        text.push_str(&format!(
            "{last}  {level:6}  {} -> {remote}  ({} alerts)  {signature}\n",
            inert(&inc.device_shown()),
            inc.count
        ));
        html.push_str(&format!(
            "<tr><td>{}</td><td>{level}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            escape_html(&last),
            escape_html(&inert(&inc.device_shown())),
            escape_html(&remote),
            inc.count,
            escape_html(&signature)
        ));
    }
    if incs.len() > DIGEST_LISTED {
        let more = incs.len() - DIGEST_LISTED;
        // `status` shows only the latest few: point at what lists them all.
        let rest = "`homewarden blocks` lists everything blocked in the last 24 hours, /var/log/suricata/eve.json every alert";
        text.push_str(&format!("… and {more} more ({rest}).\n"));
        html.push_str(&format!(
            "<tr><td colspan=\"6\">… and {more} more ({})</td></tr>",
            escape_html(rest)
        ));
    }
    html.push_str("</table>");
    // One set of steps per distinct piece of advice, not one per incident.
    let mut seen: Vec<&Advice> = Vec::new();
    for (_, a) in incs {
        if !seen.iter().any(|s| s.text == a.text) {
            seen.push(a);
        }
    }
    for a in seen.iter().take(5) {
        text.push_str(&format!(
            "\nWhat to do (advice by {}):\n\n{}\n",
            a.by, a.text
        ));
        html.push_str(&format!(
            "<h3>What to do</h3><p style=\"white-space:pre-wrap\">{}</p><p><small>Advice by {}</small></p>",
            escape_html(&a.text),
            escape_html(&a.by)
        ));
    }
    text.push_str(&format!("\n{FOOTER}\n"));
    html.push_str(&format!(
        "<p><small>{}</small></p></body></html>",
        escape_html(FOOTER)
    ));
    Letter {
        subject,
        text,
        html,
    }
}

/// A mail about the appliance itself (a failed self-test, a rollback).
pub fn notice_letter(appliance: &str, subject: &str, text: &str) -> Letter {
    Letter {
        subject: one_line(&format!("[homewarden {appliance}] {subject}"), 200),
        html: format!(
            "<!DOCTYPE html><html><body><p style=\"white-space:pre-wrap\">{}</p></body></html>",
            escape_html(text)
        ),
        text: text.to_string(),
    }
}

/// The mail `homewarden mail-test` sends.
pub fn test_letter(appliance: &str) -> Letter {
    let text = format!("This is a test mail from the homewarden appliance {appliance}. Incident mails will look like this one's sender and subject line.\n");
    Letter {
        subject: one_line(&format!("[homewarden {appliance}] Test mail"), 200),
        html: format!(
            "<!DOCTYPE html><html><body><p>{}</p></body></html>",
            escape_html(&text)
        ),
        text,
    }
}

/// What the hourly limit allows now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Plan {
    /// Send this many waiting mails one by one.
    Each(usize),
    /// Fold every waiting mail into one digest.
    Digest,
    /// Nothing may go before this time (unix seconds).
    Wait(u64),
}

/// Mails sent in the last hour, persisted so a restart does not reset the limit.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RateWindow {
    /// Send times (unix seconds), oldest first.
    pub sent: Vec<u64>,
}

impl RateWindow {
    /// Decides what `pending` waiting mails may do at `now` under `max` per hour.
    /// One slot is kept for a digest, so the hour never sees more than `max`.
    pub fn plan(&mut self, now: u64, max: u32, pending: usize) -> Plan {
        self.sent.retain(|&t| t + 3600 > now);
        let free = (max as usize).saturating_sub(self.sent.len());
        if pending == 0 {
            Plan::Each(0)
        } else if free == 0 {
            Plan::Wait(self.sent.first().map_or(now, |t| t + 3600))
        } else if pending < free || pending == 1 {
            Plan::Each(pending)
        } else {
            Plan::Digest
        }
    }

    /// Records one mail sent.
    pub fn record(&mut self, now: u64) {
        self.sent.push(now);
    }
}

/// An SMTP mailer built once from the config.
pub struct Mailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    to: Vec<Mailbox>,
    host: String,
}

impl Mailer {
    /// Builds the transport (no connection yet); `None` when mail is off.
    pub fn new(cfg: &MailConfig, password: Option<String>) -> Result<Option<Mailer>, MailError> {
        if cfg.to.is_empty() {
            return Ok(None);
        }
        cfg.check()
            .map_err(|(k, m)| MailError::Config(format!("{k}: {m}")))?;
        let from: Mailbox = cfg
            .from
            .as_deref()
            .unwrap_or_default()
            .parse()
            .map_err(|e| MailError::Config(format!("mail.from: {e}")))?;
        let to = cfg
            .to
            .iter()
            .map(|t| t.parse::<Mailbox>())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| MailError::Config(format!("mail.to: {e}")))?;
        let tls = || -> Result<TlsParameters, MailError> {
            let mut b = TlsParameters::builder(cfg.host.clone());
            if let Some(ca) = &cfg.ca_file {
                let pem = std::fs::read(ca)
                    .map_err(|e| MailError::Config(format!("{}: {e}", ca.display())))?;
                let cert = Certificate::from_pem(&pem).map_err(|e| {
                    MailError::Config(format!("{}: not a PEM certificate: {e}", ca.display()))
                })?;
                b = b.add_root_certificate(cert);
            }
            b.build_rustls()
                .map_err(|e| MailError::Config(format!("mail TLS: {e}")))
        };
        let mut b = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(cfg.host.clone())
            .port(cfg.port())
            .timeout(Some(cfg.timeout));
        b = match cfg.security {
            Security::Starttls => b.tls(Tls::Required(tls()?)),
            Security::Tls => b.tls(Tls::Wrapper(tls()?)),
            Security::None => b.tls(Tls::None),
        };
        if cfg.security != Security::None {
            let password = password.ok_or_else(|| {
                MailError::Config(format!(
                    "mail: the secret {} (the SMTP password or Mailtrap token) is not set",
                    cfg.password_env
                ))
            })?;
            b = b.credentials(Credentials::new(cfg.user.clone(), password));
        }
        Ok(Some(Mailer {
            transport: b.build(),
            from,
            to,
            host: cfg.host.clone(),
        }))
    }

    /// Sends one letter; `id` makes the Message-ID, so a re-send after a crash
    /// is recognisable as the same mail.
    pub async fn send(&self, letter: &Letter, id: &str) -> Result<(), MailError> {
        let mut b = Message::builder()
            .from(self.from.clone())
            .subject(letter.subject.clone())
            .message_id(Some(format!(
                "<{}@homewarden>",
                id.chars()
                    .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'))
                    .collect::<String>()
            )));
        for to in &self.to {
            b = b.to(to.clone());
        }
        let msg = b
            .multipart(
                MultiPart::alternative()
                    .singlepart(
                        SinglePart::builder()
                            .header(ContentType::TEXT_PLAIN)
                            .body(letter.text.clone()),
                    )
                    .singlepart(
                        SinglePart::builder()
                            .header(ContentType::TEXT_HTML)
                            .body(letter.html.clone()),
                    ),
            )
            .map_err(|e| MailError::Config(format!("cannot build the mail: {e}")))?;
        self.transport
            .send(msg)
            .await
            .map(|_| ())
            .map_err(|e| MailError::Smtp {
                host: self.host.clone(),
                message: crate::error_chain(&e),
            })
    }
}

/// This machine's name, for subjects and bodies.
pub fn appliance_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| one_line(&h, 64))
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "homewarden".to_string())
}

#[cfg(test)]
mod tests;
