//! Every ratio the README and BENCHMARKS.md state, measured interleaved: the contenders take
//! turns in slices of a fifth of a second, in a shuffled order each round, on one topology, and
//! each ratio is taken between slices of the same round (`support/src/interleave.rs` says why).
//! Each row gives the contender's median rate and its median ratio to the case's baseline, with
//! the middle half of the per-round ratios.
//!
//! - checkout + one `SET` + return: this crate's pool (the default adaptive validation, and
//!   `PING`+`ROLE` at every checkout), a plain `r2d2::Pool<redis::Client>` at the master (r2d2's `PING`, none),
//!   against redis-rs's `r2d2::Pool<LockedSentinelClient>`; pool of 8 at 1 and 8 threads, pool
//!   of 16 at 16 threads, 64 threads on a pool of 16;
//! - the pooled connection against a raw `redis::Connection`: a pipeline of 1,000 `SET`s, an
//!   `MGET` of 1,000 keys;
//! - rebuilding 32 connections after a failover (an invalidation) against building a plain pool
//!   at the master, and `LockedSentinelClient`'s build;
//! - `GET` through a replica pool (two replicas) against the master pool, at 2, 8, 16 threads;
//! - `TCP_NODELAY` on (the default) against off: one `SET`, and a pipeline of 100 `SET`s of
//!   1 KiB (larger than loopback's 64 KiB segment, so that its tail is a short segment);
//! - durable mode (`WAIT` for both replicas in the write's round trip) against the default:
//!   one `SET`, a pipeline of 1,000 `SET`s; and a bare `WAIT 2` after a `SET`, the physical
//!   limit (one replication round trip).
//!
//! - with the `metrics` feature: checkout + one `SET` + return on a pool whose series go to a
//!   Prometheus recorder (with its upkeep every second, as the exporter schedules it) against
//!   the same pool built before any recorder was installed (the series are no-ops), beside
//!   `LockedSentinelClient`; the case runs alone, as `CASES=metrics cargo bench --bench ratios
//!   --features metrics`.
//!
//! `cargo bench --bench ratios` (about 3 minutes); `CASES=checkout,wrapper,rebuild,reads,nodelay,durable` runs
//! some of them. Results in BENCHMARKS.md. Criterion's benches (`checkout`, `wrapper`,
//! `rebuild`) keep the absolute figures, statistics and plots.

use std::{env, sync::Arc, time::Duration};

use r2d2_redis_sentinel::{
    ReplicaOptions,
    redis::{self, Commands},
    testkit::Topology,
};

use support::{
    bench::{Op, contenders, mget, pipeline, rebuild_after_invalidate, run, time_builds},
    interleave::{Contender, interleave, print},
};

/// One slice per contender and round.
const SLICE: Duration = Duration::from_millis(200);
const ROUNDS: usize = 15;

/// One request of the wrapper's cases, on any connection.
type Request<'a> = Box<dyn Fn(&mut dyn redis::ConnectionLike) + 'a>;

fn main() {
    let cases: Option<Vec<String>> = env::var("CASES")
        .ok()
        .map(|c| c.split(',').map(str::to_owned).collect());
    let wanted = |case: &str| cases.as_ref().is_none_or(|c| c.iter().any(|w| w == case));
    let topology = Topology::start().expect("topology");
    println!("| case | contender | median rate | ratio to the baseline: median (middle half) |");
    println!("| --- | --- | --- | --- |");
    if wanted("checkout") {
        checkout(&topology);
    }
    if wanted("wrapper") {
        wrapper(&topology);
    }
    if wanted("rebuild") {
        rebuild(&topology);
    }
    if wanted("reads") {
        reads(&topology);
    }
    if wanted("nodelay") {
        nodelay(&topology);
    }
    if wanted("durable") {
        durable(&topology);
    }
    #[cfg(feature = "metrics")]
    if cases
        .as_ref()
        .is_some_and(|c| c.iter().any(|w| w == "metrics"))
    {
        recorded(&topology);
    }
}

/// The cost of the `metrics` feature: the same checkout + `SET`, with and without a recorder.
#[cfg(feature = "metrics")]
fn recorded(topology: &Topology) {
    let sizes = [(8, 1), (8, 8), (16, 16), (16, 64)];
    let pool = |size| {
        let pool = topology
            .pool_builder()
            .max_size(size)
            .build()
            .expect("pool");
        Arc::new(move || support::bench::set_on(&mut *pool.get().expect("checkout")))
            as support::bench::Op
    };
    // Pools built before the recorder register no-op series.
    let quiet: Vec<_> = sizes.iter().map(|(size, _)| pool(*size)).collect();
    let prometheus = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
    let handle = prometheus.handle();
    metrics::set_global_recorder(prometheus).expect("the only recorder");
    let upkeep = std::thread::spawn(move || {
        loop {
            std::thread::sleep(Duration::from_secs(1));
            handle.run_upkeep();
        }
    });
    for ((size, threads), quiet) in sizes.into_iter().zip(quiet) {
        let recorded = pool(size);
        // Built as `contenders` builds it, without the other contenders' pools.
        let locked_pool = r2d2_redis_sentinel::r2d2::Pool::builder()
            .max_size(size)
            .build(support::bench::locked_sentinel_client(topology))
            .expect("pool");
        let locked: support::bench::Op =
            Arc::new(move || support::bench::set_on(&mut *locked_pool.get().expect("checkout")));
        let mut sides = vec![
            Contender::new("sentinel-pool/no recorder", |iters| {
                run(&quiet, threads, iters)
            }),
            Contender::new("sentinel-pool/prometheus", |iters| {
                run(&recorded, threads, iters)
            }),
            Contender::new("locked-sentinel-client/ping", |iters| {
                run(&locked, threads, iters)
            }),
        ];
        let rates = interleave(&mut sides, SLICE, ROUNDS);
        print(
            &format!("metrics: checkout + `SET`, {threads} threads, pool of {size}"),
            "ops",
            &rates,
            0,
        );
    }
    drop(upkeep);
}

fn checkout(topology: &Topology) {
    for (pool_size, threads) in [(8, 1), (8, 8), (16, 16), (16, 64)] {
        let ops = contenders(topology, pool_size);
        let baseline = ops
            .iter()
            .position(|(name, _)| name.starts_with("locked-sentinel-client"))
            .expect("the baseline");
        let mut sides: Vec<Contender<'_>> = ops
            .iter()
            .map(|(name, op)| Contender::new(*name, move |iters| run(op, threads, iters)))
            .collect();
        let rates = interleave(&mut sides, SLICE, ROUNDS);
        print(
            &format!("checkout + `SET`, {threads} threads, pool of {pool_size}"),
            "ops",
            &rates,
            baseline,
        );
    }
}

fn wrapper(topology: &Topology) {
    let master = topology.master().expect("master");
    let pool = topology.pool_builder().max_size(1).build().expect("pool");
    let client = redis::Client::open(format!("redis://{master}")).expect("client");
    let (pipe, mget) = (pipeline(), mget());
    let times = |iters: u64,
                 conn: &mut dyn redis::ConnectionLike,
                 what: &dyn Fn(&mut dyn redis::ConnectionLike)| {
        let start = std::time::Instant::now();
        for _ in 0..iters {
            what(conn);
        }
        start.elapsed()
    };
    let cases: [(&str, Request<'_>); 2] = [
        (
            "pipeline of 1,000 `SET`s",
            Box::new(|c| pipe.query::<()>(c).expect("pipeline")),
        ),
        (
            "`MGET` of 1,000 keys",
            Box::new(|c| {
                mget.query::<Vec<Option<u64>>>(c).expect("MGET");
            }),
        ),
    ];
    for (case, what) in &cases {
        let mut pooled = pool.get().expect("checkout");
        let mut raw = client
            .get_connection_with_timeout(Duration::from_secs(1))
            .expect("raw connection");
        let mut sides = vec![
            Contender::new("pooled", |iters| times(iters, &mut *pooled, what.as_ref())),
            Contender::new("raw `redis::Connection`", |iters| {
                times(iters, &mut raw, what.as_ref())
            }),
        ];
        let rates = interleave(&mut sides, SLICE, ROUNDS);
        print(case, "requests", &rates, 1);
    }
}

fn rebuild(topology: &Topology) {
    let master = topology.master().expect("master");
    let pool = topology
        .pool_builder()
        .max_size(support::bench::REBUILD)
        .min_idle(Some(support::bench::REBUILD))
        .build()
        .expect("pool");
    let mut sides = vec![
        Contender::new("sentinel-pool, after an invalidation", |iters| {
            rebuild_after_invalidate(&pool, iters)
        }),
        Contender::new("plain r2d2, build at the master", |iters| {
            time_builds(iters, || {
                redis::Client::open(format!("redis://{master}")).expect("client")
            })
        }),
        Contender::new("`LockedSentinelClient`, build", |iters| {
            time_builds(iters, || support::bench::locked_sentinel_client(topology))
        }),
    ];
    let rates = interleave(&mut sides, SLICE, ROUNDS);
    print("rebuild 32 connections", "rebuilds", &rates, 1);
}

fn reads(topology: &Topology) {
    let master = topology
        .pool_builder()
        .max_size(16)
        .build()
        .expect("master pool");
    let replicas = master
        .replica_pool(ReplicaOptions::default())
        .expect("replica pool");
    let _: () = master.with_retry(|c| c.set("key", "value")).expect("SET");
    let get = |pool: &r2d2_redis_sentinel::SentinelPool| -> Op {
        let pool = pool.clone();
        Arc::new(move || {
            let _: Option<String> = pool.get().expect("checkout").get("key").expect("GET");
        })
    };
    let (on_master, on_replicas) = (get(&master), get(&replicas));
    for threads in [2, 8, 16] {
        let mut sides = vec![
            Contender::new("master pool", |iters| run(&on_master, threads, iters)),
            Contender::new("replica pool (2 replicas)", |iters| {
                run(&on_replicas, threads, iters)
            }),
        ];
        let rates = interleave(&mut sides, SLICE, ROUNDS);
        print(&format!("`GET`, {threads} threads"), "requests", &rates, 0);
    }
}

/// The time `request` takes `iters` times in a row on `conn`.
fn repeat(conn: &mut dyn redis::ConnectionLike, request: &redis::Pipeline, iters: u64) -> Duration {
    let start = std::time::Instant::now();
    for _ in 0..iters {
        request.query::<()>(conn).expect("request");
    }
    start.elapsed()
}

fn nodelay(topology: &Topology) {
    let pool = |nodelay: bool| {
        topology
            .pool_builder()
            .max_size(1)
            .tcp_nodelay(nodelay)
            .build()
            .expect("pool")
    };
    let (on, off) = (pool(true), pool(false));
    let value = vec![b'x'; 1024];
    let mut large = redis::pipe();
    for i in 0..100 {
        large.set(format!("nodelay:{i}"), &value).ignore();
    }
    let mut single = redis::pipe();
    single.set("nodelay:one", 1).ignore();
    for (case, request) in [
        ("one `SET`", &single),
        ("pipeline of 100 1 KiB `SET`s", &large),
    ] {
        let times = |pool: &r2d2_redis_sentinel::SentinelPool, iters: u64| {
            repeat(&mut *pool.get().expect("checkout"), request, iters)
        };
        let mut sides = vec![
            Contender::new("`TCP_NODELAY` off", |iters| times(&off, iters)),
            Contender::new("`TCP_NODELAY` on (default)", |iters| times(&on, iters)),
        ];
        let rates = interleave(&mut sides, SLICE, ROUNDS);
        print(case, "requests", &rates, 0);
    }
}

fn durable(topology: &Topology) {
    let pool = |durable: bool| support::bench::pool_durable_or_not(topology, 1, durable);
    let (default, durable) = (pool(false), pool(true));
    let master = topology.master().expect("master");
    let client = redis::Client::open(format!("redis://{master}")).expect("client");
    let mut single = redis::pipe();
    single.set("durable:one", 1).ignore();
    let mut bare = redis::pipe();
    bare.set("durable:one", 1)
        .ignore()
        .cmd("WAIT")
        .arg(2)
        .arg(1000)
        .ignore();
    let large = pipeline();
    for (case, request, physical) in [
        ("one `SET`", &single, Some(&bare)),
        ("pipeline of 1,000 `SET`s", &large, None),
    ] {
        let times = |pool: &r2d2_redis_sentinel::SentinelPool, iters: u64| {
            repeat(&mut *pool.get().expect("checkout"), request, iters)
        };
        let mut raw = client
            .get_connection_with_timeout(Duration::from_secs(1))
            .expect("raw connection");
        let mut sides = vec![
            Contender::new("default", |iters| times(&default, iters)),
            Contender::new("durable (`WAIT` 2 replicas)", |iters| {
                times(&durable, iters)
            }),
        ];
        if let Some(bare) = physical {
            sides.push(Contender::new(
                "raw `SET` + `WAIT 2` (one replication round trip)",
                move |iters| repeat(&mut raw, bare, iters),
            ));
        }
        let rates = interleave(&mut sides, SLICE, ROUNDS);
        print(case, "requests", &rates, 0);
    }
}
