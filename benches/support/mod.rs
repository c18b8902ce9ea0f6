//! What the benches share. Each bench uses a part of it.

#![allow(dead_code)]

use std::{sync::Arc, time::Duration};

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
pub(crate) fn locked_sentinel_client(topology: &Topology) -> LockedSentinelClient {
    let sentinels = topology
        .sentinel_addrs()
        .into_iter()
        .map(|a| ConnectionAddr::Tcp(a.host, a.port));
    let client = SentinelClientBuilder::new(
        sentinels,
        topology.service_name(),
        SentinelServerType::Master,
    )
    .and_then(|b| b.build())
    .expect("sentinel client");
    LockedSentinelClient::new(client)
}

pub(crate) const POOL_SIZES: [u32; 2] = [8, 16];
pub(crate) const THREADS: [usize; 5] = [1, 2, 4, 8, 16];

/// Something that checks out a connection and runs one `SET` on it.
pub(crate) type Op = Arc<dyn Fn() + Send + Sync>;

fn set_on<C: ConnectionLike>(conn: &mut C) {
    redis::cmd("SET")
        .arg("bench")
        .arg("v")
        .query::<()>(conn)
        .expect("SET");
}

pub(crate) fn contenders(topology: &Topology, pool_size: u32) -> Vec<(&'static str, Op)> {
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
