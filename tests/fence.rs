//! The fence: the watcher follows the failover leader's steps, fences the old master off the
//! moment a promotion starts, resumes on the promoted replica as soon as it answers master,
//! and falls back on every other way out (abort, timeout). Real failovers, a writer through
//! `with_retry`, and the final master's keys as the judge.

mod support;

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread,
    time::{Duration, Instant, SystemTime},
};

use r2d2_redis_sentinel::{
    Error, Event, FailoverSource, FenceRelease, NodeAddr, RetryPolicy, SentinelPool,
    redis::{self, Commands},
    testkit::Topology,
};
use support::{direct, eventually, init_logging, wait_flagged};

/// One acknowledged write.
struct Ack {
    key: u64,
    by: NodeAddr,
    at: Instant,
    wall: SystemTime,
}

/// What a writer loop saw.
struct Report {
    acks: Vec<Ack>,
    errors: Vec<Error>,
    longest_gap: Duration,
}

impl Report {
    /// The acknowledged writes the node at `addr` lacks.
    fn missing_on(&self, addr: &NodeAddr) -> Vec<&Ack> {
        let mut conn = direct(addr);
        self.acks
            .iter()
            .filter(|a| !conn.exists::<_, bool>(format!("w:{}", a.key)).unwrap())
            .collect()
    }
}

/// A writer of unique keys `w:<n>` under `with_retry_idempotent`, until stopped.
struct Writer {
    stop: Arc<AtomicBool>,
    thread: thread::JoinHandle<Report>,
}

impl Writer {
    fn start(pool: &SentinelPool) -> Writer {
        let stop = Arc::new(AtomicBool::new(false));
        let master = pool_master(pool);
        let (pool, flag) = (pool.clone(), Arc::clone(&stop));
        let thread = thread::spawn(move || {
            let mut report = Report {
                acks: Vec::new(),
                errors: Vec::new(),
                longest_gap: Duration::ZERO,
            };
            let mut last = Instant::now();
            let mut key = 0u64;
            while !flag.load(Ordering::Relaxed) {
                key += 1;
                match pool.with_retry_idempotent(|c| {
                    let _: () = c.set(format!("w:{key}"), key)?;
                    Ok(c.addr().clone())
                }) {
                    Ok(by) => {
                        let at = Instant::now();
                        report.longest_gap = report.longest_gap.max(at - last);
                        last = at;
                        report.acks.push(Ack {
                            key,
                            by,
                            at,
                            wall: SystemTime::now(),
                        });
                    }
                    Err(err) => report.errors.push(err),
                }
            }
            report
        });
        let writer = Writer { stop, thread };
        let mut probe = direct(&master);
        eventually("the writer to start", Duration::from_secs(5), || {
            probe.exists::<_, bool>("w:1").unwrap().then_some(())
        });
        writer
    }

    fn finish(self) -> Report {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().unwrap()
    }
}

fn pool_master(pool: &SentinelPool) -> NodeAddr {
    pool.with_retry(|c| Ok(c.addr().clone())).unwrap()
}

fn pool(topology: &Topology) -> SentinelPool {
    topology
        .pool_builder()
        .max_size(4)
        .retry_policy(RetryPolicy::default().deadline(Duration::from_secs(30)))
        .build()
        .unwrap()
}

/// Lets the writer run until a hundred writes reached `node`.
fn until_writes_reach(pool: &SentinelPool, node: &NodeAddr) {
    eventually(
        &format!("writes to reach {node}"),
        Duration::from_secs(40),
        || (pool_master(pool) == *node).then_some(()),
    );
    let mut conn = direct(node);
    let start: u64 = redis::cmd("DBSIZE").query(&mut conn).unwrap();
    eventually("a hundred more writes", Duration::from_secs(10), || {
        let now: u64 = redis::cmd("DBSIZE").query(&mut conn).unwrap();
        (now > start + 100).then_some(())
    });
}

fn events(pool: &SentinelPool) -> Vec<Event> {
    pool.events().try_iter().collect()
}

fn fence_up_at(events: &[Event]) -> Option<SystemTime> {
    events.iter().find_map(|e| match e {
        Event::FenceUp { at, .. } => Some(*at),
        _ => None,
    })
}

#[test]
fn a_planned_failover_loses_no_acknowledged_write_after_the_fence() {
    init_logging();
    let topology = Topology::start().unwrap();
    let pool = pool(&topology);
    let old = topology.master().unwrap();
    let writer = Writer::start(&pool);
    let new = topology.failover().unwrap();
    until_writes_reach(&pool, &new);
    let report = writer.finish();
    let events = events(&pool);

    assert!(report.errors.is_empty(), "errors: {:?}", report.errors);
    let fence_up = fence_up_at(&events).expect("a FenceUp event");
    let resumed = events.iter().find_map(|e| match e {
        Event::FenceResumed { new, via, .. } => Some((new.clone(), *via)),
        _ => None,
    });
    assert_eq!(
        resumed,
        Some((new.clone(), FailoverSource::Promotion)),
        "the pool resumes on the promoted replica before any announcement: {events:?}"
    );
    // +switch-master from three sentinels confirms what the pool did: one failover.
    let failovers = events
        .iter()
        .filter(|e| matches!(e, Event::Failover { .. }))
        .count();
    assert_eq!(failovers, 1, "{events:?}");
    let missing = report.missing_on(&new);
    let after_fence: Vec<u64> = missing
        .iter()
        .filter(|a| a.wall >= fence_up)
        .map(|a| a.key)
        .collect();
    assert!(
        after_fence.is_empty(),
        "writes acknowledged after the fence went up were lost: {after_fence:?}"
    );
    // Without the fence, thousands are lost; with it, at most what the old master had not
    // yet replicated when the fence went up.
    assert!(
        missing.len() <= 10,
        "{} acknowledged writes lost (by {:?})",
        missing.len(),
        missing.iter().map(|a| &a.by).collect::<Vec<_>>()
    );
    assert!(report.acks.iter().any(|a| a.by == old));
    let stats = pool.stats();
    assert_eq!(
        (stats.fences_raised, stats.fences_resumed, stats.fenced),
        (1, 1, false)
    );
    eprintln!(
        "planned failover: {} writes, {} lost, longest gap {:?}",
        report.acks.len(),
        missing.len(),
        report.longest_gap
    );
}

#[test]
fn with_the_fence_off_the_pool_waits_for_the_announcement() {
    init_logging();
    let topology = Topology::start().unwrap();
    let pool = topology
        .pool_builder()
        .fence(false)
        .max_size(4)
        .retry_policy(RetryPolicy::default().deadline(Duration::from_secs(30)))
        .build()
        .unwrap();
    let writer = Writer::start(&pool);
    let new = topology.failover().unwrap();
    until_writes_reach(&pool, &new);
    let report = writer.finish();
    let events = events(&pool);

    assert!(report.errors.is_empty(), "errors: {:?}", report.errors);
    assert!(
        !events
            .iter()
            .any(|e| matches!(e, Event::FenceUp { .. } | Event::FenceResumed { .. })),
        "{events:?}"
    );
    assert!(
        events.iter().any(|e| matches!(
            e,
            Event::Failover {
                via: FailoverSource::SwitchMaster | FailoverSource::Reconciliation,
                ..
            }
        )),
        "{events:?}"
    );
    assert_eq!(pool.stats().fences_raised, 0);
}

#[test]
fn after_a_crash_the_pool_writes_to_the_promoted_replica_before_any_announcement() {
    init_logging();
    let mut topology = Topology::start().unwrap();
    let pool = pool(&topology);
    let announcements = topology.listen("+switch-master").unwrap();
    let writer = Writer::start(&pool);
    let old = topology.kill_master().unwrap();
    let new = topology
        .wait_for_new_master(&old, Duration::from_secs(30))
        .unwrap();
    until_writes_reach(&pool, &new);
    let report = writer.finish();

    assert!(report.errors.is_empty(), "errors: {:?}", report.errors);
    let first_announcement = announcements
        .recv_timeout(Duration::from_secs(10))
        .expect("a +switch-master")
        .at;
    let first_on_new = report
        .acks
        .iter()
        .find(|a| a.by == new)
        .expect("a write on the new master")
        .at;
    assert!(
        first_on_new < first_announcement,
        "the first write on {new} came {:?} after the first +switch-master",
        first_on_new - first_announcement
    );
    let events = events(&pool);
    assert!(
        events.iter().any(|e| matches!(
            e,
            Event::Failover {
                via: FailoverSource::Promotion,
                ..
            }
        )),
        "{events:?}"
    );
    eprintln!(
        "crash: first write on the new master {:?} before the first +switch-master",
        first_announcement - first_on_new
    );
}

/// Makes `candidate` the only replica a failover can pick, and one that can never be promoted:
/// the other replica is frozen (the sentinels see it down and skip it), and `candidate` refuses
/// `REPLICAOF` (the leader's `REPLICAOF NO ONE` fails, the promotion times out). Returns the
/// frozen replica.
fn cripple(topology: &mut Topology, candidate: &NodeAddr) -> NodeAddr {
    let master = topology.master().unwrap();
    let other = topology
        .data_addrs()
        .into_iter()
        .find(|a| *a != master && a != candidate)
        .unwrap();
    let _: () = redis::cmd("ACL")
        .arg(&["SETUSER", "default", "-replicaof", "-slaveof"])
        .query(&mut direct(candidate))
        .unwrap();
    topology.pause(&other).unwrap();
    wait_flagged(
        topology,
        std::slice::from_ref(&other),
        true,
        Duration::from_secs(10),
    );
    other
}

/// A topology whose next failover selects a replica that cannot be promoted (see
/// [`cripple`]), and a pool on it.
struct Stalled {
    topology: Topology,
    /// The master, which stays master.
    old: NodeAddr,
    /// The replica frozen by [`cripple`].
    frozen: NodeAddr,
    pool: SentinelPool,
}

/// A [`Stalled`] topology with Sentinel's `failover_timeout`, and a pool with
/// `fence_timeout`.
fn stalled(failover_timeout: Duration, fence_timeout: Duration) -> Stalled {
    let mut topology = Topology::builder()
        .failover_timeout(failover_timeout)
        .start()
        .unwrap();
    let old = topology.master().unwrap();
    let candidate = topology
        .data_addrs()
        .into_iter()
        .find(|a| *a != old)
        .unwrap();
    let frozen = cripple(&mut topology, &candidate);
    let pool = topology
        .pool_builder()
        .max_size(4)
        .fence_timeout(fence_timeout)
        .retry_policy(RetryPolicy::default().deadline(Duration::from_secs(30)))
        .build()
        .unwrap();
    Stalled {
        topology,
        old,
        frozen,
        pool,
    }
}

/// Sends `SENTINEL FAILOVER` to the first sentinel.
fn start_failover(topology: &Topology) {
    let _: () = redis::cmd("SENTINEL")
        .arg(&["FAILOVER", topology.service_name()])
        .query(&mut direct(&topology.sentinel_addrs()[0]))
        .unwrap();
}

#[test]
fn an_aborted_failover_releases_the_fence_back_to_the_old_master() {
    init_logging();
    let Stalled {
        mut topology,
        old,
        frozen,
        pool,
    } = stalled(Duration::from_secs(2), Duration::from_secs(20));
    let aborts = topology.listen("-failover-abort-slave-timeout").unwrap();
    let writer = Writer::start(&pool);
    start_failover(&topology);
    let abort = aborts
        .recv_timeout(Duration::from_secs(20))
        .expect("the leader gives the promotion up");
    // Writes go on on the old master after the abort.
    eventually("writes after the abort", Duration::from_secs(10), || {
        let mut conn = direct(&old);
        let n: u64 = redis::cmd("DBSIZE").query(&mut conn).unwrap();
        thread::sleep(Duration::from_millis(100));
        let m: u64 = redis::cmd("DBSIZE").query(&mut conn).unwrap();
        (m > n).then_some(())
    });
    let report = writer.finish();
    topology.resume(&frozen).unwrap();
    let events = events(&pool);

    assert!(report.errors.is_empty(), "errors: {:?}", report.errors);
    let released = events.iter().find_map(|e| match e {
        Event::FenceReleased { reason, held } => Some((reason.clone(), *held)),
        _ => None,
    });
    let Some((FenceRelease::Aborted { .. }, held)) = released else {
        panic!("no FenceReleased(Aborted) event: {events:?}");
    };
    assert!(fence_up_at(&events).is_some());
    assert!(
        report.acks.iter().any(|a| a.at > abort.at && a.by == old),
        "no write acknowledged by the old master after the abort"
    );
    assert!(report.acks.iter().all(|a| a.by == old));
    // The fence held writes until the abort (the failover timeout, 2 s), not its own 20 s.
    assert!(
        held < Duration::from_secs(10) && report.longest_gap < Duration::from_secs(10),
        "held {held:?}, longest gap {:?}",
        report.longest_gap
    );
    assert!(
        report.missing_on(&old).is_empty(),
        "the old master stayed master: it keeps every write"
    );
    assert_eq!(pool.stats().fences_released, 1);
}

#[test]
fn a_fence_that_sees_no_promotion_times_out_to_what_the_sentinels_say() {
    init_logging();
    let fence_timeout = Duration::from_millis(500);
    let Stalled {
        mut topology,
        old,
        frozen,
        pool,
    } = stalled(Duration::from_secs(30), fence_timeout);
    let events_rx = pool.events();
    let writer = Writer::start(&pool);
    start_failover(&topology);
    let mut seen = Vec::new();
    eventually("the fence to time out", Duration::from_secs(10), || {
        seen.extend(events_rx.try_iter());
        seen.iter()
            .any(|e| {
                matches!(
                    e,
                    Event::FenceReleased {
                        reason: FenceRelease::TimedOut,
                        ..
                    }
                )
            })
            .then_some(())
    });
    let released = Instant::now();
    eventually("writes after the timeout", Duration::from_secs(10), || {
        thread::sleep(Duration::from_millis(50));
        (pool_master(&pool) == old).then_some(())
    });
    let report = writer.finish();
    topology.resume(&frozen).unwrap();

    assert!(report.errors.is_empty(), "errors: {:?}", report.errors);
    assert!(report.acks.iter().any(|a| a.at > released && a.by == old));
    assert!(
        report.longest_gap < fence_timeout + Duration::from_secs(2),
        "a write waited {:?} with a fence timeout of {fence_timeout:?}",
        report.longest_gap
    );
    let stats = pool.stats();
    assert_eq!((stats.fences_released, stats.fenced), (1, false));
}

#[test]
fn a_failover_of_another_service_on_the_same_sentinels_does_not_move_the_pool() {
    init_logging();
    let mut topology = Topology::start().unwrap();
    let other_master = topology.add_service("other").unwrap();
    let pool = pool(&topology);
    let master = topology.master().unwrap();
    let generation = pool.generation();
    let switches = topology.listen("+switch-master").unwrap();
    let writer = Writer::start(&pool);
    let _: () = redis::cmd("SENTINEL")
        .arg(&["FAILOVER", "other"])
        .query(&mut direct(&topology.sentinel_addrs()[0]))
        .unwrap();
    // Every sentinel announces the other service's switch.
    let mut announced = 0;
    while announced < 3 {
        let message = switches
            .recv_timeout(Duration::from_secs(20))
            .expect("the other service's +switch-master from every sentinel");
        assert!(message.payload.starts_with("other "), "{}", message.payload);
        announced += 1;
    }
    let report = writer.finish();
    let events = events(&pool);

    assert!(report.errors.is_empty(), "errors: {:?}", report.errors);
    assert!(
        !events.iter().any(|e| matches!(
            e,
            Event::FenceUp { .. } | Event::Failover { .. } | Event::Invalidated { .. }
        )),
        "{events:?}"
    );
    assert_eq!(pool.generation(), generation);
    assert!(report.acks.iter().all(|a| a.by == master));
    assert_ne!(topology.master().unwrap(), other_master);
}

/// Waits for the first event that `matches`, collecting the ones before it.
fn wait_for_event(
    pool_events: &r2d2_redis_sentinel::crossbeam_channel::Receiver<Event>,
    what: &str,
    matches: impl Fn(&Event) -> bool,
) -> Vec<Event> {
    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if let Ok(event) = pool_events.recv_timeout(Duration::from_millis(100)) {
            let found = matches(&event);
            seen.push(event);
            if found {
                return seen;
            }
        }
    }
    panic!("no {what} event within 20 s: {seen:?}");
}

#[test]
fn a_fence_whose_probe_cannot_reach_the_replica_resumes_on_the_announcement() {
    init_logging();
    let topology = Topology::start().unwrap();
    let master = topology.master().unwrap();
    // Until the fence is up, the replicas' announced addresses lead nowhere: the probe gets
    // the candidate's address from the leader's step, so it never reaches it.
    let blind = Arc::new(AtomicBool::new(true));
    let closed = NodeAddr::new("127.0.0.1", support::closed_port());
    let pool = {
        let (blind, master, closed) = (Arc::clone(&blind), master.clone(), closed.clone());
        topology
            .pool_builder()
            .max_size(4)
            .retry_policy(RetryPolicy::default().deadline(Duration::from_secs(30)))
            .map_addresses(move |addr| {
                (blind.load(Ordering::Relaxed) && *addr != master).then(|| closed.clone())
            })
            .build()
            .unwrap()
    };
    let events_rx = pool.events();
    let writer = Writer::start(&pool);
    let new = thread::scope(|s| {
        let failover = s.spawn(|| topology.failover().unwrap());
        wait_for_event(&events_rx, "FenceUp", |e| {
            matches!(e, Event::FenceUp { .. })
        });
        blind.store(false, Ordering::Relaxed);
        failover.join().unwrap()
    });
    let events = wait_for_event(&events_rx, "FenceResumed", |e| {
        matches!(e, Event::FenceResumed { .. })
    });
    until_writes_reach(&pool, &new);
    let report = writer.finish();

    assert!(report.errors.is_empty(), "errors: {:?}", report.errors);
    let resumed = events.iter().find_map(|e| match e {
        Event::FenceResumed { new, via, .. } => Some((new.clone(), *via)),
        _ => None,
    });
    assert_eq!(resumed, Some((new.clone(), FailoverSource::SwitchMaster)));
    assert_eq!(pool.stats().fences_resumed, 1);
}

#[test]
fn stopping_the_watcher_during_a_fence_releases_it() {
    init_logging();
    let Stalled {
        mut topology,
        old,
        frozen,
        pool,
    } = stalled(Duration::from_secs(30), Duration::from_secs(60));
    let events_rx = pool.events();
    let writer = Writer::start(&pool);
    start_failover(&topology);
    wait_for_event(&events_rx, "FenceUp", |e| {
        matches!(e, Event::FenceUp { .. })
    });
    assert!(pool.stats().fenced);
    pool.stop_watcher();
    let events = wait_for_event(&events_rx, "FenceReleased", |e| {
        matches!(e, Event::FenceReleased { .. })
    });
    let stopped = Instant::now();
    eventually("writes after the stop", Duration::from_secs(10), || {
        (pool_master(&pool) == old).then_some(())
    });
    let report = writer.finish();
    topology.resume(&frozen).unwrap();

    assert!(matches!(
        events.last(),
        Some(Event::FenceReleased {
            reason: FenceRelease::WatcherStopped,
            ..
        })
    ));
    assert!(!pool.stats().fenced);
    assert!(report.errors.is_empty(), "errors: {:?}", report.errors);
    assert!(report.acks.iter().any(|a| a.at > stopped && a.by == old));
}
