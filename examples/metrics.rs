//! The pool's series on a Prometheus scrape page, beside a `/health` line: what a service
//! exports for its dashboard. Needs the `metrics` feature; the application picks the exporter
//! (here `metrics-exporter-prometheus`, its recorder alone, served by a small blocking HTTP
//! server).
//!
//! `cargo run --features metrics --example metrics` starts a local topology, writes from 4
//! threads through a planned failover, scrapes its own page and prints the Sentinel lines;
//! it fails if a write failed or a series is missing. `LISTEN=127.0.0.1:9090 cargo run
//! --features metrics --example metrics` serves until stopped (with `REDIS_SENTINEL_URL`, or
//! `SENTINELS` and `SERVICE`, for your own deployment): `curl localhost:9090/metrics`.

use std::{
    sync::Arc,
    thread,
    time::{Duration, Instant},
};

mod support;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use r2d2_redis_sentinel::{SentinelPool, redis::Commands};
use tiny_http::{Response, Server};

fn main() -> std::process::ExitCode {
    support::finish(run())
}

/// Series the page must show once the pool has followed a failover.
const EXPECTED: [&str; 6] = [
    "db_client_connection_count",
    "db_client_connection_wait_time",
    "db_client_operation_duration",
    "redis_sentinel_failovers",
    "redis_sentinel_fence_held",
    "redis_sentinel_watcher_subscribed",
];

fn run() -> Result<(), Box<dyn std::error::Error>> {
    env_logger::init();
    // The recorder first: a pool registers its series when it is built.
    let prometheus = PrometheusBuilder::new().install_recorder()?;
    let support::Target { topology, builder } = support::target()?;
    let pool = builder.max_size(8).build()?;

    let listen = std::env::var("LISTEN").ok();
    let server = Arc::new(
        Server::http(listen.as_deref().unwrap_or("127.0.0.1:0"))
            .map_err(|e| format!("cannot listen: {e}"))?,
    );
    let addr = server.server_addr().to_ip().ok_or("not an IP listener")?;
    let page = {
        let (server, pool, prometheus) = (Arc::clone(&server), pool.clone(), prometheus.clone());
        // Ends when the server is unblocked.
        thread::spawn(move || {
            for request in server.incoming_requests() {
                let (status, body) = serve(request.url(), &pool, &prometheus);
                let _ = request.respond(Response::from_string(body).with_status_code(status));
            }
        })
    };
    println!("serving http://{addr}/metrics and http://{addr}/health");
    if listen.is_some() {
        let _ = page.join();
        return Ok(());
    }

    // Four writers for 3 seconds; a planned failover half a second in.
    let start = Instant::now();
    let writers: Vec<_> = (0..4)
        .map(|writer| {
            let pool = pool.clone();
            thread::spawn(move || {
                let mut failed = 0;
                for i in 0.. {
                    if start.elapsed() > Duration::from_secs(3) {
                        break;
                    }
                    let key = format!("metrics:{writer}:{i}");
                    if pool
                        .with_retry_idempotent(|c| c.set::<_, _, ()>(&key, i))
                        .is_err()
                    {
                        failed += 1;
                    }
                }
                failed
            })
        })
        .collect();
    thread::sleep(Duration::from_millis(500));
    if let Some(topology) = &topology {
        println!("failover requested; new master {}", topology.failover()?);
    }
    let mut failed = 0;
    for writer in writers {
        failed += writer.join().map_err(|_| "a writer panicked")?;
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while topology.is_some() && pool.stats().failovers == 0 && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(50));
    }

    let (_, health) = support::send(addr, "GET", "/health")?;
    println!("GET /health -> {health}");
    let (status, page_text) = support::send(addr, "GET", "/metrics")?;
    println!(
        "GET /metrics -> {status}, {} lines; the Sentinel ones:",
        page_text.lines().count()
    );
    for line in page_text
        .lines()
        .filter(|l| l.starts_with("redis_sentinel_") && !l.contains("_silence"))
    {
        println!("  {line}");
    }
    server.unblock();
    let _ = page.join();
    let missing: Vec<_> = EXPECTED
        .iter()
        .filter(|name| topology.is_some() && !page_text.contains(*name))
        .collect();
    if !missing.is_empty() {
        return Err(format!("the scrape page lacks {missing:?}").into());
    }
    if failed > 0 {
        return Err(format!("{failed} writes failed through a planned failover").into());
    }
    Ok(())
}

/// The scrape page, or the health line.
fn serve(url: &str, pool: &SentinelPool, prometheus: &PrometheusHandle) -> (u16, String) {
    match url {
        "/metrics" => {
            // Histograms' summaries are kept up to date by upkeep: at each scrape here.
            prometheus.run_upkeep();
            (200, prometheus.render())
        }
        "/health" => {
            let stats = pool.stats();
            (
                if stats.master.is_some() { 200 } else { 503 },
                stats.to_string(),
            )
        }
        _ => (404, "not found".to_owned()),
    }
}
