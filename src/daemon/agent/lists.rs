//! The warninglists' refresh, run beside the loop: fetch, check and write
//! in a task of its own; the loop only swaps in what was written and
//! enforces again.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::Agent;
use crate::config::{Config, WarninglistConfig};
use crate::intel::fetch::{self, Location};
use crate::intel::warninglist::refresh;

pub(super) use refresh::Report;

/// The first refresh waits this long after start: a Pi just flashed gets
/// the week's lists soon, a restart loop does not hammer upstream.
const FIRST_AFTER: Duration = Duration::from_secs(600);
/// One list's download.
const TIMEOUT: Duration = Duration::from_secs(120);

/// When the first refresh is due (never, when refreshes are off).
pub(super) fn first_refresh(cfg: &Config) -> Option<Instant> {
    (!cfg.warninglists.refresh.is_zero()).then(|| Instant::now() + FIRST_AFTER)
}

/// When the next refresh is due.
pub(super) fn next_refresh(cfg: &Config) -> Option<Instant> {
    (!cfg.warninglists.refresh.is_zero()).then(|| Instant::now() + cfg.warninglists.refresh)
}

/// Sleeps until `at`; forever without one.
pub(super) async fn until(at: Option<Instant>) {
    match at {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}

impl Agent {
    pub(super) fn start_refresh(&self, set: &mut tokio::task::JoinSet<Report>) {
        let w = &self.cfg.warninglists;
        let (names, shipped, url) = (w.names(), w.dir.clone(), w.url.clone());
        let into = WarninglistConfig::refreshed_dir(&self.cfg.state_dir);
        let max_body = self.cfg.limits.max_body();
        set.spawn(async move {
            let upstream = match Location::new(Some(&url), None) {
                Ok(l) => l,
                Err(e) => {
                    return Report {
                        kept: vec![format!("warninglists.url: {e}")],
                        ..Report::default()
                    }
                }
            };
            let http = match fetch::client(None, true) {
                Ok(http) => fetch::Fetch {
                    http,
                    timeout: TIMEOUT,
                    max_body,
                },
                Err(e) => {
                    return Report {
                        kept: vec![format!("warninglists: {e}")],
                        ..Report::default()
                    }
                }
            };
            let dirs = [shipped.as_path(), into.as_path()];
            refresh::refresh(&upstream, &names, &dirs, &into, &http).await
        });
    }

    pub(super) async fn finish_refresh(&mut self, report: Report) {
        for k in &report.kept {
            tracing::warn!("warninglist refresh kept the copy in use: {k}");
        }
        if report.left_out > 0 {
            tracing::warn!(
                left_out = report.left_out,
                "warninglist refresh left out networks too wide to exempt"
            );
        }
        if report.updated.is_empty() {
            tracing::info!(current = report.current, "warninglists: nothing newer");
            return;
        }
        tracing::info!(updated = ?report.updated, "warninglists refreshed");
        self.warninglists = Arc::new(self.cfg.warninglists.load(&self.cfg.state_dir));
        if let Err(e) = self.enforce().await {
            tracing::error!("{e}");
        }
    }
}
