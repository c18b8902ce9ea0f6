//! What the pool tells about itself: [`Event`]s on a channel that never blocks the pool.

use std::{
    sync::atomic::{AtomicU64, Ordering},
    time::{Duration, SystemTime},
};

use crossbeam_channel::{Receiver, Sender, TrySendError};

use crate::{CheckoutMode, NodeAddr, metrics::ServiceSeries};

/// How many events wait for a consumer before the oldest is dropped.
const CAPACITY: usize = 1024;

/// Something the pool did or saw, from [`SentinelPool::events`](crate::SentinelPool::events).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// The master moved: every connection born before `generation` is dropped.
    Failover {
        /// The master before, if the pool knew it.
        old: Option<NodeAddr>,
        /// The new master.
        new: NodeAddr,
        /// The generation that starts with it.
        generation: u64,
        /// The sentinel that said so.
        sentinel: NodeAddr,
        /// How the pool learned of it.
        via: FailoverSource,
        /// When the pool applied it.
        at: SystemTime,
    },
    /// A failover's promotion is under way: the pool fenced the old master off (see
    /// [`Builder::fence`](crate::Builder::fence)). Connections to it are dropped or refuse
    /// their next request; checkouts wait for [`FenceResumed`](Event::FenceResumed) or
    /// [`FenceReleased`](Event::FenceReleased).
    FenceUp {
        /// The master fenced off, if the pool knew it.
        old: Option<NodeAddr>,
        /// The replica being promoted.
        candidate: NodeAddr,
        /// The sentinel leading the failover, which announced the step.
        sentinel: NodeAddr,
        /// The failover's epoch; `None` when the watcher found the failover under way (its
        /// subscriber joined after the failover started) and its epoch was not published.
        epoch: Option<u64>,
        /// The generation that starts with the fence: it holds no connection.
        generation: u64,
        /// When the fence went up.
        at: SystemTime,
    },
    /// The fence came down on the new master (a [`Failover`](Event::Failover) event says the
    /// same): checkouts resume there.
    FenceResumed {
        /// The new master.
        new: NodeAddr,
        /// How the pool learned that it is master:
        /// [`Promotion`](FailoverSource::Promotion) when it answered `ROLE` master before any
        /// announcement, [`Handover`](FailoverSource::Handover) when the old master handed
        /// over to it by itself.
        via: FailoverSource,
        /// How long checkouts were held.
        held: Duration,
    },
    /// The fence came down without a new master: checkouts resume on the old master, or on
    /// whatever the sentinels name.
    FenceReleased {
        /// Why.
        reason: FenceRelease,
        /// How long checkouts were held.
        held: Duration,
    },
    /// The master the fence closed has held writes for a handover longer than a healthy one
    /// takes: Valkey's coordinated failover (`SENTINEL FAILOVER <master> COORDINATED`) has
    /// it pause writes (`CLIENT PAUSE WRITE`) until the replica acknowledges them all, and
    /// this replica has not caught up (a full resync under way, a broken link). Writes wait
    /// until it does or the failover's leader gives up at its `failover-timeout`; the fence
    /// stays up meanwhile (up to 30 seconds), so the pool's writes wait in checkouts instead
    /// of on the master, where they would fail at their read timeout as maybe applied. Sent
    /// once per failover.
    HandoverStalled {
        /// The master holding writes, if the pool knew it.
        master: Option<NodeAddr>,
        /// The replica it waits for.
        candidate: NodeAddr,
        /// How long it had held writes.
        held: Duration,
    },
    /// A [`Subscriber`](crate::Subscriber) subscribed again on a new connection, after the
    /// pool moved to another master or its connection broke: messages published in between
    /// were not received.
    Resubscribed {
        /// The node it subscribed on: the master.
        address: NodeAddr,
        /// How many channels it subscribed to.
        channels: usize,
        /// How many patterns.
        patterns: usize,
    },
    /// Every pooled connection was invalidated for a reason other than a reported failover.
    Invalidated {
        /// The generation that starts now.
        generation: u64,
        /// Why: an error that shows the master moved, a demoted node, or the caller.
        reason: String,
    },
    /// The watcher subscribed to a sentinel's events.
    WatcherConnected {
        /// The sentinel.
        sentinel: NodeAddr,
    },
    /// The watcher lost its subscription to a sentinel; it reconnects with backoff.
    WatcherDisconnected {
        /// The sentinel.
        sentinel: NodeAddr,
        /// What went wrong.
        error: String,
    },
    /// Master checkouts of an [adaptive](crate::Validation::Adaptive) pool changed mode:
    /// they skip the round trip for recent connections again (the watcher hears a majority
    /// of the sentinels), or every checkout asks `PING` and `ROLE` (it does not).
    CheckoutMode {
        /// The mode from now on.
        mode: CheckoutMode,
        /// The sentinels heard within the last 2 s.
        heard: usize,
        /// The sentinels the watcher knows.
        known: usize,
    },
    /// The set of known sentinels changed (one was discovered, or one stayed unreachable and was
    /// dropped).
    SentinelsChanged {
        /// Sentinels added.
        added: Vec<NodeAddr>,
        /// Sentinels removed.
        removed: Vec<NodeAddr>,
    },
    /// A [`ClusterPool`](crate::ClusterPool)'s slot map changed at a refresh: slots moved to
    /// another primary (a failover, a migration), or primaries came or went. A slot patched
    /// by a `MOVED` alone sends none; the refresh that follows tells it.
    SlotMapChanged {
        /// The map's generation now (the `MOVED` patches before the refresh may have started
        /// it).
        generation: u64,
        /// How many of the 16384 slots have another primary than at the refresh before (a
        /// slot no node served counts when one does now, and the other way round).
        moved_slots: usize,
        /// The primaries the map names now.
        primaries: Vec<NodeAddr>,
        /// When it was applied.
        at: SystemTime,
    },
}

/// How the pool learned of a failover.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum FailoverSource {
    /// A `+switch-master` message.
    SwitchMaster,
    /// Asking a sentinel after (re)subscribing, or periodically: a failover the watcher did not
    /// hear about, for example one that happened while it was disconnected.
    Reconciliation,
    /// The failover leader's steps: the replica it selected answered `ROLE` master, before any
    /// sentinel announced the switch (only with
    /// [`FenceResume::Promotion`](crate::FenceResume::Promotion)). `+switch-master` confirms
    /// it later, with no second event.
    Promotion,
    /// The server handed over: the replica the failover leader selected answered master and
    /// the master the fence closed answered replica, and the pool resumed there before any
    /// sentinel announced it (only with
    /// [`FenceResume::Promotion`](crate::FenceResume::Promotion)). Valkey 9's coordinated
    /// failover (`SENTINEL FAILOVER <master> COORDINATED`) does this: the old master pauses
    /// writes, waits until the replica has every write it acknowledged, demotes itself and
    /// promotes the replica (`FAILOVER TO`). `+switch-master` confirms it later, with no
    /// second event.
    Handover,
}

/// Why a fence came down without a new master, in [`Event::FenceReleased`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum FenceRelease {
    /// The failover leader gave up (`-failover-abort-*`): the old master stays master.
    Aborted {
        /// What the leader said.
        reason: String,
    },
    /// [`fence_timeout`](crate::Builder::fence_timeout) passed with no committed failover
    /// seen: the pool asks the sentinels for the master again.
    TimedOut,
    /// The watcher lost its subscription to the failover's leader before the failover was
    /// committed, and the leader did not answer that it still leads it: it died or froze, so
    /// the other sentinels may never learn of the promotion. The pool asks the sentinels for
    /// the master again.
    LeaderLost {
        /// The leader.
        sentinel: NodeAddr,
    },
    /// The watcher stopped (the pool was dropped, or
    /// [`stop_watcher`](crate::SentinelPool::stop_watcher)).
    WatcherStopped,
}

impl std::fmt::Display for FenceRelease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FenceRelease::Aborted { reason } => write!(f, "the failover was aborted: {reason}"),
            FenceRelease::TimedOut => {
                f.write_str("no committed failover was seen within fence_timeout")
            }
            FenceRelease::LeaderLost { sentinel } => {
                write!(
                    f,
                    "the failover's leader {sentinel} was lost before it committed"
                )
            }
            FenceRelease::WatcherStopped => f.write_str("the watcher stopped"),
        }
    }
}

/// The receiving end of a pool's events, from
/// [`SentinelPool::events`](crate::SentinelPool::events): every handle sees each event once
/// (handles share one queue). Events wait in a bounded queue of 1,024; when it is full the
/// oldest is dropped (and counted in [`Stats::events_dropped`](crate::Stats::events_dropped)),
/// so a consumer that falls behind never holds the pool up.
///
/// ```no_run
/// use std::time::Duration;
/// use r2d2_redis_sentinel::{Event, SentinelPool};
///
/// let pool = SentinelPool::builder(["redis://127.0.0.1:26379"], "mymaster").build()?;
/// let events = pool.events();
/// while let Some(event) = events.recv_timeout(Duration::from_secs(1)) {
///     println!("{event:?}");
/// }
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct Events {
    rx: Receiver<Event>,
}

impl Events {
    /// The next event, waiting for it; `None` once the pool is gone.
    pub fn recv(&self) -> Option<Event> {
        self.rx.recv().ok()
    }

    /// The next event, waiting at most `timeout`; `None` when none came (or the pool is gone).
    pub fn recv_timeout(&self, timeout: Duration) -> Option<Event> {
        self.rx.recv_timeout(timeout).ok()
    }

    /// The next event if one is waiting, without waiting.
    pub fn try_recv(&self) -> Option<Event> {
        self.rx.try_recv().ok()
    }

    /// Every event as it comes, waiting for each; ends once the pool is gone.
    pub fn iter(&self) -> impl Iterator<Item = Event> + '_ {
        self.rx.iter()
    }

    /// The events waiting now, without waiting for more.
    pub fn try_iter(&self) -> impl Iterator<Item = Event> + '_ {
        self.rx.try_iter()
    }

    /// How many events wait now.
    pub fn len(&self) -> usize {
        self.rx.len()
    }

    /// True when no event waits.
    pub fn is_empty(&self) -> bool {
        self.rx.is_empty()
    }
}

/// The sending side: bounded, never blocks; when full, the oldest event is dropped and counted.
#[derive(Debug)]
pub(crate) struct EventSink {
    tx: Sender<Event>,
    rx: Receiver<Event>,
    dropped: AtomicU64,
    /// The service's series (feature `metrics`): every event is recorded as it is sent.
    pub(crate) series: ServiceSeries,
}

impl EventSink {
    /// The events of `service`'s pools.
    pub(crate) fn new(service: &str) -> Self {
        let (tx, rx) = crossbeam_channel::bounded(CAPACITY);
        EventSink {
            tx,
            rx,
            dropped: AtomicU64::new(0),
            series: ServiceSeries::new(service),
        }
    }

    pub(crate) fn send(&self, event: Event) {
        self.series.event(&event);
        let mut event = event;
        loop {
            match self.tx.try_send(event) {
                Ok(()) => return,
                Err(TrySendError::Full(back)) => {
                    // Make room by dropping the oldest: recent events matter more.
                    if self.rx.try_recv().is_ok() {
                        self.dropped.fetch_add(1, Ordering::Relaxed);
                    }
                    event = back;
                }
                Err(TrySendError::Disconnected(_)) => return,
            }
        }
    }

    pub(crate) fn receiver(&self) -> Events {
        Events {
            rx: self.rx.clone(),
        }
    }

    pub(crate) fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_channel_drops_the_oldest_and_counts_it() {
        let sink = EventSink::new("mymaster");
        for generation in 0..CAPACITY as u64 + 10 {
            sink.send(Event::Invalidated {
                generation,
                reason: String::new(),
            });
        }
        assert_eq!(sink.dropped(), 10);
        let first = sink.receiver().try_recv().unwrap();
        assert!(matches!(first, Event::Invalidated { generation: 10, .. }));
    }
}
