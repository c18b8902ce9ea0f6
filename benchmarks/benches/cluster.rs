//! Redis Cluster behind a blocking pool, as redis-rs offers it today: `r2d2::Pool<ClusterClient>`
//! on the test kit's cluster (3 primaries with a replica each, `cluster-node-timeout` 1 s). It
//! is the contender this crate's cluster pool is to beat, side by side in this program once
//! that pool exists; for now it pins the contender's figures on this machine and this kit.
//!
//! - checkout + `SET` of a random key, at 1, 8, 16 and 64 threads (pools of 8, 8, 16, 16),
//!   slices of a fifth of a second as the ratios bench takes them;
//! - the sockets 16 threads keep open on the nodes (`connected_clients`);
//! - 8 writers of unique keys (checkout, `SET`, no retry) through a manual `CLUSTER FAILOVER`
//!   and, on a fresh cluster, a primary's SIGKILL: the errors they saw, the acknowledged writes
//!   missing afterwards (each primary's keys listed with `SCAN`), the longest pause a writer
//!   saw between two acknowledgements.
//!
//! `cargo bench -p benchmarks --bench cluster` (about a minute). Results in BENCHMARKS.md.

use std::{
    collections::HashSet,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

use r2d2_redis_sentinel::{
    r2d2,
    redis::{self, Commands, cluster::ClusterClient},
    testkit::Cluster,
};
use support::{
    bench::run,
    direct,
    interleave::{Contender, interleave, print},
};

const SLICE: Duration = Duration::from_millis(200);
const ROUNDS: usize = 15;
const WRITERS: usize = 8;

fn pool(cluster: &Cluster, size: u32) -> r2d2::Pool<ClusterClient> {
    let seeds: Vec<String> = cluster
        .nodes()
        .iter()
        .map(|n| format!("redis://{n}"))
        .collect();
    let client = ClusterClient::new(seeds).expect("cluster client");
    r2d2::Pool::builder()
        .max_size(size)
        .connection_timeout(Duration::from_secs(5))
        .build(client)
        .expect("pool")
}

fn main() {
    let cluster = Cluster::start().expect("cluster");
    println!("| case | contender | median rate | ratio to the baseline: median (middle half) |");
    println!("| --- | --- | --- | --- |");
    for (size, threads) in [(8, 1), (8, 8), (16, 16), (16, 64)] {
        let pool = pool(&cluster, size);
        let next = Arc::new(AtomicU64::new(0));
        let op: support::bench::Op = Arc::new(move || {
            // Spread over the slots: a counter scrambled, 100,000 keys.
            let n = next.fetch_add(1, Ordering::Relaxed);
            let key = format!("bench:{}", n.wrapping_mul(0x9E37_79B9_7F4A_7C15) % 100_000);
            let () = pool.get().expect("checkout").set(key, "v").expect("SET");
        });
        let mut sides = vec![Contender::new("r2d2::Pool<ClusterClient>", |iters| {
            run(&op, threads, iters)
        })];
        let rates = interleave(&mut sides, SLICE, ROUNDS);
        print(
            &format!("cluster: checkout + `SET`, {threads} threads, pool of {size}"),
            "ops",
            &rates,
            0,
        );
        if threads == 16 {
            println!(
                "\nsockets open on the nodes for 16 threads, pool of 16: {}\n",
                sockets(&cluster)
            );
        }
    }
    drop(cluster);

    println!("| event | writes acknowledged | lost | errors | longest pause |");
    println!("| --- | --- | --- | --- | --- |");
    for crash in [false, true] {
        let mut cluster = Cluster::start().expect("cluster");
        let pool = pool(&cluster, 16);
        let writers = Writers::start(&pool);
        thread::sleep(Duration::from_secs(1));
        let primary = cluster.owner(0).expect("owner");
        let what = if crash {
            cluster.kill(&primary).expect("kill");
            cluster
                .wait_for_new_primary(&primary)
                .expect("a new primary");
            "a primary SIGKILLed"
        } else {
            cluster.failover(&primary).expect("failover");
            "`CLUSTER FAILOVER`"
        };
        thread::sleep(Duration::from_secs(1));
        let (acked, errors, pause) = writers.finish();
        let present = keys(&cluster);
        let lost = acked.iter().filter(|k| !present.contains(*k)).count();
        println!(
            "| {what} | {} | {lost} | {errors} | {:.0} ms |",
            acked.len(),
            pause.as_secs_f64() * 1000.0
        );
    }
}

/// Clients connected to the nodes, the connection that asks left out.
fn sockets(cluster: &Cluster) -> u64 {
    cluster
        .nodes()
        .iter()
        .map(|node| {
            let info: String = redis::cmd("INFO")
                .arg("clients")
                .query(&mut direct(node))
                .expect("INFO");
            info.lines()
                .find_map(|l| l.strip_prefix("connected_clients:"))
                .and_then(|n| n.trim().parse::<u64>().ok())
                .unwrap_or(1)
                - 1
        })
        .sum()
}

/// Every `w:*` key the primaries hold now.
fn keys(cluster: &Cluster) -> HashSet<String> {
    let mut all = HashSet::new();
    for primary in cluster.primaries().expect("primaries") {
        let found: Result<Vec<String>, _> = direct(&primary)
            .scan_match::<_, String>("w:*")
            .expect("SCAN")
            .collect();
        all.extend(found.expect("SCAN"));
    }
    all
}

/// Writers of unique keys, one checkout and one `SET` each, no retry.
struct Writers {
    stop: Arc<AtomicBool>,
    threads: Vec<thread::JoinHandle<(Vec<String>, u64, Duration)>>,
}

impl Writers {
    fn start(pool: &r2d2::Pool<ClusterClient>) -> Writers {
        let stop = Arc::new(AtomicBool::new(false));
        let threads = (0..WRITERS)
            .map(|w| {
                let (pool, stop) = (pool.clone(), Arc::clone(&stop));
                thread::spawn(move || {
                    let (mut acked, mut errors) = (Vec::new(), 0);
                    let (mut last, mut pause) = (Instant::now(), Duration::ZERO);
                    for n in 0.. {
                        if stop.load(Ordering::Relaxed) {
                            break;
                        }
                        let key = format!("w:{w}:{n}");
                        let written = pool.get().map_err(|e| e.to_string()).and_then(|mut c| {
                            c.set::<_, _, ()>(&key, 1).map_err(|e| e.to_string())
                        });
                        match written {
                            Ok(()) => {
                                pause = pause.max(last.elapsed());
                                last = Instant::now();
                                acked.push(key);
                            }
                            Err(_) => errors += 1,
                        }
                    }
                    (acked, errors, pause)
                })
            })
            .collect();
        Writers { stop, threads }
    }

    /// Every key acknowledged, the errors seen, the longest pause of any writer.
    fn finish(self) -> (Vec<String>, u64, Duration) {
        self.stop.store(true, Ordering::Relaxed);
        let (mut acked, mut errors, mut pause) = (Vec::new(), 0, Duration::ZERO);
        for thread in self.threads {
            let (a, e, p) = thread.join().expect("writer");
            acked.extend(a);
            errors += e;
            pause = pause.max(p);
        }
        (acked, errors, pause)
    }
}
