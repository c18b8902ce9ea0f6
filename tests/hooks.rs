//! What the builder hands to r2d2 and to the sockets: a connection customizer and an event
//! handler (on the master pool and its replica pools), a client name, TCP keepalive.

use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use r2d2_redis_sentinel::{
    Connection, Error, ReplicaOptions, r2d2,
    redis::{self, Commands},
    testkit::Topology,
};
use support::{client_id, eventually, init_logging};

/// Turns on client-side caching invalidations (`CLIENT TRACKING`, a session setting a caller
/// must not change) on every new connection, and counts them.
#[derive(Debug, Default)]
struct Tracking(Arc<AtomicUsize>);

impl r2d2::CustomizeConnection<Connection, Error> for Tracking {
    fn on_acquire(&self, conn: &mut Connection) -> Result<(), Error> {
        self.0.fetch_add(1, Ordering::Relaxed);
        redis::cmd("CLIENT")
            .arg("TRACKING")
            .arg("on")
            .query::<()>(conn)
            .map_err(Error::from)
    }
}

/// Checkouts and checkins seen by [`Counter`].
#[derive(Debug, Default)]
struct Counts {
    checkouts: AtomicUsize,
    checkins: AtomicUsize,
}

/// Counts checkouts and checkins into counts the test keeps.
#[derive(Debug)]
struct Counter(Arc<Counts>);

impl r2d2::HandleEvent for Counter {
    fn handle_checkout(&self, _: r2d2::event::CheckoutEvent) {
        self.0.checkouts.fetch_add(1, Ordering::Relaxed);
    }

    fn handle_checkin(&self, _: r2d2::event::CheckinEvent) {
        self.0.checkins.fetch_add(1, Ordering::Relaxed);
    }
}

/// A field of `CLIENT INFO`'s one line (`id=7 addr=127.0.0.1:50000 ... name=x ...`).
fn client_info(conn: &mut Connection, field: &str) -> String {
    let info: String = redis::cmd("CLIENT").arg("INFO").query(conn).unwrap();
    info.split_whitespace()
        .find_map(|pair| pair.strip_prefix(&format!("{field}=")))
        .unwrap_or_else(|| panic!("no {field} in {info}"))
        .to_owned()
}

#[test]
fn the_builders_customizer_and_event_handler_reach_master_and_replica_pools() {
    init_logging();
    let topology = Topology::start().unwrap();
    let acquired = Arc::new(AtomicUsize::new(0));
    let counts = Arc::new(Counts::default());
    let pool = topology
        .pool_builder()
        .max_size(1)
        .connection_customizer(Box::new(Tracking(Arc::clone(&acquired))))
        .event_handler(Box::new(Counter(Arc::clone(&counts))))
        .build()
        .unwrap();

    // What the customizer set is the connection's baseline: the same connection comes back
    // checkout after checkout, with tracking still on.
    let first = {
        let mut conn = pool.get().unwrap();
        assert_eq!(client_info(&mut conn, "flags"), "t", "tracking is on");
        client_id(&mut conn)
    };
    for _ in 0..3 {
        let mut conn = pool.get().unwrap();
        assert_eq!(
            client_id(&mut conn),
            first,
            "the customized connection is kept"
        );
        let _: () = conn.set("hooks:k", 1).unwrap();
    }
    assert_eq!(acquired.load(Ordering::Relaxed), 1);
    assert_eq!(counts.checkouts.load(Ordering::Relaxed), 4);
    assert_eq!(counts.checkins.load(Ordering::Relaxed), 4);

    // A replica pool made from the same builder uses both hooks.
    let replicas = pool.replica_pool(ReplicaOptions::default()).unwrap();
    let mut conn = replicas.get().unwrap();
    let role: Vec<redis::Value> = redis::cmd("ROLE").query(&mut *conn).unwrap();
    assert_eq!(role[0], redis::Value::BulkString(b"slave".to_vec()));
    assert_eq!(client_info(&mut conn, "flags"), "t", "tracking is on");
    drop(conn);
    assert_eq!(acquired.load(Ordering::Relaxed), 2);
    assert_eq!(counts.checkouts.load(Ordering::Relaxed), 5);
}

#[test]
fn every_data_connection_carries_the_client_name_and_keepalive() {
    init_logging();
    let mut topology = Topology::start().unwrap();
    let pool = topology
        .pool_builder()
        .client_name("orders-api")
        .tcp_keepalive(Some(Duration::from_secs(30)))
        .build()
        .unwrap();
    let mut conn = pool.get().unwrap();
    assert_eq!(client_info(&mut conn, "name"), "orders-api");
    // The kernel's keepalive timer is armed on the client's socket: /proc/net/tcp lists it
    // with timer kind 2 (keepalive) on the connection's local port.
    let port = local_port(&mut conn);
    assert_eq!(timer_kind(port), Some(2), "keepalive armed on port {port}");
    drop(conn);

    // A connection to the successor of a crashed master is named as well.
    let old = topology.kill_master().unwrap();
    let mut conn = eventually(
        "a connection to the new master",
        Duration::from_secs(30),
        || pool.get().ok().filter(|c| c.addr() != &old),
    );
    assert_eq!(client_info(&mut conn, "name"), "orders-api");

    // Without keepalive, the timer is off.
    let plain = topology.pool_builder().tcp_keepalive(None).build().unwrap();
    let mut conn = plain.get().unwrap();
    assert_eq!(client_info(&mut conn, "name"), "", "no name unless asked");
    let port = local_port(&mut conn);
    assert_eq!(timer_kind(port), Some(0), "no timer on port {port}");
}

/// The client's own port, as the server sees it (`addr=127.0.0.1:50000`).
fn local_port(conn: &mut Connection) -> u16 {
    let addr = client_info(conn, "addr");
    addr.rsplit_once(':').unwrap().1.parse().unwrap()
}

/// The `tr` (timer kind) of the established IPv4 socket bound to loopback `port`, from
/// /proc/net/tcp (an older socket of the same port may linger there in `TIME_WAIT`).
fn timer_kind(port: u16) -> Option<u8> {
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap();
    let local = format!("0100007F:{port:04X}");
    table.lines().skip(1).find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        // Column 3 is the state; 01 is ESTABLISHED.
        (fields.get(1) == Some(&local.as_str()) && fields.get(3) == Some(&"01"))
            .then(|| fields[5].split(':').next()?.parse().ok())
            .flatten()
    })
}
