//! The main demo: a writer that does not notice a failover.
//!
//! `cargo run --example failover` starts a local topology (1 master, 2 replicas, 3 sentinels),
//! runs a writer loop under `with_retry_idempotent` with a live status line, asks Sentinel to
//! fail over midway, and ends with a summary: writes, errors surfaced, the longest write gap,
//! when the new master was reached, and how many acknowledged writes the final master lacks.
//!
//! Against your own deployment, trigger the failover yourself
//! (`redis-cli -p 26379 SENTINEL FAILOVER mymaster`) while it runs:
//! `SENTINELS=redis://10.0.0.1:26379 SERVICE=mymaster DURATION=60 cargo run --example failover`
//! or with one connection string: `REDIS_SENTINEL_URL=redis+sentinel://10.0.0.1:26379,10.0.0.2:26379/mymaster`

use std::{
    io::{IsTerminal, Write},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
        mpsc,
    },
    thread,
    time::{Duration, Instant},
};

mod support;

use r2d2_redis_sentinel::{Event, NodeAddr, RetryPolicy, SentinelPool, redis::Commands};

/// One acknowledged write, or one error surfaced to the caller.
enum Outcome {
    Ack { key: u64, by: NodeAddr, at: Instant },
    Error(String),
}

fn main() -> std::process::ExitCode {
    support::finish(run())
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    env_logger::init();
    let support::Target { topology, builder } = support::target()?;
    let duration = support::duration();

    let pool = builder
        .max_size(4)
        .retry_policy(RetryPolicy::default().deadline(Duration::from_secs(60)))
        .build()?;
    let first_master = pool.master().expect("looked up by build");
    println!("writing to {:?}, master {first_master}", pool.service());

    let stop = Arc::new(AtomicBool::new(false));
    let (tx, rx) = mpsc::channel();
    let writer = {
        let (pool, stop) = (pool.clone(), Arc::clone(&stop));
        thread::spawn(move || write_until(&pool, &stop, &tx))
    };

    let events = pool.events();
    let start = Instant::now();
    let mut failover_at = None;
    let (mut acked, mut errors, mut longest_gap) = (Vec::new(), Vec::new(), Duration::ZERO);
    let (mut last_ack, mut new_master_at, mut window) = (start, None, (Instant::now(), 0u64));
    let tty = std::io::stdout().is_terminal();
    loop {
        for outcome in rx.try_iter() {
            match outcome {
                Outcome::Ack { key, by, at } => {
                    longest_gap = longest_gap.max(at - last_ack);
                    last_ack = at;
                    if by != first_master && new_master_at.is_none() {
                        new_master_at = Some(at);
                    }
                    acked.push((key, by));
                    window.1 += 1;
                }
                Outcome::Error(err) => errors.push(err),
            }
        }
        for event in events.try_iter() {
            match event {
                Event::FenceUp { old, candidate, .. } => println!(
                    "\n>>> pool: fence up, master {} fenced off while {candidate} is promoted",
                    old.map_or_else(|| "unknown".to_owned(), |o| o.to_string())
                ),
                Event::FenceResumed { new, via, held } => {
                    println!(">>> pool: resumed on {new} after {held:?} ({via:?})");
                }
                Event::FenceReleased { reason, held } => {
                    println!(">>> pool: fence lifted after {held:?}: {reason}");
                }
                Event::Failover { new, via, .. } => {
                    println!(">>> pool: master is now {new} ({via:?})");
                }
                _ => {}
            }
        }
        let elapsed = start.elapsed();
        if window.0.elapsed() >= Duration::from_millis(500) {
            let rate = window.1 as f64 / window.0.elapsed().as_secs_f64();
            let master = acked
                .last()
                .map_or("-".into(), |(_, a): &(u64, NodeAddr)| a.to_string());
            let line = format!(
                "{:>5.1}s  {rate:>8.0} writes/s  {} errors  master {master}  generation {}",
                elapsed.as_secs_f64(),
                errors.len(),
                pool.generation()
            );
            if tty {
                print!("\r{line}   ");
                std::io::stdout().flush()?;
            } else {
                println!("{line}");
            }
            window = (Instant::now(), 0);
        }
        match (&topology, failover_at, duration) {
            (Some(t), None, _) if elapsed > Duration::from_secs(3) => {
                println!("\n>>> asking Sentinel to fail over");
                let at = Instant::now();
                let promoted = t.failover()?;
                println!(
                    ">>> every sentinel names {promoted} {:?} after the request; the old master \
                     accepts writes until Sentinel demotes it",
                    at.elapsed()
                );
                failover_at = Some(at);
            }
            // Our own topology: stop two seconds after the writes reached the new master.
            (Some(_), Some(_), _)
                if new_master_at.is_some_and(|t| t.elapsed() > Duration::from_secs(2)) =>
            {
                break;
            }
            (None, _, Some(d)) if elapsed > d => break,
            (None, _, None)
                if new_master_at.is_some_and(|t| t.elapsed() > Duration::from_secs(2)) =>
            {
                break;
            }
            _ => {}
        }
        if elapsed > Duration::from_secs(120) {
            println!("\nno failover reached the writer in two minutes; stopping");
            break;
        }
        thread::sleep(Duration::from_millis(20));
    }
    stop.store(true, Ordering::Relaxed);
    writer.join().expect("writer thread");
    for outcome in rx.try_iter() {
        if let Outcome::Ack { key, by, .. } = outcome {
            acked.push((key, by));
        }
    }

    println!("\n\nsummary");
    println!("  writes acknowledged   {}", acked.len());
    println!("  errors surfaced       {}", errors.len());
    for err in errors.iter().take(5) {
        println!("    {err}");
    }
    println!("  longest write gap     {longest_gap:?}");
    match (failover_at, new_master_at) {
        (Some(f), Some(n)) => println!(
            "  new master reached    {:?} after the failover was requested",
            n.saturating_duration_since(f)
        ),
        (_, Some(n)) => println!("  new master reached    at {:?}", n - start),
        _ => println!("  new master reached    never"),
    }
    if let Some((_, final_master)) = acked.last() {
        let mut conn = r2d2_redis_sentinel::redis::Client::open(format!("redis://{final_master}"))?
            .get_connection_with_timeout(Duration::from_secs(2))?;
        let missing = acked
            .iter()
            .filter(|(key, _)| {
                !conn
                    .exists::<_, bool>(format!("demo:{key}"))
                    .unwrap_or(false)
            })
            .count();
        println!("  acknowledged writes missing from the final master {final_master}: {missing}");
    }
    Ok(())
}

fn write_until(pool: &SentinelPool, stop: &AtomicBool, tx: &mpsc::Sender<Outcome>) {
    let mut key = 0u64;
    while !stop.load(Ordering::Relaxed) {
        key += 1;
        let outcome = match pool.with_retry_idempotent(|c| {
            let _: () = c.set(format!("demo:{key}"), key)?;
            Ok(c.addr().clone())
        }) {
            Ok(by) => Outcome::Ack {
                key,
                by,
                at: Instant::now(),
            },
            Err(err) => Outcome::Error(err.to_string()),
        };
        if tx.send(outcome).is_err() {
            return;
        }
    }
}
