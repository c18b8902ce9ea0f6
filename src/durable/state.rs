//! What a master connection keeps for durable mode.

use std::time::{Duration, Instant};

use super::Durability;
use crate::NodeAddr;

/// How old the replica count a durable write waits for may be: older, the master is asked
/// again (`ROLE`) before the write is sent.
pub(super) const LISTING_FRESH: Duration = Duration::from_secs(1);

/// A master connection's durable mode: the setting, and what it learned about the master.
#[derive(Debug)]
pub(crate) struct DurableState {
    /// A write is confirmed by `WAIT` in its own round trip. `None` for a replica connection
    /// or a pool without it.
    pub(crate) mode: Option<Durability>,
    /// The replicas the master listed as connected at the last `ROLE` (announced
    /// addresses); `None` when unknown (asked with `HELLO`).
    pub(crate) listed: Option<Vec<NodeAddr>>,
    /// When the node last answered a role probe.
    pub(crate) listed_at: Option<Instant>,
    /// The durable modes this master was found able to confirm writes for: `WAIT` (our
    /// user may run it) and `WAITAOF` (on disk).
    pub(crate) checked: DurableChecked,
}

impl DurableState {
    pub(crate) fn new(mode: Option<Durability>) -> Self {
        DurableState {
            mode,
            listed: None,
            listed_at: None,
            checked: DurableChecked::default(),
        }
    }
}

/// Which durable modes a master connection was checked for.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct DurableChecked {
    pub(crate) wait: bool,
    pub(crate) on_disk: bool,
}
