//! The record: the master of one generation, and the fence. A pure type (no I/O, no lock of
//! its own): [`Shared`](super::Shared) holds it under a mutex and calls one transition at a
//! time.
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
//! nothing. Only the watcher lowers it: on the promoted master ([`Record::switch_master`]),
//! back to the old one, or to asking the sentinels ([`Record::lower_fence`]).
//!
//! The record also keeps the configuration epoch its master was named in, when known, which
//! the watcher's view follows whatever moved the pool.

use std::time::{Duration, Instant};

use super::Generation;
use crate::{NodeAddr, config::limits::LONGEST_FENCE};

/// The master of one generation, why it is suspect, and the fence.
#[derive(Debug, Default)]
pub(crate) struct Record {
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
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Found {
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

/// What a lookup's answer did to the record.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Settled {
    /// Connects use this generation and master; the record kept its generation.
    Kept(u64, NodeAddr),
    /// The master moved from `old`: a new generation holds the answer.
    Moved { generation: u64, old: NodeAddr },
    /// A fence went up during the lookup: its answer names the master being replaced.
    Fenced,
}

impl Record {
    /// What a connect finds at `now`, in the generation `generation` holds now.
    pub(crate) fn found(&self, generation: &Generation, now: Instant) -> Found {
        let current = generation.current();
        if let Some(until) = self.fence_end(now) {
            return Found::Fenced(current, until);
        }
        match self.usable(current) {
            Some(master) => Found::Master(current, master.clone()),
            None => Found::Ask,
        }
    }

    /// The master of `generation` a lookup should avoid: one that answered it is not master.
    pub(crate) fn avoid(&self, generation: u64) -> Option<NodeAddr> {
        self.master_of(generation)
            .filter(|_| self.suspect == Some(Suspicion::NotMaster))
            .cloned()
    }

    /// The master recorded for `generation` and its configuration epoch when known.
    pub(crate) fn master(&self, generation: u64) -> Option<(NodeAddr, Option<u64>)> {
        self.master_of(generation)
            .map(|master| (master.clone(), self.epoch))
    }

    /// Records what a lookup that started in generation `started` found, `found` named master
    /// in `epoch`.
    pub(crate) fn settle(
        &mut self,
        generation: &Generation,
        started: u64,
        (found, epoch): (NodeAddr, u64),
        now: Instant,
    ) -> Settled {
        if self.fence_end(now).is_some() {
            return Settled::Fenced;
        }
        let current = generation.current();
        if current != started {
            // A generation started during the lookup (the watcher, an invalidation). Its
            // master, if recorded, is newer than this answer.
            if let Some(master) = self.usable(current) {
                return Settled::Kept(current, master.clone());
            }
        }
        let old = self.master_of(current).cloned();
        self.suspect = None;
        match old {
            Some(old) if old == found => {
                self.epoch = self.epoch.max(Some(epoch));
                Settled::Kept(current, found)
            }
            Some(old) => {
                // The master moved: a generation holds one master, so start a new one.
                let new = generation.bump();
                self.generation = new;
                self.master = Some(found);
                self.epoch = Some(epoch);
                Settled::Moved {
                    generation: new,
                    old,
                }
            }
            None => {
                self.generation = current;
                self.master = Some(found.clone());
                self.epoch = Some(epoch);
                Settled::Kept(current, found)
            }
        }
    }

    /// Puts the fence up until `until`: a new generation with no master. Returns it.
    pub(crate) fn raise_fence(
        &mut self,
        generation: &Generation,
        now: Instant,
        until: Instant,
    ) -> u64 {
        let since = self.fence.map_or(now, |f| f.since);
        let new = generation.bump();
        *self = Record {
            generation: new,
            fence: Some(Fence {
                since,
                until,
                stalled: false,
            }),
            ..Record::default()
        };
        new
    }

    /// The master the fence closed holds writes for a handover that does not complete: the
    /// fence holds until `until`, at most [`LONGEST_FENCE`] after it went up. Returns its end
    /// now, or `None` when no fence is up.
    pub(crate) fn stall_fence(&mut self, until: Instant) -> Option<Instant> {
        let fence = self.fence.as_mut()?;
        fence.until = fence.until.max(until.min(fence.since + LONGEST_FENCE));
        fence.stalled = true;
        Some(fence.until)
    }

    /// Lowers the fence without a new master: back to `master` in its epoch, or to asking the
    /// sentinels (`None`). Returns how long the fence was up at `now` and the generation
    /// connects use, or `None` when no fence was up.
    pub(crate) fn lower_fence(
        &mut self,
        generation: &Generation,
        master: Option<(&NodeAddr, Option<u64>)>,
        now: Instant,
    ) -> Option<(Duration, u64)> {
        let fence = self.fence.take()?;
        let held = now.saturating_duration_since(fence.since);
        let current = generation.current();
        let kept = self.master_of(current);
        if kept.is_some() && (master.is_none() || master.map(|(m, _)| m) == kept) {
            // The fence had timed out and connects found the master by asking: keep it.
            return Some((held, current));
        }
        let new = generation.bump();
        self.generation = new;
        self.master = master.map(|(m, _)| m.clone());
        self.epoch = master.and_then(|(_, e)| e);
        self.suspect = None;
        Some((held, new))
    }

    /// Whether a fence holds connects at `now` (`Some`), and whether the master it closed
    /// holds writes for a handover that does not complete (`Some(true)`).
    pub(crate) fn fenced(&self, now: Instant) -> Option<bool> {
        self.fence_end(now)
            .map(|_| self.fence.is_some_and(|f| f.stalled))
    }

    /// Whether the fence, up or timed out, is for a stalled handover.
    pub(crate) fn stalled(&self) -> bool {
        self.fence.is_some_and(|f| f.stalled)
    }

    /// Notes that the master recorded for `generation` failed a connect.
    pub(crate) fn suspect(&mut self, generation: u64, master: &NodeAddr, why: Suspicion) {
        if self.master_of(generation) == Some(master) {
            self.suspect = Some(why);
        }
    }

    /// Applies a failover to `new` named in `epoch`: a new generation, unless the current one's
    /// master already is `new`. Lowers the fence. Returns the generation and, when a fence
    /// was up, how long it held at `now`.
    pub(crate) fn switch_master(
        &mut self,
        generation: &Generation,
        (new, epoch): (&NodeAddr, Option<u64>),
        now: Instant,
    ) -> (u64, Option<Duration>) {
        let current = generation.current();
        let held = self
            .fence
            .take()
            .map(|f| now.saturating_duration_since(f.since));
        if self.master_of(current) == Some(new) {
            self.suspect = None;
            self.epoch = self.epoch.max(epoch);
            return (current, held);
        }
        let next = generation.bump();
        *self = Record {
            generation: next,
            master: Some(new.clone()),
            epoch,
            ..Record::default()
        };
        (next, held)
    }

    /// A new generation on the same master, if `master` is the current one and no fence is
    /// up; returns it.
    pub(crate) fn renew(&mut self, generation: &Generation, master: &NodeAddr) -> Option<u64> {
        if self.fence.is_some() || self.master_of(generation.current()) != Some(master) {
            return None;
        }
        self.generation = generation.bump();
        Some(self.generation)
    }

    /// The fence's end, while it holds connects.
    fn fence_end(&self, now: Instant) -> Option<Instant> {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn node(port: u16) -> NodeAddr {
        NodeAddr::new("127.0.0.1", port)
    }

    /// A record whose lookup found `master` in epoch 1, in generation 0.
    fn settled(generation: &Generation, master: NodeAddr) -> Record {
        let mut record = Record::default();
        let settled = record.settle(generation, 0, (master.clone(), 1), Instant::now());
        assert_eq!(settled, Settled::Kept(0, master));
        record
    }

    #[test]
    fn the_same_answer_again_starts_no_generation() {
        let generation = Generation::default();
        let mut record = settled(&generation, node(1));
        for _ in 0..3 {
            let settled = record.settle(&generation, 0, (node(1), 2), Instant::now());
            assert_eq!(settled, Settled::Kept(0, node(1)));
        }
        assert_eq!(generation.current(), 0);
        assert_eq!(record.master(0), Some((node(1), Some(2))));
    }

    #[test]
    fn another_master_starts_one_generation() {
        let generation = Generation::default();
        let mut record = settled(&generation, node(1));
        let settled = record.settle(&generation, 0, (node(2), 2), Instant::now());
        assert_eq!(
            settled,
            Settled::Moved {
                generation: 1,
                old: node(1)
            }
        );
        assert_eq!(record.master(0), None);
        assert_eq!(record.master(1), Some((node(2), Some(2))));
        // A lookup that started before the move and still names the old master loses.
        let late = record.settle(&generation, 0, (node(1), 1), Instant::now());
        assert_eq!(late, Settled::Kept(1, node(2)));
        assert_eq!(generation.current(), 1);
    }

    #[test]
    fn a_fence_drops_the_answer_of_a_lookup_in_flight_and_holds_connects() {
        let generation = Generation::default();
        let mut record = settled(&generation, node(1));
        let now = Instant::now();
        let until = now + Duration::from_secs(5);
        assert_eq!(record.raise_fence(&generation, now, until), 1);
        assert_eq!(record.found(&generation, now), Found::Fenced(1, until));
        assert_eq!(
            record.settle(&generation, 0, (node(1), 1), now),
            Settled::Fenced
        );
        assert_eq!(record.fenced(now), Some(false));
        // Past its end, connects ask the sentinels.
        assert_eq!(record.found(&generation, until), Found::Ask);
        assert_eq!(record.fenced(until), None);
    }

    #[test]
    fn a_fence_lowered_back_on_the_old_master_starts_a_generation_on_it() {
        let generation = Generation::default();
        let mut record = settled(&generation, node(1));
        let now = Instant::now();
        record.raise_fence(&generation, now, now + Duration::from_secs(5));
        let later = now + Duration::from_millis(300);
        let lowered = record.lower_fence(&generation, Some((&node(1), Some(1))), later);
        assert_eq!(lowered, Some((Duration::from_millis(300), 2)));
        assert_eq!(record.found(&generation, later), Found::Master(2, node(1)));
        assert_eq!(record.lower_fence(&generation, None, later), None);
    }

    #[test]
    fn a_timed_out_fence_keeps_the_master_connects_found_by_asking() {
        let generation = Generation::default();
        let mut record = Record::default();
        let now = Instant::now();
        let until = now + Duration::from_secs(1);
        record.raise_fence(&generation, now, until);
        assert_eq!(
            record.settle(&generation, 1, (node(2), 2), until),
            Settled::Kept(1, node(2))
        );
        assert_eq!(
            record.lower_fence(&generation, None, until).map(|l| l.1),
            Some(1)
        );
        assert_eq!(generation.current(), 1);
    }

    #[test]
    fn a_switch_to_the_master_already_recorded_starts_no_generation() {
        let generation = Generation::default();
        let mut record = settled(&generation, node(1));
        let now = Instant::now();
        assert_eq!(
            record.switch_master(&generation, (&node(1), Some(3)), now),
            (0, None)
        );
        assert_eq!(record.master(0), Some((node(1), Some(3))));
        record.raise_fence(&generation, now, now + Duration::from_secs(5));
        let later = now + Duration::from_millis(40);
        let switched = record.switch_master(&generation, (&node(2), Some(4)), later);
        assert_eq!(switched, (2, Some(Duration::from_millis(40))));
        assert_eq!(record.found(&generation, later), Found::Master(2, node(2)));
    }

    #[test]
    fn a_stalled_fence_is_extended_at_most_to_the_longest_fence() {
        let generation = Generation::default();
        let mut record = Record::default();
        assert_eq!(record.stall_fence(Instant::now()), None);
        let now = Instant::now();
        record.raise_fence(&generation, now, now + Duration::from_secs(1));
        let end = record.stall_fence(now + Duration::from_secs(600));
        assert_eq!(end, Some(now + LONGEST_FENCE));
        assert_eq!(record.fenced(now), Some(true));
        assert!(record.stalled());
        // A second raise during the same failover keeps when the fence first went up.
        record.raise_fence(
            &generation,
            now + Duration::from_secs(2),
            now + Duration::from_secs(3),
        );
        let end = record.stall_fence(now + Duration::from_secs(600));
        assert_eq!(end, Some(now + LONGEST_FENCE));
    }

    #[test]
    fn suspicion_makes_connects_ask_and_names_what_to_avoid() {
        let generation = Generation::default();
        let mut record = settled(&generation, node(1));
        record.suspect(5, &node(1), Suspicion::NotMaster);
        assert_eq!(
            record.found(&generation, Instant::now()),
            Found::Master(0, node(1))
        );
        record.suspect(0, &node(2), Suspicion::NotMaster);
        assert_eq!(record.avoid(0), None);
        record.suspect(0, &node(1), Suspicion::Unreachable);
        assert_eq!(record.found(&generation, Instant::now()), Found::Ask);
        assert_eq!(record.avoid(0), None);
        record.suspect(0, &node(1), Suspicion::NotMaster);
        assert_eq!(record.avoid(0), Some(node(1)));
        // The same answer again clears the suspicion without a generation.
        record.settle(&generation, 0, (node(1), 1), Instant::now());
        assert_eq!(
            record.found(&generation, Instant::now()),
            Found::Master(0, node(1))
        );
    }

    #[test]
    fn renewal_needs_the_current_master_and_no_fence() {
        let generation = Generation::default();
        let mut record = settled(&generation, node(1));
        assert_eq!(record.renew(&generation, &node(2)), None);
        assert_eq!(record.renew(&generation, &node(1)), Some(1));
        assert_eq!(
            record.found(&generation, Instant::now()),
            Found::Master(1, node(1))
        );
        let now = Instant::now();
        record.raise_fence(&generation, now, now + Duration::from_secs(5));
        assert_eq!(record.renew(&generation, &node(1)), None);
    }
}
