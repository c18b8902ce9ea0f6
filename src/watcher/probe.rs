//! The probe: while a fence is up, asks the replica being promoted its role every few
//! milliseconds, and reports the moment it answers master. Also the fence's other errand on
//! the side: [`release`], which frees the pool's connections blocked on the master it closed.
//!
//! Sentinel's `REPLICAOF NO ONE` comes with `CLIENT KILL TYPE normal`, so the probe's
//! connection dies at the very moment of the promotion; it reconnects at once. Every wait is
//! short (a hung replica costs [`IO_LIMIT`](super::IO_LIMIT) per attempt), and the thread ends
//! within that when the fence comes down.

use std::{sync::Arc, thread, time::Duration};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};

use super::{Report, clamp};
use crate::{
    Error, NodeAddr,
    core::Core,
    node::{self, NodeRole},
};

/// How often the replica is asked. A promotion is seen within this (plus a round trip) of
/// the moment it happens; `ROLE` costs the replica a few microseconds.
const POLL: Duration = Duration::from_millis(2);

/// A running probe; dropping it signals the thread to end (without waiting for it).
#[derive(Debug)]
pub(super) struct Probe {
    _stop: Sender<()>,
}

impl Probe {
    /// Starts asking `candidate` its role; reports [`Report::Promoted`] once, when it answers
    /// master.
    ///
    /// # Errors
    ///
    /// [`Error::ThreadSpawn`] when the system refuses the thread.
    pub(super) fn start(
        core: &Arc<Core>,
        candidate: NodeAddr,
        reports: Sender<Report>,
    ) -> Result<(Probe, thread::JoinHandle<()>), Error> {
        let (stop_tx, stop) = crossbeam_channel::bounded(0);
        let core = Arc::clone(core);
        let name = format!("r2d2-sentinel-probe-{}", candidate.port);
        let thread = thread::Builder::new()
            .name(name.clone())
            .spawn(move || {
                if run(&core, &candidate, &stop) {
                    let _ = reports.send(Report::Promoted { addr: candidate });
                }
            })
            .map_err(|err| Error::ThreadSpawn {
                name,
                reason: err.to_string(),
            })?;
        Ok((Probe { _stop: stop_tx }, thread))
    }
}

/// Asks until `candidate` answers master (true) or the probe is stopped (false).
fn run(core: &Core, candidate: &NodeAddr, stop: &Receiver<()>) -> bool {
    let settings = clamp(&core.config.data);
    loop {
        if let Ok(mut conn) = node::connect(candidate, &settings) {
            loop {
                match core.role_probe(candidate).ask(
                    &mut conn,
                    false,
                    core.config.data.redis.protocol(),
                ) {
                    Ok(NodeRole::Master) => return true,
                    Ok(_) => {}
                    Err(err) if node::is_no_permission(&err) => {
                        core.use_hello_for_roles(candidate);
                    }
                    // Killed by the promotion itself, most likely: reconnect at once.
                    Err(_) => break,
                }
                if !matches!(stop.recv_timeout(POLL), Err(RecvTimeoutError::Timeout)) {
                    return false;
                }
            }
        }
        if !matches!(stop.recv_timeout(POLL), Err(RecvTimeoutError::Timeout)) {
            return false;
        }
    }
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
    core: &Arc<Core>,
    master: NodeAddr,
    clients: Vec<i64>,
) -> Result<thread::JoinHandle<()>, Error> {
    let settings = clamp(&core.config.data);
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
