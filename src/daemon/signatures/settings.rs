//! What the signatures' owner needs of the config and the system: the
//! paths and plan, and how an update runs and Suricata is told.

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use crate::config::Config;
use crate::signatures::update::{self, Fetch, Good, Paths, Plan, UpdateError};

/// How long a reload of the rules may take (thousands of rules on a Pi).
pub const RELOAD_TIMEOUT: Duration = Duration::from_secs(600);

/// Runs one update (the real one: suricata-update, the cut, `suricata -T`).
pub type Updater = Arc<
    dyn Fn(Plan, i64) -> Pin<Box<dyn Future<Output = Result<Good, UpdateError>> + Send>>
        + Send
        + Sync,
>;

/// Asks Suricata to reload its rules; `Err` says why it did not.
pub type Reloader =
    Arc<dyn Fn() -> Pin<Box<dyn Future<Output = Result<(), String>> + Send>> + Send + Sync>;

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
            reload: Arc::new(move || {
                let socket = socket.clone();
                Box::pin(async move { reload(&socket).await })
            }),
        }
    }
}

/// `ruleset-reload-rules` over Suricata's command socket.
async fn reload(socket: &std::path::Path) -> Result<(), String> {
    let mut conn = crate::enforce::suricata::socket::Connection::open(socket, RELOAD_TIMEOUT)
        .await
        .map_err(|e| e.to_string())?;
    match conn.reload("ruleset-reload-rules", RELOAD_TIMEOUT).await {
        Ok(r) if r.ok => Ok(()),
        Ok(r) => Err(format!("ruleset-reload-rules: {}", r.message)),
        Err(e) => Err(e.to_string()),
    }
}
