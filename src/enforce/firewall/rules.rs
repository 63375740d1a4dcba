//! Pure rendering of the packet path: the nftables table, the xtables
//! fallback for kernels without nft queue, and Suricata's side of it.

use std::fmt::Write as _;

use ipnet::IpNet;

#[cfg(test)]
use super::DeviceSide;
use super::{PacketPath, BYPASS_MARK, CUT_MARK, TABLE, XT_CHAIN};
use crate::config::{Action, FailMode};

/// How long the kernel remembers a bypassed flow's addresses and ports:
/// Suricata 7's fixed 100 s for a bypassed flow, and a little more.
pub const REMEMBERED_SECS: u32 = 105;

/// Where a DNS query to the Pi itself comes in: not over loopback, to port 53.
const DNS_IN: &str = "iifname != \"lo\" meta l4proto { tcp, udp } th dport 53";

/// Where the Pi's own resolver answers a device: queued too, so Suricata
/// sees the answers (the names the devices resolved, and to what).
const DNS_OUT: &str = "oifname != \"lo\" meta l4proto { tcp, udp } th sport 53";

impl PacketPath {
    /// The nft `queue` statement: our queues, and `bypass` when fail-open.
    ///
    /// Spread by the kernel's flow hash, never `fanout`: the hash is symmetric
    /// in the addresses, so both directions of a flow reach the same Suricata
    /// worker, while fan-out by CPU split them across workers and Suricata
    /// dropped packets its other worker's stream had not seen (lab:
    /// `tcp.pkt_on_wrong_thread` by the hundred thousand, `stream_error`
    /// drops, new connections stalling on retransmits).
    fn nft_queue(&self) -> String {
        let num = if self.queues > 1 {
            format!("0-{}", self.queues - 1)
        } else {
            "0".to_string()
        };
        match self.fail {
            FailMode::Open => format!("queue num {num} bypass"),
            FailMode::Closed => format!("queue num {num}"),
        }
    }

    /// The nftables table, replacing any earlier one in one transaction;
    /// `native_queue: false` leaves the queueing to the xtables chain.
    pub fn nft(&self, native_queue: bool) -> String {
        let mut t = String::new();
        // Declaring the table first makes the delete succeed on a fresh host:
        // the old table goes and the new one comes in the same transaction,
        // so no packet ever meets the path half set up.
        let _ = writeln!(t, "table inet {TABLE} {{}}\ndelete table inet {TABLE}");
        let _ = writeln!(t, "table inet {TABLE} {{");
        if self.flow_bypass {
            for (set, addr) in [("bypassed4", "ipv4_addr"), ("bypassed6", "ipv6_addr")] {
                let _ = writeln!(
                    t,
                    "    set {set} {{\n        type {addr} . {addr} . inet_proto . inet_service . inet_service\n        \
                     flags dynamic,timeout\n        timeout {REMEMBERED_SECS}s\n        size 65536\n    }}"
                );
            }
        }
        // How a flow the kernel stops ends: dropped, or reset where the owner
        // chose `reject` (a cut flow) and always for a refused connection.
        let end = |cond: &str, reset: bool| {
            let mut rules = Vec::new();
            if reset {
                rules.push(format!("{cond} meta l4proto tcp reject with tcp reset"));
            }
            rules.push(format!("{cond} drop"));
            rules
        };
        for (hook, matching) in [("forward", ""), ("input", DNS_IN), ("output", DNS_OUT)] {
            let m = |rule: String| {
                if matching.is_empty() {
                    rule
                } else {
                    format!("{matching} {rule}")
                }
            };
            let _ = writeln!(
                t,
                "    chain {hook} {{\n        type filter hook {hook} priority filter; policy accept;"
            );
            if hook == "forward" {
                // A flow that left the queue before its remote was listed.
                let cut = format!("ct mark and {CUT_MARK:#x} == {CUT_MARK:#x}");
                for rule in end(&cut, self.action == Action::Reject) {
                    let _ = writeln!(t, "        {rule}");
                }
                if self.quic_block {
                    // Port unreachable: a browser falls back to TCP at once
                    // instead of waiting out its QUIC attempt.
                    let _ = writeln!(
                        t,
                        "        udp dport 443 counter reject with icmpx type port-unreachable"
                    );
                }
            }
            if self.flow_bypass {
                // Suricata 7 remembers a bypassed flow for 100 s and would take
                // a new connection on the same addresses and ports for it,
                // passing it uninspected: the kernel refuses that connection
                // instead (the client's next one, on another port, is inspected).
                for (set, ip) in [("bypassed4", "ip"), ("bypassed6", "ip6")] {
                    for key in [
                        format!("{ip} saddr . {ip} daddr . meta l4proto . th sport . th dport"),
                        format!("{ip} daddr . {ip} saddr . meta l4proto . th dport . th sport"),
                    ] {
                        for rule in end(&format!("ct state new {key} @{set}"), true) {
                            let _ = writeln!(t, "        {}", m(rule));
                        }
                    }
                }
                // Suricata has seen what the rules need: the flow stays out of the queue.
                let _ = writeln!(
                    t,
                    "        {}",
                    m(format!(
                        "ct mark and {BYPASS_MARK:#x} == {BYPASS_MARK:#x} counter accept"
                    ))
                );
            }
            if native_queue {
                let _ = writeln!(t, "        {}", m(format!("counter {}", self.nft_queue())));
            }
            if hook == "input" {
                for rule in self.input_rules() {
                    let _ = writeln!(t, "        {rule}");
                }
            }
            let _ = writeln!(t, "    }}");
            if self.flow_bypass {
                // Suricata's verdict marks the packet of a flow it bypasses; the
                // verdict resumes at the next priority, where the mark is kept
                // in the flow's conntrack entry for every later packet, and the
                // flow's addresses and ports are remembered as long as Suricata does.
                let first = format!(
                    "meta mark and {BYPASS_MARK:#x} == {BYPASS_MARK:#x} ct mark and {BYPASS_MARK:#x} == 0 meta l4proto {{ tcp, udp }}"
                );
                let _ = writeln!(
                    t,
                    "    chain {hook}_bypassed {{\n        type filter hook {hook} priority filter + 10; policy accept;\n        \
                     {first} meta nfproto ipv4 add @bypassed4 {{ ct original ip saddr . ct original ip daddr . meta l4proto . ct original proto-src . ct original proto-dst }}\n        \
                     {first} meta nfproto ipv6 add @bypassed6 {{ ct original ip6 saddr . ct original ip6 daddr . meta l4proto . ct original proto-src . ct original proto-dst }}\n        \
                     meta mark and {BYPASS_MARK:#x} == {BYPASS_MARK:#x} ct mark set ct mark or {BYPASS_MARK:#x}\n    }}"
                );
            }
        }
        t.push_str(&self.device_sets_and_redirect());
        let _ = writeln!(t, "}}");
        // The bridge family sees frames before br_netfilter: tagged ones it
        // would not hand to the queue, and everything when it is missing.
        let _ = writeln!(t, "table bridge {TABLE} {{}}\ndelete table bridge {TABLE}");
        if let Some(inspected) = self.devices.bridge {
            let _ = writeln!(
                t,
                "table bridge {TABLE} {{\n    chain forward {{\n        type filter hook forward priority filter; policy accept;\n        \
                 ether type {{ 0x8100, 0x88a8, 0x8863, 0x8864 }} drop"
            );
            if !inspected {
                let _ = writeln!(t, "        drop");
            }
            let _ = writeln!(t, "    }}\n}}");
        }
        t
    }

    /// Input from the devices' side: on a network of their own, DHCP, DNS
    /// (queued above), ICMP, SSH from `ssh_from` and the opened ports; on a
    /// shared one, SSH only from `ssh_from` when it is set.
    fn input_rules(&self) -> Vec<String> {
        let d = &self.devices;
        let lan = format!("iifname \"{}\"", d.lan);
        let mut r = Vec::new();
        if d.own_network.is_some() {
            r.push(format!("{lan} ct state established,related accept"));
            r.push(format!("{lan} meta l4proto {{ icmp, ipv6-icmp }} accept"));
            r.push(format!("{lan} udp dport 67 accept"));
            r.push(format!(
                "{lan} meta l4proto {{ tcp, udp }} th dport 53 accept"
            ));
            for ip in ["ip", "ip6"] {
                r.push(format!("{lan} tcp dport 22 {ip} saddr @ssh_{ip} accept"));
            }
            for p in &d.open {
                r.push(format!(
                    "{lan} {} dport {} accept",
                    if p.udp { "udp" } else { "tcp" },
                    p.port
                ));
            }
            r.push(format!("{lan} drop"));
        } else if d.ssh_from.is_some() {
            for ip in ["ip", "ip6"] {
                r.push(format!(
                    "{lan} tcp dport 22 meta nfproto {} {ip} saddr != @ssh_{ip} drop",
                    if ip == "ip" { "ipv4" } else { "ipv6" }
                ));
            }
        }
        r
    }

    /// The address sets the rules name, and the DNS redirect of a network of
    /// the devices' own.
    fn device_sets_and_redirect(&self) -> String {
        let d = &self.devices;
        let mut t = String::new();
        let elements = |v: Vec<String>| {
            if v.is_empty() {
                String::new()
            } else {
                format!("\n        elements = {{ {} }}", v.join(", "))
            }
        };
        for (ip, kind) in [("ip", "ipv4_addr"), ("ip6", "ipv6_addr")] {
            let v4 = ip == "ip";
            let ssh: Vec<String> = d
                .ssh_from
                .iter()
                .flatten()
                .filter(|n| matches!(n, IpNet::V4(_)) == v4)
                .map(IpNet::to_string)
                .collect();
            let _ = writeln!(
                t,
                "    set ssh_{ip} {{\n        type {kind}\n        flags interval{}\n    }}",
                elements(ssh)
            );
        }
        if let Some(addr) = d.own_network {
            // Devices that ask another resolver get the Pi's answer: the query
            // goes through the input queue like any other.
            let _ = writeln!(
                t,
                "    chain dns_redirect {{\n        type nat hook prerouting priority dstnat; policy accept;\n        \
                 iifname \"{}\" meta nfproto ipv4 ip daddr != {addr} meta l4proto {{ tcp, udp }} th dport 53 redirect to :53\n    }}",
                d.lan
            );
        }
        t
    }

    /// iptables-nft / ip6tables-nft arguments, in order, that queue what the
    /// nft table would where the kernel has only the xtables NFQUEUE target.
    pub fn xtables(&self) -> Vec<Vec<String>> {
        let own = |s: &str| s.split_whitespace().map(str::to_string).collect::<Vec<_>>();
        let mut target = if self.queues > 1 {
            own(&format!(
                "-A {XT_CHAIN} -j NFQUEUE --queue-balance 0:{}",
                self.queues - 1
            ))
        } else {
            own(&format!("-A {XT_CHAIN} -j NFQUEUE --queue-num 0"))
        };
        if self.fail == FailMode::Open {
            target.push("--queue-bypass".into());
        }
        let mut cmds = vec![own(&format!("-N {XT_CHAIN}"))];
        if self.flow_bypass {
            cmds.push(own(&format!(
                "-A {XT_CHAIN} -m connmark --mark {BYPASS_MARK:#x}/{BYPASS_MARK:#x} -j RETURN"
            )));
        }
        cmds.push(target);
        cmds.push(own(&format!("-I FORWARD 1 -j {XT_CHAIN}")));
        for p in ["udp", "tcp"] {
            cmds.push(own(&format!(
                "-I INPUT 1 ! -i lo -p {p} --dport 53 -j {XT_CHAIN}"
            )));
            cmds.push(own(&format!(
                "-I OUTPUT 1 ! -o lo -p {p} --sport 53 -j {XT_CHAIN}"
            )));
        }
        cmds
    }

    /// Suricata's command-line arguments for this path: the queues it reads,
    /// one worker each, and the NFQ settings that must agree with the table.
    pub fn suricata_args(&self) -> Vec<String> {
        let mut a = Vec::new();
        for q in 0..self.queues {
            a.extend(["-q".to_string(), q.to_string()]);
        }
        a.extend(["--runmode".into(), "workers".into()]);
        let mut set = |k: &str, v: String| a.extend(["--set".to_string(), format!("{k}={v}")]);
        // A full queue (a flooding device, a stalled Suricata) passes packets
        // uninspected only when the owner chose fail-open.
        let open = if self.fail == FailMode::Open {
            "yes"
        } else {
            "no"
        };
        set("nfq.fail-open", open.into());
        if self.flow_bypass {
            set("nfq.bypass-mark", BYPASS_MARK.to_string());
            set("nfq.bypass-mask", BYPASS_MARK.to_string());
            // Past the stream's reassembly depth, and once a TLS session is
            // encrypted, no rule of ours can match: let the kernel forward it.
            set("stream.bypass", "yes".into());
            set(
                "app-layer.protocols.tls.encryption-handling",
                "bypass".into(),
            );
        }
        a
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(queues: u16, fail: FailMode, flow_bypass: bool) -> PacketPath {
        PacketPath {
            queues,
            fail,
            flow_bypass,
            action: Action::Drop,
            devices: DeviceSide::default(),
            home: Vec::new(),
            quic_block: false,
        }
    }

    #[test]
    fn fail_open_is_bypass_in_the_kernel_and_fail_open_in_suricata() {
        let open = path(2, FailMode::Open, true);
        let closed = path(2, FailMode::Closed, true);
        assert!(open.nft(true).contains("queue num 0-1 bypass"));
        assert!(closed.nft(true).contains("queue num 0-1\n"));
        assert!(!closed.nft(true).contains("bypass\n"));
        assert!(open
            .suricata_args()
            .contains(&"nfq.fail-open=yes".to_string()));
        assert!(closed
            .suricata_args()
            .contains(&"nfq.fail-open=no".to_string()));
        let xt = |p: &PacketPath| p.xtables().concat().join(" ");
        assert!(xt(&open).contains("--queue-balance 0:1 --queue-bypass"));
        assert!(!xt(&closed).contains("--queue-bypass"));
        assert!(path(1, FailMode::Closed, false)
            .nft(true)
            .contains("queue num 0\n"));
    }

    #[test]
    fn quic_is_refused_only_when_asked_before_anything_is_queued() {
        let mut p = path(2, FailMode::Open, true);
        assert!(!p.nft(true).contains("dport 443"));
        p.quic_block = true;
        let t = p.nft(true);
        let forward = chain(&t, "forward");
        let refuse = forward
            .iter()
            .position(|l| {
                l.trim() == "udp dport 443 counter reject with icmpx type port-unreachable"
            })
            .unwrap_or_else(|| panic!("{t}"));
        let queue = forward
            .iter()
            .position(|l| l.contains("queue num"))
            .unwrap();
        assert!(refuse < queue, "{t}");
        // The table is one nft transaction the kernel checks whole (without
        // the queue statement, which a kernel without nft_queue refuses: the
        // xtables chain queues there).
        if std::process::Command::new("nft")
            .arg("--version")
            .output()
            .is_ok()
            && unsafe { libc::geteuid() } == 0
        {
            let dir = tempfile::tempdir().unwrap();
            let file = dir.path().join("t.nft");
            std::fs::write(&file, p.nft(false)).unwrap();
            let o = std::process::Command::new("nft")
                .arg("-c")
                .arg("-f")
                .arg(&file)
                .output()
                .unwrap();
            assert!(
                o.status.success(),
                "{}\n{t}",
                String::from_utf8_lossy(&o.stderr)
            );
        }
    }

    #[test]
    fn suricatas_home_net_is_the_homes_networks_in_a_file_a_reload_reads() {
        let dump = "vars.address-groups.HOME_NET = [192.168.0.0/16,10.0.0.0/8,172.16.0.0/12]\n\
                    vars.address-groups.EXTERNAL_NET = !$HOME_NET\n\
                    vars.address-groups.HTTP_SERVERS = $HOME_NET\n\
                    vars.port-groups.HTTP_PORTS = 80\n\
                    vars.port-groups.FILE_DATA_PORTS = [$HTTP_PORTS,110,143]\n\
                    outputs.0.fast.enabled = no\n";
        let defaults = super::super::parse_vars(dump);
        assert_eq!(defaults.len(), 5, "{defaults:?}");
        let mut p = path(1, FailMode::Open, true);
        assert_eq!(p.vars_yaml(&defaults), None, "Debian's $HOME_NET stands");
        p.home = vec!["198.18.1.0/24".parse().unwrap()];
        assert_eq!(
            p.vars_yaml(&[]),
            None,
            "never a vars: section of one variable"
        );
        p.home = vec![
            "198.18.1.0/24".parse().unwrap(),
            "2001:db8:1::/64".parse().unwrap(),
        ];
        let yaml = p.vars_yaml(&defaults).unwrap();
        assert!(
            yaml.starts_with("%YAML 1.1\n---\n"),
            "Suricata's loader wants the header"
        );
        let v: serde_yaml_ng::Value = serde_yaml_ng::from_str(&yaml).unwrap();
        let a = &v["vars"]["address-groups"];
        assert_eq!(
            a["HOME_NET"].as_str(),
            Some("[198.18.1.0/24,2001:db8:1::/64]"),
            "{yaml}"
        );
        // Every other variable as Suricata's config has it: an included
        // `vars:` replaces the whole section.
        assert_eq!(a["EXTERNAL_NET"].as_str(), Some("!$HOME_NET"));
        assert_eq!(a["HTTP_SERVERS"].as_str(), Some("$HOME_NET"));
        assert_eq!(v["vars"]["port-groups"]["HTTP_PORTS"].as_str(), Some("80"));
        assert_eq!(
            v["vars"]["port-groups"]["FILE_DATA_PORTS"].as_str(),
            Some("[$HTTP_PORTS,110,143]")
        );
        let env = p.suricata_env(Some(std::path::Path::new(
            "/run/homewarden/suricata-vars.yaml",
        )));
        assert!(
            env.trim_end()
                .ends_with(" --include /run/homewarden/suricata-vars.yaml"),
            "{env}"
        );
        assert!(
            !env.contains("HOME_NET"),
            "never --set: a reload forgets it"
        );
    }

    #[test]
    fn suricata_reads_every_queue_the_table_feeds() {
        let p = path(3, FailMode::Open, true);
        let args = p.suricata_args().join(" ");
        assert!(
            args.starts_with("-q 0 -q 1 -q 2 --runmode workers"),
            "{args}"
        );
        assert!(p.nft(true).contains("queue num 0-2 "));
        assert!(p.xtables().concat().join(" ").contains("0:2"));
    }

    #[test]
    fn bypassed_flows_skip_the_queue_and_cut_ones_stop() {
        let p = path(2, FailMode::Open, true);
        let t = p.nft(true);
        let forward: Vec<&str> = chain(&t, "forward");
        // Order matters: cut, then refusing a reused bypassed flow's ports,
        // then bypass, then the queue.
        let reused: Vec<&str> = forward
            .iter()
            .copied()
            .filter(|l| l.starts_with("ct state new "))
            .collect();
        assert_eq!(reused.len(), 8, "{forward:?}");
        assert!(reused[0].ends_with("@bypassed4 meta l4proto tcp reject with tcp reset"));
        assert!(reused.iter().any(|l| l.contains("ip6 daddr . ip6 saddr")));
        let rest: Vec<&str> = forward
            .iter()
            .copied()
            .filter(|l| !l.starts_with("ct state new "))
            .collect();
        assert_eq!(
            rest,
            [
                "ct mark and 0x40000000 == 0x40000000 drop",
                "ct mark and 0x20000000 == 0x20000000 counter accept",
                "counter queue num 0-1 bypass",
            ]
        );
        assert_eq!(forward[0], rest[0]);
        assert_eq!(forward[forward.len() - 2], rest[1]);
        assert!(t.contains("timeout 105s"));
        assert!(t.contains("ct mark and 0x20000000 == 0 meta l4proto { tcp, udp } meta nfproto ipv4 add @bypassed4"));
        assert!(
            t.contains("meta mark and 0x20000000 == 0x20000000 ct mark set ct mark or 0x20000000")
        );
        assert!(p
            .suricata_args()
            .contains(&format!("nfq.bypass-mark={BYPASS_MARK}")));
        let xt = p.xtables();
        assert_eq!(
            xt[1].join(" "),
            "-A HOMEWARDEN -m connmark --mark 0x20000000/0x20000000 -j RETURN"
        );
        // Without flow bypass every packet goes to Suricata.
        let full = path(2, FailMode::Open, false);
        assert!(!full.nft(true).contains("0x20000000"));
        assert!(!full.nft(true).contains("bypassed4"));
        assert!(!full.suricata_args().join(" ").contains("bypass"));
        // The xtables fallback: the table keeps marks and cuts, the queue moves out.
        assert!(!p.nft(false).contains("queue"));
    }

    fn devices(yaml: &str) -> PacketPath {
        let cfg = crate::config::Config::parse(yaml, std::path::Path::new("/x.yaml")).unwrap();
        PacketPath {
            devices: DeviceSide::from_config(&cfg.network),
            ..path(1, FailMode::Open, true)
        }
    }

    fn chain<'a>(t: &'a str, name: &str) -> Vec<&'a str> {
        t.split(&format!("chain {name} {{"))
            .nth(1)
            .map(|c| c.split("\n    }").next().unwrap_or(""))
            .unwrap_or("")
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with("type "))
            .collect()
    }

    #[test]
    fn the_pis_own_dns_answers_are_queued_too() {
        let p = path(2, FailMode::Closed, true);
        let t = p.nft(true);
        let output = chain(&t, "output");
        assert_eq!(
            output.last().copied(),
            Some("oifname != \"lo\" meta l4proto { tcp, udp } th sport 53 counter queue num 0-1")
        );
        // Nothing but DNS answers leaves the Pi through the queue.
        assert!(output.iter().all(|l| l.starts_with(DNS_OUT)), "{output:?}");
        let xt = p.xtables().concat().join(" ");
        assert!(
            xt.contains("-I OUTPUT 1 ! -o lo -p udp --sport 53 -j HOMEWARDEN"),
            "{xt}"
        );
        assert!(
            xt.contains("-I OUTPUT 1 ! -o lo -p tcp --sport 53 -j HOMEWARDEN"),
            "{xt}"
        );
    }

    #[test]
    fn devices_with_a_network_of_their_own_reach_only_dhcp_dns_and_what_is_opened() {
        let p = devices(
            "network: { placement: ap, lan: wlan0, lan_open: [tcp/8123], dns: [192.0.2.53] }",
        );
        let t = p.nft(true);
        let input = chain(&t, "input");
        let own: Vec<&str> = input
            .iter()
            .copied()
            .filter(|l| l.starts_with("iifname \"wlan0\""))
            .collect();
        assert_eq!(
            own,
            [
                "iifname \"wlan0\" ct state established,related accept",
                "iifname \"wlan0\" meta l4proto { icmp, ipv6-icmp } accept",
                "iifname \"wlan0\" udp dport 67 accept",
                "iifname \"wlan0\" meta l4proto { tcp, udp } th dport 53 accept",
                "iifname \"wlan0\" tcp dport 22 ip saddr @ssh_ip accept",
                "iifname \"wlan0\" tcp dport 22 ip6 saddr @ssh_ip6 accept",
                "iifname \"wlan0\" tcp dport 8123 accept",
                "iifname \"wlan0\" drop",
            ]
        );
        // The DNS queue comes first: queries to the Pi are inspected before they are accepted.
        assert!(input[..input.len() - own.len()]
            .iter()
            .all(|l| l.starts_with("iifname != \"lo\"")));
        assert!(t.contains("set ssh_ip {\n        type ipv4_addr\n        flags interval\n    }"));
        assert!(t.contains(
            "ip daddr != 192.168.73.1 meta l4proto { tcp, udp } th dport 53 redirect to :53"
        ));
        let forward = chain(&t, "forward");
        assert!(forward[0].starts_with("ct mark and 0x40000000"));
        // Encrypted DNS is Suricata's to judge (and report), not the firewall's.
        assert!(!t.contains("853"), "{t}");
        assert!(!t.contains("table bridge homewarden {\n"));
    }

    #[test]
    fn devices_sharing_the_owners_network_keep_ssh_unless_restricted() {
        let shared = devices("network: { placement: gateway, uplink: eth0, lan: eth0 }").nft(true);
        assert!(!shared.contains("iifname \"eth0\""), "{shared}");
        assert!(!shared.contains("redirect"));
        let restricted = devices(
            "network: { placement: gateway, uplink: eth0, lan: eth0, ssh_from: [192.168.1.10/32, 2001:db8::/64] }",
        )
        .nft(true);
        let input = chain(&restricted, "input");
        assert_eq!(
            input[input.len() - 2..],
            [
                "iifname \"eth0\" tcp dport 22 meta nfproto ipv4 ip saddr != @ssh_ip drop",
                "iifname \"eth0\" tcp dport 22 meta nfproto ipv6 ip6 saddr != @ssh_ip6 drop",
            ]
        );
        assert!(restricted.contains("elements = { 192.168.1.10/32 }"));
        assert!(restricted.contains("elements = { 2001:db8::/64 }"));
    }

    #[test]
    fn a_bridge_drops_tagged_frames_and_forwards_nothing_without_br_netfilter() {
        let mut p = devices("network: { placement: bridge, uplink: eth0, lan: eth1 }");
        assert_eq!(p.devices.lan, "hwbr0");
        p.devices.bridge = Some(true);
        let t = p.nft(true);
        let bridge = chain(
            &t[t.find("table bridge homewarden {\n").unwrap()..],
            "forward",
        );
        assert_eq!(
            bridge,
            ["ether type { 0x8100, 0x88a8, 0x8863, 0x8864 } drop"]
        );
        p.devices.bridge = Some(false);
        let t = p.nft(true);
        let bridge = chain(
            &t[t.find("table bridge homewarden {\n").unwrap()..],
            "forward",
        );
        assert_eq!(bridge.last(), Some(&"drop"));
    }

    #[test]
    fn reject_answers_a_cut_flow() {
        let mut p = path(1, FailMode::Open, true);
        p.action = Action::Reject;
        assert!(p.nft(true).contains("reject with tcp reset"));
    }
}
