//! Refreshes from a local "upstream": what is taken, and what keeps the copy in use.

use super::*;
use crate::intel::ioc::Ioc;
use crate::intel::warninglist::{Verdict, Warninglists};

fn put(dir: &Path, name: &str, version: u64, kind: &str, list: &[&str]) {
    std::fs::create_dir_all(dir.join(name)).unwrap();
    let body = serde_json::json!({"name": name, "version": version, "type": kind, "list": list});
    std::fs::write(dir.join(name).join("list.json"), body.to_string()).unwrap();
}

#[tokio::test]
async fn a_newer_list_is_taken_and_a_broken_one_never() {
    let root = tempfile::tempdir().unwrap();
    let (shipped, upstream, state) = (
        root.path().join("shipped"),
        root.path().join("upstream"),
        root.path().join("state"),
    );
    put(&shipped, "top", 3, "string", &["google.com", "gmail.com"]);
    put(
        &shipped,
        "dns",
        5,
        "cidr",
        &["8.8.8.8", "8.8.4.4", "1.1.1.1", "9.9.9.9"],
    );
    put(&shipped, "cloud", 2, "cidr", &["198.51.100.0/24"]);
    put(&shipped, "same", 7, "string", &["example.org"]);
    put(
        &upstream,
        "top",
        4,
        "string",
        &["google.com", "gmail.com", "discord.com"],
    );
    put(&upstream, "dns", 6, "cidr", &["8.8.8.8"]);
    put(&upstream, "cloud", 3, "string", &["cloud.example"]);
    put(&upstream, "same", 7, "string", &["example.org"]);
    std::fs::create_dir_all(upstream.join("garbled")).unwrap();
    std::fs::write(
        upstream.join("garbled/list.json"),
        "<html>rate limited</html>",
    )
    .unwrap();
    put(&shipped, "garbled", 1, "string", &["example.net"]);
    let names: Vec<String> = ["top", "dns", "cloud", "same", "garbled", "gone"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let fetch = Fetch::new(reqwest::Client::new(), std::time::Duration::from_secs(5));
    let dirs = [shipped.as_path(), state.as_path()];
    let r = refresh(
        &Location::Path(upstream.clone()),
        &names,
        &dirs,
        &state,
        &fetch,
    )
    .await;
    assert_eq!(r.updated, ["top v3 -> v4"]);
    assert_eq!(r.current, 1);
    let kept = r.kept.join("\n");
    assert!(
        kept.contains("dns: v6 holds 1 entries where v5 holds 4"),
        "{kept}"
    );
    assert!(
        kept.contains("cloud: type \"string\" where the copy in use is \"cidr\""),
        "{kept}"
    );
    assert!(kept.contains("garbled: not a warninglist"), "{kept}");
    assert!(kept.contains("gone/list.json"), "{kept}");
    assert!(kept.contains("second-level-tlds/list.json"), "{kept}");
    // Loading takes the newest copy of each list from either place.
    let w = Warninglists::load(&dirs, &names[..1], &[], &[]);
    assert_eq!(
        w.verdict(&Ioc::parse_any("discord.com").unwrap()),
        Verdict::Exempt("top")
    );
    assert_eq!(w.lists()[0].version, 4);
    // A second refresh finds nothing newer.
    let again = refresh(
        &Location::Path(upstream),
        &names[..1],
        &dirs,
        &state,
        &fetch,
    )
    .await;
    assert_eq!((again.updated.len(), again.current), (0, 1));
}

async fn refresh_from(upstream: &Path, names: &[&str], dirs: &[&Path], into: &Path) -> Report {
    let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
    let fetch = Fetch::new(reqwest::Client::new(), std::time::Duration::from_secs(5));
    refresh(
        &Location::Path(upstream.to_path_buf()),
        &names,
        dirs,
        into,
        &fetch,
    )
    .await
}

#[tokio::test]
async fn networks_too_wide_to_exempt_are_left_out_and_a_list_of_them_refused() {
    let root = tempfile::tempdir().unwrap();
    let (shipped, upstream, state) = (
        root.path().join("shipped"),
        root.path().join("upstream"),
        root.path().join("state"),
    );
    put(&shipped, "cloud", 2, "cidr", &["198.51.100.0/24"]);
    put(&shipped, "dns", 4, "cidr", &["8.8.8.8", "9.9.9.9"]);
    put(
        &upstream,
        "cloud",
        3,
        "cidr",
        &[
            "198.51.100.0/24",
            "0.0.0.0/0",
            "::/0",
            "17.0.0.0/8",
            "2600:1400::/24",
            "203.0.113.0/24",
        ],
    );
    put(
        &upstream,
        "dns",
        5,
        "cidr",
        &["8.8.8.8", "0.0.0.0/1", "8000::/1"],
    );
    let dirs = [shipped.as_path(), state.as_path()];
    let r = refresh_from(&upstream, &["cloud", "dns"], &dirs, &state).await;
    assert_eq!(
        r.updated,
        ["cloud v2 -> v3 (2 of 6 entries left out: networks wider than /8 or /20)"]
    );
    assert_eq!(r.left_out, 2);
    let kept = r.kept.join("\n");
    assert!(
        kept.contains("dns: v5: 2 of 3 entries are networks wider than /8 (IPv4) or /20 (IPv6)"),
        "{kept}"
    );
    // The copy written is the one checked, upstream's other fields kept.
    let written: serde_json::Value =
        serde_json::from_slice(&std::fs::read(state.join("cloud/list.json")).unwrap()).unwrap();
    assert_eq!(written["list"].as_array().unwrap().len(), 4);
    assert_eq!(written["name"], "cloud");
    let names = ["cloud".to_string(), "dns".to_string()];
    let w = Warninglists::load(&dirs, &names, &[], &[]);
    let at = |v: &str| w.verdict(&Ioc::parse_any(v).unwrap());
    assert_eq!(at("192.0.2.1"), Verdict::Clear, "not exempt by 0.0.0.0/0");
    assert_eq!(at("2001:db8::1"), Verdict::Clear, "not exempt by ::/0");
    assert_eq!(at("203.0.113.9"), Verdict::Exempt("cloud"));
    assert_eq!(at("17.253.144.10"), Verdict::Exempt("cloud"));
    assert_eq!(at("2600:1401::1"), Verdict::Exempt("cloud"));
    assert_eq!(at("9.9.9.9"), Verdict::Exempt("dns"), "v4 still in use");
}

#[tokio::test]
async fn an_absurd_version_is_refused_and_one_already_taken_holds_nothing_back() {
    let root = tempfile::tempdir().unwrap();
    let (shipped, upstream, state) = (
        root.path().join("shipped"),
        root.path().join("upstream"),
        root.path().join("state"),
    );
    let cases: &[(&str, u64, u64, &str)] = &[
        (
            "max",
            3,
            u64::MAX,
            "version 18446744073709551615 is neither a counter nor a date",
        ),
        // Upstream's own typo (cisco_top1000, 2020).
        (
            "typo",
            20200922,
            202000923,
            "version 202000923 is neither a counter nor a date",
        ),
        (
            "far",
            20260811,
            20990101,
            "version 20990101 is dated 2099, more than 2 years ahead",
        ),
        ("hour", 20260811, 99123123, "version 99123123 is dated 2099"),
        (
            "switch",
            20260811,
            26081010,
            "an hour stamp (YYMMDDHH) where the copy in use is dated",
        ),
    ];
    for (name, shipped_v, upstream_v, _) in cases {
        put(&shipped, name, *shipped_v, "string", &["example.org"]);
        put(&upstream, name, *upstream_v, "string", &["example.org"]);
    }
    // Counters grow into dates, dates into later dates, hours into later hours.
    put(&shipped, "grown", 27, "string", &["example.org"]);
    put(&upstream, "grown", 20260811, "string", &["example.org"]);
    put(&shipped, "scan", 26070809, "string", &["example.org"]);
    put(&upstream, "scan", 26081401, "string", &["example.org"]);
    let mut names: Vec<&str> = cases.iter().map(|c| c.0).collect();
    names.extend(["grown", "scan"]);
    let dirs = [shipped.as_path(), state.as_path()];
    let r = refresh_from(&upstream, &names, &dirs, &state).await;
    assert_eq!(
        r.updated,
        ["grown v27 -> v20260811", "scan v26070809 -> v26081401"]
    );
    for (name, _, _, why) in cases {
        let line = r
            .kept
            .iter()
            .find(|k| k.starts_with(&format!("{name}: ")))
            .unwrap();
        assert!(line.contains(why), "{line}");
        assert!(!state.join(name).exists(), "{name}");
    }

    // A copy frozen before this check (u64::MAX in the state) gives way
    // to the next sane version.
    put(&state, "frozen", u64::MAX, "string", &["example.org"]);
    put(
        &upstream,
        "frozen",
        20260901,
        "string",
        &["example.org", "example.net"],
    );
    let r = refresh_from(&upstream, &["frozen"], &dirs, &state).await;
    assert_eq!(r.updated, ["frozen v18446744073709551615 -> v20260901"]);
    let w = Warninglists::load(&dirs, &["frozen".to_string()], &[], &[]);
    assert_eq!(w.lists()[0].version, 20260901);
}

#[test]
fn the_shipped_lists_pass_the_checks_a_refresh_makes() {
    assert_eq!(year_of(1_795_578_626), 2026);
    assert_eq!(year_of(1_767_225_599), 2025, "the last second of 2025");
    let dir =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("overlays/usr/share/homewarden/warninglists");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path().join("list.json");
        let Ok(body) = std::fs::read(&path) else {
            continue;
        };
        let taken = check("shipped", &body, None, FLOOR_YEAR).unwrap().unwrap();
        assert_eq!(taken.left_out, 0, "{}", path.display());
        seen += 1;
    }
    assert!(seen >= 19, "{seen}");
}

#[test]
fn many_networks_each_within_the_bound_cannot_exempt_everything_together() {
    // 256 /8s: each allowed alone, together every IPv4 address.
    let all: Vec<String> = (0..=255).map(|a| format!("\"{a}.0.0.0/8\"")).collect();
    let body = format!(
        r#"{{"name": "x", "version": 3, "type": "cidr", "list": [{}]}}"#,
        all.join(",")
    );
    let why = check("x", body.as_bytes(), None, FLOOR_YEAR).unwrap_err();
    assert!(why.contains("IPv4 addresses, more than"), "{why}");
    // 2^16 IPv6 /20s: the same for IPv6.
    let v6: Vec<String> = (0..4096u32)
        .map(|a| format!("\"{:x}::/20\"", a << 4))
        .collect();
    let body = format!(
        r#"{{"name": "x", "version": 3, "type": "cidr", "list": [{}]}}"#,
        v6.join(",")
    );
    let why = check("x", body.as_bytes(), None, FLOOR_YEAR).unwrap_err();
    assert!(why.contains("IPv6 addresses"), "{why}");
    // Four /8s are fine.
    let few = r#"{"name": "x", "version": 3, "type": "cidr", "list": ["10.0.0.0/8", "17.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"]}"#;
    assert!(check("x", few.as_bytes(), None, FLOOR_YEAR)
        .unwrap()
        .is_some());
}
