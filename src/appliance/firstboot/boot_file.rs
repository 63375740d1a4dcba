//! The boot copy taken apart, without touching a file: the agent's config
//! text, the secrets and the SSH keys, each checked, every error one line
//! naming the file, the key and the value (never a secret's value).

use std::fmt::Write as _;
use std::path::Path;

use serde_yaml_ng::Value;

use super::{KEY_TYPES, SECRETS};
use crate::config::{Config, ConfigError};

/// The boot copy taken apart: the config text without the first-boot keys,
/// the secrets (`.env` name, value) and the SSH keys.
#[derive(Clone, PartialEq, Eq)]
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

impl std::fmt::Debug for Split {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The secrets' names only; the texts are the ones with values blanked.
        let names: Vec<&str> = self.secrets.iter().map(|(n, _)| n.as_str()).collect();
        f.debug_struct("Split")
            .field("etc_config", &self.etc_config)
            .field("boot_copy", &self.boot_copy)
            .field("secrets", &names)
            .field("ssh_keys", &self.ssh_keys)
            .field("needs_wifi_passphrase", &self.needs_wifi_passphrase)
            .finish_non_exhaustive()
    }
}

pub(super) fn cerr(file: &Path, key: &str, message: String) -> ConfigError {
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
        .map_err(|m| cerr(file, "-", m))?;
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
