use super::sync::pull;
use super::*;

fn agent_in(dir: &std::path::Path, factory: Option<&str>) -> Agent {
    let d = dir.display();
    if let Some(text) = factory {
        std::fs::write(dir.join("factory.yaml"), text).unwrap();
    }
    let cfg = dir.join("homewarden.yaml");
    std::fs::write(
        &cfg,
        format!(
            "state_dir: {d}/state\nenforcement: {{ mode: ids }}\n\
             panel: {{ factory_config: {d}/factory.yaml }}\n"
        ),
    )
    .unwrap();
    std::fs::create_dir_all(dir.join("state/intel")).unwrap();
    std::fs::write(dir.join("state/intel/misp.json"), "{}").unwrap();
    std::fs::write(dir.join("state/acks.json"), "[]").unwrap();
    std::fs::write(dir.join("state/devices.json"), "{}").unwrap();
    Agent::open(Config::load(&cfg).unwrap(), &Secrets::default()).unwrap()
}

#[tokio::test]
async fn factory_reset_clears_state_and_has_the_config_restored_at_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut agent = agent_in(dir.path(), Some("# factory defaults\n"));
    assert_eq!(
        agent.on_button(ButtonAction::FactoryReset).await,
        Exit::Restart
    );
    assert!(!dir.path().join("state/intel").exists());
    assert!(!dir.path().join("state/acks.json").exists());
    assert!(!dir.path().join("state/devices.json").exists());
    // What the unit's root step does before the restart.
    let cfg = dir.path().join("homewarden.yaml");
    let restored = crate::appliance::factory::apply_pending(
        &agent.cfg.state_dir,
        &cfg,
        &dir.path().join("factory.yaml"),
    );
    assert_eq!(
        restored.unwrap(),
        crate::appliance::factory::Applied::Restored
    );
    assert_eq!(
        std::fs::read_to_string(cfg).unwrap(),
        "# factory defaults\n"
    );
}

#[tokio::test]
async fn a_failed_factory_reset_changes_nothing_and_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let mut agent = agent_in(dir.path(), None);
    let before = std::fs::read_to_string(dir.path().join("homewarden.yaml")).unwrap();
    assert_eq!(
        agent.on_button(ButtonAction::FactoryReset).await,
        Exit::Stopped
    );
    assert_eq!(
        std::fs::read_to_string(dir.path().join("homewarden.yaml")).unwrap(),
        before
    );
    assert!(dir.path().join("state/intel/misp.json").exists());
    assert!(!crate::appliance::factory::marker(&agent.cfg.state_dir).exists());
    assert!(
        agent.status.presses[0]
            .action
            .starts_with("factory reset failed"),
        "{:?}",
        agent.status.presses
    );
}

#[tokio::test]
async fn acknowledging_is_remembered_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let mut agent = agent_in(dir.path(), None);
    let alert = crate::alerts::eve::parse(
        br#"{"timestamp":"2026-11-25T03:50:26.1+0000","event_type":"alert","src_ip":"10.0.0.2","dest_ip":"203.0.113.66","proto":"TCP","alert":{"action":"blocked","signature_id":1,"signature":"s","category":"c","severity":1}}"#,
    )
    .unwrap();
    assert!(agent.incidents.as_mut().unwrap().0.on_alert(&alert));
    agent.publish();
    assert_eq!(agent.status.alerts.high_unacked, 1);
    assert_eq!(agent.acknowledge().await, 1);
    assert_eq!(agent.status.alerts.high_unacked, 0);
    let saved: Vec<String> =
        serde_json::from_slice(&std::fs::read(dir.path().join("state/acks.json")).unwrap())
            .unwrap();
    assert_eq!(saved.len(), 1);
    // A restart reads the acknowledgement back: the same alert lights nothing.
    let mut again = Agent::open(agent.cfg.clone(), &Secrets::default()).unwrap();
    assert!(again.incidents.as_mut().unwrap().0.on_alert(&alert));
    again.publish();
    assert_eq!(again.status.alerts.high_open, 1);
    assert_eq!(again.status.alerts.high_unacked, 0);
}

#[tokio::test]
async fn a_background_pull_overtaken_by_a_newer_one_is_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display();
    let list = dir.path().join("list.txt");
    let cfg = dir.path().join("homewarden.yaml");
    std::fs::write(
        &cfg,
        format!(
            "state_dir: {d}/state\nenforcement: {{ mode: ids }}\n\
             sources: [{{ name: l, type: list, path: {d}/list.txt }}]\n"
        ),
    )
    .unwrap();
    let mut agent = Agent::open(Config::load(&cfg).unwrap(), &Secrets::default()).unwrap();
    // A scheduled pull starts from generation 0 and sees the old list…
    std::fs::write(&list, "203.0.113.1\n").unwrap();
    let old = pull(&agent.sources[0]).await;
    // …meanwhile a manual sync takes the new one.
    std::fs::write(&list, "203.0.113.2\n").unwrap();
    let new = pull(&agent.sources[0]).await;
    assert!(agent.settle(0, new, std::time::Instant::now()).await);
    assert!(!agent.take_pull(0, 0, old, std::time::Instant::now()).await);
    let held: Vec<String> = agent.sources[0]
        .state
        .set
        .entries()
        .map(|e| e.ioc.to_string())
        .collect();
    assert_eq!(held, ["203.0.113.2"], "the older result must not win");
    assert!(!agent.sources[0].pulling);
    // A result from the current generation is taken.
    let again = pull(&agent.sources[0]).await;
    assert!(
        agent
            .take_pull(0, 1, again, std::time::Instant::now())
            .await
    );
    assert_eq!(agent.sources[0].generation, 2);
}

/// An agent in IDS mode, no Suricata, one list source `l` at `dir/list.txt`, plus `extra` config.
pub(super) fn list_agent(dir: &std::path::Path, extra: &str) -> Agent {
    let d = dir.display();
    let cfg = dir.join("homewarden.yaml");
    std::fs::write(
        &cfg,
        format!(
            "state_dir: {d}/state\nenforcement: {{ mode: ids }}\n\
             suricata: {{ rules_dir: {d}/rules, command_socket: {d}/none.sock }}\n{extra}\
             sources: [{{ name: l, type: list, path: {d}/list.txt }}]\n"
        ),
    )
    .unwrap();
    Agent::open(Config::load(&cfg).unwrap(), &Secrets::default()).unwrap()
}

#[tokio::test]
async fn a_list_that_did_not_change_is_neither_built_nor_saved_nor_enforced_again() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("list.txt"), "203.0.113.1\nevil.example\n").unwrap();
    // Older than the two seconds a file's times need to tell it apart.
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    let mut agent = list_agent(dir.path(), "");
    let first = pull(&agent.sources[0]).await;
    assert!(agent.settle(0, first, std::time::Instant::now()).await);
    agent.enforce().await.unwrap();
    let applies = agent.status.suricata.applies;
    assert_eq!(
        (applies.suricata_down, applies.failed),
        (1, 0),
        "no Suricata here: written for later"
    );
    let held = agent.sources[0].state.set.clone();
    let saved = dir.path().join("state/intel/l.json");
    let written = std::fs::metadata(&saved).unwrap().modified().unwrap();

    agent.accept_shrink.insert("l".into());
    let again = pull(&agent.sources[0]).await;
    assert!(!agent.settle(0, again, std::time::Instant::now()).await);
    assert!(
        agent.accept_shrink.is_empty(),
        "an acceptance does not wait for a later shrink"
    );
    assert!(std::sync::Arc::ptr_eq(&held, &agent.sources[0].state.set));
    assert_eq!(
        std::fs::metadata(&saved).unwrap().modified().unwrap(),
        written
    );
    assert_eq!(
        agent.sources[0].state.stats.accepted, 2,
        "the counters of the pull that made the set stay"
    );
    let pulls = agent.sources[0].pulls;
    assert_eq!((pulls.taken, pulls.unchanged, pulls.failed), (1, 1, 0));
    // What identifies the list is saved with the set: after a restart too.
    let mut restarted = Agent::open(agent.cfg.clone(), &Secrets::default()).unwrap();
    let after = pull(&restarted.sources[0]).await;
    assert!(matches!(
        after.as_ref().map(|p| &p.change),
        Ok(crate::intel::Change::Unchanged)
    ));
    assert!(!restarted.settle(0, after, std::time::Instant::now()).await);
    assert_eq!(restarted.sources[0].state.set.len(), 2);
}

#[tokio::test]
async fn a_full_pull_that_loses_most_of_a_source_is_held_until_the_owner_accepts_it() {
    let dir = tempfile::tempdir().unwrap();
    let list = dir.path().join("list.txt");
    let mut agent = list_agent(
        dir.path(),
        "mail: { to: [owner@home.example], from: hw@home.example, host: 127.0.0.1, security: none }\n",
    );
    // The notices queued for the owner (the responders do not run here).
    let notices = || {
        std::fs::read_dir(dir.path().join("state/outbox"))
            .map(|d| {
                d.filter_map(Result::ok)
                    .filter(|f| {
                        std::fs::read_to_string(f.path())
                            .is_ok_and(|t| t.contains("a pull lost most of its indicators"))
                    })
                    .count()
            })
            .unwrap_or(0)
    };
    let ten: String = (1..=10).map(|i| format!("203.0.113.{i}\n")).collect();
    std::fs::write(&list, &ten).unwrap();
    assert!(agent.sync_once(&[]).await.ok());
    assert_eq!(agent.sources[0].state.set.len(), 10);

    // The list comes back with 2 of its 10: held, the 10 stay enforced.
    std::fs::write(&list, "203.0.113.1\n203.0.113.2\n").unwrap();
    let r = agent.sync_once(&[]).await;
    let err = r.sources[0].1.clone().unwrap();
    assert!(
        err.starts_with("held: a pull would leave 2 of 10 entries (80 % gone"),
        "{err}"
    );
    assert!(err.contains("--accept-shrink l"), "{err}");
    assert_eq!(agent.sources[0].state.set.len(), 10);
    assert_eq!(agent.status.sources[0].held.as_deref(), Some(err.as_str()));
    assert!(agent
        .status
        .reasons
        .iter()
        .any(|r| r.starts_with("source l held: ")));
    assert_eq!(agent.status.state, State::Degraded);
    assert_eq!(notices(), 1);
    // Held again on the next pull, without a second notice.
    let again = agent.sync_once(&[]).await;
    assert_eq!(again.sources[0].1.as_deref(), Some(err.as_str()));
    assert_eq!(notices(), 1);

    // The owner accepts: taken once, and the hold is gone.
    let r = agent.sync_once(&["l".to_string()]).await;
    assert!(r.ok(), "{r:?}");
    assert_eq!(agent.sources[0].state.set.len(), 2);
    assert!(agent.sources[0].held.is_none());
    assert!(agent.accept_shrink.is_empty(), "an acceptance is used once");
    std::fs::write(&list, "").unwrap();
    assert!(
        agent.sync_once(&[]).await.sources[0].1.is_some(),
        "emptied: held"
    );
    assert_eq!(notices(), 2, "a new hold, a new notice");
    // Two notices within one second are two mails.
    agent.queue_notice("Source a held: a pull lost most of its indicators", "a");
    agent.queue_notice("Source b held: a pull lost most of its indicators", "b");
    assert_eq!(notices(), 4);
}

#[tokio::test]
async fn sources_together_stay_within_the_indicator_budget_and_say_what_they_left_out() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display();
    let lines = |net: u8| -> String {
        (0..6000u32)
            .map(|i| format!("10.{net}.{}.{}\n", i / 256, i % 256))
            .collect()
    };
    std::fs::write(dir.path().join("a.txt"), lines(1)).unwrap();
    std::fs::write(dir.path().join("b.txt"), lines(2)).unwrap();
    let cfg = dir.path().join("homewarden.yaml");
    std::fs::write(
        &cfg,
        format!(
            "state_dir: {d}/state\nenforcement: {{ mode: ids }}\n\
             suricata: {{ rules_dir: {d}/rules, command_socket: {d}/none.sock }}\n\
             allowlist: {{ builtin: false }}\nlimits: {{ indicators: 10000 }}\n\
             sources:\n  - {{ name: a, type: list, path: {d}/a.txt }}\n  - {{ name: b, type: list, path: {d}/b.txt }}\n"
        ),
    )
    .unwrap();
    let mut agent = Agent::open(Config::load(&cfg).unwrap(), &Secrets::default()).unwrap();
    assert!(agent.sync_once(&[]).await.ok());
    let held: Vec<usize> = agent.sources.iter().map(|s| s.state.set.len()).collect();
    assert_eq!(held.iter().sum::<usize>(), 10_000, "{held:?}");
    let over: Vec<u64> = agent
        .status
        .sources
        .iter()
        .map(|s| s.stats.over_budget)
        .collect();
    assert_eq!(over.iter().sum::<u64>(), 2000, "{over:?}");
    assert_eq!(agent.status.indicator_budget, 10_000);
    assert!(
        agent.status.reasons.iter().any(|r| r.contains(
            "2000 indicators not enforced, over the budget of 10000 (limits.indicators)"
        )),
        "{:?}",
        agent.status.reasons
    );
    // The source settled last was cut: its first lines stay, its last go.
    let cut = agent
        .sources
        .iter()
        .find(|s| s.state.set.len() == 4000)
        .unwrap();
    let net = if cut.cfg.name() == "a" { 1 } else { 2 };
    let has = |v: String| {
        !cut.state
            .set
            .covering(&crate::intel::ioc::Ioc::parse_any(&v).unwrap())
            .is_empty()
    };
    assert!(has(format!("10.{net}.0.0")) && has(format!("10.{net}.15.159")));
    assert!(!has(format!("10.{net}.15.160")) && !has(format!("10.{net}.23.111")));
}

#[tokio::test]
async fn a_list_that_turns_into_a_login_page_keeps_the_last_good_set() {
    let dir = tempfile::tempdir().unwrap();
    let list = dir.path().join("list.txt");
    let mut agent = list_agent(dir.path(), "");
    std::fs::write(&list, "# ipsum\n203.0.113.1\t3\n203.0.113.2\t5\n").unwrap();
    assert!(agent.sync_once(&[]).await.ok());
    assert_eq!(agent.sources[0].state.set.len(), 2);
    assert_eq!(
        agent.status.sources[0].stats.format.as_deref(),
        Some("columns (detected)")
    );

    std::fs::write(
        &list,
        "<!DOCTYPE html>\n<html><body>Sign in</body></html>\n",
    )
    .unwrap();
    let r = agent.sync_once(&[]).await;
    let err = r.sources[0].1.clone().unwrap();
    assert!(err.contains("not a usable list: an HTML page"), "{err}");
    assert_eq!(
        agent.sources[0].state.set.len(),
        2,
        "the last good set stays"
    );
    assert_eq!(
        agent.status.sources[0].last_error.as_deref(),
        Some(err.as_str())
    );
}

#[test]
fn retries_back_off_up_to_the_interval() {
    let hour = Duration::from_secs(3600);
    let secs = |n| retry_delay(n, hour).as_secs();
    assert_eq!([secs(1), secs(2), secs(3), secs(4)], [15, 30, 60, 120]);
    assert_eq!(secs(9), 3600);
    assert_eq!(secs(1000), 3600);
    assert_eq!(
        retry_delay(3, Duration::from_secs(20)),
        Duration::from_secs(20)
    );
}

/// Suricata's timestamp for now: alerts in these tests must not have closed
/// (`alerts.window`) by the time they are looked for.
pub(super) fn eve_now() -> String {
    crate::alerts::eve::format_timestamp(unix_now() as i64)
        .replacen(' ', "T", 1)
        .replace(" UTC", ".0+0000")
}

/// A stop waits for every task's way out: when `run` returns, the incident
/// that had just opened is on disk (the incidents' owner saved it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_run_returns_the_open_incidents_are_saved() {
    use tokio::io::AsyncWriteExt;

    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("list.txt"), "").unwrap();
    let agent = list_agent(
        d,
        &format!("alerts: {{ eve_socket: {}/eve.sock }}\n", d.display()),
    );
    let status = agent.status();
    let (_tx, rx) = mpsc::channel(8);
    let (stop, stopped) = oneshot::channel::<()>();
    let run = tokio::spawn(agent.run(rx, async {
        let _ = stopped.await;
    }));
    let mut eve = loop {
        match tokio::net::UnixStream::connect(d.join("eve.sock")).await {
            Ok(s) => break s,
            Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
        }
    };
    let line = format!(
        r#"{{"timestamp":"{}","event_type":"alert","src_ip":"10.0.0.2","dest_ip":"203.0.113.9","proto":"TCP","alert":{{"action":"blocked","signature_id":7,"signature":"s","category":"c","severity":1}}}}"#,
        eve_now()
    );
    eve.write_all(format!("{line}\n").as_bytes()).await.unwrap();
    let mut seen = status.clone();
    tokio::time::timeout(
        Duration::from_secs(30),
        seen.wait_for(|s| s.alerts.open == 1),
    )
    .await
    .unwrap()
    .unwrap();
    stop.send(()).unwrap();
    assert_eq!(run.await.unwrap(), Exit::Stopped);
    let saved: Vec<crate::alerts::triage::Incident> =
        serde_json::from_slice(&std::fs::read(d.join("state/incidents.json")).unwrap()).unwrap();
    assert_eq!(saved.len(), 1);
    assert_eq!(saved[0].remote, "203.0.113.9");
}

/// A background self-test's verdict is about the rendering it tested: if
/// another was applied while it ran, it runs again instead of judging (or
/// rolling back) the new one; who asked gets the verdict of a run with a replay.
#[tokio::test]
async fn a_selftest_outrun_by_a_new_rendering_runs_again_before_anyone_hears() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("list.txt"), "").unwrap();
    let mut agent = list_agent(
        d,
        "selftest: { suricata: /bin/true, pcap: /dev/null, timeout: 10s }\n",
    );
    let mut tests = SelftestRun::default();
    let (reply, mut answer) = oneshot::channel();
    tests.askers.push(reply);
    agent.start_selftest(&mut tests, false);
    // Another rendering is applied while the checks run.
    agent.applied = Some(42);
    let done = tests.running.join_next().await.unwrap();
    agent.finish_selftest(&mut tests, done).await;
    assert!(
        agent.status.selftest.last_run.is_none(),
        "judged the old rendering"
    );
    assert_eq!(tests.running.len(), 1, "not run again");
    assert!(answer.try_recv().is_err());
    // The second run tests what is applied, with the replay the asker wants.
    let done = tests.running.join_next().await.unwrap();
    agent.finish_selftest(&mut tests, done).await;
    assert!(agent.status.selftest.last_run.is_some());
    let status = answer.try_recv().unwrap();
    assert!(
        status.checks.iter().any(|c| c.name.contains("capture")),
        "{:?}",
        status.checks
    );
    assert!(tests.running.is_empty());

    // A replay due (after a reload) while a quick check runs is not lost:
    // it runs once that one is done.
    agent.start_selftest(&mut tests, false);
    agent.start_selftest(&mut tests, true);
    let done = tests.running.join_next().await.unwrap();
    agent.finish_selftest(&mut tests, done).await;
    assert_eq!(tests.running.len(), 1, "the replay that was due never ran");
    assert!(tests.replay);
}
