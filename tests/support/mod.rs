//! Helpers shared by the integration tests. Each test starts its own topology.

#![allow(dead_code, unreachable_pub)]

use std::time::{Duration, Instant};

use r2d2_redis_sentinel::{Connection, NodeAddr, redis};

/// Starts `env_logger` once, so `RUST_LOG=debug cargo test` shows what the pool did.
pub fn init_logging() {
    let _ = env_logger::builder().is_test(true).try_init();
}

/// The server-side id of the connection: two checkouts with the same id share a socket.
pub fn client_id(conn: &mut Connection) -> i64 {
    redis::cmd("CLIENT")
        .arg("ID")
        .query(conn)
        .expect("CLIENT ID")
}

/// True when the connection's node answers `ROLE` as master.
pub fn is_master(conn: &mut Connection) -> bool {
    matches!(conn.role(), Ok(redis::Role::Primary { .. }))
}

/// A plain connection straight to a node, bypassing the pool.
pub fn direct(addr: &NodeAddr) -> redis::Connection {
    redis::Client::open(format!("redis://{addr}"))
        .unwrap()
        .get_connection_with_timeout(Duration::from_secs(2))
        .unwrap()
}

/// Waits until the pool holds `count` idle connections (it opens them in the background).
pub fn wait_idle(pool: &r2d2_redis_sentinel::SentinelPool, count: u32) {
    eventually(
        &format!("{count} idle connections"),
        Duration::from_secs(10),
        || (pool.state().idle_connections == count).then_some(()),
    );
}

/// Polls `check` every 20 ms until it returns `Some`, or panics with `what` after `timeout`.
pub fn eventually<T>(what: &str, timeout: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A TCP server that accepts connections and never answers: a hung sentinel or master (a
/// SIGSTOPped process looks the same from outside: the kernel still accepts).
pub struct HungServer {
    pub addr: std::net::SocketAddr,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl HungServer {
    pub fn start() -> Self {
        use std::sync::{
            Arc,
            atomic::{AtomicBool, Ordering},
        };
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            let mut held = Vec::new();
            while !flag.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((socket, _)) => held.push(socket),
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        HungServer {
            addr,
            stop,
            thread: Some(thread),
        }
    }

    pub fn url(&self) -> String {
        format!("redis://{}", self.addr)
    }
}

impl Drop for HungServer {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// A loopback port with nothing listening on it.
pub fn closed_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A data node of `topology` other than `master`.
pub fn replica(topology: &r2d2_redis_sentinel::testkit::Topology, master: &NodeAddr) -> NodeAddr {
    topology
        .data_addrs()
        .into_iter()
        .find(|a| a != master)
        .expect("the topology has a replica")
}

/// Demotes `node` to a replica of `of`, behind the sentinels' back.
pub fn demote(node: &NodeAddr, of: &NodeAddr) {
    let _: () = redis::cmd("REPLICAOF")
        .arg(&of.host)
        .arg(of.port)
        .query(&mut direct(node))
        .unwrap();
}

/// Promotes `node` back to master, behind the sentinels' back.
pub fn promote(node: &NodeAddr) {
    let _: () = redis::cmd("REPLICAOF")
        .arg("NO")
        .arg("ONE")
        .query(&mut direct(node))
        .unwrap();
}
