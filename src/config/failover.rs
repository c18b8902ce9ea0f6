//! The builder's options about failovers and what the pool promises through them: how
//! checkouts are checked, how `with_retry` retries, the watcher, the fence, reads from the
//! replicas and durable mode.

use std::time::Duration;

use super::{Builder, FenceResume, Sentinel, Validation};
use crate::RetryPolicy;

impl<T> Builder<T> {
    /// How connections are checked at checkout; see [`Validation`]. A cluster's node pools
    /// take [`Validation::Adaptive`] as [`Validation::Off`]: there the node itself refuses a
    /// request for a slot it no longer serves (`MOVED`), and no `ROLE` is needed to find out.
    ///
    /// Defaults to [`Validation::Adaptive`] with a window of 500 ms.
    pub fn validation(mut self, validation: Validation) -> Self {
        self.validation = validation;
        self
    }

    /// How [`with_retry`](crate::SentinelPool::with_retry) retries; see [`RetryPolicy`].
    ///
    /// Defaults to [`RetryPolicy::default`] with a deadline that covers a crash failover of
    /// this deployment: the service's `down-after-milliseconds`, which the sentinels report
    /// (on a cluster, its `cluster-node-timeout`, asked at build), plus 10 s for the election,
    /// the promotion and the announcement, never under 10 s nor over 2 minutes (40 s at
    /// Sentinel's default 30 s; 11 s at 1 s). [`Stats::retry_deadline`](crate::Stats)
    /// shows the one in force. A policy set here is used as it is: a web request that must
    /// answer within its own budget sets a shorter deadline and maps the error to a 503.
    pub fn retry_policy(mut self, policy: RetryPolicy) -> Self {
        self.retry = Some(policy);
        self
    }

    /// Durable mode: every write through the pool is reported done only once the replicas
    /// asked for confirm it (`WAIT`, or `WAITAOF` [on disk](crate::Durability::on_disk), in the
    /// write's own round trip); short of that the call fails with
    /// [`Error::NotReplicated`](crate::Error::NotReplicated) (or
    /// [`NotPersisted`](crate::Error::NotPersisted)), never `Ok`.
    /// [`Connection::with_durability`](crate::Connection::with_durability) sets it for one call. `build` refuses a master that
    /// cannot confirm writes, before any write. Which requests it confirms, which replicas, and
    /// what it cannot do: [the guide](crate::guide#durable-mode).
    ///
    /// On a [cluster](crate::ClusterPool) each write waits for the replicas of its shard's
    /// primary, and a standalone server for its own: there only
    /// [`Durability::at_least`](crate::Durability::at_least) serves (`build` refuses
    /// `all_replicas`, whose count of the replicas that may be promoted asks the sentinels).
    ///
    /// Defaults to none: a write is done when the master acknowledges it.
    pub fn durability(mut self, durability: crate::Durability) -> Self {
        self.durability = Some(durability);
        self
    }
}

impl Builder<Sentinel> {
    /// Whether to run the watcher: background threads subscribed to every sentinel's
    /// `+switch-master`, which move the pool to a new master within milliseconds of its
    /// announcement. Without it the pool still recovers, later: from errors and `ROLE` checks,
    /// which after a planned failover means only once the old master is demoted (seconds later,
    /// writes it acknowledged meanwhile are lost).
    ///
    /// Defaults to `true`.
    pub fn watcher(mut self, enabled: bool) -> Self {
        self.watcher = enabled;
        self
    }

    /// Whether the watcher learns sentinels other than those given (from `+sentinel` and
    /// `SENTINEL SENTINELS`), listens to them and uses them for lookups. Turn it off when the
    /// sentinels announce addresses this client cannot reach, or to use exactly the list
    /// given.
    ///
    /// Defaults to `true`.
    pub fn discover_sentinels(mut self, enabled: bool) -> Self {
        self.discover_sentinels = enabled;
        self
    }

    /// The most sentinels the pool knows, those given included; learned ones beyond it are
    /// ignored. Each known sentinel costs a thread and two connections. At least the number of
    /// sentinels given.
    ///
    /// Defaults to 16.
    pub fn max_sentinels(mut self, max: usize) -> Self {
        self.max_sentinels = max;
        self
    }

    /// Whether the watcher fences the old master off while a failover promotes a replica: from
    /// the leader's selection of the replica until the failover commits, checkouts wait and
    /// connections to the old master refuse to send, so that no write it acknowledges after
    /// the promotion is lost. Writes pause about a second per failover; no failure of the
    /// failover itself makes it lose a write a pool without it would keep. Needs the watcher.
    /// How it follows each step, and what it cannot protect: [the
    /// guide](crate::guide#how-a-failover-is-handled).
    ///
    /// Defaults to `true`.
    pub fn fence(mut self, enabled: bool) -> Self {
        self.fence = enabled;
        self
    }

    /// The longest a fence holds checkouts: after it, the pool asks the sentinels for the
    /// master again, as without the fence. A checkout never waits longer than its own
    /// [`checkout_timeout`](Self::checkout_timeout) either. At most 30 seconds: a
    /// failover that has not committed by then is stuck, and Sentinel itself gives it up only
    /// after its `failover-timeout` (three minutes by default).
    ///
    /// Defaults to 3 seconds (a healthy failover commits within about 1.5 s of the step that
    /// raises the fence).
    pub fn fence_timeout(mut self, timeout: Duration) -> Self {
        self.fence_timeout = timeout;
        self
    }

    /// Where a fenced pool resumes writes: when the failover is committed (safe against its
    /// leader dying midway), or as soon as the promoted replica answers master (faster, at
    /// that risk). See [`FenceResume`] for the figures.
    ///
    /// Defaults to [`FenceResume::Commit`].
    pub fn fence_resume(mut self, resume: FenceResume) -> Self {
        self.fence_resume = resume;
        self
    }

    /// Builds a pool of reads from the replicas instead of the master: what
    /// [`SentinelPool::replica_pool`](crate::SentinelPool::replica_pool) gives, for a program
    /// that only reads (a connection string's `?role=replica`). The master's watcher runs
    /// behind it. `build` still checks the master first; `build_manager` gives a manager
    /// whose connections go to replicas.
    ///
    /// Defaults to none: the pool serves the master.
    pub fn read_from_replicas(mut self, options: crate::ReplicaOptions) -> Self {
        self.replicas = Some(options);
        self
    }

    /// The former name of [`read_from_replicas`](Self::read_from_replicas), which says
    /// that it makes a pool of reads.
    #[deprecated(since = "0.1.0", note = "renamed `read_from_replicas`")]
    pub fn replicas(self, options: crate::ReplicaOptions) -> Self {
        self.read_from_replicas(options)
    }
}
