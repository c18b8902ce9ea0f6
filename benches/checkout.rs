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

use r2d2_redis_sentinel::{
    Validation,
    redis::{self, ConnectionLike},
    testkit::Topology,
};

const POOL_SIZES: [u32; 2] = [8, 16];
const THREADS: [usize; 5] = [1, 2, 4, 8, 16];

/// Something that checks out a connection and runs one `SET` on it.
type Op = Arc<dyn Fn() + Send + Sync>;

fn set_on<C: ConnectionLike>(conn: &mut C) {
    redis::cmd("SET")
        .arg("bench")
        .arg("v")
        .query::<()>(conn)
        .expect("SET");
}

fn contenders(topology: &Topology, pool_size: u32) -> Vec<(&'static str, Op)> {
    let master = topology.master().expect("master");
    let ours = |validation| {
        let pool = topology
            .pool_builder()
            .max_size(pool_size)
            .validation(validation)
            .build()
            .expect("pool");
        Arc::new(move || set_on(&mut *pool.get().expect("checkout"))) as Op
    };
    let plain = |test_on_check_out| {
        let client = redis::Client::open(format!("redis://{master}")).expect("client");
        let pool = r2d2::Pool::builder()
            .max_size(pool_size)
            .test_on_check_out(test_on_check_out)
            .build(client)
            .expect("pool");
        Arc::new(move || set_on(&mut *pool.get().expect("checkout"))) as Op
    };
    let locked = {
        let pool = r2d2::Pool::builder()
            .max_size(pool_size)
            .build(support::locked_sentinel_client(topology))
            .expect("pool");
        Arc::new(move || set_on(&mut *pool.get().expect("checkout"))) as Op
    };
    vec![
        ("sentinel-pool/ping-role", ours(Validation::PingRole)),
        (
            "sentinel-pool/fast",
            ours(Validation::Fast {
                window: Duration::from_secs(1),
            }),
        ),
        ("plain-r2d2/ping", plain(true)),
        ("plain-r2d2/none", plain(false)),
        ("locked-sentinel-client/ping", locked),
    ]
}

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
