//! `with_retry`: failovers are invisible to writers, and nothing that may have run is run again
//! unless the caller said it is safe.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

use r2d2_redis_sentinel::{
    Error, NodeAddr, RetryPolicy, SentinelPool,
    redis::{self, Commands},
    testkit::Topology,
};
use support::{direct, eventually, init_logging};

/// What a writer loop saw.
struct Report {
    /// Every acknowledged key, with the node that acknowledged it.
    acked: Vec<(u64, NodeAddr)>,
    errors: Vec<Error>,
    longest_gap: Duration,
}

/// Writes unique keys `w:<n>` under `with_retry_idempotent` (a `SET` of a fixed value is safe
/// to repeat) until `stop` is raised.
fn writer(pool: SentinelPool, stop: Arc<AtomicBool>) -> thread::JoinHandle<Report> {
    thread::spawn(move || {
        let mut report = Report {
            acked: Vec::new(),
            errors: Vec::new(),
            longest_gap: Duration::ZERO,
        };
        let mut last_ack = Instant::now();
        let mut n = 0u64;
        while !stop.load(Ordering::Relaxed) {
            n += 1;
            match pool.with_retry_idempotent(|c| {
                let _: () = c.set(format!("w:{n}"), n)?;
                Ok(c.addr().clone())
            }) {
                Ok(addr) => {
                    report.longest_gap = report.longest_gap.max(last_ack.elapsed());
                    last_ack = Instant::now();
                    report.acked.push((n, addr));
                }
                Err(err) => report.errors.push(err),
            }
        }
        report
    })
}

/// Runs a writer across `disrupt`, until writes land on the new master; returns the report and
/// how many acknowledged writes the final master lacks.
fn write_across(
    topology: &mut Topology,
    disrupt: impl FnOnce(&mut Topology) -> NodeAddr,
) -> (Report, NodeAddr, usize) {
    let pool = topology
        .pool_builder()
        .max_size(4)
        .retry_policy(RetryPolicy::default().deadline(Duration::from_secs(30)))
        .build()
        .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let handle = writer(pool.clone(), Arc::clone(&stop));
    eventually("the writer to start", Duration::from_secs(5), || {
        pool.with_retry(|c| c.exists::<_, bool>("w:1"))
            .unwrap()
            .then_some(())
    });
    let new = disrupt(topology);
    // Let the writer run until its writes reach the new master, then a little more.
    eventually(
        &format!("writes to reach {new}"),
        Duration::from_secs(40),
        || (pool.with_retry(|c| Ok(c.addr().clone())).unwrap() == new).then_some(()),
    );
    let first_on_new = dbsize(&new);
    eventually("a few more writes", Duration::from_secs(10), || {
        (dbsize(&new) > first_on_new + 100).then_some(())
    });
    stop.store(true, Ordering::Relaxed);
    let report = handle.join().unwrap();

    let mut on_new = direct(&new);
    let missing = report
        .acked
        .iter()
        .filter(|(n, _)| !on_new.exists::<_, bool>(format!("w:{n}")).unwrap())
        .count();
    (report, new, missing)
}

fn dbsize(addr: &NodeAddr) -> u64 {
    redis::cmd("DBSIZE").query(&mut direct(addr)).unwrap()
}

fn print(label: &str, report: &Report, new: &NodeAddr, missing: usize) {
    let on_new = report.acked.iter().filter(|(_, a)| a == new).count();
    eprintln!(
        "{label}: {} writes acknowledged ({} by the new master), {} errors, longest gap {:?}, \
         {missing} acknowledged writes missing from the final master",
        report.acked.len(),
        on_new,
        report.errors.len(),
        report.longest_gap,
    );
}

#[test]
fn a_writer_sees_no_error_across_a_manual_failover() {
    init_logging();
    let mut topology = Topology::start().unwrap();
    let (report, new, missing) = write_across(&mut topology, |t| t.failover().unwrap());
    print("manual failover", &report, &new, missing);
    assert!(
        report.errors.is_empty(),
        "errors surfaced: {:?}",
        report.errors
    );
    assert!(report.acked.iter().any(|(_, a)| *a == new));
    // The old master acknowledges writes until the pool hears of the switch, and loses them
    // when it resyncs (what the fence will close); the new master loses none.
    let mut on_new = direct(&new);
    let lost_on_new = report
        .acked
        .iter()
        .filter(|(n, a)| *a == new && !on_new.exists::<_, bool>(format!("w:{n}")).unwrap())
        .count();
    assert_eq!(
        lost_on_new, 0,
        "writes acknowledged by the new master were lost"
    );
    assert!(missing < report.acked.len(), "every write was lost");
}

#[test]
fn a_writer_sees_no_error_across_a_master_crash() {
    init_logging();
    let mut topology = Topology::start().unwrap();
    let (report, new, missing) = write_across(&mut topology, |t| {
        let old = t.kill_master().unwrap();
        t.wait_for_new_master(&old, Duration::from_secs(30))
            .unwrap()
    });
    print("master crash", &report, &new, missing);
    assert!(
        report.errors.is_empty(),
        "errors surfaced: {:?}",
        report.errors
    );
    // A crashed master acknowledges nothing after it dies: what a crash may lose is the
    // replication lag at that moment (writes acknowledged but not yet sent to the replica
    // that is promoted), a handful at most, never a second of writes.
    assert!(
        missing * 100 <= report.acked.len(),
        "{missing} of {} acknowledged writes lost in a crash",
        report.acked.len()
    );
    assert!(report.acked.iter().any(|(_, a)| *a == new));
}

/// `INCR` then a `BLPOP` that outlives the read timeout, in one request: the `INCR` is applied,
/// then the connection times out, so the attempt "may have been applied".
fn incr_then_time_out(c: &mut r2d2_redis_sentinel::Connection) -> redis::RedisResult<()> {
    redis::pipe()
        .incr("counter", 1)
        .blpop("never-filled", 2.0)
        .query::<()>(c)
}

#[test]
fn a_maybe_applied_operation_is_not_run_again_unless_declared_idempotent() {
    init_logging();
    let topology = Topology::start().unwrap();
    let pool = topology
        .pool_builder()
        .read_timeout(Duration::from_millis(300))
        .build()
        .unwrap();

    let mut calls = 0;
    let err = pool
        .with_retry(|c| {
            calls += 1;
            if calls == 1 {
                incr_then_time_out(c)
            } else {
                c.incr("counter", 1)
            }
        })
        .unwrap_err();
    assert!(
        matches!(err, Error::MaybeApplied { attempts: 1, .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("with_retry_idempotent"), "{err}");
    assert_eq!(calls, 1, "the operation was run again");
    let counter: i64 = pool.get().unwrap().get("counter").unwrap();
    assert_eq!(counter, 1);

    // Declared idempotent, the same failure is retried.
    let mut calls = 0;
    pool.with_retry_idempotent(|c| {
        calls += 1;
        if calls == 1 {
            incr_then_time_out(c)
        } else {
            c.incr("counter", 1)
        }
    })
    .unwrap();
    assert_eq!(calls, 2);
    let counter: i64 = pool.get().unwrap().get("counter").unwrap();
    assert_eq!(counter, 3);
}

#[test]
fn final_errors_are_returned_at_once() {
    init_logging();
    let topology = Topology::start().unwrap();
    let pool = topology.pool_builder().build().unwrap();
    let _: () = pool.get().unwrap().set("a-string", "x").unwrap();
    let mut calls = 0;
    let err = pool
        .with_retry(|c| {
            calls += 1;
            c.lpush::<_, _, ()>("a-string", "y")
        })
        .unwrap_err();
    assert_eq!(calls, 1);
    match err {
        Error::Redis(e) => assert_eq!(e.code(), Some("WRONGTYPE")),
        other => panic!("expected the WRONGTYPE error, got {other:?}"),
    }
}

/// Item: a conversion error (`FromRedisValue`) is the caller's, not the connection's: final at
/// once, even for an idempotent operation, and the connection stays in use.
#[test]
fn a_conversion_error_is_final_and_returned_at_once() {
    init_logging();
    let topology = Topology::start().unwrap();
    let pool = topology.pool_builder().max_size(1).build().unwrap();
    let _: () = pool.get().unwrap().set("text", "not a number").unwrap();
    let id = support::client_id(&mut pool.get().unwrap());
    for idempotent in [false, true] {
        let mut calls = 0;
        let op = |c: &mut r2d2_redis_sentinel::Connection| {
            calls += 1;
            c.get::<_, i64>("text")
        };
        let err = if idempotent {
            pool.with_retry_idempotent(op)
        } else {
            pool.with_retry(op)
        }
        .unwrap_err();
        assert!(
            matches!(&err, Error::Redis(e) if e.kind() == redis::ErrorKind::Parse),
            "idempotent {idempotent}: {err:?}"
        );
        assert_eq!(
            calls, 1,
            "idempotent {idempotent}: the conversion was retried"
        );
        assert!(!err.is_retryable());
    }
    assert_eq!(
        support::client_id(&mut pool.get().unwrap()),
        id,
        "a conversion error does not break the connection"
    );
}

/// Item: a transaction refused on a demoted master (`READONLY` while queued, then `EXECABORT`)
/// applied nothing: it is failover evidence and retried.
#[test]
fn an_aborted_transaction_on_a_demoted_master_is_retried_and_invalidates() {
    init_logging();
    let topology = Topology::start().unwrap();
    let master = topology.master().unwrap();
    let replica = support::replica(&topology, &master);
    let pool = topology
        .pool_builder()
        .max_size(1)
        .watcher(false)
        .build()
        .unwrap();
    let mut calls = 0;
    let (n,): (i64,) = pool
        .with_retry(|c| {
            calls += 1;
            if calls == 1 {
                support::demote(&master, &replica);
            }
            let result = redis::pipe()
                .atomic()
                .set("tx:k", "v")
                .ignore()
                .incr("tx:n", 1)
                .query(c);
            if calls == 1 {
                let err = result.as_ref().unwrap_err();
                assert_eq!(err.code(), Some("EXECABORT"), "{err:?}");
                support::promote(&master);
            }
            result
        })
        .unwrap();
    assert_eq!(calls, 2);
    assert_eq!(n, 1, "the aborted transaction applied nothing");
    assert!(
        pool.generation() >= 1,
        "the abort did not invalidate the pool"
    );
}

/// Item: an attempt in which a command was applied before a later one was refused is not "not
/// applied": `with_retry` must not run it again (the `INCR` would count twice).
#[test]
fn an_attempt_refused_after_a_command_was_applied_is_maybe_applied() {
    init_logging();
    let topology = Topology::start().unwrap();
    let master = topology.master().unwrap();
    let pool = topology.pool_builder().max_size(1).build().unwrap();
    let refuse_writes = |n: u32| {
        let _: () = redis::cmd("CONFIG")
            .arg("SET")
            .arg("min-replicas-to-write")
            .arg(n)
            .query(&mut direct(&master))
            .unwrap();
    };

    // Two commands in the closure: the first is applied, the second refused (NOREPLICAS).
    let mut calls = 0;
    let err = pool
        .with_retry(|c| {
            calls += 1;
            let _: i64 = c.incr("partial:n", 1)?;
            refuse_writes(5);
            let refused = c.set::<_, _, ()>("partial:k", "v");
            refuse_writes(0);
            refused
        })
        .unwrap_err();
    assert!(matches!(err, Error::MaybeApplied { .. }), "{err:?}");
    assert_eq!(calls, 1);

    // One non-atomic pipeline: the INCR is applied, the SET refused (the pipeline itself
    // turns on the refusal in between).
    let err = pool
        .with_retry(|c| {
            calls += 1;
            let result = redis::pipe()
                .incr("partial:n", 1)
                .cmd("CONFIG")
                .arg("SET")
                .arg("min-replicas-to-write")
                .arg(5)
                .set("partial:k", "v")
                .query::<(i64, (), ())>(c);
            refuse_writes(0);
            result.map(|_| ())
        })
        .unwrap_err();
    assert!(matches!(err, Error::MaybeApplied { .. }), "{err:?}");
    assert_eq!(calls, 2);
    let n: i64 = pool.get().unwrap().get("partial:n").unwrap();
    assert_eq!(n, 2, "an applied INCR was run again");
}

/// Item: a read applies nothing. An attempt that read, then met a refusal of a command that
/// was never sent, is retried, and its write lands once; so is one whose only replies were a
/// transaction's `+OK` and `+QUEUED`.
#[test]
fn an_attempt_that_only_read_before_a_refusal_is_retried() {
    init_logging();
    let topology = Topology::start().unwrap();
    let pool = topology.pool_builder().max_size(2).build().unwrap();

    // GET, then INCR refused unsent (the pool moved on: STALE).
    let mut calls = 0;
    let n: i64 = pool
        .with_retry(|c| {
            calls += 1;
            let _: Option<i64> = c.get("read:n")?;
            if calls == 1 {
                pool.invalidate();
            }
            c.incr("read:n", 1)
        })
        .unwrap();
    assert_eq!((n, calls), (1, 2));

    // A pipeline of reads, then the same.
    let mut calls = 0;
    let n: i64 = pool
        .with_retry(|c| {
            calls += 1;
            let _: (Option<i64>, i64) = redis::pipe().get("read:n").exists("read:n").query(c)?;
            if calls == 1 {
                pool.invalidate();
            }
            c.incr("read:n", 1)
        })
        .unwrap();
    assert_eq!((n, calls), (2, 2));

    // MULTI and a queued INCR, then EXEC refused unsent: nothing ran.
    let mut calls = 0;
    let (n,): (i64,) = pool
        .with_retry(|c| {
            calls += 1;
            redis::cmd("MULTI").query::<()>(c)?;
            redis::cmd("INCR").arg("read:n").query::<()>(c)?;
            if calls == 1 {
                pool.invalidate();
            }
            redis::cmd("EXEC").query(c)
        })
        .unwrap();
    assert_eq!((n, calls), (3, 2));

    // A write, then the same refusal: maybe applied, as before.
    let mut calls = 0;
    let err = pool
        .with_retry(|c| {
            calls += 1;
            let _: i64 = c.incr("read:n", 1)?;
            pool.invalidate();
            c.incr::<_, _, i64>("read:n", 1)
        })
        .unwrap_err();
    assert!(matches!(err, Error::MaybeApplied { .. }), "{err:?}");
    assert_eq!(calls, 1);
    let n: i64 = pool.get().unwrap().get("read:n").unwrap();
    assert_eq!(n, 4, "every INCR that ran, once");
}

/// Item: a configuration error met while checking out (the master's password changed) comes
/// back as itself, without waiting out the checkout or the retries: waiting would not fix it.
#[test]
fn a_configuration_error_met_while_checking_out_is_returned_at_once() {
    init_logging();
    // Sentinels slow to call the master down: they cannot log in to it either, below.
    let topology = Topology::builder()
        .password("secret")
        .down_after(Duration::from_secs(30))
        .start()
        .unwrap();
    let master = topology.master().unwrap();
    let pool = topology
        .pool_builder()
        .max_size(2)
        .checkout_timeout(Duration::from_secs(20))
        .retry_policy(RetryPolicy::default().deadline(Duration::from_secs(30)))
        .build()
        .unwrap();
    let _: () = pool.with_retry(|c| c.set("k", "v")).unwrap();

    // Connections open stay logged in; new ones are refused.
    let mut admin = redis::Client::open(format!("redis://:secret@{master}"))
        .unwrap()
        .get_connection_with_timeout(Duration::from_secs(2))
        .unwrap();
    let rotate = |admin: &mut redis::Connection, to: &str| {
        redis::cmd("CONFIG")
            .arg("SET")
            .arg("requirepass")
            .arg(to)
            .query::<()>(admin)
            .unwrap();
    };
    rotate(&mut admin, "rotated");
    pool.invalidate();
    let start = Instant::now();
    let err = pool.with_retry(|c| c.get::<_, String>("k")).unwrap_err();
    assert!(matches!(err, Error::Auth { .. }), "{err:?}");
    let err = pool.get().map(|_| ()).unwrap_err();
    assert!(matches!(err, Error::Auth { .. }), "{err:?}");
    // Neither waited out its bound (a 20 s checkout, a 30 s retry deadline).
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "{:?}",
        start.elapsed()
    );
    // The password back: the connects r2d2 retries in the background (at most half the
    // connection timeout apart) succeed, and checkouts with them.
    rotate(&mut admin, "secret");
    let value: String = eventually(
        "a checkout with the old password",
        Duration::from_secs(30),
        || pool.with_retry(|c| c.get("k")).ok(),
    );
    assert_eq!(value, "v");
}

/// The id of the client blocked in `BLPOP` on `node`, once there is one.
fn blocked_in_blpop(node: &NodeAddr) -> i64 {
    eventually("a client blocked in BLPOP", Duration::from_secs(10), || {
        let clients: String = redis::cmd("CLIENT")
            .arg("LIST")
            .query(&mut direct(node))
            .unwrap();
        clients
            .lines()
            .find(|l| l.split(' ').any(|f| f == "cmd=blpop"))
            .and_then(|l| l.split(' ').find_map(|f| f.strip_prefix("id=")))
            .map(|id| id.parse().unwrap())
    })
}

/// Item: `UNBLOCKED` from an operator's `CLIENT UNBLOCK` is the caller's answer, neither
/// retried nor taken for a failover; the same error from a node that turned replica under
/// the blocked client still invalidates the pool.
#[test]
fn an_operators_unblock_is_returned_and_a_demotions_is_a_failover() {
    init_logging();
    let topology = Topology::start().unwrap();
    let master = topology.master().unwrap();
    // No watcher: only what the connections see moves the generation.
    let pool = topology
        .pool_builder()
        .max_size(2)
        .watcher(false)
        .build()
        .unwrap();
    let blpop = |c: &mut r2d2_redis_sentinel::Connection| {
        c.with_read_timeout(Duration::from_secs(20), |c| {
            c.blpop::<_, Option<(String, String)>>("never-filled", 10.0)
        })
    };

    let worker = {
        let pool = pool.clone();
        thread::spawn(move || pool.with_retry(blpop))
    };
    let id = blocked_in_blpop(&master);
    let released: bool = redis::cmd("CLIENT")
        .arg("UNBLOCK")
        .arg(id)
        .arg("ERROR")
        .query(&mut direct(&master))
        .unwrap();
    assert!(released);
    let err = worker.join().unwrap().unwrap_err();
    let Error::Redis(source) = &err else {
        panic!("{err:?}");
    };
    assert_eq!(source.code(), Some("UNBLOCKED"), "{err:?}");
    assert_eq!(
        pool.generation(),
        0,
        "an operator's unblock taken for a failover"
    );

    // The master turns replica (behind the sentinels' back) under a blocked client.
    let mut conn = pool.get().unwrap();
    let demoter = {
        let (master, replica) = (master.clone(), support::replica(&topology, &master));
        thread::spawn(move || {
            blocked_in_blpop(&master);
            support::demote(&master, &replica);
        })
    };
    let err = blpop(&mut conn).unwrap_err();
    demoter.join().unwrap();
    assert_eq!(err.code(), Some("UNBLOCKED"), "{err:?}");
    drop(conn);
    assert!(
        pool.generation() >= 1,
        "a demotion not taken for a failover"
    );
    support::promote(&master);
}

/// A connection closed under a request of reads alone applied nothing: `with_retry` runs the
/// read again on a new connection (Sentinel closes every client of a node it reconfigures).
/// Under a write it still may have been applied.
#[test]
fn a_read_that_met_a_closed_connection_is_retried_and_a_write_is_not() {
    init_logging();
    let topology = Topology::start().unwrap();
    let master = topology.master().unwrap();
    // No checkout round trip and one connection: the closed socket reaches the closure.
    let pool = topology
        .pool_builder()
        .max_size(1)
        .validation(r2d2_redis_sentinel::Validation::Off)
        .build()
        .unwrap();
    let _: () = pool.with_retry(|c| c.set("k", "v")).unwrap();
    let kill = || {
        let killed: i64 = redis::cmd("CLIENT")
            .arg("KILL")
            .arg("TYPE")
            .arg("normal")
            .query(&mut direct(&master))
            .unwrap();
        // The pool's idle connection, and the sentinels' (they reconnect).
        assert!(killed >= 1);
    };
    kill();
    let mut calls = 0;
    let value: String = pool
        .with_retry(|c| {
            calls += 1;
            c.get("k")
        })
        .unwrap();
    assert_eq!((value.as_str(), calls), ("v", 2));

    kill();
    let err = pool
        .with_retry(|c| c.incr::<_, _, i64>("n", 1))
        .unwrap_err();
    assert!(matches!(err, Error::MaybeApplied { .. }), "{err:?}");
}

/// What `with_retry` did is counted in `stats()`: calls, attempts, retries by class, give-ups
/// and failures, from real refusals (`NOREPLICAS` from `min-replicas-to-write`).
#[test]
fn stats_count_what_with_retry_did() {
    init_logging();
    let topology = Topology::start().unwrap();
    let master = topology.master().unwrap();
    let pool = topology
        .pool_builder()
        .max_size(2)
        .retry_policy(RetryPolicy::default().max_attempts(5))
        .build()
        .unwrap();
    let require = |replicas: u32| {
        let _: () = redis::cmd("CONFIG")
            .arg(&["SET", "min-replicas-to-write"])
            .arg(replicas)
            .query(&mut direct(&master))
            .unwrap();
    };
    assert_eq!(pool.stats().retries.calls, 0);

    // Refused twice (a write needs 3 replicas, there are 2), then allowed.
    require(3);
    let mut tries = 0;
    let _: () = pool
        .with_retry(|c| {
            tries += 1;
            if tries == 3 {
                require(0);
            }
            c.set("counted", 1)
        })
        .unwrap();
    let after = pool.stats().retries;
    assert_eq!(
        (after.calls, after.attempts, after.retried_unapplied),
        (1, 3, 2)
    );

    // A final error, then one that never stops: refused on all 5 attempts.
    let _: () = pool.with_retry(|c| c.set("text", "x")).unwrap();
    assert!(pool.with_retry(|c| c.incr::<_, _, i64>("text", 1)).is_err());
    require(3);
    let err = pool
        .with_retry(|c| c.set::<_, _, ()>("never", 1))
        .unwrap_err();
    require(0);
    assert!(
        matches!(err, Error::RetriesExhausted { attempts: 5, .. }),
        "{err}"
    );
    let stats = pool.stats();
    let r = stats.retries;
    assert_eq!((r.calls, r.failed, r.exhausted), (4, 1, 1), "{r:?}");
    assert_eq!(r.attempts, 3 + 1 + 1 + 5);
    assert_eq!(r.retried_unapplied, 2 + 4);
    assert!(
        stats.to_string().contains("4 retried calls: 6 retries"),
        "{stats}"
    );
}
