//! Child processes (nft, iptables, conntrack, `suricata -r`) start with a
//! cleared environment: systemd loads `.env` into the agent's, and its API keys
//! and mail password must not reach tools that never need them.

use std::ffi::OsStr;
use std::process::Command;

/// What a child keeps of the agent's environment: where to find programs.
const KEPT: &[&str] = &["PATH"];

/// A command for `program` with only `KEPT` variables of ours, and the C
/// locale so the tool's messages (quoted in our errors) are the documented ones.
pub fn command(program: impl AsRef<OsStr>) -> Command {
    let mut c = Command::new(program);
    c.env_clear();
    for name in KEPT {
        if let Some(v) = std::env::var_os(name) {
            c.env(name, v);
        }
    }
    c.env("LC_ALL", "C");
    c
}

/// [`command`] for the async runtime.
pub fn tokio_command(program: impl AsRef<OsStr>) -> tokio::process::Command {
    tokio::process::Command::from(command(program))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names_seen_by(out: std::process::Output) -> Vec<String> {
        assert!(out.status.success());
        let mut names: Vec<String> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.split_once('=').map(|(k, _)| k.to_string()))
            .collect();
        names.sort();
        names
    }

    #[test]
    fn a_child_sees_only_path_and_the_locale() {
        // The test runner's own environment (HOME, USER, CARGO_*…) is the
        // stand-in for the secrets systemd puts in ours.
        assert!(std::env::vars().count() > 2);
        let out = command("env").output().unwrap();
        assert_eq!(names_seen_by(out), ["LC_ALL", "PATH"]);
    }

    #[tokio::test]
    async fn so_does_an_async_one() {
        let out = tokio_command("env").output().await.unwrap();
        assert_eq!(names_seen_by(out), ["LC_ALL", "PATH"]);
    }
}
