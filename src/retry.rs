//! Error classes and the retry loop behind [`SentinelPool::with_retry`].
//!
//! An error is one of three classes:
//! - **not applied**: the command surely did not run (no connection could be made, the pool
//!   refused to send on a connection of an older generation, or the server refused it:
//!   `READONLY`, `MASTERDOWN`, `LOADING`, `TRYAGAIN`, `NOREPLICAS`, `UNBLOCKED` from a node
//!   that turned replica, or a transaction aborted because its commands were refused so).
//!   Safe to retry for any operation. An operator's `CLIENT UNBLOCK ... ERROR` also answers
//!   `UNBLOCKED`, on a node still master (the connection asks it with `HELLO`): that one is
//!   final, the wait was ended on purpose.
//! - **maybe applied**: the connection broke or timed out after the command was sent, or an
//!   earlier command of the same attempt was applied before a later one was refused. Retried
//!   only when the caller declared the operation idempotent.
//! - **final**: anything else (`WRONGTYPE`, a syntax error, a script error, a reply that does
//!   not convert to the type asked for...). Returned at once.
//!
//! Classification uses redis-rs's error kinds and server error codes, never message text. In
//! redis 1.x `READONLY` carries a cluster retry method (`RefreshSlotsAndRetry`) that a check on
//! the retry method alone misses, and it is *the* symptom of writing to a demoted master. A
//! conversion error has the same kind (`Parse`) as a garbled reply; the connection, which saw
//! every reply, tells them apart: only a connection that is out of step may have applied a
//! command it reports no reply for.

use std::time::{Duration, Instant};

use redis::{ErrorKind, RedisError, RedisResult, ServerErrorKind};

use crate::{
    Connection, Error, SentinelPool,
    backoff::Backoff,
    config::{LONGEST, invalid},
    connection::STALE,
    node::NodeRole,
};

/// How [`SentinelPool::with_retry`] retries: attempts, exponential backoff with jitter, and a
/// total deadline. Set it with [`Builder::retry_policy`](crate::Builder::retry_policy).
///
/// Give it a deadline longer than your Sentinel's failover time (`down-after-milliseconds`
/// plus the promotion, typically a few seconds more) and a failover is invisible to callers.
/// A backoff ends early when the pool moves to a new generation (the watcher announced a
/// failover), so the first attempt after the announcement reaches the new master.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub struct RetryPolicy {
    max_attempts: u32,
    base_backoff: Duration,
    max_backoff: Duration,
    deadline: Duration,
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

    pub(crate) fn validate(&self) -> Result<(), Error> {
        if self.max_attempts == 0 {
            return invalid("retry_policy", "max_attempts must be at least 1");
        }
        if self.deadline.is_zero() || self.deadline > LONGEST || self.max_backoff > LONGEST {
            return invalid(
                "retry_policy",
                "the deadline must be longer than zero, and it and the backoffs at most one year",
            );
        }
        if self.base_backoff > self.max_backoff {
            return invalid("retry_policy", "base_backoff is longer than max_backoff");
        }
        Ok(())
    }
}

/// What an error says about the command that met it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Class {
    /// Surely not applied; `failover` when it is evidence that the master moved.
    NotApplied { failover: bool },
    /// Sent, then the connection failed: it may have been applied.
    MaybeApplied,
    /// Retrying will not help.
    Final,
}

impl Class {
    pub(crate) fn is_safe_to_retry(self) -> bool {
        matches!(self, Class::NotApplied { .. })
    }

    pub(crate) fn is_failover(self) -> bool {
        self == Class::NotApplied { failover: true }
    }
}

/// Classifies an error met while running a command on a pooled connection, from the error
/// alone.
pub(crate) fn classify(err: &RedisError) -> Class {
    match err.kind() {
        // A transaction aborted at EXEC: what was refused while queued says why.
        ErrorKind::Server(ServerErrorKind::ExecAbort) => classify_all(err),
        // Server errors, of one command or of several in a pipeline: redis-rs's pipeline
        // error reports no code of its own, so look at each.
        ErrorKind::Server(_) | ErrorKind::Extension => classify_all(err),
        _ => classify_one(err),
    }
}

/// Classifies an error met by one attempt of `with_retry`, with what the connection saw
/// during it: `applied_before` is [`Connection::applied`] when the attempt started.
pub(crate) fn classify_attempt(err: &RedisError, conn: &Connection, applied_before: u64) -> Class {
    match classify(err) {
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

/// True for `UNBLOCKED`: a blocking command released before its timeout, by the node turning
/// replica or by an operator.
pub(crate) fn is_unblocked(err: &RedisError) -> bool {
    err.kind() == ErrorKind::Extension && err.code() == Some("UNBLOCKED")
}

/// True for `READONLY`, alone or inside an aborted transaction.
fn is_readonly(err: &RedisError) -> bool {
    let readonly = |kind: ErrorKind| kind == ErrorKind::Server(ServerErrorKind::ReadOnly);
    readonly(err.kind())
        || err.clone().into_server_errors().is_some_and(|errors| {
            errors
                .iter()
                .any(|(_, e)| readonly(RedisError::from(e.clone()).kind()))
        })
}

/// The class of a transaction's or pipeline's errors: not applied only when every command
/// was refused in a way that applies nothing; a failover if any refusal shows one.
fn classify_all(err: &RedisError) -> Class {
    let Some(errors) = err.clone().into_server_errors() else {
        return classify_one(err);
    };
    if errors.is_empty() {
        return Class::Final;
    }
    let mut failover = false;
    for (_, error) in errors.iter() {
        match classify_one(&RedisError::from(error.clone())) {
            Class::NotApplied { failover: f } => failover |= f,
            _ => return Class::Final,
        }
    }
    Class::NotApplied { failover }
}

fn classify_one(err: &RedisError) -> Class {
    match err.kind() {
        // The node was demoted, or is a replica that lost its master.
        ErrorKind::Server(ServerErrorKind::ReadOnly | ServerErrorKind::MasterDown) => {
            Class::NotApplied { failover: true }
        }
        ErrorKind::Server(ServerErrorKind::BusyLoading | ServerErrorKind::TryAgain) => {
            Class::NotApplied { failover: false }
        }
        ErrorKind::Extension => match err.code() {
            // A blocked command was released because the node became a replica.
            Some("UNBLOCKED") => Class::NotApplied { failover: true },
            // `min-replicas-to-write` not met: the write was refused.
            Some("NOREPLICAS") => Class::NotApplied { failover: false },
            // The pool refused to send on a connection of an older generation; the generation
            // already moved, so this is no new evidence.
            Some(STALE) => Class::NotApplied { failover: false },
            _ => Class::Final,
        },
        ErrorKind::Io if err.is_connection_refusal() => Class::NotApplied { failover: false },
        ErrorKind::Io | ErrorKind::Parse => Class::MaybeApplied,
        _ => Class::Final,
    }
}

/// The loop behind `with_retry` and `with_retry_idempotent`.
pub(crate) fn run<T>(
    pool: &SentinelPool,
    idempotent: bool,
    mut op: impl FnMut(&mut Connection) -> RedisResult<T>,
) -> Result<T, Error> {
    let policy = pool.retry_policy();
    let start = Instant::now();
    let deadline = start + policy.deadline;
    let mut backoff = Backoff::new(policy.base_backoff, policy.max_backoff);
    let mut attempt = 0;
    loop {
        attempt += 1;
        let generation = pool.generation();
        let remaining = deadline.saturating_duration_since(Instant::now());
        let wait = remaining
            .min(pool.connection_timeout())
            .max(Duration::from_millis(1));
        let last = match pool.get_timeout(wait) {
            Ok(mut conn) => {
                let applied_before = conn.applied();
                match op(&mut conn) {
                    Ok(value) => return Ok(value),
                    Err(err) => match classify_attempt(&err, &conn, applied_before) {
                        Class::Final => return Err(Error::Redis(err)),
                        Class::MaybeApplied if !idempotent => {
                            return Err(Error::MaybeApplied {
                                attempts: attempt,
                                source: err,
                            });
                        }
                        _ => {
                            // Returning `conn` (at the end of this arm) invalidates the pool if the
                            // error showed a failover, so the backoff below ends at once.
                            log::debug!("attempt {attempt} on {} failed: {err}", conn.addr());
                            Error::Redis(err)
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
        // A failover announced meanwhile ends the wait: the next attempt reaches the new master.
        pool.core().generation.wait_for_change(generation, backoff);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A server error as the parser makes it from the bytes a server sends.
    fn server(code: &str) -> RedisError {
        let reply = format!("-{code} some detail\r\n");
        let value = redis::parse_redis_value(reply.as_bytes()).unwrap();
        value.extract_error().unwrap_err()
    }

    fn io(kind: std::io::ErrorKind) -> RedisError {
        RedisError::from(std::io::Error::from(kind))
    }

    #[test]
    fn readonly_is_a_failover_even_though_redis_rs_calls_it_a_cluster_error() {
        let err = server("READONLY");
        assert_eq!(err.kind(), ErrorKind::Server(ServerErrorKind::ReadOnly));
        assert!(
            matches!(err.retry_method(), redis::RetryMethod::RefreshSlotsAndRetry),
            "a check on the retry method alone would miss this"
        );
        assert_eq!(classify(&err), Class::NotApplied { failover: true });
        assert_eq!(
            classify(&server("MASTERDOWN")),
            Class::NotApplied { failover: true }
        );
        assert_eq!(
            classify(&server("LOADING")),
            Class::NotApplied { failover: false }
        );
        assert_eq!(
            classify(&server("TRYAGAIN")),
            Class::NotApplied { failover: false }
        );
    }

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
        assert!(sentinel_default.validate().is_ok());
        let absurd = RetryPolicy::covering(Some(Duration::MAX));
        assert!(absurd.validate().is_ok(), "{absurd:?}");
        assert_eq!(absurd.deadline, Duration::from_secs(120));
    }

    #[test]
    fn extension_codes_are_classified_by_code() {
        assert_eq!(
            classify(&server("UNBLOCKED")),
            Class::NotApplied { failover: true }
        );
        assert_eq!(
            classify(&server("NOREPLICAS")),
            Class::NotApplied { failover: false }
        );
        assert_eq!(classify(&server("WRONGTYPE")), Class::Final);
    }

    #[test]
    fn a_request_the_pool_refused_to_send_is_not_applied() {
        assert_eq!(
            classify(&server("STALE")),
            Class::NotApplied { failover: false }
        );
        // EXECABORT with nothing inside says nothing about what was refused.
        assert_eq!(classify(&server("EXECABORT")), Class::Final);
    }

    #[test]
    fn io_errors_are_maybe_applied_except_refusals() {
        use std::io::ErrorKind::*;
        assert_eq!(
            classify(&io(ConnectionRefused)),
            Class::NotApplied { failover: false }
        );
        for kind in [
            UnexpectedEof,
            ConnectionReset,
            BrokenPipe,
            TimedOut,
            WouldBlock,
        ] {
            assert_eq!(classify(&io(kind)), Class::MaybeApplied, "{kind:?}");
        }
    }
}
