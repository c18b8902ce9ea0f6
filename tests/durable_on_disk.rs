//! Durable mode on disk (`WAITAOF`): a write is done once it is in the append-only files of
//! the master and of the replicas. A master that cannot confirm so (a server before 7.2, no
//! append-only file) is refused before any write reaches it; fewer confirmations than asked
//! are a typed error, never `Ok`. CI runs this file on every server of its matrix.

use std::time::Duration;

use r2d2_redis_sentinel::{
    Durability, Error, RetryPolicy, SentinelPool,
    redis::{self, Commands},
    testkit::Topology,
};
use support::{direct, init_logging};

fn on_disk(topology: &Topology) -> Result<SentinelPool, Error> {
    topology
        .pool_builder()
        .max_size(2)
        .checkout_timeout(Duration::from_secs(5))
        // The default timeout on disk, 2.5 s.
        .durability(Durability::all_replicas().on_disk())
        .retry_policy(RetryPolicy::default().deadline(Duration::from_secs(1)))
        .build()
}

#[test]
fn a_master_that_cannot_confirm_on_disk_is_refused_before_any_write() {
    init_logging();
    // No append-only files: WAITAOF cannot confirm (and before Redis 7.2 it does not exist).
    let topology = Topology::start().unwrap();
    let master = topology.master().unwrap();
    // The pool opens its first connection when it is built: refused there.
    match on_disk(&topology) {
        Err(Error::InvalidConfig { option, reason }) => {
            assert_eq!(option, "durability");
            assert!(reason.contains("WAITAOF"), "{reason}");
            assert!(reason.contains("appendonly"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    // The per-call form on a pool without it: checked before the write, which is not sent.
    let plain = topology.pool_builder().max_size(1).build().unwrap();
    let err = plain
        .get()
        .unwrap()
        .with_durability(Some(Durability::all_replicas().on_disk()), |c| {
            c.set::<_, _, ()>("disk:per-call", 1)
        })
        .unwrap_err();
    assert_eq!(err.code(), Some("DURABLE"), "{err}");
    let mut conn = direct(&master);
    assert!(!conn.exists::<_, bool>("disk:per-call").unwrap(), "sent");
    // The connection refused is not reused: the next checkout works without durability.
    let _: () = plain.with_retry(|c| c.set("disk:plain", 1)).unwrap();
}

#[test]
fn on_disk_writes_are_in_every_append_only_file_or_an_error() {
    init_logging();
    let mut topology = Topology::builder().appendonly(true).start().unwrap();
    let version = topology.server_version();
    if !version.at_least(7, 2) {
        eprintln!("{version} has no WAITAOF: the refusal is what the other test checks");
        return;
    }
    let master = topology.master().unwrap();
    let replicas = support::replicas(&topology, &master);
    let pool = on_disk(&topology).unwrap();

    // Confirmed on every node's disk before `Ok`: each has it the moment the call returns.
    let _: () = pool.with_retry(|c| c.set("disk:k", 1)).unwrap();
    for node in replicas.iter().chain([&master]) {
        let value: Option<u32> = direct(node).get("disk:k").unwrap();
        assert_eq!(value, Some(1), "on {node}");
    }
    // A pipeline's single WAITAOF follows its last command.
    let _: () = pool
        .with_retry(|c| redis::pipe().set("disk:p1", 1).set("disk:p2", 2).query(c))
        .unwrap();

    // A replica frozen: the master and the other replica confirm, not enough.
    topology.pause(&replicas[0]).unwrap();
    let result = pool.with_retry(|c| c.set::<_, _, ()>("disk:frozen", 1));
    topology.resume(&replicas[0]).unwrap();
    match result {
        Err(Error::NotPersisted {
            on_master,
            asked,
            confirmed,
        }) => assert_eq!((on_master, asked, confirmed), (true, 2, 1)),
        other => panic!("{other:?}"),
    }
}
