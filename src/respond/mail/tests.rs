use super::*;
use crate::intel::set::Provenance;

fn incident(sig: &str) -> Incident {
    Incident {
        id: "inc-1795000000-1".into(),
        listed: true,
        observed: false,
        sid: 1666001,
        signature: sig.into(),
        category: "A Network Trojan was detected".into(),
        remote: "c2.lab-evil.test".into(),
        remote_ip: "203.0.113.66".parse().unwrap(),
        local: "198.18.1.2".parse().unwrap(),
        severity: 1,
        high: true,
        blocked: true,
        first_seen: 1_795_000_000,
        last_seen: 1_795_000_100,
        count: 3,
        device: None,
        matched: Some(crate::alerts::triage::Matched::Name),
        remote_port: Some(443),
        signature_severity: None,
        ioc: Some(Provenance {
            source: "misp".into(),
            event_uuid: None,
            event_id: Some(42),
            attribute_uuid: None,
            threat_level: Some(1),
            event_info: Some("<b>C2</b> & friends".into()),
            tags: vec![],
            since: None,
            indicator: "c2.lab-evil.test".into(),
        }),
    }
}

fn advice(t: &str) -> Advice {
    Advice {
        text: t.into(),
        by: "cohere command-a-03-2025".into(),
    }
}

#[test]
fn hostile_values_never_reach_the_html_unescaped() {
    let inc = incident("<script>alert('x')</script>\r\nBcc: victim@example.org");
    let l = incident_letter(
        "pi",
        &inc,
        &advice("1. <img src=x onerror=alert(1)> \"quoted\""),
    );
    assert!(
        !l.subject.contains('\n') && !l.subject.contains('\r'),
        "{}",
        l.subject
    );
    assert!(
        !l.html.contains("<script>") && !l.html.contains("<img"),
        "{}",
        l.html
    );
    assert!(l
        .html
        .contains("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;"));
    assert!(l.html.contains("&lt;b&gt;C2&lt;/b&gt; &amp; friends"));
    assert!(l.html.contains("&quot;quoted&quot;"));
    // The plain part carries the text as it is: it is never rendered.
    assert!(l.text.contains("1. <img src=x onerror=alert(1)>"));
    assert!(l
        .text
        .contains("event \"<b>C2</b> & friends\" #42, threat level high"));
    assert!(l.text.contains("advice by cohere command-a-03-2025"));
}

#[test]
fn bidi_overrides_and_controls_from_the_network_never_reach_a_mail() {
    // U+202E makes "gnp.exe" read as "exe.png"; a mail must show what was there.
    let mut inc = incident("update \u{202e}gnp.exe\u{202c} \u{1b}[31mred");
    inc.remote = "evil\u{2066}.test".into();
    let l = incident_letter("pi", &inc, &advice("a"));
    let d = digest_letter("pi", &[(inc, advice("a"))]);
    for text in [&l.subject, &l.text, &l.html, &d.text, &d.html] {
        assert!(
            !text.chars().any(crate::untrusted::is_bidi_control),
            "{text:?}"
        );
        assert!(!text.contains('\u{1b}'), "{text:?}");
    }
    assert!(l.text.contains("update gnp.exe [31mred"), "{}", l.text);
    assert!(l.subject.contains("evil.test: update gnp.exe [31mred"));
    assert!(d.text.contains("-> evil.test "), "{}", d.text);
}

#[test]
fn subject_is_one_bounded_line() {
    let inc = incident(&"x".repeat(1000));
    let l = incident_letter("pi", &inc, &advice("a"));
    assert!(l
        .subject
        .starts_with("[homewarden pi] High: blocked 198.18.1.2 ↔ c2.lab-evil.test: xxx"));
    assert_eq!(l.subject.chars().count(), 201);
}

#[test]
fn digest_lists_every_incident_up_to_the_bound_and_dedups_advice() {
    let incs: Vec<(Incident, Advice)> = (0..250)
        .map(|i| {
            let mut inc = incident(&format!("sig {i}"));
            inc.high = i % 2 == 0;
            (inc, advice(if i % 3 == 0 { "A" } else { "B" }))
        })
        .collect();
    let l = digest_letter("pi", &incs);
    assert_eq!(
        l.subject,
        "[homewarden pi] Digest: 250 incidents (125 high)"
    );
    assert!(l.text.contains("sig 0\n") && l.text.contains("sig 199\n"));
    assert!(!l.text.contains("sig 200\n"));
    assert!(l.text.contains(
        "… and 50 more (`homewarden blocks` lists everything blocked in the last 24 hours"
    ));
    assert!(l.html.contains("… and 50 more (`homewarden blocks`"));
    assert_eq!(l.text.matches("What to do").count(), 2);
    assert_eq!(l.html.matches("<tr><td>").count(), 200);
}

#[test]
fn the_hour_never_sees_more_than_the_limit() {
    let mut w = RateWindow::default();
    let mut sent = 0;
    let mut now = 1_000_000;
    // One new incident every 10 s for two hours; the responder looks every second.
    let mut pending = 0usize;
    let mut log: Vec<u64> = Vec::new();
    for tick in 0..7200u64 {
        now += 1;
        if tick % 10 == 0 {
            pending += 1;
        }
        match w.plan(now, 5, pending) {
            Plan::Each(n) => {
                for _ in 0..n {
                    w.record(now);
                    log.push(now);
                    sent += 1;
                }
                pending -= n;
            }
            Plan::Digest => {
                w.record(now);
                log.push(now);
                sent += 1;
                pending = 0;
            }
            Plan::Wait(t) => assert!(t > now),
        }
    }
    for (i, t) in log.iter().enumerate() {
        let in_hour = log[i..].iter().take_while(|u| **u < t + 3600).count();
        assert!(in_hour <= 5, "{in_hour} mails in the hour after {t}");
    }
    assert!(sent >= 10, "{sent}");
    assert!(pending < 400, "nothing is held back longer than an hour");
}

#[test]
fn plan_sends_singles_while_there_is_room_then_a_digest() {
    let mut w = RateWindow::default();
    assert_eq!(w.plan(100, 3, 1), Plan::Each(1));
    assert_eq!(w.plan(100, 3, 2), Plan::Each(2));
    assert_eq!(w.plan(100, 3, 3), Plan::Digest);
    w.record(100);
    w.record(100);
    assert_eq!(w.plan(101, 3, 1), Plan::Each(1));
    assert_eq!(w.plan(101, 3, 2), Plan::Digest);
    w.record(101);
    assert_eq!(w.plan(102, 3, 7), Plan::Wait(3700));
    assert_eq!(w.plan(3700, 3, 7), Plan::Digest);
}

#[test]
fn config_errors_name_the_key() {
    let mut c = MailConfig {
        to: vec!["owner@example.org".into()],
        ..Default::default()
    };
    assert_eq!(c.check().unwrap_err().0, "mail.from");
    c.from = Some("homewarden <hw@example.org>".into());
    assert!(c.check().is_ok());
    c.to.push("not an address".into());
    let (k, m) = c.check().unwrap_err();
    assert_eq!(k, "mail.to[1]");
    assert!(m.contains("\"not an address\""), "{m}");
    assert_eq!(MailConfig::default().port(), 587);
}

#[test]
fn a_missing_token_is_a_clear_error() {
    let c = MailConfig {
        to: vec!["owner@example.org".into()],
        from: Some("hw@example.org".into()),
        ..Default::default()
    };
    let e = Mailer::new(&c, None).err().unwrap().to_string();
    assert!(e.contains("MAILTRAP_TOKEN"), "{e}");
    assert!(Mailer::new(&MailConfig::default(), None).unwrap().is_none());
}

#[test]
fn a_known_device_is_named_and_the_mail_says_how_to_cut_it_off() {
    let mut inc = incident("ET MALWARE beacon");
    let plain = incident_letter("pi", &inc, &advice("a"));
    assert!(
        plain.text.contains("homewarden quarantine 198.18.1.2"),
        "{}",
        plain.text
    );
    inc.device = Some(crate::devices::Tag {
        mac: "24:0a:c4:00:00:02".parse().unwrap(),
        name: "front doorbell".into(),
    });
    let l = incident_letter("pi", &inc, &advice("a"));
    assert!(
        l.subject
            .contains("front doorbell (198.18.1.2) ↔ c2.lab-evil.test"),
        "{}",
        l.subject
    );
    assert!(
        l.text
            .contains("Home device     front doorbell (198.18.1.2)"),
        "{}",
        l.text
    );
    // By MAC: the address may have changed by the time the owner reads it.
    assert!(
        l.text.contains("homewarden quarantine 24:0a:c4:00:00:02"),
        "{}",
        l.text
    );
    assert!(l.html.contains("front doorbell (198.18.1.2)"), "{}", l.html);
    let d = digest_letter("pi", &[(inc, advice("a"))]);
    assert!(
        d.text.contains("front doorbell (198.18.1.2) -> "),
        "{}",
        d.text
    );
}

#[test]
fn a_signatures_mail_names_the_sid_its_rating_and_how_to_look_it_up() {
    let mut inc = incident("ET MALWARE Test CnC Checkin");
    inc.listed = false;
    inc.ioc = None;
    inc.sid = 2_999_001;
    inc.signature_severity = Some("Major".into());
    let rows = facts(&inc);
    let row = rows.iter().find(|(k, _)| *k == "Signature").unwrap();
    assert_eq!(
        row.1,
        "sid 2999001, rated Major by its ruleset (homewarden explain 2999001)"
    );
    // Our own rules name a listed value instead.
    assert!(!facts(&incident("x")).iter().any(|(k, _)| *k == "Signature"));
}
