//! `signatures:`: the ruleset beside the IoC sets (Emerging Threats Open by
//! default), the profile the board runs, how often it is updated, and the
//! owner's word on single signatures and whole categories.

use std::time::Duration;

use serde::Deserialize;

use crate::signatures::policy::{Overrides, Setting};
use crate::signatures::profile::Profile;
pub use crate::signatures::source::Source as RulesetSource;
pub use crate::signatures::word::Target;

/// The `signatures:` section.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SignaturesConfig {
    /// What the board runs (`auto` by its memory).
    pub profile: Profile,
    /// The rulesets, merged by suricata-update.
    pub sources: Vec<RulesetSource>,
    /// How often they are updated (with a random jitter of up to a tenth).
    #[serde(deserialize_with = "super::de::de_duration")]
    pub update: Duration,
    /// Every signature only reports what it would have dropped.
    pub shadow: bool,
    /// Signatures or categories that drop.
    pub drop: Vec<Target>,
    /// Signatures or categories that only alert.
    pub alert: Vec<Target>,
    /// Signatures or categories not loaded at all.
    pub disable: Vec<Target>,
}

impl Default for SignaturesConfig {
    fn default() -> Self {
        SignaturesConfig {
            profile: Profile::default(),
            sources: vec![RulesetSource::EtOpen],
            update: Duration::from_secs(24 * 3600),
            shadow: false,
            drop: Vec::new(),
            alert: Vec::new(),
            disable: Vec::new(),
        }
    }
}

impl SignaturesConfig {
    /// Checks the section; `(key, message)` on error.
    pub fn check(&self) -> Result<(), (String, String)> {
        if self.update < Duration::from_secs(3600) || self.update > Duration::from_secs(30 * 86_400)
        {
            return Err((
                "signatures.update".into(),
                format!(
                    "{} is not an interval of 1h-30d (ruleset publishers ask for no more than hourly pulls)",
                    humantime::format_duration(self.update)
                ),
            ));
        }
        if self.sources.len() > 16 {
            return Err((
                "signatures.sources".into(),
                format!("{} sources: at most 16", self.sources.len()),
            ));
        }
        let mut seen = std::collections::HashMap::new();
        for (key, list) in [
            ("drop", &self.drop),
            ("alert", &self.alert),
            ("disable", &self.disable),
        ] {
            for t in list {
                if let Some(other) = seen.insert(t.clone(), key) {
                    return Err((
                        format!("signatures.{key}"),
                        format!("{t:?} is also under signatures.{other}: say one thing of it"),
                    ));
                }
            }
        }
        Ok(())
    }

    /// The owner's word from the config, as the policy takes it.
    pub fn overrides(&self) -> Overrides {
        let mut o = Overrides::default();
        for (setting, list) in [
            (Setting::Drop, &self.drop),
            (Setting::Alert, &self.alert),
            (Setting::Disable, &self.disable),
        ] {
            for t in list {
                crate::signatures::word::set(&mut o, t, Some(setting));
            }
        }
        o
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(yaml: &str) -> Result<SignaturesConfig, String> {
        serde_yaml_ng::from_str::<SignaturesConfig>(yaml).map_err(|e| e.to_string())
    }

    #[test]
    fn the_example_in_the_shipped_config_is_valid() {
        let block = crate::config::shipped_example("signatures");
        #[derive(Deserialize)]
        struct Section {
            signatures: SignaturesConfig,
        }
        let s: Section = serde_yaml_ng::from_str(&block).unwrap();
        assert_eq!(s.signatures.check(), Ok(()));
        assert!(
            s.signatures.sources.contains(&RulesetSource::EtOpen),
            "{block}"
        );
    }

    #[test]
    fn et_open_daily_once_turned_on() {
        let d = SignaturesConfig::default();
        assert_eq!(
            (d.profile, &d.sources[..]),
            (Profile::Off, &[RulesetSource::EtOpen][..])
        );
        assert_eq!(d.update, Duration::from_secs(86_400));
        assert_eq!(d.check(), Ok(()));
        let c = cfg("{profile: home, sources: [etopen, 'https://sslbl.abuse.ch/blacklist/sslblacklist.rules', /etc/homewarden/local.rules], drop: [2030000], alert: [malware, 2030001], disable: [Policy]}").unwrap();
        assert_eq!(c.profile, Profile::Home);
        assert_eq!(
            c.sources[2],
            RulesetSource::File("/etc/homewarden/local.rules".into())
        );
        let o = c.overrides();
        assert_eq!(o.sids[&2_030_000], Setting::Drop);
        assert_eq!(o.sids[&2_030_001], Setting::Alert);
        assert_eq!(o.categories["malware"], Setting::Alert);
        assert_eq!(o.categories["policy"], Setting::Disable);
    }

    #[test]
    fn a_bad_source_interval_or_a_contradiction_is_one_clear_line() {
        for (yaml, says) in [
            ("sources: ['http://rules.example/x.tar.gz']", "not https"),
            ("sources: [rules.tar.gz]", "absolute path"),
            ("sources: [/etc/x.txt]", "not a .rules file"),
            ("profile: huge", "unknown variant"),
            ("drop: [0]", "not a signature id"),
            (
                "drop: ['bad name!']",
                "neither a signature id nor a category",
            ),
        ] {
            let e = cfg(yaml).unwrap_err();
            assert!(e.contains(says), "{yaml}: {e}");
        }
        let (k, m) = cfg("update: 5m").unwrap().check().unwrap_err();
        assert!(k == "signatures.update" && m.contains("1h-30d"), "{m}");
        let (k, m) = cfg("{drop: [7], disable: [7]}")
            .unwrap()
            .check()
            .unwrap_err();
        assert!(
            k == "signatures.disable" && m.contains("signatures.drop"),
            "{k}: {m}"
        );
    }
}
