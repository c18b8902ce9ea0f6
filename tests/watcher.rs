//! The watcher: failovers are learned from the sentinels within a bounded time, from any
//! sentinel, after reconnecting, and from sentinels discovered later.

use std::time::{Duration, Instant};

use r2d2_redis_sentinel::{
    Event, Events, FailoverSource, NodeAddr, SentinelPool, WatcherState,
    redis::{self, Commands},
    testkit::Topology,
};
use support::{client_id, eventually, init_logging, is_master};

/// Waits until the watcher is subscribed to exactly `count` sentinels.
fn wait_subscribed(pool: &SentinelPool, count: usize) {
    eventually(
        &format!("the watcher to be subscribed to {count} sentinels"),
        Duration::from_secs(15),
        || match pool.stats().watcher {
            WatcherState::Running { subscribed } if subscribed.len() == count => Some(()),
            _ => None,
        },
    );
}

/// The next `Event::Failover` within `timeout`: (new master, generation, sentinel, source).
fn next_failover(events: &Events, timeout: Duration) -> (NodeAddr, u64, NodeAddr, FailoverSource) {
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match events.recv_timeout(left) {
            Some(Event::Failover {
                new,
                generation,
                sentinel,
                via,
                ..
            }) => return (new, generation, sentinel, via),
            Some(_) => continue,
            None => panic!("no failover event within {timeout:?}"),
        }
    }
}

fn failovers_in(events: &Events) -> usize {
    events
        .try_iter()
        .filter(|e| matches!(e, Event::Failover { .. }))
        .count()
}

#[test]
fn a_manual_failover_is_announced_and_the_next_checkout_reaches_the_new_master() {
    init_logging();
    let topology = Topology::start().unwrap();
    let pool = topology.pool_builder().max_size(4).build().unwrap();
    wait_subscribed(&pool, 3);
    let events = pool.events();
    let connected = events
        .try_iter()
        .filter(|e| matches!(e, Event::WatcherConnected { .. }))
        .count();
    assert_eq!(connected, 3, "one WatcherConnected per sentinel");
    let before = pool.generation();

    let new = topology.failover().unwrap();
    let (announced, generation, _, via) = next_failover(&events, Duration::from_secs(10));
    assert_eq!(announced, new);
    assert!(generation > before);
    // The fence resumes on the promoted replica before the announcement (tests/fence.rs).
    assert!(
        matches!(
            via,
            FailoverSource::Promotion | FailoverSource::SwitchMaster
        ),
        "{via:?}"
    );

    // No polling: the watcher already moved the pool.
    let mut conn = pool.get().unwrap();
    assert_eq!(*conn.addr(), new);
    assert!(is_master(&mut conn));
    let stats = pool.stats();
    assert_eq!(stats.failovers, 1);
    assert!(stats.last_failover.is_some());
    assert_eq!(stats.master, Some(new));
}

#[test]
fn a_master_crash_is_announced_and_the_next_checkout_reaches_the_new_master() {
    init_logging();
    let mut topology = Topology::start().unwrap();
    let pool = topology.pool_builder().max_size(4).build().unwrap();
    wait_subscribed(&pool, 3);
    let events = pool.events();
    let old = topology.kill_master().unwrap();
    let (announced, _, _, _) = next_failover(&events, Duration::from_secs(30));
    assert_ne!(announced, old);
    let mut conn = pool.get().unwrap();
    assert_eq!(*conn.addr(), announced);
    assert!(is_master(&mut conn));
}

#[test]
fn connections_from_before_a_failover_are_never_handed_out_again() {
    init_logging();
    let topology = Topology::start().unwrap();
    let pool = topology
        .pool_builder()
        .max_size(4)
        .min_idle(Some(4))
        .build()
        .unwrap();
    wait_subscribed(&pool, 3);
    support::wait_idle(&pool, 4);
    // CLIENT IDs are per server: a connection is named by its node and its id.
    let mut old_ids: Vec<(NodeAddr, i64)> = {
        let mut conns: Vec<_> = (0..3).map(|_| pool.get().unwrap()).collect();
        conns
            .iter_mut()
            .map(|c| (c.addr().clone(), client_id(c)))
            .collect()
    };
    let mut held = pool.get().unwrap();
    old_ids.push((held.addr().clone(), client_id(&mut held)));
    let old_generation = held.generation();
    let events = pool.events();

    let new = topology.failover().unwrap();
    next_failover(&events, Duration::from_secs(10));
    assert!(held.generation() < pool.generation());
    drop(held);

    let mut conns: Vec<_> = (0..4).map(|_| pool.get().unwrap()).collect();
    for conn in &mut conns {
        let id = (conn.addr().clone(), client_id(conn));
        assert!(
            !old_ids.contains(&id),
            "connection {id:?} from before the failover came back"
        );
        assert_eq!(conn.addr(), &new);
        assert!(conn.generation() > old_generation);
        assert_eq!(conn.generation(), pool.generation());
    }
}

#[test]
fn a_killed_sentinel_does_not_blind_the_watcher() {
    init_logging();
    let mut topology = Topology::start().unwrap();
    let pool = topology.pool_builder().build().unwrap();
    wait_subscribed(&pool, 3);
    let events = pool.events();
    let killed = topology.kill_sentinel(0).unwrap();
    wait_subscribed(&pool, 2);

    let new = topology.failover().unwrap();
    let (announced, _, sentinel, _) = next_failover(&events, Duration::from_secs(10));
    assert_eq!(announced, new);
    assert_ne!(sentinel, killed);
    assert_eq!(*pool.get().unwrap().addr(), new);
}

/// Runs `args` on every sentinel, as the default user.
fn on_every_sentinel(topology: &Topology, args: &[&str]) {
    for addr in topology.sentinel_addrs() {
        let mut cmd = redis::cmd(args[0]);
        for arg in &args[1..] {
            cmd.arg(*arg);
        }
        let _: redis::Value = cmd.query(&mut support::direct(&addr)).unwrap();
    }
}

#[test]
fn a_failover_missed_while_disconnected_is_caught_on_reconnect() {
    init_logging();
    let topology = Topology::start().unwrap();
    if support::older_than(&topology, 6, 2, "ACL users on sentinels") {
        return;
    }
    // The pool talks to the sentinels as its own ACL user, so it can be shut out alone while
    // the sentinels (and this test) carry on as the default user.
    on_every_sentinel(
        &topology,
        &["ACL", "SETUSER", "pool", "on", ">pw", "+@all", "~*", "&*"],
    );
    let pool = topology
        .pool_builder()
        .sentinel_username("pool")
        .sentinel_password("pw")
        .build()
        .unwrap();
    wait_subscribed(&pool, 3);
    let events = pool.events();

    on_every_sentinel(&topology, &["ACL", "SETUSER", "pool", "off"]);
    on_every_sentinel(&topology, &["CLIENT", "KILL", "USER", "pool"]);
    wait_subscribed(&pool, 0);

    let listener = topology.listen("+switch-master").unwrap();
    let new = topology.failover().unwrap();
    // Every sentinel has published the switch (the failover leader last, when its failover
    // ends), and the watcher heard none of it.
    let mut published = std::collections::HashSet::new();
    while published.len() < 3 {
        let message = listener
            .recv_timeout(Duration::from_secs(30))
            .expect("every sentinel publishes +switch-master");
        published.insert(message.sentinel);
    }
    assert_eq!(
        failovers_in(&events),
        0,
        "the watcher was supposed to be deaf"
    );

    on_every_sentinel(&topology, &["ACL", "SETUSER", "pool", "on"]);
    let (announced, _, _, via) = next_failover(&events, Duration::from_secs(15));
    assert_eq!(announced, new);
    assert_eq!(via, FailoverSource::Reconciliation);
    assert_eq!(*pool.get().unwrap().addr(), new);
}

#[test]
fn the_watcher_reconnects_after_every_sentinel_went_down_and_came_back() {
    init_logging();
    let mut topology = Topology::start().unwrap();
    let pool = topology.pool_builder().build().unwrap();
    wait_subscribed(&pool, 3);
    let sentinels = topology.sentinel_addrs();
    for i in 0..sentinels.len() {
        topology.kill_sentinel(i).unwrap();
    }
    wait_subscribed(&pool, 0);
    assert!(
        pool.events()
            .try_iter()
            .any(|e| matches!(e, Event::WatcherDisconnected { .. }))
    );
    for addr in &sentinels {
        topology.restart(addr).unwrap();
    }
    wait_subscribed(&pool, 3);
    topology.wait_settled().unwrap();

    let events = pool.events();
    let new = topology.failover().unwrap();
    let (announced, _, _, _) = next_failover(&events, Duration::from_secs(10));
    assert_eq!(announced, new);
    let mut conn = pool.get().unwrap();
    assert_eq!(*conn.addr(), new);
    assert!(is_master(&mut conn));
}

#[test]
fn a_sentinel_added_later_is_learned_and_used_when_the_original_ones_are_gone() {
    init_logging();
    let mut topology = Topology::start().unwrap();
    let master = topology.master().unwrap();
    let pool = topology.pool_builder().build().unwrap();
    wait_subscribed(&pool, 3);
    let events = pool.events();

    let added = topology.add_sentinel().unwrap();
    wait_subscribed(&pool, 4);
    assert!(pool.stats().sentinels.contains(&added));
    assert!(
        events.try_iter().any(
            |e| matches!(e, Event::SentinelsChanged { added: ref a, .. } if a.contains(&added))
        )
    );

    for i in 0..3 {
        topology.kill_sentinel(i).unwrap();
    }
    // A fresh lookup can only be answered by the sentinel the pool learned of.
    pool.invalidate();
    let mut conn = pool.get().unwrap();
    assert_eq!(*conn.addr(), master);
    let _: () = conn.set("k", "v").unwrap();
    wait_subscribed(&pool, 1);
}

#[test]
fn stop_watcher_joins_its_threads_and_the_pool_keeps_working() {
    init_logging();
    let topology = Topology::start().unwrap();
    let pool = topology.pool_builder().build().unwrap();
    wait_subscribed(&pool, 3);
    // Stopping joins the threads; on a loaded machine that may take a while, not forever.
    let stopper = {
        let pool = pool.clone();
        std::thread::spawn(move || pool.stop_watcher())
    };
    eventually("stop_watcher to return", Duration::from_secs(5), || {
        stopper.is_finished().then_some(())
    });
    stopper.join().unwrap();
    assert_eq!(pool.stats().watcher, WatcherState::Stopped);
    pool.stop_watcher();
    assert_eq!(pool.stats().watcher, WatcherState::Stopped);
    let _: () = pool.get().unwrap().set("k", "v").unwrap();
}

#[test]
fn a_silent_subscription_is_noticed_by_its_health_check() {
    init_logging();
    let mut topology = Topology::start().unwrap();
    let pool = topology.pool_builder().build().unwrap();
    wait_subscribed(&pool, 3);
    // SIGSTOP: the socket stays open and silent; only the PING health check can tell.
    let frozen = topology.sentinel_addrs()[0].clone();
    topology.pause(&frozen).unwrap();
    wait_subscribed(&pool, 2);
    match pool.stats().watcher {
        WatcherState::Running { subscribed } => assert!(!subscribed.contains(&frozen)),
        other => panic!("{other:?}"),
    }
    topology.resume(&frozen).unwrap();
    wait_subscribed(&pool, 3);
}

/// Item 11: the watcher's subscriptions are cut every 100 ms while a planned failover runs,
/// so it learns of the switch by reconciliation. The failover leader's interim answer (old
/// master, new epoch) must not make the true answer look stale: the pool moves within
/// seconds, long before Sentinel demotes the old master (about 10 s).
#[test]
fn cutting_the_watchers_subscriptions_during_a_failover_does_not_blind_it() {
    use std::sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    };
    init_logging();
    let topology = Topology::start().unwrap();
    let old = topology.master().unwrap();
    let pool = topology.pool_builder().max_size(2).build().unwrap();
    wait_subscribed(&pool, 3);
    let stop = Arc::new(AtomicBool::new(false));
    let cutter = {
        let (stop, sentinels) = (Arc::clone(&stop), topology.sentinel_addrs());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                for sentinel in &sentinels {
                    let _ = redis::cmd("CLIENT")
                        .arg("KILL")
                        .arg("TYPE")
                        .arg("pubsub")
                        .query::<i64>(&mut support::direct(sentinel));
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        })
    };
    let new = topology.failover().unwrap();
    let deadline = Instant::now() + Duration::from_secs(4);
    while pool.master() != Some(new.clone()) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let moved = pool.master() == Some(new.clone());
    stop.store(true, Ordering::Relaxed);
    cutter.join().unwrap();
    assert!(
        moved,
        "the pool stayed on {old}, not {new}: {:?}",
        pool.stats()
    );
    assert!(is_master(&mut pool.get().unwrap()));
}

fn connections_received(addr: &NodeAddr) -> u64 {
    let info: String = redis::cmd("INFO")
        .arg("stats")
        .query(&mut support::direct(addr))
        .unwrap();
    info.lines()
        .find_map(|l| l.strip_prefix("total_connections_received:"))
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

/// Item 12: a data node listed among the sentinels is not reconnected to in a loop, and its
/// failures make one event, not one per attempt.
#[test]
fn a_data_node_in_the_sentinel_list_is_not_reconnected_to_in_a_loop() {
    init_logging();
    let topology = Topology::start().unwrap();
    let master = topology.master().unwrap();
    let replica = support::replica(&topology, &master);
    let mut sentinels = vec![format!("redis://{replica}")];
    sentinels.extend(topology.sentinel_urls());
    let pool = SentinelPool::builder(sentinels, topology.service())
        .build()
        .unwrap();
    let events = pool.events();
    wait_subscribed(&pool, 3);
    let before = connections_received(&replica);
    // An observation window, not a synchronisation: count what the watcher does in it.
    std::thread::sleep(Duration::from_secs(4));
    let made = connections_received(&replica) - before - 1;
    assert!(made <= 4, "{made} connections to the data node in 4 s");
    let disconnects = events
        .try_iter()
        .filter(
            |e| matches!(e, Event::WatcherDisconnected { sentinel, .. } if *sentinel == replica),
        )
        .count();
    assert!(
        disconnects <= 1,
        "{disconnects} disconnect events for one outage"
    );
}

/// Item 12: discovery can be turned off, and the number of known sentinels is bounded.
#[test]
fn sentinel_discovery_can_be_turned_off_and_is_bounded() {
    init_logging();
    let topology = Topology::start().unwrap();
    let two = &topology.sentinel_urls()[..2];
    // Control: with discovery, the third sentinel is learned from the first two.
    let learning = SentinelPool::builder(two, topology.service())
        .build()
        .unwrap();
    wait_subscribed(&learning, 3);
    for pool in [
        SentinelPool::builder(two, topology.service())
            .discover_sentinels(false)
            .build()
            .unwrap(),
        SentinelPool::builder(two, topology.service())
            .max_sentinels(2)
            .build()
            .unwrap(),
    ] {
        // A subscriber reports the sentinels it was told of before it reports itself
        // connected, so once both are connected, both reports were handled.
        wait_subscribed(&pool, 2);
        assert_eq!(
            pool.stats().sentinels.len(),
            2,
            "{:?}",
            pool.stats().sentinels
        );
        match pool.stats().watcher {
            WatcherState::Running { subscribed } => assert_eq!(subscribed.len(), 2),
            other => panic!("{other:?}"),
        }
    }
}
