use super::*;

/// An action for tests of the store itself (any kind would do).
fn notice(text: &str) -> Action {
    Action::MailNotice(Notice {
        subject: "s".into(),
        text: text.into(),
    })
}

#[test]
fn retry_after_is_honoured_within_bounds_and_amendments_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut ob = open(dir.path());
    ob.put("k", notice(""), true, 1000).unwrap();
    ob.failed_until("k", "429", 1000, Some(1007)).unwrap();
    assert!(ob.due(1006).is_empty());
    assert_eq!(ob.due(1007).len(), 1);
    // A peer asking for a day is held to the outbox's longest wait.
    ob.failed_until("k", "429", 1007, Some(1007 + 86400))
        .unwrap();
    assert_eq!(ob.due(u64::MAX)[0].next_at, 1007 + MAX_BACKOFF_SECS);
    // A time in the past falls back to the usual backoff.
    ob.failed_until("k", "500", 5000, Some(10)).unwrap();
    assert_eq!(
        ob.due(u64::MAX)[0].next_at,
        5000 + backoff(FIRST_BACKOFF_SECS, 3)
    );
    ob.amend("k", notice("unplug it")).unwrap();
    drop(ob);
    let ob = open(dir.path());
    let item = &ob.due(u64::MAX)[0];
    assert_eq!(item.action, notice("unplug it"));
    assert_eq!(item.attempts, 3);
}

fn open(dir: &Path) -> Outbox {
    Outbox::open(dir, 100, 1000).unwrap()
}

#[test]
fn same_key_twice_is_queued_once_and_done_is_never_redone() {
    let dir = tempfile::tempdir().unwrap();
    let mut ob = open(dir.path());
    assert_eq!(
        ob.put("inc-1:mail", notice(""), true, 1000).unwrap(),
        Queued::New
    );
    assert_eq!(
        ob.put("inc-1:mail", notice(""), true, 1001).unwrap(),
        Queued::AlreadyQueued
    );
    assert_eq!(ob.due(1000).len(), 1);
    ob.done("inc-1:mail").unwrap();
    assert_eq!(
        ob.put("inc-1:mail", notice(""), true, 1002).unwrap(),
        Queued::AlreadyDone
    );
    assert!(ob.due(5000).is_empty());
    // And after a restart too.
    let mut ob = open(dir.path());
    assert_eq!(
        ob.put("inc-1:mail", notice(""), true, 1003).unwrap(),
        Queued::AlreadyDone
    );
}

#[test]
fn pending_work_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut ob = open(dir.path());
    ob.put("inc-2:sighting", notice(""), false, 1000).unwrap();
    ob.failed("inc-2:sighting", "MISP down", 1000).unwrap();
    drop(ob);
    let ob = open(dir.path());
    let items = ob.due(u64::MAX);
    assert_eq!(items.len(), 1);
    assert_eq!((items[0].attempts, items[0].next_at), (1, 1030));
    assert_eq!(items[0].last_error.as_deref(), Some("MISP down"));
    assert!(ob.due(1029).is_empty());
}

#[test]
fn pending_actions_are_counted_by_the_responder_that_delivers_them() {
    let dir = tempfile::tempdir().unwrap();
    let mut ob = open(dir.path());
    let sighting = Action::MispSighting(Sighting {
        source: "misp".into(),
        attribute_uuid: "a".into(),
        time: 1,
        kind: SightingType::Seen,
    });
    ob.put("inc-1:sighting", sighting, true, 1000).unwrap();
    ob.put("inc-1:notice", notice(""), true, 1000).unwrap();
    ob.put("inc-2:notice", notice(""), true, 1000).unwrap();
    ob.done("inc-2:notice").unwrap();
    let by = ob.stats().pending_by;
    assert_eq!(by, [(Responder::Misp, 1), (Responder::Mail, 1)].into());
}

#[test]
fn killed_between_done_and_forget_is_not_sent_again() {
    let dir = tempfile::tempdir().unwrap();
    let mut ob = open(dir.path());
    ob.put("inc-3:mail", notice(""), true, 1000).unwrap();
    // The marker is written, the process dies before removing the item.
    fsutil::write_atomic(&ob.done_path("inc-3:mail"), b"").unwrap();
    drop(ob);
    let ob = open(dir.path());
    assert!(ob.due(u64::MAX).is_empty());
    assert_eq!(
        std::fs::read_dir(dir.path())
            .unwrap()
            .flatten()
            .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
            .count(),
        0
    );
}

#[test]
fn torn_writes_and_corrupt_files_lose_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let mut ob = open(dir.path());
    ob.put("inc-4:mail", notice(""), true, 1000).unwrap();
    drop(ob);
    // A temp file from a write cut by a power loss, and a damaged item.
    std::fs::write(dir.path().join(".inc-5_mail.json.tmp-123"), b"{\"key\":").unwrap();
    std::fs::write(
        dir.path().join("inc-6_mail.json"),
        b"{\"key\":\"inc-6:mail\",\"ki",
    )
    .unwrap();
    let ob = open(dir.path());
    assert_eq!(ob.due(u64::MAX).len(), 1);
    assert_eq!(ob.stats().corrupt, 1);
    assert!(
        dir.path().join("corrupt/inc-6_mail.json").exists(),
        "kept for a human"
    );
    assert!(!dir.path().join(".inc-5_mail.json.tmp-123").exists());
}

#[test]
fn when_full_the_oldest_low_severity_goes_first() {
    let dir = tempfile::tempdir().unwrap();
    let mut ob = Outbox::open(dir.path(), 3, 0).unwrap();
    ob.put("low-old", notice(""), false, 1).unwrap();
    ob.put("high-old", notice(""), true, 2).unwrap();
    ob.put("low-new", notice(""), false, 3).unwrap();
    ob.put("high-new", notice(""), true, 4).unwrap();
    let keys: Vec<String> = ob.due(u64::MAX).into_iter().map(|i| i.key).collect();
    assert_eq!(keys, ["high-old", "high-new", "low-new"]);
    // Full of high work: a low newcomer is the one dropped.
    ob.put("high-3", notice(""), true, 5).unwrap();
    assert_eq!(
        ob.put("low-late", notice(""), false, 6).unwrap(),
        Queued::Dropped
    );
    let keys: Vec<String> = ob.due(u64::MAX).into_iter().map(|i| i.key).collect();
    assert_eq!(keys, ["high-old", "high-new", "high-3"]);
    assert_eq!(ob.stats().dropped, 3);
    assert_eq!(
        Outbox::open(dir.path(), 3, 0).unwrap().stats().pending,
        3,
        "the disk agrees"
    );
}

#[test]
fn backoff_doubles_to_an_hour() {
    let b = |n| backoff(FIRST_BACKOFF_SECS, n);
    assert_eq!([b(1), b(2), b(3)], [30, 60, 120]);
    assert_eq!(b(8), 3600);
    assert_eq!(b(1000), 3600);
    // A shorter first wait (alerts.retry_first) doubles the same way.
    assert_eq!([backoff(1, 1), backoff(1, 2), backoff(1, 5)], [1, 2, 16]);
    assert_eq!(backoff(1, 40), 3600);
}

#[test]
fn the_first_wait_is_configurable() {
    let dir = tempfile::tempdir().unwrap();
    let mut ob = Outbox::open(dir.path(), 10, 1000)
        .unwrap()
        .with_first_backoff(2);
    ob.put("k", notice(""), true, 1000).unwrap();
    ob.failed("k", "down", 1000).unwrap();
    assert!(ob.due(1001).is_empty());
    assert_eq!(ob.due(1002).len(), 1);
    ob.failed("k", "down", 1002).unwrap();
    assert_eq!(ob.due(u64::MAX)[0].next_at, 1006);
}

/// Files the 0.1.0 release wrote (tests/data/outbox-0.1.0: every kind,
/// a sighting without a type and one with, a mail with its advice kept)
/// are read after an upgrade as the actions they were, and written back
/// unchanged in meaning.
#[test]
fn an_outbox_written_by_the_previous_release_is_read_after_an_upgrade() {
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/outbox-0.1.0");
    let dir = tempfile::tempdir().unwrap();
    for e in std::fs::read_dir(&fixtures).unwrap() {
        let p = e.unwrap().path();
        std::fs::copy(&p, dir.path().join(p.file_name().unwrap())).unwrap();
    }
    let ob = Outbox::open(dir.path(), 100, 0).unwrap();
    assert_eq!(ob.stats().corrupt, 0, "every file read");
    let items = ob.due(u64::MAX);
    let mut kinds: Vec<&str> = items.iter().map(|i| i.action.kind()).collect();
    kinds.sort();
    assert_eq!(
        kinds,
        [
            "mail",
            "mail",
            "mail-notice",
            "misp-event",
            "misp-event-update",
            "misp-sighting",
            "misp-sighting"
        ]
    );
    let by_key = |k: &str| &items.iter().find(|i| i.key == k).unwrap().action;
    let Action::MispSighting(seen) = by_key("inc-1795000000-00000000000000bb:misp-sighting") else {
        panic!("not a sighting")
    };
    assert_eq!((seen.kind, seen.source.as_str()), (SightingType::Seen, "m"));
    let exp = items.iter().find(|i| i.key.starts_with("exp-")).unwrap();
    assert!(matches!(&exp.action, Action::MispSighting(s) if s.kind == SightingType::Expiration));
    let Action::Mail(mail) = by_key("inc-1795000000-00000000000000bb:mail") else {
        panic!("not a mail")
    };
    assert!(mail
        .advice
        .as_ref()
        .is_some_and(|a| a.text.contains("factory settings")));
    assert_eq!(mail.incident.ioc.as_ref().unwrap().event_id, Some(7));
    assert!(!mail.incident.listed, "0.1.0 knew no listed field");
    let event = items
        .iter()
        .find(|i| i.key.ends_with(":misp-event"))
        .unwrap();
    let Action::MispEvent(ev) = &event.action else {
        panic!("not an event")
    };
    assert_eq!(ev.event.event.attributes[0].kind, "ip-dst");
    assert_eq!(ev.event.event.uuid.len(), 36);
    let Action::MispEventUpdate(up) =
        by_key(&event.key.replace(":misp-event", ":misp-event-update:10"))
    else {
        panic!("not an update")
    };
    assert!(up.event.event.info.ends_with("(10 alerts)"));

    // Written back by this release, each reads as the same action.
    let mut ob = ob;
    for i in &items {
        ob.amend(&i.key, i.action.clone()).unwrap();
    }
    let again = Outbox::open(dir.path(), 100, 0).unwrap().due(u64::MAX);
    for i in &items {
        assert_eq!(
            again.iter().find(|a| a.key == i.key).unwrap().action,
            i.action
        );
    }
}

#[test]
fn keys_cannot_escape_the_directory() {
    assert_eq!(file_name("../../etc/passwd"), ".._.._etc_passwd.json");
    assert!(!file_name("a/b").contains('/'));
}
