//! Sentinels that answer with garbage, lies or errors: each is that sentinel's fault. Alone it
//! gives a typed error that is not a configuration error (the service name is not blamed);
//! first in a list of real sentinels, the next one is asked and the pool works. Nothing
//! panics.

use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use r2d2_redis_sentinel::{
    Error, SentinelPool,
    redis::Commands,
    testkit::{Reply, ScriptedServer, Topology},
};
use support::init_logging;

/// A "sentinel" that answers `ROLE` with `role` and `SENTINEL MASTER` with `master`;
/// `GET-MASTER-ADDR-BY-NAME` names an address (the service is known).
fn liar(role: Reply, master: Reply) -> ScriptedServer {
    ScriptedServer::start(move |cmd: &[String]| match cmd[0].as_str() {
        "ROLE" => role.clone(),
        "SENTINEL" if cmd.get(1).is_some_and(|s| s.eq_ignore_ascii_case("master")) => {
            master.clone()
        }
        "SENTINEL" => Reply::raw("*2\r\n$9\r\n127.0.0.1\r\n$4\r\n6379\r\n"),
        _ => Reply::raw("+OK\r\n"),
    })
    .unwrap()
}

fn cases() -> Vec<(&'static str, Reply, Reply)> {
    let healthy = [
        ("ip", "127.0.0.1"),
        ("port", "6379"),
        ("flags", "master"),
        ("config-epoch", "1"),
    ];
    let without = |field: &str| {
        let pairs: Vec<(&str, &str)> = healthy
            .iter()
            .copied()
            .filter(|(k, _)| *k != field)
            .collect();
        Reply::fields(&pairs)
    };
    let huge = {
        let mut out = String::from("*100000\r\n");
        for i in 0..100_000 {
            out.push_str(&format!(":{i}\r\n"));
        }
        Reply::raw(out)
    };
    vec![
        ("no port", Reply::sentinel_role(), without("port")),
        ("no ip", Reply::sentinel_role(), without("ip")),
        ("no epoch", Reply::sentinel_role(), without("config-epoch")),
        (
            "a port that is no number",
            Reply::sentinel_role(),
            Reply::fields(&[
                ("ip", "127.0.0.1"),
                ("port", "six"),
                ("flags", "master"),
                ("config-epoch", "1"),
            ]),
        ),
        ("an array of 100,000 integers", Reply::sentinel_role(), huge),
        (
            "an ERR that is not about the name",
            Reply::sentinel_role(),
            Reply::raw("-ERR something went wrong\r\n"),
        ),
        (
            "an error where an array belongs",
            Reply::sentinel_role(),
            Reply::raw("-BUSY busy running a script\r\n"),
        ),
        (
            "a ROLE reply of the wrong shape",
            Reply::raw("*1\r\n:5\r\n"),
            Reply::fields(&healthy),
        ),
        ("a close mid-request", Reply::sentinel_role(), Reply::Close),
    ]
}

#[test]
fn a_lying_sentinel_alone_is_a_sentinel_fault_not_a_configuration_error() {
    init_logging();
    for (what, role, master) in cases() {
        let server = liar(role, master);
        let err = SentinelPool::builder([server.url()], "mymaster")
            .sentinel_timeout(Duration::from_millis(500))
            .checkout_timeout(Duration::from_millis(200))
            .build()
            .map(|_| ())
            .unwrap_err();
        assert!(
            matches!(err, Error::SentinelsUnreachable { .. }),
            "{what}: {err:?}"
        );
        assert!(!err.is_config(), "{what}: {err}");
    }
}

#[test]
fn a_lying_sentinel_first_in_the_list_is_skipped_for_the_next() {
    init_logging();
    let topology = Topology::start().unwrap();
    for (what, role, master) in cases() {
        let server = liar(role, master);
        let mut sentinels = vec![server.url()];
        sentinels.extend(topology.sentinel_urls());
        let pool = SentinelPool::builder(sentinels, "mymaster")
            .sentinel_timeout(Duration::from_millis(500))
            .watcher(false)
            .build()
            .unwrap_or_else(|err| panic!("{what}: {err}"));
        let _: () = pool.get().unwrap().set("k", what).unwrap();
        assert_eq!(pool.master(), Some(topology.master().unwrap()), "{what}");
    }
}

#[test]
fn a_sentinel_that_does_not_know_the_name_still_says_so() {
    init_logging();
    let server = ScriptedServer::start(|cmd: &[String]| match cmd[0].as_str() {
        "ROLE" => Reply::sentinel_role(),
        "SENTINEL" if cmd[1].eq_ignore_ascii_case("master") => {
            Reply::raw("-ERR No such master with that name\r\n")
        }
        "SENTINEL" => Reply::raw("$-1\r\n"),
        _ => Reply::raw("+OK\r\n"),
    })
    .unwrap();
    let err = SentinelPool::builder([server.url()], "nosuch")
        .build()
        .map(|_| ())
        .unwrap_err();
    assert!(matches!(err, Error::UnknownService { .. }), "{err:?}");
}

/// A Sentinel-compatible endpoint that answers lookups only (`SENTINEL
/// GET-MASTER-ADDR-BY-NAME`, forwarded here to a real sentinel; no `ROLE`, no `SENTINEL
/// MASTER`, no pub/sub), as a managed service's discovery endpoint does: the pool works
/// through it, the watcher says it does not subscribe there, and a failover is followed
/// through lookups and role checks.
#[test]
fn a_lookup_only_endpoint_is_enough_to_use_the_pool_and_follow_a_failover() {
    init_logging();
    let topology = Topology::start().unwrap();
    let real = topology.sentinel_addrs()[0].clone();
    let asked = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let endpoint = {
        let asked = std::sync::Arc::clone(&asked);
        ScriptedServer::start(move |cmd: &[String]| {
            let lookup = cmd[0] == "SENTINEL"
                && cmd
                    .get(1)
                    .is_some_and(|s| s.eq_ignore_ascii_case("get-master-addr-by-name"));
            if !lookup {
                return Reply::raw(format!("-ERR unknown command '{}'\r\n", cmd[0]));
            }
            asked.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let answer: Option<(String, u16)> = r2d2_redis_sentinel::redis::cmd("SENTINEL")
                .arg(&cmd[1..])
                .query(&mut support::direct(&real))
                .unwrap();
            match answer {
                Some((host, port)) => {
                    let port = port.to_string();
                    Reply::raw(format!(
                        "*2\r\n${}\r\n{host}\r\n${}\r\n{port}\r\n",
                        host.len(),
                        port.len()
                    ))
                }
                None => Reply::raw("*-1\r\n"),
            }
        })
        .unwrap()
    };
    let pool = SentinelPool::builder([endpoint.url()], topology.service())
        .build()
        .unwrap();
    let _: () = pool.with_retry(|c| c.set("k", "before")).unwrap();
    assert_eq!(pool.master(), Some(topology.master().unwrap()));
    assert!(asked.load(std::sync::atomic::Ordering::Relaxed) > 0);
    support::eventually(
        "the watcher to say it does not subscribe there",
        Duration::from_secs(10),
        || {
            pool.events().try_iter().find_map(|e| match e {
                r2d2_redis_sentinel::Event::WatcherDisconnected { error, .. }
                    if error.contains("lookup-only") =>
                {
                    Some(())
                }
                _ => None,
            })
        },
    );

    let new = topology.failover().unwrap();
    let by: r2d2_redis_sentinel::NodeAddr =
        support::eventually("a write on the new master", Duration::from_secs(30), || {
            pool.with_retry(|c| {
                c.set::<_, _, ()>("k", "after")?;
                Ok(c.addr().clone())
            })
            .ok()
            .filter(|by| *by == new)
        });
    assert_eq!(by, new);
}

/// A checkout that times out says why its connects failed. Here the master answers its first
/// `ROLE` as a replica, then never answers `ROLE` again: the connect's second attempt waits
/// until the checkout's deadline cuts it short. The cause is the wrong role, not that the last
/// attempt ran out of time.
#[test]
fn a_checkout_reports_why_connects_failed_not_that_the_last_ran_out_of_time() {
    init_logging();
    let asked = Arc::new(AtomicUsize::new(0));
    let master =
        {
            let asked = Arc::clone(&asked);
            ScriptedServer::start(move |cmd: &[String]| match cmd[0].to_ascii_uppercase().as_str() {
            "ROLE" if asked.fetch_add(1, Ordering::SeqCst) == 0 => Reply::raw(
                "*5\r\n$5\r\nslave\r\n$9\r\n127.0.0.1\r\n:6379\r\n$9\r\nconnected\r\n:1\r\n",
            ),
            "ROLE" => Reply::Silence,
            "COMMAND" => Reply::raw("*0\r\n"),
            "PING" => Reply::raw("+PONG\r\n"),
            _ => Reply::raw("+OK\r\n"),
        })
        .unwrap()
        };
    let port = master.addr().port().to_string();
    let sentinel = ScriptedServer::start(move |cmd: &[String]| {
        let sub = cmd.get(1).map(|s| s.to_ascii_uppercase());
        match (cmd[0].to_ascii_uppercase().as_str(), sub.as_deref()) {
            ("ROLE", _) => Reply::sentinel_role(),
            ("SENTINEL", Some("MASTER")) => Reply::fields(&[
                ("ip", "127.0.0.1"),
                ("port", &port),
                ("flags", "master"),
                ("config-epoch", "1"),
            ]),
            ("SENTINEL", Some("GET-MASTER-ADDR-BY-NAME")) => Reply::raw(format!(
                "*2\r\n$9\r\n127.0.0.1\r\n${}\r\n{port}\r\n",
                port.len()
            )),
            ("SENTINEL", _) => Reply::raw("*0\r\n"),
            _ => Reply::raw("+OK\r\n"),
        }
    })
    .unwrap();
    // One connect, started at build: its deadline (1 s) comes before the checkout's (1.5 s).
    let pool = SentinelPool::builder([sentinel.url()], "mymaster")
        .watcher(false)
        .max_size(1)
        .checkout_timeout(Duration::from_secs(1))
        .read_timeout(Duration::from_secs(5))
        .build_unchecked()
        .unwrap();
    match pool.get_timeout(Duration::from_millis(1500)) {
        Err(Error::CheckoutTimeout { cause, .. }) => {
            assert!(matches!(*cause, Error::WrongRole { .. }), "{cause}");
        }
        other => panic!("{other:?}"),
    }
    assert!(
        asked.load(Ordering::SeqCst) >= 2,
        "a second attempt was cut short"
    );
}
