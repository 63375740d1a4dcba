//! Signatures beyond listed values: a ruleset such as Emerging Threats Open,
//! fetched and merged by Debian's `suricata-update` (never re-implemented
//! here), then cut to what the board carries and given a drop policy a
//! household can live with. This is the pure core: rules in, the file
//! Suricata loads and a per-signature account of what each does and why out.
//!
//! - [`explain`]: one signature, for the owner;
//! - [`memory`]: Suricata's memory budget, and live reload or restart;
//! - [`rule`]: one rule line, read far enough to decide on it;
//! - [`profile`]: which categories a board runs;
//! - [`policy`]: drop, alert or not loaded, and why;
//! - [`source`]: where a ruleset comes from;
//! - [`update`]: suricata-update, the cut, `suricata -T`, then the swap;
//! - [`word`]: the owner's word from the command line, kept above the config's.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

pub mod explain;
pub mod memory;
pub mod policy;
pub mod profile;
pub mod rule;
pub mod source;
pub mod update;
pub mod word;

use policy::{Overrides, Reason, Verdict};
use profile::Tier;
use rule::Skip;

/// The file Suricata loads the signatures from, beside homewarden's own rules.
pub const RULES_FILE: &str = "signatures.rules";
/// That file before the first ruleset is taken.
pub const EMPTY: &str =
    "# homewarden: no signature ruleset taken yet (`homewarden signatures status`)\n";

/// What is known of one loaded or left-out signature, for `explain`,
/// triage and status.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// Its category (`malware`), from the ruleset's file.
    pub category: String,
    /// Its message.
    pub msg: String,
    /// ET's `signature_severity`, if given.
    pub severity: Option<String>,
    /// What it does here.
    pub verdict: Verdict,
    /// Why.
    pub reason: Reason,
    /// Shadow mode kept it from dropping.
    pub would_drop: bool,
}

/// Counts of a build, for status and /metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    /// Rules read.
    pub read: usize,
    /// Loaded as drop rules.
    pub dropping: usize,
    /// Loaded as alerts (or passes).
    pub alerting: usize,
    /// Not loaded: shipped disabled, outside the profile or by the owner.
    pub off: usize,
    /// Lines that looked like rules but were not whole ones, or too long.
    pub malformed: usize,
    /// A sid a file before had already: Suricata would refuse the second.
    pub duplicates: usize,
    /// Rules the owner lifted for an address whose header could not be cut
    /// for it: loaded as decided, for everyone (status says so).
    #[serde(default)]
    pub uncut: usize,
}

/// A ruleset made ready for Suricata.
#[derive(Clone, Debug, Default)]
pub struct Built {
    /// The text of [`RULES_FILE`].
    pub rules: String,
    /// Every signature read, by sid.
    pub index: BTreeMap<u64, Entry>,
    /// The counts.
    pub counts: Counts,
}

/// Builds the rules file from `files` (each ruleset file's category and
/// text, in a stable order) for `tier`.
pub fn build(files: &[(String, String)], tier: Tier, overrides: &Overrides, shadow: bool) -> Built {
    let mut out = Built::default();
    let _ = writeln!(
        out.rules,
        "# homewarden: signatures for the {} profile (made by the agent; edit the config, not this file)",
        tier.name()
    );
    for (category, text) in files {
        let category = category.as_str();
        for line in rule::lines(text) {
            let r = match rule::parse(&line) {
                Ok(r) => r,
                Err(Skip::NotARule) => continue,
                Err(Skip::Malformed | Skip::TooLong) => {
                    out.counts.malformed += 1;
                    continue;
                }
            };
            out.counts.read += 1;
            if out.index.contains_key(&r.sid) {
                out.counts.duplicates += 1;
                continue;
            }
            let d = policy::decide(&r, category, tier, overrides, shadow);
            let except: Vec<ipnet::IpNet> = overrides
                .except
                .get(&r.sid)
                .map(|s| s.iter().copied().collect())
                .unwrap_or_default();
            match policy::line(&r, &d, &except) {
                Some(l) => {
                    let l = l.unwrap_or_else(|as_decided| {
                        out.counts.uncut += 1;
                        as_decided
                    });
                    match d.verdict {
                        Verdict::Drop => out.counts.dropping += 1,
                        _ => out.counts.alerting += 1,
                    }
                    out.rules.push_str(&l);
                    out.rules.push('\n');
                }
                None => out.counts.off += 1,
            }
            let severity = r.meta("signature_severity").map(str::to_string);
            out.index.insert(
                r.sid,
                Entry {
                    category: category.to_string(),
                    msg: r.msg,
                    severity,
                    verdict: d.verdict,
                    reason: d.reason,
                    would_drop: d.would_drop,
                },
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn et(sid: u64, severity: &str) -> String {
        format!(
            "alert http $HOME_NET any -> $EXTERNAL_NET any (msg:\"ET TEST {sid}\"; content:\"x\"; classtype:trojan-activity; sid:{sid}; rev:1; metadata:signature_severity {severity};)"
        )
    }

    #[test]
    fn a_ruleset_in_ets_layout_becomes_one_file_cut_to_the_profile() {
        let files = vec![
            (
                "malware".to_string(),
                format!(
                    "# Emerging Threats\n\n{}\n{}\n# {}\n",
                    et(1, "Major"),
                    et(2, "Minor"),
                    et(3, "Major")
                ),
            ),
            ("web_server".into(), et(4, "Major")),
            // A sid twice (Suricata would refuse the file), a broken line.
            (
                "phishing".into(),
                format!(
                    "{}\nalert tcp any any -> any any (msg:\"x\";\n",
                    et(1, "Critical")
                ),
            ),
        ];
        let b = build(&files, Tier::Home, &Overrides::default(), false);
        assert_eq!(
            b.counts,
            Counts {
                read: 5,
                dropping: 1,
                alerting: 1,
                off: 2,
                malformed: 1,
                duplicates: 1,
                uncut: 0,
            }
        );
        let lines: Vec<&str> = b.rules.lines().filter(|l| !l.starts_with('#')).collect();
        assert_eq!(lines.len(), 2, "{}", b.rules);
        assert!(lines[0].starts_with("drop http") && lines[0].contains("sid:1;"));
        assert!(lines[1].starts_with("alert http") && lines[1].contains("sid:2;"));
        assert_eq!(b.index[&1].category, "malware");
        assert_eq!(b.index[&4].verdict, Verdict::Off);
        assert_eq!(b.index[&3].reason, Reason::ShippedDisabled);
        assert_eq!(b.index[&2].severity.as_deref(), Some("Minor"));
        // Built twice from the same input: the same file (no reload for nothing).
        assert_eq!(
            build(&files, Tier::Home, &Overrides::default(), false).rules,
            b.rules
        );
    }

    #[test]
    fn a_signature_lifted_for_a_device_matches_everyone_else() {
        let files = vec![(
            "malware".to_string(),
            format!("{}\n{}\n", et(1, "Major"), et(2, "Major")),
        )];
        let mut o = Overrides::default();
        o.except.insert(
            1,
            [
                "198.18.1.2/32".parse().unwrap(),
                "2001:db8::/64".parse().unwrap(),
            ]
            .into(),
        );
        let b = build(&files, Tier::Home, &o, false);
        let lines: Vec<&str> = b.rules.lines().filter(|l| !l.starts_with('#')).collect();
        assert!(
            lines[0].starts_with(
                "drop http [$HOME_NET,!198.18.1.2/32,!2001:db8::/64] any -> [$EXTERNAL_NET,!198.18.1.2/32,!2001:db8::/64] any (msg:\"ET TEST 1\""
            ),
            "{}",
            lines[0]
        );
        assert!(lines[1].starts_with("drop http $HOME_NET any -> $EXTERNAL_NET any"));
        assert_eq!(b.counts.uncut, 0);
        // A header that is not the usual seven words is not guessed at.
        let odd = vec![("malware".to_string(), "alert http any any -> any any any (msg:\"x\"; sid:3; metadata:signature_severity Major;)\n".to_string())];
        let mut o = Overrides::default();
        o.except
            .insert(3, ["198.18.1.2/32".parse().unwrap()].into());
        let b = build(&odd, Tier::Home, &o, false);
        assert_eq!(b.counts.uncut, 1);
        assert!(b.rules.contains("drop http any any -> any any any"));
        // `any` on a side becomes the negation alone.
        let any = vec![("malware".to_string(), "alert http any any -> any any (msg:\"x\"; sid:4; metadata:signature_severity Major;)\n".to_string())];
        let mut o = Overrides::default();
        o.except
            .insert(4, ["198.18.1.2/32".parse().unwrap()].into());
        let b = build(&any, Tier::Home, &o, false);
        assert!(
            b.rules
                .contains("drop http [!198.18.1.2/32] any -> [!198.18.1.2/32] any (msg"),
            "{}",
            b.rules
        );
    }
}
