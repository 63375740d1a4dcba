use super::*;
use crate::intel::ioc::Domain;
use crate::intel::warninglist::Warninglists;

fn set(values: &[&str]) -> SourceSet {
    let mut s = SourceSet::new();
    for v in values {
        s.push(Ioc::parse_any(v).unwrap(), None, None);
    }
    s
}

fn allow(nets: &[&str], domains: &[&str], builtin: bool) -> Allowlist {
    Allowlist::new(
        nets.iter().map(|n| n.parse().unwrap()).collect(),
        domains.iter().map(|d| Domain::parse(d).unwrap()).collect(),
        builtin,
    )
}

#[test]
fn merges_dedups_and_applies_allowlist() {
    let a = set(&[
        "203.0.113.66",
        "192.168.1.1",
        "evil.example",
        "good.example",
    ]);
    let b = set(&[
        "203.0.113.66",
        "2001:db8::1",
        "cdn.good.example",
        "198.51.100.0/30",
    ]);
    let al = allow(&["198.51.100.2/32"], &["good.example"], true);
    let (eff, dropped) = Effective::build([&a, &b], Guard::new(&al, ExpandLimits::default()));
    let v4: Vec<String> = eff.ipv4.iter().map(ToString::to_string).collect();
    assert_eq!(
        v4,
        [
            "198.51.100.0",
            "198.51.100.1",
            "198.51.100.3",
            "203.0.113.66"
        ]
    );
    assert_eq!(eff.ipv6.len(), 1);
    assert_eq!(
        eff.domains.iter().map(Domain::as_str).collect::<Vec<_>>(),
        ["evil.example"]
    );
    // 192.168.1.1 (builtin), good.example, cdn.good.example, the /30 with a hole.
    assert_eq!(dropped.allowlisted, 4);
}

#[test]
fn networks_too_wide_to_expand_are_kept_whole_and_only_the_widest_refused() {
    let s = set(&[
        "203.0.96.0/19",
        "203.0.113.0/24",
        "2001:db8::/32",
        "6.0.0.0/7",
        "2000::/8",
    ]);
    let (eff, dropped) = Effective::build(
        [&s],
        Guard::new(&allow(&[], &[], false), ExpandLimits::default()),
    );
    assert_eq!(eff.ipv4.len(), 256);
    let wide: Vec<String> = eff.wide.iter().map(|w| w.net.to_string()).collect();
    assert_eq!(wide, ["203.0.96.0/19", "2001:db8::/32"]);
    assert_eq!(dropped.too_wide, 2);
    assert!(eff.contains_ip("203.0.127.255".parse().unwrap()));
    assert!(eff.contains_ip("2001:db8:ffff::1".parse().unwrap()));
    assert!(!eff.contains_ip("203.0.128.0".parse().unwrap()));
}

#[test]
fn a_wide_network_never_blocks_what_is_allowed_or_exempt_inside_it() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("dns")).unwrap();
    std::fs::write(
        dir.path().join("dns/list.json"),
        r#"{"name": "resolvers", "type": "cidr", "list": ["100.1.2.0/23", "198.51.0.0/16"]}"#,
    )
    .unwrap();
    let lists = Warninglists::load(&[dir.path()], &["dns".to_string()], &[], &[]);
    let s = set(&["100.0.0.0/8", "10.0.0.0/8", "198.51.0.0/16", "192.0.0.0/12"]);
    let al = allow(&["192.0.2.1/32"], &[], true);
    let guard = Guard {
        allow: &al,
        limits: ExpandLimits::default(),
        lists: &lists,
    };
    let (eff, dropped) = Effective::build([&s], guard);
    let wide: Vec<(String, Vec<String>)> = eff
        .wide
        .iter()
        .map(|w| {
            (
                w.net.to_string(),
                w.except.iter().map(ToString::to_string).collect(),
            )
        })
        .collect();
    assert_eq!(
        wide,
        [
            (
                "100.0.0.0/8".to_string(),
                vec!["100.1.2.0/23".to_string(), "100.64.0.0/10".to_string()]
            ),
            ("192.0.0.0/12".to_string(), vec!["192.0.2.1/32".to_string()]),
        ]
    );
    // 10/8 is the LAN's (builtin), 198.51/16 all exempt; 100/8 and the /12
    // hold allowed parts.
    assert_eq!(dropped.warninglisted.get("dns"), Some(&1));
    assert_eq!(dropped.allowlisted, 3);
    assert!(eff.contains_ip("100.200.0.1".parse().unwrap()));
    assert!(!eff.contains_ip("100.64.0.1".parse().unwrap()));
    assert!(!eff.contains_ip("100.1.3.9".parse().unwrap()));
    assert!(!eff.contains_ip("192.0.2.1".parse().unwrap()));
}

#[test]
fn builtin_allowlist_can_be_switched_off() {
    let s = set(&["10.1.2.3"]);
    let (eff, _) = Effective::build(
        [&s],
        Guard::new(&allow(&[], &[], false), ExpandLimits::default()),
    );
    assert_eq!(eff.ipv4.len(), 1);
    let (eff, _) = Effective::build(
        [&s],
        Guard::new(&allow(&[], &[], true), ExpandLimits::default()),
    );
    assert!(eff.is_empty());
}

#[test]
fn removing_attributes_and_events_keeps_the_rest() {
    let mut s = SourceSet::new();
    let e1 = s.event(EventInfo {
        uuid: "e1".into(),
        ..Default::default()
    });
    let e2 = s.event(EventInfo {
        uuid: "e2".into(),
        threat_level: Some(1),
        ..Default::default()
    });
    for (v, ev, attr) in [
        ("203.0.113.1", e1, "a1"),
        ("203.0.113.2", e2, "a2"),
        ("203.0.113.3", e2, "a3"),
    ] {
        s.push(Ioc::parse_any(v).unwrap(), Some(ev), Some(attr));
    }
    s.remove_attributes(&HashSet::from(["a2".to_string()]));
    assert_eq!(s.len(), 2);
    s.remove_events(&HashSet::from(["e1".to_string()]));
    assert_eq!(s.len(), 1);
    assert_eq!(s.attributes.len(), 1);
    assert_eq!(s.events().len(), 1);
    let p = s.provenance("misp", s.entries().next().unwrap());
    assert_eq!(p.event_uuid.as_deref(), Some("e2"));
    assert_eq!(p.attribute_uuid.as_deref(), Some("a3"));
    assert_eq!(p.threat_level, Some(1));
}

#[test]
fn event_titles_and_tags_lose_escapes_and_overrides_and_are_clipped() {
    let mut s = SourceSet::new();
    let hostile = "\x1b[31mRED\x1b]0;pwned\x07 C2\nnext line \u{202E}exe.gnp\u{202C} \u{9b}2J";
    let i = s.event(EventInfo {
        uuid: "e".into(),
        info: format!("{hostile}{}", "x".repeat(1000)),
        tags: vec!["tlp:\x1b[5mred".into(), "\u{2066}".into()],
        ..Default::default()
    });
    let ev = &s.events()[i as usize];
    assert!(
        ev.info
            .starts_with("[31mRED]0;pwned C2 next line exe.gnp 2J"),
        "{:?}",
        ev.info
    );
    assert_eq!(ev.info.chars().count(), 256);
    assert!(!ev.info.chars().any(|c| c.is_control()));
    assert_eq!(ev.tags, ["tlp:[5mred"]);
}

#[test]
fn updating_an_event_keeps_a_known_threat_level() {
    let mut s = SourceSet::new();
    s.event(EventInfo {
        uuid: "e".into(),
        threat_level: Some(1),
        ..Default::default()
    });
    s.event(EventInfo {
        uuid: "e".into(),
        info: "renamed".into(),
        ..Default::default()
    });
    let ev = s.event_by_uuid("e").unwrap();
    assert_eq!((ev.threat_level, ev.info.as_str()), (Some(1), "renamed"));
}

#[test]
fn origins_are_kept_only_once_an_entry_has_one() {
    let mut s = SourceSet::new();
    s.push(Ioc::parse_any("203.0.113.1").unwrap(), None, None);
    s.push(Ioc::parse_any("evil.test").unwrap(), None, None);
    assert!(
        s.origins.is_empty(),
        "a plain list pays nothing for provenance"
    );
    let ev = s.event(EventInfo {
        uuid: "e1".into(),
        ..Default::default()
    });
    s.push(Ioc::parse_any("203.0.113.2").unwrap(), Some(ev), Some("a1"));
    s.push(Ioc::parse_any("203.0.113.3").unwrap(), None, None);
    s.index();
    let seen: Vec<(String, Option<u32>, Option<&str>)> = s
        .entries()
        .map(|e| (e.ioc.to_string(), e.event(), s.attribute_of(e)))
        .collect();
    assert_eq!(
        seen,
        [
            ("203.0.113.1".to_string(), None, None),
            ("203.0.113.2".to_string(), Some(ev), Some("a1")),
            ("203.0.113.3".to_string(), None, None),
            ("evil.test".to_string(), None, None),
        ]
    );
}
