//! The crate's error vocabulary: the codes of the errors it makes itself, and every predicate
//! on a [`RedisError`], in one place. The connection (which marks itself unfit after a
//! failover error), the retry loop, the sentinel client and the watcher all ask here.
//!
//! # Classes
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
//!
//! # Whether a connection is still in step
//!
//! [`leaves_in_step`] decides, for pooled connections, sentinel connections and
//! subscriptions alike, whether a connection that met an error can take the next request.

use redis::{ErrorKind, RedisError, ServerErrorKind};

/// The error code of a request a connection refused to send because the pool moved to a new
/// generation after the connection was checked out. Nothing was sent: safe to retry.
pub(crate) const STALE: &str = "STALE";

/// The error code of a request durable mode refused unsent because it cannot be used as asked
/// (the detail says what to change).
pub(crate) const DURABLE: &str = "DURABLE";

/// The code of the error a durable write gets when fewer replicas confirmed it than asked:
/// the master applied it, and it may be lost if the master fails before they catch up.
pub(crate) const NOT_REPLICATED: &str = "NOTREPLICATED";

/// The code of the error a durable write on disk gets when `WAITAOF` did not confirm it on
/// the master's disk or on enough replicas' disks.
pub(crate) const NOT_PERSISTED: &str = "NOTPERSISTED";

/// The code Redis answers a write with when `min-replicas-to-write` is not met; durable mode
/// uses it too, for a write refused unsent while no replica can confirm it.
pub(crate) const NO_REPLICAS: &str = "NOREPLICAS";

/// A blocked command released before its timeout: by the node turning replica, or by an
/// operator's `CLIENT UNBLOCK ... ERROR`.
const UNBLOCKED: &str = "UNBLOCKED";

/// Whether a connection that met `err` is still in step, able to take the next request: a
/// server's error reply is a complete reply, and so is one that did not convert to the type
/// asked for (redis-rs reads a reply in full before converting it). Anything else (an I/O
/// error, a timeout, an unparsable reply) may leave a reply in flight.
pub(crate) fn leaves_in_step(err: &RedisError) -> bool {
    matches!(
        err.kind(),
        ErrorKind::Server(_) | ErrorKind::Extension | ErrorKind::UnexpectedReturnType
    )
}

/// True when the error says the credentials were missing or wrong, also when it is the
/// error of one command of a pipeline (redis-rs's pipeline error has no code of its own).
pub(crate) fn is_auth_error(err: &RedisError) -> bool {
    let is_auth_code = |code: &str| matches!(code, "NOAUTH" | "WRONGPASS");
    err.kind() == ErrorKind::AuthenticationFailed
        || err.code().is_some_and(is_auth_code)
        || err
            .clone()
            .into_server_errors()
            .is_some_and(|errors| errors.iter().any(|(_, e)| is_auth_code(e.code())))
}

/// True when the ACL user may not run the command (`NOPERM`).
pub(crate) fn is_no_permission(err: &RedisError) -> bool {
    err.kind() == ErrorKind::Server(ServerErrorKind::NoPerm)
}

/// A plain `ERR` reply to a command every Redis and Sentinel knows: the server does not know
/// it (a Sentinel-compatible endpoint that implements a part of the protocol).
pub(crate) fn is_unknown_command(err: &RedisError) -> bool {
    err.kind() == ErrorKind::Server(ServerErrorKind::ResponseError) && err.code() == Some("ERR")
}

/// The error of a wait that reached its deadline before it started.
pub(crate) fn timed_out() -> RedisError {
    RedisError::from(std::io::Error::new(
        std::io::ErrorKind::TimedOut,
        "the operation's timeout was used up",
    ))
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
        // Durable mode: applied on the master, not confirmed by enough replicas.
        ErrorKind::Extension if matches!(err.code(), Some(NOT_REPLICATED | NOT_PERSISTED)) => {
            Class::MaybeApplied
        }
        // A transaction aborted at EXEC: what was refused while queued says why.
        ErrorKind::Server(ServerErrorKind::ExecAbort) => classify_all(err),
        // Server errors, of one command or of several in a pipeline: redis-rs's pipeline
        // error reports no code of its own, so look at each.
        ErrorKind::Server(_) | ErrorKind::Extension => classify_all(err),
        _ => classify_one(err),
    }
}

/// True for `UNBLOCKED`: a blocking command released before its timeout, by the node turning
/// replica or by an operator.
pub(crate) fn is_unblocked(err: &RedisError) -> bool {
    err.kind() == ErrorKind::Extension && err.code() == Some(UNBLOCKED)
}

/// True for `READONLY`, alone or inside an aborted transaction.
pub(crate) fn is_readonly(err: &RedisError) -> bool {
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
            Some(UNBLOCKED) => Class::NotApplied { failover: true },
            // `min-replicas-to-write` not met (or, in durable mode, no replica connected):
            // the write was refused, unsent.
            Some(NO_REPLICAS) => Class::NotApplied { failover: false },
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

    #[test]
    fn auth_errors_are_recognised_by_kind_and_code() {
        let wrongpass = redis::make_extension_error("WRONGPASS".into(), Some("invalid".into()));
        let noauth = redis::make_extension_error("NOAUTH".into(), None);
        let failed = RedisError::from((
            ErrorKind::AuthenticationFailed,
            "Password authentication failed",
        ));
        let other = redis::make_extension_error("WRONGTYPE".into(), None);
        assert!(is_auth_error(&wrongpass));
        assert!(is_auth_error(&noauth));
        assert!(is_auth_error(&failed));
        assert!(!is_auth_error(&other));
    }

    #[test]
    fn only_a_complete_reply_leaves_a_connection_in_step() {
        assert!(leaves_in_step(&server("READONLY")));
        assert!(leaves_in_step(&server("UNBLOCKED")));
        let conversion = RedisError::from((ErrorKind::UnexpectedReturnType, "not a string"));
        assert!(leaves_in_step(&conversion));
        assert!(!leaves_in_step(&io(std::io::ErrorKind::TimedOut)));
        assert!(!leaves_in_step(&RedisError::from((
            ErrorKind::Parse,
            "garbled"
        ))));
    }
}
