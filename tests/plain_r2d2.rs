//! The manager in a plain `r2d2::Pool`, built the r2d2 way (customizer, event handler, any
//! code generic over `r2d2::Pool<M>`), a lazy start, and a per-call read timeout.

use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use r2d2_redis_sentinel::{
    Connection, Error, Event, SentinelManager, WatcherState, r2d2,
    redis::{self, Commands},
    testkit::Topology,
};
use support::{eventually, init_logging, is_master};

/// Sets a client name on every new connection, and counts them.
#[derive(Debug, Default)]
struct Named(Arc<AtomicUsize>);

impl r2d2::CustomizeConnection<Connection, Error> for Named {
    fn on_acquire(&self, conn: &mut Connection) -> Result<(), Error> {
        self.0.fetch_add(1, Ordering::Relaxed);
        redis::cmd("CLIENT")
            .arg("SETNAME")
            .arg("worker")
            .query::<()>(conn)
            .map_err(Error::from)
    }
}

#[test]
fn a_plain_r2d2_pool_over_the_manager_follows_a_failover() {
    init_logging();
    let topology = Topology::start().unwrap();
    let manager: SentinelManager = topology.pool_builder().build_manager().unwrap();
    // A handle kept for events and the watcher's state; the pool owns another.
    let handle = manager.clone();
    let events = handle.events();
    let acquired = Arc::new(AtomicUsize::new(0));
    let pool = r2d2::Pool::builder()
        .max_size(2)
        .connection_customizer(Box::new(Named(Arc::clone(&acquired))))
        .build(manager)
        .unwrap();
    let mut conn = pool.get().unwrap();
    let name: String = redis::cmd("CLIENT")
        .arg("GETNAME")
        .query(&mut *conn)
        .unwrap();
    assert_eq!(name, "worker");
    assert!(acquired.load(Ordering::Relaxed) >= 1);
    drop(conn);

    // The manager's watcher follows the failover; the r2d2 pool never hands out the old master.
    eventually("the watcher to subscribe", Duration::from_secs(10), || {
        matches!(handle.watcher_state(), WatcherState::Running { ref subscribed } if subscribed.len() == 3)
            .then_some(())
    });
    let new = topology.failover().unwrap();
    eventually(
        "checkouts to reach the new master",
        Duration::from_secs(5),
        || {
            let mut conn = pool.get().ok()?;
            assert!(is_master(&mut conn), "{} is not a master", conn.addr());
            (*conn.addr() == new).then_some(())
        },
    );

    assert!(
        events.try_iter().any(
            |e| matches!(e, Event::Failover { ref new, .. } if *new == *pool.get().unwrap().addr())
        ),
        "the handle's events show the failover"
    );
    // A kept handle keeps the manager, and its watcher, alive after the pool is gone.
    drop(pool);
    assert!(matches!(
        handle.watcher_state(),
        WatcherState::Running { .. }
    ));
    handle.stop_watcher();
    assert_eq!(handle.watcher_state(), WatcherState::Stopped);
}

#[test]
fn a_lazy_pool_starts_before_its_sentinels_and_connects_once_they_answer() {
    init_logging();
    let mut topology = Topology::start().unwrap();
    let sentinels = topology.sentinel_addrs();
    for i in 0..sentinels.len() {
        topology.kill_sentinel(i).unwrap();
    }
    let pool = topology
        .pool_builder()
        .checkout_timeout(Duration::from_millis(500))
        .build_unchecked()
        .unwrap();
    match pool.get() {
        Err(Error::CheckoutTimeout { cause, .. }) => {
            assert!(
                matches!(*cause, Error::SentinelsUnreachable { .. }),
                "{cause:?}"
            )
        }
        other => panic!("expected a typed checkout error, got {other:?}"),
    }
    for sentinel in &sentinels {
        topology.restart(sentinel).unwrap();
    }
    eventually("the pool to connect", Duration::from_secs(20), || {
        pool.get()
            .ok()
            .map(|mut c| c.set::<_, _, ()>("k", "v").unwrap())
    });
}

#[test]
fn a_blocking_command_gets_its_own_read_timeout_for_one_call() {
    init_logging();
    let topology = Topology::start().unwrap();
    let pool = topology
        .pool_builder()
        .max_size(1)
        .read_timeout(Duration::from_millis(200))
        .build()
        .unwrap();
    let mut conn = pool.get().unwrap();
    let id = support::client_id(&mut conn);
    // BLPOP waits 1 s, longer than the pool's read timeout: give this call 3 s.
    let popped: Option<(String, String)> = conn
        .with_read_timeout(Duration::from_secs(3), |c| c.blpop("empty", 1.0))
        .unwrap();
    assert_eq!(popped, None);
    // The pool's read timeout is back for the next call.
    let err = conn
        .blpop::<_, Option<(String, String)>>("empty", 1.0)
        .unwrap_err();
    assert!(err.is_timeout(), "{err:?}");
    drop(conn);
    assert_ne!(support::client_id(&mut pool.get().unwrap()), id);
}
