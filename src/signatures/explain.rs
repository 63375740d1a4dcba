//! `homewarden explain SID`: what one signature does here, why, and the one
//! command that changes it.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use super::policy::{Overrides, Reason, Setting, Verdict};
use super::Entry;

/// Whose word a setting is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Said {
    /// `signatures.drop|alert|disable` in the config.
    Config,
    /// `homewarden signatures drop|alert|disable` (kept until reset).
    CommandLine,
}

/// One signature, explained.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Explained {
    /// The signature id.
    pub sid: u64,
    /// What the ruleset in force says of it (none: not in it).
    pub entry: Option<Entry>,
    /// The owner's word on this sid, and whose.
    pub sid_setting: Option<(Setting, Said)>,
    /// The owner's word on its category, and whose.
    pub category_setting: Option<(Setting, Said)>,
    /// Signatures in the ruleset in force (0: none taken yet).
    pub in_force: usize,
    /// Devices or destinations the owner lifted it for.
    #[serde(default)]
    pub lifted_for: Vec<ipnet::IpNet>,
}

fn said(
    config: &Overrides,
    word: &Overrides,
    get: impl Fn(&Overrides) -> Option<Setting>,
) -> Option<(Setting, Said)> {
    get(word)
        .map(|s| (s, Said::CommandLine))
        .or_else(|| get(config).map(|s| (s, Said::Config)))
}

/// Explains `sid` from the index of the ruleset in force and the owner's word.
pub fn explain(
    sid: u64,
    entry: Option<Entry>,
    in_force: usize,
    config: &Overrides,
    word: &Overrides,
) -> Explained {
    let category_setting = entry
        .as_ref()
        .and_then(|e| said(config, word, |o| o.categories.get(&e.category).copied()));
    Explained {
        sid,
        sid_setting: said(config, word, |o| o.sids.get(&sid).copied()),
        category_setting,
        entry,
        in_force,
        lifted_for: word
            .except
            .get(&sid)
            .or_else(|| config.except.get(&sid))
            .map(|s| s.iter().copied().collect())
            .unwrap_or_default(),
    }
}

fn whose(s: Said) -> &'static str {
    match s {
        Said::Config => "in the config (signatures.drop|alert|disable)",
        Said::CommandLine => "on the command line",
    }
}

/// What a person reads.
pub fn render(x: &Explained) -> String {
    let mut out = String::new();
    let sid = x.sid;
    let Some(e) = &x.entry else {
        if x.in_force == 0 && x.lifted_for.is_empty() {
            let _ = writeln!(
                out,
                "{sid}: no signature ruleset is in force yet (`homewarden signatures status`)"
            );
        } else {
            let _ = writeln!(
                out,
                "{sid}: not a signature of the ruleset in force ({} read); a sid of homewarden's own rules names a listed value: `homewarden explain` the address or name instead",
                x.in_force
            );
        }
        if let Some((s, by)) = x.sid_setting {
            let _ = writeln!(
                out,
                "  you said `{}` for it {}; it applies once a ruleset has it",
                s.word(),
                whose(by)
            );
        }
        return out;
    };
    let _ = writeln!(out, "{sid}: {}", e.msg);
    let _ = writeln!(
        out,
        "  category {}{}",
        e.category,
        e.severity
            .as_deref()
            .map(|s| format!(", ET severity {s}"))
            .unwrap_or_default()
    );
    let what = match (e.verdict, e.would_drop) {
        (Verdict::Drop, _) => "drops the traffic it matches",
        (Verdict::Alert, true) => "would drop, but shadow mode only reports it",
        (Verdict::Alert, false) => "reports what it matches and lets it pass",
        (Verdict::Off, _) => "is not loaded",
    };
    let why = match (&e.reason, x.sid_setting, x.category_setting) {
        (Reason::Sid, Some((s, by)), _) => format!("you set `{}` for it {}", s.word(), whose(by)),
        (Reason::Category, _, Some((s, by))) => format!(
            "you set `{}` for category {} {}",
            s.word(),
            e.category,
            whose(by)
        ),
        (r, _, _) => r.to_string(),
    };
    let _ = writeln!(out, "  {what}: {why}");
    for net in &x.lifted_for {
        let _ = writeln!(
            out,
            "  lifted for {net}: it never matches its traffic (`homewarden signatures unallow {sid} {net}` to take that back)"
        );
    }
    let cmd = |s: &str| format!("homewarden signatures {s} {sid}");
    let mut to = Vec::new();
    if e.verdict != Verdict::Alert || e.would_drop {
        to.push(format!("`{}` to only report it", cmd("alert")));
    }
    if e.verdict != Verdict::Drop && !e.would_drop {
        to.push(format!("`{}` to drop on it", cmd("drop")));
    }
    if e.verdict != Verdict::Off {
        to.push(format!("`{}` to not load it", cmd("disable")));
    }
    if x.sid_setting.is_some_and(|(_, by)| by == Said::CommandLine) {
        to.push(format!("`{}` to take your word back", cmd("reset")));
    }
    let _ = writeln!(out, "  {}", to.join("; "));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(verdict: Verdict, reason: Reason) -> Entry {
        Entry {
            category: "malware".into(),
            msg: "ET MALWARE Foo CnC Checkin".into(),
            severity: Some("Major".into()),
            verdict,
            reason,
            would_drop: false,
        }
    }

    #[test]
    fn a_signature_is_explained_with_the_command_that_changes_it() {
        let none = Overrides::default();
        let high = Reason::HighConfidence {
            severity: "Major".into(),
        };
        let x = explain(
            2_030_000,
            Some(entry(Verdict::Drop, high)),
            10,
            &none,
            &none,
        );
        let text = render(&x);
        assert!(text.contains("ET MALWARE Foo CnC Checkin"), "{text}");
        assert!(text.contains("ET severity Major"), "{text}");
        assert!(
            text.contains("drops the traffic it matches: ET rates it Major"),
            "{text}"
        );
        assert!(
            text.contains("`homewarden signatures alert 2030000` to only report it"),
            "{text}"
        );
        assert!(!text.contains("reset"), "{text}");
        // Set on the command line above the config's word for its category.
        let mut config = Overrides::default();
        config.categories.insert("malware".into(), Setting::Drop);
        let mut word = Overrides::default();
        word.sids.insert(2_030_000, Setting::Alert);
        let x = explain(
            2_030_000,
            Some(entry(Verdict::Alert, Reason::Sid)),
            10,
            &config,
            &word,
        );
        assert_eq!(x.sid_setting, Some((Setting::Alert, Said::CommandLine)));
        assert_eq!(x.category_setting, Some((Setting::Drop, Said::Config)));
        let text = render(&x);
        assert!(
            text.contains("reports what it matches and lets it pass: you set `alert` for it on the command line"),
            "{text}"
        );
        assert!(text.contains("signatures reset 2030000"), "{text}");
    }

    #[test]
    fn a_sid_not_in_the_ruleset_says_where_to_look() {
        let none = Overrides::default();
        let text = render(&explain(1_666_001, None, 100, &none, &none));
        assert!(
            text.contains("not a signature of the ruleset in force (100 read)"),
            "{text}"
        );
        let text = render(&explain(5, None, 0, &none, &none));
        assert!(
            text.contains("no signature ruleset is in force yet"),
            "{text}"
        );
    }
}
