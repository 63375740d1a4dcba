//! `warninglists:`: which of MISP's warninglists guard every source.

use std::path::{Path, PathBuf};
use std::time::Duration;

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
    /// How often newer lists are fetched from `url` (0: never).
    #[serde(default = "default_refresh", deserialize_with = "super::de_duration")]
    pub refresh: Duration,
    /// Where newer lists are fetched from (`<url><name>/list.json`).
    #[serde(default = "default_url")]
    pub url: String,
}

fn default_refresh() -> Duration {
    Duration::from_secs(7 * 24 * 3600)
}

fn default_url() -> String {
    crate::intel::warninglist::refresh::UPSTREAM.to_string()
}

impl Default for WarninglistConfig {
    fn default() -> Self {
        WarninglistConfig {
            dir: default_dir(),
            exempt: default_exempt(),
            warn: default_warn(),
            enforce_anyway: Vec::new(),
            refresh: default_refresh(),
            url: default_url(),
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
        if !self.refresh.is_zero() {
            let https = url::Url::parse(&self.url).is_ok_and(|u| u.scheme() == "https");
            if !https {
                return Err((
                    "warninglists.url".into(),
                    format!(
                        "{:?} is not an https URL (the lists decide what is never blocked)",
                        self.url
                    ),
                ));
            }
            if self.refresh < Duration::from_secs(3600) {
                return Err((
                    "warninglists.refresh".into(),
                    format!(
                        "{} is more often than hourly (0 turns it off)",
                        humantime::format_duration(self.refresh)
                    ),
                ));
            }
        }
        for (i, v) in self.enforce_anyway.iter().enumerate() {
            Ioc::parse_any(v)
                .map_err(|e| (format!("warninglists.enforce_anyway[{i}]"), e.to_string()))?;
        }
        Ok(())
    }

    /// Where a refresh writes newer lists: beside the agent's state.
    pub fn refreshed_dir(state_dir: &Path) -> PathBuf {
        state_dir.join("warninglists")
    }

    /// Reads the chosen lists, the newest copy of each (problems are in the
    /// result, not errors).
    pub fn load(&self, state_dir: &Path) -> Warninglists {
        let anyway: Vec<Ioc> = self
            .enforce_anyway
            .iter()
            .filter_map(|v| Ioc::parse_any(v).ok())
            .collect();
        let refreshed = Self::refreshed_dir(state_dir);
        Warninglists::load(&[&self.dir, &refreshed], &self.exempt, &self.warn, &anyway)
    }

    /// Every list a refresh fetches.
    pub fn names(&self) -> Vec<String> {
        self.exempt.iter().chain(&self.warn).cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use crate::config::Config;
    use crate::intel::ioc::Ioc;
    use crate::intel::warninglist::{Action, Verdict, Warninglists};
    use std::path::{Path, PathBuf};

    fn ioc(v: &str) -> Ioc {
        Ioc::parse_any(v).unwrap()
    }

    fn err(yaml: &str) -> String {
        Config::parse(yaml, Path::new("/etc/homewarden/homewarden.yaml"))
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn names_values_and_the_refresh_are_checked() {
        let ok = Config::parse("", Path::new("x.yaml")).unwrap();
        assert_eq!(ok.warninglists.names().len(), 17);
        assert!(err("warninglists: { exempt: [../../etc] }\n").contains("warninglists.exempt"));
        assert!(err("warninglists: { exempt: [google], warn: [google] }\n").contains("named twice"));
        assert!(
            err("warninglists: { enforce_anyway: [\"not a value!\"] }\n")
                .contains("warninglists.enforce_anyway[0]")
        );
        assert!(
            err("warninglists: { url: \"http://lists.example/\" }\n").contains("not an https URL")
        );
        assert!(err("warninglists: { refresh: 5m }\n").contains("more often than hourly"));
        let off = Config::parse(
            "warninglists: { refresh: 0s, url: \"http://x/\" }\n",
            Path::new("x.yaml"),
        )
        .unwrap();
        assert!(off.warninglists.refresh.is_zero());
    }

    /// The lists the appliance ships (overlays/), with the defaults of the config.
    fn shipped() -> Warninglists {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("overlays/usr/share/homewarden/warninglists");
        let cfg = Config::parse("", Path::new("/dev/null")).unwrap();
        let w = Warninglists::load(
            &[&dir],
            &cfg.warninglists.exempt,
            &cfg.warninglists.warn,
            &[],
        );
        assert!(w.problems.is_empty(), "{:?}", w.problems);
        w
    }

    #[test]
    fn the_shipped_lists_spare_the_sites_a_family_uses_and_not_the_phish() {
        let w = shipped();
        // Names a URLScan-derived phishing feed listed (issue 18's sample).
        for spared in [
            "google.com",
            "docs.google.com",
            "drive.google.com",
            "accounts.google.com",
            "gmail.com",
            "amazon.com",
            "www.amazon.com",
            "discord.com",
            "storage.googleapis.com",
            "bit.ly",
        ] {
            assert!(
                matches!(w.verdict(&ioc(spared)), Verdict::Exempt(_)),
                "{spared}"
            );
        }
        for blocked in [
            "secure-login-paypal.evil.example",
            "evil-office365.blogspot.com",
            "verify-account.web.app",
            "invoice-viewer.pages.dev",
            "bucket-phish.s3.amazonaws.com",
        ] {
            assert_eq!(w.verdict(&ioc(blocked)), Verdict::Clear, "{blocked}");
        }
        assert!(matches!(w.verdict(&ioc("8.8.8.8")), Verdict::Exempt(_)));
        assert!(matches!(w.verdict(&ioc("1.1.1.1")), Verdict::Exempt(_)));
        assert!(matches!(
            w.verdict(&ioc("d41d8cd98f00b204e9800998ecf8427e")),
            Verdict::Exempt(_)
        ));
        // A cloud address is enforced, with a warning.
        let aws = w.lists().iter().find(|l| l.name == "amazon-aws").unwrap();
        assert_eq!(aws.action, Action::Warn);
        assert!(aws.entries > 1000);
    }
}
