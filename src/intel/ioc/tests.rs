//! Parsing each kind of value, and refusing the hostile and the ambiguous.

use super::*;

fn any(v: &str) -> Ioc {
    Ioc::parse_any(v).unwrap_or_else(|e| panic!("{v:?}: {e}"))
}

#[test]
fn parses_each_kind_of_plain_value() {
    assert_eq!(
        any(" 203.0.113.66 "),
        Ioc::Ipv4(Ipv4Addr::new(203, 0, 113, 66))
    );
    assert_eq!(
        any("2001:db8::1"),
        Ioc::Ipv6(Box::new("2001:db8::1".parse().unwrap()))
    );
    assert_eq!(
        any("::ffff:192.0.2.1"),
        Ioc::Ipv4(Ipv4Addr::new(192, 0, 2, 1))
    );
    assert_eq!(any("198.51.100.0/24").to_string(), "198.51.100.0/24");
    assert_eq!(any("198.51.100.7/24").to_string(), "198.51.100.0/24");
    assert_eq!(
        any("198.51.100.7/32"),
        Ioc::Ipv4(Ipv4Addr::new(198, 51, 100, 7))
    );
    assert_eq!(
        any("Evil.Example."),
        Ioc::Domain(Domain::parse("evil.example").unwrap())
    );
    assert_eq!(
        any("https://C2.Evil.Example:8443/x?y").to_string(),
        "c2.evil.example"
    );
    assert_eq!(any("http://[2001:db8::5]/").to_string(), "2001:db8::5");
    assert_eq!(any("D41D8CD98F00B204E9800998ECF8427E").kind(), Kind::Md5);
    assert_eq!(
        any("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855").to_string(),
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    );
}

#[test]
fn idna_names_become_punycode() {
    assert_eq!(any("bücher.example").to_string(), "xn--bcher-kva.example");
}

#[test]
fn parses_misp_types() {
    let p = |t: &str, v: &str| {
        Ioc::parse_misp(t, v)
            .unwrap()
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
    };
    assert_eq!(p("ip-dst", "203.0.113.5"), ["203.0.113.5"]);
    assert_eq!(p("ip-src", "203.0.113.0/25"), ["203.0.113.0/25"]);
    assert_eq!(p("ip-dst|port", "203.0.113.5|443"), ["203.0.113.5"]);
    assert_eq!(p("ip-dst|port", "[2001:db8::2]|443"), ["2001:db8::2"]);
    assert_eq!(
        p("domain|ip", "evil.example|203.0.113.9"),
        ["evil.example", "203.0.113.9"]
    );
    assert_eq!(p("hostname", "WWW.Evil.example"), ["www.evil.example"]);
    assert_eq!(p("url", "evil.example/dropper.sh"), ["evil.example"]);
    assert_eq!(
        p("filename|md5", "a.exe|d41d8cd98f00b204e9800998ecf8427e"),
        ["d41d8cd98f00b204e9800998ecf8427e"]
    );
    assert!(matches!(
        Ioc::parse_misp("email-src", "a@b.example"),
        Err(ParseError::Unsupported(_))
    ));
    assert!(matches!(
        Ioc::parse_misp("ip-dst", "evil.example"),
        Err(ParseError::BadIp(_))
    ));
}

#[test]
fn hostile_values_are_refused() {
    let hostile = [
        "",
        "   ",
        "evil.example\"; sid:1;",
        "evil.example;",
        "evil.example\nalert ip any any -> any any (sid:2;)",
        "evil\0.example",
        "203.0.113.1\n203.0.113.2",
        "-evil.example",
        "evil-.example",
        "ev il.example",
        "localhost",
        "1.2.3.999",
        "10.0.0.0/33",
        "dataset:isset,x",
        "pcre:\"/x/\"",
        "a.b.c.d.e.1234",
        "xn--.example",
        "☃",
        "ab..example",
        "g00000000000000000000000000000000",
    ];
    for v in hostile {
        assert!(Ioc::parse_any(v).is_err(), "accepted {v:?}");
    }
    let long = format!("{}.example", "a".repeat(64));
    assert!(Ioc::parse_any(&long).is_err());
    let overlong = "a.".repeat(2000);
    assert_eq!(Ioc::parse_any(&overlong), Err(ParseError::TooLong));
}

#[test]
fn covers_explains_a_hit() {
    let c = |ioc: &str, hit: &str| any(ioc).covers(&any(hit));
    assert!(c("203.0.113.0/24", "203.0.113.9"));
    assert!(!c("203.0.113.0/24", "203.0.114.9"));
    assert!(c("2001:db8::/64", "2001:db8::9"));
    assert!(c("evil.example", "a.b.evil.example"));
    assert!(!c("a.evil.example", "evil.example"));
    assert!(c("203.0.113.9", "203.0.113.9"));
    assert!(!c("203.0.113.9", "evil.example"));
}

#[test]
fn subdomain_relation() {
    let d = |s: &str| Domain::parse(s).unwrap();
    assert!(d("a.evil.example").is_within(&d("evil.example")));
    assert!(d("evil.example").is_within(&d("evil.example")));
    assert!(!d("notevil.example").is_within(&d("evil.example")));
    assert!(!d("evil.example").is_within(&d("a.evil.example")));
    assert_eq!(d("a.b.example").labels(), 3);
}

#[test]
fn error_messages_do_not_echo_control_characters() {
    let e = Ioc::parse_misp("ip-dst", "x\u{7f}y").unwrap_err();
    assert_eq!(e, ParseError::Control);
    let e = Ioc::parse_misp("domain", &"é.".repeat(100)).unwrap_err();
    assert!(e.to_string().len() < 300);
}

/// The set of a million-IoC list must fit a Pi: keep the per-entry cost where it is.
#[test]
fn ioc_stays_two_words() {
    assert_eq!(std::mem::size_of::<Ioc>(), 16);
}

#[test]
fn an_ipv4_address_is_taken_only_in_its_canonical_form() {
    let refused = |r: Result<Vec<Ioc>, ParseError>| match r {
        Err(e) => e.label(),
        Ok(v) => panic!("accepted as {v:?}"),
    };
    let one = |v: &str| Ioc::parse_any(v).map(|i| vec![i]);
    // The CIRCL case: a URL parser reads this as 107.183.0.86.
    for v in [
        "http://107.183.86/",
        "107.183.86",
        "0x7f.0.0.1",
        "010.0.0.1",
        "3232235777",
        "http://3232235777/x",
        "https://0x7f.1/",
        "http://010.0.0.1:8080/",
        "evil.example.123",
        "107.183.86/24",
    ] {
        assert_eq!(refused(one(v)), "noncanonical_ip", "{v}");
    }
    for (t, v) in [
        ("url", "http://107.183.86/"),
        ("url", "107.183.86/path"),
        ("ip-dst", "107.183.86"),
        ("ip-dst", "0x6b.0xb7.0x56.1"),
        ("domain", "1.2.3"),
        ("ip-dst|port", "107.183.86|443"),
    ] {
        assert_eq!(refused(Ioc::parse_misp(t, v)), "noncanonical_ip", "{t} {v}");
    }
    // Canonical forms, whatever path they come by.
    assert_eq!(any("http://198.51.100.7./x").to_string(), "198.51.100.7");
    assert_eq!(
        any("https://user@198.51.100.7:8443/x").to_string(),
        "198.51.100.7"
    );
    assert_eq!(any("http://[2001:DB8::1]/").to_string(), "2001:db8::1");
    assert_eq!(
        Ioc::parse_misp("url", "198.51.100.7/login").unwrap()[0].to_string(),
        "198.51.100.7"
    );
}

#[test]
fn refusal_reasons_say_what_was_wrong() {
    let label = |v: &str| Ioc::parse_any(v).unwrap_err().label();
    assert_eq!(label("evil.example/login.php"), "url_without_scheme");
    assert_eq!(label("198.51.100.0/33"), "bad_ip");
    assert_eq!(label("not a value/x"), "bad_ip");
    // The type decides first: a multi-line YARA rule is an unsupported type.
    let yara = "rule evil {\n strings: $a = \"x\"\n condition: $a\n}";
    assert_eq!(
        Ioc::parse_misp("yara", yara).unwrap_err().label(),
        "unsupported_type"
    );
    // Every type on the enforced list has a parser.
    for t in ENFORCED_MISP_TYPES {
        assert!(
            !matches!(Ioc::parse_misp(t, "x"), Err(ParseError::Unsupported(_))),
            "{t}"
        );
    }
}
