//! What the watcher's threads tell the coordinator, and the bounds on their I/O.

use std::time::{Duration, Instant};

use crate::{NodeAddr, node::NodeSettings, sentinel::message::SentinelMessage};

/// The longest any watcher I/O may take, so that stopping stays under a second.
const IO_LIMIT: Duration = Duration::from_millis(500);

/// `settings` with every wait capped at [`IO_LIMIT`], so that stopping stays under a second
/// and a silent node costs that much at most.
pub(super) fn clamp(settings: &NodeSettings) -> NodeSettings {
    NodeSettings {
        connect_timeout: settings.connect_timeout.min(IO_LIMIT),
        read_timeout: settings.read_timeout.min(IO_LIMIT),
        write_timeout: settings.write_timeout.min(IO_LIMIT),
        ..settings.clone()
    }
}

/// What a subscriber tells the coordinator.
#[derive(Debug)]
pub(super) enum Report {
    Connected(NodeAddr),
    Disconnected(NodeAddr, String),
    Master {
        from: NodeAddr,
        addr: NodeAddr,
        epoch: u64,
        /// The service's `down-after-milliseconds`, when the reply carried it.
        down_after: Option<Duration>,
    },
    Sentinels(Vec<NodeAddr>),
    /// The subscription carried a message or answered a `PING` at `at`: the sentinel is
    /// heard (see [`liveness`](crate::liveness)).
    Heard {
        from: NodeAddr,
        at: Instant,
    },
    /// The replicas a sentinel lists as healthy, asked at each refresh.
    Replicas {
        from: NodeAddr,
        list: Vec<NodeAddr>,
    },
    /// A message, with the configuration epoch of a `+switch-master` when its sentinel said,
    /// or the epoch of the failover attempt a step belongs to.
    Message {
        from: NodeAddr,
        message: SentinelMessage,
        epoch: Option<u64>,
    },
    /// The probe saw the fenced failover's replica answer master.
    Promoted {
        addr: NodeAddr,
    },
    /// The probe saw the fenced failover's replica answer master and the fenced master
    /// answer replica: the server handed over (a coordinated failover).
    HandedOver {
        addr: NodeAddr,
    },
    /// After a handover, Sentinel closed the clients of the new master at `addr`.
    ClientsKilled {
        addr: NodeAddr,
    },
    /// The fenced master has held writes for a handover this long, waiting for its replica
    /// to catch up; said again every [`probe::STALL_AFTER`] while it does.
    HandoverStalled {
        held: Duration,
    },
    /// A sentinel's state says it leads a failover promoting `candidate` (asked at each
    /// refresh, so a subscriber that joined mid-failover learns what it missed).
    InProgress {
        from: NodeAddr,
        candidate: NodeAddr,
    },
}
