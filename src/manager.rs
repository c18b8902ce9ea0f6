//! The r2d2 connection manager: opens connections to the current master and decides whether a
//! pooled one may be handed out.

use std::{
    collections::BTreeSet,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering},
    },
    time::{Duration, Instant, SystemTime},
};

use parking_lot::{Condvar, Mutex};
use redis::RedisError;

use crate::{
    Connection, Error, Event, FailoverSource, NodeAddr, Validation,
    config::Config,
    event::EventSink,
    generation::Generation,
    node::{self, NodeRole, RoleProbe},
    sentinel::Sentinels,
};

/// How often a connect that cannot reach the master tries again, unless a failover announcement
/// wakes it sooner.
const CONNECT_RETRY_INTERVAL: Duration = Duration::from_millis(100);

/// How many times one `connect` looks the master up again after reaching a node that is not a
/// master, before it gives up and lets the pool retry later.
const ROLE_MISMATCH_RETRIES: usize = 3;

/// The [`r2d2::ManageConnection`] behind a [`SentinelPool`](crate::SentinelPool): every new
/// connection goes to the master the sentinels name now, and is checked with `ROLE` before it
/// is pooled.
///
/// You rarely touch it directly; it appears in the type
/// [`PooledConnection`](crate::PooledConnection).
#[derive(Debug)]
pub struct SentinelManager {
    pub(crate) shared: Arc<Shared>,
}

/// What the pool's parts share.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) config: Config,
    pub(crate) generation: Arc<Generation>,
    /// The sentinels and the master found for one generation. The lock exists because a
    /// sentinel lookup needs `&mut` (cached sentinel connections) while r2d2 gives `&self`. It
    /// is held for a cache hit (no I/O), or for one lookup on a cache miss, which every
    /// connect of the same generation then shares: rebuilding 32 connections after a failover
    /// asks the sentinels once, not 32 times. Checkouts never take it.
    resolver: Mutex<Resolver>,
    /// The last failure to open a connection; cleared by a success. Lets a checkout that
    /// times out say why. Taken on the connect path and by a checkout that timed out.
    last_connect_error: Mutex<Option<Error>>,
    pub(crate) events: EventSink,
    failovers: AtomicU64,
    /// When the last failover was applied; written by the watcher, read by `stats`.
    last_failover: Mutex<Option<SystemTime>>,
    /// The sentinels the watcher is subscribed to now; written by the watcher, read by
    /// `stats`.
    pub(crate) subscribed: Mutex<BTreeSet<NodeAddr>>,
    /// How many of them: what fast validation reads on every checkout, without a lock.
    pub(crate) live_subscriptions: AtomicUsize,
    /// Notified at every new generation and when the pool closes, so that a retry backoff or a
    /// connect waiting for a failover ends the moment one is announced. The mutex only pairs
    /// with the condvar; it guards nothing.
    generation_changed: (Mutex<()>, Condvar),
    /// Set when the last handle to the pool is dropped: waits end at once.
    closed: AtomicBool,
    /// Set once a data node refused `ROLE` to our ACL user (`NOPERM`): roles are asked with
    /// `HELLO` from then on.
    role_via_hello: AtomicBool,
}

#[derive(Debug)]
struct Resolver {
    sentinels: Sentinels,
    master: Option<(u64, NodeAddr)>,
}

impl Resolver {
    /// The master recorded for `generation`, if the record is of that generation.
    fn cached(&self, generation: u64) -> Option<&NodeAddr> {
        match &self.master {
            Some((g, addr)) if *g == generation => Some(addr),
            _ => None,
        }
    }
}

impl Shared {
    pub(crate) fn new(config: Config) -> Self {
        let sentinels = Sentinels::new(config.sentinels.clone(), config.sentinel.clone());
        Shared {
            config,
            generation: Arc::new(Generation::default()),
            resolver: Mutex::new(Resolver {
                sentinels,
                master: None,
            }),
            last_connect_error: Mutex::new(None),
            events: EventSink::new(),
            failovers: AtomicU64::new(0),
            last_failover: Mutex::new(None),
            subscribed: Mutex::new(BTreeSet::new()),
            live_subscriptions: AtomicUsize::new(0),
            generation_changed: (Mutex::new(()), Condvar::new()),
            closed: AtomicBool::new(false),
            role_via_hello: AtomicBool::new(false),
        }
    }

    /// Asks a data node its role (after a `PING` in the same round trip when `ping`): with
    /// `ROLE`, or with `HELLO` once our user turned out not to be allowed `ROLE`.
    pub(crate) fn role_of(&self, conn: &mut Connection, ping: bool) -> Result<NodeRole, Error> {
        let probe = if self.role_via_hello.load(Ordering::Relaxed) {
            RoleProbe::Hello
        } else {
            RoleProbe::Role
        };
        match conn.probe_role(probe, ping) {
            Err(err) if probe == RoleProbe::Role && node::is_no_permission(&err) => {
                log::info!(
                    "the ACL user may not run ROLE on {} ({err}); asking roles with HELLO",
                    conn.addr()
                );
                self.role_via_hello.store(true, Ordering::Relaxed);
                conn.probe_role(RoleProbe::Hello, ping)
                    .map_err(|err| data_node_error(conn.addr(), err, RoleProbe::Hello.command()))
            }
            result => result.map_err(|err| data_node_error(conn.addr(), err, probe.command())),
        }
    }

    /// The current generation and its master: the cached answer, or one sentinel lookup.
    ///
    /// The generation is read under the lock, before the lookup: a connection is stamped with
    /// the generation its master was resolved in, never a later one. The watcher starts a
    /// generation and records its master under the same lock, so a lookup that raced with it
    /// cannot overwrite the new master with a stale answer.
    pub(crate) fn master(&self) -> Result<(u64, NodeAddr), Error> {
        let mut resolver = self.resolver.lock();
        let generation = self.generation.current();
        if let Some(addr) = resolver.cached(generation) {
            return Ok((generation, addr.clone()));
        }
        let addr = resolver.sentinels.master(&self.config.service)?;
        resolver.master = Some((generation, addr.clone()));
        Ok((generation, addr))
    }

    /// Applies a failover the watcher learned of, from `old` to `new`, and announces it.
    ///
    /// Starts a generation whose master is `new` (no sentinel lookup needed), unless the pool
    /// already found `new` by itself in the current generation: after a crash, failing
    /// connects ask the sentinels and may see the promoted node before the watcher hears the
    /// announcement. Whether this is a new failover at all is the watcher's call (every
    /// sentinel announces the same one).
    pub(crate) fn switch_master(
        &self,
        old: Option<NodeAddr>,
        new: &NodeAddr,
        sentinel: &NodeAddr,
        via: FailoverSource,
    ) {
        let generation = {
            let mut resolver = self.resolver.lock();
            let current = self.generation.current();
            if resolver.cached(current) == Some(new) {
                current
            } else {
                let generation = self.generation.bump();
                resolver.master = Some((generation, new.clone()));
                generation
            }
        };
        self.notify_generation();
        self.failovers.fetch_add(1, Ordering::Relaxed);
        *self.last_failover.lock() = Some(SystemTime::now());
        log::info!(
            "failover of {:?}: master {} -> {new} (generation {generation}, from sentinel {sentinel}, {via:?})",
            self.config.service,
            old.as_ref()
                .map_or_else(|| "unknown".to_owned(), |o| o.to_string()),
        );
        self.events.send(Event::Failover {
            old,
            new: new.clone(),
            generation,
            sentinel: sentinel.clone(),
            via,
            at: SystemTime::now(),
        });
    }

    /// The sentinels lookups ask, in the order they ask them.
    pub(crate) fn sentinels(&self) -> Vec<NodeAddr> {
        self.resolver.lock().sentinels.addrs()
    }

    /// Adds a sentinel for lookups; false if it was known.
    pub(crate) fn add_sentinel(&self, addr: NodeAddr) -> bool {
        self.resolver.lock().sentinels.add(addr)
    }

    /// Forgets a sentinel.
    pub(crate) fn remove_sentinel(&self, addr: &NodeAddr) {
        self.resolver.lock().sentinels.remove(addr);
    }

    /// Failovers applied so far, and when the last one was.
    pub(crate) fn failovers(&self) -> (u64, Option<SystemTime>) {
        (
            self.failovers.load(Ordering::Relaxed),
            *self.last_failover.lock(),
        )
    }

    /// The master address cached for the current generation, if any; no I/O.
    pub(crate) fn cached_master(&self) -> Option<NodeAddr> {
        let generation = self.generation.current();
        self.resolver.lock().cached(generation).cloned()
    }

    /// Forgets the cached master of `generation` so that the next connect asks the sentinels:
    /// the node could not be reached, perhaps it died and a failover is on its way.
    fn forget_master(&self, generation: u64) {
        let mut resolver = self.resolver.lock();
        if resolver.cached(generation).is_some() {
            resolver.master = None;
        }
    }

    /// Opens a connection to the current master and checks its role.
    ///
    /// While the master cannot be reached (it crashed, hangs, or is being replaced), this tries
    /// again every [`CONNECT_RETRY_INTERVAL`], and at once when a new generation starts (the
    /// watcher announced the failover), for up to `connection_timeout`. Failing at once would
    /// put the connection into r2d2's retry backoff (up to half of `connection_timeout`), to be
    /// retried long after the new master is known.
    pub(crate) fn connect(&self) -> Result<Connection, Error> {
        let deadline = Instant::now() + self.config.connection_timeout;
        loop {
            let seen = self.generation.current();
            let result = self.connect_master();
            let transient = match &result {
                Ok(_) => {
                    *self.last_connect_error.lock() = None;
                    return result;
                }
                Err(err) => {
                    log::warn!(
                        "could not open a connection for {:?}: {err}",
                        self.config.service
                    );
                    *self.last_connect_error.lock() = Some(err.clone());
                    matches!(
                        err,
                        Error::Connect { .. } | Error::MasterDown { .. } | Error::WrongRole { .. }
                    )
                }
            };
            let left = deadline.saturating_duration_since(Instant::now());
            if !transient || left.is_zero() || self.closed.load(Ordering::Acquire) {
                return result;
            }
            self.wait_for_new_generation(seen, left.min(CONNECT_RETRY_INTERVAL));
        }
    }

    /// Waits until the generation is no longer `seen`, at most `timeout`; true if it changed.
    /// Returns false at once when the pool is closed.
    pub(crate) fn wait_for_new_generation(&self, seen: u64, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let (lock, changed) = &self.generation_changed;
        let mut guard = lock.lock();
        while self.generation.current() == seen && !self.closed.load(Ordering::Acquire) {
            if changed.wait_until(&mut guard, deadline).timed_out() {
                break;
            }
        }
        self.generation.current() != seen
    }

    fn notify_generation(&self) {
        // Taking the lock orders this after a waiter's check of the generation: no lost wakeup.
        let _guard = self.generation_changed.0.lock();
        self.generation_changed.1.notify_all();
    }

    /// Ends every wait: the pool is gone.
    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.notify_generation();
    }

    fn connect_master(&self) -> Result<Connection, Error> {
        let mut mismatch = None;
        for _ in 0..ROLE_MISMATCH_RETRIES {
            let (generation, addr) = self.master()?;
            let opened = node::connect(&addr, &self.config.data)
                // After the handshake, the connect sends only SELECT.
                .map_err(|err| data_node_error(&addr, err, "SELECT"))
                .and_then(|conn| {
                    let mut conn = Connection::new(
                        conn,
                        addr.clone(),
                        generation,
                        Arc::clone(&self.generation),
                        &self.config.data,
                    );
                    let role = self.role_of(&mut conn, false)?;
                    Ok((conn, role))
                });
            match opened {
                Ok((conn, NodeRole::Master)) => {
                    log::debug!("connected to master {addr} (generation {generation})");
                    return Ok(conn);
                }
                Ok((_, role)) => {
                    let err = Error::WrongRole {
                        address: addr.to_string(),
                        expected: "master",
                        actual: role.name().to_owned(),
                    };
                    log::info!("{err}; looking the master up again");
                    self.invalidate_from(generation, "the named master is not a master");
                    mismatch = Some(err);
                }
                Err(err) => {
                    self.forget_master(generation);
                    return Err(err);
                }
            }
        }
        Err(mismatch.expect("the loop ran at least once"))
    }

    /// Starts a new generation if `seen` is still current, so that every connection born
    /// before it is dropped. Many witnesses of one failover bump once.
    pub(crate) fn invalidate_from(&self, seen: u64, why: &str) {
        if self.generation.bump_from(seen) {
            self.invalidated(seen + 1, why);
        }
    }

    /// Starts a new generation unconditionally; returns it.
    pub(crate) fn invalidate(&self, why: &str) -> u64 {
        let generation = self.generation.bump();
        self.invalidated(generation, why);
        generation
    }

    fn invalidated(&self, generation: u64, why: &str) {
        self.notify_generation();
        log::info!(
            "pool for {:?} invalidated: {why} (generation {generation})",
            self.config.service
        );
        self.events.send(Event::Invalidated {
            generation,
            reason: why.to_owned(),
        });
    }

    /// Why connections cannot be made, if the last attempt failed.
    pub(crate) fn last_connect_error(&self) -> Option<Error> {
        self.last_connect_error.lock().clone()
    }
}

/// The error for a failure on a data node: credentials, permissions, or reaching it.
fn data_node_error(addr: &NodeAddr, err: RedisError, command: &'static str) -> Error {
    if node::is_auth_error(&err) {
        Error::Auth {
            address: addr.to_string(),
            source: err,
        }
    } else if node::is_no_permission(&err) {
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

impl r2d2::ManageConnection for SentinelManager {
    type Connection = Connection;
    type Error = Error;

    fn connect(&self) -> Result<Connection, Error> {
        self.shared.connect()
    }

    /// Generation and state first (no round trip), then the configured validation.
    fn is_valid(&self, conn: &mut Connection) -> Result<(), Error> {
        let shared = &self.shared;
        if conn.generation() != shared.generation.current() || !conn.is_reusable() {
            return Err(Error::Redis(RedisError::from((
                redis::ErrorKind::Client,
                "connection is stale or in a bad state",
            ))));
        }
        let skip_round_trip = match shared.config.validation {
            Validation::Off => true,
            Validation::Fast { window } => {
                conn.answered_within(window)
                    && shared.live_subscriptions.load(Ordering::Acquire) > 0
            }
            Validation::PingRole => false,
        };
        if skip_round_trip {
            return Ok(());
        }
        match shared.role_of(conn, true)? {
            NodeRole::Master => Ok(()),
            role => {
                shared.invalidate_from(conn.generation(), "a pooled master is no longer master");
                Err(Error::WrongRole {
                    address: conn.addr().to_string(),
                    expected: "master",
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
        conn.generation() != self.shared.generation.current()
            || !conn.is_reusable()
            || std::thread::panicking()
    }
}
