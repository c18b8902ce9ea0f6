//! Checkouts reach the master, never a stale or demoted node.

use std::time::Duration;

use r2d2_redis_sentinel::{WatcherState, redis::Commands, testkit::Topology};
use support::{client_id, direct, init_logging, is_master, last_command};

#[test]
fn set_and_get_through_the_pool_reach_the_master() {
    init_logging();
    let topology = Topology::start().unwrap();
    let master = topology.master().unwrap();
    let pool = topology.pool_builder().max_size(4).build().unwrap();

    let mut conn = pool.get().unwrap();
    let _: () = conn.set("greeting", "hello").unwrap();
    let value: String = conn.get("greeting").unwrap();
    assert_eq!(value, "hello");
    assert_eq!(*conn.addr(), master);
    assert!(is_master(&mut conn));
    assert_eq!(pool.master(), Some(master.clone()));

    // The write really is on the master, not only visible through the pool.
    let on_master: String = direct(&master).get("greeting").unwrap();
    assert_eq!(on_master, "hello");
}

#[test]
fn idle_connections_born_before_an_invalidation_are_never_handed_out() {
    init_logging();
    let topology = Topology::start().unwrap();
    let pool = topology
        .pool_builder()
        .max_size(4)
        .min_idle(Some(4))
        .build()
        .unwrap();
    support::wait_idle(&pool, 4);
    let old_ids: Vec<i64> = {
        let mut conns: Vec<_> = (0..4).map(|_| pool.get().unwrap()).collect();
        conns.iter_mut().map(|c| client_id(c)).collect()
    };
    // One connection is checked out across the invalidation, and returned after it.
    let mut held = pool.get().unwrap();
    let held_id = client_id(&mut held);
    assert_eq!(held.generation(), 0);

    assert_eq!(pool.invalidate(), 1);
    drop(held);

    let mut conns: Vec<_> = (0..4).map(|_| pool.get().unwrap()).collect();
    for conn in &mut conns {
        assert_eq!(conn.generation(), 1);
        let id = client_id(conn);
        assert!(
            !old_ids.contains(&id),
            "connection {id} from generation 0 was handed out"
        );
        assert_ne!(
            id, held_id,
            "the connection held across the invalidation came back"
        );
    }
}

#[test]
fn a_node_that_answers_role_as_replica_is_never_handed_out() {
    init_logging();
    let topology = Topology::start().unwrap();
    let master = topology.master().unwrap();
    let replica = support::replica(&topology, &master);
    // PING+ROLE at every checkout (the default skips it within a window: tests/adaptive.rs).
    let pool = topology
        .pool_builder()
        .max_size(2)
        .min_idle(Some(2))
        .checkout_timeout(Duration::from_secs(1))
        .validation(r2d2_redis_sentinel::Validation::PingRole)
        .build()
        .unwrap();
    support::wait_idle(&pool, 2);

    // Demote the master behind the sentinels' back: the pooled connections, and the address
    // the sentinels still give, now lead to a replica.
    support::demote(&master, &replica);

    support::assert_refused_as_replica(pool.get());
    assert!(
        pool.generation() >= 1,
        "the demotion did not invalidate the pool"
    );

    // Promote it back: the pool recovers by itself.
    support::promote(&master);
    let mut conn = pool.get().unwrap();
    assert!(is_master(&mut conn));
}

#[test]
fn ping_role_validation_checks_every_checkout() {
    use r2d2_redis_sentinel::Validation;
    init_logging();
    let topology = Topology::start().unwrap();
    let master = topology.master().unwrap();
    let pool = topology
        .pool_builder()
        .max_size(1)
        .validation(Validation::PingRole)
        .build()
        .unwrap();
    let mut conn = pool.get().unwrap();
    let id = client_id(&mut conn);
    let _: () = conn.set("k", "v").unwrap();
    drop(conn);
    let _conn = pool.get().unwrap();
    assert_eq!(last_command(&master, id), "role");
}

#[test]
fn a_readonly_reply_invalidates_the_pool_when_the_connection_returns() {
    use r2d2_redis_sentinel::{Event, redis::RedisError};
    init_logging();
    let topology = Topology::start().unwrap();
    let master = topology.master().unwrap();
    let replica = support::replica(&topology, &master);
    // One connection, no watcher: nothing but the returned connection can invalidate first.
    let pool = topology
        .pool_builder()
        .max_size(1)
        .watcher(false)
        .build()
        .unwrap();
    let events = pool.events();
    let mut conn = pool.get().unwrap();

    support::demote(&master, &replica);
    let err: RedisError = conn.set::<_, _, ()>("k", "v").unwrap_err();
    assert_eq!(err.code(), Some("READONLY"));
    assert_eq!(
        pool.generation(),
        0,
        "nothing is invalidated while the caller holds it"
    );
    drop(conn);

    assert!(pool.generation() >= 1);
    let reason = events
        .try_iter()
        .find_map(|e| match e {
            Event::Invalidated { reason, .. } => Some(reason),
            _ => None,
        })
        .expect("an Invalidated event");
    assert!(reason.contains("READONLY"), "{reason}");
}

/// Item 16: when the generation moves, idle connections of the old one are closed at once,
/// not when r2d2 happens to reach them (it hands out the newest first), and the pool refills
/// its idle connections in the new generation.
#[test]
fn idle_connections_of_an_old_generation_are_closed_when_it_ends() {
    init_logging();
    let topology = Topology::start().unwrap();
    let master = topology.master().unwrap();
    let pool = topology
        .pool_builder()
        .max_size(4)
        .min_idle(Some(4))
        .build()
        .unwrap();
    support::wait_idle(&pool, 4);
    let old_ids: Vec<i64> = {
        let mut conns: Vec<_> = (0..4).map(|_| pool.get().unwrap()).collect();
        conns.iter_mut().map(|c| client_id(c)).collect()
    };
    pool.invalidate();
    let open_ids = || -> Vec<i64> {
        let list: String = r2d2_redis_sentinel::redis::cmd("CLIENT")
            .arg("LIST")
            .query(&mut direct(&master))
            .unwrap();
        list.lines()
            .filter_map(|l| l.split(' ').find_map(|f| f.strip_prefix("id=")))
            .filter_map(|id| id.parse().ok())
            .collect()
    };
    support::eventually(
        "the old generation's idle connections to close",
        Duration::from_secs(3),
        || (!open_ids().iter().any(|id| old_ids.contains(id))).then_some(()),
    );
    support::wait_idle(&pool, 4);
}

/// `stats()` right after `build()` shows the pool's first connection and a live watcher, not
/// zeroes that the background filling and subscribing have not reached yet.
#[test]
fn stats_right_after_build_show_what_the_pool_has() {
    init_logging();
    let topology = Topology::start().unwrap();
    let pool = topology.pool_builder().max_size(4).build().unwrap();
    let stats = pool.stats();
    assert!(stats.connections >= 1, "{stats}");
    assert_eq!(stats.sentinels.len(), 3, "{stats}");
    assert!(
        matches!(&stats.watcher, WatcherState::Running { subscribed } if !subscribed.is_empty()),
        "{stats}"
    );
}
