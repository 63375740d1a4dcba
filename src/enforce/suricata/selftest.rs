//! The self-test: proof that what the agent wrote is what Suricata enforces,
//! without touching real traffic. Live checks ask the running Suricata
//! (every rule loaded, sampled values present in or absent from the datasets
//! as they should be); the replay runs a tiny packet capture shipped with the
//! appliance through `suricata -r` with the rules on disk and expects the
//! canary rule to fire. The canary is an address of TEST-NET-1 (RFC 5737)
//! that the agent keeps in every rendering: it never exists on a real network.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::json;

use super::socket::Connection;

/// The canary address, always in the IPv4 blocklist, reached by the self-test capture.
pub const CANARY: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 254);
/// Sid offset of the rule the canary must fire (IPv4 destination on blocklist).
pub const CANARY_SID_OFFSET: u32 = 1;

/// The self-test's outcome, as status shows it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    /// When it last ran (unix seconds).
    pub last_run: Option<u64>,
    /// Whether it passed.
    pub ok: Option<bool>,
    /// Its checks.
    pub checks: Vec<Check>,
    /// The last failure, until acknowledged (amber LED) or a new rendering passes.
    pub alarm: Option<String>,
    /// The last rollback to the last good rendering (unix seconds).
    pub rolled_back: Option<u64>,
}

/// One check and how it went.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Check {
    /// What was checked.
    pub name: String,
    /// Whether it held.
    pub ok: bool,
    /// What was seen.
    pub detail: String,
}

/// A dataset value and whether it should be there.
#[derive(Clone, Debug)]
pub struct Probe {
    /// Dataset name (`hw-ipv4`).
    pub set: &'static str,
    /// Dataset type (`ipv4`, `ip`, `string`).
    pub settype: &'static str,
    /// The value as a dataset line (base64 for strings).
    pub value: String,
    /// What people call it (the domain, not its base64).
    pub label: String,
    /// Expected present (true) or absent (false).
    pub want: bool,
}

/// Asks the running Suricata: all rules loaded, and every probe as expected.
pub async fn live(socket: &Path, timeout: Duration, probes: &[Probe]) -> Vec<Check> {
    let mut out = Vec::new();
    let mut conn = match Connection::open(socket, timeout).await {
        Ok(c) => c,
        Err(e) => {
            out.push(Check {
                name: "suricata reachable".into(),
                ok: false,
                detail: e.to_string(),
            });
            return out;
        }
    };
    match conn.command("ruleset-stats", None).await {
        Ok(r) if r.ok => {
            let failed: u64 = r
                .message
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|s| s["rules_failed"].as_u64())
                .sum();
            let loaded: u64 = r
                .message
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|s| s["rules_loaded"].as_u64())
                .sum();
            out.push(Check {
                name: "every rule loaded".into(),
                ok: failed == 0 && loaded > 0,
                detail: format!("{loaded} loaded, {failed} failed"),
            });
        }
        other => out.push(Check {
            name: "every rule loaded".into(),
            ok: false,
            detail: format!("ruleset-stats: {other:?}"),
        }),
    }
    for p in probes {
        let reply = conn
            .command(
                "dataset-lookup",
                Some(json!({"setname": p.set, "settype": p.settype, "datavalue": p.value})),
            )
            .await;
        let found = match &reply {
            // Suricata answers OK "item found in set" or NOK "item not found in set".
            Ok(r) => r.ok,
            Err(_) => !p.want,
        };
        out.push(Check {
            name: format!(
                "{} {} {}",
                p.label,
                if p.want { "in" } else { "not in" },
                p.set
            ),
            ok: reply.is_ok() && found == p.want,
            detail: match reply {
                Ok(r) => r.message.as_str().unwrap_or_default().to_string(),
                Err(e) => e.to_string(),
            },
        });
    }
    out
}

/// How to replay the capture.
#[derive(Clone, Debug)]
pub struct Replay {
    /// The suricata binary.
    pub suricata: PathBuf,
    /// Suricata's main config (classifications, defaults).
    pub config: PathBuf,
    /// The capture: one packet to the canary.
    pub pcap: PathBuf,
    /// Our rules directory (the rules file and the datasets it loads).
    pub rules_dir: PathBuf,
    /// The sid the canary must fire.
    pub sid: u32,
    /// Longest the run may take.
    pub timeout: Duration,
}

/// Runs `suricata -r` over the capture with the rules on disk; the canary rule must alert.
pub async fn replay(r: &Replay) -> Check {
    let name = "the capture's canary packet alerts".to_string();
    let work = match tempfile_dir() {
        Ok(d) => d,
        Err(e) => {
            return Check {
                name,
                ok: false,
                detail: format!("no work directory: {e}"),
            }
        }
    };
    let rules = r.rules_dir.join(super::render::RULES_FILE);
    let mut cmd = crate::child::tokio_command(&r.suricata);
    cmd.arg("-c")
        .arg(&r.config)
        .arg("-r")
        .arg(&r.pcap)
        .arg("-S")
        .arg(&rules)
        .arg("-l")
        .arg(&work)
        .arg("-k")
        .arg("none")
        .arg("--set")
        .arg(format!("default-rule-path={}", r.rules_dir.display()))
        // Our own pid file: the running Suricata's must not be touched.
        .arg("--pidfile")
        .arg(work.join("suricata.pid"))
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    let result = tokio::time::timeout(r.timeout, cmd.output()).await;
    let check = match result {
        Err(_) => Check {
            name,
            ok: false,
            detail: format!("suricata -r took longer than {:?}", r.timeout),
        },
        Ok(Err(e)) => Check {
            name,
            ok: false,
            detail: format!("{}: {e}", r.suricata.display()),
        },
        Ok(Ok(out)) => {
            let eve = std::fs::read_to_string(work.join("eve.json")).unwrap_or_default();
            let fired = eve.lines().any(|l| {
                serde_json::from_str::<serde_json::Value>(l).is_ok_and(|v| {
                    v["event_type"] == "alert"
                        && v["alert"]["signature_id"].as_u64() == Some(u64::from(r.sid))
                })
            });
            let stderr = String::from_utf8_lossy(&out.stderr);
            let last_error = stderr
                .lines()
                .rfind(|l| l.starts_with("E:") || l.contains("Error"))
                .unwrap_or("")
                .chars()
                .take(300)
                .collect::<String>();
            Check {
                name,
                ok: fired,
                detail: if fired {
                    format!("sid {} fired", r.sid)
                } else if !out.status.success() {
                    format!("suricata -r failed ({}): {last_error}", out.status)
                } else {
                    format!("sid {} did not fire {last_error}", r.sid)
                        .trim_end()
                        .to_string()
                },
            }
        }
    };
    let _ = std::fs::remove_dir_all(&work);
    check
}

fn tempfile_dir() -> std::io::Result<PathBuf> {
    let base = std::env::temp_dir().join(format!(
        "homewarden-selftest-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0)
    ));
    std::fs::create_dir_all(&base)?;
    Ok(base)
}

/// Files of a rendering, for keeping the last good one.
fn our_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for e in std::fs::read_dir(dir)? {
        let p = e?.path();
        let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if name == super::render::RULES_FILE || (name.starts_with("hw-") && name.ends_with(".lst"))
        {
            files.push(p);
        }
    }
    Ok(files)
}

/// Copies our rules and datasets from one directory to another, each file
/// atomically, and removes ours that `from` does not have.
pub fn copy_rendering(from: &Path, to: &Path) -> std::io::Result<usize> {
    std::fs::create_dir_all(to)?;
    let wanted = our_files(from)?;
    for stale in our_files(to)? {
        if !wanted.iter().any(|w| w.file_name() == stale.file_name()) {
            std::fs::remove_file(&stale)?;
        }
    }
    for f in &wanted {
        let bytes = std::fs::read(f)?;
        let name = f.file_name().unwrap_or_default();
        crate::fsutil::write_atomic(&to.join(name), &bytes)?;
    }
    Ok(wanted.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renderings_are_copied_whole_and_only_ours() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        std::fs::write(a.path().join("homewarden.rules"), "rules v1").unwrap();
        std::fs::write(a.path().join("hw-ipv4.lst"), "192.0.2.254\n").unwrap();
        std::fs::write(a.path().join("other.rules"), "not ours").unwrap();
        std::fs::write(b.path().join("hw-shadow-ipv4.lst"), "stale\n").unwrap();
        std::fs::write(b.path().join("keep.txt"), "not ours").unwrap();
        assert_eq!(copy_rendering(a.path(), b.path()).unwrap(), 2);
        assert_eq!(
            std::fs::read_to_string(b.path().join("homewarden.rules")).unwrap(),
            "rules v1"
        );
        assert!(!b.path().join("hw-shadow-ipv4.lst").exists());
        assert!(!b.path().join("other.rules").exists());
        assert!(b.path().join("keep.txt").exists());
    }
}
