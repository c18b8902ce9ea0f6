//! A short chaos run (the long one is `cargo bench --bench chaos`): 8 writers through
//! `with_retry_idempotent` while a planned failover, a crash (the old master restarted as master) and two
//! failovers back to back happen. No error reaches a writer, and no acknowledged write is lost
//! after the pool knew its node was no longer master. What Redis itself lost (replication lag,
//! an unsynced replica promoted) is counted, not asserted: no client can prevent it, except in
//! durable mode, which the second run checks loses nothing at all.

mod support;

#[path = "support/chaos.rs"]
mod chaos;

use chaos::Step;
use support::init_logging;

#[test]
fn writers_see_no_error_and_nothing_is_lost_after_the_pool_knew() {
    init_logging();
    let steps = [Step::Planned, Step::Crash, Step::Storm(2)];
    let report = chaos::run(&steps, 8, true, true, false);
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
        report.lost_after_pool_knew, 0,
        "writes acknowledged by a node the pool had left were lost: {report:?}"
    );
}

#[test]
fn in_durable_mode_no_acknowledged_write_is_lost_at_all() {
    init_logging();
    let steps = [Step::Planned, Step::Crash, Step::Storm(2)];
    let report = chaos::run(&steps, 8, true, true, true);
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
