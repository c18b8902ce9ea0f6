//! Sentinels that announce hostnames (`resolve-hostnames yes`, `announce-hostnames yes`, and
//! replicas announcing `localhost`): the pool resolves them, through a failover and for
//! replica reads.

use r2d2_redis_sentinel::{
    ReplicaOptions,
    redis::{self, Commands},
    testkit::Topology,
};
use support::{direct, init_logging};

#[test]
fn announced_hostnames_are_resolved_through_a_failover() {
    init_logging();
    let topology = Topology::builder().hostnames(true).start().unwrap();
    let (host, _): (String, u16) = redis::cmd("SENTINEL")
        .arg(&["GET-MASTER-ADDR-BY-NAME", topology.service()])
        .query(&mut direct(&topology.sentinel_addrs()[0]))
        .unwrap();
    assert_eq!(host, "localhost", "the sentinels announce hostnames");
    let pool = topology.pool_builder().build().unwrap();
    assert_eq!(pool.master().unwrap().host, "localhost");
    let _: () = pool.with_retry(|c| c.set("k", "v")).unwrap();
    let new = topology.failover().unwrap();
    assert_eq!(new.host, "localhost");
    let reached = pool
        .with_retry(|c| {
            let _: () = c.set("k2", "v")?;
            Ok(c.addr().clone())
        })
        .unwrap();
    assert_eq!(reached, new);
    let reads = pool.replica_pool(ReplicaOptions::default()).unwrap();
    let conn = reads.get().unwrap();
    assert_eq!(conn.addr().host, "localhost");
    assert_ne!(*conn.addr(), new);
}
