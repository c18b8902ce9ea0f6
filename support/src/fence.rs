//! What the fence tests share: a writer of unique keys that records every acknowledgement,
//! a topology whose failover stalls at the promotion, and event waits.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread,
    time::{Duration, Instant, SystemTime},
};

use r2d2_redis_sentinel::{
    Error, Event, FenceResume, NodeAddr, RetryPolicy, SentinelPool,
    redis::{self, Commands},
    testkit::Topology,
};

use crate::{direct, eventually, wait_flagged};

/// One acknowledged write.
pub struct Ack {
    pub key: u64,
    pub by: NodeAddr,
    pub at: Instant,
    pub wall: SystemTime,
}

/// What a writer loop saw.
pub struct Report {
    /// The keys' prefix.
    pub prefix: &'static str,
    pub acks: Vec<Ack>,
    pub errors: Vec<Error>,
    pub longest_gap: Duration,
}

impl Report {
    /// The acknowledged writes the node at `addr` lacks.
    pub fn missing_on(&self, addr: &NodeAddr) -> Vec<&Ack> {
        let mut conn = direct(addr);
        self.acks
            .iter()
            .filter(|a| {
                !conn
                    .exists::<_, bool>(format!("{}:{}", self.prefix, a.key))
                    .unwrap()
            })
            .collect()
    }
}

/// A writer of unique keys `<prefix>:<n>` under `with_retry_idempotent`, until stopped.
pub struct Writer {
    stop: Arc<AtomicBool>,
    thread: thread::JoinHandle<Report>,
}

impl Writer {
    /// A writer of keys `w:<n>`.
    pub fn start(pool: &SentinelPool) -> Writer {
        Writer::start_with(pool, "w")
    }

    /// A writer of keys `<prefix>:<n>`.
    pub fn start_with(pool: &SentinelPool, prefix: &'static str) -> Writer {
        let stop = Arc::new(AtomicBool::new(false));
        let master = pool_master(pool);
        let (pool, flag) = (pool.clone(), Arc::clone(&stop));
        let thread = thread::spawn(move || {
            let mut report = Report {
                prefix,
                acks: Vec::new(),
                errors: Vec::new(),
                longest_gap: Duration::ZERO,
            };
            let mut last = Instant::now();
            let mut key = 0u64;
            while !flag.load(Ordering::Relaxed) {
                key += 1;
                match pool.with_retry_idempotent(|c| {
                    let _: () = c.set(format!("{prefix}:{key}"), key)?;
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
            probe
                .exists::<_, bool>(format!("{prefix}:1"))
                .unwrap()
                .then_some(())
        });
        writer
    }

    pub fn finish(self) -> Report {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().unwrap()
    }
}

pub fn pool_master(pool: &SentinelPool) -> NodeAddr {
    pool.with_retry(|c| Ok(c.addr().clone())).unwrap()
}

pub fn pool(topology: &Topology) -> SentinelPool {
    pool_resuming_at(topology, FenceResume::default())
}

/// The same pool as [`pool`] with the fence off: the baseline the fence is compared with.
pub fn pool_without_fence(topology: &Topology) -> SentinelPool {
    topology
        .pool_builder()
        .max_size(4)
        .fence(false)
        .retry_policy(RetryPolicy::default().deadline(Duration::from_secs(30)))
        .build()
        .unwrap()
}

/// A pool of 4 with a 30 s retry deadline whose fence resumes at `resume`.
pub fn pool_resuming_at(topology: &Topology, resume: FenceResume) -> SentinelPool {
    topology
        .pool_builder()
        .max_size(4)
        .fence_resume(resume)
        .retry_policy(RetryPolicy::default().deadline(Duration::from_secs(30)))
        .build()
        .unwrap()
}

/// The same pool as [`pool`] in durable mode: every write confirmed by all connected replicas.
pub fn durable_pool(topology: &Topology) -> SentinelPool {
    durable_builder(topology).build().unwrap()
}

/// A durable pool as [`durable_pool`] whose fence times out after `fence_timeout`, or with
/// no fence (`None`).
pub fn durable_pool_fenced(topology: &Topology, fence_timeout: Option<Duration>) -> SentinelPool {
    let builder = durable_builder(topology);
    match fence_timeout {
        Some(timeout) => builder.fence_timeout(timeout),
        None => builder.fence(false),
    }
    .build()
    .unwrap()
}

fn durable_builder(topology: &Topology) -> r2d2_redis_sentinel::Builder {
    topology
        .pool_builder()
        .max_size(4)
        .durability(r2d2_redis_sentinel::Durability::all_replicas())
        .retry_policy(RetryPolicy::default().deadline(Duration::from_secs(30)))
}

/// Makes the data node at `addr` refuse `REPLICAOF` (`refuse`), or take it again: a leader's
/// `REPLICAOF NO ONE` to a refusing candidate fails, and the leader waits for a promotion
/// that only the test makes.
pub fn refuse_replicaof(addr: &NodeAddr, refuse: bool) {
    let rule = if refuse { "-" } else { "+" };
    let _: () = redis::cmd("ACL")
        .arg(&["SETUSER", "default"])
        .arg(format!("{rule}replicaof"))
        .arg(format!("{rule}slaveof"))
        .query(&mut direct(addr))
        .unwrap();
}

/// The leader stalls right after its candidate took `REPLICAOF NO ONE`: with the leader
/// waiting for the promotion (the candidate refused its command, see
/// [`refuse_replicaof`]), freezes it, promotes `candidate` as its command would have, and
/// thaws it `stall` after the freeze; the leader then sees the promotion and commits it.
pub fn stall_after_promotion(
    topology: &mut Topology,
    leader: &NodeAddr,
    candidate: &NodeAddr,
    stall: Duration,
) {
    topology.pause(leader).unwrap();
    let frozen_at = Instant::now();
    refuse_replicaof(candidate, false);
    let _: () = redis::cmd("REPLICAOF")
        .arg(&["NO", "ONE"])
        .query(&mut direct(candidate))
        .unwrap();
    // The stall is the fault itself, not a wait for something to happen.
    thread::sleep(stall.saturating_sub(frozen_at.elapsed()));
    topology.resume(leader).unwrap();
}

/// Lets the writer run until a hundred writes reached `node`.
pub fn until_writes_reach(pool: &SentinelPool, node: &NodeAddr) {
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

pub fn events(pool: &SentinelPool) -> Vec<Event> {
    pool.events().try_iter().collect()
}

pub fn fence_up_at(events: &[Event]) -> Option<SystemTime> {
    events.iter().find_map(|e| match e {
        Event::FenceUp { at, .. } => Some(*at),
        _ => None,
    })
}

/// Makes `candidate` the only replica a failover can pick, and one that can never be promoted:
/// the other replica is frozen (the sentinels see it down and skip it), and `candidate` refuses
/// `REPLICAOF` (the leader's `REPLICAOF NO ONE` fails, the promotion times out). Returns the
/// frozen replica.
pub fn cripple(topology: &mut Topology, candidate: &NodeAddr) -> NodeAddr {
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
pub struct Stalled {
    pub topology: Topology,
    /// The master, which stays master.
    pub old: NodeAddr,
    /// The replica every failover selects, which refuses `REPLICAOF`.
    pub candidate: NodeAddr,
    /// The replica frozen by [`cripple`].
    pub frozen: NodeAddr,
    pub pool: SentinelPool,
}

/// A [`Stalled`] topology with Sentinel's `failover_timeout`, and a pool with
/// `fence_timeout`.
pub fn stalled(failover_timeout: Duration, fence_timeout: Duration) -> Stalled {
    let (topology, old, candidate, frozen) = stalled_topology(failover_timeout);
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
        candidate,
        frozen,
        pool,
    }
}

/// The topology of [`stalled`] alone: it, its master, the replica its failovers select, and
/// the frozen one.
pub fn stalled_topology(failover_timeout: Duration) -> (Topology, NodeAddr, NodeAddr, NodeAddr) {
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
    (topology, old, candidate, frozen)
}

/// Waits until `leader` runs a failover of the service and waits for its candidate's
/// promotion (`SENTINEL MASTER`'s `failover-state` is `wait_promotion`).
pub fn until_waiting_for_promotion(topology: &Topology, leader: &NodeAddr) {
    eventually(
        "the leader to wait for the promotion",
        Duration::from_secs(10),
        || {
            let state: std::collections::HashMap<String, String> = redis::cmd("SENTINEL")
                .arg(&["MASTER", topology.service()])
                .query(&mut direct(leader))
                .ok()?;
            (state.get("failover-state").map(String::as_str) == Some("wait_promotion"))
                .then_some(())
        },
    );
}

/// Sends `SENTINEL FAILOVER` to the first sentinel.
pub fn start_failover(topology: &Topology) {
    let _: () = redis::cmd("SENTINEL")
        .arg(&["FAILOVER", topology.service()])
        .query(&mut direct(&topology.sentinel_addrs()[0]))
        .unwrap();
}

/// Waits for the first event that `matches`, collecting the ones before it.
pub fn wait_for_event(
    pool_events: &r2d2_redis_sentinel::Events,
    what: &str,
    matches: impl Fn(&Event) -> bool,
) -> Vec<Event> {
    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if let Some(event) = pool_events.recv_timeout(Duration::from_millis(100)) {
            let found = matches(&event);
            seen.push(event);
            if found {
                return seen;
            }
        }
    }
    panic!("no {what} event within 20 s: {seen:?}");
}
