//! A sentinel answer kept for one generation and a short while.

use std::time::{Duration, Instant};

use parking_lot::Mutex;

/// How long an answer stays in use within one generation: a replica that goes down or comes
/// back is seen within this.
const FRESH: Duration = Duration::from_secs(1);

/// An answer, the generation it was asked in and when. Held for no I/O.
#[derive(Debug)]
pub(crate) struct Cached<T>(Mutex<Option<(u64, Instant, T)>>);

impl<T> Default for Cached<T> {
    fn default() -> Self {
        Cached(Mutex::new(None))
    }
}

impl<T: Clone> Cached<T> {
    /// The answer when it was asked in `generation` less than a second ago.
    pub(crate) fn fresh(&self, generation: u64) -> Option<T> {
        self.0
            .lock()
            .as_ref()
            .filter(|(asked_in, at, _)| *asked_in == generation && at.elapsed() < FRESH)
            .map(|(_, _, answer)| answer.clone())
    }

    /// Keeps `answer`, asked in `generation`.
    pub(crate) fn keep(&self, generation: u64, answer: T) {
        *self.0.lock() = Some((generation, Instant::now(), answer));
    }

    /// Forgets the answer: the next use asks again.
    pub(crate) fn forget(&self) {
        *self.0.lock() = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_answer_serves_its_generation_only() {
        let cached = Cached::default();
        assert_eq!(cached.fresh(0), None);
        cached.keep(3, vec![1]);
        assert_eq!(cached.fresh(3), Some(vec![1]));
        assert_eq!(cached.fresh(4), None);
        cached.forget();
        assert_eq!(cached.fresh(3), None);
    }
}
