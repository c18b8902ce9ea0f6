//! A pooled connection: a redis connection, the generation it was born in, and what it has
//! seen that makes it unfit to hand to the next caller.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use redis::{ConnectionLike, ErrorKind, RedisError, RedisResult, Role, ServerErrorKind, Value};

use crate::{
    Durability, NodeAddr,
    class::{self, STALE},
    command_table::{self, CommandTable, Effect},
    core::Core,
    durable::{self, Replicas},
    generation::Generation,
    node::{NodeRole, NodeSettings, RoleProbe},
};

/// How old the replica count a durable write waits for may be: older, the master is asked
/// again (`ROLE`) before the write is sent.
const LISTING_FRESH: Duration = Duration::from_secs(1);

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
    inner: redis::Connection,
    addr: NodeAddr,
    generation: u64,
    /// What the node was when connected, and must stay: master, or replica for a replica
    /// pool.
    serves: NodeRole,
    /// For a replica connection, the version of the replica set it was picked from.
    replica_set: u64,
    /// For a replica connection made to another replica than the one selected, because that
    /// one failed: when it was made.
    detour_since: Option<Instant>,
    /// The pool's generation now; compared before every request.
    current: Arc<Generation>,
    /// The db selected when the connection was opened.
    db: i64,
    /// The read timeout every request gets.
    read_timeout: Duration,
    /// The read timeout in force: `read_timeout`, or a caller's inside `with_read_timeout`.
    /// What a probe that bounds its own reads sets back.
    read_timeout_now: Duration,
    /// The protocol the connection speaks, which a role probe's `HELLO` keeps.
    protocol: redis::ProtocolVersion,
    /// What the requests sent so far left the server's session in.
    tracked: Tracked,
    /// Handed out at least once. What an r2d2 connection customizer does to a new connection
    /// before that (`CLIENT SETNAME`, say) is the connection's baseline, not a change.
    handed_out: bool,
    /// An error on the wire (I/O, timeout, unparsable reply): a reply may still be in flight.
    out_of_step: bool,
    /// The error that showed the node is no longer a writable master, if one did.
    failover_error: Option<RedisError>,
    /// When the node last answered a request without error.
    last_ok: Instant,
    /// Replies received that were not errors to commands that may change data (a write, a
    /// script, a transaction's `EXEC`, any command not known to only read), over the
    /// connection's life: when this grows, something was applied.
    applied: u64,
    /// For each command of the request being sent: what a reply to it that is not an error
    /// says was applied. Reused from request to request.
    effects: Vec<Effect>,
    /// The last request sent held only reads (nor a transaction's `EXEC` of writes, nor
    /// anything this crate could not read): if it met an I/O error, nothing was applied.
    sent_only_reads: bool,
    /// Durable mode: a write is confirmed by `WAIT` in its own round trip. `None` for a
    /// replica connection or a pool without it.
    durability: Option<Durability>,
    /// The replicas the master listed as connected at the last `ROLE` (announced
    /// addresses); `None` when unknown (asked with `HELLO`).
    listed_replicas: Option<Vec<NodeAddr>>,
    /// When the node last answered a role probe.
    listed_at: Option<Instant>,
    /// The durable modes this master was found able to confirm writes for: `WAIT` (our
    /// user may run it) and `WAITAOF` (on disk).
    durable_checked: DurableChecked,
    /// What the pool's parts share: durable mode's memory of the master's replicas, how
    /// the node is asked its role, which commands write, who is blocked.
    shared: Arc<Core>,
    /// The request being sent holds a command that blocks (`BLPOP`, `XREAD`...), outside
    /// `MULTI`.
    blocks: bool,
    /// The node's id for this connection (`CLIENT ID`), once a blocking command asked it.
    client_id: Option<i64>,
    /// While a blocking request is in flight on a master: its entry among the blocked
    /// connections, and the flag the fence sets when it releases it.
    blocking: Option<(u64, Arc<std::sync::atomic::AtomicBool>)>,
}

/// What the requests sent on a connection left the server's session in: a request refused
/// unsent sets it back to what it was before.
#[derive(Debug, Clone, Copy, Default)]
struct Tracked {
    in_transaction: bool,
    watching: bool,
    /// A caller changed what the connection is (db, user, protocol, reply mode, name).
    session_changed: bool,
    subscribed: bool,
    /// Inside `MULTI`: whether a queued command may change data, which its `EXEC` applies.
    queued_write: bool,
}

/// Which durable modes a master connection was checked for.
#[derive(Debug, Clone, Copy, Default)]
struct DurableChecked {
    wait: bool,
    on_disk: bool,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("addr", &self.addr)
            .field("generation", &self.generation)
            .field("tracked", &self.tracked)
            .field("out_of_step", &self.out_of_step)
            .field("failover_error", &self.failover_error)
            .finish_non_exhaustive()
    }
}

impl Connection {
    pub(crate) fn new(
        inner: redis::Connection,
        addr: NodeAddr,
        generation: u64,
        serves: NodeRole,
        shared: &Arc<Core>,
        settings: &NodeSettings,
    ) -> Self {
        Connection {
            inner,
            addr,
            generation,
            serves,
            replica_set: 0,
            detour_since: None,
            current: Arc::clone(&shared.generation),
            db: settings.redis.db(),
            read_timeout: settings.read_timeout,
            read_timeout_now: settings.read_timeout,
            protocol: settings.redis.protocol(),
            tracked: Tracked::default(),
            handed_out: false,
            out_of_step: false,
            failover_error: None,
            last_ok: Instant::now(),
            applied: 0,
            effects: Vec::new(),
            sent_only_reads: false,
            durability: settings.durability.filter(|_| serves == NodeRole::Master),
            listed_replicas: None,
            listed_at: None,
            durable_checked: DurableChecked::default(),
            shared: Arc::clone(shared),
            blocks: false,
            client_id: None,
            blocking: None,
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
            .durability
            .map_or(Duration::ZERO, Durability::wait_timeout);
        let kept = self.read_timeout_now;
        self.read_timeout_now = timeout.saturating_add(confirming);
        let set = self.inner.set_read_timeout(Some(self.read_timeout_now));
        let result = set.and_then(|()| op(self));
        self.read_timeout_now = kept;
        if let Err(err) = self.inner.set_read_timeout(Some(kept)) {
            // The pool's timeout could not be restored: never hand the connection out again.
            self.out_of_step = true;
            return result.and(Err(err));
        }
        result
    }

    /// True while nothing has made the connection unfit for another caller.
    pub(crate) fn is_reusable(&self) -> bool {
        !self.out_of_step
            && !self.tracked.subscribed
            && !self.tracked.in_transaction
            && !self.tracked.watching
            && !self.tracked.session_changed
            && self.failover_error.is_none()
            && self.inner.is_open()
    }

    /// Notes that the pool hands the connection out: from now on, session changes count.
    pub(crate) fn mark_handed_out(&mut self) {
        self.handed_out = true;
    }

    /// True once an error on the wire may have left a reply in flight: a request sent on it
    /// may or may not have been applied.
    pub(crate) fn is_out_of_step(&self) -> bool {
        self.out_of_step
    }

    /// True when the last request sent held only commands that read: an error on the wire
    /// while it was in flight applied nothing.
    pub(crate) fn sent_only_reads(&self) -> bool {
        self.sent_only_reads
    }

    /// Commands that may change data and were answered without error: when this grows
    /// during an attempt, something in the attempt was applied. A read (`GET`), a command
    /// queued in `MULTI` (`+QUEUED`) or `MULTI` itself does not count.
    pub(crate) fn applied(&self) -> u64 {
        self.applied
    }

    /// True when the node answered a request without error less than `window` before `now`.
    pub(crate) fn answered_within(&self, now: Instant, window: Duration) -> bool {
        now.saturating_duration_since(self.last_ok) < window
    }

    /// Records the version of the replica set this replica connection was picked from, and
    /// whether it is a detour (the selected replica failed, another took the connection).
    pub(crate) fn set_replica_set(&mut self, version: u64, detour: bool) {
        self.replica_set = version;
        self.detour_since = detour.then(Instant::now);
    }

    /// True for a replica connection made on a detour at least `after` ago.
    pub(crate) fn detour_older_than(&self, after: Duration) -> bool {
        self.detour_since
            .is_some_and(|since| since.elapsed() >= after)
    }

    /// The version of the replica set this connection was picked from.
    pub(crate) fn replica_set(&self) -> u64 {
        self.replica_set
    }

    /// The role the node had when connected, which checkouts check it still has.
    pub(crate) fn serves(&self) -> NodeRole {
        self.serves
    }

    /// The error that showed the node is no longer a writable master (`READONLY`...), if any.
    pub(crate) fn failover_error(&self) -> Option<&RedisError> {
        self.failover_error.as_ref()
    }

    /// Asks the node which commands write (`COMMAND`), once per pool, by `deadline`: the
    /// first connection the pool opens does (while it asks, others go on without), and every
    /// connection reads the answer. A refusal (our ACL user may not run it, an endpoint that
    /// does not know it) leaves the connections on their own list of commands that only read.
    pub(crate) fn learn_commands(&mut self, deadline: Instant) -> RedisResult<()> {
        if self.shared.commands.get().is_some() || !self.shared.claim_commands() {
            return Ok(());
        }
        let left = deadline
            .saturating_duration_since(Instant::now())
            .min(self.read_timeout);
        let asked = if left.is_zero() {
            Err(crate::node::timed_out())
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
                self.shared.unclaim_commands();
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
        let _ = self.shared.commands.set(table);
        Ok(())
    }

    /// True when durable mode can count the node's replicas: its role was asked with
    /// `ROLE`, which lists them (`HELLO` does not).
    pub(crate) fn counts_replicas(&self) -> bool {
        self.listed_replicas.is_some()
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
            return Err(crate::node::timed_out());
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
                    self.listed_replicas = replicas;
                    self.listed_at = Some(Instant::now());
                    role
                });
        match &role {
            Ok(_) => self.last_ok = Instant::now(),
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

    fn before(&mut self, packed: &[u8]) {
        self.effects.clear();
        self.blocks = false;
        let mut parsed = commands(packed);
        // A pipeline mostly repeats one command: an ordinary one (no transaction, session or
        // subscription command, nothing decided by its subcommand) is looked at once.
        let mut last: Option<(&[u8], command_table::Traits)> = None;
        for (name, arg) in parsed.by_ref() {
            if let Some((previous, traits)) = last
                && previous == name
            {
                let effect = self.ordinary(traits);
                self.effects.push(effect);
                continue;
            }
            let is = |n: &str| name.eq_ignore_ascii_case(n.as_bytes());
            let mut effect = Effect::Read;
            if is("MULTI") {
                self.tracked.in_transaction = true;
                self.tracked.queued_write = false;
            } else if is("EXEC") || is("DISCARD") {
                if is("EXEC") && self.tracked.queued_write {
                    effect = Effect::Write;
                }
                self.tracked.in_transaction = false;
                self.tracked.queued_write = false;
                self.tracked.watching = false;
            } else if is("WATCH") {
                self.tracked.watching = true;
            } else if is("UNWATCH") {
                self.tracked.watching = false;
            } else if changes_session(name, arg) {
                // The session, not the data: nothing to apply or confirm.
                if self.handed_out {
                    self.tracked.session_changed = true;
                }
            } else {
                let subscribes = is_subscribe(name);
                if subscribes {
                    // Subscribed connections only take (un)subscribe commands: never reuse one.
                    self.tracked.subscribed = true;
                }
                let table = self.shared.commands.get().and_then(Option::as_ref);
                let traits = command_table::traits(name, arg, table);
                // `HELLO` changes the session only with an argument.
                last = (!traits.by_subcommand && !subscribes && !is("HELLO"))
                    .then_some((name, traits));
                effect = self.ordinary(traits);
            }
            self.effects.push(effect);
        }
        if !parsed.rest().is_empty() {
            // Something this crate could not read (inline commands, trailing bytes): it may
            // write.
            self.effects.push(Effect::Write);
        }
        // Commands queued in `MULTI` count as reads here: a connection that breaks before
        // their `EXEC` applies none of them.
        self.sent_only_reads =
            !(self.effects.is_empty() || self.effects.iter().any(|e| e.may_write()));
    }

    /// What a reply to an ordinary command with `traits` says was applied; inside `MULTI` it
    /// is queued instead, applied by the `EXEC` if it comes (and a blocking command does not
    /// block there).
    fn ordinary(&mut self, traits: command_table::Traits) -> Effect {
        if self.tracked.in_transaction {
            self.tracked.queued_write |= traits.effect.may_write();
            Effect::Read
        } else {
            self.blocks |= traits.blocks;
            traits.effect
        }
    }

    fn after<T>(&mut self, result: RedisResult<T>) -> RedisResult<T> {
        match &result {
            Ok(_) => self.last_ok = Instant::now(),
            Err(err) => self.observe(err),
        }
        result
    }

    /// redis-rs hands server errors (`READONLY`, `EXECABORT`...) back as values, to be turned
    /// into errors later by the caller's `query`; they are looked at here, as they pass.
    /// After `UNBLOCKED`: whether the node is no longer master. Redis releases blocked
    /// clients so when the node turns replica; an operator's `CLIENT UNBLOCK` leaves it
    /// master. `HELLO` (with no argument: every user may run it, it changes nothing) tells,
    /// on the connection itself, within its read timeout; a node that does not answer counts
    /// as demoted.
    fn demoted(&mut self) -> bool {
        let role = RoleProbe::Hello.ask(&mut self.inner, false, self.protocol);
        if role.is_err() {
            self.out_of_step = true;
        }
        !matches!(role, Ok(NodeRole::Master))
    }

    /// Whether the fence released the blocking request in flight (`CLIENT UNBLOCK` from the
    /// pool): the master it blocked on is being replaced.
    fn released_by_fence(&self) -> bool {
        self.blocking
            .as_ref()
            .is_some_and(|(_, released)| released.load(std::sync::atomic::Ordering::Acquire))
    }

    /// Before a blocking request goes to a master: enters the connection among the blocked
    /// ones, so that the fence can release it (asking the node its id once per connection).
    /// An error, the request unsent, when the id cannot be had.
    fn enter_blocking(&mut self) -> RedisResult<()> {
        if !self.blocks || self.serves != NodeRole::Master {
            return Ok(());
        }
        let id = match self.client_id {
            Some(id) => id,
            None => {
                let asked = self
                    .inner
                    .req_packed_command(&redis::cmd("CLIENT").arg("ID").get_packed_command());
                match asked {
                    Ok(Value::Int(id)) => id,
                    // Not allowed, or not known: the request blocks as it would without.
                    Ok(_) => return Ok(()),
                    Err(err) => {
                        // Nothing of the request was sent: this error applied nothing.
                        self.sent_only_reads = true;
                        self.observe(&err);
                        return Err(err);
                    }
                }
            }
        };
        self.client_id = Some(id);
        self.blocking = Some(self.shared.blocking(&self.addr, id));
        Ok(())
    }

    /// After a blocking request's replies: out of the blocked connections.
    fn leave_blocking(&mut self) {
        if let Some((token, _)) = self.blocking.take() {
            self.shared.unblocked(token);
        }
    }

    /// `effect`: what a reply to the command answered says was applied.
    fn observe_reply(&mut self, reply: &Value, effect: Effect) {
        if let Value::ServerError(err) = reply {
            self.observe(&RedisError::from(err.clone()));
        } else if effect.applied(reply) {
            self.applied += 1;
        }
    }

    /// What the reply at `index` (counted from the request's first command) says was
    /// applied; a request this crate could not read counts as one that writes.
    fn effect(&self, index: usize) -> Effect {
        self.effects.get(index).copied().unwrap_or(Effect::Write)
    }

    fn observe(&mut self, err: &RedisError) {
        // On a replica, `READONLY` answers a write sent to the wrong pool: no failover.
        if self.serves == NodeRole::Master
            && class::classify(err).is_failover()
            && (!class::is_unblocked(err) || self.released_by_fence() || self.demoted())
        {
            self.failover_error = Some(err.clone());
        }
        // A server error is a complete reply: the connection is still in step. Anything else
        // (I/O error, timeout, unparsable reply) may leave a reply in flight.
        if !matches!(
            err.kind(),
            ErrorKind::Server(_) | ErrorKind::Extension | ErrorKind::UnexpectedReturnType
        ) {
            self.out_of_step = true;
            // A master that crashed or hangs took its other connections with it.
            if self.serves == NodeRole::Master
                && (err.is_io_error() || err.is_timeout() || err.is_connection_dropped())
            {
                self.shared.distrust_recent();
            }
        }
        if err.kind() == ErrorKind::Server(ServerErrorKind::ExecAbort) {
            self.tracked.in_transaction = false;
            self.tracked.watching = false;
        }
    }
}

impl Connection {
    /// In durable mode, for the request `before` just read (`kept`: the session as it was
    /// before it): the durability and the number of replicas its `WAIT` asks for, or `None`
    /// when it writes nothing (or the mode is off, or the pool is still setting the
    /// connection up). An error, the request unsent and the session set back to what the
    /// server has, when the write cannot be confirmed: see [`durable_refusal`].
    ///
    /// [`durable_refusal`]: Connection::durable_refusal
    fn durable_wait(&mut self, kept: Tracked) -> RedisResult<Option<(Durability, u32)>> {
        let Some(durability) = self.durability else {
            return Ok(None);
        };
        let writes = self.effects.iter().any(|e| e.may_write());
        let opens_multi = self.tracked.in_transaction && !kept.in_transaction;
        if !self.handed_out || !(writes || opens_multi) {
            return Ok(None);
        }
        let checked = if writes {
            self.durable_refusal(durability, kept).map(Some)
        } else {
            // It opens a transaction whose writes its EXEC will apply: what cannot be asked
            // inside MULTI (where it would be queued) is asked now.
            self.prepare_durable(durability, false).map(|_| None)
        };
        match checked {
            Ok(asked) => Ok(asked.map(|asked| (durability, asked))),
            Err(err) => {
                self.unsend(kept);
                Err(err)
            }
        }
    }

    /// Why a write in durable mode cannot be sent, if it cannot; else how many replicas its
    /// `WAIT` asks for:
    /// - it writes on a subscribed connection, or writes and then leaves `MULTI` open: no
    ///   `WAIT` can follow it;
    /// - the master cannot confirm writes ([`check_durable`](Connection::check_durable));
    /// - with every replica: the master's replicas cannot be counted (our user may not run
    ///   `ROLE`), none is connected, or one Sentinel may promote is not
    ///   ([`Core::unconfirmable`]).
    fn durable_refusal(&mut self, durability: Durability, kept: Tracked) -> RedisResult<u32> {
        let refuse = |why: &str| {
            Err(redis::make_extension_error(
                "DURABLE".to_owned(),
                Some(format!("durable mode: {why}. It was not sent")),
            ))
        };
        if self.tracked.subscribed {
            return refuse(
                "this request writes on a subscribed connection, where no WAIT can follow \
                 it; send writes and SUBSCRIBE on separate connections",
            );
        }
        if self.tracked.in_transaction {
            return refuse(
                "this request writes and then leaves MULTI open, so no WAIT can confirm its \
                 writes; send MULTI ... EXEC in one request (an atomic pipeline)",
            );
        }
        if !self.prepare_durable(durability, kept.in_transaction)? {
            // The write goes, and the node refuses it itself (`READONLY`).
            return Ok(1);
        }
        let Replicas::All = durability.replicas else {
            return Ok(durability.asked(None));
        };
        let Some(connected) = self.listed_replicas.as_deref() else {
            return Err(durable::uncountable(&self.addr));
        };
        if connected.is_empty() {
            return Err(durable::no_replicas(&self.addr));
        }
        if let Some(why) = self.shared.unconfirmable(&self.addr, connected) {
            log::debug!("durable write to {} refused: {why}", self.addr);
            return Err(durable::unconfirmable(&self.addr, &why));
        }
        Ok(u32::try_from(connected.len()).unwrap_or(u32::MAX))
    }

    /// What a durable write needs asked of the master before it is sent, asked where it can
    /// be (`in_multi`: the server is inside `MULTI`, where it would be queued): the master's
    /// check ([`check_durable`](Connection::check_durable)), and with every replica, its
    /// `ROLE` when the one read is [`LISTING_FRESH`] old (inside `MULTI`, the count read
    /// when the transaction opened serves). Returns whether the node is still master.
    fn prepare_durable(&mut self, durability: Durability, in_multi: bool) -> RedisResult<bool> {
        self.check_durable(durability, in_multi)?;
        let stale = self
            .listed_at
            .is_none_or(|at| at.elapsed() >= LISTING_FRESH);
        if durability.replicas != Replicas::All || !stale || in_multi {
            return Ok(true);
        }
        let probe = self.shared.role_probe(&self.addr);
        match self.probe_role(probe, false, self.read_timeout) {
            Ok(role) => Ok(role == NodeRole::Master),
            Err(err) => {
                // Nothing of the request was sent: this error applied nothing.
                self.sent_only_reads = true;
                Err(err)
            }
        }
    }

    /// Sets the session back to `kept` after a request was refused unsent. When the server
    /// was inside `MULTI` (the refused request holds its `EXEC`), the transaction is
    /// discarded there, so that no later command of the caller's is queued into it.
    fn unsend(&mut self, kept: Tracked) {
        self.tracked = kept;
        if kept.in_transaction {
            match self
                .inner
                .req_packed_command(&redis::cmd("DISCARD").get_packed_command())
            {
                Ok(Value::Okay) => {
                    self.tracked.in_transaction = false;
                    self.tracked.queued_write = false;
                    self.tracked.watching = false;
                }
                Ok(_) | Err(_) => self.out_of_step = true,
            }
        }
    }

    /// In durable mode, once per connection and mode, before the first write of its kind:
    /// asks the master a `WAIT 0 0` (or, on disk, a `WAITAOF 1 0`) that confirms nothing, so
    /// that a master that cannot confirm writes (our user may not run `WAIT`; a server before
    /// 7.2, or no append-only file, on disk) is found before a write is sent to it. Its
    /// refusal comes back as an error with the code `DURABLE` that says what to change.
    /// `in_multi`: the server is inside `MULTI`, where the check would be queued: refused.
    fn check_durable(&mut self, durability: Durability, in_multi: bool) -> RedisResult<()> {
        let checked = if durability.on_disk {
            self.durable_checked.on_disk
        } else {
            self.durable_checked.wait
        };
        if checked {
            return Ok(());
        }
        if in_multi {
            return Err(redis::make_extension_error(
                "DURABLE".to_owned(),
                Some(
                    "durable mode: the master was not yet checked for it on this connection, \
                     and that cannot be done inside MULTI; call with_durability around the \
                     whole transaction. It was not sent"
                        .to_owned(),
                ),
            ));
        }
        let reply = self
            .inner
            .req_packed_command(&durability.packed_probe())
            .inspect_err(|err| self.observe(err))?;
        if let Value::ServerError(refusal) = reply {
            return Err(redis::make_extension_error(
                "DURABLE".to_owned(),
                Some(durable::cannot_confirm(&self.addr, durability, &refusal)),
            ));
        }
        if durability.on_disk {
            self.durable_checked.on_disk = true;
        } else {
            self.durable_checked.wait = true;
        }
        Ok(())
    }

    /// Durable mode, when the pool opens a connection: the master's check
    /// ([`check_durable`](Connection::check_durable)), and, with every replica, that its
    /// replicas can be counted. Nothing is checked on a replica or without durable mode.
    pub(crate) fn check_durable_at_open(&mut self) -> RedisResult<()> {
        let Some(durability) = self.durability else {
            return Ok(());
        };
        self.check_durable(durability, false)?;
        if durability.replicas == Replicas::All && !self.counts_replicas() {
            return Err(durable::uncountable(&self.addr));
        }
        Ok(())
    }

    /// Runs `f` with durable mode set to `durability` on this connection (`None`: off),
    /// whatever the pool's setting, for one call: a write that must be confirmed by replicas
    /// in a pool that does not ask it of every write, or the other way round. The setting
    /// comes back when `f` returns or panics.
    ///
    /// ```no_run
    /// use r2d2_redis_sentinel::{Durability, SentinelPool, redis::Commands};
    ///
    /// let pool = SentinelPool::builder(["127.0.0.1:26379"], "mymaster").build()?;
    /// let _: () = pool.with_retry(|c| {
    ///     c.with_durability(Some(Durability::all_replicas()), |c| c.set("balance:7", 100))
    /// })?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    ///
    /// `f`'s error; without calling `f`, a `DURABLE` error when `durability` is not valid
    /// for this pool (as [`Builder::durability`](crate::Builder::durability) would refuse
    /// it: a timeout not shorter than the read timeout, `at_least(0)`).
    pub fn with_durability<T>(
        &mut self,
        durability: Option<Durability>,
        f: impl FnOnce(&mut Self) -> RedisResult<T>,
    ) -> RedisResult<T> {
        if let Some(why) = durability.and_then(|d| d.invalid_with(self.read_timeout)) {
            return Err(redis::make_extension_error(
                "DURABLE".to_owned(),
                Some(format!("durable mode: {why}")),
            ));
        }
        let kept = std::mem::replace(
            &mut self.durability,
            durability.filter(|_| self.serves == NodeRole::Master),
        );
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(self)));
        self.durability = kept;
        result.unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    }
}

impl ConnectionLike for Connection {
    fn req_packed_command(&mut self, cmd: &[u8]) -> RedisResult<Value> {
        self.refuse_if_stale()?;
        let (kept, applied) = (self.tracked, self.applied);
        self.before(cmd);
        let durable = self.durable_wait(kept)?;
        self.enter_blocking()?;
        let result = self.send_one(cmd, durable, applied);
        self.leave_blocking();
        self.after(result)
    }

    fn req_packed_commands(
        &mut self,
        cmd: &[u8],
        offset: usize,
        count: usize,
    ) -> RedisResult<Vec<Value>> {
        self.refuse_if_stale()?;
        let (kept, applied) = (self.tracked, self.applied);
        self.before(cmd);
        let durable = self.durable_wait(kept)?;
        self.enter_blocking()?;
        let result = self.send_many(cmd, offset, count, durable, applied);
        self.leave_blocking();
        self.after(result)
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

impl Connection {
    /// Sends one command (and its `WAIT`, in durable mode) and reads its reply; `applied`:
    /// [`applied`](Connection::applied) before it.
    fn send_one(
        &mut self,
        cmd: &[u8],
        durable: Option<(Durability, u32)>,
        applied: u64,
    ) -> RedisResult<Value> {
        let Some((durability, asked)) = durable else {
            let result = self.inner.req_packed_command(cmd);
            if let Ok(reply) = &result {
                self.observe_reply(reply, self.effect(0));
            }
            return result;
        };
        // The write and its WAIT in one round trip.
        let packed = [cmd, &durability.packed_wait(asked)].concat();
        self.inner
            .req_packed_commands(&packed, 0, 2)
            .and_then(|mut replies| {
                let wait = replies.pop().unwrap_or(Value::Nil);
                let reply = replies.pop().unwrap_or(Value::Nil);
                self.observe_reply(&reply, self.effect(0));
                if self.applied == applied {
                    // Refused, or it changed nothing: nothing to confirm.
                    return Ok(reply);
                }
                durability.check(wait, asked).map(|()| reply)
            })
    }

    /// Sends a pipeline (and its `WAIT`, in durable mode) and reads the `count` replies from
    /// `offset`; `applied`: [`applied`](Connection::applied) before it.
    fn send_many(
        &mut self,
        cmd: &[u8],
        offset: usize,
        count: usize,
        durable: Option<(Durability, u32)>,
        applied: u64,
    ) -> RedisResult<Vec<Value>> {
        let result = match durable {
            None => self.inner.req_packed_commands(cmd, offset, count),
            Some((durability, asked)) => {
                // The WAIT after the last command (after an atomic pipeline's EXEC).
                let packed = [cmd, &durability.packed_wait(asked)].concat();
                self.inner.req_packed_commands(&packed, offset, count + 1)
            }
        };
        result.and_then(|mut replies| {
            let wait = durable.map(|_| replies.pop().unwrap_or(Value::Nil));
            // The replies skipped (`offset`: an atomic pipeline's `MULTI` and `+QUEUED`s) are
            // not returned; those returned line up with the commands from there.
            for (i, reply) in replies.iter().enumerate() {
                self.observe_reply(reply, self.effect(offset + i));
            }
            match (wait, durable) {
                // Every write refused, or none changed anything: its own replies say so.
                (Some(wait), Some((durability, asked))) if self.applied > applied => {
                    durability.check(wait, asked).map(|()| replies)
                }
                _ => Ok(replies),
            }
        })
    }
}

fn is_subscribe(name: &[u8]) -> bool {
    [&b"SUBSCRIBE"[..], b"PSUBSCRIBE", b"SSUBSCRIBE", b"MONITOR"]
        .iter()
        .any(|s| name.eq_ignore_ascii_case(s))
}

/// Commands after which the connection is no longer what the pool made: another db, user,
/// protocol or reply mode, a name or tracking the next caller did not ask for. `RESET` does
/// all of these at once (db 0, user `default`, RESP2).
fn changes_session(name: &[u8], arg: Option<&[u8]>) -> bool {
    let is = |n: &str| name.eq_ignore_ascii_case(n.as_bytes());
    // `HELLO` with no argument only reports (the pool asks roles with it); with a protocol
    // version it may switch protocol, user and name.
    if is("SELECT") || is("AUTH") || is("RESET") || (is("HELLO") && arg.is_some()) {
        return true;
    }
    if is("READONLY") || is("READWRITE") {
        return true;
    }
    is("CLIENT")
        && arg.is_some_and(|sub| {
            ["REPLY", "SETNAME", "TRACKING", "NO-EVICT", "NO-TOUCH"]
                .iter()
                .any(|s| sub.eq_ignore_ascii_case(s.as_bytes()))
        })
}

/// The name and first argument of each command in a packed request (RESP arrays of bulk
/// strings, as redis-rs writes them). Stops quietly at anything it does not understand, which
/// [`Commands::rest`] then holds.
pub(crate) fn commands(packed: &[u8]) -> Commands<'_> {
    Commands { rest: packed }
}

/// The iterator of [`commands`].
#[derive(Debug)]
pub(crate) struct Commands<'a> {
    rest: &'a [u8],
}

impl<'a> Commands<'a> {
    /// What was not read: empty once every command was.
    pub(crate) fn rest(&self) -> &'a [u8] {
        self.rest
    }
}

impl<'a> Iterator for Commands<'a> {
    type Item = (&'a [u8], Option<&'a [u8]>);

    fn next(&mut self) -> Option<Self::Item> {
        let (args, mut rest) = read_header(self.rest, b'*')?;
        let (mut name, mut first) = (None, None);
        for i in 0..args {
            let (len, after) = read_header(rest, b'$')?;
            let body = after.get(..len)?;
            match i {
                0 => name = Some(body),
                1 => first = Some(body),
                _ => {}
            }
            rest = after.get(len + 2..)?;
        }
        let name = name?;
        self.rest = rest;
        Some((name, first))
    }
}

/// Reads `<marker><number>\r\n` at the start of `buf`.
fn read_header(buf: &[u8], marker: u8) -> Option<(usize, &[u8])> {
    let rest = buf.strip_prefix(&[marker])?;
    let mut number: usize = 0;
    for (i, &byte) in rest.iter().enumerate() {
        match byte {
            b'0'..=b'9' => {
                number = number
                    .checked_mul(10)?
                    .checked_add(usize::from(byte - b'0'))?;
            }
            b'\r' if i > 0 => return Some((number, rest.get(i + 2..)?)),
            _ => return None,
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(packed: &[u8]) -> Vec<String> {
        commands(packed)
            .map(|(n, _)| String::from_utf8_lossy(n).into_owned())
            .collect()
    }

    #[test]
    fn command_names_reads_single_commands_and_pipelines() {
        assert_eq!(names(&redis::cmd("MULTI").get_packed_command()), ["MULTI"]);
        let mut pipe = redis::pipe();
        pipe.atomic().set("k", "v\r\n$3").incr("n", 1);
        assert_eq!(
            names(&pipe.get_packed_pipeline()),
            ["MULTI", "SET", "INCRBY", "EXEC"]
        );
    }

    #[test]
    fn session_changes_are_recognised_with_their_subcommand() {
        let first = |cmd: &redis::Cmd| {
            let packed = cmd.get_packed_command();
            let (name, arg) = commands(&packed).next().unwrap();
            changes_session(name, arg)
        };
        assert!(first(redis::cmd("select").arg(1)));
        assert!(first(redis::cmd("HELLO").arg(3)));
        assert!(!first(&redis::cmd("HELLO")));
        assert!(first(redis::cmd("CLIENT").arg("reply").arg("off")));
        assert!(first(redis::cmd("CLIENT").arg("SETNAME").arg("x")));
        assert!(!first(redis::cmd("CLIENT").arg("ID")));
        assert!(!first(redis::cmd("GET").arg("SELECT")));
    }

    #[test]
    fn headers_read_digits_only() {
        assert_eq!(read_header(b"*12\r\nrest", b'*'), Some((12, &b"rest"[..])));
        assert_eq!(read_header(b"$0\r\n", b'$'), Some((0, &b""[..])));
        for garbage in [
            &b"$\r\n"[..],
            b"$-1\r\n",
            b"$+5\r\n",
            b"$5",
            b"*5\r\n",
            b"$99999999999999999999999\r\n",
        ] {
            assert_eq!(read_header(garbage, b'$'), None, "{garbage:?}");
        }
    }

    #[test]
    fn command_names_stops_at_garbage_and_keeps_what_it_did_not_read() {
        assert!(names(b"PING\r\n").is_empty());
        assert_eq!(commands(b"PING\r\n").rest(), b"PING\r\n");
        assert_eq!(names(b"*1\r\n$4\r\nPING\r\n*9"), ["PING"]);
        let mut parsed = commands(b"*1\r\n$4\r\nPING\r\n*9");
        parsed.by_ref().for_each(drop);
        assert_eq!(parsed.rest(), b"*9");
        let mut whole = commands(b"*1\r\n$4\r\nPING\r\n");
        whole.by_ref().for_each(drop);
        assert!(whole.rest().is_empty());
    }
}
