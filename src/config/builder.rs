//! The [`Builder`]: every option with its default, and the three ways to start a pool.

use std::{marker::PhantomData, time::Duration};

use redis::ProtocolVersion;

use super::{FenceResume, Hooks, Validation};
use crate::{Connection, Error, NodeAddr, RetryPolicy, Secret, node::MapFunction};

/// Builds a [`SentinelPool`](crate::SentinelPool) (made by
/// [`SentinelPool::builder`](crate::SentinelPool::builder)); as a `Builder<Cluster>`, a
/// [`ClusterPool`](crate::ClusterPool) (made by
/// [`ClusterPool::builder`](crate::ClusterPool::builder)); as a `Builder<Standalone>`, a
/// `SentinelPool` over one server (made by
/// [`SentinelPool::standalone`](crate::SentinelPool::standalone)).
///
/// The options every topology shares (pool size, timeouts, credentials, TLS, addresses) are
/// set the same way on both; the Sentinel-only ones (sentinel credentials, the watcher, the
/// fence, replicas, durable mode) exist only on `Builder<Sentinel>`.
///
/// Every setter documents its default. Nothing is checked until [`build`](Builder::build),
/// which validates every option and asks the sentinels for the master. Every duration must be
/// longer than zero and at most one year. Its `Debug` output shows no password, not even one
/// inside a sentinel URL.
#[derive(Clone, Debug)]
#[must_use = "a builder does nothing until `build` is called"]
pub struct Builder<T = Sentinel> {
    /// Addresses as given (the sentinels', or a cluster's seed nodes): they may carry
    /// credentials.
    pub(crate) sentinels: Vec<Secret>,
    pub(crate) service: String,
    pub(crate) max_size: u32,
    pub(crate) min_idle: Option<u32>,
    pub(crate) checkout_timeout: Duration,
    pub(crate) idle_timeout: Option<Duration>,
    pub(crate) max_lifetime: Option<Duration>,
    pub(crate) username: Option<String>,
    pub(crate) password: Option<Secret>,
    pub(crate) sentinel_username: Option<String>,
    pub(crate) sentinel_password: Option<Secret>,
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
    pub(crate) address_function: Option<MapFunction>,
    pub(crate) client_name: Option<String>,
    pub(crate) tcp_nodelay: bool,
    pub(crate) tcp_keepalive: Option<Duration>,
    pub(crate) hooks: Hooks,
    pub(crate) durability: Option<crate::Durability>,
    pub(crate) topology: PhantomData<T>,
}

/// A [`Builder`]'s topology: a service behind Redis Sentinel, the default.
#[derive(Debug, Clone, Copy)]
pub enum Sentinel {}

/// A [`Builder`]'s topology: a Redis (or Valkey) Cluster.
#[derive(Debug, Clone, Copy)]
pub enum Cluster {}

/// A [`Builder`]'s topology: one Redis server, no Sentinel, no cluster.
#[derive(Debug, Clone, Copy)]
pub enum Standalone {}

impl Builder<Sentinel> {
    /// A builder for `service` at `sentinels`: what
    /// [`SentinelPool::builder`](crate::SentinelPool::builder) starts.
    pub(crate) fn of<I, S>(sentinels: I, service: impl Into<String>) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        Builder::new(
            sentinels
                .into_iter()
                .map(|s| Secret::address(s.as_ref()))
                .collect(),
            service.into(),
        )
    }

    pub(crate) fn new(sentinels: Vec<Secret>, service: String) -> Self {
        Builder::with_topology(sentinels, service)
    }
}

impl<T> Builder<T> {
    /// A builder with every default, for `addresses` (sentinels or seeds) and `service`.
    pub(crate) fn with_topology(addresses: Vec<Secret>, service: String) -> Self {
        Builder {
            sentinels: addresses,
            service,
            max_size: 10,
            min_idle: None,
            checkout_timeout: Duration::from_secs(5),
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
            validation: Validation::ADAPTIVE,
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
            client_name: None,
            tcp_nodelay: true,
            tcp_keepalive: Some(Duration::from_secs(60)),
            hooks: Hooks::default(),
            durability: None,
            topology: PhantomData,
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
    pub fn checkout_timeout(mut self, timeout: Duration) -> Self {
        self.checkout_timeout = timeout;
        self
    }

    /// The former name of [`checkout_timeout`](Self::checkout_timeout), which reads apart
    /// from [`connect_timeout`](Self::connect_timeout) (a TCP connect).
    #[deprecated(since = "0.1.0", note = "renamed `checkout_timeout`")]
    pub fn connection_timeout(self, timeout: Duration) -> Self {
        self.checkout_timeout(timeout)
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
        self.password = Some(Secret::new(password.into()));
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
        self.address_function = Some(MapFunction(std::sync::Arc::new(map)));
        self
    }

    /// A name every data-node connection gives itself (`CLIENT SETNAME`, in the round trip
    /// that opens it), so that `CLIENT LIST` on a master or replica shows which service holds
    /// which connection. Redis takes printable ASCII without spaces.
    ///
    /// Defaults to none (the connections stay unnamed).
    pub fn client_name(mut self, name: impl Into<String>) -> Self {
        self.client_name = Some(name.into());
        self
    }

    /// Whether connections set `TCP_NODELAY`, sending each request at once instead of
    /// holding a short segment until the previous one is acknowledged (Nagle's algorithm).
    /// A pipeline whose last segment is short otherwise waits for the server's delayed
    /// acknowledgement (tens of milliseconds on a real network); hiredis, Jedis and go-redis
    /// set it too. Applies to data nodes and sentinels.
    ///
    /// Defaults to `true` (redis-rs alone defaults to `false`).
    pub fn tcp_nodelay(mut self, nodelay: bool) -> Self {
        self.tcp_nodelay = nodelay;
        self
    }

    /// TCP keepalive on every connection, to data nodes and sentinels: after `idle` without
    /// traffic the kernel probes the peer every 10 seconds, and gives the connection up after 3
    /// unanswered probes. It keeps idle pooled connections and the watcher's subscriptions
    /// alive through NAT and firewalls that forget quiet flows, and ends one whose peer
    /// vanished. `None` leaves the sockets as the OS makes them (no keepalive on Linux).
    ///
    /// Defaults to `Some(60 s)`: a vanished peer is noticed after about 90 seconds of silence.
    /// The kernel takes 1 s to 32,767 s, in whole seconds: `build` refuses anything else.
    pub fn tcp_keepalive(mut self, idle: Option<Duration>) -> Self {
        self.tcp_keepalive = idle;
        self
    }

    /// r2d2's connection customizer: its `on_acquire` runs on every new connection before
    /// the pool keeps it, its `on_release` when the pool closes one. What `on_acquire` sets on
    /// the connection (`CLIENT SETNAME`, `CLIENT TRACKING`, a `SELECT`...) is the connection's
    /// baseline: kept across checkouts, not a change that retires the connection, as the same
    /// command from a caller does. Replica pools made from this builder use it too. An error
    /// from `on_acquire` discards the connection, and the checkout waiting for it gets that
    /// error in a [`CheckoutTimeout`](Error::CheckoutTimeout) if no other connection comes.
    ///
    /// Defaults to none.
    pub fn connection_customizer(
        mut self,
        customizer: Box<dyn r2d2::CustomizeConnection<Connection, Error>>,
    ) -> Self {
        self.hooks.customizer = Some(customizer.into());
        self
    }

    /// r2d2's event handler: told of every connection acquired, released, checked out (with
    /// the wait), checked in (with the time held) and timed out, for metrics. Replica pools
    /// made from this builder report to it too. Failovers are told by
    /// [`SentinelPool::events`](crate::SentinelPool::events) instead.
    ///
    /// Defaults to none.
    pub fn event_handler(mut self, handler: Box<dyn r2d2::HandleEvent>) -> Self {
        self.hooks.event_handler = Some(handler.into());
        self
    }
}

/// The options only a Sentinel deployment has.
impl Builder<Sentinel> {
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
        self.sentinel_password = Some(Secret::new(password.into()));
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
}
