//! After a failover, new checkouts reach the new master, with the watcher off: the pool finds
//! out from errors and `ROLE` checks alone. (tests/watcher.rs covers the watcher.)

use std::time::Duration;

use r2d2_redis_sentinel::{SentinelPool, redis::Commands, testkit::Topology};
use support::{eventually, init_logging, is_master};

/// Checks out connections until one reaches `expected`; every connection handed out on the
/// way must be to a master, or to `old` in the instant Sentinel demotes it (between the
/// checkout's `ROLE` and this test's).
fn wait_for_checkouts_to_reach(
    pool: &SentinelPool,
    old: &r2d2_redis_sentinel::NodeAddr,
    expected: &r2d2_redis_sentinel::NodeAddr,
) {
    eventually(
        &format!("a checkout to reach {expected}"),
        Duration::from_secs(40),
        || {
            let mut conn = pool.get().ok()?;
            assert!(
                is_master(&mut conn) || conn.addr() == old,
                "a connection to {}, not a master, was handed out",
                conn.addr()
            );
            let _: () = conn.set("probe", 1).ok()?;
            (*conn.addr() == *expected).then_some(())
        },
    );
}

#[test]
fn checkouts_follow_a_manual_failover() {
    init_logging();
    let topology = Topology::start().unwrap();
    let old = topology.master().unwrap();
    let pool = topology
        .pool_builder()
        .max_size(4)
        .watcher(false)
        .build()
        .unwrap();
    assert_eq!(*pool.get().unwrap().addr(), old);

    let new = topology.failover().unwrap();
    assert_ne!(new, old);
    // The old master answers ROLE master until the sentinels demote it, seconds later; from
    // then on, no checkout may reach it.
    wait_for_checkouts_to_reach(&pool, &old, &new);
    assert!(
        pool.generation() >= 1,
        "the demotion must have invalidated the pool"
    );
    for _ in 0..8 {
        let mut conn = pool.get().unwrap();
        assert_eq!(*conn.addr(), new);
        assert!(is_master(&mut conn));
    }
}

#[test]
fn checkouts_follow_a_master_crash() {
    init_logging();
    let mut topology = Topology::start().unwrap();
    let pool = topology
        .pool_builder()
        .max_size(4)
        .watcher(false)
        .build()
        .unwrap();
    let old = topology.kill_master().unwrap();
    let new = topology
        .wait_for_new_master(&old, Duration::from_secs(30))
        .unwrap();
    wait_for_checkouts_to_reach(&pool, &old, &new);
    let mut conn = pool.get().unwrap();
    assert_eq!(*conn.addr(), new);
    assert!(is_master(&mut conn));
}
