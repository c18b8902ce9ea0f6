//! What the tests and the benchmarks share, so that neither includes the other's files: the
//! helpers every test uses (this file), the fence's writer and stalled failovers ([`fence`]),
//! the chaos harness ([`chaos`]), the `docker/` deployment ([`docker`]), and the benches'
//! contenders and interleaved measurement ([`bench`], [`interleave`]). Each test starts its
//! own topology. Not published.

pub mod bench;
pub mod chaos;
pub mod docker;
pub mod fence;
pub mod interleave;

use std::time::{Duration, Instant};

use r2d2_redis_sentinel::{Connection, NodeAddr, redis, testkit::Topology};

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

/// The last command the server at `node` saw on connection `id`, asked from outside the pool:
/// `role` after a checkout that asked `PING`+`ROLE`.
pub fn last_command(node: &NodeAddr, id: i64) -> String {
    // `CLIENT LIST ID` needs Redis 6.2: every client, then the one.
    let list: String = redis::cmd("CLIENT")
        .arg("LIST")
        .query(&mut direct(node))
        .unwrap();
    let id = format!("id={id}");
    let line = list
        .lines()
        .find(|l| l.split_whitespace().any(|f| f == id))
        .unwrap();
    line.split_whitespace()
        .find_map(|field| field.strip_prefix("cmd="))
        .unwrap()
        .to_owned()
}

/// Asserts that a checkout handed out nothing because the node answered `ROLE` as a replica
/// (linked to its master yet or not: Redis 6.0 takes longer to sync).
pub fn assert_refused_as_replica(
    checkout: Result<r2d2_redis_sentinel::PooledConnection, r2d2_redis_sentinel::Error>,
) {
    use r2d2_redis_sentinel::Error;
    match checkout {
        Err(Error::CheckoutTimeout { cause, .. }) => assert!(
            matches!(*cause, Error::WrongRole { ref actual, .. } if actual.starts_with("replica")),
            "unexpected cause {cause:?}"
        ),
        Err(other) => panic!("expected a checkout timeout caused by the role, got {other:?}"),
        Ok(mut conn) => panic!("a connection to a {:?} was handed out", conn.role()),
    }
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

/// Waits until every sentinel flags each of `replicas` down (`down`) or healthy, for at most
/// `timeout`.
pub fn wait_flagged(topology: &Topology, replicas: &[NodeAddr], down: bool, timeout: Duration) {
    eventually("the sentinels to see the replicas' state", timeout, || {
        topology
            .sentinel_addrs()
            .iter()
            .all(|s| {
                let listed: Vec<std::collections::HashMap<String, String>> = redis::cmd("SENTINEL")
                    .arg(&["REPLICAS", topology.service()])
                    .query(&mut direct(s))
                    .unwrap();
                replicas.iter().all(|r| {
                    listed.iter().any(|l| {
                        l.get("port") == Some(&r.port.to_string())
                            && l.get("flags").is_some_and(|f| f.contains("s_down")) == down
                    })
                })
            })
            .then_some(())
    });
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

/// Every data node of the topology but `master`.
pub fn replicas(
    topology: &r2d2_redis_sentinel::testkit::Topology,
    master: &NodeAddr,
) -> Vec<NodeAddr> {
    topology
        .data_addrs()
        .into_iter()
        .filter(|a| a != master)
        .collect()
}

/// Makes `replica` leave `master` as a failover's candidate does first (`REPLICAOF NO ONE`),
/// and waits until the master lists it no more (one replica left of two).
pub fn detach(master: &NodeAddr, replica: &NodeAddr) {
    promote(replica);
    eventually(
        "the master to list one replica",
        Duration::from_secs(10),
        || match redis::cmd("ROLE").query(&mut direct(master)).unwrap() {
            redis::Role::Primary { replicas, .. } => (replicas.len() == 1).then_some(()),
            _ => None,
        },
    );
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

/// A TCP proxy on a free loopback port to `target`: what a NAT or a published Docker port
/// looks like from the client. Counts the connections it forwarded.
pub struct Proxy {
    pub addr: NodeAddr,
    accepted: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Proxy {
    pub fn start(target: &NodeAddr) -> Self {
        use std::sync::{
            Arc,
            atomic::{AtomicBool, AtomicUsize, Ordering},
        };
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let (accepted, stop) = (
            Arc::new(AtomicUsize::new(0)),
            Arc::new(AtomicBool::new(false)),
        );
        let target = format!("{}:{}", target.host, target.port);
        let thread = {
            let (accepted, stop) = (Arc::clone(&accepted), Arc::clone(&stop));
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let Ok((client, _)) = listener.accept() else {
                        std::thread::sleep(Duration::from_millis(5));
                        continue;
                    };
                    let _ = client.set_nonblocking(false);
                    let Ok(server) = std::net::TcpStream::connect(&target) else {
                        continue;
                    };
                    accepted.fetch_add(1, Ordering::Relaxed);
                    for (mut from, mut to) in [
                        (client.try_clone().unwrap(), server.try_clone().unwrap()),
                        (server, client),
                    ] {
                        std::thread::spawn(move || {
                            let _ = std::io::copy(&mut from, &mut to);
                            let _ = to.shutdown(std::net::Shutdown::Both);
                        });
                    }
                }
            })
        };
        Proxy {
            addr: NodeAddr::new("127.0.0.1", port),
            accepted,
            stop,
            thread: Some(thread),
        }
    }

    pub fn connections(&self) -> usize {
        self.accepted.load(std::sync::atomic::Ordering::Relaxed)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// True (after saying so) when the topology's server is older than `major.minor`: the calling
/// test returns, skipped, since what it tries does not exist there.
pub fn older_than(topology: &Topology, major: u32, minor: u32, what: &str) -> bool {
    let version = topology.server_version();
    let older = !version.at_least(major, minor);
    if older {
        eprintln!("skipped on {version}: {what} needs Redis {major}.{minor} or later");
    }
    older
}

/// Creates the ACL user `name` with `rules` on every data node (ACLs are not replicated).
pub fn acl_user_everywhere(topology: &Topology, name: &str, rules: &[&str]) {
    for node in topology.data_addrs() {
        let _: () = redis::cmd("ACL")
            .arg("SETUSER")
            .arg(name)
            .arg(acl_rules(topology, rules))
            .query(&mut direct(&node))
            .unwrap();
    }
}

/// ACL rules with `&*` (all pub/sub channels, which Redis 6.2 stopped allowing by default)
/// left out on a server too old to know the rule: there every channel is allowed.
pub fn acl_rules<'a>(topology: &Topology, rules: &[&'a str]) -> Vec<&'a str> {
    let channels = topology.server_version().at_least(6, 2);
    rules
        .iter()
        .copied()
        .filter(|r| channels || *r != "&*")
        .collect()
}
