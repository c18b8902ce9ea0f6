//! Reads from replicas: [`ReplicaOptions`] for [`SentinelPool::replica_pool`].
//!
//! [`SentinelPool::replica_pool`]: crate::SentinelPool::replica_pool

mod connect;

use std::time::Duration;

/// How long a replica connection made on a detour (its selected replica failed, another took
/// it) is kept. A replica that stops answering for less than the sentinels' `down-after`
/// leaves no trace in what they publish: without this, a pool filled while it was away would
/// never send it a connection again. Replacing detours after this long sends it its share once
/// it answers, and costs a reconnect every few seconds while it does not.
pub(crate) const DETOUR_LIFETIME: Duration = Duration::from_secs(5);

/// How a replica pool ([`SentinelPool::replica_pool`](crate::SentinelPool::replica_pool))
/// picks replicas and what it does when none can serve.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub struct ReplicaOptions {
    pub(crate) selection: ReplicaSelection,
    pub(crate) fallback_to_master: bool,
    pub(crate) max_size: Option<u32>,
    pub(crate) max_lag: Option<u64>,
}

/// Which replica a new connection goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ReplicaSelection {
    /// Each new connection to the next healthy replica in turn: connections spread evenly.
    RoundRobin,
    /// Each new connection to a healthy replica drawn at random: many processes that start
    /// together do not all begin with the same replica.
    Random,
}

impl Default for ReplicaOptions {
    /// Round robin, no fallback to the master, the master pool's `max_size`.
    fn default() -> Self {
        ReplicaOptions {
            selection: ReplicaSelection::RoundRobin,
            fallback_to_master: false,
            max_size: None,
            max_lag: None,
        }
    }
}

impl ReplicaOptions {
    /// How replicas are picked for new connections.
    ///
    /// Defaults to [`ReplicaSelection::RoundRobin`].
    pub fn selection(mut self, selection: ReplicaSelection) -> Self {
        self.selection = selection;
        self
    }

    /// Whether a connection goes to the master when no replica can serve (all down,
    /// disconnected from the master, or unreachable). Without it such a checkout fails with
    /// [`Error::NoHealthyReplica`](crate::Error::NoHealthyReplica).
    ///
    /// Defaults to `false`: reads that must not load the master say so by default.
    pub fn fallback_to_master(mut self, fallback: bool) -> Self {
        self.fallback_to_master = fallback;
        self
    }

    /// The most a replica may trail the master, in bytes of the replication stream, to get new
    /// connections: the master's offset minus the offset the replica last acknowledged (the
    /// master's `ROLE`, asked once per connect; replicas acknowledge every second, so a
    /// healthy replica's lag is the writes of the last second at most). Connections already
    /// open are not checked again. The bound always holds: when no lag can be known (while a
    /// fence holds during a failover, or when the master does not answer), no replica gets a
    /// new connection, and the checkout fails with
    /// [`NoHealthyReplica`](crate::Error::NoHealthyReplica) saying why, or reads from the
    /// master with [`fallback_to_master`](Self::fallback_to_master). The pool's user needs
    /// `ROLE` on the master; without it, checkouts fail with
    /// [`NoPermission`](crate::Error::NoPermission).
    ///
    /// Defaults to none: any healthy replica.
    pub fn max_lag_bytes(mut self, bytes: u64) -> Self {
        self.max_lag = Some(bytes);
        self
    }

    /// The most connections the replica pool keeps open, over all replicas.
    ///
    /// Defaults to the master pool's [`max_size`](crate::Builder::max_size).
    pub fn max_size(mut self, max_size: u32) -> Self {
        self.max_size = Some(max_size);
        self
    }
}
