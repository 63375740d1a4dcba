//! Applying a rendering: list files rewritten atomically (they are the truth
//! after a restart or reload), then the difference sent live over the socket,
//! or a non-blocking reload when the rules themselves changed.

use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::render::{Key, ListFile, Rendered, Values, RULES_FILE};
use super::socket::{dataset_command, Connection};
use crate::fsutil;

/// Above this many socket commands a reload (which reads the files) is faster.
pub const RELOAD_THRESHOLD: usize = 50_000;

/// Marks that files changed but Suricata may not have the change yet; a
/// reload on the next apply catches up, whatever happened in between.
const PENDING_MARKER: &str = ".homewarden-pending";

/// A failure to write our files (the live part only degrades, never fails).
#[derive(Debug, thiserror::Error)]
#[error("{path}: {message}")]
pub struct ApplyError {
    /// File or directory.
    pub path: String,
    /// What went wrong.
    pub message: String,
}

/// What [`Applier::write`] wrote, owned: Suricata is told after, without
/// the rendering (which borrows the effective set).
#[derive(Debug)]
pub struct Written {
    added: usize,
    removed: usize,
    files_written: usize,
    tell: Tell,
}

/// What Suricata must hear about files just written.
#[derive(Debug)]
enum Tell {
    /// Nothing changed, or no socket (offline rendering).
    Nothing,
    /// The dataset commands for a small change.
    Delta(Vec<Value>),
    /// A non-blocking reload.
    Reload,
}

/// How Suricata learnt about a change.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "state", content = "detail")]
pub enum Live {
    /// Nothing to tell.
    Unchanged,
    /// Sent as dataset-add/remove commands.
    Delta,
    /// A non-blocking rule reload was started.
    Reload,
    /// Suricata is not reachable; it reads the files when it (re)starts.
    SuricataDown(String),
}

/// What one apply did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApplyReport {
    /// Values added.
    pub added: usize,
    /// Values removed.
    pub removed: usize,
    /// Files rewritten.
    pub files_written: usize,
    /// Live outcome.
    pub live: Live,
}

/// Writes into Suricata's rule directory and talks to its socket.
#[derive(Clone, Debug)]
pub struct Applier {
    dir: PathBuf,
    socket: Option<PathBuf>,
    timeout: Duration,
}

struct Diff<'r, 'a> {
    list: &'r ListFile<'a>,
    /// The file is missing: write it even if empty, the rules name it.
    missing: bool,
    /// Indexes into `list.values`.
    add: Capped<usize>,
    /// Lines of the old file.
    remove: Capped<String>,
}

impl Applier {
    /// An applier for `dir`; with `socket: None` it only writes files (offline rendering).
    pub fn new(dir: &Path, socket: Option<&Path>, timeout: Duration) -> Applier {
        Applier {
            dir: dir.to_path_buf(),
            socket: socket.map(Path::to_path_buf),
            timeout,
        }
    }

    fn err(&self, p: &Path, e: impl ToString) -> ApplyError {
        ApplyError {
            path: p.display().to_string(),
            message: e.to_string(),
        }
    }

    /// Applies a rendering; only what differs from the files on disk is written or sent.
    pub async fn apply(&self, r: &Rendered<'_>) -> Result<ApplyReport, ApplyError> {
        let written = self.write(r)?;
        self.tell(written).await
    }

    /// Writes what differs from the files on disk (blocking: a million-line
    /// list is read and rewritten), and says what Suricata must be told.
    pub fn write(&self, r: &Rendered<'_>) -> Result<Written, ApplyError> {
        std::fs::create_dir_all(&self.dir).map_err(|e| self.err(&self.dir, e))?;
        // Suricata's config lists the signatures' file too, and `suricata -T`
        // refuses a listed file that is missing: until the first ruleset is
        // taken, it holds no rule.
        let signatures = self.dir.join(crate::signatures::RULES_FILE);
        if !signatures.exists() {
            crate::fsutil::write_atomic(&signatures, crate::signatures::EMPTY.as_bytes())
                .map_err(|e| self.err(&signatures, e))?;
        }
        let rules_path = self.dir.join(RULES_FILE);
        let rules_changed =
            std::fs::read_to_string(&rules_path).ok().as_deref() != Some(r.rules.as_str());
        let mut diffs = Vec::new();
        for list in &r.lists {
            let path = self.dir.join(list.file_name());
            let missing = !path.exists();
            // A missing file means a reload anyway (the set may not exist in Suricata):
            // no need to list every value as an addition.
            let (add, remove) = if missing {
                Default::default()
            } else {
                diff_file(&path, &list.values).map_err(|e| self.err(&path, e))?
            };
            diffs.push(Diff {
                list,
                missing,
                add,
                remove,
            });
        }
        let marker = self.dir.join(PENDING_MARKER);
        let pending = marker.exists();
        let added: usize = diffs
            .iter()
            .map(|d| {
                if d.missing {
                    d.list.values.len()
                } else {
                    d.add.len()
                }
            })
            .sum();
        let removed: usize = diffs.iter().map(|d| d.remove.len()).sum();
        let changed: Vec<&Diff> = diffs
            .iter()
            .filter(|d| d.missing || !d.add.is_empty() || !d.remove.is_empty())
            .collect();
        let mut w = Written {
            added,
            removed,
            files_written: 0,
            tell: Tell::Nothing,
        };
        if !rules_changed && changed.is_empty() && !pending {
            return Ok(w);
        }

        if self.socket.is_some() && !pending {
            fsutil::write_atomic(&marker, b"").map_err(|e| self.err(&marker, e))?;
        }
        for d in &changed {
            let path = self.dir.join(d.list.file_name());
            fsutil::write_atomic_with(&path, |w| {
                for i in 0..d.list.values.len() {
                    w.write_all(d.list.values.line(i).as_bytes())?;
                    w.write_all(b"\n")?;
                }
                Ok(())
            })
            .map_err(|e| self.err(&path, e))?;
        }
        if rules_changed {
            fsutil::write_atomic(&rules_path, r.rules.as_bytes())
                .map_err(|e| self.err(&rules_path, e))?;
        }
        w.files_written = changed.len() + usize::from(rules_changed);
        if self.socket.is_none() {
            return Ok(w);
        }
        // Hash lists are read with the rules, so they need a reload like a rules change.
        let needs_reload = rules_changed
            || pending
            || changed.iter().any(|d| d.missing)
            || changed.iter().any(|d| d.list.kind.settype().is_none())
            || added + removed > RELOAD_THRESHOLD;
        w.tell = if needs_reload {
            Tell::Reload
        } else {
            Tell::Delta(delta_commands(&changed))
        };
        Ok(w)
    }

    /// Tells Suricata what [`Applier::write`] changed, over its socket.
    pub async fn tell(&self, w: Written) -> Result<ApplyReport, ApplyError> {
        let report = |live| ApplyReport {
            added: w.added,
            removed: w.removed,
            files_written: w.files_written,
            live,
        };
        let (Some(socket), false) = (&self.socket, matches!(w.tell, Tell::Nothing)) else {
            return Ok(report(Live::Unchanged));
        };
        let live = match self.tell_suricata(socket, &w.tell).await {
            Ok(live) => {
                let marker = self.dir.join(PENDING_MARKER);
                std::fs::remove_file(&marker).map_err(|e| self.err(&marker, e))?;
                live
            }
            Err(message) => {
                tracing::warn!(
                    "suricata not updated live ({message}); it will read the files when it is back"
                );
                Live::SuricataDown(message)
            }
        };
        Ok(report(live))
    }

    async fn tell_suricata(&self, socket: &Path, tell: &Tell) -> Result<Live, String> {
        let mut conn = Connection::open(socket, self.timeout)
            .await
            .map_err(|e| e.to_string())?;
        if let Tell::Delta(cmds) = tell {
            let replies = conn.batch(cmds).await.map_err(|e| e.to_string())?;
            let failed: Vec<_> = replies.iter().filter(|r| !r.ok).collect();
            if failed.is_empty() {
                return Ok(Live::Delta);
            }
            // A set Suricata does not know (rules not loaded yet) or a refused value:
            // the files are right, so let Suricata read them.
            tracing::info!(failed = failed.len(), first = %failed[0].message, "dataset commands refused; reloading rules instead");
        }
        let reply = conn
            .reload("ruleset-reload-nonblocking", self.timeout)
            .await
            .map_err(|e| e.to_string())?;
        if reply.ok {
            Ok(Live::Reload)
        } else {
            Err(format!("reload refused: {}", reply.message))
        }
    }
}

/// The dataset commands that carry a small change live.
fn delta_commands(changed: &[&Diff<'_, '_>]) -> Vec<Value> {
    let mut cmds = Vec::new();
    for d in changed {
        let Some(settype) = d.list.kind.settype() else {
            continue;
        };
        cmds.extend(
            d.remove
                .iter()
                .map(|v| dataset_command(false, d.list.name, settype, v)),
        );
        cmds.extend(
            d.add
                .iter()
                .map(|&i| dataset_command(true, d.list.name, settype, &d.list.values.line(i))),
        );
    }
    cmds
}

/// Changes in one list, each kept only while they could still go over the
/// socket: past [`RELOAD_THRESHOLD`] a reload reads the file and only their
/// number matters (a million additions kept as indexes took 8 MB).
#[derive(Debug, PartialEq)]
struct Capped<T> {
    items: Vec<T>,
    count: usize,
}

impl<T> Default for Capped<T> {
    fn default() -> Self {
        Capped {
            items: Vec::new(),
            count: 0,
        }
    }
}

impl<T> Capped<T> {
    fn push(&mut self, item: T) {
        self.count += 1;
        if self.count <= RELOAD_THRESHOLD {
            self.items.push(item);
        }
    }

    fn len(&self) -> usize {
        self.count
    }

    fn is_empty(&self) -> bool {
        self.count == 0
    }

    fn iter(&self) -> std::slice::Iter<'_, T> {
        self.items.iter()
    }
}

/// Compares a list file on disk with the wanted values: which to add (indexes),
/// which old lines to remove. Our files are sorted, so the usual case streams
/// (a million-line file is never held in memory); a file edited by hand is
/// loaded and sorted, and lines that are not ours are removed.
fn diff_file(path: &Path, want: &Values<'_>) -> std::io::Result<(Capped<usize>, Capped<String>)> {
    let lines = |p: &Path| -> std::io::Result<_> {
        Ok(BufReader::new(File::open(p)?)
            .lines()
            .filter(|l| l.as_ref().map_or(true, |l| !l.trim().is_empty())))
    };
    let sorted = match File::open(path) {
        Err(e) => return Err(e),
        Ok(_) => {
            let mut prev: Option<Key> = None;
            let mut ok = true;
            for line in lines(path)? {
                let key = want.parse_key(line?.trim());
                if key.is_none() || (prev.is_some() && prev >= key) {
                    ok = false;
                    break;
                }
                prev = key;
            }
            ok
        }
    };
    let mut add = Capped::default();
    let mut remove = Capped::default();
    let mut i = 0;
    let mut merge =
        |key: Option<Key>, line: String, add: &mut Capped<usize>, remove: &mut Capped<String>| {
            let Some(key) = key else {
                // Not one of ours: it goes.
                remove.push(line);
                return;
            };
            while i < want.len() && want.key(i) < key {
                add.push(i);
                i += 1;
            }
            if i < want.len() && want.key(i) == key {
                i += 1;
            } else {
                remove.push(line);
            }
        };
    if sorted {
        for line in lines(path)? {
            let line = line?.trim().to_string();
            merge(want.parse_key(&line), line, &mut add, &mut remove);
        }
    } else {
        let mut have: Vec<(Option<Key>, String)> = Vec::new();
        for line in lines(path)? {
            let line = line?.trim().to_string();
            have.push((want.parse_key(&line), line));
        }
        have.sort_unstable();
        have.dedup_by(|a, b| a.0.is_some() && a.0 == b.0);
        for (key, line) in have {
            merge(key, line, &mut add, &mut remove);
        }
    }
    (i..want.len()).for_each(|i| add.push(i));
    Ok((add, remove))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::enforce::suricata::render::ListKind;
    use std::net::Ipv4Addr;

    fn rendered(ips: &[Ipv4Addr]) -> Rendered<'_> {
        Rendered {
            rules: "drop ip any any -> any any (sid:1;)\n".into(),
            lists: vec![ListFile {
                name: "hw-ipv4",
                kind: ListKind::Ipv4,
                values: Values::Ipv4(ips),
            }],
        }
    }

    fn ips(v: &[&str]) -> Vec<Ipv4Addr> {
        let mut out: Vec<Ipv4Addr> = v.iter().map(|s| s.parse().unwrap()).collect();
        out.sort();
        out
    }

    #[test]
    fn diff_of_sorted_unsorted_and_foreign_files() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.lst");
        let want = ips(&["10.0.0.2", "10.0.0.10", "10.0.0.3"]);
        let values = Values::Ipv4(&want);
        std::fs::write(&p, "").unwrap();
        let (add, rem) = diff_file(&p, &values).unwrap();
        assert_eq!((add.len(), rem.len()), (3, 0));
        // Numeric order: 10.0.0.10 sorts after 10.0.0.3.
        std::fs::write(&p, "10.0.0.1\n10.0.0.2\n10.0.0.10\n").unwrap();
        let (add, rem) = diff_file(&p, &values).unwrap();
        assert_eq!(
            (add.items, rem.items),
            (vec![1], vec!["10.0.0.1".to_string()])
        );
        std::fs::write(&p, "10.0.0.10\n\n10.0.0.1\njunk\n10.0.0.2\n10.0.0.2\n").unwrap();
        let (add, rem) = diff_file(&p, &values).unwrap();
        assert_eq!(
            (add.items, rem.items),
            (vec![1], vec!["junk".to_string(), "10.0.0.1".to_string()])
        );
    }

    /// Past the threshold only the count is kept: the change goes by reload.
    #[test]
    fn a_big_difference_is_counted_not_kept() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.lst");
        let want: Vec<Ipv4Addr> = (0..RELOAD_THRESHOLD as u32 + 10)
            .map(|i| Ipv4Addr::from(0x0A00_0000 + i))
            .collect();
        std::fs::write(&p, "").unwrap();
        let (add, rem) = diff_file(&p, &Values::Ipv4(&want)).unwrap();
        assert_eq!((add.len(), rem.len()), (RELOAD_THRESHOLD + 10, 0));
        assert_eq!(add.items.len(), RELOAD_THRESHOLD);
    }

    #[tokio::test]
    async fn offline_apply_writes_once_then_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let a = Applier::new(dir.path(), None, Duration::from_secs(1));
        let (v12, v23) = (
            ips(&["203.0.113.1", "203.0.113.2"]),
            ips(&["203.0.113.2", "203.0.113.3"]),
        );
        let r1 = a.apply(&rendered(&v12)).await.unwrap();
        assert_eq!((r1.added, r1.removed, r1.files_written), (2, 0, 2));
        let r2 = a.apply(&rendered(&v12)).await.unwrap();
        assert_eq!(
            (r2.added, r2.removed, r2.files_written, r2.live),
            (0, 0, 0, Live::Unchanged)
        );
        let r3 = a.apply(&rendered(&v23)).await.unwrap();
        assert_eq!((r3.added, r3.removed, r3.files_written), (1, 1, 1));
        let text = std::fs::read_to_string(dir.path().join("hw-ipv4.lst")).unwrap();
        assert_eq!(text, "203.0.113.2\n203.0.113.3\n");
    }

    #[tokio::test]
    async fn suricata_down_keeps_files_and_a_pending_marker() {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("nobody.sock");
        let a = Applier::new(dir.path(), Some(&sock), Duration::from_secs(1));
        let one = ips(&["203.0.113.1"]);
        let r = a.apply(&rendered(&one)).await.unwrap();
        assert!(matches!(r.live, Live::SuricataDown(_)));
        assert!(dir.path().join(PENDING_MARKER).exists());
        // Same content again: files unchanged, but the marker asks to tell Suricata.
        let r = a.apply(&rendered(&one)).await.unwrap();
        assert!(matches!(r.live, Live::SuricataDown(_)));
        assert_eq!(r.files_written, 0);
    }

    /// A stand-in for Suricata's command socket that records the commands it gets
    /// and refuses `dataset-add` while `refuse` is set (as Suricata does for a set
    /// its loaded rules do not define).
    struct FakeSuricata {
        seen: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
        refuse: std::sync::Arc<std::sync::atomic::AtomicBool>,
    }

    impl FakeSuricata {
        fn start(path: &Path) -> FakeSuricata {
            use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
            let listener = tokio::net::UnixListener::bind(path).unwrap();
            let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
            let refuse = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
            let (s2, r2) = (seen.clone(), refuse.clone());
            tokio::spawn(async move {
                loop {
                    let (stream, _) = listener.accept().await.unwrap();
                    let (r, mut w) = stream.into_split();
                    let mut lines = BufReader::new(r).lines();
                    while let Ok(Some(l)) = lines.next_line().await {
                        let v: Value = serde_json::from_str(&l).unwrap();
                        let cmd = v["command"].as_str().unwrap_or("version").to_string();
                        let nok =
                            cmd == "dataset-add" && r2.load(std::sync::atomic::Ordering::SeqCst);
                        s2.lock().unwrap().push(cmd);
                        let reply = if nok {
                            r#"{"return":"NOK","message":"set not found"}"#
                        } else {
                            r#"{"return":"OK"}"#
                        };
                        w.write_all(reply.as_bytes()).await.unwrap();
                    }
                }
            });
            FakeSuricata { seen, refuse }
        }

        fn take(&self) -> Vec<String> {
            std::mem::take(&mut *self.seen.lock().unwrap())
        }
    }

    #[tokio::test]
    async fn live_changes_go_as_delta_and_rule_changes_as_reload() {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("suricata.sock");
        let fake = FakeSuricata::start(&sock);
        let a = Applier::new(dir.path(), Some(&sock), Duration::from_secs(5));

        // New files: Suricata must read them.
        let v1 = ips(&["203.0.113.1"]);
        let r = a.apply(&rendered(&v1)).await.unwrap();
        assert_eq!(r.live, Live::Reload);
        assert_eq!(fake.take(), ["version", "ruleset-reload-nonblocking"]);
        assert!(!dir.path().join(PENDING_MARKER).exists());

        // A dataset-only change: one connection, the delta, no reload.
        let v2 = ips(&["203.0.113.2", "203.0.113.3"]);
        let r = a.apply(&rendered(&v2)).await.unwrap();
        assert_eq!((r.added, r.removed, r.live.clone()), (2, 1, Live::Delta));
        assert_eq!(
            fake.take(),
            ["version", "dataset-remove", "dataset-add", "dataset-add"]
        );

        // The rules themselves changed: reload.
        let mut changed = rendered(&v2);
        changed.rules.push_str("# changed\n");
        assert_eq!(a.apply(&changed).await.unwrap().live, Live::Reload);
        assert_eq!(fake.take(), ["version", "ruleset-reload-nonblocking"]);

        // Suricata refuses the additions (set unknown): the files are right, reload.
        fake.refuse.store(true, std::sync::atomic::Ordering::SeqCst);
        let v3 = ips(&["203.0.113.2", "203.0.113.3", "203.0.113.4"]);
        let mut r3 = rendered(&v3);
        r3.rules = changed.rules.clone();
        assert_eq!(a.apply(&r3).await.unwrap().live, Live::Reload);
        assert_eq!(
            fake.take(),
            ["version", "dataset-add", "ruleset-reload-nonblocking"]
        );
    }
}
