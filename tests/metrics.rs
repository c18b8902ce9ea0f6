//! The `metrics` feature: every series the guide lists, read through metrics-util's debugging
//! recorder across a real planned failover, with the values the pool's own `stats()` and
//! `state()` give for the same facts. Runs with `cargo test --features metrics`.

use std::{collections::BTreeSet, time::Duration};

use metrics::Unit;
use metrics_util::{
    CompositeKey, MetricKind,
    debugging::{DebugValue, DebuggingRecorder},
};
use r2d2_redis_sentinel::{
    Connection, Durability, Error, ReplicaOptions, WatcherState,
    redis::{self, Commands, ErrorKind, RedisError, RedisResult, ServerErrorKind},
    testkit::Topology,
};
use support::{eventually, init_logging, replicas as replicas_of};

/// One snapshot of the recorder (which it empties: counters and gauges read 0 after it).
struct Series(Vec<(CompositeKey, Option<Unit>, DebugValue)>);

impl Series {
    /// The values of `name` whose labels include `labels`.
    fn find(&self, name: &str, labels: &[(&str, &str)]) -> Vec<&DebugValue> {
        let found: Vec<_> = self
            .0
            .iter()
            .filter(|(key, _, _)| {
                let key = key.key();
                key.name() == name
                    && labels
                        .iter()
                        .all(|(k, v)| key.labels().any(|l| l.key() == *k && l.value() == *v))
            })
            .map(|(_, _, value)| value)
            .collect();
        assert!(!found.is_empty(), "no series {name} with {labels:?}");
        found
    }

    fn counter(&self, name: &str, labels: &[(&str, &str)]) -> u64 {
        self.find(name, labels)
            .into_iter()
            .map(|v| match v {
                DebugValue::Counter(n) => *n,
                other => panic!("{name} is not a counter: {other:?}"),
            })
            .sum()
    }

    fn gauge(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.find(name, labels)
            .into_iter()
            .map(|v| match v {
                DebugValue::Gauge(x) => x.into_inner(),
                other => panic!("{name} is not a gauge: {other:?}"),
            })
            .sum()
    }

    fn histogram(&self, name: &str, labels: &[(&str, &str)]) -> Vec<f64> {
        self.find(name, labels)
            .into_iter()
            .flat_map(|v| match v {
                DebugValue::Histogram(xs) => xs.iter().map(|x| x.into_inner()).collect::<Vec<_>>(),
                other => panic!("{name} is not a histogram: {other:?}"),
            })
            .collect()
    }

    /// Every name of `kind`.
    fn names(&self, kind: MetricKind) -> BTreeSet<String> {
        self.0
            .iter()
            .filter(|(key, _, _)| key.kind() == kind)
            .map(|(key, _, _)| key.key().name().to_owned())
            .collect()
    }

    /// The unit `name` was described with.
    fn unit(&self, name: &str) -> Option<Unit> {
        self.0
            .iter()
            .find(|(key, _, _)| key.key().name() == name)
            .and_then(|(_, unit, _)| *unit)
    }
}

/// `base` and `labels`.
fn with<'a>(labels: &[(&'a str, &'a str)], base: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    [base, labels].concat()
}

fn server_error(kind: ServerErrorKind) -> RedisError {
    RedisError::from((ErrorKind::Server(kind), "made by the test"))
}

/// A write, then a read that times out: the connection is out of step, and the write may
/// have been applied.
fn write_then_time_out(c: &mut Connection, key: &str) -> RedisResult<()> {
    c.with_read_timeout(Duration::from_millis(100), |c| {
        redis::pipe()
            .set(key, 1)
            .blpop("never-filled", 1.0)
            .query(c)
    })
}

#[test]
fn every_series_tells_what_the_pool_did_across_a_failover() {
    init_logging();
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    // Installed before any pool: pools register their series when they are built.
    recorder.install().unwrap();
    let mut topology = Topology::start().unwrap();
    let service = topology.service().to_owned();
    let old = topology.master().unwrap();
    let pool = topology.pool_builder().max_size(4).build().unwrap();
    let durable = topology
        .pool_builder()
        .max_size(1)
        .durability(Durability::all_replicas().timeout(Duration::from_millis(300)))
        .build()
        .unwrap();
    let replicas = pool.replica_pool(ReplicaOptions::default()).unwrap();

    // Requests: writes and a read, one refused by the server (WRONGTYPE).
    for i in 0..10 {
        let _: () = pool.with_retry(|c| c.set(format!("k{i}"), i)).unwrap();
    }
    let _: Option<u32> = replicas.with_retry(|c| c.get("k0")).unwrap();
    let wrong = pool.get().unwrap().lpush::<_, _, u32>("k0", 1).unwrap_err();
    assert_eq!(wrong.code(), Some("WRONGTYPE"));

    // A checkout that times out: every connection is held.
    let held: Vec<_> = (0..4).map(|_| pool.get().unwrap()).collect();
    assert!(matches!(
        pool.get_timeout(Duration::from_millis(20)),
        Err(Error::PoolExhausted { .. })
    ));
    drop(held);

    // Retries of both classes, and calls ending each way.
    let mut first = true;
    let _: () = pool
        .with_retry(|c| {
            if std::mem::take(&mut first) {
                return Err(server_error(ServerErrorKind::TryAgain));
            }
            c.set("retried", 1)
        })
        .unwrap();
    let mut first = true;
    let _: () = pool
        .with_retry_idempotent(|c| {
            if std::mem::take(&mut first) {
                return write_then_time_out(c, "retried");
            }
            c.set("retried", 2)
        })
        .unwrap();
    let maybe = pool.with_retry(|c| write_then_time_out(c, "retried"));
    assert!(
        matches!(maybe, Err(Error::MaybeApplied { .. })),
        "{maybe:?}"
    );

    // Durable writes: one confirmed, one no replica confirms (both frozen).
    let _: () = durable.with_retry(|c| c.set("durable", 1)).unwrap();
    let frozen = replicas_of(&topology, &old);
    for replica in &frozen {
        topology.pause(replica).unwrap();
    }
    let shortfall = durable.with_retry(|c| c.set::<_, _, ()>("durable", 2));
    for replica in &frozen {
        topology.resume(replica).unwrap();
    }
    assert!(
        matches!(shortfall, Err(Error::NotReplicated { .. })),
        "{shortfall:?}"
    );
    eventually(
        "durable writes confirmed again",
        Duration::from_secs(10),
        || durable.with_retry(|c| c.set::<_, _, ()>("durable", 3)).ok(),
    );

    pool.invalidate();

    // The planned failover, followed by the watcher behind its fence.
    let new = topology.failover().unwrap();
    eventually(
        "the pool to follow the failover",
        Duration::from_secs(30),
        || {
            let stats = pool.stats();
            (stats.failovers >= 1 && !stats.fenced && stats.master.as_ref() == Some(&new))
                .then_some(())
        },
    );
    let _: () = pool.with_retry(|c| c.set("after", 1)).unwrap();
    let sentinels = topology.sentinel_addrs();
    eventually(
        "the watcher to hear every sentinel",
        Duration::from_secs(10),
        || {
            matches!(pool.stats().watcher, WatcherState::Running { ref subscribed } if subscribed.len() == sentinels.len())
            .then_some(())
        },
    );
    // Every pool idle, its refills done: the connection gauges can be compared.
    for p in [&pool, &durable, &replicas] {
        eventually("every connection idle", Duration::from_secs(10), || {
            let state = p.state();
            (state.idle_connections >= 1 && state.connections == state.idle_connections)
                .then_some(())
        });
    }
    let states = || {
        [pool.state(), durable.state(), replicas.state()]
            .map(|s| (s.connections, s.idle_connections))
    };
    let before = states();
    // Both master pools record under the same service (each has its watcher); the replica
    // pool counts in its master pool's stats.
    let stats = [pool.stats(), durable.stats()];
    let sum = |f: fn(&r2d2_redis_sentinel::Stats) -> u64| stats.iter().map(f).sum::<u64>();
    let series = Series(
        snapshotter
            .snapshot()
            .into_vec()
            .into_iter()
            .map(|(key, unit, _, value)| (key, unit, value))
            .collect(),
    );
    assert_eq!(
        states(),
        before,
        "the pools changed while the recorder was read"
    );

    // Every series the guide lists is there, each of its kind.
    let expect = |kind, names: &[&str]| {
        let found = series.names(kind);
        for name in names {
            assert!(found.contains(*name), "no {kind:?} {name}: {found:?}");
        }
    };
    expect(
        MetricKind::Gauge,
        &[
            "db.client.connection.count",
            "db.client.connection.max",
            "db.client.connection.idle.min",
            "db.client.connection.pending_requests",
            "redis.sentinel.fence.up",
            "redis.sentinel.watcher.subscribed",
            "redis.sentinel.watcher.silence",
        ],
    );
    expect(
        MetricKind::Counter,
        &[
            "db.client.connection.timeouts",
            "redis.sentinel.failovers",
            "redis.sentinel.invalidations",
            "redis.sentinel.fence.raised",
            "redis.sentinel.fence.lowered",
            "redis.sentinel.retries",
            "redis.sentinel.retry.calls",
            "redis.sentinel.durable.writes",
        ],
    );
    let durations = [
        "db.client.connection.create_time",
        "db.client.connection.wait_time",
        "db.client.connection.use_time",
        "db.client.operation.duration",
        "redis.sentinel.fence.held",
        "redis.sentinel.watcher.silence",
    ];
    for name in durations {
        assert_eq!(series.unit(name), Some(Unit::Seconds), "{name}");
    }

    // The pool series, per role: what r2d2 says it holds, and what was done.
    let s = service.as_str();
    let master = [("service", s), ("role", "master")];
    let replica = [("service", s), ("role", "replica")];
    let [(_, pool_idle), (_, durable_idle), (_, replica_idle)] = before;
    let idle = [("db.client.connection.state", "idle")];
    let used = [("db.client.connection.state", "used")];
    let count = "db.client.connection.count";
    assert_eq!(
        series.gauge(count, &with(&idle, &master)),
        f64::from(pool_idle + durable_idle)
    );
    assert_eq!(series.gauge(count, &with(&used, &master)), 0.0);
    assert_eq!(
        series.gauge(count, &with(&idle, &replica)),
        f64::from(replica_idle)
    );
    assert_eq!(
        series.gauge("db.client.connection.max", &master),
        5.0,
        "4 + 1"
    );
    assert_eq!(
        series.gauge("db.client.connection.pending_requests", &master),
        0.0
    );
    assert_eq!(series.counter("db.client.connection.timeouts", &master), 1);
    for role in [&master, &replica] {
        for name in &durations[..4] {
            let values = series.histogram(name, role);
            assert!(!values.is_empty(), "{name} {role:?}");
            assert!(
                values.iter().all(|v| (0.0..60.0).contains(v)),
                "{name}: {values:?}"
            );
        }
    }
    // 10 writes, the held checkouts and the retries' attempts at least.
    assert!(
        series
            .histogram("db.client.connection.wait_time", &master)
            .len()
            >= 18
    );
    let ok = series.histogram(
        "db.client.operation.duration",
        &with(&[("db.system.name", "redis")], &master),
    );
    assert!(ok.len() >= 10, "{}", ok.len());
    let refused = with(&[("error.type", "WRONGTYPE")], &master);
    assert_eq!(
        series
            .histogram("db.client.operation.duration", &refused)
            .len(),
        1
    );

    // Sentinel's own: the failover, the fence, the watcher.
    let service_only = [("service", s)];
    let followed = series.counter("redis.sentinel.failovers", &service_only);
    assert_eq!(followed, sum(|s| s.failovers), "as stats() counts");
    assert!(stats[0].failovers >= 1);
    assert!(series.counter("redis.sentinel.invalidations", &service_only) >= 1);
    let raised = sum(|s| s.fences_raised);
    assert_eq!(
        series.counter("redis.sentinel.fence.raised", &service_only),
        raised
    );
    assert!(
        stats[0].fences_raised >= 1,
        "a planned failover raises the fence"
    );
    assert_eq!(
        series.counter("redis.sentinel.fence.lowered", &service_only),
        sum(|s| s.fences_resumed + s.fences_released)
    );
    let held = series.histogram("redis.sentinel.fence.held", &service_only);
    assert!(held.iter().all(|h| (0.0..30.0).contains(h)), "{held:?}");
    assert_eq!(series.gauge("redis.sentinel.fence.up", &service_only), 0.0);
    for sentinel in &sentinels {
        let one = [("service", s), ("sentinel", &*sentinel.to_string())];
        assert_eq!(
            series.gauge("redis.sentinel.watcher.subscribed", &one),
            1.0,
            "{sentinel}"
        );
        let silence = series.gauge("redis.sentinel.watcher.silence", &one);
        assert!((0.0..3.0).contains(&silence), "{sentinel}: {silence}");
    }

    // Retries and calls, as stats() counts them.
    let class = |c| series.counter("redis.sentinel.retries", &[("service", s), ("class", c)]);
    assert_eq!(class("unapplied"), sum(|s| s.retries.retried_unapplied));
    assert_eq!(
        class("maybe_applied"),
        sum(|s| s.retries.retried_maybe_applied)
    );
    assert!(stats[0].retries.retried_unapplied >= 1 && stats[0].retries.retried_maybe_applied >= 1);
    let calls = |o| {
        series.counter(
            "redis.sentinel.retry.calls",
            &[("service", s), ("outcome", o)],
        )
    };
    assert_eq!(calls("maybe_applied"), 1);
    assert_eq!(calls("not_replicated"), 1);
    assert_eq!(
        calls("ok") + calls("maybe_applied") + calls("not_replicated"),
        sum(|s| s.retries.calls)
    );

    // Durable outcomes: every write the durable pool confirmed, and the one none did.
    let durable_writes = |o| {
        series.counter(
            "redis.sentinel.durable.writes",
            &[("service", s), ("outcome", o)],
        )
    };
    assert!(durable_writes("confirmed") >= 2);
    assert_eq!(durable_writes("not_replicated"), 1);
    assert_eq!(durable_writes("not_persisted"), 0);
}
