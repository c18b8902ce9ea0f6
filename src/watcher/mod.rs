//! The watcher: background threads that learn of every failover within milliseconds of its
//! publication and invalidate the pool.
//!
//! # Shape: one subscriber thread per sentinel, one coordinator
//!
//! Each known sentinel gets a *subscriber* thread that holds a subscription to its
//! `+switch-master`, `+sentinel` and `+reset-master` channels and blocks reading it, so a
//! message is seen the moment it arrives. Listening on every sentinel matters: the failover
//! leader publishes `+switch-master` only when its failover ends, seconds after the other
//! sentinels do, and a single listener is blind while its sentinel is down or partitioned
//! away. One thread multiplexing all subscriptions with read timeouts would add up to a
//! timeout of latency per other sentinel; blocking sockets leave no cheaper way to wait on
//! several at once.
//!
//! The subscribers report to a *coordinator* thread over a channel. The coordinator does no
//! I/O and takes no lock that sentinel I/O holds (see the `shared` module), so applying a
//! failover costs microseconds whatever the sentinels do. It decides with a pure state
//! machine ([`view::MasterView`]) whether a sentinel's word is a new failover, one already
//! applied, or a stale one, by configuration epoch; it learns and forgets sentinels, and
//! publishes events.
//!
//! # Following a failover's steps: the fence
//!
//! Subscribers also follow the steps the failover leader publishes (see [`fence`]): when it
//! selects a replica to promote, the coordinator puts the fence up in the shared record (a new
//! generation with no master: no connection to the old master is handed out or sends again,
//! connects wait). By default the pool resumes on the promoted replica when the failover is
//! committed: a sentinel names it (`+switch-master`, or a refresh), which the leader's new
//! configuration reaching the other sentinels causes. With
//! [`FenceResume::Promotion`](crate::FenceResume::Promotion) a [`probe`] thread asks that
//! replica its role every 2 ms and the pool resumes the moment it answers master. When the
//! old master answers replica by then, it handed over by itself (Valkey 9's coordinated
//! failover, see [`probe`]): with `Promotion` the probe then waits for Sentinel to close the
//! new master's clients, and the pool starts a generation on it when it does (`with_retry`
//! holds operations not declared idempotent until then); with `Commit` it is logged, and the
//! pool still waits for the commit (a handover is no more a commitment than a promotion).
//! An abort from the same leader in the same epoch puts the pool back on the old master; losing the
//! subscription to the leader before the commit (it died or froze: its failover cannot commit),
//! `fence_timeout`, or the watcher stopping, lets connects ask the sentinels again. Each way
//! out wakes every waiting connect. A subscriber that (re)joins mid-failover learns it from
//! its sentinel's state at its first refresh (`SENTINEL MASTER`'s `failover-state`, the
//! replica flagged `promoted`) and raises the fence it missed.
//!
//! Before each report the coordinator syncs its view with the master (and epoch) the shared
//! records, so that a master found by a lookup, a release or a connect that beat the watcher
//! is what the next sentinel's word is compared with.
//!
//! # Not missing a failover
//!
//! After each (re)subscription, and every few seconds, a subscriber asks its sentinel for the
//! master (`SENTINEL MASTER`) and the other sentinels (`SENTINEL SENTINELS`). It subscribes
//! first and asks second, so a failover is either in the answer or in a later message. Each
//! subscription is health-checked with `PING` when it has been silent for a second; a
//! half-open socket is silent forever otherwise.
//!
//! # Bounded discovery
//!
//! Sentinels learned from `+sentinel` and `SENTINEL SENTINELS` get a subscriber and join the
//! lookups, up to [`max_sentinels`](crate::Builder::max_sentinels) in all; discovery can be
//! turned off ([`discover_sentinels`](crate::Builder::discover_sentinels)). A learned sentinel
//! unreachable for a minute is forgotten, and not learned again for ten (a dead address that
//! sentinels keep listing until a `SENTINEL RESET` would otherwise come back forever). A
//! `+reset-master` for the service forgets every learned sentinel that is unreachable now.
//! Reconnects back off with jitter, so a fleet of clients does not reconnect in lockstep.
//!
//! # Stopping
//!
//! Every thread waits on a `crossbeam-channel` receiver whose sender the pool holds; dropping
//! the pool (or [`SentinelPool::stop_watcher`](crate::SentinelPool::stop_watcher)) drops the
//! sender and joins the threads. Reads wake every 200 ms and sentinel I/O is bounded by
//! 500 ms, so that takes well under a second. However the coordinator ends, what adaptive
//! checkouts trust (see [`crate::liveness`]) is reset.
//!
//! # Live
//!
//! Each subscriber tells the coordinator when it heard its sentinel (a message, or the answer
//! to its `PING`), at most every 250 ms; the coordinator tells checkouts until when a majority
//! of the known sentinels will all have been heard within 2 s, and logs (and tells an adaptive
//! pool's events) each change. Adaptive checkouts skip their round trip only until then.

mod coordinator;
mod discovery;
mod fence;
mod fencing;
mod probe;
mod report;
mod subscription;
mod view;

use std::thread::{self, JoinHandle};

use crossbeam_channel::Sender;

use crate::{Error, shared::Shared};
use coordinator::Coordinator;
use std::sync::Arc;

/// The running watcher; stops and joins its threads when dropped.
#[derive(Debug)]
pub(crate) struct Watcher {
    stop: Option<Sender<()>>,
    coordinator: Option<JoinHandle<()>>,
}

impl Watcher {
    /// Starts the coordinator, which starts a subscriber per known sentinel.
    ///
    /// # Errors
    ///
    /// [`Error::ThreadSpawn`] when the system refuses a thread.
    pub(crate) fn start(shared: Arc<Shared>) -> Result<Watcher, Error> {
        let (stop_tx, stop_rx) = crossbeam_channel::bounded(0);
        let name = "r2d2-sentinel-watcher";
        let coordinator = thread::Builder::new()
            .name(name.into())
            .spawn(move || Coordinator::new(shared, stop_rx).run())
            .map_err(|err| Error::ThreadSpawn {
                name: name.to_owned(),
                reason: err.to_string(),
            })?;
        Ok(Watcher {
            stop: Some(stop_tx),
            coordinator: Some(coordinator),
        })
    }

    /// Signals every thread to stop and waits for them.
    pub(crate) fn stop(&mut self) {
        drop(self.stop.take());
        if let Some(coordinator) = self.coordinator.take()
            && coordinator.join().is_err()
        {
            log::warn!("the watcher thread panicked");
        }
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        self.stop();
    }
}
