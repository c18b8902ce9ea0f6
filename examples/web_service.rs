//! A small blocking HTTP service on one shared pool, as a web service would use it: orders
//! written under `with_retry_idempotent` (safe to repeat: `SET NX`), visits counted under
//! `with_retry` (`INCR` is not), order lookups from a replica pool, a health endpoint from
//! `stats()`, and every error mapped to the HTTP status a client can act on.
//!
//! `cargo run --example web_service` starts a local topology, serves on a free port, sends
//! itself requests from 4 threads through a planned failover, and prints what the clients
//! saw (and fails if any request failed). `LISTEN=127.0.0.1:8080 cargo run --example web_service` serves until stopped (with
//! `REDIS_SENTINEL_URL`, or `SENTINELS` and `SERVICE`, for your own deployment):
//! `curl -X POST localhost:8080/orders/42`, `curl localhost:8080/orders/42`,
//! `curl localhost:8080/visits`, `curl localhost:8080/health`.

use std::{
    collections::BTreeMap,
    sync::Arc,
    thread,
    time::{Duration, Instant},
};

mod support;

use r2d2_redis_sentinel::{
    Error, ReplicaOptions, SentinelPool,
    redis::{Commands, SetExpiry, SetOptions},
};
use tiny_http::{Header, Method, Response, Server};

fn main() -> std::process::ExitCode {
    support::finish(run())
}

/// What the handlers share: the master pool and the replica pool (both cheap to clone).
struct App {
    pool: SentinelPool,
    replicas: SentinelPool,
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    env_logger::init();
    let support::Target { topology, builder } = support::target()?;
    // Deadlines for a request path: a checkout waits 1 s at most, and with_retry gives up
    // after 5 s, longer than a planned failover's pause (about a second with the fence) but
    // shorter than a client's patience. A crash takes Sentinel's down-after-milliseconds
    // (30 s by default) before anyone fails over: those requests get a 503 and retry.
    let pool = builder
        .max_size(16)
        .checkout_timeout(Duration::from_secs(1))
        .client_name("web-service-example")
        .retry_policy(r2d2_redis_sentinel::RetryPolicy::default().deadline(Duration::from_secs(5)))
        .build()?;
    let replicas = pool.replica_pool(ReplicaOptions::default().fallback_to_master(true))?;
    let app = Arc::new(App { pool, replicas });

    let listen = std::env::var("LISTEN").ok();
    let server = Arc::new(
        Server::http(listen.as_deref().unwrap_or("127.0.0.1:0"))
            .map_err(|e| format!("cannot listen: {e}"))?,
    );
    let addr = server.server_addr().to_ip().ok_or("not an IP listener")?;
    let workers: Vec<_> = (0..8)
        .map(|_| {
            let (server, app) = (Arc::clone(&server), Arc::clone(&app));
            thread::spawn(move || {
                // Ends when the server is unblocked.
                for request in server.incoming_requests() {
                    let (status, body) = handle(&app, request.method(), request.url());
                    let mut response = Response::from_string(body).with_status_code(status);
                    if status == 503 {
                        response.add_header(
                            Header::from_bytes("Retry-After", "1").expect("a valid header"),
                        );
                    }
                    // A client that went away is no concern of the service.
                    let _ = request.respond(response);
                }
            })
        })
        .collect();
    println!("serving on http://{addr}");

    if listen.is_some() {
        for worker in workers {
            let _ = worker.join();
        }
        return Ok(());
    }
    for (method, path) in [
        ("POST", "/orders/1"),
        ("POST", "/orders/1"),
        ("GET", "/visits"),
        ("GET", "/health"),
    ] {
        let (status, body) = support::send(addr, method, path)?;
        println!("{method} {path} -> {status} {body}");
    }

    // Four clients for 3 seconds; a planned failover half a second in.
    let start = Instant::now();
    let clients: Vec<_> = (0..4)
        .map(|client| {
            thread::spawn(move || {
                let mut seen: BTreeMap<u16, u64> = BTreeMap::new();
                let mut order = client * 1_000_000;
                while start.elapsed() < Duration::from_secs(3) {
                    order += 1;
                    for (method, path) in [
                        ("POST", format!("/orders/{order}")),
                        ("GET", "/visits".into()),
                    ] {
                        let status =
                            support::send(addr, method, &path).map_or(0, |(status, _)| status);
                        *seen.entry(status).or_default() += 1;
                    }
                }
                seen
            })
        })
        .collect();
    thread::sleep(Duration::from_millis(500));
    if let Some(topology) = &topology {
        let new = topology.failover()?;
        println!("failover requested; new master {new}");
    }
    let mut seen: BTreeMap<u16, u64> = BTreeMap::new();
    for client in clients {
        for (status, count) in client.join().map_err(|_| "a client panicked")? {
            *seen.entry(status).or_default() += count;
        }
    }
    println!("statuses the clients saw: {seen:?}");
    // Through a planned failover every request succeeds: the pool holds writes for about a
    // second and the retries absorb the rest.
    let failed: u64 = seen
        .iter()
        .filter(|(s, _)| !(200..300).contains(*s))
        .map(|(_, n)| n)
        .sum();
    if failed > 0 {
        return Err(format!("{failed} requests failed through a planned failover").into());
    }
    let (status, body) = support::send(addr, "GET", "/orders/1")?;
    println!("GET /orders/1 -> {status} {body}");
    let (status, health) = support::send(addr, "GET", "/health")?;
    println!("GET /health -> {status} {health}");

    // Each unblock ends one worker's wait (tiny_http queues them): one per worker.
    for _ in &workers {
        server.unblock();
    }
    for worker in workers {
        let _ = worker.join();
    }
    Ok(())
}

/// Routes one request; every Redis call goes through the pool's retry.
fn handle(app: &App, method: &Method, url: &str) -> (u16, String) {
    let result = match (method, url.strip_prefix("/orders/")) {
        // Creating an order with its id is safe to repeat: a retry after a connection broke
        // mid-request finds the order already there.
        (Method::Post, Some(id)) => app
            .pool
            .with_retry_idempotent(|c| {
                c.set_options::<_, _, bool>(
                    format!("order:{id}"),
                    "placed",
                    SetOptions::default()
                        .conditional_set(r2d2_redis_sentinel::redis::ExistenceCheck::NX)
                        .with_expiration(SetExpiry::EX(3600)),
                )
            })
            .map(|created| {
                if created {
                    (201, "created".to_owned())
                } else {
                    (200, "already placed".to_owned())
                }
            }),
        // Reads may go to replicas: a just-placed order may not be there yet.
        (Method::Get, Some(id)) => app
            .replicas
            .with_retry_idempotent(|c| c.get::<_, Option<String>>(format!("order:{id}")))
            .map(|order| match order {
                Some(state) => (200, state),
                None => (404, "no such order".to_owned()),
            }),
        // INCR is not safe to repeat: with_retry never runs it again once it may have counted.
        (Method::Get, None) if url == "/visits" => app
            .pool
            .with_retry(|c| c.incr::<_, _, u64>("visits", 1))
            .map(|visits| (200, visits.to_string())),
        (Method::Get, None) if url == "/health" => {
            // One line: master, generation, failovers, watcher, connections.
            let stats = app.pool.stats();
            let status = if stats.master.is_some() { 200 } else { 503 };
            Ok((status, stats.to_string()))
        }
        _ => Ok((404, "not found".to_owned())),
    };
    result.unwrap_or_else(|err| {
        let (status, what) = status_of(&err);
        log::warn!("{method} {url}: {err}");
        (status, what.to_owned())
    })
}

/// The HTTP status for an error, by what the client can do about it.
fn status_of(err: &Error) -> (u16, &'static str) {
    match err {
        // Our configuration is wrong: no retry helps, an operator must act.
        err if err.is_config() => (500, "the service is misconfigured"),
        // The write may have been applied: say so; the client retries with the same id.
        Error::MaybeApplied { .. } => (
            503,
            "the outcome is unknown (the connection broke after the request was sent): \
             retry with the same order id",
        ),
        // A failover or an unreachable master, past the retry deadline: try again shortly.
        err if err.is_retryable() || err.is_timeout() => {
            (503, "Redis is failing over or unreachable: retry shortly")
        }
        // Anything else is a bug of ours (WRONGTYPE, a reply that does not convert...).
        _ => (500, "internal error"),
    }
}
