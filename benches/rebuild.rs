//! Connect storm: how long until a pool of 32 holds 32 fresh connections to the master.
//!
//! - `sentinel-pool/after-invalidate`: this crate's pool, full with 32 connections, is
//!   invalidated (what a failover does); timed until 32 connections of the new generation are
//!   checked out. The master is looked up once per generation, not once per connection.
//! - `plain-r2d2/build`: building an `r2d2::Pool<redis::Client>` pointed straight at the master
//!   (`min_idle` 32: `build` returns once 32 connections exist).
//! - `locked-sentinel-client/build`: the same with redis-rs's `LockedSentinelClient`, which asks a
//!   sentinel and checks `ROLE` for every connection, behind one mutex.
//!
//! All three open connections on r2d2's three worker threads. `cargo bench --bench rebuild`;
//! results in BENCHMARKS.md.

// criterion_group! generates an undocumented `pub fn`.
#![allow(missing_docs)]

use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};

use r2d2_redis_sentinel::{redis, testkit::Topology};
use support::bench::{REBUILD, rebuild_after_invalidate, time_builds};

fn rebuild(c: &mut Criterion) {
    let topology = Topology::start().expect("topology");
    let master = topology.master().expect("master");
    let mut group = c.benchmark_group("rebuild-32");
    group.sample_size(20);
    group.measurement_time(Duration::from_secs(10));

    let pool = topology
        .pool_builder()
        .max_size(REBUILD)
        .min_idle(Some(REBUILD))
        .build()
        .expect("pool");
    group.bench_function("sentinel-pool/after-invalidate", |b| {
        b.iter_custom(|iters| rebuild_after_invalidate(&pool, iters))
    });

    group.bench_function("plain-r2d2/build", |b| {
        b.iter_custom(|iters| {
            time_builds(iters, || {
                redis::Client::open(format!("redis://{master}")).expect("client")
            })
        })
    });
    group.bench_function("locked-sentinel-client/build", |b| {
        b.iter_custom(|iters| {
            time_builds(iters, || support::bench::locked_sentinel_client(&topology))
        })
    });
    group.finish();
}

criterion_group!(benches, rebuild);
criterion_main!(benches);
