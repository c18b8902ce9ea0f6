//! The default checkout (`Validation::Adaptive`): no round trip for a master connection that
//! answered within the window while the watcher hears a majority of the sentinels, and what
//! the round trip protected stays protected. Each test here fails if the window were skipped
//! blindly (the round trip never asked, or asked only while one subscription is open).

use std::time::{Duration, Instant};

use r2d2_redis_sentinel::{
    CheckoutMode, Error, Event, NodeAddr, ReplicaOptions, SentinelPool, Validation,
    redis::{self, Commands},
    testkit::Topology,
};
use support::{client_id, direct, eventually, init_logging, is_master, last_command};

/// The default window.
const WINDOW: Duration = Duration::from_millis(500);

/// Waits until master checkouts are in `mode`.
fn until_mode(pool: &SentinelPool, mode: CheckoutMode) {
    eventually(
        &format!("checkouts in mode {mode:?}"),
        Duration::from_secs(10),
        || (pool.stats().checkout == mode).then_some(()),
    );
}

/// Checks out one connection, writes through it and returns it; then checks it out again
/// and returns the last command the master saw on it: `set` when the checkout asked nothing,
/// `role` when it asked `PING`+`ROLE`.
fn checkout_asks(pool: &SentinelPool, master: &NodeAddr) -> String {
    let mut conn = pool.get().unwrap();
    let id = client_id(&mut conn);
    let _: () = conn.set("k", "v").unwrap();
    drop(conn);
    let mut conn = pool.get().unwrap();
    let command = last_command(master, id);
    assert_eq!(
        client_id(&mut conn),
        id,
        "the pool of one kept its connection"
    );
    command
}

fn mode_events(events: &r2d2_redis_sentinel::Events) -> Vec<Event> {
    events
        .try_iter()
        .filter(|e| matches!(e, Event::CheckoutMode { .. }))
        .collect()
}

#[test]
fn the_default_skips_the_round_trip_only_while_the_watcher_hears_a_majority() {
    init_logging();
    let mut topology = Topology::start().unwrap();
    let master = topology.master().unwrap();
    let pool = topology.pool_builder().max_size(1).build().unwrap();
    let events = pool.events();
    until_mode(&pool, CheckoutMode::SkipRecent);
    assert_eq!(
        checkout_asks(&pool, &master),
        "set",
        "used moments ago: no round trip"
    );

    // Two of three sentinels frozen: the watcher keeps one subscription, which is not a
    // majority. Within about 2 s the default asks again, by itself.
    let sentinels = topology.sentinel_addrs();
    let frozen_at = Instant::now();
    for sentinel in &sentinels[..2] {
        topology.pause(sentinel).unwrap();
    }
    until_mode(&pool, CheckoutMode::RoundTrip);
    let took = frozen_at.elapsed();
    assert!(took < Duration::from_secs(4), "noticed after {took:?}");
    assert_eq!(checkout_asks(&pool, &master), "role");
    let mut told = Vec::new();
    eventually("an event saying so", Duration::from_secs(5), || {
        told.extend(mode_events(&events));
        told.iter()
            .any(|e| {
                matches!(
                    e,
                    Event::CheckoutMode { mode: CheckoutMode::RoundTrip, heard, known: 3 }
                        if *heard < 2
                )
            })
            .then_some(())
    });

    // Heard again: round trips are skipped again, and the events say so.
    for sentinel in &sentinels[..2] {
        topology.resume(sentinel).unwrap();
    }
    until_mode(&pool, CheckoutMode::SkipRecent);
    assert_eq!(checkout_asks(&pool, &master), "set");
    eventually("an event saying so", Duration::from_secs(5), || {
        mode_events(&events)
            .iter()
            .any(|e| {
                matches!(
                    e,
                    Event::CheckoutMode {
                        mode: CheckoutMode::SkipRecent,
                        ..
                    }
                )
            })
            .then_some(())
    });

    // No watcher, no trust.
    pool.stop_watcher();
    assert_eq!(pool.stats().checkout, CheckoutMode::RoundTrip);
    assert_eq!(checkout_asks(&pool, &master), "role");
}

#[test]
fn ping_role_and_off_are_what_they_say() {
    init_logging();
    let topology = Topology::start().unwrap();
    let master = topology.master().unwrap();
    let checked = topology
        .pool_builder()
        .max_size(1)
        .validation(Validation::PingRole)
        .build()
        .unwrap();
    assert_eq!(checked.stats().checkout, CheckoutMode::RoundTrip);
    assert_eq!(checkout_asks(&checked, &master), "role");
    let unchecked = topology
        .pool_builder()
        .max_size(1)
        .validation(Validation::Off)
        .watcher(false)
        .build()
        .unwrap();
    assert_eq!(unchecked.stats().checkout, CheckoutMode::NoRoundTrip);
    assert_eq!(checkout_asks(&unchecked, &master), "set");
    // A window of zero is refused, with the option named.
    let err = topology
        .pool_builder()
        .validation(Validation::Adaptive {
            window: Duration::ZERO,
        })
        .build()
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::InvalidConfig {
                option: "validation",
                ..
            }
        ),
        "{err:?}"
    );
}

/// An operator demotes the master with `REPLICAOF`, behind the sentinels' back, while the
/// watcher is live. Within the window a write may reach it: it is refused (`READONLY`),
/// applied nowhere, and `with_retry` runs it again where the master is; past the window, no
/// checkout hands the node out.
#[test]
fn a_master_demoted_behind_the_sentinels_back_is_refused_within_the_window_and_not_handed_out_after_it()
 {
    init_logging();
    let topology = Topology::start().unwrap();
    let master = topology.master().unwrap();
    let replica = support::replica(&topology, &master);
    let pool = topology
        .pool_builder()
        .max_size(2)
        .min_idle(Some(2))
        .checkout_timeout(Duration::from_secs(1))
        .build()
        .unwrap();
    support::wait_idle(&pool, 2);
    let warm = || {
        until_mode(&pool, CheckoutMode::SkipRecent);
        let mut held: Vec<_> = (0..2).map(|_| pool.get().unwrap()).collect();
        for conn in &mut held {
            let _: () = conn.set("warm", 1).unwrap();
        }
    };

    // Past the window, no connection to the node is handed out, though none wrote to it:
    // each would be checked.
    warm();
    support::demote(&master, &replica);
    std::thread::sleep(WINDOW);
    support::assert_refused_as_replica(pool.get());

    // Within the window: handed out unchecked, and the write is refused, applied nowhere.
    support::promote(&master);
    eventually(
        "the pool back on the master",
        Duration::from_secs(10),
        || pool.get().ok().map(|_| ()),
    );
    warm();
    let generation = pool.generation();
    support::demote(&master, &replica);
    let demoted_at = Instant::now();
    let mut conn = pool.get().unwrap();
    let err = conn.set::<_, _, ()>("k", "within").unwrap_err();
    assert!(
        demoted_at.elapsed() < WINDOW,
        "the machine was too slow to test the window"
    );
    assert_eq!(err.code(), Some("READONLY"), "{err:?}");
    drop(conn);
    assert!(
        pool.generation() > generation,
        "the READONLY retired the node"
    );
    for node in [&master, &replica] {
        let value: Option<String> = direct(node).get("k").unwrap();
        assert_eq!(value, None, "the refused write is on {node}");
    }

    // The operator puts the node back while a with_retry write waits: it lands there, once.
    let operator = std::thread::spawn({
        let master = master.clone();
        move || {
            std::thread::sleep(Duration::from_millis(300));
            support::promote(&master);
        }
    });
    let written: i64 = pool.with_retry(|c| c.incr("counter", 1)).unwrap();
    operator.join().unwrap();
    assert_eq!(written, 1);
    let mut conn = pool.get().unwrap();
    assert!(is_master(&mut conn));
    assert_eq!(*conn.addr(), master);
    let on_master: i64 = direct(&master).get("counter").unwrap();
    assert_eq!(on_master, 1);
}

/// Every pooled connection dies inside its window (the server closed them: a crash, a
/// `CLIENT KILL`). The first use surfaces it: a read is retried as not applied by
/// `with_retry`; and the break makes the next checkouts ask `PING`+`ROLE`, so the dead
/// siblings are caught at checkout instead of failing a caller each.
#[test]
fn connections_that_died_inside_the_window_cost_one_error_not_one_per_connection() {
    init_logging();
    let topology = Topology::start().unwrap();
    let master = topology.master().unwrap();
    let pool = topology
        .pool_builder()
        .max_size(3)
        .min_idle(Some(3))
        .build()
        .unwrap();
    support::wait_idle(&pool, 3);
    let kill_all_warm = || {
        // Three connections that answered moments ago, in a pool that trusts its watcher (a
        // checkout that found a dead connection distrusts it for a window).
        let ids = eventually("three warm connections", Duration::from_secs(10), || {
            if pool.stats().checkout != CheckoutMode::SkipRecent {
                return None;
            }
            let mut held: Vec<_> = (0..3).map(|_| pool.get().unwrap()).collect();
            let ids: Vec<i64> = held.iter_mut().map(|c| client_id(c)).collect();
            drop(held);
            (pool.stats().checkout == CheckoutMode::SkipRecent).then_some(ids)
        });
        for id in ids {
            let killed: i64 = redis::cmd("CLIENT")
                .arg("KILL")
                .arg("ID")
                .arg(id)
                .query(&mut direct(&master))
                .unwrap();
            assert_eq!(killed, 1);
        }
    };

    // with_retry: a read on a dead connection is not applied, and is run again.
    kill_all_warm();
    let before = pool.stats().retries;
    let value: Option<String> = pool.with_retry(|c| c.get("absent")).unwrap();
    assert_eq!(value, None);
    let after = pool.stats().retries;
    assert_eq!(
        after.retried_unapplied - before.retried_unapplied,
        1,
        "one attempt met a dead connection, the next a checked one: {after:?}"
    );

    // Plain get(): the first caller meets the dead connection; the next ones do not.
    kill_all_warm();
    let err = pool
        .get()
        .unwrap()
        .get::<_, Option<String>>("absent")
        .unwrap_err();
    assert!(err.is_connection_dropped() || err.is_io_error(), "{err:?}");
    for _ in 0..3 {
        let mut conn = pool.get().unwrap();
        let _: () = conn.set("k", "v").expect("a checked connection");
    }
}

/// A replica pool keeps `PING`+`ROLE` whatever the default: a replica promoted by hand
/// (nothing Sentinel announces) is not handed out for reads, even moments after it answered.
#[test]
fn replica_pools_check_every_checkout() {
    init_logging();
    let topology = Topology::start().unwrap();
    let pool = topology
        .pool_builder()
        .checkout_timeout(Duration::from_secs(1))
        .build()
        .unwrap();
    let reads = pool
        .replica_pool(ReplicaOptions::default().max_size(1))
        .unwrap();
    until_mode(&pool, CheckoutMode::SkipRecent);
    let mut conn = reads.get().unwrap();
    let _: Option<String> = conn.get("k").unwrap();
    let promoted = conn.addr().clone();
    drop(conn);
    support::promote(&promoted);
    match reads.get() {
        Ok(conn) => assert_ne!(*conn.addr(), promoted, "a master was handed out for reads"),
        Err(err) => assert!(
            matches!(err, Error::CheckoutTimeout { .. }),
            "expected another replica or a clear timeout, got {err:?}"
        ),
    }
}
