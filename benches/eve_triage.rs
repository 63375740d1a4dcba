//! Eve records parsed and triaged per second on one core (README figure; target ≥ 200k/s).
//!
//!   cargo bench --bench eve_triage
//!
//! The records are what Suricata writes for our rules and for common ET rules:
//! a storm from a few infected devices (most alerts count into open incidents)
//! plus a scan touching many distinct remotes (new incidents).

use std::hint::black_box;
use std::time::Instant;

use homewarden::alerts::eve;
use homewarden::alerts::triage::{Outcome, Settings, Triage};

const RECORDS: usize = 1_000_000;

fn line(i: usize) -> String {
    let device = 2 + i % 8;
    let (sid, sig, cat, remote, meta) = if i % 10 == 0 {
        (
            2_010_935,
            "ET SCAN Suspicious inbound to MSSQL port 1433",
            "Potentially Bad Traffic",
            format!("203.0.{}.{}", (i / 256) % 256, i % 256),
            String::new(),
        )
    } else {
        (
            1_666_001,
            "homewarden: IPv4 destination on blocklist",
            "A Network Trojan was detected",
            format!("198.51.100.{}", i % 16),
            r#","metadata":{"homewarden_kind":["ipv4"],"homewarden_source":["misp"]}"#.to_string(),
        )
    };
    let secs = i / 10_000;
    format!(
        r#"{{"timestamp":"2026-11-25T10:{:02}:{:02}.{:06}+0000","flow_id":{},"in_iface":"pi-iot","event_type":"alert","src_ip":"198.18.1.{device}","src_port":{},"dest_ip":"{remote}","dest_port":80,"proto":"TCP","pkt_src":"wire/pcap","alert":{{"action":"blocked","gid":1,"signature_id":{sid},"rev":1,"signature":"{sig}","category":"{cat}","severity":1{meta}}},"app_proto":"http","direction":"to_server","flow":{{"pkts_toserver":1,"pkts_toclient":0,"bytes_toserver":74,"bytes_toclient":0,"start":"2026-11-25T10:00:00.000000+0000"}}}}"#,
        secs / 60 % 60,
        secs % 60,
        i % 1_000_000,
        1_000_000_000 + i,
        30_000 + i % 30_000
    )
}

fn main() {
    let lines: Vec<String> = (0..RECORDS).map(line).collect();
    let bytes: usize = lines.iter().map(String::len).sum();
    let mut best = f64::MAX;
    let (mut new, mut counted) = (0, 0);
    for _ in 0..3 {
        let mut triage = Triage::new(Settings::default());
        (new, counted) = (0, 0);
        let start = Instant::now();
        for l in &lines {
            let Ok(a) = eve::parse(l.as_bytes()) else {
                panic!("bench record does not parse: {l}")
            };
            match black_box(triage.ingest(&a, &|_| None)) {
                Outcome::New(_) => new += 1,
                Outcome::Counted(_) => counted += 1,
            }
        }
        best = best.min(start.elapsed().as_secs_f64());
    }
    println!(
        "eve parse + triage, one core: {RECORDS} records ({} MB) in {best:.3} s = {:.0} records/s ({new} new incidents, {counted} counted)",
        bytes / 1_000_000,
        RECORDS as f64 / best
    );
}
