//! Starts a local Sentinel topology (1 master, 2 replicas, 3 sentinels on free loopback
//! ports, from the OS's `redis-server` and `redis-sentinel`) for an application in another
//! process, prints how to reach it, follows its master, and takes fault commands on its input.
//!
//! ```text
//! cargo run --features testkit --bin sentinel-topology -- [--service NAME] [--down-after MS]
//! cargo install r2d2-redis-sentinel --features testkit --bin sentinel-topology
//! ```
//!
//! The first lines are `KEY=value` (`REDIS_SENTINEL_URL`, `SENTINELS`, `SERVICE`), as
//! [`SentinelPool::from_env`](r2d2_redis_sentinel::SentinelPool::from_env) reads them; then
//! one comment line per node with its role, address and pid, and `# ready`. Each change of
//! master is printed as `# master <address> pid <pid>`. Commands, one per line: `failover`,
//! `kill-master`, `freeze-master`, `thaw`, `restart <address>`, `status`, `stop` (an empty
//! line stops too). When the input ends (a script, `nohup`, `< /dev/null`) the topology keeps
//! running until SIGTERM, SIGINT or SIGHUP, which stop every node as `stop` does.

use std::{
    io::{BufRead, Write},
    process::ExitCode,
    sync::mpsc::{self, RecvTimeoutError},
    thread,
    time::Duration,
};

use r2d2_redis_sentinel::{NodeAddr, testkit::Topology};

const HELP: &str = "\
usage: sentinel-topology [--service NAME] [--down-after MS]

Starts 1 master, 2 replicas and 3 sentinels on free loopback ports and prints how to reach
them (REDIS_SENTINEL_URL=..., SENTINELS=..., SERVICE=...), each node's pid, and each change of
master with its pid.

  --service NAME     the service (master) name; mymaster by default
  --down-after MS    the sentinels' down-after-milliseconds; 1000 by default, so that a
                     crashed master is replaced within seconds. Sentinel's own default is
                     30000: that sets the pauses your program sees after a crash, and the
                     pool's default retry deadline (down-after + 10 s)

Commands on standard input, one per line:
  failover           SENTINEL FAILOVER, and wait for the new master
  kill-master        SIGKILL the master (the sentinels fail over after down-after)
  freeze-master      SIGSTOP the master; thaw resumes it
  thaw               SIGCONT every node frozen here
  restart ADDRESS    restart a killed data node (it comes back as a replica)
  status             print every node's role and pid
  stop               stop every node and exit (so does an empty line)

When the input ends, the nodes keep running until SIGTERM, SIGINT or SIGHUP.";

/// What the main loop is told.
enum Input {
    Line(String),
    /// The input ended.
    Ended,
    /// SIGTERM, SIGINT or SIGHUP.
    Signal,
}

/// Prints a line; a closed output (piped into `head`, say) is no reason to stop.
macro_rules! say {
    ($($arg:tt)*) => {
        say(&format!($($arg)*))
    };
}

fn say(line: &str) {
    let _ = writeln!(std::io::stdout(), "{line}");
}

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
                say(HELP);
                return Ok(());
            }
            other => return Err(format!("unknown argument {other:?}; see --help")),
        };
    }
    let (tx, inputs) = mpsc::channel();
    let signals = tx.clone();
    ctrlc::set_handler(move || {
        let _ = signals.send(Input::Signal);
    })
    .map_err(|e| format!("cannot handle signals: {e}"))?;
    let mut topology = builder.start().map_err(|e| e.to_string())?;
    let sentinels: Vec<String> = topology
        .sentinel_addrs()
        .iter()
        .map(ToString::to_string)
        .collect();
    let service = topology.service().to_owned();
    say!(
        "REDIS_SENTINEL_URL=redis+sentinel://{}/{service}",
        sentinels.join(",")
    );
    say!("SENTINELS={}", sentinels.join(","));
    say!("SERVICE={service}");
    let mut master = topology.master().map_err(|e| e.to_string())?;
    status(&topology, &master);
    say!(
        "# ready: commands failover, kill-master, freeze-master, thaw, restart ADDRESS, status, stop"
    );

    thread::spawn(move || {
        for line in std::io::stdin().lock().lines() {
            match line {
                Ok(line) => {
                    if tx.send(Input::Line(line)).is_err() {
                        return;
                    }
                }
                Err(_) => break,
            }
        }
        let _ = tx.send(Input::Ended);
    });
    let mut frozen: Vec<NodeAddr> = Vec::new();
    loop {
        // The master as the sentinels name it, every tenth of a second: each change printed.
        match inputs.recv_timeout(Duration::from_millis(100)) {
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) | Ok(Input::Signal) => break,
            Ok(Input::Ended) => {
                say!("# input ended: the nodes run until SIGTERM, SIGINT or SIGHUP");
            }
            Ok(Input::Line(line)) => {
                let words: Vec<&str> = line.split_whitespace().collect();
                match words.as_slice() {
                    [] | ["stop"] => break,
                    ["status"] => status(&topology, &master),
                    ["failover"] => match topology.failover() {
                        Ok(_) => {}
                        Err(err) => say!("# failover failed: {err}"),
                    },
                    ["kill-master"] => match topology.kill_master() {
                        Ok(killed) => say!("# killed master {killed}"),
                        Err(err) => say!("# kill-master failed: {err}"),
                    },
                    ["freeze-master"] => match topology.pause(&master) {
                        Ok(()) => {
                            say!("# froze master {master}");
                            frozen.push(master.clone());
                        }
                        Err(err) => say!("# freeze-master failed: {err}"),
                    },
                    ["thaw"] => {
                        for node in frozen.drain(..) {
                            match topology.resume(&node) {
                                Ok(()) => say!("# thawed {node}"),
                                Err(err) => say!("# thaw {node} failed: {err}"),
                            }
                        }
                    }
                    ["restart", address] => match address_of(&topology, address) {
                        Some(node) => match topology.restart(&node) {
                            Ok(()) => say!("# restarted {node} pid {}", pid(&topology, &node)),
                            Err(err) => say!("# restart failed: {err}"),
                        },
                        None => say!("# no data node {address}"),
                    },
                    _ => say!("# unknown command {line:?}; see --help"),
                }
            }
        }
        if let Ok(now) = topology.master()
            && now != master
        {
            say!("# master {now} pid {}", pid(&topology, &now));
            master = now;
        }
    }
    for node in frozen {
        let _ = topology.resume(&node);
    }
    say!("# stopping every node");
    drop(topology);
    Ok(())
}

/// Every node's role, address and pid.
fn status(topology: &Topology, master: &NodeAddr) {
    for addr in topology.data_addrs() {
        let role = if addr == *master { "master" } else { "replica" };
        say!("# {role} {addr} pid {}", pid(topology, &addr));
    }
    for addr in topology.sentinel_addrs() {
        say!("# sentinel {addr} pid {}", pid(topology, &addr));
    }
}

/// The data node `address` names, if the topology has it.
fn address_of(topology: &Topology, address: &str) -> Option<NodeAddr> {
    topology
        .data_addrs()
        .into_iter()
        .find(|a| a.to_string() == address)
}

fn pid(topology: &Topology, addr: &NodeAddr) -> String {
    topology
        .pid(addr)
        .map_or_else(|| "-".to_owned(), |pid| pid.to_string())
}
