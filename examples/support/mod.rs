//! What the examples share: where the sentinels are.

use r2d2_redis_sentinel::testkit::{self, Topology};

/// The deployment an example talks to.
pub(crate) struct Target {
    /// The local topology started for the example, if any; dropping it stops its processes.
    pub(crate) topology: Option<Topology>,
    /// The sentinels' URLs.
    pub(crate) sentinels: Vec<String>,
    /// The service (master) name.
    pub(crate) service: String,
}

/// The sentinels named by `SENTINELS` (comma-separated URLs) and the service named by `SERVICE`
/// (default `mymaster`); when `SENTINELS` is not set, a local topology started here.
pub(crate) fn target() -> Result<Target, testkit::Error> {
    if let Ok(list) = std::env::var("SENTINELS") {
        return Ok(Target {
            topology: None,
            sentinels: list.split(',').map(str::to_owned).collect(),
            service: std::env::var("SERVICE").unwrap_or_else(|_| "mymaster".into()),
        });
    }
    println!(
        "SENTINELS is not set: starting a local topology (1 master, 2 replicas, 3 sentinels)..."
    );
    let topology = Topology::start()?;
    Ok(Target {
        sentinels: topology.sentinel_urls(),
        service: topology.service_name().to_owned(),
        topology: Some(topology),
    })
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
