//! Encrypted DNS past the home's resolver: DNS over TLS (RFC 7858) and DNS
//! over QUIC (RFC 9250), both on port 853. A device resolving so never shows
//! Suricata a `dns.query`: the domain sets are blind to every name it looks
//! up. Android's Private DNS, iOS profiles and malware do it; refusing DNS
//! over TLS at once (a TCP reset) makes a client that may fall back to plain
//! DNS do so without waiting out a timeout. DNS over QUIC is dropped: the
//! ICMP error Suricata's `reject` sends for UDP never reached the device in
//! the lab (the flow it answers was never let through), so a reject would
//! only look faster.

use std::fmt::Write as _;

use super::{Options, Rules};
use crate::config::{DnsBypass, Mode};

/// The rules' metadata (`homewarden_rule encrypted_dns`): how an alert says
/// it is one of these, whatever sid base the config gives them.
pub const METADATA: (&str, &str) = ("homewarden_rule", "encrypted_dns");

/// Sid offset of the DNS-over-TLS rule.
pub const DOT: u32 = 80;
/// Sid offset of the DNS-over-QUIC rule.
pub const DOQ: u32 = 81;

const RULES: [(&str, u32, &str); 2] = [("tcp", DOT, "DNS over TLS"), ("udp", DOQ, "DNS over QUIC")];

/// What Suricata does with it over `proto`, by the config: `None` when it
/// is not looked at.
fn verb(opts: &Options, proto: &str) -> Option<&'static str> {
    match (opts.dns_bypass, opts.mode) {
        (DnsBypass::Off, _) => None,
        (DnsBypass::Alert, _) | (DnsBypass::Block, Mode::Ids) => Some("alert"),
        (DnsBypass::Block, Mode::Ips) if proto == "tcp" => Some("reject"),
        (DnsBypass::Block, Mode::Ips) => Some("drop"),
    }
}

/// `any`, or every address but `these`.
fn all_but<T: ToString>(these: &[T]) -> String {
    if these.is_empty() {
        return "any".to_string();
    }
    let v: Vec<String> = these.iter().map(ToString::to_string).collect();
    format!("![{}]", v.join(","))
}

/// The rules, unless `dns_bypass: off`: from any device not let be to any
/// resolver but the home's own (`network.dns`). One alert per flow (a
/// flowbit): a let-through DoQ session is many packets, one event.
pub(super) fn rules(r: &mut Rules, opts: &Options) {
    let from = all_but(&opts.dns_bypass_allow);
    let to = all_but(&opts.dns_trusted);
    for (proto, off, what) in RULES {
        let Some(verb) = verb(opts, proto) else {
            return;
        };
        let _ = writeln!(
            r.text,
            "{verb} {proto} {from} any -> {to} 853 (msg:\"homewarden: encrypted DNS past the home's resolver ({what}, port 853)\"; \
             flow:to_server; flowbits:isnotset,hw.encrypted_dns; flowbits:set,hw.encrypted_dns; \
             classtype:policy-violation; priority:3; metadata:{} {}; sid:{}; rev:1;)",
            METADATA.0,
            METADATA.1,
            r.base + off
        );
    }
}

/// The rule (protocol, offset, what) `sid` is, with the config's sid base.
fn rule_of(sid: u64, sid_base: u32) -> Option<(&'static str, u32, &'static str)> {
    RULES
        .into_iter()
        .find(|(_, off, _)| u64::from(sid_base + off) == sid)
}

/// Whether `sid` is one of these rules (the config's, not the ruleset's).
pub fn owns(sid: u64, sid_base: u32) -> bool {
    rule_of(sid, sid_base).is_some()
}

/// `homewarden explain SID` for one of these rules; `None` for any other sid.
pub fn explain(sid: u64, opts: &Options) -> Option<String> {
    let (proto, _, what) = rule_of(sid, opts.sid_base)?;
    let does = match verb(opts, proto) {
        None => "not loaded (enforcement.dns_bypass: off): encrypted DNS passes unseen".to_string(),
        Some("reject") => "refuses it at once (enforcement.dns_bypass: block) and reports it, without a page: Android's Private DNS on \"automatic\" then falls back to plain DNS, which the domain sets see; on \"strict\" (a named provider) that device has no DNS until it is set back to automatic or let be".to_string(),
        Some("drop") => "drops it (enforcement.dns_bypass: block) and reports it, without a page: the client waits out its attempt, then falls back to plain DNS or DNS over TLS if it can".to_string(),
        Some(_) => "reports it and lets it pass (enforcement.dns_bypass: alert, or IDS mode)".to_string(),
    };
    let list = |v: Vec<String>| v.join(", ");
    let mut allowed = String::new();
    if !opts.dns_bypass_allow.is_empty() {
        let v = opts.dns_bypass_allow.iter().map(ToString::to_string);
        allowed.push_str(&format!("\nLet be for: {}.", list(v.collect())));
    }
    if !opts.dns_trusted.is_empty() {
        let v = opts.dns_trusted.iter().map(ToString::to_string);
        allowed.push_str(&format!(
            "\nThe home's own resolvers (network.dns) are not concerned: {}.",
            list(v.collect())
        ));
    }
    Some(format!(
        "homewarden rule {sid}: encrypted DNS past the home's resolver ({what}, port 853)\n\
         A device resolving names over {what} to a server outside the home never shows a DNS query: \
         the blocked names are not seen for it.\n\
         Here it {does}.{allowed}\n\
         To let one device: add its address to enforcement.dns_bypass_allow; for every device: \
         enforcement.dns_bypass: alert (report only) or off.\n"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Action;

    fn opts(dns_bypass: DnsBypass, mode: Mode, allow: &[&str]) -> Options {
        Options {
            mode,
            action: Action::Drop,
            match_subdomains: true,
            sid_base: 1_666_000,
            flow_bypass: true,
            dns_bypass,
            dns_bypass_allow: allow.iter().map(|a| a.parse().unwrap()).collect(),
            dns_trusted: Vec::new(),
        }
    }

    fn rendered(o: &Options) -> String {
        let mut r = Rules {
            text: String::new(),
            base: o.sid_base,
            sizes: Vec::new(),
        };
        rules(&mut r, o);
        r.text
    }

    #[test]
    fn blocked_by_default_alerted_or_left_alone_as_configured() {
        let block = rendered(&opts(DnsBypass::Block, Mode::Ips, &[]));
        assert_eq!(block.lines().count(), 2);
        assert!(
            block.starts_with("reject tcp any any -> any 853 ("),
            "{block}"
        );
        assert!(block.contains("\ndrop udp any any -> any 853 ("), "{block}");
        assert!(block.contains("sid:1666080;") && block.contains("sid:1666081;"));
        assert!(block.contains("priority:3;"), "a report, not a page");
        let alert = rendered(&opts(DnsBypass::Alert, Mode::Ips, &[]));
        assert!(alert.starts_with("alert tcp any any -> any 853"), "{alert}");
        let ids = rendered(&opts(DnsBypass::Block, Mode::Ids, &[]));
        assert!(ids.starts_with("alert tcp"), "IDS never refuses");
        assert_eq!(rendered(&opts(DnsBypass::Off, Mode::Ips, &[])), "");
    }

    #[test]
    fn devices_let_be_and_the_homes_resolvers_are_left_out() {
        let mut o = opts(DnsBypass::Block, Mode::Ips, &["198.18.1.3/32", "fd00::/64"]);
        o.dns_trusted = vec!["9.9.9.9".parse().unwrap(), "2620:fe::fe".parse().unwrap()];
        let r = rendered(&o);
        assert!(
            r.starts_with(
                "reject tcp ![198.18.1.3/32,fd00::/64] any -> ![9.9.9.9,2620:fe::fe] 853"
            ),
            "{r}"
        );
        assert!(explain(1_666_080, &o)
            .unwrap()
            .contains("(network.dns) are not concerned: 9.9.9.9, 2620:fe::fe."));
    }

    #[test]
    fn explain_names_the_rule_what_it_does_here_and_how_to_change_it() {
        let o = opts(DnsBypass::Block, Mode::Ips, &["198.18.1.3/32"]);
        let x = explain(1_666_080, &o).unwrap();
        assert!(x.starts_with("homewarden rule 1666080: encrypted DNS past the home's resolver (DNS over TLS, port 853)"), "{x}");
        assert!(
            x.contains("refuses it at once") && x.contains("\"automatic\""),
            "{x}"
        );
        assert!(x.contains("Let be for: 198.18.1.3/32."), "{x}");
        assert!(x.contains("enforcement.dns_bypass_allow"), "{x}");
        let doq = explain(1_666_081, &o).unwrap();
        assert!(
            doq.contains("DNS over QUIC") && doq.contains("drops it"),
            "{doq}"
        );
        assert!(explain(1_666_082, &o).is_none());
        assert!(explain(1_666_081, &opts(DnsBypass::Off, Mode::Ips, &[]))
            .unwrap()
            .contains("not loaded"));
    }
}
