//! A real local Sentinel topology for tests, examples and benchmarks, yours included.
//!
//! [`Topology::start`] runs the OS's `redis-server` and `redis-sentinel` as child processes on
//! free loopback ports: one master, two replicas and three sentinels by default, each with its
//! own folder under the system temp dir. It returns once every sentinel sees the master, both
//! replicas and the other sentinels, so a failover can start at once. Dropping the
//! [`Topology`] kills every process it started (by its handle, never by name) and removes the
//! folders; when the drop happens during a panic, the folders and their logs are kept and
//! their path is printed.
//!
//! Enable it with the `testkit` feature, usually as a dev-dependency:
//!
//! ```toml
//! [dev-dependencies]
//! r2d2-redis-sentinel = { version = "0.1", features = ["testkit"] }
//! ```
//!
//! ```no_run
//! use r2d2_redis_sentinel::{redis::Commands, testkit::Topology};
//!
//! let topology = Topology::start()?;
//! let pool = topology.pool_builder().build()?;
//! let _: () = pool.get()?.set("k", "v")?;
//! let new_master = topology.failover()?;
//! assert_eq!(pool.with_retry(|c| { c.set::<_, _, ()>("k", "w")?; Ok(c.addr().clone()) })?, new_master);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! The binaries are looked up in the folder named by the `REDIS_BIN_DIR` environment variable,
//! else on `PATH`: `redis-server` (or `valkey-server`) and, if there is one, `redis-sentinel`
//! (else sentinels run as `redis-server --sentinel`). On Debian or Ubuntu: `apt-get install
//! redis-server redis-sentinel`. Redis 6.0 and later and Valkey work;
//! [`Topology::server_version`] tells a test which one runs.
//!
//! [`Cluster::start`] runs a Redis Cluster from the same binaries: 3 primaries with a replica
//! each by default, built by the kit itself (no `redis-cli --cluster`), with helpers to fail a
//! shard over by hand, kill a primary, and move a slot in steps.

#[cfg(feature = "tls")]
mod certs;
mod cluster;
mod error;
mod listener;
mod process;
mod scripted;
mod topology;

#[cfg(feature = "tls")]
pub use certs::throwaway_ca_pem;
pub use cluster::{Cluster, ClusterBuilder, Migration};
pub use error::Error;
pub use listener::{Listener, Published};
pub use process::ServerVersion;
pub use scripted::{Reply, ScriptedServer};
pub use topology::{Topology, TopologyBuilder};

/// The server a topology would run (found as [`Topology::start`] finds it), from its
/// `--version`, without starting anything: for a test that needs a newer server to say so and
/// skip at once.
///
/// # Errors
///
/// [`Error::MissingBinary`] when no server is found; [`Error::Io`] when its version cannot be
/// read.
pub fn server_version() -> Result<ServerVersion, Error> {
    process::Binaries::find().map(|binaries| binaries.version)
}
