//! Following a failover's steps: which sentinel's attempt a step belongs to, and whether it
//! puts the fence up, takes it down, or changes nothing. Pure, so that every order in which
//! steps can arrive is unit-tested; the coordinator does what it decides.
//!
//! # Which step raises the fence
//!
//! The first step that names the replica to promote: `+selected-slave`, published with
//! `+failover-state-send-slaveof-noone` one timer tick before the leader sends `REPLICAOF NO
//! ONE`: 53 to 100 ms, since Sentinel draws its timer's rate between 10 and 19 Hz at every
//! tick (measured 80 to 100 ms on an idle machine, 57 to 102 ms on a starved one). Until that command runs, the old master is the only master
//! and every write it acknowledges reaches the replica through replication; after it, every
//! write it acknowledges is lost. Raising the fence at `+selected-slave` closes the window with
//! a tick to spare, if the pool hears the step and acts within that tick: on a machine so
//! starved that it does not, writes in between are lost (BENCHMARKS.md, durable mode on a
//! starved machine); durable mode does not depend on this margin. Earlier steps (`+try-failover`, `+elected-leader`) would hold writes for
//! failovers that then find no replica to promote, and cannot say which node to watch.
//!
//! # When it comes down
//!
//! Not at the promotion, by default: a promotion is not a commitment. The leader sets its new
//! configuration epoch when it sees the promotion (its `INFO` polling, up to a second after
//! `REPLICAOF NO ONE`) and then publishes hello messages that carry it to the other sentinels,
//! which announce `+switch-master`. A leader that dies between the promotion and that moment
//! (`SENTINEL SIMULATE-FAILURE CRASH-AFTER-PROMOTION` does exactly that) leaves them naming the
//! old master, and they later convert the promoted replica back, wiping what it accepted. So
//! the fence resumes on the first sentinel that names the promoted replica, and treats the loss
//! of its leader's subscription before then as the end of the attempt.
//!
//! # Epochs
//!
//! Steps carry no epoch. A sentinel publishes `+new-epoch <epoch>` right before its
//! `+try-failover`, and its attempt runs in that epoch, so each subscriber pairs the two
//! ([`Attempts`]) and reports every later step of the attempt with its epoch. A step whose
//! epoch is not newer than the configuration the watcher knows is stale (a lagging sentinel,
//! a failover already applied) and never raises a fence; nor does a step whose epoch could
//! not be learned (the subscriber joined mid-failover): for those, the subscriber's refresh
//! reads the leader's state ([`in_progress`]).
//! An abort lowers the fence only when it comes from the sentinel whose attempt raised it, in
//! the same epoch: losing candidates abort too (`-failover-abort-not-elected`).

use crate::{
    NodeAddr,
    sentinel::message::{AbortReason, SentinelMessage, Step},
};

use super::view::MasterView;

/// Pairs one sentinel's steps with the epoch of its attempt; one per subscription, fed every
/// message in the order the sentinel published them.
#[derive(Debug, Default)]
pub(super) struct Attempts {
    /// The sentinel's current epoch, from its last `+new-epoch`.
    current: Option<u64>,
    /// The epoch of its attempt on our service, from the `+new-epoch` before its
    /// `+try-failover`.
    attempt: Option<u64>,
}

impl Attempts {
    /// The epoch of the attempt `message` belongs to, when it is a step of a failover of
    /// `service` whose start this subscription saw.
    pub(super) fn epoch_of(&mut self, message: &SentinelMessage, service: &str) -> Option<u64> {
        match message {
            SentinelMessage::NewEpoch { epoch } => {
                self.current = Some(*epoch);
                None
            }
            SentinelMessage::Step {
                service: of, step, ..
            } if of == service => {
                if *step == Step::TryFailover {
                    self.attempt = self.current;
                }
                let epoch = self.attempt;
                if matches!(step, Step::End | Step::Abort(_)) {
                    self.attempt = None;
                }
                epoch
            }
            _ => None,
        }
    }
}

/// The failover a fence follows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Target {
    /// The sentinel whose attempt it is.
    pub(super) leader: NodeAddr,
    /// The attempt's epoch; `None` for a failover found under way by a subscriber that missed
    /// its start (see [`in_progress`]).
    pub(super) epoch: Option<u64>,
    /// The replica being promoted.
    pub(super) candidate: NodeAddr,
}

/// What a step means for the pool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Decision {
    /// Nothing to do.
    None,
    /// A promotion of this replica is under way: put the fence up (or move it to this newer
    /// attempt).
    Raise(Target),
    /// The fenced attempt was given up: back to the old master.
    Release(AbortReason),
    /// Not acted on, and why (for the log).
    Ignored(&'static str),
}

/// What the step `step` (about `replica`, in the attempt of `epoch`) published by `from`
/// means, given what the watcher knows and the fence it holds.
pub(super) fn decide(
    view: &MasterView,
    fence: Option<&Target>,
    from: &NodeAddr,
    step: Step,
    replica: Option<&NodeAddr>,
    epoch: Option<u64>,
) -> Decision {
    // The fenced attempt's own steps; a fence found under way has no epoch to compare, and
    // its leader runs one attempt at a time.
    let ours = fence.is_some_and(|f| f.leader == *from && (f.epoch.is_none() || f.epoch == epoch));
    if let (Step::Abort(reason), true) = (step, ours) {
        return Decision::Release(reason);
    }
    let Some(epoch) = epoch else {
        return Decision::Ignored("its attempt's epoch is unknown");
    };
    if view.epoch().is_some_and(|known| epoch <= known) {
        return Decision::Ignored("its epoch is not newer than the known configuration");
    }
    match (step, replica) {
        (step, Some(replica)) if step.promotes() => {
            if ours {
                Decision::None
            } else if fence.is_some_and(|f| f.epoch.is_some_and(|e| e >= epoch)) {
                Decision::Ignored("a fence follows an attempt at least as new")
            } else if view.master() == Some(replica) {
                Decision::Ignored("it promotes the known master")
            } else {
                Decision::Raise(Target {
                    leader: from.clone(),
                    epoch: Some(epoch),
                    candidate: replica.clone(),
                })
            }
        }
        _ => Decision::None,
    }
}

/// What a subscriber that (re)joined mid-failover learned from its sentinel's state: `from`
/// leads a failover promoting `candidate`, in an epoch it missed. Raises the fence unless the
/// pool is there already, a fence follows that promotion, or `done` (the last attempt whose
/// fence came down without a new master) was this one: a failover slower than
/// `fence_timeout` is not fenced again at every refresh.
pub(super) fn in_progress(
    view: &MasterView,
    fence: Option<&Target>,
    done: Option<&Target>,
    from: &NodeAddr,
    candidate: &NodeAddr,
) -> Decision {
    let same = |t: &Target| t.leader == *from && t.candidate == *candidate;
    if view.master() == Some(candidate) {
        Decision::Ignored("it promotes the known master")
    } else if fence.is_some_and(same) {
        Decision::None
    } else if done.is_some_and(same) {
        Decision::Ignored("its fence came down already")
    } else {
        Decision::Raise(Target {
            leader: from.clone(),
            epoch: None,
            candidate: candidate.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(port: u16) -> NodeAddr {
        NodeAddr::new("10.0.0.1", port)
    }

    fn step(channel: &str, payload: &str) -> SentinelMessage {
        SentinelMessage::parse(channel, payload).expect("a valid step")
    }

    const SELECTED: &str = "slave 10.0.0.1:2 10.0.0.1 2 @ mymaster 10.0.0.1 1";

    #[test]
    fn a_step_gets_the_epoch_published_before_its_attempt() {
        let mut attempts = Attempts::default();
        let service = "mymaster";
        assert_eq!(
            attempts.epoch_of(&SentinelMessage::NewEpoch { epoch: 7 }, service),
            None
        );
        let try_failover = step("+try-failover", "master mymaster 10.0.0.1 1");
        assert_eq!(attempts.epoch_of(&try_failover, service), Some(7));
        // A vote in a later epoch does not change the attempt's.
        attempts.epoch_of(&SentinelMessage::NewEpoch { epoch: 8 }, service);
        assert_eq!(
            attempts.epoch_of(&step("+selected-slave", SELECTED), service),
            Some(7)
        );
        assert_eq!(
            attempts.epoch_of(
                &step("+failover-end", "master mymaster 10.0.0.1 1"),
                service
            ),
            Some(7)
        );
        // After the end, a step with no new attempt has no epoch.
        assert_eq!(
            attempts.epoch_of(&step("+selected-slave", SELECTED), service),
            None
        );
    }

    #[test]
    fn another_services_attempt_does_not_lend_its_epoch() {
        let mut attempts = Attempts::default();
        attempts.epoch_of(&SentinelMessage::NewEpoch { epoch: 3 }, "mymaster");
        let other = step("+try-failover", "master other 10.0.0.9 9");
        assert_eq!(attempts.epoch_of(&other, "mymaster"), None);
        assert_eq!(
            attempts.epoch_of(&step("+selected-slave", SELECTED), "mymaster"),
            None,
            "mymaster's attempt never started on this subscription"
        );
    }

    fn view(master: u16, epoch: u64) -> MasterView {
        let mut view = MasterView::new(Some(node(master)));
        view.observe(&node(master), Some(epoch));
        view
    }

    #[test]
    fn a_selected_replica_in_a_newer_epoch_raises_the_fence() {
        let decision = decide(
            &view(1, 4),
            None,
            &node(26379),
            Step::SelectedReplica,
            Some(&node(2)),
            Some(5),
        );
        assert_eq!(
            decision,
            Decision::Raise(Target {
                leader: node(26379),
                epoch: Some(5),
                candidate: node(2)
            })
        );
    }

    #[test]
    fn stale_or_unknown_epochs_never_raise_the_fence() {
        let view = view(1, 5);
        for epoch in [None, Some(4), Some(5)] {
            let decision = decide(
                &view,
                None,
                &node(26379),
                Step::SelectedReplica,
                Some(&node(2)),
                epoch,
            );
            assert!(matches!(decision, Decision::Ignored(_)), "{epoch:?}");
        }
    }

    #[test]
    fn only_the_fenced_attempts_abort_releases_it() {
        let target = Target {
            leader: node(26379),
            epoch: Some(5),
            candidate: node(2),
        };
        let abort = Step::Abort(AbortReason::NotElected);
        let view = view(1, 4);
        // A losing candidate's abort, even in the same epoch.
        assert_eq!(
            decide(&view, Some(&target), &node(26380), abort, None, Some(5)),
            Decision::None
        );
        // The leader's abort of an older attempt.
        assert!(matches!(
            decide(&view, Some(&target), &node(26379), abort, None, Some(4)),
            Decision::Ignored(_)
        ));
        let timeout = Step::Abort(AbortReason::ReplicaTimeout);
        assert_eq!(
            decide(&view, Some(&target), &node(26379), timeout, None, Some(5)),
            Decision::Release(AbortReason::ReplicaTimeout)
        );
    }

    #[test]
    fn later_steps_of_the_fenced_attempt_change_nothing_and_newer_attempts_take_over() {
        let target = Target {
            leader: node(26379),
            epoch: Some(5),
            candidate: node(2),
        };
        let view = view(1, 4);
        let promoted = Step::PromotedReplica;
        assert_eq!(
            decide(
                &view,
                Some(&target),
                &node(26379),
                promoted,
                Some(&node(2)),
                Some(5)
            ),
            Decision::None
        );
        assert!(matches!(
            decide(
                &view,
                Some(&target),
                &node(26380),
                promoted,
                Some(&node(3)),
                Some(5)
            ),
            Decision::Ignored(_)
        ));
        assert!(matches!(
            decide(
                &view,
                Some(&target),
                &node(26380),
                promoted,
                Some(&node(3)),
                Some(6)
            ),
            Decision::Raise(Target { epoch: Some(6), .. })
        ));
    }

    #[test]
    fn a_step_promoting_the_known_master_is_ignored() {
        let decision = decide(
            &view(1, 4),
            None,
            &node(26379),
            Step::WaitPromotion,
            Some(&node(1)),
            Some(5),
        );
        assert!(matches!(decision, Decision::Ignored(_)));
    }

    #[test]
    fn a_failover_found_under_way_raises_the_fence_once() {
        let view = view(1, 4);
        let leader = node(26379);
        let Decision::Raise(target) = in_progress(&view, None, None, &leader, &node(2)) else {
            panic!("a promotion under way raises the fence");
        };
        assert_eq!(target.epoch, None);
        // Found again at the next refresh: nothing new, while fenced or once released.
        assert_eq!(
            in_progress(&view, Some(&target), None, &leader, &node(2)),
            Decision::None
        );
        assert!(matches!(
            in_progress(&view, None, Some(&target), &leader, &node(2)),
            Decision::Ignored(_)
        ));
        // Promoting the master the pool is on already (the failover was applied).
        assert!(matches!(
            in_progress(&view, None, None, &leader, &node(1)),
            Decision::Ignored(_)
        ));
        // Its leader's abort releases it, though the subscriber knows no epoch.
        let abort = Step::Abort(AbortReason::ReplicaTimeout);
        assert_eq!(
            decide(&view, Some(&target), &leader, abort, None, None),
            Decision::Release(AbortReason::ReplicaTimeout)
        );
        assert_eq!(
            decide(&view, Some(&target), &node(26380), abort, None, None),
            Decision::Ignored("its attempt's epoch is unknown")
        );
    }
}
