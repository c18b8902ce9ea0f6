//! The fence where it can fail: the failover it follows breaks halfway. Its leader dies right
//! after promoting, or freezes; the watcher joins while a failover is under way; a pool starts
//! before its watcher's first answer. In every case the fence must lose no acknowledged write
//! that a pool without it would have kept, and the next failover must be followed as a normal
//! one is. Where the comparison matters, a fenced pool and an unfenced one run side by side on
//! the same topology through the same fault.

use support::fence as fence_kit;

use std::time::{Duration, Instant};

use fence_kit::{
    Report, Writer, pool, pool_master, stalled, stalled_topology, start_failover,
    until_writes_reach, wait_for_event,
};
use r2d2_redis_sentinel::{
    Event, FenceRelease, NodeAddr,
    redis::{self, Role},
    testkit::Topology,
};
use support::{direct, eventually, init_logging};

/// The acknowledged writes of `report` made before `until` and missing from `node`.
fn lost_before(report: &Report, node: &NodeAddr, until: Instant) -> usize {
    report
        .missing_on(node)
        .iter()
        .filter(|a| a.at < until)
        .count()
}

#[test]
fn a_leader_that_dies_after_promoting_costs_no_write_and_the_next_failover_is_followed() {
    init_logging();
    let mut topology = Topology::start().unwrap();
    let old = topology.master().unwrap();
    let fenced = pool(&topology);
    let unfenced = fence_kit::pool_without_fence(&topology);
    let (with, without) = (
        Writer::start_with(&fenced, "fenced"),
        Writer::start_with(&unfenced, "unfenced"),
    );
    let events = fenced.events();

    // The first sentinel leads a failover and exits right after the promotion, before any
    // other sentinel learns of it: they keep the old master and convert the replica back.
    let mut leader = direct(&topology.sentinel_addrs()[0]);
    let _: () = redis::cmd("SENTINEL")
        .arg(&["SIMULATE-FAILURE", "CRASH-AFTER-PROMOTION"])
        .query(&mut leader)
        .unwrap();
    let _: () = redis::cmd("SENTINEL")
        .arg(&["FAILOVER", topology.service()])
        .query(&mut leader)
        .unwrap();
    let promoted = eventually(
        "the selected replica to be promoted",
        Duration::from_secs(20),
        || {
            topology.data_addrs().into_iter().find(|a| {
                *a != old
                    && matches!(
                        redis::cmd("ROLE").query::<Role>(&mut direct(a)),
                        Ok(Role::Primary { .. })
                    )
            })
        },
    );
    let seen = wait_for_event(&events, "FenceReleased", |e| {
        matches!(e, Event::FenceReleased { .. })
    });
    assert!(
        matches!(
            seen.last(),
            Some(Event::FenceReleased {
                reason: FenceRelease::LeaderLost { .. },
                ..
            })
        ),
        "the fence comes down when its leader is lost: {seen:?}"
    );
    // Both pools write to the old master again, which the surviving sentinels still name.
    eventually(
        "both pools on the old master",
        Duration::from_secs(10),
        || (pool_master(&fenced) == old && pool_master(&unfenced) == old).then_some(()),
    );
    topology.kill_sentinel(0).unwrap();

    // The next failover, through a surviving sentinel, is followed as a normal one.
    let second = Instant::now();
    let new = topology.failover().unwrap();
    until_writes_reach(&fenced, &new);
    until_writes_reach(&unfenced, &new);
    let (with, without) = (with.finish(), without.finish());

    assert!(with.errors.is_empty(), "errors: {:?}", with.errors);
    assert!(without.errors.is_empty(), "errors: {:?}", without.errors);
    let on_promoted = with
        .acks
        .iter()
        .filter(|a| a.by == promoted && a.at < second)
        .count();
    assert_eq!(
        on_promoted, 0,
        "the fenced pool wrote to {promoted}, promoted by a leader that died before committing"
    );
    let (lost_with, lost_without) = (
        lost_before(&with, &new, second),
        lost_before(&without, &new, second),
    );
    assert!(
        lost_with <= lost_without,
        "during the fault the fence lost {lost_with}, the unfenced pool {lost_without}"
    );
    // The second failover, planned: the fence loses nothing that was acknowledged after it
    // went up (the unfenced pool loses what the old master took until the announcement).
    let missing_after: usize = with
        .missing_on(&new)
        .iter()
        .filter(|a| a.at >= second)
        .count();
    assert!(
        missing_after <= 10,
        "{missing_after} writes lost in the failover after the fault"
    );
    assert_eq!(
        pool_master(&fenced),
        new,
        "the fenced pool followed the next failover"
    );
    eprintln!(
        "leader crashed after promotion: fence on {} writes, {lost_with} lost during the \
         fault, {missing_after} in the next failover, longest gap {:?}; fence off {} writes, \
         {lost_without} lost during the fault, {} in the next failover, longest gap {:?}",
        with.acks.len(),
        with.longest_gap,
        without.acks.len(),
        without
            .missing_on(&new)
            .iter()
            .filter(|a| a.at >= second)
            .count(),
        without.longest_gap,
    );
}

/// The watcher's subscriptions cut while the leader carries on (a network blip, an operator's
/// `CLIENT KILL TYPE pubsub`): the leader answers that it still leads the failover, so the
/// fence holds. Releasing it would send writes to the old master mid-failover, where the
/// commit would wipe them (the fault matrix measured it: 374 lost with the fence, 305 without).
/// Checked well before the fence's own timeout (8 s here).
#[test]
fn subscriptions_cut_while_the_leader_goes_on_keep_the_fence() {
    init_logging();
    let fence_kit::Stalled {
        mut topology,
        old,
        frozen,
        pool,
        ..
    } = stalled(Duration::from_secs(30), Duration::from_secs(8));
    let events = pool.events();
    let writer = Writer::start(&pool);
    start_failover(&topology);
    wait_for_event(&events, "FenceUp", |e| matches!(e, Event::FenceUp { .. }));
    let fenced_at = Instant::now();
    for sentinel in topology.sentinel_addrs() {
        let _: i64 = redis::cmd("CLIENT")
            .arg(&["KILL", "TYPE", "pubsub"])
            .query(&mut direct(&sentinel))
            .unwrap();
    }
    // Cut, and back: the watcher listens to every sentinel again.
    eventually(
        "the watcher to subscribe again",
        Duration::from_secs(10),
        || {
            let stats = pool.stats();
            let r2d2_redis_sentinel::WatcherState::Running { subscribed } = stats.watcher else {
                return None;
            };
            (subscribed.len() == 3 && fenced_at.elapsed() > Duration::from_secs(2)).then_some(())
        },
    );
    let seen: Vec<Event> = events.try_iter().collect();
    let (fenced, checked) = (pool.stats().fenced, Instant::now());
    let report = writer.finish();
    topology.resume(&frozen).unwrap();

    assert!(
        !seen
            .iter()
            .any(|e| matches!(e, Event::FenceReleased { .. })),
        "the fence was released: {seen:?}"
    );
    assert!(fenced, "{seen:?}");
    assert!(
        report
            .acks
            .iter()
            .filter(|a| a.at > fenced_at + Duration::from_millis(200) && a.at < checked)
            .all(|a| a.by != old),
        "a write reached the old master while its failover ran"
    );
}

#[test]
fn a_leader_frozen_mid_failover_releases_the_fence_long_before_its_timeout() {
    init_logging();
    let fence_timeout = Duration::from_secs(20);
    let fence_kit::Stalled {
        mut topology,
        old,
        frozen,
        pool,
        ..
    } = stalled(Duration::from_secs(30), fence_timeout);
    let events = pool.events();
    let writer = Writer::start(&pool);
    start_failover(&topology);
    wait_for_event(&events, "FenceUp", |e| matches!(e, Event::FenceUp { .. }));
    let leader = topology.sentinel_addrs()[0].clone();
    topology.pause(&leader).unwrap();
    let seen = wait_for_event(&events, "FenceReleased", |e| {
        matches!(e, Event::FenceReleased { .. })
    });
    let released = Instant::now();
    eventually("writes on the old master", Duration::from_secs(10), || {
        (pool_master(&pool) == old).then_some(())
    });
    let report = writer.finish();
    topology.resume(&leader).unwrap();
    topology.resume(&frozen).unwrap();

    let Some(Event::FenceReleased {
        reason: FenceRelease::LeaderLost { sentinel },
        held,
    }) = seen.last()
    else {
        panic!("no FenceReleased(LeaderLost): {seen:?}");
    };
    assert_eq!(*sentinel, leader);
    // The subscription's health check notices a silent sentinel within about 1.5 s.
    assert!(*held < Duration::from_secs(5), "held {held:?}");
    assert!(report.errors.is_empty(), "errors: {:?}", report.errors);
    assert!(report.acks.iter().any(|a| a.at > released && a.by == old));
    assert!(report.missing_on(&old).is_empty());
}

#[test]
fn a_watcher_that_joins_during_a_failover_fences_it_until_it_commits() {
    init_logging();
    let (mut topology, old, candidate, frozen) = stalled_topology(Duration::from_secs(30));
    start_failover(&topology);
    // The leader has sent REPLICAOF NO ONE (refused) and waits for the promotion.
    let leader = topology.sentinel_addrs()[0].clone();
    fence_kit::until_waiting_for_promotion(&topology, &leader);
    // A pool starts now: its watcher never sees the failover's first steps.
    let pool = topology
        .pool_builder()
        .max_size(4)
        .fence_timeout(Duration::from_secs(20))
        .build()
        .unwrap();
    let events = pool.events();
    let seen = wait_for_event(&events, "FenceUp", |e| matches!(e, Event::FenceUp { .. }));
    let Some(Event::FenceUp {
        old: fenced_off,
        candidate: following,
        sentinel,
        epoch: None,
        ..
    }) = seen.last()
    else {
        panic!("no FenceUp found under way: {seen:?}");
    };
    assert_eq!(
        (fenced_off.as_ref(), following, sentinel),
        (Some(&old), &candidate, &leader)
    );
    // The promotion happens (as the leader's command would have done it): a write sent now
    // waits for the failover to commit and lands on the promoted node, never on the old
    // master, which every sentinel still names for a second or so.
    let _: () = redis::cmd("ACL")
        .arg(&["SETUSER", "default", "+replicaof", "+slaveof"])
        .query(&mut direct(&candidate))
        .unwrap();
    let _: () = redis::cmd("REPLICAOF")
        .arg(&["NO", "ONE"])
        .query(&mut direct(&candidate))
        .unwrap();
    let by = pool
        .with_retry(|c| {
            let _: () = redis::cmd("SET").arg(&["joined", "late"]).query(c)?;
            Ok(c.addr().clone())
        })
        .unwrap();
    assert_eq!(by, candidate, "the first write after the promotion");
    let seen = wait_for_event(&events, "FenceResumed", |e| {
        matches!(e, Event::FenceResumed { .. })
    });
    assert!(
        matches!(seen.last(), Some(Event::FenceResumed { new, .. }) if *new == candidate),
        "{seen:?}"
    );
    topology.resume(&frozen).unwrap();
}

#[test]
fn a_pool_whose_connects_beat_its_watcher_reports_no_failover_at_start() {
    init_logging();
    let topology = Topology::start().unwrap();
    let pool = topology.pool_builder().build_unchecked().unwrap();
    let events = pool.events();
    let _conn = pool.get().unwrap();
    // Each subscriber reports its sentinel's master before it reports itself connected.
    let mut connected = 0;
    let mut seen = Vec::new();
    while connected < topology.sentinel_addrs().len() {
        let mut more = wait_for_event(&events, "WatcherConnected", |e| {
            matches!(e, Event::WatcherConnected { .. })
        });
        connected += 1;
        seen.append(&mut more);
    }
    assert!(
        !seen.iter().any(|e| matches!(e, Event::Failover { .. })),
        "no failover happened: {seen:?}"
    );
    assert_eq!(pool.stats().failovers, 0);
}

/// The fault behind durable mode's worst loss: the failover's leader sends `REPLICAOF NO ONE`
/// to the candidate and stalls (here frozen for 1.6 s, under Sentinel's 2 s TILT trigger),
/// long enough for the fence to come down on the old master (its timeout, 1 s), and then
/// commits the promotion. The candidate left the old master while the fence was up, so the
/// old master lists one replica: a durable pool that confirmed writes on it alone would have
/// them wiped by the commit (953 lost before the replica memory was kept per master). Both
/// durable pools, fenced and unfenced, must lose nothing.
#[test]
fn a_leader_stalled_after_the_promotion_costs_durable_pools_no_write() {
    init_logging();
    let mut topology = Topology::builder()
        .failover_timeout(Duration::from_secs(30))
        .start()
        .unwrap();
    let old = topology.master().unwrap();
    let replicas = support::replicas(&topology, &old);
    // The leader's own REPLICAOF NO ONE is refused, so that the test promotes the candidate
    // itself with the leader frozen: the stall comes right after the promotion, every time.
    for replica in &replicas {
        fence_kit::refuse_replicaof(replica, true);
    }
    let fenced = fence_kit::durable_pool_fenced(&topology, Some(Duration::from_secs(1)));
    let unfenced = fence_kit::durable_pool_fenced(&topology, None);
    let events = fenced.events();
    let (with, without) = (
        Writer::start_with(&fenced, "fenced"),
        Writer::start_with(&unfenced, "unfenced"),
    );

    start_failover(&topology);
    let seen = wait_for_event(&events, "FenceUp", |e| matches!(e, Event::FenceUp { .. }));
    let Some(Event::FenceUp { candidate, .. }) = seen.last().cloned() else {
        unreachable!()
    };
    let leader = topology.sentinel_addrs()[0].clone();
    fence_kit::until_waiting_for_promotion(&topology, &leader);
    fence_kit::stall_after_promotion(
        &mut topology,
        &leader,
        &candidate,
        Duration::from_millis(1600),
    );
    for replica in &replicas {
        fence_kit::refuse_replicaof(replica, false);
    }

    until_writes_reach(&fenced, &candidate);
    until_writes_reach(&unfenced, &candidate);
    let (with, without) = (with.finish(), without.finish());
    let (lost_with, lost_without) = (
        with.missing_on(&candidate).len(),
        without.missing_on(&candidate).len(),
    );
    eprintln!(
        "leader stalled after the promotion, durable: fence on {} writes, {lost_with} lost, \
         {} errors, longest gap {:?}; fence off {} writes, {lost_without} lost, {} errors, \
         longest gap {:?}",
        with.acks.len(),
        with.errors.len(),
        with.longest_gap,
        without.acks.len(),
        without.errors.len(),
        without.longest_gap,
    );
    assert_eq!(
        lost_with, 0,
        "the fenced durable pool lost acknowledged writes"
    );
    assert_eq!(
        lost_without, 0,
        "the unfenced durable pool lost acknowledged writes"
    );
    assert!(with.errors.is_empty(), "errors: {:?}", with.errors);
    assert!(without.errors.is_empty(), "errors: {:?}", without.errors);
}
