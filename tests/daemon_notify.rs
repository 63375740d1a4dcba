//! The daemon under a service manager: READY=1 and WATCHDOG=1 on $NOTIFY_SOCKET
//! (so `WatchdogSec` restarts a hung agent, and not a busy one: a slow self-test
//! replay keeps WATCHDOG=1 coming), the simulated panel showing that
//! Suricata is missing, and every LED dark after a clean stop.

use std::os::unix::net::UnixDatagram;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_homewarden");

fn panel(path: &std::path::Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(path).unwrap_or_default())
        .unwrap_or(serde_json::Value::Null)
}

/// The agent under a stand-in service manager: our datagram socket as
/// $NOTIFY_SOCKET, no Suricata, a simulated panel.
struct Daemon {
    dir: tempfile::TempDir,
    cfg: std::path::PathBuf,
    notify: UnixDatagram,
    child: std::process::Child,
}

impl Daemon {
    /// Starts `homewarden run` with the base config plus `extra` YAML lines.
    fn start(extra: &str, recv_timeout: Duration) -> Daemon {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().display();
        let path = dir.path().join("notify.sock");
        let notify = UnixDatagram::bind(&path).unwrap();
        notify.set_read_timeout(Some(recv_timeout)).unwrap();
        let cfg = dir.path().join("homewarden.yaml");
        std::fs::write(
            &cfg,
            format!(
                "state_dir: {d}/state\ncontrol_socket: {d}/control.sock\n\
                 suricata: {{ rules_dir: {d}/rules, command_socket: {d}/no-suricata.sock }}\n\
                 alerts: {{ eve_socket: {d}/eve.sock }}\n\
                 panel: {{ backends: [simulated], state_file: {d}/panel.json }}\n\
                 signatures: {{ profile: off }}\n{extra}"
            ),
        )
        .unwrap();
        let child = Command::new(BIN)
            .arg("--config")
            .arg(&cfg)
            .arg("run")
            .env("NOTIFY_SOCKET", &path)
            .env("HOMEWARDEN_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        Daemon {
            dir,
            cfg,
            notify,
            child,
        }
    }

    /// The lines of one notification, or none within the read timeout.
    fn recv(&self) -> Vec<String> {
        let mut buf = [0u8; 512];
        match self.notify.recv(&mut buf) {
            Ok(n) => String::from_utf8_lossy(&buf[..n])
                .lines()
                .map(str::to_string)
                .collect(),
            Err(_) => Vec::new(),
        }
    }

    /// SIGTERM, as systemd stops it; its exit status.
    fn stop(mut self) -> (tempfile::TempDir, std::process::ExitStatus) {
        let _ = Command::new("kill")
            .arg(self.child.id().to_string())
            .status();
        let status = self.child.wait().unwrap();
        (self.dir, status)
    }
}

#[test]
fn ready_watchdog_and_a_dark_panel_after_stop() {
    let daemon = Daemon::start("", Duration::from_millis(500));
    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline
        && !(seen.contains(&"READY=1".to_string()) && seen.contains(&"WATCHDOG=1".to_string()))
    {
        seen.extend(daemon.recv());
    }
    let panel_file = daemon.dir.path().join("panel.json");
    let running = panel(&panel_file);
    let (_dir, status) = daemon.stop();

    assert!(seen.contains(&"READY=1".to_string()), "{seen:?}");
    assert!(seen.contains(&"WATCHDOG=1".to_string()), "{seen:?}");
    // No Suricata: not protected, traffic would pass uninspected.
    assert_eq!(running["green"]["kind"], "off", "{running}");
    assert_eq!(
        running["amber"],
        serde_json::json!({"kind": "blink", "on_ms": 500, "off_ms": 500}),
        "{running}"
    );
    assert!(status.success(), "{status:?}");
    let stopped = panel(&panel_file);
    for led in ["green", "amber", "red", "act"] {
        assert_eq!(stopped[led]["kind"], "off", "{led} after stop: {stopped}");
    }
}

#[test]
fn a_slow_selftest_replay_keeps_the_watchdog_fed() {
    // A Pi 3 may take longer over `suricata -r` than WatchdogSec (30 s) allows
    // one step of the loop; systemd must still hear from the agent meanwhile.
    let slow_dir = tempfile::tempdir().unwrap();
    let slow = slow_dir.path().join("slow-suricata");
    std::fs::write(&slow, "#!/bin/sh\nsleep 13\n").unwrap();
    let mut perms = std::fs::metadata(&slow).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o755);
    std::fs::set_permissions(&slow, perms).unwrap();
    let daemon = Daemon::start(
        &format!(
            "selftest: {{ suricata: {}, timeout: 60s }}\n",
            slow.display()
        ),
        Duration::from_millis(200),
    );
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut ready = false;
    while !ready && Instant::now() < deadline {
        ready = daemon.recv().iter().any(|l| l == "READY=1");
    }

    let started = Instant::now();
    let mut selftest = Command::new(BIN)
        .arg("--config")
        .arg(&daemon.cfg)
        .arg("selftest")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut pings = Vec::new();
    let finished = loop {
        if daemon.recv().iter().any(|l| l == "WATCHDOG=1") {
            pings.push(started.elapsed());
        }
        if let Some(status) = selftest.try_wait().unwrap() {
            break Some(status);
        }
        if started.elapsed() > Duration::from_secs(60) {
            break None;
        }
    };
    let took = started.elapsed();
    let out = selftest.wait_with_output().unwrap();
    daemon.stop();

    assert!(ready, "no READY=1");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(finished.is_some(), "selftest did not answer in 60 s");
    // It did run the slow replay (and failed it: no canary alert from a sleep).
    assert!(took >= Duration::from_secs(12), "took {took:?}: {stdout}");
    assert!(
        stdout.contains("FAIL the capture's canary packet alerts"),
        "{stdout}"
    );
    let mut gaps = vec![pings.first().copied().unwrap_or(took)];
    gaps.extend(pings.windows(2).map(|w| w[1] - w[0]));
    gaps.push(took - pings.last().copied().unwrap_or_default());
    assert!(
        gaps.iter().all(|g| *g < Duration::from_secs(8)),
        "watchdog silent too long while the replay ran: pings at {pings:?}, took {took:?}"
    );
}
