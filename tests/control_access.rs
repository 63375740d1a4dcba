//! The control socket against real users: the CLI run as `nobody` is kept
//! out by the socket's mode, may look once its group is the read group, and
//! is refused changes unless it is in the admin group. Needs root (to run a
//! child as another user); skipped, saying so, without it.

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;

use homewarden::config::AccessConfig;
use homewarden::daemon::agent::{Request, Status};
use homewarden::daemon::control::{self, access::Access};
use homewarden::daemon::incidents;
use homewarden::daemon::shutdown::Stopper;
use tokio::sync::{mpsc, watch};

const NOBODY: u32 = 65534;

/// `homewarden --config CFG ARGS…` as uid/gid 65534: (exit success, stdout + stderr).
fn as_nobody(cfg: &Path, args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_homewarden"))
        .arg("--config")
        .arg(cfg)
        .args(args)
        .uid(NOBODY)
        .gid(NOBODY)
        .output()
        .expect("run the CLI as nobody");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

fn is_root() -> bool {
    std::fs::metadata("/proc/self").is_ok_and(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0)
}

/// A daemon's socket in `dir` with `access`: what reaches the agent comes out
/// of the receiver; the status stays "protected" while the sender lives.
struct Served {
    server: tokio::task::JoinHandle<()>,
    stopper: Stopper,
    requests: mpsc::Receiver<Request>,
    /// Acknowledgements that reached the incidents' stand-in.
    acks: mpsc::Receiver<()>,
    _status: watch::Sender<Status>,
}

impl Served {
    fn new(dir: &Path, access: Access) -> Served {
        let (tx, status) = watch::channel(Status {
            state: homewarden::daemon::agent::State::Protected,
            ..Status::default()
        });
        let (req_tx, requests) = mpsc::channel(8);
        let (incidents, mut inbox) = mpsc::channel(8);
        let (acked, acks) = mpsc::channel(8);
        tokio::spawn(async move {
            while let Some(incidents::Msg::Ack(reply)) = inbox.recv().await {
                let _ = acked.send(()).await;
                let _ = reply.send(1);
            }
        });
        let routes = control::Routes {
            status,
            agent: req_tx,
            incidents,
            devices: None,
            signatures: None,
            index: watch::channel(Default::default()).1,
        };
        let stopper = Stopper::default();
        let server =
            control::serve(&dir.join("control.sock"), access, routes, stopper.handle()).unwrap();
        Served {
            server,
            stopper,
            requests,
            acks,
            _status: tx,
        }
    }

    /// Stops serving; the next one may bind the same path.
    async fn stop(self) {
        self.stopper.stop().await;
        let _ = self.server.await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn nobody_is_kept_out_then_may_look_then_may_change() {
    if !is_root() {
        eprintln!("skipped: running a client as another user needs root");
        return;
    }
    let group_file = std::fs::read_to_string("/etc/group").unwrap();
    let dir = tempfile::tempdir().unwrap();
    // nobody must reach the socket's directory and read the config.
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let cfg = dir.path().join("homewarden.yaml");
    std::fs::write(
        &cfg,
        format!(
            "control_socket: {}\n",
            dir.path().join("control.sock").display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&cfg, std::fs::Permissions::from_mode(0o644)).unwrap();

    // Nothing configured: root only, by the socket's mode.
    let served = Served::new(dir.path(), Access::default());
    let (ok, out) = tokio::task::spawn_blocking({
        let cfg = cfg.clone();
        move || as_nobody(&cfg, &["status", "--json"])
    })
    .await
    .unwrap();
    assert!(!ok, "{out}");
    assert!(out.contains("permission denied: root may use it"), "{out}");
    served.stop().await;

    // nogroup may look: status answers, ack is refused and never reaches the agent.
    let looking = AccessConfig {
        read_group: Some("nogroup".into()),
        admin_group: None,
    };
    let (access, problems) = Access::resolve(&looking, &group_file);
    assert!(problems.is_empty(), "{problems:?}");
    let mut served = Served::new(dir.path(), access);
    let c = cfg.clone();
    let (ok, out) = tokio::task::spawn_blocking(move || as_nobody(&c, &["status", "--json"]))
        .await
        .unwrap();
    assert!(ok, "{out}");
    assert!(out.contains("\"protected\""), "{out}");
    let c = cfg.clone();
    let (ok, out) = tokio::task::spawn_blocking(move || as_nobody(&c, &["ack"]))
        .await
        .unwrap();
    assert!(!ok, "{out}");
    assert!(
        out.contains("permission denied: nobody may not change things; root may"),
        "{out}"
    );
    assert!(
        served.acks.try_recv().is_err() && served.requests.try_recv().is_err(),
        "a refused ack was taken"
    );
    served.stop().await;

    // nogroup as the admin group: the ack goes through.
    let changing = AccessConfig {
        read_group: None,
        admin_group: Some("nogroup".into()),
    };
    let mut served = Served::new(dir.path(), Access::resolve(&changing, &group_file).0);
    let c = cfg.clone();
    let (ok, out) = tokio::task::spawn_blocking(move || as_nobody(&c, &["ack"]))
        .await
        .unwrap();
    assert!(ok, "{out}");
    assert!(out.contains("acknowledged 1 incident(s)"), "{out}");
    assert_eq!(served.acks.recv().await, Some(()));
    assert!(matches!(
        served.requests.recv().await,
        Some(Request::Acknowledged(1))
    ));
    served.stop().await;
}
