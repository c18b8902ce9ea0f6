//! Durable mode on every request path: no request is acknowledged without its `WAIT`, a
//! refused request leaves the connection as the server has it, a write that changed nothing
//! needs no confirmation, and what durable mode needs from the server (`WAIT`, `ROLE`,
//! `WAITAOF`) is checked before any write is sent. Each test here failed before its fix.

use std::time::Duration;

use r2d2_redis_sentinel::{
    Durability, Error, NodeAddr, RetryPolicy, SentinelPool,
    redis::{self, Commands, ConnectionLike},
    testkit::Topology,
};
use support::{direct, init_logging};

/// A pool of 2 in durable mode, waiting 300 ms for confirmations.
fn durable(topology: &Topology) -> SentinelPool {
    topology
        .pool_builder()
        .max_size(2)
        .watcher(false)
        .durability(Durability::all_replicas().timeout(Duration::from_millis(300)))
        .retry_policy(RetryPolicy::default().deadline(Duration::from_secs(1)))
        .build()
        .unwrap()
}

fn exists(node: &NodeAddr, key: &str) -> bool {
    direct(node).exists(key).unwrap()
}

#[test]
fn a_refused_exec_leaves_no_transaction_open_and_unparsed_or_unwound_requests_still_wait() {
    init_logging();
    let topology = Topology::start().unwrap();
    let master = topology.master().unwrap();
    let replicas = support::replicas(&topology, &master);
    let pool = durable(&topology);
    let _: () = pool.with_retry(|c| c.set("before", 1)).unwrap();
    support::detach(&master, &replicas[0]);
    let mut conn = pool.get().unwrap();

    // MULTI, a queued write, then EXEC, each a request of its own: the EXEC is refused
    // unsent, and the transaction is discarded on the server, not left open.
    let _: () = redis::cmd("MULTI").query(&mut *conn).unwrap();
    let queued: String = redis::cmd("SET")
        .arg(&["tx", "1"])
        .query(&mut *conn)
        .unwrap();
    assert_eq!(queued, "QUEUED");
    let err = redis::cmd("EXEC")
        .query::<redis::Value>(&mut *conn)
        .unwrap_err();
    assert_eq!(err.code(), Some("NOREPLICAS"), "{err}");
    let read: Option<String> = conn.get("tx").unwrap();
    assert_eq!(
        read, None,
        "a later GET was queued into the refused transaction"
    );
    assert!(!exists(&master, "tx"));

    // A request the pool cannot read (an inline command) may write: refused like one.
    let inline = conn.req_packed_command(b"SET inline 1\r\n");
    assert!(inline.is_err(), "{inline:?}");
    assert!(!exists(&master, "inline"), "sent with no WAIT");

    // A request that writes and subscribes: no WAIT can follow it, refused unsent.
    let err = redis::pipe()
        .set("subscribing", 1)
        .cmd("SUBSCRIBE")
        .arg("channel")
        .query::<redis::Value>(&mut *conn)
        .unwrap_err();
    assert_eq!(err.code(), Some("DURABLE"), "{err}");
    assert!(!exists(&master, "subscribing"), "sent with no WAIT");

    // A panic inside with_durability(None, ..) gives the connection its durability back.
    let unwound = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        conn.with_durability(None, |_| -> redis::RedisResult<()> {
            panic!("in the closure")
        })
    }));
    assert!(unwound.is_err());
    let err = conn.set::<_, _, ()>("unwound", 1).unwrap_err();
    assert_eq!(err.code(), Some("NOREPLICAS"), "{err}");
    assert!(
        !exists(&master, "unwound"),
        "acknowledged with no WAIT after the panic"
    );

    // The per-call form refuses what the builder would.
    let err = conn
        .with_durability(Some(Durability::at_least(0)), |c| {
            c.set::<_, _, ()>("zero", 1)
        })
        .unwrap_err();
    assert_eq!(err.code(), Some("DURABLE"), "{err}");
    assert!(!exists(&master, "zero"));
}

#[test]
fn a_write_that_changed_nothing_needs_no_confirmation_and_a_demoted_pipeline_says_readonly() {
    init_logging();
    let mut topology = Topology::start().unwrap();
    let master = topology.master().unwrap();
    let replicas = support::replicas(&topology, &master);
    let pool = durable(&topology);
    let _: () = pool.with_retry(|c| c.set("taken", 1)).unwrap();

    // A replica frozen: every write that changed something comes back NotReplicated, but a
    // move from an empty list, a pop that timed out and a SETNX of a taken key changed
    // nothing, and say so.
    topology.pause(&replicas[0]).unwrap();
    let mut conn = pool.get().unwrap();
    // BRPOPLPUSH, which every supported server has (BLMOVE came with Redis 6.2).
    let moved: Option<String> = conn.brpoplpush("empty", "processing", 0.1).unwrap();
    assert_eq!(moved, None);
    let popped: Option<(String, String)> = conn.blpop("empty", 0.1).unwrap();
    assert_eq!(popped, None);
    let set: bool = conn.set_nx("taken", 2).unwrap();
    assert!(!set);
    let err = conn.set::<_, _, ()>("changed", 1).unwrap_err();
    assert!(
        matches!(
            Error::from(err),
            Error::NotReplicated {
                asked: 2,
                confirmed: 1
            }
        ),
        "a write that changed something is still confirmed"
    );
    // A blocking write given a read timeout shorter than the confirmation's wait: the pool
    // adds that wait, and the write comes back NotReplicated, not a broken connection.
    let _: () = direct(&master).rpush("ready", "job").unwrap();
    let err = conn
        .with_read_timeout(Duration::from_millis(150), |c| {
            c.brpoplpush::<_, _, Option<String>>("ready", "processing", 0.1)
        })
        .unwrap_err();
    assert!(
        matches!(Error::from(err), Error::NotReplicated { .. }),
        "the confirmation's wait is the read timeout's too"
    );
    topology.resume(&replicas[0]).unwrap();
    drop(conn);

    // The master demoted behind the pool's back: a durable pipeline answers the
    // READONLY of its writes, which with_retry takes as a failover, not the WAIT's refusal.
    let mut conn = pool.get().unwrap();
    let _: () = redis::cmd("REPLICAOF")
        .arg(&["127.0.0.1", "1"])
        .query(&mut direct(&master))
        .unwrap();
    let err = redis::pipe()
        .set("p1", 1)
        .set("p2", 2)
        .query::<()>(&mut *conn)
        .unwrap_err();
    let _: () = redis::cmd("REPLICAOF")
        .arg(&["NO", "ONE"])
        .query(&mut direct(&master))
        .unwrap();
    let text = err.to_string();
    assert!(!text.contains("WAIT"), "{text}");
    let errors = err.into_server_errors().expect("the writes' own errors");
    assert_eq!(errors.len(), 2, "{text}");
    assert!(
        errors.iter().all(|(_, e)| {
            redis::RedisError::from(e.clone()).kind()
                == redis::ErrorKind::Server(redis::ServerErrorKind::ReadOnly)
        }),
        "{text}"
    );
}

#[test]
fn what_durable_mode_needs_is_checked_before_any_write() {
    init_logging();
    let topology = Topology::start().unwrap();
    let master = topology.master().unwrap();
    for (name, rules, needs) in [
        ("nowait", &["+@all", "-wait"][..], "WAIT"),
        ("norole", &["+@all", "-role"][..], "ROLE"),
    ] {
        for node in topology.data_addrs() {
            let mut all = vec!["on", ">pass", "~*", "&*"];
            all.extend_from_slice(rules);
            let _: () = redis::cmd("ACL")
                .arg("SETUSER")
                .arg(name)
                .arg(support::acl_rules(&topology, &all))
                .query(&mut direct(&node))
                .unwrap();
        }
        let built = topology
            .pool_builder()
            .username(name)
            .password("pass")
            .max_size(1)
            .watcher(false)
            .durability(Durability::all_replicas())
            .checkout_timeout(Duration::from_secs(2))
            .build();
        match built {
            Err(Error::InvalidConfig {
                option: "durability",
                reason,
            }) => assert!(reason.contains(needs), "{name}: {reason}"),
            Err(other) => panic!("{name}: {other}"),
            Ok(_) => panic!("{name}: the pool was built"),
        }
    }

    // On disk, through the per-call form inside a transaction opened by its own request:
    // Redis before 7.2 has no WAITAOF, and the check runs before MULTI, not queued inside
    // it.
    if topology.server_version().at_least(7, 2) {
        return;
    }
    let plain = topology.pool_builder().max_size(1).build().unwrap();
    let mut conn = plain.get().unwrap();
    let on_disk = Some(Durability::all_replicas().on_disk());
    let err = conn
        .with_durability(on_disk, |c| {
            let _: () = redis::cmd("MULTI").query(c)?;
            let _: () = redis::cmd("SET").arg(&["disk", "1"]).query(c)?;
            redis::cmd("EXEC").query::<redis::Value>(c)
        })
        .unwrap_err();
    assert_eq!(err.code(), Some("DURABLE"), "{err}");
    assert!(!exists(&master, "disk"), "the transaction was applied");
    let read: Option<String> = conn.get("disk").unwrap();
    assert_eq!(read, None, "the connection is left inside MULTI");
}

/// Names every connection the pool opens, as many services do.
#[derive(Debug)]
struct Named;

impl r2d2_redis_sentinel::r2d2::CustomizeConnection<r2d2_redis_sentinel::Connection, Error>
    for Named
{
    fn on_acquire(&self, conn: &mut r2d2_redis_sentinel::Connection) -> Result<(), Error> {
        redis::cmd("CLIENT")
            .arg(&["SETNAME", "worker"])
            .query::<()>(conn)
            .map_err(Error::from)
    }
}

/// What writes is what the server says writes (`COMMAND`): reads outside this crate's own
/// list go through while a replica is away, where writes are refused; and setting up a
/// connection is no write to confirm.
#[test]
fn reads_the_server_calls_reads_are_not_refused_while_a_replica_is_away() {
    init_logging();
    let topology = Topology::start().unwrap();
    let master = topology.master().unwrap();
    let replicas = support::replicas(&topology, &master);
    let mut node = direct(&master);
    let _: () = redis::cmd("PFADD")
        .arg(&["hll", "a"])
        .query(&mut node)
        .unwrap();
    let _: () = node.rpush("list", 1).unwrap();
    let _: () = redis::cmd("XADD")
        .arg(&["stream", "*", "f", "v"])
        .query(&mut node)
        .unwrap();
    let pool = topology
        .pool_builder()
        .max_size(2)
        .watcher(false)
        .connection_customizer(Box::new(Named))
        .durability(Durability::all_replicas().timeout(Duration::from_millis(300)))
        .retry_policy(RetryPolicy::default().deadline(Duration::from_secs(1)))
        .build()
        .unwrap();
    let _: () = pool.with_retry(|c| c.set("before", 1)).unwrap();
    support::detach(&master, &replicas[0]);

    let mut conn = pool.get().unwrap();
    let reads: Vec<redis::Cmd> = vec![
        redis::cmd("PFCOUNT").arg("hll").clone(),
        redis::cmd("OBJECT").arg(&["ENCODING", "list"]).clone(),
        redis::cmd("TOUCH").arg("list").clone(),
        redis::cmd("XINFO").arg(&["STREAM", "stream"]).clone(),
        redis::cmd("MEMORY").arg(&["USAGE", "list"]).clone(),
        redis::cmd("CONFIG").arg(&["GET", "maxmemory"]).clone(),
        redis::cmd("SORT").arg("list").clone(),
    ];
    for read in &reads {
        let packed = String::from_utf8_lossy(&read.get_packed_command()).into_owned();
        if let Err(err) = read.query::<redis::Value>(&mut *conn) {
            // SORT has the write flag (for its STORE): refused like a write, and that is all.
            assert!(packed.contains("SORT"), "{packed:?} was refused: {err}");
            assert_eq!(err.code(), Some("NOREPLICAS"), "{err}");
        }
    }
    let err = conn.set::<_, _, ()>("during", 1).unwrap_err();
    assert_eq!(
        err.code(),
        Some("NOREPLICAS"),
        "writes are still refused: {err}"
    );
    drop(conn);

    // A new connection, named by the customizer, opens although writes are refused.
    pool.invalidate();
    let mut conn = pool.get().unwrap();
    let name: Option<String> = redis::cmd("CLIENT")
        .arg("GETNAME")
        .query(&mut *conn)
        .unwrap();
    assert_eq!(name.as_deref(), Some("worker"));
}

/// A durable write whose replica count is a second old is preceded by a `ROLE` of its own;
/// if the write then times out, it may have been applied: `with_retry` must not run it
/// again (the probe's success says nothing about the write).
#[test]
fn a_write_that_times_out_after_the_count_was_refreshed_is_not_run_again() {
    init_logging();
    let topology = Topology::start().unwrap();
    let pool = topology
        .pool_builder()
        .max_size(1)
        .watcher(false)
        .validation(r2d2_redis_sentinel::Validation::Off)
        .read_timeout(Duration::from_millis(300))
        .durability(Durability::all_replicas().timeout(Duration::from_millis(100)))
        .build()
        .unwrap();
    let _: () = pool.with_retry(|c| c.set("counter", 0)).unwrap();
    // The count's age is what this test is about: past a second, the next write asks ROLE.
    std::thread::sleep(Duration::from_millis(1100));
    let mut calls = 0;
    let err = pool
        .with_retry(|c| {
            calls += 1;
            redis::pipe()
                .incr("counter", 1)
                .blpop("never-filled", 2.0)
                .query::<()>(c)
        })
        .unwrap_err();
    assert!(matches!(err, Error::MaybeApplied { .. }), "{err:?}");
    assert_eq!(calls, 1, "a write that may have been applied was run again");
    let master = topology.master().unwrap();
    let counter: i64 = direct(&master).get("counter").unwrap();
    assert_eq!(counter, 1);
}
