//! The config's own value syntaxes: durations (`"90s"`, `"1h 30m"`), queue
//! counts (`auto` or a number), shadow periods (`true`, `false` or a duration),
//! devices (an address or a network).

use std::time::Duration;

use serde::{Deserialize, Deserializer};

/// Devices by address (`192.168.1.23`, a host) or network (`192.168.1.0/28`).
pub(super) fn de_devices<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<ipnet::IpNet>, D::Error> {
    Vec::<String>::deserialize(d)?
        .iter()
        .map(|t| {
            crate::signatures::word::parse_net(t).map_err(|_| {
                serde::de::Error::custom(format!(
                    "{t:?} is neither an address nor a network (192.168.1.23 or 192.168.1.0/28)"
                ))
            })
        })
        .collect()
}

/// Accepts `"90s"`, `"5m"`, `"1h 30m"` or a number of seconds.
pub(crate) fn de_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Secs(u64),
        Text(String),
    }
    match Raw::deserialize(d)? {
        Raw::Secs(s) => Ok(Duration::from_secs(s)),
        Raw::Text(t) => humantime::parse_duration(&t).map_err(|e| {
            serde::de::Error::custom(format!(
                "invalid duration {t:?} ({e}); write e.g. \"30s\", \"5m\", \"1h\""
            ))
        }),
    }
}

/// Most NFQUEUE queues a config may ask for.
pub const MAX_QUEUES: u16 = 16;

/// `auto` (one queue per core) or a number of queues.
pub(super) fn de_queues<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u16>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Count(i64),
        Text(String),
    }
    match Raw::deserialize(d)? {
        Raw::Text(t) if t == "auto" => Ok(None),
        Raw::Count(n) if (1..=i64::from(MAX_QUEUES)).contains(&n) => Ok(Some(n as u16)),
        Raw::Count(n) => Err(serde::de::Error::custom(format!(
            "{n} queues: write auto or a number from 1 to {MAX_QUEUES}"
        ))),
        Raw::Text(t) => Err(serde::de::Error::custom(format!(
            "invalid queue count {t:?}: write auto or a number from 1 to {MAX_QUEUES}"
        ))),
    }
}

/// The default observation period of shadow mode.
pub const SHADOW_DEFAULT: Duration = Duration::from_secs(24 * 3600);

/// `true` (24 h), `false` (off), or a duration.
pub(super) fn de_shadow<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Flag(bool),
        Secs(u64),
        Text(String),
    }
    let bad = |t: String| {
        serde::de::Error::custom(format!(
            "invalid shadow setting {t:?}; write true (24h), false, or a duration such as \"12h\""
        ))
    };
    match Raw::deserialize(d)? {
        Raw::Flag(false) => Ok(None),
        Raw::Flag(true) => Ok(Some(SHADOW_DEFAULT)),
        Raw::Secs(0) => Ok(None),
        Raw::Secs(s) => Ok(Some(Duration::from_secs(s))),
        Raw::Text(t) => match humantime::parse_duration(&t) {
            Ok(d) if d.is_zero() => Ok(None),
            Ok(d) => Ok(Some(d)),
            Err(_) => Err(bad(t)),
        },
    }
}

pub(super) fn de_source_shadow<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<Option<Duration>>, D::Error> {
    de_shadow(d).map(Some)
}

pub(super) fn de_opt_duration<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<Duration>, D::Error> {
    de_duration(d).map(Some)
}
