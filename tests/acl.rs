//! Least-privilege ACL users (`+@all -@dangerous`, so no `ROLE`) can use the pool: roles are
//! then asked with `HELLO`, which every user may run, and a demoted node is still never
//! handed out. A permission the pool cannot do without gets its own error.

use std::time::Duration;

use r2d2_redis_sentinel::{
    Error,
    redis::{self, Commands},
    testkit::Topology,
};
use support::{acl_user_everywhere, direct, init_logging};

#[test]
fn a_user_without_dangerous_commands_uses_the_pool_and_a_demoted_node_is_still_refused() {
    init_logging();
    let topology = Topology::start().unwrap();
    let master = topology.master().unwrap();
    acl_user_everywhere(
        &topology,
        "app",
        &["on", ">app-pass", "~*", "&*", "+@all", "-@dangerous"],
    );
    let pool = topology
        .pool_builder()
        .username("app")
        .password("app-pass")
        .max_size(1)
        .watcher(false)
        .checkout_timeout(Duration::from_secs(1))
        .build()
        .unwrap();
    let mut conn = pool.get().unwrap();
    let _: () = conn.set("k", "v").unwrap();
    // `ACL WHOAMI` is allowed to such a user from Redis 7.0 (subcommand categories).
    if topology.server_version().at_least(7, 0) {
        let who: String = redis::cmd("ACL").arg("WHOAMI").query(&mut *conn).unwrap();
        assert_eq!(who, "app");
    }
    drop(conn);

    // Demoted behind the sentinels' back: the role check (HELLO) still refuses it.
    let replica = support::replica(&topology, &master);
    support::demote(&master, &replica);
    // Whatever Sentinel does meanwhile, no connection to a non-master is handed out.
    match pool.get() {
        Err(Error::CheckoutTimeout { cause, .. }) => assert!(
            matches!(
                *cause,
                Error::WrongRole { ref actual, .. } if actual == "replica"
            ) || cause.is_timeout(),
            "{cause:?}"
        ),
        Err(other) => panic!("expected a checkout timeout, got {other:?}"),
        Ok(conn) => {
            let role: redis::Role = redis::cmd("ROLE").query(&mut direct(conn.addr())).unwrap();
            assert!(
                matches!(role, redis::Role::Primary { .. }),
                "a connection to a {role:?} was handed out"
            );
        }
    }
    support::promote(&master);
    let value: String = pool.get().unwrap().get("k").unwrap();
    assert_eq!(value, "v");
}

#[test]
fn a_permission_the_pool_needs_gets_its_own_error() {
    init_logging();
    let topology = Topology::start().unwrap();
    acl_user_everywhere(
        &topology,
        "narrow",
        &[
            "on",
            ">narrow-pass",
            "~*",
            "&*",
            "+@all",
            "-@dangerous",
            "-select",
        ],
    );
    let err = topology
        .pool_builder()
        .username("narrow")
        .password("narrow-pass")
        .db(1)
        .checkout_timeout(Duration::from_secs(1))
        .build()
        .unwrap_err();
    match &err {
        Error::NoPermission { command, .. } => assert_eq!(*command, "SELECT"),
        other => panic!("expected NoPermission, got {other:?}"),
    }
    assert!(err.is_config());
    assert!(err.to_string().contains("+select"), "{err}");
}
