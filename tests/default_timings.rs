//! Sentinel's default timings (`down-after-milliseconds` 30 s, `failover-timeout` 3 minutes)
//! with the pool's defaults, as most deployments run: a crash of the master must surface no
//! error through `with_retry_idempotent`. The pool learns `down-after` from the
//! sentinels and grows its default retry deadline to cover the failover.

use support::fence as fence_kit;

use std::time::Duration;

use fence_kit::{Writer, until_writes_reach};
use r2d2_redis_sentinel::testkit::Topology;
use support::init_logging;

#[test]
fn at_sentinels_default_timings_a_crash_surfaces_no_error() {
    init_logging();
    let mut topology = Topology::builder()
        .down_after(Duration::from_secs(30))
        .failover_timeout(Duration::from_secs(180))
        .timeout(Duration::from_secs(120))
        .start()
        .unwrap();
    let pool = topology.pool_builder().build().unwrap();
    let stats = pool.stats();
    assert_eq!(stats.down_after, Some(Duration::from_secs(30)));
    assert_eq!(stats.retry_deadline, Duration::from_secs(40));

    let writer = Writer::start(&pool);
    let old = topology.kill_master().unwrap();
    let new = topology
        .wait_for_new_master(&old, Duration::from_secs(90))
        .unwrap();
    until_writes_reach(&pool, &new);
    let report = writer.finish();

    assert!(report.errors.is_empty(), "errors: {:?}", report.errors);
    assert!(report.acks.iter().any(|a| a.by == new));
    // The outage was the deployment's: the sentinels waited their 30 s before failing over.
    assert!(
        report.longest_gap > Duration::from_secs(25),
        "longest gap {:?}",
        report.longest_gap
    );
}
