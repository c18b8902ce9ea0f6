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
//! record (see the core module): the watcher, `stats()` and checkouts never wait for sentinel
//! I/O.

use std::{
    collections::HashMap,
    time::{Duration, Instant},
};

use redis::{Connection, RedisError, Role};

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

/// What one sentinel said about the service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Answer {
    /// A master it considers up, and the configuration epoch it belongs to: a larger epoch is a
    /// later failover.
    Master { addr: NodeAddr, epoch: u64 },
    /// It flags the master `s_down` or `o_down`, or it is running a failover of it (its
    /// answer names the old master until the failover ends).
    Down,
    /// It does not monitor the service.
    Unknown,
    /// The reply lacks the fields of a `SENTINEL MASTER` reply: a fault of that sentinel.
    Garbled,
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
        for i in self.asking_order() {
            if self.nodes[i].quarantined() && answered {
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
        for i in self.asking_order() {
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
        for i in self.asking_order() {
            if Instant::now() >= deadline || (answered && self.nodes[i].quarantined()) {
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

    /// Sentinels that did not fail recently first, then the others.
    fn asking_order(&self) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|&i| !self.nodes[i].quarantined())
            .chain((0..self.nodes.len()).filter(|&i| self.nodes[i].quarantined()))
            .collect()
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

/// `SENTINEL MASTER <service>`.
pub(crate) fn master_cmd(service: &str) -> redis::Cmd {
    let mut cmd = redis::cmd("SENTINEL");
    cmd.arg("MASTER").arg(service);
    cmd
}

/// `SENTINEL SENTINELS <service>`: the other sentinels this one knows.
pub(crate) fn replicas_cmd(service: &str) -> redis::Cmd {
    let mut cmd = redis::cmd("SENTINEL");
    cmd.arg("REPLICAS").arg(service);
    cmd
}

/// The replicas a `SENTINEL REPLICAS` reply lists as able to serve reads: flagged neither
/// down nor disconnected, with their link to the master up.
pub(crate) fn parse_replicas(reply: &[HashMap<String, String>]) -> Vec<NodeAddr> {
    reply
        .iter()
        .filter(|r| {
            !flagged_down(r) && r.get("master-link-status").map(String::as_str) == Some("ok")
        })
        .filter_map(replica_addr)
        .collect()
}

/// Whether a sentinel flags the instance of one `SENTINEL REPLICAS` entry down or
/// disconnected.
fn flagged_down(entry: &HashMap<String, String>) -> bool {
    let flags = entry.get("flags").map_or("", String::as_str);
    let down = ["s_down", "o_down", "disconnected"];
    flags.split(',').any(|f| down.contains(&f))
}

/// The address of one `SENTINEL REPLICAS` entry, when it has a valid one.
fn replica_addr(entry: &HashMap<String, String>) -> Option<NodeAddr> {
    let ip = entry.get("ip")?;
    let port = entry.get("port")?.parse().ok().filter(|p| *p != 0)?;
    Some(NodeAddr::new(ip.as_str(), port))
}

/// What the sentinels say about promoting the replicas of a service, for durable mode: each
/// answering sentinel's list of replicas, with what its selection of a replica to promote
/// looks at.
#[derive(Debug, Clone, Default)]
pub(crate) struct PromotionView {
    /// One list per sentinel that answered.
    pub(crate) sentinels: Vec<Vec<Candidate>>,
}

/// One replica as one sentinel lists it, by the address its master announces (which is how
/// the master's `ROLE` names it too).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Candidate {
    pub(crate) addr: NodeAddr,
    /// Through the address map: how this client reaches it.
    pub(crate) reached_as: NodeAddr,
    /// Sentinel may promote it at all ([`parse_promotion`]).
    pub(crate) promotable: bool,
    /// `replica-priority`: lower is preferred, 0 never.
    pub(crate) priority: u64,
    /// The replication offset the sentinel last read from its `INFO` (0: it never reported
    /// replicating this master's data, like an old master not yet re-pointed).
    pub(crate) offset: u64,
    /// The leader of a failover selected it (`promoted`): it is being made master.
    pub(crate) selected: bool,
}

impl PromotionView {
    /// How many sentinels answered, and how many of them list `node` (an address this client
    /// connects to) as a replica: they take another node for the master.
    pub(crate) fn listing_as_replica(&self, node: &NodeAddr) -> (usize, usize) {
        let listing = self
            .sentinels
            .iter()
            .filter(|list| list.iter().any(|c| c.reached_as == *node && !c.selected))
            .count();
        (self.sentinels.len(), listing)
    }
}

/// Each replica a `SENTINEL REPLICAS` reply lists, as [`Candidate`]s (through `map`). Sentinel
/// would not promote one (`sentinelSelectSlave`) flagged down or disconnected, of
/// `replica-priority` 0, or cut off from the master for more than 10 × `down-after-milliseconds`
/// (when that is known).
pub(crate) fn parse_promotion(
    reply: &[HashMap<String, String>],
    down_after: Option<Duration>,
    map: &AddressMap,
) -> Vec<Candidate> {
    let longest_cut = down_after.map(|d| d.saturating_mul(10));
    reply
        .iter()
        .filter_map(|r| {
            let number = |field: &str| r.get(field).and_then(|v| v.parse::<u64>().ok());
            let priority = number("slave-priority");
            let unpromotable = flagged_down(r)
                || priority == Some(0)
                || longest_cut
                    .zip(number("master-link-down-time"))
                    .is_some_and(|(longest, cut)| Duration::from_millis(cut) > longest);
            let flags = r.get("flags").map_or("", String::as_str);
            replica_addr(r).map(|addr| Candidate {
                reached_as: map.apply(addr.clone()),
                addr,
                promotable: !unpromotable,
                priority: priority.unwrap_or(100),
                offset: number("slave-repl-offset").unwrap_or(0),
                selected: flags.split(',').any(|f| f == "promoted"),
            })
        })
        .collect()
}

/// Whether a `SENTINEL MASTER` reply carries `failover_in_progress`: the sentinel that gave it
/// runs a failover of the master now (only a failover's leader sets the flag).
pub(crate) fn leads_failover(master: &HashMap<String, String>) -> bool {
    master
        .get("flags")
        .is_some_and(|flags| flags.split(',').any(|f| f == "failover_in_progress"))
}

/// The replica a failover led by the sentinel that sent these replies is promoting, if one is
/// under way: its `SENTINEL MASTER` reply carries `failover_in_progress` (only the leader's
/// does) in a state past the selection, and its `SENTINEL REPLICAS` reply flags the selected
/// replica `promoted`. What a subscriber that joined mid-failover reads instead of the steps it
/// missed.
pub(crate) fn promotion_in_progress(
    master: &HashMap<String, String>,
    replicas: &[HashMap<String, String>],
) -> Option<NodeAddr> {
    if !leads_failover(master) {
        return None;
    }
    let state = master.get("failover-state").map(String::as_str);
    if !matches!(
        state,
        Some("send_slaveof_noone" | "wait_promotion" | "reconf_slaves")
    ) {
        return None;
    }
    replicas.iter().find_map(|r| {
        r.get("flags")?
            .split(',')
            .any(|f| f == "promoted")
            .then_some(())?;
        let port = r.get("port")?.parse().ok().filter(|p| *p != 0)?;
        Some(NodeAddr::new(r.get("ip")?.as_str(), port))
    })
}

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
/// The `down-after-milliseconds` of a `SENTINEL MASTER` reply: how long the master may be
/// silent before a sentinel calls it down, the first part of every crash failover.
pub(crate) fn parse_down_after(reply: &HashMap<String, String>) -> Option<Duration> {
    reply
        .get("down-after-milliseconds")?
        .parse()
        .ok()
        .filter(|&ms| ms > 0)
        .map(Duration::from_millis)
}

pub(crate) fn parse_master(reply: &HashMap<String, String>) -> Answer {
    let (Some(flags), Some(ip), Some(port), Some(epoch)) = (
        reply.get("flags"),
        reply.get("ip"),
        reply.get("port").and_then(|p| p.parse().ok()),
        reply.get("config-epoch").and_then(|e| e.parse().ok()),
    ) else {
        return Answer::Garbled;
    };
    let has = |name: &str| flags.split(',').any(|flag| flag == name);
    if !has("master") || ip.is_empty() {
        return Answer::Garbled;
    }
    // A failover leader names the old master, with the new epoch, until its failover ends.
    if has("s_down") || has("o_down") || has("failover_in_progress") {
        return Answer::Down;
    }
    Answer::Master {
        addr: NodeAddr::new(ip.clone(), port),
        epoch,
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
    fn a_leader_mid_failover_names_the_replica_it_promotes() {
        let master = |state: &str| {
            reply(&[
                ("ip", "10.0.0.1"),
                ("port", "6379"),
                ("flags", "master,failover_in_progress"),
                ("failover-state", state),
                ("config-epoch", "3"),
            ])
        };
        let replicas = vec![
            reply(&[("ip", "10.0.0.2"), ("port", "6380"), ("flags", "slave")]),
            reply(&[
                ("ip", "10.0.0.3"),
                ("port", "6381"),
                ("flags", "slave,promoted"),
            ]),
        ];
        for state in ["send_slaveof_noone", "wait_promotion", "reconf_slaves"] {
            assert_eq!(
                promotion_in_progress(&master(state), &replicas),
                Some(NodeAddr::new("10.0.0.3", 6381)),
                "{state}"
            );
        }
        // Before a replica is selected, after the end, or on a sentinel that is not leading.
        for state in ["wait_start", "select_slave", "update_config"] {
            assert_eq!(promotion_in_progress(&master(state), &replicas), None);
        }
        let idle = reply(&[("flags", "master"), ("config-epoch", "3")]);
        assert_eq!(promotion_in_progress(&idle, &replicas), None);
        assert_eq!(
            promotion_in_progress(&master("wait_promotion"), &replicas[..1]),
            None
        );
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
    fn a_master_flagged_down_or_in_failover_is_not_accepted() {
        for flags in [
            "master,s_down",
            "master,s_down,o_down",
            "master,o_down",
            "master,failover_in_progress",
        ] {
            let r = reply(&[
                ("ip", "10.0.0.1"),
                ("port", "6380"),
                ("flags", flags),
                ("config-epoch", "2"),
            ]);
            assert_eq!(parse_master(&r), Answer::Down, "{flags}");
        }
    }

    #[test]
    fn a_disconnected_master_is_still_named() {
        // `disconnected` alone means this sentinel's link is down, not that the master is.
        let r = reply(&[
            ("ip", "h"),
            ("port", "1"),
            ("flags", "master,disconnected"),
            ("config-epoch", "0"),
        ]);
        assert!(matches!(parse_master(&r), Answer::Master { .. }));
    }

    #[test]
    fn only_healthy_linked_replicas_serve_reads() {
        let replica = |port: &str, flags: &str, link: &str| {
            reply(&[
                ("ip", "10.0.0.2"),
                ("port", port),
                ("flags", flags),
                ("master-link-status", link),
            ])
        };
        let list = [
            replica("1", "slave", "ok"),
            replica("2", "s_down,slave", "ok"),
            replica("3", "slave,disconnected", "ok"),
            replica("4", "slave", "err"),
            replica("x", "slave", "ok"),
            replica("6", "slave", "ok"),
        ];
        assert_eq!(
            parse_replicas(&list),
            vec![NodeAddr::new("10.0.0.2", 1), NodeAddr::new("10.0.0.2", 6)]
        );
    }

    #[test]
    fn replicas_sentinel_would_not_promote_are_told_apart() {
        let replica = |port: &str, flags: &str, priority: &str, cut_ms: &str| {
            reply(&[
                ("ip", "10.0.0.2"),
                ("port", port),
                ("flags", flags),
                ("slave-priority", priority),
                ("master-link-down-time", cut_ms),
            ])
        };
        let list = [
            replica("1", "slave", "100", "0"),
            replica("2", "s_down,slave", "100", "0"),
            replica("3", "slave,disconnected", "100", "0"),
            replica("4", "slave", "0", "0"),
            // Cut off from the master for 9 s, then 11 s, with down-after 1 s.
            replica("5", "slave", "100", "9000"),
            replica("6", "slave", "100", "11000"),
        ];
        let map = AddressMap::default();
        let unpromotable = |down_after| {
            parse_promotion(&list, down_after, &map)
                .into_iter()
                .filter(|c| !c.promotable)
                .map(|c| c.addr.port)
                .collect::<Vec<_>>()
        };
        assert_eq!(unpromotable(Some(Duration::from_secs(1))), [2, 3, 4, 6]);
        // Unknown down-after: a cut-off replica may still be promoted.
        assert_eq!(unpromotable(None), [2, 3, 4]);
        let listed = parse_promotion(&list, None, &map);
        assert_eq!(listed.len(), 6, "every replica is listed");
        assert_eq!(
            (listed[0].priority, listed[0].offset, listed[0].selected),
            (100, 0, false),
            "no offset read: 0"
        );
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
    fn a_garbled_reply_is_the_sentinels_fault_not_an_unknown_service() {
        let full = [
            ("ip", "h"),
            ("port", "1"),
            ("flags", "master"),
            ("config-epoch", "3"),
        ];
        for (field, value) in [
            ("port", "not-a-port"),
            ("port", "70000"),
            ("config-epoch", "-1"),
            ("flags", "slave"),
            ("ip", ""),
        ] {
            let mut r = reply(&full);
            r.insert(field.into(), value.into());
            assert_eq!(parse_master(&r), Answer::Garbled, "{field}={value}");
        }
        for missing in ["ip", "port", "flags", "config-epoch"] {
            let mut r = reply(&full);
            r.remove(missing);
            assert_eq!(parse_master(&r), Answer::Garbled, "without {missing}");
        }
    }
}
