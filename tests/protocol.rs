//! RESP3 to the data nodes, and a non-zero db, through a failover: checkout validation, the
//! fence's probe and replica reads parse RESP3 replies as they do RESP2 ones.

use std::time::Duration;

use r2d2_redis_sentinel::{
    ReplicaOptions, RetryPolicy,
    redis::{self, Commands, ConnectionLike, ProtocolVersion},
    testkit::Topology,
};
use support::{direct, init_logging};

#[test]
fn resp3_and_a_db_index_work_through_a_failover() {
    init_logging();
    let topology = Topology::start().unwrap();
    let pool = topology
        .pool_builder()
        .protocol(ProtocolVersion::RESP3)
        .db(5)
        .max_size(4)
        .retry_policy(RetryPolicy::default().deadline(Duration::from_secs(30)))
        .build()
        .unwrap();
    {
        let mut conn = pool.get().unwrap();
        assert_eq!(conn.get_db(), 5);
        // HELLO with no argument reports the connection's protocol.
        let hello: std::collections::HashMap<String, redis::Value> =
            redis::cmd("HELLO").query(&mut *conn).unwrap();
        assert_eq!(hello.get("proto"), Some(&redis::Value::Int(3)));
    }
    let _: () = pool.with_retry(|c| c.set("k", "in db 5")).unwrap();
    let new = topology.failover().unwrap();
    let reached = pool
        .with_retry(|c| {
            let _: () = c.set("k2", "after")?;
            Ok(c.addr().clone())
        })
        .unwrap();
    assert_eq!(reached, new);
    let mut on_new = direct(&new);
    let _: () = redis::cmd("SELECT").arg(5).query(&mut on_new).unwrap();
    let value: String = on_new.get("k").unwrap();
    assert_eq!(value, "in db 5");
    let reads = pool.replica_pool(ReplicaOptions::default()).unwrap();
    let conn = reads.get().unwrap();
    assert_ne!(*conn.addr(), new);
    assert_eq!(conn.get_db(), 5);
}
