use super::*;
use crate::alerts::triage::Incident;
use crate::config::PushTarget;
use crate::respond::advisor::{self, Advice};
use crate::secrets::Secrets;

fn incident(remote: &str) -> Incident {
    serde_json::from_value(serde_json::json!({
        "id": "inc-1-1", "sid": 1, "signature": "ET MALWARE beacon\u{202e}exe.txt",
        "category": "A Network Trojan was detected",
        "remote": remote, "remote_ip": "203.0.113.9", "local": "198.18.1.2",
        "severity": 1, "high": true, "blocked": true, "first_seen": 1, "last_seen": 1, "count": 3,
    }))
    .unwrap()
}

#[test]
fn an_incident_push_carries_what_happened_the_first_steps_and_where_to_learn_more() {
    let inc = incident("c2.evil.example");
    let advice = advisor::offline(&inc);
    let m = message::incident(
        "pi",
        &inc,
        &advice,
        Some("https://misp.example/events/view/7".into()),
    );
    assert_eq!(
        m.title,
        "homewarden pi: blocked 198.18.1.2 ↔ c2.evil.example"
    );
    assert_eq!(m.steps.len(), message::STEPS);
    assert!(
        m.steps[0].starts_with("Treat the device as infected"),
        "{:?}",
        m.steps
    );
    assert!(m.text.contains("\n1. Treat the device"), "{}", m.text);
    assert!(m.text.contains("(3 alerts)"), "{}", m.text);
    assert!(m
        .text
        .ends_with("More: homewarden explain c2.evil.example (incident inc-1-1)"));
    // Text from the network cannot turn itself around on a phone's screen.
    assert!(!m.text.contains('\u{202e}'), "{}", m.text);

    let n = message::ntfy("hw-topic", &m);
    let v = serde_json::to_value(&n).unwrap();
    assert_eq!(v["topic"], "hw-topic");
    assert_eq!(v["priority"], 4);
    assert_eq!(v["click"], "https://misp.example/events/view/7");
    assert_eq!(v["tags"][0], "rotating_light");

    let e = serde_json::to_value(message::matrix(&m)).unwrap();
    assert_eq!(e["msgtype"], "m.text");
    assert_eq!(e["format"], "org.matrix.custom.html");
    assert!(e["body"].as_str().unwrap().contains("1. Treat the device"));
    assert!(e["formatted_body"]
        .as_str()
        .unwrap()
        .contains("<b>homewarden pi: blocked"));
}

#[test]
fn the_first_steps_are_the_numbered_lines_of_any_advice() {
    let llm = Advice {
        text: "Here is what to do:\n1. Unplug it.\n2. Reset it.\n3. Update it.\n\nWhy: listed."
            .into(),
        by: "cohere".into(),
    };
    assert_eq!(message::first_steps(&llm, 2), ["Unplug it.", "Reset it."]);
    let prose = Advice {
        text: "Unplug it. Then reset it.".into(),
        by: "x".into(),
    };
    assert!(message::first_steps(&prose, 2).is_empty());
}

#[test]
fn a_digest_lists_the_incidents_the_limit_held_back() {
    let incs: Vec<Incident> = (0..25)
        .map(|i| incident(&format!("203.0.113.{i}")))
        .collect();
    let m = message::digest("pi", &incs);
    assert_eq!(m.title, "homewarden pi: 25 incidents (25 high)");
    assert_eq!(m.text.matches(" ↔ ").count(), message::DIGEST_LISTED);
    assert!(m.text.contains("…and 5 more"), "{}", m.text);
    let body = serde_json::to_value(message::webhook(&m, "digest-x", "pi", 9)).unwrap();
    assert_eq!(body["type"], "digest");
    assert_eq!(body["incidents"].as_array().unwrap().len(), 25);
    assert!(body.get("advice").is_none());
}

#[test]
fn the_webhook_body_is_the_documented_one_and_its_signature_is_hmac_sha256() {
    let inc = incident("c2.evil.example");
    let m = message::incident("pi", &inc, &advisor::offline(&inc), None);
    let body = serde_json::to_value(message::webhook(
        &m,
        "inc-1-1:push-hook",
        "pi",
        1_800_000_000,
    ))
    .unwrap();
    let keys: Vec<&str> = body
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        [
            "advice",
            "appliance",
            "id",
            "incidents",
            "sent_at",
            "text",
            "title",
            "type",
            "version"
        ]
    );
    assert_eq!(body["type"], "incident");
    assert_eq!(body["advice"]["by"], "offline");
    assert_eq!(body["incidents"][0]["remote"], "c2.evil.example");
    // RFC 4231, test case 2.
    let key = hmac::Key::new(hmac::HMAC_SHA256, b"Jefe");
    assert_eq!(
        signature(&key, b"what do ya want for nothing?"),
        "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
    );
}

#[test]
fn the_matrix_transaction_is_the_delivery_id_and_the_room_is_one_path_segment() {
    let hs = url::Url::parse("https://matrix.example/").unwrap();
    let u = matrix_send_url(&hs, "!room/x:matrix.example", "inc-1-1:push-mx");
    assert_eq!(
        u.as_str(),
        "https://matrix.example/_matrix/client/v3/rooms/!room%2Fx:matrix.example/send/m.room.message/inc-1-1.push-mx"
    );
    let under = url::Url::parse("https://example.org/synapse").unwrap();
    assert!(matrix_send_url(&under, "!r:e", "k")
        .as_str()
        .starts_with("https://example.org/synapse/_matrix/client/v3/rooms/"));
}

#[test]
fn answers_are_taken_or_retried_when_the_service_says() {
    assert!(answer(200, None, b"{}").is_ok());
    // Matrix: the wait is in the body.
    let e = answer(
        429,
        None,
        br#"{"errcode":"M_LIMIT_EXCEEDED","error":"Too many requests","retry_after_ms":2500}"#,
    )
    .unwrap_err();
    assert_eq!(e.retry_after(), Some(Duration::from_millis(2500)));
    assert!(e.to_string().contains("M_LIMIT_EXCEEDED"), "{e}");
    // ntfy: no wait given, the outbox's backoff applies.
    let e = answer(
        429,
        None,
        br#"{"code":42901,"http":429,"error":"limit reached: too many requests"}"#,
    )
    .unwrap_err();
    assert_eq!(e.retry_after(), None);
    assert!(e.to_string().contains("limit reached"), "{e}");
    let e = answer(503, Some(Duration::from_secs(7)), b"<html>down</html>").unwrap_err();
    assert_eq!(e.retry_after(), Some(Duration::from_secs(7)));
    assert!(e.to_string().starts_with("HTTP 503"), "{e}");
}

#[test]
fn a_push_names_the_device_and_the_webhook_carries_it() {
    let mut inc = incident("c2.evil.example");
    inc.device = Some(crate::devices::Tag {
        mac: "24:0a:c4:00:00:02".parse().unwrap(),
        name: "front doorbell".into(),
    });
    let m = message::incident("pi", &inc, &advisor::offline(&inc), None);
    assert_eq!(
        m.title,
        "homewarden pi: blocked front doorbell (198.18.1.2) ↔ c2.evil.example"
    );
    let v = serde_json::to_value(&inc).unwrap();
    assert_eq!(v["device"]["name"], "front doorbell");
    assert_eq!(v["device"]["mac"], "24:0a:c4:00:00:02");
}

/// A URL nobody answers on (a port just let go).
async fn refused_url(path: &str) -> String {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let at = l.local_addr().unwrap();
    drop(l);
    format!("http://{at}{path}")
}

fn target(yaml: &str) -> (PushTarget, Secrets) {
    let t: PushTarget = serde_yaml_ng::from_str(yaml).unwrap();
    let secrets = Secrets::from_maps(
        [
            ("MX_TOKEN".to_string(), "syt_mx-access-t0ken".to_string()),
            ("HOOK_KEY".to_string(), "hmac-k3y-value".to_string()),
        ]
        .into(),
        Default::default(),
    );
    (t, secrets)
}

#[tokio::test]
async fn errors_status_and_debug_carry_no_token_path_or_topic() {
    let secret_bits = [
        "s3cr3t-hook-path",
        "qu3ry-t0ken",
        "syt_mx-access-t0ken",
        "hmac-k3y-value",
        "hw-pr1vate-topic",
    ];
    let clean = |what: &str, text: &str| {
        for s in secret_bits {
            assert!(!text.contains(s), "{what} shows {s}: {text}");
        }
    };
    let hook = refused_url("/s3cr3t-hook-path?token=qu3ry-t0ken").await;
    let (t, secrets) = target(&format!(
        "{{type: webhook, url: '{hook}', secret_env: HOOK_KEY, token_env: MX_TOKEN}}"
    ));
    let p = Pusher::new(&t, &secrets).unwrap();
    clean("Debug", &format!("{p:?}"));
    clean("status", &t.describe());
    let m = message::test("pi");
    let e = p.send(&m, "test-1", "pi").await.unwrap_err().to_string();
    assert!(e.contains("error sending request"), "{e}");
    clean("a transport error", &e);

    // A service that quotes what it was sent back in its refusal.
    let cases = [
        (
            "{type: matrix, url: 'URL', room: '!r:example', token_env: MX_TOKEN}",
            "syt_mx-access-t0ken",
        ),
        (
            "{type: ntfy, url: 'URL', topic: hw-pr1vate-topic}",
            "hw-pr1vate-topic",
        ),
        (
            "{type: webhook, url: 'URL/s3cr3t-hook-path', secret_env: HOOK_KEY}",
            "/s3cr3t-hook-path",
        ),
    ];
    for (yaml, quoted) in cases {
        let body = format!(r#"{{"errcode":"M_UNKNOWN_TOKEN","error":"{quoted} is not valid"}}"#);
        let reply = format!(
            "HTTP/1.1 401 Unauthorized\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        let server = crate::intel::fetch::canned_server(reply.into_bytes()).await;
        let (t, secrets) = target(&yaml.replace("URL", &server));
        let p = Pusher::new(&t, &secrets).unwrap();
        clean("Debug", &format!("{p:?}"));
        clean("status", &t.describe());
        let e = p.send(&m, "test-2", "pi").await.unwrap_err().to_string();
        assert_eq!(e, "HTTP 401: M_UNKNOWN_TOKEN *** is not valid");
    }
}
