//! Secrets (API keys, tokens) never live in the YAML file: they come from the
//! environment, from systemd credentials, or from a `.env` file beside the config.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// A failure to read a secrets file.
#[derive(Debug, thiserror::Error)]
#[error("{file}: {}{message}", line_prefix(*.line))]
pub struct SecretsError {
    /// The `.env` file.
    pub file: String,
    /// 1-based line number (0: the whole file).
    pub line: usize,
    /// What is wrong (never the value).
    pub message: String,
}

fn line_prefix(line: usize) -> String {
    if line == 0 {
        String::new()
    } else {
        format!("line {line}: ")
    }
}

/// Where secrets are looked up, in order: environment, `$CREDENTIALS_DIRECTORY/<name>`
/// (name lower-cased, as in `LoadCredential=misp_api_key:…`), then `.env`.
#[derive(Clone, Default)]
pub struct Secrets {
    env: HashMap<String, String>,
    credentials_dir: Option<PathBuf>,
    dotenv: HashMap<String, String>,
}

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Names only: the values are the secrets.
        let names = |m: &HashMap<String, String>| {
            let mut n: Vec<&str> = m.keys().map(String::as_str).collect();
            n.sort_unstable();
            n.join(",")
        };
        f.debug_struct("Secrets")
            .field("env", &format_args!("[{} names]", self.env.len()))
            .field("credentials_dir", &self.credentials_dir)
            .field("dotenv", &names(&self.dotenv))
            .finish()
    }
}

/// Shortest secret [`redact`] looks for: shorter ones would blank ordinary words.
const MIN_REDACTED: usize = 4;

/// `text` with every occurrence of each of `secrets` replaced by `***`
/// (the longest first, so a URL goes before its path).
pub fn redact(text: &str, secrets: &[&str]) -> String {
    let mut by_length: Vec<&str> = secrets
        .iter()
        .copied()
        .filter(|s| s.len() >= MIN_REDACTED)
        .collect();
    by_length.sort_unstable_by_key(|s| std::cmp::Reverse(s.len()));
    by_length
        .into_iter()
        .fold(text.to_string(), |t, s| t.replace(s, "***"))
}

impl Secrets {
    /// Collects secrets for a config that lives in `config_dir`.
    pub fn load(config_dir: &Path) -> Result<Secrets, SecretsError> {
        let dotenv_path = config_dir.join(".env");
        let dotenv = match std::fs::read_to_string(&dotenv_path) {
            Ok(text) => parse_dotenv(&text, &dotenv_path)?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => HashMap::new(),
            // Unreadable is not absent: the keys in it would go missing unexplained.
            Err(e) => {
                return Err(SecretsError {
                    file: dotenv_path.display().to_string(),
                    line: 0,
                    message: format!("cannot read: {e}"),
                })
            }
        };
        Ok(Secrets {
            env: std::env::vars().collect(),
            credentials_dir: std::env::var_os("CREDENTIALS_DIRECTORY").map(PathBuf::from),
            dotenv,
        })
    }

    /// Builds a lookup from explicit maps (tests).
    pub fn from_maps(env: HashMap<String, String>, dotenv: HashMap<String, String>) -> Secrets {
        Secrets {
            env,
            credentials_dir: None,
            dotenv,
        }
    }

    /// The secret called `name` (e.g. `MISP_API_KEY`), if set and non-empty.
    pub fn get(&self, name: &str) -> Option<String> {
        let non_empty = |s: String| {
            let t = s.trim().to_string();
            (!t.is_empty()).then_some(t)
        };
        if let Some(v) = self.env.get(name).cloned().and_then(non_empty) {
            return Some(v);
        }
        if let Some(dir) = &self.credentials_dir {
            for file in [name.to_ascii_lowercase(), name.to_string()] {
                if let Ok(v) = std::fs::read_to_string(dir.join(file)) {
                    if let Some(v) = non_empty(v) {
                        return Some(v);
                    }
                }
            }
        }
        self.dotenv.get(name).cloned().and_then(non_empty)
    }
}

/// Parses `KEY=value` lines; `#` comments, `export ` prefixes and matching quotes are allowed.
fn parse_dotenv(text: &str, path: &Path) -> Result<HashMap<String, String>, SecretsError> {
    let mut out = HashMap::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").unwrap_or(line);
        let Some((k, v)) = line.split_once('=') else {
            return Err(SecretsError {
                file: path.display().to_string(),
                line: i + 1,
                message: "expected KEY=value".into(),
            });
        };
        let k = k.trim();
        if k.is_empty() || !k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            return Err(SecretsError {
                file: path.display().to_string(),
                line: i + 1,
                // Not echoed: a line pasted wrong may hold the secret left of `=`.
                message: "the name before `=` must be letters, digits and _".into(),
            });
        }
        let v = v.trim();
        let v = [('"', '"'), ('\'', '\'')]
            .iter()
            .find_map(|(a, b)| v.strip_prefix(*a).and_then(|s| s.strip_suffix(*b)))
            .unwrap_or(v);
        out.insert(k.to_string(), v.to_string());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_names_secrets_but_never_shows_them() {
        let s = Secrets::from_maps(
            [("COHERE_API_KEY".to_string(), "env-s3cret".to_string())].into(),
            [("MISP_API_KEY".to_string(), "dotenv-s3cret".to_string())].into(),
        );
        let debug = format!("{s:?}");
        assert!(debug.contains("MISP_API_KEY"), "{debug}");
        assert!(!debug.contains("s3cret"), "{debug}");
        assert_eq!(
            redact(
                "a https://h.example/p4th and t0k and p4th",
                &["https://h.example/p4th", "p4th", "t0k"]
            ),
            "a *** and t0k and ***",
            "the longest first; too short to redact safely"
        );
    }

    #[test]
    fn env_wins_over_dotenv_and_empty_is_unset() {
        let dotenv = parse_dotenv(
            "# seed project names\nMISP_API_KEY=\"from-file\"\nexport COHERE_API_KEY='c'\nMAILTRAP_TOKEN=\n",
            Path::new(".env"),
        )
        .unwrap();
        let env = HashMap::from([("MISP_API_KEY".to_string(), "from-env".to_string())]);
        let s = Secrets::from_maps(env, dotenv);
        assert_eq!(s.get("MISP_API_KEY").as_deref(), Some("from-env"));
        assert_eq!(s.get("COHERE_API_KEY").as_deref(), Some("c"));
        assert_eq!(s.get("MAILTRAP_TOKEN"), None);
    }

    #[test]
    fn credentials_directory_is_read() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("misp_api_key"), "cred\n").unwrap();
        let s = Secrets {
            credentials_dir: Some(dir.path().to_path_buf()),
            ..Default::default()
        };
        assert_eq!(s.get("MISP_API_KEY").as_deref(), Some("cred"));
    }

    #[test]
    fn bad_dotenv_line_names_file_and_line_not_value() {
        let e =
            parse_dotenv("A=1\nthis is secret\n", Path::new("/etc/homewarden/.env")).unwrap_err();
        assert_eq!(
            e.to_string(),
            "/etc/homewarden/.env: line 2: expected KEY=value"
        );
        let e =
            parse_dotenv("A=1\nsk-live-abc123 MISP_API_KEY=x\n", Path::new(".env")).unwrap_err();
        assert_eq!(
            e.to_string(),
            ".env: line 2: the name before `=` must be letters, digits and _"
        );
        assert!(!e.to_string().contains("abc123"));
    }

    #[test]
    fn an_unreadable_dotenv_is_an_error_not_an_absent_one() {
        let dir = tempfile::tempdir().unwrap();
        // A directory where the file should be: read fails with something other than NotFound.
        std::fs::create_dir(dir.path().join(".env")).unwrap();
        let e = Secrets::load(dir.path()).unwrap_err().to_string();
        assert!(
            e.starts_with(&format!(
                "{}: cannot read: ",
                dir.path().join(".env").display()
            )),
            "{e}"
        );
        let empty = tempfile::tempdir().unwrap();
        assert!(Secrets::load(empty.path()).is_ok());
    }
}
