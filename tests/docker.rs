//! The `docker/` deployment, on a real Docker engine: the pool reaches the nodes through the
//! address map (announced on one network, reached on another), follows a `SENTINEL FAILOVER`,
//! follows a partition that the sentinels see and the client does not
//! (`docker network disconnect`), and loses nothing with the fence when the failover's leader is
//! cut off from the other sentinels right after it sent `REPLICAOF NO ONE` (compared with a pool
//! without the fence, side by side), then follows the next failover.
//!
//! Needs a Docker engine with `docker-compose` and a Redis image: `REDIS_IMAGE`, or the one
//! `docker/build-image.sh` builds. Without an engine, or without `REDIS_IMAGE` and the local
//! image, the test says so and passes without running: everything else in the suite runs without
//! Docker. An image named by `REDIS_IMAGE` that the engine does not have is a failure, not a skip.

use support::docker as docker_kit;

use support::fence as fence_kit;

use std::{
    thread,
    time::{Duration, Instant},
};

use docker_kit::{
    CLIENT_SENTINELS, Compose, SENTINELS, pool_builder, query, service_of, settle, settled,
    succeeds, to_client_addr, until_pools_write_to,
};
use fence_kit::{Writer, pool_master};
use r2d2_redis_sentinel::{NodeAddr, redis};
use support::{eventually, init_logging};

/// Letters and digits only: every Compose version keeps such a name as it is.
const PROJECT: &str = "r2d2sentineltest";

#[test]
fn a_docker_deployment_is_followed_through_a_failover_and_a_partition() {
    init_logging();
    let Some(image) = docker_kit::image() else {
        return;
    };
    let compose = Compose::new(PROJECT, image, Duration::from_secs(1));
    settle(
        "the containers' sentinels to settle",
        Duration::from_secs(60),
        &SENTINELS,
    );
    let pool = pool_builder().build().unwrap();
    let first = settled().unwrap();
    assert_eq!(
        pool.master(),
        Some(NodeAddr::new(to_client_addr(&first), 6379)),
        "the pool reaches the master on the client network"
    );

    // A planned failover, inside the containers.
    let writer = Writer::start_with(&pool, "planned");
    thread::sleep(Duration::from_millis(500));
    let mut cmd = redis::cmd("SENTINEL");
    cmd.arg("FAILOVER").arg("mymaster");
    let _: String = query(SENTINELS[0], 26379, &cmd).expect("SENTINEL FAILOVER");
    let old = NodeAddr::new(to_client_addr(&first), 6379);
    let new = eventually("the pool to move", Duration::from_secs(30), || {
        Some(pool_master(&pool)).filter(|m| *m != old)
    });
    thread::sleep(Duration::from_millis(500));
    let report = writer.finish();
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    assert_eq!(
        report.missing_on(&new).len(),
        0,
        "acknowledged writes lost in a planned failover"
    );
    eprintln!(
        "planned failover in containers: {} writes, 0 errors, 0 lost",
        report.acks.len()
    );

    // A partition: the master loses the sentinels' network, the client still reaches it.
    let announced = settle(
        "the containers to settle again",
        Duration::from_secs(90),
        &SENTINELS,
    );
    let partitioned = NodeAddr::new(to_client_addr(&announced), 6379);
    assert_eq!(pool_master(&pool), partitioned);
    let container = compose.container(service_of(&announced));
    let network = compose.network("redis");
    let writer = Writer::start_with(&pool, "partition");
    thread::sleep(Duration::from_millis(500));
    let cut = Instant::now();
    assert!(
        succeeds("docker", &["network", "disconnect", &network, &container]),
        "docker network disconnect {network} {container}"
    );
    let promoted = eventually(
        "the pool to leave the partitioned master",
        Duration::from_secs(30),
        || Some(pool_master(&pool)).filter(|m| *m != partitioned),
    );
    // The client still reaches the old master, which still believes it is master: only
    // Sentinel's view (and the fence) moved the pool.
    let role: redis::Role = query(&partitioned.host, 6379, &redis::cmd("ROLE")).unwrap();
    assert!(matches!(role, redis::Role::Primary { .. }), "{role:?}");
    thread::sleep(Duration::from_millis(500));
    let report = writer.finish();
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    assert!(report.acks.iter().any(|a| a.by == promoted));
    let on_old_after_cut = report
        .acks
        .iter()
        .filter(|a| a.by == partitioned && a.at > cut)
        .count();
    // At its old address: a reconnect without `--ip` would get another from the pool.
    assert!(
        succeeds(
            "docker",
            &[
                "network", "connect", "--ip", &announced, &network, &container
            ]
        ),
        "reconnecting the old master"
    );
    eprintln!(
        "partition in containers: {} writes, 0 errors; {on_old_after_cut} acknowledged by the \
         partitioned master after the cut (lost when it rejoins as a replica)",
        report.acks.len()
    );
    drop(pool);

    leader_cut_off_after_replicaof_no_one(&compose);
}

/// The fault matrix's partition row: the first sentinel leads a `SENTINEL FAILOVER`
/// and is cut off from the other sentinels (and the data nodes) the moment it announces
/// `+failover-state-wait-promotion`, that is, right after it sent `REPLICAOF NO ONE` and before
/// it can see the promotion and publish the new configuration. The client still reaches it.
/// The other sentinels never learn of the failover and turn the promoted replica back into a
/// replica: what it acknowledged in between is gone. A pool with the fence and one without
/// write side by side; then the leader rejoins and a normal failover follows.
fn leader_cut_off_after_replicaof_no_one(compose: &Compose) {
    let master = settle(
        "the containers to settle before the leader's cut",
        Duration::from_secs(60),
        &SENTINELS,
    );
    let fenced = pool_builder().build().unwrap();
    let bare = pool_builder().fence(false).build().unwrap();
    let (on, off) = (
        Writer::start_with(&fenced, "on"),
        Writer::start_with(&bare, "off"),
    );
    thread::sleep(Duration::from_millis(500));

    // The test's own ear on the leader, on the client network.
    let leader = compose.container("sentinel1");
    let mut ear = redis::Client::open(format!("redis://{}:26379", CLIENT_SENTINELS[0]))
        .unwrap()
        .get_connection_with_timeout(Duration::from_secs(2))
        .unwrap();
    ear.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    let mut ear = ear.as_pubsub();
    ear.subscribe(&["+failover-state-wait-promotion", "+promoted-slave"])
        .unwrap();
    let mut cmd = redis::cmd("SENTINEL");
    cmd.arg("FAILOVER").arg("mymaster");
    let _: String = query(CLIENT_SENTINELS[0], 26379, &cmd).expect("SENTINEL FAILOVER");
    let msg = ear.get_message().expect("+failover-state-wait-promotion");
    assert_eq!(msg.get_channel_name(), "+failover-state-wait-promotion");
    // "slave <name> <ip> <port> @ mymaster <ip> <port>": the replica told REPLICAOF NO ONE.
    let payload: String = msg.get_payload().unwrap();
    let candidate = NodeAddr::new(
        to_client_addr(
            payload
                .split_whitespace()
                .nth(2)
                .expect("the replica's address"),
        ),
        6379,
    );
    // Frozen first (a signal is quicker than a network change), cut, thawed: the leader
    // never gets to read the replica's new role.
    let network = compose.network("redis");
    let cut_started = Instant::now();
    assert!(succeeds("docker", &["kill", "--signal", "STOP", &leader]));
    let frozen_after = cut_started.elapsed();
    assert!(succeeds(
        "docker",
        &["network", "disconnect", &network, &leader]
    ));
    assert!(succeeds("docker", &["kill", "--signal", "CONT", &leader]));
    ear.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let promotion_seen = std::iter::from_fn(|| ear.get_message().ok())
        .any(|m| m.get_channel_name() == "+promoted-slave");
    drop(ear);

    // The fault did happen: the replica answered master, and then the other two sentinels,
    // who never heard of the failover, turned it back into a replica of the old master (what
    // it acknowledged in between is gone). Then they settle.
    let role = |node: &NodeAddr| query::<redis::Role>(&node.host, node.port, &redis::cmd("ROLE"));
    eventually(
        "the candidate to answer master",
        Duration::from_secs(10),
        || matches!(role(&candidate), Some(redis::Role::Primary { .. })).then_some(()),
    );
    eventually(
        "the other sentinels to turn the candidate back into a replica",
        Duration::from_secs(60),
        || matches!(role(&candidate), Some(redis::Role::Replica { .. })).then_some(()),
    );
    let kept = settle(
        "the other sentinels to settle without the leader",
        Duration::from_secs(90),
        &SENTINELS[1..],
    );
    let master_client = NodeAddr::new(to_client_addr(&master), 6379);
    until_pools_write_to(
        "both pools to write to the master the majority names",
        &[&fenced, &bare],
        &master_client,
        Duration::from_secs(60),
    );
    thread::sleep(Duration::from_millis(500));
    let (on, off) = (on.finish(), off.finish());
    let (lost_on, lost_off) = (
        on.missing_on(&master_client).len(),
        off.missing_on(&master_client).len(),
    );
    eprintln!(
        "leader cut off after REPLICAOF NO ONE (frozen {frozen_after:?} after the step; \
         promotion seen by it first: {promotion_seen}); the majority kept {kept} and turned \
         {candidate} back: \
         fence on lost {lost_on} of {} ({} errors, longest gap {:?}), fence off lost {lost_off} \
         of {} ({} errors, longest gap {:?})",
        on.acks.len(),
        on.errors.len(),
        on.longest_gap,
        off.acks.len(),
        off.errors.len(),
        off.longest_gap
    );
    assert_eq!(kept, master, "the majority keeps the old master");
    assert_eq!(lost_on, 0, "the fence lost writes with its leader cut off");
    assert!(lost_on <= lost_off);
    assert!(
        on.errors.is_empty() && off.errors.is_empty(),
        "errors surfaced: {:?} {:?}",
        on.errors,
        off.errors
    );

    // The leader rejoins; the next failover is followed and, with the fence, loses nothing.
    assert!(succeeds(
        "docker",
        &[
            "network",
            "connect",
            "--ip",
            SENTINELS[0],
            &network,
            &leader
        ]
    ));
    settle(
        "all three sentinels to settle again",
        Duration::from_secs(90),
        &SENTINELS,
    );
    let (on, off) = (
        Writer::start_with(&fenced, "on2"),
        Writer::start_with(&bare, "off2"),
    );
    thread::sleep(Duration::from_millis(500));
    let _: String = query(CLIENT_SENTINELS[1], 26379, &cmd).expect("SENTINEL FAILOVER");
    let next = eventually(
        "the failover after the cut",
        Duration::from_secs(30),
        || settled().filter(|m| *m != master),
    );
    let next_client = NodeAddr::new(to_client_addr(&next), 6379);
    until_pools_write_to(
        "both pools to follow the next failover",
        &[&fenced, &bare],
        &next_client,
        Duration::from_secs(30),
    );
    thread::sleep(Duration::from_millis(500));
    let (on, off) = (on.finish(), off.finish());
    let lost_on = on.missing_on(&next_client).len();
    let lost_off = off.missing_on(&next_client).len();
    eprintln!(
        "next failover: fence on lost {lost_on} of {}, fence off lost {lost_off} of {}",
        on.acks.len(),
        off.acks.len()
    );
    assert_eq!(
        lost_on, 0,
        "the fenced pool lost writes in the failover after the cut"
    );
    assert!(
        on.errors.is_empty() && off.errors.is_empty(),
        "errors surfaced: {:?} {:?}",
        on.errors,
        off.errors
    );
}
