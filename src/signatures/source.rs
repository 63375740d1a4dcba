//! Where a ruleset comes from, as the config names it.

use std::path::PathBuf;

use serde::{Deserialize, Deserializer};

/// Where a ruleset comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// Emerging Threats Open for the Suricata that runs (suricata-update's own URL).
    EtOpen,
    /// A ruleset archive (`.tar.gz`) or rules file over https.
    Url(String),
    /// A local archive or `.rules` file.
    File(PathBuf),
}

impl<'de> Deserialize<'de> for Source {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Source::parse(&s).map_err(serde::de::Error::custom)
    }
}

impl Source {
    /// `etopen`, an `https://` URL, or an absolute path.
    pub fn parse(s: &str) -> Result<Source, String> {
        if s == "etopen" {
            return Ok(Source::EtOpen);
        }
        if s.starts_with('/') {
            let ok = !s.contains(['\n', '\0']) && (s.ends_with(".rules") || s.ends_with(".tar.gz"));
            return if ok {
                Ok(Source::File(PathBuf::from(s)))
            } else {
                Err(format!("{s:?} is not a .rules file or a .tar.gz ruleset"))
            };
        }
        match url::Url::parse(s) {
            Ok(u) if u.scheme() == "https" && u.host_str().is_some() => Ok(Source::Url(s.into())),
            Ok(_) => Err(format!(
                "{s:?} is not https: a ruleset decides what the appliance drops, it must not be changed on the way"
            )),
            Err(_) => Err(format!(
                "{s:?} is not etopen, an https:// URL or an absolute path"
            )),
        }
    }
}
