//! Durable mode: a write is reported done only once the replicas confirm it (`WAIT` in the
//! write's round trip); fewer confirmations are a typed error, never `Ok`; and a master crash
//! with replication lag loses no write durable mode acknowledged, where the default mode
//! loses some.

use support::fence as fence_kit;

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    thread,
    time::Duration,
};

use r2d2_redis_sentinel::{
    Durability, Error, NodeAddr, RetryPolicy, SentinelPool,
    redis::{self, Commands},
    testkit::Topology,
};
use support::{direct, eventually, init_logging};

/// A pool of 2 in durable mode `durability`, waiting 300 ms for confirmations, with a 1 s
/// retry deadline.
fn durable_with(topology: &Topology, durability: Durability) -> SentinelPool {
    topology
        .pool_builder()
        .max_size(2)
        .durability(durability.timeout(Duration::from_millis(300)))
        .retry_policy(RetryPolicy::default().deadline(Duration::from_secs(1)))
        .build()
        .unwrap()
}

fn durable(topology: &Topology) -> SentinelPool {
    durable_with(topology, Durability::all_replicas())
}

/// Asserts that a durable write of `key` is refused unsent (`NOREPLICAS`, naming `waited`,
/// the replica it waits for) and never reaches `master`.
fn refused_unsent(pool: &SentinelPool, master: &NodeAddr, key: &str, waited: &NodeAddr) {
    let err = pool.get().unwrap().set::<_, _, ()>(key, 1).unwrap_err();
    assert_eq!(err.code(), Some("NOREPLICAS"), "{err}");
    assert!(err.to_string().contains(&waited.to_string()), "{err}");
    assert!(
        !direct(master).exists::<_, bool>(key).unwrap(),
        "the refused write was sent"
    );
}

/// How many of the writes `<prefix>:<i>` acknowledged the node at `on` lacks.
fn lost(on: &NodeAddr, prefix: &str, acked: &Mutex<Vec<u64>>) -> usize {
    let mut conn = direct(on);
    acked
        .lock()
        .unwrap()
        .iter()
        .filter(|i| !conn.exists::<_, bool>(format!("{prefix}:{i}")).unwrap())
        .count()
}

#[test]
fn fewer_confirmations_than_asked_is_an_error_never_ok() {
    init_logging();
    let mut topology = Topology::start().unwrap();
    let master = topology.master().unwrap();
    let replicas = support::replicas(&topology, &master);
    let pool = durable(&topology);
    let plain = topology.pool_builder().max_size(2).build().unwrap();

    // Confirmed by both replicas before `Ok`: each has it the moment the call returns.
    let _: () = pool.with_retry(|c| c.set("durable:k", 1)).unwrap();
    for replica in &replicas {
        let value: Option<u32> = direct(replica).get("durable:k").unwrap();
        assert_eq!(value, Some(1), "on {replica}");
    }

    // Replicas frozen: the master applies each write, no replica confirms it.
    for replica in &replicas {
        topology.pause(replica).unwrap();
    }
    match pool.with_retry(|c| c.set::<_, _, ()>("durable:frozen", 1)) {
        Err(Error::NotReplicated { asked, confirmed }) => assert_eq!((asked, confirmed), (2, 0)),
        other => panic!("{other:?}"),
    }
    // Safe to repeat: retried until the deadline, the last failure said.
    match pool.with_retry_idempotent(|c| c.set::<_, _, ()>("durable:frozen", 2)) {
        Err(Error::RetriesExhausted { last, .. }) => {
            assert!(matches!(*last, Error::NotReplicated { .. }), "{last:?}")
        }
        other => panic!("{other:?}"),
    }
    // A pipeline, and an atomic one, get the error too: its WAIT follows its last command.
    let mut conn = pool.get().unwrap();
    let err = redis::pipe()
        .set("durable:p1", 1)
        .set("durable:p2", 2)
        .query::<()>(&mut *conn)
        .unwrap_err();
    assert!(matches!(Error::from(err), Error::NotReplicated { .. }));
    let err = redis::pipe()
        .atomic()
        .set("durable:t1", 1)
        .incr("durable:t2", 1)
        .query::<()>(&mut *conn)
        .unwrap_err();
    assert!(matches!(Error::from(err), Error::NotReplicated { .. }));
    // Reads are not waited for.
    let value: Option<u32> = conn.get("durable:k").unwrap();
    assert_eq!(value, Some(1));
    drop(conn);
    // The default mode acknowledges what no replica has: the loss durable mode prevents.
    let _: () = plain.with_retry(|c| c.set("plain:frozen", 1)).unwrap();
    // The per-call form on a pool without durable mode.
    let err = plain
        .get()
        .unwrap()
        .with_durability(
            Some(Durability::at_least(1).timeout(Duration::from_millis(200))),
            |c| c.set::<_, _, ()>("plain:durable", 1),
        )
        .unwrap_err();
    assert!(matches!(
        Error::from(err),
        Error::NotReplicated {
            asked: 1,
            confirmed: 0
        }
    ));

    for replica in &replicas {
        topology.resume(replica).unwrap();
    }
    eventually(
        "durable writes confirmed again",
        Duration::from_secs(10),
        || {
            pool.with_retry(|c| c.set::<_, _, ()>("durable:again", 1))
                .ok()
        },
    );
    // A request that writes and leaves MULTI open cannot be confirmed: refused unsent.
    let mut conn = pool.get().unwrap();
    let err = redis::pipe()
        .set("durable:before-multi", 1)
        .cmd("MULTI")
        .query::<()>(&mut *conn)
        .unwrap_err();
    assert_eq!(err.code(), Some("DURABLE"), "{err}");
    drop(conn);
    let value: Option<u32> = direct(&master).get("durable:before-multi").unwrap();
    assert_eq!(value, None, "not sent");
}

/// Writes `prefix:i` with a 16 KiB value until stopped, keeping the indexes acknowledged.
fn writer(
    pool: SentinelPool,
    prefix: &'static str,
    stop: Arc<AtomicBool>,
    acked: Arc<Mutex<Vec<u64>>>,
) -> thread::JoinHandle<()> {
    let value = vec![b'x'; 16 * 1024];
    thread::spawn(move || {
        let mut i = 0;
        while !stop.load(Ordering::Relaxed) {
            i += 1;
            let Ok(mut conn) = pool.get_timeout(Duration::from_millis(200)) else {
                continue;
            };
            if conn
                .set::<_, _, ()>(format!("{prefix}:{i}"), &value)
                .is_ok()
            {
                acked.lock().unwrap().push(i);
            }
        }
    })
}

/// A master crash under replication lag, two pools writing side by side: `frozen` stops
/// reading once both writers are under way, the master is SIGKILLed once the first pool had
/// `past` more writes acknowledged (`what` says what that means), and `frozen` is thawed.
/// Returns the new master and, for each pool, its writes lost there and acknowledged.
fn crash_under_lag(
    topology: &mut Topology,
    pools: [(SentinelPool, &'static str); 2],
    frozen: &[NodeAddr],
    past: usize,
    what: &str,
) -> (NodeAddr, [(usize, usize); 2]) {
    let stop = Arc::new(AtomicBool::new(false));
    let acked: [Arc<Mutex<Vec<u64>>>; 2] = Default::default();
    let writers: Vec<_> = pools
        .into_iter()
        .zip(&acked)
        .map(|((pool, prefix), acked)| {
            (
                prefix,
                writer(pool, prefix, Arc::clone(&stop), Arc::clone(acked)),
            )
        })
        .collect();
    eventually("both writers under way", Duration::from_secs(10), || {
        acked
            .iter()
            .all(|a| a.lock().unwrap().len() > 10)
            .then_some(())
    });
    for node in frozen {
        topology.pause(node).unwrap();
    }
    let before = acked[0].lock().unwrap().len();
    eventually(what, Duration::from_secs(20), || {
        (acked[0].lock().unwrap().len() >= before + past).then_some(())
    });
    let old = topology.kill_master().unwrap();
    stop.store(true, Ordering::Relaxed);
    for node in frozen {
        topology.resume(node).unwrap();
    }
    let prefixes: Vec<&str> = writers
        .into_iter()
        .map(|(prefix, writer)| {
            writer.join().unwrap();
            prefix
        })
        .collect();
    let new = topology
        .wait_for_new_master(&old, Duration::from_secs(30))
        .unwrap();
    let counts = [0, 1].map(|i| {
        (
            lost(&new, prefixes[i], &acked[i]),
            acked[i].lock().unwrap().len(),
        )
    });
    (new, counts)
}

#[test]
fn a_crash_with_replication_lag_loses_no_durable_write_and_some_default_ones() {
    init_logging();
    let mut topology = Topology::start().unwrap();
    let master = topology.master().unwrap();
    let replicas = support::replicas(&topology, &master);
    // The replicas stop reading: what the master acknowledges from now on piles up in its
    // buffers (64 MiB, far more than the sockets hold), and dies with it.
    let plain = topology.pool_builder().max_size(2).build().unwrap();
    let durable = durable(&topology);
    let (_, [(plain_lost, plain_acked), (durable_lost, durable_acked)]) = crash_under_lag(
        &mut topology,
        [(plain, "plain"), (durable, "durable")],
        &replicas,
        4096,
        "64 MiB acknowledged past the replicas",
    );
    println!(
        "acknowledged and lost: durable {durable_lost} of {durable_acked}, default \
         {plain_lost} of {plain_acked}"
    );
    assert_eq!(durable_lost, 0, "durable mode lost acknowledged writes");
    assert!(
        plain_lost > 0,
        "the default mode lost nothing: the scenario made no lag"
    );
}

#[test]
fn durable_writes_follow_a_planned_failover_and_a_crash_with_no_loss_and_no_error() {
    init_logging();
    let mut topology = Topology::start().unwrap();
    let pool = topology
        .pool_builder()
        .max_size(4)
        .durability(Durability::all_replicas())
        .retry_policy(RetryPolicy::default().deadline(Duration::from_secs(30)))
        .build()
        .unwrap();
    let writer = fence_kit::Writer::start(&pool);
    let promoted = topology.failover().unwrap();
    eventually(
        "the pool on the promoted master",
        Duration::from_secs(30),
        || (pool.with_retry(|c| Ok(c.addr().clone())).ok() == Some(promoted.clone())).then_some(()),
    );
    let old = topology.kill_master().unwrap();
    let new = topology
        .wait_for_new_master(&old, Duration::from_secs(30))
        .unwrap();
    eventually(
        "durable writes on the crashed master's successor",
        Duration::from_secs(30),
        || (pool.with_retry(|c| Ok(c.addr().clone())).ok() == Some(new.clone())).then_some(()),
    );
    let report = writer.finish();
    let missing = report.missing_on(&new);
    println!(
        "durable through a planned failover and a crash: {} acknowledged, {} missing, {} \
         errors, longest gap {:?}",
        report.acks.len(),
        missing.len(),
        report.errors.len(),
        report.longest_gap
    );
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    assert!(
        missing.is_empty(),
        "{} acknowledged writes lost",
        missing.len()
    );
    assert!(
        report.acks.iter().any(|a| a.by == new),
        "the writer reached the new master"
    );
}

/// The replicas' fields as a sentinel lists them.
fn replicas_seen(topology: &Topology) -> Vec<std::collections::HashMap<String, String>> {
    redis::cmd("SENTINEL")
        .arg("REPLICAS")
        .arg(topology.service())
        .query(&mut direct(&topology.sentinel_addrs()[0]))
        .unwrap()
}

#[test]
fn one_confirmation_is_not_enough_when_sentinel_promotes_another_replica() {
    init_logging();
    let mut topology = Topology::start().unwrap();
    let master = topology.master().unwrap();
    let replicas = support::replicas(&topology, &master);
    // Sentinel prefers the replica with the lower replica-priority, whatever its offset.
    let (confirming, preferred) = (&replicas[0], &replicas[1]);
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("replica-priority")
        .arg(10)
        .query(&mut direct(preferred))
        .unwrap();
    eventually(
        "the sentinel to read the priority",
        Duration::from_secs(30),
        || {
            replicas_seen(&topology)
                .iter()
                .any(|r| {
                    r.get("port") == Some(&preferred.port.to_string())
                        && r.get("slave-priority").map(String::as_str) == Some("10")
                })
                .then_some(())
        },
    );
    // The preferred replica stops reading; the other one confirms every write.
    let one = durable_with(&topology, Durability::at_least(1));
    let all = durable(&topology);
    let (new, [(one_lost, one_acked), (all_lost, all_acked)]) = crash_under_lag(
        &mut topology,
        [(one, "one"), (all, "all")],
        std::slice::from_ref(preferred),
        2048,
        "32 MiB confirmed by one replica only",
    );
    assert_eq!(
        &new, preferred,
        "Sentinel promoted the replica with the better priority"
    );
    println!(
        "confirmed by {confirming}, {preferred} promoted; lost: at_least(1) {one_lost} of \
         {one_acked}, all_replicas {all_lost} of {all_acked}"
    );
    assert_eq!(all_lost, 0, "all_replicas lost acknowledged writes");
    assert!(
        one_lost > 0,
        "at_least(1) lost nothing: the scenario made no lag"
    );
}

#[test]
fn a_replica_that_left_the_master_is_waited_for_while_sentinel_may_promote_it() {
    init_logging();
    let mut topology = Topology::start().unwrap();
    let master = topology.master().unwrap();
    let replicas = support::replicas(&topology, &master);
    let pool = durable(&topology);
    let _: () = pool.with_retry(|c| c.set("left:before", 1)).unwrap();
    let listed = |n: usize| {
        let master = master.clone();
        move || match redis::cmd("ROLE").query(&mut direct(&master)).unwrap() {
            redis::Role::Primary { replicas, .. } => (replicas.len() == n).then_some(()),
            _ => None,
        }
    };

    // A replica stops replicating, as the one a failover promotes does first (`REPLICAOF NO
    // ONE`); the sentinels still list it as a healthy replica. The other replica would
    // confirm writes it will never have: they are refused unsent.
    support::detach(&master, &replicas[0]);
    refused_unsent(&pool, &master, "left:during", &replicas[0]);

    // Back under the master: confirmed by both again.
    support::demote(&replicas[0], &master);
    eventually("durable writes to resume", Duration::from_secs(20), || {
        pool.with_retry(|c| c.set::<_, _, ()>("left:after", 1)).ok()
    });

    // A replica that dies cannot be promoted: once the sentinels see it gone, writes go on,
    // confirmed by the one left.
    topology.kill(&replicas[1]).unwrap();
    eventually(
        "the master to list one replica",
        Duration::from_secs(10),
        listed(1),
    );
    eventually(
        "durable writes without the dead replica",
        Duration::from_secs(10),
        || pool.with_retry(|c| c.set::<_, _, ()>("left:dead", 1)).ok(),
    );
    let value: Option<u32> = direct(&replicas[0]).get("left:dead").unwrap();
    assert_eq!(value, Some(1), "confirmed by the replica left");
}

/// A replica away from the master when the pool starts (syncing, or left as a failover's
/// candidate does) was never seen in the master's `ROLE`; the sentinels list it, and may
/// promote it: durable writes wait for it from the first one.
#[test]
fn a_replica_away_when_the_pool_starts_is_waited_for() {
    init_logging();
    let topology = Topology::start().unwrap();
    let master = topology.master().unwrap();
    let replicas = support::replicas(&topology, &master);
    support::detach(&master, &replicas[0]);
    let pool = durable(&topology);
    refused_unsent(&pool, &master, "away:first", &replicas[0]);

    support::demote(&replicas[0], &master);
    eventually("durable writes to resume", Duration::from_secs(20), || {
        pool.with_retry(|c| c.set::<_, _, ()>("away:back", 1)).ok()
    });
    let value: Option<u32> = direct(&replicas[0]).get("away:back").unwrap();
    assert_eq!(value, Some(1), "confirmed by the replica back");
}
