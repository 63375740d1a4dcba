use std::collections::BTreeSet;

use super::*;
use crate::daemon::agent::{Counts, SourceStatus};
use crate::enforce::firewall::health::{PathStatus, QueueRule};
use crate::intel::ioc::Kind;
use crate::respond::tally::Responder;

fn status() -> Status {
    let mut s = Status {
        version: "9.9.9".into(),
        state: State::Protected,
        started: 1_800_000_000,
        blocklist: Counts {
            ipv4: 5,
            domains: 3,
            ..Counts::default()
        },
        ..Status::default()
    };
    let mut feed = SourceStatus {
        name: "feed".into(),
        entries: 8,
        last_ok: Some(1_800_000_100),
        ..SourceStatus::default()
    };
    feed.kinds = [(Kind::Ipv4, 5), (Kind::Domain, 3)].into();
    feed.stats.rejected.insert("bad_domain".into(), 2);
    feed.pulls.taken = 3;
    feed.pulls.unchanged = 5;
    feed.pulls.last_ms = 1500;
    s.sources = vec![
        feed,
        SourceStatus {
            name: "misp".into(),
            last_error: Some("connection refused".into()),
            ..SourceStatus::default()
        },
    ];
    s.suricata.applies.reload = 2;
    s.suricata.applies.last_ms = 250;
    s.alerts.intake.alerts = 7;
    s.alerts.loss.raised = 9;
    s.alerts.loss.missing = 2;
    s.alerts.open = 4;
    s.alerts.high_open = 1;
    s.alerts.high_unacked = 1;
    s.alerts.last_block = Some(1_800_000_195);
    s.path = PathStatus {
        queue: Some(QueueRule {
            backend: "nftables".into(),
            queues: (0, 1),
            bypass: false,
            packets: 1234,
        }),
        held: vec![0],
        bypassed_packets: 99,
        bypassed_flows: 3,
        queue_full_drops: 7,
        suricata_verdicts: Some((1200, 34)),
        ..PathStatus::default()
    };
    s.outbox.pending = 2;
    s.outbox.pending_by = [(Responder::Mail, 2)].into();
    let d = &mut s.responders;
    d.done = [(Responder::Misp, 6), (Responder::Mail, 4)].into();
    d.failed = [(Responder::Misp, 2)].into();
    d.mails.incident = 3;
    d.mails.digest = 1;
    d.mails.rate_limited = 5;
    d.llm.ok = 3;
    d.llm.rate_limited = 1;
    d.offline_advice = 1;
    d.pushes.insert(
        "phone".into(),
        crate::respond::tally::Pushes {
            incident: 2,
            digest: 1,
            rate_limited: 6,
            notice: 1,
        },
    );
    s
}

use crate::daemon::agent::State;

fn text(status: &Status) -> String {
    let mut out = String::new();
    let mut r = registry(status, 1_800_000_200, Some(4096));
    super::families::signatures::add(&mut r, &signatures_status());
    prometheus_client::encoding::prometheus_text::encode(&mut out, &r).unwrap();
    out
}

/// A ruleset in force whose last update failed.
fn signatures_status() -> crate::daemon::signatures::SignaturesStatus {
    use crate::signatures::update::{Attempt, Good, Record};
    use crate::signatures::Counts;
    crate::daemon::signatures::SignaturesStatus {
        tier: "home".into(),
        why: "signatures.profile: home".into(),
        record: Record {
            good: Some(Good {
                at: 1_800_000_000,
                tier: "home".into(),
                why: "x".into(),
                sources: vec!["etopen".into()],
                counts: Counts {
                    dropping: 3_100,
                    alerting: 14_000,
                    off: 25_000,
                    ..Counts::default()
                },
                shadow: false,
                cut: 1,
                test_peak: Some(500 << 20),
                way: crate::signatures::memory::Way::Live,
            }),
            last_attempt: Some(Attempt {
                at: 1_800_000_100,
                error: Some("suricata-update: no network".into()),
            }),
        },
        suricata_memory: Some(crate::signatures::memory::Reading {
            limit: Some(1_200 << 20),
            current: 700 << 20,
        }),
        ..Default::default()
    }
}

#[test]
fn the_status_becomes_metrics_with_prometheus_names() {
    let t = text(&status());
    for line in [
        "homewarden_build_info{version=\"9.9.9\"} 1",
        "homewarden_state{state=\"protected\"} 1",
        "homewarden_state{state=\"degraded\"} 0",
        "homewarden_indicators_enforced{kind=\"ipv4\"} 5",
        "homewarden_indicators_enforced{kind=\"domain\"} 3",
        "homewarden_source_indicators{source=\"feed\",kind=\"ipv4\"} 5",
        "homewarden_source_indicators{source=\"feed\",kind=\"domain\"} 3",
        "homewarden_source_up{source=\"feed\"} 1",
        "homewarden_source_up{source=\"misp\"} 0",
        "homewarden_source_refused{source=\"feed\",reason=\"bad_domain\"} 2",
        "homewarden_source_last_success_seconds{source=\"feed\"} 1800000100",
        "homewarden_start_time_seconds 1800000000",
        "homewarden_source_pulls_total{source=\"feed\",outcome=\"taken\"} 3",
        "homewarden_source_pulls_total{source=\"feed\",outcome=\"unchanged\"} 5",
        "homewarden_source_pulls_total{source=\"misp\",outcome=\"failed\"} 0",
        "homewarden_source_last_pull_duration_seconds{source=\"feed\"} 1.5",
        "homewarden_alerts_received_total 7",
        "homewarden_applies_total{how=\"reload\"} 2",
        "homewarden_applies_total{how=\"failed\"} 0",
        "homewarden_last_apply_duration_seconds 0.25",
        "homewarden_alerts_raised_total 9",
        "homewarden_alerts_lost_total 2",
        "homewarden_incidents_open{severity=\"high\"} 1",
        "homewarden_incidents_open{severity=\"other\"} 3",
        "homewarden_suricata_up 0",
        "process_resident_memory_bytes 4096",
        // What the LEDs show: red (unacknowledged), blinking (a block 5 s ago).
        "homewarden_condition{condition=\"unacked_high\"} 1",
        "homewarden_condition{condition=\"blocking_now\"} 1",
        "homewarden_condition{condition=\"suricata_down\"} 1",
        "homewarden_condition{condition=\"protected\"} 0",
        // The packet path: one of two queues unheld, fail-closed.
        "homewarden_path_queued_packets_total 1234",
        "homewarden_path_fail_open 0",
        "homewarden_path_queues{state=\"held\"} 1",
        "homewarden_path_queues{state=\"unheld\"} 1",
        "homewarden_path_bypassed_packets_total 99",
        "homewarden_path_bypassed_flows 3",
        "homewarden_path_queue_full_drops_total 7",
        "homewarden_suricata_verdicts_total{verdict=\"accepted\"} 1200",
        "homewarden_suricata_verdicts_total{verdict=\"blocked\"} 34",
        // The responders.
        "homewarden_outbox_pending{responder=\"mail\"} 2",
        "homewarden_outbox_pending{responder=\"misp\"} 0",
        "homewarden_responder_attempts_total{responder=\"misp\",outcome=\"done\"} 6",
        "homewarden_responder_attempts_total{responder=\"misp\",outcome=\"failed\"} 2",
        "homewarden_responder_attempts_total{responder=\"mail\",outcome=\"done\"} 4",
        "homewarden_responder_attempts_total{responder=\"mail\",outcome=\"failed\"} 0",
        "homewarden_mails_sent_total{kind=\"incident\"} 3",
        "homewarden_mails_sent_total{kind=\"digest\"} 1",
        "homewarden_mails_sent_total{kind=\"notice\"} 0",
        "homewarden_mail_rate_limited_total 5",
        "homewarden_llm_calls_total{outcome=\"ok\"} 3",
        "homewarden_llm_calls_total{outcome=\"rate_limited\"} 1",
        "homewarden_llm_calls_total{outcome=\"failed\"} 0",
        "homewarden_offline_advice_total 1",
        "homewarden_pushes_sent_total{target=\"phone\",kind=\"incident\"} 2",
        "homewarden_pushes_sent_total{target=\"phone\",kind=\"digest\"} 1",
        "homewarden_pushes_sent_total{target=\"phone\",kind=\"notice\"} 1",
        "homewarden_push_rate_limited_total{target=\"phone\"} 6",
        "homewarden_outbox_pending{responder=\"push\"} 0",
    ] {
        assert!(t.lines().any(|l| l == line), "no {line:?} in\n{t}");
    }
    // What is not known is left out, not shown as zero.
    assert!(!t.contains("homewarden_selftest_ok"), "{t}");
    assert!(!t.contains("homewarden_path_bridge_inspected"), "{t}");
    assert!(
        !t.contains("homewarden_source_last_success_seconds{source=\"misp\"}"),
        "{t}"
    );
}

/// A status where every family has something to say (no optional one left out).
fn full_status() -> Status {
    let mut s = status();
    s.selftest.ok = Some(true);
    s.selftest.last_run = Some(1_800_000_150);
    s.path.bridge_inspected = Some(true);
    s.suricata.last_change = Some(1_800_000_120);
    s.mqtt = Some(crate::daemon::homeassistant::Link {
        connected: true,
        ..Default::default()
    });
    s.devices = crate::daemon::devices::DevicesStatus {
        enabled: true,
        known: 3,
        seen_24h: 2,
        quarantined: vec![Default::default()],
        ..Default::default()
    };
    s
}

/// The metric names a scrape of `status` shows (sample names, suffixes and all).
fn names(status: &Status) -> BTreeSet<String> {
    text(status)
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split(['{', ' ']).next())
        .map(str::to_string)
        .collect()
}

/// The metric names in a PromQL expression (ours, and the process_ ones).
fn named_in(expr: &str) -> Vec<String> {
    expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
        .filter(|w| w.starts_with("homewarden_") || w.starts_with("process_"))
        .map(str::to_string)
        .collect()
}

#[test]
fn the_grafana_dashboard_asks_only_for_metrics_the_agent_serves() {
    let served = names(&full_status());
    let board: serde_json::Value =
        serde_json::from_str(include_str!("../../../docs/grafana/homewarden.json")).unwrap();
    let panels = board["panels"].as_array().unwrap();
    assert!(panels.len() >= 10, "{} panels", panels.len());
    let mut ids = BTreeSet::new();
    let mut asked = BTreeSet::new();
    for p in panels {
        let title = p["title"].as_str().unwrap();
        assert!(ids.insert(p["id"].as_u64().unwrap()), "{title}: id twice");
        let targets = p["targets"].as_array().unwrap();
        assert!(!targets.is_empty(), "{title}: no query");
        for t in targets {
            let expr = t["expr"].as_str().unwrap();
            let metrics = named_in(expr);
            assert!(!metrics.is_empty(), "{title}: {expr} names no metric");
            for m in metrics {
                assert!(served.contains(&m), "{title}: {expr}: no metric {m}");
                asked.insert(m);
            }
        }
    }
    // The board covers each part: protection, intel, the path, alerts, responders, devices.
    for m in [
        "homewarden_state",
        "homewarden_condition",
        "homewarden_source_indicators",
        "homewarden_path_queued_packets_total",
        "homewarden_alerts_lost_total",
        "homewarden_responder_attempts_total",
        "homewarden_llm_calls_total",
        "homewarden_devices_quarantined",
    ] {
        assert!(asked.contains(m), "the dashboard does not show {m}");
    }
}

#[test]
fn the_readme_table_names_every_metric_and_nothing_else() {
    let readme = include_str!("../../../README.md");
    let section = readme
        .split("### Metrics (Prometheus)")
        .nth(1)
        .and_then(|s| s.split("\n## ").next())
        .and_then(|s| s.split("\n### ").next())
        .unwrap();
    let documented: BTreeSet<String> = section
        .lines()
        .filter(|l| l.starts_with("| `"))
        .flat_map(|l| {
            l.split('|')
                .nth(1)
                .unwrap_or("")
                .split('`')
                .skip(1)
                .step_by(2)
        })
        .map(|name| name.split('{').next().unwrap_or(name).to_string())
        .collect();
    assert_eq!(documented, names(&full_status()));
}

/// `promtool check metrics` (Prometheus's own linter) on what a scrape gets:
/// names, types, help texts and units as Prometheus wants them. Skipped
/// where promtool is not installed, unless the suite requires it.
#[test]
fn promtool_finds_nothing_to_say() {
    let text = text(&full_status());
    let run = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn();
    let mut child = match run {
        Ok(c) => c,
        Err(e) if std::env::var_os("HOMEWARDEN_REQUIRE_PEERS").is_none() => {
            eprintln!("promtool not run: {e}");
            return;
        }
        Err(e) => panic!("promtool: {e} (scripts/install-deps.sh installs it)"),
    };
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let said =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && said.trim().is_empty(),
        "promtool: {said}\n{text}"
    );
}

fn get(path: &str, headers: &[(hyper::header::HeaderName, &str)]) -> Request<()> {
    let mut r = Request::builder().uri(path);
    for (k, v) in headers {
        r = r.header(k, *v);
    }
    r.body(()).unwrap()
}

#[test]
fn only_a_get_of_metrics_with_the_token_is_answered() {
    let s = status();
    let code = |req: &Request<()>, token| answer(req, token, &s, None, None).status();
    assert_eq!(code(&get("/metrics", &[]), None), StatusCode::OK);
    assert_eq!(code(&get("/", &[]), None), StatusCode::NOT_FOUND);
    let post = Request::builder()
        .method("POST")
        .uri("/metrics")
        .body(())
        .unwrap();
    assert_eq!(code(&post, None), StatusCode::METHOD_NOT_ALLOWED);
    let unauth = answer(&get("/metrics", &[]), Some("s3cret"), &s, None, None);
    assert_eq!(unauth.status(), StatusCode::UNAUTHORIZED);
    assert!(unauth.headers().contains_key(WWW_AUTHENTICATE));
    let wrong = get("/metrics", &[(AUTHORIZATION, "Bearer s3cre")]);
    assert_eq!(code(&wrong, Some("s3cret")), StatusCode::UNAUTHORIZED);
    let right = get("/metrics", &[(AUTHORIZATION, "Bearer s3cret")]);
    assert_eq!(code(&right, Some("s3cret")), StatusCode::OK);
}

#[test]
fn openmetrics_is_served_to_whoever_asks_for_it() {
    let s = status();
    let content_type = |req: &Request<()>| {
        answer(req, None, &s, None, None)
            .headers()
            .get(CONTENT_TYPE)
            .unwrap()
            .to_str()
            .unwrap()
            .to_string()
    };
    assert!(content_type(&get("/metrics", &[])).starts_with("text/plain; version=0.0.4"));
    let accept = "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5";
    assert!(content_type(&get("/metrics", &[(ACCEPT, accept)]))
        .starts_with("application/openmetrics-text"));
}

#[tokio::test]
async fn a_scrape_over_tcp_reads_the_published_status_until_stopped() {
    let listener = bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let url = format!("http://{}/metrics", listener.local_addr().unwrap());
    let (tx, rx) = watch::channel(status());
    let stopper = crate::daemon::shutdown::Stopper::default();
    let server = serve(listener, Some("t0ken".into()), rx, None, stopper.handle());
    let client = reqwest::Client::new();
    let scrape = || client.get(&url).bearer_auth("t0ken").send();
    let body = scrape().await.unwrap().text().await.unwrap();
    assert!(
        body.contains("homewarden_alerts_received_total 7"),
        "{body}"
    );
    // The next scrape sees the status the agent published since.
    let mut next = status();
    next.alerts.intake.alerts = 8;
    tx.send(next).unwrap();
    let body = scrape().await.unwrap().text().await.unwrap();
    assert!(
        body.contains("homewarden_alerts_received_total 8"),
        "{body}"
    );
    let anonymous = client.get(&url).send().await.unwrap();
    assert_eq!(anonymous.status(), reqwest::StatusCode::UNAUTHORIZED);
    stopper.stop().await;
    server.await.unwrap();
    let fresh = reqwest::Client::new().get(&url).send().await;
    assert!(fresh.is_err(), "nobody listens once stopped");
}

/// A scrape from `source` (a loopback address of its own), the whole answer.
async fn scrape_from(source: &str, to: SocketAddr) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(format!("{source}:0").parse().unwrap()).unwrap();
    let mut s = socket.connect(to).await.unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: hw\r\nAuthorization: Bearer t0ken\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut answer)).await;
    String::from_utf8_lossy(&answer).into_owned()
}

/// When the server closes `s` (which sends nothing).
async fn closed(mut s: tokio::net::TcpStream) -> std::time::Instant {
    use tokio::io::AsyncReadExt;
    let mut sink = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(8), s.read_to_end(&mut sink)).await;
    assert!(read.is_ok(), "still open after 8 s");
    std::time::Instant::now()
}

#[tokio::test]
async fn idle_connections_give_their_slots_back_and_one_peer_cannot_take_them_all() {
    let listener = bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (_tx, rx) = watch::channel(status());
    let stopper = crate::daemon::shutdown::Stopper::default();
    let server = serve(listener, Some("t0ken".into()), rx, None, stopper.handle());
    // One peer opens more idle connections than there are slots.
    let opened = std::time::Instant::now();
    let mut idle = tokio::task::JoinSet::new();
    for _ in 0..MAX_CONNECTIONS + 2 {
        idle.spawn(closed(tokio::net::TcpStream::connect(addr).await.unwrap()));
    }
    // Another peer is still answered at once.
    let other = scrape_from("127.0.0.2", addr).await;
    assert!(other.starts_with("HTTP/1.1 200"), "{other}");
    // Past its share, the first peer's connections were closed at once; the
    // two it holds are closed once the headers are late.
    let mut waits: Vec<Duration> = idle
        .join_all()
        .await
        .into_iter()
        .map(|at| at - opened)
        .collect();
    waits.sort();
    let (at_once, late) = waits.split_at(waits.len() - PER_PEER);
    assert!(at_once.iter().all(|w| *w < HEADER_TIMEOUT), "{waits:?}");
    assert!(
        late.iter()
            .all(|w| *w + Duration::from_secs(1) >= HEADER_TIMEOUT && *w < CONNECTION_TIMEOUT),
        "{waits:?}"
    );
    // Its slots are free again.
    let again = scrape_from("127.0.0.1", addr).await;
    assert!(again.starts_with("HTTP/1.1 200"), "{again}");
    stopper.stop().await;
    server.await.unwrap();
}

#[test]
fn a_peer_is_its_ipv4_address_or_its_ipv6_64() {
    let key = |s: &str| peer_key(s.parse().unwrap()).to_string();
    assert_eq!(key("192.0.2.7"), "192.0.2.7");
    assert_eq!(key("::ffff:192.0.2.7"), "192.0.2.7");
    assert_eq!(key("2001:db8:1:2:aaaa:bbbb:cccc:dddd"), "2001:db8:1:2::");
    let peers = Peers::default();
    let a = peers.enter("2001:db8::1".parse().unwrap());
    let b = peers.enter("2001:db8::2".parse().unwrap());
    assert!(a.is_some() && b.is_some());
    assert!(
        peers.enter("2001:db8::3".parse().unwrap()).is_none(),
        "same /64"
    );
    assert!(peers.enter("2001:db8:0:1::1".parse().unwrap()).is_some());
    drop(a);
    assert!(
        peers.enter("2001:db8::3".parse().unwrap()).is_some(),
        "given back"
    );
}

#[test]
fn the_signature_ruleset_is_in_the_metrics_as_status_says_it() {
    let sigs = signatures_status();
    let reply = answer(&get("/metrics", &[]), None, &status(), Some(&sigs), None);
    let body = reply.into_body();
    let bytes = futures_body(body);
    for line in [
        "homewarden_signatures_profile{profile=\"home\"} 1",
        "homewarden_signatures_profile{profile=\"full\"} 0",
        "homewarden_signatures_rules{verdict=\"drop\"} 3100",
        "homewarden_signatures_rules{verdict=\"alert\"} 14000",
        "homewarden_signatures_last_success_timestamp_seconds 1800000000",
        "homewarden_signatures_last_update_failed 1",
        "homewarden_signatures_reload_failed 0",
    ] {
        assert!(bytes.lines().any(|l| l == line), "{line} missing:\n{bytes}");
    }
}

/// The whole body of a reply made in memory.
fn futures_body(body: http_body_util::Full<bytes::Bytes>) -> String {
    use http_body_util::BodyExt;
    let collected = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
        .block_on(body.collect())
        .unwrap();
    String::from_utf8(collected.to_bytes().to_vec()).unwrap()
}
