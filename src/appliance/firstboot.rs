//! First boot of the SD-card image: the user's `homewarden.yaml` on the boot
//! (FAT) partition becomes the appliance's configuration.
//!
//! The boot copy holds the agent's config keys plus two of its own:
//! `secrets:` (`misp_api_key`, `cohere_api_key`, `mailtrap_token`,
//! `wifi_passphrase`) and `ssh_authorized_keys:`. The file is validated with the
//! agent's own config code; on success the secrets go to `/etc/homewarden/.env`
//! (0600), the keys to root's `authorized_keys`, the config to
//! `/etc/homewarden/homewarden.yaml`, and only then is the boot copy rewritten
//! without secrets. Every write is atomic (temp file, fsync, rename), in that
//! order, so a power cut at any point loses nothing and leaves no half file.
//! On failure one line naming file, key and value goes to
//! `homewarden-error.txt` beside the boot copy, readable from any computer.
//!
//! The import runs whenever the boot copy differs from the one last imported
//! (kept in the state directory; it holds no secrets), so a user can
//! reconfigure the Pi by editing the card again; edits made on the Pi survive
//! until then.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::config::ConfigError;
use crate::fsutil::write_atomic;

mod boot_file;
use boot_file::cerr;
pub use boot_file::{split, Split};

/// The secrets a boot copy may carry, and the names they get in `.env`.
pub const SECRETS: [(&str, &str); 4] = [
    ("misp_api_key", "MISP_API_KEY"),
    ("cohere_api_key", "COHERE_API_KEY"),
    ("mailtrap_token", "MAILTRAP_TOKEN"),
    ("wifi_passphrase", "HOMEWARDEN_WIFI_PASSPHRASE"),
];

/// SSH public key types accepted in `ssh_authorized_keys`.
const KEY_TYPES: [&str; 7] = [
    "ssh-ed25519",
    "ssh-rsa",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "sk-ssh-ed25519@openssh.com",
    "sk-ecdsa-sha2-nistp256@openssh.com",
];

/// A boot copy larger than this is not a config file.
const MAX_BYTES: u64 = 1 << 20;

/// Where first boot reads and writes.
#[derive(Clone, Debug)]
pub struct Paths {
    /// The user's file on the boot partition.
    pub boot_config: PathBuf,
    /// Where a validation error is written for the user (beside the boot copy).
    pub error_file: PathBuf,
    /// The agent's config (`/etc/homewarden/homewarden.yaml`); `.env` goes beside it.
    pub config: PathBuf,
    /// root's `authorized_keys`.
    pub authorized_keys: PathBuf,
    /// A copy of the boot copy as last imported (it holds no secrets), in
    /// root's own state directory: the agent can neither delete it (the
    /// owner's edits on the Pi would revert) nor plant links there.
    pub stamp: PathBuf,
    /// Where versions before 0.1.x kept the stamp, in the agent's state
    /// directory: read once (never followed through a link) while `stamp`
    /// does not exist yet, so an update does not import the boot copy again.
    pub legacy_stamp: Option<PathBuf>,
    /// The keys this import put into `authorized_keys` (one per line): the
    /// ones it may take out again when they leave the boot copy.
    pub managed_keys: PathBuf,
    /// The agent's group: `.env` is readable by it (0640), the agent runs as its
    /// own user. None: `.env` stays root's alone (0600).
    pub agent_gid: Option<u32>,
}

impl Default for Paths {
    fn default() -> Self {
        Paths {
            boot_config: "/boot/firmware/homewarden.yaml".into(),
            error_file: "/boot/firmware/homewarden-error.txt".into(),
            config: crate::config::DEFAULT_PATH.into(),
            authorized_keys: "/root/.ssh/authorized_keys".into(),
            stamp: format!("{STATE_DIR}/boot-config.imported").into(),
            legacy_stamp: Some("/var/lib/homewarden/boot-config.imported".into()),
            managed_keys: format!("{STATE_DIR}/boot-ssh-keys").into(),
            agent_gid: std::fs::read_to_string("/etc/group")
                .ok()
                .and_then(|g| crate::users::group_gid(&g, AGENT_GROUP)),
        }
    }
}

/// First boot's own state directory (root's, made by its unit's
/// `StateDirectory=`): nothing it keeps sits where the agent can write.
pub const STATE_DIR: &str = "/var/lib/homewarden-firstboot";

pub use crate::users::AGENT_GROUP;

/// A first-boot failure.
#[derive(Debug, thiserror::Error)]
pub enum FirstbootError {
    /// The boot copy is not a valid config: one line naming file, key and value.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A file could not be read or written.
    #[error("{file}: {message}")]
    Io {
        /// The file.
        file: String,
        /// What went wrong.
        message: String,
    },
}

fn io_err(file: &Path, e: io::Error) -> FirstbootError {
    FirstbootError::Io {
        file: file.display().to_string(),
        message: e.to_string(),
    }
}

/// What an import did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Report {
    /// Nothing to do: no boot copy, or the same one as last time.
    pub unchanged: bool,
    /// `.env` names written.
    pub secrets: Vec<String>,
    /// SSH keys newly installed.
    pub ssh_keys_added: usize,
    /// SSH keys taken out: installed from the boot copy once, gone from it now.
    pub ssh_keys_removed: usize,
}

fn read_env(path: &Path) -> Result<Vec<String>, FirstbootError> {
    match fs::read_to_string(path) {
        Ok(t) => Ok(t.lines().map(str::to_string).collect()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(io_err(path, e)),
    }
}

/// `.env` with `secrets` set: other lines kept, ours replaced or appended.
pub fn merge_env(existing: &[String], secrets: &[(String, String)]) -> String {
    let mut out = String::new();
    let mut done: BTreeMap<&str, bool> = secrets.iter().map(|(k, _)| (k.as_str(), false)).collect();
    for line in existing {
        let key = line
            .trim_start()
            .trim_start_matches("export ")
            .split('=')
            .next()
            .unwrap_or("")
            .trim();
        if let Some((k, v)) = secrets.iter().find(|(k, _)| k == key) {
            if !done[k.as_str()] {
                let _ = writeln!(out, "{k}='{v}'");
                done.insert(k.as_str(), true);
            }
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    for (k, v) in secrets {
        if !done[k.as_str()] {
            let _ = writeln!(out, "{k}='{v}'");
        }
    }
    out
}

fn lines_text(lines: &[String]) -> String {
    lines.iter().map(|l| format!("{l}\n")).collect()
}

/// `authorized_keys` with the boot copy's keys as a set: what it lists is
/// there, what it listed once and no longer does is gone, and keys someone
/// added by hand (never installed by an import) are left alone.
#[derive(Debug, PartialEq, Eq)]
struct KeySet {
    /// The new `authorized_keys` lines.
    lines: Vec<String>,
    /// The keys imports installed, after this one.
    managed: Vec<String>,
    added: usize,
    removed: usize,
}

impl KeySet {
    fn apply(existing: &[String], managed: &[String], wanted: &[String]) -> KeySet {
        let gone = |l: &String| {
            let l = l.trim();
            managed.iter().any(|m| m == l) && !wanted.iter().any(|w| w == l)
        };
        let mut lines: Vec<String> = existing.iter().filter(|l| !gone(l)).cloned().collect();
        let removed = existing.len() - lines.len();
        let mut keep: Vec<String> = managed
            .iter()
            .filter(|m| wanted.contains(m))
            .cloned()
            .collect();
        let mut added = 0;
        for k in wanted {
            if !lines.iter().any(|l| l.trim() == k) {
                lines.push(k.clone());
                keep.push(k.clone());
                added += 1;
            }
        }
        KeySet {
            lines,
            managed: keep,
            added,
            removed,
        }
    }
}

/// The boot copy as last imported: the stamp, or while there is none yet the
/// stamp an earlier version left in the agent's directory. That one the agent
/// could have written, so it is opened without following a link and read only
/// up to a config's size; at worst it makes this import run or not.
fn last_import(paths: &Paths) -> Option<Vec<u8>> {
    match fs::read(&paths.stamp) {
        Ok(s) => return Some(s),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(_) => return None,
    }
    let legacy = paths.legacy_stamp.as_ref()?;
    use std::io::Read as _;
    use std::os::unix::fs::OpenOptionsExt;
    let f = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(legacy)
        .ok()?;
    if !f.metadata().ok()?.is_file() {
        return None;
    }
    let mut out = Vec::new();
    f.take(MAX_BYTES + 1).read_to_end(&mut out).ok()?;
    Some(out)
}

fn write_private(path: &Path, bytes: &[u8]) -> Result<(), FirstbootError> {
    crate::fsutil::write_atomic_mode(path, bytes, 0o600).map_err(|e| io_err(path, e))
}

fn ensure_dir(dir: &Path, mode: u32) -> Result<(), FirstbootError> {
    fs::create_dir_all(dir).map_err(|e| io_err(dir, e))?;
    fs::set_permissions(dir, fs::Permissions::from_mode(mode)).map_err(|e| io_err(dir, e))
}

/// Imports the boot copy if it changed since the last import. On a
/// validation error the error file is written and nothing else changes.
pub fn import(paths: &Paths) -> Result<Report, FirstbootError> {
    let meta = match fs::metadata(&paths.boot_config) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Ok(Report {
                unchanged: true,
                ..Report::default()
            })
        }
        Err(e) => return Err(io_err(&paths.boot_config, e)),
    };
    if meta.len() > MAX_BYTES {
        let e = cerr(
            &paths.boot_config,
            "-",
            format!("{} bytes is not a config file", meta.len()),
        );
        report_error(paths, &e.to_string());
        return Err(e.into());
    }
    let bytes = fs::read(&paths.boot_config).map_err(|e| io_err(&paths.boot_config, e))?;
    if last_import(paths).is_some_and(|s| s == bytes) {
        return Ok(Report {
            unchanged: true,
            ..Report::default()
        });
    }
    let text = match String::from_utf8(bytes) {
        Ok(t) => t,
        Err(_) => {
            let e = cerr(&paths.boot_config, "-", "is not UTF-8 text".into());
            report_error(paths, &e.to_string());
            return Err(e.into());
        }
    };
    let split = match split(&text, &paths.boot_config) {
        Ok(s) => s,
        Err(e) => {
            report_error(paths, &e.to_string());
            return Err(e.into());
        }
    };
    // An access point without a passphrase would be open to anyone in range:
    // refused here, where the user reads the error, rather than by the
    // network unit at every boot.
    if split.needs_wifi_passphrase {
        let env = paths
            .config
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."))
            .join(".env");
        let in_env = read_env(&env)?.iter().any(|l| {
            l.strip_prefix("HOMEWARDEN_WIFI_PASSPHRASE=")
                .is_some_and(|v| !v.trim_matches(['\'', '"']).is_empty())
        });
        let given = split
            .secrets
            .iter()
            .any(|(k, _)| k == "HOMEWARDEN_WIFI_PASSPHRASE");
        if !given && !in_env {
            let e = cerr(
                &paths.boot_config,
                "secrets.wifi_passphrase",
                "network.placement ap makes a Wi-Fi network for your devices: give it a passphrase of 8 to 63 characters".into(),
            );
            report_error(paths, &e.to_string());
            return Err(e.into());
        }
    }
    let mut report = Report::default();

    // 1. Everything lands on the root file system first…
    let etc_dir = paths
        .config
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    // The config holds no secret (the agent and `homewarden status` read it).
    ensure_dir(etc_dir, 0o755)?;
    if !split.secrets.is_empty() {
        let env = etc_dir.join(".env");
        let merged = merge_env(&read_env(&env)?, &split.secrets);
        match paths.agent_gid {
            Some(gid) => crate::fsutil::write_atomic_group(&env, merged.as_bytes(), 0o640, gid)
                .map_err(|e| io_err(&env, e))?,
            None => write_private(&env, merged.as_bytes())?,
        }
        report.secrets = split.secrets.iter().map(|(k, _)| k.clone()).collect();
    }
    let managed = read_env(&paths.managed_keys)?;
    if !split.ssh_keys.is_empty() || !managed.is_empty() {
        if let Some(ssh_dir) = paths.authorized_keys.parent() {
            ensure_dir(ssh_dir, 0o700)?;
        }
        let before = read_env(&paths.authorized_keys)?;
        let keys = KeySet::apply(&before, &managed, &split.ssh_keys);
        report.ssh_keys_added = keys.added;
        report.ssh_keys_removed = keys.removed;
        if keys.lines != before {
            write_private(&paths.authorized_keys, lines_text(&keys.lines).as_bytes())?;
        }
        if keys.managed != managed {
            if let Some(dir) = paths.managed_keys.parent() {
                ensure_dir(dir, 0o700)?;
            }
            write_private(&paths.managed_keys, lines_text(&keys.managed).as_bytes())?;
        }
    }
    let etc = format!(
        "# From {} (its secrets are in .env beside this file).\n{}",
        paths.boot_config.display(),
        split.etc_config
    );
    // Readable by the agent's user whatever the umask: it holds no secret.
    crate::fsutil::write_atomic_mode(&paths.config, etc.as_bytes(), 0o644)
        .map_err(|e| io_err(&paths.config, e))?;

    // 2. …and only then does the boot copy lose its secrets.
    if split.boot_copy != text {
        write_private(&paths.boot_config, split.boot_copy.as_bytes())?;
    }
    if let Some(dir) = paths.stamp.parent() {
        ensure_dir(dir, 0o700)?;
    }
    write_atomic(&paths.stamp, split.boot_copy.as_bytes()).map_err(|e| io_err(&paths.stamp, e))?;
    match fs::remove_file(&paths.error_file) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_err(&paths.error_file, e)),
    }
    Ok(report)
}

/// Writes the one-line error where the user will look (best effort: the
/// error also goes to the journal and the LEDs).
fn report_error(paths: &Paths, line: &str) {
    let text = format!(
        "homewarden could not use {}:\n{line}\nFix the file (on this boot partition) and start the Pi again.\n",
        paths.boot_config.display()
    );
    if let Err(e) = write_atomic(&paths.error_file, text.as_bytes()) {
        tracing::error!("{}: {e}", paths.error_file.display());
    }
}

/// Blinks the fault pattern (red and ACT fast, as for a failing agent) on
/// `backends` until `stop`: a config the appliance cannot use is a fault the
/// user must see without a screen. Red stays lit afterwards.
pub async fn show_fault(
    backends: &mut [Box<dyn crate::appliance::panel::backend::Backend>],
    stop: impl std::future::Future<Output = ()>,
) {
    use crate::appliance::panel::backend::Levels;
    use crate::appliance::panel::pattern::{lights, Condition};
    let l = lights(&Condition {
        agent_fault: true,
        ..Condition::default()
    });
    let start = std::time::Instant::now();
    tokio::pin!(stop);
    let mut tick = tokio::time::interval(std::time::Duration::from_millis(25));
    loop {
        tokio::select! {
            _ = &mut stop => break,
            _ = tick.tick() => {}
        }
        let t = start.elapsed().as_millis() as u64;
        let lv = Levels {
            green: l.green.is_on(t),
            amber: l.amber.is_on(t),
            red: l.red.is_on(t),
            act: l.act.is_on(t),
        };
        for b in backends.iter_mut() {
            let _ = b.show(lv, &l);
        }
    }
    crate::appliance::panel::fault(backends);
}

#[cfg(test)]
mod tests;
