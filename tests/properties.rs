//! Property tests of every parser that reads what someone else wrote: IoCs
//! from feeds, eve records from Suricata (and the traffic behind them), the
//! owner's config and `.env`, list files, control requests. No input may
//! panic; what is accepted prints back to itself.
//!
//! proptest, on stable Rust, in the test command (256 cases each). A longer
//! run: `PROPTEST_CASES=100000 cargo test --release --test properties`. A
//! failure proptest finds is saved under `tests/proptest-regressions/` and
//! replayed first on every later run: commit that file with the fix.

use std::path::Path;

use homewarden::alerts::{eve, triage};
use homewarden::config::Config;
use homewarden::daemon::control::Command;
use homewarden::intel::ioc::{Domain, Ioc};
use homewarden::intel::list::{Column, Format, Layout};
use homewarden::intel::{list, masked, Collector};
use homewarden::secrets::Secrets;
use proptest::prelude::*;

/// Text a feed could hold: mostly printable, with the characters parsers trip on.
fn feedish() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "[ -~]{0,80}",
        "[a-zA-Z0-9.:/\\[\\]|_%@-]{0,80}",
        "[\\PC\u{202e}\u{0}\t\r\n ]{0,40}",
    ]
}

/// A name made of labels, as real feeds have them (and some that are not).
fn domainish() -> impl Strategy<Value = String> {
    prop::collection::vec("[a-zA-Z0-9_-]{0,20}|xn--[a-z0-9]{1,10}|[\\p{L}]{1,8}", 1..6)
        .prop_map(|labels| labels.join("."))
}

proptest! {
    #[test]
    fn an_ioc_parses_without_panic_and_prints_back_to_itself(raw in prop_oneof![feedish(), domainish()]) {
        if let Ok(ioc) = Ioc::parse_any(&raw) {
            let shown = ioc.to_string();
            prop_assert_eq!(Ioc::parse_any(&shown), Ok(ioc.clone()), "{:?} -> {:?}", raw, shown);
            // A printed indicator is one plain token: it goes into dataset files line by line.
            prop_assert!(!shown.is_empty() && !shown.contains(|c: char| c.is_whitespace() || c.is_control()));
        }
    }

    #[test]
    fn every_address_network_and_hash_round_trips(
        v4 in any::<std::net::Ipv4Addr>(),
        v6 in any::<std::net::Ipv6Addr>(),
        prefix in 0u8..=32,
        md5 in "[0-9a-fA-F]{32}",
        sha in "[0-9a-fA-F]{64}",
    ) {
        for raw in [v4.to_string(), v6.to_string(), format!("{v4}/{prefix}"), md5, sha] {
            let ioc = Ioc::parse_any(&raw);
            if let Ok(ioc) = &ioc {
                let again = Ioc::parse_any(&ioc.to_string());
                prop_assert_eq!(again.as_ref(), Ok(ioc));
            }
            // Addresses and hashes always parse (networks may have host bits set).
            prop_assert!(ioc.is_ok() || raw.contains('/'), "{raw}: {ioc:?}");
        }
    }

    #[test]
    fn a_misp_attribute_of_any_type_parses_without_panic(
        kind in prop_oneof![
            Just("ip-dst".to_string()), Just("ip-src|port".to_string()), Just("domain|ip".to_string()),
            Just("hostname|port".to_string()), Just("url".to_string()), Just("filename|sha256".to_string()),
            "[a-z|-]{0,16}",
        ],
        value in feedish(),
    ) {
        if let Ok(iocs) = Ioc::parse_misp(&kind, &value) {
            for ioc in iocs {
                prop_assert_eq!(Ioc::parse_any(&ioc.to_string()), Ok(ioc));
            }
        }
    }

    #[test]
    fn a_list_file_of_anything_is_counted_never_panics(
        text in feedish(),
        column in 0usize..4,
        format in prop::sample::select(vec![Format::Auto, Format::Plain, Format::Columns, Format::Csv, Format::Hosts]),
        max_refused in 0u8..=100,
    ) {
        let column = if matches!(format, Format::Plain | Format::Hosts) { 0 } else { column };
        let layout = Layout { format, column: Column::Index(column), max_refused };
        let mut c = Collector::new("p");
        let verdict = list::parse_into(&text, &layout, &mut c);
        let refused: u64 = c.stats.rejected.values().sum();
        prop_assert!(c.set.len() as u64 <= c.stats.seen);
        prop_assert_eq!(c.stats.accepted + refused, c.stats.seen);
        // A pull that passes holds no more refused values than its owner allows.
        if verdict.is_ok() {
            prop_assert!(refused * 100 <= u64::from(max_refused) * c.stats.seen);
        }
    }

    #[test]
    fn any_eve_line_is_an_alert_or_a_counted_skip(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
        let _ = eve::parse(&bytes);
    }

    #[test]
    fn an_alert_with_any_hostname_stays_bounded_text(
        name in feedish(),
        field in prop_oneof![Just("tls"), Just("http"), Just("dns")],
        signature in feedish(),
    ) {
        let extra = match field {
            "tls" => serde_json::json!({"sni": name}),
            "http" => serde_json::json!({"hostname": name}),
            _ => serde_json::json!({"queries": [{"rrname": name}]}),
        };
        let line = serde_json::json!({
            "timestamp": "2026-12-03T10:00:00.0+0000", "event_type": "alert",
            "src_ip": "10.0.0.2", "dest_ip": "203.0.113.7", "proto": "TCP", field: extra,
            "alert": {"action": "blocked", "signature_id": 1, "signature": signature, "category": "c",
                      "severity": 1, "metadata": {"homewarden_kind": ["domain"]}}
        });
        let a = eve::parse(line.to_string().as_bytes()).expect("a well-formed alert");
        let hostname = a.hostname.clone().unwrap_or_default();
        for text in [&a.signature, &hostname] {
            prop_assert!(!text.chars().any(char::is_control), "{text:?}");
            prop_assert!(text.chars().count() <= 256);
        }
        let (triage::Outcome::New(inc) | triage::Outcome::Counted(inc)) =
            triage::Triage::new(triage::Settings::default()).ingest(&a, &|_| None);
        // The remote is a domain, or opaque text that never passes for one.
        let is_domain = Domain::parse(&inc.remote).is_ok();
        prop_assert!(is_domain || inc.remote.starts_with('"') || inc.remote == "203.0.113.7", "{:?}", inc.remote);
        prop_assert!(!inc.remote.chars().any(char::is_control));
    }

    #[test]
    fn any_config_text_gives_a_config_or_a_one_line_error(text in prop_oneof![
        feedish(),
        "(enforcement|mail|sources|allowlist|network|alerts): \\{ ?[a-z_]{0,12}: [ -~]{0,20} ?\\}",
        "sources:\n  - \\{ name: [a-z]{1,5}, type: (list|misp|misp_feed), [a-z_]{1,10}: [ -~]{0,20} \\}",
    ]) {
        if let Err(e) = Config::parse(&text, Path::new("/etc/homewarden/homewarden.yaml")) {
            let e = e.to_string();
            prop_assert!(!e.contains('\n'), "{e}");
            prop_assert!(e.starts_with("/etc/homewarden/homewarden.yaml: "), "{e}");
        }
    }

    #[test]
    fn a_dotenv_never_panics_and_never_shows_a_value(
        lines in prop::collection::vec(prop_oneof![
            "[A-Z_]{1,12}=[ -~]{0,20}",
            "(export )?[A-Z_]{1,8}='[a-z ]{0,8}'",
            "[ -~]{0,30}",
        ], 0..6),
        secret in "s3cr3t[a-z]{8}",
    ) {
        let dir = tempfile::tempdir().unwrap();
        // The secret sits where a typo would put it: on a line of its own.
        let text = format!("{}\n{secret}\n", lines.join("\n"));
        std::fs::write(dir.path().join(".env"), &text).unwrap();
        let e = Secrets::load(dir.path()).expect_err("a line without `=` is an error");
        prop_assert!(!e.to_string().contains(&secret), "{e}");
        prop_assert!(!e.to_string().contains('\n'));
    }

    #[test]
    fn a_control_request_of_any_shape_is_a_command_or_refused(line in prop_oneof![
        any::<String>(),
        "\\{\"cmd\": ?\"[a-z_]{0,10}\"(, ?\"[a-z_]{1,8}\": ?[ -~]{0,12})?\\}",
        "\\{\"cmd\":\"owner\",\"owner\":\"(allow|unallow|explain|blocks)\",\"value\":\"[ -~]{0,20}\"(,\"for_secs\":[0-9]{1,25})?\\}",
    ]) {
        let _ = serde_json::from_str::<Command>(&line);
    }

    #[test]
    fn a_masked_url_never_shows_its_password(
        user in "[a-z]{1,8}", password in "[A-Za-z0-9]{6,12}", host in "[a-z]{1,10}\\.example",
        path in "(/[a-z]{0,6}){0,3}", token in "[A-Za-z0-9]{6,12}",
    ) {
        let raw = format!("https://{user}:{password}@{host}{path}?token={token}&x=1");
        let shown = masked(&raw);
        prop_assert!(!shown.contains(&password) && !shown.contains(&token), "{shown}");
        prop_assert!(shown.contains(&host));
    }
}

/// A JSON scalar of any type: feeds put strings where numbers belong and back.
fn json_scalar() -> impl Strategy<Value = serde_json::Value> {
    prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
        any::<f64>().prop_map(serde_json::Value::from),
        feedish().prop_map(serde_json::Value::from),
    ]
}

proptest! {
    #[test]
    fn any_boot_copy_is_split_or_refused_in_one_line(text in prop_oneof![
        feedish(),
        "secrets:\n  (misp_api_key|wifi_passphrase|bogus): [ -~]{0,20}\n(ssh_authorized_keys: \\[[ -~]{0,40}\\])?",
        "ssh_authorized_keys:\n  - (ssh-ed25519|ssh-rsa|x) [A-Za-z0-9+/=]{0,60}( [ -~]{0,10})?\n",
    ]) {
        if let Err(e) = homewarden::appliance::firstboot::split(&text, Path::new("/boot/firmware/homewarden.yaml")) {
            let e = e.to_string();
            prop_assert!(!e.contains('\n') && e.starts_with("/boot/firmware/homewarden.yaml: "), "{e}");
        }
    }

    #[test]
    fn a_feed_with_any_values_where_the_format_has_fields_never_panics(
        manifest_ts in json_scalar(), threat in json_scalar(), event_ts in json_scalar(),
        attrs in prop::collection::vec((
            prop_oneof![Just("ip-dst".to_string()), Just("domain".to_string()), Just("url".to_string()), "[a-z|-]{0,12}"],
            json_scalar(), json_scalar(), json_scalar(),
        ), 0..8),
    ) {
        let uuid = "5f2d3f0a-0000-4000-8000-000000000001";
        let dir = tempfile::tempdir().unwrap();
        let manifest = serde_json::json!({uuid: {"info": "x", "timestamp": manifest_ts, "threat_level_id": threat}});
        std::fs::write(dir.path().join("manifest.json"), manifest.to_string()).unwrap();
        let attributes: Vec<serde_json::Value> = attrs
            .into_iter()
            .map(|(t, value, to_ids, id)| serde_json::json!({"type": t, "value": value, "to_ids": to_ids, "uuid": id}))
            .collect();
        let event = serde_json::json!({"Event": {"uuid": uuid, "info": "x", "timestamp": event_ts, "published": true, "Attribute": attributes}});
        std::fs::write(dir.path().join(format!("{uuid}.json")), event.to_string()).unwrap();
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let base = homewarden::intel::fetch::Location::Path(dir.path().to_path_buf());
        let _ = rt.block_on(homewarden::intel::feed::pull(
            "p", &base, &homewarden::intel::set::SourceSet::new(), None,
            &homewarden::intel::fetch::Fetch::new(reqwest::Client::new(), std::time::Duration::from_secs(5)),
            1_800_000_000,
        ));
    }
}
