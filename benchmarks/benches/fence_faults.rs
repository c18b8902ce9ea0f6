//! The fence's fault matrix: a failover that breaks halfway, under two writers of unique keys
//! through `with_retry_idempotent`, one on a pool with the fence and one on a pool without it,
//! side by side on the same topology (1 master, 2 replicas, 3 sentinels, down-after 1 s). Each
//! row breaks one thing: the leader crashes after its election or its promotion (`SENTINEL
//! SIMULATE-FAILURE`), is SIGKILLed or SIGSTOPped the moment it publishes a step, the promoted
//! replica is SIGKILLed right after its promotion, or every subscription to the sentinels (the
//! watchers') is cut at a step. Then, once the sentinels agree on a master and both pools write
//! to it, a normal `SENTINEL FAILOVER` through a live sentinel must be followed.
//!
//! Every acknowledged write is then looked up on the final master: lost during the fault
//! (acknowledged before the next failover began) and lost in the next failover, per pool.
//!
//! `cargo bench -p benchmarks --bench fence_faults` (about 10 minutes; `ROWS=name,name` runs some rows only:
//! their names are the first column's). `TIMINGS=default` runs the matrix at Sentinel's default
//! timings (`down-after-milliseconds` 30 s, `failover-timeout` 3 minutes) instead of 1 s and
//! 10 s, without the killed-candidate row: there the sentinels need the dead node's 30 s of
//! silence and then the stuck failover's 3 minutes before they can fail over again.
//! `DURABLE=on` compares two fenced pools, one in durable mode, instead of the fence on with
//! off. The row "leader stalled after the promotion" always runs two durable pools, fenced
//! (a 1 s fence timeout, shorter than the stall) and unfenced: the leader, whose candidate
//! refuses its `REPLICAOF NO ONE`, is frozen once it waits for the promotion, the candidate
//! is promoted as its command would have done, and the leader thaws 1.6 s later (under
//! Sentinel's 2 s TILT trigger) and commits. `COORDINATED=on` (Valkey 9 and later, through
//! `REDIS_BIN_DIR`) runs every failover as `SENTINEL FAILOVER <master> COORDINATED`, where the
//! master hands over by itself and the fenced pool resumes at the handover, before the commit
//! that the pool without the fence waits for; the stalled-leader row does not apply there (the
//! leader sends the master `FAILOVER TO`, not the replica `REPLICAOF NO ONE`). Results in
//! BENCHMARKS.md.

use support::fence as fence_kit;

use std::{
    collections::HashMap,
    env,
    panic::{AssertUnwindSafe, catch_unwind},
    time::{Duration, Instant},
};

use fence_kit::{Report, Writer, until_writes_reach};
use r2d2_redis_sentinel::{
    NodeAddr, WatcherState,
    redis::{self, Role},
    testkit::Topology,
};
use support::direct;

/// The steps of a failover, in order, as the leader publishes them.
const STEPS: [&str; 4] = [
    "+selected-slave",
    "+failover-state-send-slaveof-noone",
    "+failover-state-wait-promotion",
    "+promoted-slave",
];

#[derive(Debug, Clone, Copy)]
enum Fault {
    /// `SENTINEL SIMULATE-FAILURE` on the leader before its failover.
    Simulate(&'static str),
    /// The leader SIGKILLed when it publishes the step.
    KillLeader(&'static str),
    /// The leader SIGSTOPped when it publishes the step, resumed after the next failover.
    FreezeLeader(&'static str),
    /// The promoted replica SIGKILLed at `+promoted-slave`.
    KillCandidate,
    /// Every pub/sub client of every sentinel disconnected at the step (the pools' watchers
    /// among them): they resubscribe in the middle of the failover.
    CutSubscriptions(&'static str),
    /// The leader frozen for this long right after its candidate took `REPLICAOF NO ONE`,
    /// then thawed to commit; two durable pools, the fenced one's fence timing out meanwhile.
    StallAfterPromotion(Duration),
}

impl Fault {
    fn name(self) -> String {
        match self {
            Fault::Simulate(what) => format!("leader {}", what.to_ascii_lowercase()),
            Fault::KillLeader(step) => format!("leader SIGKILLed at {step}"),
            Fault::FreezeLeader(step) => format!("leader SIGSTOPped at {step}"),
            Fault::KillCandidate => "promoted replica SIGKILLed at +promoted-slave".to_owned(),
            Fault::CutSubscriptions(step) => format!("subscriptions cut at {step}"),
            Fault::StallAfterPromotion(stall) => format!(
                "leader stalled {:.1} s after the promotion (durable, fence timeout 1 s)",
                stall.as_secs_f64()
            ),
        }
    }
}

/// What a row measured, for each pool: lost during the fault, lost in the next failover,
/// longest write gap, errors.
struct Row {
    on: (usize, usize, Duration, usize),
    off: (usize, usize, Duration, usize),
}

fn sentinel(cmd: &[&str], on: &NodeAddr) {
    let _: redis::Value = redis::cmd(cmd[0])
        .arg(&cmd[1..])
        .query(&mut direct(on))
        .expect("sentinel command");
}

/// The master every live sentinel names, once they agree and it answers `ROLE` master.
fn settled_master(topology: &Topology, live: &[NodeAddr]) -> NodeAddr {
    support::eventually(
        "the sentinels to agree on a master",
        Duration::from_secs(90),
        || {
            // Named by every live sentinel, none of which runs a failover any more (the fault
            // may have left one under way, to be committed).
            let named: Vec<NodeAddr> = live
                .iter()
                .filter_map(|s| {
                    let master: HashMap<String, String> = redis::cmd("SENTINEL")
                        .arg(&["MASTER", topology.service()])
                        .query(&mut direct(s))
                        .ok()?;
                    let flags = master.get("flags")?;
                    if flags.contains("failover_in_progress") {
                        return None;
                    }
                    Some(NodeAddr::new(
                        master.get("ip")?.as_str(),
                        master.get("port")?.parse().ok()?,
                    ))
                })
                .collect();
            let first = named.first()?.clone();
            let agreed = named.len() == live.len() && named.iter().all(|n| *n == first);
            // The node they name may be dead (a killed candidate): asked without panicking.
            let role = redis::Client::open(format!("redis://{first}"))
                .ok()?
                .get_connection_with_timeout(Duration::from_millis(500))
                .ok()
                .and_then(|mut conn| redis::cmd("ROLE").query::<Role>(&mut conn).ok());
            let master = matches!(role, Some(Role::Primary { .. }));
            (agreed && master).then_some(first)
        },
    )
}

/// `durable`: the two pools are both fenced, one in durable mode and one not.
fn run(fault: Fault, defaults: bool, durable: bool, coordinated: bool) -> Row {
    let mut topology = Topology::builder().timeout(Duration::from_secs(90));
    if defaults {
        topology = topology
            .down_after(Duration::from_secs(30))
            .failover_timeout(Duration::from_secs(180));
    }
    let mut topology = topology.start().expect("topology");
    let sentinels = topology.sentinel_addrs();
    // The sentinel asked leads a plain failover; a coordinated one is elected first, so its
    // leader is whichever sentinel publishes the steps.
    let mut leader = sentinels[0].clone();
    let (fenced, unfenced) = if let Fault::StallAfterPromotion(_) = fault {
        for replica in support::replicas(&topology, &topology.master().expect("master")) {
            fence_kit::refuse_replicaof(&replica, true);
        }
        (
            fence_kit::durable_pool_fenced(&topology, Some(Duration::from_secs(1))),
            fence_kit::durable_pool_fenced(&topology, None),
        )
    } else if durable {
        (
            fence_kit::durable_pool(&topology),
            fence_kit::pool(&topology),
        )
    } else {
        (
            fence_kit::pool(&topology),
            fence_kit::pool_without_fence(&topology),
        )
    };
    let (with, without) = (
        Writer::start_with(&fenced, "fenced"),
        Writer::start_with(&unfenced, "unfenced"),
    );
    let service = topology.service().to_owned();
    let step = match fault {
        Fault::Simulate(_) => None,
        Fault::KillLeader(step) | Fault::FreezeLeader(step) | Fault::CutSubscriptions(step) => {
            Some(step)
        }
        Fault::KillCandidate => Some("+promoted-slave"),
        Fault::StallAfterPromotion(_) => Some("+failover-state-wait-promotion"),
    };
    let listener = step.map(|step| topology.listen(step).expect("listener"));
    if let Fault::Simulate(what) = fault {
        let leaders = if coordinated {
            &sentinels[..]
        } else {
            std::slice::from_ref(&leader)
        };
        for s in leaders {
            sentinel(&["SENTINEL", "SIMULATE-FAILURE", what], s);
        }
    }
    if coordinated {
        // Re-asked below when its sentinel is not elected.
        sentinel(&["SENTINEL", "FAILOVER", &service, "COORDINATED"], &leader);
    } else {
        sentinel(&["SENTINEL", "FAILOVER", &service], &leader);
    }
    let mut live = sentinels.clone();
    let mut frozen = None;
    if let (Some(step), Some(listener)) = (step, &listener) {
        let mut deadline = Instant::now() + Duration::from_secs(30);
        let mut asked = 1;
        let message = loop {
            match listener.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Some(message) if message.sentinel == leader || coordinated => break message,
                Some(_) => {}
                // A coordinated failover is elected first, and its sentinel is sometimes not
                // (`-failover-abort-not-elected` after 10 s): asked again, as an operator would.
                None if coordinated && asked < 3 => {
                    asked += 1;
                    sentinel(&["SENTINEL", "FAILOVER", &service, "COORDINATED"], &leader);
                    deadline = Instant::now() + Duration::from_secs(30);
                }
                None => panic!("no {step} from the leader"),
            }
        };
        leader = message.sentinel.clone();
        let index = sentinels
            .iter()
            .position(|s| *s == leader)
            .expect("a sentinel");
        match fault {
            Fault::KillLeader(_) => {
                topology.kill_sentinel(index).expect("kill the leader");
                live.retain(|s| *s != leader);
            }
            Fault::FreezeLeader(_) => {
                topology.pause(&leader).expect("freeze the leader");
                live.retain(|s| *s != leader);
                frozen = Some(leader.clone());
            }
            Fault::KillCandidate => {
                // "slave <name> <ip> <port> @ <service> <ip> <port>"
                let words: Vec<&str> = message.payload.split_whitespace().collect();
                let candidate = NodeAddr::new(words[2], words[3].parse().expect("port"));
                topology.kill(&candidate).expect("kill the candidate");
            }
            Fault::CutSubscriptions(_) => {
                for s in &sentinels {
                    sentinel(&["CLIENT", "KILL", "TYPE", "pubsub"], s);
                }
            }
            Fault::StallAfterPromotion(stall) => {
                let words: Vec<&str> = message.payload.split_whitespace().collect();
                let candidate = NodeAddr::new(words[2], words[3].parse().expect("port"));
                fence_kit::stall_after_promotion(&mut topology, &leader, &candidate, stall);
                for node in topology.data_addrs() {
                    fence_kit::refuse_replicaof(&node, false);
                }
            }
            Fault::Simulate(_) => unreachable!(),
        }
    }
    if let Fault::Simulate(_) = fault {
        // The leader exits on its own, after its election or its promotion.
        let exited = || {
            sentinels.iter().position(|s| {
                redis::Client::open(format!("redis://{s}"))
                    .and_then(|c| c.get_connection_with_timeout(Duration::from_millis(200)))
                    .is_err()
            })
        };
        let index = if coordinated {
            // Asked again when the sentinel asked was not elected (see above).
            let mut asked_at = Instant::now();
            support::eventually("the leader to exit", Duration::from_secs(60), || {
                let found = exited();
                if found.is_none() && asked_at.elapsed() > Duration::from_secs(15) {
                    asked_at = Instant::now();
                    let _: redis::RedisResult<String> = redis::cmd("SENTINEL")
                        .arg(&["FAILOVER", &service, "COORDINATED"])
                        .query(&mut direct(&leader));
                }
                found
            })
        } else {
            support::eventually("the leader to exit", Duration::from_secs(30), exited)
        };
        leader = sentinels[index].clone();
        // Reaped, so that the kit's waits leave it out; the others forget the failure asked.
        topology.kill_sentinel(index).expect("reap the leader");
        live.retain(|s| *s != leader);
        // (`HELP` clears the flags and lists them.)
        for s in &live {
            sentinel(&["SENTINEL", "SIMULATE-FAILURE", "HELP"], s);
        }
    }
    drop(listener);

    // The fault's aftermath: both pools on the master the live sentinels agree on.
    let settled = settled_master(&topology, &live);
    until_writes_reach(&fenced, &settled);
    until_writes_reach(&unfenced, &settled);
    // And the fenced pool's watcher listening to every live sentinel again, as before a
    // normal failover.
    support::eventually(
        "the watcher to subscribe again",
        Duration::from_secs(30),
        || match fenced.stats().watcher {
            WatcherState::Running { subscribed } => {
                live.iter().all(|s| subscribed.contains(s)).then_some(())
            }
            _ => None,
        },
    );

    // The next failover, through a live sentinel.
    let second = Instant::now();
    let new = if coordinated {
        topology.failover_coordinated()
    } else {
        topology.failover()
    }
    .expect("the next failover");
    until_writes_reach(&fenced, &new);
    until_writes_reach(&unfenced, &new);
    let (with, without) = (with.finish(), without.finish());
    if let Some(frozen) = &frozen {
        topology.resume(frozen).expect("resume");
    }
    // Every live sentinel named it when the failover returned.
    let final_master = new;
    let count = |report: &Report| {
        let missing = report.missing_on(&final_master);
        let during = missing.iter().filter(|a| a.at < second).count();
        (
            during,
            missing.len() - during,
            report.longest_gap,
            report.errors.len(),
        )
    };
    Row {
        on: count(&with),
        off: count(&without),
    }
}

fn main() {
    let only: Option<Vec<String>> = env::var("ROWS")
        .ok()
        .map(|rows| rows.split(',').map(str::to_owned).collect());
    let mut faults = vec![
        Fault::Simulate("CRASH-AFTER-ELECTION"),
        Fault::Simulate("CRASH-AFTER-PROMOTION"),
    ];
    faults.extend(STEPS.iter().map(|s| Fault::KillLeader(s)));
    faults.extend(STEPS.iter().map(|s| Fault::FreezeLeader(s)));
    let defaults = env::var("TIMINGS").is_ok_and(|t| t == "default");
    let durable = env::var("DURABLE").is_ok_and(|d| d == "on");
    let (a, b) = if durable {
        ("durable", "default")
    } else {
        ("fence on", "fence off")
    };
    if !defaults {
        faults.push(Fault::KillCandidate);
    }
    faults.extend(STEPS.iter().map(|s| Fault::CutSubscriptions(s)));
    let coordinated = env::var("COORDINATED").is_ok_and(|c| c == "on");
    if !coordinated {
        faults.push(Fault::StallAfterPromotion(Duration::from_millis(1600)));
    }
    println!(
        "| fault | {a}: lost during the fault / in the next failover | {b}: the same | longest write gap, {a} / {b} | errors, {a} / {b} |\n| --- | --- | --- | --- | --- |"
    );
    for fault in faults {
        let name = fault.name();
        if only
            .as_ref()
            .is_some_and(|o| !o.iter().any(|n| name.contains(n.as_str())))
        {
            continue;
        }
        match catch_unwind(AssertUnwindSafe(|| {
            run(fault, defaults, durable, coordinated)
        })) {
            Ok(row) => println!(
                "| {name} | {} / {} | {} / {} | {:.2} / {:.2} s | {} / {} |",
                row.on.0,
                row.on.1,
                row.off.0,
                row.off.1,
                row.on.2.as_secs_f64(),
                row.off.2.as_secs_f64(),
                row.on.3,
                row.off.3,
            ),
            Err(panic) => {
                let why = panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                    .unwrap_or_default();
                println!("| {name} | did not complete: {why} | | | |");
            }
        }
    }
}
