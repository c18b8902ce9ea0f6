//! The coordinator's half that follows a failover's steps: raising the fence, resuming on the
//! promoted replica, holding through a stalled handover, and releasing it.

use std::{
    collections::HashMap,
    time::{Duration, Instant, SystemTime},
};

use super::{
    coordinator::{Coordinator, Fenced},
    fence::{self, Decision, Target},
    probe::{self, Probe},
    report::clamp,
};
use crate::{Event, FailoverSource, FenceRelease, FenceResume, NodeAddr, sentinel::message::Step};

impl Coordinator {
    /// A step of a failover of our service, in the attempt of `epoch`.
    pub(super) fn step(
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
    pub(super) fn raise(&mut self, target: Target) {
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
    pub(super) fn promoted(&mut self, addr: &NodeAddr, via: FailoverSource) {
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
    pub(super) fn clients_closed(&mut self, addr: &NodeAddr, how: &str) {
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
    pub(super) fn stalled(&mut self, held: Duration) {
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
    pub(super) fn still_leading(&self, leader: &NodeAddr) -> bool {
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
    pub(super) fn release(
        &mut self,
        master: Option<(NodeAddr, Option<u64>)>,
        reason: FenceRelease,
    ) {
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
}
