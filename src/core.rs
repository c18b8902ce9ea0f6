//! What the pool's parts share: the generation, the master recorded for it, the sentinel
//! lookups, counters, events and the watcher's live state. The one place that starts a
//! generation.
//!
//! # One generation, one master
//!
//! The record holds at most one master per generation, and never changes it within that
//! generation: every connection of a generation goes to the same node. A lookup that names
//! another node starts a new generation (a real change: the master moved); one that names the
//! same node starts none, however often it is repeated. So a node that keeps answering `ROLE`
//! as replica while the sentinels still name it costs one invalidation, not one per connect,
//! and the watcher can tell "the pool already moved there" from "another master".
//!
//! # The fence
//!
//! While a failover promotes a replica, the record holds a fence and no master: connects wait
//! for a new generation instead of asking the sentinels (which still name the old master),
//! until the fence's end at the latest; a lookup that was in flight when it went up records
//! nothing. Only the watcher lowers it: on the promoted master ([`switch_master`]), back to
//! the old one, or to asking the sentinels ([`lower_fence`]).
//!
//! The record also keeps the configuration epoch its master was named in, when known, which
//! the watcher's view follows whatever moved the pool.
//!
//! [`switch_master`]: Core::switch_master
//! [`lower_fence`]: Core::lower_fence
//!
//! # Locks
//!
//! The record's lock is held for reads and writes of the record only, never across I/O: the
//! watcher's [`switch_master`](Core::switch_master), `stats()` and connects that find the
//! answer cached never wait for a sentinel. Sentinel lookups run one at a time under their own
//! lock (single flight): a connect that needs a lookup while one is in flight waits for it and
//! uses its answer, so rebuilding 32 connections after a failover asks the sentinels once.

use std::{
    collections::{BTreeSet, HashMap},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering},
    },
    time::{Duration, Instant, SystemTime},
};

use parking_lot::Mutex;

use crate::{
    Error, Event, FailoverSource, NodeAddr, Validation,
    command_table::CommandTable,
    config::{Config, LONGEST_FENCE},
    durable::{KnownReplicas, Unconfirmable},
    event::EventSink,
    generation::Generation,
    liveness::Liveness,
    node::RoleProbe,
    sentinel::{PromotionView, Sentinels},
};

/// How long a replica list stays in use within one generation: a replica that goes down or
/// comes back is seen within this.
const REPLICAS_FRESH: Duration = Duration::from_secs(1);

#[derive(Debug)]
pub(crate) struct Core {
    pub(crate) config: Config,
    pub(crate) generation: Arc<Generation>,
    /// The master of one generation. Held for no I/O.
    record: Mutex<Record>,
    /// Sentinel lookups, one at a time; the holder does the I/O. Taken only by connects that
    /// find no usable master in the record; nothing else waits for it.
    lookup: Mutex<Sentinels>,
    /// The sentinels lookups ask, in the order the last lookup left them, as the watcher
    /// learns and forgets them. Held for no I/O.
    sentinels: Mutex<Vec<NodeAddr>>,
    /// The last failure to open a connection; cleared by a success. Lets a checkout that
    /// times out say why.
    pub(crate) events: EventSink,
    /// The replicas the sentinels last listed as healthy, for which generation, and when.
    /// Held for no I/O.
    replicas: Mutex<Option<(u64, Instant, Vec<NodeAddr>)>>,
    /// Durable mode: what the sentinels last said about promoting the replicas, for which
    /// generation, and when. Held for no I/O.
    promotion: Mutex<Option<(u64, Instant, PromotionView)>>,
    /// The replica set's version: see [`replicas_changed`](Core::replicas_changed).
    replica_set: AtomicU64,
    failovers: AtomicU64,
    /// When the last failover was applied; written by the watcher, read by `stats`.
    last_failover: Mutex<Option<SystemTime>>,
    /// The sentinels the watcher is subscribed to now; written by the watcher, read by
    /// `stats`.
    subscribed: Mutex<BTreeSet<NodeAddr>>,
    /// How many of them: whether the watcher listens at all (`build` waits for it).
    live_subscriptions: AtomicUsize,
    /// Whether a checkout may skip its round trip: the watcher hears a majority of the
    /// sentinels, and no master connection broke lately. Written by the watcher and by
    /// connections that break; read by every adaptive checkout, without a lock.
    pub(crate) liveness: Liveness,
    /// Set once a data node refused `ROLE` to our ACL user (`NOPERM`): what fast paths read
    /// before they look in `roles_via_hello`.
    any_role_via_hello: AtomicBool,
    /// The data nodes that refused `ROLE` to our ACL user (`NOPERM`): they are asked their
    /// role with `HELLO` from then on; the others keep `ROLE`. Held for no I/O.
    roles_via_hello: Mutex<BTreeSet<NodeAddr>>,
    fences: FenceCounts,
    /// The service's `down-after-milliseconds` as the sentinels last said (lookups and the
    /// watcher's refreshes); 0 until one did.
    down_after_ms: AtomicU64,
    /// Durable mode: for each node seen as master, the replicas it is known to have
    /// ([`KnownReplicas`]), so that one that leaves is noticed whatever the generation. Held
    /// for no I/O.
    known_replicas: Mutex<HashMap<NodeAddr, KnownReplicas>>,
    /// Which commands write, as the first data node the pool connected to said (`COMMAND`);
    /// `None` inside when it refused. Set once.
    pub(crate) commands: std::sync::OnceLock<Option<CommandTable>>,
    /// A connect is asking for `commands` now: the others do not.
    asking_commands: AtomicBool,
    /// Master connections blocked in a command now (`BLPOP`, `BLMOVE`, `XREAD BLOCK`...),
    /// so that the fence can release them from a master it closes. Held for no I/O.
    blocked: Mutex<Vec<Blocked>>,
    /// The token of the next entry in `blocked`.
    next_blocked: AtomicU64,
    /// What `with_retry` did, for `stats()`.
    pub(crate) retries: crate::retry::RetryCounters,
}

/// A master connection blocked in a command.
#[derive(Debug)]
struct Blocked {
    token: u64,
    addr: NodeAddr,
    client_id: i64,
    /// Set when the pool releases it: the `UNBLOCKED` it gets is the fence's doing.
    released: Arc<AtomicBool>,
}

/// How many fences went up, and how each came down; read by `stats`.
#[derive(Debug, Default)]
struct FenceCounts {
    raised: AtomicU64,
    resumed: AtomicU64,
    released: AtomicU64,
}

#[derive(Debug, Default)]
struct Record {
    generation: u64,
    master: Option<NodeAddr>,
    /// The configuration epoch the sentinels named `master` in, when it is known: what the
    /// watcher's view starts from whenever the pool moved by another way than the watcher.
    epoch: Option<u64>,
    /// Why the next connect should ask the sentinels again although a master is recorded.
    suspect: Option<Suspicion>,
    /// Up while a promotion is under way: connects wait instead of asking the sentinels,
    /// which still name the old master. Outlives generations; only the watcher lowers it.
    fence: Option<Fence>,
}

/// A fence: when it went up, and when connects stop waiting for it.
#[derive(Debug, Clone, Copy)]
struct Fence {
    since: Instant,
    until: Instant,
    /// The master it closed holds writes for a handover that does not complete.
    stalled: bool,
}

/// What a connect finds in the record.
enum Found {
    /// The master of this generation.
    Master(u64, NodeAddr),
    /// A fence that holds connects until this instant, in this generation.
    Fenced(u64, Instant),
    /// Nothing usable: ask the sentinels.
    Ask,
}

/// What a connect found wrong with the recorded master.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Suspicion {
    /// It could not be reached: perhaps it died and a failover is on its way.
    Unreachable,
    /// It answered that it is not master: the sentinel that named it is stale, ask another.
    NotMaster,
}

impl Record {
    /// The fence's end, while it holds connects.
    fn fenced(&self, now: Instant) -> Option<Instant> {
        self.fence.map(|f| f.until).filter(|&until| until > now)
    }

    /// The master recorded for `generation`, if there is one.
    fn master_of(&self, generation: u64) -> Option<&NodeAddr> {
        self.master
            .as_ref()
            .filter(|_| self.generation == generation)
    }

    /// The master of `generation` when a connect may use it without asking the sentinels.
    fn usable(&self, generation: u64) -> Option<&NodeAddr> {
        self.master_of(generation)
            .filter(|_| self.suspect.is_none())
    }
}

impl Core {
    pub(crate) fn new(config: Config) -> Self {
        let lookup = Sentinels::new(
            config.sentinels.clone(),
            config.sentinel.clone(),
            config.address_map.clone(),
        );
        Core {
            sentinels: Mutex::new(config.sentinels.clone()),
            config,
            generation: Arc::new(Generation::default()),
            record: Mutex::new(Record::default()),
            lookup: Mutex::new(lookup),
            events: EventSink::new(),
            replicas: Mutex::new(None),
            promotion: Mutex::new(None),
            known_replicas: Mutex::new(HashMap::new()),
            commands: std::sync::OnceLock::new(),
            asking_commands: AtomicBool::new(false),
            blocked: Mutex::new(Vec::new()),
            next_blocked: AtomicU64::new(0),
            retries: crate::retry::RetryCounters::default(),
            replica_set: AtomicU64::new(0),
            failovers: AtomicU64::new(0),
            last_failover: Mutex::new(None),
            subscribed: Mutex::new(BTreeSet::new()),
            live_subscriptions: AtomicUsize::new(0),
            liveness: Liveness::default(),
            any_role_via_hello: AtomicBool::new(false),
            roles_via_hello: Mutex::new(BTreeSet::new()),
            fences: FenceCounts::default(),
            down_after_ms: AtomicU64::new(0),
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
            let mut lookup = self.lookup.lock();
            // A lookup that was in flight while this one waited may have answered, or a fence
            // gone up.
            if !matches!(self.recorded(), Found::Ask) {
                continue;
            }
            let (generation, avoid) = {
                let record = self.record.lock();
                let generation = self.generation.current();
                let avoid = record
                    .master_of(generation)
                    .filter(|_| record.suspect == Some(Suspicion::NotMaster))
                    .cloned();
                (generation, avoid)
            };
            lookup.sync(&self.sentinels.lock());
            let answer = lookup.master(&self.config.service, avoid.as_ref(), deadline);
            self.keep_order(&lookup.addrs());
            // Settled before the lookup lock is released, so that the connects waiting for it
            // find the answer recorded.
            if let Some(down_after) = lookup.down_after() {
                self.learn_down_after(down_after);
            }
            let (found, epoch) = answer?;
            if let Some(found) = self.settle(generation, found, epoch) {
                return Ok(found);
            }
            // A fence went up during the lookup: its answer names the master being replaced.
        }
    }

    /// The replicas that may serve reads, as the sentinels list them: cached for the current
    /// generation for [`REPLICAS_FRESH`], else one lookup (under the lookup lock: connects that
    /// need one meanwhile share it), ending by `deadline`. Not held by the fence: replicas keep
    /// serving reads while a failover promotes one of them.
    pub(crate) fn replicas(&self, deadline: Instant) -> Result<Vec<NodeAddr>, Error> {
        self.cached(&self.replicas, deadline, |lookup, service, deadline| {
            lookup.replicas(service, deadline)
        })
    }

    /// What `cache` holds when it is of the current generation and younger than
    /// [`REPLICAS_FRESH`], else `ask`'s answer, asked under the lookup lock (connects that
    /// need one meanwhile share it) and kept in `cache`.
    fn cached<T: Clone>(
        &self,
        cache: &Mutex<Option<(u64, Instant, T)>>,
        deadline: Instant,
        ask: impl FnOnce(&mut Sentinels, &str, Instant) -> Result<T, Error>,
    ) -> Result<T, Error> {
        let fresh = |cache: &Option<(u64, Instant, T)>| {
            cache
                .as_ref()
                .filter(|(generation, at, _)| {
                    *generation == self.generation.current() && at.elapsed() < REPLICAS_FRESH
                })
                .map(|(_, _, answer)| answer.clone())
        };
        if let Some(answer) = fresh(&cache.lock()) {
            return Ok(answer);
        }
        let mut lookup = self.lookup.lock();
        if let Some(answer) = fresh(&cache.lock()) {
            return Ok(answer);
        }
        let generation = self.generation.current();
        lookup.sync(&self.sentinels.lock());
        let answer = ask(&mut lookup, &self.config.service, deadline);
        self.keep_order(&lookup.addrs());
        let answer = answer?;
        *cache.lock() = Some((generation, Instant::now(), answer.clone()));
        Ok(answer)
    }

    /// Durable mode: whether the master `master`, which lists `connected` as its connected
    /// replicas (as it announces them), can have a write confirmed by every replica Sentinel
    /// may promote. `None` when it can; otherwise why not.
    ///
    /// `WAIT` counts the replicas connected now. One that is not may still be promoted: in a
    /// failover the replica being promoted leaves the old master first, and the others
    /// confirm writes it will never have; a replica cut off from the master may be promoted
    /// too. So the replicas seen on each master are remembered ([`KnownReplicas`]: whatever
    /// the generation), and while one is missing the sentinels are asked (every one that
    /// answers, cached for a second) whether any of them may promote it; until none may,
    /// writes cannot be confirmed.
    pub(crate) fn unconfirmable(
        &self,
        master: &NodeAddr,
        connected: &[NodeAddr],
    ) -> Option<String> {
        let ask = {
            let mut known = self.known_replicas.lock();
            match known.get_mut(master) {
                Some(replicas) => replicas.note(connected),
                None => known.entry(master.clone()).or_default().note(connected),
            }
        };
        if !ask {
            return None;
        }
        // Each sentinel within its read timeout: one that hangs costs it once (it is asked last
        // for a while after), and the others are still asked.
        let asked = u32::try_from(self.sentinels.lock().len()).unwrap_or(u32::MAX);
        let deadline = Instant::now() + self.config.sentinel.read_timeout.saturating_mul(asked);
        let view = match self.cached(&self.promotion, deadline, |lookup, service, deadline| {
            lookup.promotion_view(service, deadline)
        }) {
            Ok(view) => view,
            Err(err) => {
                return Some(format!(
                    "the sentinels could not say which of its replicas they may promote: {err}"
                ));
            }
        };
        let verdict = self
            .known_replicas
            .lock()
            .entry(master.clone())
            .or_default()
            .learn(&view, master, connected);
        match verdict? {
            Unconfirmable::MovedOn => Some(
                "the sentinels list it as a replica now: a failover moved the master".to_owned(),
            ),
            Unconfirmable::Missing(waited) => Some(format!(
                "{} not connected to it, and a sentinel may promote {} (a failover may be \
                 promoting it now, or it is still syncing)",
                list(&waited),
                if waited.len() == 1 { "it" } else { "them" }
            )),
        }
    }

    /// Forgets the replica list: a replica in it failed.
    pub(crate) fn forget_replicas(&self) {
        *self.replicas.lock() = None;
    }

    /// The set of replicas that can serve reads changed (the watcher heard so): replica
    /// connections made before are not handed out again, so that new ones spread over the
    /// new set.
    pub(crate) fn replicas_changed(&self) {
        self.replica_set.fetch_add(1, Ordering::AcqRel);
        self.forget_replicas();
    }

    /// The version of the replica set, one more at each change the watcher heard of.
    pub(crate) fn replica_set(&self) -> u64 {
        self.replica_set.load(Ordering::Acquire)
    }

    fn recorded(&self) -> Found {
        let record = self.record.lock();
        let generation = self.generation.current();
        if let Some(until) = record.fenced(Instant::now()) {
            return Found::Fenced(generation, until);
        }
        match record.usable(generation) {
            Some(master) => Found::Master(generation, master.clone()),
            None => Found::Ask,
        }
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
        let stalled = self.record.lock().fence.is_some_and(|f| f.stalled);
        Err(Error::FailoverInProgress {
            service: self.config.service.clone(),
            stalled,
        })
    }

    /// Records what a lookup that started in `generation` found, and returns the generation
    /// and master a connect should use; `None` when a fence went up meanwhile.
    fn settle(&self, generation: u64, found: NodeAddr, epoch: u64) -> Option<(u64, NodeAddr)> {
        let mut record = self.record.lock();
        if record.fenced(Instant::now()).is_some() {
            return None;
        }
        let current = self.generation.current();
        if current != generation {
            // A generation started during the lookup (the watcher, an invalidation). Its
            // master, if recorded, is newer than this answer.
            if let Some(master) = record.usable(current) {
                return Some((current, master.clone()));
            }
        }
        Some(match record.master_of(current) {
            Some(master) if *master == found => {
                record.suspect = None;
                record.epoch = record.epoch.max(Some(epoch));
                (current, found)
            }
            Some(master) => {
                // The master moved: a generation holds one master, so start a new one.
                let old = master.clone();
                let new = self.generation.bump();
                record.generation = new;
                record.master = Some(found.clone());
                record.epoch = Some(epoch);
                record.suspect = None;
                drop(record);
                self.invalidated(
                    new,
                    &format!("the sentinels name {found} as master, not {old}"),
                );
                (new, found)
            }
            None => {
                record.generation = current;
                record.master = Some(found.clone());
                record.epoch = Some(epoch);
                record.suspect = None;
                (current, found)
            }
        })
    }

    /// Puts the fence up until `until`: a new generation with no master, so that no
    /// connection to the old master is handed out again (idle ones are dropped, checked-out
    /// ones refuse their next request) and connects wait instead of asking the sentinels.
    /// Returns the new generation.
    pub(crate) fn raise_fence(&self, until: Instant) -> u64 {
        let mut record = self.record.lock();
        let since = record.fence.map_or_else(Instant::now, |f| f.since);
        let generation = self.generation.bump();
        *record = Record {
            generation,
            master: None,
            epoch: None,
            suspect: None,
            fence: Some(Fence {
                since,
                until,
                stalled: false,
            }),
        };
        self.fences.raised.fetch_add(1, Ordering::Relaxed);
        generation
    }

    /// The master the fence closed holds writes for a handover that does not complete: keeps
    /// the fence up until `until`, at most [`LONGEST_FENCE`] after it went up, and says so
    /// in the error of a connect it holds past its `connection_timeout`. Returns the fence's
    /// end now, or `None` when no fence is up.
    pub(crate) fn stall_fence(&self, until: Instant) -> Option<Instant> {
        let mut record = self.record.lock();
        let fence = record.fence.as_mut()?;
        fence.until = fence.until.max(until.min(fence.since + LONGEST_FENCE));
        fence.stalled = true;
        Some(fence.until)
    }

    /// Lowers the fence without a new master: back to `master` in its configuration epoch (the
    /// failover was aborted), or to asking the sentinels (`None`: it timed out, its leader was
    /// lost, or the watcher stopped). Wakes every waiting connect. Returns how long the fence
    /// was up and the generation connects use now, or `None` when no fence was up.
    pub(crate) fn lower_fence(
        &self,
        master: Option<(&NodeAddr, Option<u64>)>,
    ) -> Option<(Duration, u64)> {
        let mut record = self.record.lock();
        let fence = record.fence.take()?;
        let current = self.generation.current();
        self.fences.released.fetch_add(1, Ordering::Relaxed);
        let kept = record.master_of(current);
        if kept.is_some() && (master.is_none() || master.map(|(m, _)| m) == kept) {
            // The fence had timed out and connects found the master by asking: keep it.
            return Some((fence.since.elapsed(), current));
        }
        let generation = self.generation.bump();
        record.generation = generation;
        record.master = master.map(|(m, _)| m.clone());
        record.epoch = master.and_then(|(_, e)| e);
        record.suspect = None;
        Some((fence.since.elapsed(), generation))
    }

    /// Fences raised, resumed on a new master, and released without one.
    pub(crate) fn fence_counts(&self) -> (u64, u64, u64) {
        let count = |c: &AtomicU64| c.load(Ordering::Relaxed);
        (
            count(&self.fences.raised),
            count(&self.fences.resumed),
            count(&self.fences.released),
        )
    }

    /// Whether a fence holds connects now (`Some`), and whether the master it closed holds
    /// writes for a handover that does not complete (`Some(true)`).
    pub(crate) fn fenced(&self) -> Option<bool> {
        let record = self.record.lock();
        record
            .fenced(Instant::now())
            .map(|_| record.fence.is_some_and(|f| f.stalled))
    }

    /// Whether a fence holds connects now.
    pub(crate) fn is_fenced(&self) -> bool {
        self.fenced().is_some()
    }

    /// Notes that the master recorded for `generation` failed a connect; the next connect
    /// asks the sentinels again. Starts no generation.
    pub(crate) fn suspect(&self, generation: u64, master: &NodeAddr, why: Suspicion) {
        let mut record = self.record.lock();
        if record.master_of(generation) == Some(master) {
            record.suspect = Some(why);
        }
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
        let (generation, fence) = {
            let mut record = self.record.lock();
            let current = self.generation.current();
            let fence = record.fence.take();
            if record.master_of(current) == Some(new) {
                record.suspect = None;
                record.epoch = record.epoch.max(epoch);
                (current, fence)
            } else {
                let generation = self.generation.bump();
                *record = Record {
                    generation,
                    master: Some(new.clone()),
                    epoch,
                    suspect: None,
                    fence: None,
                };
                (generation, fence)
            }
        };
        if fence.is_some() {
            self.fences.resumed.fetch_add(1, Ordering::Relaxed);
        }
        self.failovers.fetch_add(1, Ordering::Relaxed);
        *self.last_failover.lock() = Some(SystemTime::now());
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
        fence.map(|f| f.since.elapsed())
    }

    /// The master recorded for the current generation, if any; no I/O.
    pub(crate) fn cached_master(&self) -> Option<NodeAddr> {
        self.recorded_master().map(|(master, _)| master)
    }

    /// The master recorded for the current generation and its configuration epoch when known;
    /// no I/O. The watcher's view follows it, so that a master found by a lookup, a release or
    /// a connect is what the next announcement is compared with.
    pub(crate) fn recorded_master(&self) -> Option<(NodeAddr, Option<u64>)> {
        let record = self.record.lock();
        record
            .master_of(self.generation.current())
            .map(|master| (master.clone(), record.epoch))
    }

    /// Starts a new generation on the same master, if `master` is the current one and no
    /// fence is up: every connection opened before is dropped (or refuses its next request),
    /// and connects go to `master` without asking the sentinels, which may not name it yet.
    /// After a handover, when Sentinel closed the new master's clients.
    pub(crate) fn renew(&self, master: &NodeAddr, why: &str) {
        let generation = {
            let mut record = self.record.lock();
            if record.fence.is_some() || record.master_of(self.generation.current()) != Some(master)
            {
                return;
            }
            let generation = self.generation.bump();
            record.generation = generation;
            generation
        };
        self.invalidated(generation, why);
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

    /// The sentinels lookups ask, in the order they ask them.
    pub(crate) fn sentinels(&self) -> Vec<NodeAddr> {
        self.sentinels.lock().clone()
    }

    /// Adds a sentinel for lookups (asked last), unless it is known.
    pub(crate) fn add_sentinel(&self, addr: NodeAddr) {
        let mut sentinels = self.sentinels.lock();
        if !sentinels.contains(&addr) {
            sentinels.push(addr);
        }
    }

    /// Forgets a sentinel.
    pub(crate) fn remove_sentinel(&self, addr: &NodeAddr) {
        self.sentinels.lock().retain(|s| s != addr);
    }

    /// Takes the order a lookup left the sentinels in, keeping those learned or forgotten
    /// meanwhile.
    fn keep_order(&self, ordered: &[NodeAddr]) {
        let mut sentinels = self.sentinels.lock();
        let mut merged: Vec<NodeAddr> = ordered
            .iter()
            .filter(|s| sentinels.contains(s))
            .cloned()
            .collect();
        merged.extend(sentinels.iter().filter(|s| !ordered.contains(s)).cloned());
        *sentinels = merged;
    }

    /// Failovers applied so far, and when the last one was.
    pub(crate) fn failovers(&self) -> (u64, Option<SystemTime>) {
        (
            self.failovers.load(Ordering::Relaxed),
            *self.last_failover.lock(),
        )
    }

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

    /// The watcher is gone: it listens to no sentinel, and checkouts trust it no more.
    pub(crate) fn clear_subscriptions(&self) {
        self.subscribed.lock().clear();
        self.live_subscriptions.store(0, Ordering::Release);
        self.liveness.set_live_until(None);
        self.liveness.settle_until(None);
    }

    /// The sentinels the watcher is subscribed to now.
    pub(crate) fn subscribed(&self) -> Vec<NodeAddr> {
        self.subscribed.lock().iter().cloned().collect()
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
    pub(crate) fn checkout_mode(&self) -> crate::CheckoutMode {
        match self.config.validation {
            Validation::Off => crate::CheckoutMode::NoRoundTrip,
            _ if self.adaptive_window().is_some() && self.liveness.trusted(Instant::now()) => {
                crate::CheckoutMode::SkipRecent
            }
            _ => crate::CheckoutMode::RoundTrip,
        }
    }

    /// True while the watcher listens to at least one sentinel. One atomic load.
    pub(crate) fn watcher_listens(&self) -> bool {
        self.live_subscriptions.load(Ordering::Acquire) > 0
    }

    /// Notes that the connection `client_id` on the master `addr` is about to block in a
    /// command; returns the token that [`unblocked`](Core::unblocked) takes, and the flag
    /// the pool sets when it releases it.
    pub(crate) fn blocking(&self, addr: &NodeAddr, client_id: i64) -> (u64, Arc<AtomicBool>) {
        let token = self.next_blocked.fetch_add(1, Ordering::Relaxed);
        let released = Arc::new(AtomicBool::new(false));
        self.blocked.lock().push(Blocked {
            token,
            addr: addr.clone(),
            client_id,
            released: Arc::clone(&released),
        });
        (token, released)
    }

    /// The blocking command of `token` returned.
    pub(crate) fn unblocked(&self, token: u64) {
        self.blocked.lock().retain(|b| b.token != token);
    }

    /// The connections blocked on `master` now, marked released: the fence closed it. Their
    /// client ids, for `CLIENT UNBLOCK`.
    pub(crate) fn release_blocked(&self, master: &NodeAddr) -> Vec<i64> {
        self.blocked
            .lock()
            .iter()
            .filter(|b| b.addr == *master)
            .map(|b| {
                b.released.store(true, Ordering::Release);
                b.client_id
            })
            .collect()
    }

    /// Takes the turn to ask a data node which commands write; false while another connect
    /// has it.
    pub(crate) fn claim_commands(&self) -> bool {
        !self.asking_commands.swap(true, Ordering::AcqRel)
    }

    /// Gives the turn back: the asking failed, another connect may ask.
    pub(crate) fn unclaim_commands(&self) {
        self.asking_commands.store(false, Ordering::Release);
    }

    /// How the data node at `addr` is asked its role: `ROLE`, or `HELLO` once our user
    /// turned out not to be allowed `ROLE` there. One atomic load while every node allows it.
    pub(crate) fn role_probe(&self, addr: &NodeAddr) -> RoleProbe {
        if self.any_role_via_hello.load(Ordering::Acquire)
            && self.roles_via_hello.lock().contains(addr)
        {
            RoleProbe::Hello
        } else {
            RoleProbe::Role
        }
    }

    /// Asks the data node at `addr` its role with `HELLO` from now on.
    pub(crate) fn use_hello_for_roles(&self, addr: &NodeAddr) {
        self.roles_via_hello.lock().insert(addr.clone());
        self.any_role_via_hello.store(true, Ordering::Release);
    }
}

/// `replica a is`, `replicas a, b and c are`, for a message.
fn list(addrs: &[NodeAddr]) -> String {
    let names: Vec<String> = addrs.iter().map(ToString::to_string).collect();
    match names.split_last() {
        Some((last, [])) => format!("replica {last} is"),
        Some((last, rest)) => format!("replicas {} and {last} are", rest.join(", ")),
        None => "no replica is".to_owned(),
    }
}
