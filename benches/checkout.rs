//! Checkout + one `SET` + return, steady state, against a real local topology: this crate's
//! pool (the default adaptive validation, and `PING`+`ROLE` at every checkout) side by side with a plain
//! `r2d2::Pool<redis::Client>` pointed straight at the master (r2d2's `PING` on checkout, and
//! none) and redis-rs's `r2d2::Pool<LockedSentinelClient>`, at 1 to 16 threads, on pools of 8
//! and 16 connections; and oversubscribed, 64 threads on a pool of 16.
//!
//! `cargo bench --bench checkout` (`cargo bench --bench checkout -- 64-threads` for the
//! oversubscribed group alone); results in BENCHMARKS.md.

// criterion_group! generates an undocumented `pub fn`.
#![allow(missing_docs)]

use std::time::Duration;

use criterion::{
    BenchmarkGroup, BenchmarkId, Criterion, Throughput, criterion_group, criterion_main,
    measurement::WallTime,
};

use r2d2_redis_sentinel::testkit::Topology;
use support::bench::{POOL_SIZES, THREADS, contenders, run};

fn checkout(c: &mut Criterion) {
    let topology = Topology::start().expect("topology");
    for pool_size in POOL_SIZES {
        let contenders = contenders(&topology, pool_size);
        let mut group = group(c, format!("checkout+set/pool-{pool_size}"));
        for threads in THREADS {
            for (name, op) in &contenders {
                group.bench_function(BenchmarkId::new(*name, threads), |b| {
                    b.iter_custom(|iters| run(op, threads, iters))
                });
            }
        }
        group.finish();
    }
    // Four threads per connection: most checkouts wait for one to come back.
    let contenders = contenders(&topology, OVERSUBSCRIBED.1);
    let mut group = group(c, "checkout+set/64-threads-on-16".to_owned());
    for (name, op) in &contenders {
        group.bench_function(*name, |b| {
            b.iter_custom(|iters| run(op, OVERSUBSCRIBED.0, iters))
        });
    }
    group.finish();
}

/// A group of operations per second, measured the same way in every group.
fn group(c: &mut Criterion, name: String) -> BenchmarkGroup<'_, WallTime> {
    let mut group = c.benchmark_group(name);
    group.throughput(Throughput::Elements(1));
    group.measurement_time(Duration::from_secs(3));
    group.warm_up_time(Duration::from_secs(1));
    group.sample_size(20);
    group
}

/// Threads, and the pool size they share, for the oversubscribed group.
const OVERSUBSCRIBED: (usize, u32) = (64, 16);

criterion_group!(benches, checkout);
criterion_main!(benches);
