//! The r2d2 connection manager: opens connections to the current master and decides whether a
//! pooled one may be handed out.

use std::{
    cell::Cell,
    sync::{Arc, atomic::AtomicUsize},
    time::{Duration, Instant},
};

use parking_lot::Mutex;
use redis::RedisError;

use crate::{
    Connection, Error, NodeAddr, ReplicaOptions, Validation, WatcherState,
    backoff::Backoff,
    config::Config,
    metrics::{PoolSeries, Timer},
    node::{self, NodeRole, RoleProbe},
    shared::{Shared, Suspicion},
    watcher::Watcher,
};

/// How often a connect that cannot reach the master tries again (with jitter), unless a
/// failover announcement wakes it sooner.
const CONNECT_RETRY_INTERVAL: Duration = Duration::from_millis(100);

thread_local! {
    /// Set on a pool's evicting thread: the connections it takes out are checked only for
    /// what is known without I/O, so that no node, however hung, can hold that thread, or the
    /// drop of the pool that joins it.
    static NO_ROUND_TRIP: Cell<bool> = const { Cell::new(false) };
}

/// Makes every validation on the calling thread skip its round trip (see [`NO_ROUND_TRIP`]).
pub(crate) fn skip_round_trips_on_this_thread() {
    NO_ROUND_TRIP.set(true);
}

/// Whether the calling thread is a pool's evicting thread, whose validations skip their
/// round trip.
#[cfg(feature = "metrics")]
pub(crate) fn round_trips_skipped_on_this_thread() -> bool {
    NO_ROUND_TRIP.get()
}

/// The [`r2d2::ManageConnection`] behind a [`SentinelPool`](crate::SentinelPool): every new
/// connection goes to the master the sentinels name now, and is checked with `ROLE` before it
/// is pooled. It owns the watcher, which stops when the manager is dropped.
///
/// Make one with [`Builder::build_manager`](crate::Builder::build_manager) to build a plain
/// `r2d2::Pool` the r2d2 way, with your own connection customizer, event handler or thread
/// pool, or to hand the pool to code generic over `r2d2::Pool<M>`. Cloning is cheap and gives
/// another handle on the same manager: keep one to read its events or stop its watcher; the
/// watcher stops when the last handle (the pool's included) is dropped.
///
/// ```no_run
/// use r2d2_redis_sentinel::{SentinelPool, r2d2, redis::Commands};
///
/// let manager = SentinelPool::builder(["redis://127.0.0.1:26379"], "mymaster").build_manager()?;
/// let events = manager.events();
/// let pool = r2d2::Pool::builder().max_size(16).build(manager)?;
/// let _: () = pool.get()?.set("k", "v")?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// In a plain pool every guarantee of the manager holds: a connection of an older generation
/// is never handed out (keep r2d2's `test_on_check_out`, on by default: the check runs there)
/// and refuses to send, a demoted master is refused at checkout, the watcher follows
/// failovers, every wait is bounded. What needs [`SentinelPool`](crate::SentinelPool):
/// `with_retry`, `stats`, closing idle connections the moment a generation ends (r2d2
/// otherwise discards them when a checkout reaches them, or at `idle_timeout`), and the r2d2
/// settings this crate picks (a thread pool whose pending jobs die with the pool; no error
/// log for each stale connection dropped after a failover).
#[derive(Debug, Clone)]
pub struct SentinelManager {
    pub(crate) shared: Arc<Shared>,
    watcher: Arc<WatcherOwner>,
    target: Destination,
    /// Why this manager's last connect failed, if it did: the master's and each replica
    /// pool's apart.
    last_error: Arc<Mutex<Option<Error>>>,
    /// Its series (feature `metrics`), labelled with the service and the role it serves.
    pub(crate) series: PoolSeries,
}

/// Which nodes a manager's connections go to.
#[derive(Debug, Clone)]
enum Destination {
    Master,
    /// Replicas, picked by `options.selection`; `next` is the round robin's turn.
    Replicas {
        options: ReplicaOptions,
        next: Arc<AtomicUsize>,
    },
    /// One node (a cluster's, or a standalone server), whatever the sentinels say (it has
    /// none), with the role it must have: a primary's pool's generation moves when the node
    /// answers that it is no longer one; a cluster replica's connections are `READONLY`.
    Node {
        addr: NodeAddr,
        role: NodeRole,
    },
}

/// The watcher, shared by every handle on a manager; stopped when the last one is dropped.
#[derive(Debug)]
struct WatcherOwner {
    shared: Arc<Shared>,
    /// The lock exists for `stop_watcher`, which takes the watcher out through `&self`.
    slot: Mutex<WatcherSlot>,
}

#[derive(Debug)]
enum WatcherSlot {
    Off,
    Running(Watcher),
    Stopped,
}

impl Drop for WatcherOwner {
    fn drop(&mut self) {
        if let WatcherSlot::Running(watcher) = self.slot.get_mut() {
            watcher.stop();
        }
        self.shared.generation.close();
    }
}

impl SentinelManager {
    /// A manager for `config`; no I/O, no thread yet.
    pub(crate) fn new(config: Config) -> Self {
        let shared = Arc::new(Shared::new(config));
        SentinelManager {
            series: PoolSeries::new(&shared.config.service, NodeRole::Master),
            watcher: Arc::new(WatcherOwner {
                shared: Arc::clone(&shared),
                slot: Mutex::new(WatcherSlot::Off),
            }),
            shared,
            target: Destination::Master,
            last_error: Arc::default(),
        }
    }

    /// A manager whose connections all go to the node `addr`, which must have the role
    /// `role` (a replica's connections are made `READONLY`, to serve a cluster's reads); no
    /// I/O, no thread.
    pub(crate) fn for_node(config: Config, addr: NodeAddr, role: NodeRole) -> Self {
        SentinelManager {
            series: PoolSeries::new(&config.service, role),
            target: Destination::Node { addr, role },
            ..SentinelManager::new(config)
        }
    }

    /// A manager whose connections go to replicas, sharing this one's lookups, generation and
    /// watcher.
    pub(crate) fn for_replicas(&self, options: ReplicaOptions) -> Self {
        SentinelManager {
            series: PoolSeries::new(&self.shared.config.service, NodeRole::Replica),
            shared: Arc::clone(&self.shared),
            watcher: Arc::clone(&self.watcher),
            target: Destination::Replicas {
                options,
                next: Arc::new(AtomicUsize::new(0)),
            },
            last_error: Arc::default(),
        }
    }

    /// Why the last connect failed, if it did.
    pub(crate) fn last_connect_error(&self) -> Option<Error> {
        self.last_error.lock().clone()
    }

    /// Records the outcome of a connect; returns whether the previous one failed too (a
    /// repeated failure is logged more quietly).
    fn connect_result(&self, result: Option<&Error>) -> bool {
        let mut last = self.last_error.lock();
        let failed_before = last.is_some();
        *last = result.cloned();
        failed_before
    }

    /// Starts the watcher, if the configuration wants one.
    pub(crate) fn start_watcher(&self) -> Result<(), Error> {
        if self.shared.config.watcher {
            *self.watcher.slot.lock() =
                WatcherSlot::Running(Watcher::start(Arc::clone(&self.shared))?);
        }
        Ok(())
    }

    /// Stops the watcher and waits for its threads (well under a second); the pool keeps
    /// working and recovers from failovers through errors and `ROLE` checks. Dropping the
    /// last handle on the manager does the same.
    pub fn stop_watcher(&self) {
        let mut slot = self.watcher.slot.lock();
        if let WatcherSlot::Running(watcher) = &mut *slot {
            watcher.stop();
            *slot = WatcherSlot::Stopped;
        }
    }

    /// What the watcher is doing now.
    pub fn watcher_state(&self) -> WatcherState {
        match &*self.watcher.slot.lock() {
            WatcherSlot::Off => WatcherState::Off,
            WatcherSlot::Stopped => WatcherState::Stopped,
            WatcherSlot::Running(_) => WatcherState::Running {
                subscribed: self.shared.watcher.subscribed(),
            },
        }
    }

    /// The manager's events; see [`SentinelPool::events`](crate::SentinelPool::events).
    pub fn events(&self) -> crate::Events {
        self.shared.events.receiver()
    }

    /// Ends every wait at once and stops the watcher: the pool that owns this manager is
    /// being dropped.
    pub(crate) fn shut_down(&self) {
        self.stop_watcher();
        self.shared.generation.close();
    }

    /// Opens a connection to the current master and checks its role.
    ///
    /// While the master cannot be reached (it crashed, hangs, is being replaced, or the
    /// sentinels still name a node that is now a replica), this tries again about every
    /// [`CONNECT_RETRY_INTERVAL`], and at once when a new generation starts (the watcher
    /// announced the failover), until `checkout_timeout` has passed: every attempt and
    /// every wait ends by then. Failing at once would put the connection into r2d2's retry
    /// backoff (up to half of `checkout_timeout`), to be retried long after the new master
    /// is known.
    pub(crate) fn connect(&self) -> Result<Connection, Error> {
        let shared = &self.shared;
        let deadline = Instant::now() + shared.config.checkout_timeout;
        let mut backoff = Backoff::new(CONNECT_RETRY_INTERVAL, CONNECT_RETRY_INTERVAL);
        let timer = Timer::start();
        let mut previous: Option<Error> = None;
        loop {
            let seen = shared.generation.current();
            let attempt = match &self.target {
                Destination::Master => self.connect_master(deadline),
                Destination::Replicas { options, next } => {
                    self.connect_replica(options, next, deadline)
                }
                Destination::Node { addr, role } => self
                    .open(addr, seen, *role, deadline)
                    .and_then(|conn| match role {
                        NodeRole::Replica => conn.read_only(),
                        _ => Ok(conn),
                    }),
            };
            let err = match attempt {
                Ok(conn) => {
                    self.connect_result(None);
                    self.series.created(timer);
                    return Ok(conn);
                }
                Err(err) => err,
            };
            // An attempt that the deadline cut short (it had what was left of the checkout's
            // time: a connect of a few milliseconds, say) tells only that; the attempt before
            // it told why no connection came, and is what the checkout reports.
            let err = match previous.take() {
                Some(before) if Instant::now() >= deadline && !err.is_config() => before,
                _ => err,
            };
            if self.connect_result(Some(&err)) {
                log::debug!("still no connection for {:?}: {err}", shared.config.service);
            } else {
                log::warn!(
                    "could not open a connection for {:?}: {err}",
                    shared.config.service
                );
            }
            // A cluster node that is no longer a primary stays so: the cluster's slot map,
            // not this node's pool, finds the new one.
            let transient = match err {
                Error::WrongRole { .. } => !matches!(self.target, Destination::Node { .. }),
                Error::Connect { .. }
                | Error::MasterDown { .. }
                | Error::NoHealthyReplica { .. } => true,
                _ => false,
            };
            let left = deadline.saturating_duration_since(Instant::now());
            if !transient || left.is_zero() || shared.generation.is_closed() {
                return Err(err);
            }
            shared
                .generation
                .wait_for_change(seen, left.min(backoff.next_wait()));
            if Instant::now() >= deadline {
                // An attempt with no time left would only report that; keep the real failure.
                return Err(err);
            }
            previous = Some(err);
        }
    }

    /// One attempt: the master (recorded, or one lookup), a connection to it, its role; all
    /// by `deadline`.
    pub(crate) fn connect_master(&self, deadline: Instant) -> Result<Connection, Error> {
        let shared = &self.shared;
        let (generation, addr) = shared.master(deadline)?;
        match self.open(&addr, generation, NodeRole::Master, deadline) {
            Ok(conn) => {
                log::debug!("connected to master {addr} (generation {generation})");
                Ok(conn)
            }
            Err(err @ Error::WrongRole { .. }) => {
                shared.suspect(generation, &addr, Suspicion::NotMaster);
                Err(err)
            }
            Err(err) => {
                if !err.is_config() {
                    shared.suspect(generation, &addr, Suspicion::Unreachable);
                }
                Err(err)
            }
        }
    }

    /// Opens a connection to `addr` for `generation` and checks that the node has the role
    /// `expected`, by `deadline`.
    pub(crate) fn open(
        &self,
        addr: &NodeAddr,
        generation: u64,
        expected: NodeRole,
        deadline: Instant,
    ) -> Result<Connection, Error> {
        let shared = &self.shared;
        let mut settings = shared.config.data.clone();
        let left = deadline.saturating_duration_since(Instant::now());
        settings.connect_timeout = settings.connect_timeout.min(left);
        if settings.connect_timeout.is_zero() {
            return Err(data_node_error(addr, crate::outcome::timed_out(), "SELECT"));
        }
        // After the handshake, the connect sends only SELECT.
        let conn =
            node::connect(addr, &settings).map_err(|err| data_node_error(addr, err, "SELECT"))?;
        let mut conn = Connection::new(
            conn,
            addr.clone(),
            generation,
            expected,
            shared,
            &shared.config.data,
            self.series.operations(),
        );
        let left = deadline.saturating_duration_since(Instant::now());
        let role = self.role_of(&mut conn, false, left)?;
        conn.learn_commands(deadline)
            .map_err(|err| data_node_error(addr, err, "COMMAND"))?;
        match role {
            // Durable mode: a master that cannot confirm writes (or, with every replica, whose
            // replicas cannot be counted) is refused now, before any write reaches it.
            role if role == expected => match conn.check_durable_at_open() {
                Ok(()) => Ok(conn),
                Err(err) if err.code() == Some("DURABLE") => Err(Error::InvalidConfig {
                    option: "durability",
                    reason: err.detail().unwrap_or_default().to_owned(),
                }),
                Err(err) => Err(data_node_error(addr, err, "WAIT")),
            },
            role => Err(Error::WrongRole {
                address: addr.to_string(),
                expected: expected.name(),
                actual: role.name().to_owned(),
            }),
        }
    }

    /// Asks a data node its role (after a `PING` in the same round trip when `ping`), within
    /// `budget`: with `ROLE`, or with `HELLO` once our user turned out not to be allowed
    /// `ROLE`.
    fn role_of(
        &self,
        conn: &mut Connection,
        ping: bool,
        budget: Duration,
    ) -> Result<NodeRole, Error> {
        let probe = self.shared.nodes.role_probe(conn.addr());
        match conn.probe_role(probe, ping, budget) {
            Err(err) if probe == RoleProbe::Role && crate::outcome::is_no_permission(&err) => {
                log::info!(
                    "the ACL user may not run ROLE on {} ({err}); asking its role with HELLO",
                    conn.addr()
                );
                self.shared.nodes.use_hello_for_roles(conn.addr());
                conn.probe_role(RoleProbe::Hello, ping, budget)
                    .map_err(|err| data_node_error(conn.addr(), err, RoleProbe::Hello.command()))
            }
            result => result.map_err(|err| data_node_error(conn.addr(), err, probe.command())),
        }
    }
}

/// The error for a failure on a data node: credentials, permissions, or reaching it.
pub(crate) fn data_node_error(
    addr: &crate::NodeAddr,
    err: RedisError,
    command: &'static str,
) -> Error {
    if crate::outcome::is_auth_error(&err) {
        Error::Auth {
            address: addr.to_string(),
            source: err,
        }
    } else if crate::outcome::is_no_permission(&err) {
        Error::NoPermission {
            address: addr.to_string(),
            command,
            source: err,
        }
    } else {
        Error::Connect {
            address: addr.to_string(),
            source: err,
        }
    }
}

impl SentinelManager {
    /// Whether `conn` may not be handed out again, from what is known without I/O. A master
    /// connection: it was born in an older generation. A replica connection, which failovers
    /// of the master leave alone: it was picked from a replica set that has changed since, or
    /// made on a detour [`DETOUR_LIFETIME`](crate::replica::DETOUR_LIFETIME) ago (replaced, so that connections spread over the
    /// replicas there are now), or its node is the master now.
    fn outdated(&self, conn: &Connection) -> bool {
        match conn.serves() {
            NodeRole::Replica => {
                conn.replica_set() != self.shared.replica_set()
                    || conn.detour_older_than(crate::replica::DETOUR_LIFETIME)
                    || self.shared.cached_master().as_ref() == Some(conn.addr())
            }
            _ => conn.generation() != self.shared.generation.current(),
        }
    }
}

impl r2d2::ManageConnection for SentinelManager {
    type Connection = Connection;
    type Error = Error;

    fn connect(&self) -> Result<Connection, Error> {
        SentinelManager::connect(self)
    }

    /// Generation and state first (no round trip), then the configured validation: for an
    /// adaptive pool, no round trip for a master connection that answered within the window
    /// while the watcher is live (see [`Validation::Adaptive`]).
    fn is_valid(&self, conn: &mut Connection) -> Result<(), Error> {
        let shared = &self.shared;
        if self.outdated(conn) || !conn.is_reusable() {
            return Err(Error::Redis(RedisError::from((
                redis::ErrorKind::Client,
                "connection is stale or in a bad state",
            ))));
        }
        conn.mark_handed_out();
        let skip_round_trip = NO_ROUND_TRIP.get()
            || shared.config.validation == Validation::Off
            || match shared.adaptive_window() {
                // Replicas keep their check: nothing Sentinel announces says that one was
                // promoted by hand.
                Some(window) if conn.serves() == NodeRole::Master => {
                    let now = Instant::now();
                    conn.answered_within(now, window) && shared.liveness.trusted(now)
                }
                _ => false,
            };
        if skip_round_trip {
            return Ok(());
        }
        match self.role_of(conn, true, shared.config.data.read_timeout)? {
            role if role == conn.serves() => Ok(()),
            role => {
                if conn.serves() == NodeRole::Master {
                    shared
                        .invalidate_from(conn.generation(), "a pooled master is no longer master");
                }
                Err(Error::WrongRole {
                    address: conn.addr().to_string(),
                    expected: conn.serves().name(),
                    actual: role.name().to_owned(),
                })
            }
        }
    }

    /// No I/O: the generation, what the connection has seen, and whether its thread panics
    /// (a panic may have interrupted it between a request and its reply).
    fn has_broken(&self, conn: &mut Connection) -> bool {
        if let Some(err) = conn.failover_error() {
            self.shared.invalidate_from(
                conn.generation(),
                &format!(
                    "the node answered {}: {err}",
                    err.code().unwrap_or("a failover error")
                ),
            );
        }
        if let Some(why) = conn.retire() {
            log::debug!("connection to {} retired: {why:?}", conn.addr());
            return true;
        }
        self.outdated(conn) || std::thread::panicking()
    }
}

/// Making the manager alone, for a plain `r2d2::Pool`.
impl crate::Builder {
    /// Validates every option and makes the connection manager alone, with its watcher
    /// running, for a plain `r2d2::Pool` built the r2d2 way (your connection customizer, event
    /// handler, thread pool); see [`SentinelManager`](crate::SentinelManager) for what holds
    /// there and what needs [`SentinelPool`](crate::SentinelPool). No I/O until the pool connects.
    ///
    /// # Errors
    ///
    /// A configuration error; [`Error::ThreadSpawn`].
    pub fn build_manager(self) -> Result<SentinelManager, Error> {
        let replicas = self.replicas;
        let manager = SentinelManager::new(self.check()?);
        manager.start_watcher()?;
        Ok(match replicas {
            Some(options) => manager.for_replicas(options),
            None => manager,
        })
    }
}
