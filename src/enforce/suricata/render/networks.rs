//! Networks too wide for a dataset (a Spamhaus DROP /11 would be two million
//! entries) become address groups in a few rules. Suricata's IP-only engine
//! keeps them in a radix tree, so a rule of 300 networks costs a lookup, not
//! 300 comparisons. The networks are printed from parsed values (digits,
//! dots, colons and a prefix length): nothing a feed wrote reaches a rule.

use std::fmt::Write as _;

use ipnet::IpNet;

use super::Rules;
use crate::intel::set::WideNet;

/// Longest address group in one rule: Suricata refuses rules over 8,192
/// bytes; the rest of the rule takes under 300.
const MAX_GROUP: usize = 7_000;
/// Sid offsets of each block: destination and source, IPv4 and IPv6; a
/// block holds at most [`RULES_PER_BLOCK`] rules.
const BLOCKS: [(u32, &str, bool); 4] = [
    (0, "destination", true),
    (100, "source", true),
    (200, "destination", false),
    (300, "source", false),
];
/// Rules one block may take: 10,000 IPv6 networks of the longest form
/// (~45 bytes with their comma) need 65.
const RULES_PER_BLOCK: usize = 100;

/// Writes the rules for `wide` at sid offsets `base..base + 400`.
pub(super) fn rules(
    r: &mut Rules,
    action: &str,
    wide: &[WideNet],
    base: u32,
    what: &str,
    kind: &str,
) {
    for (block, dir, v4) in BLOCKS {
        let nets = wide.iter().filter(|w| w.net.addr().is_ipv4() == v4);
        for (i, group) in groups(nets).into_iter().take(RULES_PER_BLOCK).enumerate() {
            let (src, dst) = if dir == "destination" {
                ("any", group.as_str())
            } else {
                (group.as_str(), "any")
            };
            let _ = writeln!(
                r.text,
                "{action} ip {src} any -> {dst} any (msg:\"homewarden: {} {dir} in {what} network\"; \
                 classtype:trojan-activity; metadata:homewarden_kind {kind}; sid:{}; rev:1;)",
                if v4 { "IPv4" } else { "IPv6" },
                r.base + base + block + i as u32
            );
        }
    }
}

/// Address groups of at most [`MAX_GROUP`] bytes; a network and its
/// exceptions stay in one group, where Suricata takes the exceptions out
/// of the group's networks.
fn groups<'a>(nets: impl Iterator<Item = &'a WideNet>) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    for w in nets {
        let mut entry = w.net.to_string();
        for e in &w.except {
            let _ = write!(entry, ",!{}", display(e));
        }
        if !cur.is_empty() && cur.len() + entry.len() + 3 > MAX_GROUP {
            out.push(format!("[{cur}]"));
            cur.clear();
        }
        if !cur.is_empty() {
            cur.push(',');
        }
        cur.push_str(&entry);
    }
    if !cur.is_empty() {
        out.push(format!("[{cur}]"));
    }
    out
}

/// A host route as a bare address (how Suricata prints it back).
fn display(n: &IpNet) -> String {
    if n.prefix_len() == n.max_prefix_len() {
        n.addr().to_string()
    } else {
        n.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wide(net: &str, except: &[&str]) -> WideNet {
        WideNet {
            net: net.parse().unwrap(),
            except: except.iter().map(|e| e.parse().unwrap()).collect(),
        }
    }

    #[test]
    fn groups_stay_under_the_rule_limit_and_keep_exceptions_with_their_network() {
        let nets: Vec<WideNet> = (0..2000u32)
            .map(|i| {
                wide(
                    &format!("{}.{}.0.0/16", 11 + i / 256, i % 256),
                    &["11.0.0.1/32"],
                )
            })
            .collect();
        let g = groups(nets.iter());
        assert!(g.len() > 1);
        assert!(g.iter().all(|g| g.len() <= MAX_GROUP + 2), "{}", g[0].len());
        for group in &g {
            // Each network's exception is in its group.
            assert!(
                group.starts_with("[11.") || group.starts_with("[1"),
                "{group}"
            );
            assert_eq!(
                group.matches("/16").count(),
                group.matches(",!11.0.0.1").count()
            );
        }
        let total: usize = g.iter().map(|g| g.matches("/16").count()).sum();
        assert_eq!(total, 2000);
        assert_eq!(groups(std::iter::empty()), Vec::<String>::new());
    }
}
