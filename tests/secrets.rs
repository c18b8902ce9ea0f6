//! A password never appears in `Debug` or `Display` output, an error message, an event or a
//! log record, whatever characters it holds: passwords with `/`, `?`,
//! `#`, `@`, `&`, `=`, `,` or `:` unencoded in URLs too. Every log record of
//! this test binary, at every level, is captured and checked.

use std::{
    sync::{Mutex, Once},
    time::Duration,
};

use r2d2_redis_sentinel::{Error, SentinelPool, redis, testkit::Topology};

/// Passwords made of distinctive pieces joined by a reserved character: a parser that cuts at
/// the wrong place shows a piece, which [`assert_hidden`] finds.
const PIECES: [&str; 3] = ["Alpha7k", "Bravo7k", "Charlie7k"];
const RESERVED: [char; 8] = ['/', '?', '#', '@', '&', '=', ',', ':'];

fn passwords() -> Vec<String> {
    RESERVED
        .iter()
        .map(|c| format!("{}{c}{}{c}{}", PIECES[0], PIECES[1], PIECES[2]))
        .collect()
}

/// The topology's passwords: the data nodes' and the sentinels' (no `#`, `&` or `,`, which a
/// Redis configuration file or a URL query would need quoted, encoded, or would cut).
const DATA: &str = "Alpha7k/Bravo7k@Charlie7k";
const SENTINEL: &str = "Alpha7k?Bravo7k:Charlie7k";

fn assert_hidden(what: &str, text: &str) {
    for piece in PIECES {
        assert!(
            !text.contains(piece),
            "{what} shows (a piece of) a password: {text}"
        );
    }
}

/// Every log record, formatted as a logger would print it.
static RECORDS: Mutex<Vec<String>> = Mutex::new(Vec::new());

struct Capture;

impl log::Log for Capture {
    fn enabled(&self, _: &log::Metadata) -> bool {
        true
    }

    fn log(&self, record: &log::Record) {
        let line = format!("{} {}: {}", record.level(), record.target(), record.args());
        RECORDS.lock().unwrap().push(line);
    }

    fn flush(&self) {}
}

fn capture_logs() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        log::set_logger(&Capture).unwrap();
        log::set_max_level(log::LevelFilter::Trace);
    });
}

/// Checks the records captured so far, and that there are some: a logger that saw nothing
/// would prove nothing.
fn assert_logs_hidden() {
    let records = RECORDS.lock().unwrap();
    assert!(!records.is_empty(), "no log record captured");
    for record in records.iter() {
        assert_hidden("a log record", record);
    }
}

#[test]
fn builders_and_configuration_errors_hide_passwords() {
    capture_logs();
    for password in passwords() {
        let builder = SentinelPool::builder(
            [
                format!("redis://:{password}@127.0.0.1:26379"),
                format!("redis://user:{password}@127.0.0.1:26380"),
                format!(":{password}@127.0.0.1:26381"),
            ],
            "mymaster",
        )
        .password(&password)
        .sentinel_password(&password);
        assert_hidden("Builder's Debug", &format!("{builder:?}"));
        assert_hidden("Builder's pretty Debug", &format!("{builder:#?}"));

        // Malformed URLs that carry a password: the error quotes the address.
        for bad in [
            format!("redis://:{password}@127.0.0.1:notaport"),
            format!("http://user:{password}@127.0.0.1:26379"),
            format!("redis://user:{password}@127.0.0.1:0"),
            format!("redis://user:{password}@"),
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

        // Connection strings with the password unencoded, as user info and as a parameter:
        // refused or parsed, never quoted.
        for url in [
            format!("redis+sentinel://user:{password}@127.0.0.1:1/mymaster"),
            format!("redis+sentinel://127.0.0.1:1/mymaster?sentinel_password={password}"),
            format!("redis+sentinel://:{password}@127.0.0.1:1,127.0.0.1:2/mymaster/0"),
        ] {
            match SentinelPool::from_url(&url) {
                Ok(builder) => {
                    assert_hidden("a parsed URL's Builder", &format!("{builder:?}"));
                    let err = builder
                        .checkout_timeout(Duration::from_millis(200))
                        .build()
                        .map(|_| ())
                        .unwrap_err();
                    assert_hidden("a parsed URL's build error", &format!("{err} {err:?}"));
                }
                Err(err) => assert_hidden("a URL's error", &format!("{err} {err:?}")),
            }
        }
    }
    assert_logs_hidden();
}

#[test]
fn a_pool_its_stats_events_logs_and_auth_errors_hide_passwords() {
    capture_logs();
    let topology = Topology::builder()
        .password(DATA)
        .sentinel_password(SENTINEL)
        .start()
        .unwrap();
    let pool = topology
        .pool_builder()
        .checkout_timeout(Duration::from_secs(1))
        .build()
        .unwrap();
    drop(pool.get().unwrap());
    // A failover, so that the watcher and the connects log what they do.
    topology.failover().unwrap();
    let _: () = pool
        .with_retry(|c| redis::cmd("SET").arg("k").arg("v").query(c))
        .unwrap();
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

    // The sentinel password in the URLs, unencoded; wrong passwords on each side: the errors
    // name the option, never the value.
    let with_password: Vec<String> = topology
        .sentinel_urls()
        .iter()
        .map(|u| u.replace("redis://", &format!("redis://:{SENTINEL}@")))
        .collect();
    let pool = SentinelPool::builder(&with_password, "mymaster")
        .password(DATA)
        .build()
        .unwrap();
    drop(pool.get().unwrap());
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
            .checkout_timeout(Duration::from_secs(1))
            .build()
            .map(|_| ())
            .unwrap_err();
        assert!(err.is_config(), "{err:?}");
        assert_hidden("an auth error", &err.to_string());
        assert_hidden("an auth error's Debug", &format!("{err:?}"));
    }
    assert_logs_hidden();
}
