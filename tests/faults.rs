//! Short fault runs under load: a hung master, an exhausted pool across a failover,
//! an old master that comes back believing it is master. Each is bounded in time and stops by
//! itself.

use std::{
    sync::{Arc, Barrier},
    thread,
    time::{Duration, Instant},
};

use r2d2_redis_sentinel::{
    Error, RetryPolicy,
    redis::{self, Commands},
    testkit::Topology,
};
use support::{direct, eventually, init_logging};

/// The master stops answering (SIGSTOP) while 16 callers are blocked in commands: each
/// returns within its timeouts, with a typed error; the pool serves again once it answers.
#[test]
fn callers_blocked_on_a_hung_master_return_within_their_timeouts() {
    init_logging();
    let mut topology = Topology::start().unwrap();
    let master = topology.master().unwrap();
    let read_timeout = Duration::from_millis(500);
    let pool = topology
        .pool_builder()
        .max_size(16)
        .watcher(false)
        .read_timeout(read_timeout)
        .checkout_timeout(Duration::from_secs(1))
        .build()
        .unwrap();
    let start = Arc::new(Barrier::new(17));
    let callers: Vec<_> = (0..16)
        .map(|i| {
            let (pool, start) = (pool.clone(), Arc::clone(&start));
            thread::spawn(move || {
                let mut conn = pool.get().unwrap();
                start.wait();
                // Blocks server-side for 300 ms, then the node is frozen mid-wait.
                let started = Instant::now();
                let result = conn.blpop::<_, Option<(String, String)>>(format!("q{i}"), 0.3);
                (result, started.elapsed())
            })
        })
        .collect();
    start.wait();
    topology.pause(&master).unwrap();
    let results: Vec<_> = callers.into_iter().map(|c| c.join().unwrap()).collect();
    let during = pool.get_timeout(Duration::from_millis(700));
    topology.resume(&master).unwrap();

    for (result, waited) in &results {
        // Either the reply came before the freeze, or the read timed out: never longer.
        assert!(
            *waited < read_timeout + Duration::from_millis(700),
            "a caller waited {waited:?}"
        );
        if let Err(err) = result {
            assert!(err.is_timeout(), "{err:?}");
        }
    }
    assert!(
        results.iter().any(|(r, _)| r.is_err()),
        "no caller saw the freeze"
    );
    assert!(matches!(during, Err(ref e) if e.is_timeout()), "{during:?}");
    eventually("the pool to serve again", Duration::from_secs(10), || {
        pool.get().ok()?.set::<_, _, ()>("after", 1).ok()
    });
}

/// The same with the master alive but not answering: `CLIENT PAUSE ... ALL` (every command
/// held) and `DEBUG SLEEP` (the event loop blocked). Callers holding connections send a
/// command once the node stopped answering: each returns a timeout within its read timeout;
/// the pool serves again once the node answers or Sentinel failed it over.
#[test]
fn callers_on_a_paused_or_sleeping_master_return_within_their_timeouts() {
    init_logging();
    for hang in ["CLIENT PAUSE", "DEBUG SLEEP"] {
        let topology = Topology::start().unwrap();
        let master = topology.master().unwrap();
        let read_timeout = Duration::from_millis(500);
        let pool = topology
            .pool_builder()
            .max_size(16)
            .read_timeout(read_timeout)
            .checkout_timeout(Duration::from_secs(1))
            .retry_policy(RetryPolicy::default().deadline(Duration::from_secs(30)))
            .build()
            .unwrap();
        let held: Vec<_> = (0..16).map(|_| pool.get().unwrap()).collect();
        // Connected before the hang: a handshake during it would wait it out.
        let mut probe = direct(&master);
        probe
            .set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        // Both hold the node for 1.5 s; DEBUG SLEEP's own reply waits that long.
        let hanger = {
            let mut conn = direct(&master);
            thread::spawn(move || {
                let mut cmd = redis::cmd(hang.split(' ').next().unwrap());
                match hang {
                    "CLIENT PAUSE" => cmd.arg(&["PAUSE", "1500", "ALL"]),
                    _ => cmd.arg(&["SLEEP", "1.5"]),
                };
                conn.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                cmd.query::<()>(&mut conn)
            })
        };
        // Until the probe's PING goes unanswered, the node is not hung yet.
        eventually(
            &format!("{hang} to hold the node"),
            Duration::from_secs(5),
            || {
                redis::cmd("PING")
                    .query::<String>(&mut probe)
                    .err()
                    .map(drop)
            },
        );
        let callers: Vec<_> = held
            .into_iter()
            .enumerate()
            .map(|(i, mut conn)| {
                thread::spawn(move || {
                    let started = Instant::now();
                    let result = conn.get::<_, Option<String>>(format!("k{i}"));
                    (result, started.elapsed())
                })
            })
            .collect();
        for caller in callers {
            let (result, waited) = caller.join().unwrap();
            assert!(
                waited < read_timeout + Duration::from_millis(300),
                "{hang}: a caller waited {waited:?}"
            );
            let err = result.expect_err("the node was not answering");
            assert!(err.is_timeout(), "{hang}: {err:?}");
        }
        hanger.join().unwrap().unwrap();
        pool.with_retry(|c| c.set::<_, _, ()>("after", 1))
            .unwrap_or_else(|err| panic!("{hang}: the pool does not serve again: {err}"));
    }
}

/// The first sentinel in the list is frozen (SIGSTOP) before the pool is built, and stays so
/// under a writer across a planned failover and a crash: it costs its timeout once, no write
/// fails, and the pool follows both failovers through the others.
#[test]
fn a_sentinel_frozen_before_build_is_worked_around_under_load() {
    init_logging();
    let mut topology = Topology::start().unwrap();
    let frozen = topology.sentinel_addrs()[0].clone();
    topology.pause(&frozen).unwrap();
    let sentinel_timeout = Duration::from_millis(500);
    let started = Instant::now();
    let pool = topology
        .pool_builder()
        .max_size(4)
        .sentinel_timeout(sentinel_timeout)
        .retry_policy(RetryPolicy::default().deadline(Duration::from_secs(30)))
        .build()
        .unwrap();
    let built = started.elapsed();
    assert!(
        built < sentinel_timeout * 2 + Duration::from_millis(500),
        "build took {built:?}"
    );
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let (pool, stop) = (pool.clone(), Arc::clone(&stop));
        thread::spawn(move || {
            let mut n = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                n += 1;
                pool.with_retry_idempotent(|c| c.set::<_, _, ()>(format!("f:{n}"), n))?;
            }
            Ok::<u64, Error>(n)
        })
    };
    let planned = topology.failover().unwrap();
    eventually(
        "the pool to follow the planned failover",
        Duration::from_secs(10),
        || (pool.master() == Some(planned.clone())).then_some(()),
    );
    topology.wait_settled().unwrap();
    let crashed = topology.kill_master().unwrap();
    let promoted = topology
        .wait_for_new_master(&crashed, Duration::from_secs(30))
        .unwrap();
    eventually(
        "the pool to follow the crash",
        Duration::from_secs(10),
        || (pool.master() == Some(promoted.clone())).then_some(()),
    );
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let written = writer.join().unwrap().expect("no write failed");
    assert!(written > 0);
    topology.resume(&frozen).unwrap();
}

/// 64 threads on a pool of 4, each holding a connection for 50 ms, while the master fails
/// over: only typed timeout errors, no deadlock, and the pool serves afterwards.
#[test]
fn an_exhausted_pool_across_a_failover_gives_typed_errors_and_recovers() {
    init_logging();
    let topology = Topology::start().unwrap();
    let pool = topology
        .pool_builder()
        .max_size(4)
        .checkout_timeout(Duration::from_millis(300))
        .retry_policy(RetryPolicy::default().deadline(Duration::from_secs(30)))
        .build()
        .unwrap();
    let until = Instant::now() + Duration::from_secs(6);
    let workers: Vec<_> = (0..64)
        .map(|i| {
            let pool = pool.clone();
            thread::spawn(move || {
                let (mut done, mut errors) = (0u32, Vec::new());
                while Instant::now() < until {
                    match pool.get() {
                        Ok(mut conn) => {
                            let _ = conn.set::<_, _, ()>(format!("x{i}"), done);
                            thread::sleep(Duration::from_millis(50));
                            done += 1;
                        }
                        Err(err) => errors.push(err),
                    }
                }
                (done, errors)
            })
        })
        .collect();
    let new = topology.failover().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut served = 0;
    for worker in workers {
        while !worker.is_finished() {
            assert!(Instant::now() < deadline, "a worker is stuck: deadlock?");
            thread::sleep(Duration::from_millis(20));
        }
        let (done, errors) = worker.join().unwrap();
        served += done;
        for err in errors {
            assert!(
                matches!(
                    err,
                    Error::PoolExhausted { .. } | Error::CheckoutTimeout { .. }
                ) && err.is_timeout(),
                "{err:?}"
            );
        }
    }
    assert!(served > 0);
    let addr = pool
        .with_retry(|c| {
            let _: () = c.set("after", 1)?;
            Ok(c.addr().clone())
        })
        .unwrap();
    assert_eq!(addr, new);
}

/// After a crash failover the old master is restarted from its own config: it comes back
/// believing it is master, until Sentinel converts it. No write through the pool may reach it
/// meanwhile (it starts empty: the test topology keeps no data on disk).
#[test]
fn an_old_master_that_comes_back_as_master_gets_no_write() {
    init_logging();
    let mut topology = Topology::start().unwrap();
    let pool = topology
        .pool_builder()
        .max_size(4)
        .retry_policy(RetryPolicy::default().deadline(Duration::from_secs(30)))
        .build()
        .unwrap();
    let old = topology.kill_master().unwrap();
    topology
        .wait_for_new_master(&old, Duration::from_secs(30))
        .unwrap();
    let writer = {
        let pool = pool.clone();
        thread::spawn(move || {
            let until = Instant::now() + Duration::from_secs(8);
            let mut n = 0u64;
            while Instant::now() < until {
                n += 1;
                pool.with_retry_idempotent(|c| c.set::<_, _, ()>(format!("late:{n}"), n))
                    .unwrap();
            }
            n
        })
    };
    topology.restart(&old).unwrap();
    // Watch it until Sentinel converts it: while it says master, it must hold no key.
    let mut seen_as_master = 0;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        assert!(
            Instant::now() < deadline,
            "Sentinel never converted the old master"
        );
        // Sentinel's conversion kills the node's clients (ours too, even mid-handshake): a
        // connection that fails is tried again at the next poll.
        let looked = redis::Client::open(format!("redis://{old}"))
            .unwrap()
            .get_connection_with_timeout(Duration::from_secs(2))
            .and_then(|mut conn| {
                let role: redis::Role = redis::cmd("ROLE").query(&mut conn)?;
                let keys: u64 = redis::cmd("DBSIZE").query(&mut conn)?;
                Ok((role, keys))
            });
        match looked {
            Ok((redis::Role::Primary { .. }, keys)) => {
                seen_as_master += 1;
                assert_eq!(
                    keys, 0,
                    "a write reached the old master while it believed it was master"
                );
            }
            Ok(_) => break,
            Err(err) => log::debug!("looking at the old master: {err}"),
        }
        thread::sleep(Duration::from_millis(20));
    }
    let written = writer.join().unwrap();
    assert!(
        seen_as_master > 0,
        "the old master was never seen as master"
    );
    assert!(written > 0);
    // On the master the sentinels name: the promoted one, unless Sentinel has since failed a
    // busy master over by itself (the test topology's 1 s down-after); the pool follows that
    // too.
    eventually(
        "the pool to be on the sentinels' master",
        Duration::from_secs(10),
        || {
            let named = topology.master().ok()?;
            (pool.master() == Some(named)).then_some(())
        },
    );
}
