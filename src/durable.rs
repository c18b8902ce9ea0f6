//! Durable acknowledgements: a write is reported done only once `WAIT` confirms that the
//! replicas asked for received it, in the write's own round trip.

use std::time::Duration;

use redis::{RedisError, Value};

/// The code of the error a durable write gets when fewer replicas confirmed it than asked:
/// the master applied it, and it may be lost if the master fails before they catch up.
pub(crate) const NOT_REPLICATED: &str = "NOTREPLICATED";

/// Which replicas must confirm a write before a durable pool reports it done; see
/// [`Builder::durability`](crate::Builder::durability).
///
/// Sentinel promotes the replica with the best `replica-priority`, then the largest
/// replication offset among those it has heard from in the last seconds, as last reported
/// by their `INFO` (polled once a second). A write that reached one replica is therefore not
/// safe: another one, with a better priority or an offset Sentinel read before that replica
/// caught up, may be promoted. What is safe is a write every replica that can be promoted has
/// received: [`all_replicas`](Durability::all_replicas), the default.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Durability {
    pub(crate) replicas: Replicas,
    pub(crate) timeout: Duration,
}

/// How many replicas a durable write waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Replicas {
    /// Every replica the master lists as connected (its `ROLE`) when the connection was last
    /// checked, at least one.
    All,
    /// At least this many.
    AtLeast(u32),
}

impl Default for Durability {
    /// [`all_replicas`](Durability::all_replicas), waiting at most 1 s.
    fn default() -> Self {
        Durability::all_replicas()
    }
}

impl Durability {
    /// Every replica connected to the master must confirm: those the master's `ROLE` lists,
    /// read when the connection opens and at each checkout that asks `ROLE` (the default
    /// [`Validation`](crate::Validation)), at least one. With no replica
    /// connected a write is refused unsent, with `NOREPLICAS` (which
    /// [`with_retry`](crate::SentinelPool::with_retry) retries: replicas reconnect, or a
    /// failover brings others). A replica that is down (or cut off) cannot be promoted by
    /// Sentinel, so it is not waited for. An ACL user that may not run `ROLE` cannot count
    /// them: give [`at_least`](Durability::at_least) instead. Waits at most 1 s.
    pub fn all_replicas() -> Self {
        Durability {
            replicas: Replicas::All,
            timeout: Duration::from_secs(1),
        }
    }

    /// At least `replicas` replicas must confirm (at least 1): for a deployment that keeps
    /// writing while a replica is away, at the risk that Sentinel promotes one that had not
    /// confirmed. Waits at most 1 s.
    pub fn at_least(replicas: u32) -> Self {
        Durability {
            replicas: Replicas::AtLeast(replicas),
            timeout: Duration::from_secs(1),
        }
    }

    /// How long `WAIT` waits for the confirmations (it returns as soon as they are in, after
    /// one replication round trip when the replicas keep up). Must be shorter than the pool's
    /// [`read_timeout`](crate::Builder::read_timeout), which bounds the write and the wait
    /// together.
    ///
    /// Defaults to 1 s.
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// How many replicas to ask for, given how many the master lists as connected (`None`:
    /// unknown, the probe could not count them).
    pub(crate) fn asked(self, connected: Option<u32>) -> u32 {
        match self.replicas {
            Replicas::All => connected.unwrap_or(1).max(1),
            Replicas::AtLeast(n) => n,
        }
    }

    /// `WAIT <asked> <timeout in ms>`, packed.
    pub(crate) fn packed_wait(self, asked: u32) -> Vec<u8> {
        let millis = u64::try_from(self.timeout.as_millis())
            .unwrap_or(u64::MAX)
            .max(1);
        redis::cmd("WAIT")
            .arg(asked)
            .arg(millis)
            .get_packed_command()
    }
}

/// Checks `WAIT`'s reply against `asked`: `Ok` when enough replicas confirmed, else the
/// `NOTREPLICATED` error naming how many did.
pub(crate) fn check(reply: Value, asked: u32) -> Result<(), RedisError> {
    let confirmed = match reply {
        Value::Int(n) => n,
        Value::ServerError(err) => return Err(err.into()),
        other => {
            return Err(RedisError::from((
                redis::ErrorKind::UnexpectedReturnType,
                "WAIT did not answer a count",
                format!("{other:?}"),
            )));
        }
    };
    if confirmed >= i64::from(asked) {
        return Ok(());
    }
    Err(redis::make_extension_error(
        NOT_REPLICATED.to_owned(),
        Some(format!("{confirmed} of {asked}")),
    ))
}

/// The counts a `NOTREPLICATED` error carries: (asked, confirmed).
pub(crate) fn counts(err: &RedisError) -> Option<(u32, u32)> {
    if err.code() != Some(NOT_REPLICATED) {
        return None;
    }
    let (confirmed, asked) = err.detail()?.split_once(" of ")?;
    Some((asked.parse().ok()?, confirmed.parse().ok()?))
}

/// The error of a durable write refused unsent: no replica is connected to confirm it.
pub(crate) fn no_replicas(addr: &crate::NodeAddr) -> RedisError {
    redis::make_extension_error(
        "NOREPLICAS".to_owned(),
        Some(format!(
            "durable mode: the master {addr} lists no connected replica to confirm the write; \
             it was not sent"
        )),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fewer_confirmations_than_asked_is_an_error_that_counts_them() {
        assert!(check(Value::Int(2), 2).is_ok());
        assert!(check(Value::Int(3), 2).is_ok());
        let err = check(Value::Int(1), 2).unwrap_err();
        assert_eq!(counts(&err), Some((2, 1)));
        assert!(check(Value::Nil, 1).is_err());
    }

    #[test]
    fn all_replicas_asks_for_those_connected_and_at_least_one() {
        let all = Durability::all_replicas();
        assert_eq!(all.asked(Some(2)), 2);
        assert_eq!(all.asked(None), 1);
        assert_eq!(all.asked(Some(0)), 1);
        assert_eq!(Durability::at_least(3).asked(Some(1)), 3);
        let wait = String::from_utf8(all.packed_wait(2)).unwrap();
        assert!(wait.contains("WAIT") && wait.contains("1000"), "{wait}");
    }
}
