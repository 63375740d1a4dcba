//! Stopping every task, and knowing when they have all stopped (as in
//! mini-redis): one signal every task hears ([`Stop::wait`]), and a
//! completion handle ([`Stopper::stop`]) that returns once every task has
//! dropped its [`Stop`], that is, has finished whatever it does on the way
//! out (the incidents' owner saves what is open).

use tokio::sync::{mpsc, watch};

/// A task's end of the stop signal; dropping it says the task is done.
#[derive(Clone, Debug)]
pub struct Stop {
    asked: watch::Receiver<bool>,
    _running: mpsc::Sender<()>,
}

impl Stop {
    /// Resolves once a stop is asked for (at once if it already was).
    pub async fn wait(&mut self) {
        // An error means the stopper is gone: that is a stop too.
        let _ = self.asked.wait_for(|asked| *asked).await;
    }
}

/// Asks every task to stop and waits for all of them.
#[derive(Debug)]
pub struct Stopper {
    ask: watch::Sender<bool>,
    running: mpsc::Sender<()>,
    done: mpsc::Receiver<()>,
}

impl Default for Stopper {
    fn default() -> Self {
        let (ask, _) = watch::channel(false);
        let (running, done) = mpsc::channel(1);
        Stopper { ask, running, done }
    }
}

impl Stopper {
    /// A handle for one more task.
    pub fn handle(&self) -> Stop {
        Stop {
            asked: self.ask.subscribe(),
            _running: self.running.clone(),
        }
    }

    /// Asks every task to stop and returns when each has dropped its handle.
    pub async fn stop(self) {
        let Stopper {
            ask,
            running,
            mut done,
        } = self;
        ask.send_replace(true);
        drop(running);
        // Nothing is ever sent: `None` comes when the last handle is dropped.
        let _ = done.recv().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    use std::time::Duration;

    #[tokio::test(start_paused = true)]
    async fn stop_returns_once_every_task_has_finished_its_way_out() {
        let stopper = Stopper::default();
        let saved = Arc::new(AtomicBool::new(false));
        for slow in [false, true] {
            let mut stop = stopper.handle();
            let saved = saved.clone();
            tokio::spawn(async move {
                stop.wait().await;
                if slow {
                    // Saving on the way out takes a while.
                    tokio::time::sleep(Duration::from_secs(2)).await;
                    saved.store(true, Ordering::Relaxed);
                }
                drop(stop);
            });
        }
        let started = tokio::time::Instant::now();
        stopper.stop().await;
        assert!(
            saved.load(Ordering::Relaxed),
            "stop returned before the slow task was done"
        );
        assert_eq!(started.elapsed(), Duration::from_secs(2));
    }

    #[tokio::test]
    async fn a_task_hears_the_stop_and_is_waited_for_and_no_tasks_means_no_wait() {
        let stopper = Stopper::default();
        let mut task = stopper.handle();
        let stopping = tokio::spawn(stopper.stop());
        task.wait().await;
        tokio::task::yield_now().await;
        assert!(!stopping.is_finished(), "the task still holds its handle");
        drop(task);
        stopping.await.unwrap();
        Stopper::default().stop().await;
    }
}
