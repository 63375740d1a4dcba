//! Plain lists: one IP, CIDR, domain, URL or hash per line; CSV with a chosen
//! column; hosts-file lines (`0.0.0.0 evil.example`).

use std::time::Duration;

use super::fetch::Location;
use super::{Change, Collector, Cursor, IntelError, Pulled};

/// Pulls a list and replaces the source's set with it.
pub async fn pull(
    name: &str,
    location: &Location,
    column: usize,
    http: &reqwest::Client,
    timeout: Duration,
) -> Result<Pulled, IntelError> {
    let mut c = Collector::new(name);
    location
        .for_each_line(http, timeout, |line| parse_line(line, column, &mut c))
        .await?;
    Ok(Pulled {
        change: Change::Replace(c.set),
        stats: c.stats,
        cursor: Cursor::default(),
    })
}

/// Parses list text into a collector.
pub fn parse_into(text: &str, column: usize, c: &mut Collector<'_>) {
    for line in text.lines() {
        parse_line(line, column, c);
    }
}

/// Parses one line of a list.
fn parse_line(line: &str, column: usize, c: &mut Collector<'_>) {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') || line.starts_with("//") || line.starts_with(';') {
        return;
    }
    // Trailing comments, as in many public lists ("1.2.3.4 # botnet").
    let line = line.split(" #").next().unwrap_or(line).trim();
    if let Some(v) = value_of(line, column) {
        c.value(None, v, None, None);
    }
}

/// Picks the value out of one line.
fn value_of(line: &str, column: usize) -> Option<&str> {
    if line.contains(',') {
        let field = line.split(',').nth(column)?.trim();
        let field = field
            .strip_prefix('"')
            .and_then(|f| f.strip_suffix('"'))
            .unwrap_or(field);
        return Some(field);
    }
    let mut words = line.split_whitespace();
    let first = words.next()?;
    match (first, words.next()) {
        // hosts-file format: the sinkhole address, then the name.
        ("0.0.0.0" | "127.0.0.1" | "::" | "::1", Some(name)) => Some(name),
        _ => Some(line),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collect(text: &str, column: usize) -> (Vec<String>, u64) {
        let mut c = Collector::new("t");
        parse_into(text, column, &mut c);
        let vals = c.set.entries().iter().map(|e| e.ioc.to_string()).collect();
        (vals, c.stats.rejected.values().sum())
    }

    #[test]
    fn plain_lines_comments_and_hosts_format() {
        let (v, bad) = collect(
            "# header\r\n203.0.113.5\n\n203.0.113.0/28 # a /28\n0.0.0.0 ads.evil.example\nEVIL.example\nnot valid!\n; comment\n",
            0,
        );
        assert_eq!(
            v,
            [
                "203.0.113.5",
                "203.0.113.0/28",
                "ads.evil.example",
                "evil.example"
            ]
        );
        assert_eq!(bad, 1);
    }

    #[test]
    fn csv_column_and_quotes() {
        let (v, bad) = collect(
            "first_seen,ip,port\n2024-01-01,\"203.0.113.9\",443\n2024-01-02,198.51.100.1,80\n",
            1,
        );
        assert_eq!(v, ["203.0.113.9", "198.51.100.1"]);
        // The header line counts as one refused value, nothing more.
        assert_eq!(bad, 1);
    }

    #[tokio::test]
    async fn pulls_from_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("l.txt");
        std::fs::write(&p, "203.0.113.5\n").unwrap();
        let http = reqwest::Client::new();
        let pulled = pull("t", &Location::Path(p), 0, &http, Duration::from_secs(5))
            .await
            .unwrap();
        match pulled.change {
            Change::Replace(s) => assert_eq!(s.len(), 1),
            Change::Patch { .. } => panic!("a list replaces"),
        }
        let missing = pull(
            "t",
            &Location::Path(dir.path().join("nope")),
            0,
            &http,
            Duration::from_secs(5),
        )
        .await;
        assert!(missing.unwrap_err().to_string().contains("nope"));
    }
}
