use super::*;

#[test]
fn a_wait_ends_on_a_whole_second_never_before_it_is_over() {
    use std::time::{Duration, SystemTime, UNIX_EPOCH};
    for wait in [
        Duration::ZERO,
        Duration::from_millis(1),
        Duration::from_secs(2),
    ] {
        let before = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let at = Duration::from_secs(unix_after(wait));
        assert!(at >= before + wait, "{wait:?}: {at:?} < {before:?} + wait");
        assert!(
            at < before + wait + Duration::from_secs(2),
            "{wait:?}: {at:?}"
        );
    }
    // A peer's absurd wait is the far future, not a panic or the past.
    assert_eq!(unix_after(Duration::MAX), u64::MAX);
}

#[test]
fn urls_are_shown_without_their_secrets() {
    assert_eq!(
        masked("https://me:s3cret@feeds.example/list.txt?token=abc&format=csv"),
        "https://***@feeds.example/list.txt?token=***&format=csv"
    );
    assert_eq!(
        masked("https://misp.example/events"),
        "https://misp.example/events"
    );
    assert_eq!(masked("not a url"), "not a url");
    let e = IntelError::malformed("https://x.example/m.json?API_KEY=k1", "bad");
    assert!(!e.to_string().contains("k1"), "{e}");
}

#[test]
fn a_pull_losing_more_than_the_share_is_held() {
    assert_eq!(
        shrink_held(1000, 0, 50).as_deref(),
        Some("a pull would leave 0 of 1000 entries (100 % gone, more than enforcement.max_shrink 50 %)")
    );
    assert!(shrink_held(1000, 499, 50).is_some());
    assert!(shrink_held(1000, 500, 50).is_none(), "exactly half may go");
    assert!(
        shrink_held(1000, 5000, 50).is_none(),
        "growing is never held"
    );
    assert!(
        shrink_held(0, 0, 50).is_none(),
        "an empty source stays empty"
    );
    assert!(shrink_held(3, 0, 100).is_none(), "100 turns the guard off");
    assert!(shrink_held(3, 2, 0).is_some(), "0 holds any loss");
    assert!(shrink_held(usize::MAX, 0, 99).is_some());
}

#[test]
fn patch_replaces_changed_attributes_and_keeps_others() {
    let mut st = SourceState::default();
    let mut c = Collector::new("m");
    let ev = c.event(EventInfo {
        uuid: "e1".into(),
        threat_level: Some(1),
        ..Default::default()
    });
    c.value(Some("ip-dst"), "203.0.113.1", Some(ev), Some("a1"));
    c.value(Some("ip-dst"), "203.0.113.2", Some(ev), Some("a2"));
    c.value(Some("ip-dst"), "not an ip", Some(ev), Some("a3"));
    assert_eq!(c.stats.rejected.get("bad_ip"), Some(&1));
    st.apply(
        Pulled {
            change: Change::Replace(c.set),
            stats: c.stats,
            cursor: Cursor::default(),
        },
        10,
    );
    assert_eq!(st.set.len(), 2);

    let mut c = Collector::new("m");
    let ev = c.event(EventInfo {
        uuid: "e1".into(),
        ..Default::default()
    });
    c.value(Some("domain"), "evil.example", Some(ev), Some("a2"));
    st.apply(
        Pulled {
            change: Change::Patch {
                remove_attributes: HashSet::from(["a2".to_string(), "a1".to_string()]),
                remove_events: HashSet::new(),
                add: c.set,
            },
            stats: c.stats,
            cursor: Cursor {
                misp_timestamp: Some(5),
                ..Cursor::default()
            },
        },
        20,
    );
    let values: Vec<String> = st.set.entries().map(|e| e.ioc.to_string()).collect();
    assert_eq!(values, ["evil.example"]);
    // The threat level learnt earlier survives an attribute-only update.
    let p = st.set.provenance("m", st.set.entries().next().unwrap());
    assert_eq!(p.threat_level, Some(1));
    assert_eq!(st.last_ok, Some(20));
    // So does when the event first arrived, through a patch and a full re-pull,
    // while a new event is stamped with the pull that brought it.
    assert_eq!(p.since, Some(10));
    let mut c = Collector::new("m");
    for uuid in ["e1", "e2"] {
        let ev = c.event(EventInfo {
            uuid: uuid.into(),
            ..Default::default()
        });
        c.value(Some("domain"), &format!("{uuid}.example"), Some(ev), None);
    }
    st.apply(
        Pulled {
            change: Change::Replace(c.set),
            stats: c.stats,
            cursor: Cursor::default(),
        },
        30,
    );
    let since: Vec<Option<u64>> = st
        .set
        .entries()
        .map(|e| st.set.provenance("m", e).since)
        .collect();
    assert_eq!(since, [Some(10), Some(30)]);
}

#[test]
fn misp_numbers_and_booleans_in_all_their_forms() {
    #[derive(Deserialize)]
    struct T {
        #[serde(deserialize_with = "de_num", default)]
        n: Option<u64>,
        #[serde(deserialize_with = "de_bool", default)]
        b: bool,
    }
    for (j, n, b) in [
        (r#"{"n":"12","b":true}"#, Some(12), true),
        (r#"{"n":12,"b":"1"}"#, Some(12), true),
        (r#"{"n":null,"b":0}"#, None, false),
        (r#"{}"#, None, false),
    ] {
        let t: T = serde_json::from_str(j).unwrap();
        assert_eq!((t.n, t.b), (n, b), "{j}");
    }
}
