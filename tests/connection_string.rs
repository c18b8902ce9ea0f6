//! One string of configuration: a `redis+sentinel://` URL names the sentinels, the
//! service, the db and both sides' credentials; builder options still override it; hostile
//! strings get the same typed errors as the builder.

use r2d2_redis_sentinel::{Error, SentinelPool, redis::Commands, testkit::Topology};
use support::init_logging;

fn sentinels_part(topology: &Topology) -> String {
    topology
        .sentinel_addrs()
        .iter()
        .map(|a| a.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

#[test]
fn a_url_configures_sentinels_service_db_and_credentials() {
    init_logging();
    let topology = Topology::builder()
        .password("data@pw%")
        .sentinel_password("sentinel:pw")
        .start()
        .unwrap();
    let master = topology.master().unwrap();
    // Reserved characters in passwords are percent-encoded.
    let url = format!(
        "redis+sentinel://:data%40pw%25@{}/{}/3?sentinel_password=sentinel%3Apw",
        sentinels_part(&topology),
        topology.service()
    );
    let pool = SentinelPool::from_url(&url).unwrap().build().unwrap();
    let _: () = pool.get().unwrap().set("k", "in db 3").unwrap();
    let mut on_master = direct_with_password(&master, "data@pw%");
    let _: () = r2d2_redis_sentinel::redis::cmd("SELECT")
        .arg(3)
        .query(&mut on_master)
        .unwrap();
    let value: String = on_master.get("k").unwrap();
    assert_eq!(value, "in db 3");

    // Builder options override the URL.
    let pool = SentinelPool::from_url(&url).unwrap().db(4).build().unwrap();
    let db: i64 = r2d2_redis_sentinel::redis::ConnectionLike::get_db(&*pool.get().unwrap());
    assert_eq!(db, 4);

    // role=replica: a pool of reads from the replicas, in the same db.
    let reads = SentinelPool::from_url(&format!("{url}&role=replica"))
        .unwrap()
        .build()
        .unwrap();
    let mut conn = reads.get().unwrap();
    assert_ne!(*conn.addr(), master);
    assert!(matches!(
        conn.role().unwrap(),
        r2d2_redis_sentinel::redis::Role::Replica { .. }
    ));
    let value = support::eventually(
        "the write to replicate",
        std::time::Duration::from_secs(5),
        || conn.get::<_, Option<String>>("k").unwrap(),
    );
    assert_eq!(value, "in db 3");
}

fn direct_with_password(
    addr: &r2d2_redis_sentinel::NodeAddr,
    password: &str,
) -> r2d2_redis_sentinel::redis::Connection {
    use r2d2_redis_sentinel::redis::{ConnectionAddr, IntoConnectionInfo, RedisConnectionInfo};
    let info = ConnectionAddr::Tcp(addr.host.clone(), addr.port)
        .into_connection_info()
        .unwrap()
        .set_redis_settings(RedisConnectionInfo::default().set_password(password));
    r2d2_redis_sentinel::redis::Client::open(info)
        .unwrap()
        .get_connection()
        .unwrap()
}

#[test]
fn hostile_strings_get_typed_errors() {
    for (url, option) in [
        ("", "url"),
        ("mymaster", "url"),
        ("redis://127.0.0.1:26379/mymaster", "url"),
        ("redis+sentinel://127.0.0.1:26379", "url"),
        ("redis+sentinel://127.0.0.1:26379/", "url"),
        ("redis+sentinel:///mymaster", "url"),
        ("redis+sentinel://127.0.0.1:26379/mymaster/x", "db"),
        ("redis+sentinel://127.0.0.1:26379/mymaster/-1", "db"),
        ("redis+sentinel://127.0.0.1:26379/mymaster/0/extra", "url"),
        (
            "redis+sentinel://127.0.0.1:26379/mymaster?colour=blue",
            "url",
        ),
        (
            "redis+sentinel://127.0.0.1:26379/mymaster?sentinel_password=%zz",
            "url",
        ),
        ("redis+sentinel://:%ff@127.0.0.1:26379/mymaster", "url"),
        (
            "redis+sentinel://127.0.0.1:26379/mymaster?role=primary",
            "url",
        ),
    ] {
        match SentinelPool::from_url(url) {
            Err(Error::InvalidConfig {
                option: named,
                reason,
            }) => {
                assert_eq!(named, option, "{url:?}: {reason}")
            }
            Err(other) => panic!("{url:?}: expected InvalidConfig, got {other:?}"),
            Ok(builder) => panic!("{url:?}: accepted as {builder:?}"),
        }
    }
    // A bad sentinel address inside a well-formed URL: the builder's own error, at build.
    let err = SentinelPool::from_url("redis+sentinel://127.0.0.1:0/mymaster")
        .unwrap()
        .build()
        .map(|_| ())
        .unwrap_err();
    assert!(
        matches!(err, Error::InvalidSentinelAddress { .. }),
        "{err:?}"
    );
    // Its Debug and its errors never show a password.
    let builder =
        SentinelPool::from_url("redis+sentinel://u:hunter2@127.0.0.1:1/m?sentinel_password=s3cr3t")
            .unwrap();
    let shown = format!("{builder:?}");
    assert!(
        !shown.contains("hunter2") && !shown.contains("s3cr3t"),
        "{shown}"
    );
    let err = SentinelPool::from_url("redis+sentinel://u:hunter2@127.0.0.1:1/m?x=1").unwrap_err();
    assert!(!err.to_string().contains("hunter2"), "{err}");
}
