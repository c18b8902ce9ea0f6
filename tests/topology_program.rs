//! The `sentinel-topology` program: a topology another process can use, gone when its input
//! ends.

use std::{
    io::{BufRead, BufReader},
    process::{Command, Stdio},
    time::Duration,
};

use r2d2_redis_sentinel::{SentinelPool, redis::Commands};

#[test]
fn the_program_prints_a_usable_url_and_stops_every_node_when_its_input_ends() {
    let mut program = Command::new(env!("CARGO_BIN_EXE_sentinel-topology"))
        .args(["--service", "cache"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut url = None;
    let mut pids = Vec::new();
    for line in BufReader::new(program.stdout.take().unwrap()).lines() {
        let line = line.unwrap();
        if let Some(value) = line.strip_prefix("REDIS_SENTINEL_URL=") {
            url = Some(value.to_owned());
        }
        if let Some((_, pid)) = line.strip_prefix("# ").and_then(|l| l.rsplit_once(" pid ")) {
            pids.push(pid.parse::<u32>().unwrap());
        }
        if line.starts_with("# press Enter") {
            break;
        }
    }
    let url = url.expect("a REDIS_SENTINEL_URL line");
    assert!(url.ends_with("/cache"), "{url}");
    assert_eq!(pids.len(), 6, "3 data nodes and 3 sentinels");

    let pool = SentinelPool::from_url(&url).unwrap().build().unwrap();
    let _: () = pool.get().unwrap().set("k", "v").unwrap();
    let value: String = pool.get().unwrap().get("k").unwrap();
    assert_eq!(value, "v");
    drop(pool);

    // The end of its input stops the program and, with it, every node it started.
    drop(program.stdin.take());
    let status = program.wait().unwrap();
    assert!(status.success(), "{status}");
    for pid in pids {
        let gone = (0..50).any(|_| {
            let alive = std::path::Path::new(&format!("/proc/{pid}")).exists();
            if alive {
                std::thread::sleep(Duration::from_millis(100));
            }
            !alive
        });
        assert!(gone, "node pid {pid} still runs");
    }
}
