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
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio::net::UnixListener;
use tokio::sync::mpsc;

use super::eve::{self, Alert, Skip};

/// Longest eve line accepted; longer ones are counted as malformed and skipped.
pub const MAX_LINE: usize = 1 << 20;
/// Bytes read at a time from a socket or file: with [`MAX_LINE`], all an
/// intake ever holds, however long a line Suricata (or whoever) writes.
const CHUNK: usize = 64 * 1024;

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

    /// Counts a line over [`MAX_LINE`], skipped unread.
    pub fn too_long(&self) {
        if self.malformed.fetch_add(1, Ordering::Relaxed) < 5 {
            tracing::warn!("skipped an eve line longer than {MAX_LINE} bytes");
        }
    }

    /// Counts a line as [`Lines`] gives it; returns the alert if it is one.
    fn take(&self, line: Option<&[u8]>) -> Option<Alert> {
        match line {
            Some(l) => self.line(l),
            None => {
                self.too_long();
                None
            }
        }
    }
}

/// Cuts a byte stream into lines of at most `max` bytes (newline not
/// counted). A longer line is dropped as it streams by, never held past
/// `max`, and given as `None` once its newline comes.
#[derive(Debug)]
pub struct Lines {
    buf: Vec<u8>,
    max: usize,
    skipping: bool,
}

impl Lines {
    /// Lines of at most `max` bytes.
    pub fn new(max: usize) -> Lines {
        Lines {
            buf: Vec::new(),
            max,
            skipping: false,
        }
    }

    /// Feeds the next bytes; `each` gets every line they complete.
    pub fn push(&mut self, mut data: &[u8], mut each: impl FnMut(Option<&[u8]>)) {
        while let Some(pos) = data.iter().position(|&b| b == b'\n') {
            let part = &data[..pos];
            if self.skipping || self.buf.len() + part.len() > self.max {
                each(None);
            } else if self.buf.is_empty() {
                each(Some(part));
            } else {
                self.append(part);
                each(Some(&self.buf));
            }
            self.buf.clear();
            self.skipping = false;
            data = &data[pos + 1..];
        }
        if self.skipping {
            return;
        }
        let need = self.buf.len() + data.len();
        if need > self.max {
            // Over the cap with no newline yet: the rest is read and dropped, never kept.
            self.buf.clear();
            self.skipping = true;
            return;
        }
        self.append(data);
    }

    /// Adds to the line begun, which stays within the cap.
    fn append(&mut self, data: &[u8]) {
        let need = self.buf.len() + data.len();
        if need > self.buf.capacity() {
            // Doubling, but never past the cap.
            let cap = need.max(self.buf.capacity() * 2).min(self.max);
            self.buf.reserve_exact(cap - self.buf.len());
        }
        self.buf.extend_from_slice(data);
    }

    /// The unfinished last line at the end of input, if any (`None` in it: over the cap).
    pub fn finish(&mut self) -> Option<Option<&[u8]>> {
        if std::mem::take(&mut self.skipping) {
            return Some(None);
        }
        (!self.buf.is_empty()).then_some(Some(&self.buf))
    }

    /// Forgets a line begun (the file under it was replaced).
    pub fn reset(&mut self) {
        self.buf.clear();
        self.skipping = false;
    }

    /// Bytes held for an unfinished line.
    pub fn held(&self) -> usize {
        self.buf.capacity()
    }
}

/// Listens on `path` for Suricata's eve `unix_stream` output; every connection
/// (Suricata reconnects after a restart) is read line by line into `tx`.
pub fn listen(
    path: &Path,
    counters: Arc<Counters>,
    tx: mpsc::Sender<Alert>,
) -> std::io::Result<tokio::task::JoinHandle<()>> {
    listen_lines(path, "eve", move |line| counters.take(line), tx)
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
                let mut stream = stream;
                let mut chunk = vec![0u8; CHUNK];
                let mut lines = Lines::new(MAX_LINE);
                let mut items = Vec::new();
                loop {
                    let n = match stream.read(&mut chunk).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => n,
                    };
                    lines.push(&chunk[..n], |l| items.extend(read(l)));
                    for item in items.drain(..) {
                        if tx.send(item).await.is_err() {
                            return;
                        }
                    }
                }
                if let Some(item) = lines.finish().and_then(&read) {
                    let _ = tx.send(item).await;
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
    let mut lines = Lines::new(MAX_LINE);
    let mut chunk = vec![0u8; CHUNK];
    let mut alerts = Vec::new();
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
                lines.reset();
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
                lines.reset();
            }
            if len > pos && f.seek(SeekFrom::Start(pos)).await.is_ok() {
                // A chunk at a time: a file grown by gigabytes since the
                // last look is read through, not into memory.
                while pos < len {
                    let want = usize::try_from(len - pos).unwrap_or(CHUNK).min(CHUNK);
                    let n = match f.read(&mut chunk[..want]).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => n,
                    };
                    pos += n as u64;
                    lines.push(&chunk[..n], |l| alerts.extend(counters.take(l)));
                    for a in alerts.drain(..) {
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
    let mut lines = Lines::new(MAX_LINE);
    let mut chunk = vec![0u8; CHUNK];
    loop {
        let n = f.read(&mut chunk).await?;
        if n == 0 {
            break;
        }
        lines.push(&chunk[..n], |l| {
            counters.take(l).into_iter().for_each(&mut each)
        });
    }
    if let Some(a) = lines.finish().and_then(|l| counters.take(l)) {
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

    /// What `push`es of `chunks` (and the end of input) make of them, with
    /// the most held at any point.
    fn cut(max: usize, chunks: &[&[u8]]) -> (Vec<Option<String>>, usize) {
        let mut lines = Lines::new(max);
        let (mut out, mut held) = (Vec::new(), 0);
        let text = |l: Option<&[u8]>| l.map(|l| String::from_utf8_lossy(l).into_owned());
        for c in chunks {
            lines.push(c, |l| out.push(text(l)));
            held = held.max(lines.held());
        }
        out.extend(lines.finish().map(text));
        (out, held)
    }

    #[test]
    fn a_line_over_the_cap_is_dropped_as_it_streams_by() {
        // Ten megabytes without a newline, 4 KiB at a time, then two good lines.
        let x = vec![b'x'; 4096];
        let mut chunks: Vec<&[u8]> = vec![b"ab\nc"];
        chunks.extend(std::iter::repeat_n(x.as_slice(), 2560));
        chunks.extend([b"\ngood\nlast".as_slice()]);
        let (out, held) = cut(1000, &chunks);
        assert_eq!(
            out,
            [
                Some("ab".into()),
                None,
                Some("good".into()),
                Some("last".into())
            ]
        );
        assert!(held <= 1000, "held {held} bytes for a 1000-byte cap");

        // The cap is the line's length, however the line is split.
        let at = "y".repeat(1000);
        let over = "z".repeat(1001);
        let stream = format!("{at}\n{over}\n{at}\n");
        for size in [1, 7, 999, 1000, 1001, 4096] {
            let chunks: Vec<&[u8]> = stream.as_bytes().chunks(size).collect();
            let (out, held) = cut(1000, &chunks);
            assert_eq!(out, [Some(at.clone()), None, Some(at.clone())], "{size}");
            assert!(held <= 1000, "{size}: {held}");
        }
        // An unfinished last line over the cap is still a skipped line.
        assert_eq!(cut(3, &[b"ok\nlonger"]).0, [Some("ok".into()), None]);
    }

    #[tokio::test]
    async fn socket_skips_and_counts_a_line_over_the_cap_and_reads_the_next() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("eve.sock");
        let counters = Arc::new(Counters::default());
        let (tx, mut rx) = mpsc::channel(16);
        let _task = listen(&path, counters.clone(), tx).unwrap();
        let mut s = tokio::net::UnixStream::connect(&path).await.unwrap();
        let long = format!(
            "{{\"event_type\":\"alert\",\"x\":\"{}\"}}\n",
            "a".repeat(3 * MAX_LINE)
        );
        s.write_all(long.as_bytes()).await.unwrap();
        s.write_all(line(5).as_bytes()).await.unwrap();
        assert_eq!(recv_n(&mut rx, 1).await, [5]);
        let c = counters.snapshot();
        assert_eq!((c.alerts, c.malformed), (1, 1));
    }

    #[tokio::test]
    async fn the_tail_of_a_line_over_the_cap_in_a_file_is_not_a_line_of_its_own() {
        // The long line ends on a chunk's edge with an alert's JSON after it:
        // dropping only what was buffered would read that tail as an alert.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("eve.json");
        let filler = "x".repeat(MAX_LINE + CHUNK);
        std::fs::write(&path, format!("{filler}{}{}", line(7), line(8))).unwrap();
        let counters = Counters::default();
        let mut got = Vec::new();
        read_file(&path, &counters, |a| got.push(a.sid))
            .await
            .unwrap();
        assert_eq!(got, [8]);
        assert_eq!(counters.snapshot().malformed, 1);
    }
}
