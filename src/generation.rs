//! The generation counter: one atomic that invalidates every pooled connection at once.
//!
//! Each connection records the generation read *before* its master was resolved. Reading it
//! after would let a connection resolved to the old master during a switch carry the new
//! generation and survive the invalidation. A connection whose generation is older than the
//! current one is never handed out, and is dropped when returned. Comparing two integers costs
//! no round trip, so the check runs first, on every checkout and every return.

use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Debug, Default)]
pub(crate) struct Generation(AtomicU64);

impl Generation {
    /// The current generation.
    pub(crate) fn current(&self) -> u64 {
        self.0.load(Ordering::Acquire)
    }

    /// Starts a new generation unconditionally and returns it.
    pub(crate) fn bump(&self) -> u64 {
        self.0.fetch_add(1, Ordering::AcqRel) + 1
    }

    /// Starts a new generation only if the current one is still `seen`: many connections that
    /// witness the same failover invalidate the pool once, not once each. Returns whether this
    /// call did the bump.
    pub(crate) fn bump_from(&self, seen: u64) -> bool {
        self.0
            .compare_exchange(seen, seen + 1, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bump_from_bumps_once_per_observed_generation() {
        let generation = Generation::default();
        assert_eq!(generation.current(), 0);
        assert!(generation.bump_from(0));
        assert!(
            !generation.bump_from(0),
            "a second witness of generation 0 must not bump again"
        );
        assert_eq!(generation.current(), 1);
        assert_eq!(generation.bump(), 2);
    }
}
