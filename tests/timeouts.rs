//! Each timeout bounds the whole operation it names: a hung node or sentinel costs the
//! timeout the user set, not a multiple of it. A hung node here is a real one frozen with
//! SIGSTOP, or a listener that accepts and never answers (the kernel accepts for both).
//!
//! The bounds have slack for a loaded machine; what they catch is a wait of twice the
//! timeout or more (one timeout per reply of a pipelined request).

use std::time::{Duration, Instant};

use r2d2_redis_sentinel::{Error, SentinelPool, testkit::Topology};
use support::{HungServer, init_logging};

const SLACK: Duration = Duration::from_millis(600);

#[test]
fn a_hung_sentinel_costs_sentinel_timeout_once_even_with_a_password() {
    init_logging();
    let hung = HungServer::start();
    let timeout = Duration::from_secs(1);
    let started = Instant::now();
    let result = SentinelPool::builder([hung.url()], "mymaster")
        .sentinel_timeout(timeout)
        .sentinel_password("secret")
        .checkout_timeout(Duration::from_millis(100))
        .build();
    let waited = started.elapsed();
    let err = result.unwrap_err();
    assert!(matches!(err, Error::SentinelsUnreachable { .. }), "{err:?}");
    assert!(
        waited < timeout + SLACK,
        "asking one hung sentinel took {waited:?}"
    );
}

#[test]
fn checkout_validation_of_a_hung_master_costs_read_timeout_once() {
    init_logging();
    let mut topology = Topology::start().unwrap();
    let master = topology.master().unwrap();
    let timeout = Duration::from_secs(1);
    let pool = topology
        .pool_builder()
        .max_size(1)
        .watcher(false)
        .checkout_timeout(timeout)
        .read_timeout(timeout)
        .build()
        .unwrap();
    drop(pool.get().unwrap());

    topology.pause(&master).unwrap();
    let started = Instant::now();
    let result = pool.get();
    let waited = started.elapsed();
    topology.resume(&master).unwrap();
    assert!(result.is_err());
    // PING and ROLE are two replies: one read timeout each would be twice the timeout.
    assert!(waited < timeout + SLACK, "get waited {waited:?}");
}

#[test]
fn build_against_a_hung_master_ends_within_connection_timeout() {
    init_logging();
    let mut topology = Topology::start().unwrap();
    let master = topology.master().unwrap();
    topology.pause(&master).unwrap();
    let timeout = Duration::from_secs(1);
    let started = Instant::now();
    let result = topology
        .pool_builder()
        .watcher(false)
        .checkout_timeout(timeout)
        .connect_timeout(timeout)
        .read_timeout(timeout)
        .build();
    let waited = started.elapsed();
    topology.resume(&master).unwrap();
    let err = result.unwrap_err();
    assert!(err.is_timeout(), "{err:?}");
    assert!(waited < timeout + SLACK, "build waited {waited:?}");
}
