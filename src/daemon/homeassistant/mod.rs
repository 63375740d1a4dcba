//! Home Assistant over MQTT: the appliance as one device (threat state,
//! incidents, Suricata, two buttons), through Home Assistant's MQTT
//! discovery. A task of its own, like the panel: it reads the published
//! status and turns a button press into the same request the panel's button
//! makes. A broker that is down or slow holds up nothing else: publishing
//! never waits (a state it could not queue goes with the next change) and
//! the connection is retried with backoff.
//!
//! TLS (`mqtts://`) is ours, not rumqttc's: its TLS features pull in a
//! rustls-webpki with open advisories. rumqttc speaks plain MQTT over a
//! private Unix socket to a small bridge here, which holds the TLS session
//! (rustls with ring, like the rest of the agent) to the broker.

pub mod discovery;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rumqttc::{AsyncClient, Event, LastWill, MqttOptions, Packet, QoS, Transport};
use tokio::net::{TcpStream, UnixListener};
use tokio::sync::{mpsc, watch};

use crate::appliance::panel::button::Action as ButtonAction;
use crate::config::homeassistant::Broker;
use crate::config::MqttConfig;
use crate::daemon::agent::Status;
use crate::daemon::shutdown::Stop;
use discovery::{Command, Topics, OFFLINE, ONLINE};

/// The file under the state directory that keeps this appliance's node id.
const NODE_ID_FILE: &str = "homeassistant-node-id";
/// The TLS bridge's socket, under the state directory.
const BRIDGE_SOCKET: &str = "mqtt-tls.sock";
/// Longest wait between two connection attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// Why the integration cannot start.
#[derive(Debug, thiserror::Error)]
#[error("mqtt: {0}")]
pub struct MqttError(String);

/// The connection to the broker, as `homewarden status` shows it.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Link {
    /// `host:port` (`mqtts://` when TLS).
    pub broker: String,
    /// The node id (Home Assistant's entities are named from it).
    pub node: String,
    /// Connected now.
    pub connected: bool,
    /// When the connection last came up or went down (unix seconds).
    pub since: Option<u64>,
    /// Why it is down, if it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Everything the task needs, built once at start.
pub struct Settings {
    broker: Broker,
    user: Option<String>,
    password: Option<String>,
    /// mqtts: the TLS client config and the bridge's socket.
    tls: Option<(Arc<rustls::ClientConfig>, PathBuf)>,
    topics: Topics,
    appliance: String,
    /// MISP sources' base URLs, for the last incident's event page.
    misp: HashMap<String, String>,
    /// The optional entities: the device sensors, the buttons.
    optional: discovery::Optional,
}

impl Settings {
    /// From the config (on: `mqtt.url` set), the password, the state
    /// directory (where the node id is kept) and the MISP sources' URLs.
    pub fn new(
        cfg: &MqttConfig,
        password: Option<String>,
        state_dir: &Path,
        misp: HashMap<String, String>,
    ) -> Result<Option<Settings>, MqttError> {
        let broker = match cfg.broker() {
            Ok(Some(b)) => b,
            Ok(None) => return Ok(None),
            Err((k, m)) => return Err(MqttError(format!("{k}: {m}"))),
        };
        if let (Some(name), None) = (&cfg.password_env, &password) {
            return Err(MqttError(format!(
                "mqtt.password_env: the secret {name} is not set"
            )));
        }
        let tls = broker
            .tls
            .then(|| tls(cfg.ca_file.as_deref()))
            .transpose()?
            .map(|c| (c, state_dir.join(BRIDGE_SOCKET)));
        let node = node_id(state_dir)
            .map_err(|e| MqttError(format!("{}: {e}", state_dir.join(NODE_ID_FILE).display())))?;
        Ok(Some(Settings {
            broker,
            user: cfg.user.clone(),
            password,
            tls,
            topics: Topics::new(&cfg.discovery_prefix, &cfg.base_topic, &node),
            appliance: crate::respond::mail::appliance_name(),
            misp,
            optional: discovery::Optional {
                devices: false,
                buttons: cfg.buttons,
            },
        }))
    }

    /// With the device inventory kept (`devices.enabled`), its two sensors.
    pub fn with_devices(mut self, devices: bool) -> Settings {
        self.optional.devices = devices;
        self
    }

    /// The topics (for tests and the log).
    pub fn topics(&self) -> &Topics {
        &self.topics
    }
}

/// This appliance's node id: made once (random), kept in the state
/// directory, so Home Assistant's entities survive restarts and renames.
pub fn node_id(state_dir: &Path) -> std::io::Result<String> {
    let path = state_dir.join(NODE_ID_FILE);
    match std::fs::read_to_string(&path) {
        Ok(s) if valid_node(s.trim()) => return Ok(s.trim().to_string()),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let uuid = std::fs::read_to_string("/proc/sys/kernel/random/uuid")?;
    let id: String = uuid
        .chars()
        .filter(char::is_ascii_hexdigit)
        .take(12)
        .collect();
    crate::fsutil::write_atomic(&path, id.as_bytes())?;
    Ok(id)
}

fn valid_node(s: &str) -> bool {
    !s.is_empty() && s.len() <= 32 && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// TLS with rustls (ring, like the rest of the agent): the roots from
/// `ca_file`, or the OS store.
fn tls(ca_file: Option<&Path>) -> Result<Arc<rustls::ClientConfig>, MqttError> {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    match ca_file {
        Some(p) => {
            let certs = rustls::pki_types::CertificateDer::pem_file_iter(p)
                .and_then(|it| it.collect::<Result<Vec<_>, _>>())
                .map_err(|e| MqttError(format!("mqtt.ca_file {}: {e}", p.display())))?;
            let (added, _) = roots.add_parsable_certificates(certs);
            if added == 0 {
                return Err(MqttError(format!(
                    "mqtt.ca_file {}: no certificate in it",
                    p.display()
                )));
            }
        }
        None => {
            roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| MqttError(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(cfg))
}

/// Carries each connection rumqttc makes to the bridge's socket over TLS to
/// the broker (the certificate checked against `host`).
/// Its last failure (TCP or TLS) is kept in `failed` for status: rumqttc
/// only sees the bridge's socket close.
async fn tls_bridge(
    listener: UnixListener,
    config: Arc<rustls::ClientConfig>,
    broker: Broker,
    failed: BridgeError,
) {
    let connector = tokio_rustls::TlsConnector::from(config);
    let Ok(name) = rustls::pki_types::ServerName::try_from(broker.host.clone()) else {
        let e = format!("{:?} is not a TLS server name", broker.host);
        tracing::error!("mqtt: {e}");
        return failed.set(Some(e));
    };
    loop {
        let Ok((mut plain, _)) = listener.accept().await else {
            return;
        };
        let (connector, name, broker) = (connector.clone(), name.clone(), broker.clone());
        let failed = failed.clone();
        tokio::spawn(async move {
            let at = format!("{}:{}", broker.host, broker.port);
            let tcp = match TcpStream::connect((broker.host.as_str(), broker.port)).await {
                Ok(t) => t,
                Err(e) => {
                    tracing::debug!("mqtt: {at}: {e}");
                    return failed.set(Some(format!("{at}: {e}")));
                }
            };
            let mut tls = match connector.connect(name, tcp).await {
                Ok(t) => t,
                // The one place a bad certificate shows: say it, in the log and in status.
                Err(e) => {
                    tracing::warn!("mqtt: TLS to {at}: {e}");
                    return failed.set(Some(format!("TLS to {at}: {e}")));
                }
            };
            failed.set(None);
            let _ = tokio::io::copy_bidirectional(&mut plain, &mut tls).await;
        });
    }
}

/// The TLS bridge's last failure, shared with the connection's loop.
#[derive(Clone, Default)]
struct BridgeError(Arc<std::sync::Mutex<Option<String>>>);

impl BridgeError {
    /// Records the last attempt's failure (`None`: it went through).
    fn set(&self, e: Option<String>) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = e;
    }

    /// The last attempt's failure.
    fn get(&self) -> Option<String> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

fn options(s: &Settings) -> MqttOptions {
    let id = format!("homewarden-{}", s.topics.node);
    let mut o = match &s.tls {
        Some((_, socket)) => {
            let mut o = MqttOptions::new(id, socket.to_string_lossy(), 0);
            o.set_transport(Transport::Unix);
            o
        }
        None => MqttOptions::new(id, s.broker.host.clone(), s.broker.port),
    };
    o.set_keep_alive(Duration::from_secs(30));
    o.set_clean_session(true);
    // The broker says "offline" for us when the connection drops unannounced.
    o.set_last_will(LastWill::new(
        s.topics.availability(),
        OFFLINE,
        QoS::AtLeastOnce,
        true,
    ));
    if let Some(u) = &s.user {
        o.set_credentials(u.clone(), s.password.clone().unwrap_or_default());
    }
    o
}

/// What was last published, so only a change is sent again.
type Published = Option<(discovery::StateMessage, discovery::IncidentAttributes)>;

struct Client {
    client: AsyncClient,
    topics: Topics,
    /// The optional entities announced (the others retired).
    optional: discovery::Optional,
}

impl Client {
    /// Queues a message without waiting; false if the queue was full.
    fn send(&self, topic: String, payload: Vec<u8>, retain: bool) -> bool {
        match self
            .client
            .try_publish(topic, QoS::AtLeastOnce, retain, payload)
        {
            Ok(()) => true,
            Err(e) => {
                tracing::debug!("mqtt: not queued: {e}");
                false
            }
        }
    }

    /// The discovery configs (retained), availability, the subscriptions.
    fn announce(&self, appliance: &str) {
        let version = env!("CARGO_PKG_VERSION");
        for (topic, cfg) in discovery::configs(&self.topics, appliance, version, self.optional) {
            match serde_json::to_vec(&cfg) {
                Ok(body) => {
                    self.send(topic, body, true);
                }
                Err(e) => tracing::error!("mqtt: {e}"),
            }
        }
        for topic in discovery::retired(&self.topics, self.optional) {
            self.send(topic, Vec::new(), true);
        }
        self.send(self.topics.availability(), ONLINE.into(), true);
        // Without buttons nothing is heard on the command topic at all.
        let command = self.optional.buttons.then(|| self.topics.command());
        for topic in command.into_iter().chain([self.topics.ha_status()]) {
            if let Err(e) = self.client.try_subscribe(topic, QoS::AtLeastOnce) {
                tracing::warn!("mqtt: cannot subscribe: {e}");
            }
        }
    }

    /// The state and the last incident, if either changed since `last`.
    fn state(&self, s: &Settings, status: &Status, last: &mut Published) {
        let page = |source: &str, id: u64| {
            let base = s.misp.get(source)?;
            Some(format!("{}/events/view/{id}", base.trim_end_matches('/')))
        };
        let now = discovery::state(status, page);
        if last.as_ref() == Some(&now) {
            return;
        }
        let (msg, attrs) = &now;
        let (Ok(m), Ok(a)) = (serde_json::to_vec(msg), serde_json::to_vec(attrs)) else {
            return;
        };
        let sent = self.send(self.topics.state(), m, true)
            && self.send(self.topics.last_incident(), a, true);
        // Not queued: try again with the next change of the status.
        *last = sent.then_some(now);
    }
}

/// Runs until `stop`: connects (again and again), announces the device,
/// publishes each change of the status, hands presses to the agent.
pub async fn run<R: From<ButtonAction> + Send + 'static>(
    s: Settings,
    mut status: watch::Receiver<Status>,
    requests: mpsc::Sender<R>,
    link_tx: watch::Sender<Option<Link>>,
    mut stop: Stop,
) {
    let scheme = if s.tls.is_some() { "mqtts" } else { "mqtt" };
    let mut shown = Link {
        broker: format!("{scheme}://{}:{}", s.broker.host, s.broker.port),
        node: s.topics.node.clone(),
        ..Link::default()
    };
    link_tx.send_replace(Some(shown.clone()));
    let mut show = |connected: bool, error: Option<String>| {
        if shown.connected != connected || (!connected && shown.error.is_none()) {
            shown.since = Some(crate::intel::unix_now());
        }
        shown.connected = connected;
        shown.error = error;
        link_tx.send_replace(Some(shown.clone()));
    };
    let bridge_error = BridgeError::default();
    let _bridge = match &s.tls {
        Some((config, socket)) => {
            let _ = std::fs::remove_file(socket);
            match UnixListener::bind(socket) {
                Ok(l) => Some(crate::daemon::AbortOnDrop(tokio::spawn(tls_bridge(
                    l,
                    config.clone(),
                    s.broker.clone(),
                    bridge_error.clone(),
                )))),
                Err(e) => {
                    tracing::error!("mqtt: {}: {e}; Home Assistant is off", socket.display());
                    return;
                }
            }
        }
        None => None,
    };
    let (client, mut events) = AsyncClient::new(options(&s), 64);
    let mqtt = Client {
        client,
        topics: s.topics.clone(),
        optional: s.optional,
    };
    let mut published: Published = None;
    let mut connected = false;
    let mut backoff = Duration::from_secs(1);
    tracing::info!(
        broker = %format!("{}:{}", s.broker.host, s.broker.port),
        node = %s.topics.node,
        "home assistant over mqtt"
    );
    loop {
        tokio::select! {
            _ = stop.wait() => break,
            ev = events.poll() => match ev {
                Ok(Event::Incoming(Packet::ConnAck(_))) => {
                    tracing::info!("mqtt: connected");
                    connected = true;
                    show(true, None);
                    backoff = Duration::from_secs(1);
                    mqtt.announce(&s.appliance);
                    published = None;
                    mqtt.state(&s, &status.borrow_and_update(), &mut published);
                }
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    if p.topic == mqtt.topics.command() && (p.retain || !mqtt.optional.buttons) {
                        // A retained command is one somebody left on the
                        // broker: it would be pressed again at every
                        // reconnect. A press counts only when it is made.
                        tracing::warn!(
                            retained = p.retain,
                            "mqtt: a command on {} ignored (only live presses, with mqtt.buttons, count)",
                            p.topic
                        );
                    } else if p.topic == mqtt.topics.command() {
                        match discovery::command(&p.payload) {
                            Some(c) => {
                                let action = match c {
                                    Command::Ack => ButtonAction::Ack,
                                    Command::Resync => ButtonAction::Resync,
                                };
                                tracing::info!(?action, "home assistant button");
                                let requests = requests.clone();
                                // Not awaited here: the agent may be busy, the connection may not wait.
                                tokio::spawn(async move { requests.send(R::from(action)).await });
                            }
                            None => tracing::warn!("mqtt: unknown command on {}", p.topic),
                        }
                    } else if p.topic == mqtt.topics.ha_status() && &p.payload[..] == b"online" {
                        // Home Assistant restarted: the configs again, as its docs ask.
                        mqtt.announce(&s.appliance);
                        published = None;
                        mqtt.state(&s, &status.borrow(), &mut published);
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    if connected {
                        tracing::warn!("mqtt: connection lost: {e}");
                    } else {
                        tracing::debug!("mqtt: cannot connect: {e}");
                    }
                    connected = false;
                    // Over TLS the bridge knows why (a certificate, say); rumqttc saw a closed socket.
                    let why = bridge_error.get().unwrap_or_else(|| e.to_string());
                    show(false, Some(crate::respond::mail::one_line(&why, 200)));
                    tokio::select! {
                        _ = stop.wait() => break,
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            },
            changed = status.changed(), if connected => {
                if changed.is_err() {
                    break;
                }
                mqtt.state(&s, &status.borrow_and_update(), &mut published);
            }
        }
    }
    // Say goodbye properly: "offline", then a clean disconnect (no last will).
    if connected {
        mqtt.send(mqtt.topics.availability(), OFFLINE.into(), true);
        let _ = mqtt.client.try_disconnect();
        let flush = async {
            while let Ok(ev) = events.poll().await {
                if matches!(ev, Event::Outgoing(rumqttc::Outgoing::Disconnect)) {
                    break;
                }
            }
        };
        let _ = tokio::time::timeout(Duration::from_secs(2), flush).await;
    }
}

/// Where the node id lives (for the README and tests).
pub fn node_id_path(state_dir: &Path) -> PathBuf {
    state_dir.join(NODE_ID_FILE)
}

#[cfg(test)]
mod tests;
