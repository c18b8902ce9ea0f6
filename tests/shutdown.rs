//! Dropping a pool leaves no thread behind. Alone in its test binary: it counts the process's
//! threads, which parallel tests would disturb.

mod support;

use std::time::Duration;

use r2d2_redis_sentinel::{redis::Commands, testkit::Topology};

fn thread_count() -> usize {
    std::fs::read_dir("/proc/self/task").unwrap().count()
}

#[test]
#[cfg(target_os = "linux")]
fn building_and_dropping_pools_twenty_times_leaves_no_thread_behind() {
    let topology = Topology::start().unwrap();
    let before = thread_count();
    for i in 0..20 {
        let pool = topology.pool_builder().max_size(4).build().unwrap();
        let _: () = pool.get().unwrap().set("k", i).unwrap();
        assert!(
            thread_count() > before,
            "the pool runs no thread? the count is not measuring"
        );
        drop(pool);
    }
    support::eventually("the pools' threads to end", Duration::from_secs(5), || {
        (thread_count() <= before).then_some(())
    });
}
