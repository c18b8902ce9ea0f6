//! The standalone mode: `SentinelPool::standalone` over one real server (the master of a kit
//! topology, whose sentinels the pool never asks), with the same connection type and
//! `with_retry` as over Sentinel; its db, its password, and a replica refused at build.

use r2d2_redis_sentinel::{
    Error, SentinelPool,
    redis::{self, Commands, ConnectionLike, RedisResult},
    testkit::Topology,
};
use support::{direct, init_logging};

/// Application code, the same for every topology.
fn count_visit(conn: &mut impl ConnectionLike) -> RedisResult<u64> {
    redis::cmd("INCR").arg("visits").query(conn)
}

#[test]
fn one_server_behind_the_same_pool_and_the_same_code() {
    init_logging();
    let topology = Topology::builder()
        .replicas(1)
        .sentinels(1)
        .start()
        .unwrap();
    let master = topology.master().unwrap();

    let pool = SentinelPool::standalone(&format!("redis://{master}/2"))
        .max_size(2)
        .build()
        .unwrap();
    let first: u64 = pool.with_retry(count_visit).unwrap();
    let second: u64 = pool.with_retry(count_visit).unwrap();
    assert_eq!((first, second), (1, 2));
    let mut conn = pool.get().unwrap();
    assert_eq!(conn.addr(), &master);
    let () = conn.set("where", "db 2").unwrap();
    drop(conn);
    // The path's db is the one written to.
    let mut db2 = direct(&master);
    let () = redis::cmd("SELECT").arg(2).query(&mut db2).unwrap();
    let held: Option<String> = db2.get("where").unwrap();
    assert_eq!(held.as_deref(), Some("db 2"));
    let in_db0: Option<String> = direct(&master).get("where").unwrap();
    assert_eq!(in_db0, None);

    // A replica is refused at build: a write to it would fail.
    let replica = topology
        .data_addrs()
        .into_iter()
        .find(|a| *a != master)
        .unwrap();
    match SentinelPool::standalone(&replica.to_string()).build() {
        Err(Error::WrongRole { address, .. }) => assert_eq!(address, replica.to_string()),
        other => panic!("{other:?}"),
    }
    // Nor is a path that is not a db.
    assert!(matches!(
        SentinelPool::standalone(&format!("redis://{master}/x")).build(),
        Err(Error::InvalidConfig { .. })
    ));
}

#[test]
fn a_password_in_the_address_is_the_servers() {
    init_logging();
    let topology = Topology::builder()
        .replicas(0)
        .sentinels(1)
        .password("s3cret")
        .start()
        .unwrap();
    let master = topology.master().unwrap();
    let pool = SentinelPool::standalone(&format!("redis://:s3cret@{master}"))
        .build()
        .unwrap();
    let () = pool.with_retry(|c| c.set("k", 1)).unwrap();
    assert!(matches!(
        SentinelPool::standalone(&format!("redis://:wrong@{master}")).build(),
        Err(Error::Auth { .. })
    ));
}
