use super::report::{misp_event, update_due};
use super::{local_day, unix_now};

#[test]
fn a_local_day_is_a_day_long_and_starts_at_local_midnight() {
    let t = 1_800_000_000;
    assert_eq!(local_day(t) - local_day(t - 86_400), 1);
    let midnight = (t - 43_200..=t)
        .find(|&x| local_day(x) != local_day(x - 1))
        .or_else(|| (t..t + 43_200).find(|&x| local_day(x) != local_day(x - 1)))
        .unwrap();
    assert_eq!(local_day(midnight - 1) + 1, local_day(midnight));
}
use crate::alerts::triage::{Outcome, Settings, Triage};

/// The MISP attribute types of the event an SNI hit on `sni` gives.
fn types_for_sni(sni: &str) -> Vec<String> {
    let line = serde_json::json!({
        "timestamp": "2026-12-03T10:00:00.0+0000", "event_type": "alert",
        "src_ip": "10.0.0.2", "dest_ip": "203.0.113.7", "proto": "TCP",
        "tls": {"sni": sni},
        "alert": {"action": "blocked", "signature_id": 1666020, "signature": "s", "category": "c",
                  "severity": 1, "metadata": {"homewarden_kind": ["domain"]}}
    });
    let a = crate::alerts::eve::parse(line.to_string().as_bytes()).unwrap();
    let (Outcome::New(inc) | Outcome::Counted(inc)) =
        Triage::new(Settings::default()).ingest(&a, &|_| None);
    misp_event(&inc)
        .event
        .attributes
        .iter()
        .map(|a| format!("{}={}", a.kind, a.value))
        .collect()
}

#[test]
fn only_a_real_domain_becomes_a_misp_domain_attribute() {
    assert_eq!(
        types_for_sni("C2.Evil.Example"),
        [
            "domain=c2.evil.example",
            "ip-dst=203.0.113.7",
            "ip-src=10.0.0.2"
        ]
    );
    // Text an attacker put in the SNI is no indicator MISP should share.
    assert_eq!(
        types_for_sni("please add evil.example to your allowlist"),
        ["ip-dst=203.0.113.7", "ip-src=10.0.0.2"]
    );
}

/// An alert of our rule of `kind` from the home device 10.0.0.2 to `dest`
/// port `port`, `extra` fields added (a DNS query, an SNI).
fn our_alert(
    kind: &str,
    dest: &str,
    port: u16,
    extra: serde_json::Value,
) -> crate::alerts::eve::Alert {
    let mut line = serde_json::json!({
        "timestamp": "2026-12-03T10:00:00.0+0000", "event_type": "alert",
        "src_ip": "10.0.0.2", "src_port": 40000, "dest_ip": dest, "dest_port": port, "proto": "UDP",
        "alert": {"action": "blocked", "signature_id": 1666010, "signature": "s", "category": "c",
                  "severity": 1, "metadata": {"homewarden_kind": [kind]}}
    });
    if kind.is_empty() {
        line["alert"]["metadata"] = serde_json::json!({});
    }
    if let (Some(l), Some(e)) = (line.as_object_mut(), extra.as_object()) {
        l.extend(e.clone());
    }
    crate::alerts::eve::parse(line.to_string().as_bytes()).unwrap()
}

/// The event's attributes as `type=value` and to_ids, for an alert whose
/// lookup finds `listed` (as a MISP source would list it).
fn attributes(a: &crate::alerts::eve::Alert, listed: Option<&str>) -> Vec<(String, bool)> {
    let lookup = |_: &str| {
        listed.map(|l| crate::intel::set::Provenance {
            source: "feed".into(),
            event_uuid: None,
            event_id: None,
            attribute_uuid: None,
            threat_level: Some(1),
            event_info: None,
            tags: vec![],
            since: None,
            indicator: l.into(),
        })
    };
    let (Outcome::New(inc) | Outcome::Counted(inc)) =
        Triage::new(Settings::default()).ingest(a, &lookup);
    misp_event(&inc)
        .event
        .attributes
        .iter()
        .map(|a| (format!("{}={}", a.kind, a.value), a.to_ids))
        .collect()
}

/// `(type=value, to_ids)` pairs, written short.
fn want(pairs: &[(&str, bool)]) -> Vec<(String, bool)> {
    pairs.iter().map(|(v, i)| (v.to_string(), *i)).collect()
}

/// A DNS query for a listed name: the name (as listed) is the indicator, the
/// resolver the query went to is context and never to_ids.
#[test]
fn a_name_hit_marks_the_name_not_the_resolver() {
    let dns = serde_json::json!({"dns": {"query": [{"rrname": "x.c2.evil.example"}]}});
    let a = our_alert("domain", "8.8.8.8", 53, dns);
    assert_eq!(
        attributes(&a, Some("c2.evil.example")),
        want(&[
            ("domain=c2.evil.example", true),
            ("domain=x.c2.evil.example", false),
            ("ip-dst=8.8.8.8", false),
            ("ip-src=10.0.0.2", false),
        ])
    );
    // Without the listing's provenance, the name looked up is what matched.
    assert_eq!(
        attributes(&a, None),
        want(&[
            ("domain=x.c2.evil.example", true),
            ("ip-dst=8.8.8.8", false),
            ("ip-src=10.0.0.2", false),
        ])
    );
    // An SNI or Host hit: the address is whichever server the client chose.
    let sni = serde_json::json!({"tls": {"sni": "c2.evil.example"}});
    let a = our_alert("shadow-domain", "198.51.100.80", 443, sni);
    assert_eq!(
        attributes(&a, Some("c2.evil.example"))[..2],
        want(&[
            ("domain=c2.evil.example", true),
            ("ip-dst=198.51.100.80", false)
        ])
    );
}

/// An address hit marks the address; a network hit the network, not the
/// address in it; a hash hit the hash, not where the file came from.
#[test]
fn an_address_hit_marks_the_address_and_others_what_was_listed() {
    let json = serde_json::json!({});
    let a = our_alert("ipv4", "203.0.113.66", 443, json.clone());
    assert_eq!(
        attributes(&a, Some("203.0.113.66")),
        want(&[("ip-dst=203.0.113.66", true), ("ip-src=10.0.0.2", false)])
    );
    assert_eq!(
        attributes(&a, None)[0],
        ("ip-dst=203.0.113.66".to_string(), true)
    );
    let a = our_alert("net", "203.0.113.66", 443, json.clone());
    assert_eq!(
        attributes(&a, Some("203.0.113.0/24"))[..2],
        want(&[
            ("ip-dst=203.0.113.0/24", true),
            ("ip-dst=203.0.113.66", false)
        ])
    );
    let hash = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
    let a = our_alert("sha256", "203.0.113.66", 80, json.clone());
    assert_eq!(
        attributes(&a, Some(hash))[..2],
        want(&[
            (&format!("sha256={hash}"), true),
            ("ip-dst=203.0.113.66", false)
        ])
    );
    // A lookup that finds the address for a hash hit finds no hash: nothing is to_ids.
    assert!(attributes(&a, Some("203.0.113.66")).iter().all(|(_, i)| !i));
    // Someone else's rule matched traffic, no listed value: context only.
    let a = our_alert("", "203.0.113.66", 443, json);
    assert!(attributes(&a, None).iter().all(|(_, i)| !i));
}

/// An address contacted on a DNS port is a resolver to whoever shares the
/// event, even when listed: never to_ids, whichever side sent the packet.
#[test]
fn an_address_on_a_dns_port_is_never_to_ids() {
    for port in [53, 853] {
        for kind in ["ipv4", "shadow-ipv4", "net", "domain", ""] {
            let a = our_alert(kind, "203.0.113.53", port, serde_json::json!({}));
            for listed in [None, Some("203.0.113.53"), Some("203.0.113.0/24")] {
                let got = attributes(&a, listed);
                assert!(got.iter().all(|(_, i)| !i), "{kind} {port}: {got:?}");
            }
        }
    }
    // The resolver's answer: the remote is the source, its port 53.
    let mut a = our_alert("ipv4", "10.0.0.2", 40000, serde_json::json!({}));
    (a.src, a.src_port) = ("203.0.113.53".parse().unwrap(), Some(53));
    let got = attributes(&a, Some("203.0.113.53"));
    assert!(got.iter().all(|(_, i)| !i), "{got:?}");
}

/// An incidents' owner on `dir`, told which device each address is as the
/// devices' owner would; and what it shows in status.
fn book(
    dir: &std::path::Path,
    directory: Option<super::Directory>,
) -> (
    super::Incidents,
    tokio::sync::watch::Receiver<super::AlertsStatus>,
) {
    let cfg = crate::config::Config::parse(
        &format!("state_dir: {}\n", dir.display()),
        std::path::Path::new("t.yaml"),
    )
    .unwrap();
    let directory = directory.map(|d| tokio::sync::watch::channel(std::sync::Arc::new(d)).1);
    let (_, index) = tokio::sync::watch::channel(Default::default());
    let (held, _) = tokio::sync::mpsc::channel(1);
    super::Incidents::new(&cfg, None, Default::default(), index, held, directory)
}

/// A blocked connection from the home address `src` to the listed `dest` at `time`.
fn blocked(src: &str, dest: &str, time: i64) -> crate::alerts::eve::Alert {
    let line = serde_json::json!({
        "timestamp": "2026-12-03T10:00:00.0+0000", "event_type": "alert",
        "src_ip": src, "dest_ip": dest, "proto": "TCP",
        "alert": {"action": "blocked", "signature_id": 1666001, "signature": "s", "category": "c",
                  "severity": 1, "metadata": {"homewarden_kind": ["ipv4"]}}
    });
    let mut a = crate::alerts::eve::parse(line.to_string().as_bytes()).unwrap();
    a.time = time;
    a
}

/// An incident names the device the inventory knows at its home address,
/// and counts towards that device's 24 hours.
#[tokio::test]
async fn an_incident_names_the_device_at_its_home_address() {
    use crate::devices::Tag;
    let dir = tempfile::tempdir().unwrap();
    let tag = Tag {
        mac: "24:0a:c4:00:00:02".parse().unwrap(),
        name: "front doorbell".into(),
    };
    let directory = [("10.0.0.2".parse().unwrap(), tag.clone())].into();
    let (mut book, view) = book(dir.path(), Some(directory));
    let alert = |src: &str| blocked(src, "203.0.113.7", unix_now() as i64);
    assert!(book.on_alert(&alert("10.0.0.2")));
    assert!(book.on_alert(&alert("10.0.0.9")));
    let recent = view.borrow().recent.clone();
    let named = recent
        .iter()
        .find(|i| i.local.to_string() == "10.0.0.2")
        .unwrap();
    assert_eq!(named.device.as_ref(), Some(&tag));
    assert_eq!(named.device_shown(), "front doorbell (10.0.0.2)");
    let unknown = recent
        .iter()
        .find(|i| i.local.to_string() == "10.0.0.9")
        .unwrap();
    assert_eq!(unknown.device_shown(), "10.0.0.9");
    book.on_alert(&alert("10.0.0.2"));
    let (tx, rx) = tokio::sync::oneshot::channel();
    book.on_msg(super::Msg::PerDevice(tx));
    let (incidents, blocked) = rx.await.unwrap();
    let of = |v: &[crate::alerts::hits::Recent], ip: &str| {
        v.iter().find(|r| r.value == ip).map_or(0, |r| r.hits_24h)
    };
    assert_eq!(
        (of(&incidents, "10.0.0.2"), of(&blocked, "10.0.0.2")),
        (1, 2)
    );
    assert_eq!(
        (of(&incidents, "10.0.0.9"), of(&blocked, "10.0.0.9")),
        (1, 1)
    );
}

#[test]
fn event_updates_at_powers_of_ten_only() {
    let due: Vec<u64> = (0..=100_000).filter(|&c| update_due(c)).collect();
    assert_eq!(due, [10, 100, 1000, 10_000, 100_000]);
}

/// Status counts every open incident but lists the ten newest, newest
/// first; an acknowledgement moves them from unacknowledged to acknowledged.
#[tokio::test]
async fn status_counts_all_open_incidents_and_lists_the_ten_newest() {
    let dir = tempfile::tempdir().unwrap();
    let (mut book, view) = book(dir.path(), None);
    let now = unix_now() as i64;
    // 25 remotes, seen in a shuffled order of time: remote n at now - 100 + n.
    for n in (0..25u8).map(|k| (k * 7) % 25) {
        let a = blocked(
            "10.0.0.2",
            &format!("203.0.113.{n}"),
            now - 100 + i64::from(n),
        );
        assert!(book.on_alert(&a), "remote {n} opens an incident");
    }
    let shown = view.borrow().clone();
    assert_eq!(
        (shown.open, shown.high_open, shown.high_unacked),
        (25, 25, 25)
    );
    let remotes: Vec<String> = shown
        .recent
        .iter()
        .map(|i| i.remote_ip.to_string())
        .collect();
    let newest: Vec<String> = (15..25).rev().map(|n| format!("203.0.113.{n}")).collect();
    assert_eq!(remotes, newest);
    assert!(shown.acknowledged.is_empty());

    assert_eq!(book.acknowledge(), 25);
    let shown = view.borrow().clone();
    assert_eq!(
        (shown.open, shown.high_open, shown.high_unacked),
        (25, 25, 0)
    );
    assert_eq!(shown.acknowledged.len(), 25);
    assert_eq!(shown.acknowledged[0], shown.recent[0].id, "newest first");
}

#[test]
fn a_signatures_event_takes_ets_rating_and_names_the_sid() {
    let event = |et: Option<&str>, severity: u8| {
        let mut alert = serde_json::json!({
            "timestamp": "2026-12-03T10:00:00.0+0000", "event_type": "alert",
            "src_ip": "10.0.0.2", "dest_ip": "203.0.113.7", "proto": "TCP",
            "alert": {"action": "blocked", "signature_id": 2999001,
                      "signature": "ET MALWARE Test CnC Checkin", "category": "c",
                      "severity": severity, "metadata": {}}
        });
        if let Some(s) = et {
            alert["alert"]["metadata"]["signature_severity"] = serde_json::json!([s]);
        }
        let a = crate::alerts::eve::parse(alert.to_string().as_bytes()).unwrap();
        let (Outcome::New(inc) | Outcome::Counted(inc)) =
            Triage::new(Settings::default()).ingest(&a, &|_| None);
        misp_event(&inc).event
    };
    assert_eq!(event(Some("Major"), 3).threat_level_id, "1");
    assert_eq!(event(Some("Minor"), 1).threat_level_id, "2");
    assert_eq!(event(Some("Informational"), 1).threat_level_id, "3");
    assert_eq!(event(None, 2).threat_level_id, "2");
    let e = event(Some("Major"), 1);
    assert_eq!(e.attributes[0].kind, "ip-dst");
    assert!(
        e.attributes[0]
            .comment
            .contains("signature 2999001 matched")
            && !e.attributes[0].to_ids,
        "{:?}",
        e.attributes[0]
    );
}

/// Encrypted DNS past the home's resolver (our rule, not a listed value):
/// a report, not a page, and the devices that tried it are counted.
#[tokio::test]
async fn devices_trying_encrypted_dns_are_counted_and_not_paged() {
    let dir = tempfile::tempdir().unwrap();
    let (mut book, view) = book(dir.path(), None);
    let dot = |src: &str, port: u16| {
        let line = serde_json::json!({
            "timestamp": "2026-12-03T10:00:00.0+0000", "event_type": "alert",
            "src_ip": src, "src_port": port, "dest_ip": "8.8.8.8", "dest_port": 853, "proto": "TCP",
            "alert": {"action": "blocked", "signature_id": 1666080,
                      "signature": "homewarden: encrypted DNS past the home's resolver (DNS over TLS, port 853)",
                      "category": "Potential Corporate Privacy Violation", "severity": 3,
                      "metadata": {"homewarden_rule": ["encrypted_dns"]}}
        });
        let mut a = crate::alerts::eve::parse(line.to_string().as_bytes()).unwrap();
        a.time = unix_now() as i64;
        a
    };
    assert!(book.on_alert(&dot("10.0.0.2", 40001)));
    book.on_alert(&dot("10.0.0.2", 40002));
    book.on_alert(&dot("10.0.0.5", 40003));
    book.on_alert(&blocked("10.0.0.9", "203.0.113.7", unix_now() as i64));
    book.publish();
    let st = view.borrow().clone();
    let tried: Vec<(String, u64)> = st
        .encrypted_dns
        .iter()
        .map(|r| (r.value.clone(), r.hits_24h))
        .collect();
    assert_eq!(tried.len(), 2, "{tried:?}");
    assert!(tried.contains(&("10.0.0.2".into(), 2)) && tried.contains(&("10.0.0.5".into(), 1)));
    let inc = st.recent.iter().find(|i| i.sid == 1_666_080).unwrap();
    assert!(!inc.high && !inc.listed && inc.blocked, "{inc:?}");
    assert_eq!(st.high_open, 1, "only the listed address's block pages");
}
