//! Suricata eve records: parsed with serde into typed alerts. Anything else
//! (other event types, malformed or hostile lines) is skipped and counted,
//! never fatal.

use std::collections::BTreeMap;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

/// Longest text we keep from any eve field: enough for a signature or a name,
/// small enough that a hostile line cannot balloon memory or a mail.
pub const MAX_FIELD: usize = 256;

/// One alert (or drop) Suricata raised.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Alert {
    /// Event time, seconds since the epoch (from the record's own timestamp).
    pub time: i64,
    /// Suricata's flow id.
    pub flow_id: Option<u64>,
    /// Source address.
    pub src: IpAddr,
    /// Source port, if the protocol has ports.
    pub src_port: Option<u16>,
    /// Destination address.
    pub dst: IpAddr,
    /// Destination port.
    pub dst_port: Option<u16>,
    /// Transport protocol (`TCP`, `UDP`…).
    pub proto: String,
    /// `blocked` or `allowed`.
    pub action: String,
    /// Signature id.
    pub sid: u32,
    /// Signature text.
    pub signature: String,
    /// Classification.
    pub category: String,
    /// 1 (high) … 4.
    pub severity: u8,
    /// Rule metadata (`homewarden_kind` for our own rules).
    pub metadata: BTreeMap<String, Vec<String>>,
    /// The name involved, if any: DNS query, TLS or QUIC SNI, or HTTP host.
    pub hostname: Option<String>,
}

/// Why a line was not an alert.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Skip {
    /// A valid record of another type (flow, stats…).
    OtherType,
    /// Not a JSON object we understand.
    Malformed(String),
}

#[derive(Deserialize)]
struct Raw {
    event_type: String,
    timestamp: Option<String>,
    flow_id: Option<u64>,
    src_ip: Option<String>,
    src_port: Option<u16>,
    dest_ip: Option<String>,
    dest_port: Option<u16>,
    proto: Option<String>,
    alert: Option<RawAlert>,
    dns: Option<serde_json::Value>,
    tls: Option<RawTls>,
    quic: Option<RawTls>,
    http: Option<RawHttp>,
}

#[derive(Deserialize)]
struct RawAlert {
    action: Option<String>,
    signature_id: u32,
    #[serde(default)]
    signature: String,
    #[serde(default)]
    category: String,
    #[serde(default = "low")]
    severity: u8,
    #[serde(default)]
    metadata: BTreeMap<String, Vec<String>>,
}

fn low() -> u8 {
    3
}

#[derive(Deserialize)]
struct RawTls {
    sni: Option<String>,
}

#[derive(Deserialize)]
struct RawHttp {
    hostname: Option<String>,
}

/// Parses one eve line. Invalid UTF-8, truncated JSON and missing fields are
/// [`Skip::Malformed`]; records that are not alerts are [`Skip::OtherType`].
pub fn parse(line: &[u8]) -> Result<Alert, Skip> {
    let raw: Raw = serde_json::from_slice(line).map_err(|e| Skip::Malformed(e.to_string()))?;
    if raw.event_type != "alert" {
        return Err(Skip::OtherType);
    }
    let a = raw
        .alert
        .ok_or_else(|| Skip::Malformed("alert record without `alert`".into()))?;
    let ip = |v: Option<String>, f: &str| {
        v.and_then(|s| s.parse::<IpAddr>().ok())
            .ok_or_else(|| Skip::Malformed(format!("missing or bad {f}")))
    };
    let time = raw
        .timestamp
        .as_deref()
        .and_then(parse_timestamp)
        .ok_or_else(|| Skip::Malformed("missing or bad timestamp".into()))?;
    let hostname = dns_name(raw.dns.as_ref())
        .or(raw.tls.and_then(|t| t.sni))
        .or(raw.quic.and_then(|q| q.sni))
        .or(raw.http.and_then(|h| h.hostname))
        .map(|h| clip(&h));
    Ok(Alert {
        time,
        flow_id: raw.flow_id,
        src: ip(raw.src_ip, "src_ip")?,
        src_port: raw.src_port,
        dst: ip(raw.dest_ip, "dest_ip")?,
        dst_port: raw.dest_port,
        proto: clip(raw.proto.as_deref().unwrap_or("")),
        action: clip(a.action.as_deref().unwrap_or("allowed")),
        sid: a.signature_id,
        signature: clip(&a.signature),
        category: clip(&a.category),
        severity: a.severity,
        metadata: a
            .metadata
            .into_iter()
            .take(32)
            .map(|(k, v)| (clip(&k), v.iter().take(16).map(|s| clip(s)).collect()))
            .collect(),
        hostname,
    })
}

/// The queried name of a DNS alert: eve 7 writes `dns.query[].rrname`, eve 8 `dns.queries[].rrname`.
fn dns_name(dns: Option<&serde_json::Value>) -> Option<String> {
    let dns = dns?;
    for key in ["query", "queries"] {
        if let Some(name) = dns
            .get(key)
            .and_then(|q| q.get(0))
            .and_then(|q| q.get("rrname"))
            .and_then(|n| n.as_str())
        {
            return Some(name.to_string());
        }
    }
    dns.get("rrname")
        .and_then(|n| n.as_str())
        .map(str::to_string)
}

/// Bounds a field and drops control and bidi-override characters (they have no
/// business in a mail, a log line or status).
fn clip(s: &str) -> String {
    crate::untrusted::inert(s, MAX_FIELD)
}

/// Parses Suricata's `2026-11-25T03:50:26.154016+0000` into seconds since the epoch.
pub fn parse_timestamp(ts: &str) -> Option<i64> {
    let b = ts.as_bytes();
    if b.len() < 19
        || b[4] != b'-'
        || b[7] != b'-'
        || b[10] != b'T'
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let num = |r: std::ops::Range<usize>| ts.get(r)?.parse::<i64>().ok();
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, s) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || s > 60 {
        return None;
    }
    // Offset: the last five characters, `+hhmm` or `-hhmm` (Suricata always writes one).
    let offset = match ts.len().checked_sub(5).and_then(|i| ts.get(i..)) {
        Some(o) if o.starts_with('+') || o.starts_with('-') => {
            let sign = if o.starts_with('-') { -1 } else { 1 };
            sign * (num(ts.len() - 4..ts.len() - 2)? * 3600 + num(ts.len() - 2..ts.len())? * 60)
        }
        _ => 0,
    };
    Some(crate::civil::days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + s - offset)
}

/// Seconds since the epoch as `2026-11-25 03:50:26 UTC` (for people: mails, status).
pub fn format_timestamp(t: i64) -> String {
    let (days, secs) = (t.div_euclid(86400), t.rem_euclid(86400));
    let (y, m, d) = crate::civil::civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} UTC",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formatted_timestamps_parse_back() {
        for t in [0, 951_782_400, 1_795_578_626, 4_102_444_799] {
            let f = format_timestamp(t);
            let iso = format!("{}T{}+0000", &f[..10], &f[11..19]);
            assert_eq!(parse_timestamp(&iso), Some(t), "{f}");
        }
        assert_eq!(format_timestamp(951_782_400), "2000-02-29 00:00:00 UTC");
    }

    const ALERT: &str = r#"{"timestamp":"2026-11-25T03:50:26.154016+0000","flow_id":351376889538518,"event_type":"alert","src_ip":"198.18.1.2","src_port":34388,"dest_ip":"203.0.113.66","dest_port":80,"proto":"TCP","pkt_src":"wire/pcap","alert":{"action":"blocked","gid":1,"signature_id":1666001,"rev":1,"signature":"homewarden: IPv4 destination on blocklist","category":"A Network Trojan was detected","severity":1,"metadata":{"homewarden_kind":["ipv4"]}},"app_proto":"failed","direction":"to_server","flow":{"pkts_toserver":1}}"#;

    #[test]
    fn parses_a_real_drop_alert() {
        let a = parse(ALERT.as_bytes()).unwrap();
        assert_eq!(a.sid, 1666001);
        assert_eq!(a.action, "blocked");
        assert_eq!(a.severity, 1);
        assert_eq!(a.dst.to_string(), "203.0.113.66");
        assert_eq!(a.metadata["homewarden_kind"], ["ipv4"]);
        assert_eq!(a.time, 1_795_578_626);
        assert_eq!(a.hostname, None);
    }

    #[test]
    fn names_from_dns_tls_and_http() {
        let with = |extra: &str| {
            let line = ALERT.replacen("\"app_proto\"", &format!("{extra},\"app_proto\""), 1);
            parse(line.as_bytes()).unwrap().hostname
        };
        assert_eq!(
            with(r#""dns":{"query":[{"type":"query","rrname":"c2.lab-evil.test","rrtype":"A"}]}"#)
                .as_deref(),
            Some("c2.lab-evil.test")
        );
        assert_eq!(
            with(r#""dns":{"queries":[{"rrname":"x.example"}]}"#).as_deref(),
            Some("x.example")
        );
        assert_eq!(
            with(r#""tls":{"sni":"evil.example"}"#).as_deref(),
            Some("evil.example")
        );
        assert_eq!(
            with(r#""http":{"hostname":"evil.example","url":"/"}"#).as_deref(),
            Some("evil.example")
        );
        // As Suricata 7 logs a QUIC alert's app-layer metadata.
        assert_eq!(
            with(r#""quic":{"version":"1","sni":"evil.example","ua":"x"}"#).as_deref(),
            Some("evil.example")
        );
    }

    #[test]
    fn other_records_and_garbage_are_skipped() {
        assert_eq!(
            parse(br#"{"event_type":"flow","timestamp":"2026-11-25T03:50:26.1+0000"}"#),
            Err(Skip::OtherType)
        );
        for bad in [
            &b"not json"[..],
            &ALERT.as_bytes()[..ALERT.len() / 2],
            b"{\"event_type\":\"alert\"}",
            b"{\"event_type\":\"alert\",\"timestamp\":\"x\",\"src_ip\":\"1.2.3.4\",\"dest_ip\":\"1.2.3.4\",\"alert\":{\"signature_id\":1}}",
            b"{\"event_type\":\"alert\",\"signature\":\"\xff\xfe\"}",
            b"",
        ] {
            assert!(matches!(parse(bad), Err(Skip::Malformed(_))), "{:?}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn hostile_fields_are_bounded_and_stripped() {
        let long = "A".repeat(100_000);
        let line = ALERT.replace(
            "homewarden: IPv4 destination on blocklist",
            &format!("<b>{long}</b>\\u0000\\n"),
        );
        let a = parse(line.as_bytes()).unwrap();
        assert_eq!(a.signature.chars().count(), MAX_FIELD);
        assert!(!a.signature.contains('\n') && !a.signature.contains('\0'));
        // A right-to-left override would make "gnp.exe" read as "exe.png" in status and logs.
        let line = ALERT.replace("homewarden: IPv4", "\\u202egnp.exe IPv4");
        let a = parse(line.as_bytes()).unwrap();
        assert!(a.signature.starts_with("gnp.exe IPv4"), "{}", a.signature);
    }

    #[test]
    fn timestamps_with_offsets() {
        assert_eq!(parse_timestamp("1970-01-01T00:00:00.000000+0000"), Some(0));
        assert_eq!(parse_timestamp("1970-01-01T01:00:00.000000+0100"), Some(0));
        assert_eq!(
            parse_timestamp("2000-03-01T00:00:00.5-0030"),
            Some(951_868_800 + 1800)
        );
        assert_eq!(parse_timestamp("2026-13-01T00:00:00+0000"), None);
        assert_eq!(parse_timestamp("garbage"), None);
    }
}
