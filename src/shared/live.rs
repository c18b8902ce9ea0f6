//! The watcher's live state, as `stats()` reads it: the subscriptions it holds, the failovers
//! it applied, the fences it raised and how each came down, and the service's
//! `down-after-milliseconds` the sentinels said. Written by the watcher (and lookups, for
//! `down-after`); read by checkouts and `stats()`.

use std::{
    collections::BTreeSet,
    sync::atomic::{AtomicU64, AtomicUsize, Ordering},
    time::{Duration, SystemTime},
};

use parking_lot::Mutex;

use crate::NodeAddr;

/// What the watcher does now and did so far.
#[derive(Debug, Default)]
pub(crate) struct WatcherLive {
    /// The sentinels the watcher is subscribed to now. Held for no I/O.
    subscribed: Mutex<BTreeSet<NodeAddr>>,
    /// How many of them: whether the watcher listens at all (`build` waits for it).
    live_subscriptions: AtomicUsize,
    failovers: AtomicU64,
    /// When the last failover was applied.
    last_failover: Mutex<Option<SystemTime>>,
    fences_raised: AtomicU64,
    fences_resumed: AtomicU64,
    fences_released: AtomicU64,
    /// The service's `down-after-milliseconds` as the sentinels last said (lookups and the
    /// watcher's refreshes); 0 until one did.
    down_after_ms: AtomicU64,
}

/// How a fence came down, for the counts.
#[derive(Debug, Clone, Copy)]
pub(crate) enum FenceEnd {
    /// On a new master.
    Resumed,
    /// Without one.
    Released,
}

impl WatcherLive {
    /// Records whether the watcher is subscribed to `sentinel` now.
    pub(crate) fn set_subscribed(&self, sentinel: &NodeAddr, subscribed: bool) {
        let mut set = self.subscribed.lock();
        if subscribed {
            set.insert(sentinel.clone());
        } else {
            set.remove(sentinel);
        }
        self.live_subscriptions.store(set.len(), Ordering::Release);
    }

    /// The watcher is gone: it listens to no sentinel.
    pub(crate) fn clear_subscriptions(&self) {
        self.subscribed.lock().clear();
        self.live_subscriptions.store(0, Ordering::Release);
    }

    /// The sentinels the watcher is subscribed to now.
    pub(crate) fn subscribed(&self) -> Vec<NodeAddr> {
        self.subscribed.lock().iter().cloned().collect()
    }

    /// True while the watcher listens to at least one sentinel. One atomic load.
    pub(crate) fn listens(&self) -> bool {
        self.live_subscriptions.load(Ordering::Acquire) > 0
    }

    /// A failover was applied now.
    pub(crate) fn failover_applied(&self) {
        self.failovers.fetch_add(1, Ordering::Relaxed);
        *self.last_failover.lock() = Some(SystemTime::now());
    }

    /// Failovers applied so far, and when the last one was.
    pub(crate) fn failovers(&self) -> (u64, Option<SystemTime>) {
        (
            self.failovers.load(Ordering::Relaxed),
            *self.last_failover.lock(),
        )
    }

    /// A fence went up.
    pub(crate) fn fence_raised(&self) {
        self.fences_raised.fetch_add(1, Ordering::Relaxed);
    }

    /// A fence came down.
    pub(crate) fn fence_ended(&self, how: FenceEnd) {
        match how {
            FenceEnd::Resumed => &self.fences_resumed,
            FenceEnd::Released => &self.fences_released,
        }
        .fetch_add(1, Ordering::Relaxed);
    }

    /// Fences raised, resumed on a new master, and released without one.
    pub(crate) fn fence_counts(&self) -> (u64, u64, u64) {
        let count = |c: &AtomicU64| c.load(Ordering::Relaxed);
        (
            count(&self.fences_raised),
            count(&self.fences_resumed),
            count(&self.fences_released),
        )
    }

    /// Records the service's `down-after-milliseconds` as a sentinel said it.
    pub(crate) fn learn_down_after(&self, down_after: Duration) {
        let ms = u64::try_from(down_after.as_millis()).unwrap_or(u64::MAX);
        self.down_after_ms.store(ms, Ordering::Relaxed);
    }

    /// The service's `down-after-milliseconds`, once a sentinel said it.
    pub(crate) fn down_after(&self) -> Option<Duration> {
        match self.down_after_ms.load(Ordering::Relaxed) {
            0 => None,
            ms => Some(Duration::from_millis(ms)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listens_while_one_subscription_is_live() {
        let live = WatcherLive::default();
        let (a, b) = (NodeAddr::new("127.0.0.1", 1), NodeAddr::new("127.0.0.1", 2));
        assert!(!live.listens());
        live.set_subscribed(&a, true);
        live.set_subscribed(&b, true);
        live.set_subscribed(&a, false);
        assert!(live.listens());
        assert_eq!(live.subscribed(), vec![b]);
        live.clear_subscriptions();
        assert!(!live.listens());
    }

    #[test]
    fn counts_fences_by_how_they_ended() {
        let live = WatcherLive::default();
        live.fence_raised();
        live.fence_raised();
        live.fence_ended(FenceEnd::Resumed);
        live.fence_ended(FenceEnd::Released);
        assert_eq!(live.fence_counts(), (2, 1, 1));
        assert_eq!(live.down_after(), None);
        live.learn_down_after(Duration::from_millis(1500));
        assert_eq!(live.down_after(), Some(Duration::from_millis(1500)));
    }
}
