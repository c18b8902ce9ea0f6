//! Replica pools: reads spread over the healthy replicas, a hung or down replica is skipped,
//! no replica means a clear error or the master when allowed, failovers move the read set,
//! and a write sent to a replica is refused at once without moving anything.

use std::{collections::BTreeSet, time::Duration};

use r2d2_redis_sentinel::{
    Error, NodeAddr, ReplicaOptions, ReplicaSelection, SentinelPool,
    redis::{self, Commands},
    testkit::Topology,
};
use support::{direct, eventually, init_logging, wait_flagged};

fn pool(topology: &Topology) -> SentinelPool {
    topology
        .pool_builder()
        .max_size(4)
        .read_timeout(Duration::from_millis(500))
        .checkout_timeout(Duration::from_secs(3))
        .build()
        .unwrap()
}

fn replicas_of(topology: &Topology, master: &NodeAddr) -> BTreeSet<NodeAddr> {
    topology
        .data_addrs()
        .into_iter()
        .filter(|a| a != master)
        .collect()
}

/// The nodes behind `count` connections checked out at once.
fn nodes_behind(reads: &SentinelPool, count: usize) -> BTreeSet<NodeAddr> {
    let held: Vec<_> = (0..count).map(|_| reads.get().unwrap()).collect();
    held.iter().map(|c| c.addr().clone()).collect()
}

#[test]
fn reads_spread_over_both_replicas_and_never_reach_the_master() {
    init_logging();
    let topology = Topology::start().unwrap();
    let pool = pool(&topology);
    let master = topology.master().unwrap();
    for selection in [ReplicaSelection::RoundRobin, ReplicaSelection::Random] {
        // Round robin alternates: 4 connections reach both. Random: 24 all drawn from one
        // replica would happen once in 2^23 runs.
        let count = if selection == ReplicaSelection::RoundRobin {
            4
        } else {
            24
        };
        let reads = pool
            .replica_pool(
                ReplicaOptions::default()
                    .selection(selection)
                    .max_size(count),
            )
            .unwrap();
        let nodes = nodes_behind(&reads, count as usize);
        assert!(!nodes.contains(&master), "{selection:?}: {nodes:?}");
        assert_eq!(
            nodes,
            replicas_of(&topology, &master),
            "{selection:?} reaches both replicas"
        );
    }
    // A write made on the master is read back from a replica.
    let _: () = pool.with_retry(|c| c.set("k", "v")).unwrap();
    let reads = pool.replica_pool(ReplicaOptions::default()).unwrap();
    let value = eventually("the write to replicate", Duration::from_secs(5), || {
        reads
            .with_retry(|c| c.get::<_, Option<String>>("k"))
            .unwrap()
    });
    assert_eq!(value, "v");
}

#[test]
fn a_write_to_the_replica_pool_is_refused_at_once_and_moves_nothing() {
    init_logging();
    let topology = Topology::start().unwrap();
    let pool = pool(&topology);
    let reads = pool.replica_pool(ReplicaOptions::default()).unwrap();
    let generation = pool.generation();
    let err = reads
        .with_retry(|c| c.set::<_, _, ()>("k", "v"))
        .unwrap_err();
    let Error::Redis(source) = &err else {
        panic!("expected READONLY, returned at once: {err:?}");
    };
    assert_eq!(source.code(), Some("READONLY"), "{err}");
    assert_eq!(
        pool.generation(),
        generation,
        "a replica's READONLY is no failover"
    );
    // The master pool writes on.
    let _: () = pool.with_retry(|c| c.set("k", "v")).unwrap();
}

#[test]
fn a_hung_replica_is_skipped_and_comes_back() {
    init_logging();
    let mut topology = Topology::start().unwrap();
    let pool = pool(&topology);
    let master = topology.master().unwrap();
    let replicas: Vec<NodeAddr> = replicas_of(&topology, &master).into_iter().collect();
    let reads = pool.replica_pool(ReplicaOptions::default()).unwrap();
    topology.pause(&replicas[0]).unwrap();
    // Fresh connections only: a pooled one to the hung replica fails its check and is
    // replaced; every read is answered, by the other replica.
    for _ in 0..8 {
        let addr = reads
            .with_retry(|c| {
                let _: Option<String> = c.get("k")?;
                Ok(c.addr().clone())
            })
            .unwrap();
        assert_eq!(addr, replicas[1]);
    }
    topology.resume(&replicas[0]).unwrap();
    // Whether or not the sentinels saw it down (a short pause leaves no trace in what they
    // publish), the connections that went to the other replica instead are replaced, and the
    // replica gets its share back.
    wait_flagged(&topology, &replicas[..1], false, Duration::from_secs(20));
    eventually(
        "the replica to serve reads again",
        Duration::from_secs(20),
        || nodes_behind(&reads, 4).contains(&replicas[0]).then_some(()),
    );
}

#[test]
fn a_replica_cut_off_from_its_master_gets_no_connection_until_it_is_linked_again() {
    init_logging();
    let topology = Topology::start().unwrap();
    let pool = pool(&topology);
    let master = topology.master().unwrap();
    let replicas: Vec<NodeAddr> = replicas_of(&topology, &master).into_iter().collect();
    // The replica's link fails its handshake from now on (the master has no password, so
    // AUTH is refused): it still answers, and the sentinels learn of the broken link only at
    // their next INFO, up to 10 s later. Its data would age from here.
    let mut cut = direct(&replicas[0]);
    let _: () = redis::cmd("CONFIG")
        .arg(&["SET", "masterauth", "not-the-password"])
        .query(&mut cut)
        .unwrap();
    let _: i64 = redis::cmd("CLIENT")
        .arg(&["KILL", "TYPE", "master"])
        .query(&mut cut)
        .unwrap();
    let reads = pool.replica_pool(ReplicaOptions::default()).unwrap();
    assert_eq!(
        nodes_behind(&reads, 4),
        BTreeSet::from([replicas[1].clone()]),
        "no connection goes to a replica whose ROLE says it is not linked"
    );
    // Linked again, it gets its share back.
    let _: () = redis::cmd("CONFIG")
        .arg(&["SET", "masterauth", ""])
        .query(&mut cut)
        .unwrap();
    eventually(
        "the relinked replica to serve reads again",
        Duration::from_secs(30),
        || nodes_behind(&reads, 4).contains(&replicas[0]).then_some(()),
    );
}

#[test]
fn with_no_healthy_replica_reads_fail_clearly_or_go_to_the_master() {
    init_logging();
    let mut topology = Topology::start().unwrap();
    let pool = pool(&topology);
    let master = topology.master().unwrap();
    let replicas: Vec<NodeAddr> = replicas_of(&topology, &master).into_iter().collect();
    for replica in &replicas {
        topology.pause(replica).unwrap();
    }
    wait_flagged(&topology, &replicas, true, Duration::from_secs(20));

    let strict = pool.replica_pool(ReplicaOptions::default()).unwrap();
    let err = strict.get().unwrap_err();
    let Error::CheckoutTimeout { cause, .. } = &err else {
        panic!("{err:?}");
    };
    assert!(
        matches!(**cause, Error::NoHealthyReplica { .. }),
        "{cause:?}"
    );
    assert!(err.to_string().contains("fallback_to_master"), "{err}");

    let lenient = pool
        .replica_pool(ReplicaOptions::default().fallback_to_master(true))
        .unwrap();
    assert_eq!(*lenient.get().unwrap().addr(), master);
    for replica in &replicas {
        topology.resume(replica).unwrap();
    }
}

#[test]
fn after_a_failover_reads_go_to_the_new_masters_replicas() {
    init_logging();
    let topology = Topology::start().unwrap();
    let pool = pool(&topology);
    let reads = pool.replica_pool(ReplicaOptions::default()).unwrap();
    let old = topology.master().unwrap();
    assert!(!nodes_behind(&reads, 4).contains(&old));
    let new = topology.failover().unwrap();
    // The promoted node leaves the read set at once; the old master joins it once Sentinel
    // has made it a replica of the new one.
    assert!(!nodes_behind(&reads, 4).contains(&new));
    eventually(
        "the old master to serve reads as a replica",
        Duration::from_secs(30),
        || {
            let nodes = nodes_behind(&reads, 4);
            assert!(!nodes.contains(&new), "{nodes:?}");
            (nodes == replicas_of(&topology, &new)).then_some(())
        },
    );
}

/// A fresh replica pool of 2 that skips replicas more than 64 KiB behind the master: far more
/// than the sentinels' hello messages (replicated PUBLISHes of a few hundred bytes) add between
/// two acknowledgements, far less than what [`refused_for_lag`] writes. Fresh each time:
/// connections already open are not checked again.
fn lag_bounded(pool: &SentinelPool) -> SentinelPool {
    pool.replica_pool(
        ReplicaOptions::default()
            .max_lag_bytes(64 << 10)
            .max_size(2),
    )
    .unwrap()
}

/// The nodes behind up to two connections of a fresh [`lag_bounded`] pool held at once.
fn serving_within_lag(pool: &SentinelPool) -> BTreeSet<NodeAddr> {
    let reads = lag_bounded(pool);
    let held: Vec<_> = (0..2).map_while(|_| reads.get().ok()).collect();
    held.iter().map(|c| c.addr().clone()).collect()
}

/// Freezes the replicas (they acknowledge nothing), writes 256 KiB on the master, which leaves
/// both at least that far behind, checks out of a [`lag_bounded`] pool, and thaws them: the
/// checkout's error.
fn refused_for_lag(
    topology: &mut Topology,
    pool: &SentinelPool,
    master: &NodeAddr,
    replicas: &BTreeSet<NodeAddr>,
) -> Error {
    for replica in replicas {
        topology.pause(replica).unwrap();
    }
    let _: () = direct(master).set("big", "x".repeat(256 << 10)).unwrap();
    let err = lag_bounded(pool).get().map(|_| ()).unwrap_err();
    for replica in replicas {
        topology.resume(replica).unwrap();
    }
    err
}

/// What each of the two replicas was refused for, from a checkout's error.
fn refusals(err: &Error) -> Vec<String> {
    let Error::CheckoutTimeout { cause, .. } = err else {
        panic!("{err:?}");
    };
    let Error::NoHealthyReplica { tried, .. } = &**cause else {
        panic!("{cause:?}");
    };
    assert_eq!(tried.len(), 2, "{tried:?}");
    tried.clone()
}

#[test]
fn replicas_that_trail_the_master_by_more_than_max_lag_get_no_connection() {
    init_logging();
    // Sentinels that take 10 s to call a node down: the replicas are frozen below for less
    // than that, and stay listed as healthy all along.
    let mut topology = Topology::builder()
        .down_after(Duration::from_secs(10))
        .start()
        .unwrap();
    let pool = pool(&topology);
    let master = topology.master().unwrap();
    let replicas = replicas_of(&topology, &master);
    eventually("both replicas to serve", Duration::from_secs(30), || {
        (serving_within_lag(&pool) == replicas).then_some(())
    });
    let err = refused_for_lag(&mut topology, &pool, &master, &replicas);
    let tried = refusals(&err);
    assert!(
        tried.iter().all(|t| t.contains("behind the master")),
        "{tried:?}"
    );
    // Thawed, they catch up and acknowledge within a second: both serve again.
    eventually(
        "both replicas to catch up and serve again",
        Duration::from_secs(30),
        || (serving_within_lag(&pool) == replicas).then_some(()),
    );
}

/// Item: the lag bound holds when the pool has no master recorded (after an invalidation: it
/// looks the master up) and when the master cannot be asked (frozen: no replica gets a
/// connection), where it used to let reads reach replicas of any lag.
#[test]
fn a_lag_bound_holds_without_a_recorded_master_and_with_a_silent_one() {
    init_logging();
    let mut topology = Topology::builder()
        .down_after(Duration::from_secs(10))
        .start()
        .unwrap();
    // No idle connection to refill after the invalidation below, so that no connect records
    // the master again before the lag check.
    let pool = topology
        .pool_builder()
        .max_size(4)
        .min_idle(Some(0))
        .read_timeout(Duration::from_millis(500))
        .checkout_timeout(Duration::from_secs(3))
        .build()
        .unwrap();
    let master = topology.master().unwrap();
    let replicas = replicas_of(&topology, &master);

    // No master recorded: the lag check looks it up.
    pool.invalidate();
    assert_eq!(pool.master(), None);
    let err = refused_for_lag(&mut topology, &pool, &master, &replicas);
    let tried = refusals(&err);
    assert!(
        tried.iter().all(|t| t.contains("behind the master")),
        "{tried:?}"
    );
    eventually(
        "both replicas to serve again",
        Duration::from_secs(30),
        || (serving_within_lag(&pool) == replicas).then_some(()),
    );

    // The master frozen: no lag can be known, and no replica gets a connection...
    topology.pause(&master).unwrap();
    let err = lag_bounded(&pool).get().map(|_| ()).unwrap_err();
    // ...while a pool without the bound reads from them.
    let unbounded = pool
        .replica_pool(ReplicaOptions::default().max_size(2))
        .unwrap();
    let served = unbounded.get().map(|c| c.addr().clone());
    topology.resume(&master).unwrap();
    let tried = refusals(&err);
    assert!(
        tried.iter().all(|t| t.contains("lag is unknown")),
        "{tried:?}"
    );
    assert!(replicas.contains(&served.unwrap()));
}

/// Item: what a failover of the master does to reads. Sentinel closes the client connections
/// of every node it reconfigures (`CLIENT KILL TYPE normal` beside its `SLAVEOF`), replicas
/// included, so a read in flight on a replica may meet a closed connection; the pool adds no
/// refusal of its own (no `STALE`: the fence is for writes), `with_retry` repeats a read
/// that met a closed connection, the promoted node is not handed out for reads, and
/// invalidating the pool by hand still replaces every replica connection.
#[test]
fn reads_across_a_failover_are_never_refused_by_the_pool() {
    init_logging();
    let topology = Topology::start().unwrap();
    let pool = pool(&topology);
    let _: () = pool.with_retry(|c| c.set("k", "v")).unwrap();
    let reads = pool
        .replica_pool(ReplicaOptions::default().max_size(2))
        .unwrap();
    let mut held: Vec<_> = (0..2).map(|_| reads.get().unwrap()).collect();
    let generation = pool.generation();
    let new = topology.failover().unwrap();
    eventually(
        "the pool to follow the failover",
        Duration::from_secs(30),
        || (pool.master() == Some(new.clone()) && pool.generation() > generation).then_some(()),
    );
    for conn in &mut held {
        match conn.get::<_, String>("k") {
            Ok(value) => assert_eq!(value, "v"),
            // Closed by Sentinel: never refused by the pool.
            Err(err) => assert!(
                err.is_io_error() || err.is_unrecoverable_error(),
                "a read on {} was refused: {err}",
                conn.addr()
            ),
        }
    }
    drop(held);
    let value: String = reads.with_retry(|c| c.get("k")).unwrap();
    assert_eq!(value, "v");
    let again: Vec<_> = (0..2).filter_map(|_| reads.get().ok()).collect();
    assert!(!again.is_empty());
    assert!(again.iter().all(|c| *c.addr() != new), "{again:?}");
    drop(again);

    // By hand: every replica connection goes. The replicas resync with the new master first
    // (Redis 6.0 takes seconds): until then none may serve.
    topology.wait_settled().unwrap();
    let connections = |what: &str| -> BTreeSet<i64> {
        eventually(what, Duration::from_secs(30), || {
            let mut held: Vec<_> = (0..2).filter_map(|_| reads.get().ok()).collect();
            let ids: BTreeSet<i64> = held.iter_mut().map(|c| support::client_id(c)).collect();
            (!ids.is_empty()).then_some(ids)
        })
    };
    let ids = connections("replica connections");
    pool.invalidate();
    let after = connections("replica connections after the invalidation");
    assert!(ids.is_disjoint(&after), "{ids:?} {after:?}");
}
