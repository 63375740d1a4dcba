//! Cutting flows: a flow Suricata let out of the queue is never inspected
//! again, so when its remote address becomes listed the kernel must stop it.
//! The agent lists the conntrack entries and marks the ones touching a listed
//! address; the firewall drops (or resets) marked flows before anything else.
//!
//! Every flow, not only the marked ones: Suricata 7 remembers a bypassed flow
//! for a fixed 100 s and takes a new connection on the same addresses and
//! ports for it, so that connection reaches Suricata unmarked but is not
//! inspected either. Flows Suricata does inspect are dropped there anyway.

use std::net::IpAddr;

use std::process::Stdio;

use tokio::io::{AsyncBufReadExt, BufReader};

use super::{first_line, FirewallError, BYPASS_MARK, CUT_MARK};

/// Most flows cut in one pass: beyond this a list change is a new set, not
/// a few late additions, and the rest is logged rather than waited for.
pub const MAX_CUT: usize = 512;

/// The original direction of one conntrack entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Flow {
    /// Protocol name as conntrack prints it (`tcp`, `udp`, `icmp`…).
    pub proto: String,
    /// Who opened it.
    pub src: IpAddr,
    /// Whom it went to.
    pub dst: IpAddr,
    /// Ports, for protocols that have them.
    pub ports: Option<(u16, u16)>,
    /// Already cut.
    pub cut: bool,
}

impl Flow {
    /// True if either end is `listed`.
    pub fn touches(&self, listed: &impl Fn(IpAddr) -> bool) -> bool {
        listed(self.src) || listed(self.dst)
    }
}

/// One line of `conntrack -L`; `None` for a line it does not understand.
fn parse_line(line: &str) -> Option<Flow> {
    let mut words = line.split_whitespace();
    let proto = words.next()?.to_string();
    let (mut src, mut dst, mut sport, mut dport, mut mark) = (None, None, None, None, 0u32);
    for w in words {
        let Some((k, v)) = w.split_once('=') else {
            continue;
        };
        // The first of each key is the original direction; the reply's follow.
        match k {
            "src" if src.is_none() => src = v.parse().ok(),
            "dst" if dst.is_none() => dst = v.parse().ok(),
            "sport" if sport.is_none() => sport = v.parse().ok(),
            "dport" if dport.is_none() => dport = v.parse().ok(),
            "mark" => mark = v.parse().unwrap_or(0),
            _ => {}
        }
    }
    Some(Flow {
        proto,
        src: src?,
        dst: dst?,
        ports: sport.zip(dport),
        cut: mark & CUT_MARK != 0,
    })
}

/// The flows the kernel tracks that touch an address `listed` holds, IPv4
/// and IPv6. The table is read as a stream: a busy Pi tracks hundreds of
/// thousands of flows, and only the few that matter are kept.
pub async fn touching(listed: impl Fn(IpAddr) -> bool) -> Result<Vec<Flow>, FirewallError> {
    let mut flows = Vec::new();
    let mut beyond = 0usize;
    for family in ["ipv4", "ipv6"] {
        each_line(&["-L", "-f", family], |line| {
            if let Some(f) = parse_line(line).filter(|f| !f.cut && f.touches(&listed)) {
                if flows.len() < MAX_CUT {
                    flows.push(f);
                } else {
                    beyond += 1;
                }
            }
        })
        .await?;
    }
    if beyond > 0 {
        tracing::warn!(
            cut = MAX_CUT,
            left = beyond,
            "more flows to listed addresses than one pass cuts; the rest end by themselves"
        );
    }
    Ok(flows)
}

/// How many IPv4 flows Suricata has bypassed, counted as the table streams by.
pub async fn bypassed_count() -> Result<usize, FirewallError> {
    let mark = format!("{BYPASS_MARK:#x}/{BYPASS_MARK:#x}");
    let mut n = 0;
    each_line(&["-L", "-m", &mark], |_| n += 1).await?;
    Ok(n)
}

/// Runs `conntrack` and hands each line of its output to `f` as it comes.
async fn each_line(args: &[&str], mut f: impl FnMut(&str)) -> Result<(), FirewallError> {
    let mut child = crate::child::tokio_command("conntrack")
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| failed(e.to_string()))?;
    if let Some(out) = child.stdout.take() {
        let mut lines = BufReader::new(out).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            f(&line);
        }
    }
    let out = child
        .wait_with_output()
        .await
        .map_err(|e| failed(e.to_string()))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(failed(first_line(&out.stderr)))
    }
}

/// Marks each flow as cut; returns how many the kernel updated.
pub async fn cut(flows: &[Flow]) -> usize {
    let mark = format!("{CUT_MARK:#x}/{CUT_MARK:#x}");
    let mut n = 0;
    for f in flows {
        let family = if f.src.is_ipv4() { "ipv4" } else { "ipv6" };
        let (src, dst) = (f.src.to_string(), f.dst.to_string());
        let mut args = vec![
            "-U", "-f", family, "-p", &f.proto, "-s", &src, "-d", &dst, "-m", &mark,
        ];
        let ports = f.ports.map(|(s, d)| (s.to_string(), d.to_string()));
        if let Some((s, d)) = &ports {
            args.extend(["--sport", s, "--dport", d]);
        }
        // Gone in between (it ended by itself) is not a failure.
        if conntrack(&args).await.is_ok() {
            n += 1;
        }
    }
    n
}

async fn conntrack(args: &[&str]) -> Result<String, FirewallError> {
    let out = crate::child::tokio_command("conntrack")
        .args(args)
        .output()
        .await
        .map_err(|e| failed(e.to_string()))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(failed(first_line(&out.stderr)))
    }
}

fn failed(message: String) -> FirewallError {
    FirewallError::Tool {
        tool: "conntrack".into(),
        message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_original_direction_and_the_cut_bit() {
        let text = "\
tcp      6 431999 ESTABLISHED src=198.18.1.2 dst=203.0.113.67 sport=40000 dport=5201 src=203.0.113.67 dst=198.18.1.2 sport=5201 dport=40000 [ASSURED] mark=536870912 use=1
udp      17 29 src=198.18.1.2 dst=203.0.113.53 sport=5353 dport=53 [UNREPLIED] src=203.0.113.53 dst=198.18.1.2 sport=53 dport=5353 mark=1610612736 use=1
icmp     1 29 src=2001:db8::2 dst=2001:db8::1 type=8 code=0 id=7 src=2001:db8::1 dst=2001:db8::2 type=0 code=0 id=7 mark=536870912 use=1
garbage line
";
        let flows: Vec<Flow> = text.lines().filter_map(parse_line).collect();
        assert_eq!(flows.len(), 3);
        assert_eq!(
            flows[0],
            Flow {
                proto: "tcp".into(),
                src: "198.18.1.2".parse().unwrap(),
                dst: "203.0.113.67".parse().unwrap(),
                ports: Some((40000, 5201)),
                cut: false,
            }
        );
        assert!(flows[1].cut);
        assert_eq!(flows[2].ports, None);
        let listed: IpAddr = "203.0.113.67".parse().unwrap();
        assert!(flows[0].touches(&|a| a == listed));
        assert!(!flows[1].touches(&|a| a == listed));
    }
}
