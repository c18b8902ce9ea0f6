//! Latency of one checkout + `SET` + return, per operation (p50 and p99), for the contenders of
//! the checkout bench, at 1 to 16 threads on pools of 8 and 16: criterion's batches give
//! throughput, this gives the distribution. Each cell runs one second after a short warm-up.
//!
//! `cargo bench --bench latency`; results in BENCHMARKS.md. `DURABLE=on` measures durable
//! mode against the default instead: checkout + `SET` + return at 1 and 8 threads on a pool of
//! 8, and a pipeline of 1,000 `SET`s on one thread. `DURABLE=disk` measures the same for
//! durable mode on disk (`WAITAOF`) on nodes with append-only files, fsynced every second and
//! at every write, beside `WAIT` on the same nodes; each cell runs 5 seconds. It needs a
//! server with `WAITAOF` (Redis 7.2 or later, Valkey): `REDIS_BIN_DIR` names its folder.

use std::{
    sync::{Arc, Barrier},
    thread,
    time::{Duration, Instant},
};

use r2d2_redis_sentinel::{Durability, NodeAddr, SentinelPool, redis, testkit::Topology};
use support::bench::{Op, POOL_SIZES, THREADS, contenders};

fn main() {
    let durable_mode = std::env::var("DURABLE").unwrap_or_default();
    if durable_mode == "disk" {
        on_disk();
        return;
    }
    let topology = Topology::start().expect("topology");
    if durable_mode == "on" {
        let pool = |durable: bool| support::bench::pool_durable_or_not(&topology, 8, durable);
        durable(
            &[
                ("default", pool(false), None),
                ("durable", pool(true), None),
            ],
            Duration::from_secs(1),
        );
        return;
    }
    println!("| pool | contender | threads | ops/s | p50 | p99 |");
    println!("| --- | --- | --- | --- | --- | --- |");
    for pool_size in POOL_SIZES {
        let contenders = contenders(&topology, pool_size);
        for threads in THREADS {
            for (name, op) in &contenders {
                measure(op, threads, Duration::from_millis(200));
                let (ops, p50, p99) = measure(op, threads, Duration::from_secs(1));
                println!(
                    "| {pool_size} | {name} | {threads} | {:.1}k | {:.0} µs | {:.0} µs |",
                    ops / 1e3,
                    p50.as_secs_f64() * 1e6,
                    p99.as_secs_f64() * 1e6
                );
            }
        }
    }
}

/// Durable mode on disk against `WAIT`, on nodes that keep append-only files.
fn on_disk() {
    let topology = Topology::builder()
        .appendonly(true)
        .start()
        .expect("topology");
    let version = topology.server_version();
    if !version.at_least(7, 2) {
        println!("{version} has no WAITAOF: give REDIS_BIN_DIR a Redis 7.2+ or Valkey");
        return;
    }
    let pool = |durability: Durability| {
        topology
            .pool_builder()
            .max_size(8)
            .durability(durability)
            .build()
            .expect("pool")
    };
    let wait = Durability::all_replicas();
    let nodes = topology.data_addrs();
    durable(
        &[
            ("durable (`WAIT`)", pool(wait), Some((&nodes, "everysec"))),
            (
                "on disk, `appendfsync everysec`",
                pool(wait.on_disk()),
                Some((&nodes, "everysec")),
            ),
            (
                "on disk, `appendfsync always`",
                pool(wait.on_disk()),
                Some((&nodes, "always")),
            ),
        ],
        Duration::from_secs(5),
    );
}

/// A durable mode: its name, its pool, and the `appendfsync` its nodes get first.
type Mode<'a> = (&'a str, SentinelPool, Option<(&'a Vec<NodeAddr>, &'a str)>);

/// Each mode, one after the other, each cell for `duration`.
fn durable(modes: &[Mode], duration: Duration) {
    println!("| request | mode | threads | ops/s | p50 | p99 |");
    println!("| --- | --- | --- | --- | --- | --- |");
    let pipeline = Arc::new(support::bench::pipeline());
    for (mode, pool, fsync) in modes {
        if let Some((nodes, fsync)) = fsync {
            for node in nodes.iter() {
                let mut conn = redis::Client::open(format!("redis://{node}"))
                    .and_then(|c| c.get_connection())
                    .expect("node");
                redis::cmd("CONFIG")
                    .arg("SET")
                    .arg("appendfsync")
                    .arg(fsync)
                    .query::<()>(&mut conn)
                    .expect("CONFIG SET appendfsync");
            }
        }
        let set: Op = {
            let pool = pool.clone();
            Arc::new(move || {
                use r2d2_redis_sentinel::redis::Commands;
                let _: () = pool.get().expect("checkout").set("k", 1).expect("SET");
            })
        };
        let pipe: Op = {
            let (pool, pipeline) = (pool.clone(), Arc::clone(&pipeline));
            Arc::new(move || {
                pipeline
                    .query::<()>(&mut *pool.get().expect("checkout"))
                    .expect("pipeline");
            })
        };
        for (request, op, threads) in [
            ("checkout + `SET`", &set, 1),
            ("checkout + `SET`", &set, 8),
            ("pipeline of 1,000 `SET`s", &pipe, 1),
        ] {
            measure(op, threads, Duration::from_millis(200));
            let (ops, p50, p99) = measure(op, threads, duration);
            println!(
                "| {request} | {mode} | {threads} | {:.2}k | {:.0} µs | {:.0} µs |",
                ops / 1e3,
                p50.as_secs_f64() * 1e6,
                p99.as_secs_f64() * 1e6
            );
        }
    }
}

/// Runs `op` on `threads` threads for `duration`; returns ops/s and the p50 and p99 latency.
fn measure(op: &Op, threads: usize, duration: Duration) -> (f64, Duration, Duration) {
    let barrier = Arc::new(Barrier::new(threads));
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let (op, barrier) = (Arc::clone(op), Arc::clone(&barrier));
            thread::spawn(move || {
                let mut latencies = Vec::with_capacity(1 << 16);
                barrier.wait();
                let end = Instant::now() + duration;
                while Instant::now() < end {
                    let start = Instant::now();
                    op();
                    latencies.push(start.elapsed());
                }
                latencies
            })
        })
        .collect();
    let mut all: Vec<Duration> = handles
        .into_iter()
        .flat_map(|h| h.join().expect("bench thread"))
        .collect();
    all.sort();
    let at = |q: f64| all[((all.len() as f64 * q).ceil() as usize).clamp(1, all.len()) - 1];
    (all.len() as f64 / duration.as_secs_f64(), at(0.5), at(0.99))
}
