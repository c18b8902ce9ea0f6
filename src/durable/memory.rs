//! Durable mode's memory of the replicas each master is known to have.

use std::collections::HashMap;

use parking_lot::Mutex;

use crate::{
    NodeAddr,
    sentinel::{Candidate, PromotionView},
};

/// For each node seen as master, the replicas it is known to have ([`KnownReplicas`]), so that
/// one that leaves is noticed whatever the generation. Held for no I/O.
///
/// `WAIT` counts the replicas connected now. One that is not may still be promoted: in a
/// failover the replica being promoted leaves the old master first, and the others confirm
/// writes it will never have; a replica cut off from the master may be promoted too. So the
/// replicas seen on each master are remembered, and while one is missing the sentinels are
/// asked (every one that answers, cached for a second) whether any of them may promote it;
/// until none may, writes cannot be confirmed.
#[derive(Debug, Default)]
pub(crate) struct Memory(Mutex<HashMap<NodeAddr, KnownReplicas>>);

impl Memory {
    /// Remembers that `master` lists `connected` now. Returns whether the sentinels must be
    /// asked before a write to it can be confirmed.
    pub(crate) fn note(&self, master: &NodeAddr, connected: &[NodeAddr]) -> bool {
        let mut known = self.0.lock();
        match known.get_mut(master) {
            Some(replicas) => replicas.note(connected),
            None => known.entry(master.clone()).or_default().note(connected),
        }
    }

    /// Takes in what the sentinels said (`view`, or why they could not say) about `master`,
    /// which lists `connected`: `None` when a write can be confirmed, else why not, for the
    /// error of the write refused.
    pub(crate) fn learn<E: std::fmt::Display>(
        &self,
        view: Result<PromotionView, E>,
        master: &NodeAddr,
        connected: &[NodeAddr],
    ) -> Option<String> {
        let view = match view {
            Ok(view) => view,
            Err(err) => {
                return Some(format!(
                    "the sentinels could not say which of its replicas they may promote: {err}"
                ));
            }
        };
        let verdict = self
            .0
            .lock()
            .entry(master.clone())
            .or_default()
            .learn(&view, master, connected);
        verdict.map(|why| why.to_string())
    }
}

/// Durable mode's memory of one master's replicas: every replica seen connected to it (in its
/// `ROLE`), and every one the sentinels listed while they took it for the master, by the
/// address the master announces. Kept for the master, whatever the pool's generation: a
/// fence that times out, an invalidation or a failover back to the same node must not make it
/// forget a replica that left (the one a failover is promoting leaves first).
///
/// A write can be confirmed by every replica Sentinel may promote when no sentinel could pick
/// a replica remembered and not connected now ([`may_be_picked`]). One that none would pick
/// now (down, priority 0, cut off too long, ranked below a connected one) is kept, and waited
/// for again once one would; one that no sentinel lists any more is forgotten (they cannot
/// promote what they do not know: a replica removed and the sentinels reset).
#[derive(Debug, Default)]
struct KnownReplicas {
    replicas: Vec<NodeAddr>,
    /// The sentinels were asked while they took this node for the master: a replica that
    /// was not connected when the pool first saw it (syncing, not yet re-pointed after a
    /// failover) is known too.
    seeded: bool,
}

/// Why the replicas connected to a master cannot vouch for a write.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Unconfirmable {
    /// Most sentinels that answered list the master as a replica: they moved on, and the
    /// replica missing may be the new master.
    MovedOn,
    /// These replicas are not connected, and a sentinel may promote them.
    Missing(Vec<NodeAddr>),
}

impl KnownReplicas {
    /// Remembers `connected` (the master's `ROLE` now). Returns whether the sentinels must be
    /// asked before a write can be confirmed: they never were, or a replica remembered is
    /// missing.
    fn note(&mut self, connected: &[NodeAddr]) -> bool {
        for addr in connected {
            if !self.replicas.contains(addr) {
                self.replicas.push(addr.clone());
            }
        }
        !self.seeded || self.replicas.iter().any(|r| !connected.contains(r))
    }

    /// Takes in what the sentinels say about the master `master` (as this client reaches
    /// it), which lists `connected`; `None` when the write can be confirmed, else why not.
    fn learn(
        &mut self,
        view: &PromotionView,
        master: &NodeAddr,
        connected: &[NodeAddr],
    ) -> Option<Unconfirmable> {
        let (answered, as_replica) = view.listing_as_replica(master);
        if as_replica * 2 > answered {
            return Some(Unconfirmable::MovedOn);
        }
        // Only the sentinels that take this node for the master list its replicas; the
        // leader of a failover to this node lists it too, selected: it is not one of them.
        let lists: Vec<Vec<Candidate>> = view
            .sentinels
            .iter()
            .filter(|list| !list.iter().any(|c| c.reached_as == *master && !c.selected))
            .map(|list| {
                list.iter()
                    .filter(|c| c.reached_as != *master)
                    .cloned()
                    .collect()
            })
            .collect();
        self.seeded = true;
        let listed = |r: &NodeAddr| lists.iter().any(|list| list.iter().any(|c| c.addr == *r));
        self.replicas.retain(|r| connected.contains(r) || listed(r));
        for candidate in lists.iter().flat_map(|list| list.iter()) {
            if !self.replicas.contains(&candidate.addr) {
                self.replicas.push(candidate.addr.clone());
            }
        }
        let waited: Vec<NodeAddr> = self
            .replicas
            .iter()
            .filter(|r| {
                !connected.contains(r) && lists.iter().any(|list| may_be_picked(list, r, connected))
            })
            .cloned()
            .collect();
        (!waited.is_empty()).then_some(Unconfirmable::Missing(waited))
    }
}

/// Whether the sentinel that listed `list` may promote the replica `missing` although the
/// replicas `connected` have the write. Sentinel ranks the replicas it may promote by
/// `replica-priority` (lower first), then by the replication offset it last read (higher
/// first). A replica it never saw replicating this master (offset 0: an old master not yet
/// re-pointed after a failover, a replica still in its first sync) ranks below any connected
/// one of an equal or better priority that it did see replicating, and stays below it until
/// it replicates, which makes it connected: that one cannot be picked. Any other promotable
/// replica may be (its offset was read before it left, or the leader already selected it).
fn may_be_picked(list: &[Candidate], missing: &NodeAddr, connected: &[NodeAddr]) -> bool {
    let Some(x) = list.iter().find(|c| c.addr == *missing) else {
        return false;
    };
    if !x.promotable {
        return false;
    }
    if x.selected || x.offset > 0 {
        return true;
    }
    !list.iter().any(|c| {
        connected.contains(&c.addr) && c.promotable && c.offset > 0 && c.priority <= x.priority
    })
}
impl std::fmt::Display for Unconfirmable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Unconfirmable::MovedOn => {
                f.write_str("the sentinels list it as a replica now: a failover moved the master")
            }
            Unconfirmable::Missing(waited) => write!(
                f,
                "{} not connected to it, and a sentinel may promote {} (a failover may be \
                 promoting it now, or it is still syncing)",
                list(waited),
                if waited.len() == 1 { "it" } else { "them" }
            ),
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn addrs(ports: &[u16]) -> Vec<NodeAddr> {
        ports
            .iter()
            .map(|&p| NodeAddr::new("10.0.0.2", p))
            .collect()
    }

    /// A replica as a sentinel lists it: port, promotable, priority, offset.
    fn candidate(port: u16, promotable: bool, priority: u64, offset: u64) -> Candidate {
        let addr = NodeAddr::new("10.0.0.2", port);
        Candidate {
            reached_as: addr.clone(),
            addr,
            promotable,
            priority,
            offset,
            selected: false,
        }
    }

    /// Three sentinels that list the same replicas.
    fn view(list: &[Candidate]) -> PromotionView {
        PromotionView {
            sentinels: vec![list.to_vec(); 3],
        }
    }

    fn missing(ports: &[u16]) -> Option<Unconfirmable> {
        Some(Unconfirmable::Missing(addrs(ports)))
    }

    #[test]
    fn a_replica_that_left_is_waited_for_while_a_sentinel_may_promote_it() {
        let master = NodeAddr::new("10.0.0.1", 6379);
        let healthy = |port| candidate(port, true, 100, 500);
        let mut known = KnownReplicas::default();
        // First sight of the master: the sentinels are asked, and add the replica that was
        // syncing (3), which no ROLE listed.
        assert!(known.note(&addrs(&[1, 2])));
        let all = view(&[healthy(1), healthy(2), healthy(3)]);
        assert_eq!(known.learn(&all, &master, &addrs(&[1, 2])), missing(&[3]));
        // All three connected: nothing to ask.
        assert!(!known.note(&addrs(&[1, 2, 3])));
        // 1 leaves (a failover promotes it first): waited for, however often asked.
        assert!(known.note(&addrs(&[2, 3])));
        for _ in 0..3 {
            assert_eq!(known.learn(&all, &master, &addrs(&[2, 3])), missing(&[1]));
        }
        // Flagged down: not waited for, but remembered, and waited for again once promotable.
        let down = view(&[candidate(1, false, 100, 500), healthy(2), healthy(3)]);
        assert_eq!(known.learn(&down, &master, &addrs(&[2, 3])), None);
        assert!(known.note(&addrs(&[2, 3])), "still remembered");
        assert_eq!(known.learn(&all, &master, &addrs(&[2, 3])), missing(&[1]));
        // One sentinel of three would still promote it: waited for.
        let mut split = down.clone();
        split.sentinels[2] = all.sentinels[0].clone();
        assert_eq!(known.learn(&split, &master, &addrs(&[2, 3])), missing(&[1]));
        // No sentinel lists it any more: forgotten.
        let gone = view(&[healthy(2), healthy(3)]);
        assert_eq!(known.learn(&gone, &master, &addrs(&[2, 3])), None);
        assert!(!known.note(&addrs(&[2, 3])));
    }

    #[test]
    fn a_replica_sentinel_ranks_below_a_connected_one_is_not_waited_for() {
        let master = NodeAddr::new("10.0.0.1", 6379);
        let mut known = KnownReplicas::default();
        known.note(&addrs(&[2]));
        // 1 is the old master, not yet re-pointed: never seen replicating (offset 0).
        let old_master = view(&[candidate(1, true, 100, 0), candidate(2, true, 100, 500)]);
        assert_eq!(known.learn(&old_master, &master, &addrs(&[2])), None);
        // ... unless it has a better priority than every connected replica.
        let preferred = view(&[candidate(1, true, 10, 0), candidate(2, true, 100, 500)]);
        assert_eq!(
            known.learn(&preferred, &master, &addrs(&[2])),
            missing(&[1])
        );
        // ... or no connected replica was seen replicating either.
        let unread = view(&[candidate(1, true, 100, 0), candidate(2, true, 100, 0)]);
        assert_eq!(known.learn(&unread, &master, &addrs(&[2])), missing(&[1]));
        // A replica whose offset was read before it left ranks on that offset: waited for.
        let left = view(&[candidate(1, true, 100, 900), candidate(2, true, 100, 500)]);
        assert_eq!(known.learn(&left, &master, &addrs(&[2])), missing(&[1]));
    }

    #[test]
    fn sentinels_that_moved_on_refuse_and_a_minority_is_not_heard_on_replicas() {
        let master = NodeAddr::new("10.0.0.1", 6379);
        let mut known = KnownReplicas::default();
        known.note(&addrs(&[2]));
        // They committed a failover to 1: they list this master among the replicas of 1.
        let mut moved = view(&[candidate(2, true, 100, 500)]);
        for list in &mut moved.sentinels {
            list.push(Candidate {
                reached_as: master.clone(),
                ..candidate(9, true, 100, 0)
            });
        }
        assert_eq!(
            known.learn(&moved, &master, &addrs(&[2])),
            Some(Unconfirmable::MovedOn)
        );
        // One sentinel of three behind: the others speak for the replicas.
        let mut behind = view(&[candidate(2, true, 100, 500)]);
        behind.sentinels[0] = moved.sentinels[0].clone();
        behind.sentinels[0].push(candidate(5, true, 100, 500));
        assert_eq!(known.learn(&behind, &master, &addrs(&[2])), None);
        // The leader lists the replica it promotes as selected: not a sign of moving on.
        let mut leading = view(&[candidate(2, true, 100, 500)]);
        leading.sentinels[0].push(Candidate {
            reached_as: master.clone(),
            selected: true,
            ..candidate(9, true, 100, 500)
        });
        assert_eq!(known.learn(&leading, &master, &addrs(&[2])), None);
    }
}
