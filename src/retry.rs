//! The retry loop behind [`SentinelPool::with_retry`], and its policy. What each error means
//! for a retry (applied or not, a failover or not) is decided in `outcome.rs`; this adds what
//! the connection saw during the attempt.

use std::time::{Duration, Instant};

use redis::{RedisError, RedisResult};

use crate::{
    Connection, Error,
    backoff::Backoff,
    node::NodeRole,
    outcome::{Class, classify, is_readonly, is_unblocked},
    shared::{RetryCounters, Shared, count},
};

/// How [`SentinelPool::with_retry`](crate::SentinelPool::with_retry) retries: attempts, exponential backoff with jitter, and a
/// total deadline. Set it with [`Builder::retry_policy`](crate::Builder::retry_policy).
///
/// Give it a deadline longer than your Sentinel's failover time (`down-after-milliseconds`
/// plus the promotion, typically a few seconds more) and a failover is invisible to callers.
/// A backoff ends early when the pool moves to a new generation (the watcher announced a
/// failover), so the first attempt after the announcement reaches the new master.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub struct RetryPolicy {
    pub(crate) max_attempts: u32,
    pub(crate) base_backoff: Duration,
    pub(crate) max_backoff: Duration,
    pub(crate) deadline: Duration,
}

impl Default for RetryPolicy {
    /// 100 attempts, backoff from 10 ms doubling up to 500 ms, within 10 seconds.
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 100,
            base_backoff: Duration::from_millis(10),
            max_backoff: Duration::from_millis(500),
            deadline: Duration::from_secs(10),
        }
    }
}

/// What a crash failover takes beyond `down-after-milliseconds`: the sentinels agreeing the
/// master is down, electing a leader, the promotion (seen at the leader's next `INFO`, once a
/// second) and the announcement. Measured at 1.2 to 1.4 s at every `down-after` tried (see
/// BENCHMARKS.md); 10 s leaves room for a slow election or a loaded machine.
const FAILOVER_MARGIN: Duration = Duration::from_secs(10);

/// The longest deadline the default policy grows to, whatever `down-after-milliseconds` says:
/// a call that waits longer than this looks hung to whoever made it.
const LONGEST_COVER: Duration = Duration::from_secs(120);

impl RetryPolicy {
    /// The default policy with its deadline grown to cover a crash failover of a deployment
    /// whose sentinels call a master down after `down_after` (unknown: the default), up to
    /// two minutes.
    pub(crate) fn covering(down_after: Option<Duration>) -> Self {
        let default = RetryPolicy::default();
        let Some(down_after) = down_after else {
            return default;
        };
        let deadline = default.deadline.max(
            down_after
                .saturating_add(FAILOVER_MARGIN)
                .min(LONGEST_COVER),
        );
        // Enough attempts for the deadline even if every wait is the shortest the longest
        // backoff draws (half of it): the deadline, not the count, ends the retries.
        let attempts = deadline.as_millis() / (default.max_backoff.as_millis() / 2);
        RetryPolicy {
            deadline,
            max_attempts: default
                .max_attempts
                .max(u32::try_from(attempts).unwrap_or(u32::MAX)),
            ..default
        }
    }

    /// The most attempts, the first one included.
    ///
    /// Defaults to 100.
    pub fn max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = attempts;
        self
    }

    /// The wait before the first retry; each later wait doubles, up to `max_backoff`. Each wait
    /// is drawn at random between half and all of that value, so that many clients do not
    /// retry in step.
    ///
    /// Defaults to 10 ms.
    pub fn base_backoff(mut self, backoff: Duration) -> Self {
        self.base_backoff = backoff;
        self
    }

    /// The longest wait between two attempts.
    ///
    /// Defaults to 500 ms.
    pub fn max_backoff(mut self, backoff: Duration) -> Self {
        self.max_backoff = backoff;
        self
    }

    /// The total time the attempts and waits may take; a checkout waits at most what is left.
    ///
    /// Defaults to 10 seconds.
    pub fn deadline(mut self, deadline: Duration) -> Self {
        self.deadline = deadline;
        self
    }

    pub(crate) fn deadline_value(&self) -> Duration {
        self.deadline
    }
}

/// Classifies an error met by one attempt of `with_retry`, with what the connection saw
/// during it: `applied_before` is [`Connection::applied`] when the attempt started.
pub(crate) fn classify_attempt(err: &RedisError, conn: &Connection, applied_before: u64) -> Class {
    match classify(err) {
        // Durable mode: applied on the master, not confirmed by enough replicas. Retried only
        // when idempotent; the connection is in step.
        Class::MaybeApplied if crate::durable::Shortfall::of(err).is_some() => Class::MaybeApplied,
        // A replica refuses writes: the caller sent one to a replica pool. Not a failover, and
        // no other replica will take it.
        Class::NotApplied { failover: true }
            if conn.serves() == NodeRole::Replica && is_readonly(err) =>
        {
            Class::Final
        }
        // Released by an operator's `CLIENT UNBLOCK`: the node is still master (the
        // connection asked), and the caller's wait was ended on purpose.
        Class::NotApplied { failover: true }
            if conn.serves() == NodeRole::Master
                && is_unblocked(err)
                && conn.failover_error().is_none() =>
        {
            Class::Final
        }
        // A replica that lost its master (`MASTERDOWN`): another one may serve.
        Class::NotApplied { failover: true } if conn.serves() == NodeRole::Replica => {
            Class::NotApplied { failover: false }
        }
        // The error kind says "maybe", but the connection is in step: the error never came off
        // the wire (a reply that does not convert to the type asked for). Retrying repeats it.
        Class::MaybeApplied if !conn.is_out_of_step() => Class::Final,
        // The connection broke under a request of reads alone (Sentinel closes every client
        // of a node it reconfigures), with nothing applied before in the attempt: nothing
        // was applied at all.
        Class::MaybeApplied if conn.sent_only_reads() && conn.applied() == applied_before => {
            Class::NotApplied { failover: false }
        }
        // Refused, but an earlier command of this attempt (or of this pipeline) was applied.
        Class::NotApplied { .. } if conn.applied() > applied_before => Class::MaybeApplied,
        class => class,
    }
}

/// What the retry loop reads of the connection an attempt ran on.
pub(crate) trait Attempted {
    /// Replies that said something was applied, over the connection's life.
    fn applied(&self) -> u64;
    /// The class of `err`, met by an attempt that began when [`applied`](Self::applied) was
    /// `applied_before`.
    fn class_of(&self, err: &RedisError, applied_before: u64) -> Class;
    /// Where the attempt ran, for the log.
    fn place(&self) -> String;
}

impl Attempted for Connection {
    fn applied(&self) -> u64 {
        Connection::applied(self)
    }

    fn class_of(&self, err: &RedisError, applied_before: u64) -> Class {
        classify_attempt(err, self, applied_before)
    }

    fn place(&self) -> String {
        self.addr().to_string()
    }
}

/// What the retry loop takes its connections from: a pool, whatever its topology.
pub(crate) trait Checkouts {
    /// What an attempt runs on.
    type Target: Attempted;
    /// What a checkout hands out.
    type Conn: std::ops::DerefMut<Target = Self::Target>;

    /// The state the pool's parts share: its generation, configuration and counters.
    fn shared(&self) -> &Shared;

    /// A connection, waiting at most `wait`.
    fn checkout(&self, wait: Duration) -> Result<Self::Conn, Error>;
}

/// The policy a pool's `with_retry` follows: the configured one, or one that covers the
/// failover of the deployment the sentinels describe.
pub(crate) fn policy(shared: &Shared) -> RetryPolicy {
    shared
        .config
        .retry
        .unwrap_or_else(|| RetryPolicy::covering(shared.watcher.down_after()))
}

/// The loop behind `with_retry` and `with_retry_idempotent`, counted in the pool's
/// [`RetryCounters`].
pub(crate) fn run<T, P: Checkouts>(
    pool: &P,
    idempotent: bool,
    op: impl FnMut(&mut P::Target) -> RedisResult<T>,
) -> Result<T, Error> {
    let counters = &pool.shared().retries;
    count(&counters.calls);
    let result = attempts(pool, idempotent, op, counters);
    pool.shared().events.series.call(&result);
    if let Err(err) = &result {
        count(match err {
            Error::MaybeApplied { .. }
            | Error::NotReplicated { .. }
            | Error::NotPersisted { .. } => &counters.maybe_applied,
            Error::RetriesExhausted { .. } => &counters.exhausted,
            _ => &counters.failed,
        });
    }
    result
}

fn attempts<T, P: Checkouts>(
    pool: &P,
    idempotent: bool,
    mut op: impl FnMut(&mut P::Target) -> RedisResult<T>,
    counters: &RetryCounters,
) -> Result<T, Error> {
    let policy = policy(pool.shared());
    let start = Instant::now();
    let deadline = start + policy.deadline;
    let mut backoff = Backoff::new(policy.base_backoff, policy.max_backoff);
    let mut attempt = 0;
    loop {
        attempt += 1;
        count(&counters.attempts);
        // Which kind of retry the attempt that failed calls for.
        let mut maybe_applied = false;
        if !idempotent {
            settle(pool, deadline);
        }
        let generation = pool.shared().generation.current();
        let remaining = deadline.saturating_duration_since(Instant::now());
        let wait = remaining
            .min(pool.shared().config.checkout_timeout)
            .max(Duration::from_millis(1));
        let last = match pool.checkout(wait) {
            Ok(mut conn) => {
                let applied_before = conn.applied();
                match op(&mut conn) {
                    Ok(value) => return Ok(value),
                    Err(err) => match conn.class_of(&err, applied_before) {
                        Class::Final => return Err(Error::from(err)),
                        Class::MaybeApplied if !idempotent => {
                            return Err(match Error::from(err) {
                                Error::Redis(err) => Error::MaybeApplied {
                                    attempts: attempt,
                                    source: err,
                                },
                                not_replicated => not_replicated,
                            });
                        }
                        class => {
                            // Returning `conn` (at the end of this arm) invalidates the pool if the
                            // error showed a failover, so the backoff below ends at once.
                            log::debug!("attempt {attempt} on {} failed: {err}", conn.place());
                            maybe_applied = class == Class::MaybeApplied;
                            Error::from(err)
                        }
                    },
                }
            }
            Err(err) if err.is_config() || matches!(err, Error::PoolExhausted { .. }) => {
                return Err(err);
            }
            Err(err) => {
                log::debug!("attempt {attempt}: no connection: {err}");
                err
            }
        };
        let backoff = backoff.next_wait();
        let now = Instant::now();
        if attempt >= policy.max_attempts || now + backoff >= deadline {
            return Err(Error::RetriesExhausted {
                attempts: attempt,
                elapsed: now - start,
                last: Box::new(last),
            });
        }
        count(if maybe_applied {
            &counters.retried_maybe_applied
        } else {
            &counters.retried_unapplied
        });
        pool.shared().events.series.retried(maybe_applied);
        // A failover announced meanwhile ends the wait: the next attempt reaches the new master.
        pool.shared()
            .generation
            .wait_for_change(generation, backoff);
    }
}

/// After a handover (Valkey's coordinated failover), waits until Sentinel closed the new
/// master's clients, or `deadline`: a write in flight when it does may or may not have been
/// applied, and an operation not declared idempotent would then fail as
/// [`Error::MaybeApplied`]. The pool starts a generation when it sees them closed, which ends
/// the wait.
fn settle(pool: &impl Checkouts, deadline: Instant) {
    let shared = pool.shared();
    while let Some(until) = shared.liveness.settling(Instant::now()) {
        let generation = shared.generation.current();
        let wait = until
            .min(deadline)
            .saturating_duration_since(Instant::now());
        if wait.is_zero() || shared.generation.is_closed() {
            return;
        }
        shared.generation.wait_for_change(generation, wait);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_deadline_covers_the_deployments_failover() {
        assert_eq!(RetryPolicy::covering(None), RetryPolicy::default());
        let fast = RetryPolicy::covering(Some(Duration::from_millis(500)));
        assert_eq!(fast.deadline, Duration::from_millis(10_500));
        let sentinel_default = RetryPolicy::covering(Some(Duration::from_secs(30)));
        assert_eq!(sentinel_default.deadline, Duration::from_secs(40));
        assert!(sentinel_default.max_attempts >= 100);
        assert!(
            u128::from(sentinel_default.max_attempts) * 250 >= 40_000,
            "{sentinel_default:?}"
        );
        let accepted = |policy: RetryPolicy| {
            crate::Builder::of(["h:1"], "s")
                .retry_policy(policy)
                .check()
                .is_ok()
        };
        assert!(accepted(sentinel_default));
        let absurd = RetryPolicy::covering(Some(Duration::MAX));
        assert!(accepted(absurd), "{absurd:?}");
        assert_eq!(absurd.deadline, Duration::from_secs(120));
    }
}
