//! Finding the master: one generation holds one master, a stale answer costs one
//! invalidation and no more, and sentinel I/O never blocks the watcher or `stats()`.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

use r2d2_redis_sentinel::{Error, Event, RetryPolicy, redis::Commands, testkit::Topology};
use support::{eventually, init_logging};

/// Item 3: the sentinels keep naming a node that answers ROLE replica (demoted behind their
/// back). Connects must not bump the generation per attempt and flood the events channel.
#[test]
fn a_named_master_that_answers_replica_costs_one_invalidation_not_one_per_connect() {
    init_logging();
    let topology = Topology::start().unwrap();
    let master = topology.master().unwrap();
    let replica = support::replica(&topology, &master);
    let pool = topology
        .pool_builder()
        .max_size(4)
        .watcher(false)
        .checkout_timeout(Duration::from_millis(500))
        .build()
        .unwrap();
    let events = pool.events();
    let start = pool.generation();
    support::demote(&master, &replica);

    let until = Instant::now() + Duration::from_secs(2);
    let workers: Vec<_> = (0..4)
        .map(|_| {
            let pool = pool.clone();
            thread::spawn(move || {
                let mut refused = 0;
                while Instant::now() < until {
                    if pool.get().is_err() {
                        refused += 1;
                    }
                }
                refused
            })
        })
        .collect();
    let refused: usize = workers.into_iter().map(|w| w.join().unwrap()).sum();
    support::promote(&master);

    assert!(refused > 0, "no checkout was refused");
    let bumps = pool.generation() - start;
    let invalidations = events
        .try_iter()
        .filter(|e| matches!(e, Event::Invalidated { .. }))
        .count();
    // One for the demoted node; Sentinel itself may fail over meanwhile (it sees a master
    // that reports itself a replica), which is a real change or two.
    assert!(bumps <= 3, "the generation moved {bumps} times");
    assert!(invalidations <= 3, "{invalidations} Invalidated events");
    assert_eq!(pool.stats().events_dropped, 0);
}

/// Item 5: after a crash with the watcher off, the pool finds the promoted node by asking the
/// sentinels; that must start a new generation, not add a second master to the current one.
#[test]
fn finding_a_new_master_by_lookup_starts_a_new_generation() {
    init_logging();
    let mut topology = Topology::start().unwrap();
    let pool = topology
        .pool_builder()
        .max_size(2)
        .watcher(false)
        .build()
        .unwrap();
    let events = pool.events();
    assert_eq!(pool.generation(), 0);
    let old = topology.kill_master().unwrap();
    let new = topology
        .wait_for_new_master(&old, Duration::from_secs(30))
        .unwrap();
    let addr = pool
        .with_retry(|c| {
            let _: () = c.set("k", "v")?;
            Ok(c.addr().clone())
        })
        .unwrap();
    assert_eq!(addr, new);
    assert!(pool.generation() >= 1, "the new master joined generation 0");
    assert_eq!(pool.master(), Some(new.clone()));
    let reason = events
        .try_iter()
        .find_map(|e| match e {
            Event::Invalidated { reason, .. } => Some(reason),
            _ => None,
        })
        .expect("an Invalidated event");
    assert!(reason.contains(&new.to_string()), "{reason}");
}

/// Item 4: during a master crash every sentinel reports the master down, so lookups walk the
/// whole list, and the first sentinel is frozen. The watcher's failover and `stats()` must
/// not wait for that I/O.
#[test]
fn a_hung_sentinel_does_not_delay_the_failover_or_block_stats() {
    init_logging();
    let mut topology = Topology::start().unwrap();
    let pool = topology
        .pool_builder()
        .max_size(4)
        .sentinel_timeout(Duration::from_secs(1))
        // What is timed here is the announcement's path; the fence would apply the failover
        // before any announcement (tests/fence.rs).
        .fence(false)
        .retry_policy(RetryPolicy::default().deadline(Duration::from_secs(30)))
        .build()
        .unwrap();
    eventually(
        "the watcher to subscribe to all",
        Duration::from_secs(10),
        || {
            matches!(
            pool.stats().watcher,
            r2d2_redis_sentinel::WatcherState::Running { ref subscribed } if subscribed.len() == 3
        )
        .then_some(())
        },
    );
    let listener = topology.listen("+switch-master").unwrap();
    let first_sentinel = topology.sentinel_addrs()[0].clone();

    let stop = Arc::new(AtomicBool::new(false));
    // Writers keep connects (and so lookups) going through the crash.
    let writers: Vec<_> = (0..2)
        .map(|i| {
            let (pool, stop) = (pool.clone(), Arc::clone(&stop));
            thread::spawn(move || {
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    n += 1;
                    let _ =
                        pool.with_retry_idempotent(|c| c.set::<_, _, ()>(format!("w{i}:{n}"), n));
                }
            })
        })
        .collect();
    let stats_probe = {
        let (pool, stop) = (pool.clone(), Arc::clone(&stop));
        thread::spawn(move || {
            let mut longest = Duration::ZERO;
            while !stop.load(Ordering::Relaxed) {
                let started = Instant::now();
                let _ = pool.stats();
                longest = longest.max(started.elapsed());
                thread::sleep(Duration::from_millis(5));
            }
            longest
        })
    };
    let events = pool.events();
    // Sentinel needs down-after (1 s) before it even suspects the crash: the sentinel is
    // frozen long before any lookup or announcement.
    let old = topology.kill_master().unwrap();
    topology.pause(&first_sentinel).unwrap();
    let applied = loop {
        match events.recv_timeout(Duration::from_secs(30)) {
            Some(Event::Failover { new, .. }) if new != old => break Instant::now(),
            Some(_) => {}
            None => panic!("no failover event within 30 s"),
        }
    };
    let announced = std::iter::from_fn(|| listener.recv_timeout(Duration::ZERO))
        .map(|p| p.at)
        .min()
        .expect("a +switch-master");
    stop.store(true, Ordering::Relaxed);
    for writer in writers {
        writer.join().unwrap();
    }
    let longest_stats = stats_probe.join().unwrap();
    topology.resume(&first_sentinel).unwrap();

    let delay = applied.saturating_duration_since(announced);
    assert!(
        delay < Duration::from_millis(300),
        "the failover was applied {delay:?} after its announcement"
    );
    assert!(
        longest_stats < Duration::from_millis(100),
        "stats() blocked for {longest_stats:?}"
    );
    // Still a working pool.
    let err: Option<Error> = pool.with_retry(|c| c.set::<_, _, ()>("after", 1)).err();
    assert!(err.is_none(), "{err:?}");
}
