//! Valkey 9's coordinated failover (`SENTINEL FAILOVER <master> COORDINATED`): the master
//! pauses writes, waits until the replica has them all and hands over by itself. The default
//! pool still waits for Sentinel's commit (a handover is no commitment); one that resumes at
//! the promotion resumes as soon as the new master answers master and the old one answers
//! replica, and replaces its connections to the new master when Sentinel closes every client
//! of both nodes, before they fail. Each test skips (and says so) on servers without
//! coordinated failovers.

use support::fence as fence_kit;

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

use fence_kit::{Writer, events, pool, pool_master, until_writes_reach};
use r2d2_redis_sentinel::{
    Durability, Error, Event, FailoverSource, FenceResume, NodeAddr, RetryPolicy, SentinelPool,
    redis::{self, Commands},
    testkit::{self, Listener, Topology},
};
use support::{direct, eventually, init_logging};

/// Whether the server the kit runs has coordinated failovers (else a line says the test is
/// skipped).
fn coordinated_server() -> bool {
    init_logging();
    let server = testkit::server_version().unwrap();
    if !server.coordinated_failover() {
        eprintln!("skipped: {server} has no coordinated failover (Valkey 9 and later)");
    }
    server.coordinated_failover()
}

/// A topology on a server with coordinated failovers, or `None` (and a line saying so).
fn topology() -> Option<Topology> {
    coordinated_server().then(|| Topology::start().unwrap())
}

/// Whether the pool's events say it resumed on `new` at the handover, and that this was the
/// only failover it applied (the sentinels' `+switch-master` only confirmed it).
fn resumed_at_handover(events: &[Event], new: &NodeAddr) -> bool {
    let resumed = events.iter().any(|e| {
        matches!(e, Event::FenceResumed { new: to, via: FailoverSource::Handover, .. } if to == new)
    });
    let failovers: Vec<FailoverSource> = events
        .iter()
        .filter_map(|e| match e {
            Event::Failover { via, .. } => Some(*via),
            _ => None,
        })
        .collect();
    resumed && failovers == [FailoverSource::Handover]
}

/// Listens for the leader's `+promoted-slave`: it publishes it when its `INFO` polling sees
/// the promotion, as it closes every client of both nodes.
fn promotions(topology: &Topology) -> Listener {
    topology.listen("+promoted-slave").unwrap()
}

/// Waits until the leader saw the promotion, and so closed the new master's clients.
fn until_clients_closed(promoted: &Listener) {
    promoted
        .recv_timeout(Duration::from_secs(10))
        .expect("the leader to see the promotion and close the clients");
}

/// A writer on `pool` through a coordinated failover, past the moment Sentinel closes the new
/// master's clients, until it writes there: the new master, what the writer saw, and the
/// pool's events.
fn write_through_coordinated_failover(
    topology: &Topology,
    pool: &SentinelPool,
) -> (NodeAddr, fence_kit::Report, Vec<Event>) {
    let writer = Writer::start(pool);
    let promoted = promotions(topology);
    let new = topology.failover_coordinated().unwrap();
    // Sentinel closes the new master's clients when its leader sees the promotion: the writer
    // goes on through it.
    until_clients_closed(&promoted);
    until_writes_reach(pool, &new);
    (new, writer.finish(), fence_kit::events(pool))
}

/// A pool of 4 with a 30 s retry deadline that resumes at the promotion, and so at a
/// handover.
fn promoting_pool(topology: &Topology) -> SentinelPool {
    fence_kit::pool_resuming_at(topology, FenceResume::Promotion)
}

#[test]
fn a_coordinated_failover_loses_nothing_and_resumes_at_the_handover_only_when_asked() {
    for resume in [FenceResume::Commit, FenceResume::Promotion] {
        let Some(topology) = topology() else { return };
        let pool = fence_kit::pool_resuming_at(&topology, resume);
        let old = topology.master().unwrap();
        let (new, report, events) = write_through_coordinated_failover(&topology, &pool);

        assert!(report.errors.is_empty(), "errors: {:?}", report.errors);
        if resume == FenceResume::Promotion {
            assert!(resumed_at_handover(&events, &new), "{events:?}");
        } else {
            // The handover is no commitment: the default waits for a sentinel to name it.
            let via = events.iter().find_map(|e| match e {
                Event::FenceResumed { new: to, via, .. } if *to == new => Some(*via),
                _ => None,
            });
            assert!(
                matches!(
                    via,
                    Some(FailoverSource::SwitchMaster | FailoverSource::Reconciliation)
                ),
                "{events:?}"
            );
        }
        assert!(report.acks.iter().any(|a| a.by == old));
        let missing = report.missing_on(&new);
        assert!(
            missing.is_empty(),
            "{} acknowledged writes lost in a coordinated failover",
            missing.len()
        );
        let stats = pool.stats();
        assert_eq!(
            (stats.fences_raised, stats.fences_resumed, stats.fenced),
            (1, 1, false)
        );
        let held = events.iter().find_map(|e| match e {
            Event::FenceResumed { held, .. } => Some(*held),
            _ => None,
        });
        eprintln!(
            "coordinated failover, {resume:?}: {} writes, 0 lost, fence held {held:?}, longest \
             gap {:?}",
            report.acks.len(),
            report.longest_gap
        );
    }
}

/// A writer that sends one `INCR` per checkout through `with_retry`, which never re-runs a
/// write that may have been applied: every error it surfaces is kept.
fn incr_writer(
    pool: &SentinelPool,
    stop: &Arc<AtomicBool>,
) -> thread::JoinHandle<(u64, Vec<Error>)> {
    let (pool, stop) = (pool.clone(), Arc::clone(stop));
    thread::spawn(move || {
        let (mut acked, mut errors) = (0, Vec::new());
        while !stop.load(Ordering::Relaxed) {
            match pool.with_retry(|c| c.incr::<_, _, u64>("counter", 1)) {
                Ok(_) => acked += 1,
                Err(err) => errors.push(err),
            }
        }
        (acked, errors)
    })
}

#[test]
fn the_kill_wave_surfaces_no_error_through_with_retry() {
    let Some(topology) = topology() else { return };
    let pool = promoting_pool(&topology);
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..4).map(|_| incr_writer(&pool, &stop)).collect();
    let promoted = promotions(&topology);
    let new = topology.failover_coordinated().unwrap();
    until_clients_closed(&promoted);
    let before: u64 = direct(&new).get("counter").unwrap();
    eventually(
        "writes to go on after the kill",
        Duration::from_secs(5),
        || (direct(&new).get::<_, u64>("counter").unwrap() > before + 100).then_some(()),
    );
    stop.store(true, Ordering::Relaxed);
    let mut acked = 0;
    let mut errors = Vec::new();
    for writer in writers {
        let (a, e) = writer.join().unwrap();
        acked += a;
        errors.extend(e);
    }
    let counter: u64 = direct(&new).get("counter").unwrap();
    let events = fence_kit::events(&pool);

    assert!(resumed_at_handover(&events, &new), "{events:?}");
    // Each acknowledged INCR was applied once on the master that kept them all; a write
    // that may have been applied would be an error, never silently sent again.
    assert_eq!(counter, acked, "errors: {errors:?}");
    assert!(errors.is_empty(), "errors: {errors:?}");
}

#[test]
fn plain_checkouts_see_at_most_one_error_per_killed_connection() {
    let Some(topology) = topology() else { return };
    let max_size = 4;
    let pool = topology
        .pool_builder()
        .max_size(max_size)
        .fence_resume(FenceResume::Promotion)
        .build()
        .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..max_size)
        .map(|_| {
            let (pool, stop) = (pool.clone(), Arc::clone(&stop));
            thread::spawn(move || {
                let mut errors = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    let done = pool.get().map_err(|e| e.to_string()).and_then(|mut c| {
                        c.incr::<_, _, u64>("counter", 1).map_err(|e| e.to_string())
                    });
                    if let Err(err) = done {
                        errors.push(err);
                    }
                }
                errors
            })
        })
        .collect();
    let promoted = promotions(&topology);
    let new = topology.failover_coordinated().unwrap();
    until_clients_closed(&promoted);
    until_master_counts(&new, 100);
    stop.store(true, Ordering::Relaxed);
    let errors: Vec<String> = writers
        .into_iter()
        .flat_map(|w| w.join().unwrap())
        .collect();
    let events = fence_kit::events(&pool);

    assert!(resumed_at_handover(&events, &new), "{events:?}");
    // A connection checked out when the fence rose refuses its next request, and one the kill
    // closed fails once; the pool holds `max_size` connections.
    assert!(
        errors.len() <= 2 * max_size as usize,
        "{} errors: {errors:?}",
        errors.len()
    );
    eprintln!("plain checkouts: {} errors: {errors:?}", errors.len());
}

/// Waits until `counter` on `node` grew by `more`.
fn until_master_counts(node: &NodeAddr, more: u64) {
    let before: u64 = direct(node).get("counter").unwrap_or(0);
    eventually("writes on the new master", Duration::from_secs(10), || {
        (direct(node).get::<_, u64>("counter").unwrap_or(0) >= before + more).then_some(())
    });
}

#[test]
fn a_durable_write_in_flight_at_the_handover_gets_a_clear_answer_in_time() {
    let Some(topology) = topology() else { return };
    let wait = Duration::from_millis(500);
    let pool = topology
        .pool_builder()
        .max_size(4)
        .durability(Durability::all_replicas().timeout(wait))
        .retry_policy(RetryPolicy::default().deadline(Duration::from_secs(30)))
        .build()
        .unwrap();
    let master = pool_master(&pool);
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..4u64)
        .map(|w| {
            let (pool, stop) = (pool.clone(), Arc::clone(&stop));
            thread::spawn(move || {
                let mut outcomes = Vec::new();
                let mut key = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    key += 1;
                    let started = Instant::now();
                    let done = pool.with_retry(|c| c.set::<_, _, ()>(format!("d:{w}:{key}"), key));
                    outcomes.push((format!("d:{w}:{key}"), started.elapsed(), done));
                }
                outcomes
            })
        })
        .collect();
    let mut probe = direct(&master);
    eventually("the writers to start", Duration::from_secs(5), || {
        probe.exists::<_, bool>("d:0:1").unwrap().then_some(())
    });
    let new = topology.failover_coordinated().unwrap();
    eventually("writes on the new master", Duration::from_secs(10), || {
        (redis::cmd("DBSIZE")
            .query::<u64>(&mut direct(&new))
            .unwrap()
            > 0)
        .then_some(())
    });
    thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::Relaxed);
    let outcomes: Vec<_> = writers
        .into_iter()
        .flat_map(|w| w.join().unwrap())
        .collect();

    let mut conn = direct(&new);
    let mut counts = std::collections::BTreeMap::new();
    for (key, took, done) in &outcomes {
        // The longest a durable write may take: its read timeout, which covers the WAIT.
        assert!(
            *took < Duration::from_secs(5),
            "{key} took {took:?}: {done:?}"
        );
        let kind = match done {
            Ok(()) => {
                assert!(
                    conn.exists::<_, bool>(key).unwrap(),
                    "{key} was confirmed and is lost"
                );
                "confirmed"
            }
            Err(Error::NotReplicated { .. }) => "not replicated",
            Err(Error::MaybeApplied { .. }) => "maybe applied",
            Err(err) => panic!("{key}: an answer that says nothing of the write: {err:?}"),
        };
        *counts.entry(kind).or_insert(0) += 1;
    }
    assert!(counts.contains_key("confirmed"), "{counts:?}");
    eprintln!("durable writes through a coordinated failover: {counts:?}");
}

#[test]
fn a_stalled_handover_is_told_and_held_in_the_pool_until_sentinel_gives_up() {
    if !coordinated_server() {
        return;
    }
    let failover_timeout = Duration::from_secs(6);
    let mut topology = Topology::builder()
        .failover_timeout(failover_timeout)
        .start()
        .unwrap();
    let pool = pool(&topology);
    let impatient = topology
        .pool_builder()
        .retry_policy(RetryPolicy::default().deadline(Duration::from_secs(2)))
        .build()
        .unwrap();
    let old = topology.master().unwrap();
    let writer = Writer::start(&pool);
    // Replicas that stopped acknowledging, still selectable for a second (until the sentinels
    // call them down): the master pauses writes for a handover that never comes.
    let replicas: Vec<NodeAddr> = topology
        .data_addrs()
        .into_iter()
        .filter(|a| *a != old)
        .collect();
    for replica in &replicas {
        topology.pause(replica).unwrap();
    }
    let sentinel = &topology.sentinel_addrs()[0];
    let _: String = redis::cmd("SENTINEL")
        .arg("FAILOVER")
        .arg(topology.service())
        .arg("COORDINATED")
        .query(&mut direct(sentinel))
        .unwrap();
    let mut seen = Vec::new();
    let stalled = eventually("the stall to be told", Duration::from_secs(10), || {
        seen.extend(events(&pool));
        seen.iter().find_map(|e| match e {
            Event::HandoverStalled {
                master,
                candidate,
                held,
            } => Some((master.clone(), candidate.clone(), *held)),
            _ => None,
        })
    });
    // A caller whose deadline ends first is told why.
    let gave_up = impatient
        .with_retry_idempotent(|c| c.set::<_, _, ()>("impatient", 1))
        .unwrap_err();
    eventually("Sentinel to give up", failover_timeout * 3, || {
        seen.extend(events(&pool));
        seen.iter()
            .any(|e| matches!(e, Event::FenceReleased { .. }))
            .then_some(())
    });
    for replica in &replicas {
        topology.resume(replica).unwrap();
    }
    until_writes_reach(&pool, &old);
    let report = writer.finish();

    assert_eq!(stalled.0.as_ref(), Some(&old), "{seen:?}");
    assert!(replicas.contains(&stalled.1), "{seen:?}");
    assert!(stalled.2 >= Duration::from_secs(1), "{seen:?}");
    assert!(
        gave_up
            .to_string()
            .contains("coordinated failover of \"mymaster\" is stalled"),
        "{gave_up}"
    );
    // The writes waited in the pool, and went on on the master that kept its role.
    assert!(report.errors.is_empty(), "errors: {:?}", report.errors);
    assert!(report.missing_on(&old).is_empty());
    let held = seen.iter().find_map(|e| match e {
        Event::FenceReleased { held, .. } => Some(*held),
        _ => None,
    });
    eprintln!(
        "stalled handover: told after {:?}, fence held {held:?}",
        stalled.2
    );
}

/// Sentinel's own ACL user on the data nodes, as the guide's recipe gives it: what a plain
/// failover needs, and what a coordinated one adds (`FAILOVER`, `CLIENT PAUSE`/`UNPAUSE`).
const SENTINEL_RULES: &[&str] = &[
    "on",
    ">sentinel-pass",
    "allchannels",
    "+multi",
    "+exec",
    "+slaveof",
    "+replicaof",
    "+ping",
    "+info",
    "+role",
    "+publish",
    "+subscribe",
    "+config|rewrite",
    "+client|setname",
    "+client|kill",
    "+script|kill",
    "+failover",
    "+client|pause",
    "+client|unpause",
];

/// Gives every sentinel of `topology` the user `sentinel` with `rules` on every data node,
/// and waits until every sentinel's connection to the master is that user's.
fn sentinel_user(topology: &Topology, rules: &[&str]) {
    let rules: Vec<&str> = std::iter::once("reset")
        .chain(rules.iter().copied())
        .collect();
    support::acl_user_everywhere(topology, "sentinel", &rules);
    for sentinel in topology.sentinel_addrs() {
        for (option, value) in [("auth-user", "sentinel"), ("auth-pass", "sentinel-pass")] {
            let _: () = redis::cmd("SENTINEL")
                .arg("SET")
                .arg(topology.service())
                .arg(option)
                .arg(value)
                .query(&mut direct(&sentinel))
                .unwrap();
        }
    }
    let master = topology.master().unwrap();
    eventually(
        "the sentinels to log in as their user",
        Duration::from_secs(10),
        || {
            let clients: String = redis::cmd("CLIENT")
                .arg("LIST")
                .query(&mut direct(&master))
                .unwrap();
            let sentinels = clients
                .lines()
                .filter(|c| c.contains("name=sentinel-") && c.contains("-cmd "))
                .collect::<Vec<_>>();
            (sentinels.len() == 3 && sentinels.iter().all(|c| c.contains("user=sentinel ")))
                .then_some(())
        },
    );
}

#[test]
fn sentinel_with_the_least_privileged_user_runs_a_coordinated_failover_the_pool_follows() {
    let Some(topology) = topology() else { return };
    sentinel_user(&topology, SENTINEL_RULES);
    // The pool's own user is a least-privileged one too: no `ROLE`, roles asked with `HELLO`.
    support::acl_user_everywhere(
        &topology,
        "app",
        &["on", ">app-pass", "~*", "&*", "+@all", "-@dangerous"],
    );
    let pool = topology
        .pool_builder()
        .username("app")
        .password("app-pass")
        .max_size(4)
        .fence_resume(FenceResume::Promotion)
        .retry_policy(RetryPolicy::default().deadline(Duration::from_secs(30)))
        .build()
        .unwrap();
    let (new, report, events) = write_through_coordinated_failover(&topology, &pool);

    assert!(report.errors.is_empty(), "errors: {:?}", report.errors);
    assert!(resumed_at_handover(&events, &new), "{events:?}");
    assert!(report.missing_on(&new).is_empty());
}

#[test]
fn without_failover_in_its_acl_sentinel_cannot_hand_over() {
    let Some(topology) = topology() else { return };
    let rules: Vec<&str> = SENTINEL_RULES
        .iter()
        .copied()
        .filter(|r| *r != "+failover")
        .collect();
    sentinel_user(&topology, &rules);
    let old = topology.master().unwrap();
    let abort = topology.listen("-failover-abort-slave-timeout").unwrap();
    // Until the sentinel has fresh enough news of a replica it answers NOGOODSLAVE (CI met
    // it on a loaded machine): ask until it accepts, as the kit's own failovers do.
    let mut sentinel = direct(&topology.sentinel_addrs()[0]);
    eventually(
        "the sentinel to accept the failover",
        Duration::from_secs(20),
        || {
            redis::cmd("SENTINEL")
                .arg("FAILOVER")
                .arg(topology.service())
                .arg("COORDINATED")
                .query::<String>(&mut sentinel)
                .ok()
        },
    );
    // The leader's `MULTI`, `CLIENT PAUSE`, `FAILOVER TO`, `EXEC` is refused whole; it waits
    // for a promotion that never comes, and gives up at its failover-timeout.
    assert!(
        abort.recv_timeout(Duration::from_secs(60)).is_some(),
        "the failover was not given up"
    );
    assert_eq!(topology.master().unwrap(), old);
}

#[test]
fn a_subscriber_follows_the_handover_and_the_kill_wave() {
    let Some(topology) = topology() else { return };
    let pool = promoting_pool(&topology);
    let subscriber = pool.subscriber().unwrap();
    subscriber.subscribe("news").unwrap();
    let promoted = promotions(&topology);
    let new = topology.failover_coordinated().unwrap();
    // Sentinel closes the pub/sub clients of both nodes too, after the pool moved: the
    // subscriber subscribes again, and messages published on the new master reach it.
    until_clients_closed(&promoted);
    eventually(
        "a message on the new master to reach the subscriber",
        Duration::from_secs(30),
        || {
            let _: i64 = redis::cmd("PUBLISH")
                .arg("news")
                .arg("after the handover")
                .query(&mut direct(&new))
                .unwrap();
            let mut got = None;
            while let Some(msg) = subscriber.recv_timeout(Duration::from_millis(200)).unwrap() {
                got = Some(msg.get_payload::<String>().unwrap());
            }
            (got.as_deref() == Some("after the handover")).then_some(())
        },
    );
}
