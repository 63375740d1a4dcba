//! The formats of the lists home users subscribe to, each with a sample laid
//! out as its publisher lays it out (addresses and names swapped for
//! documentation ones).

use super::*;
use std::time::Duration;

fn read(text: &str, layout: &Layout) -> (Result<(), String>, Vec<String>, PullStats) {
    let mut c = Collector::new("t");
    let r = parse_into(text, layout, &mut c);
    let vals = c.set.entries().map(|e| e.ioc.to_string()).collect();
    (r, vals, c.stats)
}

fn auto(text: &str) -> (Vec<String>, PullStats) {
    let (r, v, st) = read(text, &Layout::default());
    r.unwrap_or_else(|e| panic!("refused whole: {e}"));
    (v, st)
}

use super::super::PullStats;

#[test]
fn ipsum_ip_tab_count() {
    let (v, st) = auto(
        "# IPsum Threat Intelligence Feed\n# (https://github.com/stamparm/ipsum)\n#\n\
         # Last update: Wed, 02 Dec 2026 03:00:56 +0100\n#\n# IP\tnumber of (black)lists\n#\n\
         203.0.113.10\t11\n198.51.100.23\t9\n192.0.2.77\t3\n",
    );
    assert_eq!(v, ["203.0.113.10", "198.51.100.23", "192.0.2.77"]);
    assert!(st.rejected.is_empty(), "{:?}", st.rejected);
    assert_eq!(st.format.as_deref(), Some("columns (detected)"));
}

#[test]
fn spamhaus_drop_with_semicolon_comments() {
    let (v, st) = auto(
        "; Spamhaus DROP List 2026/12/02 - (c) 2026 The Spamhaus Project SLU\n\
         ; https://www.spamhaus.org/drop/drop.txt\n; Last-Modified: Wed, 02 Dec 2026 14:16:37 GMT\n\
         ; Expires: Thu, 03 Dec 2026 15:16:01 GMT\n\
         198.51.100.0/24 ; SBL256894\n203.0.113.0/25 ; SBL312207\n",
    );
    assert_eq!(v, ["198.51.100.0/24", "203.0.113.0/25"]);
    assert!(st.rejected.is_empty(), "{:?}", st.rejected);
}

#[test]
fn space_separated_count_and_tab_comment() {
    let (v, st) = auto("203.0.113.5 7\n203.0.113.6\t# seen twice\n203.0.113.7   ; x\n");
    assert_eq!(v, ["203.0.113.5", "203.0.113.6", "203.0.113.7"]);
    assert!(st.rejected.is_empty());
}

#[test]
fn firehol_netset_and_blocklist_de_plain_lines() {
    let (v, _) = auto(
        "#\n# firehol_level1\n#\n# ipv4 hash:net ipset\n#\n# Maintainer: FireHOL\n#\n\
         192.0.2.0/28\n198.51.100.9\n",
    );
    assert_eq!(v, ["192.0.2.0/28", "198.51.100.9"]);
    let (v, _) = auto("203.0.113.1\n203.0.113.2\n2001:db8::7\n");
    assert_eq!(v, ["203.0.113.1", "203.0.113.2", "2001:db8::7"]);
}

#[test]
fn a_byte_order_mark_does_not_cost_the_first_value() {
    let (v, st) = auto("\u{feff}evil.example\nbad.example\n");
    assert_eq!(v, ["evil.example", "bad.example"]);
    assert!(st.rejected.is_empty());
}

#[test]
fn hosts_file_header_is_never_blocked_and_every_name_counts() {
    let sample = "# Title: StevenBlack/hosts\n#\n# This hosts file is a merged collection\n\
        127.0.0.1 localhost\n127.0.0.1 localhost.localdomain\n127.0.0.1 local\n\
        255.255.255.255 broadcasthost\n::1 localhost\n::1 ip6-localhost\n::1 ip6-loopback\n\
        fe80::1%lo0 localhost\nff00::0 ip6-localnet\nff00::0 ip6-mcastprefix\n\
        ff02::1 ip6-allnodes\nff02::2 ip6-allrouters\nff02::3 ip6-allhosts\n0.0.0.0 0.0.0.0\n\
        # Custom host records are listed here.\n# End of custom host records.\n\
        0.0.0.0 ads.evil.example\n0.0.0.0 tracker.evil.example # telemetry\n\
        127.0.0.1 a.evil.example b.evil.example\n";
    let (v, st) = auto(sample);
    assert_eq!(
        v,
        [
            "ads.evil.example",
            "tracker.evil.example",
            "a.evil.example",
            "b.evil.example"
        ]
    );
    assert!(st.rejected.is_empty(), "{:?}", st.rejected);
    assert_eq!(st.ignored, 14);
    assert_eq!(st.format.as_deref(), Some("hosts (detected)"));
}

#[test]
fn csv_by_index_by_name_and_quoted_commas() {
    let text = "first_seen,url,ip,comment\n\
        2026-12-01,\"https://login.evil.example/a,b\",203.0.113.9,\"phish, \"\"bank\"\"\"\n\
        2026-12-02,http://198.51.100.4/x,198.51.100.4,#7 in a row\n";
    // Column 0 holds dates: the header is skipped, the dates refused, and a
    // list read on the wrong column fails loudly instead of enforcing nothing.
    let (r, v, st) = read(text, &Layout::default());
    assert!(v.is_empty());
    assert_eq!(st.ignored, 1);
    let e = r.unwrap_err();
    assert!(e.contains("2 of 2 values refused"), "{e}");
    let by_name = Layout {
        column: Column::Name("URL".into()),
        ..Layout::default()
    };
    let (r, v, st) = read(text, &by_name);
    r.unwrap();
    assert_eq!(v, ["login.evil.example", "198.51.100.4"]);
    assert_eq!(st.format.as_deref(), Some("csv (detected)"));
    let by_index = Layout {
        column: Column::Index(2),
        ..Layout::default()
    };
    let (r, v, _) = read(text, &by_index);
    r.unwrap();
    assert_eq!(v, ["203.0.113.9", "198.51.100.4"]);
    let missing = Layout {
        column: Column::Name("domain".into()),
        ..Layout::default()
    };
    let (r, _, _) = read(text, &missing);
    let e = r.unwrap_err();
    assert!(
        e.contains("no column \"domain\"") && e.contains("first_seen"),
        "{e}"
    );
}

#[test]
fn urls_keep_their_fragment_and_scheme() {
    let (v, st) = auto(
        "# URLhaus database dump (text)\nhttp://evil.example/x.sh#frag\nhttps://198.51.100.8:8443/a;b\n",
    );
    assert_eq!(v, ["evil.example", "198.51.100.8"]);
    assert!(st.rejected.is_empty());
}

#[test]
fn a_chosen_format_is_kept_and_plain_refuses_extra_words() {
    let plain = Layout {
        format: Format::Plain,
        max_refused: 100,
        ..Layout::default()
    };
    let (r, v, st) = read("203.0.113.5\n203.0.113.6 7\n", &plain);
    r.unwrap();
    assert_eq!(v, ["203.0.113.5"]);
    assert_eq!(st.format.as_deref(), Some("plain"));
    let cols = Layout {
        format: Format::Columns,
        column: Column::Index(1),
        max_refused: 100,
    };
    let (r, v, st) = read("x 203.0.113.5\nonly-one\n", &cols);
    r.unwrap();
    assert_eq!(v, ["203.0.113.5"]);
    assert_eq!(st.rejected.get("missing_column"), Some(&1));
}

#[test]
fn content_that_is_not_a_list_fails_the_pull() {
    let html =
        "<!DOCTYPE html>\n<html><head><title>Sign in</title></head>\n<body>203.0.113.5</body>\n";
    let e = read(html, &Layout::default()).0.unwrap_err();
    assert!(e.contains("HTML"), "{e}");
    let gz = "\u{1f}\u{fffd}\u{8}\0\0\0\0\0\0\u{3}garbage\n";
    let e = read(gz, &Layout::default()).0.unwrap_err();
    assert!(e.contains("gzip"), "{e}");
    // Two refused of three: more than half.
    let e = read("203.0.113.5\nnot valid!\n<<>>\n", &Layout::default())
        .0
        .unwrap_err();
    assert!(
        e.contains("2 of 3 values refused") && e.contains("max_refused"),
        "{e}"
    );
    // One of two is not more than half; and the owner may lift the limit.
    assert!(read("203.0.113.5\nnot valid!\n", &Layout::default())
        .0
        .is_ok());
    let lenient = Layout {
        max_refused: 100,
        ..Layout::default()
    };
    assert!(read("nope!\nnot valid!\n", &lenient).0.is_ok());
    // An empty list is a list (the agent's shrink guard weighs it against the last pull).
    assert!(read("# nothing today\n", &Layout::default()).0.is_ok());
}

#[tokio::test]
async fn pulls_from_a_file_and_a_bad_file_keeps_its_name() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("l.txt");
    std::fs::write(&p, "203.0.113.5\n").unwrap();
    let fetch = Fetch::new(reqwest::Client::new(), Duration::from_secs(5));
    let layout = Layout::default();
    let pulled = pull(
        "t",
        &Location::Path(p.clone()),
        &layout,
        &fetch,
        &Cursor::default(),
    )
    .await
    .unwrap();
    match pulled.change {
        Change::Replace(s) => assert_eq!(s.len(), 1),
        other => panic!("a list replaces: {other:?}"),
    }
    std::fs::write(&p, "<html>\n").unwrap();
    let e = pull("t", &Location::Path(p), &layout, &fetch, &Cursor::default())
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("l.txt") && e.contains("not a usable list"),
        "{e}"
    );
    let missing = pull(
        "t",
        &Location::Path(dir.path().join("nope")),
        &layout,
        &fetch,
        &Cursor::default(),
    )
    .await;
    assert!(missing.unwrap_err().to_string().contains("nope"));
}

#[tokio::test]
async fn a_file_list_that_did_not_change_is_not_read_again() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("l.txt");
    let at = Location::Path(p.clone());
    let fetch = Fetch::new(reqwest::Client::new(), Duration::from_secs(5));
    let layout = Layout::default();
    let replaced = |pulled: &Pulled| -> Vec<String> {
        match &pulled.change {
            Change::Replace(s) => s.entries().map(|e| e.ioc.to_string()).collect(),
            other => panic!("read again: {other:?}"),
        }
    };
    std::fs::write(&p, "203.0.113.5\n").unwrap();
    // Just written: its times may not tell a rewrite in the same instant
    // apart, so the file is read whole next time too.
    let fresh = pull("t", &at, &layout, &fetch, &Cursor::default())
        .await
        .unwrap();
    assert_eq!(fresh.cursor.list, None);
    assert_eq!(replaced(&fresh), ["203.0.113.5"]);
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let first = pull("t", &at, &layout, &fetch, &fresh.cursor)
        .await
        .unwrap();
    assert_eq!(replaced(&first), ["203.0.113.5"]);
    assert!(first.cursor.list.as_ref().is_some_and(|v| v.file.is_some()));

    let again = pull("t", &at, &layout, &fetch, &first.cursor)
        .await
        .unwrap();
    assert!(matches!(again.change, Change::Unchanged), "{again:?}");
    assert_eq!(again.cursor, first.cursor);
    // Read another way, it is another set.
    let csv = Layout {
        format: Format::Csv,
        ..Layout::default()
    };
    let other = pull("t", &at, &csv, &fetch, &first.cursor).await.unwrap();
    assert_eq!(replaced(&other), ["203.0.113.5"]);
    // Rewritten with the same length: its times changed.
    std::fs::write(&p, "203.0.113.6\n").unwrap();
    let rewritten = pull("t", &at, &layout, &fetch, &first.cursor)
        .await
        .unwrap();
    assert_eq!(replaced(&rewritten), ["203.0.113.6"]);
}
