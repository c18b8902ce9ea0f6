//! Failover recovery against real failovers (`SENTINEL FAILOVER` and SIGKILL of the master),
//! with the watcher on and off.
//!
//! A writer loops over unique keys under `with_retry_idempotent`. Per failover, measured from
//! the first `+switch-master` that any sentinel publishes (an independent subscriber on every
//! sentinel timestamps it):
//! - detection: until the pool announces the failover (watcher on only);
//! - recovery: until the first write acknowledged by the new master;
//! - the longest gap between two acknowledged writes around the failover;
//! - errors surfaced to the writer, and acknowledged writes missing from the new master.
//!
//! `cargo bench --bench failover` (`FAILOVERS=10` per scenario by default; about 15 minutes).
//! Results in BENCHMARKS.md.

use std::{
    env,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

use parking_lot::Mutex;
use r2d2_redis_sentinel::{Event, NodeAddr, RetryPolicy, SentinelPool, redis, testkit::Topology};

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Planned,
    Crash,
}

struct Ack {
    key: u64,
    by: NodeAddr,
    at: Instant,
}

/// The per-failover figures of one scenario.
#[derive(Default)]
struct Figures {
    detection: Vec<f64>,
    recovery: Vec<f64>,
    gap: Vec<f64>,
    errors: u64,
    /// Acknowledged writes missing from the new master, acknowledged by the old master.
    lost_old: usize,
    /// The same, acknowledged by the new master itself (should never happen).
    lost_new: usize,
    writes: usize,
}

fn main() {
    // `cargo bench` passes `--bench`; any other argument is a filter on the scenario name.
    let filter: Option<String> = env::args().skip(1).find(|a| !a.starts_with("--"));
    let failovers: usize = env::var("FAILOVERS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(10);
    let scenarios = [
        ("planned, watcher on", Kind::Planned, true),
        ("crash, watcher on", Kind::Crash, true),
        ("planned, watcher off", Kind::Planned, false),
        ("crash, watcher off", Kind::Crash, false),
    ];
    println!(
        "| scenario | failovers | detection p50 / p90 / max | recovery p50 / p90 / max | longest write gap p50 / p90 / max | writes | errors | lost (acked by old / new master) |"
    );
    println!("| --- | --- | --- | --- | --- | --- | --- | --- |");
    for (name, kind, watcher) in scenarios {
        if filter.as_deref().is_some_and(|f| !name.contains(f)) {
            continue;
        }
        let f = scenario(kind, watcher, failovers);
        let detection = if watcher {
            spread(&f.detection)
        } else {
            "—".to_owned()
        };
        println!(
            "| {name} | {failovers} | {detection} | {} | {} | {} | {} | {} / {} |",
            spread(&f.recovery),
            spread(&f.gap),
            f.writes,
            f.errors,
            f.lost_old,
            f.lost_new
        );
    }
}

fn scenario(kind: Kind, watcher: bool, failovers: usize) -> Figures {
    // Sentinel refreshes its view of replicas every 10 s: settling after a crash, a restart and
    // a +convert-to-slave can take longer than the kit's default 30 s.
    let mut topology = Topology::builder()
        .timeout(Duration::from_secs(120))
        .start()
        .expect("topology");
    let pool = topology
        .pool_builder()
        .max_size(4)
        .watcher(watcher)
        .retry_policy(RetryPolicy::default().deadline(Duration::from_secs(60)))
        .build()
        .expect("pool");
    // Reserved up front: a reallocation would stall the writer mid-measurement.
    let acks = Arc::new(Mutex::new(Vec::<Ack>::with_capacity(8 << 20)));
    let errors = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let writer = spawn_writer(
        pool.clone(),
        Arc::clone(&acks),
        Arc::clone(&errors),
        Arc::clone(&stop),
    );
    let announced = collect_failover_events(&pool);
    let listener = topology.listen("+switch-master").expect("listener");

    let mut figures = Figures::default();
    let mut checked_up_to = 0;
    // Acks before this index were looked at already: each look takes the lock only for the new
    // ones, so the writer is not held up by the measurement.
    let mut cursor = 0;
    let mut expected_master = None;
    for _ in 0..failovers {
        while listener.recv_timeout(Duration::ZERO).is_some() {}
        let errors_before = errors.load(Ordering::Relaxed);
        let old = topology.master().expect("master");
        if expected_master.as_ref().is_some_and(|m| *m != old) {
            // Writes the pool sent to the demoted node between the promotion and the
            // announcement show up in this failover's "acked by the new master" count.
            eprintln!(
                "Sentinel failed over by itself since the last failover: {} -> {old}",
                expected_master.as_ref().expect("checked")
            );
        }
        let triggered = Instant::now();
        let new = match kind {
            Kind::Planned => topology.failover().expect("failover"),
            Kind::Crash => {
                topology.kill_master().expect("kill");
                topology
                    .wait_for_new_master(&old, Duration::from_secs(30))
                    .expect("promotion")
            }
        };
        let published = listener
            .recv_timeout(Duration::from_secs(30))
            .expect("a +switch-master")
            .at;
        let first_on_new = wait_for(Duration::from_secs(60), || {
            let acked = acks.lock();
            let found = acked[cursor..]
                .iter()
                .find(|a| a.by == new && a.at >= triggered)
                .map(|a| a.at);
            cursor = acked.len();
            found
        });
        if watcher {
            let seen = wait_for(Duration::from_secs(10), || {
                announced
                    .lock()
                    .iter()
                    .find(|(at, addr)| *at >= triggered && *addr == new)
                    .map(|(at, _)| *at)
            });
            figures.detection.push(signed_ms(published, seen));
        }
        figures.recovery.push(signed_ms(published, first_on_new));
        // Look at the window around the failover once it has closed.
        let window_end = first_on_new + Duration::from_secs(1);
        thread::sleep(
            window_end.saturating_duration_since(Instant::now()) + Duration::from_millis(10),
        );
        let (gap, keys) = {
            let acked = acks.lock();
            let from = acked.partition_point(|a| a.key <= checked_up_to);
            let recent = &acked[from..];
            let gap = longest_gap(recent, triggered - Duration::from_secs(1), window_end);
            (
                gap,
                recent
                    .iter()
                    .map(|a| (a.key, a.by == new))
                    .collect::<Vec<_>>(),
            )
        };
        figures.gap.push(gap);
        let key_list: Vec<u64> = keys.iter().map(|(k, _)| *k).collect();
        let (lost_old, lost_new) = (figures.lost_old, figures.lost_new);
        for (missing, (_, by_new)) in missing_on(&new, &key_list).into_iter().zip(&keys) {
            match (missing, by_new) {
                (true, true) => figures.lost_new += 1,
                (true, false) => figures.lost_old += 1,
                _ => {}
            }
        }
        // One line per failover on stderr: what the pool was told, and what was lost.
        let told: Vec<String> = announced
            .lock()
            .iter()
            .filter(|(at, _)| *at >= triggered)
            .map(|(at, addr)| format!("{addr} at +{:.0} ms", (*at - triggered).as_secs_f64() * 1e3))
            .collect();
        eprintln!(
            "{old} -> {new}: pool told of {told:?}; lost {} acked by the old master, {} by the new",
            figures.lost_old - lost_old,
            figures.lost_new - lost_new
        );
        checked_up_to = key_list.last().copied().unwrap_or(checked_up_to);
        figures.errors += errors.load(Ordering::Relaxed) - errors_before;

        expected_master = Some(new.clone());
        if kind == Kind::Crash {
            topology.restart(&old).expect("restart");
        }
        topology.wait_settled().expect("settle");
    }
    stop.store(true, Ordering::Relaxed);
    writer.join().expect("writer");
    figures.writes = acks.lock().len();
    figures
}

fn spawn_writer(
    pool: SentinelPool,
    acks: Arc<Mutex<Vec<Ack>>>,
    errors: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
) -> thread::JoinHandle<()> {
    thread::spawn(move || {
        let mut key = 0u64;
        while !stop.load(Ordering::Relaxed) {
            key += 1;
            // Keys expire, to keep the data set (and each resync) small.
            let result = pool.with_retry_idempotent(|c| {
                redis::cmd("SET")
                    .arg(key)
                    .arg(1)
                    .arg("PX")
                    .arg(120_000)
                    .query::<()>(c)?;
                Ok(c.addr().clone())
            });
            match result {
                Ok(by) => acks.lock().push(Ack {
                    key,
                    by,
                    at: Instant::now(),
                }),
                Err(_) => {
                    errors.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    })
}

/// Timestamps each failover the pool announces, on a thread of its own.
fn collect_failover_events(pool: &SentinelPool) -> Arc<Mutex<Vec<(Instant, NodeAddr)>>> {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let (events, sink) = (pool.events(), Arc::clone(&seen));
    // Ends when the pool is dropped.
    thread::spawn(move || {
        for event in events.iter() {
            if let Event::Failover { new, .. } = event {
                sink.lock().push((Instant::now(), new));
            }
        }
    });
    seen
}

fn wait_for<T>(timeout: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out");
        thread::sleep(Duration::from_millis(1));
    }
}

/// Milliseconds from `from` to `to`, negative when `to` came first.
fn signed_ms(from: Instant, to: Instant) -> f64 {
    if to >= from {
        (to - from).as_secs_f64() * 1e3
    } else {
        -(from - to).as_secs_f64() * 1e3
    }
}

fn longest_gap(acks: &[Ack], from: Instant, to: Instant) -> f64 {
    let times: Vec<Instant> = acks
        .iter()
        .map(|a| a.at)
        .filter(|t| *t >= from && *t <= to)
        .collect();
    times
        .windows(2)
        .map(|w| (w[1] - w[0]).as_secs_f64() * 1e3)
        .fold(0.0, f64::max)
}

/// For each of `keys`, whether the node at `addr` lacks it.
fn missing_on(addr: &NodeAddr, keys: &[u64]) -> Vec<bool> {
    let mut conn = redis::Client::open(format!("redis://{addr}"))
        .and_then(|c| c.get_connection_with_timeout(Duration::from_secs(2)))
        .expect("direct connection");
    keys.chunks(5000)
        .flat_map(|chunk| {
            let mut pipe = redis::pipe();
            for key in chunk {
                pipe.exists(key);
            }
            let present: Vec<bool> = pipe.query(&mut conn).expect("EXISTS");
            present.into_iter().map(|p| !p).collect::<Vec<_>>()
        })
        .collect()
}

/// `p50 / p90 / max` in milliseconds.
fn spread(values: &[f64]) -> String {
    if values.is_empty() {
        return "—".to_owned();
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    // Nearest rank: the smallest value with at least a fraction q of the values at or below it.
    let at =
        |q: f64| sorted[((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len()) - 1];
    format!("{:.1} / {:.1} / {:.1} ms", at(0.5), at(0.9), at(1.0))
}
