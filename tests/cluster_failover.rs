//! `ClusterPool` through the cluster's own failovers, under 8 writers on
//! `with_retry_idempotent`: a manual `CLUSTER FAILOVER` (the server pauses the primary's
//! clients and hands over: nothing may be lost) and a primary's SIGKILL (its replica is
//! promoted after `cluster-node-timeout`, 1 s here; the writes the dead primary acknowledged
//! but had not yet sent to its replica are lost by Redis itself, and counted). Every last
//! acknowledged value is then read from the primary the cluster names. A primary that hangs,
//! then dies, with no failover to rescue it: each call costs its timeouts, no more. And
//! durable mode (`Durability::at_least(1)`, two replicas per primary): a write no replica of
//! its shard can confirm is never reported done, and durable writers lose nothing when the
//! primary is killed.

use std::{
    collections::HashMap,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

use r2d2_redis_sentinel::{
    ClusterPool, Durability, Error, Event, NodeAddr, RetryPolicy, redis::Commands, testkit::Cluster,
};
use support::{direct, init_logging};

const WRITERS: u64 = 8;
const KEYS: u64 = 32;

/// What writers end with: the last value acknowledged for each key, and every error.
type Outcome = (HashMap<String, u64>, Vec<String>);

/// 8 writers, each on its own 32 keys spread over every slot, until told to stop; each
/// remembers the last value acknowledged for each key and every error.
struct Writers {
    stop: Arc<AtomicBool>,
    acks: Arc<AtomicU64>,
    threads: Vec<thread::JoinHandle<Outcome>>,
}

impl Writers {
    fn start(pool: &ClusterPool) -> Writers {
        let stop = Arc::new(AtomicBool::new(false));
        let acks = Arc::new(AtomicU64::new(0));
        let threads = (0..WRITERS)
            .map(|w| {
                let (pool, stop, acks) = (pool.clone(), Arc::clone(&stop), Arc::clone(&acks));
                thread::spawn(move || {
                    let mut acked = HashMap::new();
                    let mut errors = Vec::new();
                    let mut n = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        n += 1;
                        let key = format!("w{w}:k{}", n % KEYS);
                        match pool.with_retry_idempotent(|c| c.set::<_, _, ()>(&key, n)) {
                            Ok(()) => {
                                acked.insert(key, n);
                                acks.fetch_add(1, Ordering::Relaxed);
                            }
                            Err(err) => errors.push(err.to_string()),
                        }
                    }
                    (acked, errors)
                })
            })
            .collect();
        Writers {
            stop,
            acks,
            threads,
        }
    }

    /// Waits until the writers have had `count` more writes acknowledged.
    fn progress(&self, count: u64) {
        let from = self.acks.load(Ordering::Relaxed);
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.acks.load(Ordering::Relaxed) < from + count {
            assert!(Instant::now() < deadline, "the writers stalled");
            thread::sleep(Duration::from_millis(1));
        }
    }

    /// Stops the writers; the last acknowledged value of every key, and every error.
    fn stop(self) -> Outcome {
        self.stop.store(true, Ordering::Relaxed);
        let mut acked = HashMap::new();
        let mut errors = Vec::new();
        for thread in self.threads {
            let (a, e) = thread.join().unwrap();
            acked.extend(a);
            errors.extend(e);
        }
        (acked, errors)
    }
}

/// The keys whose last acknowledged value is not what the cluster holds now, with the
/// primary that owns each.
fn lost(cluster: &Cluster, acked: &HashMap<String, u64>) -> Vec<(String, NodeAddr)> {
    let primaries = cluster.primaries().unwrap();
    let mut conns: Vec<_> = primaries.iter().map(direct).collect();
    let mut lost = Vec::new();
    for (key, value) in acked {
        // The primary that serves the key answers; the others redirect.
        let (owner, held) = primaries
            .iter()
            .zip(&mut conns)
            .find_map(|(p, c)| match c.get::<_, Option<u64>>(key) {
                Ok(held) => Some((p.clone(), held)),
                Err(err) if err.code() == Some("MOVED") => None,
                Err(err) => panic!("{key} on {p}: {err}"),
            })
            .unwrap_or_else(|| panic!("no primary serves {key}"));
        if held != Some(*value) {
            lost.push((key.clone(), owner));
        }
    }
    lost
}

/// The pool's slot map comes to name `new` and no longer `old`, as callers pass by.
fn follows(pool: &ClusterPool, new: &NodeAddr, old: &NodeAddr) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        drop(pool.get().unwrap());
        let primaries = pool.primaries();
        if primaries.contains(new) && !primaries.contains(old) {
            return;
        }
        assert!(Instant::now() < deadline, "{primaries:?}");
        thread::sleep(Duration::from_millis(10));
    }
}

fn pool_for(cluster: &Cluster) -> ClusterPool {
    let seeds: Vec<String> = cluster.nodes().iter().map(ToString::to_string).collect();
    ClusterPool::builder(seeds).max_size(8).build().unwrap()
}

#[test]
fn a_manual_failover_under_eight_writers_loses_nothing_and_surfaces_no_error() {
    init_logging();
    let cluster = Cluster::start().unwrap();
    let pool = pool_for(&cluster);
    let writers = Writers::start(&pool);
    writers.progress(500);
    let old = cluster.owner(cluster.slot_of("w0:k1").unwrap()).unwrap();
    let new = cluster.failover(&old).unwrap();
    writers.progress(500);
    let (acked, errors) = writers.stop();
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(acked.len() as u64, WRITERS * KEYS);
    assert_eq!(lost(&cluster, &acked), []);
    follows(&pool, &new, &old);
    // The pool says what it saw: the shard's slots moved to the new primary at once.
    let stats = pool.stats();
    assert!(stats.moved > 0, "{stats}");
    assert_eq!(stats.retries.failed + stats.retries.exhausted, 0, "{stats}");
    let moved = stats
        .primaries
        .iter()
        .find(|p| p.addr == new)
        .map(|p| p.slots)
        .unwrap();
    let told: Vec<Event> = pool.events().try_iter().collect();
    assert!(
        told.iter()
            .any(|e| matches!(e, Event::SlotMapChanged { moved_slots, .. }
            if *moved_slots == moved)),
        "{told:?}"
    );
}

#[test]
fn a_killed_primary_surfaces_no_error_and_loses_only_what_its_replica_had_not_received() {
    init_logging();
    let mut cluster = Cluster::start().unwrap();
    let pool = pool_for(&cluster);
    let writers = Writers::start(&pool);
    writers.progress(500);
    let old = cluster.owner(cluster.slot_of("w0:k1").unwrap()).unwrap();
    cluster.kill(&old).unwrap();
    let new = cluster.wait_for_new_primary(&old).unwrap();
    writers.progress(500);
    let (acked, errors) = writers.stop();
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(acked.len() as u64, WRITERS * KEYS);
    // Redis replicates asynchronously: what the killed primary acknowledged in its last
    // moments may never have reached its replica. Such a loss can only be on the shard that
    // failed, never elsewhere.
    let lost = lost(&cluster, &acked);
    assert!(lost.iter().all(|(_, owner)| *owner == new), "{lost:?}");
    eprintln!(
        "{} of {} keys lost their last acknowledged write, all on the killed primary's shard",
        lost.len(),
        acked.len()
    );
    follows(&pool, &new, &old);
}

#[test]
fn a_hung_primary_then_a_dead_one_cost_each_call_its_timeouts_and_no_more() {
    init_logging();
    // A long node timeout: the cluster does not fail the frozen primary over meanwhile.
    let mut cluster = Cluster::builder()
        .node_timeout(Duration::from_secs(120))
        .start()
        .unwrap();
    let seeds: Vec<String> = cluster.nodes().iter().map(ToString::to_string).collect();
    let (read, connect) = (Duration::from_millis(500), Duration::from_millis(300));
    // Room for a loaded machine, far below the 10 s a checkout would wait without the
    // pool's care.
    let slack = Duration::from_millis(1500);
    // One connection per node, made on demand: the second call below needs a new one.
    let pool = ClusterPool::builder(seeds)
        .max_size(1)
        .min_idle(Some(0))
        .read_timeout(read)
        .connect_timeout(connect)
        .checkout_timeout(Duration::from_secs(10))
        .retry_policy(RetryPolicy::default().deadline(Duration::from_millis(1500)))
        .build()
        .unwrap();
    let victim = pool.primary_for_key("hung").unwrap();
    let elsewhere = (0..)
        .map(|i| format!("other:{i}"))
        .find(|k| pool.primary_for_key(k).as_ref() != Some(&victim))
        .unwrap();
    let () = pool.get().unwrap().set("hung", 1).unwrap();
    let timed = |what: &str, limit: Duration, call: &dyn Fn() -> Result<(), String>| {
        let start = Instant::now();
        let result = call();
        let took = start.elapsed();
        assert!(
            took < limit,
            "{what}: {took:?} (limit {limit:?}), {result:?}"
        );
        result
    };
    let set_hung = || {
        pool.get()
            .unwrap()
            .set::<_, _, ()>("hung", 2)
            .map_err(|e| e.to_string())
    };

    cluster.pause(&victim).unwrap();
    // A pooled connection: the read timeout ends the wait for the reply.
    let hung = timed("a request on a pooled connection", read + slack, &set_hung);
    assert!(hung.is_err(), "{hung:?}");
    // A new connection: the handshake's timeout ends the connect, and the checkout fails at
    // once instead of trying again until its own timeout.
    let hung = timed("a new connection", connect + slack, &set_hung);
    assert!(
        hung.as_ref()
            .is_err_and(|e| e.contains(&victim.to_string())),
        "{hung:?}"
    );
    // with_retry gives up at its deadline.
    let retried = timed(
        "with_retry",
        Duration::from_millis(1500) + read + connect + slack,
        &|| {
            pool.with_retry_idempotent(|c| c.set::<_, _, ()>("hung", 3))
                .map_err(|e| e.to_string())
        },
    );
    assert!(retried.is_err(), "{retried:?}");
    // The other primaries answer meanwhile.
    let other = timed("another primary", slack, &|| {
        pool.get()
            .unwrap()
            .set::<_, _, ()>(&elsewhere, 1)
            .map_err(|e| e.to_string())
    });
    assert_eq!(other, Ok(()));

    cluster.resume(&victim).unwrap();
    cluster.kill(&victim).unwrap();
    // A dead node refuses connections: the call fails fast.
    let dead = timed("a dead primary", slack, &set_hung);
    assert!(dead.is_err(), "{dead:?}");
    let exhausted = pool.with_retry_idempotent(|c| c.set::<_, _, ()>("hung", 4));
    assert!(
        matches!(exhausted, Err(Error::RetriesExhausted { .. })),
        "{exhausted:?}"
    );
    let start = Instant::now();
    drop(pool);
    assert!(
        start.elapsed() < Duration::from_secs(1),
        "dropping the pool took {:?}",
        start.elapsed()
    );
}

#[test]
fn durable_writes_wait_for_their_shards_replica_and_survive_its_primarys_crash() {
    init_logging();
    // Two replicas per primary: after a crash one is promoted, and the other confirms the
    // new primary's writes.
    let mut cluster = Cluster::builder().replicas(2).start().unwrap();
    let seeds: Vec<String> = cluster.nodes().iter().map(ToString::to_string).collect();
    let refused = ClusterPool::builder(seeds.clone())
        .durability(Durability::all_replicas())
        .build();
    assert!(
        matches!(
            refused,
            Err(Error::InvalidConfig {
                option: "durability",
                ..
            })
        ),
        "{refused:?}"
    );
    let durable = ClusterPool::builder(seeds)
        .max_size(8)
        .durability(Durability::at_least(1))
        .build()
        .unwrap();
    let plain = pool_for(&cluster);

    // A write no replica of its shard can confirm is never reported done; without durable
    // mode it is.
    let primary = durable.primary_for_key("w0:k1").unwrap();
    let replicas = cluster.replicas_of(&primary).unwrap();
    assert_eq!(replicas.len(), 2);
    for replica in &replicas {
        cluster.pause(replica).unwrap();
    }
    let unconfirmed = durable.with_retry(|c| c.set::<_, _, ()>("w0:k1", 1));
    assert!(
        matches!(unconfirmed, Err(Error::NotReplicated { .. })),
        "{unconfirmed:?}"
    );
    let () = plain.get().unwrap().set("w0:k1", 2).unwrap();
    for replica in &replicas {
        cluster.resume(replica).unwrap();
    }
    // Confirmed again once the replicas are back.
    let deadline = Instant::now() + Duration::from_secs(20);
    while durable
        .with_retry_idempotent(|c| c.set::<_, _, ()>("w0:k1", 3))
        .is_err()
    {
        assert!(
            Instant::now() < deadline,
            "the replica never confirmed again"
        );
    }

    // Durable writers through the primary's crash: nothing lost, no error.
    let writers = Writers::start(&durable);
    writers.progress(300);
    cluster.kill(&primary).unwrap();
    let new = cluster.wait_for_new_primary(&primary).unwrap();
    assert!(replicas.contains(&new), "{new} {replicas:?}");
    writers.progress(300);
    let (acked, errors) = writers.stop();
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(lost(&cluster, &acked), []);
}
