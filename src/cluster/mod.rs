//! [`ClusterPool`]: the same blocking pool over a Redis (or Valkey) Cluster.
//!
//! # Design
//!
//! - **One pool per node.** Each primary a request reaches gets its own pool of this crate's
//!   [`Connection`](crate::Connection)s, made on first use, bounded by
//!   [`max_size`](crate::Builder::max_size): at most that many sockets per node in use,
//!   whatever the number of callers, where a pool of whole cluster clients opens one socket
//!   per node per pooled client. A node's pool has its own generation, which moves when the
//!   node answers that it is no longer a primary; its connections then refuse to send, as
//!   in the Sentinel pool.
//! - **One slot map** ([`map`]), shared by every caller and read without a lock held across
//!   anything: learned from `CLUSTER SHARDS` (7.0 and later; `CLUSTER SLOTS` before), and
//!   refreshed when a node answers `MOVED`, when a node cannot be reached, and every
//!   [`REFRESH_EVERY`] at most when a caller passes by. One refresh runs at a time (single
//!   flight): the callers that need one meanwhile wait for it and use its answer. The refresh
//!   asks a node on a connection of its own, bounded by the connect and read timeouts, and
//!   swaps the new map in under a lock held for the swap alone.
//! - **Routing** ([`route`]): the keys of a command are where the server's own `COMMAND`
//!   reply places them, their slot is the key's CRC16 ([`slot`]), hash tags respected. A
//!   command, a transaction or a script whose keys span slots is refused unsent.
//! - **The connection** ([`connection`]) a caller gets is a router: it checks a connection out
//!   of a node's pool the first time a request needs that node, keeps it until it is dropped
//!   (so that `WATCH`, `MULTI` and `EXEC` stay on one connection), follows `MOVED` and `ASK`,
//!   and splits a pipeline by node.

mod connection;
mod map;
mod route;
mod slot;
mod stats;

use std::{
    collections::HashMap,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use parking_lot::{Mutex, RwLock};
use redis::{ConnectionLike, Value};

pub use connection::ClusterConnection;
use map::{Reading, SlotMap};
use route::KeyTable;
pub use stats::{ClusterStats, PrimaryStats};

use crate::{
    Builder, Error, NodeAddr, ReplicaOptions, ReplicaSelection, SentinelPool, Validation,
    config::{Cluster, Config, MAX_POOL_SIZE, invalid, names_port},
    connection::command_table::CommandTable,
    node::{self, NodeRole},
    shared::count,
};

/// How old the slot map may grow before a caller passing by refreshes it.
const REFRESH_EVERY: Duration = Duration::from_secs(5);

/// How soon after a refresh a `MOVED` only patches its slot, instead of asking again: during a
/// slot migration every key moved answers `MOVED`, and one refresh tells them all.
const REFRESH_PAUSE: Duration = Duration::from_millis(100);

/// A pool over a Redis (or Valkey) Cluster: one pool of connections per primary and one slot
/// map, behind a connection that routes each request to the primary that owns its keys.
///
/// Cloning is cheap and gives another handle to the same pool.
///
/// ```no_run
/// use r2d2_redis_sentinel::{ClusterPool, redis::Commands};
///
/// let pool = ClusterPool::builder(["127.0.0.1:7000", "127.0.0.1:7001"]).build()?;
/// let mut conn = pool.get()?;
/// let _: () = conn.set("{user:42}:name", "Ada")?;
/// let _: () = conn.set("{user:42}:email", "ada@example.com")?;
/// let (name, email): (String, String) = conn.mget(&["{user:42}:name", "{user:42}:email"])?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct ClusterPool {
    inner: Arc<Inner>,
    /// A pool of reads from the replicas ([`replica_pool`](ClusterPool::replica_pool)).
    reads: Option<Arc<Reads>>,
}

/// How a replica pool picks its replicas.
#[derive(Debug)]
struct Reads {
    options: ReplicaOptions,
    /// The round robin's turn.
    next: AtomicUsize,
}

#[derive(Debug)]
struct Inner {
    /// The options every node pool is made with.
    config: Config,
    /// The cluster's own retry counters and policy (its deadline covers the cluster's
    /// `cluster-node-timeout`), and a generation that moves whenever the slot map changes,
    /// which ends a retry's backoff at once.
    shared: crate::shared::Shared,
    /// The nodes given to the builder, asked when none of the map's answers.
    seeds: Vec<NodeAddr>,
    map: RwLock<Arc<SlotMap>>,
    /// Held while a refresh runs; when the last one ended.
    refresh: Mutex<Refreshed>,
    /// Every node pool made so far: a primary's (`false`) and a replica's (`true`) apart.
    nodes: RwLock<HashMap<(NodeAddr, bool), SentinelPool>>,
    /// Where each command's effect is known (which commands write), as a node listed them.
    commands: Option<CommandTable>,
    /// A `MOVED` came too soon after a refresh to ask again: the next caller to pass by
    /// after [`REFRESH_PAUSE`] does.
    stale: AtomicBool,
    /// What [`stats`](ClusterPool::stats) reports.
    counters: stats::Counters,
    keys: KeyTable,
}

impl ClusterPool {
    /// Starts a builder for the cluster whose nodes include `seeds` (`"host:port"`,
    /// `"redis://host:port"`, `"rediss://..."` for TLS, with `user:password@` if the nodes
    /// need it, as [`Builder::password`] would set it); one reachable node is enough, more is
    /// safer. Every other node is learned from the cluster.
    pub fn builder<I, S>(seeds: I) -> Builder<Cluster>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        Builder::with_topology(
            seeds
                .into_iter()
                .map(|s| crate::Secret::address(s.as_ref()))
                .collect(),
            "cluster".to_owned(),
        )
    }

    /// Starts a builder from one connection string; builder options still override what it
    /// says:
    ///
    /// ```text
    /// redis+cluster://[user:password@]host:port[,host:port...][?param=value&...]
    /// ```
    ///
    /// `rediss+cluster://` speaks TLS to every node (the `tls` feature). The parameters are
    /// those of [`SentinelPool::from_url`](crate::SentinelPool::from_url) that a cluster has:
    /// `connect_timeout`, `read_timeout`, `write_timeout`, `checkout_timeout`, `max_size`,
    /// `min_idle`, `client_name`, `address_map`. Reserved characters in a user, password or
    /// parameter are percent-encoded, as there.
    ///
    /// ```no_run
    /// # use r2d2_redis_sentinel::ClusterPool;
    /// let pool = ClusterPool::from_url("redis+cluster://:pw@10.0.0.1:7000,10.0.0.2:7000")?
    ///     .max_size(16)
    ///     .build()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`] (option `url`, or the parameter's name) when the string is not
    /// of that form. Node addresses are checked by `build`.
    pub fn from_url(url: &str) -> Result<Builder<Cluster>, Error> {
        crate::config::url::parse_cluster(url)
    }

    /// Starts a builder from the environment, in the convention services and containers use:
    ///
    /// - `REDIS_CLUSTER_URL`: a connection string, as [`from_url`](Self::from_url) reads it;
    /// - or `CLUSTER_NODES`: comma-separated seed nodes (`host:port`, `redis://...`);
    /// - and, with either, `ADDRESS_MAP`: comma-separated `announced=reachable` pairs of
    ///   `host:port` (see [`Builder::address_map`]).
    ///
    /// Returns `Ok(None)` when neither `REDIS_CLUSTER_URL` nor `CLUSTER_NODES` is set.
    ///
    /// ```no_run
    /// # use r2d2_redis_sentinel::ClusterPool;
    /// let builder = ClusterPool::from_env()?.ok_or("set REDIS_CLUSTER_URL or CLUSTER_NODES")?;
    /// let pool = builder.max_size(16).build()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`] naming the variable (`ADDRESS_MAP`; `url` for the connection
    /// string) when a value cannot be read. Node addresses are checked by `build`.
    pub fn from_env() -> Result<Option<Builder<Cluster>>, Error> {
        crate::config::cluster_from_env(|name| std::env::var(name).ok())
    }

    /// A connection that routes each request to the primary owning its keys. No I/O: it
    /// checks a connection out of a node's pool when a request first needs that node.
    ///
    /// # Errors
    ///
    /// None yet; the `Result` leaves room for checks a later version makes at checkout.
    pub fn get(&self) -> Result<ClusterConnection, Error> {
        Ok(ClusterConnection::new(
            self.clone(),
            self.inner.config.checkout_timeout,
        ))
    }

    /// The primaries the slot map names now, in the order their slots come.
    pub fn primaries(&self) -> Vec<NodeAddr> {
        let map = self.map();
        map.shards().iter().map(|s| s.primary.clone()).collect()
    }

    /// The primary that owns `key`'s slot in the slot map now, if one does.
    pub fn primary_for_key(&self, key: impl AsRef<[u8]>) -> Option<NodeAddr> {
        self.map().primary(slot::of(key.as_ref())).cloned()
    }

    /// Runs `op` on a cluster connection, retrying what surely did not run, within the
    /// [`RetryPolicy`](crate::RetryPolicy), as
    /// [`SentinelPool::with_retry`](crate::SentinelPool::with_retry) does: a node that
    /// cannot be reached (a primary that crashed, until its replica takes over), `TRYAGAIN`,
    /// `CLUSTERDOWN`, redirections that did not settle. Each attempt gets a fresh
    /// connection, and a backoff ends as soon as the slot map changes. The default deadline
    /// covers a primary's crash: the cluster's `cluster-node-timeout` (asked at build) plus
    /// 10 s, at least 10 s.
    ///
    /// ```no_run
    /// # use r2d2_redis_sentinel::{ClusterPool, redis::Commands};
    /// # let pool = ClusterPool::builder(["127.0.0.1:7000"]).build()?;
    /// let visits: u64 = pool.with_retry(|c| c.incr("visits", 1))?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As [`SentinelPool::with_retry`](crate::SentinelPool::with_retry):
    /// [`Error::MaybeApplied`] when an attempt may have been applied,
    /// [`Error::RetriesExhausted`], [`Error::Redis`] for a final error (a cross-slot request
    /// among them).
    pub fn with_retry<T>(
        &self,
        op: impl FnMut(&mut ClusterConnection) -> redis::RedisResult<T>,
    ) -> Result<T, Error> {
        crate::retry::run(self, false, op)
    }

    /// Like [`with_retry`](Self::with_retry), for an operation that is safe to run more than
    /// once: a connection that broke after the command was sent is retried too. See
    /// [`SentinelPool::with_retry_idempotent`](crate::SentinelPool::with_retry_idempotent)
    /// for which operations are.
    ///
    /// # Errors
    ///
    /// As [`with_retry`](Self::with_retry), without [`Error::MaybeApplied`].
    pub fn with_retry_idempotent<T>(
        &self,
        op: impl FnMut(&mut ClusterConnection) -> redis::RedisResult<T>,
    ) -> Result<T, Error> {
        crate::retry::run(self, true, op)
    }

    /// Swaps `map` in; a map that differs from the one in force starts a new generation, and
    /// the pools of nodes it no longer names as primaries are closed (a connection checked
    /// out of one stays its holder's until returned).
    fn install(&self, map: Arc<SlotMap>) {
        let mut current = self.inner.map.write();
        if **current == *map {
            return;
        }
        let primaries: Vec<NodeAddr> = map.shards().iter().map(|s| s.primary.clone()).collect();
        let replicas: Vec<NodeAddr> = map
            .shards()
            .iter()
            .flat_map(|s| s.replicas.iter().cloned())
            .collect();
        *current = map;
        drop(current);
        self.inner.shared.generation.bump();
        let closed: Vec<SentinelPool> = {
            let mut nodes = self.inner.nodes.write();
            let gone: Vec<(NodeAddr, bool)> = nodes
                .keys()
                .filter(|(addr, replica)| {
                    !if *replica { &replicas } else { &primaries }.contains(addr)
                })
                .cloned()
                .collect();
            gone.iter().filter_map(|key| nodes.remove(key)).collect()
        };
        // Dropped outside the lock: each stops its threads.
        drop(closed);
    }

    /// What the pool knows of itself now: the slot map, each primary's connections, the
    /// refreshes and redirections so far, what `with_retry` did. No I/O.
    pub fn stats(&self) -> ClusterStats {
        let map = self.map();
        let nodes = self.inner.nodes.read();
        let primaries = map
            .shards()
            .iter()
            .map(|shard| {
                let state = nodes
                    .get(&(shard.primary.clone(), false))
                    .map(SentinelPool::state);
                PrimaryStats {
                    addr: shard.primary.clone(),
                    slots: map.slots_of(&shard.primary),
                    connections: state.as_ref().map_or(0, |s| s.connections),
                    idle_connections: state.as_ref().map_or(0, |s| s.idle_connections),
                }
            })
            .collect();
        let counters = &self.inner.counters;
        let read = |c: &std::sync::atomic::AtomicU64| c.load(Ordering::Relaxed);
        ClusterStats {
            generation: self.inner.shared.generation.current(),
            primaries,
            uncovered_slots: usize::from(slot::SLOTS) - map.covered(),
            refreshes: read(&counters.refreshes),
            refresh_failures: read(&counters.refresh_failures),
            moved: read(&counters.moved),
            asked: read(&counters.asked),
            retry_deadline: crate::retry::policy(&self.inner.shared).deadline_value(),
            retries: self.inner.shared.retries.snapshot(),
            events_dropped: self.inner.shared.events.dropped(),
        }
    }

    /// The pool's events: [`Event::SlotMapChanged`](crate::Event::SlotMapChanged) at each
    /// refresh that changed the slot map. Bounded and never blocking, as
    /// [`SentinelPool::events`](crate::SentinelPool::events).
    pub fn events(&self) -> crate::Events {
        self.inner.shared.events.receiver()
    }

    /// The slot map now.
    fn map(&self) -> Arc<SlotMap> {
        Arc::clone(&self.inner.map.read())
    }

    /// A pool of reads from the replicas, sharing this pool's slot map and node pools: each
    /// request goes to a replica of the shard that owns its keys, picked by
    /// `options.selection`, on a connection made `READONLY`. With no healthy replica for a
    /// slot, a read goes to the primary when `options.fallback_to_master` says so, and fails
    /// with `CLUSTERDOWN` (retried by `with_retry`) otherwise. A write is refused unsent with
    /// `READONLY`, and not retried. Replicas replicate asynchronously: a read may miss a
    /// write a moment old.
    ///
    /// ```no_run
    /// # use r2d2_redis_sentinel::{ClusterPool, ReplicaOptions, redis::Commands};
    /// let pool = ClusterPool::builder(["127.0.0.1:7000"]).build()?;
    /// let reads = pool.replica_pool(ReplicaOptions::default())?;
    /// let name: Option<String> = reads.with_retry(|c| c.get("{user:42}:name"))?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`] for `max_lag_bytes`, which a cluster pool does not check yet,
    /// or a `max_size` out of range.
    pub fn replica_pool(&self, options: ReplicaOptions) -> Result<ClusterPool, Error> {
        if options.max_lag.is_some() {
            return Err(invalid(
                "max_lag_bytes",
                "a cluster's replica pool does not measure replication lag yet: leave it unset",
            ));
        }
        if let Some(size) = options.max_size.filter(|&s| s == 0 || s > MAX_POOL_SIZE) {
            return Err(invalid(
                "ReplicaOptions::max_size",
                format!("{size} is out of range: give 1 to {MAX_POOL_SIZE}"),
            ));
        }
        Ok(ClusterPool {
            inner: Arc::clone(&self.inner),
            reads: Some(Arc::new(Reads {
                options,
                next: AtomicUsize::new(0),
            })),
        })
    }

    /// The replica of `slot`'s shard a read goes to now, if the map lists one.
    fn replica_for(&self, map: &SlotMap, slot: u16) -> Option<NodeAddr> {
        let reads = self.reads.as_ref()?;
        let replicas = &map.shard(slot)?.replicas;
        if replicas.is_empty() {
            return None;
        }
        let turn = match reads.options.selection {
            ReplicaSelection::Random => std::hash::BuildHasher::hash_one(
                &std::collections::hash_map::RandomState::new(),
                0u8,
            ) as usize,
            _ => reads.next.fetch_add(1, Ordering::Relaxed),
        };
        replicas.get(turn % replicas.len()).cloned()
    }

    /// The pool of connections to `addr` as a replica (`READONLY`) or as the primary, made on
    /// first use.
    fn node(&self, addr: &NodeAddr, replica: bool) -> Result<SentinelPool, Error> {
        let key = (addr.clone(), replica);
        if let Some(pool) = self.inner.nodes.read().get(&key) {
            return Ok(pool.clone());
        }
        let mut nodes = self.inner.nodes.write();
        if let Some(pool) = nodes.get(&key) {
            return Ok(pool.clone());
        }
        let mut config = self.inner.config.clone();
        config.service = addr.to_string();
        let role = if replica {
            if let Some(size) = self.reads.as_ref().and_then(|r| r.options.max_size) {
                config.max_size = size;
            }
            // A replica confirms nothing: durable mode is the primaries'.
            config.data.durability = None;
            NodeRole::Replica
        } else {
            NodeRole::Master
        };
        let pool = SentinelPool::for_node(config, addr.clone(), role, false)?;
        nodes.insert(key, pool.clone());
        Ok(pool)
    }

    /// What a `MOVED` said: `slot` is served by `addr` now. The slot is patched at once; the
    /// rest of the map is asked for by the next caller to check out (see
    /// [`refresh_if_old`](Self::refresh_if_old)), so that no request waits on a refresh
    /// while the cluster is changing hands.
    fn moved(&self, slot: u16, addr: &NodeAddr) {
        count(&self.inner.counters.moved);
        let map = self.map();
        if map.primary(slot) != Some(addr) {
            self.install(Arc::new(map.moved(slot, addr)));
        }
        self.inner.stale.store(true, Ordering::Relaxed);
    }

    /// Asks the cluster for its slot map and swaps it in, unless a refresh ended less than
    /// `unless_within` ago. One refresh at a time: a caller that finds one running waits for
    /// it and keeps its answer when `wait`, and goes on without otherwise. A node that just
    /// failed (`avoid`) is asked last.
    fn refresh(&self, unless_within: Option<Duration>, wait: bool, avoid: Option<&NodeAddr>) {
        let asked_at = Instant::now();
        let mut last = if wait {
            self.inner.refresh.lock()
        } else {
            match self.inner.refresh.try_lock() {
                Some(last) => last,
                None => return,
            }
        };
        // Another caller refreshed while this one waited, or lately enough.
        if last.at >= asked_at || unless_within.is_some_and(|within| last.at.elapsed() < within) {
            return;
        }
        let mut candidates = self.primaries();
        candidates.extend(self.inner.seeds.iter().cloned());
        if let Some(avoid) = avoid {
            // Stable: the others keep their order.
            candidates.sort_by_key(|c| c == avoid);
        }
        self.inner.stale.store(false, Ordering::Relaxed);
        count(&self.inner.counters.refreshes);
        match ask_map(&candidates, &self.inner.config, false) {
            Ok((map, _)) => {
                let map = Arc::new(map);
                self.install(Arc::clone(&map));
                if *map != *last.map {
                    self.announce(&last.map, &map);
                    last.map = map;
                }
            }
            Err(err) => {
                count(&self.inner.counters.refresh_failures);
                log::warn!("could not refresh the cluster's slot map: {err}");
            }
        }
        last.at = Instant::now();
    }

    /// Tells that a refresh found `now` where the one before found `before`.
    fn announce(&self, before: &SlotMap, now: &SlotMap) {
        let moved_slots = before.moved_slots(now);
        let primaries: Vec<NodeAddr> = now.shards().iter().map(|s| s.primary.clone()).collect();
        let generation = self.inner.shared.generation.current();
        log::info!("cluster slot map changed: {moved_slots} slots moved; primaries {primaries:?}");
        self.inner.shared.events.send(crate::Event::SlotMapChanged {
            generation,
            moved_slots,
            primaries,
            at: std::time::SystemTime::now(),
        });
    }

    /// Refreshes the map if it is older than [`REFRESH_EVERY`], or a `MOVED` found it
    /// wrong more than [`REFRESH_PAUSE`] after the last refresh, without waiting for a
    /// refresh another caller runs.
    fn refresh_if_old(&self) {
        let stale = self.inner.stale.load(Ordering::Relaxed);
        let due = if stale { REFRESH_PAUSE } else { REFRESH_EVERY };
        let old = self
            .inner
            .refresh
            .try_lock()
            .is_some_and(|last| last.at.elapsed() >= due);
        if old {
            self.refresh(Some(due), false, None);
        }
    }
}

impl crate::retry::Checkouts for ClusterPool {
    type Target = ClusterConnection;
    type Conn = Box<ClusterConnection>;

    fn shared(&self) -> &crate::shared::Shared {
        &self.inner.shared
    }

    fn checkout(&self, wait: Duration) -> Result<Box<ClusterConnection>, Error> {
        // Each node's checkout is bounded by `wait` when a request needs it.
        Ok(Box::new(ClusterConnection::new(self.clone(), wait)))
    }
}

impl Builder<Cluster> {
    /// Validates every option, asks a seed node for the slot map and the commands it knows,
    /// and makes the pool. Connections to the primaries are made when requests first need
    /// them.
    ///
    /// # Errors
    ///
    /// A configuration error; [`Error::Connect`] when no seed answered, with the last
    /// failure; [`Error::InvalidConfig`] when a seed is not a cluster node.
    pub fn build(self) -> Result<ClusterPool, Error> {
        if let Some(seed) = self.sentinels.iter().find(|s| !names_port(s.expose())) {
            return Err(invalid(
                "seeds",
                format!(
                    "{seed:?} has no port: give each cluster node as host:port (there is no \
                     default port for a cluster node)"
                ),
            ));
        }
        self.durable_without_sentinels()?;
        if self.db != 0 {
            return Err(invalid(
                "db",
                "a cluster has one database, 0: leave `db` unset (keys are spread by slot)",
            ));
        }
        let mut config = self.data_credentials_from_addresses()?.check()?;
        // A cluster has no sentinels to watch, no failover to fence: the map follows it.
        config.watcher = false;
        config.fence = None;
        config.discover_sentinels = false;
        if matches!(config.validation, Validation::Adaptive { .. }) {
            config.validation = Validation::Off;
        }
        let seeds = std::mem::take(&mut config.sentinels);
        let (map, found) = ask_map(&seeds, &config, true)?;
        let Found {
            keys,
            commands,
            node_timeout,
        } = found.unwrap_or_default();
        let keys = keys.ok_or_else(|| {
            invalid(
                "seeds",
                "no seed answered COMMAND, which the pool needs to find each command's keys: \
                 allow the ACL user `COMMAND`",
            )
        })?;
        log::info!(
            "cluster pool started: {} primaries, {} of 16384 slots served",
            map.shards().len(),
            map.covered()
        );
        let map = Arc::new(map);
        let shared = crate::shared::Shared::new(config.clone());
        let counters = stats::Counters::default();
        count(&counters.refreshes);
        if let Some(timeout) = node_timeout {
            shared.watcher.learn_down_after(timeout);
        }
        Ok(ClusterPool {
            reads: None,
            inner: Arc::new(Inner {
                shared,
                config,
                seeds,
                map: RwLock::new(Arc::clone(&map)),
                refresh: Mutex::new(Refreshed {
                    at: Instant::now(),
                    map: Arc::clone(&map),
                }),
                nodes: RwLock::default(),
                stale: AtomicBool::new(false),
                counters,
                keys,
                commands,
            }),
        })
    }
}

/// The last refresh: when it ended, and the map it learned (which `MOVED` patches do not
/// change), what the next refresh's event is told against.
#[derive(Debug)]
struct Refreshed {
    at: Instant,
    map: Arc<SlotMap>,
}

/// What the pool asks a seed once, at build, beside the slot map.
#[derive(Debug, Default)]
struct Found {
    /// Where each command's keys are (`COMMAND`).
    keys: Option<KeyTable>,
    /// Which commands write, from the same reply.
    commands: Option<CommandTable>,
    /// How long the cluster takes to find a primary failed (`cluster-node-timeout`), if the
    /// user may ask `CONFIG GET`.
    node_timeout: Option<Duration>,
}

/// Asks each of `candidates` in turn for the slot map (and, with `at_build`, for what
/// [`Found`] holds), until one answers.
fn ask_map(
    candidates: &[NodeAddr],
    config: &Config,
    at_build: bool,
) -> Result<(SlotMap, Option<Found>), Error> {
    let mut last = None;
    let mut tried = Vec::new();
    for addr in candidates {
        if tried.contains(&addr) {
            continue;
        }
        tried.push(addr);
        match ask_one(addr, config, at_build) {
            Ok(answer) => return Ok(answer),
            Err(err @ Error::InvalidConfig { .. }) => return Err(err),
            Err(err) => {
                log::debug!("cluster node {addr} did not give its slot map: {err}");
                last = Some(err);
            }
        }
    }
    Err(last.unwrap_or(Error::NoSentinels))
}

fn ask_one(
    addr: &NodeAddr,
    config: &Config,
    at_build: bool,
) -> Result<(SlotMap, Option<Found>), Error> {
    let failed = |err| crate::manager::data_node_error(addr, err, "CLUSTER SHARDS");
    let mut conn = node::connect(addr, &config.data).map_err(failed)?;
    let reading = Reading {
        asked: addr,
        tls: tls(config),
        addresses: &config.address_map,
    };
    let shards = conn.req_command(redis::cmd("CLUSTER").arg("SHARDS"));
    let map = match shards {
        Ok(reply @ Value::Array(_) | reply @ Value::Map(_)) => {
            SlotMap::from_shards(&reply, reading)
        }
        Ok(Value::ServerError(err)) if err.details().is_some_and(|d| d.contains("disabled")) => {
            return Err(invalid(
                "seeds",
                format!(
                    "{addr} is not a cluster node ({}): give the nodes of a Redis Cluster, or \
                     use SentinelPool for a Sentinel deployment",
                    err.details().unwrap_or_default()
                ),
            ));
        }
        // Before 7.0: `CLUSTER SHARDS` is unknown.
        Ok(Value::ServerError(_)) => {
            let slots = conn
                .req_command(redis::cmd("CLUSTER").arg("SLOTS"))
                .map_err(failed)?;
            SlotMap::from_slots(&slots, reading)
        }
        Ok(_) => None,
        Err(err) => return Err(failed(err)),
    };
    let map = map.ok_or_else(|| Error::Connect {
        address: addr.to_string(),
        source: redis::RedisError::from((
            redis::ErrorKind::Parse,
            "the node's slot map could not be read",
        )),
    })?;
    if !at_build {
        return Ok((map, None));
    }
    let (keys, commands) = match conn.req_command(&redis::cmd("COMMAND")) {
        Ok(reply) => (KeyTable::parse(&reply), CommandTable::parse(&reply)),
        Err(err) => return Err(failed(err)),
    };
    // `CONFIG GET` may be refused to the ACL user: the default retry deadline then stands.
    let node_timeout = redis::cmd("CONFIG")
        .arg("GET")
        .arg("cluster-node-timeout")
        .query::<HashMap<String, u64>>(&mut conn)
        .ok()
        .and_then(|found| found.get("cluster-node-timeout").copied())
        .map(Duration::from_millis);
    Ok((
        map,
        Some(Found {
            keys,
            commands,
            node_timeout,
        }),
    ))
}

fn tls(config: &Config) -> bool {
    #[cfg(feature = "tls")]
    return config.data.tls.is_some();
    #[cfg(not(feature = "tls"))]
    {
        let _ = config;
        false
    }
}
