//! Checkout + one `SET` + return, steady state, against a real local topology: this crate's
//! pool (default `PING`+`ROLE` validation, and fast validation) side by side with a plain
//! `r2d2::Pool<redis::Client>` pointed straight at the master (r2d2's `PING` on checkout, and
//! none) and redis-rs's `r2d2::Pool<LockedSentinelClient>`, at 1 to 16 threads, on pools of 8
//! and 16 connections.
//!
//! `cargo bench --bench checkout`; results in BENCHMARKS.md.

// criterion_group! generates an undocumented `pub fn`.
#![allow(missing_docs)]

use std::{
    sync::{Arc, Barrier},
    thread,
    time::{Duration, Instant},
};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};

mod support;

use r2d2_redis_sentinel::testkit::Topology;
use support::{Op, POOL_SIZES, THREADS, contenders};

/// Runs `iters` operations split across `threads` threads; returns the wall time.
fn run(op: &Op, threads: usize, iters: u64) -> Duration {
    let barrier = Arc::new(Barrier::new(threads + 1));
    let per_thread = iters.div_ceil(threads as u64);
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let (op, barrier) = (Arc::clone(op), Arc::clone(&barrier));
            thread::spawn(move || {
                barrier.wait();
                for _ in 0..per_thread {
                    op();
                }
            })
        })
        .collect();
    barrier.wait();
    let start = Instant::now();
    for handle in handles {
        handle.join().expect("bench thread");
    }
    start.elapsed()
}

fn checkout(c: &mut Criterion) {
    let topology = Topology::start().expect("topology");
    for pool_size in POOL_SIZES {
        let contenders = contenders(&topology, pool_size);
        let mut group = c.benchmark_group(format!("checkout+set/pool-{pool_size}"));
        group.throughput(Throughput::Elements(1));
        group.measurement_time(Duration::from_secs(3));
        group.warm_up_time(Duration::from_secs(1));
        group.sample_size(20);
        for threads in THREADS {
            for (name, op) in &contenders {
                group.bench_function(BenchmarkId::new(*name, threads), |b| {
                    b.iter_custom(|iters| run(op, threads, iters))
                });
            }
        }
        group.finish();
    }
}

criterion_group!(benches, checkout);
criterion_main!(benches);
