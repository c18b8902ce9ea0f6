//! A connection left in a bad state by its caller is never handed to the next one. Each
//! case runs with both validation modes: the state is tracked, not only caught by `PING`.

use std::time::Duration;

use r2d2_redis_sentinel::{
    SentinelPool, Validation,
    redis::{self, Commands},
    testkit::Topology,
};
use support::{client_id, init_logging};

/// A one-connection pool, so the next checkout gets the same socket unless it was discarded.
fn pool(topology: &Topology, validation: Validation) -> SentinelPool {
    topology
        .pool_builder()
        .max_size(1)
        .validation(validation)
        .read_timeout(Duration::from_millis(300))
        .build()
        .unwrap()
}

/// Runs `misuse` on a checked-out connection, returns it, and checks that the next checkout is
/// a different, working connection.
fn assert_not_reused(
    pool: &SentinelPool,
    misuse: impl FnOnce(&mut r2d2_redis_sentinel::Connection),
) {
    let mut conn = pool.get().unwrap();
    let id = client_id(&mut conn);
    misuse(&mut conn);
    drop(conn);

    let mut next = pool.get().unwrap();
    assert_ne!(
        client_id(&mut next),
        id,
        "the misused connection was handed out again"
    );
    let _: () = next.set("k", "v").unwrap();
    let value: String = next.get("k").unwrap();
    assert_eq!(value, "v");
}

#[test]
fn a_clean_connection_is_reused() {
    init_logging();
    let topology = Topology::start().unwrap();
    for validation in [Validation::ADAPTIVE, Validation::PingRole, Validation::Off] {
        let pool = pool(&topology, validation);
        let id = client_id(&mut pool.get().unwrap());
        assert_eq!(client_id(&mut pool.get().unwrap()), id, "{validation:?}");
    }
}

#[test]
fn a_connection_returned_inside_multi_is_not_reused() {
    init_logging();
    let topology = Topology::start().unwrap();
    for validation in [Validation::ADAPTIVE, Validation::PingRole, Validation::Off] {
        assert_not_reused(&pool(&topology, validation), |c| {
            redis::cmd("MULTI").query::<()>(c).unwrap();
            let queued: String = c.set("k", "queued").unwrap();
            assert_eq!(queued, "QUEUED");
        });
    }
}

#[test]
fn a_finished_transaction_leaves_the_connection_reusable() {
    init_logging();
    let topology = Topology::start().unwrap();
    let pool = pool(&topology, Validation::Off);
    let mut conn = pool.get().unwrap();
    let id = client_id(&mut conn);
    redis::cmd("MULTI").query::<()>(&mut conn).unwrap();
    let _: String = conn.incr("n", 1).unwrap();
    let _: Vec<i64> = redis::cmd("EXEC").query(&mut conn).unwrap();
    drop(conn);
    assert_eq!(client_id(&mut pool.get().unwrap()), id);
}

#[test]
fn a_subscribed_connection_is_not_reused() {
    init_logging();
    let topology = Topology::start().unwrap();
    for validation in [Validation::ADAPTIVE, Validation::PingRole, Validation::Off] {
        assert_not_reused(&pool(&topology, validation), |c| {
            let _: redis::Value = redis::cmd("SUBSCRIBE").arg("news").query(c).unwrap();
        });
    }
}

#[test]
fn a_connection_that_timed_out_mid_reply_is_not_reused() {
    init_logging();
    let topology = Topology::start().unwrap();
    for validation in [Validation::ADAPTIVE, Validation::PingRole, Validation::Off] {
        let pool = pool(&topology, validation);
        assert_not_reused(&pool, |c| {
            let err = c.blpop::<_, ()>("empty", 1.0).unwrap_err();
            assert!(err.is_timeout(), "{err:?}");
        });
    }
}

#[test]
fn a_connection_returned_during_a_panic_is_not_reused() {
    init_logging();
    let topology = Topology::start().unwrap();
    for validation in [Validation::ADAPTIVE, Validation::PingRole, Validation::Off] {
        let pool = pool(&topology, validation);
        let id = client_id(&mut pool.get().unwrap());
        let worker = pool.clone();
        let joined = std::thread::spawn(move || {
            let _conn = worker.get().unwrap();
            panic!("the caller panics while holding a connection");
        })
        .join();
        assert!(joined.is_err());
        assert_ne!(client_id(&mut pool.get().unwrap()), id, "{validation:?}");
    }
}

#[test]
fn a_connection_whose_session_state_was_changed_is_not_reused() {
    init_logging();
    let topology = Topology::start().unwrap();
    let master = topology.master().unwrap();
    let _: () = redis::cmd("ACL")
        .arg(support::acl_rules(
            &topology,
            &["SETUSER", "other", "on", ">other-pass", "+@all", "~*", "&*"],
        ))
        .query(&mut support::direct(&master))
        .unwrap();
    for validation in [Validation::ADAPTIVE, Validation::PingRole, Validation::Off] {
        let pool = pool(&topology, validation);
        // RESET ends MULTI, but also logs out to `default`, selects db 0 and reverts to RESP2
        // (Redis 6.2 and later).
        if topology.server_version().at_least(6, 2) {
            assert_not_reused(&pool, |c| {
                let _: String = redis::cmd("RESET").query(c).unwrap();
            });
        }
        assert_not_reused(&pool, |c| {
            redis::cmd("SELECT").arg(3).query::<()>(c).unwrap();
        });
        assert_not_reused(&pool, |c| {
            redis::cmd("WATCH").arg("k").query::<()>(c).unwrap();
        });
        assert_not_reused(&pool, |c| {
            redis::cmd("AUTH")
                .arg("other")
                .arg("other-pass")
                .query::<()>(c)
                .unwrap();
        });
        assert_not_reused(&pool, |c| {
            redis::cmd("CLIENT")
                .arg("SETNAME")
                .arg("borrowed")
                .query::<()>(c)
                .unwrap();
        });
        // A pipeline that repeats a command is looked at once per name, but not where an
        // argument changes what it does: `HELLO` reports, `HELLO 2` may switch the session.
        // (`HELLO` with no argument came with Redis 6.2.)
        if topology.server_version().at_least(6, 2) {
            assert_not_reused(&pool, |c| {
                redis::pipe()
                    .cmd("HELLO")
                    .ignore()
                    .cmd("HELLO")
                    .arg(2)
                    .ignore()
                    .query::<()>(c)
                    .unwrap();
            });
        }
    }
}

#[test]
fn a_finished_watch_leaves_the_connection_reusable() {
    init_logging();
    let topology = Topology::start().unwrap();
    let pool = pool(&topology, Validation::Off);
    let mut conn = pool.get().unwrap();
    let id = client_id(&mut conn);
    redis::cmd("WATCH").arg("k").query::<()>(&mut conn).unwrap();
    redis::cmd("UNWATCH").query::<()>(&mut conn).unwrap();
    drop(conn);
    assert_eq!(client_id(&mut pool.get().unwrap()), id);
}
