//! The control socket: `homewarden status` and `homewarden sync` talk to the
//! running daemon through it, one JSON request and one JSON reply per line.

use std::collections::HashMap;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{mpsc, oneshot, watch};

use crate::daemon::agent::{Request, Status};
use crate::daemon::shutdown::Stop;
use crate::daemon::{devices, incidents, signatures};
use crate::intel::ioc::Ioc;
use crate::intel::set::Index;

pub mod access;
pub mod reply;

use access::{Access, Peer, Right};

/// A request on the control socket.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case")]
pub enum Command {
    /// The daemon's status.
    Status,
    /// Pull every source now; the reply comes when the sync is done.
    Sync {
        /// Sources whose pull is taken however much it shrinks.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        accept_shrink: Vec<String>,
    },
    /// Acknowledge open high-severity incidents (what a short button press does).
    Ack,
    /// Simulate a button press of this many milliseconds on the panel.
    Press {
        /// How long the button is held.
        ms: u64,
    },
    /// Trace a value back to the indicators and MISP attributes behind it.
    Lookup {
        /// An address, domain or hash, as seen in an alert.
        value: String,
    },
    /// The owner's questions and corrections (explain, allow, unallow, blocks).
    Owner(OwnerCommand),
    /// Run the self-test now.
    Selftest,
    /// Every device the inventory knows.
    Devices,
    /// Name, quarantine or release a device.
    Device(DeviceCommand),
    /// The signature ruleset: its status, or an update now.
    Signatures(SignaturesCommand),
}

/// What the owner asks of the signature ruleset.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "act", rename_all = "snake_case")]
pub enum SignaturesCommand {
    /// The profile and why, the ruleset in force, the last attempt.
    Status,
    /// Fetch, cut, test and take the rulesets now; the reply comes when done.
    Update {
        /// A ruleset for this update alone: `etopen`, an https URL or a local file.
        #[serde(default)]
        source: Option<String>,
    },
    /// The owner's word on a signature or a category; the reply comes once
    /// the kept ruleset is cut again and reloaded.
    Set {
        /// A sid or a category.
        target: String,
        /// Drop, alert or disable; none takes the word back.
        #[serde(default)]
        setting: Option<crate::signatures::policy::Setting>,
    },
    /// Lift a signature for one device or destination (`lifted: false`
    /// takes that back); the reply comes once the ruleset is reloaded.
    Lift {
        /// The signature id.
        sid: u64,
        /// The device's or destination's address or network.
        address: String,
        /// Lifted, or no longer.
        lifted: bool,
    },
    /// What one signature does here and why.
    Explain {
        /// Its id.
        sid: u64,
    },
}

/// What the owner does to one device.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "act", rename_all = "snake_case")]
pub enum DeviceCommand {
    /// Give it a name (none: take the name away).
    Name {
        /// Name, MAC or address.
        device: String,
        /// The new name.
        #[serde(default)]
        name: Option<String>,
    },
    /// Let it reach only the Pi's DHCP and DNS.
    Quarantine {
        /// Name, MAC or address.
        device: String,
        /// For how long (seconds); until released if absent.
        #[serde(default)]
        for_secs: Option<u64>,
        /// Why, in the owner's words.
        #[serde(default)]
        reason: Option<String>,
        /// Even a device on `enforcement.do_not_break`.
        #[serde(default)]
        force: bool,
    },
    /// Let it out of quarantine.
    Release {
        /// Name, MAC or address.
        device: String,
    },
}

impl Command {
    /// What a peer needs to be allowed this.
    pub fn right(&self) -> Right {
        match self {
            Command::Status
            | Command::Lookup { .. }
            | Command::Devices
            | Command::Signatures(SignaturesCommand::Status | SignaturesCommand::Explain { .. })
            | Command::Owner(OwnerCommand::Explain { .. } | OwnerCommand::Blocks) => Right::Read,
            Command::Sync { .. }
            | Command::Ack
            | Command::Press { .. }
            | Command::Selftest
            | Command::Device(_)
            | Command::Signatures(
                SignaturesCommand::Update { .. }
                | SignaturesCommand::Set { .. }
                | SignaturesCommand::Lift { .. },
            )
            | Command::Owner(OwnerCommand::Allow { .. } | OwnerCommand::Unallow { .. }) => {
                Right::Change
            }
        }
    }
}

/// What the owner asks of the daemon.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "owner", rename_all = "snake_case")]
pub enum OwnerCommand {
    /// Why is this value blocked (or not)?
    Explain {
        /// An address, domain, URL or hash.
        value: String,
    },
    /// Lift a value from enforcement.
    Allow {
        /// An address, network, domain or URL.
        value: String,
        /// For how long (seconds); for good if absent.
        #[serde(default)]
        for_secs: Option<u64>,
        /// Why, in the owner's words.
        #[serde(default)]
        reason: Option<String>,
        /// Take a network wider than /16 (IPv4) or /48 (IPv6).
        #[serde(default)]
        force: bool,
    },
    /// Take back an allowance.
    Unallow {
        /// The value as allowed.
        value: String,
    },
    /// What is being blocked now.
    Blocks,
}

/// The longest request line the daemon reads (a value to explain or allow,
/// a reason: far below this); a longer one ends the connection.
pub const MAX_REQUEST: usize = 16 * 1024;

/// The longest simulated button press: the longest hold that means anything
/// (factory reset) is 10 s.
pub const MAX_PRESS_MS: u64 = 60_000;

/// One request line, without its newline; `Ok(None)` at the end of the
/// stream, an error for a line over [`MAX_REQUEST`] bytes (read no further).
async fn read_request<R: AsyncBufRead + Unpin>(
    r: &mut R,
) -> std::io::Result<Option<Result<Vec<u8>, String>>> {
    let mut line = Vec::new();
    let n = r
        .take(MAX_REQUEST as u64 + 1)
        .read_until(b'\n', &mut line)
        .await?;
    if n == 0 {
        return Ok(None);
    }
    if line.last() == Some(&b'\n') {
        line.pop();
    } else if line.len() > MAX_REQUEST {
        return Ok(Some(Err(format!(
            "bad request: longer than {MAX_REQUEST} bytes"
        ))));
    }
    Ok(Some(Ok(line)))
}

/// A failure reaching the daemon.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// No daemon listens.
    #[error("{path}: no homewarden daemon answers ({message}); is `homewarden run` (homewarden.service) running?")]
    NotRunning {
        /// Socket path.
        path: String,
        /// OS error.
        message: String,
    },
    /// The socket's mode keeps this user out.
    #[error("{0}: permission denied: root may use it, and the groups under control_access in the config")]
    Denied(String),
    /// The daemon answered nonsense or nothing.
    #[error("control socket: {0}")]
    Protocol(String),
}

/// Where each request goes: to the task that owns what it asks about, so
/// that a question the agent's loop does not own never waits on it.
#[derive(Clone, Debug)]
pub struct Routes {
    /// The daemon's status (read, never asked).
    pub status: watch::Receiver<Status>,
    /// The agent's loop: sources, allowlists, Suricata, the self-test.
    pub agent: mpsc::Sender<Request>,
    /// The incidents' owner: acknowledgements.
    pub incidents: mpsc::Sender<incidents::Msg>,
    /// The devices' owner, unless the inventory is off.
    pub devices: Option<mpsc::Sender<devices::Msg>>,
    /// The signatures' owner.
    pub signatures: Option<mpsc::Sender<signatures::Msg>>,
    /// The sets in force, for tracing a value back to its sources.
    pub index: watch::Receiver<std::sync::Arc<Index>>,
}

/// Binds the socket (replacing a stale one) and serves until `stop` is
/// asked, then removes it; `access` says who may connect and what each peer
/// may ask.
pub fn serve(
    path: &Path,
    access: Access,
    routes: Routes,
    mut stop: Stop,
) -> std::io::Result<tokio::task::JoinHandle<()>> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    // A socket file left by a killed daemon would make bind fail; only remove it if
    // nobody answers on it, so two daemons never steal each other's socket.
    if path.exists() {
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::AddrInUse,
                format!("{}: another homewarden daemon is running", path.display()),
            ));
        }
        std::fs::remove_file(path)?;
    }
    let listener = UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))?;
    if let Some(gid) = access.socket_gid() {
        std::os::unix::fs::chown(path, None, Some(gid)).map_err(|e| {
            std::io::Error::new(
                e.kind(),
                format!(
                    "{}: cannot give the socket to group {gid}: {e} (the agent's user must be \
                     in that group: SupplementaryGroups= in a drop-in for homewarden.service)",
                    path.display()
                ),
            )
        })?;
    }
    let access = std::sync::Arc::new(access);
    let path = path.to_path_buf();
    Ok(tokio::spawn(async move {
        loop {
            let stream = tokio::select! {
                _ = stop.wait() => break,
                accepted = listener.accept() => match accepted {
                    Ok((stream, _)) => stream,
                    Err(_) => continue,
                },
            };
            let routes = routes.clone();
            let access = access.clone();
            tokio::spawn(async move {
                if let Err(e) = handle(stream, &access, &routes).await {
                    tracing::debug!("control client: {e}");
                }
            });
        }
        let _ = std::fs::remove_file(&path);
    }))
}

async fn handle(stream: UnixStream, access: &Access, routes: &Routes) -> std::io::Result<()> {
    let requests = &routes.agent;
    let peer = peer_of(&stream)?;
    let (r, mut w) = stream.into_split();
    let mut r = BufReader::new(r);
    while let Some(line) = read_request(&mut r).await? {
        let line = match line {
            Ok(line) => line,
            Err(e) => {
                let out = serde_json::json!({ "error": e }).to_string() + "\n";
                w.write_all(out.as_bytes()).await?;
                break;
            }
        };
        let cmd = serde_json::from_slice::<Command>(&line);
        let reply: Value = match cmd {
            Ok(cmd) if !access.allows(&peer, cmd.right()) => serde_json::json!({
                "error": format!(
                    "permission denied: {} may not {}; {} may",
                    peer.shown(),
                    if cmd.right() == Right::Read { "look" } else { "change things" },
                    if cmd.right() == Right::Read { "root and the control_access groups".to_string() } else { access.admins() },
                )
            }),
            Ok(Command::Status) => {
                serde_json::to_value(&*routes.status.borrow()).unwrap_or(Value::Null)
            }
            Ok(Command::Sync { accept_shrink }) => {
                ask(requests, |tx| Request::Sync(accept_shrink, tx), Ok).await
            }
            Ok(Command::Ack) => acknowledge(routes).await,
            Ok(Command::Press { ms }) if ms > MAX_PRESS_MS => serde_json::json!({
                "error": format!("bad request: a press of {ms} ms; at most {MAX_PRESS_MS}")
            }),
            Ok(Command::Press { ms }) => {
                forward(
                    requests,
                    Request::Press(std::time::Duration::from_millis(ms)),
                )
                .await
            }
            Ok(Command::Selftest) => ask(requests, Request::Selftest, Ok).await,
            Ok(Command::Owner(cmd)) => {
                let who = peer.shown();
                ask(requests, |tx| Request::Owner(cmd, who, tx), |r| r).await
            }
            Ok(Command::Devices) => list_devices(routes).await,
            Ok(Command::Device(cmd)) => device(routes, cmd, peer.shown()).await,
            Ok(Command::Signatures(cmd)) => signature_command(routes, cmd).await,
            Ok(Command::Lookup { value }) => match Ioc::parse_any(&value) {
                Ok(hit) => serde_json::json!({ "found": routes.index.borrow().lookup(&hit) }),
                Err(e) => serde_json::json!({ "error": e.to_string() }),
            },
            Err(e) => serde_json::json!({"error": format!("bad request: {e}")}),
        };
        let mut out = reply.to_string();
        out.push('\n');
        w.write_all(out.as_bytes()).await?;
    }
    Ok(())
}

/// The user behind a control connection, from the kernel's peer credentials
/// (a client cannot claim to be someone else); none, no answer.
fn peer_of(stream: &UnixStream) -> std::io::Result<Peer> {
    let cred = stream.peer_cred()?;
    let name = std::fs::read_to_string("/etc/passwd")
        .ok()
        .and_then(|p| crate::users::user_name(&p, cred.uid()));
    Ok(Peer {
        uid: cred.uid(),
        gid: cred.gid(),
        name,
    })
}

/// Hands a request to the agent and waits for its answer; `reply` turns the
/// answer into a result (an `Err` is sent back as the error).
async fn ask<T, V: Serialize>(
    requests: &mpsc::Sender<Request>,
    make: impl FnOnce(oneshot::Sender<T>) -> Request,
    reply: impl FnOnce(T) -> Result<V, String>,
) -> Value {
    let gone = || serde_json::json!({"error": "agent is shutting down"});
    let (tx, rx) = oneshot::channel();
    if requests.send(make(tx)).await.is_err() {
        return gone();
    }
    match rx.await.map(reply) {
        Ok(Ok(v)) => serde_json::to_value(v).unwrap_or(Value::Null),
        Ok(Err(e)) => serde_json::json!({ "error": e }),
        Err(_) => gone(),
    }
}

/// Acknowledges with the incidents' owner, then tells the agent (which puts
/// out a self-test alarm and notes it) without waiting for its loop.
async fn acknowledge(routes: &Routes) -> Value {
    let Some(n) = crate::daemon::ask(&routes.incidents, incidents::Msg::Ack).await else {
        return serde_json::json!({"error": "agent is shutting down"});
    };
    let agent = routes.agent.clone();
    tokio::spawn(async move {
        let _ = agent.send(Request::Acknowledged(n)).await;
    });
    serde_json::to_value(reply::AckReply { acknowledged: n }).unwrap_or(Value::Null)
}

/// Every device, with its incidents and blocks of the last 24 hours from
/// the incidents' owner.
async fn list_devices(routes: &Routes) -> Value {
    let Some(owner) = &routes.devices else {
        return serde_json::json!({"error": "the device inventory is off (devices.enabled: false)"});
    };
    let Some(mut list) = crate::daemon::ask(owner, devices::Msg::List).await else {
        return serde_json::json!({"error": "agent is shutting down"});
    };
    if let Some((incidents, blocked)) =
        crate::daemon::ask(&routes.incidents, incidents::Msg::PerDevice).await
    {
        let by_address = |hits: Vec<crate::alerts::hits::Recent>| -> HashMap<String, u64> {
            hits.into_iter().map(|h| (h.value, h.hits_24h)).collect()
        };
        let (incidents, blocked) = (by_address(incidents), by_address(blocked));
        let count = |of: &HashMap<String, u64>, d: &devices::DeviceView| -> u64 {
            d.device
                .addresses
                .iter()
                .filter_map(|a| of.get(&a.ip.to_string()))
                .sum()
        };
        for d in &mut list {
            d.incidents_24h = count(&incidents, d);
            d.blocked_24h = count(&blocked, d);
        }
    }
    serde_json::to_value(reply::DevicesReply { devices: list }).unwrap_or(Value::Null)
}

/// A signatures command, to their owner.
async fn signature_command(routes: &Routes, cmd: SignaturesCommand) -> Value {
    let Some(owner) = &routes.signatures else {
        return serde_json::json!({"error": "the signatures' owner does not run here"});
    };
    let answer = match cmd {
        SignaturesCommand::Status => crate::daemon::ask(owner, signatures::Msg::Status)
            .await
            .map(|s| serde_json::to_value(s).map_err(|e| e.to_string())),
        SignaturesCommand::Update { source } => {
            let source = match source
                .map(|s| crate::signatures::source::Source::parse(&s))
                .transpose()
            {
                Ok(s) => s,
                Err(e) => return serde_json::json!({ "error": format!("--source: {e}") }),
            };
            crate::daemon::ask(owner, |reply| signatures::Msg::Update { source, reply })
                .await
                .map(|r| r.and_then(|g| serde_json::to_value(g).map_err(|e| e.to_string())))
        }
        SignaturesCommand::Set { target, setting } => {
            let target = match crate::signatures::word::Target::parse(&target) {
                Ok(t) => t,
                Err(e) => return serde_json::json!({ "error": e }),
            };
            let word = crate::signatures::word::Word::Set { target, setting };
            crate::daemon::ask(owner, |reply| signatures::Msg::Set { word, reply })
                .await
                .map(|r| r.and_then(|g| serde_json::to_value(g).map_err(|e| e.to_string())))
        }
        SignaturesCommand::Lift {
            sid,
            address,
            lifted,
        } => {
            let net = match crate::signatures::word::parse_net(&address) {
                Ok(n) => n,
                Err(e) => return serde_json::json!({ "error": e }),
            };
            let word = crate::signatures::word::Word::Lift { sid, net, lifted };
            crate::daemon::ask(owner, |reply| signatures::Msg::Set { word, reply })
                .await
                .map(|r| r.and_then(|g| serde_json::to_value(g).map_err(|e| e.to_string())))
        }
        SignaturesCommand::Explain { sid } => {
            crate::daemon::ask(owner, |reply| signatures::Msg::Explain { sid, reply })
                .await
                .map(|x| serde_json::to_value(x).map_err(|e| e.to_string()))
        }
    };
    match answer {
        Some(Ok(v)) => v,
        Some(Err(e)) => serde_json::json!({ "error": e }),
        None => serde_json::json!({"error": "agent is shutting down"}),
    }
}

/// One device command, to the devices' owner.
async fn device(routes: &Routes, cmd: DeviceCommand, who: String) -> Value {
    let Some(owner) = &routes.devices else {
        return serde_json::json!({"error": "the device inventory is off (devices.enabled: false)"});
    };
    let answer = match cmd {
        DeviceCommand::Name { device, name } => {
            crate::daemon::ask(owner, |reply| devices::Msg::Name {
                device,
                name,
                reply,
            })
            .await
        }
        DeviceCommand::Quarantine {
            device,
            for_secs,
            reason,
            force,
        } => {
            crate::daemon::ask(owner, |reply| devices::Msg::Quarantine {
                device,
                for_secs,
                reason,
                force,
                by: who,
                reply,
            })
            .await
        }
        DeviceCommand::Release { device } => {
            crate::daemon::ask(owner, |reply| devices::Msg::Release { device, reply }).await
        }
    };
    match answer {
        Some(Ok(view)) => serde_json::to_value(view).unwrap_or(Value::Null),
        Some(Err(e)) => serde_json::json!({ "error": e }),
        None => serde_json::json!({"error": "agent is shutting down"}),
    }
}

/// Hands a request to the agent; the reply says only that it was taken.
async fn forward(requests: &mpsc::Sender<Request>, r: Request) -> Value {
    match requests.send(r).await {
        Ok(()) => serde_json::json!({"ok": true}),
        Err(_) => serde_json::json!({"error": "agent is shutting down"}),
    }
}

/// Sends one command to the daemon and returns its reply.
pub async fn request(path: &Path, cmd: &Command, timeout: Duration) -> Result<Value, ControlError> {
    let stream = UnixStream::connect(path).await.map_err(|e| {
        if e.kind() == std::io::ErrorKind::PermissionDenied {
            ControlError::Denied(path.display().to_string())
        } else {
            ControlError::NotRunning {
                path: path.display().to_string(),
                message: e.to_string(),
            }
        }
    })?;
    let (r, mut w) = stream.into_split();
    let mut line = serde_json::to_string(cmd).map_err(|e| ControlError::Protocol(e.to_string()))?;
    line.push('\n');
    w.write_all(line.as_bytes())
        .await
        .map_err(|e| ControlError::Protocol(e.to_string()))?;
    let mut lines = BufReader::new(r).lines();
    let reply = tokio::time::timeout(timeout, lines.next_line())
        .await
        .map_err(|_| ControlError::Protocol(format!("no reply within {timeout:?}")))?
        .map_err(|e| ControlError::Protocol(e.to_string()))?
        .ok_or_else(|| ControlError::Protocol("daemon closed the connection".into()))?;
    let v: Value =
        serde_json::from_str(&reply).map_err(|e| ControlError::Protocol(e.to_string()))?;
    if let Some(err) = v.get("error").and_then(Value::as_str) {
        return Err(ControlError::Protocol(err.to_string()));
    }
    Ok(v)
}

#[cfg(test)]
mod tests;
