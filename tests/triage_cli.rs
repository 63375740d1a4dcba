//! `homewarden triage --eve FILE`: the same intake and triage as the daemon,
//! offline over an existing eve.json, with no config needed.

use std::io::Write;
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_homewarden");

fn alert(ts: &str, src: &str, dst: &str, sid: u32, sev: u8, extra: &str) -> String {
    format!(
        r#"{{"timestamp":"{ts}","flow_id":1,"event_type":"alert","src_ip":"{src}","src_port":40000,"dest_ip":"{dst}","dest_port":80,"proto":"TCP","alert":{{"action":"blocked","gid":1,"signature_id":{sid},"rev":1,"signature":"homewarden: IPv4 destination on blocklist","category":"A Network Trojan was detected","severity":{sev},"metadata":{{"homewarden_kind":["ipv4"]}}}}{extra}}}"#
    )
}

/// `homewarden triage --json --eve FILE`, with no config, as JSON.
fn triage_json(eve: &std::path::Path) -> serde_json::Value {
    let o = Command::new(BIN)
        .args([
            "--config",
            "/nonexistent/homewarden.yaml",
            "triage",
            "--json",
            "--eve",
        ])
        .arg(eve)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    serde_json::from_slice(&o.stdout).unwrap()
}

#[test]
fn a_storm_becomes_few_incidents_and_garbage_is_counted() {
    let dir = tempfile::tempdir().unwrap();
    let eve = dir.path().join("eve.json");
    let mut f = std::fs::File::create(&eve).unwrap();
    for i in 0..1000 {
        let ts = format!(
            "2026-11-25T03:{:02}:{:02}.000000+0000",
            10 + i / 60 % 10,
            i % 60
        );
        writeln!(
            f,
            "{}",
            alert(&ts, "192.168.1.20", "203.0.113.66", 1666001, 1, "")
        )
        .unwrap();
    }
    // A DNS hit on a domain rule: keyed by the name.
    writeln!(
        f,
        "{}",
        alert(
            "2026-11-25T03:20:00.0+0000",
            "192.168.1.21",
            "203.0.113.53",
            1666010,
            1,
            r#","dns":{"query":[{"rrname":"C2.Lab-Evil.test"}]}"#
        )
        .replace(r#"["ipv4"]"#, r#"["domain"]"#)
    )
    .unwrap();
    // Hostile and broken lines.
    let long = "A".repeat(50_000);
    writeln!(
        f,
        "{}",
        alert(
            "2026-11-25T03:21:00.0+0000",
            "192.168.1.22",
            "198.51.100.9",
            2000001,
            3,
            ""
        )
        .replace(
            "homewarden: IPv4 destination on blocklist",
            &format!("<script>alert(1)</script>{long}\\u0007")
        )
    )
    .unwrap();
    f.write_all(b"{\"event_type\":\"stats\",\"timestamp\":\"2026-11-25T03:21:00.0+0000\"}\nnot json at all\n\xff\xfe\xfd\n{\"event_type\":\"alert\"").unwrap();
    drop(f);

    let v = triage_json(&eve);
    let incidents = v["incidents"].as_array().unwrap();
    assert_eq!(incidents.len(), 3, "{v:#}");
    assert_eq!(incidents[0]["count"], 1000);
    assert_eq!(incidents[0]["high"], true);
    assert_eq!(incidents[0]["local"], "192.168.1.20");
    assert_eq!(incidents[1]["remote"], "c2.lab-evil.test");
    let hostile = incidents[2]["signature"].as_str().unwrap();
    assert!(
        hostile.chars().count() <= 256 && !hostile.contains('\u{7}'),
        "{hostile:?}"
    );
    assert_eq!(incidents[2]["high"], false);
    assert_eq!(v["lines"]["alerts"], 1002);
    assert_eq!(v["lines"]["other"], 1);
    assert_eq!(v["lines"]["malformed"], 3);

    let human = Command::new(BIN)
        .args([
            "--config",
            "/nonexistent/homewarden.yaml",
            "triage",
            "--eve",
        ])
        .arg(&eve)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&human.stdout);
    assert!(
        text.contains(
            "3 incidents (2 high) from 1002 alerts; 1 other records, 3 malformed lines skipped"
        ),
        "{text}"
    );
}

#[test]
fn a_missing_file_is_one_clear_line() {
    let o = Command::new(BIN)
        .args([
            "--config",
            "/nonexistent/homewarden.yaml",
            "triage",
            "--eve",
            "/nonexistent/eve.json",
        ])
        .output()
        .unwrap();
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("/nonexistent/eve.json") && err.trim().lines().count() == 1,
        "{err}"
    );
}

/// A held-out eve file (tests/data/eve-five-rules-per-query.json) where five
/// of our rules fire on each query (DNS as eve 7 and eve 8 write it, a flat
/// DNS record, the TLS SNI, the HTTP Host): one incident per device and name.
#[test]
fn five_rules_on_one_query_are_one_incident_per_query_target() {
    let eve = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/eve-five-rules-per-query.json"
    );
    let v = triage_json(std::path::Path::new(eve));
    let mut got: Vec<(String, String, u64)> = v["incidents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            (
                i["local"].as_str().unwrap().to_string(),
                i["remote"].as_str().unwrap().to_string(),
                i["count"].as_u64().unwrap(),
            )
        })
        .collect();
    got.sort();
    assert_eq!(
        got,
        [
            ("192.168.1.30".into(), "c2.lab-evil.test".into(), 5),
            ("192.168.1.30".into(), "drop.lab-evil.test".into(), 5),
            ("192.168.1.31".into(), "c2.lab-evil.test".into(), 5),
        ],
        "{v:#}"
    );
    assert_eq!(v["lines"]["alerts"], 15);
}
