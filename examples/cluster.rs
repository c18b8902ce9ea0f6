//! The same code on Sentinel and on Cluster: one function, written against
//! `redis::ConnectionLike`, run through `SentinelPool::with_retry` and
//! `ClusterPool::with_retry` alike; then a shard of the cluster fails over under four writers,
//! who see no error.
//!
//! `cargo run --example cluster` starts a local Sentinel topology (1 master, 2 replicas, 3
//! sentinels) and a local Redis Cluster (3 primaries, 3 replicas) from the `redis-server` and
//! `redis-sentinel` on your PATH. To use your own: `REDIS_SENTINEL_URL=redis+sentinel://...`
//! (or `SENTINELS` and `SERVICE`) and `REDIS_CLUSTER_URL=redis+cluster://10.0.0.1:7000,...`
//! (or `CLUSTER_NODES=10.0.0.1:7000,...`); the failover runs only on the local cluster.

mod support;

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread,
    time::Duration,
};

use r2d2_redis_sentinel::{
    ClusterPool,
    redis::{self, Commands, ConnectionLike, RedisResult},
    testkit::Cluster,
};

/// Application code, written once: a user's visit, counted and stamped in one transaction.
/// The hash tag `{user:N}` keeps both keys in one slot, as a cluster needs; on Sentinel it
/// is just part of the name.
fn record_visit(conn: &mut impl ConnectionLike, user: u32) -> RedisResult<u64> {
    let visits = format!("{{user:{user}}}:visits");
    let last_seen = format!("{{user:{user}}}:last_seen");
    let (count,): (u64,) = redis::pipe()
        .atomic()
        .incr(&visits, 1)
        .set(&last_seen, "now")
        .ignore()
        .query(conn)?;
    Ok(count)
}

fn main() -> std::process::ExitCode {
    support::finish(run())
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    env_logger::init();
    let support::Target {
        topology: _topology,
        builder,
    } = support::target()?;
    let sentinel = builder.max_size(4).build()?;

    let (local, cluster) = match ClusterPool::from_env()? {
        Some(builder) => (None, builder.max_size(4).build()?),
        None => {
            println!("starting a local cluster (3 primaries, 3 replicas)");
            let local = Cluster::start()?;
            let seeds: Vec<String> = local.nodes().iter().map(ToString::to_string).collect();
            let pool = ClusterPool::builder(seeds).max_size(4).build()?;
            (Some(local), pool)
        }
    };

    for user in 1..=3 {
        let on_sentinel = sentinel.with_retry(|c| record_visit(c, user))?;
        let on_cluster = cluster.with_retry(|c| record_visit(c, user))?;
        println!(
            "user {user}: visit {on_sentinel} on Sentinel, visit {on_cluster} on Cluster \
             (primary {})",
            cluster
                .primary_for_key(format!("{{user:{user}}}"))
                .map_or_else(|| "unknown".to_owned(), |p| p.to_string())
        );
    }

    let Some(local) = local else {
        return Ok(());
    };
    // Four writers through a manual failover of the shard that holds user 1.
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let (pool, stop) = (cluster.clone(), Arc::clone(&stop));
            thread::spawn(move || {
                let (mut written, mut errors) = (0u64, Vec::new());
                while !stop.load(Ordering::Relaxed) {
                    let key = format!("{{user:1}}:writer:{w}");
                    match pool.with_retry_idempotent(|c| c.set::<_, _, ()>(&key, written + 1)) {
                        Ok(()) => written += 1,
                        Err(err) => errors.push(err.to_string()),
                    }
                }
                (written, errors)
            })
        })
        .collect();
    thread::sleep(Duration::from_millis(300));
    let old = cluster
        .primary_for_key("{user:1}")
        .ok_or("no primary owns user 1")?;
    let new = local.failover(&old)?;
    println!("shard of user 1 failed over: {old} -> {new}");
    thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::Relaxed);
    let mut failed = Vec::new();
    for (w, writer) in writers.into_iter().enumerate() {
        let (written, errors) = writer.join().map_err(|_| "a writer panicked")?;
        let held = get_on(&new, &format!("{{user:1}}:writer:{w}"))?;
        println!(
            "writer {w}: {written} writes, {} errors, last value {held}",
            errors.len()
        );
        if !errors.is_empty() || held != written {
            failed.push(w);
        }
    }
    if failed.is_empty() {
        println!("every write acknowledged is on the new primary; no writer saw an error");
        Ok(())
    } else {
        Err(format!("writers {failed:?} saw errors or lost their last write").into())
    }
}

/// `key` read on the node `addr`, over a plain connection.
fn get_on(
    addr: &r2d2_redis_sentinel::NodeAddr,
    key: &str,
) -> Result<u64, Box<dyn std::error::Error>> {
    let mut conn = redis::Client::open(format!("redis://{addr}"))?.get_connection()?;
    Ok(conn.get(key)?)
}
