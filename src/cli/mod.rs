//! The subcommands' work, one file per area; `main.rs` parses and dispatches.

pub(crate) mod appliance;
pub(crate) mod daemon;
pub(crate) mod devices;
pub(crate) mod intel;
pub(crate) mod owner;
pub(crate) mod signatures;
pub(crate) mod status;

pub(crate) use appliance::*;
pub(crate) use daemon::*;
pub(crate) use devices::*;
pub(crate) use intel::*;
pub(crate) use owner::*;
pub(crate) use signatures::*;
pub(crate) use status::*;

use std::path::Path;

use homewarden::config::Config;
use homewarden::secrets::Secrets;

/// The config at `path` and the secrets beside it.
pub(crate) fn load(path: &Path) -> anyhow::Result<(Config, Secrets)> {
    let cfg = Config::load(path)?;
    let secrets = Secrets::load(cfg.dir())?;
    Ok((cfg, secrets))
}
