//! Durable acknowledgements: a write is reported done only once `WAIT` confirms that the
//! replicas asked for received it (or `WAITAOF`, that it is in their append-only files and the
//! master's), in the write's own round trip.

use std::time::Duration;

use redis::{RedisError, Value};

use crate::{
    NodeAddr,
    sentinel::{Candidate, PromotionView},
};

/// The code of the error a durable write gets when fewer replicas confirmed it than asked:
/// the master applied it, and it may be lost if the master fails before they catch up.
pub(crate) const NOT_REPLICATED: &str = "NOTREPLICATED";

/// The code of the error a durable write [on disk](Durability::on_disk) gets when `WAITAOF`
/// did not confirm it on the master's disk or on enough replicas' disks.
pub(crate) const NOT_PERSISTED: &str = "NOTPERSISTED";

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
    /// `None`: the default, which depends on `on_disk`.
    timeout: Option<Duration>,
    pub(crate) on_disk: bool,
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
    /// read at each checkout that asks `ROLE` (see [`Validation`](crate::Validation)) and
    /// again before a write when the count is a second old, at least one. With no
    /// replica connected a write is refused unsent, with `NOREPLICAS` (which
    /// [`with_retry`](crate::SentinelPool::with_retry) retries: replicas reconnect, or a
    /// failover brings others).
    ///
    /// A replica that is not connected is waited for as long as a sentinel could promote it:
    /// in a failover the replica being promoted leaves the old master first, and one cut off
    /// from the master, syncing, or not yet re-pointed after a failover can be promoted too.
    /// The pool remembers, for each master and whatever its generation, every replica seen
    /// connected to it and every one the sentinels list for it; while one is missing it asks
    /// every sentinel that answers (once a second at most) whether it could pick it, and
    /// writes are refused unsent (`NOREPLICAS`) until none could: it is back, or listed as
    /// down, disconnected, of priority 0, cut off for more than 10 ×
    /// `down-after-milliseconds`, or never seen replicating while a connected replica of an
    /// equal or better priority ranks above it. The ACL user must be allowed `ROLE` on the
    /// master (the pool checks when it connects, and refuses with
    /// [`Error::InvalidConfig`](crate::Error::InvalidConfig) otherwise): where it is not,
    /// give [`at_least`](Durability::at_least) instead. Waits at most 1 s.
    pub fn all_replicas() -> Self {
        Durability {
            replicas: Replicas::All,
            timeout: None,
            on_disk: false,
        }
    }

    /// At least `replicas` replicas must confirm (at least 1): for a deployment that keeps
    /// writing while a replica is away, at the risk that Sentinel promotes one that had not
    /// confirmed. Waits at most 1 s.
    pub fn at_least(replicas: u32) -> Self {
        Durability {
            replicas: Replicas::AtLeast(replicas),
            timeout: None,
            on_disk: false,
        }
    }

    /// How long `WAIT` waits for the confirmations (it returns as soon as they are in, after
    /// one replication round trip when the replicas keep up). Must be shorter than the pool's
    /// [`read_timeout`](crate::Builder::read_timeout), which bounds the write and the wait
    /// together.
    ///
    /// Defaults to 1 s, and to 2.5 s [on disk](Durability::on_disk).
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// How long `WAIT` (or `WAITAOF`) waits.
    pub(crate) fn wait_timeout(self) -> Duration {
        self.timeout.unwrap_or(if self.on_disk {
            Duration::from_millis(2500)
        } else {
            Duration::from_secs(1)
        })
    }

    /// Confirms each write on disk: `WAITAOF 1 <replicas> <timeout>` instead of `WAIT`, so a
    /// write is done once it is in the master's append-only file and in the replicas', each
    /// fsynced. This survives what `WAIT` does not: every node of the service restarting at
    /// once (a power cut), since a node that restarts reloads its file. Not confirmed in time,
    /// the write gets [`Error::NotPersisted`](crate::Error::NotPersisted).
    ///
    /// Needs Redis 7.2 or later (or Valkey) with `appendonly yes` on the master and on the
    /// replicas. The pool checks the master when it opens a connection to it (one `WAITAOF`
    /// that writes nothing) and refuses it with
    /// [`Error::InvalidConfig`](crate::Error::InvalidConfig) where `WAITAOF` is unknown or
    /// the master keeps no append-only file, so no write is ever sent to a master that could
    /// not confirm it; [`with_durability`](crate::Connection::with_durability) makes the same
    /// check before the first write of its kind on a connection. A replica without an
    /// append-only file never confirms: every write then fails with `NotPersisted`.
    ///
    /// It is slow where writes are few: a replica reports what it has fsynced when the master
    /// asks or once a second, so a lone writer can wait up to a second per write, with
    /// `appendfsync everysec` (Redis's default) and, measured, with `always` too; with
    /// `always` and several writers at once, a write takes milliseconds (Valkey 8.1 on
    /// loopback: see BENCHMARKS.md). Hence the longer default timeout, 2.5 s, which the pool's
    /// [`read_timeout`](crate::Builder::read_timeout) must exceed.
    #[must_use]
    pub fn on_disk(mut self) -> Self {
        self.on_disk = true;
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

    /// Why this durability cannot serve on a connection whose read timeout is
    /// `read_timeout`, if it cannot: what [`Builder::durability`](crate::Builder::durability)
    /// refuses, and the per-call form too.
    pub(crate) fn invalid_with(self, read_timeout: Duration) -> Option<String> {
        if self.replicas == Replicas::AtLeast(0) {
            return Some(
                "Durability::at_least(0) confirms nothing: ask for at least one replica".to_owned(),
            );
        }
        if let Err(crate::Error::InvalidConfig { reason, .. }) =
            crate::config::check_duration("durability", self.wait_timeout())
        {
            return Some(format!("its timeout {reason}"));
        }
        (self.wait_timeout() >= read_timeout).then(|| {
            format!(
                "its timeout {:?} must be shorter than read_timeout {:?}, which bounds the \
                 write and its confirmation together",
                self.wait_timeout(),
                read_timeout
            )
        })
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
        let (code, detail) = if self.on_disk {
            (
                NOT_PERSISTED,
                format!("{confirmed} of {asked}, master {local}"),
            )
        } else {
            (NOT_REPLICATED, format!("{confirmed} of {asked}"))
        };
        Err(redis::make_extension_error(code.to_owned(), Some(detail)))
    }
}

/// Durable mode's memory of one master's replicas: every replica seen connected to it (in its
/// `ROLE`), and every one the sentinels listed while they took it for the master, by the
/// address the master announces. Kept for the master, whatever the pool's generation: a
/// fence that times out, an invalidation or a failover back to the same node must not make it
/// forget a replica that left (the one a failover is promoting leaves first).
///
/// A write can be confirmed by every replica Sentinel may promote when no sentinel could pick
/// a replica remembered and not connected now ([`may_be_picked`]). One that none would pick
/// now (down, priority 0, cut off too long, ranked below a connected one) is kept, and waited
/// for again once one would; one that no sentinel lists any more is forgotten (they cannot
/// promote what they do not know: a replica removed and the sentinels reset).
#[derive(Debug, Default)]
pub(crate) struct KnownReplicas {
    replicas: Vec<NodeAddr>,
    /// The sentinels were asked while they took this node for the master: a replica that
    /// was not connected when the pool first saw it (syncing, not yet re-pointed after a
    /// failover) is known too.
    seeded: bool,
}

/// Why the replicas connected to a master cannot vouch for a write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Unconfirmable {
    /// Most sentinels that answered list the master as a replica: they moved on, and the
    /// replica missing may be the new master.
    MovedOn,
    /// These replicas are not connected, and a sentinel may promote them.
    Missing(Vec<NodeAddr>),
}

impl KnownReplicas {
    /// Remembers `connected` (the master's `ROLE` now). Returns whether the sentinels must be
    /// asked before a write can be confirmed: they never were, or a replica remembered is
    /// missing.
    pub(crate) fn note(&mut self, connected: &[NodeAddr]) -> bool {
        for addr in connected {
            if !self.replicas.contains(addr) {
                self.replicas.push(addr.clone());
            }
        }
        !self.seeded || self.replicas.iter().any(|r| !connected.contains(r))
    }

    /// Takes in what the sentinels say about the master `master` (as this client reaches
    /// it), which lists `connected`; `None` when the write can be confirmed, else why not.
    pub(crate) fn learn(
        &mut self,
        view: &PromotionView,
        master: &NodeAddr,
        connected: &[NodeAddr],
    ) -> Option<Unconfirmable> {
        let (answered, as_replica) = view.listing_as_replica(master);
        if as_replica * 2 > answered {
            return Some(Unconfirmable::MovedOn);
        }
        // Only the sentinels that take this node for the master list its replicas; the
        // leader of a failover to this node lists it too, selected: it is not one of them.
        let lists: Vec<Vec<Candidate>> = view
            .sentinels
            .iter()
            .filter(|list| !list.iter().any(|c| c.reached_as == *master && !c.selected))
            .map(|list| {
                list.iter()
                    .filter(|c| c.reached_as != *master)
                    .cloned()
                    .collect()
            })
            .collect();
        self.seeded = true;
        let listed = |r: &NodeAddr| lists.iter().any(|list| list.iter().any(|c| c.addr == *r));
        self.replicas.retain(|r| connected.contains(r) || listed(r));
        for candidate in lists.iter().flat_map(|list| list.iter()) {
            if !self.replicas.contains(&candidate.addr) {
                self.replicas.push(candidate.addr.clone());
            }
        }
        let waited: Vec<NodeAddr> = self
            .replicas
            .iter()
            .filter(|r| {
                !connected.contains(r) && lists.iter().any(|list| may_be_picked(list, r, connected))
            })
            .cloned()
            .collect();
        (!waited.is_empty()).then_some(Unconfirmable::Missing(waited))
    }
}

/// Whether the sentinel that listed `list` may promote the replica `missing` although the
/// replicas `connected` have the write. Sentinel ranks the replicas it may promote by
/// `replica-priority` (lower first), then by the replication offset it last read (higher
/// first). A replica it never saw replicating this master (offset 0: an old master not yet
/// re-pointed after a failover, a replica still in its first sync) ranks below any connected
/// one of an equal or better priority that it did see replicating, and stays below it until
/// it replicates, which makes it connected: that one cannot be picked. Any other promotable
/// replica may be (its offset was read before it left, or the leader already selected it).
fn may_be_picked(list: &[Candidate], missing: &NodeAddr, connected: &[NodeAddr]) -> bool {
    let Some(x) = list.iter().find(|c| c.addr == *missing) else {
        return false;
    };
    if !x.promotable {
        return false;
    }
    if x.selected || x.offset > 0 {
        return true;
    }
    !list.iter().any(|c| {
        connected.contains(&c.addr) && c.promotable && c.offset > 0 && c.priority <= x.priority
    })
}

/// The error a `NOTREPLICATED` or `NOTPERSISTED` error stands for, with its counts; `None`
/// for any other error.
pub(crate) fn shortfall(err: &RedisError) -> Option<crate::Error> {
    let (code, detail) = (err.code()?, err.detail()?);
    let (confirmed, rest) = detail.split_once(" of ")?;
    let confirmed = confirmed.parse().ok()?;
    match code {
        NOT_REPLICATED => Some(crate::Error::NotReplicated {
            asked: rest.parse().ok()?,
            confirmed,
        }),
        NOT_PERSISTED => {
            let (asked, local) = rest.split_once(", master ")?;
            Some(crate::Error::NotPersisted {
                on_master: local != "0",
                asked: asked.parse().ok()?,
                confirmed,
            })
        }
        _ => None,
    }
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
        "DURABLE".to_owned(),
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
        "NOREPLICAS".to_owned(),
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
        "NOREPLICAS".to_owned(),
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
            shortfall(&err),
            Some(crate::Error::NotReplicated {
                asked: 2,
                confirmed: 1
            })
        ));
        // WAIT refused or released after the write was applied: applied, confirmed by none.
        let released = redis::parse_redis_value(b"-UNBLOCKED client unblocked\r\n").unwrap();
        assert!(matches!(
            shortfall(&wait.check(released, 2).unwrap_err()),
            Some(crate::Error::NotReplicated {
                asked: 2,
                confirmed: 0
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
            match shortfall(&err) {
                Some(crate::Error::NotPersisted {
                    on_master: m,
                    asked: 2,
                    confirmed: c,
                }) => assert_eq!((m, c), (on_master, confirmed)),
                other => panic!("{other:?}"),
            }
        }
        assert!(aof.check(Value::Int(2), 2).is_err(), "WAIT's reply");
        let wait = String::from_utf8(aof.packed_wait(2)).unwrap();
        assert!(wait.contains("WAITAOF"), "{wait}");
    }

    fn addrs(ports: &[u16]) -> Vec<NodeAddr> {
        ports
            .iter()
            .map(|&p| NodeAddr::new("10.0.0.2", p))
            .collect()
    }

    /// A replica as a sentinel lists it: port, promotable, priority, offset.
    fn candidate(port: u16, promotable: bool, priority: u64, offset: u64) -> Candidate {
        let addr = NodeAddr::new("10.0.0.2", port);
        Candidate {
            reached_as: addr.clone(),
            addr,
            promotable,
            priority,
            offset,
            selected: false,
        }
    }

    /// Three sentinels that list the same replicas.
    fn view(list: &[Candidate]) -> PromotionView {
        PromotionView {
            sentinels: vec![list.to_vec(); 3],
        }
    }

    fn missing(ports: &[u16]) -> Option<Unconfirmable> {
        Some(Unconfirmable::Missing(addrs(ports)))
    }

    #[test]
    fn a_replica_that_left_is_waited_for_while_a_sentinel_may_promote_it() {
        let master = NodeAddr::new("10.0.0.1", 6379);
        let healthy = |port| candidate(port, true, 100, 500);
        let mut known = KnownReplicas::default();
        // First sight of the master: the sentinels are asked, and add the replica that was
        // syncing (3), which no ROLE listed.
        assert!(known.note(&addrs(&[1, 2])));
        let all = view(&[healthy(1), healthy(2), healthy(3)]);
        assert_eq!(known.learn(&all, &master, &addrs(&[1, 2])), missing(&[3]));
        // All three connected: nothing to ask.
        assert!(!known.note(&addrs(&[1, 2, 3])));
        // 1 leaves (a failover promotes it first): waited for, however often asked.
        assert!(known.note(&addrs(&[2, 3])));
        for _ in 0..3 {
            assert_eq!(known.learn(&all, &master, &addrs(&[2, 3])), missing(&[1]));
        }
        // Flagged down: not waited for, but remembered, and waited for again once promotable.
        let down = view(&[candidate(1, false, 100, 500), healthy(2), healthy(3)]);
        assert_eq!(known.learn(&down, &master, &addrs(&[2, 3])), None);
        assert!(known.note(&addrs(&[2, 3])), "still remembered");
        assert_eq!(known.learn(&all, &master, &addrs(&[2, 3])), missing(&[1]));
        // One sentinel of three would still promote it: waited for.
        let mut split = down.clone();
        split.sentinels[2] = all.sentinels[0].clone();
        assert_eq!(known.learn(&split, &master, &addrs(&[2, 3])), missing(&[1]));
        // No sentinel lists it any more: forgotten.
        let gone = view(&[healthy(2), healthy(3)]);
        assert_eq!(known.learn(&gone, &master, &addrs(&[2, 3])), None);
        assert!(!known.note(&addrs(&[2, 3])));
    }

    #[test]
    fn a_replica_sentinel_ranks_below_a_connected_one_is_not_waited_for() {
        let master = NodeAddr::new("10.0.0.1", 6379);
        let mut known = KnownReplicas::default();
        known.note(&addrs(&[2]));
        // 1 is the old master, not yet re-pointed: never seen replicating (offset 0).
        let old_master = view(&[candidate(1, true, 100, 0), candidate(2, true, 100, 500)]);
        assert_eq!(known.learn(&old_master, &master, &addrs(&[2])), None);
        // ... unless it has a better priority than every connected replica.
        let preferred = view(&[candidate(1, true, 10, 0), candidate(2, true, 100, 500)]);
        assert_eq!(
            known.learn(&preferred, &master, &addrs(&[2])),
            missing(&[1])
        );
        // ... or no connected replica was seen replicating either.
        let unread = view(&[candidate(1, true, 100, 0), candidate(2, true, 100, 0)]);
        assert_eq!(known.learn(&unread, &master, &addrs(&[2])), missing(&[1]));
        // A replica whose offset was read before it left ranks on that offset: waited for.
        let left = view(&[candidate(1, true, 100, 900), candidate(2, true, 100, 500)]);
        assert_eq!(known.learn(&left, &master, &addrs(&[2])), missing(&[1]));
    }

    #[test]
    fn sentinels_that_moved_on_refuse_and_a_minority_is_not_heard_on_replicas() {
        let master = NodeAddr::new("10.0.0.1", 6379);
        let mut known = KnownReplicas::default();
        known.note(&addrs(&[2]));
        // They committed a failover to 1: they list this master among the replicas of 1.
        let mut moved = view(&[candidate(2, true, 100, 500)]);
        for list in &mut moved.sentinels {
            list.push(Candidate {
                reached_as: master.clone(),
                ..candidate(9, true, 100, 0)
            });
        }
        assert_eq!(
            known.learn(&moved, &master, &addrs(&[2])),
            Some(Unconfirmable::MovedOn)
        );
        // One sentinel of three behind: the others speak for the replicas.
        let mut behind = view(&[candidate(2, true, 100, 500)]);
        behind.sentinels[0] = moved.sentinels[0].clone();
        behind.sentinels[0].push(candidate(5, true, 100, 500));
        assert_eq!(known.learn(&behind, &master, &addrs(&[2])), None);
        // The leader lists the replica it promotes as selected: not a sign of moving on.
        let mut leading = view(&[candidate(2, true, 100, 500)]);
        leading.sentinels[0].push(Candidate {
            reached_as: master.clone(),
            selected: true,
            ..candidate(9, true, 100, 500)
        });
        assert_eq!(known.learn(&leading, &master, &addrs(&[2])), None);
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
