//! [`SentinelPool`]: the handle users hold. How it is started and stopped is in [`start`].

mod start;

use std::{
    sync::{Arc, atomic::AtomicBool},
    thread,
    time::{Duration, Instant},
};

use redis::RedisResult;

use crate::{
    Builder, Connection, Error, Events, NodeAddr, ReplicaOptions, Stats,
    config::{LONGEST, MAX_POOL_SIZE, invalid},
    manager::SentinelManager,
    metrics::Tally,
    retry,
    shared::Shared,
};

/// How long a checkout waits on r2d2 at a time before looking at what the last connect met:
/// how long a configuration error takes to end a checkout.
const CHECKOUT_SLICE: Duration = Duration::from_millis(50);

/// A connection checked out of a [`SentinelPool`]; derefs to [`Connection`] and goes back to
/// the pool when dropped.
pub type PooledConnection = r2d2::PooledConnection<SentinelManager>;

/// A pool of connections to the current master of a Sentinel-managed Redis service.
///
/// Cloning is cheap and gives another handle to the same pool. Dropping the last handle
/// does no I/O and returns within about a second whatever the nodes do: it stops the
/// evicting thread (one 200 ms tick at most) and, with the last pool of the manager, the
/// watcher (well under a second); connects still running end on r2d2's threads within
/// `checkout_timeout`, without holding the drop.
///
/// ```no_run
/// use r2d2_redis_sentinel::{SentinelPool, redis::Commands};
///
/// let pool = SentinelPool::builder(["redis://127.0.0.1:26379"], "mymaster").build()?;
/// let mut conn = pool.get()?;
/// let _: () = conn.set("greeting", "hello")?;
/// let value: String = pool.with_retry(|c| c.get("greeting"))?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct SentinelPool {
    pool: r2d2::Pool<SentinelManager>,
    guard: Arc<Guard>,
}

/// Shared by every clone of a pool. Dropping the last one stops its evicting thread and
/// joins it; once no pool of the manager's (its replica pools included) is left, the owner
/// stops the watcher and ends every wait for a failover at once (without waiting for r2d2's
/// last jobs to release the manager).
#[derive(Debug)]
struct Guard {
    /// This pool's manager (to the master, or to replicas).
    manager: SentinelManager,
    /// `None` only while dropping.
    owner: Option<Arc<Owner>>,
    stop_evicting: Arc<AtomicBool>,
    evict: Option<thread::JoinHandle<()>>,
    /// What this pool added to its connection gauges (feature `metrics`).
    tally: Tally,
}

/// The manager that owns the watcher, shared by a master pool and its replica pools.
#[derive(Debug)]
struct Owner(SentinelManager);

impl SentinelPool {
    /// Starts a builder for the service (master name) `service`, known to the sentinels at
    /// `sentinels` (`"redis://host:port"`, `"host:port"`, `"[::1]:26379"`, with
    /// `user:password@` if the sentinels need it; surrounding white space is ignored; one
    /// sentinel is enough, more is safer). The user info runs to the last `@`, so a password
    /// may hold `/`, `?`, `#` or `@` as it is; `%XX` escapes are decoded.
    pub fn builder<I, S>(sentinels: I, service: impl Into<String>) -> Builder
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        Builder::of(sentinels, service)
    }

    /// Starts a builder from one connection string, for programs configured from one
    /// environment variable; builder options still override what it says:
    ///
    /// ```text
    /// redis+sentinel://[user:password@]host:port[,host:port...]/service[/db][?sentinel_username=...&sentinel_password=...&role=master|replica]
    /// ```
    ///
    /// The user and password are the data nodes'; the sentinels' are query parameters.
    /// `role=replica` builds a pool of reads from the replicas ([`Builder::read_from_replicas`]).
    /// Reserved characters in a user, password or parameter are percent-encoded (`%2F` for
    /// `/`, `%3F` for `?`, `%23` for `#`, `%40` for `@`, `%26` for `&`): a string where one is
    /// not, and would be cut in the wrong place, is refused with an error that quotes none of
    /// it.
    ///
    /// ```no_run
    /// # use r2d2_redis_sentinel::SentinelPool;
    /// let url = std::env::var("REDIS_URL")?; // redis+sentinel://:pw@10.0.0.1:26379,10.0.0.2:26379/mymaster/0
    /// let pool = SentinelPool::from_url(&url)?.max_size(32).build()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`] (option `url` or `db`) when the string is not of that form.
    /// Sentinel addresses are checked by `build`.
    pub fn from_url(url: &str) -> Result<Builder, Error> {
        crate::config::url::parse(url)
    }

    /// Starts a builder from the environment, in the convention services and containers use:
    ///
    /// - `REDIS_SENTINEL_URL`: a connection string, as [`from_url`](Self::from_url) reads it;
    /// - or `SENTINELS`: comma-separated sentinel addresses (`redis://host:26379` or
    ///   `host:26379`), with `SERVICE`, the service's name (`mymaster` when unset);
    /// - and, with either, `ADDRESS_MAP`: comma-separated `announced=reachable` pairs of
    ///   `host:port`, for nodes announced at addresses the program cannot reach (NAT, Docker;
    ///   see [`Builder::address_map`]).
    ///
    /// Returns `Ok(None)` when neither `REDIS_SENTINEL_URL` nor `SENTINELS` is set, so that a
    /// program can fall back to something else (a local topology, a usage message).
    ///
    /// ```no_run
    /// # use r2d2_redis_sentinel::SentinelPool;
    /// let builder = SentinelPool::from_env()?
    ///     .ok_or("set REDIS_SENTINEL_URL, or SENTINELS and SERVICE")?;
    /// let pool = builder.max_size(32).build()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`] naming the variable (`ADDRESS_MAP`, `SERVICE`; `url` or `db`
    /// for the connection string) when a value cannot be read; one set to something that is
    /// not Unicode counts as unset. Sentinel addresses are checked by `build`.
    pub fn from_env() -> Result<Option<Builder>, Error> {
        crate::config::from_env(|name| std::env::var(name).ok())
    }

    /// A pool of reads from the master's replicas, sharing this pool's sentinel lookups and
    /// watcher. A failover of the master is no reason to refuse a read: its connections never
    /// answer `STALE`, and the fence does not hold them. Sentinel itself closes the client
    /// connections of every node it reconfigures (`CLIENT KILL TYPE normal`), so a read in
    /// flight then may meet a closed connection, which `with_retry` runs again (a request
    /// of reads alone applied nothing). New connections go to the replicas of the new master
    /// (the promoted one leaves the set at once, the old master joins it once Sentinel makes
    /// it a replica); [`invalidate`](Self::invalidate) replaces them all. Connections
    /// go to the replicas the sentinels list as healthy (not down or disconnected, linked to
    /// the master) whose `ROLE` says they are replicas linked to their master, picked by
    /// [`ReplicaOptions::selection`]; a replica that goes down is skipped from its next
    /// failed connect (the connection goes to another replica, and is replaced after 5 s so
    /// that the skipped one gets its share again once it answers), and comes back once the
    /// sentinels list it again. Every checkout asks `PING`+`ROLE` (replica), whatever the
    /// [`Validation`](crate::Validation): no announcement tells that a replica was promoted by
    /// hand. `with_retry` works on it; a
    /// write sent to it gets `READONLY`, which is returned at once, not retried as a failover.
    /// The watcher stops when the master pool and every replica pool are dropped.
    ///
    /// ```no_run
    /// use r2d2_redis_sentinel::{ReplicaOptions, SentinelPool, redis::Commands};
    ///
    /// let pool = SentinelPool::builder(["redis://127.0.0.1:26379"], "mymaster").build()?;
    /// let reads = pool.replica_pool(ReplicaOptions::default().fallback_to_master(true))?;
    /// let _: () = pool.with_retry(|c| c.set("k", "v"))?;
    /// let value: Option<String> = reads.with_retry(|c| c.get("k"))?; // may lag the master
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`] for a `max_size` of 0 or above 10,000; [`Error::ThreadSpawn`].
    /// No I/O: a checkout says when no replica can serve
    /// ([`Error::NoHealthyReplica`]).
    pub fn replica_pool(&self, options: ReplicaOptions) -> Result<SentinelPool, Error> {
        let max_size = options.max_size.unwrap_or(self.shared().config.max_size);
        if max_size == 0 || max_size > MAX_POOL_SIZE {
            return Err(invalid(
                "ReplicaOptions::max_size",
                format!("{max_size} is out of range: give 1 to {MAX_POOL_SIZE}"),
            ));
        }
        let owner = Arc::clone(self.guard.owner.as_ref().expect("set until dropped"));
        let manager = self.guard.manager.for_replicas(options);
        Self::pool_of(manager, owner, max_size)
    }

    /// Checks out a connection to the current master, waiting at most the pool's
    /// `checkout_timeout`.
    ///
    /// A connection opened before the last failover (or [`invalidate`](Self::invalidate)) is
    /// never returned. With the default [`Validation`](crate::Validation), a connection that
    /// answered within the last 500 ms is returned without a round trip while the watcher
    /// hears a majority of the sentinels; any other is asked `PING` and `ROLE` first, and
    /// not returned unless its node is still master. A connection that died within those
    /// 500 ms fails on first use: [`with_retry`](Self::with_retry) absorbs that, and the
    /// checkouts after it ask first.
    ///
    /// # Errors
    ///
    /// [`Error::PoolExhausted`] when every connection stayed in use;
    /// [`Error::CheckoutTimeout`] when no new connection could be made, with the last cause;
    /// the configuration error the last connect met ([`Error::Auth`], [`Error::NoPermission`],
    /// [`Error::UnknownService`], [`Error::SentinelAuth`]...) as soon as no connection comes
    /// (within 50 ms), without waiting out the timeout: waiting would not fix it.
    pub fn get(&self) -> Result<PooledConnection, Error> {
        self.get_timeout(self.shared().config.checkout_timeout)
    }

    /// Like [`get`](Self::get), waiting at most `timeout` (a timeout longer than a year waits a
    /// year).
    ///
    /// # Errors
    ///
    /// As [`get`](Self::get).
    pub fn get_timeout(&self, timeout: Duration) -> Result<PooledConnection, Error> {
        let checkout = self.guard.manager.series.checkout();
        let result = self.checkout_within(timeout);
        checkout.end(&result);
        result
    }

    /// A checkout, waiting at most `timeout`.
    fn checkout_within(&self, timeout: Duration) -> Result<PooledConnection, Error> {
        let shared = self.shared();
        let manager = &self.guard.manager;
        let timeout = timeout.min(LONGEST);
        let start = Instant::now();
        // r2d2 waits the whole timeout whatever its connects meet; waiting in slices lets a
        // configuration error (a wrong password...) end the checkout once no connection came
        // within a slice. Waiting would not fix it: connects go on in the background, and the
        // first that succeeds clears it.
        loop {
            let left = timeout.saturating_sub(start.elapsed());
            if let Ok(conn) = self.pool.get_timeout(left.min(CHECKOUT_SLICE)) {
                return Ok(conn);
            }
            if let Some(err) = manager.last_connect_error().filter(Error::is_config) {
                return Err(err);
            }
            if start.elapsed() >= timeout {
                break;
            }
        }
        let waited = start.elapsed();
        let max_size = shared.config.max_size;
        let state = self.pool.state();
        if state.connections >= max_size && state.idle_connections == 0 {
            return Err(Error::PoolExhausted { waited, max_size });
        }
        // Not every connection exists: the missing ones could not be opened in time, held by
        // a fence, or failing.
        let fenced = shared.fenced().map(|stalled| Error::FailoverInProgress {
            service: shared.config.service.clone(),
            stalled,
        });
        let cause = fenced
            .or_else(|| manager.last_connect_error())
            .unwrap_or_else(|| Error::Connect {
                address: self
                    .master()
                    .map_or_else(|| self.service().to_owned(), |m| m.to_string()),
                source: std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "a new connection was still being opened",
                )
                .into(),
            });
        Err(Error::CheckoutTimeout {
            waited,
            cause: Box::new(cause),
        })
    }

    /// Runs `op` on a pooled connection, retrying what surely did not run, so that a failover
    /// is invisible to the caller.
    ///
    /// Retried, with backoff, within the [`RetryPolicy`](crate::RetryPolicy): no connection could be made, or the
    /// server refused the command (`READONLY` from a demoted master, `MASTERDOWN`, `LOADING`,
    /// `TRYAGAIN`, `NOREPLICAS`, a transaction aborted because its commands were refused so).
    /// A failover error also invalidates the pool.
    ///
    /// Not retried: a connection that broke or timed out *after* the command was sent, since
    /// the command may have run (an `INCR` would count twice), nor an attempt in which an
    /// earlier command (or an earlier command of the same pipeline) was applied before a later
    /// one was refused (a read such as `GET`, `MULTI` and the commands it queues apply
    /// nothing; a script, a module's command or any command not known to only read counts as
    /// applied). Those return [`Error::MaybeApplied`]; use
    /// [`with_retry_idempotent`](Self::with_retry_idempotent) when running the operation twice
    /// is harmless. Other errors (`WRONGTYPE`, syntax, a reply that does not convert to the
    /// type asked for...) return at once as [`Error::Redis`].
    ///
    /// A closure that runs several commands keeps its connection for the whole attempt. If
    /// the pool moves to a new master meanwhile, the connection refuses the next command
    /// without sending it (a `STALE` error), so nothing reaches the old master; the attempt is
    /// then retried if nothing in it was applied yet, or the closure is idempotent.
    ///
    /// A pool that resumes at the promotion resumes where a master handed over by itself
    /// (Valkey 9's coordinated failover) before Sentinel closes every client of the new master,
    /// up to a second later, which cuts whatever request is in flight then. So from the
    /// handover until that happens (5 s at most, and within the deadline), each attempt waits
    /// before it starts; the pool's other callers go on at once. See
    /// [`FailoverSource::Handover`](crate::FailoverSource::Handover).
    ///
    /// ```no_run
    /// # use r2d2_redis_sentinel::{SentinelPool, redis::Commands};
    /// # let pool = SentinelPool::builder(["127.0.0.1:26379"], "mymaster").build()?;
    /// let visits: u64 = pool.with_retry(|c| c.incr("visits", 1))?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::RetriesExhausted`] with the attempts and the last cause; [`Error::MaybeApplied`];
    /// [`Error::Redis`] for a final error; a checkout's configuration error or
    /// [`Error::PoolExhausted`].
    pub fn with_retry<T>(
        &self,
        op: impl FnMut(&mut Connection) -> RedisResult<T>,
    ) -> Result<T, Error> {
        retry::run(self, false, op)
    }

    /// Like [`with_retry`](Self::with_retry), for an operation that is safe to run more than
    /// once (`GET`, `SET` of a fixed value, `DEL`, `SET ... NX` of a unique key...): a
    /// connection that broke after the command was sent is retried too.
    ///
    /// Not for an operation whose second run changes something the first did not: `INCR`,
    /// `LPUSH`, and above all a pop or a move (`BLMOVE`, `LPOP`, `BLPOP`), whose first run may
    /// have taken an element that a second would not give back, but take another. For those,
    /// use [`with_retry`](Self::with_retry), and on [`Error::MaybeApplied`] look at the
    /// destination (the processing list a `BLMOVE` moves to) before going on; the README's
    /// worker recipe shows the pattern.
    ///
    /// ```no_run
    /// # use r2d2_redis_sentinel::{SentinelPool, redis::Commands};
    /// # let pool = SentinelPool::builder(["127.0.0.1:26379"], "mymaster").build()?;
    /// let _: () = pool.with_retry_idempotent(|c| c.set("config:mode", "active"))?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As [`with_retry`](Self::with_retry), without [`Error::MaybeApplied`].
    pub fn with_retry_idempotent<T>(
        &self,
        op: impl FnMut(&mut Connection) -> RedisResult<T>,
    ) -> Result<T, Error> {
        retry::run(self, true, op)
    }

    /// A pub/sub [`Subscriber`](crate::Subscriber) on the master, on a thread of its own,
    /// that subscribes again on the new master after a failover. Pooled connections are no
    /// place for a subscription: one that subscribed is closed when it returns.
    ///
    /// # Errors
    ///
    /// [`Error::ThreadSpawn`]. No I/O: the subscriber connects on its thread.
    pub fn subscriber(&self) -> Result<crate::Subscriber, Error> {
        crate::Subscriber::start(Arc::clone(&self.guard.manager.shared))
    }

    /// Invalidates every pooled connection at once: idle ones are never handed out again,
    /// checked-out ones are dropped when returned (a master connection refuses to send before
    /// that, with `STALE`), and the next connection asks the sentinels where the master is.
    /// Returns the new generation. Called on a replica pool, or on its master pool, it
    /// invalidates both; the failovers the pool follows by itself leave replica connections
    /// alone.
    ///
    /// The pool does this itself on evidence of a failover (`READONLY`, a node that is no
    /// longer master); call it when you learn of one some other way.
    pub fn invalidate(&self) -> u64 {
        // Replica connections outlive failovers, not this.
        self.shared().replicas_changed();
        self.shared().invalidate("asked by the caller")
    }

    /// The current generation: it starts at 0 and grows by one at each invalidation.
    pub fn generation(&self) -> u64 {
        self.shared().generation.current()
    }

    /// The master the pool connects to in the current generation, if it has looked it up
    /// since the last invalidation. No I/O.
    pub fn master(&self) -> Option<NodeAddr> {
        self.shared().cached_master()
    }

    /// The pool's events: failovers, invalidations, the watcher's connections, changes to the
    /// sentinel list.
    ///
    /// The channel is bounded (1024 events) and never blocks the pool: when nobody reads it,
    /// the oldest events are dropped and counted in [`Stats::events_dropped`]. Every call returns
    /// a handle on the same queue, so each event goes to one receiver.
    ///
    /// ```no_run
    /// # use r2d2_redis_sentinel::{SentinelPool, Event};
    /// # let pool = SentinelPool::builder(["127.0.0.1:26379"], "mymaster").build()?;
    /// for event in pool.events().iter() {
    ///     if let Event::Failover { old, new, .. } = event {
    ///         println!("master moved from {old:?} to {new}");
    ///     }
    /// }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn events(&self) -> Events {
        self.shared().events.receiver()
    }

    /// A snapshot of the pool: generation, master, failovers seen, watcher state, sentinels,
    /// r2d2's connection counts.
    pub fn stats(&self) -> Stats {
        let (failovers, last_failover) = self.shared().watcher.failovers();
        let (fences_raised, fences_resumed, fences_released) = self.shared().watcher.fence_counts();
        let state = self.pool.state();
        let watcher = self.guard.manager.watcher_state();
        Stats {
            generation: self.shared().generation.current(),
            master: self.shared().cached_master(),
            failovers,
            fenced: self.shared().fenced().is_some(),
            fences_raised,
            fences_resumed,
            fences_released,
            last_failover,
            watcher,
            checkout: self.shared().checkout_mode(),
            sentinels: self.shared().lookups.sentinels(),
            events_dropped: self.shared().events.dropped(),
            connections: state.connections,
            idle_connections: state.idle_connections,
            down_after: self.shared().watcher.down_after(),
            retry_deadline: retry::policy(self.shared()).deadline_value(),
            retries: self.shared().retries.snapshot(),
        }
    }

    /// Stops the watcher and waits for its threads (well under a second); the pool keeps
    /// working and recovers from failovers through errors and `ROLE` checks. Dropping the last
    /// handle to the pool does the same.
    pub fn stop_watcher(&self) {
        self.guard.manager.stop_watcher();
    }

    /// The service (master) name this pool serves.
    pub fn service(&self) -> &str {
        &self.shared().config.service
    }

    /// The former name of [`service`](Self::service), spelled as everywhere else now.
    #[deprecated(since = "0.1.0", note = "renamed `service`")]
    pub fn service_name(&self) -> &str {
        self.service()
    }

    /// r2d2's view: connections open and idle. A snapshot, racy by nature.
    pub fn state(&self) -> r2d2::State {
        self.pool.state()
    }

    pub(crate) fn shared(&self) -> &Shared {
        &self.guard.manager.shared
    }

    /// Why the pool's last connect failed, if it did.
    pub(crate) fn last_connect_error(&self) -> Option<Error> {
        self.guard.manager.last_connect_error()
    }
}

impl retry::Checkouts for SentinelPool {
    type Target = Connection;
    type Conn = PooledConnection;

    fn shared(&self) -> &Shared {
        SentinelPool::shared(self)
    }

    fn checkout(&self, wait: Duration) -> Result<PooledConnection, Error> {
        self.get_timeout(wait)
    }
}
