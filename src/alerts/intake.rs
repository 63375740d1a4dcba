//! Eve intake: a unix socket Suricata's `unix_stream` eve output connects to
//! (no eve on the SD card; Suricata reconnects after a restart), or a followed
//! eve.json (rotation and truncation handled, a half-written last line waits
//! for its newline). Lines become typed alerts; the rest is counted.

use std::io::SeekFrom;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncSeekExt, BufReader};
use tokio::net::UnixListener;
use tokio::sync::mpsc;

use super::eve::{self, Alert, Skip};

/// Longest eve line accepted; longer ones are counted as malformed and skipped.
pub const MAX_LINE: usize = 1 << 20;

/// Counters of what came in.
#[derive(Debug, Default)]
pub struct Counters {
    /// Alerts passed on.
    pub alerts: AtomicU64,
    /// Records of other types.
    pub other: AtomicU64,
    /// Lines that were not valid eve JSON (or too long).
    pub malformed: AtomicU64,
}

/// A snapshot of [`Counters`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct CountersSnapshot {
    /// Alerts passed on.
    pub alerts: u64,
    /// Records of other types.
    pub other: u64,
    /// Malformed lines.
    pub malformed: u64,
}

impl Counters {
    /// Current values.
    pub fn snapshot(&self) -> CountersSnapshot {
        CountersSnapshot {
            alerts: self.alerts.load(Ordering::Relaxed),
            other: self.other.load(Ordering::Relaxed),
            malformed: self.malformed.load(Ordering::Relaxed),
        }
    }

    /// Parses one line and counts it; returns the alert if it is one.
    pub fn line(&self, line: &[u8]) -> Option<Alert> {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.iter().all(u8::is_ascii_whitespace) {
            return None;
        }
        if line.len() > MAX_LINE {
            self.malformed.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        match eve::parse(line) {
            Ok(a) => {
                self.alerts.fetch_add(1, Ordering::Relaxed);
                Some(a)
            }
            Err(Skip::OtherType) => {
                self.other.fetch_add(1, Ordering::Relaxed);
                None
            }
            Err(Skip::Malformed(why)) => {
                if self.malformed.fetch_add(1, Ordering::Relaxed) < 5 {
                    tracing::warn!("skipped a malformed eve line: {why}");
                }
                None
            }
        }
    }
}

/// Splits complete lines off `buf`, keeping an unfinished last line for later.
fn drain_lines(buf: &mut Vec<u8>, mut each: impl FnMut(&[u8])) {
    let mut start = 0;
    while let Some(pos) = buf[start..].iter().position(|&b| b == b'\n') {
        each(&buf[start..start + pos]);
        start += pos + 1;
    }
    buf.drain(..start);
    // A line that never ends must not grow without bound.
    if buf.len() > MAX_LINE {
        buf.clear();
    }
}

/// Listens on `path` for Suricata's eve `unix_stream` output; every connection
/// (Suricata reconnects after a restart) is read line by line into `tx`.
pub fn listen(
    path: &Path,
    counters: Arc<Counters>,
    tx: mpsc::Sender<Alert>,
) -> std::io::Result<tokio::task::JoinHandle<()>> {
    listen_lines(
        path,
        "eve",
        move |line| match line {
            Some(body) => counters.line(body),
            None => {
                counters.malformed.fetch_add(1, Ordering::Relaxed);
                None
            }
        },
        tx,
    )
}

/// Listens on `path` for an eve `unix_stream` output and sends what `read`
/// makes of each line (`None` for a line over [`MAX_LINE`]) to `tx`.
pub fn listen_lines<T: Send + 'static>(
    path: &Path,
    what: &'static str,
    read: impl Fn(Option<&[u8]>) -> Option<T> + Clone + Send + Sync + 'static,
    tx: mpsc::Sender<T>,
) -> std::io::Result<tokio::task::JoinHandle<()>> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let _ = std::fs::remove_file(path);
    let listener = UnixListener::bind(path)?;
    // Whoever connects writes what the agent triages and cuts by: Suricata
    // (root) only, whatever the umask.
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            tracing::info!("suricata connected to the {what} socket");
            let (read, tx) = (read.clone(), tx.clone());
            tokio::spawn(async move {
                let mut reader = BufReader::new(stream);
                let mut line = Vec::new();
                loop {
                    line.clear();
                    match (&mut reader)
                        .take(MAX_LINE as u64 + 1)
                        .read_until(b'\n', &mut line)
                        .await
                    {
                        Ok(0) | Err(_) => break,
                        Ok(_) => {}
                    }
                    let item = if line.last() != Some(&b'\n') && line.len() > MAX_LINE {
                        // Too long: skip to the end of that line.
                        let mut rest = Vec::new();
                        let _ = reader.read_until(b'\n', &mut rest).await;
                        read(None)
                    } else {
                        read(Some(line.strip_suffix(b"\n").unwrap_or(&line)))
                    };
                    if let Some(item) = item {
                        if tx.send(item).await.is_err() {
                            return;
                        }
                    }
                }
                tracing::info!("suricata closed the {what} socket");
            });
        }
    }))
}

/// Follows an eve.json file from its current end (or from the start), through
/// rotation (a new file at the path) and truncation, polling every `every`.
pub async fn follow(
    path: PathBuf,
    from_start: bool,
    every: Duration,
    counters: Arc<Counters>,
    tx: mpsc::Sender<Alert>,
) {
    let mut file: Option<(tokio::fs::File, u64)> = None; // file and its inode
    let mut pos: u64 = 0;
    let mut buf = Vec::new();
    let mut first = true;
    loop {
        if file.is_none() {
            if let Ok(f) = tokio::fs::File::open(&path).await {
                let ino = f.metadata().await.map(|m| m.ino()).unwrap_or(0);
                pos = if first && !from_start {
                    f.metadata().await.map(|m| m.len()).unwrap_or(0)
                } else {
                    0
                };
                file = Some((f, ino));
                buf.clear();
            }
            first = false;
        }
        if let Some((f, ino)) = file.as_mut() {
            // Rotated: the path now names another file. Checked before reading, so
            // everything written to the old file up to the rename is read below.
            let moved = match tokio::fs::metadata(&path).await {
                Ok(m) => m.ino() != *ino,
                Err(_) => true,
            };
            let len = f.metadata().await.map(|m| m.len()).unwrap_or(0);
            if len < pos {
                // Truncated in place (copytruncate): start over.
                pos = 0;
                buf.clear();
            }
            if len > pos && f.seek(SeekFrom::Start(pos)).await.is_ok() {
                let mut chunk = Vec::new();
                if let Ok(n) = f.take(len - pos).read_to_end(&mut chunk).await {
                    pos += n as u64;
                    buf.extend_from_slice(&chunk);
                    let mut alerts = Vec::new();
                    drain_lines(&mut buf, |l| alerts.extend(counters.line(l)));
                    for a in alerts {
                        if tx.send(a).await.is_err() {
                            return;
                        }
                    }
                }
            }
            if moved {
                file = None;
            }
        }
        tokio::time::sleep(every).await;
    }
}

/// Reads a whole eve file (offline triage): every complete line, and a last
/// line without newline only if it parses.
pub async fn read_file(
    path: &Path,
    counters: &Counters,
    mut each: impl FnMut(Alert),
) -> std::io::Result<()> {
    let mut f = tokio::fs::File::open(path).await?;
    let mut buf = Vec::new();
    let mut chunk = vec![0u8; 1 << 16];
    loop {
        let n = f.read(&mut chunk).await?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
        drain_lines(&mut buf, |l| {
            if let Some(a) = counters.line(l) {
                each(a);
            }
        });
    }
    if let Some(a) = counters.line(&buf) {
        each(a);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    fn line(sid: u32) -> String {
        format!(
            r#"{{"timestamp":"2026-11-25T03:50:26.154016+0000","event_type":"alert","src_ip":"10.0.0.2","dest_ip":"203.0.113.66","proto":"TCP","alert":{{"action":"blocked","signature_id":{sid},"signature":"s","category":"c","severity":1}}}}"#
        ) + "\n"
    }

    async fn recv_n(rx: &mut mpsc::Receiver<Alert>, n: usize) -> Vec<u32> {
        let mut out = Vec::new();
        while out.len() < n {
            let a = tokio::time::timeout(Duration::from_secs(5), rx.recv())
                .await
                .expect("alert in time")
                .unwrap();
            out.push(a.sid);
        }
        out
    }

    #[tokio::test]
    async fn socket_takes_reconnects_and_skips_garbage() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("eve.sock");
        let counters = Arc::new(Counters::default());
        let (tx, mut rx) = mpsc::channel(16);
        let _task = listen(&path, counters.clone(), tx).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "{mode:o}");
        for round in 0..2u32 {
            // Each round is a Suricata (re)start: a new connection.
            let mut s = tokio::net::UnixStream::connect(&path).await.unwrap();
            s.write_all(line(round * 10 + 1).as_bytes()).await.unwrap();
            s.write_all(b"{\"event_type\":\"stats\"}\nnot json\n\xff\xfe\n")
                .await
                .unwrap();
            // A line in two writes.
            let l = line(round * 10 + 2);
            s.write_all(&l.as_bytes()[..20]).await.unwrap();
            s.flush().await.unwrap();
            tokio::time::sleep(Duration::from_millis(20)).await;
            s.write_all(&l.as_bytes()[20..]).await.unwrap();
            assert_eq!(recv_n(&mut rx, 2).await, [round * 10 + 1, round * 10 + 2]);
        }
        let c = counters.snapshot();
        assert_eq!((c.alerts, c.other, c.malformed), (4, 2, 4));
    }

    #[tokio::test]
    async fn follow_waits_for_newlines_and_survives_rotation_and_truncation() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("eve.json");
        std::fs::write(&path, line(1)).unwrap(); // before we start: not read (we follow from the end)
        let counters = Arc::new(Counters::default());
        let (tx, mut rx) = mpsc::channel(16);
        let task = tokio::spawn(follow(
            path.clone(),
            false,
            Duration::from_millis(10),
            counters.clone(),
            tx,
        ));
        tokio::time::sleep(Duration::from_millis(50)).await;
        let append = |s: &str| {
            use std::io::Write;
            let mut f = std::fs::OpenOptions::new()
                .append(true)
                .open(&path)
                .unwrap();
            f.write_all(s.as_bytes()).unwrap();
        };
        let l2 = line(2);
        append(&l2[..30]); // half-written
        tokio::time::sleep(Duration::from_millis(50)).await;
        append(&l2[30..]);
        assert_eq!(recv_n(&mut rx, 1).await, [2]);
        // Rotation: rename away, new file at the path.
        append(&line(3));
        std::fs::rename(&path, dir.path().join("eve.json.1")).unwrap();
        std::fs::write(&path, line(4)).unwrap();
        assert_eq!(recv_n(&mut rx, 2).await, [3, 4]);
        // Truncation in place, then new lines.
        std::fs::write(&path, "").unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        append(&line(5));
        assert_eq!(recv_n(&mut rx, 1).await, [5]);
        assert_eq!(counters.snapshot().malformed, 0);
        task.abort();
    }

    #[tokio::test]
    async fn read_file_counts_a_torn_last_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("eve.json");
        let l = line(9);
        std::fs::write(&path, format!("{}{}garbage\n{}", line(8), l, &l[..40])).unwrap();
        let counters = Counters::default();
        let mut got = Vec::new();
        read_file(&path, &counters, |a| got.push(a.sid))
            .await
            .unwrap();
        assert_eq!(got, [8, 9]);
        assert_eq!(counters.snapshot().malformed, 2);
    }
}
