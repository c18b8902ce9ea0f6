//! The coordinator's half that keeps the set of sentinels: learning the ones the others
//! announce, up to the bound, and forgetting the ones long unreachable (or all unreachable
//! ones, when a sentinel resets the service).

use std::{
    collections::HashSet,
    time::{Duration, Instant},
};

use super::coordinator::Coordinator;
use crate::{Event, NodeAddr};

/// A learned (not configured) sentinel unreachable this long is forgotten.
const PRUNE_AFTER: Duration = Duration::from_secs(60);
/// A forgotten sentinel is not learned again for this long.
const FORGOTTEN_FOR: Duration = Duration::from_secs(10 * 60);

impl Coordinator {
    pub(super) fn learn(&mut self, addr: NodeAddr) {
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

    pub(super) fn housekeeping(&mut self) {
        // A sentinel gone silent ends the trust by time alone; this says so.
        self.update_liveness();
        for (addr, slot) in &self.subscribers {
            if let Some(since) = slot.heard.or(slot.down_since) {
                self.shared.events.series.silence(addr, since);
            }
        }
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
    pub(super) fn forget_unreachable(&mut self) {
        let down: HashSet<NodeAddr> = self
            .subscribers
            .iter()
            .filter(|(_, s)| !s.seed && !s.connected)
            .map(|(addr, _)| addr.clone())
            .collect();
        self.forget(down, "unreachable when a sentinel was reset");
    }

    pub(super) fn forget(&mut self, addrs: HashSet<NodeAddr>, why: &str) {
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
}
