//! Is the packet path what the config asks for? The queue rule in the kernel
//! (nft table or xtables chain) with the expected fail mode and queues,
//! Suricata holding every queue, and the counters `homewarden status` shows.
//! Reading is I/O at the edge; judging is the pure [`problems`].

use serde::{Deserialize, Serialize};

use super::{Backend, PacketPath, TABLE, XT_CHAIN};
use crate::config::FailMode;

/// The queue rule as the kernel has it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueRule {
    /// `nftables` or `iptables-nft`.
    pub backend: String,
    /// First and last queue number.
    pub queues: (u16, u16),
    /// Packets pass when nobody reads the queue (`bypass`): fail-open.
    pub bypass: bool,
    /// Packets that went to the queue.
    pub packets: u64,
}

/// The packet path as last seen, for `homewarden status`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PathStatus {
    /// The forward queue rule, if there is one.
    pub queue: Option<QueueRule>,
    /// Queues a program (Suricata) has open.
    pub held: Vec<u16>,
    /// Packets of bypassed flows the kernel forwarded without Suricata.
    pub bypassed_packets: u64,
    /// Flows Suricata has bypassed, still in the kernel's table.
    pub bypassed_flows: usize,
    /// Packets the kernel could not queue (queue full), all queues.
    pub queue_full_drops: u64,
    /// `bridge` placement: br_netfilter hands bridged packets to the queue.
    pub bridge_inspected: Option<bool>,
    /// Packets Suricata passed and dropped (`ips.accepted`, `ips.blocked`), since it started.
    pub suricata_verdicts: Option<(u64, u64)>,
    /// Why the kernel's queue table could not be read (then who holds the
    /// queues is unknown, not "nobody").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue_table_error: Option<String>,
    /// What is wrong with the path; empty when it is as configured.
    pub problems: Vec<String>,
}

/// What the kernel and Suricata have of the path now.
pub async fn inspect(expected: &PacketPath) -> PathStatus {
    let mut st = PathStatus::default();
    if let Some(json) = capture("nft", &["-j", "list", "table", "inet", TABLE]).await {
        let (queue, bypassed) = parse_nft(&json);
        st.queue = queue;
        st.bypassed_packets = bypassed;
    }
    if st.queue.is_none() {
        let jump = crate::child::tokio_command("iptables-nft")
            .args(["-C", "FORWARD", "-j", XT_CHAIN])
            .output()
            .await
            .is_ok_and(|o| o.status.success());
        if jump {
            if let Some(rules) = capture("iptables-nft", &["-v", "-S", XT_CHAIN]).await {
                st.queue = parse_xt(&rules);
            }
        }
    }
    match tokio::fs::read_to_string(super::QUEUE_TABLE).await {
        Ok(text) => {
            let (held, drops) = parse_proc_queues(&text);
            st.held = held;
            st.queue_full_drops = drops;
        }
        // Not there: no queue was ever bound (the module is not loaded).
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => st.queue_table_error = Some(format!("{}: {e}", super::QUEUE_TABLE)),
    }
    if expected.flow_bypass {
        st.bypassed_flows = super::conntrack::bypassed_count().await.unwrap_or(0);
    }
    if expected.devices.bridge.is_some() {
        st.bridge_inspected = Some(super::bridge_inspected());
    }
    st.problems = problems(expected, &st);
    st
}

/// What differs from `expected`: each a sentence for status and the mail.
pub fn problems(expected: &PacketPath, st: &PathStatus) -> Vec<String> {
    let Some(q) = &st.queue else {
        return vec![
            "forwarded traffic is not queued to Suricata: nothing is inspected (homewarden firewall up)"
                .to_string(),
        ];
    };
    let mut out = Vec::new();
    if st.bridge_inspected == Some(false) {
        out.push(
            "br_netfilter is off: bridged traffic would pass uninspected, so the bridge forwards nothing (restart homewarden-network)"
                .to_string(),
        );
    }
    let has = if q.bypass {
        FailMode::Open
    } else {
        FailMode::Closed
    };
    if has != expected.fail {
        out.push(format!(
            "the queue is fail-{has} but enforcement.fail is fail-{} (homewarden firewall up)",
            expected.fail
        ));
    }
    let last = expected.queues.saturating_sub(1);
    if q.queues != (0, last) {
        out.push(format!(
            "the firewall feeds queues {}-{}, the config asks for 0-{last}",
            q.queues.0, q.queues.1
        ));
    }
    let missing: Vec<String> = (q.queues.0..=q.queues.1)
        .filter(|n| !st.held.contains(n))
        .map(|n| n.to_string())
        .collect();
    if let Some(e) = &st.queue_table_error {
        out.push(format!(
            "cannot tell whether Suricata holds the queues: {e} (homewarden firewall up makes it readable)"
        ));
    } else if !missing.is_empty() {
        out.push(format!(
            "Suricata does not hold queue {}: {}",
            missing.join(", "),
            match has {
                FailMode::Open => "its traffic passes uninspected",
                FailMode::Closed => "its traffic stops",
            }
        ));
    }
    out
}

/// The forward queue rule and the bypass counter from `nft -j list table`.
fn parse_nft(json: &str) -> (Option<QueueRule>, u64) {
    let Ok(v) = serde_json::from_str::<serde_json::Value>(json) else {
        return (None, 0);
    };
    let rules = v["nftables"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|item| item.get("rule"))
        .filter(|r| r["chain"] == "forward");
    let (mut queue, mut bypassed) = (None, 0);
    for rule in rules {
        let exprs = rule["expr"].as_array().map(Vec::as_slice).unwrap_or(&[]);
        let packets = exprs
            .iter()
            .find_map(|e| e["counter"]["packets"].as_u64())
            .unwrap_or(0);
        if let Some(q) = exprs.iter().find_map(|e| e.get("queue")) {
            let (first, last) = match &q["num"] {
                serde_json::Value::Number(n) => {
                    let n = n.as_u64().unwrap_or(0) as u16;
                    (n, n)
                }
                other => {
                    let r = &other["range"];
                    (
                        r[0].as_u64().unwrap_or(0) as u16,
                        r[1].as_u64().unwrap_or(0) as u16,
                    )
                }
            };
            let flags = &q["flags"];
            let bypass = flags == "bypass"
                || flags
                    .as_array()
                    .is_some_and(|f| f.iter().any(|x| x == "bypass"));
            queue = Some(QueueRule {
                backend: backend_name(Backend::Nft).into(),
                queues: (first, last),
                bypass,
                packets,
            });
        } else if exprs.iter().any(|e| e.get("accept").is_some()) {
            bypassed += packets;
        }
    }
    (queue, bypassed)
}

/// The NFQUEUE rule of our xtables chain (`iptables-nft -v -S`).
fn parse_xt(rules: &str) -> Option<QueueRule> {
    let line = rules.lines().find(|l| l.contains("-j NFQUEUE"))?;
    let words: Vec<&str> = line.split_whitespace().collect();
    let after = |key: &str| {
        words
            .iter()
            .position(|w| *w == key)
            .and_then(|i| words.get(i + 1))
            .copied()
    };
    let queues = if let Some(range) = after("--queue-balance") {
        let (a, b) = range.split_once(':')?;
        (a.parse().ok()?, b.parse().ok()?)
    } else {
        let n = after("--queue-num").unwrap_or("0").parse().ok()?;
        (n, n)
    };
    Some(QueueRule {
        backend: backend_name(Backend::Xtables).into(),
        queues,
        bypass: words.contains(&"--queue-bypass"),
        packets: after("-c").and_then(|n| n.parse().ok()).unwrap_or(0),
    })
}

/// Queues a program has open, and the kernel's queue-full drops, from
/// `/proc/net/netfilter/nfnetlink_queue` (one line per bound queue).
fn parse_proc_queues(text: &str) -> (Vec<u16>, u64) {
    let mut held = Vec::new();
    let mut drops = 0;
    for line in text.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if let Some(n) = f.first().and_then(|n| n.parse().ok()) {
            held.push(n);
            drops += f.get(5).and_then(|d| d.parse::<u64>().ok()).unwrap_or(0);
        }
    }
    held.sort_unstable();
    (held, drops)
}

/// How status names a backend.
pub fn backend_name(b: Backend) -> &'static str {
    match b {
        Backend::Nft => "nftables",
        Backend::Xtables => "iptables-nft",
    }
}

async fn capture(tool: &str, args: &[&str]) -> Option<String> {
    let out = crate::child::tokio_command(tool)
        .args(args)
        .output()
        .await
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Action;

    fn expected(queues: u16, fail: FailMode) -> PacketPath {
        PacketPath {
            queues,
            fail,
            flow_bypass: true,
            action: Action::Drop,
            devices: Default::default(),
            home: Vec::new(),
            quic_block: false,
        }
    }

    fn healthy(bypass: bool) -> PathStatus {
        PathStatus {
            queue: Some(QueueRule {
                backend: "nftables".into(),
                queues: (0, 1),
                bypass,
                packets: 10,
            }),
            held: vec![0, 1],
            ..PathStatus::default()
        }
    }

    #[test]
    fn a_path_as_configured_has_no_problems() {
        assert!(problems(&expected(2, FailMode::Open), &healthy(true)).is_empty());
        assert!(problems(&expected(2, FailMode::Closed), &healthy(false)).is_empty());
    }

    #[test]
    fn no_queue_rule_a_wrong_fail_mode_and_an_unheld_queue_are_problems() {
        let none = PathStatus::default();
        let p = problems(&expected(2, FailMode::Open), &none);
        assert!(p[0].contains("not queued"), "{p:?}");
        let p = problems(&expected(2, FailMode::Closed), &healthy(true));
        assert_eq!(
            p,
            ["the queue is fail-open but enforcement.fail is fail-closed (homewarden firewall up)"]
        );
        let mut st = healthy(false);
        st.held = vec![0];
        let p = problems(&expected(2, FailMode::Closed), &st);
        assert_eq!(p, ["Suricata does not hold queue 1: its traffic stops"]);
        // An unreadable queue table is said as such, not taken for "nobody holds them".
        st.queue_table_error =
            Some("/proc/net/netfilter/nfnetlink_queue: Permission denied".into());
        let p = problems(&expected(2, FailMode::Closed), &st);
        assert_eq!(p.len(), 1);
        assert!(
            p[0].starts_with("cannot tell whether Suricata holds the queues: /proc/"),
            "{p:?}"
        );
        let p = problems(&expected(4, FailMode::Closed), &healthy(false));
        assert!(
            p[0].contains("queues 0-1, the config asks for 0-3"),
            "{p:?}"
        );
    }

    #[test]
    fn reads_nft_json_for_one_queue_and_for_a_range() {
        let json = r#"{"nftables": [{"metainfo": {"version": "1.0.6"}},
          {"rule": {"family": "inet", "table": "homewarden", "chain": "forward", "handle": 7,
            "expr": [{"match": {"op": "==", "left": {"&": [{"ct": {"key": "mark"}}, 536870912]}, "right": 536870912}},
                     {"counter": {"packets": 900, "bytes": 90000}}, {"accept": null}]}},
          {"rule": {"family": "inet", "table": "homewarden", "chain": "forward", "handle": 8,
            "expr": [{"counter": {"packets": 12, "bytes": 1200}},
                     {"queue": {"num": {"range": [0, 3]}, "flags": ["bypass", "fanout"]}}]}},
          {"rule": {"family": "inet", "table": "homewarden", "chain": "input", "handle": 9,
            "expr": [{"counter": {"packets": 5, "bytes": 50}}, {"accept": null}]}}]}"#;
        let (q, bypassed) = parse_nft(json);
        assert_eq!(
            q,
            Some(QueueRule {
                backend: "nftables".into(),
                queues: (0, 3),
                bypass: true,
                packets: 12
            })
        );
        assert_eq!(bypassed, 900);
        let one =
            r#"{"nftables": [{"rule": {"chain": "forward", "expr": [{"queue": {"num": 0}}]}}]}"#;
        let q = parse_nft(one).0.unwrap();
        assert_eq!((q.queues, q.bypass), ((0, 0), false));
        let flag = r#"{"nftables": [{"rule": {"chain": "forward", "expr": [{"queue": {"num": 0, "flags": "bypass"}}]}}]}"#;
        assert!(parse_nft(flag).0.unwrap().bypass);
        assert_eq!(parse_nft("not json"), (None, 0));
    }

    #[test]
    fn reads_the_xtables_chain_and_the_kernels_queue_table() {
        let rules = "-N HOMEWARDEN\n\
            -A HOMEWARDEN -m connmark --mark 0x20000000/0x20000000 -c 7 700 -j RETURN\n\
            -A HOMEWARDEN -c 42 4200 -j NFQUEUE --queue-balance 0:1 --queue-bypass --queue-cpu-fanout\n";
        assert_eq!(
            parse_xt(rules),
            Some(QueueRule {
                backend: "iptables-nft".into(),
                queues: (0, 1),
                bypass: true,
                packets: 42
            })
        );
        let closed = "-A HOMEWARDEN -c 0 0 -j NFQUEUE --queue-num 0\n";
        assert_eq!(parse_xt(closed).unwrap().queues, (0, 0));
        assert!(!parse_xt(closed).unwrap().bypass);
        let proc = "    0  12345     0 2 65531     3     0        9  1\n    1  12346     2 2 65531     4     0       11  1\n";
        assert_eq!(parse_proc_queues(proc), (vec![0, 1], 7));
    }
}
