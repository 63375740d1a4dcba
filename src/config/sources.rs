//! The intel sources as the config names them: MISP, MISP feeds, lists.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Deserializer};

use super::{de_duration, de_opt_duration, de_source_shadow, defaults};
use crate::intel::list::{Column, Format, Layout};

/// One intel source.
#[derive(Clone, Debug)]
pub enum SourceConfig {
    /// A MISP instance's REST API.
    Misp(MispSource),
    /// A MISP feed (manifest.json + event files).
    MispFeed(FeedSource),
    /// A plain text or CSV list.
    List(ListSource),
}

/// Marks the inner key path in an error message; `Config::parse` moves it into the key.
pub(super) const PATH_MARK: char = '\u{1}';

impl<'de> Deserialize<'de> for SourceConfig {
    // By hand rather than `#[serde(tag = "type")]`: an internally tagged enum buffers
    // its content and loses the key path, and every error must name its key.
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let mut v = serde_yaml_ng::Value::deserialize(d)?;
        let map = v.as_mapping_mut().ok_or_else(|| {
            D::Error::custom("a source must be a mapping with name, type and its settings")
        })?;
        let kind = match map.remove("type") {
            Some(serde_yaml_ng::Value::String(s)) => s,
            Some(other) => {
                return Err(D::Error::custom(format!(
                    "type: {other:?} is not a source type"
                )))
            }
            None => return Err(D::Error::custom("missing `type` (misp, misp_feed or list)")),
        };
        fn inner<T: serde::de::DeserializeOwned, E: Error>(
            v: serde_yaml_ng::Value,
        ) -> Result<T, E> {
            serde_path_to_error::deserialize(v)
                .map_err(|e| E::custom(format!("{PATH_MARK}{}{PATH_MARK}{}", e.path(), e.inner())))
        }
        match kind.as_str() {
            "misp" => inner(v).map(SourceConfig::Misp),
            "misp_feed" => inner(v).map(SourceConfig::MispFeed),
            "list" => inner(v).map(SourceConfig::List),
            other => Err(D::Error::custom(format!(
                "{PATH_MARK}type{PATH_MARK}{other:?} is not a source type (misp, misp_feed or list)"
            ))),
        }
    }
}

impl SourceConfig {
    /// The secret a feed or list sends as a bearer token, if it names one.
    pub fn token_env(&self) -> Option<&str> {
        match self {
            SourceConfig::Misp(_) => None,
            SourceConfig::MispFeed(f) => f.token_env.as_deref(),
            SourceConfig::List(l) => l.token_env.as_deref(),
        }
    }

    /// The source's name.
    pub fn name(&self) -> &str {
        match self {
            SourceConfig::Misp(s) => &s.name,
            SourceConfig::MispFeed(s) => &s.name,
            SourceConfig::List(s) => &s.name,
        }
    }

    /// How often it is pulled.
    pub fn interval(&self) -> Duration {
        match self {
            SourceConfig::Misp(s) => s.interval,
            SourceConfig::MispFeed(s) => s.interval,
            SourceConfig::List(s) => s.interval,
        }
    }

    /// How long this source's new indicators are observed before they block
    /// (`None`: they block at once), given the appliance-wide setting.
    pub fn shadow(&self, global: Option<Duration>) -> Option<Duration> {
        let own = match self {
            SourceConfig::Misp(s) => s.shadow,
            SourceConfig::MispFeed(s) => s.shadow,
            SourceConfig::List(s) => s.shadow,
        };
        own.unwrap_or(global)
    }
}

/// MISP REST source.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MispSource {
    /// Name used in logs, status and provenance.
    pub name: String,
    /// Base URL of the instance (`https://misp.example`).
    pub url: String,
    /// Environment variable (or credential / .env name) holding the API key.
    #[serde(default = "defaults::misp_key_env")]
    pub api_key_env: String,
    /// PEM file with the CA (or self-signed certificate) of a private instance.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Verify the server certificate (turning this off is for throwaway labs only).
    #[serde(default = "defaults::yes")]
    pub verify_tls: bool,
    /// Accept `http://` URLs (the API key then crosses the network in clear).
    #[serde(default)]
    pub allow_plain_http: bool,
    /// Pull interval.
    #[serde(default = "defaults::misp_interval", deserialize_with = "de_duration")]
    pub interval: Duration,
    /// Full re-pull interval (catches unpublished events); pulls in between are incremental.
    #[serde(default = "defaults::full_resync", deserialize_with = "de_duration")]
    pub full_resync: Duration,
    /// Timeout of one HTTP request.
    #[serde(default = "defaults::http_timeout", deserialize_with = "de_duration")]
    pub timeout: Duration,
    /// MISP attribute types to pull.
    #[serde(default = "defaults::misp_types")]
    pub types: Vec<String>,
    /// Ask MISP to drop values on its warninglists.
    #[serde(default = "defaults::yes")]
    pub enforce_warninglist: bool,
    /// Attributes per page.
    #[serde(default = "defaults::page_limit")]
    pub page_limit: u32,
    /// Observe new indicators first (alert only) for this long: `true` (24 h),
    /// a duration, or `false`; absent: as `enforcement.shadow` says.
    #[serde(default, deserialize_with = "de_source_shadow")]
    pub shadow: Option<Option<Duration>>,
}

impl MispSource {
    /// What a pull asks this instance for.
    pub fn query(&self) -> crate::intel::misp::Query<'_> {
        crate::intel::misp::Query {
            name: &self.name,
            types: &self.types,
            enforce_warninglist: self.enforce_warninglist,
            page_limit: self.page_limit,
            full_resync: self.full_resync,
        }
    }
}

/// MISP feed source.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeedSource {
    /// Name used in logs, status and provenance.
    pub name: String,
    /// Base URL of the feed (the directory holding manifest.json).
    #[serde(default)]
    pub url: Option<String>,
    /// Name of the secret sent as `Authorization: Bearer …` to `url` (a
    /// private feed: the token stays out of the URL, the config and the logs).
    #[serde(default)]
    pub token_env: Option<String>,
    /// Local directory holding manifest.json.
    #[serde(default)]
    pub path: Option<PathBuf>,
    /// Pull interval.
    #[serde(default = "defaults::feed_interval", deserialize_with = "de_duration")]
    pub interval: Duration,
    /// Timeout of one HTTP request.
    #[serde(default = "defaults::http_timeout", deserialize_with = "de_duration")]
    pub timeout: Duration,
    /// Only events whose `date` is newer than this are used (old events are mostly dead infrastructure).
    #[serde(default, deserialize_with = "de_opt_duration")]
    pub max_age: Option<Duration>,
    /// Observe new indicators first (alert only) for this long: `true` (24 h),
    /// a duration, or `false`; absent: as `enforcement.shadow` says.
    #[serde(default, deserialize_with = "de_source_shadow")]
    pub shadow: Option<Option<Duration>>,
}

/// Plain list source.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListSource {
    /// Name used in logs, status and provenance.
    pub name: String,
    /// URL of the list.
    #[serde(default)]
    pub url: Option<String>,
    /// Name of the secret sent as `Authorization: Bearer …` to `url`.
    #[serde(default)]
    pub token_env: Option<String>,
    /// Local file.
    #[serde(default)]
    pub path: Option<PathBuf>,
    /// Pull interval.
    #[serde(default = "defaults::feed_interval", deserialize_with = "de_duration")]
    pub interval: Duration,
    /// Timeout of one HTTP request.
    #[serde(default = "defaults::http_timeout", deserialize_with = "de_duration")]
    pub timeout: Duration,
    /// How the lines are laid out: auto (detected), plain, columns, csv or hosts.
    #[serde(default)]
    pub format: Format,
    /// For csv and columns: the value's column, 0-based or by its header's name.
    #[serde(default)]
    pub column: Column,
    /// A pull with more refused values than this percentage fails (the last good set stays).
    #[serde(default = "defaults::max_refused")]
    pub max_refused: u8,
    /// Observe new indicators first (alert only) for this long: `true` (24 h),
    /// a duration, or `false`; absent: as `enforcement.shadow` says.
    #[serde(default, deserialize_with = "de_source_shadow")]
    pub shadow: Option<Option<Duration>>,
}

impl ListSource {
    /// How to read this list.
    pub fn layout(&self) -> Layout {
        Layout {
            format: self.format,
            column: self.column.clone(),
            max_refused: self.max_refused,
        }
    }
}
