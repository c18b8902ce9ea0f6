//! Hostile input to the builder: every URL form and option value gives a typed error or a
//! documented accepted value, never a panic. No server is needed: validation runs
//! before any I/O, and accepted values are checked by the addresses the pool would ask.

use std::time::Duration;

use r2d2_redis_sentinel::{Error, RetryPolicy, SentinelPool};

/// Builds against nothing listening; what matters is the kind of error. (It sets
/// `sentinel_timeout` and `checkout_timeout` itself: tests/bad_input.rs covers those.)
fn outcome(builder: r2d2_redis_sentinel::Builder) -> Result<(), Error> {
    builder
        .sentinel_timeout(Duration::from_millis(50))
        .checkout_timeout(Duration::from_millis(50))
        .build()
        .map(|_| ())
}

#[test]
fn sentinel_urls() {
    let rejected = [
        "",
        "   ",
        "http://127.0.0.1:26379",
        "rediss+unix:///tmp/x",
        "redis://127.0.0.1:0",
        "redis://127.0.0.1:65536",
        "redis://127.0.0.1:-1",
        "redis://:26379",
        "redis://::1:26379",
        "redis://127.0.0.1:26379:1",
    ];
    for url in rejected {
        match outcome(SentinelPool::builder([url], "mymaster")) {
            Err(Error::InvalidSentinelAddress { .. }) => {}
            other => panic!("{url:?}: expected InvalidSentinelAddress, got {other:?}"),
        }
    }
    // Without a port a sentinel address means 26379 (checked where nothing connects, in the
    // crate's unit tests). Accepted forms reach the network (nothing listens): an
    // unreachable-sentinels error.
    let accepted = [
        "redis://127.0.0.1:1",
        "127.0.0.1:1",
        "redis://[::1]:1",
        "[::1]:1",
        "redis://user:pass@127.0.0.1:1",
        "redis://:pass@127.0.0.1:1",
        // Surrounding white space is trimmed (addresses read from files and variables).
        " 127.0.0.1:1 ",
        "127.0.0.1:1\n",
    ];
    for url in accepted {
        match outcome(SentinelPool::builder([url], "mymaster")) {
            Err(Error::SentinelsUnreachable { .. }) => {}
            other => panic!("{url:?}: expected SentinelsUnreachable, got {other:?}"),
        }
    }
}

#[test]
fn service_names() {
    for name in [
        "",
        "   ",
        "with space",
        "tab\there",
        "new\nline",
        "nul\0byte",
    ] {
        match outcome(SentinelPool::builder(["127.0.0.1:1"], name)) {
            Err(Error::InvalidConfig {
                option: "service", ..
            }) => {}
            other => panic!("{name:?}: expected InvalidConfig, got {other:?}"),
        }
    }
    let huge = "m".repeat(100_000);
    for name in ["mymaster", "ünïcødé-名前", "a.b-c_d:e", huge.as_str()] {
        match outcome(SentinelPool::builder(["127.0.0.1:1"], name)) {
            Err(Error::SentinelsUnreachable { .. }) => {}
            other => panic!(
                "{:.40?}: expected SentinelsUnreachable, got {other:?}",
                name
            ),
        }
    }
}

#[test]
fn credentials() {
    let base = || SentinelPool::builder(["127.0.0.1:1"], "mymaster");
    // Accepted: Redis takes any bytes as a password.
    for builder in [
        base().password("with space"),
        base().password("nön-äscii"),
        base().password(""),
        base().username("app").password("p"),
        base().sentinel_password("s p"),
    ] {
        assert!(
            matches!(outcome(builder), Err(Error::SentinelsUnreachable { .. })),
            "a password was refused"
        );
    }
    for (builder, option) in [
        (base().username("app"), "username"),
        (base().sentinel_username("app"), "sentinel_username"),
    ] {
        assert!(
            matches!(outcome(builder), Err(Error::InvalidConfig { option: o, .. }) if o == option),
            "{option}"
        );
    }
}

#[test]
fn sizes_and_durations() {
    let base = || SentinelPool::builder(["127.0.0.1:1"], "mymaster");
    let cases: Vec<(r2d2_redis_sentinel::Builder, &str)> = vec![
        (base().max_size(0), "max_size"),
        (base().max_size(u32::MAX), "max_size"),
        (base().max_size(10_001), "max_size"),
        (base().min_idle(Some(11)), "min_idle"),
        (base().max_size(4).min_idle(Some(u32::MAX)), "min_idle"),
        (base().max_sentinels(0), "max_sentinels"),
        (base().max_sentinels(usize::MAX), "max_sentinels"),
        (base().db(-1), "db"),
        (base().connect_timeout(Duration::ZERO), "connect_timeout"),
        (base().write_timeout(Duration::MAX), "write_timeout"),
        (base().idle_timeout(Some(Duration::MAX)), "idle_timeout"),
        (base().max_lifetime(Some(Duration::ZERO)), "max_lifetime"),
        (
            base().retry_policy(RetryPolicy::default().max_attempts(0)),
            "retry_policy",
        ),
        (
            base().retry_policy(RetryPolicy::default().deadline(Duration::ZERO)),
            "retry_policy",
        ),
        (
            base().retry_policy(RetryPolicy::default().max_backoff(Duration::MAX)),
            "retry_policy",
        ),
        (
            base().retry_policy(
                RetryPolicy::default()
                    .base_backoff(Duration::from_secs(2))
                    .max_backoff(Duration::from_secs(1)),
            ),
            "retry_policy",
        ),
    ];
    for (builder, option) in cases {
        match outcome(builder) {
            Err(Error::InvalidConfig { option: named, .. }) => assert_eq!(named, option),
            other => panic!("{option}: expected InvalidConfig, got {other:?}"),
        }
    }
    // Accepted extremes.
    for builder in [
        base().max_size(10_000).min_idle(Some(0)),
        base().db(15),
        base().read_timeout(Duration::from_nanos(1)),
        base().idle_timeout(None).max_lifetime(None),
    ] {
        assert!(matches!(
            outcome(builder),
            Err(Error::SentinelsUnreachable { .. })
        ));
    }
}
