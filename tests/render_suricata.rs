//! Offline rendering end to end: hostile values never reach a rule or a dataset
//! file unparsed, and real Suricata accepts every rendering (`suricata -T`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

mod capture;

const BIN: &str = env!("CARGO_BIN_EXE_homewarden");

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Values no line-based list can carry: written into a MISP feed as JSON.
const JSON_ONLY: &[&str] = &[
    "evil.example\nalert ip any any -> any any (sid:3;)",
    "evil\u{0}.example",
    "203.0.113.9\r\n203.0.113.10",
    "evil.example\u{2028}x",
];

fn write_hostile_feed(dir: &Path) {
    let uuid = "5f2d3f0a-0000-4000-8000-00000000beef";
    let mut attrs: Vec<serde_json::Value> = Vec::new();
    for (i, v) in JSON_ONLY.iter().enumerate() {
        for t in ["domain", "ip-dst", "url", "hostname", "domain|ip", "md5"] {
            attrs.push(serde_json::json!({"type": t, "value": v, "to_ids": true, "uuid": format!("h-{i}-{t}")}));
        }
    }
    let text = std::fs::read_to_string(repo().join("tests/data/hostile-values.txt")).unwrap();
    for (i, v) in text.lines().filter(|l| !l.starts_with('#')).enumerate() {
        // Not `url`: "1.2.3.4/33" is a fine URL (host 1.2.3.4, path /33).
        for t in ["domain", "ip-dst", "hostname", "sha256"] {
            attrs.push(serde_json::json!({"type": t, "value": v, "to_ids": true, "uuid": format!("l-{i}-{t}")}));
        }
    }
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(
        dir.join("manifest.json"),
        serde_json::json!({uuid: {"info": "hostile", "timestamp": "1", "threat_level_id": "1"}})
            .to_string(),
    )
    .unwrap();
    std::fs::write(
        dir.join(format!("{uuid}.json")),
        serde_json::json!({"Event": {"uuid": uuid, "info": "hostile", "published": true, "Attribute": attrs}}).to_string(),
    )
    .unwrap();
}

fn render(out: &Path, config: Option<&Path>, sources: &[&Path]) -> String {
    let mut cmd = Command::new(BIN);
    cmd.arg("--config")
        .arg(config.unwrap_or(Path::new("/nonexistent/homewarden.yaml")));
    // The hostile lists are mostly refused on purpose: no refusal limit.
    cmd.arg("render")
        .arg("--out")
        .arg(out)
        .args(["--max-refused", "100"]);
    for s in sources {
        cmd.arg("--source").arg(s);
    }
    let o = cmd.output().unwrap();
    let stdout = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(
        o.status.success(),
        "render failed: {stdout}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    stdout
}

/// Every line of every list must be exactly the canonical form of a parsed value.
fn assert_lists_canonical(dir: &Path) {
    use base64::Engine as _;
    for entry in std::fs::read_dir(dir).unwrap() {
        let p = entry.unwrap().path();
        if p.extension().is_none_or(|e| e != "lst") {
            continue;
        }
        let text = std::fs::read_to_string(&p).unwrap();
        for line in text.lines() {
            let value = if p.file_name().unwrap().to_string_lossy().contains("domain") {
                let raw = base64::engine::general_purpose::STANDARD
                    .decode(line)
                    .unwrap();
                String::from_utf8(raw).unwrap()
            } else {
                line.to_string()
            };
            let parsed: homewarden::intel::ioc::Ioc = value
                .parse()
                .unwrap_or_else(|e| panic!("{}: {value:?}: {e}", p.display()));
            assert_eq!(
                parsed.to_string(),
                value,
                "{} holds a non-canonical value",
                p.display()
            );
            assert!(value.bytes().all(|b| b.is_ascii_graphic()), "{value:?}");
        }
    }
}

fn suricata_available() -> bool {
    let found = Command::new("suricata")
        .arg("-V")
        .output()
        .is_ok_and(|o| o.status.success());
    if !found && std::env::var_os("HOMEWARDEN_REQUIRE_SURICATA").is_some() {
        panic!("suricata is required (HOMEWARDEN_REQUIRE_SURICATA is set) but not installed");
    }
    if !found {
        eprintln!("suricata not installed: skipping the suricata -T part (scripts/install-deps.sh installs it)");
    }
    found
}

/// Suricata with Debian's config and a rendering's rules, logging into `log`.
fn suricata(rules_dir: &Path, log: &Path, args: &[&std::ffi::OsStr]) -> std::process::Output {
    Command::new("suricata")
        .args(args)
        .args(["-c", "/etc/suricata/suricata.yaml", "--set"])
        .arg(format!("default-rule-path={}", rules_dir.display()))
        .args(["--set", "rule-files.0=homewarden.rules", "-l"])
        .arg(log)
        .output()
        .unwrap()
}

/// Runs `suricata -T` on a rendering and returns the number of rules loaded.
fn suricata_test(rules_dir: &Path) -> usize {
    let log = tempfile::tempdir().unwrap();
    let o = suricata(rules_dir, log.path(), &["-T".as_ref(), "-v".as_ref()]);
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(o.status.success(), "suricata -T failed:\n{all}");
    let line = all
        .lines()
        .find(|l| l.contains("rules successfully loaded"))
        .unwrap_or_else(|| panic!("no rule count in:\n{all}"));
    assert!(line.contains(" 0 rules failed"), "{line}");
    line.split_whitespace()
        .zip(line.split_whitespace().skip(1))
        .find(|(_, next)| *next == "rules")
        .and_then(|(n, _)| n.parse().ok())
        .unwrap()
}

#[test]
fn hostile_values_never_reach_the_files_and_suricata_accepts_every_rendering() {
    let work = tempfile::tempdir().unwrap();
    let feed = work.path().join("feed");
    write_hostile_feed(&feed);
    let list = repo().join("tests/data/hostile-values.txt");

    let configs = [
        ("ips-drop", "enforcement: { mode: ips, action: drop }\n"),
        (
            "ips-reject",
            "enforcement: { mode: ips, action: reject }\nallowlist: { domains: [good.example] }\n",
        ),
        (
            "ids",
            "enforcement: { mode: ids, match_subdomains: false }\n",
        ),
    ];
    let check = suricata_available();
    for (name, yaml) in configs {
        let cfg = work.path().join(format!("{name}.yaml"));
        std::fs::write(&cfg, yaml).unwrap();
        let out = work.path().join(name);
        let summary = render(&out, Some(&cfg), &[&feed, &list]);
        assert!(summary.contains("refused"), "{summary}");
        assert_lists_canonical(&out);
        let rules = std::fs::read_to_string(out.join("homewarden.rules")).unwrap();
        for bad in [
            "sid:1;",
            "sid:2;",
            "sid:3;",
            "/etc/shadow",
            "evil.example",
            "DROP TABLE",
            "<script>",
        ] {
            assert!(!rules.contains(bad), "{name}: rules contain {bad:?}");
        }
        let ipv4 = std::fs::read_to_string(out.join("hw-ipv4.lst")).unwrap();
        // The /30 is expanded, the good single address kept, nothing else.
        assert_eq!(
            ipv4, "203.0.113.0\n203.0.113.1\n203.0.113.2\n203.0.113.3\n203.0.113.66\n",
            "{name}"
        );
        if check {
            let n = suricata_test(&out);
            assert_eq!(
                n,
                rules
                    .lines()
                    .filter(|l| !l.starts_with('#') && !l.is_empty())
                    .count(),
                "{name}"
            );
        }
    }
}

/// Property: every value the IoC parser accepts renders into files real
/// Suricata loads. Values come from proptest's generators (random names in
/// any script, addresses, networks, hashes, URLs), seeded, so a failure
/// repeats; all of them go through one rendering and one `suricata -T`.
#[test]
fn every_accepted_value_renders_to_files_suricata_accepts() {
    use proptest::strategy::{Strategy, ValueTree};
    use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
    let mut runner = TestRunner::new_with_rng(
        Config::default(),
        TestRng::from_seed(RngAlgorithm::ChaCha, &[7; 32]),
    );
    let value = proptest::prop_oneof![
        proptest::collection::vec("[a-zA-Z0-9_-]{1,20}|xn--[a-z0-9]{1,10}|[\\p{L}]{1,8}", 2..5)
            .prop_map(|l| l.join(".")),
        proptest::arbitrary::any::<std::net::Ipv4Addr>().prop_map(|a| a.to_string()),
        proptest::arbitrary::any::<std::net::Ipv6Addr>().prop_map(|a| a.to_string()),
        (proptest::arbitrary::any::<std::net::Ipv4Addr>(), 24u8..=32)
            .prop_map(|(a, p)| format!("{a}/{p}")),
        "[0-9a-f]{32}|[0-9a-f]{64}",
        "https?://[a-z0-9.-]{1,30}(:[0-9]{1,5})?/[ -~]{0,20}",
    ];
    let accepted: Vec<String> = (0..3000)
        .map(|_| value.new_tree(&mut runner).unwrap().current())
        .filter(|v| !v.contains(['\n', '#']) && homewarden::intel::ioc::Ioc::parse_any(v).is_ok())
        .collect();
    assert!(accepted.len() > 1500, "only {} accepted", accepted.len());
    let work = tempfile::tempdir().unwrap();
    let list = work.path().join("generated.txt");
    std::fs::write(&list, accepted.join("\n") + "\n").unwrap();
    let out = work.path().join("out");
    render(&out, None, &[&list]);
    assert_lists_canonical(&out);
    if suricata_available() {
        suricata_test(&out);
    }
}

#[test]
fn render_needs_no_config_and_is_deterministic() {
    let work = tempfile::tempdir().unwrap();
    let list = repo().join("tests/data/hostile-values.txt");
    let (a, b) = (work.path().join("a"), work.path().join("b"));
    render(&a, None, &[&list]);
    render(&b, None, &[&list]);
    for f in [
        "homewarden.rules",
        "hw-ipv4.lst",
        "hw-ipv6.lst",
        "hw-domain.lst",
        "hw-md5.lst",
        "hw-sha256.lst",
    ] {
        assert_eq!(
            std::fs::read(a.join(f)).unwrap(),
            std::fs::read(b.join(f)).unwrap(),
            "{f}"
        );
    }
}

#[test]
fn a_bad_config_is_one_clear_line() {
    let work = tempfile::tempdir().unwrap();
    let cfg = work.path().join("homewarden.yaml");
    std::fs::write(&cfg, "enforcement:\n  mode: ipz\n").unwrap();
    let o = Command::new(BIN)
        .arg("--config")
        .arg(&cfg)
        .arg("check-config")
        .output()
        .unwrap();
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains(&format!("{}: enforcement.mode:", cfg.display())) && err.contains("ipz"),
        "{err}"
    );
}

/// Replays a capture through `suricata -r` with a rendering and returns the
/// sids that fired for each client port.
fn replay(rules_dir: &Path, pcap: &[u8]) -> BTreeMap<u16, Vec<u64>> {
    let log = tempfile::tempdir().unwrap();
    let file = log.path().join("events.pcap");
    std::fs::write(&file, pcap).unwrap();
    let o = suricata(
        rules_dir,
        log.path(),
        &[
            "-r".as_ref(),
            file.as_os_str(),
            "-k".as_ref(),
            "none".as_ref(),
        ],
    );
    assert!(
        o.status.success(),
        "suricata -r failed:\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let eve = std::fs::read_to_string(log.path().join("eve.json")).unwrap();
    let mut fired: BTreeMap<u16, Vec<u64>> = BTreeMap::new();
    for line in eve.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        if v["event_type"] == "alert" {
            let port = v["src_port"].as_u64().unwrap() as u16;
            let sid = v["alert"]["signature_id"].as_u64().unwrap();
            fired.entry(port).or_default().push(sid);
        }
    }
    fired
}

#[test]
fn one_query_handshake_or_request_for_a_listed_name_raises_one_alert() {
    if !suricata_available() {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let list = work.path().join("names.txt");
    // `c2.evil.example` sits under a listed parent: one alert still, not two.
    std::fs::write(
        &list,
        "c2.bad-example.test\nevil.example\nc2.evil.example\na.b.c.d.e.f.example\n",
    )
    .unwrap();
    let out = work.path().join("rules");
    render(&out, None, &[&list]);
    let expect = [
        ("c2.bad-example.test", 1),
        ("x.c2.bad-example.test", 1),
        ("bad-example.test", 0),
        ("other.test", 0),
        ("c2.evil.example", 1),
        ("x.y.z.w.evil.example", 1),
        ("a.b.c.d.e.f.example", 1),
        ("deep.a.b.c.d.e.f.example", 0),
        ("b.c.d.e.f.example", 0),
    ];
    let mut cap = capture::Capture::default();
    let mut flows = Vec::new();
    for (name, want) in expect {
        flows.push(("DNS query", name, want, cap.dns_query(name)));
        flows.push(("TLS SNI", name, want, cap.tls_client_hello(name)));
        flows.push(("HTTP host", name, want, cap.http_request(name)));
        flows.push(("QUIC SNI", name, want, cap.quic_initial(name)));
    }
    let fired = replay(&out, &cap.bytes());
    let mut wrong = Vec::new();
    for (what, name, want, port) in flows {
        let sids = fired.get(&port).cloned().unwrap_or_default();
        if sids.len() != want {
            wrong.push(format!(
                "{what} {name}: {} alerts (sids {sids:?}), want {want}",
                sids.len()
            ));
        } else if want == 1 {
            // The right family fired (a DNS query is not caught by the SNI rule).
            let offset = sids[0] - 1_666_000;
            let family = match what {
                "DNS query" => 10..20,
                "TLS SNI" => 20..30,
                "QUIC SNI" => 1000..1010,
                _ => 30..40,
            };
            assert!(family.contains(&offset), "{what} {name}: sid {}", sids[0]);
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn networks_too_wide_to_expand_are_enforced_as_published_with_their_exceptions() {
    if !suricata_available() {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let list = work.path().join("drop.txt");
    // Spamhaus DROP / DROPv6 as published; 100/8 holds the carrier-grade NAT
    // range the builtin allowlist keeps.
    std::fs::write(
        &list,
        "; Spamhaus DROP List\n198.51.0.0/16 ; SBL1\n100.0.0.0/8 ; SBL2\n2001:db8::/32 ; SBL3\n",
    )
    .unwrap();
    let out = work.path().join("rules");
    let stdout = render(&out, None, &[&list]);
    assert!(stdout.contains("0 networks too wide"), "{stdout}");
    let rules = std::fs::read_to_string(out.join("homewarden.rules")).unwrap();
    assert!(
        rules.contains("-> [100.0.0.0/8,!100.64.0.0/10,198.51.0.0/16] any"),
        "{rules}"
    );
    assert!(rules.contains("[2001:db8::/32]"), "{rules}");
    // Destination and source rules for each family, all loaded.
    assert!(suricata_test(&out) >= 4);
    let mut cap = capture::Capture::default();
    let cases = [
        ("198.51.7.9", 1),
        ("100.200.0.1", 1),
        ("100.64.0.1", 0),
        ("203.0.113.200", 0),
    ];
    let flows: Vec<(&str, usize, u16)> = cases
        .iter()
        .map(|&(a, want)| (a, want, cap.udp_to(a.parse().unwrap())))
        .collect();
    let fired = replay(&out, &cap.bytes());
    for (addr, want, port) in flows {
        let sids = fired.get(&port).cloned().unwrap_or_default();
        assert_eq!(sids.len(), want, "{addr}: sids {sids:?}");
        if want == 1 {
            assert_eq!(
                sids[0],
                1_666_000 + 200,
                "{addr}: the IPv4 destination rule"
            );
        }
    }
}

#[test]
fn encrypted_dns_past_the_homes_resolver_raises_one_alert_a_flow_unless_let_be() {
    if !suricata_available() {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let list = work.path().join("names.txt");
    std::fs::write(&list, "c2.bad-example.test\n").unwrap();
    let mut cap = capture::Capture::default();
    let dot = cap.tls_client_hello_to("dns.google", 853);
    let doq = cap.quic_initial_to("dns.adguard-dns.com", 853);
    let plain = cap.dns_query("example.org");
    let https = cap.tls_client_hello("dns.google");
    let pcap = cap.bytes();

    // The default (block): one alert for each encrypted flow (the DoT one is
    // three packets to the server), none for plain DNS or for HTTPS.
    let out = work.path().join("default");
    render(&out, None, &[&list]);
    let rules = std::fs::read_to_string(out.join("homewarden.rules")).unwrap();
    assert!(rules.contains("reject tcp any any -> any 853 "), "{rules}");
    let fired = replay(&out, &pcap);
    assert_eq!(fired.get(&dot), Some(&vec![1_666_080]), "{fired:?}");
    assert_eq!(fired.get(&doq), Some(&vec![1_666_081]), "{fired:?}");
    assert_eq!(fired.get(&plain), None, "{fired:?}");
    assert_eq!(fired.get(&https), None, "{fired:?}");

    // The device let be: nothing.
    let config = work.path().join("homewarden.yaml");
    std::fs::write(
        &config,
        "enforcement:\n  dns_bypass_allow: [198.18.1.0/28]\n",
    )
    .unwrap();
    let out = work.path().join("allowed");
    render(&out, Some(&config), &[&list]);
    assert_eq!(replay(&out, &pcap), BTreeMap::new());

    // The resolver is the home's own (`network.dns`): nothing either.
    std::fs::write(&config, "network:\n  dns: [203.0.113.9]\n").unwrap();
    let out = work.path().join("trusted");
    render(&out, Some(&config), &[&list]);
    assert_eq!(replay(&out, &pcap), BTreeMap::new());
}
