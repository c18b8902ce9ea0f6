//! [`ClusterConnection`]: what [`ClusterPool::get`](super::ClusterPool::get) hands out. It
//! routes each request to the primary owning its keys, on a connection checked out of that
//! node's pool the first time the node is needed, and follows the cluster's redirections.

use std::time::{Duration, Instant};

use redis::{ConnectionLike, ErrorKind, RedisError, RedisResult, ServerErrorKind, Value};

use super::{
    ClusterPool,
    map::SlotMap,
    route::{self, Keys},
    slot,
};
use crate::{
    NodeAddr, PooledConnection,
    connection::{
        Retire,
        command::{Part, split},
        command_table,
    },
    outcome::{self, Class},
    shared::count,
};

/// How many redirections (`MOVED`, `ASK`) one request follows before giving up: a slot moves
/// once per migration step, so more means the nodes disagree.
const MAX_REDIRECTS: usize = 5;

/// How long a node's checkout waits at a time before looking at whether the node's
/// connects are failing.
const CHECKOUT_SLICE: Duration = Duration::from_millis(50);

/// A connection to a cluster: each request goes to the primary that owns its keys' slot.
///
/// It implements [`redis::ConnectionLike`], so every command of [`redis::Commands`] and every
/// [`redis::Cmd`] or [`redis::Pipeline`] works on it, as on a
/// [`Connection`](crate::Connection):
/// - a command goes to the primary of its keys' slot (hash tags respected); one without keys
///   to the node the last request went to (so that the `SCRIPT LOAD` that
///   [`redis::Script::invoke`] sends after a `NOSCRIPT` reaches the node that answered it), or
///   the first primary;
/// - a command, a transaction or a script whose keys span slots is refused unsent, with an
///   error of kind `CROSSSLOT` that names each key's slot;
/// - `MOVED` (the slot has a new owner: a failover, or a migration that ended) updates the
///   pool's slot map and sends the request again to the owner named; `ASK` (the key is being
///   migrated) sends it once to the node named, after `ASKING`;
/// - a pipeline is split by node and its replies come back in the caller's order; an atomic
///   one (`MULTI`/`EXEC`) goes to one node whole, or is refused unsent if its keys span
///   slots;
/// - after a `WATCH` or a `MULTI`, until the `EXEC`, `DISCARD` or `UNWATCH`, every request goes
///   to that node, and a key of another slot is refused unsent. Send a transaction as an
///   atomic pipeline, or begin it with `WATCH` on one of its keys: a `MULTI` sent alone does
///   not know where its keys will go.
///
/// The node connections it holds go back to their pools when it is dropped.
pub struct ClusterConnection {
    pool: ClusterPool,
    /// The connections checked out so far: one per node.
    held: Vec<(Node, PooledConnection)>,
    /// The node (and, once known, the slot) a transaction under way is bound to.
    pinned: Option<(Node, Option<u16>)>,
    /// The node the last request went to, where a request without keys goes.
    last: Option<Node>,
    /// What `with_retry` reads of the attempt.
    accounting: Accounting,
    /// How long a node's checkout may wait: the pool's `checkout_timeout`, or what is left of
    /// a `with_retry` attempt.
    wait: Duration,
    /// Inside [`with_read_timeout`](ClusterConnection::with_read_timeout): the read timeout
    /// every request gets instead of the pool's.
    read_timeout: Option<Duration>,
}

/// What the requests of an attempt left for `with_retry` to read: whether anything was
/// applied, and how the last request ended.
#[derive(Debug, Default)]
struct Accounting {
    /// What the node connections let go of had applied.
    let_go: u64,
    /// The last request's connection broke or timed out: a reply may be in flight.
    out_of_step: bool,
    /// The last request held only reads.
    sent_only_reads: bool,
}

impl std::fmt::Debug for ClusterConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterConnection")
            .field(
                "held",
                &self.held.iter().map(|(a, _)| a).collect::<Vec<_>>(),
            )
            .field("pinned", &self.pinned)
            .finish_non_exhaustive()
    }
}

/// A node as a request uses it: its address, and whether as a replica (reads on a `READONLY`
/// connection) or as the primary.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Node {
    addr: NodeAddr,
    replica: bool,
}

impl Node {
    fn primary(addr: NodeAddr) -> Self {
        Node {
            addr,
            replica: false,
        }
    }
}

/// Where a reply sends the request instead.
enum Redirect {
    Moved { slot: u16, to: NodeAddr },
    Ask { to: NodeAddr },
}

impl ClusterConnection {
    pub(super) fn new(pool: ClusterPool, wait: Duration) -> Self {
        pool.refresh_if_old();
        ClusterConnection {
            wait,
            read_timeout: None,
            pool,
            held: Vec::new(),
            pinned: None,
            last: None,
            accounting: Accounting::default(),
        }
    }

    /// Runs `op` with every request's read timeout set to `timeout` instead of the pool's
    /// [`read_timeout`](crate::Builder::read_timeout), then sets it back: for one blocking
    /// call (`BLPOP`, `BLMOVE`, `XREAD BLOCK`, `WAIT`...) that waits longer than ordinary
    /// commands should, as [`Connection::with_read_timeout`](crate::Connection::with_read_timeout)
    /// does on one node. Give it more than the command's own timeout.
    ///
    /// ```no_run
    /// # use r2d2_redis_sentinel::{ClusterPool, redis::Commands};
    /// # let pool = ClusterPool::builder(["127.0.0.1:7000"]).build()?;
    /// let mut conn = pool.get()?;
    /// let job: Option<(String, String)> = conn.with_read_timeout(
    ///     std::time::Duration::from_secs(35),
    ///     |c| c.blpop("{queue}:jobs", 30.0),
    /// )?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    ///
    /// `op`'s error; a zero `timeout` is refused by the first request.
    pub fn with_read_timeout<T>(
        &mut self,
        timeout: Duration,
        op: impl FnOnce(&mut Self) -> RedisResult<T>,
    ) -> RedisResult<T> {
        let kept = self.read_timeout.replace(timeout);
        let result = op(self);
        self.read_timeout = kept;
        result
    }

    /// The nodes this connection holds a connection to.
    pub fn nodes(&self) -> Vec<NodeAddr> {
        self.held
            .iter()
            .map(|(node, _)| node.addr.clone())
            .collect()
    }

    /// The slot of the command `args`: `None` without keys.
    fn slot_of(&mut self, args: &[&[u8]]) -> RedisResult<Option<u16>> {
        match self.pool.inner.keys.keys(args) {
            Keys::Known(keys) => route::slot_of(&keys),
            // Inside a transaction the question would be queued with the rest: the command
            // goes to the transaction's node, which refuses it if its keys are elsewhere (and
            // the `EXEC` then applies nothing).
            Keys::AskServer if self.pinned.is_some() => Ok(None),
            Keys::AskServer => {
                let keys = self.keys_from_server(args)?;
                let keys: Vec<&[u8]> = keys.iter().map(Vec::as_slice).collect();
                route::slot_of(&keys)
            }
        }
    }

    /// `COMMAND GETKEYS`, asked of a node: for commands whose keys move with their arguments.
    fn keys_from_server(&mut self, args: &[&[u8]]) -> RedisResult<Vec<Vec<u8>>> {
        let node = self.target(None)?;
        let mut ask = redis::cmd("COMMAND");
        ask.arg("GETKEYS");
        for arg in args {
            ask.arg(*arg);
        }
        let reply = self.conn(&node)?.req_command(&ask)?;
        // A command without keys (or unknown to the server) is answered with an error: it
        // goes anywhere, and the server says what is wrong with it.
        Ok(route::keys_from_server(&reply))
    }

    /// The node a request of `slot` goes to: its primary, or in a replica pool one of its
    /// replicas.
    fn target(&mut self, slot: Option<u16>) -> RedisResult<Node> {
        if let Some((node, pinned)) = &mut self.pinned {
            match (*pinned, slot) {
                (Some(bound), Some(slot)) if bound != slot => {
                    return Err(route::cross_slot(&format!(
                        "a transaction bound to slot {bound} met a key in slot {slot}"
                    )));
                }
                (None, Some(slot)) => *pinned = Some(slot),
                _ => {}
            }
            return Ok(node.clone());
        }
        let map = self.pool.map();
        let Some(slot) = slot else {
            let first = map.shards().first().map(|s| s.primary.clone());
            return self
                .last
                .clone()
                .or_else(|| match first {
                    Some(primary) if self.pool.reads.is_some() => {
                        let slot = (0..slot::SLOTS).find(|&s| map.primary(s) == Some(&primary))?;
                        self.replica_or_primary(&map, slot).ok()
                    }
                    primary => primary.map(Node::primary),
                })
                .ok_or_else(|| {
                    RedisError::from((
                        ErrorKind::Server(ServerErrorKind::ClusterDown),
                        "the pool's slot map names no primary",
                    ))
                });
        };
        if self.pool.reads.is_some() {
            return self.replica_or_primary(&map, slot);
        }
        map.primary(slot)
            .cloned()
            .map(Node::primary)
            .ok_or_else(|| {
                self.pool.refresh(Some(super::REFRESH_PAUSE), true, None);
                RedisError::from((
                    ErrorKind::Server(ServerErrorKind::ClusterDown),
                    "no node serves the slot",
                    format!("slot {slot} has no primary in the pool's slot map"),
                ))
            })
    }

    /// In a replica pool: a replica of `slot`'s shard, else its primary if the options allow.
    fn replica_or_primary(&self, map: &SlotMap, slot: u16) -> RedisResult<Node> {
        if let Some(addr) = self.pool.replica_for(map, slot) {
            return Ok(Node {
                addr,
                replica: true,
            });
        }
        let fallback = self
            .pool
            .reads
            .as_ref()
            .is_some_and(|r| r.options.fallback_to_master);
        match map.primary(slot) {
            Some(primary) if fallback => Ok(Node::primary(primary.clone())),
            _ => Err(RedisError::from((
                ErrorKind::Server(ServerErrorKind::ClusterDown),
                "no healthy replica serves the slot",
                format!(
                    "slot {slot} has no replica in the pool's slot map (none, or every one \
                     failed); ReplicaOptions::fallback_to_master(true) sends such reads to the \
                     primary"
                ),
            ))),
        }
    }

    /// The connection to `node` this one holds, checked out of its pool if needed.
    fn conn(&mut self, node: &Node) -> RedisResult<&mut PooledConnection> {
        let at = match self.held.iter().position(|(n, _)| n == node) {
            Some(at) => at,
            None => {
                let addr = &node.addr;
                let checkout = self
                    .pool
                    .node(addr, node.replica)
                    .and_then(|pool| checkout(&pool, self.wait));
                let conn = checkout.map_err(|err| {
                    // The node may be gone: the map may know better. A caller that finds a
                    // refresh running goes on to its backoff.
                    self.pool
                        .refresh(Some(super::REFRESH_PAUSE), false, Some(addr));
                    RedisError::from(std::io::Error::new(
                        std::io::ErrorKind::ConnectionRefused,
                        format!("no connection to cluster node {addr}: {err}"),
                    ))
                })?;
                self.held.push((node.clone(), conn));
                self.held.len() - 1
            }
        };
        Ok(&mut self.held[at].1)
    }

    /// After a request on `addr`: binds the connection to it while a transaction is under
    /// way there, and lets go of its connection if that can take no other request.
    fn after(&mut self, node: &Node, slot: Option<u16>) {
        self.last = Some(node.clone());
        let Some(at) = self.held.iter().position(|(n, _)| n == node) else {
            return;
        };
        let conn = &self.held[at].1;
        self.accounting.out_of_step = conn.is_out_of_step();
        self.accounting.sent_only_reads = conn.sent_only_reads();
        let tracked = &conn.hygiene.tracked;
        if tracked.in_transaction || tracked.watching {
            if self.pinned.is_none() {
                self.pinned = Some((node.clone(), slot));
            }
        } else if self.pinned.as_ref().is_some_and(|(n, _)| n == node) {
            self.pinned = None;
        }
        if matches!(
            conn.retire(),
            Some(Retire::OutOfStep | Retire::Closed | Retire::Demoted)
        ) {
            let (_, gone) = self.held.swap_remove(at);
            self.accounting.let_go += gone.applied();
            if self.pinned.as_ref().is_some_and(|(n, _)| n == node) {
                self.pinned = None;
            }
        }
    }

    /// Sends the one command `packed` (of `slot`), following redirections.
    fn one(&mut self, packed: &[u8], slot: Option<u16>) -> RedisResult<Value> {
        let mut node = self.target(slot)?;
        let mut asking = false;
        for _ in 0..=MAX_REDIRECTS {
            let bound = self.pinned.is_some();
            let timeout = self.read_timeout;
            let conn = self.conn(&node)?;
            let reply = if asking {
                let mut both = redis::cmd("ASKING").get_packed_command();
                both.extend_from_slice(packed);
                timed(conn, timeout, |c| c.req_packed_commands(&both, 1, 1))
                    .map(|mut replies| replies.pop().unwrap_or(Value::Nil))
            } else {
                timed(conn, timeout, |c| c.req_packed_command(packed))
            };
            self.after(&node, slot);
            let reply = reply?;
            // Inside a transaction, a redirection is the transaction's answer.
            match redirect(&reply, &node.addr, &self.pool).filter(|_| !bound) {
                Some(Redirect::Moved { slot, to }) => {
                    node = self.moved_to(slot, to)?;
                    asking = false;
                }
                Some(Redirect::Ask { to }) => {
                    count(&self.pool.inner.counters.asked);
                    (node, asking) = (Node::primary(to), true);
                }
                None => return Ok(reply),
            }
        }
        Err(too_many_redirects())
    }

    /// Where a request goes after a `MOVED` to `to` for `slot`: the map patched, `to`, or in
    /// a replica pool a replica of `to`'s shard.
    fn moved_to(&mut self, slot: u16, to: NodeAddr) -> RedisResult<Node> {
        self.pool.moved(slot, &to);
        if self.pool.reads.is_some() {
            self.target(Some(slot))
        } else {
            Ok(Node::primary(to))
        }
    }

    /// Sends the pipeline `packed` whole to the node of `slot`, and returns every reply; one
    /// `MOVED` among them (nothing of an atomic one was applied then) sends it again to the
    /// owner named.
    fn whole(&mut self, packed: &[u8], count: usize, slot: Option<u16>) -> RedisResult<Vec<Value>> {
        let mut node = self.target(slot)?;
        for _ in 0..=MAX_REDIRECTS {
            let bound = self.pinned.is_some();
            let timeout = self.read_timeout;
            let replies = timed(self.conn(&node)?, timeout, |c| {
                c.req_packed_commands(packed, 0, count)
            });
            self.after(&node, slot);
            let replies = replies?;
            let first = replies
                .iter()
                .find_map(|r| redirect(r, &node.addr, &self.pool))
                .filter(|_| !bound);
            match first {
                Some(Redirect::Moved { slot, to }) => node = self.moved_to(slot, to)?,
                Some(Redirect::Ask { .. }) => {
                    return Err(RedisError::from((
                        ErrorKind::Server(ServerErrorKind::TryAgain),
                        "the transaction's slot is being migrated (refused, nothing applied)",
                    )));
                }
                None => return Ok(replies),
            }
        }
        Err(too_many_redirects())
    }

    /// A pipeline that is not atomic: each node gets its commands in one round trip, and the
    /// replies come back in the caller's order; a command answered with a redirection is sent
    /// again alone, where it points.
    fn split_by_node(
        &mut self,
        packed: &[u8],
        commands: &[(std::ops::Range<usize>, Option<u16>)],
    ) -> RedisResult<Vec<Value>> {
        let mut groups: Vec<(Node, Vec<usize>)> = Vec::new();
        for (i, (_, slot)) in commands.iter().enumerate() {
            let node = self.target(*slot)?;
            match groups.iter_mut().find(|(n, _)| *n == node) {
                Some((_, members)) => members.push(i),
                None => groups.push((node, vec![i])),
            }
        }
        let mut replies = vec![Value::Nil; commands.len()];
        for (node, members) in groups {
            let mut sub = Vec::new();
            for &i in &members {
                sub.extend_from_slice(&packed[commands[i].0.clone()]);
            }
            let timeout = self.read_timeout;
            let answers = timed(self.conn(&node)?, timeout, |c| {
                c.req_packed_commands(&sub, 0, members.len())
            });
            self.after(&node, None);
            for (i, reply) in members.into_iter().zip(answers?) {
                replies[i] = reply;
            }
        }
        for (i, (range, slot)) in commands.iter().enumerate() {
            if matches!(&replies[i], Value::ServerError(e)
                if matches!(e.kind(), Some(ServerErrorKind::Moved | ServerErrorKind::Ask)))
            {
                let resent = self.one_redirected(&packed[range.clone()], *slot, &replies[i])?;
                replies[i] = resent;
            }
        }
        Ok(replies)
    }

    /// Sends `packed` again where `reply` (a redirection to it) points.
    fn one_redirected(
        &mut self,
        packed: &[u8],
        slot: Option<u16>,
        reply: &Value,
    ) -> RedisResult<Value> {
        let from = self.target(slot)?;
        match redirect(reply, &from.addr, &self.pool) {
            Some(Redirect::Moved { slot, to }) => {
                self.pool.moved(slot, &to);
                self.one(packed, Some(slot))
            }
            Some(Redirect::Ask { to }) => {
                count(&self.pool.inner.counters.asked);
                let to = Node::primary(to);
                let timeout = self.read_timeout;
                let conn = self.conn(&to)?;
                let mut both = redis::cmd("ASKING").get_packed_command();
                both.extend_from_slice(packed);
                let answer = timed(conn, timeout, |c| c.req_packed_commands(&both, 1, 1))
                    .map(|mut replies| replies.pop().unwrap_or(Value::Nil));
                self.after(&to, slot);
                answer
            }
            None => Ok(reply.clone()),
        }
    }
}

impl ClusterConnection {
    /// In a replica pool, a request that may write is refused unsent: replicas serve reads,
    /// and a write belongs to the primary pool.
    fn refuse_writes(&self, commands: &[Part<'_>]) -> RedisResult<()> {
        if self.pool.reads.is_none() {
            return Ok(());
        }
        let table = self.pool.inner.commands.as_ref();
        for (_, args) in commands {
            let traits = command_table::traits(args[0], args.get(1).copied(), table);
            if traits.effect.may_write() {
                return Err(RedisError::from((
                    ErrorKind::Server(ServerErrorKind::ReadOnly),
                    "a replica pool does not write (refused unsent)",
                    format!(
                        "{} may write: send it through the primary pool",
                        String::from_utf8_lossy(args[0])
                    ),
                )));
            }
        }
        Ok(())
    }
}

impl crate::retry::Attempted for ClusterConnection {
    fn applied(&self) -> u64 {
        self.accounting.let_go + self.held.iter().map(|(_, c)| c.applied()).sum::<u64>()
    }

    /// As on a node's connection: an error that came off the wire with nothing applied
    /// before it in the attempt is retried; a broken connection under reads alone applied
    /// nothing; a refusal after something was applied leaves the attempt maybe applied.
    fn class_of(&self, err: &RedisError, applied_before: u64) -> Class {
        let applied = crate::retry::Attempted::applied(self) > applied_before;
        match outcome::classify(err) {
            // A write refused by a replica pool: no other replica takes it either.
            Class::NotApplied { failover: true }
                if self.pool.reads.is_some() && outcome::is_readonly(err) =>
            {
                Class::Final
            }
            // Durable mode: applied on the primary, not confirmed by enough replicas. Retried
            // only when idempotent; the connection is in step.
            Class::MaybeApplied if crate::durable::Shortfall::of(err).is_some() => {
                Class::MaybeApplied
            }
            // The slot map is being fixed (a failover, a partition): nothing ran.
            Class::Final if err.kind() == ErrorKind::Server(ServerErrorKind::ClusterDown) => {
                if applied {
                    Class::MaybeApplied
                } else {
                    Class::NotApplied { failover: false }
                }
            }
            Class::MaybeApplied if !self.accounting.out_of_step => Class::Final,
            Class::MaybeApplied if self.accounting.sent_only_reads && !applied => {
                Class::NotApplied { failover: false }
            }
            Class::NotApplied { .. } if applied => Class::MaybeApplied,
            class => class,
        }
    }

    fn place(&self) -> String {
        self.last
            .as_ref()
            .map_or_else(|| "the cluster".to_owned(), |n| n.addr.to_string())
    }
}

impl ConnectionLike for ClusterConnection {
    fn req_packed_command(&mut self, cmd: &[u8]) -> RedisResult<Value> {
        let commands = split(cmd).ok_or_else(unreadable)?;
        self.refuse_writes(&commands)?;
        let mut slot = None;
        for (_, args) in &commands {
            if let Some(s) = self.slot_of(args)? {
                if let Some(known) = slot.filter(|&known| known != s) {
                    return Err(route::cross_slot(&format!(
                        "the request's commands have keys in slots {known} and {s}"
                    )));
                }
                slot = Some(s);
            }
        }
        self.one(cmd, slot)
    }

    fn req_packed_commands(
        &mut self,
        cmd: &[u8],
        offset: usize,
        count: usize,
    ) -> RedisResult<Vec<Value>> {
        let commands = split(cmd).ok_or_else(unreadable)?;
        self.refuse_writes(&commands)?;
        let mut slots = Vec::with_capacity(commands.len());
        let mut unit = offset > 0 || self.pinned.is_some();
        for (range, args) in &commands {
            let name = args[0];
            unit |= ["MULTI", "EXEC", "WATCH"]
                .iter()
                .any(|t| name.eq_ignore_ascii_case(t.as_bytes()));
            slots.push((range.clone(), self.slot_of(args)?));
        }
        let replies = if unit {
            // One node: every key in one slot.
            let mut slot = None;
            for (_, s) in &slots {
                if let Some(s) = *s {
                    if slot.is_some_and(|known| known != s) {
                        return Err(route::cross_slot(&format!(
                            "a transaction's keys are in slots {} and {s}",
                            slot.unwrap_or_default()
                        )));
                    }
                    slot = Some(s);
                }
            }
            self.whole(cmd, commands.len(), slot)?
        } else {
            self.split_by_node(cmd, &slots)?
        };
        Ok(replies.into_iter().skip(offset).take(count).collect())
    }

    fn get_db(&self) -> i64 {
        0
    }

    fn check_connection(&mut self) -> bool {
        self.held
            .iter_mut()
            .all(|(_, conn)| conn.check_connection())
    }

    fn is_open(&self) -> bool {
        self.held.iter().all(|(_, conn)| conn.is_open())
    }
}

/// `op` on `conn`, with the read timeout `timeout` when one is set.
fn timed<T>(
    conn: &mut PooledConnection,
    timeout: Option<Duration>,
    op: impl FnOnce(&mut crate::Connection) -> RedisResult<T>,
) -> RedisResult<T> {
    match timeout {
        Some(timeout) => conn.with_read_timeout(timeout, op),
        None => op(conn),
    }
}

/// A connection from a node's pool, waiting at most `wait`, but not for a node that cannot be
/// reached (a primary that crashed): the slot map will name another, and the caller's retry
/// should look there instead of waiting out the timeout.
fn checkout(pool: &crate::SentinelPool, wait: Duration) -> Result<PooledConnection, crate::Error> {
    let start = Instant::now();
    loop {
        let left = wait.saturating_sub(start.elapsed());
        match pool.get_timeout(left.min(CHECKOUT_SLICE)) {
            Ok(conn) => return Ok(conn),
            Err(err) if left <= CHECKOUT_SLICE => return Err(err),
            Err(err) if err.is_config() => return Err(err),
            Err(_) => {
                if let Some(err) = pool.last_connect_error() {
                    return Err(err);
                }
            }
        }
    }
}

/// Where `reply` redirects the request, if it does: the node named, as the pool's address
/// map rewrites it (a node that does not know its own host names only its port: `from`'s
/// host, then).
fn redirect(reply: &Value, from: &NodeAddr, pool: &ClusterPool) -> Option<Redirect> {
    let Value::ServerError(err) = reply else {
        return None;
    };
    let err = RedisError::from(err.clone());
    let (addr, slot) = err.redirect_node()?;
    let (host, port) = addr.rsplit_once(':')?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let host = if host.is_empty() { &from.host } else { host };
    let to = pool
        .inner
        .config
        .address_map
        .apply(NodeAddr::new(host, port.parse().ok()?));
    Some(match err.kind() {
        ErrorKind::Server(ServerErrorKind::Moved) => Redirect::Moved { slot, to },
        _ => Redirect::Ask { to },
    })
}

fn too_many_redirects() -> RedisError {
    RedisError::from((
        ErrorKind::Server(ServerErrorKind::TryAgain),
        "too many redirections",
        format!("the nodes redirected the request {MAX_REDIRECTS} times: their slot maps disagree"),
    ))
}

fn unreadable() -> RedisError {
    RedisError::from((
        ErrorKind::Client,
        "the cluster connection takes requests as redis-rs packs them (RESP arrays)",
    ))
}
