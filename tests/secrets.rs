//! A password never appears in `Debug` or `Display` output, an error message, an event or a
//! log record (issue 10, "Secrets").

mod support;

use std::time::Duration;

use r2d2_redis_sentinel::{Error, SentinelPool, testkit::Topology};
use support::init_logging;

const DATA: &str = "data-Secr3t-pw";
const SENTINEL: &str = "sentinel-Secr3t-pw";

fn assert_hidden(what: &str, text: &str) {
    for secret in [DATA, SENTINEL] {
        assert!(!text.contains(secret), "{what} shows a password: {text}");
    }
}

#[test]
fn builders_and_configuration_errors_hide_passwords() {
    let builder = SentinelPool::builder(
        [
            format!("redis://:{SENTINEL}@127.0.0.1:26379"),
            "127.0.0.1:26380".into(),
        ],
        "mymaster",
    )
    .password(DATA)
    .sentinel_password(SENTINEL);
    assert_hidden("Builder's Debug", &format!("{builder:?}"));
    assert_hidden("Builder's pretty Debug", &format!("{builder:#?}"));

    // A malformed URL that carries a password: the error quotes the address.
    for bad in [
        format!("redis://:{SENTINEL}@127.0.0.1:notaport"),
        format!("http://user:{SENTINEL}@127.0.0.1:26379"),
        format!("redis://user:{SENTINEL}@127.0.0.1"),
    ] {
        let err = SentinelPool::builder([bad.as_str()], "mymaster")
            .build()
            .map(|_| ())
            .unwrap_err();
        assert!(
            matches!(err, Error::InvalidSentinelAddress { .. }),
            "{err:?}"
        );
        assert_hidden("InvalidSentinelAddress", &err.to_string());
        assert_hidden("InvalidSentinelAddress's Debug", &format!("{err:?}"));
    }
}

#[test]
fn a_pool_its_stats_events_and_auth_errors_hide_passwords() {
    init_logging();
    let topology = Topology::builder()
        .password(DATA)
        .sentinel_password(SENTINEL)
        .start()
        .unwrap();
    let pool = topology
        .pool_builder()
        .connection_timeout(Duration::from_secs(1))
        .build()
        .unwrap();
    drop(pool.get().unwrap());
    assert_hidden("Topology's Debug", &format!("{topology:?}"));
    assert_hidden("SentinelPool's Debug", &format!("{pool:?}"));
    assert_hidden("Stats' Debug", &format!("{:?}", pool.stats()));
    for event in pool.events().try_iter() {
        assert_hidden("an event", &format!("{event:?}"));
    }
    assert_hidden(
        "a connection's Debug",
        &format!("{:?}", pool.get().unwrap()),
    );

    // Wrong passwords on each side: the errors name the option, never the value.
    let urls = topology.sentinel_urls();
    for builder in [
        SentinelPool::builder(&urls, "mymaster")
            .sentinel_password(SENTINEL)
            .password(format!("{DATA}-wrong")),
        SentinelPool::builder(&urls, "mymaster")
            .sentinel_password(format!("{SENTINEL}-wrong"))
            .password(DATA),
    ] {
        let err = builder
            .connection_timeout(Duration::from_secs(1))
            .build()
            .map(|_| ())
            .unwrap_err();
        assert!(err.is_config(), "{err:?}");
        assert_hidden("an auth error", &err.to_string());
        assert_hidden("an auth error's Debug", &format!("{err:?}"));
    }
}
