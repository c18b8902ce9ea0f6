//! The master connections blocked in a command now (`BLPOP`, `BLMOVE`, `XREAD BLOCK`...), so
//! that the fence can release them from a master it closes.

use std::sync::{
    Arc,
    atomic::{AtomicBool, AtomicU64, Ordering},
};

use parking_lot::Mutex;

use crate::NodeAddr;

/// The blocked connections. The list's lock is held for no I/O.
#[derive(Debug, Default)]
pub(crate) struct BlockedCommands {
    blocked: Mutex<Vec<Blocked>>,
    /// The token of the next entry.
    next: AtomicU64,
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

impl BlockedCommands {
    /// Notes that the connection `client_id` on the master `addr` is about to block in a
    /// command; returns the token that [`unblocked`](Self::unblocked) takes, and the flag the
    /// pool sets when it releases it.
    pub(crate) fn blocking(&self, addr: &NodeAddr, client_id: i64) -> (u64, Arc<AtomicBool>) {
        let token = self.next.fetch_add(1, Ordering::Relaxed);
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
    pub(crate) fn release(&self, master: &NodeAddr) -> Vec<i64> {
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_closed_masters_connections_are_released() {
        let blocked = BlockedCommands::default();
        let (a, a_released) = blocked.blocking(&NodeAddr::new("127.0.0.1", 1), 10);
        let (_, b_released) = blocked.blocking(&NodeAddr::new("127.0.0.1", 2), 20);
        let (_, c_released) = blocked.blocking(&NodeAddr::new("127.0.0.1", 1), 30);
        blocked.unblocked(a);
        assert_eq!(blocked.release(&NodeAddr::new("127.0.0.1", 1)), vec![30]);
        assert!(!a_released.load(Ordering::Acquire));
        assert!(!b_released.load(Ordering::Acquire));
        assert!(c_released.load(Ordering::Acquire));
    }
}
