//! [`Stats`]: a snapshot of what the pool knows and did.

use std::time::{Duration, SystemTime};

use crate::NodeAddr;

/// A snapshot from [`SentinelPool::stats`](crate::SentinelPool::stats). Racy by nature: each
/// field is read at a slightly different moment.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// The current generation: 0 at start, one more at each invalidation.
    pub generation: u64,
    /// The master of the current generation, if it has been looked up (or announced by the
    /// watcher) since the last invalidation.
    pub master: Option<NodeAddr>,
    /// Failovers applied by the watcher.
    pub failovers: u64,
    /// Whether a fence holds checkouts now (see [`Builder::fence`](crate::Builder::fence)).
    pub fenced: bool,
    /// Fences put up so far.
    pub fences_raised: u64,
    /// Fences that came down on a promoted master.
    pub fences_resumed: u64,
    /// Fences that came down without one (aborted failover, timeout, watcher stopped).
    pub fences_released: u64,
    /// When the last of them was applied.
    pub last_failover: Option<SystemTime>,
    /// What the watcher is doing.
    pub watcher: WatcherState,
    /// The sentinels the pool knows, in the order lookups ask them.
    pub sentinels: Vec<NodeAddr>,
    /// Events dropped because nobody read [`events`](crate::SentinelPool::events) fast enough.
    pub events_dropped: u64,
    /// Connections open, idle or in use (r2d2's view).
    pub connections: u32,
    /// Idle connections (r2d2's view).
    pub idle_connections: u32,
    /// The service's `down-after-milliseconds`, once a sentinel said it.
    pub down_after: Option<Duration>,
    /// The deadline [`with_retry`](crate::SentinelPool::with_retry) works within now: the
    /// [`retry_policy`](crate::Builder::retry_policy) set, or the default grown to cover
    /// `down_after`.
    pub retry_deadline: Duration,
}

/// The watcher's state in [`Stats`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum WatcherState {
    /// Disabled by [`Builder::watcher(false)`](crate::Builder::watcher).
    Off,
    /// Running; `subscribed` lists the sentinels it listens to now (empty while all are
    /// unreachable).
    Running {
        /// The sentinels whose events it receives now.
        subscribed: Vec<NodeAddr>,
    },
    /// Stopped by [`SentinelPool::stop_watcher`](crate::SentinelPool::stop_watcher).
    Stopped,
}
