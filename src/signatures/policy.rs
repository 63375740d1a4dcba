//! What each signature does here: dropped, alerted on, or not loaded, and
//! why, in words a household can act on. By default only high-confidence
//! signatures drop (ET's `signature_severity` Major or Critical in the
//! categories where a false positive is rare and a miss is costly); the
//! rest alert. The owner overrides by sid or by category; shadow mode turns
//! every drop into an alert that says it would have dropped.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use super::profile::Tier;
use super::rule::{Action, Rule};

/// Which signatures drop by default: a category and the ET severities in it
/// that do. Malware talking home, exploit kits, miners and phishing pages
/// are rarely mistaken; an exploit or a worm's probe drops only when ET
/// rates it Critical (its Major ones include scanners a home may run). Any
/// other signature alerts.
pub const DROP_TABLE: &[(&str, &[&str])] = &[
    ("malware", MAJOR_UP),
    ("mobile_malware", MAJOR_UP),
    ("exploit_kit", MAJOR_UP),
    ("coinminer", MAJOR_UP),
    ("phishing", MAJOR_UP),
    ("exploit", CRITICAL),
    ("attack_response", CRITICAL),
    ("worm", CRITICAL),
];

const MAJOR_UP: &[&str] = &["Major", "Critical"];
const CRITICAL: &[&str] = &["Critical"];

/// Whether a signature of `category` rated `severity` by ET drops by default.
pub fn drops_by_default(category: &str, severity: &str) -> bool {
    DROP_TABLE
        .iter()
        .any(|(c, s)| *c == category && s.contains(&severity))
}

/// What the owner sets for a sid or a category.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Setting {
    /// Drop on a match.
    Drop,
    /// Alert only.
    Alert,
    /// Not loaded.
    Disable,
}

impl Setting {
    /// The word the config and the command line use for it.
    pub fn word(self) -> &'static str {
        match self {
            Setting::Drop => "drop",
            Setting::Alert => "alert",
            Setting::Disable => "disable",
        }
    }
}

/// The owner's overrides (`signatures.overrides`, and `homewarden signatures drop|alert|disable`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Overrides {
    /// By signature id: the strongest word.
    #[serde(default)]
    pub sids: BTreeMap<u64, Setting>,
    /// By category (`malware`, `policy`…).
    #[serde(default)]
    pub categories: BTreeMap<String, Setting>,
    /// By signature id: devices or destinations it is lifted for (a false
    /// positive of one device, not a rule wrong for the whole home).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub except: BTreeMap<u64, std::collections::BTreeSet<ipnet::IpNet>>,
}

/// What one rule does here.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// Loaded as a drop rule.
    Drop,
    /// Loaded as an alert (in shadow mode: one that would have dropped says so).
    Alert,
    /// Not loaded.
    Off,
}

/// Why a rule got its verdict.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "by", rename_all = "snake_case")]
pub enum Reason {
    /// The owner said so for this sid.
    Sid,
    /// The owner said so for its category.
    Category,
    /// The ruleset ships it disabled (noisy or slow, its authors say).
    ShippedDisabled,
    /// Its category is not part of the board's profile.
    Profile {
        /// The profile.
        tier: String,
    },
    /// A high-severity signature in a category where drops are safe.
    HighConfidence {
        /// ET's severity.
        severity: String,
    },
    /// Everything else is reported, not dropped.
    Default,
    /// Not an alert rule to begin with (`pass`, or a `drop`/`reject` the
    /// ruleset wrote): kept as shipped.
    AsShipped,
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::Sid => write!(f, "you set this signature so"),
            Reason::Category => write!(f, "you set its category so"),
            Reason::ShippedDisabled => {
                write!(
                    f,
                    "the ruleset ships it disabled (noisy or slow, its authors say)"
                )
            }
            Reason::Profile { tier } => write!(f, "its category is not in the {tier} profile"),
            Reason::HighConfidence { severity } => write!(
                f,
                "ET rates it {severity}, high enough to drop in its category"
            ),
            Reason::Default => write!(f, "only high-confidence signatures drop; this one reports"),
            Reason::AsShipped => write!(f, "kept as the ruleset wrote it"),
        }
    }
}

/// A rule's fate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    /// What it does.
    pub verdict: Verdict,
    /// Why.
    pub reason: Reason,
    /// Shadow mode kept it from dropping.
    pub would_drop: bool,
}

/// Decides on `rule` from `category` at `tier`, with the owner's overrides.
pub fn decide(
    rule: &Rule,
    category: &str,
    tier: Tier,
    overrides: &Overrides,
    shadow: bool,
) -> Decision {
    let owner = overrides
        .sids
        .get(&rule.sid)
        .map(|s| (*s, Reason::Sid))
        .or_else(|| {
            overrides
                .categories
                .get(category)
                .map(|s| (*s, Reason::Category))
        });
    let (verdict, reason) = match owner {
        Some((Setting::Disable, why)) => (Verdict::Off, why),
        Some((Setting::Drop, why)) => (Verdict::Drop, why),
        Some((Setting::Alert, why)) => (Verdict::Alert, why),
        None if !rule.enabled => (Verdict::Off, Reason::ShippedDisabled),
        None if !tier.keeps(category) => (
            Verdict::Off,
            Reason::Profile {
                tier: tier.name().into(),
            },
        ),
        None if rule.action != Action::Alert => (
            if rule.action == Action::Pass {
                Verdict::Alert
            } else {
                Verdict::Drop
            },
            Reason::AsShipped,
        ),
        None => match rule.meta("signature_severity") {
            Some(s) if drops_by_default(category, s) => (
                Verdict::Drop,
                Reason::HighConfidence {
                    severity: s.to_string(),
                },
            ),
            _ => (Verdict::Alert, Reason::Default),
        },
    };
    // A pass rule stays a pass rule; only what would block is shadowed.
    let blocks = verdict == Verdict::Drop;
    Decision {
        verdict: if blocks && shadow {
            Verdict::Alert
        } else {
            verdict
        },
        reason,
        would_drop: blocks && shadow,
    }
}

/// The line Suricata loads for a rule and its decision (`None`: not
/// loaded), lifted for the networks in `except`; `Err` (with the line as
/// decided) when the rule's header cannot be cut for them.
pub fn line(rule: &Rule, d: &Decision, except: &[ipnet::IpNet]) -> Option<Result<String, String>> {
    let action = match (d.verdict, rule.action) {
        (Verdict::Off, _) => return None,
        (_, Action::Pass) => Action::Pass,
        (Verdict::Drop, Action::Reject) => Action::Reject,
        (Verdict::Drop, _) => Action::Drop,
        (Verdict::Alert, _) => Action::Alert,
    };
    Some(
        rule.with_action_except(action, except)
            .ok_or_else(|| rule.with_action(action)),
    )
}

#[cfg(test)]
mod tests {
    use super::super::rule::parse;
    use super::*;

    fn rule(sid: u64, severity: &str, enabled: bool) -> Rule {
        let text = format!(
            "{}alert http any any -> any any (msg:\"t\"; sid:{sid}; rev:1; metadata:deployment Perimeter, signature_severity {severity};)",
            if enabled { "" } else { "# " }
        );
        parse(&text).unwrap()
    }

    fn verdict(r: &Rule, category: &str, tier: Tier, o: &Overrides) -> Verdict {
        decide(r, category, tier, o, false).verdict
    }

    #[test]
    fn only_high_confidence_signatures_drop_by_default() {
        let none = Overrides::default();
        let major = rule(1, "Major", true);
        let minor = rule(2, "Minor", true);
        let d = decide(&major, "malware", Tier::Home, &none, false);
        assert_eq!(d.verdict, Verdict::Drop);
        assert!(d.reason.to_string().contains("Major"), "{}", d.reason);
        assert_eq!(
            verdict(&rule(3, "Critical", true), "phishing", Tier::Home, &none),
            Verdict::Drop
        );
        assert_eq!(
            verdict(&minor, "malware", Tier::Home, &none),
            Verdict::Alert
        );
        // Major, but where a false positive is more likely: reported only;
        // a Critical exploit drops.
        assert_eq!(
            verdict(&major, "exploit", Tier::Home, &none),
            Verdict::Alert
        );
        assert_eq!(
            verdict(&rule(5, "Critical", true), "exploit", Tier::Home, &none),
            Verdict::Drop
        );
        assert_eq!(
            verdict(&rule(5, "Critical", true), "policy", Tier::Full, &none),
            Verdict::Alert
        );
        assert_eq!(
            verdict(&major, "web_client", Tier::Home, &none),
            Verdict::Alert
        );
        // Outside the profile, or shipped disabled: not loaded.
        assert_eq!(
            verdict(&major, "web_server", Tier::Home, &none),
            Verdict::Off
        );
        assert_eq!(
            verdict(&major, "web_server", Tier::Full, &none),
            Verdict::Alert
        );
        assert_eq!(verdict(&major, "exploit", Tier::Core, &none), Verdict::Off);
        let off = decide(
            &rule(4, "Major", false),
            "malware",
            Tier::Full,
            &none,
            false,
        );
        assert_eq!(
            (off.verdict, off.reason),
            (Verdict::Off, Reason::ShippedDisabled)
        );
    }

    #[test]
    fn the_owner_overrides_by_sid_before_category() {
        let mut o = Overrides::default();
        o.categories.insert("malware".into(), Setting::Alert);
        o.categories.insert("policy".into(), Setting::Drop);
        o.sids.insert(1, Setting::Drop);
        o.sids.insert(9, Setting::Disable);
        let d = decide(&rule(1, "Minor", true), "malware", Tier::Home, &o, false);
        assert_eq!((d.verdict, d.reason), (Verdict::Drop, Reason::Sid));
        let d = decide(&rule(2, "Major", true), "malware", Tier::Home, &o, false);
        assert_eq!((d.verdict, d.reason), (Verdict::Alert, Reason::Category));
        // A category outside the profile, turned on by the owner.
        assert_eq!(
            verdict(&rule(3, "Minor", true), "policy", Tier::Home, &o),
            Verdict::Drop
        );
        // A rule the ruleset ships disabled, enabled by its sid.
        assert_eq!(
            verdict(&rule(1, "Minor", false), "malware", Tier::Off, &o),
            Verdict::Drop
        );
        assert_eq!(
            verdict(&rule(9, "Critical", true), "malware", Tier::Full, &o),
            Verdict::Off
        );
    }

    #[test]
    fn shadow_mode_reports_what_would_have_dropped_and_drops_nothing() {
        let none = Overrides::default();
        let d = decide(&rule(1, "Major", true), "malware", Tier::Home, &none, true);
        assert_eq!((d.verdict, d.would_drop), (Verdict::Alert, true));
        let d = decide(&rule(2, "Minor", true), "malware", Tier::Home, &none, true);
        assert_eq!((d.verdict, d.would_drop), (Verdict::Alert, false));
    }

    #[test]
    fn the_loaded_line_carries_the_verdict() {
        let none = Overrides::default();
        let r = rule(1, "Major", true);
        let d = decide(&r, "malware", Tier::Home, &none, false);
        assert!(line(&r, &d, &[])
            .map(|l| l.unwrap())
            .unwrap()
            .starts_with("drop http any any"));
        let d = decide(&r, "malware", Tier::Home, &none, true);
        assert!(line(&r, &d, &[])
            .map(|l| l.unwrap())
            .unwrap()
            .starts_with("alert http"));
        let d = decide(&r, "web_server", Tier::Home, &none, false);
        assert_eq!(line(&r, &d, &[]).map(|l| l.unwrap()), None);
        // A disabled rule the owner turns on loads without its `#`.
        let mut o = Overrides::default();
        o.sids.insert(5, Setting::Alert);
        let r = rule(5, "Minor", false);
        assert!(line(&r, &decide(&r, "malware", Tier::Home, &o, false), &[])
            .map(|l| l.unwrap())
            .unwrap()
            .starts_with("alert http"));
        // The ruleset's own pass and reject rules keep their action.
        let pass = parse("pass dns any any -> any any (msg:\"ok\"; sid:6;)").unwrap();
        let d = decide(&pass, "dns", Tier::Home, &none, true);
        assert!(
            line(&pass, &d, &[])
                .map(|l| l.unwrap())
                .unwrap()
                .starts_with("pass dns")
                && !d.would_drop
        );
        let reject = parse("reject tcp any any -> any any (msg:\"r\"; sid:7;)").unwrap();
        let d = decide(&reject, "malware", Tier::Home, &none, false);
        assert!(line(&reject, &d, &[])
            .map(|l| l.unwrap())
            .unwrap()
            .starts_with("reject tcp"));
    }
}
