//! What an error says about the command that met it: the vocabulary the connection (which
//! marks itself unfit after a failover error) and the retry loop share.
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

use redis::{ErrorKind, RedisError, ServerErrorKind};

/// The error code of a request a connection refused to send because the pool moved to a new
/// generation after the connection was checked out. Nothing was sent: safe to retry.
pub(crate) const STALE: &str = "STALE";

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
        ErrorKind::Extension
            if matches!(
                err.code(),
                Some(crate::durable::NOT_REPLICATED | crate::durable::NOT_PERSISTED)
            ) =>
        {
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
    err.kind() == ErrorKind::Extension && err.code() == Some("UNBLOCKED")
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
            Some("UNBLOCKED") => Class::NotApplied { failover: true },
            // `min-replicas-to-write` not met (or, in durable mode, no replica connected):
            // the write was refused, unsent.
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
}
