//! One ruleset update, at the edges of the pure core: Debian's
//! `suricata-update` fetches, checks and merges the sources (nothing of its
//! job is re-implemented here), [`super::build`] cuts the result to the
//! board and its policy, `suricata -T` must accept it, and only then does it
//! replace the ruleset Suricata loads. Anything failing on the way keeps the
//! last good ruleset where it is, and says why in one line.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::memory::{self, Way};
use super::policy::Overrides;
use super::profile::{Tier, LOCAL};
use super::source::Source;
use super::{build, Counts, Entry, RULES_FILE};

/// A ruleset file read from suricata-update's output at most this large…
pub const MAX_FILE: u64 = 64 << 20;
/// …and all of them together (ET Open is ~40 MB unpacked).
pub const MAX_TOTAL: u64 = 256 << 20;
/// How long suricata-update may take (downloads over a slow uplink).
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(15 * 60);
/// How long `suricata -T` may take on a slow board.
pub const TEST_TIMEOUT: Duration = Duration::from_secs(10 * 60);
/// The update's record beside the agent's state.
pub const STATE_FILE: &str = "signatures.json";
/// Every signature's verdict and reason, for `explain` and triage.
pub const INDEX_FILE: &str = "signatures-index.json";
/// The last ruleset fetched and taken, as suricata-update wrote it (a link
/// to a directory, swapped whole): the owner's word on a signature cuts it
/// again without a download.
pub const FETCHED: &str = "fetched";

/// Where an update reads and writes.
#[derive(Clone, Debug)]
pub struct Paths {
    /// Suricata's rule directory (the agent's): [`RULES_FILE`] goes there.
    pub rules_dir: PathBuf,
    /// The update's own directory (suricata-update's cache, the record).
    pub work_dir: PathBuf,
    /// Suricata's main config.
    pub suricata_yaml: PathBuf,
    /// homewarden's include for it.
    pub include: PathBuf,
    /// Suricata's cgroup: its memory budget and what it holds now.
    pub cgroup: PathBuf,
}

/// What to make.
#[derive(Clone, Debug)]
pub struct Plan {
    /// The rulesets.
    pub sources: Vec<Source>,
    /// The board's tier, and why it is that.
    pub tier: Tier,
    /// Why.
    pub why: String,
    /// The owner's word.
    pub overrides: Overrides,
    /// Drops only reported.
    pub shadow: bool,
    /// Where the rules come from this time.
    pub fetch: Fetch,
}

impl Plan {
    /// A fingerprint of what decides the cut (tier, shadow mode, the owner's
    /// word): the same rules cut under the same fingerprint load the same.
    pub fn cut(&self) -> u64 {
        crate::fnv::Fnv1a::of(format_args!(
            "{}|{}|{:?}",
            self.tier.name(),
            self.shadow,
            self.overrides
        ))
    }

    /// The sources as [`Good::sources`] names them, parsed back.
    pub fn sources_of(good: &Good) -> Vec<Source> {
        good.sources
            .iter()
            .filter_map(|s| Source::parse(s).ok())
            .collect()
    }
}

/// Where an update's rules come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fetch {
    /// suricata-update, which may answer from its cache of the last 15 minutes.
    Cached,
    /// suricata-update, downloading now (the owner asked).
    Now,
    /// No download: the last ruleset fetched, cut again (the owner changed
    /// a signature's setting, or the profile changed).
    Kept,
}

/// Why an update was not taken.
#[derive(Debug, thiserror::Error)]
pub enum UpdateError {
    /// suricata-update failed (no network, a bad checksum, a corrupt archive…).
    #[error("suricata-update: {0}")]
    Fetch(String),
    /// Its output could not be read, or is larger than the bounds.
    #[error("the merged ruleset: {0}")]
    Read(String),
    /// Nothing usable came out of it.
    #[error("the sources hold no rule this profile loads ({0} read)")]
    Empty(usize),
    /// Asked to cut the kept ruleset again before any was fetched.
    #[error("no ruleset fetched yet: `homewarden signatures update` fetches one")]
    NothingKept,
    /// Suricata refused the result.
    #[error("suricata -T refused the new ruleset: {0}")]
    Test(String),
    /// It does not fit in Suricata's memory budget.
    #[error("the new ruleset does not fit: {0}")]
    Memory(#[from] super::memory::TooBig),
    /// It could not be written.
    #[error("{0}")]
    Write(String),
}

/// The record of the ruleset in force and of the last attempt.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// The ruleset in force, if one was ever taken.
    pub good: Option<Good>,
    /// The last attempt: when, and why it failed (`None`: it succeeded).
    pub last_attempt: Option<Attempt>,
}

/// A ruleset taken.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Good {
    /// When (unix seconds).
    pub at: i64,
    /// The profile it was cut to.
    pub tier: String,
    /// Why that profile.
    pub why: String,
    /// Its sources, as configured.
    pub sources: Vec<String>,
    /// Its counts.
    pub counts: Counts,
    /// Drops were only reported.
    pub shadow: bool,
    /// The cut's fingerprint ([`Plan::cut`]): another one means the kept
    /// ruleset must be cut again.
    #[serde(default)]
    pub cut: u64,
    /// Its `suricata -T` peak (bytes): about what its engine costs.
    #[serde(default)]
    pub test_peak: Option<u64>,
    /// How it must reach Suricata, by Suricata's memory budget.
    #[serde(default)]
    pub way: Way,
}

/// One attempt.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attempt {
    /// When (unix seconds).
    pub at: i64,
    /// Why it was not taken; `None` when it was.
    pub error: Option<String>,
}

impl Record {
    /// The record in `work_dir` (a missing or unreadable one is empty).
    pub fn load(work_dir: &Path) -> Record {
        std::fs::read(work_dir.join(STATE_FILE))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default()
    }

    /// Saves the record in `work_dir`.
    pub fn save(&self, work_dir: &Path) -> Result<(), UpdateError> {
        let bytes =
            serde_json::to_vec_pretty(self).map_err(|e| UpdateError::Write(e.to_string()))?;
        let path = work_dir.join(STATE_FILE);
        crate::fsutil::write_atomic(&path, &bytes)
            .map_err(|e| UpdateError::Write(format!("{}: {e}", path.display())))
    }
}

fn source_arg(s: &Source) -> String {
    match s {
        Source::EtOpen => "etopen".into(),
        Source::Url(u) => u.clone(),
        Source::File(p) => p.display().to_string(),
    }
}

/// Runs one update at `now`; on success the new ruleset is in place (and
/// Suricata must be asked to reload it), on failure the old one still is.
/// Either way the record says how it went.
pub async fn run(paths: &Paths, plan: &Plan, now: i64) -> Result<Good, UpdateError> {
    let mut record = Record::load(&paths.work_dir);
    let in_force = record.good.as_ref().and_then(|g| g.test_peak);
    let result = attempt(paths, plan, now, in_force).await;
    record.last_attempt = Some(Attempt {
        at: now,
        error: result.as_ref().err().map(ToString::to_string),
    });
    if let Ok(good) = &result {
        record.good = Some(good.clone());
    }
    record.save(&paths.work_dir)?;
    result
}

/// One update; `in_force` is the `suricata -T` peak of the ruleset in force.
async fn attempt(
    paths: &Paths,
    plan: &Plan,
    now: i64,
    in_force: Option<u64>,
) -> Result<Good, UpdateError> {
    let write =
        |what: &Path, e: std::io::Error| UpdateError::Write(format!("{}: {e}", what.display()));
    std::fs::create_dir_all(&paths.work_dir).map_err(|e| write(&paths.work_dir, e))?;
    let out = tempdir_in(&paths.work_dir).map_err(|e| write(&paths.work_dir, e))?;
    let result = async {
        let fetched_dir = out.path().join(FETCHED);
        // suricata-update adds ET Open whenever it is given no URL: with
        // only the owner's own files there is nothing to fetch.
        let mut files = match plan.fetch {
            _ if !plan.sources.iter().any(fetched) => Vec::new(),
            Fetch::Kept => {
                let kept = paths.work_dir.join(FETCHED);
                if !kept.exists() {
                    return Err(UpdateError::NothingKept);
                }
                read_rules(&kept)?
            }
            Fetch::Cached | Fetch::Now => {
                std::fs::create_dir(&fetched_dir).map_err(|e| write(&fetched_dir, e))?;
                fetch(paths, plan, &fetched_dir).await?;
                read_rules(&fetched_dir)?
            }
        };
        files.extend(read_local(&plan.sources)?);
        let built = build(&files, plan.tier, &plan.overrides, plan.shadow);
        if built.counts.dropping + built.counts.alerting == 0 {
            return Err(UpdateError::Empty(built.counts.read));
        }
        let candidate = out.path().join(RULES_FILE);
        crate::fsutil::write_atomic(&candidate, built.rules.as_bytes())
            .map_err(|e| write(&candidate, e))?;
        let test_peak = test(paths, &candidate).await?;
        let way = memory::way(memory::read(&paths.cgroup), test_peak, in_force)?;
        // Kept first: the rules in force are always a cut of what is kept.
        if fetched_dir.exists() {
            keep(&paths.work_dir, &fetched_dir).map_err(|e| write(&paths.work_dir, e))?;
        }
        let index =
            serde_json::to_vec(&built.index).map_err(|e| UpdateError::Write(e.to_string()))?;
        let index_path = paths.work_dir.join(INDEX_FILE);
        crate::fsutil::write_atomic(&index_path, &index).map_err(|e| write(&index_path, e))?;
        let target = paths.rules_dir.join(RULES_FILE);
        crate::fsutil::write_atomic(&target, built.rules.as_bytes())
            .map_err(|e| write(&target, e))?;
        Ok(Good {
            at: now,
            tier: plan.tier.name().into(),
            why: plan.why.clone(),
            sources: plan.sources.iter().map(source_arg).collect(),
            counts: built.counts,
            shadow: plan.shadow,
            cut: plan.cut(),
            test_peak: Some(test_peak),
            way,
        })
    }
    .await;
    // `out` goes with its Drop, whatever the outcome.
    result
}

/// Makes `dir` (an update's download, just taken) the kept ruleset: moved
/// beside the work directory under a name of its own, then the [`FETCHED`]
/// link swapped to it in one rename, then the one before removed.
fn keep(work_dir: &Path, dir: &Path) -> std::io::Result<()> {
    let name = format!("{FETCHED}-{}", crate::fsutil::unguessable(8)?);
    std::fs::rename(dir, work_dir.join(&name))?;
    let link = work_dir.join(FETCHED);
    let before = std::fs::read_link(&link).ok();
    let tmp = work_dir.join(format!("{FETCHED}.{}", crate::fsutil::unguessable(8)?));
    std::os::unix::fs::symlink(&name, &tmp)?;
    std::fs::rename(&tmp, &link)?;
    // Only a directory this function made (a bare name beside the link).
    if let Some(old) = before.filter(|b| b.components().count() == 1 && *b != Path::new(&name)) {
        let _ = std::fs::remove_dir_all(work_dir.join(old));
    }
    Ok(())
}

/// A fresh directory in `dir` for one run's output.
fn tempdir_in(dir: &Path) -> std::io::Result<TempDir> {
    let path = dir.join(format!("out-{}", crate::fsutil::unguessable(8)?));
    std::fs::create_dir(&path)?;
    Ok(TempDir(path))
}

/// A directory removed when the run is over.
struct TempDir(PathBuf);

impl TempDir {
    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// suricata-update, told everything on its command line: no config file of
/// its own, no reload and no test of its own (both are ours), one file per
/// ruleset file so each rule keeps its category.
async fn fetch(paths: &Paths, plan: &Plan, out: &Path) -> Result<(), UpdateError> {
    let mut cmd = crate::child::tokio_command("suricata-update");
    cmd.args([
        "--no-reload",
        "--no-test",
        "--no-merge",
        "--fail",
        "-c",
        "/dev/null",
    ])
    .arg("-D")
    .arg(paths.work_dir.join("suricata-update"))
    .arg("-o")
    .arg(out)
    .arg("--suricata-conf")
    .arg(&paths.suricata_yaml);
    if plan.fetch == Fetch::Now {
        cmd.arg("--force");
    }
    for s in plan.sources.iter().filter(|s| fetched(s)) {
        match s {
            Source::EtOpen => {
                cmd.arg("--etopen");
            }
            Source::Url(u) => {
                cmd.arg("--url").arg(u);
            }
            Source::File(p) => {
                cmd.arg("--url").arg(format!("file://{}", p.display()));
            }
        }
    }
    let output = run_bounded(cmd, FETCH_TIMEOUT)
        .await
        .map_err(|e| UpdateError::Fetch(format!("{e}: is Debian's suricata-update installed?")))?
        .map_err(|_| {
            UpdateError::Fetch(format!(
                "no result within {}",
                humantime::format_duration(FETCH_TIMEOUT)
            ))
        })?;
    if !output.status.success() {
        return Err(UpdateError::Fetch(last_error(&output)));
    }
    Ok(())
}

/// A source suricata-update fetches (a ruleset archive or URL); the owner's
/// own `.rules` files are read as they are.
fn fetched(s: &Source) -> bool {
    !matches!(s, Source::File(p) if p.extension().is_some_and(|e| e == "rules"))
}

/// The owner's own `.rules` files, as category [`LOCAL`].
fn read_local(sources: &[Source]) -> Result<Vec<(String, String)>, UpdateError> {
    let mut out = Vec::new();
    for s in sources.iter().filter(|s| !fetched(s)) {
        let Source::File(p) = s else { continue };
        let err = |e: std::io::Error| UpdateError::Read(format!("{}: {e}", p.display()));
        if std::fs::metadata(p).map_err(err)?.len() > MAX_FILE {
            return Err(UpdateError::Read(format!(
                "{}: larger than {} MiB",
                p.display(),
                MAX_FILE >> 20
            )));
        }
        let bytes = std::fs::read(p).map_err(err)?;
        out.push((
            LOCAL.to_string(),
            String::from_utf8_lossy(&bytes).into_owned(),
        ));
    }
    Ok(out)
}

/// Runs a tool to its end or `limit` (then it is killed): `Err` if it could
/// not start, `Ok(Err(()))` if it ran out of time.
async fn run_bounded(
    mut cmd: tokio::process::Command,
    limit: Duration,
) -> Result<Result<std::process::Output, ()>, String> {
    let program = cmd.as_std().get_program().to_string_lossy().into_owned();
    match tokio::time::timeout(limit, cmd.kill_on_drop(true).output()).await {
        Ok(Ok(o)) => Ok(Ok(o)),
        Ok(Err(e)) => Err(format!("cannot run {program} ({e})")),
        Err(_) => Ok(Err(())),
    }
}

/// The line that says why a tool failed: its last error line, else its last line.
fn last_error(o: &std::process::Output) -> String {
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let line = lines
        .iter()
        .rev()
        .find(|l| l.contains("<Error>") || l.starts_with("E:") || l.starts_with("Error"))
        .or(lines.last())
        .copied()
        .unwrap_or("no output");
    let line = line.split("<Error> -- ").last().unwrap_or(line);
    crate::untrusted::inert(line, 300)
}

/// The `.rules` files of suricata-update's output, by name, bounded.
fn read_rules(dir: &Path) -> Result<Vec<(String, String)>, UpdateError> {
    let err = |e: std::io::Error| UpdateError::Read(format!("{}: {e}", dir.display()));
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map_err(err)?
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".rules") && n != RULES_FILE)
        .collect();
    names.sort();
    let mut total = 0;
    let mut out = Vec::with_capacity(names.len());
    for name in names {
        let path = dir.join(&name);
        let len = std::fs::metadata(&path).map_err(err)?.len();
        total += len;
        if len > MAX_FILE || total > MAX_TOTAL {
            return Err(UpdateError::Read(format!(
                "{name}: the ruleset is larger than {} MiB in all or {} MiB a file",
                MAX_TOTAL >> 20,
                MAX_FILE >> 20
            )));
        }
        let bytes = std::fs::read(&path).map_err(err)?;
        if let Some(category) = super::rule::category(&name) {
            out.push((
                category.to_string(),
                String::from_utf8_lossy(&bytes).into_owned(),
            ));
        }
    }
    Ok(out)
}

/// `suricata -T` on the candidate alone, with the appliance's own config:
/// every rule must load. Its peak memory (bytes) is about what the new
/// engine costs.
async fn test(paths: &Paths, candidate: &Path) -> Result<u64, UpdateError> {
    let log = candidate.with_file_name("test-log");
    std::fs::create_dir_all(&log).map_err(|e| UpdateError::Test(e.to_string()))?;
    let mut cmd = crate::child::command("suricata");
    cmd.arg("-T")
        .arg("-v")
        .arg("-c")
        .arg(&paths.suricata_yaml)
        .arg("--include")
        .arg(&paths.include)
        .arg("-S")
        .arg(candidate)
        .arg("-l")
        .arg(&log);
    let measured =
        tokio::task::spawn_blocking(move || crate::child::run_measured(cmd, TEST_TIMEOUT))
            .await
            .map_err(|e| UpdateError::Test(e.to_string()))?
            .map_err(UpdateError::Test)?;
    let Some(output) = measured.output else {
        return Err(UpdateError::Test(format!(
            "no verdict within {}",
            humantime::format_duration(TEST_TIMEOUT)
        )));
    };
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let failed = text
        .lines()
        .find(|l| l.contains("rules successfully loaded"))
        .is_some_and(|l| !l.contains(" 0 rules failed"));
    use std::os::unix::process::ExitStatusExt;
    if output.status.signal() == Some(libc::SIGKILL) {
        return Err(UpdateError::Test(format!(
            "killed after {} MiB (the kernel, out of memory: the agent's unit's MemoryMax= bounds the test); a smaller profile (`signatures.profile: core`) fits",
            measured.peak >> 20
        )));
    }
    if !output.status.success() || failed {
        return Err(UpdateError::Test(last_error(&output)));
    }
    Ok(measured.peak)
}

/// The index of the ruleset in force (empty if none).
pub fn load_index(work_dir: &Path) -> std::collections::BTreeMap<u64, Entry> {
    std::fs::read(work_dir.join(INDEX_FILE))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}
