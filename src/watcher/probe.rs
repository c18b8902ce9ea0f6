//! The probe: while a fence is up, asks the replica being promoted its role every few
//! milliseconds, and reports the moment it answers master.
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
