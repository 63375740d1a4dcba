use super::*;
use crate::daemon::agent::SyncReport;
use crate::daemon::shutdown::Stopper;
use crate::intel::set::SourceSet;
use std::sync::Arc;

/// Routes to stand-ins for the agent's loop and the incidents' owner,
/// with the sets in `index`.
fn routes(
    status: watch::Receiver<Status>,
    agent: mpsc::Sender<Request>,
    index: Index,
) -> (Routes, mpsc::Receiver<incidents::Msg>) {
    let (incidents, inbox) = mpsc::channel(4);
    let (_, index) = watch::channel(Arc::new(index));
    let routes = Routes {
        status,
        agent,
        incidents,
        devices: None,
        signatures: None,
        index,
    };
    (routes, inbox)
}

#[tokio::test]
async fn status_and_sync_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("control.sock");
    let (status_tx, status_rx) = watch::channel(Status {
        state: crate::daemon::agent::State::Protected,
        ..Status::default()
    });
    let (req_tx, mut req_rx) = mpsc::channel(1);
    let stopper = Stopper::default();
    let (routes, _inbox) = routes(status_rx, req_tx, Index::default());
    let server = serve(&path, Access::default(), routes.clone(), stopper.handle()).unwrap();
    tokio::spawn(async move {
        while let Some(Request::Sync(_, reply)) = req_rx.recv().await {
            let _ = reply.send(SyncReport {
                sources: vec![("a".into(), None)],
                ..Default::default()
            });
        }
    });
    let v = request(&path, &Command::Status, Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(v["state"], "protected");
    status_tx.send_replace(Status {
        state: crate::daemon::agent::State::Degraded,
        ..Status::default()
    });
    let v = request(&path, &Command::Status, Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(v["state"], "degraded");
    let v = request(
        &path,
        &Command::Sync {
            accept_shrink: Vec::new(),
        },
        Duration::from_secs(5),
    )
    .await
    .unwrap();
    assert_eq!(v["sources"][0][0], "a");
    // A second daemon must not steal a live socket.
    assert!(serve(&path, Access::default(), routes, stopper.handle()).is_err());
    // The stop ends the server, which takes its socket away.
    stopper.stop().await;
    server.await.unwrap();
    assert!(!path.exists());
}

/// A lookup is answered from the published sets and an acknowledgement by
/// the incidents' owner, while the agent's loop answers nothing (a long step).
#[tokio::test]
async fn lookups_and_acks_do_not_wait_on_the_agents_loop() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("control.sock");
    let (_status_tx, status_rx) = watch::channel(Status::default());
    let (req_tx, mut busy_loop) = mpsc::channel(8);
    let mut set = SourceSet::new();
    set.push(Ioc::parse_any("203.0.113.0/24").unwrap(), None, None);
    set.index();
    let index = Index::new([("feed".to_string(), Arc::new(set))]);
    let (routes, mut inbox) = routes(status_rx, req_tx, index);
    let stopper = Stopper::default();
    let _server = serve(&path, Access::default(), routes, stopper.handle()).unwrap();
    tokio::spawn(async move {
        while let Some(incidents::Msg::Ack(reply)) = inbox.recv().await {
            let _ = reply.send(3);
        }
    });
    let lookup = Command::Lookup {
        value: "203.0.113.9".into(),
    };
    let v = request(&path, &lookup, Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(v["found"][0]["source"], "feed", "{v}");
    let bad = Command::Lookup {
        value: "not a value".into(),
    };
    assert!(request(&path, &bad, Duration::from_secs(5)).await.is_err());
    let v = request(&path, &Command::Ack, Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(v["acknowledged"], 3);
    // The loop hears of it when it gets there (the self-test alarm goes out).
    let told = tokio::time::timeout(Duration::from_secs(5), busy_loop.recv())
        .await
        .unwrap();
    assert!(matches!(told, Some(Request::Acknowledged(3))));
}

#[tokio::test]
async fn long_requests_and_huge_presses_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("control.sock");
    let (_status_tx, status_rx) = watch::channel(Status::default());
    let (req_tx, mut req_rx) = mpsc::channel(4);
    let stopper = Stopper::default();
    let (routes, _inbox) = routes(status_rx, req_tx, Index::default());
    let _server = serve(&path, Access::default(), routes, stopper.handle()).unwrap();
    let e = request(
        &path,
        &Command::Press { ms: u64::MAX },
        Duration::from_secs(5),
    )
    .await
    .unwrap_err();
    assert!(e.to_string().contains("at most 60000"), "{e}");
    assert!(
        req_rx.try_recv().is_err(),
        "a refused press reached the agent"
    );
    request(&path, &Command::Press { ms: 6000 }, Duration::from_secs(5))
        .await
        .unwrap();
    assert!(matches!(req_rx.try_recv(), Ok(Request::Press(d)) if d == Duration::from_secs(6)));

    // A line past the cap gets one error and the end of the connection,
    // even when it never ends.
    let stream = UnixStream::connect(&path).await.unwrap();
    let (r, mut w) = stream.into_split();
    let big = vec![b'x'; MAX_REQUEST + 10];
    w.write_all(&big).await.unwrap();
    let mut reply = String::new();
    BufReader::new(r).read_to_string(&mut reply).await.unwrap();
    assert_eq!(reply.lines().count(), 1, "{reply}");
    assert!(reply.contains("longer than 16384 bytes"), "{reply}");
    // One just under the cap is read (and refused as JSON, not for its size).
    let stream = UnixStream::connect(&path).await.unwrap();
    let (r, mut w) = stream.into_split();
    let mut line = vec![b' '; MAX_REQUEST - 20];
    line.extend_from_slice(b"{\"cmd\":\"status\"}\n");
    w.write_all(&line).await.unwrap();
    let mut lines = BufReader::new(r).lines();
    let reply = lines.next_line().await.unwrap().unwrap();
    assert!(reply.contains("\"state\""), "{reply}");
}

#[test]
fn the_device_list_is_a_look_and_a_quarantine_a_change() {
    assert_eq!(Command::Devices.right(), Right::Read);
    for cmd in [
        DeviceCommand::Name {
            device: "tv".into(),
            name: None,
        },
        DeviceCommand::Quarantine {
            device: "tv".into(),
            for_secs: None,
            reason: None,
            force: false,
        },
        DeviceCommand::Release {
            device: "tv".into(),
        },
    ] {
        assert_eq!(Command::Device(cmd).right(), Right::Change);
    }
    // On the socket: the command and the act, side by side.
    let line = serde_json::to_string(&Command::Device(DeviceCommand::Release {
        device: "tv".into(),
    }))
    .unwrap();
    assert_eq!(line, r#"{"cmd":"device","act":"release","device":"tv"}"#);
}

#[tokio::test]
async fn no_daemon_is_a_clear_error() {
    let e = request(
        Path::new("/nonexistent/control.sock"),
        &Command::Status,
        Duration::from_secs(1),
    )
    .await
    .unwrap_err();
    assert!(e.to_string().contains("is `homewarden run`"), "{e}");
}
