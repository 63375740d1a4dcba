//! The daemon under a service manager: READY=1 and WATCHDOG=1 on $NOTIFY_SOCKET
//! (so `WatchdogSec` restarts a hung agent), the simulated panel showing that
//! Suricata is missing, and every LED dark after a clean stop.

use std::os::unix::net::UnixDatagram;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_homewarden");

fn panel(path: &std::path::Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(path).unwrap_or_default())
        .unwrap_or(serde_json::Value::Null)
}

#[test]
fn ready_watchdog_and_a_dark_panel_after_stop() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display();
    let notify = dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&notify).unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let cfg = dir.path().join("homewarden.yaml");
    std::fs::write(
        &cfg,
        format!(
            "state_dir: {d}/state\ncontrol_socket: {d}/control.sock\n\
             suricata: {{ rules_dir: {d}/rules, command_socket: {d}/no-suricata.sock }}\n\
             alerts: {{ eve_socket: {d}/eve.sock }}\n\
             panel: {{ backends: [simulated], state_file: {d}/panel.json }}\n"
        ),
    )
    .unwrap();
    let mut child = Command::new(BIN)
        .arg("--config")
        .arg(&cfg)
        .arg("run")
        .env("NOTIFY_SOCKET", &notify)
        .env("HOMEWARDEN_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();

    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut buf = [0u8; 512];
    while Instant::now() < deadline
        && !(seen.contains(&"READY=1".to_string()) && seen.contains(&"WATCHDOG=1".to_string()))
    {
        if let Ok(n) = sock.recv(&mut buf) {
            seen.extend(
                String::from_utf8_lossy(&buf[..n])
                    .lines()
                    .map(str::to_string),
            );
        }
    }
    let panel_file = dir.path().join("panel.json");
    let running = panel(&panel_file);
    let _ = Command::new("kill").arg(child.id().to_string()).status();
    let status = child.wait().unwrap();

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
