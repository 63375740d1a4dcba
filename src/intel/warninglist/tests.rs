//! Matching rules on small lists (the shipped lists with the config's
//! defaults are tested beside the config).

use super::*;

fn write(dir: &Path, name: &str, kind: &str, entries: &[&str]) {
    std::fs::create_dir_all(dir.join(name)).unwrap();
    let body = serde_json::json!({
        "name": format!("List {name}"), "version": 3, "type": kind,
        "description": "test", "matching_attributes": ["domain"], "list": entries,
    });
    std::fs::write(dir.join(name).join("list.json"), body.to_string()).unwrap();
}

fn ioc(v: &str) -> Ioc {
    Ioc::parse_any(v).unwrap()
}

fn names(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

#[test]
fn names_under_a_site_count_but_not_under_a_public_suffix() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "top",
        "string",
        &[
            "google.com",
            "blogspot.com",
            ".youtube.com",
            "-bad-.example",
            "https://x.example/",
        ],
    );
    write(
        dir.path(),
        "second-level-tlds",
        "string",
        &["blogspot.com", "co.uk"],
    );
    let w = Warninglists::load(&[dir.path()], &names(&["top"]), &[], &[]);
    assert!(w.problems.is_empty(), "{:?}", w.problems);
    assert_eq!(
        w.lists()[0].entries,
        3,
        "the hyphenated name and the URL are not values"
    );
    for on in [
        "google.com",
        "docs.google.com",
        "a.b.docs.google.com",
        "youtube.com",
        "m.youtube.com",
        "blogspot.com",
    ] {
        assert_eq!(w.verdict(&ioc(on)), Verdict::Exempt("top"), "{on}");
    }
    for off in [
        "evil-paypal.blogspot.com",
        "notgoogle.com",
        "google.com.evil.example",
        "evil.co.uk",
    ] {
        assert_eq!(w.verdict(&ioc(off)), Verdict::Clear, "{off}");
    }
}

#[test]
fn ranges_overlap_and_exempt_wins_over_warn() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "dns",
        "cidr",
        &["198.51.100.53", "2001:db8::53"],
    );
    write(
        dir.path(),
        "cloud",
        "cidr",
        &["198.51.100.0/24", "203.0.113.0/25", "2001:db8::/32"],
    );
    write(
        dir.path(),
        "edge",
        "cidr",
        &["203.0.113.64/26", "255.255.255.255", "0.0.0.0/0"],
    );
    let w = Warninglists::load(&[dir.path()], &names(&["dns"]), &names(&["cloud"]), &[]);
    assert_eq!(w.verdict(&ioc("198.51.100.53")), Verdict::Exempt("dns"));
    assert_eq!(w.verdict(&ioc("198.51.100.54")), Verdict::Warn("cloud"));
    assert_eq!(w.verdict(&ioc("2001:db8::53")), Verdict::Exempt("dns"));
    assert_eq!(w.verdict(&ioc("2001:db8::54")), Verdict::Warn("cloud"));
    assert_eq!(w.verdict(&ioc("192.0.2.1")), Verdict::Clear);
    assert_eq!(w.verdict(&ioc("198.51.100.48/28")), Verdict::Exempt("dns"));
    assert_eq!(
        w.verdict_ip("198.51.100.49".parse().unwrap()),
        Verdict::Warn("cloud")
    );

    // Nested, touching and top-of-space ranges partition cleanly.
    let w = Warninglists::load(&[dir.path()], &names(&["edge"]), &names(&["cloud"]), &[]);
    assert_eq!(w.verdict(&ioc("203.0.113.70")), Verdict::Exempt("edge"));
    assert_eq!(w.verdict(&ioc("255.255.255.255")), Verdict::Exempt("edge"));
    assert_eq!(w.verdict(&ioc("1.1.1.1")), Verdict::Exempt("edge"));
    let parts = partition(vec![
        (10u32, 20, 1),
        (15, 30, 2),
        (31, 40, 1),
        (u32::MAX - 1, u32::MAX, 2),
    ]);
    assert_eq!(
        parts,
        [
            (10, 14, 1),
            (15, 20, 3),
            (21, 30, 2),
            (31, 40, 1),
            (u32::MAX - 1, u32::MAX, 2)
        ]
    );
}

#[test]
fn hashes_the_owners_override_and_broken_lists() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "empty",
        "string",
        &["D41D8CD98F00B204E9800998ECF8427E"],
    );
    write(dir.path(), "top", "hostname", &["google.com"]);
    write(dir.path(), "re", "regex", &["/x/"]);
    std::fs::create_dir_all(dir.path().join("bad")).unwrap();
    std::fs::write(dir.path().join("bad/list.json"), "{ not json").unwrap();
    let anyway = [ioc("docs.google.com")];
    let w = Warninglists::load(
        &[dir.path()],
        &names(&["empty", "top", "re", "bad", "missing", "../etc"]),
        &[],
        &anyway,
    );
    assert_eq!(
        w.verdict(&ioc("d41d8cd98f00b204e9800998ecf8427e")),
        Verdict::Exempt("empty")
    );
    assert_eq!(
        w.verdict(&ioc("docs.google.com")),
        Verdict::Clear,
        "enforced anyway"
    );
    assert!(w.enforced_anyway(&ioc("docs.google.com")));
    assert_eq!(
        w.all_on(&ioc("docs.google.com")).len(),
        1,
        "explain still names the list"
    );
    assert_eq!(w.verdict(&ioc("mail.google.com")), Verdict::Exempt("top"));
    let problems = w.problems.join("\n");
    assert_eq!(w.problems.len(), 4, "{problems}");
    assert!(
        problems.contains("re: type \"regex\" is not supported"),
        "{problems}"
    );
    assert!(problems.contains("bad/list.json"), "{problems}");
    assert!(problems.contains("missing/list.json"), "{problems}");
    assert!(
        problems.contains("\"../etc\" is not a list name"),
        "{problems}"
    );
}
