//! A pooled connection: a redis connection, the generation it was born in, and what it has
//! seen that makes it unfit to hand to the next caller.
//!
//! - this file: the connection, its fields grouped by what they serve, and what the pool
//!   asks of it;
//! - [`request`]: each request read before it is sent, sent, and its replies observed;
//! - [`blocking`]: blocking commands, which the fence releases;
//! - [`command`] and [`command_table`]: the RESP command reader and which commands write
//!   (pure, fuzzed);
//! - durable mode's hooks live with durable mode (`crate::durable`).

mod blocking;
pub(crate) mod command;
pub(crate) mod command_table;
mod request;

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use redis::{ConnectionLike, RedisError, RedisResult, Role, Value};

use command_table::{CommandTable, Effect};
pub(crate) use request::Tracked;

use crate::{
    Durability, NodeAddr,
    durable::DurableState,
    metrics::{Operations, Timer},
    node::{NodeRole, NodeSettings, RoleProbe},
    outcome::STALE,
    shared::{Generation, Shared},
};

/// A connection to a Redis data node, handed out by the pool inside an
/// [`r2d2::PooledConnection`].
///
/// It implements [`redis::ConnectionLike`], so every command of [`redis::Commands`] and every
/// [`redis::Cmd`] or [`redis::Pipeline`] works on it. It watches what goes through it, so that
/// a connection left in a bad state is never handed to the next caller: one returned inside
/// `MULTI` or `WATCH`, subscribed, with its session changed (`SELECT`, `AUTH`, `HELLO`,
/// `RESET`, `CLIENT SETNAME`...), after an I/O error or timeout (a reply may still be in
/// flight), after a failover error (`READONLY`: the node is no longer master), or while its
/// thread panics. What an r2d2 connection customizer sets before the first checkout
/// ([`Builder::connection_customizer`](crate::Builder::connection_customizer)) is the
/// connection's baseline instead: it stays, and the connection with it.
///
/// Once the pool moves to a new generation (a failover, or
/// [`invalidate`](crate::SentinelPool::invalidate)), a master connection of an older one
/// refuses every request without sending it: the request fails with a `STALE` error, which
/// [`with_retry`](crate::SentinelPool::with_retry) retries on a fresh connection. A worker
/// that holds a connection across a failover never writes to the old master. A replica
/// pool's connection is not refused: reads go on through a failover of the master.
pub struct Connection {
    /// The socket; every request goes through [`request`].
    pub(crate) inner: redis::Connection,
    pub(crate) addr: NodeAddr,
    generation: u64,
    /// What the node was when connected, and must stay: master, or replica for a replica
    /// pool.
    pub(crate) serves: NodeRole,
    /// The pool's generation now; compared before every request.
    current: Arc<Generation>,
    /// The db selected when the connection was opened.
    db: i64,
    /// The read timeout every request gets.
    pub(crate) read_timeout: Duration,
    /// The read timeout in force: `read_timeout`, or a caller's inside `with_read_timeout`.
    /// What a probe that bounds its own reads sets back.
    read_timeout_now: Duration,
    /// The protocol the connection speaks, which a role probe's `HELLO` keeps.
    protocol: redis::ProtocolVersion,
    /// What the pool's parts share: durable mode's memory of the master's replicas, how
    /// the node is asked its role, which commands write, who is blocked.
    pub(crate) shared: Arc<Shared>,
    /// Whether the connection may go to the next caller.
    pub(crate) hygiene: Hygiene,
    /// What `with_retry` reads to tell whether a failed attempt applied anything.
    pub(crate) accounting: Accounting,
    /// A replica connection's place in the replica set.
    replica: ReplicaTag,
    /// Durable mode's settings and what it learned about the master.
    pub(crate) durable: DurableState,
    /// A blocking command in flight, so that the fence can release it.
    blocking: Blocking,
    /// Records each request's duration (feature `metrics`).
    operations: Operations,
}

/// A connection's blocking request.
#[derive(Debug, Default)]
struct Blocking {
    /// The request being sent holds a command that blocks (`BLPOP`, `XREAD`...), outside
    /// `MULTI`.
    blocks: bool,
    /// The node's id for this connection (`CLIENT ID`), once a blocking command asked it.
    client_id: Option<i64>,
    /// While a blocking request is in flight on a master: its entry among the blocked
    /// connections, and the flag the fence sets when it releases it.
    entry: Option<(u64, Arc<std::sync::atomic::AtomicBool>)>,
}

/// Why a connection is not handed to another caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Retire {
    /// An error on the wire (I/O, timeout, unparsable reply) may have left a reply in flight.
    OutOfStep,
    /// It is subscribed, and takes only (un)subscribe commands.
    Subscribed,
    /// It was returned inside `MULTI` or `WATCH`.
    InTransaction,
    /// A caller changed what it is: its db, user, protocol, reply mode or name.
    SessionChanged,
    /// Its node answered that it is no longer a writable master.
    Demoted,
    /// Its socket is closed.
    Closed,
}

/// What makes a connection unfit to hand to the next caller.
#[derive(Debug, Default)]
pub(crate) struct Hygiene {
    /// What the requests sent so far left the server's session in.
    pub(crate) tracked: Tracked,
    /// Handed out at least once. What an r2d2 connection customizer does to a new connection
    /// before that (`CLIENT SETNAME`, say) is the connection's baseline, not a change.
    pub(crate) handed_out: bool,
    /// An error on the wire (I/O, timeout, unparsable reply): a reply may still be in flight.
    pub(crate) out_of_step: bool,
    /// The error that showed the node is no longer a writable master, if one did.
    failover_error: Option<RedisError>,
}

/// What a failed attempt may have applied.
#[derive(Debug)]
pub(crate) struct Accounting {
    /// When the node last answered a request without error.
    last_ok: Instant,
    /// Replies received that were not errors to commands that may change data (a write, a
    /// script, a transaction's `EXEC`, any command not known to only read), over the
    /// connection's life: when this grows, something was applied.
    applied: u64,
    /// For each command of the request being sent: what a reply to it that is not an error
    /// says was applied. Reused from request to request.
    pub(crate) effects: Vec<Effect>,
    /// The last request sent held only reads (nor a transaction's `EXEC` of writes, nor
    /// anything this crate could not read): if it met an I/O error, nothing was applied.
    pub(crate) sent_only_reads: bool,
}

/// A replica connection's place in the replica set.
#[derive(Debug, Default)]
struct ReplicaTag {
    /// The version of the replica set it was picked from.
    set: u64,
    /// Made to another replica than the one selected, because that one failed: when.
    detour_since: Option<Instant>,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("addr", &self.addr)
            .field("generation", &self.generation)
            .field("tracked", &self.hygiene.tracked)
            .field("out_of_step", &self.hygiene.out_of_step)
            .field("failover_error", &self.hygiene.failover_error)
            .finish_non_exhaustive()
    }
}

impl Connection {
    pub(crate) fn new(
        inner: redis::Connection,
        addr: NodeAddr,
        generation: u64,
        serves: NodeRole,
        shared: &Arc<Shared>,
        settings: &NodeSettings,
        operations: Operations,
    ) -> Self {
        Connection {
            inner,
            addr,
            generation,
            serves,
            current: Arc::clone(&shared.generation),
            db: settings.redis.db(),
            read_timeout: settings.read_timeout,
            read_timeout_now: settings.read_timeout,
            protocol: settings.redis.protocol(),
            shared: Arc::clone(shared),
            hygiene: Hygiene::default(),
            accounting: Accounting {
                last_ok: Instant::now(),
                applied: 0,
                effects: Vec::new(),
                sent_only_reads: false,
            },
            replica: ReplicaTag::default(),
            durable: DurableState::new(settings.durability.filter(|_| serves == NodeRole::Master)),
            blocking: Blocking::default(),
            operations,
        }
    }

    /// Makes a new connection to a cluster replica serve reads of its primary's slots
    /// (`READONLY`, one round trip within the read timeout), before it is pooled.
    pub(crate) fn read_only(mut self) -> Result<Self, crate::Error> {
        match redis::cmd("READONLY").query::<()>(&mut self) {
            Ok(()) => Ok(self),
            Err(err) => Err(crate::manager::data_node_error(&self.addr, err, "READONLY")),
        }
    }

    /// The node this connection talks to.
    pub fn addr(&self) -> &NodeAddr {
        &self.addr
    }

    /// The pool generation this connection was born in: the generation current when its node
    /// was looked up.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Sends `ROLE` and returns the node's answer.
    ///
    /// # Errors
    ///
    /// Any error of the round trip.
    pub fn role(&mut self) -> RedisResult<Role> {
        redis::cmd("ROLE").query(self)
    }

    /// Runs `op` with the read timeout set to `timeout` instead of the pool's
    /// [`read_timeout`](crate::Builder::read_timeout), then sets it back: for one blocking
    /// call (`BLPOP`, `XREAD BLOCK`, `WAIT`...) that waits longer than ordinary commands
    /// should. Give it more than the command's own timeout. In durable mode the
    /// confirmation's wait is added to it: a write's `WAIT` follows the command in the same
    /// round trip, and may take the durability's whole timeout after the command's own.
    ///
    /// ```no_run
    /// # use r2d2_redis_sentinel::{SentinelPool, redis::Commands};
    /// # let pool = SentinelPool::builder(["127.0.0.1:26379"], "mymaster").build()?;
    /// let mut conn = pool.get()?;
    /// let job: Option<(String, String)> =
    ///     conn.with_read_timeout(std::time::Duration::from_secs(35), |c| c.blpop("jobs", 30.0))?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    ///
    /// `op`'s error; an error setting the timeout (a zero `timeout` is refused).
    pub fn with_read_timeout<T>(
        &mut self,
        timeout: Duration,
        op: impl FnOnce(&mut Self) -> RedisResult<T>,
    ) -> RedisResult<T> {
        let confirming = self
            .durable
            .mode
            .map_or(Duration::ZERO, Durability::wait_timeout);
        let kept = self.read_timeout_now;
        self.read_timeout_now = timeout.saturating_add(confirming);
        let set = self.inner.set_read_timeout(Some(self.read_timeout_now));
        let result = set.and_then(|()| op(self));
        self.read_timeout_now = kept;
        if let Err(err) = self.inner.set_read_timeout(Some(kept)) {
            // The pool's timeout could not be restored: never hand the connection out again.
            self.hygiene.out_of_step = true;
            return result.and(Err(err));
        }
        result
    }

    /// True while nothing has made the connection unfit for another caller.
    pub(crate) fn is_reusable(&self) -> bool {
        self.retire().is_none()
    }

    /// Why the connection may not go to another caller, if anything made it unfit.
    pub(crate) fn retire(&self) -> Option<Retire> {
        let Hygiene {
            tracked,
            out_of_step,
            failover_error,
            ..
        } = &self.hygiene;
        Some(if *out_of_step {
            Retire::OutOfStep
        } else if tracked.subscribed {
            Retire::Subscribed
        } else if tracked.in_transaction || tracked.watching {
            Retire::InTransaction
        } else if tracked.session_changed {
            Retire::SessionChanged
        } else if failover_error.is_some() {
            Retire::Demoted
        } else if !self.inner.is_open() {
            Retire::Closed
        } else {
            return None;
        })
    }

    /// Notes that the pool hands the connection out: from now on, session changes count.
    pub(crate) fn mark_handed_out(&mut self) {
        self.hygiene.handed_out = true;
    }

    /// True once an error on the wire may have left a reply in flight: a request sent on it
    /// may or may not have been applied.
    pub(crate) fn is_out_of_step(&self) -> bool {
        self.hygiene.out_of_step
    }

    /// True when the last request sent held only commands that read: an error on the wire
    /// while it was in flight applied nothing.
    pub(crate) fn sent_only_reads(&self) -> bool {
        self.accounting.sent_only_reads
    }

    /// Commands that may change data and were answered without error: when this grows
    /// during an attempt, something in the attempt was applied. A read (`GET`), a command
    /// queued in `MULTI` (`+QUEUED`) or `MULTI` itself does not count.
    pub(crate) fn applied(&self) -> u64 {
        self.accounting.applied
    }

    /// True when the node answered a request without error less than `window` before `now`.
    pub(crate) fn answered_within(&self, now: Instant, window: Duration) -> bool {
        now.saturating_duration_since(self.accounting.last_ok) < window
    }

    /// Records the version of the replica set this replica connection was picked from, and
    /// whether it is a detour (the selected replica failed, another took the connection).
    pub(crate) fn set_replica_set(&mut self, version: u64, detour: bool) {
        self.replica.set = version;
        self.replica.detour_since = detour.then(Instant::now);
    }

    /// True for a replica connection made on a detour at least `after` ago.
    pub(crate) fn detour_older_than(&self, after: Duration) -> bool {
        self.replica
            .detour_since
            .is_some_and(|since| since.elapsed() >= after)
    }

    /// The version of the replica set this connection was picked from.
    pub(crate) fn replica_set(&self) -> u64 {
        self.replica.set
    }

    /// The role the node had when connected, which checkouts check it still has.
    pub(crate) fn serves(&self) -> NodeRole {
        self.serves
    }

    /// The error that showed the node is no longer a writable master (`READONLY`...), if any.
    pub(crate) fn failover_error(&self) -> Option<&RedisError> {
        self.hygiene.failover_error.as_ref()
    }

    /// Asks the node which commands write (`COMMAND`), once per pool, by `deadline`: the
    /// first connection the pool opens does (while it asks, others go on without), and every
    /// connection reads the answer. A refusal (our ACL user may not run it, an endpoint that
    /// does not know it) leaves the connections on their own list of commands that only read.
    pub(crate) fn learn_commands(&mut self, deadline: Instant) -> RedisResult<()> {
        if self.shared.nodes.commands.get().is_some() || !self.shared.nodes.claim_commands() {
            return Ok(());
        }
        let left = deadline
            .saturating_duration_since(Instant::now())
            .min(self.read_timeout);
        let asked = if left.is_zero() {
            Err(crate::outcome::timed_out())
        } else {
            self.inner.set_read_timeout(Some(left)).and_then(|()| {
                let reply = self.inner.req_packed_command(&CommandTable::request());
                self.inner.set_read_timeout(Some(self.read_timeout_now))?;
                reply
            })
        };
        let reply = match asked {
            Ok(reply) => reply,
            Err(err) => {
                // Another connect asks again.
                self.shared.nodes.unclaim_commands();
                self.observe(&err);
                return Err(err);
            }
        };
        let table = CommandTable::parse(&reply);
        if table.is_none() {
            log::info!(
                "{} did not list its commands ({}); telling reads from writes by this crate's \
                 own list",
                self.addr,
                match &reply {
                    Value::ServerError(err) => err.to_string(),
                    _ => "an unexpected reply".to_owned(),
                }
            );
        }
        let _ = self.shared.nodes.commands.set(table);
        Ok(())
    }

    /// True when durable mode can count the node's replicas: its role was asked with
    /// `ROLE`, which lists them (`HELLO` does not).
    pub(crate) fn counts_replicas(&self) -> bool {
        self.durable.listed.is_some()
    }

    /// Asks the node its role with `probe`, after a `PING` in the same round trip when
    /// `ping`, within `budget` (at most the read timeout). Each reply is read within its share
    /// of the budget, so a node that never answers costs the budget once, not once per reply.
    pub(crate) fn probe_role(
        &mut self,
        probe: RoleProbe,
        ping: bool,
        budget: Duration,
    ) -> RedisResult<NodeRole> {
        let replies = if ping { 2 } else { 1 };
        let per_reply = budget.min(self.read_timeout) / replies;
        if per_reply.is_zero() {
            return Err(crate::outcome::timed_out());
        }
        let bounded = per_reply != self.read_timeout_now;
        if bounded {
            self.inner.set_read_timeout(Some(per_reply))?;
        }
        // Straight on the socket: the probe changes nothing the connection tracks.
        let role =
            probe
                .ask_listing(&mut self.inner, ping, self.protocol)
                .map(|(role, replicas)| {
                    self.durable.listed = replicas;
                    self.durable.listed_at = Some(Instant::now());
                    role
                });
        match &role {
            Ok(_) => self.accounting.last_ok = Instant::now(),
            Err(err) => self.observe(err),
        }
        if bounded {
            self.inner.set_read_timeout(Some(self.read_timeout_now))?;
        }
        role
    }

    /// Refuses to send anything once the pool has moved past this master connection's
    /// generation. A replica connection reads on: a failover of the master does not make its
    /// replica's data wrong, and the fence is for writes.
    fn refuse_if_stale(&self) -> RedisResult<()> {
        let current = self.current.current();
        if current == self.generation || self.serves != NodeRole::Master {
            return Ok(());
        }
        Err(redis::make_extension_error(
            STALE.to_owned(),
            Some(format!(
                "the pool moved to generation {current} (a failover or an invalidation) after \
                 this connection to {} (generation {}) was checked out; the request was not \
                 sent: check out a new connection, or use with_retry",
                self.addr, self.generation
            )),
        ))
    }

    fn after<T>(&mut self, result: RedisResult<T>) -> RedisResult<T> {
        match &result {
            Ok(_) => self.accounting.last_ok = Instant::now(),
            Err(err) => self.observe(err),
        }
        result
    }
}

impl ConnectionLike for Connection {
    fn req_packed_command(&mut self, cmd: &[u8]) -> RedisResult<Value> {
        self.refuse_if_stale()?;
        let timer = Timer::start();
        let (kept, applied) = (self.hygiene.tracked, self.accounting.applied);
        self.before(cmd);
        let durable = self.durable_wait(kept)?;
        self.enter_blocking()?;
        let result = self.send_one(cmd, durable, applied);
        self.leave_blocking();
        let result = self.after(result);
        self.operations.command(timer, &result);
        result
    }

    fn req_packed_commands(
        &mut self,
        cmd: &[u8],
        offset: usize,
        count: usize,
    ) -> RedisResult<Vec<Value>> {
        self.refuse_if_stale()?;
        let timer = Timer::start();
        let (kept, applied) = (self.hygiene.tracked, self.accounting.applied);
        self.before(cmd);
        let durable = self.durable_wait(kept)?;
        self.enter_blocking()?;
        let result = self.send_many(cmd, offset, count, durable, applied);
        self.leave_blocking();
        let result = self.after(result);
        self.operations.pipeline(timer, &result);
        result
    }

    fn get_db(&self) -> i64 {
        self.db
    }

    fn check_connection(&mut self) -> bool {
        redis::cmd("PING").query::<String>(self).is_ok()
    }

    fn is_open(&self) -> bool {
        self.inner.is_open()
    }
}
