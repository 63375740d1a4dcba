//! The panel's button on the running agent: acknowledge, re-sync (started
//! by the loop, which owns the pulls), the factory reset's countdown and reset.

use super::*;

/// Presses kept in status.
const PRESSES_SHOWN: usize = 10;

impl Agent {
    /// Acknowledges every open high incident (persisted by the incidents'
    /// owner, so a restart keeps it) and puts out a self-test alarm (the mail
    /// said what happened).
    pub async fn acknowledge(&mut self) -> usize {
        self.status.selftest.alarm = None;
        let n = match self.incidents.as_mut() {
            Some((book, _)) => book.acknowledge(),
            None => crate::daemon::ask(&self.incidents_tx, incidents::Msg::Ack)
                .await
                .unwrap_or(0),
        };
        self.publish();
        n
    }

    /// The control socket acknowledged `n` incidents with their owner: the
    /// self-test alarm goes out too, and the panel's log says so.
    pub(super) fn acknowledged(&mut self, n: usize) {
        self.status.selftest.alarm = None;
        self.pressed(format!("acknowledged {n} incident(s) (control socket)"));
    }

    /// What a press (or its release) does.
    pub(super) async fn on_button(&mut self, action: ButtonAction) -> Exit {
        let label = match action {
            ButtonAction::Ack => format!("acknowledged {} incident(s)", self.acknowledge().await),
            ButtonAction::Resync => {
                // Only the loop starts a re-sync (it owns the background pulls);
                // the press is recorded when the pulls are done.
                return Exit::Stopped;
            }
            ButtonAction::CountdownStarted => "factory reset countdown".into(),
            ButtonAction::CountdownCancelled => "factory reset cancelled".into(),
            ButtonAction::Ignored(ms) => format!("ignored a {ms} ms press"),
            ButtonAction::FactoryReset => match self.factory_reset().await {
                Ok(()) => return Exit::Restart,
                Err(e) => {
                    tracing::error!("factory reset failed: {e}");
                    format!("factory reset failed: {e}")
                }
            },
        };
        self.pressed(label);
        Exit::Stopped
    }

    /// Records what a press did, for status.
    pub(super) fn pressed(&mut self, label: String) {
        self.status.presses.push(Press {
            at: unix_now(),
            action: label,
        });
        let excess = self.status.presses.len().saturating_sub(PRESSES_SHOWN);
        self.status.presses.drain(..excess);
        self.publish();
    }

    /// Forgets all state (IoC store, incidents, acknowledgements, devices)
    /// and asks for the factory config at the next start (the agent cannot
    /// write /etc: see [`crate::appliance::factory`]).
    async fn factory_reset(&mut self) -> std::io::Result<()> {
        crate::appliance::factory::request(&self.cfg.state_dir, &self.cfg.panel.factory_config)?;
        let intel = self.cfg.state_dir.join("intel");
        if intel.exists() {
            std::fs::remove_dir_all(&intel)?;
        }
        // The incidents' owner forgets its own (and would otherwise save them again).
        match self.incidents.as_mut() {
            Some((book, _)) => book.forget(),
            None => {
                crate::daemon::ask(&self.incidents_tx, incidents::Msg::Forget).await;
            }
        }
        // So does the devices' owner: names, inventory, and every hold (a
        // factory-reset box cuts nobody off).
        match (self.devices.as_mut(), &self.devices_tx) {
            (Some((owner, _)), _) => owner.forget(unix_now() as i64).await,
            (None, Some(tx)) => {
                // An owner that is gone cannot write the file back: remove it here.
                if crate::daemon::ask(tx, devices::Msg::Forget).await.is_none() {
                    devices::forget_saved(&self.cfg.state_dir);
                }
            }
            (None, None) => devices::forget_saved(&self.cfg.state_dir),
        }
        tracing::warn!(config = %self.cfg.path.display(), "factory reset: state cleared, factory config restored at the restart");
        Ok(())
    }
}
