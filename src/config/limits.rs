//! The bounds options are checked against. A leaf: the option types kept with what they
//! configure (durable mode's, the retry policy's) check against these too.

use std::time::Duration;

/// The largest pool: r2d2 allocates a slot per connection up front, and Redis's default
/// `maxclients` is 10,000.
pub(crate) const MAX_POOL_SIZE: u32 = 10_000;

/// The longest duration any option takes. Longer values are surely mistakes, and would
/// overflow the clock arithmetic of the waits they bound.
pub(crate) const LONGEST: Duration = Duration::from_secs(365 * 24 * 60 * 60);

/// The longest [`Builder::fence_timeout`](crate::Builder::fence_timeout) accepted. A healthy failover commits within about
/// 1.5 s of the step that raises the fence, whatever Sentinel's own timings; a fence still up
/// long after that follows a failover that is stuck (its leader frozen, its replica refusing
/// the promotion), which Sentinel gives up only after `failover-timeout` (three minutes by
/// default). Holding every write that long is worse than what the fence prevents.
pub(crate) const LONGEST_FENCE: Duration = Duration::from_secs(30);

/// What is wrong with a duration an option holds, if anything: zero, or longer than
/// [`LONGEST`].
pub(crate) fn duration_problem(value: Duration) -> Option<String> {
    if value.is_zero() {
        Some("must be longer than zero".to_owned())
    } else if value > LONGEST {
        Some(format!(
            "{value:?} is longer than the longest allowed, one year"
        ))
    } else {
        None
    }
}
