//! The watchdog's one voice. systemd restarts the agent when it stops hearing
//! "alive" (`WatchdogSec=`); the supervisor says it only while every owner
//! task has reported in on time. A task reports in from its own loop
//! ([`Heart::alive`]), or declares a bounded step before it starts one
//! ([`Heart::busy`]: an apply, a self-test replay). So a step that runs past
//! its bound, or a loop that stops turning, gets the agent restarted instead
//! of being hidden behind pings.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

/// One task's promise: it reports in again before `due`.
#[derive(Clone, Debug)]
pub struct Heart {
    name: &'static str,
    due: Arc<Mutex<Instant>>,
}

impl Heart {
    /// A task that reports in within `within` from now on.
    pub fn new(name: &'static str, within: Duration) -> Heart {
        Heart {
            name,
            due: Arc::new(Mutex::new(Instant::now() + within)),
        }
    }

    /// The task's name, for the log line of a late one.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// Reports in: the task will do so again within `within`.
    pub fn alive(&self, within: Duration) {
        if let Ok(mut due) = self.due.lock() {
            *due = Instant::now() + within;
        }
    }

    /// Runs a step that may take up to `bound` (a hang past it stops the
    /// watchdog's pings), then expects the next report within `then`.
    pub async fn busy<F: std::future::Future>(
        &self,
        bound: Duration,
        then: Duration,
        work: F,
    ) -> F::Output {
        self.alive(bound);
        let out = work.await;
        self.alive(then);
        out
    }

    fn late_at(&self, now: Instant) -> Option<Duration> {
        let due = *self.due.lock().ok()?;
        (now > due).then(|| now - due)
    }
}

/// The tasks the watchdog hears for.
#[derive(Debug, Default)]
pub struct Supervisor {
    hearts: Vec<Heart>,
}

impl Supervisor {
    /// Watches one more task.
    pub fn watch(&mut self, heart: Heart) {
        self.hearts.push(heart);
    }

    /// The tasks that missed their report at `now`, and by how much.
    pub fn late(&self, now: Instant) -> Vec<(&'static str, Duration)> {
        self.hearts
            .iter()
            .filter_map(|h| h.late_at(now).map(|by| (h.name, by)))
            .collect()
    }

    /// Every `every`, calls `ping` if no task is late; says once which task
    /// is late (the watchdog then restarts the agent), until `shutdown`.
    pub async fn run(
        self,
        every: Duration,
        mut ping: impl FnMut(),
        shutdown: impl std::future::Future<Output = ()>,
    ) {
        tokio::pin!(shutdown);
        let mut tick = tokio::time::interval(every);
        let mut told = false;
        loop {
            tokio::select! {
                _ = &mut shutdown => break,
                _ = tick.tick() => {}
            }
            let late = self.late(Instant::now());
            match late.first() {
                None => {
                    told = false;
                    ping();
                }
                Some((name, by)) if !told => {
                    told = true;
                    tracing::error!(task = name, late_by = ?by, "a task stopped reporting in: the watchdog is no longer fed and will restart the agent");
                }
                Some(_) => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    const EVERY: Duration = Duration::from_secs(5);

    /// Pings counted while `body` runs beside a supervisor of `hearts`.
    async fn pings_during(hearts: &[Heart], body: impl std::future::Future<Output = ()>) -> usize {
        let mut sup = Supervisor::default();
        for h in hearts {
            sup.watch(h.clone());
        }
        let pings = Arc::new(AtomicUsize::new(0));
        let counted = pings.clone();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(sup.run(
            EVERY,
            move || {
                counted.fetch_add(1, Ordering::Relaxed);
            },
            async {
                let _ = stopped.await;
            },
        ));
        body.await;
        let _ = stop.send(());
        task.await.unwrap();
        pings.load(Ordering::Relaxed)
    }

    #[tokio::test(start_paused = true)]
    async fn a_task_that_reports_in_keeps_the_watchdog_fed() {
        let heart = Heart::new("agent", 3 * EVERY);
        let h = heart.clone();
        let pings = pings_during(&[heart], async move {
            for _ in 0..24 {
                tokio::time::sleep(EVERY).await;
                h.alive(3 * EVERY);
            }
            // Past the tick at 120 s, so the count does not hang on a tie.
            tokio::time::sleep(Duration::from_secs(2)).await;
        })
        .await;
        // One ping at start, then one per 5 s over two minutes.
        assert_eq!(pings, 25);
    }

    #[tokio::test(start_paused = true)]
    async fn a_loop_that_stops_turning_stops_the_pings() {
        let agent = Heart::new("agent", 3 * EVERY);
        let incidents = Heart::new("incidents", 3 * EVERY);
        let i = incidents.clone();
        let pings = pings_during(&[agent.clone(), incidents], async move {
            // The incidents' task keeps reporting; the agent's loop hangs.
            for _ in 0..24 {
                tokio::time::sleep(EVERY).await;
                i.alive(3 * EVERY);
            }
        })
        .await;
        // Pings at 0, 5, 10 and 15 s; from 20 s on the agent is late.
        assert_eq!(pings, 4);
        let sup = Supervisor {
            hearts: vec![agent],
        };
        assert_eq!(sup.late(Instant::now()).len(), 1);
        assert_eq!(sup.late(Instant::now())[0].0, "agent");
    }

    #[tokio::test(start_paused = true)]
    async fn a_bounded_step_is_fed_up_to_its_bound_and_no_further() {
        // A two-minute replay within a 150 s bound: fed throughout.
        let heart = Heart::new("agent", 3 * EVERY);
        let h = heart.clone();
        let pings = pings_during(&[heart], async move {
            let out = h
                .busy(Duration::from_secs(150), 3 * EVERY, async {
                    tokio::time::sleep(Duration::from_secs(122)).await;
                    "replayed"
                })
                .await;
            assert_eq!(out, "replayed");
        })
        .await;
        assert_eq!(pings, 25, "one at start and one per 5 s of the replay");

        // A step that hangs past its bound: the pings stop at the bound.
        let heart = Heart::new("agent", 3 * EVERY);
        let h = heart.clone();
        let pings = pings_during(&[heart], async move {
            let hung = h.busy(
                Duration::from_secs(60),
                3 * EVERY,
                std::future::pending::<()>(),
            );
            let _ = tokio::time::timeout(Duration::from_secs(600), hung).await;
        })
        .await;
        assert_eq!(pings, 13, "at 0, 5, …, 60 s, then silence for the watchdog");
    }
}
