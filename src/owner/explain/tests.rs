use super::*;
use crate::intel::set::EventInfo;
use std::path::Path;

fn cfg(yaml: &str) -> Config {
    Config::parse(yaml, Path::new("/etc/homewarden/homewarden.yaml")).unwrap()
}

fn misp_set() -> SourceSet {
    let mut s = SourceSet::new();
    let ev = s.event(EventInfo {
        uuid: "8c3e5c1e-0000-4000-8000-000000000001".into(),
        id: Some(42),
        threat_level: Some(1),
        info: "Camera botnet C2".into(),
        tags: vec!["tlp:amber".into()],
        seen: 1_795_000_000,
        ..Default::default()
    });
    s.push(
        Ioc::parse_any("203.0.113.66").unwrap(),
        Some(ev),
        Some("attr-1"),
    );
    s.push(
        Ioc::parse_any("evil.example").unwrap(),
        Some(ev),
        Some("attr-2"),
    );
    s.push(
        Ioc::parse_any("198.51.100.0/16").unwrap(),
        Some(ev),
        Some("attr-3"),
    );
    s
}

const CONFIG: &str = "sources:\n  - { name: misp, type: misp, url: \"https://misp.home.lan/\" }\n";

#[test]
fn a_blocked_value_is_traced_to_its_misp_event_with_a_link() {
    let c = cfg(CONFIG);
    let set = misp_set();
    let views = [SourceView {
        cfg: &c.sources[0],
        set: &set,
    }];
    let x = explain(
        "http://x.evil.example/login",
        &views,
        &c,
        &LocalAllowlist::default(),
        Warninglists::none(),
        &Shadow::default(),
        0,
    )
    .unwrap();
    assert_eq!(x.value, "x.evil.example");
    assert_eq!(x.verdict, Verdict::Blocked);
    let l = &x.listings[0];
    assert_eq!(l.provenance.indicator, "evil.example");
    assert_eq!(l.provenance.attribute_uuid.as_deref(), Some("attr-2"));
    assert_eq!(l.provenance.tags, ["tlp:amber"]);
    assert_eq!(l.provenance.since, Some(1_795_000_000));
    assert_eq!(
        l.link.as_deref(),
        Some("https://misp.home.lan/events/view/42")
    );
    let text = render(&x);
    assert!(text.starts_with("x.evil.example: BLOCKED\n"), "{text}");
    assert!(
        text.contains("threat level high; tags tlp:amber; held since 2026-"),
        "{text}"
    );
    assert!(text.contains("warninglists"), "{text}");
    let json = serde_json::to_value(&x).unwrap();
    assert_eq!(json["verdict"], "blocked");
    assert_eq!(json["listings"][0]["event_id"], 42);
}

#[test]
fn allowlists_and_limits_say_why_a_listed_value_passes() {
    let c = cfg(&format!("{CONFIG}network: {{ gateway: [203.0.113.66] }}\n"));
    let set = misp_set();
    let views = [SourceView {
        cfg: &c.sources[0],
        set: &set,
    }];
    let none = LocalAllowlist::default();
    let x = explain(
        "203.0.113.66",
        &views,
        &c,
        &none,
        Warninglists::none(),
        &Shadow::default(),
        0,
    )
    .unwrap();
    assert_eq!(x.verdict, Verdict::Overridden);
    assert!(
        x.allowed_by[0].contains("network.gateway"),
        "{:?}",
        x.allowed_by
    );
    // The /16 is wider than the datasets take (/20): enforced whole.
    let x = explain(
        "198.51.7.9",
        &views,
        &c,
        &none,
        Warninglists::none(),
        &Shadow::default(),
        0,
    )
    .unwrap();
    assert_eq!(x.verdict, Verdict::Blocked);
    // A /7 is a continent's worth of addresses: never enforced.
    let mut wide = SourceSet::new();
    wide.push(Ioc::parse_any("6.0.0.0/7").unwrap(), None, None);
    let wide_view = [SourceView {
        cfg: &c.sources[0],
        set: &wide,
    }];
    let x = explain(
        "6.1.2.3",
        &wide_view,
        &c,
        &none,
        Warninglists::none(),
        &Shadow::default(),
        0,
    )
    .unwrap();
    assert_eq!(x.verdict, Verdict::Overridden);
    assert!(
        x.listings[0]
            .not_enforced
            .as_deref()
            .unwrap()
            .contains("wider than /8"),
        "{:?}",
        x.listings
    );
    // The owner's allowance of the parent domain covers the subdomain.
    let dir = tempfile::tempdir().unwrap();
    let mut local = LocalAllowlist::load(dir.path()).unwrap();
    local
        .add(
            "evil.example",
            "alice",
            1_795_000_100,
            None,
            Some("false positive"),
            false,
        )
        .unwrap();
    let x = explain(
        "a.evil.example",
        &views,
        &c,
        &local,
        Warninglists::none(),
        &Shadow::default(),
        0,
    )
    .unwrap();
    assert_eq!(x.verdict, Verdict::Overridden);
    assert!(
        x.allowed_by[0].starts_with("allowed by alice on 2026-"),
        "{:?}",
        x.allowed_by
    );
    assert!(
        x.allowed_by[0].ends_with(": false positive"),
        "{:?}",
        x.allowed_by
    );
    let x = explain(
        "192.168.1.20",
        &views,
        &c,
        &none,
        Warninglists::none(),
        &Shadow::default(),
        0,
    )
    .unwrap();
    assert_eq!(x.verdict, Verdict::NotListed);
    assert!(
        x.allowed_by[0].contains("192.168.0.0/16"),
        "{:?}",
        x.allowed_by
    );
    assert!(explain(
        "not a value;",
        &views,
        &c,
        &none,
        Warninglists::none(),
        &Shadow::default(),
        0
    )
    .is_err());
}

#[test]
fn a_warninglist_says_why_a_listed_value_passes_and_how_to_block_it() {
    let dir = tempfile::tempdir().unwrap();
    for (name, kind, entries) in [
        ("top", "string", serde_json::json!(["evil.example"])),
        ("cloud", "cidr", serde_json::json!(["203.0.113.0/24"])),
    ] {
        std::fs::create_dir_all(dir.path().join(name)).unwrap();
        let body =
            serde_json::json!({"name": format!("The {name} list"), "type": kind, "list": entries});
        std::fs::write(dir.path().join(name).join("list.json"), body.to_string()).unwrap();
    }
    let yaml = format!(
        "{CONFIG}warninglists: {{ dir: {}, exempt: [top], warn: [cloud] }}\n",
        dir.path().display()
    );
    let c = cfg(&yaml);
    let lists = c.warninglists.load(&c.state_dir);
    assert!(lists.problems.is_empty(), "{:?}", lists.problems);
    let set = misp_set();
    let views = [SourceView {
        cfg: &c.sources[0],
        set: &set,
    }];
    let none = LocalAllowlist::default();
    let x = explain(
        "a.evil.example",
        &views,
        &c,
        &none,
        &lists,
        &Shadow::default(),
        0,
    )
    .unwrap();
    assert_eq!(x.verdict, Verdict::Overridden);
    let why = x.listings[0].not_enforced.as_deref().unwrap();
    assert!(
        why.starts_with("on warninglist top (The top list): not blocked; to block it anyway add evil.example to warninglists.enforce_anyway"),
        "{why}"
    );
    let x = explain(
        "203.0.113.66",
        &views,
        &c,
        &none,
        &lists,
        &Shadow::default(),
        0,
    )
    .unwrap();
    assert_eq!(x.verdict, Verdict::Blocked);
    assert!(
        x.notes
            .iter()
            .any(|n| n.contains("on warninglist cloud (The cloud list): blocked")),
        "{:?}",
        x.notes
    );
    let yaml = format!(
        "{CONFIG}warninglists: {{ dir: {}, exempt: [top], warn: [cloud], enforce_anyway: [evil.example] }}\n",
        dir.path().display()
    );
    let c = cfg(&yaml);
    let lists = c.warninglists.load(&c.state_dir);
    let x = explain(
        "evil.example",
        &views,
        &c,
        &none,
        &lists,
        &Shadow::default(),
        0,
    )
    .unwrap();
    assert_eq!(x.verdict, Verdict::Blocked);
    assert!(
        x.notes
            .iter()
            .any(|n| n.contains("on warninglist top, enforced anyway")),
        "{:?}",
        x.notes
    );
}
