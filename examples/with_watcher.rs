//! The watcher at work: every pool event printed as it happens, with timestamps.
//!
//! `cargo run --example with_watcher` starts a local topology, asks Sentinel to fail over,
//! then kills the master, and prints what the pool saw. Against your own deployment, trigger
//! failovers yourself while it runs:
//! `SENTINELS=redis://10.0.0.1:26379 SERVICE=mymaster DURATION=120 cargo run --example with_watcher`
//! or with one connection string: `REDIS_SENTINEL_URL=redis+sentinel://10.0.0.1:26379,10.0.0.2:26379/mymaster`

use std::{
    thread,
    time::{Duration, Instant},
};

mod support;

use r2d2_redis_sentinel::Event;

fn main() -> std::process::ExitCode {
    support::finish(run())
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    env_logger::init();
    let support::Target {
        mut topology,
        builder,
    } = support::target()?;

    let start = Instant::now();
    let pool = builder.build()?;
    let events = pool.events();
    let printer = thread::spawn(move || {
        // Ends when the pool, and with it the sending side, is dropped.
        for event in events.iter() {
            let at = format!("{:>8.3}s", start.elapsed().as_secs_f64());
            match event {
                Event::Failover {
                    old,
                    new,
                    generation,
                    sentinel,
                    via,
                    ..
                } => println!(
                    "{at}  FAILOVER  {} -> {new}  generation {generation}  (told by sentinel {sentinel}, {via:?})",
                    old.map_or_else(|| "?".to_owned(), |o| o.to_string())
                ),
                Event::Invalidated { generation, reason } => {
                    println!("{at}  invalidated  generation {generation}: {reason}")
                }
                Event::WatcherConnected { sentinel } => {
                    println!("{at}  subscribed to sentinel {sentinel}")
                }
                Event::WatcherDisconnected { sentinel, error } => {
                    println!("{at}  lost sentinel {sentinel}: {error}")
                }
                Event::SentinelsChanged { added, removed } => {
                    println!("{at}  sentinels changed: +{added:?} -{removed:?}")
                }
                other => println!("{at}  {other:?}"),
            }
        }
    });

    match &mut topology {
        Some(t) => {
            thread::sleep(Duration::from_secs(1));
            println!(
                "{:>8.3}s  >>> SENTINEL FAILOVER",
                start.elapsed().as_secs_f64()
            );
            let promoted = t.failover()?;
            println!(
                "{:>8.3}s  >>> sentinels agree on {promoted}",
                start.elapsed().as_secs_f64()
            );
            println!(
                "{:>8.3}s  >>> waiting for Sentinel to demote the old master before the next test (10-20 s)",
                start.elapsed().as_secs_f64()
            );
            t.wait_settled()?;
            let killed = t.kill_master()?;
            println!(
                "{:>8.3}s  >>> killed the master {killed} (SIGKILL)",
                start.elapsed().as_secs_f64()
            );
            let promoted = t.wait_for_new_master(&killed, Duration::from_secs(30))?;
            println!(
                "{:>8.3}s  >>> sentinels agree on {promoted}",
                start.elapsed().as_secs_f64()
            );
            thread::sleep(Duration::from_millis(500));
        }
        None => {
            let duration = support::duration().unwrap_or(Duration::from_secs(60));
            println!("listening for {duration:?}; trigger a failover now");
            thread::sleep(duration);
        }
    }
    // One line, as a health endpoint would serve it.
    println!("\n{}", pool.stats());
    drop(pool);
    printer.join().expect("printer thread");
    Ok(())
}
