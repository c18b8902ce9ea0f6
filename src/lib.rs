#![doc = include_str!("../README.md")]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod backoff;
mod cluster;
mod config;
mod connection;
mod durable;
mod error;
mod event;
#[cfg(fuzzing)]
#[doc(hidden)]
pub mod fuzzing;
mod outcome;
mod shared;
#[doc = include_str!("../docs/guide.md")]
pub mod guide {}
mod manager;
mod metrics;
mod node;
mod pool;
mod replica;
mod reply;
mod retry;
mod secret;
mod sentinel;
mod standalone;
mod stats;
mod subscriber;
#[cfg(feature = "testkit")]
#[cfg_attr(docsrs, doc(cfg(feature = "testkit")))]
pub mod testkit;
mod watcher;

pub use cluster::{ClusterConnection, ClusterPool, ClusterStats, PrimaryStats};
#[cfg(feature = "serde")]
#[cfg_attr(docsrs, doc(cfg(feature = "serde")))]
pub use config::PoolConfig;
#[cfg(feature = "tls")]
#[cfg_attr(docsrs, doc(cfg(feature = "tls")))]
pub use config::TlsOptions;
pub use config::{Builder, Cluster, FenceResume, Sentinel, Standalone, Validation};
pub use connection::Connection;
pub use durable::Durability;
pub use error::{Error, SentinelFailure};
pub use event::{Event, Events, FailoverSource, FenceRelease};
pub use manager::SentinelManager;
pub use node::NodeAddr;
pub use pool::{PooledConnection, SentinelPool};
pub use replica::{ReplicaOptions, ReplicaSelection};
pub use retry::RetryPolicy;
pub use secret::Secret;
pub use stats::{CheckoutMode, RetryStats, Stats, WatcherState};
pub use subscriber::Subscriber;

pub use r2d2;
pub use redis;
