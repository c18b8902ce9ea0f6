//! Sentinel lookups: one at a time (single flight), in the order the last one left the
//! sentinels, over the sentinels the watcher learned and forgot meanwhile.

use parking_lot::{Mutex, MutexGuard};

use crate::{NodeAddr, config::Config, sentinel::Sentinels};

/// The bounded sentinel client and the sentinels it asks.
#[derive(Debug)]
pub(crate) struct Lookups {
    /// Sentinel lookups, one at a time; the holder does the I/O. Taken only by connects that
    /// find no usable answer recorded; nothing else waits for it.
    client: Mutex<Sentinels>,
    /// The sentinels lookups ask, in the order the last lookup left them, as the watcher
    /// learns and forgets them. Held for no I/O.
    order: Mutex<Vec<NodeAddr>>,
}

impl Lookups {
    pub(crate) fn new(config: &Config) -> Self {
        Lookups {
            client: Mutex::new(Sentinels::new(
                config.sentinels.clone(),
                config.sentinel.clone(),
                config.address_map.clone(),
            )),
            order: Mutex::new(config.sentinels.clone()),
        }
    }

    /// Takes the turn to look up: connects that need a lookup while one is in flight wait for
    /// it here, and then find its answer recorded.
    pub(crate) fn turn(&self) -> MutexGuard<'_, Sentinels> {
        self.client.lock()
    }

    /// Runs one lookup `ask` on the client of a [`turn`](Self::turn), over the sentinels known
    /// now; keeps the order it leaves them in.
    pub(crate) fn ask<T>(
        &self,
        client: &mut Sentinels,
        ask: impl FnOnce(&mut Sentinels) -> T,
    ) -> T {
        client.sync(&self.order.lock());
        let answer = ask(client);
        self.keep_order(&client.addrs());
        answer
    }

    /// The sentinels lookups ask, in the order they ask them.
    pub(crate) fn sentinels(&self) -> Vec<NodeAddr> {
        self.order.lock().clone()
    }

    /// How many sentinels lookups ask.
    pub(crate) fn count(&self) -> usize {
        self.order.lock().len()
    }

    /// Adds a sentinel for lookups (asked last), unless it is known.
    pub(crate) fn add(&self, addr: NodeAddr) {
        let mut sentinels = self.order.lock();
        if !sentinels.contains(&addr) {
            sentinels.push(addr);
        }
    }

    /// Forgets a sentinel.
    pub(crate) fn remove(&self, addr: &NodeAddr) {
        self.order.lock().retain(|s| s != addr);
    }

    /// Takes the order a lookup left the sentinels in, keeping those learned or forgotten
    /// meanwhile.
    fn keep_order(&self, ordered: &[NodeAddr]) {
        let mut sentinels = self.order.lock();
        let mut merged: Vec<NodeAddr> = ordered
            .iter()
            .filter(|s| sentinels.contains(s))
            .cloned()
            .collect();
        merged.extend(sentinels.iter().filter(|s| !ordered.contains(s)).cloned());
        *sentinels = merged;
    }
}
