//! Durable mode: a write is reported done only once `WAIT` confirms that the replicas asked
//! for received it (or `WAITAOF`, that it is in their append-only files and the master's), in
//! the write's own round trip.
//!
//! - this file: [`Durability`], what the user asks for;
//! - [`wait`]: the `WAIT` packed after a write, its verdict, and the errors durable mode
//!   answers with ([`Shortfall`]: written and read back by one type);
//! - [`memory`]: the replicas each master is known to have, so that one that left and may be
//!   promoted holds writes back;
//! - [`state`] and [`hooks`]: what a pooled connection keeps and does around a write in
//!   durable mode.

mod hooks;
mod memory;
mod state;
mod wait;

use std::time::Duration;

pub(crate) use memory::Memory;
pub(crate) use state::DurableState;
pub(crate) use wait::Shortfall;

use crate::config::limits::duration_problem;

/// Which replicas must confirm a write before a durable pool reports it done; see
/// [`Builder::durability`](crate::Builder::durability).
///
/// Sentinel promotes the replica with the best `replica-priority`, then the largest
/// replication offset among those it has heard from in the last seconds, as last reported
/// by their `INFO` (polled once a second). A write that reached one replica is therefore not
/// safe: another one, with a better priority or an offset Sentinel read before that replica
/// caught up, may be promoted. What is safe is a write every replica that can be promoted has
/// received: [`all_replicas`](Durability::all_replicas), the default.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Durability {
    pub(crate) replicas: Replicas,
    /// `None`: the default, which depends on `on_disk`.
    timeout: Option<Duration>,
    pub(crate) on_disk: bool,
}

/// How many replicas a durable write waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Replicas {
    /// Every replica the master lists as connected (its `ROLE`) when the connection was last
    /// checked, at least one.
    All,
    /// At least this many.
    AtLeast(u32),
}

impl Default for Durability {
    /// [`all_replicas`](Durability::all_replicas), waiting at most 1 s.
    fn default() -> Self {
        Durability::all_replicas()
    }
}

impl Durability {
    /// Every replica connected to the master must confirm: those the master's `ROLE` lists,
    /// read at each checkout that asks `ROLE` (see [`Validation`](crate::Validation)) and
    /// again before a write when the count is a second old, at least one. With no
    /// replica connected a write is refused unsent, with `NOREPLICAS` (which
    /// [`with_retry`](crate::SentinelPool::with_retry) retries: replicas reconnect, or a
    /// failover brings others).
    ///
    /// A replica that is not connected is waited for as long as a sentinel could promote it:
    /// in a failover the replica being promoted leaves the old master first, and one cut off
    /// from the master, syncing, or not yet re-pointed after a failover can be promoted too.
    /// The pool remembers, for each master and whatever its generation, every replica seen
    /// connected to it and every one the sentinels list for it; while one is missing it asks
    /// every sentinel that answers (once a second at most) whether it could pick it, and
    /// writes are refused unsent (`NOREPLICAS`) until none could: it is back, or listed as
    /// down, disconnected, of priority 0, cut off for more than 10 ×
    /// `down-after-milliseconds`, or never seen replicating while a connected replica of an
    /// equal or better priority ranks above it. The ACL user must be allowed `ROLE` on the
    /// master (the pool checks when it connects, and refuses with
    /// [`Error::InvalidConfig`](crate::Error::InvalidConfig) otherwise): where it is not,
    /// give [`at_least`](Durability::at_least) instead. Waits at most 1 s.
    pub fn all_replicas() -> Self {
        Durability {
            replicas: Replicas::All,
            timeout: None,
            on_disk: false,
        }
    }

    /// At least `replicas` replicas must confirm (at least 1): for a deployment that keeps
    /// writing while a replica is away, at the risk that Sentinel promotes one that had not
    /// confirmed. Waits at most 1 s.
    pub fn at_least(replicas: u32) -> Self {
        Durability {
            replicas: Replicas::AtLeast(replicas),
            timeout: None,
            on_disk: false,
        }
    }

    /// How long `WAIT` waits for the confirmations (it returns as soon as they are in, after
    /// one replication round trip when the replicas keep up). Must be shorter than the pool's
    /// [`read_timeout`](crate::Builder::read_timeout), which bounds the write and the wait
    /// together.
    ///
    /// Defaults to 1 s, and to 2.5 s [on disk](Durability::on_disk).
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// How long `WAIT` (or `WAITAOF`) waits.
    pub(crate) fn wait_timeout(self) -> Duration {
        self.timeout.unwrap_or(if self.on_disk {
            Duration::from_millis(2500)
        } else {
            Duration::from_secs(1)
        })
    }

    /// Confirms each write on disk: `WAITAOF 1 <replicas> <timeout>` instead of `WAIT`, so a
    /// write is done once it is in the master's append-only file and in the replicas', each
    /// fsynced. This survives what `WAIT` does not: every node of the service restarting at
    /// once (a power cut), since a node that restarts reloads its file. Not confirmed in time,
    /// the write gets [`Error::NotPersisted`](crate::Error::NotPersisted).
    ///
    /// Needs Redis 7.2 or later (or Valkey) with `appendonly yes` on the master and on the
    /// replicas. The pool checks the master when it opens a connection to it (one `WAITAOF`
    /// that writes nothing) and refuses it with
    /// [`Error::InvalidConfig`](crate::Error::InvalidConfig) where `WAITAOF` is unknown or
    /// the master keeps no append-only file, so no write is ever sent to a master that could
    /// not confirm it; [`with_durability`](crate::Connection::with_durability) makes the same
    /// check before the first write of its kind on a connection. A replica without an
    /// append-only file never confirms: every write then fails with `NotPersisted`.
    ///
    /// It is slow where writes are few: a replica reports what it has fsynced when the master
    /// asks or once a second, so a lone writer can wait up to a second per write, with
    /// `appendfsync everysec` (Redis's default) and, measured, with `always` too; with
    /// `always` and several writers at once, a write takes milliseconds (Valkey 8.1 on
    /// loopback: see BENCHMARKS.md). Hence the longer default timeout, 2.5 s, which the pool's
    /// [`read_timeout`](crate::Builder::read_timeout) must exceed.
    #[must_use]
    pub fn on_disk(mut self) -> Self {
        self.on_disk = true;
        self
    }

    /// How many replicas to ask for, given how many the master lists as connected (`None`:
    /// unknown, the probe could not count them).
    pub(crate) fn asked(self, connected: Option<u32>) -> u32 {
        match self.replicas {
            Replicas::All => connected.unwrap_or(1).max(1),
            Replicas::AtLeast(n) => n,
        }
    }

    /// Why this durability cannot serve on a connection whose read timeout is
    /// `read_timeout`, if it cannot: what [`Builder::durability`](crate::Builder::durability)
    /// refuses, and the per-call form too.
    pub(crate) fn invalid_with(self, read_timeout: Duration) -> Option<String> {
        if self.replicas == Replicas::AtLeast(0) {
            return Some(
                "Durability::at_least(0) confirms nothing: ask for at least one replica".to_owned(),
            );
        }
        if let Some(problem) = duration_problem(self.wait_timeout()) {
            return Some(format!("its timeout {problem}"));
        }
        (self.wait_timeout() >= read_timeout).then(|| {
            format!(
                "its timeout {:?} must be shorter than read_timeout {:?}, which bounds the \
                 write and its confirmation together",
                self.wait_timeout(),
                read_timeout
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_replicas_asks_for_those_connected_and_at_least_one() {
        let all = Durability::all_replicas();
        assert_eq!(all.asked(Some(2)), 2);
        assert_eq!(all.asked(None), 1);
        assert_eq!(all.asked(Some(0)), 1);
        assert_eq!(Durability::at_least(3).asked(Some(1)), 3);
        let wait = String::from_utf8(all.packed_wait(2)).unwrap();
        assert!(wait.contains("WAIT") && wait.contains("1000"), "{wait}");
    }
}
