//! A rendering, prepared off the loop: the effective set built from every
//! source (and the shadow book), rendered and written on a blocking thread.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::enforce::suricata::apply::{Applier, ApplyError, Written};
use crate::enforce::suricata::render::{self, Options};
use crate::enforce::suricata::selftest;
use crate::intel::ioc::Ioc;
use crate::intel::set::{Allowlist, Dropped, Effective, Guard, SourceSet};
use crate::intel::unix_now;
use crate::owner::shadow::Shadow;

use super::ShadowStatus;

/// What a rendering needs, owned, so that it runs on a blocking thread.
pub(super) struct Prepare {
    pub(super) sources: Vec<(Arc<SourceSet>, Option<Duration>)>,
    pub(super) allow: Allowlist,
    pub(super) limits: crate::intel::set::ExpandLimits,
    pub(super) lists: Arc<crate::intel::warninglist::Warninglists>,
    pub(super) shadow: Arc<Mutex<Shadow>>,
    pub(super) options: Options,
    pub(super) bad_rendering: Option<u64>,
    pub(super) applier: Applier,
}

/// What a rendering gives back to the loop.
pub(super) struct Prepared {
    pub(super) eff: Effective,
    pub(super) allow: Allowlist,
    pub(super) shadow: ShadowStatus,
    pub(super) dropped: Dropped,
    pub(super) fingerprint: u64,
    /// `None`: this rendering failed its self-test before, nothing written.
    pub(super) written: Option<Result<Written, ApplyError>>,
}

impl Prepare {
    /// Builds the effective set, renders it and writes what changed (blocking).
    pub(super) fn run(self) -> Prepared {
        let guard = Guard {
            allow: &self.allow,
            limits: self.limits,
            lists: &self.lists,
        };
        // The self-test's canary, always listed, never a real host; built in with
        // the rest, so a million-entry list is never copied to make room for it.
        let canary = Ioc::Ipv4(selftest::CANARY);
        let (eff, observed, dropped, shadow) = if self.sources.iter().any(|s| s.1.is_some()) {
            // A poisoned lock only means a rendering panicked; the book is whole.
            let mut book = self.shadow.lock().unwrap_or_else(|e| e.into_inner());
            let split = book.split(
                self.sources.iter().map(|(set, period)| (&**set, *period)),
                unix_now(),
            );
            let (eff, mut dropped) = Effective::from_iocs(split.enforce().chain([&canary]), guard);
            let (mut observed, more) = Effective::from_iocs(split.observe(), guard);
            observed.remove_all(&eff);
            dropped.merge(more);
            if split.promoted > 0 {
                tracing::info!(
                    promoted = split.promoted,
                    "observed indicators promoted to blocking"
                );
            }
            let shadow = ShadowStatus {
                observed: observed.len(),
                held: book.held(),
                next_promotion: split.next_promotion,
            };
            (eff, Some(observed), dropped, shadow)
        } else {
            let (eff, dropped) = Effective::from_iocs(
                self.sources
                    .iter()
                    .flat_map(|(set, _)| set.iocs())
                    .chain([&canary]),
                guard,
            );
            (eff, None, dropped, ShadowStatus::default())
        };
        let rendered = render::render(&eff, observed.as_ref(), self.allow.domains(), &self.options);
        let fingerprint = render::fingerprint(&rendered);
        let written =
            (self.bad_rendering != Some(fingerprint)).then(|| self.applier.write(&rendered));
        drop(rendered);
        Prepared {
            eff,
            allow: self.allow,
            shadow,
            dropped,
            fingerprint,
            written,
        }
    }
}
