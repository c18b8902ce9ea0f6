//! A replica pool's connects: the replica the selection picks, the lag check, and detours
//! to another replica (or the master) when it fails.

use std::{
    collections::hash_map::RandomState,
    hash::BuildHasher,
    sync::atomic::{AtomicUsize, Ordering},
    time::Instant,
};

use super::{ReplicaOptions, ReplicaSelection};
use crate::{
    Connection, Error, NodeAddr, SentinelManager,
    manager::data_node_error,
    node::{self, NodeRole},
};

impl SentinelManager {
    /// One attempt for a replica pool: the healthy replicas (cached, or one lookup), from the
    /// one the selection picks, each tried in turn until one connects and answers `ROLE` as a
    /// replica; then the master if the options allow it. All by `deadline`.
    pub(crate) fn connect_replica(
        &self,
        options: &ReplicaOptions,
        next: &AtomicUsize,
        deadline: Instant,
    ) -> Result<Connection, Error> {
        let shared = &self.shared;
        // Read before the lookup, as for the master.
        let generation = shared.generation.current();
        let set = shared.replica_set();
        let mut replicas: Vec<NodeAddr> = shared.replicas(deadline)?;
        let mut tried = Vec::new();
        if let Some(max) = options.max_lag {
            match self.replica_lags(deadline) {
                Ok(lags) => replicas.retain(|addr| {
                    let lag = lags.iter().find(|(a, _)| a == addr).map(|(_, lag)| *lag);
                    let fresh = lag.is_some_and(|lag| lag <= max);
                    if !fresh {
                        tried.push(format!(
                            "{addr}: {} behind the master, more than max_lag_bytes {max}",
                            lag.map_or_else(
                                || "an unknown distance (the master does not list it)".to_owned(),
                                |l| format!("{l} bytes")
                            )
                        ));
                    }
                    fresh
                }),
                // The ACL user may not run `ROLE` on the master: say so, at once.
                Err(err) if err.is_config() => return Err(err),
                // The bound cannot be checked: it holds by reading from none.
                Err(err) => tried.extend(replicas.drain(..).map(|addr| {
                    format!("{addr}: its lag is unknown (max_lag_bytes {max} is set): {err}")
                })),
            }
        }
        if !replicas.is_empty() {
            let first = match options.selection {
                ReplicaSelection::RoundRobin => next.fetch_add(1, Ordering::Relaxed),
                ReplicaSelection::Random => RandomState::new().hash_one(0u8) as usize,
            };
            for k in 0..replicas.len() {
                let addr = &replicas[(first + k) % replicas.len()];
                match self.open(addr, generation, NodeRole::Replica, deadline) {
                    Ok(mut conn) => {
                        conn.set_replica_set(set, k > 0);
                        log::debug!("connected to replica {addr} (generation {generation})");
                        return Ok(conn);
                    }
                    Err(err) if err.is_config() => return Err(err),
                    Err(err) => tried.push(format!("{addr}: {err}")),
                }
            }
            // A listed replica failed: ask the sentinels again next time.
            shared.forget_replicas();
        }
        if options.fallback_to_master {
            log::debug!(
                "no replica of {:?} can serve ({tried:?}); reading from the master",
                shared.config.service
            );
            return self.connect_master(deadline);
        }
        Err(Error::NoHealthyReplica {
            service: shared.config.service.clone(),
            tried,
        })
    }

    /// How far each replica trails the master, in bytes, from the master's `ROLE`, by
    /// `deadline`. The recorded master, or one lookup when none is recorded; while a fence
    /// holds, no master is asked (the failover decides which one the replicas follow).
    fn replica_lags(&self, deadline: Instant) -> Result<Vec<(NodeAddr, u64)>, Error> {
        let shared = &self.shared;
        let master = match shared.cached_master() {
            Some(master) => master,
            None if shared.fenced().is_some() => {
                return Err(Error::FailoverInProgress {
                    service: shared.config.service.clone(),
                    stalled: false,
                });
            }
            None => shared.master(deadline)?.1,
        };
        let mut settings = shared.config.data.clone();
        settings.connect_timeout = settings
            .connect_timeout
            .min(deadline.saturating_duration_since(Instant::now()));
        if settings.connect_timeout.is_zero() {
            return Err(data_node_error(
                &master,
                crate::outcome::timed_out(),
                "ROLE",
            ));
        }
        // A master that does not answer costs one read timeout, not the whole checkout.
        let until = deadline.min(Instant::now() + settings.read_timeout);
        let asked = node::connect(&master, &settings).and_then(|mut conn| {
            node::bound(&conn, until)?;
            redis::cmd("ROLE").query::<redis::Role>(&mut conn)
        });
        match asked {
            Ok(redis::Role::Primary {
                replication_offset,
                replicas,
            }) => Ok(replicas
                .into_iter()
                .map(|r| {
                    let acked = u64::try_from(r.replication_offset).unwrap_or(0);
                    (
                        shared.config.address_map.apply(NodeAddr::new(r.ip, r.port)),
                        replication_offset.saturating_sub(acked),
                    )
                })
                .collect()),
            Ok(role) => Err(Error::WrongRole {
                address: master.to_string(),
                expected: NodeRole::Master.name(),
                actual: NodeRole::from_role(&role).name().to_owned(),
            }),
            Err(err) => Err(data_node_error(&master, err, "ROLE")),
        }
    }
}
