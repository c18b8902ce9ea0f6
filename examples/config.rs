//! The ways to configure a pool, each run against a local topology it starts: a connection
//! string with parameters, the environment, TLS with your own CA and a client certificate,
//! and a plain `r2d2::Pool` from the manager with r2d2's own hooks.
//!
//! `cargo run --example config`

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

mod support;

use r2d2_redis_sentinel::{
    Connection, Error, SentinelPool, TlsOptions, r2d2,
    redis::{self, Commands},
    testkit::Topology,
};

fn main() -> std::process::ExitCode {
    support::finish(run())
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    env_logger::init();
    let topology = Topology::start()?;
    let sentinels: Vec<String> = topology
        .sentinel_addrs()
        .iter()
        .map(ToString::to_string)
        .collect();

    // 1. One string, as a service keeps it in one variable: sentinels (26379 when no port
    //    is given), the service, the db, and options as parameters.
    let url = format!(
        "redis+sentinel://{}/{}/0?connect_timeout=500ms&read_timeout=2s&max_size=8&\
         client_name=config-example",
        sentinels.join(","),
        topology.service()
    );
    let pool = SentinelPool::from_url(&url)?.build()?;
    let _: () = pool.with_retry_idempotent(|c| c.set("config:url", "yes"))?;
    println!(
        "from_url: {url}\n  -> master {}",
        pool.master().expect("built")
    );

    // 2. The environment: REDIS_SENTINEL_URL, or SENTINELS and SERVICE, and ADDRESS_MAP.
    //    `from_env` returns None when neither is set, so a program can fall back.
    match SentinelPool::from_env()? {
        Some(builder) => println!("from_env: {builder:?}"),
        None => println!("from_env: neither REDIS_SENTINEL_URL nor SENTINELS is set"),
    }

    // 3. TLS to every node with your own CA and a client certificate (`tls-auth-clients
    //    yes`). Without them `TlsOptions::default()` checks against the platform's roots, and
    //    `rediss+sentinel://` in a connection string turns that on.
    let secure = Topology::builder().tls(true).start()?;
    let ca = secure
        .ca_certificate_pem()
        .expect("a TLS topology")
        .to_vec();
    let tls = secure.tls_options().expect("a TLS topology");
    let pool = SentinelPool::builder(secure.sentinel_urls(), secure.service())
        .tls(tls)
        .build()?;
    let pong: String = redis::cmd("PING").query(&mut *pool.get()?)?;
    println!(
        "TLS: PING -> {pong} over TLS to {} (CA of {} bytes, client certificate)",
        pool.master().expect("built"),
        ca.len()
    );
    // Not the CA that signed the nodes: refused, with a message that says so.
    let wrong = SentinelPool::builder(secure.sentinel_urls(), secure.service())
        .tls(TlsOptions::default())
        .sentinel_timeout(Duration::from_millis(500))
        .build();
    println!(
        "TLS without the CA: {}",
        wrong
            .err()
            .map_or("connected?!".to_owned(), |e| e.to_string())
    );

    // 4. A plain r2d2::Pool, built the r2d2 way, over the manager: for code generic over
    //    r2d2::Pool<M>. The same hooks exist on the builder (`connection_customizer`,
    //    `event_handler`), which keeps with_retry and stats().
    let opened = Arc::new(AtomicU64::new(0));
    let manager = topology.pool_builder().build_manager()?;
    let plain = r2d2::Pool::builder()
        .max_size(4)
        .connection_customizer(Box::new(Counted(Arc::clone(&opened))))
        .build(manager)?;
    let mut conn = plain.get()?;
    let _: () = conn.set("config:plain", 1)?;
    let name: String = redis::cmd("CLIENT").arg("GETNAME").query(&mut *conn)?;
    println!(
        "plain r2d2::Pool: {} connections opened, each named {name:?}",
        opened.load(Ordering::Relaxed)
    );
    Ok(())
}

/// Names every new connection and counts them: r2d2's customizer, on the plain pool.
#[derive(Debug)]
struct Counted(Arc<AtomicU64>);

impl r2d2::CustomizeConnection<Connection, Error> for Counted {
    fn on_acquire(&self, conn: &mut Connection) -> Result<(), Error> {
        self.0.fetch_add(1, Ordering::Relaxed);
        redis::cmd("CLIENT")
            .arg("SETNAME")
            .arg("plain-r2d2")
            .query::<()>(conn)?;
        Ok(())
    }
}
