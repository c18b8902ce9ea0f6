//! Chaos runs, long: 8 writers through `with_retry_idempotent` (`RETRY=plain`: plain
//! `with_retry`, which returns `MaybeApplied` where the other retries) while the harness
//! causes failovers, then
//! every acknowledged write accounted for on the final master (see `support/src/chaos.rs`
//! for the classes of loss). Two runs, each on a topology of its own:
//! - **alternating**: `FAILOVERS` (10 by default) failovers, `SENTINEL FAILOVER` and SIGKILL of
//!   the master in turn, each once the topology settled (replicas in sync); a killed master is
//!   restarted and comes back believing it is master;
//! - **storm**: `STORM` (6 by default) `SENTINEL FAILOVER`s back to back, each as soon as the
//!   previous one's new master answers.
//!
//! `cargo bench -p benchmarks --bench chaos` (about 5 minutes); `FENCE=off` runs both with the pool's fence
//! off, to see the window it closes; `DURABLE=on` in durable mode (every write confirmed by
//! all connected replicas); `REDIS_DEFAULTS=on` keeps Redis's replication defaults (a full
//! resync waits 5 seconds before it starts, so a storm promotes replicas still waiting);
//! `FAILOVERS=0` or `STORM=0` skips a run. Results in BENCHMARKS.md and the README.

use support::chaos;

use std::env;

use chaos::{Report, Setup, Step};

fn count(var: &str, default: usize) -> usize {
    env::var(var)
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let failovers = count("FAILOVERS", 10);
    let storm = count("STORM", 6);
    let fence = env::var("FENCE").map_or(true, |v| v != "off");
    let idempotent = env::var("RETRY").map_or(true, |v| v != "plain");
    let durable = env::var("DURABLE").is_ok_and(|v| v == "on");
    let redis_defaults = env::var("REDIS_DEFAULTS").is_ok_and(|v| v == "on");
    let alternating: Vec<Step> = (0..failovers)
        .map(|i| {
            if i % 2 == 0 {
                Step::Planned
            } else {
                Step::Crash
            }
        })
        .collect();
    println!("{}", Report::HEADER);
    for (name, steps) in [
        ("alternating, settled before each", alternating),
        ("storm, back to back", vec![Step::Storm(storm)]),
    ] {
        if steps.iter().all(|s| matches!(s, Step::Storm(0))) || steps.is_empty() {
            continue;
        }
        let report = chaos::run(
            &steps,
            Setup {
                fence,
                idempotent,
                durable,
                redis_defaults,
                ..Setup::default()
            },
        );
        let fenced = match (fence, durable) {
            (true, false) => "fence on",
            (false, false) => "fence off",
            (true, true) => "fence on, durable",
            (false, true) => "fence off, durable",
        };
        let retry = if idempotent {
            "with_retry_idempotent"
        } else {
            "with_retry"
        };
        println!("{}", report.row(&format!("{name}, {fenced}, {retry}")));
        for sample in &report.error_samples {
            eprintln!("error surfaced: {sample}");
        }
    }
}
