//! Alerts Suricata raised that never reached the agent. Suricata drops eve
//! records when the agent's socket is full; its own counter
//! (`detect.alert`, over the command socket) says how many it raised. The
//! difference is shown, never silent.
//!
//! Pure: fed Suricata's counters and the intake's count once a health tick.
//! An alert raised by the previous tick has had a whole tick to arrive.

use serde::{Deserialize, Serialize};

/// Suricata's counters that matter here, as `dump-counters` gives them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Raised {
    /// Seconds Suricata has been up (a smaller one means it restarted).
    pub uptime: u64,
    /// Alerts raised since it started (`detect.alert`).
    pub alerts: u64,
}

impl Raised {
    /// Reads `uptime` and `detect.alert` from a `dump-counters` reply's message.
    pub fn from_counters(message: &serde_json::Value) -> Option<Raised> {
        Some(Raised {
            uptime: message["uptime"].as_u64()?,
            alerts: message["detect"]["alert"].as_u64()?,
        })
    }
}

/// What `status` shows.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LossStatus {
    /// Alerts Suricata raised since the agent began counting (across its restarts).
    pub raised: u64,
    /// Of those, never received by a tick after they were raised.
    pub missing: u64,
}

/// The running comparison.
#[derive(Clone, Debug, Default)]
pub struct Loss {
    /// This Suricata run: its uptime and count at the last tick, and the
    /// counts (Suricata's, ours) when the agent began comparing with it.
    run: Option<Run>,
    /// Raised and missing in Suricata runs before this one.
    earlier: LossStatus,
}

#[derive(Clone, Copy, Debug)]
struct Run {
    uptime: u64,
    raised_then: u64,
    base_raised: u64,
    base_received: u64,
    missing: u64,
}

impl Loss {
    /// Takes one tick's readings: Suricata's counters (none when it does not
    /// answer) and the alerts the intake has received so far.
    pub fn tick(&mut self, raised: Option<Raised>, received: u64) -> LossStatus {
        let Some(now) = raised else {
            return self.status();
        };
        match self.run {
            Some(run) if now.uptime >= run.uptime && now.alerts >= run.raised_then => {
                // What was raised by the last tick and has still not come.
                let due = run.raised_then - run.base_raised;
                let got = received.saturating_sub(run.base_received);
                let missing = due.saturating_sub(got);
                self.run = Some(Run {
                    uptime: now.uptime,
                    raised_then: now.alerts,
                    missing,
                    ..run
                });
            }
            previous => {
                // The agent's first look, or Suricata restarted (its counters
                // began again): what the last run lost stays counted.
                if let Some(run) = previous {
                    self.earlier.raised += run.raised_then - run.base_raised;
                    self.earlier.missing += run.missing;
                }
                // A restarted Suricata counted its alerts from zero; on the
                // agent's first look the alerts of before are not ours to judge.
                let base_raised = if previous.is_some() { 0 } else { now.alerts };
                let base_received = if previous.is_some() {
                    // Alerts of the new run already received are in `received`.
                    received.saturating_sub(now.alerts.min(received))
                } else {
                    received
                };
                self.run = Some(Run {
                    uptime: now.uptime,
                    raised_then: now.alerts,
                    base_raised,
                    base_received,
                    missing: 0,
                });
            }
        }
        self.status()
    }

    /// The totals so far.
    pub fn status(&self) -> LossStatus {
        let (raised, missing) = self
            .run
            .map_or((0, 0), |r| (r.raised_then - r.base_raised, r.missing));
        LossStatus {
            raised: self.earlier.raised + raised,
            missing: self.earlier.missing + missing,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(uptime: u64, alerts: u64) -> Option<Raised> {
        Some(Raised { uptime, alerts })
    }

    #[test]
    fn alerts_in_flight_are_not_missing_and_dropped_ones_are() {
        let mut l = Loss::default();
        // The agent starts while Suricata has raised 100 already: not judged.
        assert_eq!(l.tick(at(50, 100), 0), LossStatus::default());
        // 40 raised; 10 arrived so far: they had no tick to arrive yet.
        assert_eq!(l.tick(at(55, 140), 10).missing, 0);
        // All 40 arrived by the next tick, 5 more in flight.
        assert_eq!(
            l.tick(at(60, 145), 40),
            LossStatus {
                raised: 45,
                missing: 0
            }
        );
        // A stall: 1,000 raised, 100 of them got in, Suricata dropped 900 on
        // the full socket.
        l.tick(at(65, 1145), 145);
        let s = l.tick(at(70, 1145), 145);
        assert_eq!(
            s,
            LossStatus {
                raised: 1045,
                missing: 900
            }
        );
        // Suricata unreachable for a tick: nothing changes.
        assert_eq!(l.tick(None, 145), s);
    }

    #[test]
    fn a_suricata_restart_keeps_what_was_lost_and_starts_counting_again() {
        let mut l = Loss::default();
        l.tick(at(10, 0), 0);
        l.tick(at(15, 50), 20);
        assert_eq!(l.tick(at(20, 50), 20).missing, 30);
        // Restarted: uptime went back; 5 alerts of the new run already in.
        let s = l.tick(at(3, 5), 25);
        assert_eq!(
            s,
            LossStatus {
                raised: 55,
                missing: 30
            }
        );
        let s = l.tick(at(8, 15), 35);
        assert_eq!(
            s,
            LossStatus {
                raised: 65,
                missing: 30
            }
        );
        // The new run's alerts all arrive: no new loss.
        assert_eq!(l.tick(at(13, 15), 35).missing, 30);
    }

    #[test]
    fn reads_the_counters_suricata_dumps() {
        let msg = serde_json::json!({"uptime": 42, "detect": {"engines": [], "alert": 7, "alerts_suppressed": 0}});
        assert_eq!(
            Raised::from_counters(&msg),
            Some(Raised {
                uptime: 42,
                alerts: 7
            })
        );
        assert_eq!(
            Raised::from_counters(&serde_json::json!({"uptime": 1})),
            None
        );
    }
}
