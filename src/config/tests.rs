//! The config's parsing and validation, from YAML text to typed settings or one-line errors.

use super::*;

fn parse(yaml: &str) -> Result<Config, ConfigError> {
    Config::parse(yaml, Path::new("/etc/homewarden/homewarden.yaml"))
}

#[test]
fn empty_file_gives_working_defaults() {
    let c = parse("").unwrap();
    assert_eq!(c.enforcement.mode, Mode::Ips);
    assert_eq!(c.enforcement.action, Action::Drop);
    assert_eq!(c.enforcement.fail, FailMode::Open);
    assert_eq!(
        c.suricata.rules_dir,
        PathBuf::from("/var/lib/homewarden/suricata")
    );
    assert!(c.sources.is_empty());
}

#[test]
fn a_config_whose_aliases_expand_past_the_budget_is_refused_before_it_is_built() {
    let long = "d".repeat(60_000);
    let bomb = format!(
        "allowlist:\n  domains: &x [\"{long}.example\"]\nx: [{}]\n",
        vec!["*x"; 5_000].join(",")
    );
    let e = parse(&bomb).unwrap_err().to_string();
    assert_eq!(
        e,
        format!("/etc/homewarden/homewarden.yaml: -: {}", expansion::TOO_BIG)
    );
}

#[test]
fn a_config_the_expansion_walk_cannot_finish_is_refused_in_one_line() {
    let e = parse("sources: *nowhere\n").unwrap_err().to_string();
    assert!(
        e.starts_with("/etc/homewarden/homewarden.yaml: -: unknown anchor"),
        "{e}"
    );
    assert!(!e.contains('\n'), "{e}");
    // A scalar the walk once stopped at (and let through) no longer hides
    // the aliases after it.
    let long = "d".repeat(60_000);
    let bomb = format!(
        "mail: {{ user: 99999999999999999999999 }}\nallowlist:\n  domains: &x [\"{long}.example\"]\nx: [{}]\n",
        vec!["*x"; 5_000].join(",")
    );
    assert_eq!(
        parse(&bomb).unwrap_err().to_string(),
        format!("/etc/homewarden/homewarden.yaml: -: {}", expansion::TOO_BIG)
    );
}

#[test]
fn prefix_limits_that_would_expand_a_network_into_millions_are_refused() {
    let e = parse("enforcement: { max_ipv6_prefix: 64 }")
        .unwrap_err()
        .to_string();
    assert!(e.starts_with("/etc/homewarden/homewarden.yaml: enforcement.max_ipv6_prefix: 64 is not a prefix length of 112-128"), "{e}");
    let e = parse("enforcement: { max_ipv4_prefix: 8 }")
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("enforcement.max_ipv4_prefix: 8 is not a prefix length of 16-32"),
        "{e}"
    );
    assert!(parse("enforcement: { max_ipv4_prefix: 16, max_ipv6_prefix: 112 }").is_ok());
    assert!(parse("enforcement: { max_ipv4_prefix: 33 }").is_err());
}

#[test]
fn weakening_settings_are_warned_about_and_safe_ones_are_not() {
    let c = parse(
        r#"
sources:
  - { name: lab, type: misp, url: "HTTP://misp.lab:80", verify_tls: false, allow_plain_http: true }
  - { name: feed, type: misp_feed, url: "http://feed.example/osint/" }
  - { name: safe, type: list, url: "https://lists.example/block.txt" }
  - { name: local, type: list, path: /etc/homewarden/block.txt }
mail: { to: [me@home.example], from: hw@home.example, host: smtp.example, security: none }
"#,
    )
    .unwrap();
    let w = c.warnings();
    assert_eq!(w.len(), 4, "{w:#?}");
    assert!(
        w[0].starts_with("sources[0] (lab): verify_tls is off"),
        "{}",
        w[0]
    );
    assert!(w[1].starts_with("sources[0] (lab): plain http"), "{}", w[1]);
    assert!(
        w[2].starts_with("sources[1] (feed): plain http"),
        "{}",
        w[2]
    );
    assert!(
        w[3].starts_with("mail: security none to smtp.example"),
        "{}",
        w[3]
    );
    for relay in ["localhost", "127.0.0.1", "[::1]"] {
        let c = parse(&format!(
                "mail: {{ to: [me@home.example], from: hw@home.example, host: \"{relay}\", security: none }}"
            ))
            .unwrap();
        assert!(c.warnings().is_empty(), "{relay}: {:?}", c.warnings());
    }
    assert!(parse("").unwrap().warnings().is_empty());
}

#[test]
fn full_example_parses() {
    let c = parse(
        r#"
state_dir: /tmp/x
enforcement: { mode: ids, action: reject, fail: closed }
network: { gateway: [192.0.2.1], dns: [192.0.2.53] }
allowlist: { cidrs: [198.51.100.0/24, 203.0.113.7], domains: [good.example] }
sources:
  - name: misp
    type: misp
    url: https://misp.example
    interval: 90s
  - { name: circl, type: misp_feed, url: "https://feed.example/osint/" }
  - { name: local, type: list, path: /etc/homewarden/block.txt, interval: 1h, column: 2 }
"#,
    )
    .unwrap();
    assert_eq!(c.enforcement.mode, Mode::Ids);
    assert_eq!(c.sources.len(), 3);
    assert_eq!(c.sources[0].interval(), Duration::from_secs(90));
    assert_eq!(c.sources[1].interval(), Duration::from_secs(3600));
    let allow = c.allowlist().unwrap();
    assert!(allow.allows_ip("192.0.2.53".parse().unwrap()));
    assert!(allow.allows_ip("203.0.113.7".parse().unwrap()));
    assert!(!allow.allows_ip("203.0.113.8".parse().unwrap()));
}

#[test]
fn placement_defaults_and_lan_per_placement() {
    let c = parse("").unwrap();
    assert_eq!(c.network.placement, Placement::Gateway);
    assert_eq!(c.network.uplink, "eth0");
    assert_eq!(c.network.lan(), "eth1");
    assert_eq!(c.network.ap.ssid, "homewarden");
    let c = parse("network: { placement: ap, ap: { ssid: Home IoT, country: DE, channel: 36 } }")
        .unwrap();
    assert_eq!(c.network.lan(), "wlan0");
    assert_eq!(c.network.ap.ssid, "Home IoT");
    assert_eq!(c.network.ap.channel, 36);
    let c = parse("network: { placement: bridge, lan: enx1 }").unwrap();
    assert_eq!(c.network.lan(), "enx1");
    assert!(!c.network.routes_own_subnet());
    // One NIC: the devices route through the Pi on the same link.
    let c = parse("network: { placement: gateway, lan: eth0 }").unwrap();
    assert!(!c.network.routes_own_subnet());
    let c = parse("network: { lan_address: 10.3.0.254/16 }").unwrap();
    assert!(c.network.routes_own_subnet());
    assert_eq!(c.network.lan_address.addr(), Ipv4Addr::new(10, 3, 0, 254));
    assert_eq!(c.network.lan_address.prefix_len(), 16);
}

#[test]
fn lan_address_must_be_a_host_of_a_usable_subnet() {
    for bad in [
        "192.168.73.0/24",
        "192.168.73.255/24",
        "192.168.73.1/31",
        "10.0.0.1/7",
    ] {
        let e = error_of(&format!("network: {{ lan_address: {bad} }}"));
        assert_eq!(
                e,
                format!("/etc/homewarden/homewarden.yaml: network.lan_address: \"{bad}\" must be the Pi's own address with a /8 to /30 prefix, such as \"192.168.73.1/24\"")
            );
    }
    let e = error_of("network: { lan_address: 192.168.73.1 }");
    assert!(e.contains("network.lan_address"), "{e}");
}

fn error_of(yaml: &str) -> String {
    parse(yaml).unwrap_err().to_string()
}

#[test]
fn every_yaml_spelling_of_the_fail_mode_is_read_alike() {
    // The firewall takes the mode from this parser, never from a grep of the file.
    for yaml in [
        "enforcement:\n  fail: closed\n",
        "enforcement:\n  fail: \"closed\"\n",
        "enforcement:\n  fail: 'closed'\n",
        "enforcement: { mode: ips, fail: closed }\n",
        "enforcement: {fail: \"closed\"}\n",
        "enforcement:\n  # fail: open\n  mode: ips\n  fail: closed # the door lock matters more\n",
        "---\nenforcement:\n    fail: !!str closed\n",
    ] {
        let c = parse(yaml).unwrap_or_else(|e| panic!("{yaml:?}: {e}"));
        assert_eq!(c.enforcement.fail, FailMode::Closed, "{yaml:?}");
    }
    for (yaml, want) in [
        ("", FailMode::Open),
        ("enforcement: { fail: open }", FailMode::Open),
    ] {
        assert_eq!(parse(yaml).unwrap().enforcement.fail, want, "{yaml:?}");
    }
    for bad in ["Closed", "close", "yes", "true", "\"\""] {
        let e = error_of(&format!("enforcement: {{ fail: {bad} }}"));
        assert!(e.contains("enforcement.fail"), "{bad}: {e}");
    }
}

#[test]
fn ports_opened_to_the_devices_are_tcp_or_udp_with_a_number() {
    let c =
        parse("network: { lan_open: [tcp/8123, udp/5353], ssh_from: [192.168.73.10/32] }").unwrap();
    assert_eq!(
        c.network.lan_open,
        [
            OpenPort {
                udp: false,
                port: 8123
            },
            OpenPort {
                udp: true,
                port: 5353
            }
        ]
    );
    assert_eq!(c.network.lan_open[1].to_string(), "udp/5353");
    assert_eq!(c.network.ssh_from.unwrap().len(), 1);
    assert_eq!(parse("").unwrap().network.ssh_from, None);
    for bad in ["tcp/0", "sctp/9", "8123", "tcp/70000", "tcp/x"] {
        let e = error_of(&format!("network: {{ lan_open: [\"{bad}\"] }}"));
        assert!(e.contains("network.lan_open") && e.contains(bad), "{e}");
    }
}

#[test]
fn queues_are_auto_or_a_sane_count() {
    assert_eq!(parse("").unwrap().suricata.queues, None);
    assert_eq!(
        parse("suricata: { queues: auto }").unwrap().suricata.queues,
        None
    );
    assert_eq!(
        parse("suricata: { queues: 3 }").unwrap().suricata.queues,
        Some(3)
    );
    for bad in ["0", "17", "many", "-1"] {
        let e = error_of(&format!("suricata: {{ queues: {bad} }}"));
        assert!(e.contains("suricata.queues") && e.contains(bad), "{e}");
    }
    assert!(parse("").unwrap().suricata.flow_bypass);
}

#[test]
fn errors_name_file_key_and_value() {
    let e = error_of("sources:\n  - {name: m, type: misp, url: https://m.example, interval: 5x}\n");
    assert!(
        e.starts_with("/etc/homewarden/homewarden.yaml: sources[0].interval: "),
        "{e}"
    );
    assert!(e.contains("\"5x\""), "{e}");

    let e = error_of("enforcement: { mode: ipx }");
    assert!(e.contains("enforcement.mode"), "{e}");
    assert_eq!(e.matches("enforcement.mode").count(), 1, "{e}");
    assert!(e.contains("ipx"), "{e}");

    let e = error_of("allowlist: { cidrs: [10.0.0.0/40] }");
    assert_eq!(
        e,
        "/etc/homewarden/homewarden.yaml: allowlist.cidrs[0]: \"10.0.0.0/40\" is not an IP network"
    );

    let e = error_of("sources:\n  - {name: m, type: misp, url: http://m.example}\n");
    assert!(
        e.contains("sources[0].url") && e.contains("plain http"),
        "{e}"
    );

    let e = error_of(
        "sources:\n  - {name: a, type: list, path: /x}\n  - {name: a, type: list, path: /y}\n",
    );
    assert!(e.contains("sources[1].name") && e.contains("\"a\""), "{e}");

    let e = error_of("sources:\n  - {name: a, type: list}\n");
    assert!(
        e.contains("sources[0].url: give exactly one of url and path"),
        "{e}"
    );

    let e = error_of("statedir: /x\n");
    assert!(e.contains("statedir"), "{e}");

    let e = error_of("sources:\n  - {name: a, type: lsit, path: /x}\n");
    assert!(e.contains("sources[0]") && e.contains("lsit"), "{e}");

    let e = error_of("network: { placement: router }");
    assert!(
        e.contains("network.placement") && e.contains("router"),
        "{e}"
    );

    let e = error_of("network: { uplink: \"eth 0\" }");
    assert_eq!(e, "/etc/homewarden/homewarden.yaml: network.uplink: \"eth 0\" is not an interface name (1-15 of [A-Za-z0-9._@-])");

    let e = error_of("network: { placement: bridge, uplink: eth1 }");
    assert!(
        e.contains("network.lan") && e.contains("two interfaces"),
        "{e}"
    );

    let e = error_of("network: { ap: { country: gb } }");
    assert!(
        e.contains("network.ap.country") && e.contains("\"gb\""),
        "{e}"
    );

    let e = error_of("network: { ap: { channel: 15 } }");
    assert!(e.contains("network.ap.channel: 15"), "{e}");

    let e = error_of(&format!(
        "network: {{ ap: {{ ssid: {:?} }} }}",
        "x".repeat(33)
    ));
    assert!(e.contains("network.ap.ssid"), "{e}");

    let e = error_of("alerts: { retry_first: 500ms }");
    assert_eq!(
            e,
            "/etc/homewarden/homewarden.yaml: alerts.retry_first: 500ms is out of range: write 1s to 1h"
        );
    assert!(error_of("alerts: { retry_first: 2h }").contains("alerts.retry_first: 2h"));
    assert_eq!(
        parse("alerts: { retry_first: 2s }")
            .unwrap()
            .alerts
            .retry_first,
        Duration::from_secs(2)
    );

    let e = error_of("network: { gateway: [192.0.2.300] }");
    assert!(e.contains("network.gateway[0]"), "{e}");
    assert!(!e.contains('\n'));
}

#[test]
fn the_body_cap_is_a_size_in_mib_within_bounds() {
    let c = Config::parse(
        "limits: { body_mb: 8 }\n",
        Path::new("/etc/homewarden/homewarden.yaml"),
    )
    .unwrap();
    assert_eq!(c.limits.max_body(), 8 << 20);
    let d = Config::parse("", Path::new("/etc/homewarden/homewarden.yaml")).unwrap();
    assert_eq!(d.limits.max_body(), 64 << 20);
    for bad in ["0", "4096"] {
        let e = error_of(&format!("limits: {{ body_mb: {bad} }}\n"));
        assert!(
            e.contains("limits.body_mb: ") && e.contains("1-1024 MiB"),
            "{e}"
        );
    }
}

#[test]
fn the_control_socket_is_never_handed_to_the_agents_own_group() {
    for key in ["read_group", "admin_group"] {
        for group in ["homewarden", "root"] {
            let e = parse(&format!("control_access:\n  {key}: {group}\n"))
                .unwrap_err()
                .to_string();
            assert!(
                e.contains(&format!("control_access.{key}")) && e.contains(group),
                "{e}"
            );
            assert!(
                e.contains("homewarden-read") || e.contains("homewarden-admin"),
                "{e}"
            );
            assert_eq!(e.lines().count(), 1, "{e}");
        }
    }
    let c =
        parse("control_access:\n  read_group: homewarden-read\n  admin_group: homewarden-admin\n")
            .unwrap();
    assert_eq!(
        c.control_access.read_group.as_deref(),
        Some("homewarden-read")
    );
}

#[test]
fn encrypted_dns_is_blocked_by_default_and_devices_let_be_by_address_or_network() {
    use crate::config::DnsBypass;
    let c = parse("").unwrap();
    assert_eq!(c.enforcement.dns_bypass, DnsBypass::Block);
    assert!(c.enforcement.dns_bypass_allow.is_empty());
    let c =
        parse("enforcement: { dns_bypass: alert, dns_bypass_allow: [192.168.1.23, 'fd00::/64'] }")
            .unwrap();
    assert_eq!(c.enforcement.dns_bypass, DnsBypass::Alert);
    let allow: Vec<String> = c
        .enforcement
        .dns_bypass_allow
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(allow, ["192.168.1.23/32", "fd00::/64"]);
    let e = error_of("enforcement: { dns_bypass_allow: [my-phone] }");
    assert!(
        e.contains("enforcement.dns_bypass_allow") && e.contains("\"my-phone\" is neither"),
        "{e}"
    );
    assert!(!e.contains('\n'), "{e}");
    let e = error_of("enforcement: { dns_bypass: maybe }");
    assert!(
        e.contains("enforcement.dns_bypass") && e.contains("maybe"),
        "{e}"
    );
}
