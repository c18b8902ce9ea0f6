//! What the pooled connection's reply inspection costs (the goal: under 5 %). The pooled
//! connection looks at every reply (each reply of a pipeline too): server errors that show a
//! failover, replies that count as applied. Same master, same run:
//!
//! - `pooled`: a connection checked out of this crate's pool, held for the whole
//!   measurement (no checkout in the loop);
//! - `raw`: a plain `redis::Connection` to the same node.
//!
//! Each runs a pipeline of 1,000 `SET`s, and a `MGET` of 1,000 keys. `cargo bench --bench
//! wrapper`; results in BENCHMARKS.md.

// criterion_group! generates an undocumented `pub fn`.
#![allow(missing_docs)]

use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use r2d2_redis_sentinel::{redis, testkit::Topology};

use support::bench::{KEYS, mget, pipeline};

fn wrapper(c: &mut Criterion) {
    let topology = Topology::start().expect("topology");
    let master = topology.master().expect("master");
    let pool = topology.pool_builder().max_size(1).build().expect("pool");
    let mut pooled = pool.get().expect("checkout");
    let mut raw = redis::Client::open(format!("redis://{master}"))
        .expect("client")
        .get_connection_with_timeout(Duration::from_secs(1))
        .expect("raw connection");
    let (pipe, mget) = (pipeline(), mget());

    let mut group = c.benchmark_group("pipeline-1000-set");
    group.throughput(Throughput::Elements(KEYS as u64));
    group.bench_function("pooled", |b| {
        b.iter(|| pipe.query::<()>(&mut *pooled).unwrap())
    });
    group.bench_function("raw", |b| b.iter(|| pipe.query::<()>(&mut raw).unwrap()));
    group.finish();

    let mut group = c.benchmark_group("mget-1000");
    group.throughput(Throughput::Elements(KEYS as u64));
    group.bench_function("pooled", |b| {
        b.iter(|| mget.query::<Vec<Option<u64>>>(&mut *pooled).unwrap())
    });
    group.bench_function("raw", |b| {
        b.iter(|| mget.query::<Vec<Option<u64>>>(&mut raw).unwrap())
    });
    group.finish();
}

criterion_group!(benches, wrapper);
criterion_main!(benches);
