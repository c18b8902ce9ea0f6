//! Bad input gets a typed error whose message says what to fix; nothing panics or hangs.

use std::time::{Duration, Instant};

use r2d2_redis_sentinel::{Error, SentinelPool, Validation, redis::Commands, testkit::Topology};
use support::{HungServer, closed_port, init_logging};

fn build_err(builder: r2d2_redis_sentinel::Builder) -> Error {
    match builder.build() {
        Ok(_) => panic!("the pool was built"),
        Err(err) => err,
    }
}

#[test]
fn an_empty_sentinel_list_is_rejected() {
    let err = build_err(SentinelPool::builder(Vec::<String>::new(), "mymaster"));
    assert!(matches!(err, Error::NoSentinels), "{err:?}");
    assert!(err.is_config());
    assert!(err.to_string().contains("at least one"), "{err}");
}

#[test]
fn a_malformed_sentinel_url_is_rejected_with_the_url() {
    let err = build_err(SentinelPool::builder(
        ["redis://127.0.0.1:port"],
        "mymaster",
    ));
    match &err {
        Error::InvalidSentinelAddress { address, .. } => {
            assert_eq!(address, "redis://127.0.0.1:port")
        }
        other => panic!("{other:?}"),
    }
    assert!(err.to_string().contains("redis://host:port"), "{err}");
}

#[test]
fn a_zero_max_size_is_rejected() {
    let err = build_err(SentinelPool::builder(["127.0.0.1:26379"], "mymaster").max_size(0));
    assert!(
        matches!(
            err,
            Error::InvalidConfig {
                option: "max_size",
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("max_size"), "{err}");
}

#[test]
fn an_unknown_service_name_is_reported_as_such() {
    init_logging();
    let topology = Topology::start().unwrap();
    let err = build_err(SentinelPool::builder(
        topology.sentinel_urls(),
        "no-such-master",
    ));
    match &err {
        Error::UnknownService { service, asked } => {
            assert_eq!(service, "no-such-master");
            assert_eq!(asked.len(), 3);
        }
        other => panic!("{other:?}"),
    }
    assert!(err.is_config());
    assert!(err.to_string().contains("sentinel monitor"), "{err}");
}

#[test]
fn a_data_node_given_as_a_sentinel_is_reported_as_such() {
    init_logging();
    let topology = Topology::start().unwrap();
    let data_node = topology.master().unwrap();
    let err = build_err(SentinelPool::builder(
        [format!("redis://{data_node}")],
        "mymaster",
    ));
    match &err {
        Error::NotASentinel { address } => assert_eq!(*address, data_node.to_string()),
        other => panic!("{other:?}"),
    }
    assert!(err.to_string().contains("26379"), "{err}");

    // A data node with a password asks for it before it says what it is, as a sentinel with
    // one would: the error names both readings.
    let guarded = Topology::builder().password("data-pw").start().unwrap();
    let data_node = guarded.master().unwrap();
    let err = build_err(SentinelPool::builder(
        [format!("redis://{data_node}")],
        "mymaster",
    ));
    assert!(matches!(err, Error::SentinelAuth { .. }), "{err:?}");
    assert!(err.to_string().contains("is a data node"), "{err}");
    // With the password it shares with the data nodes, it is found out.
    let err = build_err(
        SentinelPool::builder([format!("redis://{data_node}")], "mymaster")
            .sentinel_password("data-pw"),
    );
    assert!(matches!(err, Error::NotASentinel { .. }), "{err:?}");
}

#[test]
fn a_wrong_data_node_password_is_reported_then_the_right_one_works() {
    init_logging();
    let topology = Topology::builder().password("right").start().unwrap();
    let builder = || SentinelPool::builder(topology.sentinel_urls(), "mymaster");

    for wrong in [builder().password("wrong"), builder()] {
        let err = build_err(wrong);
        assert!(matches!(err, Error::Auth { .. }), "{err:?}");
        assert!(err.is_config());
        assert!(err.to_string().contains("`password`"), "{err}");
    }
    let pool = builder().password("right").build().unwrap();
    let _: () = pool.get().unwrap().set("k", "v").unwrap();
}

#[test]
fn a_wrong_sentinel_password_is_reported_then_the_right_one_works() {
    init_logging();
    let topology = Topology::builder()
        .sentinel_password("s3cret")
        .start()
        .unwrap();
    let builder = || SentinelPool::builder(topology.sentinel_urls(), "mymaster");

    for wrong in [builder().sentinel_password("wrong"), builder()] {
        let err = build_err(wrong);
        assert!(matches!(err, Error::SentinelAuth { .. }), "{err:?}");
        assert!(err.to_string().contains("`sentinel_password`"), "{err}");
    }
    builder().sentinel_password("s3cret").build().unwrap();
}

#[test]
fn no_reachable_sentinel_lists_every_failure() {
    let ports = [closed_port(), closed_port()];
    let err = build_err(SentinelPool::builder(
        ports.map(|p| format!("127.0.0.1:{p}")),
        "mymaster",
    ));
    match &err {
        Error::SentinelsUnreachable { failures } => {
            assert_eq!(failures.len(), 2);
            assert!(failures.iter().all(|f| f.source.is_connection_refusal()));
        }
        other => panic!("{other:?}"),
    }
    assert!(err.is_retryable());
    assert!(err.to_string().contains(&ports[1].to_string()), "{err}");
}

#[test]
fn a_sentinel_that_never_answers_costs_its_timeout_and_no_more() {
    init_logging();
    let hung = HungServer::start();
    let timeout = Duration::from_millis(300);

    // Alone, it is an error after its timeout (connect succeeds, the handshake never ends).
    let started = Instant::now();
    let err = build_err(SentinelPool::builder([hung.url()], "mymaster").sentinel_timeout(timeout));
    assert!(matches!(err, Error::SentinelsUnreachable { .. }), "{err:?}");
    assert!(err.is_timeout(), "{err:?}");
    assert!(
        started.elapsed() < timeout * 10,
        "took {:?}",
        started.elapsed()
    );

    // First in the list, it is skipped and the real sentinels answer.
    let topology = Topology::start().unwrap();
    let mut sentinels = vec![hung.url()];
    sentinels.extend(topology.sentinel_urls());
    let started = Instant::now();
    let pool = SentinelPool::builder(sentinels, "mymaster")
        .sentinel_timeout(timeout)
        .build()
        .unwrap();
    assert!(
        started.elapsed() < timeout * 10,
        "took {:?}",
        started.elapsed()
    );
    let _: () = pool.get().unwrap().set("k", "v").unwrap();
}

#[test]
fn a_master_that_never_answers_fails_the_checkout_within_its_timeouts() {
    init_logging();
    let mut topology = Topology::start().unwrap();
    let master = topology.master().unwrap();
    let pool = |validation| {
        topology
            .pool_builder()
            .max_size(1)
            .checkout_timeout(Duration::from_secs(1))
            .connect_timeout(Duration::from_millis(300))
            .read_timeout(Duration::from_millis(300))
            .validation(validation)
            .build()
            .unwrap()
    };
    let checked = pool(Validation::PingRole);
    let adaptive = pool(Validation::default());
    drop(checked.get().unwrap());
    let mut warm = adaptive.get().unwrap();
    let _: () = warm.set("warm", 1).unwrap();
    drop(warm);

    // SIGSTOP: the kernel still accepts connections, the process never answers.
    topology.pause(&master).unwrap();
    let started = Instant::now();
    let err = checked.get().unwrap_err();
    let waited = started.elapsed();
    // The default hands out the connection that answered moments ago: its first request
    // times out within the read timeout, and the next checkout asks, and fails in time.
    let started = Instant::now();
    let request = adaptive
        .get()
        .map(|mut conn| conn.set::<_, _, ()>("k", "v").unwrap_err());
    let next = adaptive.get();
    let waited_adaptive = started.elapsed();
    topology.resume(&master).unwrap();
    assert!(matches!(err, Error::CheckoutTimeout { .. }), "{err:?}");
    assert!(err.is_timeout(), "{err:?}");
    assert!(waited < Duration::from_secs(3), "get waited {waited:?}");
    match request {
        Ok(err) => assert!(err.is_timeout(), "{err:?}"),
        Err(err) => assert!(err.is_timeout(), "{err:?}"),
    }
    // By now the sentinels (down-after 1 s) may have failed over: a connection to the new
    // master is fine, one to the frozen node is not.
    match next {
        Ok(conn) => assert_ne!(*conn.addr(), master, "the frozen master was handed out"),
        Err(err) => assert!(matches!(err, Error::CheckoutTimeout { .. }), "{err:?}"),
    }
    assert!(
        waited_adaptive < Duration::from_secs(4),
        "the default waited {waited_adaptive:?}"
    );
    let _: () = checked.get().unwrap().set("k", "v").unwrap();
    let _: () = adaptive.get().unwrap().set("k", "v").unwrap();
}

#[test]
fn an_exhausted_pool_says_so_and_recovers() {
    init_logging();
    let topology = Topology::start().unwrap();
    let pool = topology
        .pool_builder()
        .max_size(1)
        .checkout_timeout(Duration::from_millis(200))
        .build()
        .unwrap();
    let held = pool.get().unwrap();
    let err = pool.get().unwrap_err();
    assert!(
        matches!(err, Error::PoolExhausted { max_size: 1, .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("raise `max_size`"), "{err}");
    drop(held);
    let _: () = pool.get().unwrap().set("k", "v").unwrap();
}

/// No option value may panic or abort the process: absurd sizes and durations are typed
/// errors that name the option.
#[test]
fn absurd_option_values_are_typed_errors_not_panics() {
    let base = || SentinelPool::builder(["127.0.0.1:1"], "mymaster");
    let cases: Vec<(r2d2_redis_sentinel::Builder, &str)> = vec![
        // r2d2 allocates a slot per connection up front: this aborted the process.
        (base().max_size(u32::MAX), "max_size"),
        (base().checkout_timeout(Duration::MAX), "checkout_timeout"),
        (base().read_timeout(Duration::MAX), "read_timeout"),
        (base().sentinel_timeout(Duration::MAX), "sentinel_timeout"),
        // A fence held that long holds every write for a failover that is stuck.
        (
            base().fence_timeout(Duration::from_secs(31)),
            "fence_timeout",
        ),
        // r2d2 asserts these are not zero.
        (base().idle_timeout(Some(Duration::ZERO)), "idle_timeout"),
        (base().max_lifetime(Some(Duration::ZERO)), "max_lifetime"),
        (
            base()
                .retry_policy(r2d2_redis_sentinel::RetryPolicy::default().deadline(Duration::MAX)),
            "retry_policy",
        ),
        // Linux refuses these (os error 22 on every connect, naming no option).
        (
            base().tcp_keepalive(Some(Duration::from_millis(500))),
            "tcp_keepalive",
        ),
        (
            base().tcp_keepalive(Some(Duration::from_secs(32_768))),
            "tcp_keepalive",
        ),
    ];
    for (builder, option) in cases {
        match build_err(builder) {
            Error::InvalidConfig { option: named, .. } => assert_eq!(named, option),
            other => panic!("{option}: expected InvalidConfig, got {other:?}"),
        }
    }
}

#[test]
fn a_username_without_a_password_is_rejected() {
    for (builder, option) in [
        (
            SentinelPool::builder(["127.0.0.1:1"], "mymaster").username("app"),
            "username",
        ),
        (
            SentinelPool::builder(["127.0.0.1:1"], "mymaster").sentinel_username("watcher"),
            "sentinel_username",
        ),
    ] {
        let err = build_err(builder);
        assert!(
            matches!(err, Error::InvalidConfig { option: named, .. } if named == option),
            "{option}: {err:?}"
        );
        assert!(err.to_string().contains("password"), "{err}");
    }
}

#[test]
fn errors_quote_a_huge_service_name_shortened() {
    init_logging();
    let topology = Topology::start().unwrap();
    let name = "x".repeat(10_000);
    let err = build_err(SentinelPool::builder(
        topology.sentinel_urls(),
        name.as_str(),
    ));
    assert!(matches!(err, Error::UnknownService { .. }), "{err:?}");
    let message = err.to_string();
    assert!(
        message.len() < 1_000,
        "{} bytes: {message:.200}",
        message.len()
    );
    assert!(message.contains("10000 bytes"), "{message:.300}");
}

#[test]
fn get_timeout_with_an_absurd_duration_does_not_panic() {
    init_logging();
    let topology = Topology::start().unwrap();
    let pool = topology.pool_builder().max_size(1).build().unwrap();
    let mut conn = pool.get_timeout(Duration::MAX).unwrap();
    let _: () = conn.set("k", "v").unwrap();
}
