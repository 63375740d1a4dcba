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
        }
    }
}

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
                "# secrets: moved to /etc/homewarden/.env (root only) at boot: {}.\n\
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
    ensure_dir(etc_dir, 0o700)?;
    if !split.secrets.is_empty() {
        let env = etc_dir.join(".env");
        let merged = merge_env(&read_env(&env)?, &split.secrets);
        write_private(&env, merged.as_bytes())?;
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
    write_atomic(&paths.config, etc.as_bytes()).map_err(|e| io_err(&paths.config, e))?;

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
    backends: &mut [Box<dyn crate::panel::backend::Backend>],
    stop: impl std::future::Future<Output = ()>,
) {
    use crate::panel::backend::Levels;
    use crate::panel::pattern::{lights, Condition};
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
    crate::panel::fault(backends);
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGhvbWV3YXJkZW4tYm9vdC10ZXN0LWtleS0wMTIzNDU2 me@laptop";

    fn user_file() -> String {
        format!(
            "# my Pi\nenforcement:\n  mode: ips\nsecrets:\n  misp_api_key: abc123\n  # a comment inside\n  wifi_passphrase: \"correct horse\"\n\nssh_authorized_keys:\n  - {KEY}\nsources: []\n"
        )
    }

    fn paths(dir: &Path) -> Paths {
        fs::create_dir_all(dir.join("boot")).unwrap();
        Paths {
            boot_config: dir.join("boot/homewarden.yaml"),
            error_file: dir.join("boot/homewarden-error.txt"),
            config: dir.join("etc/homewarden/homewarden.yaml"),
            authorized_keys: dir.join("root/.ssh/authorized_keys"),
            stamp: dir.join("state/boot-config.imported"),
            managed_keys: dir.join("state/boot-ssh-keys"),
        }
    }

    #[test]
    fn split_takes_secrets_and_keys_out_and_keeps_line_numbers() {
        let s = split(&user_file(), Path::new("/boot/homewarden.yaml")).unwrap();
        assert_eq!(
            s.secrets,
            vec![
                ("MISP_API_KEY".to_string(), "abc123".to_string()),
                (
                    "HOMEWARDEN_WIFI_PASSPHRASE".to_string(),
                    "correct horse".to_string()
                )
            ]
        );
        assert_eq!(s.ssh_keys, vec![KEY.to_string()]);
        assert_eq!(s.config.lines().count(), user_file().lines().count());
        assert!(!s.config.contains("abc123") && !s.boot_copy.contains("abc123"));
        assert!(!s.etc_config.contains("abc123") && !s.etc_config.contains("secrets"));
        assert!(
            !s.etc_config.contains("ssh_authorized_keys") && s.etc_config.contains("mode: ips")
        );
        assert!(!s.boot_copy.contains("correct horse"));
        assert!(s.boot_copy.contains("# my Pi") && s.boot_copy.contains("sources: []"));
        assert!(s.boot_copy.contains(
            "# secrets: moved to /etc/homewarden/.env (root only) at boot: MISP_API_KEY, HOMEWARDEN_WIFI_PASSPHRASE."
        ));
        assert!(s
            .boot_copy
            .contains("\nsecrets:\n  misp_api_key: \"\"\n  cohere_api_key: \"\"\n"));
        // Public keys stay where the user wrote them.
        assert!(s
            .boot_copy
            .contains(&format!("ssh_authorized_keys:\n  - {KEY}\nsources: []\n")));
        // The rewritten copy is itself a valid boot copy with nothing left to move.
        let again = split(&s.boot_copy, Path::new("b")).unwrap();
        assert!(again.secrets.is_empty());
        assert_eq!(again.ssh_keys, s.ssh_keys);
    }

    #[test]
    fn errors_name_file_key_and_value_on_one_line() {
        let f = Path::new("/boot/firmware/homewarden.yaml");
        let cases = [
            ("secrets:\n  misp_key: x\n", "secrets.misp_key: unknown secret"),
            ("secrets:\n  wifi_passphrase: short\n", "secrets.wifi_passphrase: a WPA2 passphrase has 8 to 63"),
            ("secrets:\n  mailtrap_token: \"a'b\"\n", "secrets.mailtrap_token: contains '\\''"),
            ("secrets: [a]\n", "secrets: must be a mapping"),
            ("ssh_authorized_keys:\n  - hello world\n", "ssh_authorized_keys[0]: \"hello world\" is not an SSH public key"),
            ("ssh_authorized_keys:\n  - ssh-ed25519 !!!notbase64\n", "ssh_authorized_keys[0]: \"ssh-ed25519 !!!notbase64\": the key after ssh-ed25519 is not base64"),
            ("enforcement:\n  mode: ipz\nsecrets:\n  misp_api_key: k\n", "enforcement.mode"),
            ("\"secrets\": {misp_api_key: k}\n", "secrets: write it as a plain key"),
            ("- a\n", "-: must be a mapping"),
        ];
        for (text, want) in cases {
            let e = split(text, f).unwrap_err().to_string();
            assert!(e.starts_with("/boot/firmware/homewarden.yaml: "), "{e}");
            assert!(e.contains(want), "{text:?}: {e}");
            assert!(!e.contains('\n'), "{e}");
        }
    }

    #[test]
    fn import_moves_secrets_then_rewrites_the_boot_copy() {
        let dir = tempfile::tempdir().unwrap();
        let p = paths(dir.path());
        let etc = p.config.parent().unwrap().to_path_buf();
        fs::create_dir_all(&etc).unwrap();
        fs::write(etc.join(".env"), "# mine\nOTHER=1\nMISP_API_KEY='old'\n").unwrap();
        fs::write(&p.boot_config, user_file()).unwrap();
        fs::write(&p.error_file, "old error").unwrap();
        let r = import(&p).unwrap();
        assert_eq!(
            r.secrets,
            vec!["MISP_API_KEY", "HOMEWARDEN_WIFI_PASSPHRASE"]
        );
        assert_eq!(r.ssh_keys_added, 1);
        let env = etc.join(".env");
        assert_eq!(
            fs::read_to_string(&env).unwrap(),
            "# mine\nOTHER=1\nMISP_API_KEY='abc123'\nHOMEWARDEN_WIFI_PASSPHRASE='correct horse'\n"
        );
        assert_eq!(
            fs::metadata(&env).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(
            fs::metadata(&etc).unwrap().permissions().mode() & 0o777,
            0o700
        );
        // The agent's own .env reader and config loader accept what was written.
        let sec = crate::secrets::Secrets::load(&etc).unwrap();
        assert_eq!(
            sec.get("HOMEWARDEN_WIFI_PASSPHRASE").as_deref(),
            Some("correct horse")
        );
        Config::load(&p.config).unwrap();
        let boot = fs::read_to_string(&p.boot_config).unwrap();
        assert!(!boot.contains("abc123") && !boot.contains("correct horse"));
        assert_eq!(
            fs::read_to_string(&p.authorized_keys).unwrap(),
            format!("{KEY}\n")
        );
        assert!(!p.error_file.exists());
        // Nothing changed on the card: nothing is done again.
        assert!(import(&p).unwrap().unchanged);
        // The user edits the card again (a new key): imported, old ones kept.
        fs::write(
            &p.boot_config,
            boot.replace("cohere_api_key: \"\"", "cohere_api_key: co"),
        )
        .unwrap();
        let r = import(&p).unwrap();
        assert_eq!(r.secrets, vec!["COHERE_API_KEY"]);
        let env = fs::read_to_string(&env).unwrap();
        assert!(env.contains("MISP_API_KEY='abc123'") && env.contains("COHERE_API_KEY='co'"));
    }

    #[test]
    fn keys_are_a_set_the_card_manages_and_hand_added_ones_stay() {
        let dir = tempfile::tempdir().unwrap();
        let p = paths(dir.path());
        let key = |n: u8| {
            use base64::Engine;
            let blob = base64::engine::general_purpose::STANDARD.encode([n; 32]);
            format!("ssh-ed25519 {blob} key{n}@laptop")
        };
        fs::create_dir_all(p.authorized_keys.parent().unwrap()).unwrap();
        // Key 1 was there by hand before the card ever listed it.
        fs::write(
            &p.authorized_keys,
            format!("# mine\n{}\n{}\n", key(9), key(1)),
        )
        .unwrap();
        let card = |keys: &[u8]| {
            let list: Vec<String> = keys.iter().map(|&n| format!("  - {}\n", key(n))).collect();
            format!("ssh_authorized_keys:\n{}", list.concat())
        };
        fs::write(&p.boot_config, card(&[1, 2, 3])).unwrap();
        let r = import(&p).unwrap();
        assert_eq!((r.ssh_keys_added, r.ssh_keys_removed), (2, 0));
        // Key 3 leaves the card, key 4 comes: 3 goes, and the old
        // managed-keys file holds exactly what the card put there.
        fs::write(&p.boot_config, card(&[1, 2, 4])).unwrap();
        let r = import(&p).unwrap();
        assert_eq!((r.ssh_keys_added, r.ssh_keys_removed), (1, 1));
        assert_eq!(
            fs::read_to_string(&p.authorized_keys).unwrap(),
            format!("# mine\n{}\n{}\n{}\n{}\n", key(9), key(1), key(2), key(4))
        );
        // The list emptied: every key the card put there goes; key 1 (by hand) stays.
        fs::write(&p.boot_config, "ssh_authorized_keys: []\n").unwrap();
        let r = import(&p).unwrap();
        assert_eq!((r.ssh_keys_added, r.ssh_keys_removed), (0, 2));
        assert_eq!(
            fs::read_to_string(&p.authorized_keys).unwrap(),
            format!("# mine\n{}\n{}\n", key(9), key(1))
        );
        assert_eq!(fs::read_to_string(&p.managed_keys).unwrap(), "");
    }

    #[test]
    fn a_bad_boot_copy_changes_nothing_but_the_error_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = paths(dir.path());
        let bad = "enforcement:\n  mode: ipz\nsecrets:\n  misp_api_key: keep-me\n";
        fs::write(&p.boot_config, bad).unwrap();
        let e = import(&p).unwrap_err().to_string();
        assert!(e.contains("enforcement.mode"), "{e}");
        // The secret stays where the user put it: fixing the file loses nothing.
        assert_eq!(fs::read_to_string(&p.boot_config).unwrap(), bad);
        let env = p.config.with_file_name(".env");
        assert!(!env.exists());
        let shown = fs::read_to_string(&p.error_file).unwrap();
        assert!(shown.contains(&e), "{shown}");
        // Fixed: imported, and the error file goes away.
        fs::write(&p.boot_config, bad.replace("ipz", "ids")).unwrap();
        import(&p).unwrap();
        assert!(!p.error_file.exists());
        assert!(fs::read_to_string(&env).unwrap().contains("keep-me"));
    }

    #[test]
    fn a_boot_copy_that_aliases_a_list_into_billions_is_refused_in_the_error_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = paths(dir.path());
        // The reported file: a 200,000-item list aliased 150,000 times made
        // firstboot abort under a 1 GB limit and left no error file.
        let list = vec!["1"; 200_000];
        let bomb = format!(
            "secrets:\n  misp_api_key: keep-me\nx: &x [{}]\nssh_authorized_keys: [{}]\n",
            list.join(","),
            vec!["*x"; 150_000].join(",")
        );
        assert!(bomb.len() < 900_000, "{}", bomb.len());
        fs::write(&p.boot_config, &bomb).unwrap();
        let e = import(&p).unwrap_err().to_string();
        assert_eq!(
            e,
            format!(
                "{}: -: {}",
                p.boot_config.display(),
                crate::config::expansion::TOO_BIG
            )
        );
        assert!(fs::read_to_string(&p.error_file).unwrap().contains(&e));
        assert_eq!(fs::read_to_string(&p.boot_config).unwrap(), bomb);
        assert!(!p.config.with_file_name(".env").exists());
    }

    #[test]
    fn an_access_point_needs_a_passphrase_on_the_card_or_already_in_env() {
        let dir = tempfile::tempdir().unwrap();
        let p = paths(dir.path());
        let ap = "network:\n  placement: ap\nsecrets:\n  wifi_passphrase: \"\"\n  misp_api_key: keep-me\n";
        fs::write(&p.boot_config, ap).unwrap();
        let e = import(&p).unwrap_err().to_string();
        assert_eq!(
            e,
            format!("{}: secrets.wifi_passphrase: network.placement ap makes a Wi-Fi network for your devices: give it a passphrase of 8 to 63 characters", p.boot_config.display())
        );
        assert!(fs::read_to_string(&p.error_file).unwrap().contains(&e));
        assert_eq!(fs::read_to_string(&p.boot_config).unwrap(), ap);
        // Given on the card: imported, and wiped from it.
        fs::write(&p.boot_config, ap.replace("\"\"", "\"correct horse\"")).unwrap();
        import(&p).unwrap();
        assert!(!p.error_file.exists());
        // A later edit need not repeat it: the one in .env counts.
        let boot = fs::read_to_string(&p.boot_config).unwrap();
        assert!(!boot.contains("correct horse"), "{boot}");
        fs::write(
            &p.boot_config,
            boot.replace("placement: ap", "placement: ap\n  uplink: end0"),
        )
        .unwrap();
        import(&p).unwrap();
        assert!(fs::read_to_string(&p.config).unwrap().contains("end0"));
    }

    #[test]
    fn the_images_example_is_a_valid_boot_copy_with_nothing_to_move() {
        let s = split(
            include_str!("../image/homewarden.yaml"),
            Path::new("image/homewarden.yaml"),
        )
        .unwrap();
        assert!(s.secrets.is_empty() && s.ssh_keys.is_empty());
        // Nothing to move: the boot copy stays byte for byte.
        assert_eq!(s.boot_copy, include_str!("../image/homewarden.yaml"));
    }

    #[test]
    fn no_boot_copy_is_nothing_to_do() {
        let dir = tempfile::tempdir().unwrap();
        let p = paths(dir.path());
        assert!(import(&p).unwrap().unchanged);
        assert!(!p.config.parent().unwrap().exists());
    }
}
