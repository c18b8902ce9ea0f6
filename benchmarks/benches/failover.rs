//! Failover recovery against real failovers (`SENTINEL FAILOVER` and SIGKILL of the master),
//! with the fence on (resuming when the failover commits, the default), resuming at the
//! promotion, and off (and, when asked by name, the watcher off).
//!
//! A writer loops over unique keys under `with_retry_idempotent`. Per failover:
//! - errors surfaced to the writer, and acknowledged writes missing from the new master;
//! - the longest gap between two acknowledged writes around the failover;
//! - from the promotion (a poller asks every replica `ROLE` each millisecond) to the first
//!   write acknowledged by the new master;
//! - from the first `+switch-master` any sentinel publishes (an independent subscriber on
//!   every sentinel timestamps it) to that write: negative when the pool got there first.
//!
//! The first failover of each scenario is also written, as acknowledged and lost writes per
//! 10 ms with Sentinel's steps marked, to `target/failover-timeline/<scenario>.json`, which
//! `cargo run -p plot --bin failover` draws into `docs/plots/failover.png`.
//!
//! `cargo bench -p benchmarks --bench failover` (`FAILOVERS=10` per scenario by default; about 18 minutes).
//! `cargo bench -p benchmarks --bench failover -- "watcher off"` runs the scenarios without the watcher.
//! `DOWN_AFTER_MS=5000` sets the sentinels' `down-after-milliseconds` (1 s by default).
//! `VALIDATION=ping-role` checks every checkout with `PING`+`ROLE` instead of the default.
//! `WRITERS=8` runs eight writers on the pool (one by default; the pool then holds eight
//! connections). `COORDINATED=on` (Valkey 9 and later, through `REDIS_BIN_DIR`) runs planned
//! failovers both ways, plain and `SENTINEL FAILOVER <master> COORDINATED` (the master hands
//! over by itself), fence on and off (and coordinated, resuming at the promotion, which there
//! is the handover), instead of the default scenarios.
//! Results in BENCHMARKS.md.

use std::{
    env, fs,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

use parking_lot::Mutex;
use r2d2_redis_sentinel::{
    Event, FenceResume, NodeAddr, RetryPolicy, SentinelPool, Validation,
    redis::{self, Role},
    testkit::Topology,
};

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Planned,
    /// `SENTINEL FAILOVER <master> COORDINATED`.
    Coordinated,
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
    /// From the promotion to the first write on the new master.
    from_promotion: Vec<f64>,
    /// From the first `+switch-master` to the first write on the new master.
    from_announcement: Vec<f64>,
    gap: Vec<f64>,
    /// Acknowledged writes lost, per failover.
    lost: Vec<f64>,
    errors: u64,
    /// Acknowledged writes missing from the new master, acknowledged by the old master.
    lost_old: usize,
    /// The same, acknowledged by the new master itself (should never happen).
    lost_new: usize,
    writes: usize,
}

/// How a scenario's pool is set up.
#[derive(Clone, Copy, PartialEq)]
enum Setup {
    FenceOn,
    FenceAtPromotion,
    FenceOff,
    WatcherOff,
}

fn main() {
    // `cargo bench` passes `--bench`; any other argument is a filter on the scenario name.
    let filter: Option<String> = env::args().skip(1).find(|a| !a.starts_with("--"));
    let failovers: usize = env::var("FAILOVERS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(10);
    let coordinated = [
        ("planned, fence on", Kind::Planned, Setup::FenceOn),
        ("coordinated, fence on", Kind::Coordinated, Setup::FenceOn),
        (
            "coordinated, fence resuming at promotion",
            Kind::Coordinated,
            Setup::FenceAtPromotion,
        ),
        ("planned, fence off", Kind::Planned, Setup::FenceOff),
        ("coordinated, fence off", Kind::Coordinated, Setup::FenceOff),
    ];
    let usual = [
        ("planned, fence on", Kind::Planned, Setup::FenceOn),
        ("crash, fence on", Kind::Crash, Setup::FenceOn),
        (
            "planned, fence resuming at promotion",
            Kind::Planned,
            Setup::FenceAtPromotion,
        ),
        (
            "crash, fence resuming at promotion",
            Kind::Crash,
            Setup::FenceAtPromotion,
        ),
        ("planned, fence off", Kind::Planned, Setup::FenceOff),
        ("crash, fence off", Kind::Crash, Setup::FenceOff),
        ("planned, watcher off", Kind::Planned, Setup::WatcherOff),
        ("crash, watcher off", Kind::Crash, Setup::WatcherOff),
    ];
    let scenarios: &[(&str, Kind, Setup)] = if env::var("COORDINATED").is_ok_and(|c| c == "on") {
        &coordinated
    } else {
        &usual
    };
    let writers: u32 = env::var("WRITERS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(1);
    println!(
        "| scenario | failovers | errors | lost per failover p50 / p90 / max (acked by old / new master, in all) | longest write gap p50 / p90 / max | promotion → first write on new p50 / p90 / max | first `+switch-master` → first write on new p50 / p90 / max | writes |"
    );
    println!("| --- | --- | --- | --- | --- | --- | --- | --- |");
    for &(name, kind, setup) in scenarios {
        let chosen = match filter.as_deref() {
            Some(f) => name.contains(f),
            None => setup != Setup::WatcherOff,
        };
        if !chosen {
            continue;
        }
        let f = scenario(name, kind, setup, failovers, writers);
        println!(
            "| {name} | {failovers} | {} | {} ({} / {}) | {} | {} | {} | {} |",
            f.errors,
            spread(&f.lost, ""),
            f.lost_old,
            f.lost_new,
            spread(&f.gap, " ms"),
            spread(&f.from_promotion, " ms"),
            spread(&f.from_announcement, " ms"),
            f.writes,
        );
    }
}

fn scenario(name: &str, kind: Kind, setup: Setup, failovers: usize, writers: u32) -> Figures {
    // Sentinel refreshes its view of replicas every 10 s: settling after a crash, a restart and
    // a +convert-to-slave can take longer than the kit's default 30 s.
    let down_after = env::var("DOWN_AFTER_MS")
        .ok()
        .and_then(|ms| ms.parse().ok())
        .map_or(Duration::from_secs(1), Duration::from_millis);
    let mut topology = Topology::builder()
        .down_after(down_after)
        .timeout(Duration::from_secs(120))
        .start()
        .expect("topology");
    let pool = topology
        .pool_builder()
        .max_size(writers.max(4))
        .watcher(setup != Setup::WatcherOff)
        .fence(matches!(setup, Setup::FenceOn | Setup::FenceAtPromotion))
        .fence_resume(if setup == Setup::FenceAtPromotion {
            FenceResume::Promotion
        } else {
            FenceResume::Commit
        })
        .retry_policy(RetryPolicy::default().deadline(Duration::from_secs(60)))
        .validation(match env::var("VALIDATION").as_deref() {
            Ok("ping-role") => Validation::PingRole,
            Ok(other) if !other.is_empty() => panic!("VALIDATION={other}: only ping-role"),
            _ => Validation::default(),
        })
        .build()
        .expect("pool");
    // Reserved up front: a reallocation would stall the writer mid-measurement.
    let acks = Arc::new(Mutex::new(Vec::<Ack>::with_capacity(8 << 20)));
    let errors = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let keys = Arc::new(AtomicU64::new(0));
    let writer: Vec<_> = (0..writers)
        .map(|_| {
            spawn_writer(
                pool.clone(),
                Arc::clone(&keys),
                Arc::clone(&acks),
                Arc::clone(&errors),
                Arc::clone(&stop),
            )
        })
        .collect();
    let announced = collect_events(&pool);
    let listener = topology.listen("+switch-master").expect("listener");
    let steps = topology.listen("+selected-slave").expect("listener");

    let mut figures = Figures::default();
    let mut checked_up_to = 0;
    // Acks before this index were looked at already: each look takes the lock only for the new
    // ones, so the writer is not held up by the measurement.
    let mut cursor = 0;
    let mut expected_master = None;
    // A second of writes before the first failover, for its timeline.
    wait_for(Duration::from_secs(10), || {
        (!acks.lock().is_empty()).then_some(())
    });
    thread::sleep(Duration::from_secs(1));
    for round in 0..failovers {
        while listener.recv_timeout(Duration::ZERO).is_some() {}
        while steps.recv_timeout(Duration::ZERO).is_some() {}
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
        let promotion = watch_promotion(
            topology
                .data_addrs()
                .into_iter()
                .filter(|a| *a != old)
                .collect(),
        );
        let triggered = Instant::now();
        let new = match kind {
            Kind::Planned => topology.failover().expect("failover"),
            Kind::Coordinated => topology.failover_coordinated().expect("failover"),
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
        let promoted = promotion.recv_timeout(Duration::from_secs(10)).ok();
        let Some((promoted, _)) = promoted.filter(|(_, addr)| *addr == new) else {
            panic!("the poller did not see {new} promoted");
        };
        figures
            .from_promotion
            .push(signed_ms(promoted, first_on_new));
        figures
            .from_announcement
            .push(signed_ms(published, first_on_new));
        // Look at the window around the failover once it has closed.
        let window_end = first_on_new.max(published) + Duration::from_secs(1);
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
        let missing = missing_on(&new, &key_list);
        for (missing, (_, by_new)) in missing.iter().zip(&keys) {
            match (missing, by_new) {
                (true, true) => figures.lost_new += 1,
                (true, false) => figures.lost_old += 1,
                _ => {}
            }
        }
        figures
            .lost
            .push((figures.lost_old + figures.lost_new - lost_old - lost_new) as f64);
        if round == 0 {
            let marks = Marks {
                triggered,
                selected: steps.recv_timeout(Duration::ZERO).map(|p| p.at),
                promoted,
                announced: published,
                events: announced.lock().clone(),
            };
            let lost: Vec<u64> = key_list
                .iter()
                .zip(&missing)
                .filter(|(_, m)| **m)
                .map(|(k, _)| *k)
                .collect();
            write_timeline(name, &acks.lock(), &lost, &marks, window_end);
        }
        // One line per failover on stderr: what the pool was told, and what was lost.
        let told: Vec<String> = announced
            .lock()
            .iter()
            .filter(|(at, _)| *at >= triggered)
            .filter_map(|(at, event)| match event {
                Event::Failover { new, .. } => Some(format!(
                    "{new} at +{:.0} ms",
                    (*at - triggered).as_secs_f64() * 1e3
                )),
                _ => None,
            })
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
    for writer in writer {
        writer.join().expect("writer");
    }
    figures.writes = acks.lock().len();
    figures
}

/// A writer of the keys `keys` hands out, in order, one at a time: with several writers, the
/// acknowledgements are in key order but for those in flight together.
fn spawn_writer(
    pool: SentinelPool,
    keys: Arc<AtomicU64>,
    acks: Arc<Mutex<Vec<Ack>>>,
    errors: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
) -> thread::JoinHandle<()> {
    thread::spawn(move || {
        while !stop.load(Ordering::Relaxed) {
            let key = keys.fetch_add(1, Ordering::Relaxed) + 1;
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

/// Timestamps each event of the pool, on a thread of its own.
fn collect_events(pool: &SentinelPool) -> Arc<Mutex<Vec<(Instant, Event)>>> {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let (events, sink) = (pool.events(), Arc::clone(&seen));
    // Ends when the pool is dropped.
    thread::spawn(move || {
        for event in events.iter() {
            sink.lock().push((Instant::now(), event));
        }
    });
    seen
}

/// Asks each of `nodes` `ROLE` every millisecond, from a thread each, and sends the first
/// that answers master, with when. Sentinel kills a promoted node's clients with the
/// promotion, so a poller reconnects at once: the instant is a millisecond or two late at
/// worst. The threads end when the receiver is dropped.
fn watch_promotion(nodes: Vec<NodeAddr>) -> crossbeam_channel::Receiver<(Instant, NodeAddr)> {
    let (tx, rx) = crossbeam_channel::bounded(nodes.len());
    for node in nodes {
        let tx = tx.clone();
        thread::spawn(move || {
            let client = redis::Client::open(format!("redis://{node}")).expect("client");
            // Gives up after a minute, or once the receiver is gone.
            let deadline = Instant::now() + Duration::from_secs(60);
            while Instant::now() < deadline {
                let Ok(mut conn) = client.get_connection_with_timeout(Duration::from_millis(100))
                else {
                    thread::sleep(Duration::from_millis(1));
                    continue;
                };
                let _ = conn.set_read_timeout(Some(Duration::from_millis(100)));
                while Instant::now() < deadline {
                    match redis::cmd("ROLE").query::<Role>(&mut conn) {
                        Ok(Role::Primary { .. }) => {
                            let _ = tx.send((Instant::now(), node));
                            return;
                        }
                        Ok(_) => thread::sleep(Duration::from_millis(1)),
                        Err(_) => break,
                    }
                    if tx.is_full() {
                        return;
                    }
                }
            }
        });
    }
    rx
}

/// What happened when, through one failover, for the timeline.
struct Marks {
    triggered: Instant,
    selected: Option<Instant>,
    promoted: Instant,
    announced: Instant,
    events: Vec<(Instant, Event)>,
}

/// Writes acknowledged (and lost) writes per 10 ms from half a second before `marks.triggered`
/// to `end`, with the marks, as JSON under `target/failover-timeline/`.
fn write_timeline(name: &str, acks: &[Ack], lost: &[u64], marks: &Marks, end: Instant) {
    const BUCKET: Duration = Duration::from_millis(10);
    let start = marks.triggered - Duration::from_millis(500);
    let buckets = ((end - start).as_millis() / BUCKET.as_millis()) as usize + 1;
    let (mut acked, mut missing) = (vec![0u32; buckets], vec![0u32; buckets]);
    let lost: std::collections::HashSet<u64> = lost.iter().copied().collect();
    for ack in acks.iter().filter(|a| a.at >= start && a.at <= end) {
        let bucket = ((ack.at - start).as_millis() / BUCKET.as_millis()) as usize;
        if lost.contains(&ack.key) {
            missing[bucket] += 1;
        } else {
            acked[bucket] += 1;
        }
    }
    let ms = |at: Instant| signed_ms(start, at);
    let event = |pick: fn(&Event) -> bool| {
        marks
            .events
            .iter()
            .find(|(at, e)| *at >= marks.triggered && pick(e))
            .map(|(at, _)| ms(*at))
    };
    let timeline = serde_json::json!({
        "scenario": name,
        "bucket_ms": BUCKET.as_millis() as u64,
        "kept": acked,
        "lost": missing,
        "marks": {
            "triggered": ms(marks.triggered),
            "selected": marks.selected.map(ms),
            "promoted": ms(marks.promoted),
            "announced": ms(marks.announced),
            "fence_up": event(|e| matches!(e, Event::FenceUp { .. })),
            "pool_moved": event(|e| matches!(e, Event::Failover { .. })),
        },
    });
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/failover-timeline");
    fs::create_dir_all(&dir).expect("timeline folder");
    let file = dir.join(format!(
        "{}.json",
        name.replace(", ", "-").replace(' ', "-")
    ));
    fs::write(&file, timeline.to_string()).expect("write the timeline");
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

/// `p50 / p90 / max`, in `unit`.
fn spread(values: &[f64], unit: &str) -> String {
    if values.is_empty() {
        return "—".to_owned();
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    // Nearest rank: the smallest value with at least a fraction q of the values at or below it.
    let at =
        |q: f64| sorted[((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len()) - 1];
    if unit.is_empty() {
        format!("{:.0} / {:.0} / {:.0}", at(0.5), at(0.9), at(1.0))
    } else {
        format!("{:.1} / {:.1} / {:.1}{unit}", at(0.5), at(0.9), at(1.0))
    }
}
