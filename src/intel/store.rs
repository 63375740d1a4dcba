//! Durable IoC store: one JSON file per source under `<state_dir>/intel/`,
//! written atomically, holding the set with provenance, the cursor and counters.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::ioc::Ioc;
use super::set::{EventInfo, SourceSet};
use super::{Cursor, PullStats, SourceState};
use crate::fsutil;

const VERSION: u32 = 1;

/// A failure to read or write the store.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {message}")]
pub struct StoreError {
    /// The file.
    pub path: String,
    /// What went wrong.
    pub message: String,
}

/// The store directory.
#[derive(Clone, Debug)]
pub struct Store {
    dir: PathBuf,
}

#[derive(Serialize)]
struct FileOut<'a> {
    version: u32,
    source: &'a str,
    cursor: &'a Cursor,
    last_ok: Option<u64>,
    stats: &'a PullStats,
    events: &'a [EventInfo],
    entries: EntriesOut<'a>,
}

/// Serialises entries one by one: a million of them are never copied into a
/// second in-memory form on their way to disk.
struct EntriesOut<'a>(&'a SourceSet);

impl Serialize for EntriesOut<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeSeq;
        let mut seq = s.serialize_seq(Some(self.0.len()))?;
        for e in self.0.entries() {
            seq.serialize_element(&(e.ioc.to_string(), e.event(), self.0.attribute_of(e)))?;
        }
        seq.end()
    }
}

#[derive(Deserialize)]
struct FileIn {
    version: u32,
    cursor: Cursor,
    last_ok: Option<u64>,
    #[serde(default)]
    stats: PullStats,
    events: Vec<EventInfo>,
    entries: EntriesIn,
}

/// Reads entries straight into a set, one by one (see [`EntriesOut`]).
struct EntriesIn(SourceSet);

impl<'de> Deserialize<'de> for EntriesIn {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = EntriesIn;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a list of [value, event, attribute] entries")
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<EntriesIn, A::Error> {
                let mut set = SourceSet::new();
                while let Some((value, event, attribute)) =
                    seq.next_element::<(String, Option<u32>, Option<String>)>()?
                {
                    // What we wrote was canonical; anything else means tampering, and is dropped.
                    match value.parse::<Ioc>() {
                        Ok(ioc) => set.push(ioc, event, attribute.as_deref()),
                        Err(_) => tracing::warn!(
                            "store entry {:?} no longer parses; dropped",
                            value.chars().take(80).collect::<String>()
                        ),
                    }
                }
                Ok(EntriesIn(set))
            }
        }
        d.deserialize_seq(V)
    }
}

impl Store {
    /// A store under `state_dir`.
    pub fn new(state_dir: &Path) -> Store {
        Store {
            dir: state_dir.join("intel"),
        }
    }

    fn path(&self, source: &str) -> PathBuf {
        self.dir.join(format!("{source}.json"))
    }

    /// Saves one source's state.
    pub fn save(&self, source: &str, st: &SourceState) -> Result<(), StoreError> {
        let path = self.path(source);
        let err = |e: std::io::Error| StoreError {
            path: path.display().to_string(),
            message: e.to_string(),
        };
        std::fs::create_dir_all(&self.dir).map_err(err)?;
        let out = FileOut {
            version: VERSION,
            source,
            cursor: &st.cursor,
            last_ok: st.last_ok,
            stats: &st.stats,
            events: st.set.events(),
            entries: EntriesOut(&st.set),
        };
        fsutil::write_atomic_with(&path, |w| {
            serde_json::to_writer(&mut *w, &out).map_err(std::io::Error::other)?;
            w.write_all(b"\n")
        })
        .map_err(err)
    }

    /// Loads one source's state; `Ok(None)` if it was never saved.
    ///
    /// A file that cannot be read back is moved aside (kept for inspection, never
    /// deleted) and reported; the source then starts empty and is pulled again.
    pub fn load(&self, source: &str) -> Result<Option<SourceState>, StoreError> {
        let path = self.path(source);
        let file = match std::fs::File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => {
                return Err(StoreError {
                    path: path.display().to_string(),
                    message: e.to_string(),
                })
            }
        };
        let parsed: Result<FileIn, String> = serde_json::from_reader(std::io::BufReader::new(file))
            .map_err(|e| e.to_string())
            .and_then(|f: FileIn| {
                if f.version == VERSION {
                    Ok(f)
                } else {
                    Err(format!("unknown store version {}", f.version))
                }
            });
        let file = match parsed {
            Ok(f) => f,
            Err(message) => {
                let aside = path.with_extension(format!("corrupt-{}", super::unix_now()));
                let _ = std::fs::rename(&path, &aside);
                return Err(StoreError {
                    path: path.display().to_string(),
                    message: format!("{message}; moved aside to {}", aside.display()),
                });
            }
        };
        let set = file.entries.0.with_events(file.events);
        Ok(Some(SourceState {
            set: set.into(),
            cursor: file.cursor,
            stats: file.stats,
            last_ok: file.last_ok,
            last_error: None,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::intel::Collector;

    #[test]
    fn round_trips_with_provenance() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path());
        let mut c = Collector::new("m");
        let ev = c.event(EventInfo {
            uuid: "e".into(),
            id: Some(7),
            threat_level: Some(1),
            info: "C2".into(),
            timestamp: 5,
            tags: vec!["tlp:green".into()],
            seen: 0,
        });
        c.value(
            Some("domain|ip"),
            "evil.example|203.0.113.9",
            Some(ev),
            Some("a-1"),
        );
        c.value(None, "203.0.113.0/28", None, None);
        c.value(
            None,
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            None,
            None,
        );
        let mut st = SourceState {
            set: c.set.into(),
            cursor: Cursor {
                misp_timestamp: Some(99),
                last_full: Some(98),
                publish_since: Some(97),
                list: Some(crate::intel::fetch::Validators {
                    of: 7,
                    etag: Some("\"v1\"".into()),
                    last_modified: None,
                    file: Some([1, 2, 3, 4]),
                }),
            },
            stats: c.stats,
            last_ok: Some(100),
            last_error: None,
        };
        // Loaded, a set comes back indexed, as every set the agent holds.
        std::sync::Arc::make_mut(&mut st.set).index();
        store.save("m", &st).unwrap();
        let back = store.load("m").unwrap().unwrap();
        assert!(back.set.entries().eq(st.set.entries()));
        assert_eq!(back.set.events(), st.set.events());
        assert_eq!(back.cursor, st.cursor);
        assert_eq!(back.last_ok, Some(100));
        assert!(store.load("other").unwrap().is_none());
    }

    #[test]
    fn a_truncated_file_is_moved_aside_not_lost() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path());
        store.save("m", &SourceState::default()).unwrap();
        let p = dir.path().join("intel/m.json");
        let full = std::fs::read(&p).unwrap();
        std::fs::write(&p, &full[..full.len() / 2]).unwrap();
        let e = store.load("m").unwrap_err().to_string();
        assert!(e.contains("moved aside"), "{e}");
        let names: Vec<String> = std::fs::read_dir(dir.path().join("intel"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert!(
            names.iter().any(|n| n.starts_with("m.corrupt-")),
            "{names:?}"
        );
        assert!(store.load("m").unwrap().is_none());
    }
}
