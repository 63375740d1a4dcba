//! `warninglists:`: which of MISP's warninglists guard every source.

use std::path::PathBuf;

use serde::Deserialize;

use crate::intel::ioc::Ioc;
use crate::intel::warninglist::{Warninglists, MAX_LISTS};

/// Which shipped warninglists apply, and how.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WarninglistConfig {
    /// Where the lists are (`<dir>/<name>/list.json`, MISP's layout).
    #[serde(default = "default_dir")]
    pub dir: PathBuf,
    /// Lists whose values are not enforced.
    #[serde(default = "default_exempt")]
    pub exempt: Vec<String>,
    /// Lists whose values are enforced but counted and explained.
    #[serde(default = "default_warn")]
    pub warn: Vec<String>,
    /// Values enforced whatever a list says (exactly these values).
    #[serde(default)]
    pub enforce_anyway: Vec<String>,
}

impl Default for WarninglistConfig {
    fn default() -> Self {
        WarninglistConfig {
            dir: default_dir(),
            exempt: default_exempt(),
            warn: default_warn(),
            enforce_anyway: Vec::new(),
        }
    }
}

fn default_dir() -> PathBuf {
    PathBuf::from("/usr/share/homewarden/warninglists")
}

/// Sites a family uses every day, public resolvers, hashes of nothing.
pub const DEFAULT_EXEMPT: &[&str] = &[
    "cisco_top10k",
    "cloudflare-top10k",
    "tranco10k",
    "google",
    "microsoft",
    "microsoft-office365",
    "url-shortener",
    "public-dns-v4",
    "public-dns-v6",
    "empty-hashes",
    "common-ioc-false-positive",
];

/// The big clouds and CDNs: an address there is often shared by many sites.
pub const DEFAULT_WARN: &[&str] = &[
    "amazon-aws",
    "microsoft-azure",
    "google-gcp",
    "cloudflare",
    "akamai",
    "fastly",
];

fn default_exempt() -> Vec<String> {
    DEFAULT_EXEMPT.iter().map(|s| s.to_string()).collect()
}

fn default_warn() -> Vec<String> {
    DEFAULT_WARN.iter().map(|s| s.to_string()).collect()
}

impl WarninglistConfig {
    /// Checks names and values; `Err` is (key, message).
    pub fn check(&self) -> Result<(), (String, String)> {
        let all = self.exempt.iter().map(|n| ("exempt", n));
        let all = all.chain(self.warn.iter().map(|n| ("warn", n)));
        let mut seen = std::collections::HashSet::new();
        for (i, (key, name)) in all.enumerate() {
            let ok = !name.is_empty()
                && !name.starts_with('.')
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b));
            if !ok {
                return Err((
                    format!("warninglists.{key}"),
                    format!(
                        "{name:?} is not a warninglist name (a directory under warninglists.dir)"
                    ),
                ));
            }
            if !seen.insert(name) {
                return Err((
                    format!("warninglists.{key}"),
                    format!("{name:?} is named twice (a list is either exempt or warn)"),
                ));
            }
            if i >= MAX_LISTS {
                return Err((
                    format!("warninglists.{key}"),
                    format!("more than {MAX_LISTS} lists"),
                ));
            }
        }
        for (i, v) in self.enforce_anyway.iter().enumerate() {
            Ioc::parse_any(v)
                .map_err(|e| (format!("warninglists.enforce_anyway[{i}]"), e.to_string()))?;
        }
        Ok(())
    }

    /// Reads the chosen lists (problems are in the result, not errors).
    pub fn load(&self) -> Warninglists {
        let anyway: Vec<Ioc> = self
            .enforce_anyway
            .iter()
            .filter_map(|v| Ioc::parse_any(v).ok())
            .collect();
        Warninglists::load(&self.dir, &self.exempt, &self.warn, &anyway)
    }
}
