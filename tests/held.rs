//! A connection checked out across a failover (or an invalidation) refuses to send: its next
//! request fails with an error that says it was not sent, which `with_retry` retries on the
//! new master.

use r2d2_redis_sentinel::{
    Error,
    redis::{self, Commands},
    testkit::Topology,
};
use support::{direct, init_logging};

#[test]
fn a_held_connection_refuses_requests_after_the_generation_moves() {
    init_logging();
    let topology = Topology::start().unwrap();
    let master = topology.master().unwrap();
    let pool = topology.pool_builder().max_size(2).build().unwrap();
    let mut held = pool.get().unwrap();
    let _: () = held.set("before", 1).unwrap();

    pool.invalidate();
    let err = held.set::<_, _, ()>("after", 1).unwrap_err();
    assert_eq!(err.code(), Some("STALE"), "{err:?}");
    assert!(
        Error::Redis(err.clone()).is_retryable(),
        "a request that was not sent is safe to retry: {err}"
    );
    let on_master: Option<i64> = direct(&master).get("after").unwrap();
    assert_eq!(on_master, None, "the refused request reached the node");
}

#[test]
fn with_retry_moves_a_multi_command_closure_to_the_new_generation() {
    init_logging();
    let topology = Topology::start().unwrap();
    let master = topology.master().unwrap();
    let pool = topology.pool_builder().max_size(2).build().unwrap();

    // Declared idempotent: the whole closure runs again in the new generation.
    let mut calls = 0;
    let generation = pool
        .with_retry_idempotent(|c| {
            calls += 1;
            let _: () = c.set("first", calls)?;
            if calls == 1 {
                pool.invalidate();
            }
            let _: () = c.set("second", calls)?;
            Ok(c.generation())
        })
        .unwrap();
    assert_eq!(calls, 2);
    assert_eq!(generation, pool.generation());
    let second: i64 = direct(&master).get("second").unwrap();
    assert_eq!(second, 2, "the second write of the first attempt was sent");

    // Not declared idempotent: the first write was applied, so the closure is not run again.
    let mut calls = 0;
    let err = pool
        .with_retry(|c| {
            calls += 1;
            let _: () = c.set("third", calls)?;
            pool.invalidate();
            redis::cmd("SET").arg("fourth").arg(calls).query::<()>(c)
        })
        .unwrap_err();
    assert!(matches!(err, Error::MaybeApplied { .. }), "{err:?}");
    assert_eq!(calls, 1);
}
