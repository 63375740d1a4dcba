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

/// What a child did, and the most memory it held at once.
pub struct Measured {
    /// Its output; `None` when it ran out of time (it was killed).
    pub output: Option<std::process::Output>,
    /// Its peak resident memory in bytes (the kernel's `ru_maxrss`).
    pub peak: u64,
}

/// Runs `cmd` to its end or `limit` (then kills it), its output captured,
/// and asks the kernel for its peak memory as it is reaped (`wait4`):
/// `Err` if it could not start. Blocking: for `spawn_blocking`.
pub fn run_measured(mut cmd: Command, limit: std::time::Duration) -> Result<Measured, String> {
    use std::io::Read;
    use std::process::Stdio;
    let program = cmd.get_program().to_string_lossy().into_owned();
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run {program} ({e})"))?;
    // Drained beside the wait: a child blocked on a full pipe never ends.
    let drain = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut p) = pipe {
                let _ = p.read_to_end(&mut buf);
            }
            buf
        })
    };
    let out = drain(
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let err = drain(
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let pid = libc::pid_t::try_from(child.id()).map_err(|e| e.to_string())?;
    let deadline = std::time::Instant::now() + limit;
    let mut timed_out = false;
    let (status, usage) = loop {
        let mut status = 0;
        // SAFETY: an all-zero rusage is a valid value for wait4 to fill.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: `pid` is our own unreaped child; both pointers are live.
        let r = unsafe { libc::wait4(pid, &mut status, libc::WNOHANG, &mut usage) };
        if r == pid {
            break (status, usage);
        }
        if r < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(format!("waiting for {program}: {e}"));
        }
        if !timed_out && std::time::Instant::now() >= deadline {
            timed_out = true;
            let _ = child.kill();
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    let stdout = out.join().unwrap_or_default();
    let stderr = err.join().unwrap_or_default();
    let peak = u64::try_from(usage.ru_maxrss)
        .unwrap_or(0)
        .saturating_mul(1024);
    use std::os::unix::process::ExitStatusExt;
    Ok(Measured {
        output: (!timed_out).then(|| std::process::Output {
            status: std::process::ExitStatus::from_raw(status),
            stdout,
            stderr,
        }),
        peak,
    })
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

    #[test]
    fn a_measured_child_says_its_peak_and_its_output() {
        // 64 MiB touched by a child of ours: its peak is at least that.
        let mut c = command("python3");
        c.args(["-c", "b = bytearray(64 << 20); print('done')"]);
        let m = run_measured(c, std::time::Duration::from_secs(60)).unwrap();
        let out = m.output.unwrap();
        assert!(out.status.success());
        assert_eq!(out.stdout, b"done\n");
        assert!(m.peak >= 64 << 20, "{}", m.peak);
        assert!(m.peak < 1 << 30, "{}", m.peak);

        let mut slow = command("sleep");
        slow.arg("30");
        let m = run_measured(slow, std::time::Duration::from_millis(200)).unwrap();
        assert!(m.output.is_none(), "killed at its limit");
        assert!(run_measured(
            command("/nonexistent/tool"),
            std::time::Duration::from_secs(1)
        )
        .is_err());
    }

    #[tokio::test]
    async fn so_does_an_async_one() {
        let out = tokio_command("env").output().await.unwrap();
        assert_eq!(names_seen_by(out), ["LC_ALL", "PATH"]);
    }
}
