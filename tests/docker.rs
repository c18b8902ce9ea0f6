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

mod support;

#[path = "support/docker.rs"]
mod docker_kit;

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

use docker_kit::{
    CLIENT_SENTINELS, Compose, DATA, SENTINELS, pool_builder, query, settle, settled, succeeds,
    to_client_addr,
};
use r2d2_redis_sentinel::{
    NodeAddr, SentinelPool,
    redis::{self, Commands},
};
use support::{eventually, init_logging};

/// Letters and digits only: every Compose version keeps such a name as it is.
const PROJECT: &str = "r2d2sentineltest";

/// Each acknowledged write (key, node, when), and the count of errors surfaced.
type Writes = (Vec<(u64, NodeAddr, Instant)>, usize);

/// A writer of unique keys `d:<n>` through `with_retry_idempotent`, until `stop`.
fn writer(pool: &SentinelPool, stop: &Arc<AtomicBool>) -> thread::JoinHandle<Writes> {
    writer_of(pool, stop, "d")
}

/// A writer of unique keys `<prefix>:<n>` through `with_retry_idempotent`, until `stop`.
fn writer_of(
    pool: &SentinelPool,
    stop: &Arc<AtomicBool>,
    prefix: &'static str,
) -> thread::JoinHandle<Writes> {
    let (pool, stop) = (pool.clone(), Arc::clone(stop));
    thread::spawn(move || {
        let (mut acks, mut errors) = (Vec::new(), 0);
        let mut key = 0u64;
        while !stop.load(Ordering::Relaxed) {
            key += 1;
            match pool.with_retry_idempotent(|c| {
                let _: () = c.set(format!("{prefix}:{key}"), key)?;
                Ok(c.addr().clone())
            }) {
                Ok(by) => acks.push((key, by, Instant::now())),
                Err(err) => {
                    eprintln!("write error: {err}");
                    errors += 1;
                }
            }
        }
        (acks, errors)
    })
}

fn missing_on(node: &NodeAddr, keys: impl Iterator<Item = u64>) -> usize {
    missing_of(node, "d", keys)
}

fn missing_of(node: &NodeAddr, prefix: &str, keys: impl Iterator<Item = u64>) -> usize {
    let mut conn = redis::Client::open(format!("redis://{node}"))
        .unwrap()
        .get_connection_with_timeout(Duration::from_secs(2))
        .unwrap();
    keys.filter(|k| !conn.exists::<_, bool>(format!("{prefix}:{k}")).unwrap())
        .count()
}

#[test]
fn a_docker_deployment_is_followed_through_a_failover_and_a_partition() {
    init_logging();
    let Some(image) = docker_kit::image() else {
        return;
    };
    let compose = Compose::new(PROJECT, image, Duration::from_secs(1));
    compose.run(&["up", "-d"]);
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
    let master_now = |pool: &SentinelPool| pool.with_retry(|c| Ok(c.addr().clone())).unwrap();

    // A planned failover, inside the containers.
    let stop = Arc::new(AtomicBool::new(false));
    let handle = writer(&pool, &stop);
    thread::sleep(Duration::from_millis(500));
    let mut cmd = redis::cmd("SENTINEL");
    cmd.arg("FAILOVER").arg("mymaster");
    let _: String = query(SENTINELS[0], 26379, &cmd).expect("SENTINEL FAILOVER");
    let old = NodeAddr::new(to_client_addr(&first), 6379);
    let new = eventually("the pool to move", Duration::from_secs(30), || {
        Some(master_now(&pool)).filter(|m| *m != old)
    });
    thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::Relaxed);
    let (acks, errors) = handle.join().unwrap();
    assert_eq!(errors, 0);
    let lost = missing_on(&new, acks.iter().map(|(k, _, _)| *k));
    assert_eq!(lost, 0, "acknowledged writes lost in a planned failover");
    eprintln!(
        "planned failover in containers: {} writes, 0 errors, 0 lost",
        acks.len()
    );

    // A partition: the master loses the sentinels' network, the client still reaches it.
    let announced = settle(
        "the containers to settle again",
        Duration::from_secs(90),
        &SENTINELS,
    );
    let partitioned = NodeAddr::new(to_client_addr(&announced), 6379);
    assert_eq!(master_now(&pool), partitioned);
    let service = DATA
        .iter()
        .find(|(_, redis, _)| *redis == announced)
        .map(|(service, _, _)| *service)
        .unwrap();
    let container = compose.container(service);
    let network = compose.network("redis");
    let stop = Arc::new(AtomicBool::new(false));
    let handle = writer(&pool, &stop);
    thread::sleep(Duration::from_millis(500));
    let cut = Instant::now();
    assert!(
        succeeds("docker", &["network", "disconnect", &network, &container]),
        "docker network disconnect {network} {container}"
    );
    let promoted = eventually(
        "the pool to leave the partitioned master",
        Duration::from_secs(30),
        || Some(master_now(&pool)).filter(|m| *m != partitioned),
    );
    // The client still reaches the old master, which still believes it is master: only
    // Sentinel's view (and the fence) moved the pool.
    let role: redis::Role = query(&partitioned.host, 6379, &redis::cmd("ROLE")).unwrap();
    assert!(matches!(role, redis::Role::Primary { .. }), "{role:?}");
    thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::Relaxed);
    let (acks, errors) = handle.join().unwrap();
    assert_eq!(errors, 0);
    assert!(acks.iter().any(|(_, by, _)| *by == promoted));
    let on_old_after_cut = acks
        .iter()
        .filter(|(_, by, at)| *by == partitioned && *at > cut)
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
        acks.len()
    );
    drop(pool);

    leader_cut_off_after_replicaof_no_one(&compose);
}

/// The fault matrix's partition row (issue 14): the first sentinel leads a `SENTINEL FAILOVER`
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
    let stop = Arc::new(AtomicBool::new(false));
    let on = writer_of(&fenced, &stop, "on");
    let off = writer_of(&bare, &stop, "off");
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
    eventually(
        "both pools to write to the master the majority names",
        Duration::from_secs(60),
        || {
            let by = |p: &SentinelPool| p.with_retry(|c| Ok(c.addr().clone())).ok();
            (by(&fenced) == Some(master_client.clone()) && by(&bare) == Some(master_client.clone()))
                .then_some(())
        },
    );
    thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::Relaxed);
    let (on, off) = (on.join().unwrap(), off.join().unwrap());
    let lost = |w: &Writes, prefix| missing_of(&master_client, prefix, w.0.iter().map(|a| a.0));
    let (lost_on, lost_off) = (lost(&on, "on"), lost(&off, "off"));
    let gap = |w: &Writes| {
        w.0.windows(2)
            .map(|p| p[1].2 - p[0].2)
            .max()
            .unwrap_or_default()
    };
    eprintln!(
        "leader cut off after REPLICAOF NO ONE (frozen {frozen_after:?} after the step; \
         promotion seen by it first: {promotion_seen}); the majority kept {kept} and turned \
         {candidate} back: \
         fence on lost {lost_on} of {} ({} errors, longest gap {:?}), fence off lost {lost_off} \
         of {} ({} errors, longest gap {:?})",
        on.0.len(),
        on.1,
        gap(&on),
        off.0.len(),
        off.1,
        gap(&off)
    );
    assert_eq!(kept, master, "the majority keeps the old master");
    assert_eq!(lost_on, 0, "the fence lost writes with its leader cut off");
    assert!(lost_on <= lost_off);
    assert_eq!((on.1, off.1), (0, 0), "errors surfaced");

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
    let stop = Arc::new(AtomicBool::new(false));
    let on = writer_of(&fenced, &stop, "on2");
    let off = writer_of(&bare, &stop, "off2");
    thread::sleep(Duration::from_millis(500));
    let _: String = query(CLIENT_SENTINELS[1], 26379, &cmd).expect("SENTINEL FAILOVER");
    let next = eventually(
        "the failover after the cut",
        Duration::from_secs(30),
        || settled().filter(|m| *m != master),
    );
    let next_client = NodeAddr::new(to_client_addr(&next), 6379);
    eventually(
        "both pools to follow the next failover",
        Duration::from_secs(30),
        || {
            let by = |p: &SentinelPool| p.with_retry(|c| Ok(c.addr().clone())).ok();
            (by(&fenced) == Some(next_client.clone()) && by(&bare) == Some(next_client.clone()))
                .then_some(())
        },
    );
    thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::Relaxed);
    let (on, off) = (on.join().unwrap(), off.join().unwrap());
    let lost_on = missing_of(&next_client, "on2", on.0.iter().map(|a| a.0));
    let lost_off = missing_of(&next_client, "off2", off.0.iter().map(|a| a.0));
    eprintln!(
        "next failover: fence on lost {lost_on} of {}, fence off lost {lost_off} of {}",
        on.0.len(),
        off.0.len()
    );
    assert_eq!(
        lost_on, 0,
        "the fenced pool lost writes in the failover after the cut"
    );
    assert_eq!((on.1, off.1), (0, 0), "errors surfaced");
}
