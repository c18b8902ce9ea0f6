//! Chaos runs: writers through `with_retry_idempotent` (or plain `with_retry`) while the
//! harness causes failovers, then every acknowledged write accounted for on the final master.
//! Shared by `tests/chaos.rs` (a short run) and `benchmarks/benches/chaos.rs` (the long one).
//!
//! A lost write is one acknowledged to a writer and missing from the final master. Each is
//! put in one of three classes by when it was acknowledged and by which node:
//! - **before its failover began**: the node had acknowledged it before the failover that lost
//!   it began (the SIGKILL of a crash; the leader's `+try-failover` of a planned one). Redis's
//!   loss: asynchronous replication had not carried it to
//!   the promoted replica (replication lag, or a replica promoted before it finished its
//!   resync). No client can prevent it.
//! - **during the failover, before the pool knew**: acknowledged after it began but before
//!   the pool fenced the node off or moved away from it (its `FenceUp` and `Failover` events):
//!   the window between what Sentinel does and what it tells, which the fence narrows.
//! - **after the pool knew**: acknowledged by a node the pool had fenced off or left. A request
//!   sent after the pool knew would be the pool's own fault: none may be lost. One already on
//!   the wire then (sent before the pool knew, answered after) is counted apart as *in
//!   flight*. Without the fence, the pool leaves the old master only when a sentinel
//!   announces the switch, by which time that node is a master no longer replicated, and such
//!   a request is lost. With it, the fence goes up before the promotion, so a request in
//!   flight reaches the old master first and replicates like the writes before it: it is lost
//!   only with them, when Sentinel promotes a replica that had not caught up (Redis's loss,
//!   the first class).

use std::{
    collections::HashSet,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread,
    time::{Duration, Instant, SystemTime},
};

use parking_lot::Mutex;
use r2d2_redis_sentinel::{
    Event, NodeAddr, RetryPolicy, SentinelPool, redis,
    testkit::{Listener, Topology},
};

/// One thing the harness does to the topology.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// `SENTINEL FAILOVER`, after the topology settled (replicas in sync).
    Planned,
    /// SIGKILL of the master after the topology settled; the node is restarted once a replica
    /// was promoted, from its own configuration (so it comes back believing it is master, and
    /// Sentinel turns it into a replica).
    Crash,
    /// This many `SENTINEL FAILOVER`s back to back: each as soon as the previous one's new
    /// master answers, without waiting for the replicas to resync.
    Storm(usize),
}

/// What a run did and what it lost.
#[derive(Debug, Default)]
pub struct Report {
    /// Failovers completed: planned, crashes, in storms.
    pub planned: usize,
    pub crashes: usize,
    pub stormed: usize,
    /// Writes acknowledged to the writers.
    pub acked: usize,
    /// Errors the writers saw (each a write not acknowledged).
    pub errors: usize,
    /// Of those, `MaybeApplied`: plain `with_retry` met a broken connection after sending the
    /// write, and did not run it again.
    pub maybe_applied: usize,
    /// The first few errors' messages.
    pub error_samples: Vec<String>,
    /// Lost writes, by class (see the module's documentation).
    pub lost_before_failover: usize,
    pub lost_before_pool_knew: usize,
    pub lost_after_pool_knew: usize,
    /// Of those, requests sent before the pool knew (in flight when it learned).
    pub lost_in_flight: usize,
    /// The longest a single `with_retry` call took.
    pub worst_call: Duration,
    /// Failovers the pool followed (its `Failover` events): more than the harness caused when
    /// Sentinel failed a live master over by itself.
    pub pool_moves: usize,
    /// Per failover: from when it began to the pool's first event about it (fence or move).
    pub pool_told_after: Vec<Duration>,
    /// The run's wall time.
    pub elapsed: Duration,
}

impl Report {
    /// Lost writes in all.
    pub fn lost(&self) -> usize {
        self.lost_before_failover + self.lost_before_pool_knew + self.lost_after_pool_knew
    }

    /// The report as a Markdown table row, after [`Report::HEADER`].
    pub fn row(&self, name: &str) -> String {
        let mut told: Vec<f64> = self
            .pool_told_after
            .iter()
            .map(|d| d.as_secs_f64() * 1e3)
            .collect();
        told.sort_by(f64::total_cmp);
        let (p50, max) = match told.as_slice() {
            [] => (f64::NAN, f64::NAN),
            all => (all[all.len() / 2], all[all.len() - 1]),
        };
        format!(
            "| {name} | {} planned + {} crashes + {} in storms; the pool moved {} times | {} ({} maybe applied) | {} | {} ({} / {} / {}, {} in flight) | {:.0} / {:.0} ms | {:.2} s | {:.0} s |",
            self.planned,
            self.crashes,
            self.stormed,
            self.pool_moves,
            self.errors,
            self.maybe_applied,
            self.acked,
            self.lost(),
            self.lost_before_failover,
            self.lost_before_pool_knew,
            self.lost_after_pool_knew,
            self.lost_in_flight,
            p50,
            max,
            self.worst_call.as_secs_f64(),
            self.elapsed.as_secs_f64(),
        )
    }

    /// The header of [`Report::row`]'s table.
    pub const HEADER: &'static str = "| run | failovers | errors | writes acked | lost (before its failover began / during it, before the pool knew / after the pool knew, of which in flight) | failover began → pool told, p50 / max | worst `with_retry` call | wall time |\n| --- | --- | --- | --- | --- | --- | --- | --- |";
}

/// One acknowledged write: the key's number, the node that acknowledged it, when its last
/// attempt was sent, when it was acknowledged.
struct Ack {
    key: u64,
    node: u8,
    sent: SystemTime,
    at: SystemTime,
}

/// What the pool believed at some moment: which node was master.
#[derive(Debug, Clone, PartialEq)]
enum Belief {
    Master(NodeAddr),
    /// A fence was up: no node was master for the pool.
    Fenced,
    /// The pool dropped everything without naming a master (an invalidation, a fence released
    /// to whatever the sentinels name): any node may be the one it finds next.
    Unknown,
}

/// How a run's pool and topology are set up.
#[derive(Debug, Clone, Copy)]
pub struct Setup {
    /// Writer threads (and the pool's size).
    pub writers: usize,
    /// The pool's fence on or off.
    pub fence: bool,
    /// Writes through `with_retry_idempotent` (a `SET` of a key no other write uses may run
    /// twice), else through plain `with_retry`, which returns `MaybeApplied` where the other
    /// retries.
    pub idempotent: bool,
    /// The pool in durable mode (every write confirmed by all connected replicas).
    pub durable: bool,
    /// The nodes keep Redis's replication defaults: a full resync then waits 5 seconds
    /// (`repl-diskless-sync-delay`) before it starts, which the kit otherwise sets to 0.
    pub redis_defaults: bool,
}

impl Default for Setup {
    fn default() -> Self {
        Self {
            writers: 8,
            fence: true,
            idempotent: true,
            durable: false,
            redis_defaults: false,
        }
    }
}

/// Runs `steps` with `setup.writers` threads writing unique keys, then accounts for every
/// acknowledged write on the final master.
///
/// # Panics
///
/// When the topology cannot be started or does not fail over as asked.
pub fn run(steps: &[Step], setup: Setup) -> Report {
    let Setup {
        writers,
        fence,
        idempotent,
        durable,
        redis_defaults,
    } = setup;
    let started = Instant::now();
    // Sentinel refreshes its view of replicas every 10 s: settling after a crash, a restart and
    // a +convert-to-slave can take longer than the kit's default 30 s.
    let mut topology = Topology::builder()
        .timeout(Duration::from_secs(120))
        .redis_defaults(redis_defaults)
        .start()
        .expect("topology");
    let nodes = topology.data_addrs();
    let mut builder = topology
        .pool_builder()
        .max_size(u32::try_from(writers).expect("a few writers"))
        .fence(fence)
        .retry_policy(RetryPolicy::default().deadline(Duration::from_secs(60)));
    if durable {
        builder = builder.durability(r2d2_redis_sentinel::Durability::all_replicas());
    }
    let pool = builder.build().expect("pool");
    let first_master = topology.master().expect("master");
    let events = record_events(&pool);
    // When failovers really began: their leaders' +try-failover. A planned one begins there
    // (SENTINEL FAILOVER is refused while no replica is ready, which in a storm takes a
    // while), and so does one Sentinel starts by itself, which the harness did not ask for.
    let tries = topology.listen("+try-failover").expect("listener");
    let mut tried: Vec<SystemTime> = Vec::new();

    let stop = Arc::new(AtomicBool::new(false));
    let threads: Vec<_> = (0..writers)
        .map(|writer| {
            spawn_writer(
                writer as u64,
                pool.clone(),
                nodes.clone(),
                Arc::clone(&stop),
                idempotent,
            )
        })
        .collect();
    let mut report = Report::default();
    // When each failover began, for the classes and the pool's reaction time.
    let mut triggers: Vec<SystemTime> = Vec::new();
    thread::sleep(Duration::from_millis(500));
    for step in steps {
        match *step {
            Step::Planned => {
                topology.wait_settled().expect("settle");
                let asked = Instant::now();
                topology.failover().expect("failover");
                triggers.push(began(&tries, &mut tried, asked));
                report.planned += 1;
            }
            Step::Crash => {
                topology.wait_settled().expect("settle");
                triggers.push(SystemTime::now());
                let old = topology.kill_master().expect("kill");
                topology
                    .wait_for_new_master(&old, Duration::from_secs(60))
                    .expect("promotion");
                topology.restart(&old).expect("restart");
                report.crashes += 1;
            }
            Step::Storm(count) => {
                topology.wait_settled().expect("settle");
                for _ in 0..count {
                    let asked = Instant::now();
                    topology.failover().expect("failover in the storm");
                    triggers.push(began(&tries, &mut tried, asked));
                    report.stormed += 1;
                }
            }
        }
    }
    // Writes go on through the last failover's aftermath; then the final master is read.
    topology.wait_settled().expect("settle");
    thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::Relaxed);
    let mut acks = Vec::new();
    for thread in threads {
        let outcome = thread.join().expect("writer");
        acks.extend(outcome.acks);
        report.errors += outcome.errors.len();
        report.maybe_applied += outcome.maybe_applied;
        report
            .error_samples
            .extend(outcome.errors.into_iter().take(3));
        report.worst_call = report.worst_call.max(outcome.worst_call);
    }
    let final_master = topology.master().expect("master");
    let present = keys_on(&final_master);
    let events = events.lock().clone();
    let beliefs = beliefs(&first_master, &events);
    report.pool_moves = events
        .iter()
        .filter(|(_, e)| matches!(e, Event::Failover { .. }))
        .count();
    // Every beginning, the harness's and Sentinel's own, for the classes.
    began(&tries, &mut tried, Instant::now());
    let mut beginnings: Vec<SystemTime> = triggers.iter().chain(&tried).copied().collect();
    beginnings.sort();

    report.acked = acks.len();
    for ack in acks.iter().filter(|a| !present.contains(&a.key)) {
        let node = &nodes[usize::from(ack.node)];
        let knew = |at: SystemTime| {
            let belief = beliefs
                .iter()
                .take_while(|(when, _)| *when <= at)
                .last()
                .map(|(_, b)| b);
            matches!(belief, Some(Belief::Fenced))
                || matches!(belief, Some(Belief::Master(m)) if m != node)
        };
        let pool_knew = knew(ack.at);
        // The failover in whose window it was acknowledged, if any: the last one triggered
        // before it, if the pool had not reacted to that one yet.
        let in_window = beginnings
            .iter()
            .rev()
            .find(|t| **t <= ack.at)
            .is_some_and(|t| !beliefs.iter().any(|(at, _)| at >= t && *at <= ack.at));
        if pool_knew {
            report.lost_after_pool_knew += 1;
            if !knew(ack.sent) {
                report.lost_in_flight += 1;
            }
        } else if in_window {
            report.lost_before_pool_knew += 1;
        } else {
            report.lost_before_failover += 1;
        }
    }
    for trigger in &triggers {
        if let Some((at, _)) = beliefs.iter().find(|(at, _)| at >= trigger) {
            report
                .pool_told_after
                .push(at.duration_since(*trigger).unwrap_or_default());
        }
    }
    report.elapsed = started.elapsed();
    report
}

/// When the failover asked for at `asked` began: the first +try-failover heard since. Keeps
/// every one heard in `tried`.
fn began(tries: &Listener, tried: &mut Vec<SystemTime>, asked: Instant) -> SystemTime {
    let mut first = None;
    while let Some(message) = tries.recv_timeout(Duration::ZERO) {
        let at = SystemTime::now() - message.at.elapsed();
        tried.push(at);
        if message.at >= asked {
            first = first.or(Some(at));
        }
    }
    first.unwrap_or_else(|| SystemTime::now() - asked.elapsed())
}

/// What one writer did.
struct Outcome {
    acks: Vec<Ack>,
    errors: Vec<String>,
    maybe_applied: usize,
    worst_call: Duration,
}

fn spawn_writer(
    writer: u64,
    pool: SentinelPool,
    nodes: Vec<NodeAddr>,
    stop: Arc<AtomicBool>,
    idempotent: bool,
) -> thread::JoinHandle<Outcome> {
    thread::spawn(move || {
        let mut outcome = Outcome {
            acks: Vec::with_capacity(1 << 20),
            errors: Vec::new(),
            maybe_applied: 0,
            worst_call: Duration::ZERO,
        };
        let mut n = 0u64;
        while !stop.load(Ordering::Relaxed) {
            n += 1;
            let key = writer << 40 | n;
            let began = Instant::now();
            let mut sent = SystemTime::now();
            let write = |c: &mut r2d2_redis_sentinel::Connection| {
                sent = SystemTime::now();
                redis::cmd("SET")
                    .arg(&key.to_be_bytes())
                    .arg(1)
                    .query::<()>(c)?;
                Ok(c.addr().clone())
            };
            let result = if idempotent {
                pool.with_retry_idempotent(write)
            } else {
                pool.with_retry(write)
            };
            outcome.worst_call = outcome.worst_call.max(began.elapsed());
            match result {
                Ok(by) => outcome.acks.push(Ack {
                    key,
                    node: nodes
                        .iter()
                        .position(|a| *a == by)
                        .and_then(|i| u8::try_from(i).ok())
                        .expect("a node of the topology"),
                    sent,
                    at: SystemTime::now(),
                }),
                Err(err) => {
                    if matches!(err, r2d2_redis_sentinel::Error::MaybeApplied { .. }) {
                        outcome.maybe_applied += 1;
                    }
                    outcome.errors.push(err.to_string());
                }
            }
        }
        outcome
    })
}

/// The pool's events, each with when it was received ([`beliefs`] uses the time an event
/// carries, where it has one).
fn record_events(pool: &SentinelPool) -> Arc<Mutex<Vec<(SystemTime, Event)>>> {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let (events, sink) = (pool.events(), Arc::clone(&seen));
    // Ends when the pool is dropped.
    thread::spawn(move || {
        for event in events.iter() {
            sink.lock().push((SystemTime::now(), event));
        }
    });
    seen
}

/// From the events, what the pool believed from when: a list in time order, starting with
/// `first` as master.
fn beliefs(first: &NodeAddr, events: &[(SystemTime, Event)]) -> Vec<(SystemTime, Belief)> {
    let mut beliefs = vec![(SystemTime::UNIX_EPOCH, Belief::Master(first.clone()))];
    let mut fenced_at = None;
    for (received, event) in events {
        let change = match event {
            Event::Failover { new, at, .. } => Some((*at, Belief::Master(new.clone()))),
            Event::FenceUp { at, .. } => {
                fenced_at = Some(*at);
                Some((*at, Belief::Fenced))
            }
            Event::FenceReleased { held, .. } => Some((
                fenced_at.map_or(*received, |at| at + *held),
                Belief::Unknown,
            )),
            Event::Invalidated { .. } => Some((*received, Belief::Unknown)),
            _ => None,
        };
        beliefs.extend(change);
    }
    beliefs.sort_by_key(|(at, _)| *at);
    beliefs
}

/// Every key the writers could have written that `master` holds.
fn keys_on(master: &NodeAddr) -> HashSet<u64> {
    let mut conn = redis::Client::open(format!("redis://{master}"))
        .expect("client")
        .get_connection_with_timeout(Duration::from_secs(5))
        .expect("connection to the final master");
    conn.set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    let mut present = HashSet::new();
    let mut cursor = 0u64;
    loop {
        let (next, keys): (u64, Vec<Vec<u8>>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("COUNT")
            .arg(10_000)
            .query(&mut conn)
            .expect("SCAN");
        present.extend(
            keys.iter()
                .filter_map(|k| <[u8; 8]>::try_from(k.as_slice()).ok())
                .map(u64::from_be_bytes),
        );
        if next == 0 {
            return present;
        }
        cursor = next;
    }
}
