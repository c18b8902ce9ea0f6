//! Dropping a pool leaves no thread behind, also while other threads wait in it. Alone in its
//! test binary: it counts the process's threads, which parallel tests would disturb, and its
//! tests take turns.

#![cfg(target_os = "linux")]

use std::time::{Duration, Instant};

use parking_lot::Mutex;
use r2d2_redis_sentinel::{
    Error, RetryPolicy, WatcherState,
    redis::{self, Commands},
    testkit::Topology,
};

/// The tests count threads: one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

fn thread_names() -> Vec<String> {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("comm")).ok())
        .map(|name| name.trim().to_owned())
        .collect()
}

/// Threads of this crate's pools: watcher, subscribers, evicting thread, r2d2 workers.
fn pool_threads() -> usize {
    thread_names()
        .iter()
        .filter(|n| n.starts_with("r2d2-sentinel"))
        .count()
}

fn watcher_threads() -> usize {
    // Thread names are cut to 15 bytes: "r2d2-sentinel-watcher" reads "r2d2-sentinel-w".
    thread_names()
        .iter()
        .filter(|n| n.starts_with("r2d2-sentinel-w") || n.starts_with("r2d2-sentinel-s"))
        .count()
}

#[test]
fn dropping_pools_stops_the_watcher_at_once_and_leaves_no_thread_behind() {
    let _turn = SERIAL.lock();
    let topology = Topology::start().unwrap();
    let before = thread_names().len();
    for i in 0..20 {
        let pool = topology.pool_builder().max_size(4).build().unwrap();
        let _: () = pool.get().unwrap().set("k", i).unwrap();
        support::eventually("the watcher to subscribe", Duration::from_secs(10), || {
            matches!(pool.stats().watcher, WatcherState::Running { ref subscribed } if subscribed.len() == 3)
                .then_some(())
        });
        // One coordinator and one subscriber per sentinel.
        assert_eq!(watcher_threads(), 4);

        // Dropping joins the threads: generous on a loaded machine, never forever.
        let dropper = std::thread::spawn(move || drop(pool));
        support::eventually(
            "dropping the pool to return",
            Duration::from_secs(5),
            || dropper.is_finished().then_some(()),
        );
        dropper.join().unwrap();
        // Dropping joined them: no polling needed.
        assert_eq!(watcher_threads(), 0, "watcher threads outlived the pool");
    }
    // r2d2's own workers end asynchronously once their pool is gone.
    support::eventually("the pools' threads to end", Duration::from_secs(5), || {
        (thread_names().len() <= before).then_some(())
    });
}

#[test]
fn dropping_the_pool_while_threads_wait_in_get_and_in_retry_backoffs() {
    let _turn = SERIAL.lock();
    let topology = Topology::start().unwrap();
    assert_eq!(pool_threads(), 0);
    let exhausted = topology
        .pool_builder()
        .max_size(2)
        .checkout_timeout(Duration::from_secs(1))
        .build()
        .unwrap();
    let held = [exhausted.get().unwrap(), exhausted.get().unwrap()];
    let retrying = topology
        .pool_builder()
        .max_size(4)
        .retry_policy(RetryPolicy::default().deadline(Duration::from_secs(2)))
        .build()
        .unwrap();
    let began = Instant::now();
    let waiting: Vec<_> = (0..4)
        .map(|_| {
            let pool = exhausted.clone();
            std::thread::spawn(move || pool.get().map(drop))
        })
        .collect();
    let backing_off: Vec<_> = (0..4)
        .map(|_| {
            let pool = retrying.clone();
            // The server answers TRYAGAIN every time: the caller backs off until its deadline.
            std::thread::spawn(move || {
                pool.with_retry(|c| {
                    redis::cmd("EVAL")
                        .arg("return redis.error_reply('TRYAGAIN busy')")
                        .arg(0)
                        .query::<()>(c)
                })
            })
        })
        .collect();
    // The handles the caller built go away while the threads wait: the threads' clones keep
    // the pools alive until they return.
    drop(exhausted);
    drop(retrying);
    for thread in waiting {
        let result = thread.join().expect("no panic in get()");
        assert!(
            matches!(result, Err(Error::PoolExhausted { .. })),
            "{result:?}"
        );
    }
    for thread in backing_off {
        let result = thread.join().expect("no panic in with_retry()");
        assert!(
            matches!(result, Err(Error::RetriesExhausted { .. })),
            "{result:?}"
        );
    }
    // Each returned within its own bound (a second in get(), two in backoffs), not later.
    assert!(
        began.elapsed() < Duration::from_secs(5),
        "{:?}",
        began.elapsed()
    );
    drop(held);
    support::eventually("the pools' threads to end", Duration::from_secs(5), || {
        (pool_threads() == 0).then_some(())
    });
}

/// Item: dropping a pool returns within its bound however many connections it keeps to hung
/// nodes. A failover error seen on the master pool starts a new generation while the replica
/// pool keeps four idle connections to frozen replicas: the evicting thread drains them,
/// with no round trip (it used to ask each `PING`+`ROLE`: 4 x the 2 s read timeout).
#[test]
fn dropping_a_pool_whose_nodes_hang_returns_within_its_bound() {
    let _turn = SERIAL.lock();
    let mut topology = Topology::builder()
        .down_after(Duration::from_secs(30))
        .start()
        .unwrap();
    let pool = topology
        .pool_builder()
        .max_size(1)
        .read_timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    let reads = pool
        .replica_pool(r2d2_redis_sentinel::ReplicaOptions::default().max_size(4))
        .unwrap();
    drop((0..4).map(|_| reads.get().unwrap()).collect::<Vec<_>>());
    let master = topology.master().unwrap();
    let replicas = support::replicas(&topology, &master);
    for replica in &replicas {
        topology.pause(replica).unwrap();
    }
    // A READONLY answer on a master connection: the pool starts a new generation.
    let generation = pool.generation();
    let err = redis::cmd("EVAL")
        .arg("return redis.error_reply('READONLY You cannot write against a read only replica.')")
        .arg(0)
        .query::<()>(&mut *pool.get().unwrap())
        .unwrap_err();
    assert_eq!(err.code(), Some("READONLY"));
    assert!(pool.generation() > generation);
    let began = Instant::now();
    drop(reads);
    drop(pool);
    let took = began.elapsed();
    for replica in &replicas {
        topology.resume(replica).unwrap();
    }
    assert!(took < Duration::from_secs(2), "dropping took {took:?}");
}
