//! The coordinator: one thread that takes every subscriber's and probe's report, decides
//! with the [view](super::view) and the [fence](super::fence) what it means, and applies it
//! to the shared state. It does no I/O and takes no lock sentinel I/O holds.

use std::{
    collections::HashMap,
    sync::Arc,
    thread::{self, JoinHandle},
    time::{Duration, Instant},
};

use crossbeam_channel::{Receiver, Sender, select};

use super::{
    fence::{self, Decision, Target},
    probe::Probe,
    report::{Report, clamp},
    subscription::SentinelSubscription,
    view::{MasterView, Verdict},
};
use crate::{
    CheckoutMode, Event, FailoverSource, FenceRelease, NodeAddr,
    sentinel::message::SentinelMessage, shared::Shared,
};

/// How often the coordinator looks for sentinels to forget, or subscriber threads to start
/// again after the system refused one.
const HOUSEKEEPING: Duration = Duration::from_secs(1);

/// The fence the watcher holds up.
pub(super) struct Fenced {
    pub(super) target: Target,
    /// The master fenced off, and the epoch it was known in.
    pub(super) old: Option<(NodeAddr, Option<u64>)>,
    pub(super) until: Instant,
    /// Asks the candidate its role; `None` when the system refused the thread.
    pub(super) probe: Option<Probe>,
    /// The master said it holds writes for a handover that does not complete, and the user
    /// was told.
    pub(super) stall_told: bool,
    /// The leader announced the promotion (`+promoted-slave`), and with it closed the new
    /// master's clients: a pool that resumes after that has no connection there to lose.
    pub(super) clients_closing: bool,
}

/// The coordinator's handle on one subscriber.
pub(super) struct Slot {
    /// Dropping it stops the subscriber.
    pub(super) stop: Option<Sender<()>>,
    /// `None` while the system refuses the thread; started again at the next housekeeping.
    pub(super) thread: Option<JoinHandle<()>>,
    /// Configured by the user: never forgotten.
    pub(super) seed: bool,
    pub(super) connected: bool,
    /// A `WatcherDisconnected` event was sent since the last connection: one per outage,
    /// not one per failed attempt.
    pub(super) reported_down: bool,
    pub(super) down_since: Option<Instant>,
    /// When the subscription last carried something (a message, a `PING`'s answer), while
    /// subscribed.
    pub(super) heard: Option<Instant>,
}

impl Slot {
    pub(super) fn stop(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take()
            && thread.join().is_err()
        {
            log::warn!("a watcher subscriber thread panicked");
        }
    }
}

/// Resets what adaptive checkouts and `stats` read about the watcher, on every way out of the
/// coordinator, a panic included: a dead watcher is never trusted.
struct LiveState<'a>(&'a Shared);

impl Drop for LiveState<'_> {
    fn drop(&mut self) {
        self.0.watcher_gone();
    }
}

pub(super) struct Coordinator {
    pub(super) shared: Arc<Shared>,
    pub(super) stop: Receiver<()>,
    pub(super) reports_tx: Sender<Report>,
    pub(super) reports: Receiver<Report>,
    pub(super) subscribers: HashMap<NodeAddr, Slot>,
    /// Sentinels forgotten, and when: not learned again for ten minutes (see the `discovery` module).
    pub(super) forgotten: HashMap<NodeAddr, Instant>,
    pub(super) view: MasterView,
    /// The bound on known sentinels was reached and logged.
    pub(super) full_logged: bool,
    pub(super) fence: Option<Fenced>,
    /// The last attempt whose fence timed out or was aborted: a refresh that finds it still
    /// under way does not fence it again.
    pub(super) done: Option<Target>,
    /// The healthy replicas each sentinel listed at its last refresh: a change in one
    /// sentinel's list is a change of the replica set.
    pub(super) replicas: HashMap<NodeAddr, Vec<NodeAddr>>,
    /// Probe threads told to stop, joined once finished (and all when the watcher stops).
    pub(super) probes: Vec<JoinHandle<()>>,
    /// Whether adaptive checkouts were last told they may skip their round trip.
    pub(super) live: bool,
    /// After a handover: the new master, and the probe that waits for Sentinel to close its
    /// clients.
    pub(super) handover: Option<(NodeAddr, Probe)>,
}

impl Coordinator {
    pub(super) fn new(shared: Arc<Shared>, stop: Receiver<()>) -> Self {
        let (reports_tx, reports) = crossbeam_channel::unbounded();
        let view = MasterView::new(shared.cached_master());
        Coordinator {
            shared,
            stop,
            reports_tx,
            reports,
            subscribers: HashMap::new(),
            forgotten: HashMap::new(),
            view,
            full_logged: false,
            fence: None,
            done: None,
            replicas: HashMap::new(),
            probes: Vec::new(),
            live: false,
            handover: None,
        }
    }

    pub(super) fn run(mut self) {
        let shared = Arc::clone(&self.shared);
        let _live = LiveState(&shared);
        for addr in self.shared.lookups.sentinels() {
            self.add(addr, true);
        }
        let housekeeping = crossbeam_channel::tick(HOUSEKEEPING);
        loop {
            let fence_ends = self
                .fence
                .as_ref()
                .map_or_else(crossbeam_channel::never, |f| crossbeam_channel::at(f.until));
            select! {
                recv(self.stop) -> _ => break,
                recv(self.reports) -> report => match report {
                    Ok(report) => self.handle(report),
                    Err(_) => break,
                },
                recv(fence_ends) -> _ => self.release(None, FenceRelease::TimedOut),
                recv(housekeeping) -> _ => self.housekeeping(),
            }
        }
        self.release(None, FenceRelease::WatcherStopped);
        for (_, mut slot) in self.subscribers.drain() {
            slot.stop();
        }
        for probe in self.probes.drain(..) {
            let _ = probe.join();
        }
        log::debug!("watcher for {:?} stopped", self.shared.config.service);
    }

    pub(super) fn add(&mut self, addr: NodeAddr, seed: bool) {
        let mut slot = Slot {
            stop: None,
            thread: None,
            seed,
            connected: false,
            reported_down: false,
            down_since: Some(Instant::now()),
            heard: None,
        };
        self.start_thread(&addr, &mut slot);
        self.subscribers.insert(addr, slot);
    }

    pub(super) fn start_thread(&self, addr: &NodeAddr, slot: &mut Slot) {
        let (stop_tx, stop_rx) = crossbeam_channel::bounded(0);
        let subscriber = SentinelSubscription {
            addr: addr.clone(),
            service: self.shared.config.service.clone(),
            settings: clamp(&self.shared.config.sentinel),
            map: self.shared.config.address_map.clone(),
            reports: self.reports_tx.clone(),
            stop: stop_rx,
        };
        match thread::Builder::new()
            .name(format!("r2d2-sentinel-sub-{}", addr.port))
            .spawn(move || subscriber.run())
        {
            Ok(thread) => {
                slot.stop = Some(stop_tx);
                slot.thread = Some(thread);
            }
            Err(err) => log::warn!(
                "could not start a watcher thread for sentinel {addr}: {err}; trying again \
                 in {HOUSEKEEPING:?}"
            ),
        }
    }

    fn handle(&mut self, report: Report) {
        // The pool may have moved by a way the watcher does not see (a lookup after a failed
        // connect, a release): what it records is what the next word is compared with.
        if let Some((master, epoch)) = self.shared.recorded_master() {
            self.view.sync(&master, epoch);
        }
        match report {
            Report::Connected(addr) => {
                if let Some(slot) = self.subscribers.get_mut(&addr) {
                    slot.connected = true;
                    slot.reported_down = false;
                    slot.down_since = None;
                    slot.heard = Some(Instant::now());
                }
                self.shared.watcher.set_subscribed(&addr, true);
                self.update_liveness();
                log::debug!("watcher subscribed to sentinel {addr}");
                self.shared
                    .events
                    .send(Event::WatcherConnected { sentinel: addr });
            }
            Report::Disconnected(addr, error) => {
                let Some(slot) = self.subscribers.get_mut(&addr) else {
                    return;
                };
                slot.down_since.get_or_insert_with(Instant::now);
                slot.connected = false;
                slot.heard = None;
                let first = !std::mem::replace(&mut slot.reported_down, true);
                self.shared.watcher.set_subscribed(&addr, false);
                self.update_liveness();
                // A leader that died or froze mid-failover never commits it: the other
                // sentinels keep the old master and convert the promoted replica back. A
                // subscription cut while the leader goes on (a blip, `CLIENT KILL`) is no such
                // thing: releasing then would send writes to the old master mid-failover.
                if self.fence.as_ref().is_some_and(|f| f.target.leader == addr)
                    && !self.still_leading(&addr)
                {
                    self.release(
                        None,
                        FenceRelease::LeaderLost {
                            sentinel: addr.clone(),
                        },
                    );
                }
                if first {
                    log::debug!("watcher lost sentinel {addr}: {error}; reconnecting with backoff");
                    self.shared.events.send(Event::WatcherDisconnected {
                        sentinel: addr,
                        error,
                    });
                }
            }
            Report::Master {
                from,
                addr,
                epoch,
                down_after,
            } => {
                if let Some(down_after) = down_after {
                    self.shared.watcher.learn_down_after(down_after);
                }
                self.apply(&from, &addr, Some(epoch), FailoverSource::Reconciliation);
            }
            Report::Sentinels(list) => {
                for addr in list {
                    self.learn(addr);
                }
            }
            Report::Heard { from, at } => {
                if let Some(slot) = self.subscribers.get_mut(&from)
                    && slot.connected
                {
                    slot.heard = Some(at);
                    self.update_liveness();
                }
            }
            Report::Replicas { from, mut list } => {
                list.sort();
                let before = self.replicas.insert(from.clone(), list.clone());
                if before.is_some_and(|b| b != list) {
                    log::debug!("sentinel {from} lists the replicas {list:?} now");
                    self.shared.replicas_changed();
                }
            }
            Report::Message {
                from,
                message,
                epoch,
            } if message.service() == Some(self.shared.config.service.as_str()) => match message {
                SentinelMessage::SwitchMaster { new, .. } => {
                    self.apply(&from, &new, epoch, FailoverSource::SwitchMaster);
                }
                SentinelMessage::NewSentinel { addr, .. } => self.learn(addr),
                SentinelMessage::ResetMaster { .. } => self.forget_unreachable(),
                SentinelMessage::Step { step, replica, .. } => {
                    self.step(&from, step, replica.as_ref(), epoch);
                }
                SentinelMessage::ReplicaChanged { replica, .. } => {
                    log::debug!("sentinel {from}: replica {replica} changed state");
                    self.shared.replicas_changed();
                }
                SentinelMessage::NewEpoch { .. } => {}
            },
            Report::Message { .. } => {}
            Report::Promoted { addr } => self.promoted(&addr, FailoverSource::Promotion),
            Report::HandedOver { addr } => self.promoted(&addr, FailoverSource::Handover),
            Report::HandoverStalled { held } => self.stalled(held),
            Report::ClientsKilled { addr } => {
                if self.handover.as_ref().is_some_and(|(a, _)| *a == addr) {
                    self.handover = None;
                    self.clients_closed(&addr, "closed");
                }
            }
            Report::InProgress { from, candidate } => {
                if self.shared.config.fence.is_none() {
                    return;
                }
                let fence = self.fence.as_ref().map(|f| &f.target);
                match fence::in_progress(&self.view, fence, self.done.as_ref(), &from, &candidate) {
                    Decision::Raise(target) => {
                        log::info!(
                            "sentinel {from} leads a failover promoting {candidate}, under way \
                             when the watcher subscribed"
                        );
                        self.raise(target);
                    }
                    Decision::Ignored(why) => log::debug!(
                        "failover under way on sentinel {from} ({candidate}) not followed: {why}"
                    ),
                    Decision::None | Decision::Release(_) => {}
                }
            }
        }
    }

    /// A sentinel names `addr` as master in configuration `epoch`.
    pub(super) fn apply(
        &mut self,
        from: &NodeAddr,
        addr: &NodeAddr,
        epoch: Option<u64>,
        via: FailoverSource,
    ) {
        match self.view.observe(addr, epoch) {
            Verdict::Known => {}
            // The watcher started before the pool knew its master (a lazy start, a manager
            // of a plain r2d2 pool): the first answer is no failover.
            Verdict::Switch { old: None }
                if self.shared.cached_master().is_none() && self.fence.is_none() =>
            {
                log::debug!("watcher: sentinel {from} names {addr} as master");
            }
            Verdict::Switch { old } => {
                let held = self.shared.switch_master(old, (addr, epoch), from, via);
                if self.fence.take().is_some()
                    && let Some(held) = held
                {
                    self.shared.events.send(Event::FenceResumed {
                        new: addr.clone(),
                        via,
                        held,
                    });
                }
            }
            Verdict::Stale { known_epoch } => log::debug!(
                "sentinel {from} names {addr} in epoch {epoch:?}, not newer than {known_epoch}; \
                 ignored"
            ),
        }
    }

    /// Tells checkouts until when they may trust the watcher instead of a round trip: while
    /// a majority of the known sentinels were heard within the last
    /// [`HEARD_WITHIN`](crate::shared::liveness::HEARD_WITHIN) (see [`crate::liveness`]). Logs a
    /// change, and tells it to an adaptive pool's events.
    pub(super) fn update_liveness(&mut self) {
        let now = Instant::now();
        let until = crate::shared::liveness::live_until(self.subscribers.values().map(|s| s.heard));
        self.shared.liveness.set_live_until(until);
        let live = until.is_some_and(|until| until > now);
        if live == std::mem::replace(&mut self.live, live) {
            return;
        }
        let known = self.subscribers.len();
        let heard = self
            .subscribers
            .values()
            .filter(|s| {
                s.heard
                    .is_some_and(|at| at + crate::shared::liveness::HEARD_WITHIN > now)
            })
            .count();
        if self.shared.adaptive_window().is_none() {
            return;
        }
        let mode = if live {
            log::info!(
                "the watcher hears {heard} of {known} sentinels: checkouts skip their round \
                 trip for connections that answered within the window"
            );
            CheckoutMode::SkipRecent
        } else {
            log::warn!(
                "the watcher hears {heard} of {known} sentinels, not a majority: every checkout \
                 asks PING and ROLE until it does"
            );
            CheckoutMode::RoundTrip
        };
        self.shared
            .events
            .send(Event::CheckoutMode { mode, heard, known });
    }
}
