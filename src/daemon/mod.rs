//! The running daemon: the agent that owns sources and enforcement, the
//! incidents' owner that reads and triages alerts beside it, the supervisor
//! that feeds systemd's watchdog only while both report in, the control
//! socket the CLI talks to, and the places owners look (/metrics, Home
//! Assistant over MQTT).

pub mod agent;
pub mod control;
pub mod devices;
pub mod homeassistant;
pub mod incidents;
pub mod memory;
pub mod metrics;
pub mod shutdown;
pub mod signatures;
pub mod supervisor;

/// Asks an owner task and waits for its answer; `None` once it has stopped.
pub async fn ask<M, T>(
    owner: &tokio::sync::mpsc::Sender<M>,
    make: impl FnOnce(tokio::sync::oneshot::Sender<T>) -> M,
) -> Option<T> {
    let (reply, answer) = tokio::sync::oneshot::channel();
    owner.send(make(reply)).await.ok()?;
    answer.await.ok()
}

/// Aborts a task when dropped, so none outlives the task that started it
/// (the responders the agent loop, the TLS bridge its MQTT connection).
pub(crate) struct AbortOnDrop(pub(crate) tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
