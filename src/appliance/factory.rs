//! Factory reset of the config, split by privilege: the agent (its own user,
//! /etc read-only to it) only asks for one by leaving a marker in its state
//! directory; a root step of its unit (`homewarden apply-factory-reset`, run
//! before each start) copies the shipped factory config over the owner's.
//! Only the factory file ever lands in /etc this way, so an agent taken over
//! cannot write a config that root's units (network, firewall) then trust.

use std::io;
use std::path::{Path, PathBuf};

/// The marker the agent leaves in its state directory.
pub const PENDING: &str = "factory-reset.pending";

/// The marker's path for a state directory.
pub fn marker(state_dir: &Path) -> PathBuf {
    state_dir.join(PENDING)
}

/// Records that the config must be restored from `factory` before the next start.
/// Fails, changing nothing, when `factory` cannot be read.
pub fn request(state_dir: &Path, factory: &Path) -> io::Result<()> {
    std::fs::metadata(factory)
        .and_then(|m| {
            if m.is_file() {
                Ok(())
            } else {
                Err(io::Error::other("not a file"))
            }
        })
        .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", factory.display())))?;
    let note = format!("restore {} at the next start\n", factory.display());
    crate::fsutil::write_atomic(&marker(state_dir), note.as_bytes())
}

/// What [`apply_pending`] did.
#[derive(Debug, PartialEq, Eq)]
pub enum Applied {
    /// No reset was asked for.
    Nothing,
    /// The factory config now stands at the config's path.
    Restored,
}

/// Restores `config` from `factory` if a reset is pending in `state_dir`, then
/// clears the marker. The config is replaced atomically and readable by all
/// (it holds no secrets: they stay in `.env`); the marker goes only once the
/// config is in place, so a failure here is retried at the next start.
pub fn apply_pending(state_dir: &Path, config: &Path, factory: &Path) -> io::Result<Applied> {
    let marker = marker(state_dir);
    // Root runs this; the state directory is the agent's. Only whether a
    // name is there counts: never followed, never read.
    if std::fs::symlink_metadata(&marker).is_err() {
        return Ok(Applied::Nothing);
    }
    let bytes = std::fs::read(factory)
        .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", factory.display())))?;
    crate::fsutil::write_atomic_mode(config, &bytes, 0o644)
        .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", config.display())))?;
    match std::fs::remove_file(&marker) {
        Ok(()) => Ok(Applied::Restored),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Applied::Restored),
        Err(e) => Err(io::Error::new(
            e.kind(),
            format!("{}: {e}", marker.display()),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_requested_reset_restores_the_config_once() {
        let dir = tempfile::tempdir().unwrap();
        let (state, config, factory) = (
            dir.path().join("state"),
            dir.path().join("homewarden.yaml"),
            dir.path().join("factory.yaml"),
        );
        std::fs::create_dir(&state).unwrap();
        std::fs::write(&config, "mine: 1\n").unwrap();
        std::fs::write(&factory, "# factory\n").unwrap();

        assert_eq!(
            apply_pending(&state, &config, &factory).unwrap(),
            Applied::Nothing
        );
        assert_eq!(std::fs::read_to_string(&config).unwrap(), "mine: 1\n");

        request(&state, &factory).unwrap();
        assert_eq!(
            apply_pending(&state, &config, &factory).unwrap(),
            Applied::Restored
        );
        assert_eq!(std::fs::read_to_string(&config).unwrap(), "# factory\n");
        assert!(!marker(&state).exists());

        // Edited again by its owner: a later start leaves it alone.
        std::fs::write(&config, "mine: 2\n").unwrap();
        assert_eq!(
            apply_pending(&state, &config, &factory).unwrap(),
            Applied::Nothing
        );
        assert_eq!(std::fs::read_to_string(&config).unwrap(), "mine: 2\n");
    }

    #[test]
    fn no_factory_file_no_request_and_a_failed_restore_is_retried() {
        let dir = tempfile::tempdir().unwrap();
        let (state, factory) = (dir.path().join("state"), dir.path().join("factory.yaml"));
        std::fs::create_dir(&state).unwrap();
        let e = request(&state, &factory).unwrap_err().to_string();
        assert!(e.starts_with(&format!("{}: ", factory.display())), "{e}");
        assert!(!marker(&state).exists());

        std::fs::write(&factory, "# factory\n").unwrap();
        request(&state, &factory).unwrap();
        // The config's directory is gone: nothing restored, the marker kept.
        let config = dir.path().join("missing/homewarden.yaml");
        let e = apply_pending(&state, &config, &factory)
            .unwrap_err()
            .to_string();
        assert!(e.contains("missing/homewarden.yaml"), "{e}");
        assert!(marker(&state).exists());
    }
}
