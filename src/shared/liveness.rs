//! When a checkout may skip its round trip: the watcher hears a majority of the known
//! sentinels, each recently, and no connection to the master broke lately.
//!
//! The watcher (its coordinator thread) writes the instant until which it counts as live;
//! checkouts read it with one atomic load, against a clock they read anyway. Time passing is
//! enough to end it: a watcher that stops hearing, or a coordinator that stops working, does
//! not have to say so for checkouts to go back to `PING`+`ROLE`.

use std::{
    sync::atomic::{AtomicU64, Ordering},
    time::{Duration, Instant},
};

/// How recently a sentinel must have been heard to count. A subscription that carries no
/// message for a second is pinged (answered within 0.5 s), so a healthy sentinel is heard at
/// least every 1.7 s or so; one that answers nothing for this long is frozen, cut off, or
/// its subscriber is stuck.
pub(crate) const HEARD_WITHIN: Duration = Duration::from_secs(2);

/// The shared deadlines, read by every checkout without a lock.
#[derive(Debug)]
pub(crate) struct Liveness {
    /// What the deadlines count from.
    base: Instant,
    /// Nanoseconds after `base` until which the watcher counts as live; 0: it does not.
    live_until: AtomicU64,
    /// Nanoseconds after `base` until which checkouts ask `PING`+`ROLE` whatever the
    /// watcher: a connection to the master broke, and its siblings may be dead too.
    distrust_until: AtomicU64,
    /// Nanoseconds after `base` until which `with_retry` holds operations not declared
    /// idempotent: the master handed over by itself, and Sentinel is about to close every
    /// client of the new one, which would cut a write in flight (applied or not, nobody can
    /// tell). 0: none.
    settling_until: AtomicU64,
}

impl Default for Liveness {
    fn default() -> Self {
        Liveness {
            base: Instant::now(),
            live_until: AtomicU64::new(0),
            distrust_until: AtomicU64::new(0),
            settling_until: AtomicU64::new(0),
        }
    }
}

impl Liveness {
    fn nanos(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.base).as_nanos()).unwrap_or(u64::MAX)
    }

    /// Whether a checkout at `now` may trust the watcher instead of a round trip. Two atomic
    /// loads.
    pub(crate) fn trusted(&self, now: Instant) -> bool {
        let now = self.nanos(now);
        now < self.live_until.load(Ordering::Acquire)
            && now >= self.distrust_until.load(Ordering::Acquire)
    }

    /// The watcher counts as live until `until`; not at all with `None`.
    pub(crate) fn set_live_until(&self, until: Option<Instant>) {
        self.live_until
            .store(self.deadline(until), Ordering::Release);
    }

    /// `until` as stored: nanoseconds after `base`, at least 1; 0 for `None`.
    fn deadline(&self, until: Option<Instant>) -> u64 {
        until.map_or(0, |until| self.nanos(until).max(1))
    }

    /// `with_retry` holds operations not declared idempotent until `until`; not at all with
    /// `None`.
    pub(crate) fn settle_until(&self, until: Option<Instant>) {
        self.settling_until
            .store(self.deadline(until), Ordering::Release);
    }

    /// Until when `with_retry` holds operations not declared idempotent, if it does at
    /// `now`. One atomic load.
    pub(crate) fn settling(&self, now: Instant) -> Option<Instant> {
        let until = self.settling_until.load(Ordering::Acquire);
        (self.nanos(now) < until).then(|| self.base + Duration::from_nanos(until))
    }

    /// Checkouts ask `PING`+`ROLE` until `until`, whatever the watcher says.
    pub(crate) fn distrust_until(&self, until: Instant) {
        self.distrust_until
            .fetch_max(self.nanos(until), Ordering::AcqRel);
    }
}

/// Until when the watcher is live, from when each known sentinel was last heard (`None`: not
/// subscribed now): [`HEARD_WITHIN`] after the moment a majority of them had all been heard.
/// `None` when no majority ever was.
pub(crate) fn live_until(heard: impl IntoIterator<Item = Option<Instant>>) -> Option<Instant> {
    let mut heard: Vec<Option<Instant>> = heard.into_iter().collect();
    let majority = heard.len() / 2 + 1;
    // Newest first; `None` sorts below every instant, so last.
    heard.sort_unstable_by(|a, b| b.cmp(a));
    heard
        .get(majority - 1)
        .copied()
        .flatten()
        .map(|at| at + HEARD_WITHIN)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_majority_heard_recently_makes_the_watcher_live_until_its_oldest_goes_stale() {
        let t = Instant::now();
        let ms = Duration::from_millis;
        // Three known, all heard: live until the second freshest goes stale.
        assert_eq!(
            live_until([Some(t), Some(t + ms(300)), Some(t + ms(100))]),
            Some(t + ms(100) + HEARD_WITHIN)
        );
        // Two of three heard are a majority; one is not.
        assert_eq!(
            live_until([None, Some(t), Some(t + ms(100))]),
            Some(t + HEARD_WITHIN)
        );
        assert_eq!(live_until([None, None, Some(t)]), None);
        // Four known need three; five need three.
        assert_eq!(live_until([Some(t), Some(t), None, None]), None);
        assert_eq!(
            live_until([Some(t), Some(t), Some(t), None, None]),
            Some(t + HEARD_WITHIN)
        );
        // One known, heard: live. None known: never.
        assert_eq!(live_until([Some(t)]), Some(t + HEARD_WITHIN));
        assert_eq!(live_until([]), None);
    }

    #[test]
    fn checkouts_trust_the_watcher_only_until_its_deadline_and_not_after_a_break() {
        let liveness = Liveness::default();
        let now = Instant::now();
        assert!(
            !liveness.trusted(now),
            "not live before the watcher says so"
        );
        liveness.set_live_until(Some(now + Duration::from_secs(2)));
        assert!(liveness.trusted(now));
        assert!(
            !liveness.trusted(now + Duration::from_secs(3)),
            "time ends it"
        );
        liveness.distrust_until(now + Duration::from_millis(500));
        assert!(
            !liveness.trusted(now),
            "a broken connection ends it for a while"
        );
        assert!(liveness.trusted(now + Duration::from_millis(600)));
        // A shorter distrust does not cut a longer one short.
        liveness.distrust_until(now + Duration::from_millis(100));
        assert!(!liveness.trusted(now + Duration::from_millis(200)));
        liveness.set_live_until(None);
        assert!(!liveness.trusted(now + Duration::from_millis(600)));
    }
}
