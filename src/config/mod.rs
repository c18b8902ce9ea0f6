//! Every option of the pool: the modes ([`Validation`], [`FenceResume`]), the [`Builder`] that
//! sets them (`builder.rs`), their validation into the [`Config`] the pool's parts share
//! (`validate.rs`), and the sentinel addresses users write (`sentinel_address.rs`).

use std::{sync::Arc, time::Duration};

use crate::{
    Connection, Error, NodeAddr, RetryPolicy,
    node::{AddressMap, NodeSettings},
};

mod builder;
mod check;
mod env;
mod failover;
#[cfg(feature = "serde")]
mod file;
pub(crate) mod limits;
mod sentinel_address;
#[cfg(feature = "tls")]
#[cfg_attr(docsrs, doc(cfg(feature = "tls")))]
mod tls;
pub(crate) mod url;

pub use builder::{Builder, Cluster, Sentinel, Standalone};
pub(crate) use env::{builder as from_env, cluster_builder as cluster_from_env};
#[cfg(feature = "serde")]
pub use file::PoolConfig;
pub(crate) use limits::{LONGEST, LONGEST_FENCE, MAX_POOL_SIZE};
pub(crate) use sentinel_address::{names_port, parse_sentinel, percent_decode};
#[cfg(feature = "tls")]
pub use tls::TlsOptions;

/// How a pooled connection is checked before it is handed out.
///
/// Whatever the mode, a connection from an older generation (one opened before the last
/// failover or [`invalidate`](crate::SentinelPool::invalidate)), or one left in a bad state
/// (inside `MULTI`, subscribed, after an I/O error), is never handed out; that check costs no
/// round trip. [`Stats::checkout`](crate::Stats::checkout) says which check checkouts make
/// now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Validation {
    /// No round trip for a master connection that answered less than `window` ago, in the
    /// current generation, while the watcher is live; `PING` and `ROLE` in one round trip
    /// otherwise. The default, with a `window` of 500 ms (HikariCP's
    /// `aliveBypassWindowMs`).
    ///
    /// *Live* means that the watcher is subscribed to a majority of the sentinels it knows
    /// and has heard from each of them within the last 2 s (a subscription that carries
    /// nothing for a second is pinged): a failover that Sentinel announces then reaches the
    /// pool within milliseconds and retires every connection to the old master at once, and
    /// the fence holds writes while the failover promotes, so the round trip would buy
    /// nothing. The moment that stops being true (sentinels down, frozen or cut off, the
    /// watcher stopped or [turned off](crate::Builder::watcher)), every checkout asks `PING`
    /// and `ROLE` again, by itself; it also does for a window after a master connection
    /// broke, so that its siblings, dead too if the master crashed, are caught at checkout.
    /// An [`Event::CheckoutMode`](crate::Event::CheckoutMode) says when checkouts change
    /// mode.
    ///
    /// What the window lets through, and who absorbs it:
    /// - a master demoted behind the sentinels' back (an operator's `REPLICAOF`) is handed
    ///   out for at most `window` after each connection's last answer: a write to it is
    ///   refused with `READONLY` and applied nowhere, which
    ///   [`with_retry`](crate::SentinelPool::with_retry) retries, and the first `READONLY`
    ///   retires every connection to that node; after `window`, checkouts refuse it;
    /// - a connection that died within the window (the node crashed or closed it) fails on
    ///   first use: a request of reads alone is retried by `with_retry` as not applied, a
    ///   write as maybe applied (returned as [`Error::MaybeApplied`](crate::Error) unless
    ///   the call is [idempotent](crate::SentinelPool::with_retry_idempotent)), as a write
    ///   in flight when the master crashes would be under [`PingRole`](Self::PingRole).
    ///   Plain [`get`](crate::SentinelPool::get) users see that error once per such
    ///   connection.
    ///
    /// Replica pools check every checkout with `PING` and `ROLE` whatever this says: no
    /// Sentinel announcement tells that a replica was promoted by hand. So do pools in
    /// [durable mode](crate::Builder::durability): the `ROLE` reply is the replica count
    /// that lets a write no replica could confirm be refused unsent, the moment a replica
    /// leaves, instead of answered `NotReplicated` after it was applied.
    Adaptive {
        /// How recent the connection's last good answer must be.
        window: Duration,
    },
    /// `PING` and `ROLE`, pipelined in one round trip, within one
    /// [`read_timeout`](crate::Builder::read_timeout), at every checkout: the node must answer
    /// and must still be a master. A node demoted behind the pool's back is never handed out,
    /// and a dead connection is found before the caller sends anything. For an ACL user that
    /// may not run `ROLE`, `HELLO` (which reports the role too) takes its place. A round trip
    /// per checkout: about half the throughput of [`Adaptive`](Self::Adaptive) for short
    /// requests.
    PingRole,
    /// No round trip: only the generation and the connection's own state are checked. A dead
    /// connection surfaces on first use instead (which
    /// [`with_retry`](crate::SentinelPool::with_retry) absorbs), and a master demoted behind
    /// the watcher's back is not noticed until a write fails.
    Off,
}

impl Validation {
    /// The default: [`Adaptive`](Self::Adaptive) with a window of 500 ms.
    pub const ADAPTIVE: Validation = Validation::Adaptive {
        window: Duration::from_millis(500),
    };
}

impl Default for Validation {
    fn default() -> Self {
        Validation::ADAPTIVE
    }
}

/// Where a fenced pool resumes writes during a failover: see
/// [`Builder::fence_resume`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum FenceResume {
    /// When the failover is committed: a sentinel names the promoted replica as master
    /// (`+switch-master`, or its answer to `SENTINEL MASTER`). Sentinel commits a failover
    /// when the leader's new configuration reaches the other sentinels, about 0.1 s after it
    /// saw the promotion, which itself comes up to a second after `REPLICAOF NO ONE` (the
    /// leader polls a promoted replica's `INFO` once a second). Until then a leader that dies
    /// leaves the other sentinels naming the old master, and they convert the promoted replica
    /// back, wiping what it accepted; so the fence holds writes until then. A planned
    /// failover pauses writes for about a second and loses none; no failure of the failover
    /// itself makes the pool lose a write that a pool without the fence would have kept. The
    /// default. A coordinated failover (Valkey 9) is followed at its commit too: the
    /// master's own handover is no more a commitment than a promotion (see
    /// [`FailoverSource::Handover`](crate::FailoverSource::Handover)).
    #[default]
    Commit,
    /// When the promoted replica answers `ROLE` master (asked every 2 ms while the fence is
    /// up), before any sentinel announces it: writes pause for about 0.1 s instead of a
    /// second, and after a master crash resume a few milliseconds after the promotion. The
    /// risk: if the failover leader dies (or is cut off) between the promotion and the moment
    /// its configuration reaches another sentinel, the others convert the promoted replica
    /// back and every write it acknowledged meanwhile is lost, where a pool without the fence
    /// would have kept writing to the old master. In a coordinated failover (Valkey 9) it
    /// resumes when the old master has handed over by itself
    /// ([`FailoverSource::Handover`](crate::FailoverSource::Handover)), with the same risk.
    Promotion,
}

/// The validated options, shared by the pool's parts.
#[derive(Debug, Clone)]
pub(crate) struct Config {
    pub(crate) sentinels: Vec<NodeAddr>,
    pub(crate) service: String,
    pub(crate) max_size: u32,
    pub(crate) min_idle: Option<u32>,
    pub(crate) checkout_timeout: Duration,
    pub(crate) idle_timeout: Option<Duration>,
    pub(crate) max_lifetime: Option<Duration>,
    pub(crate) data: NodeSettings,
    pub(crate) sentinel: NodeSettings,
    pub(crate) validation: Validation,
    /// `None`: the default, its deadline grown to cover the deployment's failovers.
    pub(crate) retry: Option<RetryPolicy>,
    pub(crate) watcher: bool,
    pub(crate) discover_sentinels: bool,
    pub(crate) max_sentinels: usize,
    /// `None`: no fence.
    pub(crate) fence: Option<FenceOptions>,
    pub(crate) address_map: AddressMap,
    pub(crate) hooks: Hooks,
}

/// The r2d2 hooks given to the builder, shared by the master pool and its replica pools.
#[derive(Clone, Default)]
pub(crate) struct Hooks {
    pub(crate) customizer: Option<Arc<dyn r2d2::CustomizeConnection<Connection, Error>>>,
    pub(crate) event_handler: Option<Arc<dyn r2d2::HandleEvent>>,
}

impl std::fmt::Debug for Hooks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hooks")
            .field("customizer", &self.customizer)
            .field("event_handler", &self.event_handler)
            .finish()
    }
}

/// How the watcher fences a failover.
#[derive(Debug, Clone, Copy)]
pub(crate) struct FenceOptions {
    /// How long a fence holds checkouts at most.
    pub(crate) timeout: Duration,
    pub(crate) resume: FenceResume,
}

/// A duration option must be longer than zero and at most [`LONGEST`].
pub(crate) fn check_duration(option: &'static str, value: Duration) -> Result<(), Error> {
    match limits::duration_problem(value) {
        Some(problem) => Err(invalid(option, problem)),
        None => Ok(()),
    }
}

/// The error for an option that cannot be used: `option` names it as the user gave it (a
/// builder method, a connection string's part, an environment variable), `reason` says what
/// is wrong and what to give instead.
pub(crate) fn invalid(option: &'static str, reason: impl Into<String>) -> Error {
    Error::InvalidConfig {
        option,
        reason: reason.into(),
    }
}
