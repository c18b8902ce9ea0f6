//! Asking the sentinels where the master is, with every wait bounded.
//!
//! This replaces redis-rs's `redis::sentinel::SentinelClient` for lookups, because that client
//! cannot meet a bounded wait: its sync path connects to sentinels with no connect timeout and
//! reads with no read timeout, and its cached sentinel connections are private, so nothing
//! outside it can bound them. A black-holed sentinel costs the kernel's SYN timeout (minutes),
//! and a SIGSTOPped one (the kernel still accepts and acknowledges) hangs the caller, and with
//! it the lock around the client, forever. Here every sentinel connection has a connect, read
//! and write timeout ([`sentinel_timeout`](crate::Builder::sentinel_timeout)).
//!
//! Other differences, each from a lesson of the other clients:
//! - `SENTINEL MASTER <name>` asks for one master instead of listing them all, and its flags are
//!   checked: a master flagged `s_down` or `o_down` is not accepted.
//! - A sentinel is verified with `ROLE` once per connection, not once per lookup.
//! - The sentinel that answered moves to the front, so a dead or hung sentinel costs its timeout
//!   once, not on every lookup (redis-py does the same).

use std::{collections::HashMap, time::Instant};

use redis::{Connection, RedisError, Role};

use crate::{
    Error, NodeAddr,
    error::SentinelFailure,
    node::{self, NodeSettings},
};

/// The known sentinels and a cached connection to each.
#[derive(Debug)]
pub(crate) struct Sentinels {
    nodes: Vec<SentinelNode>,
    settings: NodeSettings,
}

struct SentinelNode {
    addr: NodeAddr,
    conn: Option<Connection>,
}

impl std::fmt::Debug for SentinelNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SentinelNode")
            .field("addr", &self.addr)
            .field("connected", &self.conn.is_some())
            .finish()
    }
}

/// What one sentinel said about the service.
pub(crate) enum Answer {
    /// A master it considers up, and the configuration epoch it belongs to: a larger epoch is a
    /// later failover.
    Master { addr: NodeAddr, epoch: u64 },
    /// It flags the master `s_down` or `o_down`.
    Down,
    /// It does not monitor the service.
    Unknown,
}

impl Sentinels {
    pub(crate) fn new(addrs: Vec<NodeAddr>, settings: NodeSettings) -> Self {
        Sentinels {
            nodes: addrs
                .into_iter()
                .map(|addr| SentinelNode { addr, conn: None })
                .collect(),
            settings,
        }
    }

    /// Asks the sentinels in turn for the master of `service`; the first one that names a master
    /// it does not flag as down wins and moves to the front.
    ///
    /// When none does, the error is the most actionable one met: a configuration error
    /// (not a sentinel, wrong sentinel credentials) first, then an unknown service, then a
    /// master reported down, then the list of unreachable sentinels.
    pub(crate) fn master(&mut self, service: &str) -> Result<NodeAddr, Error> {
        let mut config_error = None;
        let mut unknown = Vec::new();
        let mut down = false;
        let mut failures = Vec::new();
        for i in 0..self.nodes.len() {
            match self.ask_master(i, service) {
                Ok(Answer::Master { addr, .. }) => {
                    if i > 0 {
                        log::debug!(
                            "sentinel {} answered for {service:?}; asking it first from now on",
                            self.nodes[i].addr
                        );
                        self.nodes[..=i].rotate_right(1);
                    }
                    return Ok(addr);
                }
                Ok(Answer::Down) => down = true,
                Ok(Answer::Unknown) => unknown.push(self.nodes[i].addr.to_string()),
                Err(
                    err @ (Error::NotASentinel { .. }
                    | Error::SentinelAuth { .. }
                    | Error::NoPermission { .. }),
                ) => {
                    log::warn!("{err}");
                    config_error.get_or_insert(err);
                }
                Err(Error::Redis(source)) => {
                    log::debug!("sentinel {} failed: {source}", self.nodes[i].addr);
                    failures.push(SentinelFailure {
                        address: self.nodes[i].addr.to_string(),
                        source,
                    });
                }
                Err(other) => return Err(other),
            }
        }
        if let Some(err) = config_error {
            Err(err)
        } else if down {
            Err(Error::MasterDown {
                service: service.to_owned(),
            })
        } else if !unknown.is_empty() {
            Err(Error::UnknownService {
                service: service.to_owned(),
                asked: unknown,
            })
        } else {
            Err(Error::SentinelsUnreachable { failures })
        }
    }

    fn ask_master(&mut self, i: usize, service: &str) -> Result<Answer, Error> {
        let reply = self.query(i, &master_cmd(service));
        match reply {
            Ok(reply) => Ok(parse_master(&reply)),
            // The node was verified to be a sentinel when connecting; the only error
            // `SENTINEL MASTER` then returns is "No such master with that name".
            Err(Error::Redis(err)) if err.code() == Some("ERR") => Ok(Answer::Unknown),
            Err(err) => Err(err),
        }
    }

    /// The sentinels' addresses, in the order they are asked.
    pub(crate) fn addrs(&self) -> Vec<NodeAddr> {
        self.nodes.iter().map(|n| n.addr.clone()).collect()
    }

    /// Adds a sentinel, asked last; false if it was known.
    pub(crate) fn add(&mut self, addr: NodeAddr) -> bool {
        if self.nodes.iter().any(|n| n.addr == addr) {
            return false;
        }
        self.nodes.push(SentinelNode { addr, conn: None });
        true
    }

    /// Forgets a sentinel.
    pub(crate) fn remove(&mut self, addr: &NodeAddr) {
        self.nodes.retain(|n| n.addr != *addr);
    }

    /// Runs `cmd` on sentinel `i`, connecting (and verifying it is a sentinel) first if needed,
    /// all within one `sentinel_timeout`. A cached connection that fails with an I/O error is
    /// replaced and the command sent once more, within what is left: the sentinel may have
    /// restarted since. Sentinel commands read state and are safe to repeat.
    fn query<T: redis::FromRedisValue>(&mut self, i: usize, cmd: &redis::Cmd) -> Result<T, Error> {
        let deadline = Instant::now() + self.settings.read_timeout;
        let was_cached = self.nodes[i].conn.is_some();
        let result = self.send(i, cmd, deadline);
        match result {
            Err(Error::Redis(err)) if was_cached && is_broken(&err) => {
                self.nodes[i].conn = None;
                self.send(i, cmd, deadline)
                    .map_err(|err| self.failed_query(i, err))
            }
            other => other.map_err(|err| self.failed_query(i, err)),
        }
    }

    fn send<T: redis::FromRedisValue>(
        &mut self,
        i: usize,
        cmd: &redis::Cmd,
        deadline: Instant,
    ) -> Result<T, Error> {
        let conn = self.connection(i, deadline)?;
        node::bound(conn, deadline)?;
        Ok(cmd.query(conn)?)
    }

    /// Drops the connection after an error that leaves it unusable, and turns an auth or
    /// permission error into its own variant.
    fn failed_query(&mut self, i: usize, err: Error) -> Error {
        let Error::Redis(err) = err else {
            return err;
        };
        if is_broken(&err) {
            self.nodes[i].conn = None;
        }
        sentinel_error(&self.nodes[i].addr, err, "SENTINEL")
    }

    fn connection(&mut self, i: usize, deadline: Instant) -> Result<&mut Connection, Error> {
        if self.nodes[i].conn.is_none() {
            let addr = self.nodes[i].addr.clone();
            let mut settings = self.settings.clone();
            settings.connect_timeout = deadline.saturating_duration_since(Instant::now());
            if settings.connect_timeout.is_zero() {
                return Err(Error::Redis(node::timed_out()));
            }
            let mut conn = node::connect(&addr, &settings)
                .map_err(|err| sentinel_error(&addr, err, "ROLE"))?;
            node::bound(&conn, deadline)?;
            match redis::cmd("ROLE").query::<Role>(&mut conn) {
                Ok(Role::Sentinel { .. }) => {}
                Ok(_) => {
                    return Err(Error::NotASentinel {
                        address: addr.to_string(),
                    });
                }
                Err(err) => return Err(sentinel_error(&addr, err, "ROLE")),
            }
            log::debug!("connected to sentinel {addr}");
            self.nodes[i].conn = Some(conn);
        }
        Ok(self.nodes[i].conn.as_mut().expect("connected above"))
    }
}

/// The error for a failure on a sentinel: credentials, permissions, or anything else.
fn sentinel_error(addr: &NodeAddr, err: RedisError, command: &'static str) -> Error {
    if node::is_auth_error(&err) {
        Error::SentinelAuth {
            address: addr.to_string(),
            source: err,
        }
    } else if node::is_no_permission(&err) {
        Error::NoPermission {
            address: addr.to_string(),
            command,
            source: err,
        }
    } else {
        Error::Redis(err)
    }
}

/// A reply is answered in full or the connection is out of step: anything but a server error
/// leaves it unusable.
fn is_broken(err: &RedisError) -> bool {
    !matches!(
        err.kind(),
        redis::ErrorKind::Server(_) | redis::ErrorKind::Extension
    )
}

/// `SENTINEL MASTER <service>`.
pub(crate) fn master_cmd(service: &str) -> redis::Cmd {
    let mut cmd = redis::cmd("SENTINEL");
    cmd.arg("MASTER").arg(service);
    cmd
}

/// `SENTINEL SENTINELS <service>`: the other sentinels this one knows.
pub(crate) fn sentinels_cmd(service: &str) -> redis::Cmd {
    let mut cmd = redis::cmd("SENTINEL");
    cmd.arg("SENTINELS").arg(service);
    cmd
}

/// Reads a `SENTINEL SENTINELS` reply into addresses.
pub(crate) fn parse_sentinels(reply: &[HashMap<String, String>]) -> Vec<NodeAddr> {
    reply
        .iter()
        .filter_map(|s| {
            Some(NodeAddr::new(
                s.get("ip")?.clone(),
                s.get("port")?.parse().ok()?,
            ))
        })
        .collect()
}

/// Reads a `SENTINEL MASTER` reply: the address, its epoch, and whether the sentinel thinks it
/// is up.
pub(crate) fn parse_master(reply: &HashMap<String, String>) -> Answer {
    let flags = reply.get("flags").map(String::as_str).unwrap_or("");
    let is_down = flags
        .split(',')
        .any(|flag| matches!(flag, "s_down" | "o_down"));
    let is_master = flags.split(',').any(|flag| flag == "master");
    let addr = reply
        .get("ip")
        .zip(reply.get("port").and_then(|p| p.parse().ok()));
    let epoch = reply
        .get("config-epoch")
        .and_then(|e| e.parse().ok())
        .unwrap_or(0);
    match addr {
        Some((ip, port)) if is_master && !is_down => Answer::Master {
            addr: NodeAddr::new(ip.clone(), port),
            epoch,
        },
        Some(_) => Answer::Down,
        None => Answer::Unknown,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn a_healthy_master_is_accepted() {
        let r = reply(&[
            ("ip", "10.0.0.1"),
            ("port", "6380"),
            ("flags", "master"),
            ("config-epoch", "7"),
        ]);
        assert!(matches!(
            parse_master(&r),
            Answer::Master { addr, epoch: 7 } if addr == NodeAddr::new("10.0.0.1", 6380)
        ));
    }

    #[test]
    fn a_master_flagged_down_is_not_accepted() {
        for flags in ["master,s_down", "master,s_down,o_down", "master,o_down"] {
            let r = reply(&[("ip", "10.0.0.1"), ("port", "6380"), ("flags", flags)]);
            assert!(matches!(parse_master(&r), Answer::Down), "{flags}");
        }
    }

    #[test]
    fn a_disconnected_master_is_still_named() {
        // `disconnected` alone means this sentinel's link is down, not that the master is.
        let r = reply(&[("ip", "h"), ("port", "1"), ("flags", "master,disconnected")]);
        assert!(matches!(parse_master(&r), Answer::Master { .. }));
    }

    #[test]
    fn sentinels_replies_give_addresses() {
        let list = vec![
            reply(&[
                ("ip", "127.0.0.1"),
                ("port", "26380"),
                ("flags", "sentinel"),
            ]),
            reply(&[("ip", "127.0.0.1"), ("port", "x")]),
        ];
        assert_eq!(
            parse_sentinels(&list),
            vec![NodeAddr::new("127.0.0.1", 26380)]
        );
    }

    #[test]
    fn a_garbled_reply_is_not_an_address() {
        let r = reply(&[("ip", "h"), ("port", "not-a-port"), ("flags", "master")]);
        assert!(matches!(parse_master(&r), Answer::Unknown));
    }
}
