//! Failovers over a network that is not loopback, on the Docker engine: the `docker/`
//! deployment (sentinels at `down-after-milliseconds` 5 s), with the traffic into every data
//! node on the sentinels' and replication's network shaped on the host (`tc` token bucket on
//! the container's host-side interface), so that replication lags behind the writes as it does
//! over a real link. A pool with the fence and one without write side by side (one writer
//! each, unique keys through `with_retry_idempotent`) through planned failovers (`SENTINEL
//! FAILOVER`) and crashes (`docker kill`, then the old master restarted as an empty node).
//!
//! Every acknowledged write missing from the new master is put in one class: acknowledged
//! before the failover began (`SENTINEL FAILOVER` sent; the master killed), in the announcement
//! window (from then to the first `+switch-master` any sentinel published), or after it.
//!
//! `cargo bench -p benchmarks --bench network` (needs a Docker engine, root for `tc`, and the image
//! `docker/build-image.sh` builds; about 5 minutes). `FAILOVERS=N` of each kind (3), `RATE`
//! the shaped rate (`tc` units, 4mbit). `DURABLE=on` compares durable mode with the default
//! (both fenced) instead of the fence on with off. `COST=on` runs no failover: it measures
//! what a durable write costs over this network (p50 and p99 of one `SET`, and of a pipeline
//! of 100 1 KiB `SET`s, durable against default and against a raw connection sending the
//! request and `WAIT 2`), unshaped, then shaped at `RATE`. The kernel here has no `netem`, so
//! latency is not added: a token bucket is what it has. Results in BENCHMARKS.md.

use support::fence as fence_kit;

use support::docker as docker_kit;

use std::{
    collections::HashMap,
    env, fs,
    process::Command,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

use docker_kit::{
    CLIENT_SENTINELS, Compose, DATA, SENTINELS, pool_builder, query, service_of, to_client_addr,
    until_pools_write_to,
};
use fence_kit::{Report, Writer};
use parking_lot::Mutex;
use r2d2_redis_sentinel::{NodeAddr, SentinelPool, redis};

const PROJECT: &str = "r2d2sentinelnet";

#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    Planned,
    Crash,
}

/// What one pool lost in one failover, by class, and what it saw.
#[derive(Default)]
struct Loss {
    before: usize,
    window: usize,
    after: usize,
    acked: usize,
    errors: usize,
    gap: Duration,
}

fn sh(program: &str, args: &[&str]) -> String {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{program}: {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// The host-side interface of `container` on the compose network `network`: the container's
/// interface with that network's MAC address names its peer's index (`iflink`).
fn host_interface(container: &str, network: &str) -> String {
    let mac = sh(
        "docker",
        &[
            "inspect",
            "-f",
            &format!("{{{{(index .NetworkSettings.Networks \"{network}\").MacAddress}}}}"),
            container,
        ],
    );
    let links = sh(
        "docker",
        &[
            "exec",
            container,
            "sh",
            "-c",
            "for i in /sys/class/net/*; do echo $(cat $i/address) $(cat $i/iflink); done",
        ],
    );
    let peer: u32 = links
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{mac} ")))
        .and_then(|i| i.trim().parse().ok())
        .unwrap_or_else(|| panic!("no interface with {mac} in {container}: {links}"));
    fs::read_dir("/sys/class/net")
        .unwrap()
        .filter_map(Result::ok)
        .find(|e| {
            fs::read_to_string(e.path().join("ifindex"))
                .is_ok_and(|i| i.trim().parse::<u32>() == Ok(peer))
        })
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .unwrap_or_else(|| panic!("no host interface with index {peer}"))
}

/// Shapes what enters `service`'s container on the `redis` network to `rate`.
fn shape(compose: &Compose, service: &str, rate: &str) {
    let interface = host_interface(&compose.container(service), &compose.network("redis"));
    sh(
        "tc",
        &[
            "qdisc", "replace", "dev", &interface, "root", "tbf", "rate", rate, "burst", "16kb",
            "latency", "200ms",
        ],
    );
}

/// A node's replication offset (`master_repl_offset` on a master, `slave_repl_offset` on a
/// replica), from `INFO replication`.
fn offset(node: &str, field: &str) -> Option<u64> {
    let mut cmd = redis::cmd("INFO");
    cmd.arg("replication");
    let info: String = query(node, 6379, &cmd)?;
    info.lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().parse().ok())
}

/// Bytes of replication stream the master (announced at `master`) has and its most advanced
/// replica lacks: the master's offset, then each replica's own, read right after. (The offsets
/// the master lists for its replicas are their acknowledgements, once a second: they would
/// count a second of writes as lag.)
fn lag_bytes(master: &str) -> Option<u64> {
    let at_master = offset(to_client_addr(master), "master_repl_offset:")?;
    DATA.iter()
        .filter(|(_, redis, _)| *redis != master)
        .filter_map(|(_, _, client)| offset(client, "slave_repl_offset:"))
        .max()
        .map(|best| at_master.saturating_sub(best))
}

/// The master every sentinel in `sentinels` names, once they agree, run no failover, and it
/// answers `ROLE` master.
fn agreed(sentinels: &[&str]) -> Option<String> {
    let mut named = Vec::new();
    for &s in sentinels {
        let mut cmd = redis::cmd("SENTINEL");
        cmd.arg("MASTER").arg("mymaster");
        let master: HashMap<String, String> = query(s, 26379, &cmd)?;
        if master.get("flags").map(String::as_str) != Some("master") {
            return None;
        }
        named.push(master.get("ip")?.clone());
    }
    named.dedup();
    let ip = (named.len() == 1).then(|| named.remove(0))?;
    let role: redis::Role = query(to_client_addr(&ip), 6379, &redis::cmd("ROLE"))?;
    matches!(role, redis::Role::Primary { .. }).then_some(ip)
}

/// The first `+switch-master` any sentinel publishes from now on, timestamped.
fn first_switch() -> (Arc<Mutex<Option<Instant>>>, Arc<AtomicBool>) {
    let (first, stop) = (Arc::new(Mutex::new(None)), Arc::new(AtomicBool::new(false)));
    for s in CLIENT_SENTINELS {
        let (first, stop) = (Arc::clone(&first), Arc::clone(&stop));
        let mut conn = redis::Client::open(format!("redis://{s}:26379"))
            .unwrap()
            .get_connection_with_timeout(Duration::from_secs(2))
            .unwrap();
        conn.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        thread::spawn(move || {
            let mut pubsub = conn.as_pubsub();
            pubsub.subscribe("+switch-master").unwrap();
            while !stop.load(Ordering::Relaxed) {
                if pubsub.get_message().is_ok() {
                    let at = Instant::now();
                    first.lock().get_or_insert(at);
                }
            }
        });
    }
    (first, stop)
}

fn classify(report: &Report, on: &NodeAddr, began: Instant, switched: Option<Instant>) -> Loss {
    let missing = report.missing_on(on);
    let mut loss = Loss {
        acked: report.acks.len(),
        errors: report.errors.len(),
        gap: report.longest_gap,
        ..Loss::default()
    };
    for ack in missing {
        if ack.at < began {
            loss.before += 1;
        } else if switched.is_none_or(|s| ack.at < s) {
            loss.window += 1;
        } else {
            loss.after += 1;
        }
    }
    loss
}

fn failover(
    compose: &Compose,
    kind: Kind,
    round: usize,
    pools: &[(&'static str, SentinelPool)],
) -> (Vec<Loss>, Option<u64>) {
    let old = support::eventually("the sentinels to agree", Duration::from_secs(90), || {
        agreed(&SENTINELS)
    });
    let writers: Vec<Writer> = pools
        .iter()
        .map(|(name, pool)| {
            let prefix: &'static str =
                Box::leak(format!("{}{round}", name.replace(' ', "-")).into_boxed_str());
            Writer::start_with(pool, prefix)
        })
        .collect();
    thread::sleep(Duration::from_secs(2));
    let (switched, stop_listening) = first_switch();
    thread::sleep(Duration::from_millis(200));
    let lag = lag_bytes(&old);
    let mut began = Instant::now();
    let service = service_of(&old);
    let container = compose.container(service);
    match kind {
        Kind::Planned => {
            let mut cmd = redis::cmd("SENTINEL");
            cmd.arg("FAILOVER").arg("mymaster");
            let _: String = query(CLIENT_SENTINELS[0], 26379, &cmd).expect("SENTINEL FAILOVER");
        }
        Kind::Crash => {
            // The master is dead when the command returns: what it acknowledged until then
            // was acknowledged before the failover began.
            sh("docker", &["kill", &container]);
            began = Instant::now();
        }
    }
    let new = support::eventually("the new master", Duration::from_secs(90), || {
        agreed(&SENTINELS).filter(|m| *m != old)
    });
    let new_client = NodeAddr::new(to_client_addr(&new), 6379);
    let each: Vec<&SentinelPool> = pools.iter().map(|(_, pool)| pool).collect();
    until_pools_write_to(
        "the pools to write to the new master",
        &each,
        &new_client,
        Duration::from_secs(60),
    );
    thread::sleep(Duration::from_millis(500));
    let reports: Vec<Report> = writers.into_iter().map(Writer::finish).collect();
    stop_listening.store(true, Ordering::Relaxed);
    let switched = *switched.lock();
    let losses = reports
        .iter()
        .map(|r| classify(r, &new_client, began, switched))
        .collect();
    if kind == Kind::Crash {
        sh("docker", &["start", &container]);
        shape(compose, service, &rate());
    }
    (losses, lag)
}

/// p50 and p99 of `request` run one after the other for 3 seconds (after 0.3 s of warm-up).
fn percentiles(mut request: impl FnMut()) -> (Duration, Duration) {
    let mut run = |length: Duration| {
        let end = Instant::now() + length;
        let mut times = Vec::new();
        while Instant::now() < end {
            let start = Instant::now();
            request();
            times.push(start.elapsed());
        }
        times
    };
    run(Duration::from_millis(300));
    let mut times = run(Duration::from_secs(3));
    times.sort();
    let at = |q: f64| times[((times.len() as f64 * q) as usize).min(times.len() - 1)];
    (at(0.5), at(0.99))
}

/// `COST=on`: durable writes against default ones over the containers' network, unshaped
/// and then shaped at [`rate`].
fn cost(compose: &Compose) {
    let master = support::eventually("the sentinels to agree", Duration::from_secs(90), || {
        agreed(&SENTINELS)
    });
    let master = NodeAddr::new(to_client_addr(&master), 6379);
    let durable = pool_builder()
        .durability(r2d2_redis_sentinel::Durability::all_replicas())
        .build()
        .expect("durable pool");
    let default = pool_builder().build().expect("default pool");
    let mut raw = redis::Client::open(format!("redis://{master}"))
        .and_then(|c| c.get_connection_with_timeout(Duration::from_secs(2)))
        .expect("raw connection");
    raw.set_read_timeout(Some(Duration::from_secs(70)))
        .expect("read timeout");
    let mut single = redis::pipe();
    single.set("cost:one", 1).ignore();
    let mut large = redis::pipe();
    let value = vec![b'x'; 1024];
    for i in 0..100 {
        large.set(format!("cost:{i}"), &value).ignore();
    }
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!(
        "| link | request | default: p50 / p99 | durable: p50 / p99 | raw request + `WAIT 2`: p50 / p99 |"
    );
    println!("| --- | --- | --- | --- | --- |");
    for link in ["unshaped".to_owned(), rate()] {
        if link != "unshaped" {
            for (service, _, _) in DATA {
                shape(compose, service, &link);
            }
        }
        for (name, request) in [
            ("one `SET`", &single),
            ("pipeline of 100 1 KiB `SET`s", &large),
        ] {
            let on = |pool: &SentinelPool| {
                percentiles(|| {
                    request
                        .query::<()>(&mut *pool.get().expect("checkout"))
                        .expect("request");
                })
            };
            // The writes that wait first: the default's, which do not, leave a backlog on
            // a shaped link that the next waits would include.
            let durable = on(&durable);
            let mut waited = request.clone();
            waited.cmd("WAIT").arg(2).arg(1000).ignore();
            let bare = percentiles(|| waited.query::<()>(&mut raw).expect("raw request"));
            let default = on(&default);
            // Replication catches up before the next case.
            let _: i64 = redis::cmd("WAIT")
                .arg(2)
                .arg(60_000)
                .query(&mut raw)
                .expect("replicas caught up");
            println!(
                "| {link} | {name} | {:.2} / {:.2} ms | {:.2} / {:.2} ms | {:.2} / {:.2} ms |",
                ms(default.0),
                ms(default.1),
                ms(durable.0),
                ms(durable.1),
                ms(bare.0),
                ms(bare.1)
            );
        }
    }
}

fn rate() -> String {
    env::var("RATE").unwrap_or_else(|_| "4mbit".to_owned())
}

fn main() {
    let Some(image) = docker_kit::image() else {
        return;
    };
    let failovers: usize = env::var("FAILOVERS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(3);
    let compose = Compose::new(PROJECT, image, Duration::from_secs(5));
    support::eventually("the containers to settle", Duration::from_secs(90), || {
        docker_kit::settled()
    });
    if env::var("COST").is_ok_and(|v| v == "on") {
        cost(&compose);
        return;
    }
    for (service, _, _) in DATA {
        shape(&compose, service, &rate());
    }
    // `DURABLE=on`: durable mode (every write confirmed by all connected replicas) against
    // the default, both fenced; otherwise the fence on against off.
    let durable = env::var("DURABLE").is_ok_and(|v| v == "on");
    let pools = if durable {
        [
            (
                "durable",
                pool_builder()
                    .durability(r2d2_redis_sentinel::Durability::all_replicas())
                    .build()
                    .expect("durable pool"),
            ),
            ("default", pool_builder().build().expect("default pool")),
        ]
    } else {
        [
            ("fence on", pool_builder().build().expect("fenced pool")),
            (
                "fence off",
                pool_builder().fence(false).build().expect("unfenced pool"),
            ),
        ]
    };
    let (a, b) = (pools[0].0, pools[1].0);
    let mut rows: Vec<(Kind, Vec<Loss>, Option<u64>)> = Vec::new();
    for round in 0..failovers * 2 {
        let kind = if round % 2 == 0 {
            Kind::Planned
        } else {
            Kind::Crash
        };
        let (losses, lag) = failover(&compose, kind, round, &pools);
        eprintln!(
            "{kind:?}: lag {lag:?} B; {a} lost {}/{}/{} of {}, {b} {}/{}/{} of {}",
            losses[0].before,
            losses[0].window,
            losses[0].after,
            losses[0].acked,
            losses[1].before,
            losses[1].window,
            losses[1].after,
            losses[1].acked
        );
        rows.push((kind, losses, lag));
    }
    println!(
        "| failover | replication lag when it began | {a}: lost before it began / in the announcement window / after | {b}: the same | longest write gap, {a} / {b} | errors, {a} / {b} | acknowledged, {a} / {b} |"
    );
    println!("| --- | --- | --- | --- | --- | --- | --- |");
    for (kind, losses, lag) in &rows {
        let (on, off) = (&losses[0], &losses[1]);
        println!(
            "| {} | {} | {} / {} / {} | {} / {} / {} | {:.2} / {:.2} s | {} / {} | {} / {} |",
            match kind {
                Kind::Planned => "planned",
                Kind::Crash => "crash",
            },
            lag.map_or("?".to_owned(), |b| format!("{b} B")),
            on.before,
            on.window,
            on.after,
            off.before,
            off.window,
            off.after,
            on.gap.as_secs_f64(),
            off.gap.as_secs_f64(),
            on.errors,
            off.errors,
            on.acked,
            off.acked
        );
    }
}
