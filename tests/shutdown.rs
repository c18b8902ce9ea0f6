//! Dropping a pool leaves no thread behind. Alone in its test binary: it counts the process's
//! threads, which parallel tests would disturb.

#![cfg(target_os = "linux")]

mod support;

use std::time::Duration;

use r2d2_redis_sentinel::{WatcherState, redis::Commands, testkit::Topology};

fn thread_names() -> Vec<String> {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("comm")).ok())
        .map(|name| name.trim().to_owned())
        .collect()
}

fn watcher_threads() -> usize {
    // Thread names are cut to 15 bytes: "r2d2-sentinel-watcher" reads "r2d2-sentinel-w".
    thread_names()
        .iter()
        .filter(|n| n.starts_with("r2d2-sentinel-w") || n.starts_with("r2d2-sentinel-s"))
        .count()
}

#[test]
fn dropping_pools_stops_the_watcher_at_once_and_leaves_no_thread_behind() {
    let topology = Topology::start().unwrap();
    let before = thread_names().len();
    for i in 0..20 {
        let pool = topology.pool_builder().max_size(4).build().unwrap();
        let _: () = pool.get().unwrap().set("k", i).unwrap();
        support::eventually("the watcher to subscribe", Duration::from_secs(10), || {
            matches!(pool.stats().watcher, WatcherState::Running { ref subscribed } if subscribed.len() == 3)
                .then_some(())
        });
        // One coordinator and one subscriber per sentinel.
        assert_eq!(watcher_threads(), 4);

        // Dropping joins the threads: generous on a loaded machine, never forever.
        let dropper = std::thread::spawn(move || drop(pool));
        support::eventually(
            "dropping the pool to return",
            Duration::from_secs(5),
            || dropper.is_finished().then_some(()),
        );
        dropper.join().unwrap();
        // Dropping joined them: no polling needed.
        assert_eq!(watcher_threads(), 0, "watcher threads outlived the pool");
    }
    // r2d2's own workers end asynchronously once their pool is gone.
    support::eventually("the pools' threads to end", Duration::from_secs(5), || {
        (thread_names().len() <= before).then_some(())
    });
}
