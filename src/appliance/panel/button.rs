//! The reset button as a pure state machine: raw levels with timestamps in,
//! debounced presses and their meaning out. No clock of its own: the caller
//! feeds time, so tests need neither hardware nor waiting.
//!
//! * short press (< 1.5 s): acknowledge incidents;
//! * long press (released between 5 s and 7 s): re-sync intel now;
//! * very long press: from 7 s a countdown shows on the LEDs; still held at
//!   10 s, the factory config and state are restored. Releasing during the
//!   countdown cancels it. Presses between 1.5 s and 5 s do nothing.

use serde::Serialize;

/// A level must hold this long to count (contacts bounce for a few ms).
pub const DEBOUNCE_MS: u64 = 30;
/// Longest press that acknowledges.
pub const SHORT_MAX_MS: u64 = 1500;
/// Shortest press that re-syncs.
pub const LONG_MIN_MS: u64 = 5000;
/// Held this long, the factory-reset countdown starts.
pub const COUNTDOWN_AT_MS: u64 = 7000;
/// Held this long, the factory reset happens.
pub const RESET_AT_MS: u64 = 10_000;

/// What a press means.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Acknowledge incidents.
    Ack,
    /// Pull all intel now.
    Resync,
    /// The factory-reset countdown began.
    CountdownStarted,
    /// The button was released during the countdown: nothing happens.
    CountdownCancelled,
    /// Restore the factory config and state.
    FactoryReset,
    /// A press that means nothing (duration in ms), logged only.
    Ignored(u64),
}

/// Debounce and press-length logic.
#[derive(Clone, Debug, Default)]
pub struct Button {
    stable: bool,
    raw: bool,
    raw_since: u64,
    pressed_at: Option<u64>,
    counting_down: bool,
    reset_done: bool,
}

impl Button {
    /// A released button.
    pub fn new() -> Button {
        Button::default()
    }

    /// Reports the raw level (`true` = pressed) seen at `t_ms`; bounces are fine.
    pub fn level(&mut self, pressed: bool, t_ms: u64) -> Option<Action> {
        if pressed != self.raw {
            self.raw = pressed;
            self.raw_since = t_ms;
        }
        self.tick(t_ms)
    }

    /// Lets time pass to `t_ms`: confirms a level that held, advances the countdown.
    pub fn tick(&mut self, t_ms: u64) -> Option<Action> {
        if self.raw != self.stable && t_ms.saturating_sub(self.raw_since) >= DEBOUNCE_MS {
            self.stable = self.raw;
            // The edge happened when the level first changed, not when we believed it.
            let at = self.raw_since;
            return if self.stable {
                self.pressed(at)
            } else {
                self.released(at)
            };
        }
        let held = self.held_ms(t_ms)?;
        if self.reset_done {
            return None;
        }
        if held >= RESET_AT_MS {
            self.reset_done = true;
            self.counting_down = false;
            return Some(Action::FactoryReset);
        }
        if held >= COUNTDOWN_AT_MS && !self.counting_down {
            self.counting_down = true;
            return Some(Action::CountdownStarted);
        }
        None
    }

    /// How long the button has been held (debounced), if it is.
    pub fn held_ms(&self, t_ms: u64) -> Option<u64> {
        self.pressed_at.map(|p| t_ms.saturating_sub(p))
    }

    /// Whole seconds left before the factory reset, while counting down.
    pub fn countdown(&self, t_ms: u64) -> Option<u8> {
        if !self.counting_down {
            return None;
        }
        let left = RESET_AT_MS.saturating_sub(self.held_ms(t_ms)?);
        Some(left.div_ceil(1000) as u8)
    }

    fn pressed(&mut self, at: u64) -> Option<Action> {
        self.pressed_at = Some(at);
        self.counting_down = false;
        self.reset_done = false;
        None
    }

    fn released(&mut self, at: u64) -> Option<Action> {
        let held = at.saturating_sub(self.pressed_at.take()?);
        if self.reset_done {
            self.reset_done = false;
            return None;
        }
        if std::mem::take(&mut self.counting_down) {
            return Some(Action::CountdownCancelled);
        }
        Some(match held {
            h if h <= SHORT_MAX_MS => Action::Ack,
            h if h >= LONG_MIN_MS => Action::Resync,
            h => Action::Ignored(h),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds (level, time) samples every 10 ms between the given edges and collects actions.
    fn run(edges: &[(bool, u64)], until: u64) -> Vec<(u64, Action)> {
        let mut b = Button::new();
        let mut out = Vec::new();
        let mut level = false;
        let mut next = 0;
        for t in (0..=until).step_by(5) {
            while next < edges.len() && edges[next].1 <= t {
                level = edges[next].0;
                next += 1;
            }
            if let Some(a) = b.level(level, t) {
                out.push((t, a));
            }
        }
        out
    }

    fn actions(edges: &[(bool, u64)], until: u64) -> Vec<Action> {
        run(edges, until).into_iter().map(|(_, a)| a).collect()
    }

    #[test]
    fn a_short_press_acknowledges_despite_bounce() {
        // Press at 100 with bounce, release at 400 with bounce.
        let edges = [
            (true, 100),
            (false, 105),
            (true, 110),
            (false, 112),
            (true, 115),
            (false, 400),
            (true, 405),
            (false, 410),
        ];
        assert_eq!(actions(&edges, 2000), [Action::Ack]);
    }

    #[test]
    fn bounce_alone_is_not_a_press() {
        let edges = [(true, 100), (false, 110), (true, 120), (false, 125)];
        assert_eq!(actions(&edges, 1000), []);
    }

    #[test]
    fn long_press_resyncs_medium_press_is_ignored() {
        assert_eq!(actions(&[(true, 0), (false, 5500)], 8000), [Action::Resync]);
        assert_eq!(
            actions(&[(true, 0), (false, 3000)], 8000),
            [Action::Ignored(3000)]
        );
    }

    #[test]
    fn very_long_press_counts_down_and_resets_once() {
        let got = run(&[(true, 0), (false, 15_000)], 20_000);
        let acts: Vec<Action> = got.iter().map(|(_, a)| *a).collect();
        assert_eq!(acts, [Action::CountdownStarted, Action::FactoryReset]);
        assert_eq!(got[0].0, COUNTDOWN_AT_MS);
        assert_eq!(got[1].0, RESET_AT_MS);
    }

    #[test]
    fn releasing_during_the_countdown_cancels_it() {
        assert_eq!(
            actions(&[(true, 0), (false, 8500)], 12_000),
            [Action::CountdownStarted, Action::CountdownCancelled]
        );
    }

    #[test]
    fn countdown_seconds_shown() {
        let mut b = Button::new();
        b.level(true, 0);
        b.tick(DEBOUNCE_MS);
        assert_eq!(b.countdown(6000), None);
        assert_eq!(b.tick(7000), Some(Action::CountdownStarted));
        assert_eq!(b.countdown(7000), Some(3));
        assert_eq!(b.countdown(9001), Some(1));
    }
}
