//! The one public error type of the crate: the variants and their predicates here, the
//! messages in [`display`].

mod display;

use std::{error, time::Duration};

use redis::RedisError;

use crate::durable::Shortfall;

/// Everything that can go wrong when building a pool, checking out a connection or running a
/// command through [`SentinelPool::with_retry`](crate::SentinelPool::with_retry).
///
/// Each variant says when it happens; its message says what to fix, and holds the messages of
/// its causes, so that printing it (`{}`) tells the whole story and `source()` is empty (a
/// reporter walking the chain would show each cause twice). The causes themselves are the
/// variants' fields: a [`RedisError`], or the [`Error`] a [`CheckoutTimeout`](Error::CheckoutTimeout)
/// or [`RetriesExhausted`](Error::RetriesExhausted) ended on. Use the predicates
/// ([`is_timeout`](Error::is_timeout), [`is_retryable`](Error::is_retryable),
/// [`is_config`](Error::is_config)) rather than matching messages.
///
/// So an error reporter (`anyhow`, `eyre`, a `Box<dyn Error>` printed by `main`) shows one
/// message and no "caused by" list, and loses nothing. To act on a cause, downcast the report
/// to this type and match the variant's fields:
///
/// ```no_run
/// use r2d2_redis_sentinel::{Error, SentinelPool, redis::Commands};
///
/// # fn run(pool: &SentinelPool) {
/// let result: Result<(), Box<dyn std::error::Error>> =
///     pool.with_retry(|c| c.set("k", 1)).map_err(Into::into);
/// if let Err(report) = result {
///     assert!(report.source().is_none(), "every cause is in the message");
///     if let Some(Error::RetriesExhausted { last, .. }) = report.downcast_ref::<Error>() {
///         // `last` is the typed error the last attempt met.
///         eprintln!("gave up ({}): {last}", if last.is_timeout() { "timeouts" } else { "failures" });
///     }
/// }
/// # }
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Error {
    /// The builder was given an empty list of sentinel addresses.
    NoSentinels,
    /// A sentinel address could not be parsed, or names a Unix socket (sentinels are reached over
    /// TCP).
    InvalidSentinelAddress {
        /// The address as given, with a password in it replaced by `<redacted>`.
        address: String,
        /// Why it was rejected.
        reason: String,
    },
    /// An option has a value that cannot work (`max_size(0)`, a zero timeout, ...), however
    /// it was given.
    InvalidConfig {
        /// Where the value came from, as the user wrote it: a builder method (`max_size`,
        /// `service`), a connection string (`url`, or the parameter: `db`, `read_timeout`), an
        /// environment variable (`SERVICE`, `ADDRESS_MAP`), a configuration file's field
        /// (`sentinels`), or `ReplicaOptions::max_size`.
        option: &'static str,
        /// Why it was rejected.
        reason: String,
    },
    /// No sentinel could be asked: each one refused the connection, timed out or failed.
    SentinelsUnreachable {
        /// What went wrong with each sentinel, in the order they were tried.
        failures: Vec<SentinelFailure>,
    },
    /// The sentinels answered, and none of them monitors a master by this name.
    UnknownService {
        /// The service (master) name that was asked for.
        service: String,
        /// The sentinels that answered.
        asked: Vec<String>,
    },
    /// The sentinels know the service but report its master as down: a failover is probably in
    /// progress. Retrying shortly is the right reaction.
    MasterDown {
        /// The service (master) name that was asked for.
        service: String,
    },
    /// An address given as a sentinel answered, but is not a sentinel (a Redis data node, say).
    NotASentinel {
        /// The address that is not a sentinel.
        address: String,
    },
    /// A sentinel rejected the sentinel credentials
    /// ([`sentinel_password`](crate::Builder::sentinel_password)).
    SentinelAuth {
        /// The sentinel that rejected them.
        address: String,
        /// The error the sentinel returned.
        source: RedisError,
    },
    /// A data node rejected the data-node credentials ([`password`](crate::Builder::password)).
    Auth {
        /// The node that rejected them.
        address: String,
        /// The error the node returned.
        source: RedisError,
    },
    /// The ACL user may not run a command the pool needs on this node. The pool asks a data
    /// node's role with `ROLE`, and with `HELLO` when the user may not run `ROLE` (users made
    /// with `-@dangerous`); sentinels need `SENTINEL` and `ROLE`.
    NoPermission {
        /// The node that refused.
        address: String,
        /// The command that was refused.
        command: &'static str,
        /// The error the node returned.
        source: RedisError,
    },
    /// A failover of the service is under way and the pool's fence held this connect until its
    /// `checkout_timeout` ended: the old master is fenced off and the promoted replica had not
    /// answered as master yet. Retrying shortly is the right reaction; see
    /// [`fence_timeout`](crate::Builder::fence_timeout).
    FailoverInProgress {
        /// The service (master) name.
        service: String,
        /// The old master holds writes for a handover whose replica has not caught up
        /// ([`Event::HandoverStalled`](crate::Event::HandoverStalled)): writes wait until it
        /// does or Sentinel gives the failover up at its `failover-timeout`.
        stalled: bool,
    },
    /// A replica pool found no replica that can serve reads: the sentinels list none as
    /// healthy, or none of those listed could be reached or answered `ROLE` as a replica.
    /// Allow [`fallback_to_master`](crate::ReplicaOptions::fallback_to_master) to read from the
    /// master then.
    NoHealthyReplica {
        /// The service (master) name.
        service: String,
        /// Each replica tried, and what went wrong there.
        tried: Vec<String>,
    },
    /// A connection to the data node the sentinels named could not be made in time.
    Connect {
        /// The node that could not be reached.
        address: String,
        /// The underlying error.
        source: RedisError,
    },
    /// The node the sentinels named does not have the role the pool needs (a master pool was led
    /// to a replica): the sentinels' view was stale, a failover is under way.
    WrongRole {
        /// The node that answered `ROLE`.
        address: String,
        /// The role the pool needs.
        expected: &'static str,
        /// The role the node reported.
        actual: String,
    },
    /// The system refused to start one of the pool's threads (out of threads or memory).
    ThreadSpawn {
        /// The thread's name.
        name: String,
        /// What the system said.
        reason: String,
    },
    /// `get` waited `waited` and every connection stayed in use: the pool is too small for the
    /// load, or connections are held too long.
    PoolExhausted {
        /// How long the checkout waited.
        waited: Duration,
        /// The pool's `max_size`.
        max_size: u32,
    },
    /// `get` waited `waited` and no new connection could be made; `cause` is the last failure.
    /// A configuration error (see [`is_config`](Error::is_config)) is returned as itself
    /// instead, as soon as it is met.
    CheckoutTimeout {
        /// How long the checkout waited.
        waited: Duration,
        /// Why the last connection attempt failed.
        cause: Box<Error>,
    },
    /// A command returned an error (a server error such as `WRONGTYPE`, or a broken connection
    /// where a retry was not attempted).
    Redis(RedisError),
    /// The connection failed after the command had been sent, so it may or may not have been
    /// applied, and the operation was not declared idempotent: it was not run again. Look at
    /// what it would have changed before repeating it: a pop or a move (`BLMOVE`, `LPOP`) may
    /// have taken an element, which is then in its destination, not lost.
    /// [`with_retry_idempotent`](crate::SentinelPool::with_retry_idempotent) is for operations
    /// that give the same result run twice (`GET`, `SET` of a fixed value, `DEL`), never for a
    /// pop, a move, `INCR` or a push.
    MaybeApplied {
        /// Attempts made, this one included.
        attempts: u32,
        /// The error that broke the connection.
        source: RedisError,
    },
    /// Durable mode ([`Builder::durability`](crate::Builder::durability)): the master applied
    /// the write, and fewer replicas than asked confirmed it within the durability timeout. It
    /// may be lost if the master fails before they catch up. Not retried unless the operation
    /// was declared idempotent.
    NotReplicated {
        /// Replicas asked to confirm.
        asked: u32,
        /// Replicas that confirmed.
        confirmed: u32,
    },
    /// Durable mode [on disk](crate::Durability::on_disk): the master applied the write, and
    /// `WAITAOF` did not confirm it in the master's append-only file (`on_master` false) or in
    /// as many replicas' files as asked within the durability timeout. It may be lost if the
    /// master fails (or every node restarts) now. Not retried unless the operation was
    /// declared idempotent.
    NotPersisted {
        /// The master fsynced the write to its append-only file.
        on_master: bool,
        /// Replicas asked to confirm.
        asked: u32,
        /// Replicas that confirmed.
        confirmed: u32,
    },
    /// Retries were exhausted (attempts or deadline of the
    /// [`RetryPolicy`](crate::RetryPolicy)); `last` is the last failure.
    RetriesExhausted {
        /// Attempts made.
        attempts: u32,
        /// Time spent, from the first attempt.
        elapsed: Duration,
        /// The last failure.
        last: Box<Error>,
    },
}

/// Why one sentinel could not be asked, inside [`Error::SentinelsUnreachable`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct SentinelFailure {
    /// The sentinel's address.
    pub address: String,
    /// The error met there.
    pub source: RedisError,
}

impl Error {
    /// True when the error comes from a timeout: a connect, read or write timeout, or a checkout
    /// that waited its full `checkout_timeout`.
    pub fn is_timeout(&self) -> bool {
        match self {
            Error::Connect { source, .. }
            | Error::Redis(source)
            | Error::MaybeApplied { source, .. } => source.is_timeout(),
            Error::SentinelsUnreachable { failures } => {
                !failures.is_empty() && failures.iter().all(|f| f.source.is_timeout())
            }
            Error::PoolExhausted { .. }
            | Error::CheckoutTimeout { .. }
            | Error::FailoverInProgress { .. } => true,
            Error::RetriesExhausted { last, .. } => last.is_timeout(),
            _ => false,
        }
    }

    /// True when the same call may succeed if tried again later without changing anything:
    /// unreachable nodes, a master reported down, a stale role, a checkout that timed out,
    /// retries that ran out on one of these.
    /// Configuration errors and server errors such as `WRONGTYPE` are not retryable.
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::SentinelsUnreachable { .. }
            | Error::MasterDown { .. }
            | Error::Connect { .. }
            | Error::WrongRole { .. }
            | Error::FailoverInProgress { .. }
            | Error::NoHealthyReplica { .. }
            | Error::PoolExhausted { .. } => true,
            Error::CheckoutTimeout { cause, .. } | Error::RetriesExhausted { last: cause, .. } => {
                cause.is_retryable()
            }
            Error::Redis(source) => crate::outcome::classify(source).is_safe_to_retry(),
            _ => false,
        }
    }

    /// The variant's name in snake case (`"maybe_applied"`, `"not_replicated"`,
    /// `"retries_exhausted"`...): a short, stable label for a metric or a log field. A new
    /// variant gets a new name; a name never changes.
    pub fn kind(&self) -> &'static str {
        match self {
            Error::NoSentinels => "no_sentinels",
            Error::InvalidSentinelAddress { .. } => "invalid_sentinel_address",
            Error::InvalidConfig { .. } => "invalid_config",
            Error::SentinelsUnreachable { .. } => "sentinels_unreachable",
            Error::UnknownService { .. } => "unknown_service",
            Error::MasterDown { .. } => "master_down",
            Error::NotASentinel { .. } => "not_a_sentinel",
            Error::SentinelAuth { .. } => "sentinel_auth",
            Error::Auth { .. } => "auth",
            Error::NoPermission { .. } => "no_permission",
            Error::FailoverInProgress { .. } => "failover_in_progress",
            Error::NoHealthyReplica { .. } => "no_healthy_replica",
            Error::Connect { .. } => "connect",
            Error::WrongRole { .. } => "wrong_role",
            Error::ThreadSpawn { .. } => "thread_spawn",
            Error::PoolExhausted { .. } => "pool_exhausted",
            Error::CheckoutTimeout { .. } => "checkout_timeout",
            Error::Redis(_) => "redis",
            Error::MaybeApplied { .. } => "maybe_applied",
            Error::NotReplicated { .. } => "not_replicated",
            Error::NotPersisted { .. } => "not_persisted",
            Error::RetriesExhausted { .. } => "retries_exhausted",
        }
    }

    /// True when the error can only be fixed by changing the configuration: addresses,
    /// credentials, service name or an option's value.
    pub fn is_config(&self) -> bool {
        matches!(
            self,
            Error::NoSentinels
                | Error::InvalidSentinelAddress { .. }
                | Error::InvalidConfig { .. }
                | Error::UnknownService { .. }
                | Error::NotASentinel { .. }
                | Error::SentinelAuth { .. }
                | Error::Auth { .. }
                | Error::NoPermission { .. }
        )
    }
}

/// No `source()`: each message already holds its causes' (a reporter that walks the chain,
/// such as anyhow's `{:?}`, would print every cause twice). The causes are the variants'
/// fields, typed.
impl error::Error for Error {}

impl From<RedisError> for Error {
    /// [`Error::NotReplicated`] (or [`Error::NotPersisted`]) for a durable write fewer
    /// replicas confirmed than asked, [`Error::Redis`] otherwise.
    fn from(err: RedisError) -> Self {
        match Shortfall::of(&err) {
            Some(Shortfall {
                asked,
                confirmed,
                on_master: None,
            }) => Error::NotReplicated { asked, confirmed },
            Some(Shortfall {
                asked,
                confirmed,
                on_master: Some(on_master),
            }) => Error::NotPersisted {
                on_master,
                asked,
                confirmed,
            },
            None => Error::Redis(err),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maybe_applied_says_a_pop_or_a_move_is_not_safe_to_repeat() {
        let err = Error::MaybeApplied {
            attempts: 1,
            source: RedisError::from(std::io::Error::from(std::io::ErrorKind::UnexpectedEof)),
        };
        let text = err.to_string();
        assert!(text.contains("a move may have taken an element"), "{text}");
        assert!(text.contains("look in its destination"), "{text}");
        assert!(text.contains("never a pop, a move"), "{text}");
        assert_eq!(err.kind(), "maybe_applied");
    }

    #[test]
    fn giving_up_on_noreplicas_says_what_to_check() {
        let refused = redis::make_extension_error("NOREPLICAS".into(), Some("none".into()));
        let err = Error::RetriesExhausted {
            attempts: 9,
            elapsed: Duration::from_secs(10),
            last: Box::new(Error::Redis(refused)),
        };
        let text = err.to_string();
        assert!(text.contains("INFO replication"), "{text}");
        assert!(text.contains("longer deadline"), "{text}");
        let other = Error::RetriesExhausted {
            attempts: 9,
            elapsed: Duration::from_secs(10),
            last: Box::new(Error::NoSentinels),
        };
        assert!(!other.to_string().contains("INFO replication"));
    }

    #[test]
    fn an_unknown_service_names_the_default_from_env_picks() {
        let err = Error::UnknownService {
            service: "mymaster".into(),
            asked: vec!["127.0.0.1:26379".into()],
        };
        let text = err.to_string();
        assert!(text.contains("SERVICE is not set"), "{text}");
    }

    #[test]
    fn kinds_are_snake_case_labels() {
        let kinds = [
            Error::NoSentinels.kind(),
            Error::PoolExhausted {
                waited: Duration::ZERO,
                max_size: 1,
            }
            .kind(),
            Error::NotReplicated {
                asked: 2,
                confirmed: 1,
            }
            .kind(),
            Error::Redis(RedisError::from((redis::ErrorKind::Client, "x"))).kind(),
        ];
        assert_eq!(
            kinds,
            ["no_sentinels", "pool_exhausted", "not_replicated", "redis"]
        );
    }

    #[test]
    fn each_cause_is_shown_once_and_no_chain_repeats_it() {
        let io = RedisError::from(std::io::Error::new(
            std::io::ErrorKind::ConnectionRefused,
            "refused by the test",
        ));
        let err = Error::RetriesExhausted {
            attempts: 3,
            elapsed: Duration::from_secs(1),
            last: Box::new(Error::CheckoutTimeout {
                waited: Duration::from_secs(1),
                cause: Box::new(Error::Connect {
                    address: "127.0.0.1:1".into(),
                    source: io,
                }),
            }),
        };
        let mut report = err.to_string();
        let mut cause = error::Error::source(&err);
        while let Some(next) = cause {
            report.push_str(&next.to_string());
            cause = next.source();
        }
        assert_eq!(report.matches("refused by the test").count(), 1, "{report}");
    }
}
