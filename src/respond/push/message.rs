//! What a push says, and how each service wants it: pure, so the tests of
//! the request shapes need no network.

use serde::Serialize;

use crate::alerts::triage::Incident;
use crate::respond::advisor::Advice;
use crate::respond::mail::{escape_html, one_line};

/// Steps of the advice a push carries (the mail has them all).
pub const STEPS: usize = 2;
/// Most incidents a digest lists one by one.
pub const DIGEST_LISTED: usize = 20;

/// One push: an incident, or a digest of several.
#[derive(Clone, Debug, PartialEq)]
pub struct Message {
    /// One line.
    pub title: String,
    /// Plain text: what happened, the first steps, how to learn more.
    pub text: String,
    /// A page about it (the MISP event), if there is one.
    pub link: Option<String>,
    /// From a high-severity incident (or a digest holding one).
    pub high: bool,
    /// The incidents it is about.
    pub incidents: Vec<Incident>,
    /// The advice's first steps (an incident's push only).
    pub steps: Vec<String>,
    /// Who wrote the advice.
    pub advice_by: Option<String>,
    /// `incident`, `digest`, `notice` or `test` (the webhook's `type`).
    pub kind: &'static str,
}

/// The first numbered steps of an advice text (`1. …`).
pub fn first_steps(advice: &Advice, n: usize) -> Vec<String> {
    advice
        .text
        .lines()
        .map(str::trim)
        .filter_map(|l| {
            let (num, rest) = l.split_once(". ")?;
            num.parse::<u8>().ok().map(|_| rest.to_string())
        })
        .take(n)
        .collect()
}

/// The push for one incident.
pub fn incident(appliance: &str, inc: &Incident, advice: &Advice, link: Option<String>) -> Message {
    let verb = if inc.blocked { "blocked" } else { "saw" };
    let title = one_line(
        &format!(
            "homewarden {appliance}: {verb} {} ↔ {}",
            inc.device_shown(),
            inc.remote
        ),
        120,
    );
    let steps = first_steps(advice, STEPS);
    let mut text = one_line(
        &format!(
            "{} ({} alert{}).",
            inc.signature,
            inc.count,
            if inc.count == 1 { "" } else { "s" }
        ),
        300,
    );
    text.push('\n');
    for (i, s) in steps.iter().enumerate() {
        text.push_str(&format!("{}. {}\n", i + 1, one_line(s, 300)));
    }
    text.push_str(&format!(
        "More: homewarden explain {} (incident {})",
        one_line(&inc.remote, 200),
        inc.id
    ));
    Message {
        title,
        text,
        link,
        high: inc.high,
        incidents: vec![inc.clone()],
        steps,
        advice_by: Some(advice.by.clone()),
        kind: "incident",
    }
}

/// The push of a notice about the home (a new device joined…).
pub fn notice(appliance: &str, n: &crate::respond::outbox::Notice) -> Message {
    Message {
        title: one_line(&format!("homewarden {appliance}: {}", n.subject), 120),
        text: n
            .text
            .lines()
            .map(|l| one_line(l, 300))
            .collect::<Vec<_>>()
            .join("\n"),
        link: None,
        high: false,
        incidents: Vec::new(),
        steps: Vec::new(),
        advice_by: None,
        kind: "notice",
    }
}

/// The message of `homewarden notify-test`.
pub fn test(appliance: &str) -> Message {
    Message {
        title: format!("homewarden {appliance}: test message"),
        text: "This target is set up: incidents will arrive here like this one.".to_string(),
        link: None,
        high: false,
        incidents: Vec::new(),
        steps: Vec::new(),
        advice_by: None,
        kind: "test",
    }
}

/// One push for incidents the hourly limit held back.
pub fn digest(appliance: &str, incs: &[Incident]) -> Message {
    let high = incs.iter().filter(|i| i.high).count();
    let title = one_line(
        &format!(
            "homewarden {appliance}: {} incidents ({high} high)",
            incs.len()
        ),
        120,
    );
    let mut text =
        String::from("More incidents than this target's hourly limit; in one message:\n");
    for i in incs.iter().take(DIGEST_LISTED) {
        text.push_str(&one_line(
            &format!(
                "{} ↔ {}: {} (x{})",
                i.device_shown(),
                i.remote,
                i.signature,
                i.count
            ),
            200,
        ));
        text.push('\n');
    }
    if incs.len() > DIGEST_LISTED {
        text.push_str(&format!(
            "…and {} more (homewarden status)\n",
            incs.len() - DIGEST_LISTED
        ));
    }
    text.push_str("The mail has the advice for each.");
    Message {
        title,
        text,
        link: None,
        high: high > 0,
        incidents: incs.to_vec(),
        steps: Vec::new(),
        advice_by: None,
        kind: "digest",
    }
}

/// ntfy's JSON publish body (docs.ntfy.sh/publish, "Publish as JSON").
#[derive(Debug, Serialize)]
pub struct NtfyPublish<'a> {
    /// The topic.
    pub topic: &'a str,
    /// The notification's title.
    pub title: &'a str,
    /// Its text.
    pub message: &'a str,
    /// 1 (min) to 5 (max); 4 is "high".
    pub priority: u8,
    /// Tags; known emoji names show as emoji.
    pub tags: Vec<&'static str>,
    /// Opened when the notification is tapped.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub click: Option<&'a str>,
}

/// The ntfy body of `m`.
pub fn ntfy<'a>(topic: &'a str, m: &'a Message) -> NtfyPublish<'a> {
    NtfyPublish {
        topic,
        title: &m.title,
        message: &m.text,
        priority: if m.high { 4 } else { 3 },
        tags: vec![
            if m.high { "rotating_light" } else { "shield" },
            "homewarden",
        ],
        click: m.link.as_deref(),
    }
}

/// A Matrix `m.room.message` event (client-server API, `m.text` with HTML).
#[derive(Debug, Serialize)]
pub struct RoomMessage {
    /// Always `m.text`.
    pub msgtype: &'static str,
    /// Plain text, for clients without HTML.
    pub body: String,
    /// `org.matrix.custom.html`.
    pub format: &'static str,
    /// The same as HTML.
    pub formatted_body: String,
}

/// The Matrix event of `m`.
pub fn matrix(m: &Message) -> RoomMessage {
    let mut body = format!("{}\n{}", m.title, m.text);
    let mut html = format!(
        "<b>{}</b><br>{}",
        escape_html(&m.title),
        escape_html(&m.text).replace('\n', "<br>")
    );
    if let Some(link) = &m.link {
        body.push_str(&format!("\n{link}"));
        html.push_str(&format!(
            "<br><a href=\"{}\">{}</a>",
            escape_html(link),
            escape_html(link)
        ));
    }
    RoomMessage {
        msgtype: "m.text",
        body,
        format: "org.matrix.custom.html",
        formatted_body: html,
    }
}

/// The webhook's JSON body (documented in the README; `version` changes
/// only when a field changes meaning or goes away).
#[derive(Debug, Serialize)]
pub struct WebhookBody<'a> {
    /// The body's layout version.
    pub version: u32,
    /// Unique per delivery, the same on a retry: a receiver drops repeats by it.
    pub id: &'a str,
    /// `incident`, `digest` or `test`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// The appliance's host name.
    pub appliance: &'a str,
    /// When this attempt was made (unix seconds); signed with the rest.
    pub sent_at: u64,
    /// One line.
    pub title: &'a str,
    /// The text a person reads.
    pub text: &'a str,
    /// A page about it, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub link: Option<&'a str>,
    /// The advice's first steps, and who wrote them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub advice: Option<WebhookAdvice<'a>>,
    /// The incidents, as `homewarden status --json` shows them.
    pub incidents: &'a [Incident],
}

/// The advice part of a webhook body.
#[derive(Debug, Serialize)]
pub struct WebhookAdvice<'a> {
    /// Who wrote it.
    pub by: &'a str,
    /// The first steps.
    pub steps: &'a [String],
}

/// The webhook body of `m`, delivered as `id` at `now`.
pub fn webhook<'a>(m: &'a Message, id: &'a str, appliance: &'a str, now: u64) -> WebhookBody<'a> {
    WebhookBody {
        version: 1,
        id,
        kind: m.kind,
        appliance,
        sent_at: now,
        title: &m.title,
        text: &m.text,
        link: m.link.as_deref(),
        advice: m.advice_by.as_deref().map(|by| WebhookAdvice {
            by,
            steps: &m.steps,
        }),
        incidents: &m.incidents,
    }
}
