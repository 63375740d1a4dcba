//! Which signature categories a board runs, by what it is asked and what
//! it can carry. A signature engine that does not fit in memory takes the
//! home down (in IPS mode a memcap hit drops traffic); one that is off
//! protects nothing beyond the listed values. `auto` picks by the board's
//! memory.

use serde::Deserialize;

/// What the owner asks for (`signatures.profile`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Profile {
    /// By the board's memory.
    Auto,
    /// No signatures: the IoC sets alone. The default until Suricata's
    /// memory with a ruleset is measured and bounded per board: a ruleset
    /// that does not fit takes the home down.
    #[default]
    Off,
    /// The few categories that catch malware talking home, for small boards.
    Core,
    /// What protects a household.
    Home,
    /// Every category the ruleset enables.
    Full,
}

/// A profile resolved for this board.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Tier {
    /// No signatures.
    Off,
    /// [`CORE`] only.
    Core,
    /// [`HOME`].
    Home,
    /// Everything enabled upstream.
    Full,
}

impl Tier {
    /// How status names it.
    pub fn name(self) -> &'static str {
        match self {
            Tier::Off => "off",
            Tier::Core => "core",
            Tier::Home => "home",
            Tier::Full => "full",
        }
    }

    /// Whether rules of `category` are loaded at this tier. The owner's own
    /// rules ([`LOCAL`]) load whenever signatures do.
    pub fn keeps(self, category: &str) -> bool {
        match self {
            Tier::Off => false,
            _ if category == LOCAL => true,
            Tier::Core => CORE.contains(&category),
            Tier::Home => HOME.contains(&category),
            Tier::Full => !IP_REPUTATION.contains(&category),
        }
    }
}

/// The category of the owner's own `.rules` files.
pub const LOCAL: &str = "local";

/// Malware talking home and the pages that deliver it: drop-worthy, cheap.
pub const CORE: &[&str] = &[
    "malware",
    "mobile_malware",
    "phishing",
    "exploit_kit",
    "coinminer",
];

/// What protects a household: its devices as clients of the internet.
pub const HOME: &[&str] = &[
    "malware",
    "mobile_malware",
    "phishing",
    "exploit",
    "exploit_kit",
    "coinminer",
    "worm",
    "attack_response",
    "web_client",
    "adware_pup",
    "current_events",
    "dns",
    "ja3",
];

/// Left out of `home`: what protects servers a home does not run, or hunts.
pub const NOT_HOME: &[&str] = &[
    "web_specific_apps",
    "web_server",
    "sql",
    "scada",
    "activex",
    "info",
    "hunting",
    "policy",
    "games",
    "chat",
    "inappropriate",
];

/// ET's IP-reputation files: homewarden's own IP datasets do their job
/// without a rule per address, at every tier.
pub const IP_REPUTATION: &[&str] = &["botcc", "ciarmy", "compromised", "drop", "dshield", "tor"];

/// Memory (`MemTotal`, bytes) from which `auto` picks each tier. A board
/// sold as 1 GB reports about 0.9 GiB, 2 GB about 1.8 GiB, 4 GB about 3.7.
/// Provisional: ET Open with Aho-Corasick takes ~1.2 GiB whole
/// (../shared/design.md §9); the measured figures per tier replace these.
pub const AUTO_FROM: [(u64, Tier); 3] = [
    (3 << 30, Tier::Full),
    (1536 << 20, Tier::Home),
    (768 << 20, Tier::Core),
];

impl Profile {
    /// The tier for a board with `mem_total` bytes, and why.
    pub fn resolve(self, mem_total: u64) -> (Tier, String) {
        let asked = |t: Tier| (t, format!("signatures.profile: {}", t.name()));
        match self {
            Profile::Off => asked(Tier::Off),
            Profile::Core => asked(Tier::Core),
            Profile::Home => asked(Tier::Home),
            Profile::Full => asked(Tier::Full),
            Profile::Auto => {
                let mib = mem_total >> 20;
                let tier = AUTO_FROM
                    .iter()
                    .find(|(from, _)| mem_total >= *from)
                    .map_or(Tier::Off, |(_, t)| *t);
                (tier, format!("auto: {mib} MiB of memory"))
            }
        }
    }
}

/// The multi-pattern matcher for a Suricata build: Hyperscan (Vectorscan on
/// arm64) where it has it, else Aho-Corasick with Ken Steele's tables.
pub fn mpm_algo(hyperscan: bool) -> &'static str {
    if hyperscan {
        "hs"
    } else {
        "ac-ks"
    }
}

/// Whether `suricata --build-info` says the build has Hyperscan.
pub fn has_hyperscan(build_info: &str) -> bool {
    build_info.lines().any(|l| {
        let l = l.trim().to_ascii_lowercase();
        l.starts_with("hyperscan support:") && l.ends_with("yes")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const GIB: u64 = 1 << 30;

    #[test]
    fn auto_picks_by_the_boards_memory() {
        let tier = |m: u64| Profile::Auto.resolve(m).0;
        assert_eq!(tier(GIB / 2), Tier::Off);
        assert_eq!(tier(900 << 20), Tier::Core, "a 1 GB Pi");
        assert_eq!(tier(1843 << 20), Tier::Home, "a 2 GB Pi");
        assert_eq!(tier(3790 << 20), Tier::Full, "a 4 GB Pi");
        assert_eq!(tier(8 * GIB), Tier::Full);
        assert!(Profile::Auto.resolve(1843 << 20).1.contains("1843 MiB"));
        // Asked for, whatever the board.
        assert_eq!(Profile::Full.resolve(GIB / 2).0, Tier::Full);
        assert_eq!(
            Profile::Off.resolve(8 * GIB),
            (Tier::Off, "signatures.profile: off".into())
        );
    }

    #[test]
    fn home_keeps_a_households_categories_and_none_that_guard_servers() {
        for c in HOME {
            assert!(Tier::Home.keeps(c) && Tier::Full.keeps(c), "{c}");
            assert!(!NOT_HOME.contains(c) && !IP_REPUTATION.contains(c), "{c}");
        }
        for c in NOT_HOME {
            assert!(!Tier::Home.keeps(c) && Tier::Full.keeps(c), "{c}");
        }
        for c in IP_REPUTATION {
            assert!(!Tier::Full.keeps(c), "{c}: the IoC sets cover addresses");
        }
        for c in CORE {
            assert!(HOME.contains(c), "core is within home: {c}");
        }
        assert!(!Tier::Off.keeps("malware"));
        assert!(
            Tier::Core.keeps(LOCAL) && !Tier::Off.keeps(LOCAL),
            "the owner's own rules"
        );
    }

    #[test]
    fn the_matcher_follows_the_build() {
        let with = "Hyperscan support:                       yes\n";
        assert!(has_hyperscan(with));
        assert!(!has_hyperscan(
            "Hyperscan support:                       no\n"
        ));
        assert!(!has_hyperscan(""));
        assert_eq!((mpm_algo(true), mpm_algo(false)), ("hs", "ac-ks"));
    }
}
