//! What the examples share: where the sentinels are, and how an example ends.

// Each example uses part of what is here.
#![allow(dead_code)]

use std::{
    io::{Read, Write},
    time::Duration,
};

use r2d2_redis_sentinel::{Builder, SentinelPool, testkit::Topology};

/// The deployment an example talks to.
pub(crate) struct Target {
    /// The local topology started for the example, if any; dropping it stops its processes.
    pub(crate) topology: Option<Topology>,
    /// A pool builder for it.
    pub(crate) builder: Builder,
}

/// Where the sentinels are: what [`SentinelPool::from_env`] finds (`REDIS_SENTINEL_URL`, or
/// `SENTINELS` and `SERVICE`, and `ADDRESS_MAP`, as `docker/README.md` uses them), or else a
/// local topology started here.
pub(crate) fn target() -> Result<Target, Box<dyn std::error::Error>> {
    if let Some(builder) = SentinelPool::from_env()? {
        return Ok(Target {
            topology: None,
            builder,
        });
    }
    println!(
        "neither REDIS_SENTINEL_URL nor SENTINELS is set: starting a local topology (1 master, \
         2 replicas, 3 sentinels)..."
    );
    let topology = Topology::start()?;
    Ok(Target {
        builder: topology.pool_builder(),
        topology: Some(topology),
    })
}

/// `DURATION`, in seconds, when it is set to a whole number.
pub(crate) fn duration() -> Option<std::time::Duration> {
    std::env::var("DURATION")
        .ok()
        .and_then(|d| d.parse().ok())
        .map(std::time::Duration::from_secs)
}

/// Ends an example: on error, prints its message (which says what to fix) and its causes,
/// not the `Debug` form a `main` returning `Result` would print, and exits with failure.
pub(crate) fn finish(result: Result<(), Box<dyn std::error::Error>>) -> std::process::ExitCode {
    let Err(err) = result else {
        return std::process::ExitCode::SUCCESS;
    };
    eprintln!("error: {err}");
    let mut shown = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        // Wrappers often repeat their cause's text: show each message once.
        let text = cause.to_string();
        if !shown.contains(&text) {
            eprintln!("  caused by: {text}");
            shown.push_str(&text);
        }
        source = cause.source();
    }
    std::process::ExitCode::FAILURE
}

/// One HTTP/1.0 request from an example to the server it runs; the status and body of the
/// response.
pub(crate) fn send(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
) -> std::io::Result<(u16, String)> {
    let mut stream = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        stream,
        "{method} {path} HTTP/1.0\r\nContent-Length: 0\r\n\r\n"
    )?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = response
        .split_once("\r\n\r\n")
        .map_or("", |(_, body)| body)
        .to_owned();
    Ok((status, body))
}
