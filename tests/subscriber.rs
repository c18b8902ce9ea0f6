//! `pool.subscriber()`: pub/sub on the master that follows it across failovers and broken
//! connections, says so with an event, and bounds every wait.

use std::time::{Duration, Instant};

use r2d2_redis_sentinel::{
    Error, Event, NodeAddr, SentinelPool, Subscriber, redis, testkit::Topology,
};
use support::{direct, eventually, init_logging};

fn publish(node: &NodeAddr, channel: &str, text: &str) -> i64 {
    redis::cmd("PUBLISH")
        .arg(channel)
        .arg(text)
        .query(&mut direct(node))
        .unwrap()
}

/// Publishes on `node` until the subscriber receives it (a subscription made by the thread
/// in the background may not exist yet), and returns what it received.
fn delivered(subscriber: &Subscriber, node: &NodeAddr, channel: &str, text: &str) -> Vec<String> {
    eventually(
        &format!("{text:?} on {channel} to reach the subscriber"),
        Duration::from_secs(30),
        || {
            publish(node, channel, text);
            let mut got = Vec::new();
            while let Some(msg) = subscriber.recv_timeout(Duration::from_millis(200)).unwrap() {
                let payload: String = msg.get_payload().unwrap();
                got.push(format!("{}:{payload}", msg.get_channel_name()));
            }
            got.iter().any(|g| g.ends_with(text)).then_some(got)
        },
    )
}

fn resubscribed_on(pool: &SentinelPool, node: &NodeAddr) {
    let events = pool.events();
    eventually(
        &format!("the subscriber to subscribe again on {node}"),
        Duration::from_secs(30),
        || {
            events.try_iter().find_map(|e| match e {
                Event::Resubscribed {
                    address,
                    channels: 1,
                    patterns: 1,
                } if address == *node => Some(()),
                _ => None,
            })
        },
    );
}

#[test]
fn a_subscriber_follows_the_master_across_failovers_and_broken_connections() {
    init_logging();
    let topology = Topology::start().unwrap();
    let pool = topology.pool_builder().build().unwrap();
    let subscriber = pool.subscriber().unwrap();
    subscriber.subscribe("news").unwrap();
    subscriber.psubscribe("alerts:*").unwrap();
    let master = topology.master().unwrap();
    // Confirmed: what is published now is received, on the channel and through the pattern.
    assert_eq!(publish(&master, "news", "one"), 1);
    assert_eq!(publish(&master, "alerts:disk", "two"), 1);
    let mut got = Vec::new();
    while got.len() < 2 {
        let msg = subscriber
            .recv_timeout(Duration::from_secs(5))
            .unwrap()
            .expect("a message");
        let payload: String = msg.get_payload().unwrap();
        got.push(format!("{}:{payload}", msg.get_channel_name()));
    }
    assert_eq!(got, ["news:one", "alerts:disk:two"]);

    // A failover: Sentinel closes the subscription with the old master's other clients; the
    // subscriber makes it again on the new master.
    let new = topology.failover().unwrap();
    resubscribed_on(&pool, &new);
    delivered(&subscriber, &new, "news", "after-failover");
    delivered(&subscriber, &new, "alerts:cpu", "pattern-after-failover");

    // The connection closed under it (as Sentinel does): subscribed again on the same node.
    let _: i64 = redis::cmd("CLIENT")
        .arg("KILL")
        .arg("TYPE")
        .arg("pubsub")
        .query(&mut direct(&new))
        .unwrap();
    resubscribed_on(&pool, &new);
    delivered(&subscriber, &new, "news", "after-kill");

    // Unsubscribed: the channel stays silent, the pattern still hears.
    subscriber.unsubscribe("news").unwrap();
    assert_eq!(publish(&new, "news", "unheard"), 0);
    delivered(&subscriber, &new, "alerts:net", "still-heard");
}

#[test]
fn a_refused_subscription_is_a_typed_error_and_a_dropped_pool_ends_the_subscriber() {
    init_logging();
    let mut topology = Topology::start().unwrap();
    if support::older_than(&topology, 6, 2, "ACL rules for pub/sub channels") {
        return;
    }
    let master = topology.master().unwrap();
    let pool = topology
        .pool_builder()
        .username("reader")
        .password("reader-pass")
        .build_unchecked()
        .unwrap();
    // A user that may subscribe to news:* only.
    let _: () = redis::cmd("ACL")
        .arg("SETUSER")
        .arg("reader")
        .arg("on")
        .arg(">reader-pass")
        .arg("resetchannels")
        .arg("&news:*")
        .arg("+@all")
        .query(&mut direct(&master))
        .unwrap();
    let subscriber = pool.subscriber().unwrap();
    subscriber.subscribe("news:today").unwrap();
    let err = subscriber.subscribe("secrets").unwrap_err();
    assert!(
        matches!(
            err,
            Error::NoPermission {
                command: "SUBSCRIBE",
                ..
            }
        ),
        "{err:?}"
    );
    delivered(&subscriber, &master, "news:today", "allowed");

    // Dropping it while the master hangs returns within its bound.
    topology.pause(&master).unwrap();
    let began = Instant::now();
    drop(subscriber);
    let took = began.elapsed();
    topology.resume(&master).unwrap();
    assert!(took < Duration::from_secs(3), "dropping took {took:?}");

    // The pool gone, a subscriber of it stops with an error instead of waiting forever.
    let orphan = pool.subscriber().unwrap();
    drop(pool);
    let err = eventually("the orphan to stop", Duration::from_secs(10), || {
        orphan.recv_timeout(Duration::from_millis(100)).err()
    });
    assert!(err.to_string().contains("stopped"), "{err}");
}
