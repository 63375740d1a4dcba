//! The self-test: Suricata's live datasets and rule count, and the canary
//! capture replayed through `suricata -r`; a failure rolls back and tells the owner.

use crate::enforce::suricata::render;
use crate::enforce::suricata::selftest::{self, Probe};
use crate::enforce::suricata::socket::Connection;
use crate::intel::set::Effective;
use crate::intel::unix_now;
use crate::owner::allow::LocalAllowlist;
use crate::respond;

use super::{Agent, RELOAD_SETTLE};

/// A self-test running beside the agent's loop, and who waits for it.
#[derive(Default)]
pub(super) struct SelftestRun {
    /// The checks, while they run.
    pub(super) running: tokio::task::JoinSet<Vec<selftest::Check>>,
    /// Whether the running checks replay the capture.
    pub(super) replay: bool,
    /// The rendering they test.
    rendering: Option<u64>,
    /// A run was due while this one ran (with a replay or not): it runs after.
    again: Option<bool>,
    /// Who asked (`homewarden selftest`): answered by the next run with a replay.
    pub(super) askers: Vec<tokio::sync::oneshot::Sender<selftest::Status>>,
}

impl Agent {
    /// The self-test's checks as a task of their own: they own what they
    /// need, so the loop can go on while a replay takes its two minutes.
    pub(super) fn checks(
        &self,
        replay: bool,
    ) -> impl std::future::Future<Output = Vec<selftest::Check>> + Send + 'static {
        let cfg = &self.cfg;
        let socket = cfg.suricata.command_socket.clone();
        let timeout = cfg.suricata.socket_timeout;
        let probes = self.probes.clone();
        let replay = (replay && cfg.selftest.replay).then(|| selftest::Replay {
            suricata: cfg.selftest.suricata.clone(),
            config: cfg.selftest.suricata_config.clone(),
            pcap: cfg.selftest.pcap.clone(),
            rules_dir: cfg.suricata.rules_dir.clone(),
            sid: cfg.suricata.sid_base + selftest::CANARY_SID_OFFSET,
            timeout: cfg.selftest.timeout,
        });
        async move {
            let mut checks = selftest::live(&socket, timeout, &probes).await;
            if let Some(r) = replay {
                checks.push(selftest::replay(&r).await);
            }
            checks
        }
    }

    /// What the checks mean (Suricata's live state, and with `replay` the
    /// capture through `suricata -r`): a pass keeps the rendering as the last
    /// good one; a failure puts the last good one back, lights amber and mails once.
    pub(super) async fn judge(
        &mut self,
        checks: Vec<selftest::Check>,
        replay: bool,
    ) -> selftest::Status {
        let cfg = &self.cfg;
        let now = unix_now();
        let failed: Vec<String> = checks
            .iter()
            .filter(|c| !c.ok)
            .map(|c| format!("{} ({})", c.name, c.detail))
            .collect();
        let good_dir = cfg.state_dir.join("last-good");
        let st = &mut self.status.selftest;
        st.last_run = Some(now);
        st.ok = Some(failed.is_empty());
        st.checks = checks;
        if failed.is_empty() {
            tracing::info!(replay, "self-test passed");
            if let Err(e) = selftest::copy_rendering(&cfg.suricata.rules_dir, &good_dir) {
                tracing::error!(
                    "{}: cannot keep the last good rendering: {e}",
                    good_dir.display()
                );
            }
            // A pass right after a rollback proves the old rendering, not a new one.
            if !self.rolled_back {
                st.alarm = None;
            }
            self.rolled_back = false;
        } else {
            let what = failed.join("; ");
            tracing::error!("self-test failed: {what}");
            let first = st.alarm.is_none();
            st.alarm = Some(what.clone());
            if !self.rolled_back && good_dir.join(render::RULES_FILE).exists() {
                self.rolled_back = true;
                st.rolled_back = Some(now);
                self.bad_rendering = self.applied;
                // What the bad rendering listed is gone again: only the canary is sure.
                self.probes.truncate(1);
                match selftest::copy_rendering(&good_dir, &cfg.suricata.rules_dir) {
                    Ok(_) => {
                        tracing::warn!("rolled back to the last good rendering");
                        let reload = async {
                            if let Ok(mut c) = Connection::open(
                                &cfg.suricata.command_socket,
                                cfg.suricata.socket_timeout,
                            )
                            .await
                            {
                                let _ = c.command("ruleset-reload-nonblocking", None).await;
                            }
                        };
                        let bound = 2 * cfg.suricata.socket_timeout;
                        self.heart
                            .busy(bound, super::loop_within(cfg), reload)
                            .await;
                        self.selftest_due = Some((now + RELOAD_SETTLE, true));
                    }
                    Err(e) => tracing::error!("rollback failed: {e}"),
                }
            }
            if first {
                self.queue_notice(
                    "Self-test failed: enforcement rolled back",
                    &format!(
                        "The appliance checked that Suricata enforces what it was given, and it does not:\n\n{what}\n\n{}\nThe amber light stays on until you acknowledge (short press, or `homewarden ack`). `homewarden selftest` runs the test again; `homewarden status` shows the checks.\n",
                        if self.rolled_back {
                            "The last rendering that passed was put back, so the home stays protected by the previous blocklist."
                        } else {
                            "No earlier good rendering was kept, so nothing could be rolled back."
                        }
                    ),
                );
            }
        }
        self.publish();
        self.status.selftest.clone()
    }

    /// Starts the checks beside the loop, unless some run already: then
    /// this one is remembered and runs after, if that one does not do for it.
    pub(super) fn start_selftest(&self, tests: &mut SelftestRun, replay: bool) {
        if tests.running.is_empty() {
            tests.replay = replay;
            tests.rendering = self.applied;
            tests.running.spawn(self.checks(replay));
        } else {
            tests.again = Some(tests.again.unwrap_or(false) || replay);
        }
    }

    /// Judges what a background self-test found, answers who asked, and runs
    /// again where its verdict would not fit: the rendering changed while it
    /// ran (its files were rewritten under the replay), or an asker wants a
    /// replay it did not do.
    pub(super) async fn finish_selftest(
        &mut self,
        tests: &mut SelftestRun,
        done: Result<Vec<selftest::Check>, tokio::task::JoinError>,
    ) {
        let checks = done.unwrap_or_else(|e| {
            vec![selftest::Check {
                name: "the self-test ran".into(),
                ok: false,
                detail: e.to_string(),
            }]
        });
        let again = tests.again.take();
        if self.applied != tests.rendering {
            let replay = tests.replay || again == Some(true) || !tests.askers.is_empty();
            self.start_selftest(tests, replay);
            return;
        }
        let status = self.judge(checks, tests.replay).await;
        if tests.replay {
            for asker in tests.askers.drain(..) {
                let _ = asker.send(status.clone());
            }
        }
        // This rendering was just tested: run again only for a replay it lacked.
        if !tests.replay && (again == Some(true) || !tests.askers.is_empty()) {
            self.start_selftest(tests, true);
        }
    }

    /// Queues a mail about the appliance itself.
    pub(super) fn queue_notice(&mut self, subject: &str, text: &str) {
        let (Some(outbox), true) = (self.outbox.as_ref(), self.mail_on) else {
            return;
        };
        let now = unix_now();
        let notice = crate::respond::outbox::Action::MailNotice(crate::respond::outbox::Notice {
            subject: subject.to_string(),
            text: text.to_string(),
        });
        // Keyed by what it says too: two notices in one second (two sources
        // held by one sync) are two mails, not one taken for the other's repeat.
        let id = crate::alerts::triage::fnv1a(0xcbf2_9ce4_8422_2325, &format!("{subject}\n{text}"));
        let queued =
            respond::lock(outbox).put(&format!("notice-{now}-{id:016x}"), notice, true, now);
        if let Err(e) = queued {
            tracing::error!("{e}");
        }
        self.wake_responders.notify_one();
    }
}

/// Values the live self-test looks up: the canary and a few listed values must
/// be in their datasets, a few of the owner's allowances must not.
pub(super) fn probes(
    eff: &Effective,
    local: &LocalAllowlist,
    match_subdomains: bool,
) -> Vec<Probe> {
    let v4 = |a: std::net::Ipv4Addr, want: bool| Probe {
        set: "hw-ipv4",
        settype: "ipv4",
        value: a.to_string(),
        label: a.to_string(),
        want,
    };
    let mut out = vec![v4(selftest::CANARY, true)];
    // The first, middle and last listed addresses, walked to rather than
    // collected (a million references took 8 MB).
    let listed = || eff.ipv4.iter().filter(|a| **a != selftest::CANARY);
    let n = listed().count();
    for i in [0, n / 2, n.saturating_sub(1)] {
        if let Some(a) = listed().nth(i) {
            if !out.iter().any(|p| p.value == a.to_string()) {
                out.push(v4(*a, true));
            }
        }
    }
    // A name under another listed one is not in the dataset: its parent catches it.
    if let Some(d) = render::enforced_names(&eff.domains, &[], match_subdomains).next() {
        out.push(Probe {
            set: "hw-domain",
            settype: "string",
            value: render::b64(d.as_str()),
            label: d.as_str().to_string(),
            want: true,
        });
    }
    let allowed = local.targets().0.into_iter().filter_map(|n| match n {
        ipnet::IpNet::V4(n) if n.prefix_len() == 32 => Some(n.addr()),
        _ => None,
    });
    out.extend(allowed.take(3).map(|a| v4(a, false)));
    out
}
