//! `PoolConfig` (the `serde` feature): a pool's options read from a configuration file.

use r2d2_redis_sentinel::{
    Error, PoolConfig,
    redis::{self, Commands},
    testkit::{Cluster, Topology},
};

#[test]
fn a_pool_configured_from_json_reaches_the_master_with_its_options() {
    let topology = Topology::start().unwrap();
    let sentinels: Vec<String> = topology
        .sentinel_addrs()
        .iter()
        .map(|a| format!("\"{a}\""))
        .collect();
    let json = format!(
        r#"{{
            "sentinels": [{}],
            "service": "{}",
            "max_size": 3,
            "min_idle": 1,
            "read_timeout": "2s",
            "connect_timeout": "250ms",
            "client_name": "from-a-file"
        }}"#,
        sentinels.join(","),
        topology.service()
    );
    let config: PoolConfig = serde_json::from_str(&json).unwrap();
    let builder = format!("{:?}", config.builder().unwrap());
    for set in [
        "max_size: 3",
        "min_idle: Some(1)",
        "read_timeout: 2s",
        "connect_timeout: 250ms",
    ] {
        assert!(builder.contains(set), "{set} in {builder}");
    }
    let pool = config.builder().unwrap().build().unwrap();
    let mut conn = pool.get().unwrap();
    let _: () = conn.set("file:k", 1).unwrap();
    let name: String = r2d2_redis_sentinel::redis::cmd("CLIENT")
        .arg("GETNAME")
        .query(&mut *conn)
        .unwrap();
    assert_eq!(name, "from-a-file");

    // The same from a connection string, its options overridden by the fields.
    let url = format!(
        "redis+sentinel://{}/{}?max_size=9",
        topology
            .sentinel_addrs()
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(","),
        topology.service()
    );
    let config: PoolConfig =
        serde_json::from_str(&format!(r#"{{"url": "{url}", "max_size": 2}}"#)).unwrap();
    let builder = config.builder().unwrap();
    assert!(
        format!("{builder:?}").contains("max_size: 2"),
        "{builder:?}"
    );
    let pool = builder.build().unwrap();
    let _: () = pool.get().unwrap().set("file:url", 1).unwrap();
}

#[test]
fn misspelt_fields_bad_durations_and_missing_sentinels_are_refused() {
    let unknown = serde_json::from_str::<PoolConfig>(r#"{"sentinels": ["h:1"], "maxsize": 3}"#);
    assert!(unknown.unwrap_err().to_string().contains("maxsize"));
    let duration = serde_json::from_str::<PoolConfig>(r#"{"read_timeout": "soon"}"#);
    assert!(duration.unwrap_err().to_string().contains("500ms"));
    for json in [
        "{}",
        r#"{"url": "redis+sentinel://h:1/m", "sentinels": ["h:1"]}"#,
        r#"{"url": "redis+sentinel://h:1/m", "service": "other"}"#,
    ] {
        let config: PoolConfig = serde_json::from_str(json).unwrap();
        assert!(
            matches!(config.builder(), Err(Error::InvalidConfig { .. })),
            "{json}"
        );
    }
    // Passwords never show in its Debug output.
    let config: PoolConfig = serde_json::from_str(
        r#"{"url": "redis+sentinel://u:s3cret@h:1/m", "password": "an0ther"}"#,
    )
    .unwrap();
    let shown = format!("{config:?}");
    assert!(
        !shown.contains("s3cret") && !shown.contains("an0ther"),
        "{shown}"
    );
    // Nor the sentinels' passwords, in a sentinel address or as a URL's parameter.
    for json in [
        r#"{"sentinels": ["redis://:s3cret@h:1"], "service": "m"}"#,
        r#"{"url": "redis+sentinel://h:1/m?sentinel_password=s3cret"}"#,
    ] {
        let config: PoolConfig = serde_json::from_str(json).unwrap();
        let shown = format!("{config:?}");
        assert!(!shown.contains("s3cret"), "{shown}");
        if let Err(err) = config.builder().map(|b| format!("{b:?}")) {
            assert!(!err.to_string().contains("s3cret"), "{err}");
        }
    }
    // A password the format reads as a number is refused without being quoted.
    let err = serde_json::from_str::<PoolConfig>(
        r#"{"url": "redis+sentinel://h:1/m", "password": 918273}"#,
    )
    .unwrap_err()
    .to_string();
    assert!(!err.contains("918273"), "{err}");
    assert!(err.contains("quote it"), "{err}");
}

#[test]
fn a_cluster_configured_from_json_routes_with_its_options() {
    let cluster = Cluster::start().unwrap();
    let nodes: Vec<String> = cluster.nodes().iter().map(|a| format!("\"{a}\"")).collect();
    let json = format!(
        r#"{{ "nodes": [{}], "max_size": 2, "read_timeout": "2s", "client_name": "from-file" }}"#,
        nodes.join(", ")
    );
    let config: PoolConfig = serde_json::from_str(&json).unwrap();
    let pool = config.cluster_builder().unwrap().build().unwrap();
    let mut conn = pool.get().unwrap();
    let () = conn.set("{file}:a", 1).unwrap();
    // A keyless command goes to the node of the last request: the key's.
    let name: String = redis::cmd("CLIENT")
        .arg("GETNAME")
        .query(&mut conn)
        .unwrap();
    assert_eq!(name, "from-file");

    for (json, option) in [
        (r#"{"nodes": ["h:1"], "service": "m"}"#, "service"),
        (
            r#"{"nodes": ["h:1"], "sentinel_timeout": "1s"}"#,
            "sentinel_timeout",
        ),
        (
            r#"{"url": "redis+cluster://h:1", "nodes": ["h:1"]}"#,
            "nodes",
        ),
        ("{}", "nodes"),
    ] {
        let config: PoolConfig = serde_json::from_str(json).unwrap();
        match config.cluster_builder() {
            Err(Error::InvalidConfig { option: o, .. }) => assert_eq!(o, option, "{json}"),
            other => panic!("{json}: {other:?}"),
        }
    }
    // A cluster has one database: another is refused before any I/O.
    let config: PoolConfig = serde_json::from_str(r#"{"nodes": ["h:1"], "db": 2}"#).unwrap();
    let built = config.cluster_builder().unwrap().build();
    assert!(
        matches!(built, Err(Error::InvalidConfig { option: "db", .. })),
        "{built:?}"
    );
    // And a Sentinel pool's builder refuses a cluster's nodes.
    let config: PoolConfig = serde_json::from_str(r#"{"nodes": ["h:1"]}"#).unwrap();
    assert!(matches!(
        config.builder(),
        Err(Error::InvalidConfig {
            option: "nodes",
            ..
        })
    ));
}
