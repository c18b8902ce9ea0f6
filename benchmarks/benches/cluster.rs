//! Redis Cluster behind a blocking pool: this crate's `ClusterPool` beside what redis-rs offers
//! today, `r2d2::Pool<ClusterClient>`, on the test kit's cluster (3 primaries with a replica
//! each, `cluster-node-timeout` 1 s).
//!
//! - checkout + `SET` of a random key, at 1, 8, 16 and 64 threads (pools of 8, 8, 16, 16; per
//!   node for `ClusterPool`), interleaved in slices of a fifth of a second as the ratios bench
//!   takes them, the contender the baseline;
//! - the sockets each keeps open on the nodes for 16 threads (`connected_clients`);
//! - 8 writers of unique keys through a manual `CLUSTER FAILOVER` and, on a fresh cluster, a
//!   primary's SIGKILL: the contender with a checkout and a `SET` (it has no retry of its
//!   own), `ClusterPool` the same and through `with_retry_idempotent`. The errors they saw, the
//!   acknowledged writes missing afterwards (each primary's keys listed with `SCAN`), the
//!   longest pause a writer saw between two acknowledgements.
//!
//! `cargo bench -p benchmarks --bench cluster` (about 2 minutes). Results in BENCHMARKS.md.

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
    ClusterPool, r2d2,
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

fn ours(cluster: &Cluster, size: u32) -> ClusterPool {
    let seeds: Vec<String> = cluster.nodes().iter().map(ToString::to_string).collect();
    ClusterPool::builder(seeds)
        .max_size(size)
        .build()
        .expect("cluster pool")
}

/// A key spread over the slots: a counter scrambled, 100,000 keys.
fn random_key(next: &AtomicU64) -> String {
    let n = next.fetch_add(1, Ordering::Relaxed);
    format!("bench:{}", n.wrapping_mul(0x9E37_79B9_7F4A_7C15) % 100_000)
}

fn main() {
    let cluster = Cluster::start().expect("cluster");
    println!("| case | contender | median rate | ratio to the baseline: median (middle half) |");
    println!("| --- | --- | --- | --- |");
    for (size, threads) in [(8, 1), (8, 8), (16, 16), (16, 64)] {
        let theirs = pool(&cluster, size);
        let next = Arc::new(AtomicU64::new(0));
        let op: support::bench::Op = {
            let (pool, next) = (theirs.clone(), Arc::clone(&next));
            Arc::new(move || {
                let () = pool
                    .get()
                    .expect("checkout")
                    .set(random_key(&next), "v")
                    .expect("SET");
            })
        };
        let mine = ours(&cluster, size);
        let our_op: support::bench::Op = {
            let (pool, next) = (mine.clone(), Arc::clone(&next));
            Arc::new(move || {
                let () = pool
                    .get()
                    .expect("checkout")
                    .set(random_key(&next), "v")
                    .expect("SET");
            })
        };
        let mut sides = vec![
            Contender::new("r2d2::Pool<ClusterClient>", |iters| {
                run(&op, threads, iters)
            }),
            Contender::new("ClusterPool", |iters| run(&our_op, threads, iters)),
        ];
        let rates = interleave(&mut sides, SLICE, ROUNDS);
        print(
            &format!("cluster: checkout + `SET`, {threads} threads, pool of {size}"),
            "ops",
            &rates,
            0,
        );
        if threads == 16 {
            let both = sockets(&cluster);
            drop(sides);
            drop((our_op, mine));
            let contender = sockets(&cluster);
            println!(
                "\nsockets open on the nodes for 16 threads, pool of 16: \
                 r2d2::Pool<ClusterClient> {contender}, ClusterPool {}\n",
                both - contender
            );
        }
    }
    drop(cluster);

    println!("| event | pool | writes acknowledged | lost | errors | longest pause |");
    println!("| --- | --- | --- | --- | --- | --- |");
    for (crash, side) in [false, true].into_iter().flat_map(|crash| {
        [
            (crash, Side::Contender),
            (crash, Side::Ours),
            (crash, Side::OursRetried),
        ]
    }) {
        let mut cluster = Cluster::start().expect("cluster");
        let write: Write = match side {
            Side::Contender => {
                let pool = pool(&cluster, 16);
                Arc::new(move |key: &str| {
                    pool.get()
                        .map_err(|e| e.to_string())
                        .and_then(|mut c| c.set::<_, _, ()>(key, 1).map_err(|e| e.to_string()))
                })
            }
            Side::Ours => {
                let pool = ours(&cluster, 16);
                Arc::new(move |key: &str| {
                    pool.get()
                        .map_err(|e| e.to_string())
                        .and_then(|mut c| c.set::<_, _, ()>(key, 1).map_err(|e| e.to_string()))
                })
            }
            Side::OursRetried => {
                let pool = ours(&cluster, 16);
                Arc::new(move |key: &str| {
                    pool.with_retry_idempotent(|c| c.set::<_, _, ()>(key, 1))
                        .map_err(|e| e.to_string())
                })
            }
        };
        let writers = Writers::start(&write);
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
            "| {what} | {} | {} | {lost} | {errors} | {:.0} ms |",
            side.name(),
            acked.len(),
            pause.as_secs_f64() * 1000.0
        );
    }
}

/// Who writes through a failover.
#[derive(Clone, Copy)]
enum Side {
    Contender,
    Ours,
    OursRetried,
}

impl Side {
    fn name(self) -> &'static str {
        match self {
            Side::Contender => "r2d2::Pool<ClusterClient>, get + SET",
            Side::Ours => "ClusterPool, get + SET",
            Side::OursRetried => "ClusterPool, with_retry_idempotent",
        }
    }
}

/// One write of a key, through one pool.
type Write = Arc<dyn Fn(&str) -> Result<(), String> + Send + Sync>;

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

/// Writers of unique keys.
struct Writers {
    stop: Arc<AtomicBool>,
    threads: Vec<thread::JoinHandle<(Vec<String>, u64, Duration)>>,
}

impl Writers {
    fn start(write: &Write) -> Writers {
        let stop = Arc::new(AtomicBool::new(false));
        let threads = (0..WRITERS)
            .map(|w| {
                let (write, stop) = (Arc::clone(write), Arc::clone(&stop));
                thread::spawn(move || {
                    let (mut acked, mut errors) = (Vec::new(), 0);
                    let (mut last, mut pause) = (Instant::now(), Duration::ZERO);
                    for n in 0.. {
                        if stop.load(Ordering::Relaxed) {
                            break;
                        }
                        let key = format!("w:{w}:{n}");
                        match write(&key) {
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
