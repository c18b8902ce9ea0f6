//! What `with_retry` did, counted over every caller, for `stats()`.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::RetryStats;

/// What the retry loop did, counted over every caller; read by `stats()`.
#[derive(Debug, Default)]
pub(crate) struct RetryCounters {
    pub(crate) calls: AtomicU64,
    pub(crate) attempts: AtomicU64,
    pub(crate) retried_unapplied: AtomicU64,
    pub(crate) retried_maybe_applied: AtomicU64,
    pub(crate) maybe_applied: AtomicU64,
    pub(crate) exhausted: AtomicU64,
    pub(crate) failed: AtomicU64,
}

impl RetryCounters {
    pub(crate) fn snapshot(&self) -> RetryStats {
        let read = |c: &AtomicU64| c.load(Ordering::Relaxed);
        RetryStats {
            calls: read(&self.calls),
            attempts: read(&self.attempts),
            retried_unapplied: read(&self.retried_unapplied),
            retried_maybe_applied: read(&self.retried_maybe_applied),
            maybe_applied: read(&self.maybe_applied),
            exhausted: read(&self.exhausted),
            failed: read(&self.failed),
        }
    }
}

pub(crate) fn count(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}
