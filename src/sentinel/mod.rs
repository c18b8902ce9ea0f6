//! Asking the sentinels where the master is, with every wait bounded.
//!
//! This replaces redis-rs's `redis::sentinel::SentinelClient` for lookups, because that client
//! cannot meet a bounded wait: its sync path connects to sentinels with no connect timeout and
//! reads with no read timeout, and its cached sentinel connections are private, so nothing
//! outside it can bound them. A black-holed sentinel costs the kernel's SYN timeout (minutes),
//! and a SIGSTOPped one (the kernel still accepts and acknowledges) hangs the caller forever.
//! Here asking one sentinel (connecting, verifying it, the query) takes at most
//! [`sentinel_timeout`](crate::Builder::sentinel_timeout), and a whole lookup at most what is
//! left of the caller's deadline.
//!
//! Other differences, each from a lesson of the other clients:
//! - `SENTINEL MASTER <name>` asks for one master instead of listing them all, and its flags are
//!   checked: a master flagged `s_down` or `o_down` is not accepted, nor the answer of a
//!   failover leader in mid-failover (it names the old master until the failover ends).
//! - A sentinel is verified with `ROLE` once per connection, not once per lookup.
//! - The sentinel that answered moves to the front (redis-py does the same). A sentinel that
//!   failed is asked last for a while: during a master crash every sentinel reports the
//!   master down, so each lookup walks the whole list, and a hung sentinel would otherwise cost
//!   its timeout on every one of them.
//! - A garbled reply or an error from a sentinel is that sentinel's fault: the next one is
//!   asked. Only an answer that the service is unknown counts as such.
//!
//! Lookups run one at a time, outside the lock that guards the pool's `(generation, master)`
//! record (see the `shared` module): the watcher, `stats()` and checkouts never wait for sentinel
//! I/O.

use std::{
    collections::HashMap,
    time::{Duration, Instant},
};

use redis::{Connection, RedisError, Role};

pub(crate) mod message;
mod reply;

pub(crate) use reply::{
    Answer, Candidate, PromotionView, leads_failover, master_cmd, parse_down_after, parse_master,
    parse_promotion, parse_replicas, parse_sentinels, promotion_in_progress, replicas_cmd,
    sentinels_cmd,
};

use crate::{
    Error, NodeAddr,
    error::SentinelFailure,
    node::{self, AddressMap, NodeSettings},
};

/// How long a sentinel that failed is asked only after the others.
const QUARANTINE: Duration = Duration::from_secs(5);

/// The known sentinels and a cached connection to each.
#[derive(Debug)]
pub(crate) struct Sentinels {
    nodes: Vec<SentinelNode>,
    settings: NodeSettings,
    /// Applied to the masters sentinels name.
    map: AddressMap,
    /// The service's `down-after-milliseconds`, from the last `SENTINEL MASTER` answer.
    down_after: Option<Duration>,
}

struct SentinelNode {
    addr: NodeAddr,
    conn: Option<Connection>,
    /// It answered `ROLE` with an error (a data node, or Sentinel, knows `ROLE`): a
    /// Sentinel-compatible endpoint that answers lookups only (`SENTINEL
    /// GET-MASTER-ADDR-BY-NAME`), such as a managed service's discovery endpoint.
    lookup_only: bool,
    /// When it last failed to answer, if that was recent enough to matter.
    failed_at: Option<Instant>,
}

impl std::fmt::Debug for SentinelNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SentinelNode")
            .field("addr", &self.addr)
            .field("connected", &self.conn.is_some())
            .field("failed_at", &self.failed_at)
            .finish()
    }
}

impl SentinelNode {
    fn new(addr: NodeAddr) -> Self {
        SentinelNode {
            addr,
            conn: None,
            lookup_only: false,
            failed_at: None,
        }
    }

    fn quarantined(&self) -> bool {
        self.failed_at.is_some_and(|t| t.elapsed() < QUARANTINE)
    }
}

impl Sentinels {
    pub(crate) fn new(addrs: Vec<NodeAddr>, settings: NodeSettings, map: AddressMap) -> Self {
        Sentinels {
            nodes: addrs.into_iter().map(SentinelNode::new).collect(),
            settings,
            map,
            down_after: None,
        }
    }

    /// The service's `down-after-milliseconds` as the last sentinel asked said, if one did.
    pub(crate) fn down_after(&self) -> Option<Duration> {
        self.down_after
    }

    /// Aligns the list with `addrs` (sentinels learned or forgotten by the watcher), keeping
    /// the connections and the order of those that stay.
    pub(crate) fn sync(&mut self, addrs: &[NodeAddr]) {
        self.nodes.retain(|n| addrs.contains(&n.addr));
        for addr in addrs {
            if !self.nodes.iter().any(|n| n.addr == *addr) {
                self.nodes.push(SentinelNode::new(addr.clone()));
            }
        }
    }

    /// Asks the sentinels in turn for the master of `service` and its configuration epoch,
    /// until `deadline`; the first one that names a master it does not flag as down wins and
    /// moves to the front. Sentinels
    /// that failed recently are asked only when no other one answered. An answer naming
    /// `avoid` (a node that just answered `ROLE` as replica) loses to any other sentinel's
    /// answer, and is returned only when no sentinel names another node.
    ///
    /// When none answers, the error is the most actionable one met: a configuration error
    /// (not a sentinel, wrong sentinel credentials or permissions) first, then a master
    /// reported down, then an unknown service, then the list of failures.
    pub(crate) fn master(
        &mut self,
        service: &str,
        avoid: Option<&NodeAddr>,
        deadline: Instant,
    ) -> Result<(NodeAddr, u64), Error> {
        let mut config_error = None;
        let mut unknown = Vec::new();
        let mut down = false;
        let mut avoided = None;
        let mut failures = Vec::new();
        let mut answered = false;
        for (i, quarantined) in self.asking_order() {
            if quarantined && answered {
                break;
            }
            if Instant::now() >= deadline {
                failures.push(SentinelFailure {
                    address: self.nodes[i].addr.to_string(),
                    source: crate::outcome::timed_out(),
                });
                break;
            }
            let answer = self.ask_master(i, service, deadline);
            answered |= answer.is_ok();
            match answer {
                Ok(Answer::Master { addr, epoch }) if Some(&addr) == avoid => {
                    avoided.get_or_insert((i, addr, epoch));
                }
                Ok(Answer::Master { addr, epoch }) => {
                    self.prefer(i, service);
                    return Ok((addr, epoch));
                }
                Ok(Answer::Down) => down = true,
                Ok(Answer::Unknown) => unknown.push(self.nodes[i].addr.to_string()),
                Ok(Answer::Garbled) => {
                    log::warn!(
                        "sentinel {} sent a garbled SENTINEL MASTER reply; asking the next one",
                        self.nodes[i].addr
                    );
                    failures.push(SentinelFailure {
                        address: self.nodes[i].addr.to_string(),
                        source: RedisError::from((
                            redis::ErrorKind::UnexpectedReturnType,
                            "SENTINEL MASTER reply without a valid ip, port or flags",
                        )),
                    });
                }
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
                    failures.push(self.failed(i, source));
                }
                Err(other) => return Err(other),
            }
        }
        if let Some((i, addr, epoch)) = avoided {
            self.prefer(i, service);
            return Ok((addr, epoch));
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

    /// The replicas of `service` that can serve reads, as a sentinel lists them (healthy: not
    /// flagged down or disconnected, linked to their master). Asks the sentinels in order
    /// (those that failed recently last); the first that answers wins.
    pub(crate) fn replicas(
        &mut self,
        service: &str,
        deadline: Instant,
    ) -> Result<Vec<NodeAddr>, Error> {
        let mut failures = Vec::new();
        for (i, _) in self.asking_order() {
            if Instant::now() >= deadline {
                break;
            }
            match self.query::<Vec<HashMap<String, String>>>(i, &replicas_cmd(service), deadline) {
                Ok(reply) => {
                    self.prefer(i, service);
                    return Ok(parse_replicas(&reply)
                        .into_iter()
                        .map(|addr| self.map.apply(addr))
                        .collect());
                }
                Err(Error::Redis(source)) => failures.push(self.failed(i, source)),
                Err(other) => return Err(other),
            }
        }
        Err(Error::SentinelsUnreachable { failures })
    }

    /// What every sentinel that answers by `deadline` says about promoting the replicas of
    /// `service` ([`PromotionView`]), for durable mode. Any of them may lead the next
    /// failover, so one sentinel's word is not enough: a replica is promotable when one of
    /// them would promote it. Those that failed recently are asked only when no other one
    /// answered, so a hung sentinel costs its timeout once, not at every question.
    pub(crate) fn promotion_view(
        &mut self,
        service: &str,
        deadline: Instant,
    ) -> Result<PromotionView, Error> {
        let mut view = PromotionView::default();
        let mut failures = Vec::new();
        let mut answered = false;
        for (i, quarantined) in self.asking_order() {
            if Instant::now() >= deadline || (answered && quarantined) {
                break;
            }
            match self.query::<Vec<HashMap<String, String>>>(i, &replicas_cmd(service), deadline) {
                Ok(reply) => {
                    answered = true;
                    self.nodes[i].failed_at = None;
                    view.sentinels
                        .push(parse_promotion(&reply, self.down_after, &self.map));
                }
                Err(Error::Redis(source)) => failures.push(self.failed(i, source)),
                Err(other) => return Err(other),
            }
        }
        if answered {
            Ok(view)
        } else {
            Err(Error::SentinelsUnreachable { failures })
        }
    }

    /// Sentinels that did not fail recently first, then the others (`true`: quarantined),
    /// decided once per question: a quarantine that ends while it is asked does not reorder
    /// it.
    fn asking_order(&self) -> Vec<(usize, bool)> {
        let mut order: Vec<(usize, bool)> = (0..self.nodes.len())
            .map(|i| (i, self.nodes[i].quarantined()))
            .collect();
        // Stable: the order the last lookup left within each group.
        order.sort_by_key(|&(_, quarantined)| quarantined);
        order
    }

    /// Notes that sentinel `i` failed to answer with `source`.
    fn failed(&mut self, i: usize, source: redis::RedisError) -> SentinelFailure {
        self.nodes[i].failed_at = Some(Instant::now());
        SentinelFailure {
            address: self.nodes[i].addr.to_string(),
            source,
        }
    }

    /// Moves sentinel `i`, which answered, to the front.
    fn prefer(&mut self, i: usize, service: &str) {
        self.nodes[i].failed_at = None;
        if i > 0 {
            log::debug!(
                "sentinel {} answered for {service:?}; asking it first from now on",
                self.nodes[i].addr
            );
            self.nodes[..=i].rotate_right(1);
        }
    }

    fn ask_master(&mut self, i: usize, service: &str, deadline: Instant) -> Result<Answer, Error> {
        match self.query::<HashMap<String, String>>(i, &master_cmd(service), deadline) {
            Ok(reply) => {
                self.down_after = parse_down_after(&reply).or(self.down_after);
                Ok(self.mapped(parse_master(&reply)))
            }
            // `SENTINEL MASTER` answers an unknown name with a plain ERR, which tells it from no
            // other fault: `GET-MASTER-ADDR-BY-NAME` answers nil for an unknown name.
            Err(Error::Redis(err)) if err.code() == Some("ERR") => {
                let mut cmd = redis::cmd("SENTINEL");
                cmd.arg("GET-MASTER-ADDR-BY-NAME").arg(service);
                match self.query::<Option<(String, u16)>>(i, &cmd, deadline) {
                    Ok(None) => Ok(Answer::Unknown),
                    // No flags, no epoch: the endpoint's word is all there is. Epoch 0 is
                    // older than any a real sentinel reports.
                    Ok(Some((host, port))) if self.nodes[i].lookup_only => {
                        Ok(self.mapped(Answer::Master {
                            addr: NodeAddr::new(host, port),
                            epoch: 0,
                        }))
                    }
                    Ok(Some(_)) => Err(Error::Redis(err)),
                    Err(other) => Err(other),
                }
            }
            Err(Error::Redis(err)) if err.kind() == redis::ErrorKind::Parse => Ok(Answer::Garbled),
            Err(err) => Err(err),
        }
    }

    /// `answer` with the master's address through the address map.
    fn mapped(&self, answer: Answer) -> Answer {
        match answer {
            Answer::Master { addr, epoch } => Answer::Master {
                addr: self.map.apply(addr),
                epoch,
            },
            other => other,
        }
    }

    /// The sentinels' addresses, in the order they are asked.
    pub(crate) fn addrs(&self) -> Vec<NodeAddr> {
        self.nodes.iter().map(|n| n.addr.clone()).collect()
    }

    /// Runs `cmd` on sentinel `i`, connecting (and verifying it is a sentinel) first if needed,
    /// all within one `sentinel_timeout`. A cached connection that fails with an I/O error is
    /// replaced and the command sent once more, within what is left: the sentinel may have
    /// restarted since. Sentinel commands read state and are safe to repeat.
    fn query<T: redis::FromRedisValue>(
        &mut self,
        i: usize,
        cmd: &redis::Cmd,
        lookup_deadline: Instant,
    ) -> Result<T, Error> {
        let deadline = lookup_deadline.min(Instant::now() + self.settings.read_timeout);
        let was_cached = self.nodes[i].conn.is_some();
        let result = self.send(i, cmd, deadline);
        match result {
            Err(Error::Redis(err)) if was_cached && !crate::outcome::leaves_in_step(&err) => {
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
        if !crate::outcome::leaves_in_step(&err) {
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
                return Err(Error::Redis(crate::outcome::timed_out()));
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
                Err(err) if crate::outcome::is_unknown_command(&err) => {
                    if !self.nodes[i].lookup_only {
                        log::info!(
                            "sentinel {addr} does not know ROLE: taken for a Sentinel-compatible \
                             endpoint that answers lookups only (SENTINEL GET-MASTER-ADDR-BY-NAME); \
                             failovers are followed there through lookups and ROLE checks, not \
                             announcements"
                        );
                    }
                    self.nodes[i].lookup_only = true;
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
    if crate::outcome::is_auth_error(&err) {
        Error::SentinelAuth {
            address: addr.to_string(),
            source: err,
        }
    } else if crate::outcome::is_no_permission(&err) {
        Error::NoPermission {
            address: addr.to_string(),
            command,
            source: err,
        }
    } else {
        Error::Redis(err)
    }
}
