//! Read throughput: `GET` through a replica pool (two replicas) against the master pool alone,
//! in the same run, on the same topology.
//!
//! `cargo bench --bench reads` (about 1 minute). Each measurement runs `THREADS` threads, each
//! checking out a connection and sending one `GET` per loop, for 3 seconds; the two pools take
//! turns, twice each. Results in BENCHMARKS.md.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

use r2d2_redis_sentinel::{ReplicaOptions, SentinelPool, redis::Commands, testkit::Topology};

const THREADS: [usize; 3] = [2, 8, 16];
const RUN: Duration = Duration::from_secs(3);

fn main() {
    let topology = Topology::start().expect("topology");
    let master = topology
        .pool_builder()
        .max_size(16)
        .build()
        .expect("master pool");
    let replicas = master
        .replica_pool(ReplicaOptions::default())
        .expect("replica pool");
    let _: () = master.with_retry(|c| c.set("key", "value")).expect("SET");
    println!("| threads | master pool, GET/s | replica pool (2 replicas), GET/s | ratio |");
    println!("| --- | --- | --- | --- |");
    for threads in THREADS {
        let (mut on_master, mut on_replicas) = (0.0, 0.0);
        for _ in 0..2 {
            on_master += run(&master, threads);
            on_replicas += run(&replicas, threads);
        }
        println!(
            "| {threads} | {:.0} | {:.0} | {:.2}x |",
            on_master / 2.0,
            on_replicas / 2.0,
            on_replicas / on_master
        );
    }
}

/// `GET`s per second over `threads` threads for [`RUN`].
fn run(pool: &SentinelPool, threads: usize) -> f64 {
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let workers: Vec<_> = (0..threads)
        .map(|_| {
            let (pool, stop, done) = (pool.clone(), Arc::clone(&stop), Arc::clone(&done));
            thread::spawn(move || {
                let mut count = 0;
                while !stop.load(Ordering::Relaxed) {
                    let mut conn = pool.get().expect("checkout");
                    let _: Option<String> = conn.get("key").expect("GET");
                    count += 1;
                }
                done.fetch_add(count, Ordering::Relaxed);
            })
        })
        .collect();
    let start = Instant::now();
    thread::sleep(RUN);
    stop.store(true, Ordering::Relaxed);
    for worker in workers {
        worker.join().expect("worker");
    }
    done.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64()
}
