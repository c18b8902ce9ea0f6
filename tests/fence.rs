//! The fence: the watcher follows the failover leader's steps, fences the old master off the
//! moment a promotion starts, resumes on the promoted replica when the failover commits (or,
//! with `FenceResume::Promotion`, as soon as it answers master), and falls back on every other
//! way out (abort, timeout). Real failovers, a writer through `with_retry`, and the final
//! master's keys as the judge. The failures of the failover itself are in
//! `tests/fence_faults.rs`.

use support::fence as fence_kit;

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

use fence_kit::{
    Stalled, Writer, events, fence_up_at, pool, pool_master, pool_resuming_at, stalled,
    start_failover, until_writes_reach, wait_for_event,
};
use r2d2_redis_sentinel::{
    Event, FailoverSource, FenceRelease, FenceResume, NodeAddr, RetryPolicy,
    redis::{self, Commands},
    testkit::Topology,
};
use support::{direct, eventually, init_logging};

#[test]
fn a_planned_failover_loses_no_acknowledged_write_after_the_fence() {
    planned_failover(
        FenceResume::Commit,
        &[FailoverSource::SwitchMaster, FailoverSource::Reconciliation],
    );
}

#[test]
fn resuming_at_the_promotion_loses_nothing_in_a_planned_failover_either() {
    planned_failover(FenceResume::Promotion, &[FailoverSource::Promotion]);
}

/// A planned failover under a writer, with the fence resuming at `resume`: the pool resumes
/// on the promoted replica by one of `via`, and no write acknowledged after the fence went up
/// is lost.
fn planned_failover(resume: FenceResume, via: &[FailoverSource]) {
    init_logging();
    let topology = Topology::start().unwrap();
    let pool = pool_resuming_at(&topology, resume);
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
    assert!(
        resumed
            .as_ref()
            .is_some_and(|(to, how)| *to == new && via.contains(how)),
        "the pool resumes on the promoted replica by {via:?}: {events:?}"
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
        "planned failover, resuming at {resume:?}: {} writes, {} lost, longest gap {:?}",
        report.acks.len(),
        missing.len(),
        report.longest_gap
    );
}

#[test]
fn with_the_fence_off_the_pool_waits_for_the_announcement() {
    init_logging();
    let topology = Topology::start().unwrap();
    let pool = fence_kit::pool_without_fence(&topology);
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
fn resuming_at_the_promotion_writes_to_a_crashed_masters_successor_before_any_announcement() {
    init_logging();
    let mut topology = Topology::start().unwrap();
    let pool = pool_resuming_at(&topology, FenceResume::Promotion);
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

/// Sentinel gives the promotion up (`-failover-abort-slave-timeout`) before the fence's own
/// timeout: only with a `failover-timeout` shorter than `fence_timeout`, as here (2 s against
/// 20 s). At Sentinel's defaults the fence times out first: see the next test.
#[test]
fn an_aborted_failover_releases_the_fence_back_to_the_old_master() {
    init_logging();
    let Stalled {
        mut topology,
        old,
        frozen,
        pool,
        ..
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

/// A promotion that never happens, at the timings a deployment has: Sentinel's default
/// `failover-timeout` (3 minutes) and the pool's default `fence_timeout` (3 s) and retry
/// deadline (10 s). The fence times out long before Sentinel gives up, writes go on on the old
/// master (still the master: nothing was promoted), no error reaches a writer, and nothing is
/// lost that a pool without the fence, writing beside it, keeps.
#[test]
fn at_sentinels_default_timings_a_fence_that_sees_no_promotion_times_out_first() {
    init_logging();
    let (mut topology, old, _candidate, frozen) =
        fence_kit::stalled_topology(Duration::from_secs(180));
    let fenced = topology.pool_builder().max_size(4).build().unwrap();
    let unfenced = topology
        .pool_builder()
        .max_size(4)
        .fence(false)
        .build()
        .unwrap();
    let events_rx = fenced.events();
    let (with, without) = (
        Writer::start_with(&fenced, "fenced"),
        Writer::start_with(&unfenced, "unfenced"),
    );
    start_failover(&topology);
    let mut seen = Vec::new();
    eventually("the fence to time out", Duration::from_secs(20), || {
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
    until_writes_reach(&fenced, &old);
    let (with, without) = (with.finish(), without.finish());
    topology.resume(&frozen).unwrap();

    for report in [&with, &without] {
        assert!(
            report.errors.is_empty(),
            "{}: errors {:?}",
            report.prefix,
            report.errors
        );
        assert!(report.acks.iter().all(|a| a.by == old), "{}", report.prefix);
        assert!(report.missing_on(&old).is_empty(), "{}", report.prefix);
    }
    assert!(with.acks.iter().any(|a| a.at > released));
    assert!(fence_up_at(&seen).is_some());
    // Held for its own 3 s, not Sentinel's 3 minutes.
    assert!(
        with.longest_gap < Duration::from_secs(10),
        "a write waited {:?}",
        with.longest_gap
    );
    let stats = fenced.stats();
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
    // The other service did fail over: the test saw a real failover of it.
    let moved: Vec<String> = redis::cmd("SENTINEL")
        .arg(&["GET-MASTER-ADDR-BY-NAME", "other"])
        .query(&mut direct(&topology.sentinel_addrs()[0]))
        .unwrap();
    assert_ne!(moved[1], other_master.port.to_string(), "{moved:?}");
    assert_eq!(topology.master().unwrap(), master);
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
            .fence_resume(FenceResume::Promotion)
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
        ..
    } = stalled(Duration::from_secs(30), Duration::from_secs(30));
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

/// A connection blocked in a command on the master when the fence goes up is released at once
/// (`CLIENT UNBLOCK` from the pool: `UNBLOCKED`, nothing applied), and its `with_retry` blocks
/// again on the new master, instead of sitting out its timeout on the old one until Sentinel
/// demotes it (some ten seconds after the switch).
#[test]
fn a_connection_blocked_on_a_fenced_master_is_released_and_retries_on_the_new_one() {
    init_logging();
    let topology = Topology::start().unwrap();
    let old = topology.master().unwrap();
    let pool = topology
        .pool_builder()
        .max_size(2)
        .retry_policy(RetryPolicy::default().deadline(Duration::from_secs(30)))
        .build()
        .unwrap();
    // BLPOP, which every supported server has (BLMOVE came with Redis 6.2).
    let worker = {
        let pool = pool.clone();
        std::thread::spawn(move || {
            pool.with_retry(|c| {
                let job: Option<(String, String)> =
                    c.with_read_timeout(Duration::from_secs(25), |c| c.blpop("jobs", 20.0))?;
                Ok((job.map(|(_, job)| job), c.addr().clone()))
            })
        })
    };
    eventually(
        "the worker to block on the master",
        Duration::from_secs(5),
        || {
            let clients: String = redis::cmd("CLIENT")
                .arg("LIST")
                .query(&mut direct(&old))
                .unwrap();
            clients.contains("cmd=blpop").then_some(())
        },
    );
    let new = topology.failover().unwrap();
    let _: () = redis::cmd("RPUSH")
        .arg(&["jobs", "job-1"])
        .query(&mut direct(&new))
        .unwrap();
    let (job, by) = worker.join().unwrap().unwrap();
    let old_role: redis::Role = redis::cmd("ROLE").query(&mut direct(&old)).unwrap();
    assert_eq!(job.as_deref(), Some("job-1"));
    assert_eq!(by, new);
    assert!(
        matches!(old_role, redis::Role::Primary { .. }),
        "the worker was released by the demotion, not by the fence"
    );
    let left: u64 = direct(&new).llen("jobs").unwrap();
    assert_eq!(left, 0, "taken once");
}
