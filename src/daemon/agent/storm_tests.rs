//! The alert path under load: while a long step runs (a self-test replay, a
//! million-entry render and apply, a MISP or an SMTP server that never
//! answers), a storm of alerts keeps being read, triaged and shown. Each test
//! measures the rate it saw and prints it; the README's figures come from
//! here. What is asserted is that the alerts never stand still.

use std::net::Ipv4Addr;
use std::path::Path;
use std::time::{Duration, Instant};

use tokio::io::AsyncWriteExt;

use super::tests::{eve_now, list_agent};
use super::*;

/// Longest the intake may stand still while a storm blows: a stall behind a
/// long step lasts that whole step (seconds to minutes).
const STALL: Duration = Duration::from_secs(2);

/// What the agent read and passed on to triage while a storm blew, sampled
/// every 10 ms (the intake's count: triage that stands still fills the
/// channel within 1024 alerts and stops it).
struct Storm {
    samples: Vec<(Instant, u64)>,
}

impl Storm {
    /// Writes alerts towards `remotes` addresses of 203.0.113.0/24 to the eve
    /// socket without pause, until `done` holds (or 120 s pass).
    async fn blow(
        eve: &Path,
        intake: &Arc<Counters>,
        status: &watch::Receiver<Status>,
        remotes: u32,
        done: impl Fn(&Status) -> bool,
    ) -> Storm {
        let eve = eve.to_path_buf();
        let writer = Abort(tokio::spawn(async move {
            let mut sock = loop {
                match tokio::net::UnixStream::connect(&eve).await {
                    Ok(s) => break s,
                    Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
                }
            };
            for batch in 0u32.. {
                // A fresh timestamp per batch: alerts must not close before they are looked for.
                let now = eve_now();
                let mut lines = String::new();
                for i in 0..1000 {
                    let remote = Ipv4Addr::from(0xCB00_7100 + (batch * 1000 + i) % remotes + 1);
                    lines.push_str(&format!(
                        r#"{{"timestamp":"{now}","event_type":"alert","src_ip":"10.0.0.2","dest_ip":"{remote}","proto":"TCP","alert":{{"action":"blocked","signature_id":1,"signature":"listed","category":"c","severity":1,"metadata":{{"homewarden_kind":["ipv4"]}}}}}}"#
                    ));
                    lines.push('\n');
                }
                if sock.write_all(lines.as_bytes()).await.is_err() {
                    return;
                }
            }
        }));
        // Sampled from a thread of its own: a step that blocked the runtime
        // would stop a sampler running on it too, and hide the stall.
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let sampler = {
            let (stop, intake) = (stop.clone(), intake.clone());
            std::thread::spawn(move || {
                let mut samples = Vec::new();
                while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                    samples.push((Instant::now(), intake.snapshot().alerts));
                    std::thread::sleep(Duration::from_millis(10));
                }
                samples
            })
        };
        let deadline = Instant::now() + Duration::from_secs(120);
        while !done(&status.borrow()) {
            assert!(Instant::now() < deadline, "the step never ended");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        stop.store(true, std::sync::atomic::Ordering::SeqCst);
        let samples = sampler.join().unwrap();
        drop(writer);
        Storm { samples }
    }

    /// Alerts received from the first sample that saw one to the last.
    fn report(&self, during: &str) -> (u64, f64) {
        let first = self.samples.iter().find(|s| s.1 > 0);
        let (Some(first), Some(last)) = (first, self.samples.last()) else {
            return (0, 0.0);
        };
        let n = last.1 - first.1;
        let secs = (last.0 - first.0).as_secs_f64();
        let rate = if secs > 0.0 { n as f64 / secs } else { 0.0 };
        let stall = self.longest_stall();
        println!("{n} alerts triaged in {secs:.1} s ({rate:.0}/s) while {during}; longest stall {stall:?}");
        (n, rate)
    }

    /// Longest time, once alerts flowed, that the count stood still.
    fn longest_stall(&self) -> Duration {
        let mut longest = Duration::ZERO;
        let mut since: Option<(Instant, u64)> = None;
        for &(at, n) in self.samples.iter().skip_while(|s| s.1 == 0) {
            match since {
                Some((t, m)) if m == n => longest = longest.max(at - t),
                _ => since = Some((at, n)),
            }
        }
        longest
    }

    /// Asserts the alerts flowed all along, and how many arrived.
    fn assert_flowed(&self, during: &str) -> u64 {
        let (n, _) = self.report(during);
        assert!(n > 0, "no alert arrived while {during}");
        let stall = self.longest_stall();
        assert!(
            stall < STALL,
            "the alerts stood still {stall:?} while {during}"
        );
        n
    }
}

/// A task that ends with the test, whatever way it ends.
struct Abort<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for Abort<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// An agent running on a task of its own (stopped with the test), and what
/// the tests watch of it.
struct Running {
    status: watch::Receiver<Status>,
    intake: Arc<Counters>,
    tx: mpsc::Sender<Request>,
    eve: std::path::PathBuf,
    _run: Abort<Exit>,
}

impl Running {
    /// Starts `agent`, whose eve socket is `dir/eve.sock`.
    fn start(agent: Agent, dir: &Path) -> Running {
        let (status, intake) = (agent.status(), agent.intake.clone());
        let (tx, rx) = mpsc::channel(8);
        let run = Abort(tokio::spawn(agent.run(rx, std::future::pending())));
        Running {
            status,
            intake,
            tx,
            eve: dir.join("eve.sock"),
            _run: run,
        }
    }

    /// Waits for the first source's one listed network to be applied.
    async fn list_applied(&self) {
        until(&self.status, "the list applied", |s| {
            s.sources.first().is_some_and(|s| s.entries == 1)
        })
        .await;
    }

    /// A storm towards `remotes` listed addresses until `done`.
    async fn storm(&self, remotes: u32, done: impl Fn(&Status) -> bool) -> Storm {
        Storm::blow(&self.eve, &self.intake, &self.status, remotes, done).await
    }
}

/// Waits until `ok` holds for the status (60 s at most).
async fn until(status: &watch::Receiver<Status>, what: &str, ok: impl Fn(&Status) -> bool) {
    let mut seen = status.clone();
    tokio::time::timeout(Duration::from_secs(60), seen.wait_for(|s| ok(s)))
        .await
        .unwrap_or_else(|_| panic!("never: {what}"))
        .unwrap();
}

/// The loop answers the owner's question about a listed address within 10 s.
async fn answers(tx: &mpsc::Sender<Request>, source: &str) {
    use crate::daemon::control::{reply::OwnerReply, OwnerCommand};
    let (reply, answer) = oneshot::channel();
    let ask = OwnerCommand::Explain {
        value: "203.0.113.7".into(),
    };
    tx.send(Request::Owner(ask, "test".into(), reply))
        .await
        .unwrap();
    let told = tokio::time::timeout(Duration::from_secs(10), answer)
        .await
        .expect("the agent's loop waits on the step")
        .unwrap();
    let Ok(OwnerReply::Explained(e)) = told else {
        panic!("{told:?}");
    };
    assert_eq!(e.listings[0].provenance.source, source);
}

/// A TCP server that accepts and never says a word; its count of connections.
async fn silent_server() -> (u16, Arc<std::sync::atomic::AtomicUsize>) {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    let accepted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((conn, _)) = l.accept().await {
            count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            held.push(conn);
        }
    });
    (port, accepted)
}

/// Nothing waits on a self-test replay (a stand-in `suricata -r` that never
/// ends): it runs beside the agent's loop, which still answers, and a storm
/// of alerts is read, triaged against the sets and shown in status meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn alerts_are_triaged_and_the_agent_answers_while_a_replay_runs() {
    use std::os::unix::fs::PermissionsExt;

    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let started_marker = d.join("replaying");
    let fake = d.join("suricata");
    std::fs::write(
        &fake,
        format!(
            "#!/bin/sh\ntouch {}\nexec sleep 3600\n",
            started_marker.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::write(d.join("list.txt"), "203.0.113.0/24\n").unwrap();
    let agent = list_agent(
        d,
        &format!(
            "alerts: {{ eve_socket: {0}/eve.sock }}\n\
             selftest: {{ suricata: {1}, pcap: {0}/none.pcap, timeout: 1h }}\n",
            d.display(),
            fake.display()
        ),
    );
    let a = Running::start(agent, d);
    // The list is pulled and applied (the incidents' index has it), then the
    // loop sets the replay off and it runs on.
    a.list_applied().await;
    let (reply, mut selftest_done) = oneshot::channel();
    a.tx.send(Request::Selftest(reply)).await.unwrap();
    while !started_marker.exists() {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    let remotes = 50;
    let storm = a
        .storm(remotes, |s| {
            s.alerts.intake.alerts >= 20_000 && s.alerts.open == remotes as usize
        })
        .await;
    storm.assert_flowed("a self-test replay ran");
    assert!(
        selftest_done.try_recv().is_err(),
        "the replay must still be running, or this proves nothing"
    );
    answers(&a.tx, "l").await;
    let s = a.status.borrow().clone();
    assert_eq!(
        s.alerts.high_unacked, remotes as usize,
        "the LED goes red now, not after the step"
    );
    let inc = &s.alerts.recent[0];
    assert_eq!(
        inc.ioc.as_ref().map(|p| p.source.as_str()),
        Some("l"),
        "provenance comes from the index the agent published: {inc:?}"
    );
}

/// A million listed addresses are pulled, settled, rendered, written and
/// applied while a storm blows: the alerts flow all along. One worker (a
/// Pi Zero 2's share): a step that blocked it would stop everything.
#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn alerts_flow_while_a_million_entry_list_is_rendered_and_applied() {
    use std::fmt::Write;

    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let mut list = String::with_capacity(16 * 1_000_000);
    list.push_str("203.0.113.0/24\n");
    for i in 0..1_000_000u32 {
        let _ = writeln!(list, "{}", Ipv4Addr::from(0x2C00_0000 + i * 3));
    }
    std::fs::write(d.join("list.txt"), list).unwrap();
    let agent = list_agent(
        d,
        &format!("alerts: {{ eve_socket: {}/eve.sock }}\n", d.display()),
    );
    let a = Running::start(agent, d);
    let started = Instant::now();
    let storm = a.storm(50, |s| s.blocklist.ipv4 >= 1_000_000).await;
    println!(
        "the million was pulled and applied in {:?}",
        started.elapsed()
    );
    storm.assert_flowed("a million-entry list was pulled, rendered and applied");
    assert!(
        std::fs::metadata(d.join("rules/hw-ipv4.lst"))
            .unwrap()
            .len()
            > 8_000_000,
        "the list was written"
    );
}

/// A MISP that accepts the connection and never answers holds its own pull,
/// nothing else: the alerts flow and the loop answers meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn alerts_flow_while_misp_hangs() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (port, accepted) = silent_server().await;
    std::fs::write(d.join("list.txt"), "203.0.113.0/24\n").unwrap();
    let cfg = d.join("homewarden.yaml");
    std::fs::write(
        &cfg,
        format!(
            "state_dir: {0}/state\nenforcement: {{ mode: ids }}\n\
             suricata: {{ rules_dir: {0}/rules, command_socket: {0}/none.sock }}\n\
             alerts: {{ eve_socket: {0}/eve.sock }}\n\
             sources:\n\
             - {{ name: l, type: list, path: {0}/list.txt }}\n\
             - {{ name: m, type: misp, url: 'http://127.0.0.1:{port}', allow_plain_http: true, timeout: 1h }}\n",
            d.display()
        ),
    )
    .unwrap();
    let secrets = Secrets::from_maps(
        [("MISP_API_KEY".to_string(), "k".repeat(40))].into(),
        HashMap::new(),
    );
    let agent = Agent::open(Config::load(&cfg).unwrap(), &secrets).unwrap();
    let a = Running::start(agent, d);
    a.list_applied().await;
    while accepted.load(std::sync::atomic::Ordering::SeqCst) == 0 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let hung = Instant::now();
    let storm = a
        .storm(50, |s| {
            hung.elapsed() > Duration::from_secs(3) && s.alerts.open == 50
        })
        .await;
    storm.assert_flowed("MISP hung");
    answers(&a.tx, "l").await;
    let m = a.status.borrow().sources[1].clone();
    assert!(
        m.last_error.is_none() && m.last_ok.is_none(),
        "the pull must still hang, or this proves nothing: {m:?}"
    );
}

/// An SMTP server that accepts the connection and never greets holds the
/// mailer, nothing else: the alerts flow, and the mail waits in the outbox.
#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn alerts_flow_while_the_smtp_server_hangs() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (port, accepted) = silent_server().await;
    std::fs::write(d.join("list.txt"), "203.0.113.0/24\n").unwrap();
    let agent = list_agent(
        d,
        &format!(
            "alerts: {{ eve_socket: {}/eve.sock }}\n\
             mail: {{ to: [owner@home.example], from: hw@home.example, host: 127.0.0.1, port: {port}, security: none, timeout: 1h }}\n",
            d.display()
        ),
    );
    let a = Running::start(agent, d);
    a.list_applied().await;
    // The first incidents' mail goes out and hangs; the storm goes on.
    let hung: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    let storm = a
        .storm(50, |s| {
            if accepted.load(std::sync::atomic::Ordering::SeqCst) == 0 {
                return false;
            }
            let at = hung.get_or_init(Instant::now);
            at.elapsed() > Duration::from_secs(3) && s.alerts.open == 50
        })
        .await;
    storm.assert_flowed("the SMTP server hung");
    let s = a.status.borrow().clone();
    assert_eq!(s.alerts.high_unacked, 50);
    let queued = std::fs::read_dir(d.join("state/outbox")).unwrap().count();
    assert!(queued > 0, "the mail waits in the outbox");
}
