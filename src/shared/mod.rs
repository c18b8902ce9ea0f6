//! What the pool's parts share: the generation and the master recorded for it
//! ([`record`]), sentinel lookups, the replica listing, what the data nodes told the pool,
//! the connections blocked in a command, durable mode's memory, events, and the watcher's
//! live state. The one place that starts a generation. Data flows down: the manager, the
//! connections and the watcher call in here; nothing here calls them.
//!
//! # Locks
//!
//! The record's lock is held for reads and writes of the record only, never across I/O: the
//! watcher's [`switch_master`](Shared::switch_master), `stats()` and connects that find the
//! answer cached never wait for a sentinel. Sentinel lookups run one at a time under their own
//! lock (single flight, [`Lookups`]): a connect that needs a lookup while one is in flight
//! waits for it and uses its answer, so rebuilding 32 connections after a failover asks the
//! sentinels once.

mod blocked;
mod cache;
mod generation;
mod live;
pub(crate) mod liveness;
mod lookups;
mod nodes;
mod record;
mod retries;

use std::{
    sync::Arc,
    time::{Duration, Instant, SystemTime},
};

use parking_lot::Mutex;

pub(crate) use blocked::BlockedCommands;
pub(crate) use cache::Cached;
pub(crate) use generation::Generation;
pub(crate) use live::{FenceEnd, WatcherLive};
pub(crate) use liveness::Liveness;
pub(crate) use lookups::Lookups;
pub(crate) use nodes::NodeFacts;
pub(crate) use record::Suspicion;
use record::{Found, Record, Settled};
pub(crate) use retries::{RetryCounters, count};

use crate::{
    CheckoutMode, Error, Event, FailoverSource, NodeAddr, Validation, config::Config,
    durable::Memory, event::EventSink, sentinel::PromotionView,
};

/// The state every part of one pool shares.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) config: Config,
    pub(crate) generation: Arc<Generation>,
    /// The master of one generation, and the fence. Held for no I/O.
    record: Mutex<Record>,
    pub(crate) lookups: Lookups,
    pub(crate) events: EventSink,
    /// The replicas the sentinels last listed as healthy.
    replicas: Cached<Vec<NodeAddr>>,
    /// The replica set's version: see [`replicas_changed`](Shared::replicas_changed).
    replica_set: std::sync::atomic::AtomicU64,
    /// Durable mode: what the sentinels last said about promoting the replicas.
    promotion: Cached<PromotionView>,
    /// Durable mode: the replicas each node seen as master is known to have.
    pub(crate) durable: Memory,
    /// What the watcher does now and did so far, for `stats()` and checkouts.
    pub(crate) watcher: WatcherLive,
    /// Whether a checkout may skip its round trip: the watcher hears a majority of the
    /// sentinels, and no master connection broke lately. Written by the watcher and by
    /// connections that break; read by every adaptive checkout, without a lock.
    pub(crate) liveness: Liveness,
    pub(crate) nodes: NodeFacts,
    pub(crate) blocked: BlockedCommands,
    /// What `with_retry` did, for `stats()`.
    pub(crate) retries: RetryCounters,
}

impl Shared {
    pub(crate) fn new(config: Config) -> Self {
        Shared {
            lookups: Lookups::new(&config),
            events: EventSink::new(&config.service),
            config,
            generation: Arc::new(Generation::default()),
            record: Mutex::new(Record::default()),
            replicas: Cached::default(),
            replica_set: std::sync::atomic::AtomicU64::new(0),
            promotion: Cached::default(),
            durable: Memory::default(),
            watcher: WatcherLive::default(),
            liveness: Liveness::default(),
            nodes: NodeFacts::default(),
            blocked: BlockedCommands::default(),
            retries: RetryCounters::default(),
        }
    }

    /// The current generation and its master: the recorded answer, or one sentinel lookup
    /// (shared with every connect that needs one meanwhile), ending by `deadline`. While a
    /// fence is up, waits for it to come down (or to time out), at most until `deadline`.
    ///
    /// The generation is read before the lookup: a connection is stamped with the generation
    /// its master was resolved in, never a later one.
    pub(crate) fn master(&self, deadline: Instant) -> Result<(u64, NodeAddr), Error> {
        loop {
            match self.recorded() {
                Found::Master(generation, master) => return Ok((generation, master)),
                Found::Fenced(generation, until) => {
                    self.wait_out_fence(generation, until, deadline)?;
                    continue;
                }
                Found::Ask => {}
            }
            let mut client = self.lookups.turn();
            // A lookup that was in flight while this one waited may have answered, or a fence
            // gone up.
            if !matches!(self.recorded(), Found::Ask) {
                continue;
            }
            let (started, avoid) = {
                let record = self.record.lock();
                let generation = self.generation.current();
                (generation, record.avoid(generation))
            };
            let answer = self.lookups.ask(&mut client, |client| {
                client.master(&self.config.service, avoid.as_ref(), deadline)
            });
            // Settled before the lookup's turn ends, so that the connects waiting for it find
            // the answer recorded.
            if let Some(down_after) = client.down_after() {
                self.watcher.learn_down_after(down_after);
            }
            let found = answer?;
            let settled =
                self.record
                    .lock()
                    .settle(&self.generation, started, found.clone(), Instant::now());
            match settled {
                Settled::Kept(generation, master) => return Ok((generation, master)),
                Settled::Moved { generation, old } => {
                    let new = found.0;
                    self.invalidated(
                        generation,
                        &format!("the sentinels name {new} as master, not {old}"),
                    );
                    return Ok((generation, new));
                }
                // A fence went up during the lookup: its answer names the master being
                // replaced.
                Settled::Fenced => {}
            }
        }
    }

    /// The replicas that may serve reads, as the sentinels list them: kept for the current
    /// generation for a second, else one lookup (connects that need one meanwhile share it),
    /// ending by `deadline`. Not held by the fence: replicas keep serving reads while a
    /// failover promotes one of them.
    pub(crate) fn replicas(&self, deadline: Instant) -> Result<Vec<NodeAddr>, Error> {
        self.cached(&self.replicas, |client, service| {
            client.replicas(service, deadline)
        })
    }

    /// What `cache` holds when it is fresh for the current generation, else `ask`'s answer,
    /// asked on the lookups' turn (connects that need one meanwhile share it) and kept.
    fn cached<T: Clone>(
        &self,
        cache: &Cached<T>,
        ask: impl FnOnce(&mut crate::sentinel::Sentinels, &str) -> Result<T, Error>,
    ) -> Result<T, Error> {
        if let Some(answer) = cache.fresh(self.generation.current()) {
            return Ok(answer);
        }
        let mut client = self.lookups.turn();
        if let Some(answer) = cache.fresh(self.generation.current()) {
            return Ok(answer);
        }
        let generation = self.generation.current();
        let answer = self
            .lookups
            .ask(&mut client, |client| ask(client, &self.config.service))?;
        cache.keep(generation, answer.clone());
        Ok(answer)
    }

    /// Durable mode: whether the master `master`, which lists `connected` as its connected
    /// replicas (as it announces them), can have a write confirmed by every replica Sentinel
    /// may promote. `None` when it can; otherwise why not. See [`Memory`].
    pub(crate) fn unconfirmable(
        &self,
        master: &NodeAddr,
        connected: &[NodeAddr],
    ) -> Option<String> {
        if !self.durable.note(master, connected) {
            return None;
        }
        // Each sentinel within its read timeout: one that hangs costs it once (it is asked last
        // for a while after), and the others are still asked.
        let asked = u32::try_from(self.lookups.count()).unwrap_or(u32::MAX);
        let deadline = Instant::now() + self.config.sentinel.read_timeout.saturating_mul(asked);
        let view = self.cached(&self.promotion, |client, service| {
            client.promotion_view(service, deadline)
        });
        self.durable.learn(view, master, connected)
    }

    /// Forgets the replica list: a replica in it failed.
    pub(crate) fn forget_replicas(&self) {
        self.replicas.forget();
    }

    /// The set of replicas that can serve reads changed (the watcher heard so): replica
    /// connections made before are not handed out again, so that new ones spread over the
    /// new set.
    pub(crate) fn replicas_changed(&self) {
        self.replica_set
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        self.forget_replicas();
    }

    /// The version of the replica set, one more at each change the watcher heard of.
    pub(crate) fn replica_set(&self) -> u64 {
        self.replica_set.load(std::sync::atomic::Ordering::Acquire)
    }

    fn recorded(&self) -> Found {
        self.record.lock().found(&self.generation, Instant::now())
    }

    /// Waits while the fence holds (until the generation moves, the fence times out, or
    /// `deadline`).
    fn wait_out_fence(&self, seen: u64, until: Instant, deadline: Instant) -> Result<(), Error> {
        let now = Instant::now();
        if now < deadline {
            self.generation
                .wait_for_change(seen, until.min(deadline).saturating_duration_since(now));
            if !self.generation.is_closed() {
                return Ok(());
            }
        }
        Err(Error::FailoverInProgress {
            service: self.config.service.clone(),
            stalled: self.record.lock().stalled(),
        })
    }

    /// Puts the fence up until `until`: a new generation with no master, so that no
    /// connection to the old master is handed out again (idle ones are dropped, checked-out
    /// ones refuse their next request) and connects wait instead of asking the sentinels.
    /// Returns the new generation.
    pub(crate) fn raise_fence(&self, until: Instant) -> u64 {
        let generation = self
            .record
            .lock()
            .raise_fence(&self.generation, Instant::now(), until);
        self.watcher.fence_raised();
        generation
    }

    /// The master the fence closed holds writes for a handover that does not complete: keeps
    /// the fence up until `until`, at most [`LONGEST_FENCE`](crate::config::LONGEST_FENCE)
    /// after it went up, and says so in the error of a connect it holds past its
    /// `checkout_timeout`. Returns the fence's end now, or `None` when no fence is up.
    pub(crate) fn stall_fence(&self, until: Instant) -> Option<Instant> {
        self.record.lock().stall_fence(until)
    }

    /// Lowers the fence without a new master: back to `master` in its configuration epoch (the
    /// failover was aborted), or to asking the sentinels (`None`: it timed out, its leader was
    /// lost, or the watcher stopped). Wakes every waiting connect. Returns how long the fence
    /// was up and the generation connects use now, or `None` when no fence was up.
    pub(crate) fn lower_fence(
        &self,
        master: Option<(&NodeAddr, Option<u64>)>,
    ) -> Option<(Duration, u64)> {
        let lowered = self
            .record
            .lock()
            .lower_fence(&self.generation, master, Instant::now());
        if lowered.is_some() {
            self.watcher.fence_ended(FenceEnd::Released);
        }
        lowered
    }

    /// Whether a fence holds connects now (`Some`), and whether the master it closed holds
    /// writes for a handover that does not complete (`Some(true)`).
    pub(crate) fn fenced(&self) -> Option<bool> {
        self.record.lock().fenced(Instant::now())
    }

    /// Notes that the master recorded for `generation` failed a connect; the next connect
    /// asks the sentinels again. Starts no generation.
    pub(crate) fn suspect(&self, generation: u64, master: &NodeAddr, why: Suspicion) {
        self.record.lock().suspect(generation, master, why);
    }

    /// Applies a failover the watcher learned of, from `old` to `new`, and announces it.
    ///
    /// Starts a generation whose master is `new` (no sentinel lookup needed), unless the
    /// current generation's master already is `new`: after a crash, failing connects ask the
    /// sentinels and may find the promoted node before the watcher hears the announcement, and
    /// a generation never holds connections to two masters, so none can be to `old`. Whether
    /// this is a new failover at all is the watcher's call.
    ///
    /// Lowers the fence if one is up, and returns how long it was: connects go to `new`.
    pub(crate) fn switch_master(
        &self,
        old: Option<NodeAddr>,
        (new, epoch): (&NodeAddr, Option<u64>),
        sentinel: &NodeAddr,
        via: FailoverSource,
    ) -> Option<Duration> {
        let (generation, held) =
            self.record
                .lock()
                .switch_master(&self.generation, (new, epoch), Instant::now());
        if held.is_some() {
            self.watcher.fence_ended(FenceEnd::Resumed);
        }
        self.watcher.failover_applied();
        log::info!(
            "failover of {:?}: master {} -> {new} (generation {generation}, from sentinel {sentinel}, {via:?})",
            self.config.service,
            old.as_ref()
                .map_or_else(|| "unknown".to_owned(), |o| o.to_string()),
        );
        self.events.send(Event::Failover {
            old,
            new: new.clone(),
            generation,
            sentinel: sentinel.clone(),
            via,
            at: SystemTime::now(),
        });
        held
    }

    /// The master recorded for the current generation, if any; no I/O.
    pub(crate) fn cached_master(&self) -> Option<NodeAddr> {
        self.recorded_master().map(|(master, _)| master)
    }

    /// The master recorded for the current generation and its configuration epoch when known;
    /// no I/O. The watcher's view follows it, so that a master found by a lookup, a release or
    /// a connect is what the next announcement is compared with.
    pub(crate) fn recorded_master(&self) -> Option<(NodeAddr, Option<u64>)> {
        self.record.lock().master(self.generation.current())
    }

    /// Starts a new generation on the same master, if `master` is the current one and no
    /// fence is up: every connection opened before is dropped (or refuses its next request),
    /// and connects go to `master` without asking the sentinels, which may not name it yet.
    /// After a handover, when Sentinel closed the new master's clients.
    pub(crate) fn renew(&self, master: &NodeAddr, why: &str) {
        let renewed = self.record.lock().renew(&self.generation, master);
        if let Some(generation) = renewed {
            self.invalidated(generation, why);
        }
    }

    /// Starts a new generation if `seen` is still current, so that every connection born
    /// before it is dropped. Many witnesses of one failover bump once.
    pub(crate) fn invalidate_from(&self, seen: u64, why: &str) {
        if self.generation.bump_from(seen) {
            self.invalidated(seen + 1, why);
        }
    }

    /// Starts a new generation unconditionally; returns it.
    pub(crate) fn invalidate(&self, why: &str) -> u64 {
        let generation = self.generation.bump();
        self.invalidated(generation, why);
        generation
    }

    fn invalidated(&self, generation: u64, why: &str) {
        log::info!(
            "pool for {:?} invalidated: {why} (generation {generation})",
            self.config.service
        );
        self.events.send(Event::Invalidated {
            generation,
            reason: why.to_owned(),
        });
    }

    /// The watcher is gone: it listens to no sentinel, and checkouts trust it no more.
    pub(crate) fn watcher_gone(&self) {
        for sentinel in self.watcher.subscribed() {
            self.events.series.subscribed(&sentinel, false);
        }
        self.watcher.clear_subscriptions();
        self.liveness.set_live_until(None);
        self.liveness.settle_until(None);
    }

    /// A master connection broke (its node may have crashed or hung, and taken every
    /// connection with it): adaptive checkouts ask `PING`+`ROLE` for a window, so that no
    /// connection that answered before the break is handed out unchecked.
    pub(crate) fn distrust_recent(&self) {
        if let Some(window) = self.adaptive_window() {
            self.liveness.distrust_until(Instant::now() + window);
        }
    }

    /// The window within which a master checkout may skip its round trip, if the pool's
    /// checkouts are adaptive: not in durable mode, whose refusals of writes a replica could
    /// not confirm need the replica count that each checkout's `ROLE` reads.
    pub(crate) fn adaptive_window(&self) -> Option<Duration> {
        match self.config.validation {
            Validation::Adaptive { window } if self.config.data.durability.is_none() => {
                Some(window)
            }
            _ => None,
        }
    }

    /// The check master checkouts make now.
    pub(crate) fn checkout_mode(&self) -> CheckoutMode {
        match self.config.validation {
            Validation::Off => CheckoutMode::NoRoundTrip,
            _ if self.adaptive_window().is_some() && self.liveness.trusted(Instant::now()) => {
                CheckoutMode::SkipRecent
            }
            _ => CheckoutMode::RoundTrip,
        }
    }
}
