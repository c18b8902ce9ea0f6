//! The basics: build a pool, check out a connection, run commands, retry through failovers.
//!
//! `cargo run --example basic` starts a local topology (1 master, 2 replicas, 3 sentinels)
//! from the `redis-server` and `redis-sentinel` on your PATH. To use your own deployment:
//! `SENTINELS=redis://10.0.0.1:26379,redis://10.0.0.2:26379 SERVICE=mymaster cargo run --example basic`
//! or with one connection string: `REDIS_SENTINEL_URL=redis+sentinel://10.0.0.1:26379,10.0.0.2:26379/mymaster`

mod support;

use r2d2_redis_sentinel::redis::Commands;

fn main() -> std::process::ExitCode {
    support::finish(run())
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    env_logger::init();
    // Keep the topology (if one was started) alive as long as the pool uses it.
    let support::Target {
        topology: _topology,
        builder,
    } = support::target()?;

    let pool = builder.max_size(4).build()?;
    println!(
        "pool built; master of {:?} is {}",
        pool.service(),
        pool.master().expect("looked up by build")
    );

    // A checkout is a connection to the current master; it goes back to the pool on drop.
    let mut conn = pool.get()?;
    let _: () = conn.set("greeting", "hello")?;
    let greeting: String = conn.get("greeting")?;
    println!("GET greeting -> {greeting:?} (from {})", conn.addr());
    drop(conn);

    // with_retry runs the closure again after errors that prove the command did not run
    // (READONLY from a demoted master, refused connections...), so failovers are invisible.
    let visits: u64 = pool.with_retry(|c| c.incr("visits", 1))?;
    println!("INCR visits -> {visits}");

    // Operations that are safe to repeat may also be retried after a connection broke
    // mid-request.
    let _: () = pool.with_retry_idempotent(|c| c.set("mode", "active"))?;
    println!(
        "pool state: {:?}, generation {}",
        pool.state(),
        pool.generation()
    );
    Ok(())
}
