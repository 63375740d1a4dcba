//! What the health tick checks: Suricata over its socket (alive, its
//! verdicts, the alerts it raised against those that arrived) and the packet
//! path in the kernel, with a mail when it stays wrong.

use super::*;
use crate::enforce::firewall;
use crate::enforce::suricata::socket::Connection;

/// How long the packet path may be wrong, Suricata up, before the owner gets
/// a mail: `homewarden firewall up` and a Suricata restart take a few seconds.
const PATH_GRACE_SECS: u64 = 15;

impl Agent {
    /// Suricata's socket: reachable, its verdict counters, its alert count.
    pub(super) async fn check_suricata(&mut self) {
        let sock = &self.cfg.suricata.command_socket;
        let mut verdicts = None;
        let mut raised = None;
        let ok = match Connection::open(sock, Duration::from_secs(5)).await {
            Ok(mut c) => {
                let up = c
                    .command("uptime", None)
                    .await
                    .map(|r| r.ok)
                    .unwrap_or(false);
                if up {
                    if let Ok(r) = c.command("dump-counters", None).await {
                        let ips = &r.message["ips"];
                        verdicts = ips["accepted"].as_u64().zip(ips["blocked"].as_u64());
                        raised = crate::alerts::loss::Raised::from_counters(&r.message);
                    }
                }
                up
            }
            Err(_) => false,
        };
        if ok && !self.status.suricata.reachable {
            tracing::info!("suricata reachable");
            self.selftest_due = Some((unix_now() + RELOAD_SETTLE, true));
            // It may have (re)started since our last change: make sure it has the files' state.
            self.status.suricata.reachable = true;
            if let Err(e) = self.enforce().await {
                tracing::error!("{e}");
            }
        } else if !ok && self.status.suricata.reachable {
            tracing::warn!(socket = %sock.display(), "suricata not reachable");
        }
        self.status.suricata.reachable = ok;
        let before = self.status.alerts.loss.missing;
        let loss = self.loss.tick(raised, self.intake.snapshot().alerts);
        if loss.missing > before {
            tracing::warn!(
                missing = loss.missing,
                raised = loss.raised,
                "alerts Suricata raised never reached the agent (its eve socket was full)"
            );
        }
        self.status.alerts.loss = loss;
        self.check_path().await;
        self.status.path.suricata_verdicts = verdicts;
        self.publish();
    }

    /// Checks the packet path against the config; tells the owner once when
    /// it has been wrong for a while with Suricata up (a Suricata that is down
    /// or starting is its own reason), and again when it is right again.
    async fn check_path(&mut self) {
        let path = firewall::health::inspect(&self.packet_path).await;
        let now = unix_now();
        match (path.problems.is_empty(), self.path_wrong) {
            (true, Some((_, told))) => {
                tracing::info!("packet path as configured again");
                if told {
                    self.queue_notice(
                        "Packet path restored: traffic is inspected again",
                        "The firewall's queue and Suricata are as the configuration asks again: forwarded traffic goes through Suricata.\n",
                    );
                }
                self.path_wrong = None;
            }
            (false, None) => {
                tracing::warn!(problems = ?path.problems, "packet path not as configured");
                self.path_wrong = Some((now, false));
            }
            (false, Some((since, false)))
                if now.saturating_sub(since) >= PATH_GRACE_SECS
                    && self.status.suricata.reachable =>
            {
                self.queue_notice(
                    "Packet path degraded: traffic is not inspected as configured",
                    &format!(
                        "The appliance's packet path has not been what its configuration asks for since {}:\n\n{}\n\n`homewarden status` shows the path; `sudo systemctl restart homewarden-firewall suricata` puts it back as configured. You get one more mail when it is right again.\n",
                        crate::alerts::eve::format_timestamp(since as i64),
                        path.problems.iter().map(|p| format!("  - {p}")).collect::<Vec<_>>().join("\n")
                    ),
                );
                self.path_wrong = Some((since, true));
            }
            _ => {}
        }
        self.status.path = path;
    }
}
