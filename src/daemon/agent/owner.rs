//! The owner's commands on the running agent: allow, unallow, blocks, explain,
//! and what they tell MISP (false positives, expirations).

use std::collections::HashSet;
use std::path::Path;

use crate::config::SourceConfig;
use crate::daemon::control::reply::{
    AllowReply, BlocksReply, OwnerReply, RecentBlock, UnallowReply,
};
use crate::intel::ioc::Ioc;
use crate::intel::unix_now;
use crate::owner::allow::LocalAllowlist;
use crate::respond;
use crate::respond::outbox::{Action, Sighting};

use super::{live_name, Agent};

impl Agent {
    /// Answers the owner: explain, allow, unallow, blocks.
    pub(super) async fn owner(
        &mut self,
        cmd: crate::daemon::control::OwnerCommand,
        who: &str,
    ) -> Result<OwnerReply, String> {
        use crate::daemon::control::OwnerCommand as C;
        match cmd {
            C::Explain { value } => Ok(OwnerReply::Explained(Box::new(self.explain(&value)?))),
            C::Allow {
                value,
                for_secs,
                reason,
                force,
            } => {
                let before = self.explain(&value)?;
                let now = unix_now();
                let entry = self
                    .local_allow
                    .add(&value, who, now, for_secs, reason.as_deref(), force)
                    .map_err(|e| e.to_string())?;
                tracing::warn!(value = %entry.value, who = %entry.who, until = ?entry.until, "allowed by the owner");
                let applied = self.enforce().await?;
                let sightings = self.queue_false_positives(&before, &entry);
                Ok(OwnerReply::Allowed(AllowReply {
                    allowed: entry,
                    applied: live_name(&applied.live).to_string(),
                    removed: applied.removed,
                    false_positive_sightings: sightings,
                }))
            }
            C::Unallow { value } => {
                let gone = self.local_allow.remove(&value).map_err(|e| e.to_string())?;
                let Some(gone) = gone else {
                    return Err(format!("{value:?} is not on the owner's allowlist"));
                };
                tracing::warn!(value = %gone.value, who, "allowance taken back");
                let applied = self.enforce().await?;
                Ok(OwnerReply::Unallowed(UnallowReply {
                    unallowed: gone,
                    applied: live_name(&applied.live).to_string(),
                    added: applied.added,
                }))
            }
            C::Blocks => {
                let index = self.index.borrow().clone();
                let recent = self
                    .recent_hits()
                    .await
                    .into_iter()
                    .map(
                        |r| match crate::alerts::hits::split_signature_key(&r.value) {
                            Some((remote, sid)) => RecentBlock {
                                listed_by: Vec::new(),
                                value: remote.to_string(),
                                hits_24h: r.hits_24h,
                                last: r.last,
                                sid: Some(sid),
                            },
                            None => RecentBlock {
                                listed_by: Ioc::parse_any(&r.value)
                                    .map(|i| index.lookup(&i))
                                    .unwrap_or_default(),
                                value: r.value,
                                hits_24h: r.hits_24h,
                                last: r.last,
                                sid: None,
                            },
                        },
                    )
                    .collect();
                Ok(OwnerReply::Blocks(BlocksReply {
                    blocklist: self.status.blocklist.clone(),
                    recent,
                    allowed: self.local_allow.entries().to_vec(),
                }))
            }
        }
    }

    /// The values hit in the last 24 hours, from the incidents' owner.
    async fn recent_hits(&mut self) -> Vec<crate::alerts::hits::Recent> {
        match &self.incidents {
            Some((book, _)) => book.recent(),
            None => {
                use crate::daemon::incidents;
                crate::daemon::ask(&self.incidents_tx, incidents::Msg::Recent)
                    .await
                    .unwrap_or_default()
            }
        }
    }

    /// The explanation of a value against the live sets.
    pub fn explain(&self, value: &str) -> Result<crate::owner::explain::Explanation, String> {
        let views: Vec<crate::owner::explain::SourceView> = self
            .sources
            .iter()
            .map(|s| crate::owner::explain::SourceView {
                cfg: &s.cfg,
                set: &s.state.set,
            })
            .collect();
        crate::owner::explain::explain(
            value,
            &views,
            &self.cfg,
            &self.local_allow,
            &self.warninglists,
            &self.shadow.lock().unwrap_or_else(|e| e.into_inner()),
            unix_now(),
        )
        .map_err(|e| format!("{value:?}: {e}"))
    }

    /// Tells each MISP that listed a value the owner allowed: a false positive here.
    pub(super) fn queue_false_positives(
        &mut self,
        before: &crate::owner::explain::Explanation,
        entry: &crate::owner::allow::Allowed,
    ) -> usize {
        let misp: HashSet<&str> = self
            .sources
            .iter()
            .filter(|s| matches!(s.cfg, SourceConfig::Misp(_)))
            .map(|s| s.cfg.name())
            .collect();
        let Some(outbox) = self.outbox.as_ref() else {
            return 0;
        };
        let mut ob = respond::lock(outbox);
        let mut n = 0;
        for l in &before.listings {
            let p = &l.provenance;
            let Some(attr) = p
                .attribute_uuid
                .as_deref()
                .filter(|_| misp.contains(p.source.as_str()))
            else {
                continue;
            };
            let fp = Action::MispSighting(Sighting {
                source: p.source.clone(),
                attribute_uuid: attr.to_string(),
                time: entry.at as i64,
                kind: crate::intel::misp::SightingType::FalsePositive,
            });
            let key = format!("fp-{attr}-{}", entry.at);
            match ob.put(&key, fp, true, unix_now()) {
                Ok(_) => n += 1,
                Err(e) => tracing::error!("{e}"),
            }
        }
        drop(ob);
        self.wake_responders.notify_one();
        n
    }

    /// Tells MISP (expiration sightings) which of its attributes stopped being enforced here.
    pub(super) fn queue_expirations(&mut self, expired: &[(String, String)]) {
        if expired.is_empty() {
            return;
        }
        let Some(outbox) = self.outbox.as_ref() else {
            return;
        };
        let now = unix_now();
        let mut ob = respond::lock(outbox);
        for (source, attr) in expired {
            let expired = Action::MispSighting(Sighting {
                source: source.clone(),
                attribute_uuid: attr.clone(),
                time: now as i64,
                kind: crate::intel::misp::SightingType::Expiration,
            });
            if let Err(e) = ob.put(&format!("exp-{attr}-{now}"), expired, false, now) {
                tracing::error!("{e}");
            }
        }
        drop(ob);
        tracing::info!(attributes = expired.len(), "expiration sightings queued");
        self.wake_responders.notify_one();
    }

    /// Drops allowances whose time is up and enforces again.
    pub(super) async fn expire_allowances(&mut self) {
        match self.local_allow.expire(unix_now()) {
            Ok(gone) if !gone.is_empty() => {
                for g in &gone {
                    tracing::warn!(value = %g.value, "allowance expired; enforced again");
                }
                if let Err(e) = self.enforce().await {
                    tracing::error!("{e}");
                }
            }
            Ok(_) => {}
            Err(e) => tracing::error!("{e}"),
        }
    }
}

/// The owner's allowlist; an unreadable one is set aside (never overwritten) and reported.
pub(super) fn load_local_allowlist(state_dir: &Path) -> LocalAllowlist {
    match LocalAllowlist::load(state_dir) {
        Ok(l) => l,
        Err(e) => {
            let aside = crate::fsutil::set_aside(&state_dir.join(crate::owner::allow::FILE));
            tracing::error!(
                "{e}; moved to {}: the owner's allowances must be re-entered",
                aside.display()
            );
            LocalAllowlist::load(state_dir).unwrap_or_default()
        }
    }
}
