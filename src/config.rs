//! Every option of the pool, the [`Builder`] that sets them, and their validation.

use std::time::Duration;

use redis::{IntoConnectionInfo, ProtocolVersion, RedisConnectionInfo};

use crate::{
    Error, NodeAddr, RetryPolicy, SentinelPool,
    node::{AddressMap, MapFn, NodeSettings},
};

/// The largest pool: r2d2 allocates a slot per connection up front, and Redis's default
/// `maxclients` is 10,000.
pub(crate) const MAX_POOL_SIZE: u32 = 10_000;

/// The longest duration any option takes. Longer values are surely mistakes, and would
/// overflow the clock arithmetic of the waits they bound.
pub(crate) const LONGEST: Duration = Duration::from_secs(365 * 24 * 60 * 60);

/// How a pooled connection is checked before it is handed out.
///
/// Whatever the mode, a connection from an older generation (one opened before the last
/// failover or [`invalidate`](crate::SentinelPool::invalidate)), or one left in a bad state
/// (inside `MULTI`, subscribed, after an I/O error), is never handed out; that check costs no
/// round trip.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Validation {
    /// `PING` and `ROLE`, pipelined in one round trip, within one
    /// [`read_timeout`](crate::Builder::read_timeout): the node must answer and must still be
    /// a master. A node demoted behind the pool's back is never handed out. For an ACL user
    /// that may not run `ROLE`, `HELLO` (which reports the role too) takes its place. The
    /// default.
    PingRole,
    /// No round trip for a connection whose node answered less than `window` ago, in the
    /// current generation, while the watcher is subscribed to at least one sentinel (so a
    /// failover would already have invalidated it); `PING` and `ROLE` otherwise. A busy pool
    /// skips almost every round trip and keeps the guarantee that a demoted master is not
    /// handed out, as long as the watcher hears the failover. A connection that died within
    /// the window surfaces on first use (which [`with_retry`](crate::SentinelPool::with_retry)
    /// absorbs).
    Fast {
        /// How recent the last good answer must be. A second is a sound choice.
        window: Duration,
    },
    /// No round trip: only the generation and the connection's own state are checked. Faster;
    /// a dead connection surfaces on first use instead (which
    /// [`with_retry`](crate::SentinelPool::with_retry) absorbs), and a master demoted behind
    /// the watcher's back is not noticed until a write fails.
    Off,
}

/// Where a fenced pool resumes writes during a failover: see
/// [`Builder::fence_resume`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum FenceResume {
    /// When the failover is committed: a sentinel names the promoted replica as master
    /// (`+switch-master`, or its answer to `SENTINEL MASTER`). Sentinel commits a failover
    /// when the leader's new configuration reaches the other sentinels, about 0.1 s after it
    /// saw the promotion, which itself comes up to a second after `REPLICAOF NO ONE` (the
    /// leader polls a promoted replica's `INFO` once a second). Until then a leader that dies
    /// leaves the other sentinels naming the old master, and they convert the promoted replica
    /// back, wiping what it accepted; so the fence holds writes until then. A planned
    /// failover pauses writes for about a second and loses none; no failure of the failover
    /// itself makes the pool lose a write that a pool without the fence would have kept. The
    /// default.
    #[default]
    Commit,
    /// When the promoted replica answers `ROLE` master (asked every 2 ms while the fence is
    /// up), before any sentinel announces it: writes pause for about 0.1 s instead of a
    /// second, and after a master crash resume a few milliseconds after the promotion. The
    /// risk: if the failover leader dies (or is cut off) between the promotion and the moment
    /// its configuration reaches another sentinel, the others convert the promoted replica
    /// back and every write it acknowledged meanwhile is lost, where a pool without the fence
    /// would have kept writing to the old master.
    Promotion,
}

/// The longest [`Builder::fence_timeout`] accepted. A healthy failover commits within about
/// 1.5 s of the step that raises the fence, whatever Sentinel's own timings; a fence still up
/// long after that follows a failover that is stuck (its leader frozen, its replica refusing
/// the promotion), which Sentinel gives up only after `failover-timeout` (three minutes by
/// default). Holding every write that long is worse than what the fence prevents.
pub(crate) const LONGEST_FENCE: Duration = Duration::from_secs(30);

/// Builds a [`SentinelPool`]; made by [`SentinelPool::builder`].
///
/// Every setter documents its default. Nothing is checked until [`build`](Builder::build),
/// which validates every option and asks the sentinels for the master. Every duration must be
/// longer than zero and at most one year. Its `Debug` output shows no password, not even one
/// inside a sentinel URL.
#[derive(Clone)]
#[must_use = "a builder does nothing until `build` is called"]
pub struct Builder {
    pub(crate) sentinels: Vec<String>,
    pub(crate) service: String,
    pub(crate) max_size: u32,
    pub(crate) min_idle: Option<u32>,
    pub(crate) connection_timeout: Duration,
    pub(crate) idle_timeout: Option<Duration>,
    pub(crate) max_lifetime: Option<Duration>,
    pub(crate) username: Option<String>,
    pub(crate) password: Option<String>,
    pub(crate) sentinel_username: Option<String>,
    pub(crate) sentinel_password: Option<String>,
    pub(crate) db: i64,
    pub(crate) protocol: ProtocolVersion,
    pub(crate) connect_timeout: Duration,
    pub(crate) read_timeout: Duration,
    pub(crate) write_timeout: Duration,
    pub(crate) sentinel_timeout: Duration,
    pub(crate) validation: Validation,
    /// `None`: the default, its deadline grown to cover the deployment's failovers.
    pub(crate) retry: Option<RetryPolicy>,
    pub(crate) watcher: bool,
    pub(crate) discover_sentinels: bool,
    pub(crate) max_sentinels: usize,
    pub(crate) fence: bool,
    pub(crate) fence_timeout: Duration,
    pub(crate) fence_resume: FenceResume,
    pub(crate) replicas: Option<crate::ReplicaOptions>,
    #[cfg(feature = "tls")]
    pub(crate) tls: Option<crate::TlsOptions>,
    pub(crate) address_pairs: Vec<(String, String)>,
    pub(crate) address_function: Option<std::sync::Arc<MapFn>>,
}

impl std::fmt::Debug for Builder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let hidden = |password: &Option<String>| password.as_ref().map(|_| REDACTED);
        let sentinels: Vec<String> = self.sentinels.iter().map(|s| redact_url(s)).collect();
        let mut f = f.debug_struct("Builder");
        f.field("sentinels", &sentinels)
            .field("service", &self.service)
            .field("max_size", &self.max_size)
            .field("min_idle", &self.min_idle)
            .field("connection_timeout", &self.connection_timeout)
            .field("idle_timeout", &self.idle_timeout)
            .field("max_lifetime", &self.max_lifetime)
            .field("username", &self.username)
            .field("password", &hidden(&self.password))
            .field("sentinel_username", &self.sentinel_username)
            .field("sentinel_password", &hidden(&self.sentinel_password))
            .field("db", &self.db)
            .field("protocol", &self.protocol)
            .field("connect_timeout", &self.connect_timeout)
            .field("read_timeout", &self.read_timeout)
            .field("write_timeout", &self.write_timeout)
            .field("sentinel_timeout", &self.sentinel_timeout)
            .field("validation", &self.validation)
            .field("retry", &self.retry)
            .field("watcher", &self.watcher)
            .field("discover_sentinels", &self.discover_sentinels)
            .field("max_sentinels", &self.max_sentinels)
            .field("fence", &self.fence)
            .field("fence_timeout", &self.fence_timeout)
            .field("fence_resume", &self.fence_resume)
            .field("replicas", &self.replicas);
        #[cfg(feature = "tls")]
        f.field("tls", &self.tls);
        f.field("address_map", &self.address_pairs)
            .field(
                "map_addresses",
                &self.address_function.as_ref().map(|_| "<function>"),
            )
            .finish()
    }
}

impl Builder {
    pub(crate) fn new(sentinels: Vec<String>, service: String) -> Self {
        Builder {
            sentinels,
            service,
            max_size: 10,
            min_idle: None,
            connection_timeout: Duration::from_secs(5),
            idle_timeout: Some(Duration::from_secs(10 * 60)),
            max_lifetime: Some(Duration::from_secs(30 * 60)),
            username: None,
            password: None,
            sentinel_username: None,
            sentinel_password: None,
            db: 0,
            protocol: ProtocolVersion::RESP2,
            connect_timeout: Duration::from_secs(1),
            read_timeout: Duration::from_secs(3),
            write_timeout: Duration::from_secs(3),
            sentinel_timeout: Duration::from_millis(500),
            validation: Validation::PingRole,
            retry: None,
            watcher: true,
            discover_sentinels: true,
            max_sentinels: 16,
            fence: true,
            fence_timeout: Duration::from_secs(3),
            fence_resume: FenceResume::Commit,
            replicas: None,
            #[cfg(feature = "tls")]
            tls: None,
            address_pairs: Vec::new(),
            address_function: None,
        }
    }

    /// The most connections the pool keeps open, idle or in use; at most 10,000.
    ///
    /// Defaults to 10.
    pub fn max_size(mut self, max_size: u32) -> Self {
        self.max_size = max_size;
        self
    }

    /// How many idle connections the pool tries to keep open; `None` keeps `max_size`.
    ///
    /// Defaults to `None`.
    pub fn min_idle(mut self, min_idle: Option<u32>) -> Self {
        self.min_idle = min_idle;
        self
    }

    /// How long [`get`](crate::SentinelPool::get) waits for a connection before it fails.
    ///
    /// Defaults to 5 seconds.
    pub fn connection_timeout(mut self, timeout: Duration) -> Self {
        self.connection_timeout = timeout;
        self
    }

    /// How long a connection may stay idle before it is closed; `None` keeps it.
    ///
    /// Defaults to 10 minutes.
    pub fn idle_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.idle_timeout = timeout;
        self
    }

    /// How long a connection may live before it is closed; `None` keeps it.
    ///
    /// Defaults to 30 minutes.
    pub fn max_lifetime(mut self, lifetime: Option<Duration>) -> Self {
        self.max_lifetime = lifetime;
        self
    }

    /// The ACL user for the data nodes (master and replicas).
    ///
    /// Defaults to none (the `default` user).
    pub fn username(mut self, username: impl Into<String>) -> Self {
        self.username = Some(username.into());
        self
    }

    /// The password for the data nodes (their `requirepass` or the ACL user's password).
    ///
    /// Defaults to none.
    pub fn password(mut self, password: impl Into<String>) -> Self {
        self.password = Some(password.into());
        self
    }

    /// The ACL user for the sentinels, which is separate from the data nodes'.
    ///
    /// Defaults to none (the `default` user), or the user named in the sentinel URL.
    pub fn sentinel_username(mut self, username: impl Into<String>) -> Self {
        self.sentinel_username = Some(username.into());
        self
    }

    /// The password for the sentinels (their own `requirepass`), which is separate from the data
    /// nodes'.
    ///
    /// Defaults to none, or the password in the sentinel URL.
    pub fn sentinel_password(mut self, password: impl Into<String>) -> Self {
        self.sentinel_password = Some(password.into());
        self
    }

    /// The database index selected on every data-node connection.
    ///
    /// Defaults to 0.
    pub fn db(mut self, db: i64) -> Self {
        self.db = db;
        self
    }

    /// The protocol spoken with the data nodes (RESP2 or RESP3).
    ///
    /// Defaults to RESP2.
    pub fn protocol(mut self, protocol: ProtocolVersion) -> Self {
        self.protocol = protocol;
        self
    }

    /// How long opening a connection to a data node may take: TCP connect plus the
    /// authentication handshake.
    ///
    /// Defaults to 1 second.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// How long a data-node connection waits for a reply. Raise it above the longest blocking
    /// command you send (`BLPOP ... 10` needs more than 10 seconds).
    ///
    /// Defaults to 3 seconds.
    pub fn read_timeout(mut self, timeout: Duration) -> Self {
        self.read_timeout = timeout;
        self
    }

    /// How long a data-node connection waits to send a request.
    ///
    /// Defaults to 3 seconds.
    pub fn write_timeout(mut self, timeout: Duration) -> Self {
        self.write_timeout = timeout;
        self
    }

    /// How long asking one sentinel may take, connecting to it included. A sentinel that
    /// accepts connections and never answers costs this much in each lookup that reaches it;
    /// after it failed, it is asked only when no other sentinel answers, for a few seconds.
    ///
    /// Defaults to 500 milliseconds.
    pub fn sentinel_timeout(mut self, timeout: Duration) -> Self {
        self.sentinel_timeout = timeout;
        self
    }

    /// How connections are checked at checkout; see [`Validation`].
    ///
    /// Defaults to [`Validation::PingRole`].
    pub fn validation(mut self, validation: Validation) -> Self {
        self.validation = validation;
        self
    }

    /// How [`with_retry`](crate::SentinelPool::with_retry) retries; see [`RetryPolicy`].
    ///
    /// Defaults to [`RetryPolicy::default`] with a deadline that covers a crash failover of
    /// this deployment: the service's `down-after-milliseconds`, which the sentinels report,
    /// plus 10 s for the election, the promotion and the announcement, never under 10 s nor
    /// over 2 minutes (40 s at Sentinel's default 30 s; 11 s at 1 s). [`Stats::retry_deadline`](crate::Stats)
    /// shows the one in force. A policy set here is used as it is: a web request that must
    /// answer within its own budget sets a shorter deadline and maps the error to a 503.
    pub fn retry_policy(mut self, policy: RetryPolicy) -> Self {
        self.retry = Some(policy);
        self
    }

    /// Whether to run the watcher: background threads subscribed to every sentinel's
    /// `+switch-master`, which move the pool to a new master within milliseconds of its
    /// announcement. Without it the pool still recovers, later: from errors and `ROLE` checks,
    /// which after a planned failover means only once the old master is demoted (seconds later,
    /// writes it acknowledged meanwhile are lost).
    ///
    /// Defaults to `true`.
    pub fn watcher(mut self, enabled: bool) -> Self {
        self.watcher = enabled;
        self
    }

    /// Whether the watcher learns sentinels other than those given (from `+sentinel` and
    /// `SENTINEL SENTINELS`), listens to them and uses them for lookups. Turn it off when the
    /// sentinels announce addresses this client cannot reach, or to use exactly the list
    /// given.
    ///
    /// Defaults to `true`.
    pub fn discover_sentinels(mut self, enabled: bool) -> Self {
        self.discover_sentinels = enabled;
        self
    }

    /// The most sentinels the pool knows, those given included; learned ones beyond it are
    /// ignored. Each known sentinel costs a thread and two connections. At least the number of
    /// sentinels given.
    ///
    /// Defaults to 16.
    pub fn max_sentinels(mut self, max: usize) -> Self {
        self.max_sentinels = max;
        self
    }

    /// Whether the watcher fences the old master while a failover promotes a replica.
    ///
    /// Sentinel announces a failover (`+switch-master`) only after it promoted a replica:
    /// about 0.1 to 1 s later, seconds for the leader. During `SENTINEL FAILOVER` the old master
    /// accepts writes all that time, and every write it acknowledges after the promotion is
    /// lost when it is demoted: thousands. With the fence, the watcher follows the failover
    /// leader's steps: when the leader selects the replica to promote (about 0.1 s before it
    /// sends `REPLICAOF NO ONE`), the pool stops handing out connections to the old master,
    /// drops the idle ones, makes checked-out ones refuse their next request (not sent, so
    /// [`with_retry`](crate::SentinelPool::with_retry) retries it) and holds new checkouts.
    /// It resumes on the promoted replica when the failover is committed (or earlier: see
    /// [`fence_resume`](Self::fence_resume)). The fence comes down without a new master, and
    /// checkouts go where the sentinels say, when the leader aborts (`-failover-abort-*`,
    /// back to the old master at once), when the watcher loses its subscription to the leader
    /// (it died or froze: its failover cannot commit), and after
    /// [`fence_timeout`](Self::fence_timeout). A subscriber that (re)joins while a failover is
    /// under way learns it from its sentinel's state and raises the fence too.
    ///
    /// The trade-off: writes pause for about a second per failover (from the selection to the
    /// commit), instead of a second of acknowledged writes being lost. In no failure of the
    /// failover itself (its leader crashing or freezing at any step, the promoted replica
    /// lost, a watcher that joins late) does the fence lose a write that a pool without it
    /// would have kept. It needs the watcher, and a replica address this client can reach
    /// (see [`address_map`](Self::address_map)).
    ///
    /// What it cannot protect: writes other clients send to the old master, and writes the
    /// old master acknowledged but had not yet replicated when the replica was promoted
    /// (asynchronous replication; `WAIT` narrows that window).
    ///
    /// Defaults to `true`.
    pub fn fence(mut self, enabled: bool) -> Self {
        self.fence = enabled;
        self
    }

    /// The longest a fence holds checkouts: after it, the pool asks the sentinels for the
    /// master again, as without the fence. A checkout never waits longer than its own
    /// [`connection_timeout`](Self::connection_timeout) either. At most 30 seconds: a
    /// failover that has not committed by then is stuck, and Sentinel itself gives it up only
    /// after its `failover-timeout` (three minutes by default).
    ///
    /// Defaults to 3 seconds (a healthy failover commits within about 1.5 s of the step that
    /// raises the fence).
    pub fn fence_timeout(mut self, timeout: Duration) -> Self {
        self.fence_timeout = timeout;
        self
    }

    /// Where a fenced pool resumes writes: when the failover is committed (safe against its
    /// leader dying midway), or as soon as the promoted replica answers master (faster, at
    /// that risk). See [`FenceResume`] for the figures.
    ///
    /// Defaults to [`FenceResume::Commit`].
    pub fn fence_resume(mut self, resume: FenceResume) -> Self {
        self.fence_resume = resume;
        self
    }

    /// Speaks TLS to the sentinels and the data nodes (the `tls` feature; a connection
    /// string's `rediss+sentinel://`).
    ///
    /// Defaults to none: plain TCP.
    #[cfg(feature = "tls")]
    #[cfg_attr(docsrs, doc(cfg(feature = "tls")))]
    pub fn tls(mut self, options: crate::TlsOptions) -> Self {
        self.tls = Some(options);
        self
    }

    /// Builds a pool of reads from the replicas instead of the master: what
    /// [`SentinelPool::replica_pool`](crate::SentinelPool::replica_pool) gives, for a program
    /// that only reads (a connection string's `?role=replica`). The master's watcher runs
    /// behind it. `build` still checks the master first; `build_manager` gives a manager
    /// whose connections go to replicas.
    ///
    /// Defaults to none: the pool serves the master.
    pub fn replicas(mut self, options: crate::ReplicaOptions) -> Self {
        self.replicas = Some(options);
        self
    }

    /// Addresses to use instead of those the sentinels announce, as `"host:port"` pairs
    /// (announced, reachable): for nodes behind Docker or NAT that announce addresses this
    /// client cannot reach. Applied to everything learned from sentinels: masters, sentinels
    /// discovered, the watcher's messages. Not to the sentinel addresses you give.
    ///
    /// ```no_run
    /// # use r2d2_redis_sentinel::SentinelPool;
    /// let pool = SentinelPool::builder(["redis://127.0.0.1:26379"], "mymaster")
    ///     .address_map([("172.17.0.2:6379", "127.0.0.1:6379"), ("172.17.0.3:6379", "127.0.0.1:6380")])
    ///     .build()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// Defaults to none.
    pub fn address_map<I, A, B>(mut self, pairs: I) -> Self
    where
        I: IntoIterator<Item = (A, B)>,
        A: AsRef<str>,
        B: AsRef<str>,
    {
        self.address_pairs = pairs
            .into_iter()
            .map(|(a, b)| (a.as_ref().to_owned(), b.as_ref().to_owned()))
            .collect();
        self
    }

    /// The general form of [`address_map`](Builder::address_map): a function from an announced
    /// address to the one to use, `None` to keep it. Exact pairs are looked up first.
    ///
    /// Defaults to none.
    pub fn map_addresses(
        mut self,
        map: impl Fn(&NodeAddr) -> Option<NodeAddr> + Send + Sync + 'static,
    ) -> Self {
        self.address_function = Some(std::sync::Arc::new(map));
        self
    }

    /// Validates every option, asks the sentinels for the master of the service, opens one
    /// connection to it, and starts the pool. Idle connections are then opened in the
    /// background up to `min_idle`.
    ///
    /// # Errors
    ///
    /// A configuration error ([`Error::NoSentinels`], [`Error::InvalidSentinelAddress`],
    /// [`Error::InvalidConfig`]); [`Error::UnknownService`] when no sentinel monitors the
    /// service; [`Error::NotASentinel`], [`Error::SentinelAuth`] or
    /// [`Error::SentinelsUnreachable`] when no sentinel answers as it should; [`Error::Auth`] or
    /// [`Error::Connect`] when the master cannot be used; [`Error::MasterDown`] or
    /// [`Error::WrongRole`] during a failover.
    pub fn build(self) -> Result<SentinelPool, Error> {
        let replicas = self.replicas;
        let pool = SentinelPool::start(self.validate()?, false)?;
        match replicas {
            Some(options) => pool.replica_pool(options),
            None => Ok(pool),
        }
    }

    /// Validates every option and starts the pool without asking anything: for a service that
    /// starts while its sentinels are still coming up (Kubernetes start order). Connections
    /// are made once the sentinels answer; until then [`get`](SentinelPool::get) returns the
    /// same typed errors [`build`](Builder::build) would (a configuration error as it is, the
    /// others in a [`CheckoutTimeout`](Error::CheckoutTimeout)). Like r2d2's
    /// `build_unchecked`.
    ///
    /// # Errors
    ///
    /// A configuration error; [`Error::ThreadSpawn`].
    pub fn build_unchecked(self) -> Result<SentinelPool, Error> {
        let replicas = self.replicas;
        let pool = SentinelPool::start(self.validate()?, true)?;
        match replicas {
            Some(options) => pool.replica_pool(options),
            None => Ok(pool),
        }
    }

    /// Validates every option and makes the connection manager alone, with its watcher
    /// running, for a plain `r2d2::Pool` built the r2d2 way (your connection customizer, event
    /// handler, thread pool); see [`SentinelManager`](crate::SentinelManager) for what holds
    /// there and what needs [`SentinelPool`](crate::SentinelPool). No I/O until the pool connects.
    ///
    /// # Errors
    ///
    /// A configuration error; [`Error::ThreadSpawn`].
    pub fn build_manager(self) -> Result<crate::SentinelManager, Error> {
        let replicas = self.replicas;
        let manager = crate::SentinelManager::new(self.validate()?);
        manager.start_watcher()?;
        Ok(match replicas {
            Some(options) => manager.for_replicas(options),
            None => manager,
        })
    }

    fn validate(self) -> Result<Config, Error> {
        if self.sentinels.is_empty() {
            return Err(Error::NoSentinels);
        }
        #[cfg(feature = "tls")]
        if self.tls.is_some() {
            crate::TlsOptions::install_crypto_provider();
        }
        let sentinels = self
            .sentinels
            .iter()
            .map(|address| parse_sentinel(address))
            .collect::<Result<Vec<_>, _>>()?;
        if self.max_sentinels < sentinels.len() || self.max_sentinels > MAX_POOL_SIZE as usize {
            return invalid(
                "max_sentinels",
                format!(
                    "{} is out of range: give at least the {} sentinels listed, at most \
                     {MAX_POOL_SIZE}",
                    self.max_sentinels,
                    sentinels.len()
                ),
            );
        }
        if self.service.trim().is_empty() {
            return invalid("service_name", "the service (master) name is empty");
        }
        // `sentinel monitor <name> ...` takes the name as one word: no sentinel can monitor a
        // name with white space or control characters.
        if self
            .service
            .chars()
            .any(|c| c.is_whitespace() || c.is_control())
        {
            return invalid(
                "service_name",
                "the service (master) name has white space or control characters; use the \
                 name from `sentinel monitor` in sentinel.conf",
            );
        }
        if self.db < 0 {
            return invalid(
                "db",
                format!("{} is negative: databases count from 0", self.db),
            );
        }
        if self.max_size == 0 || self.max_size > MAX_POOL_SIZE {
            return invalid(
                "max_size",
                format!(
                    "{} is out of range: give 1 to {MAX_POOL_SIZE} (Redis's default maxclients)",
                    self.max_size
                ),
            );
        }
        if let Some(min_idle) = self.min_idle
            && min_idle > self.max_size
        {
            return invalid(
                "min_idle",
                format!("{min_idle} is larger than max_size {}", self.max_size),
            );
        }
        for (option, value) in [
            ("connection_timeout", self.connection_timeout),
            ("connect_timeout", self.connect_timeout),
            ("read_timeout", self.read_timeout),
            ("write_timeout", self.write_timeout),
            ("sentinel_timeout", self.sentinel_timeout),
            ("fence_timeout", self.fence_timeout),
        ] {
            check_duration(option, value)?;
        }
        for (option, value) in [
            ("idle_timeout", self.idle_timeout),
            ("max_lifetime", self.max_lifetime),
        ] {
            if let Some(value) = value {
                check_duration(option, value)?;
            }
        }
        if self.fence_timeout > LONGEST_FENCE {
            return invalid(
                "fence_timeout",
                format!(
                    "{:?} is longer than the longest allowed, {LONGEST_FENCE:?}: a failover \
                     that has not committed by then is stuck, and holding writes for it is \
                     worse than what the fence prevents",
                    self.fence_timeout
                ),
            );
        }
        if let Some(retry) = &self.retry {
            retry.validate()?;
        }
        if self.username.is_some() && self.password.is_none() {
            return invalid(
                "username",
                "a username needs a password: set `password` to the ACL user's password",
            );
        }

        let mut data = RedisConnectionInfo::default()
            .set_db(self.db)
            .set_protocol(self.protocol);
        if let Some(username) = &self.username {
            data = data.set_username(username);
        }
        if let Some(password) = &self.password {
            data = data.set_password(password);
        }
        let mut sentinel = RedisConnectionInfo::default();
        let sentinel_username = self
            .sentinel_username
            .as_deref()
            .or(sentinels.iter().find_map(|s| s.username.as_deref()));
        let sentinel_password = self
            .sentinel_password
            .as_deref()
            .or(sentinels.iter().find_map(|s| s.password.as_deref()));
        if sentinel_username.is_some() && sentinel_password.is_none() {
            return invalid(
                "sentinel_username",
                "a username needs a password: set `sentinel_password` to the sentinel ACL \
                 user's password",
            );
        }
        if let Some(username) = sentinel_username {
            sentinel = sentinel.set_username(username);
        }
        if let Some(password) = sentinel_password {
            sentinel = sentinel.set_password(password);
        }

        let mut address_map = AddressMap {
            exact: Default::default(),
            function: self.address_function.clone(),
        };
        for (announced, reachable) in &self.address_pairs {
            let parse = |text: &str| {
                parse_host_port(text).ok_or_else(|| Error::InvalidConfig {
                    option: "address_map",
                    reason: format!("{text:?} is not host:port (a port from 1 to 65535)"),
                })
            };
            address_map
                .exact
                .insert(parse(announced)?, parse(reachable)?);
        }

        Ok(Config {
            address_map,
            sentinels: sentinels.into_iter().map(|s| s.addr).collect(),
            service: self.service,
            max_size: self.max_size,
            min_idle: self.min_idle,
            connection_timeout: self.connection_timeout,
            idle_timeout: self.idle_timeout,
            max_lifetime: self.max_lifetime,
            data: NodeSettings {
                redis: data,
                #[cfg(feature = "tls")]
                tls: self.tls.clone(),
                connect_timeout: self.connect_timeout,
                read_timeout: self.read_timeout,
                write_timeout: self.write_timeout,
            },
            sentinel: NodeSettings {
                redis: sentinel,
                #[cfg(feature = "tls")]
                tls: self.tls.clone(),
                connect_timeout: self.sentinel_timeout,
                read_timeout: self.sentinel_timeout,
                write_timeout: self.sentinel_timeout,
            },
            validation: self.validation,
            retry: self.retry,
            watcher: self.watcher,
            discover_sentinels: self.discover_sentinels,
            max_sentinels: self.max_sentinels,
            fence: self.fence.then_some(FenceOptions {
                timeout: self.fence_timeout,
                resume: self.fence_resume,
            }),
        })
    }
}

/// The validated options, shared by the pool's parts.
#[derive(Debug, Clone)]
pub(crate) struct Config {
    pub(crate) sentinels: Vec<NodeAddr>,
    pub(crate) service: String,
    pub(crate) max_size: u32,
    pub(crate) min_idle: Option<u32>,
    pub(crate) connection_timeout: Duration,
    pub(crate) idle_timeout: Option<Duration>,
    pub(crate) max_lifetime: Option<Duration>,
    pub(crate) data: NodeSettings,
    pub(crate) sentinel: NodeSettings,
    pub(crate) validation: Validation,
    /// `None`: the default, its deadline grown to cover the deployment's failovers.
    pub(crate) retry: Option<RetryPolicy>,
    pub(crate) watcher: bool,
    pub(crate) discover_sentinels: bool,
    pub(crate) max_sentinels: usize,
    /// `None`: no fence.
    pub(crate) fence: Option<FenceOptions>,
    pub(crate) address_map: AddressMap,
}

/// How the watcher fences a failover.
#[derive(Debug, Clone, Copy)]
pub(crate) struct FenceOptions {
    /// How long a fence holds checkouts at most.
    pub(crate) timeout: Duration,
    pub(crate) resume: FenceResume,
}

/// `host:port` or `[v6]:port`, port not 0.
fn parse_host_port(text: &str) -> Option<NodeAddr> {
    let (host, port) = text.trim().rsplit_once(':')?;
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    let port: u16 = port.parse().ok().filter(|p| *p != 0)?;
    (!host.is_empty() && !host.contains(char::is_whitespace)).then(|| NodeAddr::new(host, port))
}

/// A duration option must be longer than zero and at most [`LONGEST`].
pub(crate) fn check_duration(option: &'static str, value: Duration) -> Result<(), Error> {
    if value.is_zero() {
        invalid(option, "must be longer than zero")
    } else if value > LONGEST {
        invalid(
            option,
            format!("{value:?} is longer than the longest allowed, one year"),
        )
    } else {
        Ok(())
    }
}

pub(crate) fn invalid<T>(option: &'static str, reason: impl Into<String>) -> Result<T, Error> {
    Err(Error::InvalidConfig {
        option,
        reason: reason.into(),
    })
}

pub(crate) struct SentinelUrl {
    addr: NodeAddr,
    username: Option<String>,
    password: Option<String>,
}

/// What stands for a password wherever the crate shows one.
pub(crate) const REDACTED: &str = "<redacted>";

/// `address` with the password of its user info, if any, replaced by [`REDACTED`]:
/// `redis://user:secret@host:1` shows as `redis://user:<redacted>@host:1`. User info without a
/// colon is hidden whole, as it may be a password alone. The user info runs to the last `@`:
/// a password may hold `/`, `?`, `#` or `@` unencoded, and whatever follows the last `@` is
/// the only part sure to hold none of it.
pub(crate) fn redact_url(address: &str) -> String {
    let start = address.find("://").map_or(0, |i| i + 3);
    let rest = &address[start..];
    let Some(at) = rest.rfind('@') else {
        return address.to_owned();
    };
    let user = match rest[..at].split_once(':') {
        Some((user, _)) if !user.contains(['/', '?', '#']) => format!("{user}:{REDACTED}"),
        _ => REDACTED.to_owned(),
    };
    format!("{}{user}{}", &address[..start], &rest[at..])
}

/// Parses `redis://[user:pass@]host:port` or a bare `host:port`. The user info runs to the
/// last `@`, so a password may hold reserved characters unencoded (`%XX` escapes are decoded
/// too); the host and port are checked by redis-rs without it, so that no error can quote it.
pub(crate) fn parse_sentinel(address: &str) -> Result<SentinelUrl, Error> {
    let rejected = |reason: &str| Error::InvalidSentinelAddress {
        address: redact_url(address),
        reason: reason.to_owned(),
    };
    let trimmed = address.trim();
    if trimmed.is_empty() {
        return Err(rejected("it is empty"));
    }
    let rest = match trimmed.split_once("://") {
        Some(("redis", rest)) => rest,
        Some(_) => {
            return Err(rejected(
                "only the redis:// scheme is supported for sentinels",
            ));
        }
        None => trimmed,
    };
    let (userinfo, after) = match rest.rsplit_once('@') {
        Some((userinfo, after)) => (Some(userinfo), after),
        None => (None, rest),
    };
    let host_port = after.split(['/', '?', '#']).next().unwrap_or(after);
    // `[v6]:port` or `host:port`: an IPv6 literal's own colons are no port.
    let has_port = match host_port.rsplit_once(']') {
        Some((_, after)) => after.starts_with(':'),
        None => host_port.contains(':'),
    };
    if !has_port {
        return Err(rejected(
            "the port is missing (sentinels usually listen on 26379)",
        ));
    }
    let info = format!("redis://{host_port}")
        .as_str()
        .into_connection_info()
        .map_err(|e| rejected(&e.to_string()))?;
    let (username, password) = match userinfo {
        None => (None, None),
        Some(userinfo) => {
            let decoded = |part: &str| {
                percent_decode(part).ok_or_else(|| {
                    rejected("its user or password has a % not followed by two hex digits, or is not UTF-8 once decoded")
                })
            };
            match userinfo.split_once(':') {
                Some((user, password)) => (
                    Some(decoded(user)?).filter(|u| !u.is_empty()),
                    Some(decoded(password)?),
                ),
                None => (Some(decoded(userinfo)?), None),
            }
        }
    };
    match info.addr() {
        redis::ConnectionAddr::Tcp(_, 0) => Err(rejected("port 0 is no port to connect to")),
        redis::ConnectionAddr::Tcp(host, port) => Ok(SentinelUrl {
            addr: NodeAddr::new(host.clone(), *port),
            username,
            password,
        }),
        _ => Err(rejected("sentinels are reached over plain TCP")),
    }
}

/// Decodes `%XX` escapes; `None` when one is malformed or the result is not UTF-8.
pub(crate) fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3)?;
            if !hex.iter().all(u8::is_ascii_hexdigit) {
                return None;
            }
            out.push(u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn builder(sentinels: &[&str]) -> Builder {
        Builder::new(
            sentinels.iter().map(|s| s.to_string()).collect(),
            "mymaster".into(),
        )
    }

    #[test]
    fn sentinel_addresses_parse_with_or_without_scheme() {
        let config = builder(&[
            "redis://127.0.0.1:26379",
            "10.1.2.3:26380",
            "redis://:pw@h:1",
        ])
        .validate()
        .unwrap();
        assert_eq!(
            config.sentinels,
            vec![
                NodeAddr::new("127.0.0.1", 26379),
                NodeAddr::new("10.1.2.3", 26380),
                NodeAddr::new("h", 1)
            ]
        );
        assert_eq!(config.sentinel.redis.password(), Some("pw"));
    }

    #[test]
    fn malformed_sentinel_addresses_are_rejected_with_the_address() {
        for bad in [
            "",
            "http://h:1",
            "127.0.0.1",
            "redis://h:notaport",
            "redis+unix:///tmp/s",
        ] {
            match builder(&[bad]).validate() {
                Err(Error::InvalidSentinelAddress { address, .. }) => assert_eq!(address, bad),
                other => panic!("{bad:?} gave {other:?}"),
            }
        }
    }

    #[test]
    fn bad_options_name_the_option() {
        let cases: Vec<(Builder, &str)> = vec![
            (builder(&["h:1"]).max_size(0), "max_size"),
            (builder(&["h:1"]).min_idle(Some(11)), "min_idle"),
            (
                builder(&["h:1"]).read_timeout(Duration::ZERO),
                "read_timeout",
            ),
            (
                builder(&["h:1"]).sentinel_timeout(Duration::ZERO),
                "sentinel_timeout",
            ),
            (
                builder(&["h:1"]).retry_policy(RetryPolicy::default().max_attempts(0)),
                "retry_policy",
            ),
        ];
        for (builder, expected) in cases {
            match builder.validate() {
                Err(Error::InvalidConfig { option, .. }) => assert_eq!(option, expected),
                other => panic!("expected InvalidConfig for {expected}, got {other:?}"),
            }
        }
        assert!(matches!(builder(&[]).validate(), Err(Error::NoSentinels)));
    }

    #[test]
    fn passwords_in_urls_are_redacted() {
        for (url, shown) in [
            ("redis://user:pw@h:1", "redis://user:<redacted>@h:1"),
            ("redis://:pw@h:1/0", "redis://:<redacted>@h:1/0"),
            ("redis://pw@h:1", "redis://<redacted>@h:1"),
            ("user:p@ss@h:1", "user:<redacted>@h:1"),
            ("redis://h:1", "redis://h:1"),
            ("h:1", "h:1"),
            // Reserved characters left unencoded in a password: hidden all the same.
            ("redis://:pa/ss@h:1", "redis://:<redacted>@h:1"),
            ("redis://u:p?w@h:1", "redis://u:<redacted>@h:1"),
            ("redis://u:p#w@h:1", "redis://u:<redacted>@h:1"),
            ("redis://u:p@w@h:1", "redis://u:<redacted>@h:1"),
            ("redis://pa/ss:x@h:1", "redis://<redacted>@h:1"),
            // An `@` after the host cannot be told from one in a password: hidden too.
            ("redis://h:1/?x=a@b", "redis://h:<redacted>@b"),
        ] {
            assert_eq!(redact_url(url), shown, "{url}");
        }
    }

    #[test]
    fn passwords_with_reserved_characters_reach_the_sentinel_settings() {
        for (url, user, password) in [
            ("redis://:pa/ss@h:1", None, "pa/ss"),
            ("redis://u:p?w@h:1", Some("u"), "p?w"),
            ("u:p#w@h:1", Some("u"), "p#w"),
            ("redis://u:p@w@h:1/", Some("u"), "p@w"),
            ("redis://u:p%40w%3A@h:1", Some("u"), "p@w:"),
            ("redis://u:p:w@h:1", Some("u"), "p:w"),
        ] {
            let parsed = parse_sentinel(url).unwrap_or_else(|e| panic!("{url}: {e}"));
            assert_eq!(parsed.addr, NodeAddr::new("h", 1), "{url}");
            assert_eq!(parsed.username.as_deref(), user, "{url}");
            assert_eq!(parsed.password.as_deref(), Some(password), "{url}");
        }
        assert!(parse_sentinel("redis://u:%zz@h:1").is_err());
    }

    #[test]
    fn sentinel_and_data_credentials_are_separate() {
        let config = builder(&["h:1"])
            .password("data")
            .sentinel_password("sentinel")
            .validate()
            .unwrap();
        assert_eq!(config.data.redis.password(), Some("data"));
        assert_eq!(config.sentinel.redis.password(), Some("sentinel"));
    }
}
