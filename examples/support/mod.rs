//! What the examples share: where the sentinels are, and how an example ends.

use r2d2_redis_sentinel::{Builder, SentinelPool, testkit::Topology};

/// The deployment an example talks to.
pub(crate) struct Target {
    /// The local topology started for the example, if any; dropping it stops its processes.
    pub(crate) topology: Option<Topology>,
    /// A pool builder for it.
    pub(crate) builder: Builder,
}

/// Where the sentinels are, first found of: the connection string in `REDIS_SENTINEL_URL`
/// (`redis+sentinel://host:26379,host2:26379/mymaster`); the sentinels named by `SENTINELS`
/// (comma-separated URLs) with the service named by `SERVICE` (default `mymaster`); a local
/// topology started here. With either variable, `ADDRESS_MAP` (comma-separated
/// `announced=reachable` pairs of `host:port`) rewrites the addresses the sentinels announce,
/// as `docker/README.md` uses it.
pub(crate) fn target() -> Result<Target, Box<dyn std::error::Error>> {
    let builder = if let Ok(url) = std::env::var("REDIS_SENTINEL_URL") {
        Some(SentinelPool::from_url(&url)?)
    } else if let Ok(list) = std::env::var("SENTINELS") {
        let service = std::env::var("SERVICE").unwrap_or_else(|_| "mymaster".into());
        Some(SentinelPool::builder(list.split(','), service))
    } else {
        None
    };
    if let Some(builder) = builder {
        let pairs = std::env::var("ADDRESS_MAP").unwrap_or_default();
        let pairs = pairs
            .split(',')
            .filter(|p| !p.trim().is_empty())
            .map(|pair| {
                pair.split_once('=').ok_or_else(|| {
                    format!(
                        "ADDRESS_MAP: {pair:?} is not announced=reachable (host:port=host:port)"
                    )
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        return Ok(Target {
            topology: None,
            builder: builder.address_map(pairs),
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
