//! Starts a local Sentinel topology (1 master, 2 replicas, 3 sentinels on free loopback
//! ports, from the OS's `redis-server` and `redis-sentinel`) for an application in another
//! process, prints how to reach it, and stops every node when its input ends.
//!
//! ```text
//! cargo run --features testkit --bin sentinel-topology [-- --service NAME] [--down-after MS]
//! ```
//!
//! The first lines are `KEY=value` (`REDIS_SENTINEL_URL`, `SENTINELS`, `SERVICE`), as
//! [`SentinelPool::from_env`](r2d2_redis_sentinel::SentinelPool::from_env) reads them; then
//! one comment line per node with its role, address and pid (to pause or kill it by hand).
//! Press Enter, or close its input, to stop the nodes; Ctrl-C stops them too (they are in
//! the terminal's process group).

use std::{io::BufRead, process::ExitCode, time::Duration};

use r2d2_redis_sentinel::testkit::Topology;

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), String> {
    let mut builder = Topology::builder();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().ok_or_else(|| format!("{arg} needs a value"));
        builder = match arg.as_str() {
            "--service" => builder.service(value()?),
            "--down-after" => {
                let ms: u64 = value()?
                    .parse()
                    .map_err(|_| "--down-after takes milliseconds, a whole number".to_owned())?;
                builder.down_after(Duration::from_millis(ms))
            }
            "-h" | "--help" => {
                println!("usage: sentinel-topology [--service NAME] [--down-after MS]");
                return Ok(());
            }
            other => return Err(format!("unknown argument {other:?}; see --help")),
        };
    }
    let topology = builder.start().map_err(|e| e.to_string())?;
    let sentinels: Vec<String> = topology
        .sentinel_addrs()
        .iter()
        .map(ToString::to_string)
        .collect();
    let service = topology.service_name();
    println!(
        "REDIS_SENTINEL_URL=redis+sentinel://{}/{service}",
        sentinels.join(",")
    );
    println!("SENTINELS={}", sentinels.join(","));
    println!("SERVICE={service}");
    let master = topology.master().map_err(|e| e.to_string())?;
    for addr in topology.data_addrs() {
        let role = if addr == master { "master" } else { "replica" };
        println!("# {role} {addr} pid {}", pid(&topology, &addr));
    }
    for addr in topology.sentinel_addrs() {
        println!("# sentinel {addr} pid {}", pid(&topology, &addr));
    }
    println!("# press Enter (or close the input) to stop every node");
    // Waits for a line or the end of the input; an error reading it ends the wait too.
    let _ = std::io::stdin().lock().lines().next();
    drop(topology);
    Ok(())
}

fn pid(topology: &Topology, addr: &r2d2_redis_sentinel::NodeAddr) -> String {
    topology
        .pid(addr)
        .map_or_else(|| "-".to_owned(), |pid| pid.to_string())
}
