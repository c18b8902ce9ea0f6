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

mod fence;
mod probe;
mod subscriber;
mod view;

use std::{
    collections::{HashMap, HashSet},
    sync::Arc,
    thread::{self, JoinHandle},
    time::{Duration, Instant, SystemTime},
};

use crossbeam_channel::{Receiver, Sender, select};

use crate::{
    CheckoutMode, Error, Event, FailoverSource, FenceRelease, FenceResume, NodeAddr,
    node::NodeSettings,
    sentinel::message::{SentinelMessage, Step},
    shared::Shared,
};
use fence::{Decision, Target};
use probe::Probe;
use subscriber::Subscriber;
use view::{MasterView, Verdict};

/// The longest any watcher I/O may take, so that stopping stays under a second.
const IO_LIMIT: Duration = Duration::from_millis(500);

/// `settings` with every wait capped at [`IO_LIMIT`], so that stopping stays under a second
/// and a silent node costs that much at most.
fn clamp(settings: &NodeSettings) -> NodeSettings {
    NodeSettings {
        connect_timeout: settings.connect_timeout.min(IO_LIMIT),
        read_timeout: settings.read_timeout.min(IO_LIMIT),
        write_timeout: settings.write_timeout.min(IO_LIMIT),
        ..settings.clone()
    }
}

/// A learned (not configured) sentinel unreachable this long is forgotten.
const PRUNE_AFTER: Duration = Duration::from_secs(60);
/// A forgotten sentinel is not learned again for this long.
const FORGOTTEN_FOR: Duration = Duration::from_secs(10 * 60);
/// How often the coordinator looks for sentinels to forget, or subscriber threads to start
/// again after the system refused one.
const HOUSEKEEPING: Duration = Duration::from_secs(1);

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

/// What a subscriber tells the coordinator.
#[derive(Debug)]
enum Report {
    Connected(NodeAddr),
    Disconnected(NodeAddr, String),
    Master {
        from: NodeAddr,
        addr: NodeAddr,
        epoch: u64,
        /// The service's `down-after-milliseconds`, when the reply carried it.
        down_after: Option<Duration>,
    },
    Sentinels(Vec<NodeAddr>),
    /// The subscription carried a message or answered a `PING` at `at`: the sentinel is
    /// heard (see [`liveness`](crate::liveness)).
    Heard {
        from: NodeAddr,
        at: Instant,
    },
    /// The replicas a sentinel lists as healthy, asked at each refresh.
    Replicas {
        from: NodeAddr,
        list: Vec<NodeAddr>,
    },
    /// A message, with the configuration epoch of a `+switch-master` when its sentinel said,
    /// or the epoch of the failover attempt a step belongs to.
    Message {
        from: NodeAddr,
        message: SentinelMessage,
        epoch: Option<u64>,
    },
    /// The probe saw the fenced failover's replica answer master.
    Promoted {
        addr: NodeAddr,
    },
    /// The probe saw the fenced failover's replica answer master and the fenced master
    /// answer replica: the server handed over (a coordinated failover).
    HandedOver {
        addr: NodeAddr,
    },
    /// After a handover, Sentinel closed the clients of the new master at `addr`.
    ClientsKilled {
        addr: NodeAddr,
    },
    /// The fenced master has held writes for a handover this long, waiting for its replica
    /// to catch up; said again every [`probe::STALL_AFTER`] while it does.
    HandoverStalled {
        held: Duration,
    },
    /// A sentinel's state says it leads a failover promoting `candidate` (asked at each
    /// refresh, so a subscriber that joined mid-failover learns what it missed).
    InProgress {
        from: NodeAddr,
        candidate: NodeAddr,
    },
}

/// The fence the watcher holds up.
struct Fenced {
    target: Target,
    /// The master fenced off, and the epoch it was known in.
    old: Option<(NodeAddr, Option<u64>)>,
    until: Instant,
    /// Asks the candidate its role; `None` when the system refused the thread.
    probe: Option<Probe>,
    /// The master said it holds writes for a handover that does not complete, and the user
    /// was told.
    stall_told: bool,
    /// The leader announced the promotion (`+promoted-slave`), and with it closed the new
    /// master's clients: a pool that resumes after that has no connection there to lose.
    clients_closing: bool,
}

/// The coordinator's handle on one subscriber.
struct Slot {
    /// Dropping it stops the subscriber.
    stop: Option<Sender<()>>,
    /// `None` while the system refuses the thread; started again at the next housekeeping.
    thread: Option<JoinHandle<()>>,
    /// Configured by the user: never forgotten.
    seed: bool,
    connected: bool,
    /// A `WatcherDisconnected` event was sent since the last connection: one per outage,
    /// not one per failed attempt.
    reported_down: bool,
    down_since: Option<Instant>,
    /// When the subscription last carried something (a message, a `PING`'s answer), while
    /// subscribed.
    heard: Option<Instant>,
}

impl Slot {
    fn stop(&mut self) {
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

struct Coordinator {
    shared: Arc<Shared>,
    stop: Receiver<()>,
    reports_tx: Sender<Report>,
    reports: Receiver<Report>,
    subscribers: HashMap<NodeAddr, Slot>,
    /// Sentinels forgotten, and when: not learned again for [`FORGOTTEN_FOR`].
    forgotten: HashMap<NodeAddr, Instant>,
    view: MasterView,
    /// The bound on known sentinels was reached and logged.
    full_logged: bool,
    fence: Option<Fenced>,
    /// The last attempt whose fence timed out or was aborted: a refresh that finds it still
    /// under way does not fence it again.
    done: Option<Target>,
    /// The healthy replicas each sentinel listed at its last refresh: a change in one
    /// sentinel's list is a change of the replica set.
    replicas: HashMap<NodeAddr, Vec<NodeAddr>>,
    /// Probe threads told to stop, joined once finished (and all when the watcher stops).
    probes: Vec<JoinHandle<()>>,
    /// Whether adaptive checkouts were last told they may skip their round trip.
    live: bool,
    /// After a handover: the new master, and the probe that waits for Sentinel to close its
    /// clients.
    handover: Option<(NodeAddr, Probe)>,
}

impl Coordinator {
    fn new(shared: Arc<Shared>, stop: Receiver<()>) -> Self {
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

    fn run(mut self) {
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

    fn add(&mut self, addr: NodeAddr, seed: bool) {
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

    fn start_thread(&self, addr: &NodeAddr, slot: &mut Slot) {
        let (stop_tx, stop_rx) = crossbeam_channel::bounded(0);
        let subscriber = Subscriber {
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

    /// A step of a failover of our service, in the attempt of `epoch`.
    fn step(
        &mut self,
        from: &NodeAddr,
        step: Step,
        replica: Option<&NodeAddr>,
        epoch: Option<u64>,
    ) {
        log::debug!("sentinel {from}: failover step {step:?} ({replica:?}, epoch {epoch:?})");
        if self.shared.config.fence.is_none() {
            return;
        }
        // The leader saw the promotion it waited for, and is closing the new master's clients
        // now: renewed here, and again when the probe sees its own connection closed.
        if step == Step::PromotedReplica
            && let Some(replica) = replica
        {
            if let Some(fence) = &mut self.fence
                && fence.target.leader == *from
                && fence.target.candidate == *replica
            {
                fence.clients_closing = true;
            }
            if self.handover.as_ref().is_some_and(|(a, _)| a == replica) {
                self.clients_closed(replica, "is closing");
            }
        }
        let fence = self.fence.as_ref().map(|f| &f.target);
        match fence::decide(&self.view, fence, from, step, replica, epoch) {
            Decision::None => {}
            Decision::Ignored(why) => {
                log::debug!("failover step {step:?} from sentinel {from} not followed: {why}");
            }
            Decision::Raise(target) => self.raise(target),
            Decision::Release(reason) => {
                let old = self.fence.as_ref().and_then(|f| f.old.clone());
                self.release(
                    old,
                    FenceRelease::Aborted {
                        reason: reason.to_string(),
                    },
                );
            }
        }
    }

    /// Puts the fence up for `target`'s promotion and starts probing its replica.
    fn raise(&mut self, target: Target) {
        let options = self.shared.config.fence.expect("the fence is on");
        let until = Instant::now() + options.timeout;
        // A fence that follows an older attempt keeps the master it fenced off.
        let old = match self.fence.take() {
            Some(fenced) => fenced.old,
            None => self
                .view
                .master()
                .map(|master| (master.clone(), self.view.epoch())),
        };
        let generation = self.shared.raise_fence(until);
        self.handover = None;
        self.shared.liveness.settle_until(None);
        let old_master = old.as_ref().map(|(master, _)| master.clone());
        let probe = match Probe::start(
            &self.shared,
            target.candidate.clone(),
            old_master.clone(),
            self.reports_tx.clone(),
        ) {
            Ok((probe, threads)) => {
                self.probes.extend(threads);
                Some(probe)
            }
            Err(err) => {
                log::warn!("{err}; the fence waits for +switch-master instead");
                None
            }
        };
        if let Some(master) = &old_master {
            let clients = self.shared.blocked.release(master);
            if !clients.is_empty() {
                match probe::release(&self.shared, master.clone(), clients) {
                    Ok(thread) => self.probes.push(thread),
                    Err(err) => log::warn!("{err}; blocked connections end at their timeout"),
                }
            }
        }
        log::info!(
            "failover of {:?} under way (sentinel {}, epoch {:?}): fenced off master {}, \
             waiting for {} to become master (generation {generation})",
            self.shared.config.service,
            target.leader,
            target.epoch,
            old_master
                .as_ref()
                .map_or_else(|| "unknown".to_owned(), ToString::to_string),
            target.candidate,
        );
        self.shared.events.send(Event::FenceUp {
            old: old_master,
            candidate: target.candidate.clone(),
            sentinel: target.leader.clone(),
            epoch: target.epoch,
            generation,
            at: SystemTime::now(),
        });
        self.fence = Some(Fenced {
            target,
            old,
            until,
            probe,
            stall_told: false,
            clients_closing: false,
        });
    }

    /// The probe saw the fenced candidate answer master: the pool resumes there, with
    /// [`FenceResume::Promotion`] or when the old master handed over by itself
    /// ([`FailoverSource::Handover`]).
    fn promoted(&mut self, addr: &NodeAddr, via: FailoverSource) {
        let Some(fence) = &mut self.fence else {
            return;
        };
        if fence.target.candidate != *addr {
            return;
        }
        let (leader, epoch) = (fence.target.leader.clone(), fence.target.epoch);
        if via == FailoverSource::Handover {
            let old = fence
                .old
                .as_ref()
                .map_or_else(|| "the old master".to_owned(), |(m, _)| m.to_string());
            let at_promotion = self
                .shared
                .config
                .fence
                .is_some_and(|f| f.resume == FenceResume::Promotion);
            if !at_promotion {
                // The handover is not the commit: a leader that dies now leaves the other
                // sentinels to pick a master, and the one they pick may lack what the new one
                // took (the paused old master relays nothing to its replicas).
                log::info!(
                    "{old} handed over to {addr} by itself (a coordinated failover): the pool \
                     resumes there when the failover commits"
                );
                return;
            }
            log::info!(
                "{old} handed over to {addr} by itself (a coordinated failover): the pool \
                 resumes there now (FenceResume::Promotion)"
            );
            // It waits for Sentinel to close the new master's clients; operations that must
            // not run twice wait for that too. Unless they were closed already: the leader saw
            // the promotion before the probe did.
            if !fence.clients_closing {
                self.handover = fence.probe.take().map(|probe| (addr.clone(), probe));
                self.shared
                    .liveness
                    .settle_until(Some(Instant::now() + probe::KILL_WAIT));
            }
        }
        self.apply(&leader, addr, epoch, via);
    }

    /// After a handover, Sentinel closes (`how`: "is closing", "closed") the clients of the
    /// new master at `addr`: a generation starts there, and `with_retry` stops holding
    /// operations not declared idempotent.
    fn clients_closed(&mut self, addr: &NodeAddr, how: &str) {
        self.shared.liveness.settle_until(None);
        self.shared.renew(
            addr,
            &format!("Sentinel {how} the clients of the new master after its handover"),
        );
    }

    /// The fenced master holds writes for a handover that does not complete: its replica is
    /// not in sync. Says so once per fence, and keeps the fence up while the master holds
    /// writes (a write sent there would wait too, and fail at its read timeout as maybe
    /// applied), up to [`LONGEST_FENCE`](crate::config::LONGEST_FENCE) in all. The master
    /// holds them until the replica catches up or the failover's leader gives up
    /// (`failover-timeout`, whose abort lowers the fence).
    fn stalled(&mut self, held: Duration) {
        let Some(fence) = &mut self.fence else {
            return;
        };
        let timeout = self
            .shared
            .config
            .fence
            .map_or(Duration::ZERO, |f| f.timeout);
        let until = self.shared.stall_fence(Instant::now() + timeout);
        if let Some(until) = until {
            fence.until = until;
        }
        if std::mem::replace(&mut fence.stall_told, true) {
            return;
        }
        let master = fence.old.as_ref().map(|(m, _)| m.clone());
        log::warn!(
            "{} has held writes for {held:?} to hand over to {} (a coordinated failover), and \
             the replica has not caught up: writes wait until it does or the failover's leader \
             gives up (failover-timeout); the fence keeps the pool's writes off it meanwhile",
            master
                .as_ref()
                .map_or_else(|| "the master".to_owned(), ToString::to_string),
            fence.target.candidate,
        );
        self.shared.events.send(Event::HandoverStalled {
            master,
            candidate: fence.target.candidate.clone(),
            held,
        });
    }

    /// Whether `leader` answers, within [`IO_LIMIT`], that it still runs a failover of the
    /// service (`SENTINEL MASTER`'s `failover_in_progress` flag): asked on a connection of its
    /// own when the subscription to it was lost.
    fn still_leading(&self, leader: &NodeAddr) -> bool {
        let config = &self.shared.config;
        let leading =
            crate::node::connect(leader, &clamp(&config.sentinel)).and_then(|mut conn| {
                crate::sentinel::master_cmd(&config.service)
                    .query::<HashMap<String, String>>(&mut conn)
            });
        match leading {
            Ok(master) => {
                let leading = crate::sentinel::leads_failover(&master);
                if leading {
                    log::info!(
                        "lost the subscription to failover leader {leader}, which still leads \
                         the failover: the fence holds"
                    );
                }
                leading
            }
            Err(_) => false,
        }
    }

    /// Lowers the fence without a new master: to `master` in its epoch, or to asking the
    /// sentinels. An attempt that was aborted or timed out is remembered as done; one whose
    /// leader was lost is not (a leader back mid-failover is fenced again).
    fn release(&mut self, master: Option<(NodeAddr, Option<u64>)>, reason: FenceRelease) {
        let Some(fenced) = self.fence.take() else {
            return;
        };
        if matches!(
            reason,
            FenceRelease::TimedOut | FenceRelease::Aborted { .. }
        ) {
            self.done = Some(fenced.target);
        }
        let lowered = self
            .shared
            .lower_fence(master.as_ref().map(|(m, e)| (m, *e)));
        if let Some((held, generation)) = lowered {
            log::info!(
                "fence of {:?} lifted after {held:?}: {reason}; checkouts go to {} \
                 (generation {generation})",
                self.shared.config.service,
                master.map_or_else(
                    || "the master the sentinels name".to_owned(),
                    |(m, _)| m.to_string()
                ),
            );
            self.shared
                .events
                .send(Event::FenceReleased { reason, held });
        }
    }

    /// A sentinel names `addr` as master in configuration `epoch`.
    fn apply(&mut self, from: &NodeAddr, addr: &NodeAddr, epoch: Option<u64>, via: FailoverSource) {
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

    fn learn(&mut self, addr: NodeAddr) {
        if self.subscribers.contains_key(&addr) || !self.shared.config.discover_sentinels {
            return;
        }
        if self
            .forgotten
            .get(&addr)
            .is_some_and(|t| t.elapsed() < FORGOTTEN_FOR)
        {
            return;
        }
        if self.subscribers.len() >= self.shared.config.max_sentinels {
            if !std::mem::replace(&mut self.full_logged, true) {
                log::warn!(
                    "not following sentinel {addr}: the pool knows max_sentinels ({}) already",
                    self.shared.config.max_sentinels
                );
            }
            return;
        }
        log::debug!("watcher learned of sentinel {addr}");
        self.forgotten.remove(&addr);
        self.shared.lookups.add(addr.clone());
        self.add(addr.clone(), false);
        self.update_liveness();
        self.shared.events.send(Event::SentinelsChanged {
            added: vec![addr],
            removed: Vec::new(),
        });
    }

    fn housekeeping(&mut self) {
        // A sentinel gone silent ends the trust by time alone; this says so.
        self.update_liveness();
        let stale: HashSet<NodeAddr> = self
            .subscribers
            .iter()
            .filter(|(_, s)| !s.seed && s.down_since.is_some_and(|t| t.elapsed() > PRUNE_AFTER))
            .map(|(addr, _)| addr.clone())
            .collect();
        self.forget(stale, "unreachable for a minute");
        let restart: Vec<NodeAddr> = self
            .subscribers
            .iter()
            .filter(|(_, s)| s.thread.is_none())
            .map(|(addr, _)| addr.clone())
            .collect();
        for addr in restart {
            let mut slot = self.subscribers.remove(&addr).expect("listed above");
            self.start_thread(&addr, &mut slot);
            self.subscribers.insert(addr, slot);
        }
        self.forgotten.retain(|_, t| t.elapsed() < FORGOTTEN_FOR);
        let (finished, running) = self.probes.drain(..).partition(|p| p.is_finished());
        self.probes = running;
        for probe in finished {
            let _ = probe.join();
        }
    }

    /// After a `SENTINEL RESET`: forgets the learned sentinels that are unreachable now; the
    /// live ones are listed again by the sentinels.
    fn forget_unreachable(&mut self) {
        let down: HashSet<NodeAddr> = self
            .subscribers
            .iter()
            .filter(|(_, s)| !s.seed && !s.connected)
            .map(|(addr, _)| addr.clone())
            .collect();
        self.forget(down, "unreachable when a sentinel was reset");
    }

    fn forget(&mut self, addrs: HashSet<NodeAddr>, why: &str) {
        for addr in addrs {
            if let Some(mut slot) = self.subscribers.remove(&addr) {
                slot.stop();
            }
            self.shared.watcher.set_subscribed(&addr, false);
            log::debug!("watcher forgot sentinel {addr}: {why}");
            self.forgotten.insert(addr.clone(), Instant::now());
            self.shared.lookups.remove(&addr);
            self.shared.events.send(Event::SentinelsChanged {
                added: Vec::new(),
                removed: vec![addr],
            });
        }
        self.update_liveness();
    }

    /// Tells checkouts until when they may trust the watcher instead of a round trip: while
    /// a majority of the known sentinels were heard within the last
    /// [`HEARD_WITHIN`](crate::shared::liveness::HEARD_WITHIN) (see [`crate::liveness`]). Logs a
    /// change, and tells it to an adaptive pool's events.
    fn update_liveness(&mut self) {
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
