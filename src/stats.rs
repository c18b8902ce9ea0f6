//! [`Stats`]: a snapshot of what the pool knows and did.

use std::{
    fmt,
    time::{Duration, SystemTime},
};

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
    /// The check master checkouts make now (see [`Validation`](crate::Validation)).
    pub checkout: CheckoutMode,
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
    /// What [`with_retry`](crate::SentinelPool::with_retry) and
    /// [`with_retry_idempotent`](crate::SentinelPool::with_retry_idempotent) did, counted
    /// since the pool was built.
    pub retries: RetryStats,
}

/// What the retry loop did, in [`Stats`]: how often it ran, retried and gave up. Counted since
/// the pool was built, over every caller.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RetryStats {
    /// Calls of `with_retry` and `with_retry_idempotent`.
    pub calls: u64,
    /// Attempts they made, first ones included: `attempts - calls` were retries.
    pub attempts: u64,
    /// Retries after an error that applied nothing (no connection, `READONLY`, `LOADING`,
    /// `NOREPLICAS`, a stale connection...).
    pub retried_unapplied: u64,
    /// Retries after an error that may have applied the operation (a connection that broke
    /// mid-request, `NotReplicated`): only `with_retry_idempotent` makes these.
    pub retried_maybe_applied: u64,
    /// Calls that returned [`Error::MaybeApplied`](crate::Error::MaybeApplied) or a durable
    /// shortfall (`NotReplicated`, `NotPersisted`) instead of retrying it.
    pub maybe_applied: u64,
    /// Calls that gave up: [`Error::RetriesExhausted`](crate::Error::RetriesExhausted).
    pub exhausted: u64,
    /// Calls that returned an error no retry could help (a final error, a configuration
    /// error, an exhausted pool).
    pub failed: u64,
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

/// The check a master checkout makes now, in [`Stats`] and
/// [`Event::CheckoutMode`](crate::Event::CheckoutMode).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum CheckoutMode {
    /// `PING` and `ROLE` in one round trip: [`Validation::PingRole`](crate::Validation), or
    /// an adaptive pool whose watcher does not hear a majority of the sentinels now (or
    /// whose master connection broke moments ago).
    RoundTrip,
    /// No round trip for a connection that answered within the window, `PING` and `ROLE` for
    /// the others: an adaptive pool whose watcher is live.
    SkipRecent,
    /// No round trip at all: [`Validation::Off`](crate::Validation).
    NoRoundTrip,
}

/// `PING+ROLE`, `no round trip for recent connections`, or `no round trip`.
impl fmt::Display for CheckoutMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CheckoutMode::RoundTrip => "PING+ROLE",
            CheckoutMode::SkipRecent => "no round trip for recent connections",
            CheckoutMode::NoRoundTrip => "no round trip",
        })
    }
}

/// One line for a health endpoint or a log, for example:
///
/// ```text
/// master 10.0.0.5:6379 (generation 3); 2 failovers, fence down; watcher listening to 3 of 3 sentinels; checkout: no round trip for recent connections; 12 connections (4 idle); down-after 30s, retry deadline 40s
/// ```
impl fmt::Display for Stats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.master {
            Some(master) => write!(f, "master {master}")?,
            None => write!(f, "master not looked up yet")?,
        }
        write!(
            f,
            " (generation {}); {} failover{}, fence {}; watcher ",
            self.generation,
            self.failovers,
            if self.failovers == 1 { "" } else { "s" },
            if self.fenced { "UP" } else { "down" },
        )?;
        match &self.watcher {
            WatcherState::Running { subscribed } => write!(
                f,
                "listening to {} of {} sentinels",
                subscribed.len(),
                self.sentinels.len()
            )?,
            other => write!(f, "{other}")?,
        }
        write!(
            f,
            "; checkout: {}; {} connections ({} idle); ",
            self.checkout, self.connections, self.idle_connections
        )?;
        if let Some(down_after) = self.down_after {
            write!(f, "down-after {down_after:?}, ")?;
        }
        write!(f, "retry deadline {:?}", self.retry_deadline)?;
        let r = &self.retries;
        if r.calls > 0 {
            write!(
                f,
                "; {} retried calls: {} retries ({} after maybe-applied), {} maybe applied, \
                 {} gave up, {} failed",
                r.calls,
                r.attempts.saturating_sub(r.calls),
                r.retried_maybe_applied,
                r.maybe_applied,
                r.exhausted,
                r.failed
            )?;
        }
        Ok(())
    }
}

/// `off`, `stopped`, or `listening to N sentinels`.
impl fmt::Display for WatcherState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WatcherState::Off => f.write_str("off"),
            WatcherState::Stopped => f.write_str("stopped"),
            WatcherState::Running { subscribed } => {
                write!(f, "listening to {} sentinels", subscribed.len())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_read_on_one_line() {
        let node = |port| NodeAddr::new("10.0.0.5", port);
        let mut stats = Stats {
            generation: 3,
            master: Some(node(6379)),
            failovers: 2,
            fenced: false,
            fences_raised: 2,
            fences_resumed: 2,
            fences_released: 0,
            last_failover: None,
            watcher: WatcherState::Running {
                subscribed: vec![node(26379), node(26380)],
            },
            checkout: CheckoutMode::SkipRecent,
            sentinels: vec![node(26379), node(26380), node(26381)],
            events_dropped: 0,
            connections: 12,
            idle_connections: 4,
            down_after: Some(Duration::from_secs(30)),
            retry_deadline: Duration::from_secs(40),
            retries: RetryStats::default(),
        };
        assert_eq!(
            stats.to_string(),
            "master 10.0.0.5:6379 (generation 3); 2 failovers, fence down; watcher listening \
             to 2 of 3 sentinels; checkout: no round trip for recent connections; 12 \
             connections (4 idle); down-after 30s, retry deadline 40s"
        );
        stats.retries = RetryStats {
            calls: 10,
            attempts: 14,
            retried_unapplied: 3,
            retried_maybe_applied: 1,
            maybe_applied: 1,
            exhausted: 0,
            failed: 2,
        };
        assert!(
            stats.to_string().ends_with(
                "retry deadline 40s; 10 retried calls: 4 retries (1 after maybe-applied), 1 \
                 maybe applied, 0 gave up, 2 failed"
            ),
            "{stats}"
        );
        stats.retries = RetryStats::default();
        stats.master = None;
        stats.failovers = 1;
        stats.fenced = true;
        stats.watcher = WatcherState::Off;
        stats.checkout = CheckoutMode::RoundTrip;
        stats.down_after = None;
        assert_eq!(
            stats.to_string(),
            "master not looked up yet (generation 3); 1 failover, fence UP; watcher off; \
             checkout: PING+ROLE; 12 connections (4 idle); retry deadline 40s"
        );
    }
}
