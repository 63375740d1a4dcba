use super::*;
use crate::intel::ioc::Ioc;
use crate::intel::set::{Allowlist, ExpandLimits, Guard, SourceSet};

fn eff(values: &[&str]) -> Effective {
    let mut s = SourceSet::new();
    for v in values {
        s.push(Ioc::parse_any(v).unwrap(), None, None);
    }
    Effective::build(
        [&s],
        Guard::new(&Allowlist::default(), ExpandLimits::default()),
    )
    .0
}

fn opts(mode: Mode, action: Action) -> Options {
    Options {
        mode,
        action,
        match_subdomains: true,
        sid_base: 1_666_000,
        flow_bypass: false,
        dns_bypass: crate::config::DnsBypass::Block,
        dns_bypass_allow: Vec::new(),
        dns_trusted: Vec::new(),
    }
}

#[test]
fn shadow_mode_observes_in_datasets_of_its_own() {
    let e = eff(&["203.0.113.1", "evil.example"]);
    let sh = eff(&["203.0.113.2", "new.example"]);
    let r = render(&e, Some(&sh), &[], &opts(Mode::Ips, Action::Drop));
    let shadow_rules: Vec<&str> = r
        .rules
        .lines()
        .filter(|l| l.contains("hw-shadow-"))
        .collect();
    assert_eq!(shadow_rules.len(), 4 + 4 * 6, "{}", r.rules);
    assert!(
        shadow_rules.iter().all(|l| l.starts_with("alert ")),
        "{}",
        r.rules
    );
    assert!(r
        .rules
        .lines()
        .any(|l| l.starts_with("drop ") && l.contains("hw-ipv4")));
    let mut sids: Vec<&str> = r
        .rules
        .lines()
        .filter_map(|l| l.split("sid:").nth(1))
        .collect();
    let n = sids.len();
    sids.sort();
    sids.dedup();
    assert_eq!(sids.len(), n, "sids must be unique");
    let names: Vec<&str> = r.lists.iter().map(|l| l.name).collect();
    for n in ["hw-shadow-ipv4", "hw-shadow-ipv6", "hw-shadow-domain"] {
        assert!(names.contains(&n), "{names:?}");
    }
    let shadow4 = r.lists.iter().find(|l| l.name == "hw-shadow-ipv4").unwrap();
    assert_eq!(shadow4.values.line(0), "203.0.113.2");
    // Without shadow mode nothing of it is rendered.
    let plain = render(&e, None, &[], &opts(Mode::Ips, Action::Drop));
    assert!(!plain.rules.contains("shadow"));
}

#[test]
fn one_rule_per_kind_whatever_the_size() {
    let many: Vec<String> = (0..5000)
        .map(|i| format!("203.0.{}.{}", i / 256, i % 256))
        .collect();
    let refs: Vec<&str> = many.iter().map(String::as_str).collect();
    let (e_small, e_big) = (eff(&["203.0.113.1"]), eff(&refs));
    let small = render(&e_small, None, &[], &opts(Mode::Ips, Action::Drop));
    let big = render(&e_big, None, &[], &opts(Mode::Ips, Action::Drop));
    assert_eq!(small.rules, big.rules);
    assert_eq!(big.lists[0].values.len(), 5000);
}

#[test]
fn only_a_big_set_gets_a_bigger_hash() {
    let e = Effective {
        ipv4: (0..=BIG_SET as u32).map(Ipv4Addr::from).collect(),
        domains: vec![Domain::parse("evil.example").unwrap()],
        ..Effective::default()
    };
    let r = render(&e, None, &[], &opts(Mode::Ips, Action::Drop));
    let sized: Vec<&str> = r
        .rules
        .lines()
        .filter(|l| l.contains(&format!(",hashsize {BIG_HASH};")))
        .collect();
    // ip.dst and ip.src on hw-ipv4, nothing else.
    assert_eq!(sized.len(), 2, "{}", r.rules);
    assert!(sized
        .iter()
        .all(|l| l.contains("load hw-ipv4.lst,hashsize")));
    let small = Effective {
        ipv4: e.ipv4[..BIG_SET].to_vec(),
        ..e.clone()
    };
    let r = render(&small, None, &[], &opts(Mode::Ips, Action::Drop));
    assert!(!r.rules.contains("hashsize"));
}

#[test]
fn action_follows_mode() {
    let e = eff(&["evil.example"]);
    let count = |r: &Rendered, a: &str| {
        r.rules
            .lines()
            .filter(|l| l.starts_with(&format!("{a} ")))
            .count()
    };
    let ips = render(&e, None, &[], &opts(Mode::Ips, Action::Drop));
    let rej = render(&e, None, &[], &opts(Mode::Ips, Action::Reject));
    let ids = render(&e, None, &[], &opts(Mode::Ids, Action::Reject));
    let rules = ips.rules.lines().filter(|l| !l.starts_with('#')).count();
    // DNS over TLS is refused (a reset, not a silent drop) in IPS mode
    // whatever the IoC rules' action: clients fall back without waiting;
    // DNS over QUIC is dropped.
    assert_eq!(count(&ips, "drop"), rules - 1);
    assert_eq!(count(&ips, "reject"), 1);
    assert_eq!(count(&rej, "reject"), rules - 1);
    assert_eq!(count(&ids, "alert"), rules);
    // 4 IP rules, 4 protocols (DNS, TLS, HTTP, QUIC) × (exact + 5 suffix
    // depths), DNS over TLS and over QUIC.
    assert_eq!(rules, 4 + 4 * 6 + 2);
    assert!(
        ips.rules.lines().any(|l| l.starts_with("drop quic any any")
            && l.contains("quic.sni; to_lowercase; dataset:isset,hw-domain")),
        "{}",
        ips.rules
    );
}

#[test]
fn sids_are_unique_and_stable() {
    let allow = [Domain::parse("good.example").unwrap()];
    let e = eff(&["evil.example", "d41d8cd98f00b204e9800998ecf8427e"]);
    let r = render(&e, None, &allow, &opts(Mode::Ips, Action::Drop));
    let sids: Vec<&str> = r
        .rules
        .lines()
        .filter_map(|l| l.split("sid:").nth(1))
        .collect();
    let unique: std::collections::HashSet<_> = sids.iter().collect();
    assert_eq!(sids.len(), unique.len());
    assert!(r.rules.contains("pass dns any any -> any any"));
    assert!(r.rules.contains("filemd5:hw-md5.lst;"));
    assert!(!r.rules.contains("filesha256"));
}

#[test]
fn domains_are_base64_and_sorted() {
    let e = eff(&["b.example", "A.example"]);
    let r = render(&e, None, &[], &opts(Mode::Ips, Action::Drop));
    let d = r.lists.iter().find(|l| l.name == "hw-domain").unwrap();
    let lines: Vec<String> = (0..d.values.len()).map(|i| d.values.line(i)).collect();
    assert_eq!(lines, [b64("a.example"), b64("b.example")]);
    assert_eq!(b64("a.example"), "YS5leGFtcGxl");
}

#[test]
fn suffix_transform_captures_the_parent() {
    assert_eq!(
        suffix_transform(2),
        r#"pcrexform:"^(?:.+?\.(?=[^.]+(?:\.[^.]+){1}$)|.*)(.*)$";"#
    );
}

#[test]
fn blocks_name_follows_the_rules() {
    let d = |s: &str| Domain::parse(s).unwrap();
    let mut listed = vec![d("evil.example"), d("a.b.c.d.e.f.g.test")];
    listed.sort();
    let allowed = [d("ok.evil.example")];
    let blocks = |n: &str, sub: bool| blocks_name(&listed, &allowed, &d(n), sub);
    assert!(blocks("evil.example", false));
    assert!(blocks("x.y.evil.example", true));
    assert!(!blocks("x.y.evil.example", false));
    assert!(!blocks("ok.evil.example", true) && !blocks("a.ok.evil.example", true));
    assert!(!blocks("notevil.example", true));
    // Suffix rules stop at 6 labels: deeper listings match exactly only.
    assert!(!blocks("x.a.b.c.d.e.f.g.test", true));
    assert!(blocks("a.b.c.d.e.f.g.test", true));
}

#[test]
fn a_name_under_a_listed_parent_is_left_to_the_parent() {
    let mut names: Vec<Domain> = [
        "evil.example",
        "c2.evil.example",
        "a.b.c.d.e.evil.example",
        "deep.a.b.c.d.e.f.example",
        "a.b.c.d.e.f.example",
        "other.example",
    ]
    .iter()
    .map(|d| Domain::parse(d).unwrap())
    .collect();
    names.sort();
    let kept = |covered: &[Domain], sub: bool| -> Vec<String> {
        enforced_names(&names, covered, sub)
            .map(|d| d.as_str().to_string())
            .collect()
    };
    // `a.b.c.d.e.f.example` has 7 labels: beyond the suffix rules, so it
    // only catches itself and `deep.…` stays.
    assert_eq!(
        kept(&[], true),
        [
            "a.b.c.d.e.f.example",
            "deep.a.b.c.d.e.f.example",
            "evil.example",
            "other.example"
        ]
    );
    assert_eq!(kept(&[], false).len(), names.len());
    // The shadow set: what the blocklist catches is not observed twice.
    let blocked = [Domain::parse("other.example").unwrap()];
    assert_eq!(
        kept(&blocked, true),
        [
            "a.b.c.d.e.f.example",
            "deep.a.b.c.d.e.f.example",
            "evil.example"
        ]
    );
    assert_eq!(
        parents("y.x.a.b.c.d.e.f").collect::<Vec<_>>(),
        ["a.b.c.d.e.f", "b.c.d.e.f", "c.d.e.f", "d.e.f", "e.f"]
    );
}

#[test]
fn bypass_rules_only_when_asked_and_http_only_without_file_hashes() {
    let mut o = opts(Mode::Ips, Action::Drop);
    let e = eff(&["evil.example"]);
    assert!(!render(&e, None, &[], &o).rules.contains("bypass"));
    o.flow_bypass = true;
    let r = render(&e, None, &[], &o).rules;
    let bypass: Vec<&str> = r.lines().filter(|l| l.contains(" bypass;")).collect();
    assert_eq!(bypass.len(), 5, "{r}");
    assert!(bypass.iter().any(|l| l.starts_with("alert quic")));
    assert!(bypass
        .iter()
        .all(|l| l.starts_with("alert ") && l.contains("noalert;")));
    assert!(bypass.iter().any(|l| l.starts_with("alert http")));
    // A file hash is read from the response body: HTTP stays in the queue.
    let files = eff(&["evil.example", "d41d8cd98f00b204e9800998ecf8427e"]);
    let r = render(&files, None, &[], &o).rules;
    assert!(r.contains("filemd5:"));
    assert!(!r
        .lines()
        .any(|l| l.starts_with("alert http") && l.contains(" bypass;")));
    assert_eq!(r.lines().filter(|l| l.contains(" bypass;")).count(), 4);
}

#[test]
fn no_subdomain_rules_when_disabled() {
    let mut o = opts(Mode::Ips, Action::Drop);
    o.match_subdomains = false;
    let e = eff(&["evil.example"]);
    let r = render(&e, None, &[], &o);
    assert!(!r.rules.contains("pcrexform"));
}
