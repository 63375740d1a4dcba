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

use serde_yaml_ng::Value;

use crate::config::{Config, ConfigError};
use crate::fsutil::write_atomic;

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
    /// A copy of the boot copy as last imported (it holds no secrets).
    pub stamp: PathBuf,
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
            stamp: "/var/lib/homewarden/boot-config.imported".into(),
            managed_keys: "/var/lib/homewarden/boot-ssh-keys".into(),
            agent_gid: std::fs::read_to_string("/etc/group")
                .ok()
                .and_then(|g| crate::users::group_gid(&g, AGENT_GROUP)),
        }
    }
}

/// The group the agent's unit runs as (overlays/usr/lib/sysusers.d).
pub const AGENT_GROUP: &str = "homewarden";

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

/// The boot copy taken apart: the config text without the first-boot keys,
/// the secrets (`.env` name, value) and the SSH keys.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Split {
    /// The user's text with the `secrets:` and `ssh_authorized_keys:` blocks
    /// blanked (line numbers kept, so errors point at the user's lines).
    pub config: String,
    /// The user's text without those blocks: the agent's config file.
    pub etc_config: String,
    /// The user's text with the secrets' values wiped: the new boot copy.
    pub boot_copy: String,
    /// `.env` name and value, in the order of [`SECRETS`].
    pub secrets: Vec<(String, String)>,
    /// One key per entry, as `type base64 [comment]`.
    pub ssh_keys: Vec<String>,
    /// The placement makes a Wi-Fi access point, which needs a passphrase.
    pub needs_wifi_passphrase: bool,
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

fn cerr(file: &Path, key: &str, message: String) -> ConfigError {
    ConfigError {
        file: file.display().to_string(),
        key: key.into(),
        message,
    }
}

/// Top-level block `name:` — its line and every following line that is
/// indented, blank or a comment, up to the next top-level key.
fn block_ranges(text: &str, name: &str) -> Vec<(usize, usize)> {
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let l = lines[i];
        let starts = l
            .strip_prefix(name)
            .map(|r| r.trim_start().starts_with(':'))
            .unwrap_or(false);
        if starts {
            let mut j = i + 1;
            while j < lines.len() {
                let n = lines[j];
                let top = !n.is_empty()
                    && !n.starts_with([' ', '\t', '#'])
                    && !n.starts_with("- ")
                    && n != "-";
                if top {
                    break;
                }
                j += 1;
            }
            // Trailing comments and blank lines belong to what follows.
            while j > i + 1 && {
                let t = lines[j - 1].trim_start();
                t.is_empty() || t.starts_with('#')
            } {
                j -= 1;
            }
            out.push((i, j));
            i = j;
        } else {
            i += 1;
        }
    }
    out
}

/// The config text with the first-boot blocks blanked (line numbers kept), and
/// the new boot copy: a block is replaced by what `replace` returns for its
/// name, or kept as it is for `None`.
fn strip_blocks(text: &str, replace: impl Fn(&str) -> Option<String>) -> (String, String, String) {
    let mut cut: Vec<Option<&str>> = vec![None; text.lines().count()];
    for name in ["secrets", "ssh_authorized_keys"] {
        for (a, b) in block_ranges(text, name) {
            for slot in cut.iter_mut().take(b).skip(a) {
                *slot = Some("");
            }
            cut[a] = Some(name);
        }
    }
    let (mut config, mut boot, mut etc) = (String::new(), String::new(), String::new());
    let mut replacing = false;
    for (line, c) in text.lines().zip(&cut) {
        match c {
            None => {
                replacing = false;
                config.push_str(line);
                boot.push_str(line);
                boot.push('\n');
                etc.push_str(line);
                etc.push('\n');
            }
            Some(name) => {
                if !name.is_empty() {
                    match replace(name) {
                        Some(r) => {
                            replacing = true;
                            boot.push_str(&r);
                        }
                        None => replacing = false,
                    }
                }
                if !replacing {
                    boot.push_str(line);
                    boot.push('\n');
                }
            }
        }
        config.push('\n');
    }
    (config, boot, etc)
}

fn check_secret(file: &Path, key: &str, env: &str, v: &Value) -> Result<String, ConfigError> {
    let at = format!("secrets.{key}");
    let s = match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Null => return Ok(String::new()),
        _ => return Err(cerr(file, &at, "must be a string".into())),
    };
    if let Some(c) = s
        .chars()
        .find(|c| c.is_control() || *c == '\'' || *c == '\\')
    {
        return Err(cerr(
            file,
            &at,
            format!(
                "contains {c:?}: control characters, quotes and backslashes cannot go into {env}"
            ),
        ));
    }
    if s.len() > 4096 {
        return Err(cerr(file, &at, format!("{} bytes is too long", s.len())));
    }
    if key == "wifi_passphrase" && !s.is_empty() && !(8..=63).contains(&s.chars().count()) {
        return Err(cerr(
            file,
            &at,
            format!(
                "a WPA2 passphrase has 8 to 63 characters, this one has {}",
                s.chars().count()
            ),
        ));
    }
    Ok(s.trim().to_string())
}

fn check_ssh_key(file: &Path, i: usize, v: &Value) -> Result<String, ConfigError> {
    let at = format!("ssh_authorized_keys[{i}]");
    let Value::String(s) = v else {
        return Err(cerr(file, &at, "must be a string (one public key)".into()));
    };
    let s = s.trim();
    if s.chars().any(char::is_control) {
        return Err(cerr(file, &at, "contains control characters".into()));
    }
    let mut parts = s.split_whitespace();
    let (kind, blob) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let shown: String = s.chars().take(40).collect();
    if !KEY_TYPES.contains(&kind) {
        return Err(cerr(
            file,
            &at,
            format!("\"{shown}\" is not an SSH public key (expected e.g. \"ssh-ed25519 AAAA… you@host\")"),
        ));
    }
    use base64::Engine as _;
    match base64::engine::general_purpose::STANDARD.decode(blob) {
        Ok(bytes) if bytes.len() >= 4 => Ok(s.to_string()),
        _ => Err(cerr(
            file,
            &at,
            format!("\"{shown}\": the key after {kind} is not base64"),
        )),
    }
}

/// Takes a boot copy apart and validates every part; the config part with
/// the agent's own [`Config::parse`].
pub fn split(text: &str, file: &Path) -> Result<Split, ConfigError> {
    crate::config::expansion::check(text, crate::config::expansion::budget(text.len()))
        .map_err(|m| cerr(file, "-", m.into()))?;
    let doc: Value = if text.trim().is_empty() {
        Value::Mapping(Default::default())
    } else {
        serde_yaml_ng::from_str(text)
            .map_err(|e| cerr(file, "-", e.to_string().replace('\n', " ")))?
    };
    let Value::Mapping(map) = &doc else {
        return Err(cerr(file, "-", "must be a mapping of keys".into()));
    };
    let mut secrets = Vec::new();
    if let Some(v) = map.get("secrets") {
        let Value::Mapping(sm) = v else {
            if !v.is_null() {
                return Err(cerr(file, "secrets", "must be a mapping".into()));
            }
            return split_rest(text, file, secrets, map);
        };
        for (k, v) in sm {
            let name = k.as_str().unwrap_or("");
            let Some((_, env)) = SECRETS.iter().find(|(n, _)| *n == name) else {
                let known: Vec<&str> = SECRETS.iter().map(|(n, _)| *n).collect();
                return Err(cerr(
                    file,
                    &format!(
                        "secrets.{}",
                        serde_yaml_ng::to_string(k).unwrap_or_default().trim()
                    ),
                    format!("unknown secret; expected one of {}", known.join(", ")),
                ));
            };
            let value = check_secret(file, name, env, v)?;
            if !value.is_empty() {
                secrets.push((env.to_string(), value));
            }
        }
        secrets.sort_by_key(|(env, _)| SECRETS.iter().position(|(_, e)| e == env));
    }
    split_rest(text, file, secrets, map)
}

fn split_rest(
    text: &str,
    file: &Path,
    secrets: Vec<(String, String)>,
    map: &serde_yaml_ng::Mapping,
) -> Result<Split, ConfigError> {
    let mut ssh_keys = Vec::new();
    match map.get("ssh_authorized_keys") {
        None | Some(Value::Null) => {}
        Some(Value::Sequence(seq)) => {
            for (i, v) in seq.iter().enumerate() {
                ssh_keys.push(check_ssh_key(file, i, v)?);
            }
        }
        Some(_) => {
            return Err(cerr(
                file,
                "ssh_authorized_keys",
                "must be a list of public keys".into(),
            ))
        }
    }
    // The secrets block loses its values (the names stay, for the next
    // edit); public keys are no secret and stay as the user wrote them.
    let moved: Vec<&str> = secrets.iter().map(|(k, _)| k.as_str()).collect();
    let (config, boot_copy, etc_config) = strip_blocks(text, |name| {
        (name == "secrets" && !moved.is_empty()).then(|| {
            let mut r = format!(
                "# secrets: moved to /etc/homewarden/.env (root's, read by the agent) at boot: {}.\n\
                 # Write a value here again to replace it at the next boot.\nsecrets:\n",
                moved.join(", ")
            );
            for (name, _) in SECRETS {
                let _ = writeln!(r, "  {name}: \"\"");
            }
            r
        })
    });
    // The blocks must be gone from what the agent reads (a key written in an
    // unusual way, e.g. quoted, would not be cut by lines).
    if let Ok(Value::Mapping(rest)) = serde_yaml_ng::from_str::<Value>(&config) {
        for k in ["secrets", "ssh_authorized_keys"] {
            if rest.contains_key(k) {
                return Err(cerr(
                    file,
                    k,
                    "write it as a plain key at the start of a line".into(),
                ));
            }
        }
    }
    let cfg = Config::parse(&config, file)?;
    Ok(Split {
        config,
        etc_config,
        boot_copy,
        secrets,
        ssh_keys,
        needs_wifi_passphrase: cfg.network.placement == crate::config::Placement::Ap,
    })
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
    if fs::read(&paths.stamp).is_ok_and(|s| s == bytes) {
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
                fs::create_dir_all(dir).map_err(|e| io_err(dir, e))?;
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
        fs::create_dir_all(dir).map_err(|e| io_err(dir, e))?;
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
