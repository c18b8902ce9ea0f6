//! A job worker that cannot lose a job, through a planned failover and a master crash.
//!
//! `cargo run --example worker` starts a local topology (1 master, 2 replicas, 3 sentinels), a
//! producer pushing job ids onto the list `jobs`, and four workers. Each worker follows the
//! reliable-queue pattern:
//!
//! 1. **move** a job from `jobs` to its own processing list (`BLMOVE jobs processing:<w>`),
//!    under `with_retry`: a move is never repeated blindly, since a second one would take
//!    another job while the first sits in the processing list (`BLMOVE` needs Redis 6.2 or
//!    later; `BRPOPLPUSH` does the same before);
//! 2. **do** it, and record its result with `SET result:<job> <worker> NX`, which is safe to
//!    repeat (`with_retry_idempotent`): a second run finds the result there, and the job's
//!    effect happens once, whoever does it again;
//! 3. **remove** it from the processing list (`LREM`, safe to repeat too).
//!
//! When the move fails with `MaybeApplied` (the connection broke mid-wait: the job may have
//! moved) or `NotReplicated` (it moved, unconfirmed), and when a worker starts, it **recovers**:
//! every job in its processing list is done (its result write finds the result if it was
//! recorded) and removed. Midway, the example asks Sentinel to fail over, then kills the
//! master (SIGKILL); at the end it checks that every job pushed has exactly one result and no
//! list holds one, and exits with failure if a job was lost or done twice.
//!
//! The writes that must survive a crash are durable: with `DURABLE=on` the whole pool is
//! ([`Builder::durability`]); otherwise the producer's push and the result write are, per call
//! ([`Connection::with_durability`]). Redis acknowledges a write before its replicas have it,
//! and a push or a result lost with a crashed master is a job lost or done twice.
//!
//! Against your own deployment (`REDIS_SENTINEL_URL`, or `SENTINELS` and `SERVICE`) it runs
//! for `DURATION` seconds (30 by default) without faults: trigger them yourself meanwhile.
//! It writes the keys `jobs`, `processing:*` and `result:*`: use a database of its own.
//!
//! [`Builder::durability`]: r2d2_redis_sentinel::Builder::durability
//! [`Connection::with_durability`]: r2d2_redis_sentinel::Connection::with_durability

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

mod support;

use r2d2_redis_sentinel::{
    Connection, Durability, Error, RetryPolicy, SentinelPool,
    redis::{Commands, Direction, RedisResult},
};

/// Workers taking jobs.
const WORKERS: usize = 4;

/// How long a worker's `BLMOVE` waits for a job.
const WAIT_FOR_JOB: f64 = 1.0;

fn main() -> std::process::ExitCode {
    support::finish(run())
}

/// What a worker met, for the summary.
#[derive(Debug, Default)]
struct Tally {
    /// Jobs whose result this worker recorded (the result holds its name).
    done: Vec<u64>,
    /// Moves that failed with `MaybeApplied` or `NotReplicated`: recoveries run.
    recoveries: u64,
    /// Jobs found in the processing list by a recovery.
    recovered: u64,
    /// Other errors, as their kinds.
    errors: Vec<&'static str>,
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    env_logger::init();
    let support::Target {
        mut topology,
        builder,
    } = support::target()?;
    let durable = std::env::var("DURABLE").is_ok_and(|d| d == "on");
    // A crash soon after a planned failover can leave no replica connected to the new master
    // for longer than the default retry deadline (down-after + 10 s): the old master, not yet
    // converted, or a replica promoted by an aborted attempt, still answers master, and a
    // durable write waits for a replica that may confirm it. Thirty seconds covers the
    // sentinels settling; the checks below are unchanged.
    let mut builder = builder
        .max_size(u32::try_from(WORKERS)? + 2)
        .retry_policy(RetryPolicy::default().deadline(Duration::from_secs(30)));
    if durable {
        builder = builder.durability(Durability::all_replicas());
    }
    let pool = builder.build()?;
    println!(
        "{} workers on {:?}, master {}; {}",
        WORKERS,
        pool.service(),
        pool.master().expect("looked up by build"),
        if durable {
            "every write durable"
        } else {
            "the push and the result durable"
        }
    );
    // A run of its own: what an earlier run left is cleared.
    pool.with_retry(|c| {
        let mut old: Vec<String> = c.keys("result:*")?;
        old.extend(c.keys::<_, Vec<String>>("processing:*")?);
        old.push("jobs".to_owned());
        c.del::<_, ()>(old)
    })?;

    let producing = Arc::new(AtomicBool::new(true));
    // Set once the producer has returned: a push it was still retrying when told to stop is
    // in `jobs` by then, so workers that stop on an empty list leave nothing behind.
    let produced = Arc::new(AtomicBool::new(false));
    let pushed = Arc::new(AtomicU64::new(0));
    let producer = {
        let (pool, producing, pushed) = (pool.clone(), Arc::clone(&producing), Arc::clone(&pushed));
        thread::spawn(move || produce(&pool, &producing, &pushed))
    };
    let workers: Vec<_> = (0..WORKERS)
        .map(|w| {
            let (pool, produced) = (pool.clone(), Arc::clone(&produced));
            thread::spawn(move || work(&pool, w, &produced))
        })
        .collect();

    let started = Instant::now();
    match topology.as_mut() {
        Some(topology) => {
            thread::sleep(Duration::from_secs(2));
            println!("planned failover (SENTINEL FAILOVER)...");
            let new = topology.failover()?;
            println!(
                "  master now {new}; {} jobs pushed",
                pushed.load(Ordering::Relaxed)
            );
            // Sentinel lists the demoted master as a replica at once but re-points it only
            // about 10 s later: a crash before then may promote it, with none of the new
            // master's writes. Crash once it replicates, as a real crash would find it.
            topology.wait_settled()?;
            println!("killing the master {new} (SIGKILL)...");
            topology.kill(&new)?;
            let deadline = Instant::now() + Duration::from_secs(60);
            let after = loop {
                match topology.master() {
                    Ok(master) if master != new => break master,
                    _ if Instant::now() > deadline => {
                        return Err("no failover after the crash".into());
                    }
                    _ => thread::sleep(Duration::from_millis(100)),
                }
            };
            println!(
                "  master now {after}; {} jobs pushed",
                pushed.load(Ordering::Relaxed)
            );
            thread::sleep(Duration::from_secs(2));
        }
        None => {
            thread::sleep(support::duration().unwrap_or(Duration::from_secs(30)));
        }
    }
    producing.store(false, Ordering::Relaxed);
    let jobs = producer.join().expect("producer")?;
    produced.store(true, Ordering::Relaxed);
    let tallies: Vec<Tally> = workers
        .into_iter()
        .map(|w| w.join().expect("worker"))
        .collect::<Result<_, _>>()?;

    // Every job pushed has a result, recorded by one worker, that is still there; no list
    // holds a job. A result a worker was told it recorded and that is gone (lost with a
    // master), then recorded by another, is a job done twice.
    let mut claimed: Vec<(u64, usize)> = tallies
        .iter()
        .enumerate()
        .flat_map(|(w, t)| t.done.iter().map(move |&job| (job, w)))
        .collect();
    claimed.sort_unstable();
    let (results, left): (Vec<Option<String>>, u64) = pool.with_retry_idempotent(|c| {
        let keys: Vec<String> = (1..=jobs).map(|job| format!("result:{job}")).collect();
        let results: Vec<Option<String>> = if keys.is_empty() {
            Vec::new()
        } else {
            c.mget(&keys)?
        };
        let mut left: u64 = c.llen("jobs")?;
        for w in 0..WORKERS {
            left += c.llen::<_, u64>(format!("processing:{w}"))?;
        }
        Ok((results, left))
    })?;
    let missing = results.iter().filter(|r| r.is_none()).count();
    let twice = claimed.windows(2).filter(|p| p[0].0 == p[1].0).count()
        + claimed
            .iter()
            .filter(|&&(job, w)| {
                let at = usize::try_from(job - 1).expect("a job number");
                results.get(at).cloned().flatten() != Some(label(w))
            })
            .count();
    let errors: Vec<&str> = tallies
        .iter()
        .flat_map(|t| t.errors.iter().copied())
        .collect();
    println!(
        "{jobs} jobs in {:.1} s: {} done, {missing} lost, {twice} done twice, {left} left in a \
         list; {} recoveries ({} jobs found in a processing list), other errors: {errors:?}",
        started.elapsed().as_secs_f64(),
        claimed.len(),
        tallies.iter().map(|t| t.recoveries).sum::<u64>(),
        tallies.iter().map(|t| t.recovered).sum::<u64>(),
    );
    if missing > 0 || twice > 0 || left > 0 {
        return Err("a job was lost, done twice or left behind".into());
    }
    Ok(())
}

/// Pushes jobs 1, 2, 3... until told to stop; returns how many. Each push is durable: one
/// acknowledged and then lost with a crashed master would be a job lost.
fn produce(pool: &SentinelPool, producing: &AtomicBool, pushed: &AtomicU64) -> Result<u64, Error> {
    let mut job = 0;
    while producing.load(Ordering::Relaxed) {
        job += 1;
        // A push repeated after it may have been applied puts the job in twice: harmless
        // here, since its result is recorded once (`SET ... NX`) whoever takes it.
        pool.with_retry_idempotent(|c| durably(c, |c| c.rpush::<_, _, ()>("jobs", job)))?;
        pushed.store(job, Ordering::Relaxed);
        // A steady stream, not a flood.
        thread::sleep(Duration::from_micros(500));
    }
    Ok(job)
}

/// Takes jobs until the producer stopped and `jobs` is empty.
fn work(pool: &SentinelPool, w: usize, produced: &AtomicBool) -> Result<Tally, Error> {
    let mut tally = Tally::default();
    let processing = format!("processing:{w}");
    // A worker that starts may find jobs a previous run of it left in its list.
    recover(pool, w, &processing, &mut tally)?;
    loop {
        let moved = pool.with_retry(|c| {
            c.with_read_timeout(Duration::from_secs(3), |c| {
                c.blmove::<_, _, Option<u64>>(
                    "jobs",
                    &processing,
                    Direction::Left,
                    Direction::Right,
                    WAIT_FOR_JOB,
                )
            })
        });
        match moved {
            Ok(Some(job)) => finish(pool, w, &processing, job, &mut tally)?,
            Ok(None) if produced.load(Ordering::Relaxed) => return Ok(tally),
            Ok(None) => {}
            // The move may have happened, or happened unconfirmed: the job, if it moved, is
            // in the processing list. Never move again blindly.
            Err(Error::MaybeApplied { .. } | Error::NotReplicated { .. }) => {
                tally.recoveries += 1;
                recover(pool, w, &processing, &mut tally)?;
            }
            Err(err) => {
                tally.errors.push(err.kind());
                if !err.is_retryable() {
                    return Err(err);
                }
            }
        }
    }
}

/// Does every job in the processing list and removes it.
fn recover(
    pool: &SentinelPool,
    w: usize,
    processing: &str,
    tally: &mut Tally,
) -> Result<(), Error> {
    let jobs: Vec<u64> = pool.with_retry_idempotent(|c| c.lrange(processing, 0, -1))?;
    for job in jobs {
        tally.recovered += 1;
        finish(pool, w, processing, job, tally)?;
    }
    Ok(())
}

/// Does `job` (records its result, once whatever happens) and removes it from the
/// processing list.
fn finish(
    pool: &SentinelPool,
    w: usize,
    processing: &str,
    job: u64,
    tally: &mut Tally,
) -> Result<(), Error> {
    let key = format!("result:{job}");
    // Recorded by this worker if the result holds its name: a write repeated after it was
    // applied (a broken connection, `NotReplicated`) finds its own result there.
    let mine = pool.with_retry_idempotent(|c| {
        let set: bool = durably(c, |c| c.set_nx(&key, label(w)))?;
        Ok(set || c.get::<_, Option<String>>(&key)? == Some(label(w)))
    })?;
    if mine {
        tally.done.push(job);
    }
    pool.with_retry_idempotent(|c| c.lrem::<_, _, ()>(processing, 1, job))
}

/// What worker `w` records as a job's result.
fn label(w: usize) -> String {
    format!("done by worker {w}")
}

/// Runs `op` durably: in a durable pool as it is, otherwise with durability for this call.
fn durably<T>(
    c: &mut Connection,
    op: impl FnOnce(&mut Connection) -> RedisResult<T>,
) -> RedisResult<T> {
    c.with_durability(Some(Durability::all_replicas()), op)
}
