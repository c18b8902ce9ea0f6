//! The one backoff of the crate: exponential, capped, with jitter, used by `with_retry`, by
//! connects that wait for a master, and by the watcher's reconnects. Jitter keeps a fleet of
//! clients from retrying in lockstep after the same failover.

use std::{
    collections::hash_map::RandomState,
    hash::{BuildHasher, Hasher},
    time::Duration,
};

/// Waits that double from `base` up to `max`, each drawn at random between half of its
/// value and all of it.
#[derive(Debug)]
pub(crate) struct Backoff {
    base: Duration,
    max: Duration,
    next: Duration,
    rng: u64,
}

impl Backoff {
    pub(crate) fn new(base: Duration, max: Duration) -> Self {
        let mut hasher = RandomState::new().build_hasher();
        hasher.write_u64(0);
        Backoff {
            base,
            max,
            next: base.min(max),
            rng: hasher.finish() | 1,
        }
    }

    /// The next wait, with jitter; the one after it is twice as long, up to the cap.
    pub(crate) fn next_wait(&mut self) -> Duration {
        let wait = self.jitter(self.next);
        self.next = self.next.saturating_mul(2).min(self.max);
        wait
    }

    /// Starts again from the base wait.
    pub(crate) fn reset(&mut self) {
        self.next = self.base.min(self.max);
    }

    /// A duration drawn uniformly between half of `d` and `d` (xorshift: enough to spread
    /// retries, no dependency).
    pub(crate) fn jitter(&mut self, d: Duration) -> Duration {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        let fraction = (self.rng >> 11) as f64 / (1u64 << 53) as f64;
        d.mul_f64(0.5 + fraction / 2.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_double_up_to_the_cap_with_jitter_in_range() {
        let ms = Duration::from_millis;
        let mut backoff = Backoff::new(ms(10), ms(500));
        let mut nominal = ms(10);
        for _ in 0..40 {
            let wait = backoff.next_wait();
            assert!(
                wait >= nominal / 2 && wait <= nominal,
                "{wait:?} for {nominal:?}"
            );
            nominal = (nominal * 2).min(ms(500));
        }
        backoff.reset();
        assert!(backoff.next_wait() <= ms(10));
    }

    #[test]
    fn jitter_spreads_waits() {
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(1));
        let waits: std::collections::HashSet<Duration> = (0..20)
            .map(|_| backoff.jitter(Duration::from_secs(1)))
            .collect();
        assert!(waits.len() > 10, "{waits:?}");
    }
}
