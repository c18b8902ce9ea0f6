//! The generation counter: one atomic that invalidates every pooled connection at once, and
//! the wait for its next value.
//!
//! Each connection records the generation read *before* its master was resolved. Reading it
//! after would let a connection resolved to the old master during a switch carry the new
//! generation and survive the invalidation. A connection whose generation is older than the
//! current one is never handed out, refuses to send, and is dropped when returned. Comparing
//! two integers costs no round trip, so the check runs on every checkout, every request and
//! every return.

use std::{
    sync::atomic::{AtomicBool, AtomicU64, Ordering},
    time::{Duration, Instant},
};

use parking_lot::{Condvar, Mutex};

#[derive(Debug, Default)]
pub(crate) struct Generation {
    value: AtomicU64,
    /// Notified at every new generation and when the pool closes, so that a retry backoff or a
    /// connect waiting for a failover ends the moment one is announced. The mutex only pairs
    /// with the condvar; it guards nothing.
    changed: (Mutex<()>, Condvar),
    /// Set when the last handle to the pool is dropped: waits end at once.
    closed: AtomicBool,
}

impl Generation {
    /// The current generation.
    pub(crate) fn current(&self) -> u64 {
        self.value.load(Ordering::Acquire)
    }

    /// Starts a new generation unconditionally and returns it.
    pub(crate) fn bump(&self) -> u64 {
        let generation = self.value.fetch_add(1, Ordering::AcqRel) + 1;
        self.notify();
        generation
    }

    /// Starts a new generation only if the current one is still `seen`: many connections that
    /// witness the same failover invalidate the pool once, not once each. Returns whether this
    /// call did the bump.
    pub(crate) fn bump_from(&self, seen: u64) -> bool {
        let bumped = self
            .value
            .compare_exchange(seen, seen + 1, Ordering::AcqRel, Ordering::Acquire)
            .is_ok();
        if bumped {
            self.notify();
        }
        bumped
    }

    /// Waits until the generation is no longer `seen`, at most `timeout`; true if it changed.
    /// Returns at once when the pool is closed.
    pub(crate) fn wait_for_change(&self, seen: u64, timeout: Duration) -> bool {
        let deadline = Instant::now().checked_add(timeout);
        let (lock, changed) = &self.changed;
        let mut guard = lock.lock();
        while self.current() == seen && !self.is_closed() {
            let timed_out = match deadline {
                Some(deadline) => changed.wait_until(&mut guard, deadline).timed_out(),
                None => {
                    changed.wait(&mut guard);
                    false
                }
            };
            if timed_out {
                break;
            }
        }
        self.current() != seen
    }

    /// Ends every wait, now and later: the pool is gone.
    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.notify();
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    fn notify(&self) {
        // Taking the lock orders this after a waiter's check of the generation: no lost wakeup.
        let _guard = self.changed.0.lock();
        self.changed.1.notify_all();
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

    #[test]
    fn a_wait_ends_at_a_new_generation_or_a_close() {
        let generation = std::sync::Arc::new(Generation::default());
        let bumper = std::sync::Arc::clone(&generation);
        let thread = std::thread::spawn(move || bumper.bump());
        assert!(generation.wait_for_change(0, Duration::from_secs(30)));
        thread.join().unwrap();
        generation.close();
        assert!(!generation.wait_for_change(1, Duration::MAX));
    }
}
