//! What the benches share. Each bench uses a part of it.

use std::{
    sync::{Arc, Barrier},
    thread,
    time::{Duration, Instant},
};

use r2d2_redis_sentinel::{
    Validation,
    redis::{
        self, ConnectionAddr, ConnectionLike,
        sentinel::{LockedSentinelClient, SentinelClientBuilder, SentinelServerType},
    },
    testkit::Topology,
};

/// redis-rs's own Sentinel-aware r2d2 manager, for the topology's master: the contender this
/// crate is measured against.
pub fn locked_sentinel_client(topology: &Topology) -> LockedSentinelClient {
    let sentinels = topology
        .sentinel_addrs()
        .into_iter()
        .map(|a| ConnectionAddr::Tcp(a.host, a.port));
    let client =
        SentinelClientBuilder::new(sentinels, topology.service(), SentinelServerType::Master)
            .and_then(|b| b.build())
            .expect("sentinel client");
    LockedSentinelClient::new(client)
}

pub const POOL_SIZES: [u32; 2] = [8, 16];
pub const THREADS: [usize; 5] = [1, 2, 4, 8, 16];

/// Something that checks out a connection and runs one `SET` on it.
pub type Op = Arc<dyn Fn() + Send + Sync>;

/// One `SET` on `conn`: the request of every checkout case.
pub fn set_on<C: ConnectionLike>(conn: &mut C) {
    redis::cmd("SET")
        .arg("bench")
        .arg("v")
        .query::<()>(conn)
        .expect("SET");
}

/// Runs `iters` operations split across `threads` threads; returns the wall time.
pub fn run(op: &Op, threads: usize, iters: u64) -> Duration {
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

/// The keys of the wrapper's pipeline and `MGET`.
pub const KEYS: usize = 1_000;

/// A pipeline of [`KEYS`] `SET`s.
pub fn pipeline() -> redis::Pipeline {
    let mut pipe = redis::pipe();
    for i in 0..KEYS {
        pipe.set(format!("wrapper:{i}"), i).ignore();
    }
    pipe
}

/// A `MGET` of the pipeline's [`KEYS`] keys.
pub fn mget() -> redis::Cmd {
    let mut cmd = redis::cmd("MGET");
    for i in 0..KEYS {
        cmd.arg(format!("wrapper:{i}"));
    }
    cmd
}

/// The connections a rebuild opens.
pub const REBUILD: u32 = 32;

/// Invalidates `pool` (what a failover does) and checks out [`REBUILD`] connections of the new
/// generation, `iters` times; returns the time spent.
pub fn rebuild_after_invalidate(pool: &r2d2_redis_sentinel::SentinelPool, iters: u64) -> Duration {
    let mut total = Duration::ZERO;
    for _ in 0..iters {
        let start = Instant::now();
        let generation = pool.invalidate();
        let held: Vec<_> = (0..REBUILD)
            .map(|_| pool.get().expect("checkout"))
            .collect();
        total += start.elapsed();
        assert!(held.iter().all(|c| c.generation() == generation));
    }
    total
}

/// Builds `iters` pools of [`REBUILD`] connections with managers from `manager`; returns the
/// time spent in `build`, which returns once they all exist.
pub fn time_builds<M: r2d2::ManageConnection>(iters: u64, manager: impl Fn() -> M) -> Duration {
    let mut total = Duration::ZERO;
    for _ in 0..iters {
        let manager = manager();
        let start = Instant::now();
        let pool = r2d2::Pool::builder()
            .max_size(REBUILD)
            .min_idle(Some(REBUILD))
            .build(manager)
            .expect("pool");
        total += start.elapsed();
        assert_eq!(pool.state().idle_connections, REBUILD);
    }
    total
}

pub fn contenders(topology: &Topology, pool_size: u32) -> Vec<(&'static str, Op)> {
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
            .build(locked_sentinel_client(topology))
            .expect("pool");
        Arc::new(move || set_on(&mut *pool.get().expect("checkout"))) as Op
    };
    vec![
        ("sentinel-pool/default", ours(Validation::default())),
        ("sentinel-pool/ping-role", ours(Validation::PingRole)),
        ("plain-r2d2/ping", plain(true)),
        ("plain-r2d2/none", plain(false)),
        ("locked-sentinel-client/ping", locked),
    ]
}

/// A pool of `max_size` on `topology`, in durable mode (every write confirmed by all
/// connected replicas) or not: the two contenders of the durable cases.
pub fn pool_durable_or_not(
    topology: &Topology,
    max_size: u32,
    durable: bool,
) -> r2d2_redis_sentinel::SentinelPool {
    let builder = topology.pool_builder().max_size(max_size);
    if durable {
        builder.durability(r2d2_redis_sentinel::Durability::all_replicas())
    } else {
        builder
    }
    .build()
    .expect("pool")
}
