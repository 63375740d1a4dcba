use std::sync::{Arc, Mutex};

use crate::signatures::update::Paths;

use super::*;
use crate::signatures::policy::Overrides;
use crate::signatures::Counts;

const DAY: Duration = Duration::from_secs(86_400);

fn good(at: i64) -> Good {
    Good {
        at,
        tier: "home".into(),
        why: "test".into(),
        sources: vec!["etopen".into()],
        counts: Counts {
            dropping: 3,
            alerting: 7,
            ..Counts::default()
        },
        shadow: false,
        cut: 0,
        test_peak: Some(300 << 20),
        way: Way::Live,
    }
}

#[test]
fn the_schedule_waits_an_interval_and_backs_off_after_failures() {
    let none = Record::default();
    assert_eq!(
        next_due(&none, DAY, 0, 1_000, 0.0),
        1_060,
        "first boot: a minute"
    );
    let taken = Record {
        good: Some(good(1_000)),
        last_attempt: None,
    };
    assert_eq!(next_due(&taken, DAY, 0, 2_000, 0.0), 1_000 + 86_400);
    // Up to a tenth of the interval later, by this appliance's own draw.
    assert_eq!(next_due(&taken, DAY, 0, 2_000, 0.5), 1_000 + 86_400 + 4_320);
    // Overdue (the Pi was off): now.
    assert_eq!(next_due(&taken, DAY, 0, 200_000, 0.0), 200_000);
    // Failures: 15 min, 30 min, 1 h… at most 6 h and never past the interval.
    let after = |n| next_due(&taken, DAY, n, 10_000, 0.0) - 10_000;
    assert_eq!([after(1), after(2), after(3)], [900, 1_800, 3_600]);
    assert_eq!(after(10), 6 * 3600);
    assert_eq!(next_due(&taken, Duration::from_secs(3600), 5, 0, 0.0), 3600);
}

/// An owner whose updates and reloads are recorded stand-ins.
struct Harness {
    plans: Arc<Mutex<Vec<Plan>>>,
    /// How each reload was asked for.
    reloads: Arc<Mutex<Vec<Way>>>,
    _dir: tempfile::TempDir,
    settings: Settings,
}

fn harness(tier: Tier, fail: bool) -> Harness {
    harness_taking(tier, fail, Way::Live)
}

/// One whose updates, when they succeed, must reach Suricata by `way`.
fn harness_taking(tier: Tier, fail: bool, way: Way) -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let plans: Arc<Mutex<Vec<Plan>>> = Arc::default();
    let reloads: Arc<Mutex<Vec<Way>>> = Arc::default();
    let (p, r) = (plans.clone(), reloads.clone());
    let work_dir = dir.path().join("signatures");
    let record_dir = work_dir.clone();
    let settings = Settings {
        paths: Paths {
            rules_dir: dir.path().join("rules"),
            work_dir,
            suricata_yaml: "/nonexistent".into(),
            include: "/nonexistent".into(),
            cgroup: "/nonexistent".into(),
        },
        plan: Plan {
            sources: vec![Source::EtOpen],
            tier,
            why: "test".into(),
            overrides: Overrides::default(),
            shadow: false,
            fetch: Fetch::Cached,
        },
        every: DAY,
        updater: Arc::new(move |plan, now| {
            let cut = plan.cut();
            p.lock().unwrap().push(plan);
            let dir = record_dir.clone();
            Box::pin(async move {
                // As long as a download and a -T take.
                tokio::time::sleep(Duration::from_secs(30)).await;
                let result = if fail {
                    Err(UpdateError::Fetch("no network".into()))
                } else {
                    Ok(Good {
                        cut,
                        way,
                        ..good(now)
                    })
                };
                // The real update records its outcome; so does this one.
                std::fs::create_dir_all(&dir).unwrap();
                let record = Record {
                    good: result.as_ref().ok().cloned(),
                    last_attempt: None,
                };
                std::fs::write(
                    dir.join(update::STATE_FILE),
                    serde_json::to_vec(&record).unwrap(),
                )
                .unwrap();
                result
            })
        }),
        reload: Arc::new(move |way| {
            r.lock().unwrap().push(way);
            Box::pin(async { Ok(()) })
        }),
    };
    Harness {
        plans,
        reloads,
        _dir: dir,
        settings,
    }
}

/// The owner running, its inbox and the stop that ends it.
fn start(
    h: &Harness,
) -> (
    crate::daemon::shutdown::Stopper,
    mpsc::Sender<Msg>,
    tokio::task::JoinHandle<()>,
) {
    start_with(h.settings.clone())
}

/// The owner running with `settings`.
fn start_with(
    settings: Settings,
) -> (
    crate::daemon::shutdown::Stopper,
    mpsc::Sender<Msg>,
    tokio::task::JoinHandle<()>,
) {
    let stopper = crate::daemon::shutdown::Stopper::default();
    let (tx, inbox) = mpsc::channel(4);
    let task = tokio::spawn(Signatures::new(settings).run(inbox, stopper.handle()));
    (stopper, tx, task)
}

/// Asks for an update (from `source` alone if given) and waits for it.
async fn update(tx: &mpsc::Sender<Msg>, source: Option<Source>) -> Result<Good, String> {
    crate::daemon::ask(tx, |reply| Msg::Update { source, reply })
        .await
        .unwrap()
}

async fn status(tx: &mpsc::Sender<Msg>) -> SignaturesStatus {
    crate::daemon::ask(tx, Msg::Status).await.unwrap()
}

#[tokio::test(start_paused = true)]
async fn an_update_runs_beside_the_loop_and_suricata_reloads_what_was_taken() {
    let h = harness(Tier::Home, false);
    let (stopper, tx, task) = start(&h);
    let st = status(&tx).await;
    assert_eq!((st.tier.as_str(), st.updating), ("home", false));
    assert!(st.next_at.is_some());
    // Asked for: it runs, and status answers meanwhile.
    let (reply, answer) = oneshot::channel();
    tx.send(Msg::Update {
        source: None,
        reply,
    })
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(status(&tx).await.updating);
    let taken = answer.await.unwrap().unwrap();
    assert_eq!(taken.counts.dropping, 3);
    assert_eq!(*h.reloads.lock().unwrap(), [Way::Live]);
    assert!(
        h.plans.lock().unwrap()[0].fetch == Fetch::Now,
        "asked: fetched whatever the cache says"
    );
    let st = status(&tx).await;
    assert!(!st.updating && st.record.good.is_some());
    // The next one a day on (and a bit).
    let next = st.next_at.unwrap();
    assert!(
        next >= taken.at + 86_400 && next <= taken.at + 86_400 + 8_640,
        "{next}"
    );
    stopper.stop().await;
    task.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_failed_update_keeps_what_is_in_force_and_is_tried_again_later() {
    let h = harness(Tier::Home, true);
    let (stopper, tx, task) = start(&h);
    let e = update(&tx, None).await.unwrap_err();
    assert!(e.contains("no network"), "{e}");
    assert_eq!(h.reloads.lock().unwrap().len(), 0, "nothing new to load");
    let next = status(&tx).await.next_at.unwrap();
    let now = unix_now() as i64;
    assert!(
        next >= now + 800 && next <= now + 1_000,
        "retried in 15 minutes: {next} at {now}"
    );
    stopper.stop().await;
    task.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn with_signatures_off_nothing_runs_and_a_ruleset_taken_before_is_unloaded() {
    let h = harness(Tier::Off, false);
    // A ruleset taken while signatures were on.
    let work_dir = &h.settings.paths.work_dir;
    std::fs::create_dir_all(work_dir).unwrap();
    let before = Record {
        good: Some(good(1_000)),
        last_attempt: None,
    };
    before.save(work_dir).unwrap();
    std::fs::create_dir_all(&h.settings.paths.rules_dir).unwrap();
    let (stopper, tx, task) = start(&h);
    assert_eq!(status(&tx).await.next_at, None);
    tokio::time::sleep(DAY * 2).await;
    assert!(h.plans.lock().unwrap().is_empty(), "no scheduled update");
    let rules = h
        .settings
        .paths
        .rules_dir
        .join(crate::signatures::RULES_FILE);
    assert_eq!(
        std::fs::read_to_string(rules).unwrap(),
        crate::signatures::EMPTY
    );
    assert_eq!(h.reloads.lock().unwrap().len(), 1, "Suricata unloads it");
    assert_eq!(status(&tx).await.record.good, None);
    let e = update(&tx, None).await.unwrap_err();
    assert!(e.contains("signatures are off"), "{e}");
    // Not even a ruleset the owner hands over: off is off.
    let local = Source::File("/etc/homewarden/local.rules".into());
    let e = update(&tx, Some(local)).await.unwrap_err();
    assert!(e.contains("set signatures.profile"), "{e}");
    assert!(h.plans.lock().unwrap().is_empty());
    stopper.stop().await;
    task.await.unwrap();
}

async fn set(
    tx: &mpsc::Sender<Msg>,
    target: &str,
    setting: Option<Setting>,
) -> Result<SetReply, String> {
    let target = Target::parse(target).unwrap();
    let word = Word::Set { target, setting };
    crate::daemon::ask(tx, |reply| Msg::Set { word, reply })
        .await
        .unwrap()
}

#[tokio::test(start_paused = true)]
async fn the_owners_word_cuts_the_kept_ruleset_again_and_is_kept_until_reset() {
    let h = harness(Tier::Home, false);
    let (stopper, tx, task) = start(&h);
    // Before any ruleset: kept for the first one, nothing runs.
    let r = set(&tx, "2030000", Some(Setting::Alert)).await.unwrap();
    assert_eq!((r.taken, r.setting), (None, Some(Setting::Alert)));
    assert!(h.plans.lock().unwrap().is_empty());
    update(&tx, None).await.unwrap();
    assert_eq!(
        h.plans.lock().unwrap()[0].overrides.sids[&2_030_000],
        Setting::Alert
    );
    // With one in force: cut again from what was kept, and reloaded.
    let r = set(&tx, "Policy", Some(Setting::Drop)).await.unwrap();
    assert!(r.taken.is_some() && r.explained.is_none());
    {
        let plans = h.plans.lock().unwrap();
        assert_eq!(plans.len(), 2);
        assert_eq!(plans[1].fetch, Fetch::Kept, "no download");
        assert_eq!(plans[1].overrides.categories["policy"], Setting::Drop);
    }
    assert_eq!(h.reloads.lock().unwrap().len(), 2);
    // The same word again: nothing to do.
    set(&tx, "policy", Some(Setting::Drop)).await.unwrap();
    assert_eq!(h.plans.lock().unwrap().len(), 2);
    // A word while an update runs: cut again once it is done.
    let (reply, _answer) = oneshot::channel();
    tx.send(Msg::Update {
        source: None,
        reply,
    })
    .await
    .unwrap();
    let r = set(&tx, "2030000", None).await.unwrap();
    assert!(r.taken.is_some());
    {
        let plans = h.plans.lock().unwrap();
        assert_eq!(plans.len(), 4);
        assert_eq!((plans[2].fetch, plans[3].fetch), (Fetch::Now, Fetch::Kept));
        assert!(!plans[3].overrides.sids.contains_key(&2_030_000), "reset");
    }
    let st = status(&tx).await;
    assert_eq!(st.word.categories["policy"], Setting::Drop);
    assert!(st.word.sids.is_empty());
    stopper.stop().await;
    task.await.unwrap();
    // Kept across a restart; the cut is the same, so nothing runs at start.
    let (stopper, tx, task) = start(&h);
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(status(&tx).await.word.categories["policy"], Setting::Drop);
    assert_eq!(h.plans.lock().unwrap().len(), 4);
    stopper.stop().await;
    task.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn another_profile_at_start_cuts_the_kept_ruleset_again() {
    let h = harness(Tier::Home, false);
    let (stopper, tx, task) = start(&h);
    update(&tx, None).await.unwrap();
    stopper.stop().await;
    task.await.unwrap();
    let mut full = h.settings.clone();
    full.plan.tier = Tier::Full;
    let (stopper, tx, task) = start_with(full);
    tokio::time::sleep(Duration::from_secs(40)).await;
    {
        let plans = h.plans.lock().unwrap();
        assert_eq!(plans.len(), 2);
        assert_eq!((plans[1].fetch, plans[1].tier), (Fetch::Kept, Tier::Full));
    }
    assert_eq!(status(&tx).await.record.good.unwrap().cut, {
        let mut p = h.settings.plan.clone();
        p.tier = Tier::Full;
        p.cut()
    });
    stopper.stop().await;
    task.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn the_schedule_runs_the_first_update_soon_after_a_first_start() {
    let h = harness(Tier::Home, false);
    let (stopper, tx, task) = start(&h);
    tokio::time::sleep(Duration::from_secs(30)).await;
    assert!(h.plans.lock().unwrap().is_empty());
    tokio::time::sleep(Duration::from_secs(100)).await;
    assert_eq!(h.plans.lock().unwrap().len(), 1);
    assert!(
        h.plans.lock().unwrap()[0].fetch == Fetch::Cached,
        "scheduled: suricata-update's cache counts"
    );
    assert_eq!(h.reloads.lock().unwrap().len(), 1);
    assert!(status(&tx).await.record.good.is_some());
    stopper.stop().await;
    task.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_ruleset_too_big_to_reload_beside_the_old_one_restarts_suricata() {
    let h = harness_taking(Tier::Full, false, Way::Restart);
    let (stopper, tx, task) = start(&h);
    let taken = update(&tx, None).await.unwrap();
    assert_eq!(taken.way, Way::Restart);
    assert_eq!(
        *h.reloads.lock().unwrap(),
        [Way::Restart],
        "not a live reload"
    );
    assert_eq!(status(&tx).await.record.good.unwrap().way, Way::Restart);
    stopper.stop().await;
    task.await.unwrap();
}
