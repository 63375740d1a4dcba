use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use super::discovery::*;
use super::*;
use crate::alerts::triage::Incident;
use crate::daemon::agent::State;
use crate::enforce::firewall::health::QueueRule;

fn topics() -> Topics {
    Topics::new("homeassistant", "homewarden", "a1b2c3d4e5f6")
}

fn incident(remote: &str, last_seen: i64, high: bool) -> Incident {
    serde_json::from_value(serde_json::json!({
        "id": format!("inc-{last_seen}"), "sid": 1, "signature": "ET MALWARE beacon",
        "category": "A Network Trojan was detected", "remote": remote, "remote_ip": "203.0.113.66",
        "local": "198.18.1.2", "severity": 1, "high": high, "blocked": true,
        "first_seen": last_seen, "last_seen": last_seen, "count": 4,
        "ioc": {"source": "misp", "event_id": 42, "indicator": "c2.lab-evil.test"},
    }))
    .unwrap()
}

fn protected() -> Status {
    let mut s = Status {
        state: State::Protected,
        ..Status::default()
    };
    s.suricata.reachable = true;
    s.blocklist.domains = 3;
    s.blocklist.ipv4 = 7;
    s
}

/// Home Assistant's MQTT discovery rules, as its documentation states them:
/// the topic's shape, the keys each component requires, one device for all,
/// unique ids, and topics that are the ones the agent publishes or hears.
fn check_against_ha_docs(
    configs: &[(String, EntityConfig)],
    t: &Topics,
    sensors: usize,
    buttons: usize,
) {
    let id = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    };
    let mut unique = std::collections::HashSet::new();
    for (topic, cfg) in configs {
        let parts: Vec<&str> = topic.split('/').collect();
        assert_eq!(parts.len(), 5, "{topic}");
        let [prefix, component, node, object, last] = parts[..] else {
            unreachable!()
        };
        assert_eq!((prefix, last), ("homeassistant", "config"), "{topic}");
        assert!(
            id(node) && id(object),
            "{topic}: node and object ids are [a-zA-Z0-9_-]"
        );
        assert!(
            unique.insert(cfg.unique_id.clone()),
            "unique_id twice: {}",
            cfg.unique_id
        );
        assert_eq!(cfg.device.identifiers, [format!("homewarden_{}", t.node)]);
        assert_eq!(cfg.availability_topic, t.availability());
        let v = serde_json::to_value(cfg).unwrap();
        match component {
            "sensor" | "binary_sensor" => {
                assert_eq!(v["state_topic"], t.state(), "{topic}");
                assert!(
                    v["value_template"]
                        .as_str()
                        .unwrap()
                        .contains("value_json."),
                    "{topic}"
                );
                assert!(v.get("command_topic").is_none(), "{topic}");
            }
            "button" => {
                assert_eq!(v["command_topic"], t.command(), "{topic}");
                assert!(v["payload_press"].is_string(), "{topic}");
                assert!(v.get("state_topic").is_none(), "{topic}");
            }
            other => panic!("{topic}: component {other}"),
        }
        if v["device_class"] == "enum" {
            assert!(
                v["options"].as_array().is_some_and(|o| !o.is_empty()),
                "{topic}"
            );
            assert!(v.get("state_class").is_none() && v.get("unit_of_measurement").is_none());
        }
        if let Some(a) = v.get("json_attributes_topic") {
            assert_eq!(a, &t.last_incident());
        }
    }
    let components: BTreeMap<&str, usize> =
        configs.iter().fold(BTreeMap::new(), |mut m, (topic, _)| {
            *m.entry(topic.split('/').nth(1).unwrap()).or_default() += 1;
            m
        });
    let want = BTreeMap::from([
        ("binary_sensor", 1),
        ("button", buttons),
        ("sensor", sensors),
    ]);
    assert_eq!(
        components,
        want.into_iter().filter(|(_, n)| *n > 0).collect()
    );
}

#[test]
fn the_device_and_its_entities_are_announced_as_home_assistant_documents() {
    let t = topics();
    // Without the device inventory: five sensors, and the device sensors retired.
    let buttons = Optional {
        devices: false,
        buttons: true,
    };
    let without = configs(&t, "pi", "9.9.9", buttons);
    check_against_ha_docs(&without, &t, 5, 2);
    let gone = retired(&t, buttons);
    assert_eq!(
        gone,
        [
            "homeassistant/sensor/a1b2c3d4e5f6/devices/config",
            "homeassistant/sensor/a1b2c3d4e5f6/quarantined_devices/config"
        ]
    );
    assert!(without.iter().all(|(topic, _)| !gone.contains(topic)));
    let all = Optional {
        devices: true,
        buttons: true,
    };
    let announced = configs(&t, "pi", "9.9.9", all);
    check_against_ha_docs(&announced, &t, 7, 2);
    assert!(retired(&t, all).is_empty());
    // Without mqtt.buttons (the default) no button is announced, and one
    // announced before is removed.
    let sensors_only = configs(&t, "pi", "9.9.9", Optional::default());
    check_against_ha_docs(&sensors_only, &t, 5, 0);
    assert_eq!(
        retired(&t, Optional::default())[..2],
        [
            "homeassistant/button/a1b2c3d4e5f6/acknowledge/config",
            "homeassistant/button/a1b2c3d4e5f6/resync/config"
        ]
    );
    assert!(gone
        .iter()
        .all(|g| announced.iter().any(|(topic, _)| topic == g)));
    let by_object = |o: &str| {
        &announced
            .iter()
            .find(|(topic, _)| topic.contains(&format!("/{o}/")))
            .unwrap()
            .1
    };
    assert_eq!(
        by_object("threat_state").options.as_deref(),
        Some(&THREAT_STATES[..])
    );
    assert_eq!(by_object("acknowledge").payload_press, Some("ack"));
    assert_eq!(by_object("resync").payload_press, Some("resync"));
    // Another node: other ids, the same shape.
    let other = configs(
        &Topics::new("homeassistant", "homewarden", "ffffffffffff"),
        "pi",
        "9.9.9",
        all,
    );
    assert!(other
        .iter()
        .all(|(_, c)| !c.unique_id.contains("a1b2c3d4e5f6")));
}

#[test]
fn the_threat_state_is_what_a_glance_should_tell() {
    let mut s = protected();
    assert_eq!(threat(&s), "protected");
    s.path.queue = Some(QueueRule {
        backend: "nftables".into(),
        queues: (0, 1),
        bypass: true,
        packets: 0,
    });
    s.path.held = vec![0];
    s.state = State::Degraded;
    assert_eq!(threat(&s), "bypassed", "a fail-open queue nobody reads");
    s.path.held = vec![0, 1];
    assert_eq!(threat(&s), "degraded");
    s.alerts.high_unacked = 1;
    assert_eq!(
        threat(&s),
        "alert",
        "an incident to acknowledge comes first"
    );
    s.state = State::Starting;
    assert_eq!(threat(&s), "starting");
    for st in [protected(), s] {
        assert!(THREAT_STATES.contains(&threat(&st)));
    }
}

#[test]
fn the_state_names_the_last_incident_and_its_misp_event() {
    let mut s = protected();
    let (m, a) = state(&s, |_, _| None);
    assert_eq!(
        (m.last_incident.as_str(), m.indicators, m.suricata),
        ("none", 10, "ON")
    );
    assert_eq!(a, IncidentAttributes::default());
    assert_eq!((m.devices, m.quarantined), (None, None), "inventory off");
    let body = serde_json::to_value(&m).unwrap();
    assert!(body.get("devices").is_none() && body.get("quarantined").is_none());
    s.devices.enabled = true;
    s.devices.known = 12;
    s.devices.quarantined = vec![Default::default()];
    let (m, _) = state(&s, |_, _| None);
    assert_eq!((m.devices, m.quarantined), (Some(12), Some(1)));
    s.alerts.recent = vec![
        incident("old.example", 100, false),
        incident("c2.lab-evil.test", 200, true),
    ];
    s.alerts.high_open = 1;
    s.alerts.blocked_today = 5;
    let (m, a) = state(&s, |source, id| {
        Some(format!("https://{source}.example/events/view/{id}"))
    });
    assert_eq!(m.last_incident, "blocked 198.18.1.2 ↔ c2.lab-evil.test");
    assert_eq!((m.open_high, m.blocked_today), (1, 5));
    assert_eq!(
        a.misp_event.as_deref(),
        Some("https://misp.example/events/view/42")
    );
    assert_eq!(a.indicator.as_deref(), Some("c2.lab-evil.test"));
    assert_eq!(a.device.as_deref(), Some("198.18.1.2"));
}

#[test]
fn a_button_press_is_ack_or_resync_and_nothing_else() {
    assert_eq!(command(b"ack"), Some(Command::Ack));
    assert_eq!(command(b"resync"), Some(Command::Resync));
    for other in [&b"ACK"[..], b"reset", b"", b"ack\n"] {
        assert_eq!(command(other), None);
    }
}

#[test]
fn the_node_id_is_made_once_and_kept() {
    let dir = tempfile::tempdir().unwrap();
    let first = node_id(dir.path()).unwrap();
    assert_eq!(first.len(), 12);
    assert_eq!(node_id(dir.path()).unwrap(), first);
    std::fs::write(node_id_path(dir.path()), "../bad id").unwrap();
    assert_ne!(node_id(dir.path()).unwrap(), "../bad id");
}

// ---------------------------------------------------------------- a real broker

/// mosquitto (Debian's) on a free port of 127.0.0.1, anonymous, for one test.
struct Mosquitto {
    child: std::process::Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Mosquitto {
    fn start() -> Option<Mosquitto> {
        Mosquitto::start_with(|_| String::new())
    }

    /// With more listener settings, written by `extra` into the broker's directory.
    fn start_with(extra: impl Fn(&Path) -> String) -> Option<Mosquitto> {
        let dir = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let conf = dir.path().join("mosquitto.conf");
        std::fs::write(
            &conf,
            format!(
                // As root it would become `mosquitto`, who cannot read the test's key.
                "user root\nlistener {port} 127.0.0.1\n{}allow_anonymous true\npersistence false\n",
                extra(dir.path())
            ),
        )
        .unwrap();
        let child = match std::process::Command::new("mosquitto")
            .arg("-c")
            .arg(&conf)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
        {
            Ok(c) => c,
            Err(e) if std::env::var_os("HOMEWARDEN_REQUIRE_PEERS").is_none() => {
                eprintln!("mosquitto not run: {e}");
                return None;
            }
            Err(e) => panic!("mosquitto: {e} (scripts/install-deps.sh installs it)"),
        };
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Some(Mosquitto {
                    child,
                    port,
                    _dir: dir,
                });
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("mosquitto did not listen on {port}");
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A subscriber that keeps the last message of every topic it heard.
struct Watcher {
    client: AsyncClient,
    seen: tokio::sync::watch::Receiver<BTreeMap<String, Vec<u8>>>,
}

impl Watcher {
    async fn start(port: u16) -> Watcher {
        let (client, mut events) =
            AsyncClient::new(MqttOptions::new("watcher", "127.0.0.1", port), 64);
        client
            .subscribe("homeassistant/#", QoS::AtLeastOnce)
            .await
            .unwrap();
        client
            .subscribe("homewarden/#", QoS::AtLeastOnce)
            .await
            .unwrap();
        let (tx, seen) = tokio::sync::watch::channel(BTreeMap::new());
        tokio::spawn(async move {
            while let Ok(ev) = events.poll().await {
                if let Event::Incoming(Packet::Publish(p)) = ev {
                    tx.send_modify(|m| {
                        m.insert(p.topic.clone(), p.payload.to_vec());
                    });
                }
            }
        });
        Watcher { client, seen }
    }

    /// Waits (up to 10 s) until `topic` holds a message `ok` accepts.
    async fn until(&mut self, topic: &str, ok: impl Fn(&[u8]) -> bool) -> Vec<u8> {
        let got = tokio::time::timeout(
            Duration::from_secs(10),
            self.seen.wait_for(|m| m.get(topic).is_some_and(|v| ok(v))),
        )
        .await
        .ok()
        .and_then(Result::ok)
        .map(|m| m[topic].clone());
        match got {
            Some(v) => v,
            None => {
                let last = self
                    .seen
                    .borrow()
                    .get(topic)
                    .map(|v| String::from_utf8_lossy(v).into_owned());
                panic!("nothing right on {topic}: {last:?}")
            }
        }
    }
}

fn json(b: &[u8]) -> serde_json::Value {
    serde_json::from_slice(b).unwrap_or(serde_json::Value::Null)
}

#[tokio::test]
async fn a_real_broker_carries_the_device_its_state_and_the_buttons() {
    let Some(broker) = Mosquitto::start() else {
        return;
    };
    let state_dir = tempfile::tempdir().unwrap();
    let cfg: MqttConfig = serde_yaml_ng::from_str(&format!(
        "{{url: 'mqtt://127.0.0.1:{}', buttons: true}}",
        broker.port
    ))
    .unwrap();
    let settings = |devices| {
        Settings::new(
            &cfg,
            None,
            state_dir.path(),
            HashMap::from([("misp".into(), "https://misp.lab".into())]),
        )
        .unwrap()
        .unwrap()
        .with_devices(devices)
    };
    let s = settings(true);
    let t = s.topics().clone();
    let mut watcher = Watcher::start(broker.port).await;
    let mut home = protected();
    home.devices.enabled = true;
    home.devices.known = 3;
    home.devices.quarantined = vec![Default::default()];
    let (status_tx, status_rx) = watch::channel(home);
    let (req_tx, mut req_rx) = mpsc::channel::<ButtonAction>(4);
    let stopper = crate::daemon::shutdown::Stopper::default();
    let (link_tx, mut link) = watch::channel(None);
    let task = tokio::spawn(run(s, status_rx, req_tx.clone(), link_tx, stopper.handle()));

    // Announced: ten retained configs (the device sensors too) that pass the
    // documented rules, online, the state.
    watcher.until(&t.availability(), |v| v == b"online").await;
    let shown = link
        .wait_for(|l| l.as_ref().is_some_and(|l| l.connected))
        .await
        .unwrap()
        .clone()
        .unwrap();
    assert_eq!(shown.broker, format!("mqtt://127.0.0.1:{}", broker.port));
    assert_eq!((shown.node.as_str(), shown.error), (t.node.as_str(), None));
    let mut configs = Vec::new();
    let all = Optional {
        devices: true,
        buttons: true,
    };
    for (topic, want) in discovery::configs(&t, "x", "y", all) {
        let got = json(&watcher.until(&topic, |v| !v.is_empty()).await);
        assert_eq!(got["unique_id"], want.unique_id);
        configs.push((
            topic,
            serde_json::from_value::<serde_json::Value>(got).unwrap(),
        ));
    }
    assert_eq!(configs.len(), 10);
    let state = json(
        &watcher
            .until(&t.state(), |v| json(v)["threat"] == "protected")
            .await,
    );
    assert_eq!(state["suricata"], "ON");
    assert_eq!(state["indicators"], 10);
    assert_eq!(
        (&state["devices"], &state["quarantined"]),
        (&3.into(), &1.into())
    );
    // Every sensor reads a key the state message has.
    for (_, cfg) in &configs {
        if let Some(template) = cfg["value_template"].as_str() {
            let key = template
                .trim_start_matches("{{ value_json.")
                .trim_end_matches(" }}");
            assert!(state.get(key).is_some(), "{template} in {state}");
        }
    }

    // A C2 is hit: the state says alert, the last incident names it.
    status_tx.send_modify(|s| {
        s.alerts.high_unacked = 1;
        s.alerts.high_open = 1;
        s.alerts.recent = vec![incident("c2.lab-evil.test", 1_800_000_000, true)];
    });
    watcher
        .until(&t.state(), |v| json(v)["threat"] == "alert")
        .await;
    let attrs = json(
        &watcher
            .until(&t.last_incident(), |v| {
                json(v)["remote"] == "c2.lab-evil.test"
            })
            .await,
    );
    assert_eq!(attrs["misp_event"], "https://misp.lab/events/view/42");

    // The buttons, pressed in Home Assistant: the agent gets the panel's requests.
    for (payload, want) in [("ack", ButtonAction::Ack), ("resync", ButtonAction::Resync)] {
        watcher
            .client
            .publish(t.command(), QoS::AtLeastOnce, false, payload)
            .await
            .unwrap();
        let got = tokio::time::timeout(Duration::from_secs(10), req_rx.recv())
            .await
            .unwrap();
        assert_eq!(got, Some(want));
    }

    // Stopped: offline, said by the agent itself.
    stopper.stop().await;
    task.await.unwrap();
    watcher.until(&t.availability(), |v| v == b"offline").await;

    // Started again (same state directory) with the inventory turned off:
    // the same node and unique ids, the device sensors removed (an empty
    // retained config); then the connection dies without a goodbye: the
    // broker's last will says offline.
    let s = settings(false);
    assert_eq!(s.topics(), &t, "the node id survives a restart");
    let stopper = crate::daemon::shutdown::Stopper::default();
    let (link_tx, _link) = watch::channel(None);
    let task = tokio::spawn(run(
        s,
        status_tx.subscribe(),
        req_tx,
        link_tx,
        stopper.handle(),
    ));
    watcher.until(&t.availability(), |v| v == b"online").await;
    for topic in discovery::retired(
        &t,
        Optional {
            devices: false,
            buttons: true,
        },
    ) {
        watcher.until(&topic, <[u8]>::is_empty).await;
    }
    task.abort();
    let _ = task.await;
    watcher.until(&t.availability(), |v| v == b"offline").await;
}

#[tokio::test]
async fn a_retained_command_or_one_without_mqtt_buttons_presses_nothing() {
    let Some(broker) = Mosquitto::start() else {
        return;
    };
    let state_dir = tempfile::tempdir().unwrap();
    let settings = |buttons: bool| {
        let cfg: MqttConfig = serde_yaml_ng::from_str(&format!(
            "{{url: 'mqtt://127.0.0.1:{}', buttons: {buttons}}}",
            broker.port
        ))
        .unwrap();
        Settings::new(&cfg, None, state_dir.path(), HashMap::new())
            .unwrap()
            .unwrap()
    };
    let t = settings(true).topics().clone();
    let mut watcher = Watcher::start(broker.port).await;
    // Somebody who may publish on the broker leaves an `ack` there, retained.
    watcher
        .client
        .publish(t.command(), QoS::AtLeastOnce, true, "ack")
        .await
        .unwrap();
    watcher.until(&t.command(), |v| v == b"ack").await;
    let (status_tx, _) = watch::channel(protected());
    let (req_tx, mut req_rx) = mpsc::channel::<ButtonAction>(4);
    let start = |buttons: bool| {
        let stopper = crate::daemon::shutdown::Stopper::default();
        let (link_tx, _) = watch::channel(None);
        let task = tokio::spawn(run(
            settings(buttons),
            status_tx.subscribe(),
            req_tx.clone(),
            link_tx,
            stopper.handle(),
        ));
        (stopper, task)
    };
    let nothing_pressed = |rx: &mut mpsc::Receiver<ButtonAction>| {
        let got = rx.try_recv();
        assert!(got.is_err(), "pressed: {got:?}");
    };

    // Connected, subscribed (the state is out), and again after a reconnect:
    // the retained `ack` is delivered each time and pressed neither time.
    for _ in 0..2 {
        let (stopper, task) = start(true);
        watcher.until(&t.availability(), |v| v == b"online").await;
        watcher.until(&t.state(), |v| !v.is_empty()).await;
        tokio::time::sleep(Duration::from_secs(2)).await;
        nothing_pressed(&mut req_rx);
        // A live press is heard: the subscription was there.
        watcher
            .client
            .publish(t.command(), QoS::AtLeastOnce, false, "resync")
            .await
            .unwrap();
        let got = tokio::time::timeout(Duration::from_secs(10), req_rx.recv()).await;
        assert_eq!(got.ok().flatten(), Some(ButtonAction::Resync));
        stopper.stop().await;
        task.await.unwrap();
        watcher.until(&t.availability(), |v| v == b"offline").await;
    }

    // Without mqtt.buttons: the buttons are taken out of Home Assistant and
    // a live press does nothing.
    let (stopper, task) = start(false);
    watcher.until(&t.availability(), |v| v == b"online").await;
    for topic in discovery::retired(&t, Optional::default()) {
        watcher.until(&topic, <[u8]>::is_empty).await;
    }
    watcher
        .client
        .publish(t.command(), QoS::AtLeastOnce, false, "ack")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    nothing_pressed(&mut req_rx);
    stopper.stop().await;
    task.await.unwrap();
}

/// A CA and a certificate for 127.0.0.1 it signed (openssl, as any admin would make them).
fn make_certs(dir: &Path) -> String {
    let run = |args: &[&str]| {
        let out = std::process::Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("openssl");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    run(&[
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/CN=homewarden test CA",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
    ]);
    run(&[
        "req",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-subj",
        "/CN=127.0.0.1",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
    ]);
    std::fs::write(dir.join("ext.cnf"), "subjectAltName=IP:127.0.0.1\n").unwrap();
    run(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        "ext.cnf",
        "-out",
        "server.pem",
    ]);
    format!(
        "certfile {0}/server.pem\nkeyfile {0}/server.key\n",
        dir.display()
    )
}

#[tokio::test]
async fn mqtts_goes_through_our_own_tls_and_refuses_a_broker_it_cannot_verify() {
    let Some(broker) = Mosquitto::start_with(make_certs) else {
        return;
    };
    let ca = broker._dir.path().join("ca.pem");
    let state_dir = tempfile::tempdir().unwrap();
    let url = format!("url: mqtts://127.0.0.1:{}", broker.port);
    let (status_tx, _) = watch::channel(protected());
    let (req_tx, _req_rx) = mpsc::channel::<ButtonAction>(4);

    // Without the broker's CA (the OS store only): never connected, never online.
    let cfg: MqttConfig = serde_yaml_ng::from_str(&url).unwrap();
    let s = Settings::new(&cfg, None, state_dir.path(), HashMap::new())
        .unwrap()
        .unwrap();
    let t = s.topics().clone();
    let stopper = crate::daemon::shutdown::Stopper::default();
    let (link_tx, link) = watch::channel(None);
    let task = tokio::spawn(run(
        s,
        status_tx.subscribe(),
        req_tx.clone(),
        link_tx,
        stopper.handle(),
    ));
    tokio::time::sleep(Duration::from_secs(2)).await;
    stopper.stop().await;
    task.await.unwrap();
    // Status says so: not connected, and why (the certificate, not a closed socket).
    let shown = link.borrow().clone().unwrap();
    let why = shown.error.clone().unwrap_or_default();
    assert!(
        !shown.connected && why.contains("TLS to 127.0.0.1"),
        "{shown:?}"
    );
    assert!(why.contains("certificate"), "{shown:?}");
    assert!(shown.broker.starts_with("mqtts://"), "{shown:?}");
    let sub = |args: Vec<String>| {
        let mut c = tokio::process::Command::new("mosquitto_sub");
        c.args([
            "-h",
            "127.0.0.1",
            "-p",
            &broker.port.to_string(),
            "--cafile",
        ])
        .arg(&ca)
        .args(args);
        async move { c.output().await }
    };
    let retained = |topic: &str| {
        let args = ["-t", topic, "--retained-only", "-C", "1", "-W", "2"];
        sub(args.map(String::from).to_vec())
    };
    if let Ok(out) = retained(&t.availability()).await {
        assert!(out.stdout.is_empty(), "it never connected, yet: {out:?}");
    }

    // With it: connected over TLS, the device announced (read back over TLS too,
    // by a client that trusts the same CA).
    let cfg: MqttConfig =
        serde_yaml_ng::from_str(&format!("{{{url}, ca_file: {}}}", ca.display())).unwrap();
    let s = Settings::new(&cfg, None, state_dir.path(), HashMap::new())
        .unwrap()
        .unwrap();
    let stopper = crate::daemon::shutdown::Stopper::default();
    let (link_tx, _link) = watch::channel(None);
    let task = tokio::spawn(run(
        s,
        status_tx.subscribe(),
        req_tx,
        link_tx,
        stopper.handle(),
    ));
    let args = ["-t", &t.availability(), "-C", "1", "-W", "10"];
    let reader = sub(args.map(String::from).to_vec()).await;
    stopper.stop().await;
    task.await.unwrap();
    match reader {
        Ok(out) => assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            "online",
            "{out:?}"
        ),
        Err(e) if std::env::var_os("HOMEWARDEN_REQUIRE_PEERS").is_none() => {
            eprintln!("mosquitto_sub not run: {e}")
        }
        Err(e) => panic!("mosquitto_sub: {e}"),
    }
}
