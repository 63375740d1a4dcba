//! Suricata's unix command socket: a version handshake, then one JSON command
//! per line, each answered before the next is sent. One connection carries a
//! whole delta (tens of thousands of commands a second).

use std::path::Path;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

/// A failure talking to Suricata.
#[derive(Debug, thiserror::Error)]
pub enum SocketError {
    /// Nobody listens (Suricata down or starting).
    #[error("{path}: cannot connect: {message}")]
    Connect {
        /// Socket path.
        path: String,
        /// OS error.
        message: String,
    },
    /// The conversation broke or took too long.
    #[error("suricata socket: {0}")]
    Protocol(String),
}

/// How long a reload waits before asking again while another is in progress.
pub const RELOAD_RETRY: Duration = Duration::from_millis(500);

/// One command's outcome.
#[derive(Clone, Debug, PartialEq)]
pub struct Reply {
    /// `return` was "OK".
    pub ok: bool,
    /// The `message` field, if any.
    pub message: Value,
}

/// An open, handshaken connection.
pub struct Connection {
    stream: UnixStream,
    buf: Vec<u8>,
    timeout: Duration,
}

impl Connection {
    /// Connects and performs the version handshake.
    pub async fn open(path: &Path, timeout: Duration) -> Result<Connection, SocketError> {
        let stream = tokio::time::timeout(timeout, UnixStream::connect(path))
            .await
            .map_err(|_| SocketError::Connect {
                path: path.display().to_string(),
                message: "timed out".into(),
            })?
            .map_err(|e| SocketError::Connect {
                path: path.display().to_string(),
                message: e.to_string(),
            })?;
        let mut c = Connection {
            stream,
            buf: Vec::new(),
            timeout,
        };
        c.send_line(&json!({"version": "0.2"})).await?;
        let hello = c.read_reply().await?;
        if !hello.ok {
            return Err(SocketError::Protocol(format!(
                "handshake refused: {}",
                hello.message
            )));
        }
        Ok(c)
    }

    async fn send_line(&mut self, v: &Value) -> Result<(), SocketError> {
        let mut line = v.to_string();
        line.push('\n');
        tokio::time::timeout(self.timeout, self.stream.write_all(line.as_bytes()))
            .await
            .map_err(|_| SocketError::Protocol("write timed out".into()))?
            .map_err(|e| SocketError::Protocol(format!("write: {e}")))
    }

    /// Reads one JSON reply; Suricata does not frame them, so parse as bytes arrive.
    async fn read_reply(&mut self) -> Result<Reply, SocketError> {
        loop {
            let mut it = serde_json::Deserializer::from_slice(&self.buf).into_iter::<Value>();
            match it.next() {
                Some(Ok(v)) => {
                    let used = it.byte_offset();
                    self.buf.drain(..used);
                    let ok = v.get("return").and_then(Value::as_str) == Some("OK");
                    let message = v.get("message").cloned().unwrap_or(Value::Null);
                    return Ok(Reply { ok, message });
                }
                Some(Err(e)) if !e.is_eof() => {
                    return Err(SocketError::Protocol(format!("bad reply: {e}")));
                }
                _ => {}
            }
            let mut chunk = [0u8; 8192];
            let n = tokio::time::timeout(self.timeout, self.stream.read(&mut chunk))
                .await
                .map_err(|_| SocketError::Protocol("read timed out".into()))?
                .map_err(|e| SocketError::Protocol(format!("read: {e}")))?;
            if n == 0 {
                return Err(SocketError::Protocol("connection closed".into()));
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// Runs one command.
    pub async fn command(
        &mut self,
        command: &str,
        arguments: Option<Value>,
    ) -> Result<Reply, SocketError> {
        let mut v = json!({"command": command});
        if let Some(a) = arguments {
            v["arguments"] = a;
        }
        self.send_line(&v).await?;
        self.read_reply().await
    }

    /// A rule reload (`ruleset-reload-rules` or `ruleset-reload-nonblocking`),
    /// asked again while Suricata answers that another is in progress, for
    /// up to `patience`: the agent's IoC apply and the signatures' owner each
    /// reload, and one refused for the other's would leave its files unread.
    pub async fn reload(
        &mut self,
        command: &str,
        patience: Duration,
    ) -> Result<Reply, SocketError> {
        let until = tokio::time::Instant::now() + patience;
        loop {
            let r = self.command(command, None).await?;
            let busy = !r.ok
                && r.message
                    .as_str()
                    .is_some_and(|m| m.contains("already in progress"));
            if !busy || tokio::time::Instant::now() >= until {
                return Ok(r);
            }
            tokio::time::sleep(RELOAD_RETRY).await;
        }
    }

    /// Runs many commands over this one connection, each waiting for its reply.
    ///
    /// Not pipelined: Suricata's unix manager parses whatever one read returns
    /// as a single JSON document, so two commands arriving together are
    /// refused ("end of file expected") and the connection is closed.
    pub async fn batch(&mut self, commands: &[Value]) -> Result<Vec<Reply>, SocketError> {
        let mut replies = Vec::with_capacity(commands.len());
        for c in commands {
            self.send_line(c).await?;
            replies.push(self.read_reply().await?);
        }
        Ok(replies)
    }
}

/// A `dataset-add` / `dataset-remove` command.
pub fn dataset_command(add: bool, setname: &str, settype: &str, value: &str) -> Value {
    json!({
        "command": if add { "dataset-add" } else { "dataset-remove" },
        "arguments": {"setname": setname, "settype": settype, "datavalue": value},
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::UnixListener;

    /// A scripted peer speaking the protocol like Suricata (replies unframed, back to back).
    async fn fake_suricata(path: &Path) -> tokio::task::JoinHandle<Vec<Value>> {
        let listener = UnixListener::bind(path).unwrap();
        tokio::spawn(async move {
            let (s, _) = listener.accept().await.unwrap();
            let (mut r, mut w) = s.into_split();
            let mut seen = Vec::new();
            let mut buf = vec![0u8; 65536];
            // Like Suricata's unix manager: whatever one read returns must be exactly one
            // JSON document, else the command is refused and the connection closed.
            while let Ok(n) = r.read(&mut buf).await {
                if n == 0 {
                    break;
                }
                let Ok(v) = serde_json::from_slice::<Value>(&buf[..n]) else {
                    let _ = w
                        .write_all(br#"{"return":"NOK","message":"Invalid command"}"#)
                        .await;
                    break;
                };
                let reloads = seen
                    .iter()
                    .filter(|s: &&Value| s["command"] == "ruleset-reload-rules")
                    .count();
                let reply = if v.get("version").is_some() {
                    json!({"return": "OK"})
                } else if v["command"] == "ruleset-reload-rules" && reloads < 2 {
                    // Another's reload runs: Suricata refuses a second one.
                    json!({"return": "NOK", "message": "Reload already in progress"})
                } else if v["arguments"]["datavalue"] == "bad" {
                    json!({"return": "NOK", "message": "failed"})
                } else {
                    json!({"return": "OK", "message": "data added"})
                };
                seen.push(v);
                w.write_all(reply.to_string().as_bytes()).await.unwrap();
            }
            seen
        })
    }

    /// A connection to a [`fake_suricata`], and the peer's task.
    async fn connected() -> (
        tempfile::TempDir,
        Connection,
        tokio::task::JoinHandle<Vec<Value>>,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sock");
        let peer = fake_suricata(&path).await;
        let c = Connection::open(&path, Duration::from_secs(5))
            .await
            .unwrap();
        (dir, c, peer)
    }

    #[tokio::test]
    async fn a_batch_goes_over_one_connection_one_command_at_a_time() {
        let (_dir, mut c, peer) = connected().await;
        let mut cmds: Vec<Value> = (0..1000)
            .map(|i| {
                dataset_command(
                    true,
                    "hw-ipv4",
                    "ipv4",
                    &format!("203.0.{}.{}", i / 256, i % 256),
                )
            })
            .collect();
        cmds.push(dataset_command(false, "hw-ipv4", "ipv4", "bad"));
        let replies = c.batch(&cmds).await.unwrap();
        assert_eq!(replies.len(), 1001);
        assert_eq!(replies.iter().filter(|r| r.ok).count(), 1000);
        drop(c);
        let seen = peer.await.unwrap();
        assert_eq!(seen.len(), 1002);
        assert_eq!(seen[1]["command"], "dataset-add");
        assert_eq!(seen[1001]["command"], "dataset-remove");
    }

    #[tokio::test]
    async fn a_reload_refused_for_anothers_in_progress_is_asked_again() {
        let (_dir, mut c, peer) = connected().await;
        // Out of patience: the refusal is the answer.
        let r = c
            .reload("ruleset-reload-rules", Duration::ZERO)
            .await
            .unwrap();
        assert!(!r.ok && r.message == "Reload already in progress");
        let r = c
            .reload("ruleset-reload-rules", Duration::from_secs(10))
            .await
            .unwrap();
        assert!(r.ok, "{r:?}");
        drop(c);
        let seen = peer.await.unwrap();
        assert_eq!(seen.len(), 4, "the handshake, then three reloads: {seen:?}");
    }

    #[tokio::test]
    async fn connect_error_names_the_socket() {
        let e = Connection::open(
            Path::new("/nonexistent/suricata.sock"),
            Duration::from_secs(1),
        )
        .await;
        let msg = e.err().unwrap().to_string();
        assert!(msg.contains("/nonexistent/suricata.sock"), "{msg}");
    }
}
