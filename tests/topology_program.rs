//! The `sentinel-topology` program: a topology another process can use, from a terminal or a
//! script: it stops on `stop` or a signal, not when its input ends, follows the master, and
//! takes fault commands.

use std::{
    io::{BufRead, BufReader, Lines, Write},
    process::{Child, ChildStdout, Command, Stdio},
    time::Duration,
};

use r2d2_redis_sentinel::{SentinelPool, redis::Commands};

/// The running program, its output, the URL it printed and each node's address and pid.
struct Started {
    program: Child,
    lines: Lines<BufReader<ChildStdout>>,
    url: String,
    nodes: Vec<(String, u32)>,
}

/// The program, started with `args`, and what it printed up to `# ready`.
fn start(args: &[&str]) -> Started {
    let mut program = Command::new(env!("CARGO_BIN_EXE_sentinel-topology"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(program.stdout.take().unwrap()).lines();
    let (mut url, mut nodes) = (None, Vec::new());
    for line in lines.by_ref() {
        let line = line.unwrap();
        if let Some(value) = line.strip_prefix("REDIS_SENTINEL_URL=") {
            url = Some(value.to_owned());
        }
        // "# <role> <address> pid <pid>"
        if let [_, address, "pid", pid] = line
            .strip_prefix("# ")
            .unwrap_or_default()
            .split_whitespace()
            .collect::<Vec<_>>()[..]
        {
            nodes.push((address.to_owned(), pid.parse().unwrap()));
        }
        if line.starts_with("# ready") {
            break;
        }
    }
    Started {
        program,
        lines,
        url: url.expect("a REDIS_SENTINEL_URL line"),
        nodes,
    }
}

/// Waits for every pid to be gone.
fn all_gone(pids: impl IntoIterator<Item = u32>) {
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

#[test]
fn the_program_prints_a_usable_url_and_stop_stops_every_node() {
    let Started {
        mut program,
        lines: _output,
        url,
        nodes,
    } = start(&["--service", "cache"]);
    assert!(url.ends_with("/cache"), "{url}");
    assert_eq!(nodes.len(), 6, "3 data nodes and 3 sentinels");

    let pool = SentinelPool::from_url(&url).unwrap().build().unwrap();
    let _: () = pool.get().unwrap().set("k", "v").unwrap();
    let value: String = pool.get().unwrap().get("k").unwrap();
    assert_eq!(value, "v");
    drop(pool);

    writeln!(program.stdin.as_mut().unwrap(), "stop").unwrap();
    let status = program.wait().unwrap();
    assert!(status.success(), "{status}");
    all_gone(nodes.into_iter().map(|(_, pid)| pid));
}

#[test]
fn from_a_script_it_stays_up_obeys_a_fault_command_and_stops_on_sigterm() {
    let Started {
        mut program,
        mut lines,
        nodes,
        ..
    } = start(&[]);
    // A script's input: one command, then the end of the input.
    let mut input = program.stdin.take().unwrap();
    writeln!(input, "failover").unwrap();
    drop(input);
    let (mut new_master, mut ended) = (None, false);
    for line in lines.by_ref() {
        let line = line.unwrap();
        if let Some(rest) = line.strip_prefix("# master ") {
            let (address, pid) = rest.split_once(" pid ").unwrap();
            let pid: u32 = pid.parse().unwrap();
            assert!(
                nodes.contains(&(address.to_owned(), pid)),
                "{line}: the new master with its pid"
            );
            new_master = Some(address.to_owned());
        }
        ended |= line.starts_with("# input ended");
        if ended && new_master.is_some() {
            break;
        }
    }
    assert!(new_master.is_some(), "no master change printed");
    // The input is over, and the program and its nodes run on (they used to stop here).
    assert!(
        program.try_wait().unwrap().is_none(),
        "it exited at the end of its input"
    );
    for (address, pid) in &nodes {
        assert!(
            std::path::Path::new(&format!("/proc/{pid}")).exists(),
            "{address} (pid {pid}) stopped at the end of the input"
        );
    }

    let killed = Command::new("kill")
        .arg("-TERM")
        .arg(program.id().to_string())
        .status()
        .unwrap();
    assert!(killed.success());
    let status = program.wait().unwrap();
    assert!(status.success(), "{status}");
    all_gone(nodes.into_iter().map(|(_, pid)| pid));
}
