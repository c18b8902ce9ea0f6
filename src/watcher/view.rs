//! What the watcher believes about the master, and whether a sentinel's word changes it: a
//! pure state machine, so that every order in which messages can arrive is unit-tested.
//!
//! Sentinels are not ordered with each other: a lagging sentinel may announce an older switch
//! after a newer one, or answer a refresh with a master two failovers old. The configuration
//! epoch orders them: each failover has a larger one. `+switch-master` carries none, so the
//! subscriber asks the announcing sentinel `SENTINEL MASTER` right after the message; an epoch
//! is never invented. A failover leader answers `SENTINEL MASTER` with the *old* address and
//! the *new* epoch until its failover ends; such answers carry the `failover_in_progress` flag
//! and never reach this machine (see `sentinel::parse_master`), so they cannot record the new
//! epoch against the old master and make the real answer look stale.
//!
//! The view never drifts from the pool: the watcher is not the only way the pool moves (a
//! lookup after a failed connect, a fence released back to the old master), so before each
//! decision the coordinator [`sync`](MasterView::sync)s the view with the master the pool
//! records and the epoch it was named in. A move the watcher did not make (a lookup that found
//! a crashed master's successor first) is still announced as a failover, once, when a
//! sentinel names the new master. An announcement whose epoch could not be learned
//! leaves the epoch unknown rather than keeping the old one, which would make the true master
//! at that epoch look stale later; the next answer that carries one teaches it again.

use crate::NodeAddr;

/// The master as the watcher knows it, and the newest configuration epoch seen naming it.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct MasterView {
    master: Option<NodeAddr>,
    epoch: Option<u64>,
    /// The master the pool left by a way the watcher did not announce (a lookup that found
    /// the promoted node first, after a crash): the first sentinel naming the new one
    /// announces the failover, as it would have without the lookup.
    moved_from: Option<NodeAddr>,
}

/// What to do with a sentinel's word.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// It names the master already known: nothing to do (every sentinel announces the same
    /// switch; the first one moved the pool).
    Known,
    /// It names another master in a newer configuration (or one whose epoch could not be
    /// learned): move the pool there. `old` is the master before.
    Switch { old: Option<NodeAddr> },
    /// It names another master in a configuration no newer than the known one: a lagging
    /// sentinel. Ignore it.
    Stale { known_epoch: u64 },
}

impl MasterView {
    /// Starts from the master the pool found at start, epoch unknown.
    pub(crate) fn new(master: Option<NodeAddr>) -> Self {
        MasterView {
            master,
            epoch: None,
            moved_from: None,
        }
    }

    /// The master as the watcher knows it.
    pub(crate) fn master(&self) -> Option<&NodeAddr> {
        self.master.as_ref()
    }

    /// The newest configuration epoch seen naming it, if one was.
    pub(crate) fn epoch(&self) -> Option<u64> {
        self.epoch
    }

    /// Takes the master the pool records now, and the epoch it was named in when known: the
    /// pool moved there by a way the watcher did not see (a lookup, a release), or it is the
    /// master the watcher applied.
    pub(crate) fn sync(&mut self, master: &NodeAddr, epoch: Option<u64>) {
        if self.master.as_ref() == Some(master) {
            self.epoch = self.epoch.max(epoch);
        } else {
            let left = self.master.replace(master.clone());
            // A pool that had no master yet only started.
            if self.moved_from.is_none() {
                self.moved_from = left;
            }
            self.epoch = epoch;
        }
    }

    /// A sentinel names `addr` as master in configuration `epoch` (`None`: it could not be
    /// asked). Updates the view and says what to do.
    pub(crate) fn observe(&mut self, addr: &NodeAddr, epoch: Option<u64>) -> Verdict {
        if self.master.as_ref() == Some(addr) {
            if let Some(epoch) = epoch {
                self.epoch = Some(self.epoch.map_or(epoch, |known| known.max(epoch)));
            }
            return match self.moved_from.take() {
                Some(old) => Verdict::Switch { old: Some(old) },
                None => Verdict::Known,
            };
        }
        if let (Some(epoch), Some(known)) = (epoch, self.epoch)
            && epoch <= known
        {
            return Verdict::Stale { known_epoch: known };
        }
        let old = self.master.replace(addr.clone());
        self.epoch = epoch;
        self.moved_from = None;
        Verdict::Switch { old }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(port: u16) -> NodeAddr {
        NodeAddr::new("10.0.0.1", port)
    }

    #[test]
    fn every_sentinel_announcing_the_same_switch_moves_the_pool_once() {
        let mut view = MasterView::new(Some(node(1)));
        assert_eq!(view.observe(&node(1), Some(4)), Verdict::Known);
        assert_eq!(
            view.observe(&node(2), Some(5)),
            Verdict::Switch { old: Some(node(1)) }
        );
        assert_eq!(view.observe(&node(2), Some(5)), Verdict::Known);
        assert_eq!(view.observe(&node(2), Some(5)), Verdict::Known);
    }

    #[test]
    fn a_lagging_sentinels_older_switch_does_not_move_the_pool_back() {
        let mut view = MasterView::new(Some(node(1)));
        // 1 -> 2 (epoch 5), then 2 -> 3 (epoch 6), then a lagging sentinel's 1 -> 2.
        assert!(matches!(
            view.observe(&node(2), Some(5)),
            Verdict::Switch { .. }
        ));
        assert!(matches!(
            view.observe(&node(3), Some(6)),
            Verdict::Switch { .. }
        ));
        assert_eq!(
            view.observe(&node(2), Some(5)),
            Verdict::Stale { known_epoch: 6 }
        );
        // A refresh still naming the first master, two failovers old.
        assert_eq!(
            view.observe(&node(1), Some(4)),
            Verdict::Stale { known_epoch: 6 }
        );
        assert_eq!(view.observe(&node(3), Some(6)), Verdict::Known);
    }

    #[test]
    fn messages_arriving_out_of_order_end_on_the_newest_master() {
        let mut view = MasterView::new(Some(node(1)));
        // The newest switch (epoch 7) arrives before the one it followed (epoch 6).
        assert!(matches!(
            view.observe(&node(3), Some(7)),
            Verdict::Switch { .. }
        ));
        assert!(matches!(
            view.observe(&node(2), Some(6)),
            Verdict::Stale { .. }
        ));
        assert_eq!(view.observe(&node(3), None), Verdict::Known);
    }

    #[test]
    fn a_newer_answer_is_applied_after_the_same_epoch_was_seen_for_the_current_master() {
        // A refresh records epoch 4 for node 1; the failover to node 2 has epoch 5.
        let mut view = MasterView::new(Some(node(1)));
        assert_eq!(view.observe(&node(1), Some(4)), Verdict::Known);
        assert!(matches!(
            view.observe(&node(2), Some(5)),
            Verdict::Switch { .. }
        ));
    }

    #[test]
    fn an_announcement_whose_epoch_is_unknown_is_applied_without_inventing_one() {
        let mut view = MasterView::new(Some(node(1)));
        assert_eq!(view.observe(&node(1), Some(4)), Verdict::Known);
        assert!(matches!(
            view.observe(&node(2), None),
            Verdict::Switch { .. }
        ));
        assert_eq!(view.epoch(), None, "epoch 4 belongs to node 1, not node 2");
        // The next answer naming node 2 teaches its epoch; then older answers are stale.
        assert_eq!(view.observe(&node(2), Some(5)), Verdict::Known);
        assert_eq!(
            view.observe(&node(1), Some(4)),
            Verdict::Stale { known_epoch: 5 }
        );
    }

    #[test]
    fn an_announcement_of_unknown_epoch_cannot_make_the_true_master_look_stale() {
        // A lagging sentinel announces an old switch to node 2 and cannot be asked its epoch;
        // node 1, master in epoch 4, must still be accepted when a sentinel names it.
        let mut view = MasterView::new(Some(node(1)));
        assert_eq!(view.observe(&node(1), Some(4)), Verdict::Known);
        assert!(matches!(
            view.observe(&node(2), None),
            Verdict::Switch { .. }
        ));
        assert_eq!(
            view.observe(&node(1), Some(4)),
            Verdict::Switch { old: Some(node(2)) }
        );
    }

    #[test]
    fn the_view_follows_the_master_the_pool_found_by_other_ways() {
        // The watcher applied node 2 in epoch 5 (a promotion never committed); a lookup put
        // the pool back on node 1, named in epoch 4. The next failover, to node 2 in epoch 6,
        // is a switch, and node 1's own answers are not stale.
        let mut view = MasterView::new(Some(node(1)));
        assert!(matches!(
            view.observe(&node(2), Some(5)),
            Verdict::Switch { .. }
        ));
        view.sync(&node(1), Some(4));
        // The move back is announced once (the pool did move), then known.
        assert_eq!(
            view.observe(&node(1), Some(4)),
            Verdict::Switch { old: Some(node(2)) }
        );
        assert_eq!(view.observe(&node(1), Some(4)), Verdict::Known);
        assert_eq!(
            view.observe(&node(2), Some(6)),
            Verdict::Switch { old: Some(node(1)) }
        );
        // Syncing with the master it holds only raises the epoch.
        view.sync(&node(2), None);
        assert_eq!(view.epoch(), Some(6));
    }

    #[test]
    fn a_pool_that_started_without_a_master_takes_the_first_answer() {
        let mut view = MasterView::new(None);
        assert_eq!(
            view.observe(&node(1), Some(3)),
            Verdict::Switch { old: None }
        );
        assert_eq!(view.observe(&node(1), Some(3)), Verdict::Known);
    }

    #[test]
    fn a_failover_the_pool_reached_by_a_lookup_is_announced_once() {
        // After a crash a lookup finds the promoted node 2 before any sentinel announces it.
        let mut view = MasterView::new(Some(node(1)));
        view.sync(&node(2), Some(5));
        assert_eq!(
            view.observe(&node(2), Some(5)),
            Verdict::Switch { old: Some(node(1)) }
        );
        assert_eq!(view.observe(&node(2), Some(5)), Verdict::Known);
        // A pool that had no master yet only started: nothing to announce.
        let mut view = MasterView::new(None);
        view.sync(&node(1), Some(3));
        assert_eq!(view.observe(&node(1), Some(3)), Verdict::Known);
    }
}
