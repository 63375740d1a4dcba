//! What the signatures' owner needs of the config and the system: the
//! paths and plan, and how an update runs and Suricata is told.

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use crate::config::Config;
use crate::enforce::suricata::socket::Connection;
use crate::signatures::memory::Way;
use crate::signatures::update::{self, Fetch, Good, Paths, Plan, UpdateError};

/// How long a reload of the rules may take (thousands of rules on a Pi).
pub const RELOAD_TIMEOUT: Duration = Duration::from_secs(600);

/// Runs one update (the real one: suricata-update, the cut, `suricata -T`).
pub type Updater = Arc<
    dyn Fn(Plan, i64) -> Pin<Box<dyn Future<Output = Result<Good, UpdateError>> + Send>>
        + Send
        + Sync,
>;

/// Asks Suricata to load its rules again, live or by a restart; `Err` says
/// why it did not.
pub type Reloader =
    Arc<dyn Fn(Way) -> Pin<Box<dyn Future<Output = Result<(), String>> + Send>> + Send + Sync>;

/// What the owner needs of the config and the system.
#[derive(Clone)]
pub struct Settings {
    /// The update's files.
    pub paths: Paths,
    /// The plan, as configured (the tier already resolved; the overrides
    /// the config's alone: the command line's are laid on them).
    pub plan: Plan,
    /// How often.
    pub every: Duration,
    /// How an update runs.
    pub updater: Updater,
    /// How Suricata is told.
    pub reload: Reloader,
}

impl Settings {
    /// From the config and the board's memory (`MemTotal`).
    pub fn from_config(cfg: &Config, mem_total: u64) -> Settings {
        let s = &cfg.signatures;
        let (tier, why) = s.profile.resolve(mem_total);
        let suricata_yaml = cfg.selftest.suricata_config.clone();
        let include = cfg.suricata.include.clone();
        let paths = Paths {
            rules_dir: cfg.suricata.rules_dir.clone(),
            work_dir: cfg.state_dir.join("signatures"),
            suricata_yaml,
            include,
            cgroup: cfg.suricata.cgroup.clone(),
        };
        let updater_paths = paths.clone();
        let socket: PathBuf = cfg.suricata.command_socket.clone();
        Settings {
            paths,
            plan: Plan {
                sources: s.sources.clone(),
                tier,
                why,
                overrides: s.overrides(),
                shadow: s.shadow,
                fetch: Fetch::Cached,
            },
            every: s.update,
            updater: Arc::new(move |plan, now| {
                let paths = updater_paths.clone();
                Box::pin(async move { update::run(&paths, &plan, now).await })
            }),
            reload: Arc::new(move |way| {
                let socket = socket.clone();
                Box::pin(async move {
                    match way {
                        Way::Live => reload(&socket).await,
                        Way::Restart => restart(&socket, RELOAD_TIMEOUT).await,
                    }
                })
            }),
        }
    }
}

/// `ruleset-reload-rules` over Suricata's command socket.
async fn reload(socket: &std::path::Path) -> Result<(), String> {
    let mut conn = Connection::open(socket, RELOAD_TIMEOUT)
        .await
        .map_err(|e| e.to_string())?;
    match conn.reload("ruleset-reload-rules", RELOAD_TIMEOUT).await {
        Ok(r) if r.ok => Ok(()),
        Ok(r) => Err(format!("ruleset-reload-rules: {}", r.message)),
        Err(e) => Err(e.to_string()),
    }
}

/// How often a restart looks for the new Suricata.
const RESTART_POLL: Duration = Duration::from_millis(500);

/// Suricata's `uptime` (seconds since it started), if it answers.
async fn uptime(socket: &std::path::Path) -> Option<u64> {
    let mut conn = Connection::open(socket, Duration::from_secs(5))
        .await
        .ok()?;
    let r = conn.command("uptime", None).await.ok()?;
    r.message.as_u64().filter(|_| r.ok)
}

/// `shutdown` over the command socket; Suricata's unit starts it again
/// (`Restart=always`) with the rules on disk, one engine at a time. Done
/// when a Suricata younger than the one shut down answers, within `patience`.
pub async fn restart(socket: &std::path::Path, patience: Duration) -> Result<(), String> {
    let before = uptime(socket)
        .await
        .ok_or_else(|| format!("{}: Suricata does not answer", socket.display()))?;
    let asked = tokio::time::Instant::now();
    let mut conn = Connection::open(socket, RELOAD_TIMEOUT)
        .await
        .map_err(|e| e.to_string())?;
    match conn.command("shutdown", None).await {
        Ok(r) if !r.ok => return Err(format!("shutdown: {}", r.message)),
        // It may close the socket before or after its answer.
        _ => {}
    }
    drop(conn);
    tracing::warn!(
        "Suricata restarts to load the signatures (a live reload would not fit its memory budget): traffic follows the fail mode until it is back"
    );
    // The new one: answering after a silence, or younger than the old one.
    let mut gone = false;
    loop {
        match uptime(socket).await {
            None => gone = true,
            Some(up) if gone || up < before => {
                tracing::info!(
                    "Suricata is back after {:.1} s",
                    asked.elapsed().as_secs_f64()
                );
                return Ok(());
            }
            Some(_) => {}
        }
        if asked.elapsed() >= patience {
            return Err(format!(
                "Suricata was shut down to load the signatures and has not answered for {} s: its unit restarts it (Restart=always)",
                patience.as_secs()
            ));
        }
        tokio::time::sleep(RESTART_POLL).await;
    }
}
