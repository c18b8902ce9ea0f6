//! A short chaos run (the long one is `cargo bench -p benchmarks --bench chaos`): 8 writers through
//! `with_retry_idempotent` while a planned failover, a crash (the old master restarted as master) and two
//! failovers back to back happen. No error reaches a writer, and no acknowledged write is lost
//! after the pool knew its node was no longer master. What Redis itself lost (replication lag,
//! an unsynced replica promoted) is counted, not asserted: no client can prevent it, except in
//! durable mode, which the second run checks loses nothing at all; the third compares both
//! modes in a storm with the fence off, where the default loses writes.

use support::chaos;

use std::sync::{Mutex, MutexGuard};

use chaos::{Setup, Step};
use support::init_logging;

/// One chaos run at a time: each runs 8 writers, a topology of 6 processes and its failovers;
/// side by side on a machine of 2 cores they starve the sentinels, whose failovers then take
/// tens of seconds, which is not what these tests measure.
fn one_at_a_time() -> MutexGuard<'static, ()> {
    static RUNS: Mutex<()> = Mutex::new(());
    RUNS.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[test]
fn writers_see_no_error_and_nothing_is_lost_after_the_pool_knew() {
    let _alone = one_at_a_time();
    init_logging();
    let steps = [Step::Planned, Step::Crash, Step::Storm(2)];
    let report = chaos::run(&steps, Setup::default());
    eprintln!("{}\n{}", chaos::Report::HEADER, report.row("cargo test"));
    assert_eq!(
        report.errors, 0,
        "errors surfaced: {:?}",
        report.error_samples
    );
    assert_eq!(
        (report.planned, report.crashes, report.stormed),
        (1, 1, 2),
        "every failover happened"
    );
    assert_eq!(
        report.pool_told_after.len(),
        4,
        "the pool reacted to every failover: {report:?}"
    );
    assert!(report.acked > 0, "{report:?}");
    assert_eq!(
        report.lost_after_pool_knew - report.lost_in_flight,
        0,
        "writes sent to a node the pool had left were lost: {report:?}"
    );
    // A request already on the wire when the fence goes up reaches the old master before the
    // promotion and replicates like the writes before it: it is lost only with them, when
    // Sentinel promotes a node that lacks what the old master acknowledged before the
    // failover began. Seen in a storm: the master demoted by the previous failover 2.6 s
    // earlier, which Sentinel lists as a replica at once but re-points only about 10 s
    // later, was promoted without ever having replicated from the master it replaced: 8
    // requests in flight (one per writer) lost beside 122,041 writes acknowledged before.
    assert!(
        report.lost_in_flight == 0 || report.lost_before_failover > 0,
        "requests in flight were lost in a run that lost nothing else: {report:?}"
    );
}

#[test]
fn in_durable_mode_no_acknowledged_write_is_lost_at_all() {
    let _alone = one_at_a_time();
    init_logging();
    let steps = [Step::Planned, Step::Crash, Step::Storm(2)];
    let report = chaos::run(
        &steps,
        Setup {
            durable: true,
            ..Setup::default()
        },
    );
    eprintln!(
        "{}\n{}",
        chaos::Report::HEADER,
        report.row("cargo test, durable")
    );
    assert_eq!(
        report.errors, 0,
        "errors surfaced: {:?}",
        report.error_samples
    );
    assert!(report.acked > 0, "{report:?}");
    // Redis's own loss included: a write every connected replica confirmed survives the
    // failover of its master.
    assert_eq!(
        report.lost_before_failover + report.lost_before_pool_knew + report.lost_after_pool_knew,
        0,
        "durable mode lost acknowledged writes: {report:?}"
    );
}

#[test]
fn in_a_storm_without_the_fence_durable_mode_loses_nothing_where_the_default_loses_writes() {
    let _alone = one_at_a_time();
    init_logging();
    // Without the fence the pool writes to a demoted master until a sentinel announces the
    // switch: in a storm that loses thousands of acknowledged writes per failover. Durable mode
    // alone acknowledges none of them: the promoted replica no longer confirms.
    let steps = [Step::Storm(2)];
    let unfenced = Setup {
        fence: false,
        ..Setup::default()
    };
    let default = chaos::run(&steps, unfenced);
    let durable = chaos::run(
        &steps,
        Setup {
            durable: true,
            ..unfenced
        },
    );
    eprintln!(
        "{}\n{}\n{}",
        chaos::Report::HEADER,
        default.row("cargo test, fence off"),
        durable.row("cargo test, fence off, durable")
    );
    assert_eq!(durable.stormed, 2, "{durable:?}");
    assert!(durable.acked > 0, "{durable:?}");
    assert_eq!(durable.lost(), 0, "durable mode lost writes: {durable:?}");
    assert!(
        default.lost() > 0,
        "the default mode without the fence lost nothing: the storm made no window: {default:?}"
    );
}
