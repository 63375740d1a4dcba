//! Syncs: pulling the sources (in the background, one generation at a time),
//! settling the effective set, and enforcing it on Suricata.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

use tokio::time::Instant;

use crate::config::{Config, SourceConfig};
use crate::enforce::firewall::{conntrack, names};
use crate::enforce::suricata::apply::{Applier, ApplyReport, Live};
use crate::enforce::suricata::render::{self, Options};
use crate::enforce::suricata::selftest;
use crate::intel::ioc::Domain;
use crate::intel::set::{Allowlist, Dropped, Effective, Guard, SourceSet};
use crate::intel::{
    feed, list, misp, unix_now, Cursor, IntelError, PullStats, Pulled, SourceState,
};
use crate::secrets::Secrets;

use super::prepare::{Prepare, Prepared};
use super::verify::probes;
use super::{
    counts, live_name, open::build_client, Agent, Client, Counts, PullDone, Source, SyncReport,
    FIRST_RETRY, RELOAD_SETTLE,
};

impl Agent {
    /// Starts pulling every source in the background, one after the other as
    /// `sync --once` always did; scheduled pulls in flight are stopped (the
    /// sync's are newer) and none start until it is done.
    pub(super) fn start_sync(
        &mut self,
        syncs: &mut tokio::task::JoinSet<Vec<PullDone>>,
        scheduled: &mut HashMap<usize, tokio::task::AbortHandle>,
    ) {
        for (_, task) in scheduled.drain() {
            task.abort();
        }
        let jobs: Vec<_> = self
            .sources
            .iter_mut()
            .enumerate()
            .map(|(i, src)| {
                src.pulling = true;
                (
                    i,
                    src.cfg.clone(),
                    src.client.clone(),
                    src.state.set.clone(),
                    src.state.cursor.clone(),
                    src.generation,
                )
            })
            .collect();
        syncs.spawn(async move {
            let mut done = Vec::new();
            for (i, cfg, client, set, cursor, generation) in jobs {
                let started = std::time::Instant::now();
                let result = pull_from(&cfg, &client, &set, &cursor).await;
                done.push((i, generation, result, started));
            }
            done
        });
    }

    /// Takes a sync's results and applies them: the report `sync` prints.
    pub(super) async fn finish_sync(
        &mut self,
        done: Result<Vec<PullDone>, tokio::task::JoinError>,
    ) -> SyncReport {
        let mut report = SyncReport::default();
        let mut changed = false;
        match done {
            Ok(results) => {
                for (i, generation, result, started) in results {
                    let error = result.as_ref().err().map(|e| e.to_string());
                    changed |= self.take_pull(i, generation, result, started).await;
                    let error = error.or_else(|| self.sources[i].held.clone());
                    report
                        .sources
                        .push((self.sources[i].cfg.name().to_string(), error));
                }
            }
            Err(e) => {
                tracing::error!("sync task failed: {e}");
                report.sources = self
                    .sources
                    .iter()
                    .map(|s| (s.cfg.name().to_string(), Some(format!("sync failed: {e}"))))
                    .collect();
            }
        }
        // Whatever came of it, every source is free for its schedule again.
        for src in &mut self.sources {
            src.pulling = false;
        }
        self.enforce_into(report, changed).await
    }

    /// Pulls every source once and applies (the `sync --once` path).
    pub async fn sync_once(&mut self, accept_shrink: &[String]) -> SyncReport {
        self.accept_shrink.extend(accept_shrink.iter().cloned());
        let all: Vec<usize> = (0..self.sources.len()).collect();
        self.pull_and_enforce(&all).await
    }

    pub(super) async fn pull_and_enforce(&mut self, idx: &[usize]) -> SyncReport {
        let mut report = SyncReport::default();
        let mut changed = false;
        for &i in idx {
            let started = std::time::Instant::now();
            let result = pull(&self.sources[i]).await;
            let error = result.as_ref().err().map(|e| e.to_string());
            changed |= self.settle(i, result, started).await;
            let error = error.or_else(|| self.sources[i].held.clone());
            report
                .sources
                .push((self.sources[i].cfg.name().to_string(), error));
        }
        self.enforce_into(report, changed).await
    }

    /// Ends a sync: enforces what changed (recording how in the report), or just
    /// publishes the sources' new state.
    pub(super) async fn enforce_into(
        &mut self,
        mut report: SyncReport,
        changed: bool,
    ) -> SyncReport {
        if changed {
            match self.enforce().await {
                Ok(r) => report.apply = Some(r),
                Err(e) => report.apply_error = Some(e),
            }
        } else {
            self.publish();
        }
        report
    }

    /// Takes a background pull's result, unless a newer pull was taken since it
    /// started; true if the state changed (and needs enforcing).
    pub(super) async fn take_pull(
        &mut self,
        i: usize,
        generation: u64,
        result: Result<Pulled, IntelError>,
        started: std::time::Instant,
    ) -> bool {
        self.sources[i].pulling = false;
        if self.sources[i].generation != generation {
            tracing::info!(source = %self.sources[i].cfg.name(), "a newer pull was taken meanwhile; this one is dropped");
            return false;
        }
        self.settle(i, result, started).await
    }

    /// Takes a pull's result into the source's state and schedules its next
    /// pull; true if the state changed (and needs enforcing).
    pub(super) async fn settle(
        &mut self,
        i: usize,
        result: Result<Pulled, IntelError>,
        started: std::time::Instant,
    ) -> bool {
        let others: usize = (self.sources.iter().enumerate())
            .filter(|(j, _)| *j != i)
            .map(|(_, s)| s.state.set.len())
            .sum();
        let budget = self.budget;
        let src = &mut self.sources[i];
        let name = src.cfg.name().to_string();
        src.generation += 1;
        src.pulls.last_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        match result {
            Ok(pulled) if matches!(pulled.change, crate::intel::Change::Unchanged) => {
                // Nothing to index, save or enforce: the set in force is this content's.
                // An acceptance is used up here too: there is no shrink left to accept,
                // and a later one must be accepted on its own.
                self.accept_shrink.remove(&name);
                src.pulls.unchanged += 1;
                src.state.apply(pulled, unix_now());
                src.held = None;
                src.answered();
                tracing::info!(source = %name, entries = src.state.set.len(), ms = started.elapsed().as_millis() as u64, "unchanged since the last pull");
                false
            }
            Ok(mut pulled) => {
                let accepted = self.accept_shrink.remove(&name);
                // Guarded: what sees a source whole (a list, a MISP full pull) and
                // a feed, whose manifest decides which events stay. MISP's
                // incremental pulls remove only what MISP says was deleted.
                let guarded = matches!(pulled.change, crate::intel::Change::Replace(_))
                    || matches!(src.cfg, SourceConfig::MispFeed(_));
                let held = (guarded && !accepted)
                    .then(|| {
                        crate::intel::shrink_held(
                            src.state.set.len(),
                            pulled.change.size_after(&src.state.set),
                            self.cfg.enforcement.max_shrink,
                        )
                    })
                    .flatten();
                if let Some(why) = held {
                    src.pulls.held += 1;
                    let why = format!("held: {why}; the last good set stays in force (`homewarden sync --accept-shrink {name}` takes the new one)");
                    tracing::warn!(source = %name, "{why}");
                    src.answered();
                    let first = src.held.replace(why.clone()).is_none();
                    if first {
                        self.queue_notice(
                            &format!("Source {name} held: a pull lost most of its indicators"),
                            &format!("A pull of the source {name} {}.\n\nAn emptied list, a feed server answering with an empty page or a MISP query gone wrong look like this. If the shrink is what you want, run `sudo homewarden sync --accept-shrink {name}`; until then nothing is lifted. You get no more mail about it while it stays this way.\n", why.trim_start_matches("held: ")),
                        );
                    }
                    return false;
                }
                src.held = None;
                src.pulls.taken += 1;
                // What all sources hold stays within the budget: what would pass
                // it is not taken, and is counted.
                let over = pulled
                    .change
                    .fit(&src.state.set, budget.saturating_sub(others));
                pulled.stats.over_budget = over as u64;
                if over > 0 {
                    // Read whole again next time: the budget may have room then.
                    pulled.cursor.list = None;
                    tracing::warn!(source = %name, over, budget, "indicators over the budget (limits.indicators) not taken");
                }
                let tell_expiry = self.cfg.enforcement.expiration_sightings
                    && matches!(src.cfg, SourceConfig::Misp(_));
                // Indexing a million entries and saving them take seconds: on a
                // blocking thread, the source's state lent to it meanwhile.
                let (store, mut state) = (self.store.clone(), std::mem::take(&mut src.state));
                let job = {
                    let name = name.clone();
                    move || {
                        let before = tell_expiry.then(|| attribute_uuids(&state.set));
                        state.apply(pulled, unix_now());
                        let expired: Vec<(String, String)> = match before {
                            Some(before) => {
                                let after = attribute_uuids(&state.set);
                                before
                                    .into_iter()
                                    .filter(|a| !after.contains(a))
                                    .map(|a| (name.clone(), a))
                                    .collect()
                            }
                            None => Vec::new(),
                        };
                        let saved = store.save(&name, &state);
                        (state, expired, saved)
                    }
                };
                let (state, expired, saved) = match tokio::task::spawn_blocking(job).await {
                    Ok(done) => done,
                    // A bug: the agent goes down as it would have in the loop, and
                    // comes back from the store. Cancelled: the runtime is stopping.
                    Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
                    Err(_) => return false,
                };
                let src = &mut self.sources[i];
                src.state = state;
                src.answered();
                tracing::info!(source = %name, entries = src.state.set.len(), ms = started.elapsed().as_millis() as u64, "pulled");
                if let Err(e) = saved {
                    tracing::error!("intel store: {e}");
                }
                self.queue_expirations(&expired);
                true
            }
            Err(e) => {
                src.pulls.failed += 1;
                src.failures += 1;
                let wait = retry_delay(src.failures, src.cfg.interval());
                src.next = Instant::now() + wait;
                tracing::warn!(source = %name, retry_in = ?wait, "pull failed, keeping the last good set: {e}");
                src.state.last_error = Some(e.to_string());
                false
            }
        }
    }

    /// Renders the effective set and applies it. Building the set, rendering
    /// and writing the files (seconds for a million indicators) run on a
    /// blocking thread: the runtime's workers stay free for the alert path.
    pub(super) async fn enforce(&mut self) -> Result<ApplyReport, String> {
        // Every change of a source's set comes through here: incidents trace
        // their hits in the new sets from now on, whatever the apply costs.
        self.publish_index();
        let started = std::time::Instant::now();
        let allow = match self.cfg.allowlist() {
            Ok(mut a) => {
                let (nets, domains) = self.local_allow.targets();
                a.extend(nets, domains);
                a
            }
            Err(e) => return Err(e.to_string()),
        };
        let global = self.cfg.enforcement.shadow;
        let work = Prepare {
            sources: self
                .sources
                .iter()
                .map(|s| (s.state.set.clone(), s.cfg.shadow(global)))
                .collect(),
            allow,
            limits: self.cfg.expand_limits(),
            lists: self.warninglists.clone(),
            shadow: self.shadow.clone(),
            options: Options::from(&self.cfg),
            bad_rendering: self.bad_rendering,
            applier: self.applier.clone(),
        };
        let within = super::loop_within(&self.cfg);
        let applier = self.applier.clone();
        let result = self
            .heart
            .busy(super::APPLY_BOUND, within, async move {
                let mut p = tokio::task::spawn_blocking(move || work.run())
                    .await
                    .map_err(|e| format!("rendering failed: {e}"))?;
                let told = match p.written.take() {
                    Some(Ok(w)) => Some(applier.tell(w).await),
                    Some(Err(e)) => Some(Err(e)),
                    None => None,
                };
                Ok::<_, String>((p, told))
            })
            .await;
        let (p, told) = result?;
        let Prepared {
            eff,
            allow,
            dropped,
            ..
        } = p;
        self.status.shadow = p.shadow;
        // What the owner's sources list: the canary is ours, not theirs.
        self.status.blocklist = counts(&eff);
        if eff.ipv4.binary_search(&selftest::CANARY).is_ok() {
            self.status.blocklist.ipv4 -= 1;
        }
        self.probes = probes(
            &eff,
            &self.local_allow,
            self.cfg.enforcement.match_subdomains,
        );
        let Some(result) = told else {
            tracing::warn!("this rendering failed its self-test before; the last good one stays");
            self.publish();
            return Ok(ApplyReport {
                added: 0,
                removed: 0,
                files_written: 0,
                live: Live::Unchanged,
            });
        };
        self.status.dropped = dropped;
        self.applied = Some(p.fingerprint);
        let s = &mut self.status.suricata;
        let n = &mut s.applies;
        n.last_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        let count = match &result {
            Ok(r) => match r.live {
                Live::Delta => &mut n.delta,
                Live::Reload => &mut n.reload,
                Live::Unchanged => &mut n.unchanged,
                Live::SuricataDown(_) => &mut n.suricata_down,
            },
            Err(_) => &mut n.failed,
        };
        *count += 1;
        let out = match result {
            Ok(r) => {
                // Prove the change: at once after a delta, once a reload has had time to land.
                match r.live {
                    Live::Delta => self.selftest_due = Some((unix_now(), false)),
                    Live::Reload => self.selftest_due = Some((unix_now() + RELOAD_SETTLE, true)),
                    _ => {}
                }
                if r.live != Live::Unchanged {
                    s.last_change = Some(unix_now());
                    s.last_live = Some(live_name(&r.live).to_string());
                    s.last_added = r.added;
                    s.last_removed = r.removed;
                    s.reachable = !matches!(r.live, Live::SuricataDown(_));
                    tracing::info!(
                        added = r.added,
                        removed = r.removed,
                        live = live_name(&r.live),
                        "blocklist applied"
                    );
                }
                s.last_error = None;
                // A new wide network is in the rules, not a list: a reload
                // with wide networks may have added one.
                let wide_maybe_added = matches!(r.live, Live::Reload) && !eff.wide.is_empty();
                if (r.added > 0 || wide_maybe_added) && self.cfg.suricata.flow_bypass {
                    let by_name = self.addresses_of_listed_names(&eff, &allow).await;
                    cut_listed(&eff, &by_name).await;
                }
                Ok(r)
            }
            Err(e) => {
                tracing::error!("cannot write suricata files: {e}");
                s.last_error = Some(e.to_string());
                Err(e.to_string())
            }
        };
        self.publish();
        drop((eff, allow));
        tokio::task::spawn_blocking(crate::daemon::memory::give_back);
        out
    }

    /// The addresses that names now blocked resolved to, from the book of
    /// Suricata's DNS answers (each name once a listing); never an address
    /// the allowlist keeps (the home's own, the gateway, the resolvers).
    async fn addresses_of_listed_names(&self, eff: &Effective, allow: &Allowlist) -> Vec<IpAddr> {
        let Some(book) = &self.names else {
            return Vec::new();
        };
        let (tx, rx) = tokio::sync::oneshot::channel();
        if book.send(names::Msg::Pending(tx)).await.is_err() {
            return Vec::new();
        }
        let Ok(pending) = rx.await else {
            return Vec::new();
        };
        let subdomains = self.cfg.enforcement.match_subdomains;
        let (listed, addrs): (Vec<Domain>, Vec<Vec<IpAddr>>) = pending
            .into_iter()
            .filter(|(name, _)| {
                render::blocks_name(&eff.domains, allow.domains(), name, subdomains)
            })
            .unzip();
        if listed.is_empty() {
            return Vec::new();
        }
        tracing::info!(
            names = listed.len(),
            "names now listed that devices resolved: cutting their flows"
        );
        let _ = book.send(names::Msg::MarkCut(listed)).await;
        let mut addrs: Vec<IpAddr> = addrs
            .into_iter()
            .flatten()
            .filter(|a| !allow.allows_ip(*a))
            .collect();
        addrs.sort_unstable();
        addrs.dedup();
        addrs
    }
}

/// Wait before retrying a source after its `failures`-th failure in a row:
/// 15 s, 30 s, 60 s… but never longer than its interval.
pub(super) fn retry_delay(failures: u32, interval: Duration) -> Duration {
    let doublings = failures.clamp(1, 11) - 1;
    FIRST_RETRY.saturating_mul(1 << doublings).min(interval)
}

/// The MISP attribute uuids a set holds.
pub(super) fn attribute_uuids(set: &crate::intel::set::SourceSet) -> HashSet<String> {
    set.entries()
        .filter_map(|e| set.attribute_of(e).map(str::to_string))
        .collect()
}

pub(super) async fn pull(src: &Source) -> Result<Pulled, IntelError> {
    pull_from(&src.cfg, &src.client, &src.state.set, &src.state.cursor).await
}

/// Pulls a source from what it held (its set and incremental cursor).
pub(super) async fn pull_from(
    cfg: &SourceConfig,
    client: &Client,
    set: &SourceSet,
    cursor: &Cursor,
) -> Result<Pulled, IntelError> {
    let now = unix_now();
    match (cfg, client) {
        (SourceConfig::Misp(m), Client::Misp(c)) => {
            misp::pull(m.query(), c, set, cursor, now).await
        }
        (SourceConfig::MispFeed(f), Client::Feed(loc, fetch)) => {
            feed::pull(&f.name, loc, set, f.max_age, fetch, now).await
        }
        (SourceConfig::List(l), Client::List(loc, fetch)) => {
            list::pull(&l.name, loc, &l.layout(), fetch, cursor).await
        }
        _ => Err(IntelError::Config("source and client disagree".into())),
    }
}

/// Pulls the given sources once and writes the rendering to `out`, touching no Suricata.
pub async fn render_offline(
    cfg: &Config,
    secrets: &Secrets,
    out: &Path,
) -> anyhow::Result<(Counts, Dropped, Vec<(String, PullStats)>)> {
    let mut stats = Vec::new();
    let mut states = Vec::new();
    for sc in &cfg.sources {
        let client = build_client(sc, secrets, &cfg.limits)
            .map_err(|e| anyhow::anyhow!("source {:?}: {e}", sc.name()))?;
        let src = Source {
            cfg: sc.clone(),
            client,
            state: SourceState::default(),
            next: Instant::now(),
            failures: 0,
            pulling: false,
            generation: 0,
            held: None,
            pulls: Default::default(),
        };
        let pulled = pull(&src)
            .await
            .map_err(|e| anyhow::anyhow!("source {:?}: {e}", sc.name()))?;
        let mut st = SourceState::default();
        stats.push((sc.name().to_string(), pulled.stats.clone()));
        st.apply(pulled, unix_now());
        states.push(st);
    }
    let allow = cfg.allowlist()?;
    let lists = cfg.warninglists.load(&cfg.state_dir);
    for p in &lists.problems {
        tracing::warn!("{p}");
    }
    let guard = Guard {
        allow: &allow,
        limits: cfg.expand_limits(),
        lists: &lists,
    };
    let (eff, dropped) = Effective::build(states.iter().map(|s| &*s.set), guard);
    let rendered = render::render(&eff, None, allow.domains(), &Options::from(cfg));
    Applier::new(out, None, Duration::from_secs(1))
        .apply(&rendered)
        .await?;
    Ok((counts(&eff), dropped, stats))
}

/// Cuts the flows whose remote is now listed, or went to an address a now
/// listed name resolved to (`by_name`, sorted): Suricata never sees the
/// ones it bypassed again, so only the kernel can stop them.
async fn cut_listed(eff: &Effective, by_name: &[IpAddr]) {
    let listed = |a: IpAddr| eff.contains_ip(a) || by_name.binary_search(&a).is_ok();
    let listed = match conntrack::touching(listed).await {
        Ok(f) => f,
        Err(e) => {
            tracing::warn!("cannot list the kernel's flows (to cut listed ones): {e}");
            return;
        }
    };
    if listed.is_empty() {
        return;
    }
    let n = conntrack::cut(&listed).await;
    tracing::info!(
        cut = n,
        of = listed.len(),
        "flows to newly listed addresses cut"
    );
}
