//! The one pure function from the agent's condition to what the LEDs show,
//! and how a pattern turns into on/off at a given moment.
//!
//! Legend (README has the picture):
//! * green steady: traffic is inspected and blocked (protected);
//! * amber steady: needs care (intel stale or a source failing, outbox backlog,
//!   a failed self-test);
//!   amber blinking slowly: Suricata down or bypassed, traffic passes uninspected;
//! * red steady: a high-severity incident nobody acknowledged yet;
//!   red blinking: blocking is happening right now;
//! * red flickering alone: the agent itself is failing;
//! * all three blinking together: factory reset countdown, release the button to cancel;
//! * the Pi's own ACT LED: a heartbeat when all is well, slow blink when
//!   degraded, fast blink when red is lit.

use serde::{Deserialize, Serialize};

/// What the agent knows about itself, reduced to what the panel shows.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Condition {
    /// Suricata runs inline with our rules.
    pub protected: bool,
    /// A source is failing or stale.
    pub intel_stale: bool,
    /// Suricata is down or bypassed.
    pub suricata_down: bool,
    /// Responder actions are piling up.
    pub outbox_backlog: bool,
    /// The last self-test failed (and rolled back); cleared by acknowledging.
    pub selftest_failed: bool,
    /// A high-severity incident waits for acknowledgement.
    pub unacked_high: bool,
    /// Something was blocked within the last seconds.
    pub blocking_now: bool,
    /// The agent itself is failing.
    pub agent_fault: bool,
    /// Seconds left before a factory reset (button held).
    pub reset_countdown: Option<u8>,
}

/// One LED's pattern.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Led {
    /// Dark.
    Off,
    /// Lit.
    On,
    /// On for `on_ms`, off for `off_ms`, repeating.
    Blink {
        /// Lit part of the period.
        on_ms: u32,
        /// Dark part of the period.
        off_ms: u32,
    },
    /// Two short pulses a second and a bit: "alive".
    Heartbeat,
}

/// Slow blink: something is off but nothing urgent.
pub const SLOW: Led = Led::Blink {
    on_ms: 500,
    off_ms: 500,
};
/// Blink: activity.
pub const BLINK: Led = Led::Blink {
    on_ms: 250,
    off_ms: 250,
};
/// Fast blink: urgent.
pub const FAST: Led = Led::Blink {
    on_ms: 100,
    off_ms: 100,
};

/// What all the LEDs show.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lights {
    /// Green LED.
    pub green: Led,
    /// Amber LED.
    pub amber: Led,
    /// Red LED.
    pub red: Led,
    /// The board's ACT LED.
    pub act: Led,
}

/// The legend, as a function.
pub fn lights(c: &Condition) -> Lights {
    if c.reset_countdown.is_some() {
        return Lights {
            green: FAST,
            amber: FAST,
            red: FAST,
            act: FAST,
        };
    }
    if c.agent_fault {
        return Lights {
            green: Led::Off,
            amber: Led::Off,
            red: FAST,
            act: FAST,
        };
    }
    let green = if c.protected && !c.suricata_down {
        Led::On
    } else {
        Led::Off
    };
    let amber = if c.suricata_down {
        SLOW
    } else if c.intel_stale || c.outbox_backlog || c.selftest_failed || !c.protected {
        Led::On
    } else {
        Led::Off
    };
    let red = if c.blocking_now {
        BLINK
    } else if c.unacked_high {
        Led::On
    } else {
        Led::Off
    };
    let act = if red != Led::Off {
        FAST
    } else if amber != Led::Off {
        SLOW
    } else {
        Led::Heartbeat
    };
    Lights {
        green,
        amber,
        red,
        act,
    }
}

/// Heartbeat period and pulses, in ms.
const HEARTBEAT_PERIOD: u64 = 1200;
const HEARTBEAT_PULSES: [(u64, u64); 2] = [(0, 70), (250, 320)];

impl Led {
    /// In words, for logs and the legend.
    pub fn describe(&self) -> &'static str {
        match *self {
            Led::Off => "off",
            Led::On => "on",
            Led::Heartbeat => "heartbeat",
            Led::Blink { on_ms, .. } if on_ms >= 500 => "slow blink",
            Led::Blink { on_ms, .. } if on_ms <= 100 => "fast blink",
            Led::Blink { .. } => "blinking",
        }
    }

    /// Whether the LED is lit `t_ms` milliseconds into the pattern.
    pub fn is_on(&self, t_ms: u64) -> bool {
        match *self {
            Led::Off => false,
            Led::On => true,
            Led::Blink { on_ms, off_ms } => {
                let period = u64::from(on_ms) + u64::from(off_ms);
                period == 0 || t_ms % period < u64::from(on_ms)
            }
            Led::Heartbeat => {
                let t = t_ms % HEARTBEAT_PERIOD;
                HEARTBEAT_PULSES.iter().any(|&(a, b)| (a..b).contains(&t))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every combination of the boolean inputs, with and without a countdown.
    fn all_conditions() -> Vec<Condition> {
        let mut out = Vec::new();
        for bits in 0u32..(1 << 8) {
            let b = |i: u32| bits & (1 << i) != 0;
            for countdown in [None, Some(3)] {
                out.push(Condition {
                    protected: b(0),
                    intel_stale: b(1),
                    suricata_down: b(2),
                    outbox_backlog: b(3),
                    unacked_high: b(4),
                    blocking_now: b(5),
                    agent_fault: b(6),
                    selftest_failed: b(7),
                    reset_countdown: countdown,
                });
            }
        }
        out
    }

    #[test]
    fn the_legend_holds_for_every_condition() {
        for c in all_conditions() {
            let l = lights(&c);
            if c.reset_countdown.is_some() {
                assert_eq!((l.green, l.amber, l.red), (FAST, FAST, FAST), "{c:?}");
                continue;
            }
            if c.agent_fault {
                assert_eq!(
                    (l.green, l.amber, l.red),
                    (Led::Off, Led::Off, FAST),
                    "{c:?}"
                );
                continue;
            }
            // Green means inspected and protected, nothing less.
            assert_eq!(l.green == Led::On, c.protected && !c.suricata_down, "{c:?}");
            assert_ne!(l.green, FAST);
            // Amber blinks exactly when traffic passes uninspected.
            assert_eq!(l.amber == SLOW, c.suricata_down, "{c:?}");
            assert_eq!(
                l.amber == Led::On,
                !c.suricata_down
                    && (c.intel_stale || c.outbox_backlog || c.selftest_failed || !c.protected),
                "{c:?}"
            );
            // Red: blinking while blocking, steady for an unacknowledged high incident.
            assert_eq!(l.red == BLINK, c.blocking_now, "{c:?}");
            assert_eq!(l.red == Led::On, !c.blocking_now && c.unacked_high, "{c:?}");
            assert_eq!(
                l.red == Led::Off,
                !c.blocking_now && !c.unacked_high,
                "{c:?}"
            );
            // The board LED alone tells the same story.
            let expect_act = if l.red != Led::Off {
                FAST
            } else if l.amber != Led::Off {
                SLOW
            } else {
                Led::Heartbeat
            };
            assert_eq!(l.act, expect_act, "{c:?}");
            // All quiet is the only state with a heartbeat.
            assert_eq!(
                l.act == Led::Heartbeat,
                l.green == Led::On && l.amber == Led::Off && l.red == Led::Off,
                "{c:?}"
            );
        }
    }

    #[test]
    fn patterns_over_time() {
        assert!(!Led::Off.is_on(0) && Led::On.is_on(12345));
        let on: Vec<bool> = (0..8).map(|i| SLOW.is_on(i * 250)).collect();
        assert_eq!(on, [true, true, false, false, true, true, false, false]);
        let beats = (0..HEARTBEAT_PERIOD)
            .filter(|&t| Led::Heartbeat.is_on(t))
            .count();
        assert_eq!(beats, 140);
        assert!(
            Led::Heartbeat.is_on(10) && !Led::Heartbeat.is_on(100) && Led::Heartbeat.is_on(260)
        );
    }
}
