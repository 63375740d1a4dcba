//! Suricata's memory against its budget, and how a new ruleset goes in
//! without taking the home down. A live rule reload builds a second
//! detection engine beside the first (about twice the rules' memory at the
//! peak); a restart frees the old engine first, at the cost of a few
//! seconds under the configured fail mode. The budget is the one the
//! system enforces on Suricata (its unit's `MemoryMax=`, read from the
//! cgroup), so what is decided here is what the kernel would hold it to.

use std::path::Path;

use serde::{Deserialize, Serialize};

/// How a taken ruleset reaches Suricata.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Way {
    /// `ruleset-reload-rules`: no gap, two engines at the peak.
    #[default]
    Live,
    /// Suricata shut down and started again by its unit (`Restart=always`):
    /// one engine at a time, traffic under the fail mode meanwhile.
    Restart,
}

impl Way {
    /// How status names it.
    pub fn name(self) -> &'static str {
        match self {
            Way::Live => "live reload",
            Way::Restart => "restart",
        }
    }
}

/// Suricata's memory as its cgroup accounts it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reading {
    /// Its limit (`None`: none set).
    pub limit: Option<u64>,
    /// What it holds now.
    pub current: u64,
}

/// A limit this high is "no limit" (cgroup v1 writes a page-rounded i64::MAX).
const UNLIMITED: u64 = 1 << 62;

/// Reads Suricata's cgroup directory, v2 (`memory.max`, `memory.current`) or
/// v1 (`memory.limit_in_bytes`, `memory.usage_in_bytes`). `None` when it has
/// neither (Suricata not under the unit, or not running).
pub fn read(cgroup: &Path) -> Option<Reading> {
    let number = |name: &str| -> Option<String> {
        std::fs::read_to_string(cgroup.join(name))
            .ok()
            .map(|s| s.trim().to_string())
    };
    let (limit, current) = match (number("memory.max"), number("memory.current")) {
        (Some(l), Some(c)) => (l, c),
        _ => (
            number("memory.limit_in_bytes")?,
            number("memory.usage_in_bytes")?,
        ),
    };
    let limit = match limit.as_str() {
        "max" => None,
        l => Some(l.parse::<u64>().ok()?).filter(|&l| l < UNLIMITED),
    };
    Some(Reading {
        limit,
        current: current.parse().ok()?,
    })
}

/// Why a ruleset was not taken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "it needs about {} MiB to start (suricata -T peak) with {} MiB more for Suricata's flows and buffers, and Suricata's budget is {} MiB: the ruleset in force stays; a smaller profile (`signatures.profile: core`) fits",
    .test_peak >> 20, .beyond_rules >> 20, .limit >> 20
)]
pub struct TooBig {
    /// The new ruleset's `suricata -T` peak.
    pub test_peak: u64,
    /// What Suricata holds beside its rules.
    pub beyond_rules: u64,
    /// The budget.
    pub limit: u64,
}

/// How a ruleset whose `suricata -T` peaked at `test_peak` goes in, given
/// Suricata's `reading` now and the peak of the ruleset in force
/// (`in_force_peak`, if one was measured).
///
/// Live when the new engine fits beside the running Suricata; else a
/// restart when the new engine fits beside what Suricata holds apart from
/// its rules (its memory now less the engine in force; a tenth of the
/// budget when the engine in force was never measured); else refused. No
/// limit, or no reading: live, as Suricata has always been reloaded.
pub fn way(
    reading: Option<Reading>,
    test_peak: u64,
    in_force_peak: Option<u64>,
) -> Result<Way, TooBig> {
    let Some(Reading {
        limit: Some(limit),
        current,
    }) = reading
    else {
        return Ok(Way::Live);
    };
    if current.saturating_add(test_peak) <= limit {
        return Ok(Way::Live);
    }
    let beyond_rules = match in_force_peak {
        Some(p) => current.saturating_sub(p),
        None => limit / 10,
    };
    if test_peak.saturating_add(beyond_rules) <= limit {
        Ok(Way::Restart)
    } else {
        Err(TooBig {
            test_peak,
            beyond_rules,
            limit,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    fn at(limit: u64, current: u64) -> Option<Reading> {
        Some(Reading {
            limit: Some(limit),
            current,
        })
    }

    #[test]
    fn a_ruleset_that_fits_beside_the_running_engine_is_reloaded_live() {
        assert_eq!(
            way(at(1200 * MIB, 400 * MIB), 300 * MIB, None),
            Ok(Way::Live)
        );
        assert_eq!(
            way(None, 4000 * MIB, None),
            Ok(Way::Live),
            "nothing to go by"
        );
        let unlimited = Some(Reading {
            limit: None,
            current: 400 * MIB,
        });
        assert_eq!(way(unlimited, 4000 * MIB, None), Ok(Way::Live));
    }

    #[test]
    fn one_that_would_double_past_the_budget_restarts_suricata() {
        // 700 MiB now, of which 500 the engine in force: 200 beside it.
        assert_eq!(
            way(at(1200 * MIB, 700 * MIB), 600 * MIB, Some(500 * MIB)),
            Ok(Way::Restart)
        );
        // Never measured: a tenth of the budget is held for the rest.
        assert_eq!(
            way(at(1000 * MIB, 500 * MIB), 800 * MIB, None),
            Ok(Way::Restart)
        );
    }

    #[test]
    fn one_that_fits_not_even_alone_is_refused_and_says_by_how_much() {
        let e = way(at(1000 * MIB, 700 * MIB), 900 * MIB, Some(500 * MIB)).unwrap_err();
        assert_eq!(e.limit, 1000 * MIB);
        assert_eq!(e.beyond_rules, 200 * MIB);
        let line = e.to_string();
        assert!(
            line.contains("900 MiB") && line.contains("1000 MiB"),
            "{line}"
        );
        assert!(!line.contains('\n'));
    }

    #[test]
    fn both_cgroup_versions_are_read() {
        let dir = std::env::temp_dir().join(format!("hw-mem-{}", std::process::id()));
        let v2 = dir.join("v2");
        let v1 = dir.join("v1");
        std::fs::create_dir_all(&v2).unwrap();
        std::fs::create_dir_all(&v1).unwrap();
        std::fs::write(v2.join("memory.max"), "1073741824\n").unwrap();
        std::fs::write(v2.join("memory.current"), "52428800\n").unwrap();
        assert_eq!(read(&v2), at(1 << 30, 50 * MIB));
        std::fs::write(v2.join("memory.max"), "max\n").unwrap();
        assert_eq!(read(&v2).unwrap().limit, None);

        std::fs::write(v1.join("memory.limit_in_bytes"), "9223372036854771712\n").unwrap();
        std::fs::write(v1.join("memory.usage_in_bytes"), "1048576\n").unwrap();
        assert_eq!(
            read(&v1),
            Some(Reading {
                limit: None,
                current: MIB
            })
        );
        std::fs::write(v1.join("memory.limit_in_bytes"), "536870912\n").unwrap();
        assert_eq!(read(&v1), at(512 * MIB, MIB));

        assert_eq!(read(&dir.join("none")), None);
        std::fs::write(v1.join("memory.usage_in_bytes"), "lots\n").unwrap();
        assert_eq!(read(&v1), None, "unreadable is no reading, not zero");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
