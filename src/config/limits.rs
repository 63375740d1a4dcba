//! Bounds on what the agent reads: no feed, list, MISP or LLM can make it
//! hold more than the owner allows.

use serde::Deserialize;

/// `limits:` of the config.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Largest body read from one source URL or file, one MISP reply or one
    /// LLM answer, in MiB.
    pub body_mb: u32,
    /// Most indicators held across all sources; absent: sized by the
    /// board's RAM (`auto_budget`). What would pass it is not taken,
    /// counted per source and shown.
    pub indicators: Option<usize>,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            body_mb: (crate::intel::fetch::DEFAULT_MAX_BODY / 1024 / 1024) as u32,
            indicators: None,
        }
    }
}

/// Widest `body_mb` allowed: past it a Pi would page, not refuse.
pub const MAX_BODY_MB: u32 = 1024;
/// Bounds of `indicators`.
pub const MIN_INDICATORS: usize = 10_000;
/// See [`MIN_INDICATORS`].
pub const MAX_INDICATORS: usize = 10_000_000;
/// The automatic budget is never below this.
const MIN_AUTO: usize = 100_000;

/// The indicator budget for a board with `mem_total` bytes of RAM: one
/// indicator per 512 bytes (a 1 GB Pi holds 2 million: the agent needs under
/// 100 MB for them and Suricata's datasets a few hundred), within
/// 100,000..=[`MAX_INDICATORS`]; 2 million when the RAM is unknown.
pub fn auto_budget(mem_total: Option<u64>) -> usize {
    mem_total.map_or(2_000_000, |m| {
        usize::try_from(m / 512)
            .unwrap_or(MAX_INDICATORS)
            .clamp(MIN_AUTO, MAX_INDICATORS)
    })
}

/// The board's RAM (`MemTotal` of /proc/meminfo), in bytes.
pub fn mem_total() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let kb = text
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))?
        .trim()
        .strip_suffix("kB")?
        .trim()
        .parse::<u64>()
        .ok()?;
    Some(kb * 1024)
}

impl Limits {
    /// The body cap in bytes.
    pub fn max_body(&self) -> usize {
        self.body_mb as usize * 1024 * 1024
    }

    /// The indicator budget: the configured one, else sized by the board's RAM.
    pub fn indicator_budget(&self) -> usize {
        self.indicators.unwrap_or_else(|| auto_budget(mem_total()))
    }

    /// Checks the values; `Err((key, message))`.
    pub fn check(&self) -> Result<(), (&'static str, String)> {
        if let Some(n) = self.indicators {
            if !(MIN_INDICATORS..=MAX_INDICATORS).contains(&n) {
                return Err((
                    "limits.indicators",
                    format!("{n} is not a budget of {MIN_INDICATORS}-{MAX_INDICATORS} indicators"),
                ));
            }
        }
        if !(1..=MAX_BODY_MB).contains(&self.body_mb) {
            return Err((
                "limits.body_mb",
                format!("{} is not a size of 1-{MAX_BODY_MB} MiB", self.body_mb),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_automatic_budget_follows_the_board() {
        assert_eq!(auto_budget(Some(1 << 30)), 2_097_152, "a 1 GB Pi");
        assert_eq!(auto_budget(Some(512 << 20)), 1_048_576, "a Pi Zero 2 W");
        assert_eq!(auto_budget(Some(16 << 30)), MAX_INDICATORS);
        assert_eq!(auto_budget(Some(8 << 20)), MIN_AUTO);
        assert_eq!(auto_budget(None), 2_000_000);
        assert!(
            mem_total().is_some_and(|m| m > 0),
            "read from /proc/meminfo"
        );
    }
}
