//! The probe: while a fence is up, asks the replica being promoted its role every few
//! milliseconds, and reports the moment it answers master. Also the fence's other errand on
//! the side: [`release`], which frees the pool's connections blocked on the master it closed.
//!
//! Sentinel's `REPLICAOF NO ONE` comes with `CLIENT KILL TYPE normal`, so the probe's
//! connection dies at the very moment of the promotion; it reconnects at once. Every wait is
//! short (a hung replica costs [`IO_LIMIT`](super::IO_LIMIT) per attempt), and the thread ends
//! within that when the fence comes down.
//!
//! # A handover by the server
//!
//! When the replica answers master, the probe asks the fenced master its role too. A master
//! that answers replica handed over by itself: Valkey 9's coordinated failover (`SENTINEL
//! FAILOVER <master> COORDINATED`) has it pause writes (`CLIENT PAUSE WRITE`), wait until the
//! replica has every write it acknowledged, demote itself and promote the replica (`FAILOVER
//! TO`). In a plain failover the old master stays master until Sentinel reconfigures it, after
//! the commit. A handover is reported either way; the pool resumes there only with
//! [`FenceResume::Promotion`]. It is no commitment: a leader that dies before its new
//! configuration reaches the other sentinels leaves them to pick the next master, and the
//! demoted master, its writes still paused, relays nothing to its replicas, so one they pick
//! lacks what the new master took since (33,089 writes in one run of the fault matrix).
//!
//! Sentinel then closes every client of both nodes (`CLIENT KILL TYPE normal`, `TYPE pubsub`)
//! when its `INFO` polling sees the promotion, up to a second later. A pool that resumed at the
//! handover has connections there by then: the probe keeps its connection to the new master
//! and pings it until that happens, and reports it; the pool then starts a generation on the
//! same master, so that no connection opened before the kill is handed out or sends again.

use std::{
    sync::Arc,
    thread,
    time::{Duration, Instant},
};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};

use super::report::{Report, clamp};
use crate::{
    Error, FenceResume, NodeAddr,
    node::{self, NodeRole},
    shared::Shared,
};

/// How often the replica is asked. A promotion is seen within this (plus a round trip) of
/// the moment it happens; `ROLE` costs the replica a few microseconds.
const POLL: Duration = Duration::from_millis(2);

/// How long the probe waits for Sentinel to close the new master's clients after a handover.
/// Its leader polls a promoted replica's `INFO` once a second and closes them when it sees
/// the promotion; a leader that died in between never does.
pub(super) const KILL_WAIT: Duration = Duration::from_secs(5);

/// How long the fenced master may hold writes for a handover before the pool says it
/// stalled: a healthy one waits for the replica's next acknowledgement, sent once a second,
/// so one that waits longer waits for a replica that is not in sync (a full resync, a broken
/// link).
pub(super) const STALL_AFTER: Duration = Duration::from_millis(1500);

/// How often the handover watcher asks the fenced master its state, and waits before
/// connecting again to one it could not reach.
const STATE_POLL: Duration = Duration::from_millis(50);

/// A running probe; dropping it signals the thread to end (without waiting for it).
#[derive(Debug)]
pub(super) struct Probe {
    _stop: Sender<()>,
}

impl Probe {
    /// Starts asking `candidate` its role. Reports [`Report::HandedOver`] when it answers
    /// master and `old` answers replica, then [`Report::ClientsKilled`] when Sentinel closes
    /// the new master's clients; else, with [`FenceResume::Promotion`],
    /// [`Report::Promoted`] when it answers master. Reports each at most once.
    ///
    /// # Errors
    ///
    /// [`Error::ThreadSpawn`] when the system refuses the thread.
    pub(super) fn start(
        shared: &Arc<Shared>,
        candidate: NodeAddr,
        old: Option<NodeAddr>,
        reports: Sender<Report>,
    ) -> Result<(Probe, Vec<thread::JoinHandle<()>>), Error> {
        let (stop_tx, stop) = crossbeam_channel::bounded(0);
        let mut threads = Vec::new();
        if let Some(old) = old.clone() {
            let (shared, stop, reports) = (Arc::clone(shared), stop.clone(), reports.clone());
            let name = format!("r2d2-sentinel-handover-{}", old.port);
            threads.push(
                thread::Builder::new()
                    .name(name.clone())
                    .spawn(move || watch_handover(&shared, &old, &stop, &reports))
                    .map_err(|err| Error::ThreadSpawn {
                        name,
                        reason: err.to_string(),
                    })?,
            );
        }
        let shared = Arc::clone(shared);
        let name = format!("r2d2-sentinel-probe-{}", candidate.port);
        let thread = thread::Builder::new()
            .name(name.clone())
            .spawn(move || {
                let at_promotion = shared
                    .config
                    .fence
                    .is_some_and(|f| f.resume == FenceResume::Promotion);
                match run(&shared, &candidate, old.as_ref(), &stop) {
                    Outcome::HandedOver(conn) => {
                        let addr = candidate.clone();
                        // Only a pool that resumed at the handover has connections there
                        // before Sentinel closes its clients.
                        if reports.send(Report::HandedOver { addr }).is_ok()
                            && at_promotion
                            && await_kill(conn, &stop)
                        {
                            let _ = reports.send(Report::ClientsKilled { addr: candidate });
                        }
                    }
                    Outcome::Promoted if at_promotion => {
                        let _ = reports.send(Report::Promoted { addr: candidate });
                    }
                    Outcome::Promoted | Outcome::Stopped => {}
                }
            })
            .map_err(|err| Error::ThreadSpawn {
                name,
                reason: err.to_string(),
            })?;
        threads.push(thread);
        Ok((Probe { _stop: stop_tx }, threads))
    }
}

/// How the probe's asking ended.
enum Outcome {
    /// The candidate answers master and the old master replica: the server handed over. The
    /// connection to the new master, kept to see Sentinel close it.
    HandedOver(redis::Connection),
    /// The candidate answers master; the old master did not answer replica.
    Promoted,
    /// The probe was stopped first.
    Stopped,
}

/// Asks until `candidate` answers master, or the probe is stopped. Then asks `old`: with
/// [`FenceResume::Promotion`] once (the pool resumes either way), else until it answers
/// (a master that is dead or silent says nothing, and the pool waits for the commit).
fn run(
    shared: &Shared,
    candidate: &NodeAddr,
    old: Option<&NodeAddr>,
    stop: &Receiver<()>,
) -> Outcome {
    let settings = clamp(&shared.config.data);
    let at_promotion = shared
        .config
        .fence
        .is_some_and(|f| f.resume == FenceResume::Promotion);
    loop {
        if let Ok(mut conn) = node::connect(candidate, &settings) {
            loop {
                match ask(shared, candidate, &mut conn) {
                    Ok(NodeRole::Master) => match old.map(|old| old_says(shared, old)) {
                        Some(OldSays::Replica) => return Outcome::HandedOver(conn),
                        Some(OldSays::Unknown) if !at_promotion => {}
                        None | Some(OldSays::Master | OldSays::Unknown) => {
                            return Outcome::Promoted;
                        }
                    },
                    Ok(_) => {}
                    // Killed by the promotion itself, most likely: reconnect at once.
                    Err(_) => break,
                }
                if !matches!(stop.recv_timeout(POLL), Err(RecvTimeoutError::Timeout)) {
                    return Outcome::Stopped;
                }
            }
        }
        if !matches!(stop.recv_timeout(POLL), Err(RecvTimeoutError::Timeout)) {
            return Outcome::Stopped;
        }
    }
}

/// The role of the node at `addr`, by `ROLE`, or by `HELLO` where our ACL user may not run
/// `ROLE`.
fn ask(
    shared: &Shared,
    addr: &NodeAddr,
    conn: &mut redis::Connection,
) -> redis::RedisResult<NodeRole> {
    let protocol = shared.config.data.redis.protocol();
    match shared.nodes.role_probe(addr).ask(conn, false, protocol) {
        Err(err) if crate::outcome::is_no_permission(&err) => {
            shared.nodes.use_hello_for_roles(addr);
            shared.nodes.role_probe(addr).ask(conn, false, protocol)
        }
        answer => answer,
    }
}

/// What the master the fence closed says of its role once the candidate answers master.
enum OldSays {
    /// A replica: it handed over by itself.
    Replica,
    /// Still master: a plain failover, where Sentinel demotes it after the commit.
    Master,
    /// Nothing within [`OLD_MASTER_WAIT`]: dead, frozen, cut off or busy.
    Unknown,
}

/// How long the master the fence closed has to say its role. A live one answers `ROLE` in
/// microseconds even while it pauses writes; a frozen or cut-off one would otherwise hold
/// the probe for its whole connect and read timeouts.
const OLD_MASTER_WAIT: Duration = Duration::from_millis(50);

fn old_says(shared: &Shared, old: &NodeAddr) -> OldSays {
    let settings = node::NodeSettings {
        connect_timeout: OLD_MASTER_WAIT,
        read_timeout: OLD_MASTER_WAIT,
        write_timeout: OLD_MASTER_WAIT,
        ..shared.config.data.clone()
    };
    match node::connect(old, &settings).and_then(|mut conn| ask(shared, old, &mut conn)) {
        Ok(NodeRole::Replica | NodeRole::UnlinkedReplica) => OldSays::Replica,
        Ok(NodeRole::Master) => OldSays::Master,
        Ok(_) | Err(_) => OldSays::Unknown,
    }
}

/// What the fenced master says of a handover (`INFO replication`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Handover {
    /// A master with none under way (`master_failover_state:no-failover`), or a server too
    /// old to say.
    None,
    /// It holds writes and waits for the replica to acknowledge them all
    /// (`waiting-for-sync`).
    WaitingForSync,
    /// It demoted itself and asks the replica to take over (`failover-in-progress`).
    InProgress,
    /// It is a replica now: the handover is done (or it never was master).
    Replica,
}

impl Handover {
    fn parse(info: &str) -> Handover {
        let field = |name: &str| {
            info.lines()
                .find_map(|line| line.strip_prefix(name)?.strip_prefix(':'))
                .map(str::trim)
        };
        if field("role") == Some("slave") {
            return Handover::Replica;
        }
        match field("master_failover_state") {
            Some("waiting-for-sync") => Handover::WaitingForSync,
            Some("failover-in-progress") => Handover::InProgress,
            _ => Handover::None,
        }
    }
}

/// While the fence is up, watches the master it closed for a handover of its own (Valkey's
/// coordinated failover): it holds writes (`CLIENT PAUSE WRITE`) until the replica has
/// acknowledged every one of them. Replicas acknowledge once a second, and the master asks
/// for no earlier acknowledgement while it pauses writes (asking would add to the replication
/// stream), so a handover takes up to a second of the server's time, nothing a client can
/// hurry. One that takes [`STALL_AFTER`] waits for a replica that is not in sync: the
/// watcher tells the coordinator, and again every [`STALL_AFTER`] while the master holds
/// writes. It asks `INFO replication` every [`STATE_POLL`]; where our ACL user may not, it
/// gives up (the fence then ends at its timeout).
fn watch_handover(shared: &Shared, old: &NodeAddr, stop: &Receiver<()>, reports: &Sender<Report>) {
    let settings = clamp(&shared.config.data);
    let mut waiting_since: Option<Instant> = None;
    let mut told: Option<Instant> = None;
    let stopped = |wait| !matches!(stop.recv_timeout(wait), Err(RecvTimeoutError::Timeout));
    loop {
        if let Ok(mut conn) = node::connect(old, &settings) {
            loop {
                let state = redis::cmd("INFO")
                    .arg("replication")
                    .query::<String>(&mut conn)
                    .map(|info| Handover::parse(&info));
                match state {
                    Ok(Handover::Replica) => return,
                    Ok(Handover::WaitingForSync) => {
                        let since = *waiting_since.get_or_insert_with(Instant::now);
                        let due = told.unwrap_or(since) + STALL_AFTER;
                        if Instant::now() >= due {
                            told = Some(Instant::now());
                            let held = since.elapsed();
                            let _ = reports.send(Report::HandoverStalled { held });
                        }
                    }
                    Ok(Handover::None | Handover::InProgress) => waiting_since = None,
                    Err(err) if err.is_io_error() || err.is_timeout() => break,
                    Err(_) => return,
                }
                if stopped(STATE_POLL) {
                    return;
                }
            }
        }
        if stopped(STATE_POLL) {
            return;
        }
    }
}

/// Pings the new master on `conn` until Sentinel closes it (true), for [`KILL_WAIT`] at most
/// or until the probe is stopped (false).
fn await_kill(mut conn: redis::Connection, stop: &Receiver<()>) -> bool {
    let deadline = Instant::now() + KILL_WAIT;
    while Instant::now() < deadline {
        if redis::cmd("PING").query::<String>(&mut conn).is_err() {
            return true;
        }
        if !matches!(stop.recv_timeout(POLL), Err(RecvTimeoutError::Timeout)) {
            return false;
        }
    }
    false
}

/// Releases the pool's connections blocked in a command on `master`, which the fence just
/// closed (their client ids: `clients`), with `CLIENT UNBLOCK <id> ERROR` from a connection of
/// its own: each gets `UNBLOCKED`, applied nothing, and its caller retries on the new master
/// at once instead of sitting out its timeout on the old one. On a thread, every wait capped
/// (the master may be the node that died), so that the watcher never waits for it.
///
/// # Errors
///
/// [`Error::ThreadSpawn`] when the system refuses the thread.
pub(super) fn release(
    shared: &Arc<Shared>,
    master: NodeAddr,
    clients: Vec<i64>,
) -> Result<thread::JoinHandle<()>, Error> {
    let settings = clamp(&shared.config.data);
    let name = format!("r2d2-sentinel-unblock-{}", master.port);
    thread::Builder::new()
        .name(name.clone())
        .spawn(move || {
            let mut unblock = redis::pipe();
            for id in &clients {
                unblock.cmd("CLIENT").arg("UNBLOCK").arg(*id).arg("ERROR");
            }
            let sent = node::connect(&master, &settings)
                .and_then(|mut conn| unblock.query::<Vec<redis::Value>>(&mut conn));
            match sent {
                Ok(_) => log::debug!(
                    "released {} connection(s) blocked on the fenced master {master}",
                    clients.len()
                ),
                // Our user may not run it (`@admin`), or the master is gone (its clients with
                // it): they end at their own timeout, or now.
                Err(err) => log::debug!(
                    "could not release the connections blocked on the fenced master {master}: \
                     {err}"
                ),
            }
        })
        .map_err(|err| Error::ThreadSpawn {
            name,
            reason: err.to_string(),
        })
}
