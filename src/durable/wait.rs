//! The `WAIT` (or `WAITAOF`) a durable write carries, its verdict, and the errors durable mode
//! answers with.

use redis::{RedisError, Value};

use super::Durability;
use crate::{
    NodeAddr,
    outcome::{DURABLE, NO_REPLICAS, NOT_PERSISTED, NOT_REPLICATED},
};

impl Durability {
    /// `WAIT <asked> <timeout in ms>` (on disk: `WAITAOF 1 <asked> <timeout in ms>`),
    /// packed.
    pub(crate) fn packed_wait(self, asked: u32) -> Vec<u8> {
        let mut wait = if self.on_disk {
            let mut cmd = redis::cmd("WAITAOF");
            cmd.arg(1);
            cmd
        } else {
            redis::cmd("WAIT")
        };
        wait.arg(asked).arg(self.millis()).get_packed_command()
    }

    /// What a connection sends once before its first durable write, packed: `WAIT 0 0`
    /// (on disk: `WAITAOF 1 0 <timeout in ms>`). It confirms nothing and, on a connection that
    /// has written nothing yet, answers at once; where the master cannot confirm writes this
    /// way (our user may not run it; on disk, a server before 7.2 or no append-only file) it
    /// is refused.
    pub(crate) fn packed_probe(self) -> Vec<u8> {
        if self.on_disk {
            redis::cmd("WAITAOF")
                .arg(1)
                .arg(0)
                .arg(self.millis())
                .get_packed_command()
        } else {
            redis::cmd("WAIT").arg(0).arg(0).get_packed_command()
        }
    }

    fn millis(self) -> u64 {
        u64::try_from(self.wait_timeout().as_millis())
            .unwrap_or(u64::MAX)
            .max(1)
    }

    /// Checks the reply of [`packed_wait`](Durability::packed_wait) against `asked`: `Ok`
    /// when enough replicas confirmed (and, on disk, the master), else the `NOTREPLICATED` or
    /// `NOTPERSISTED` error naming how many did.
    pub(crate) fn check(self, reply: Value, asked: u32) -> Result<(), RedisError> {
        let unexpected = |other: Value| {
            RedisError::from((
                redis::ErrorKind::UnexpectedReturnType,
                "WAIT or WAITAOF did not answer counts",
                format!("{other:?}"),
            ))
        };
        let (local, confirmed) = match reply {
            // The write was applied (only then is this asked), and WAIT refused or released
            // (`UNBLOCKED`): applied, confirmed by none.
            Value::ServerError(_) => (i64::from(!self.on_disk), 0),
            Value::Int(n) if !self.on_disk => (1, n),
            Value::Array(counts) if self.on_disk => match counts.as_slice() {
                [Value::Int(local), Value::Int(n)] => (*local, *n),
                _ => return Err(unexpected(Value::Array(counts))),
            },
            other => return Err(unexpected(other)),
        };
        if local >= 1 && confirmed >= i64::from(asked) {
            return Ok(());
        }
        // Counts are never negative; a reply that says so confirms nothing.
        let count = |n: i64| u32::try_from(n).unwrap_or(0);
        Err(Shortfall {
            asked,
            confirmed: count(confirmed),
            on_master: self.on_disk.then_some(local >= 1),
        }
        .into_redis_error())
    }
}

/// A durable write confirmed by fewer replicas than it asked (or, on disk, not on the master's
/// disk): the error it gets, written by [`into_redis_error`](Shortfall::into_redis_error) and
/// read back by [`of`](Shortfall::of), so that the text has one author and one reader.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Shortfall {
    /// Replicas asked to confirm.
    pub(crate) asked: u32,
    /// Replicas that confirmed.
    pub(crate) confirmed: u32,
    /// On disk: whether the master fsynced the write to its own file. `None` for `WAIT`.
    pub(crate) on_master: Option<bool>,
}

impl Shortfall {
    /// The error the write gets: `NOTREPLICATED <confirmed> of <asked>`, or
    /// `NOTPERSISTED <confirmed> of <asked>, master <0|1>` on disk.
    pub(crate) fn into_redis_error(self) -> RedisError {
        let Shortfall {
            asked,
            confirmed,
            on_master,
        } = self;
        let (code, detail) = match on_master {
            Some(local) => (
                NOT_PERSISTED,
                format!("{confirmed} of {asked}, master {}", u8::from(local)),
            ),
            None => (NOT_REPLICATED, format!("{confirmed} of {asked}")),
        };
        redis::make_extension_error(code.to_owned(), Some(detail))
    }

    /// The shortfall `err` stands for; `None` for any other error.
    pub(crate) fn of(err: &RedisError) -> Option<Self> {
        let (code, detail) = (err.code()?, err.detail()?);
        let (confirmed, rest) = detail.split_once(" of ")?;
        let confirmed = confirmed.parse().ok()?;
        let (asked, on_master) = match code {
            NOT_REPLICATED => (rest, None),
            NOT_PERSISTED => {
                let (asked, local) = rest.split_once(", master ")?;
                (asked, Some(local != "0"))
            }
            _ => return None,
        };
        Some(Shortfall {
            asked: asked.parse().ok()?,
            confirmed,
            on_master,
        })
    }
}

/// A `DURABLE` error: durable mode cannot be used as asked (`detail` says why and what to
/// change); nothing was sent.
pub(crate) fn refused(detail: String) -> RedisError {
    redis::make_extension_error(DURABLE.to_owned(), Some(detail))
}

/// Why durable mode cannot be used on the master at `addr`: it answered the probe
/// ([`Durability::packed_probe`]) with `refusal`. Said before any write is sent.
pub(crate) fn cannot_confirm(
    addr: &NodeAddr,
    durability: Durability,
    refusal: &redis::ServerError,
) -> String {
    let said = format!(
        "{} {}",
        refusal.code(),
        refusal.details().unwrap_or_default().trim_end()
    );
    match (refusal.code(), durability.on_disk) {
        ("NOPERM", command) => format!(
            "durable mode: the ACL user may not run {} on the master {addr} ({said}); allow it \
             (ACL SETUSER <user> +{}). No write was sent",
            if command { "WAITAOF" } else { "WAIT" },
            if command { "waitaof" } else { "wait" },
        ),
        (_, true) => format!(
            "durable mode on disk: the master {addr} cannot confirm writes with WAITAOF \
             ({said}); it needs Redis 7.2 or later (or Valkey) with appendonly yes on the \
             master and on its replicas. No write was sent"
        ),
        (_, false) => format!(
            "durable mode: the master {addr} cannot confirm writes with WAIT ({said}). No \
             write was sent"
        ),
    }
}

/// The error of a durable write refused unsent: with every replica, the master's replicas
/// cannot be counted, since our ACL user may not run `ROLE` there.
pub(crate) fn uncountable(addr: &NodeAddr) -> RedisError {
    redis::make_extension_error(
        DURABLE.to_owned(),
        Some(format!(
            "durable mode with all_replicas counts the replicas of the master {addr} with ROLE, \
             which the ACL user may not run there: allow it (ACL SETUSER <user> +role), or give \
             Durability::at_least(n) with the number of replicas to wait for. It was not sent"
        )),
    )
}

/// The error of a durable write refused unsent: no replica is connected to confirm it.
pub(crate) fn no_replicas(addr: &NodeAddr) -> RedisError {
    redis::make_extension_error(
        NO_REPLICAS.to_owned(),
        Some(format!(
            "durable mode: the master {addr} lists no connected replica to confirm the write; \
             it was not sent"
        )),
    )
}

/// The error of a durable write refused unsent: a replica that left the master may still
/// be promoted (`why` says which), so the replicas left cannot vouch for the write.
pub(crate) fn unconfirmable(addr: &NodeAddr, why: &str) -> RedisError {
    redis::make_extension_error(
        NO_REPLICAS.to_owned(),
        Some(format!(
            "durable mode: the master {addr} cannot have the write confirmed by every replica \
             Sentinel may promote ({why}); it was not sent"
        )),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fewer_confirmations_than_asked_is_an_error_that_counts_them() {
        let wait = Durability::all_replicas();
        assert!(wait.check(Value::Int(2), 2).is_ok());
        assert!(wait.check(Value::Int(3), 2).is_ok());
        let err = wait.check(Value::Int(1), 2).unwrap_err();
        assert!(matches!(
            Shortfall::of(&err),
            Some(Shortfall {
                asked: 2,
                confirmed: 1,
                on_master: None
            })
        ));
        // WAIT refused or released after the write was applied: applied, confirmed by none.
        let released = redis::parse_redis_value(b"-UNBLOCKED client unblocked\r\n").unwrap();
        assert!(matches!(
            Shortfall::of(&wait.check(released, 2).unwrap_err()),
            Some(Shortfall {
                asked: 2,
                confirmed: 0,
                on_master: None
            })
        ));
        assert!(wait.check(Value::Nil, 1).is_err());
        assert!(wait.check(Value::Array(vec![]), 1).is_err());
    }

    #[test]
    fn on_disk_the_master_and_the_replicas_must_confirm() {
        let aof = Durability::all_replicas().on_disk();
        let counts = |local, n| Value::Array(vec![Value::Int(local), Value::Int(n)]);
        assert!(aof.check(counts(1, 2), 2).is_ok());
        let shortfalls = [
            (counts(1, 1), true, 1),
            (counts(0, 2), false, 2),
            (counts(0, 0), false, 0),
        ];
        for (reply, on_master, confirmed) in shortfalls {
            let err = aof.check(reply, 2).unwrap_err();
            let expected = Shortfall {
                asked: 2,
                confirmed,
                on_master: Some(on_master),
            };
            assert_eq!(Shortfall::of(&err), Some(expected));
        }
        assert!(aof.check(Value::Int(2), 2).is_err(), "WAIT's reply");
        let wait = String::from_utf8(aof.packed_wait(2)).unwrap();
        assert!(wait.contains("WAITAOF"), "{wait}");
    }
}
