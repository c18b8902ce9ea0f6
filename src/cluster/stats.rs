//! [`ClusterStats`]: what a [`ClusterPool`](crate::ClusterPool) can say about itself without
//! I/O, for a health endpoint or a log line.

use std::{fmt, sync::atomic::AtomicU64, time::Duration};

use crate::{NodeAddr, RetryStats};

/// A snapshot of a [`ClusterPool`](crate::ClusterPool); see
/// [`ClusterPool::stats`](crate::ClusterPool::stats). Its `Display` is one line.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ClusterStats {
    /// The slot map's generation: one more each time the map changed.
    pub generation: u64,
    /// Each primary the slot map names now, in the order of its slots.
    pub primaries: Vec<PrimaryStats>,
    /// Slots no primary serves in the map now: 0 on a healthy cluster.
    pub uncovered_slots: usize,
    /// Slot maps asked of the cluster since the pool was built (the build's included).
    pub refreshes: u64,
    /// Those no node answered.
    pub refresh_failures: u64,
    /// `MOVED` replies followed.
    pub moved: u64,
    /// `ASK` replies followed.
    pub asked: u64,
    /// The deadline [`with_retry`](crate::ClusterPool::with_retry) works within.
    pub retry_deadline: Duration,
    /// What [`with_retry`](crate::ClusterPool::with_retry) and
    /// [`with_retry_idempotent`](crate::ClusterPool::with_retry_idempotent) did.
    pub retries: RetryStats,
    /// Events dropped because nobody read [`events`](crate::ClusterPool::events) fast
    /// enough.
    pub events_dropped: u64,
}

/// One primary of a [`ClusterStats`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PrimaryStats {
    /// Its address.
    pub addr: NodeAddr,
    /// How many slots it serves.
    pub slots: usize,
    /// Connections its pool holds, idle or in use (none before a request needed it).
    pub connections: u32,
    /// Idle ones.
    pub idle_connections: u32,
}

/// What the pool counts as it goes.
#[derive(Debug, Default)]
pub(super) struct Counters {
    pub(super) refreshes: AtomicU64,
    pub(super) refresh_failures: AtomicU64,
    pub(super) moved: AtomicU64,
    pub(super) asked: AtomicU64,
}

impl fmt::Display for ClusterStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "slot map generation {}: ", self.generation)?;
        for (i, p) in self.primaries.iter().enumerate() {
            let sep = if i == 0 { "" } else { ", " };
            write!(
                f,
                "{sep}{} ({} slots, {} connections, {} idle)",
                p.addr, p.slots, p.connections, p.idle_connections
            )?;
        }
        if self.uncovered_slots > 0 {
            write!(f, "; {} slots served by no node", self.uncovered_slots)?;
        }
        write!(
            f,
            "; {} refreshes ({} failed), {} MOVED, {} ASK followed; retry deadline {:?}",
            self.refreshes, self.refresh_failures, self.moved, self.asked, self.retry_deadline
        )?;
        let r = &self.retries;
        if r.calls > 0 {
            write!(
                f,
                "; {} retried calls: {} retries, {} maybe applied, {} gave up, {} failed",
                r.calls,
                r.attempts.saturating_sub(r.calls),
                r.maybe_applied,
                r.exhausted,
                r.failed
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_read_on_one_line() {
        let stats = ClusterStats {
            generation: 4,
            primaries: vec![PrimaryStats {
                addr: NodeAddr::new("10.0.0.5", 7000),
                slots: 16384,
                connections: 3,
                idle_connections: 2,
            }],
            uncovered_slots: 0,
            refreshes: 5,
            refresh_failures: 1,
            moved: 7,
            asked: 0,
            retry_deadline: Duration::from_secs(11),
            retries: RetryStats::default(),
            events_dropped: 0,
        };
        assert_eq!(
            stats.to_string(),
            "slot map generation 4: 10.0.0.5:7000 (16384 slots, 3 connections, 2 idle); \
             5 refreshes (1 failed), 7 MOVED, 0 ASK followed; retry deadline 11s"
        );
    }
}
