//! [`Cluster`]: a running local Redis Cluster (3 primaries with a replica each, by default)
//! and its options, with what a cluster test needs: fail a shard over by hand, crash a
//! primary, move a slot while clients write.
//!
//! The kit builds the cluster itself, as an operator would without `redis-cli --cluster`:
//! every node is started with `cluster-enabled yes`, the slots are split evenly among the
//! primaries (`CLUSTER ADDSLOTSRANGE`, or `CLUSTER ADDSLOTS` before 7.0), the nodes are
//! introduced (`CLUSTER MEET`), and each replica follows its primary (`CLUSTER REPLICATE`).
//! It is ready when every node says `cluster_state:ok`, they agree on who owns each slot,
//! and every replica's link to its primary is up.

use std::{
    collections::{BTreeMap, HashMap},
    fs,
    net::TcpListener,
    path::PathBuf,
    thread,
    time::{Duration, Instant},
};

use super::{
    Error,
    error::io_error,
    process::{Access, Binaries, Process, ServerVersion, free_port, query, unique_dir},
};
use crate::NodeAddr;

/// How often readiness and state conditions are polled.
const POLL: Duration = Duration::from_millis(20);
/// How often a node whose ports were taken in the meantime is started again on new ones.
const START_ATTEMPTS: usize = 4;
/// Redis Cluster's hash slots: 0 to 16383.
const SLOTS: u16 = 16384;
/// A node's cluster bus listens on its port + 10000 (before 7.0, always).
const BUS_OFFSET: u16 = 10000;

/// Options of a [`Cluster`]; made by [`Cluster::builder`].
#[derive(Clone, Debug)]
#[must_use]
pub struct ClusterBuilder {
    primaries: usize,
    replicas: usize,
    node_timeout: Duration,
    timeout: Duration,
}

impl Default for ClusterBuilder {
    fn default() -> Self {
        ClusterBuilder {
            primaries: 3,
            replicas: 1,
            node_timeout: Duration::from_secs(1),
            timeout: Duration::from_secs(30),
        }
    }
}

impl ClusterBuilder {
    /// How many primaries share the slots (at least 1).
    ///
    /// Defaults to 3, the smallest cluster Redis recommends.
    pub fn primaries(mut self, primaries: usize) -> Self {
        self.primaries = primaries.max(1);
        self
    }

    /// How many replicas each primary has.
    ///
    /// Defaults to 1.
    pub fn replicas(mut self, replicas: usize) -> Self {
        self.replicas = replicas;
        self
    }

    /// The nodes' `cluster-node-timeout`: how long a primary may be unreachable before its
    /// replicas promote one of them.
    ///
    /// Defaults to 1 second (Redis's default is 15), so that crash tests take seconds.
    pub fn node_timeout(mut self, timeout: Duration) -> Self {
        self.node_timeout = timeout;
        self
    }

    /// How long starting the cluster and each helper may wait for it to settle.
    ///
    /// Defaults to 30 seconds.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Starts the nodes, assigns the slots, attaches the replicas, and waits until the
    /// cluster is healthy.
    ///
    /// # Errors
    ///
    /// [`Error::MissingBinary`] when no server is found; [`Error::Exited`] when a node does not
    /// start; [`Error::Timeout`] (with every node's view) when the cluster does not settle.
    pub fn start(self) -> Result<Cluster, Error> {
        let mut cluster = Cluster {
            binaries: Binaries::find()?,
            root: unique_dir()?,
            nodes: Vec::new(),
            orphans: HashMap::new(),
            options: self,
        };
        let (primaries, replicas) = (cluster.options.primaries, cluster.options.replicas);
        for _ in 0..primaries * (1 + replicas) {
            cluster.start_node()?;
        }
        // Even ranges, the last one taking the rest.
        let per = SLOTS / u16::try_from(primaries).unwrap_or(SLOTS);
        for (i, node) in cluster.nodes[..primaries].iter().enumerate() {
            let first = per * u16::try_from(i).unwrap_or(0);
            let last = if i + 1 == primaries {
                SLOTS - 1
            } else {
                first + per - 1
            };
            let mut cmd = redis::cmd("CLUSTER");
            if cluster.binaries.version.at_least(7, 0) {
                cmd.arg("ADDSLOTSRANGE").arg(first).arg(last);
            } else {
                cmd.arg("ADDSLOTS").arg((first..=last).collect::<Vec<_>>());
            }
            cluster.node_query::<()>(&node.addr(), &cmd)?;
        }
        let first = cluster.nodes[0].addr();
        for node in &cluster.nodes[1..] {
            let meet = redis::cmd("CLUSTER")
                .arg("MEET")
                .arg(&first.host)
                .arg(node.port)
                .clone();
            cluster.node_query::<()>(&first, &meet)?;
        }
        let count = cluster.nodes.len();
        cluster.wait_until("every node to know every other", |c| {
            c.nodes
                .iter()
                .all(|n| {
                    c.view(&n.addr())
                        .is_some_and(|v| v.len() == count && v.iter().all(|l| !l.handshake))
                })
                .then_some(())
        })?;
        for (i, node) in cluster.nodes[primaries..].iter().enumerate() {
            let primary = cluster.nodes[i % primaries].addr();
            let id: String = cluster.node_query(&primary, redis::cmd("CLUSTER").arg("MYID"))?;
            let replicate = redis::cmd("CLUSTER").arg("REPLICATE").arg(id).clone();
            cluster.node_query::<()>(&node.addr(), &replicate)?;
        }
        cluster.wait_healthy("the cluster to be healthy")?;
        Ok(cluster)
    }
}

/// A running local Redis Cluster; every process is killed when it is dropped, and its folders
/// removed (kept, with their path printed, when the drop happens during a panic).
///
/// ```no_run
/// use r2d2_redis_sentinel::testkit::Cluster;
///
/// let mut cluster = Cluster::start()?;
/// let old = cluster.owner(cluster.slot_of("user:{42}")?)?;
/// let new = cluster.failover(&old)?; // `CLUSTER FAILOVER` on its replica
/// cluster.kill(&new)?; // its replica takes over after `cluster-node-timeout`
/// let newest = cluster.wait_for_new_primary(&new)?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct Cluster {
    options: ClusterBuilder,
    binaries: Binaries,
    root: PathBuf,
    nodes: Vec<Process>,
    /// The replicas each killed node had: the candidates to take over its slots.
    orphans: HashMap<NodeAddr, Vec<NodeAddr>>,
}

/// One line of `CLUSTER NODES`, as far as the kit needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct NodeLine {
    id: String,
    addr: NodeAddr,
    primary: bool,
    failed: bool,
    handshake: bool,
    /// A replica's primary.
    primary_id: Option<String>,
    /// The slot ranges it owns (importing and migrating marks left out).
    slots: Vec<(u16, u16)>,
}

impl NodeLine {
    fn parse(line: &str) -> Option<Self> {
        let mut fields = line.split_whitespace();
        let id = fields.next()?.to_owned();
        // `ip:port@cport[,hostname]`
        let (host, port) = fields.next()?.split('@').next()?.rsplit_once(':')?;
        let flags: Vec<&str> = fields.next()?.split(',').collect();
        let primary_id = fields.next().filter(|p| *p != "-").map(str::to_owned);
        let slots = fields
            .skip(4)
            .filter(|s| !s.starts_with('['))
            .filter_map(|s| match s.split_once('-') {
                Some((a, b)) => Some((a.parse().ok()?, b.parse().ok()?)),
                None => s.parse().ok().map(|n| (n, n)),
            })
            .collect();
        Some(NodeLine {
            id,
            addr: NodeAddr::new(host, port.parse().ok()?),
            primary: flags.contains(&"master"),
            failed: flags.contains(&"fail"),
            handshake: flags.contains(&"handshake"),
            primary_id,
            slots,
        })
    }
}

impl Cluster {
    /// Starts the default cluster: 3 primaries with one replica each, `cluster-node-timeout`
    /// 1 second.
    ///
    /// # Errors
    ///
    /// As [`ClusterBuilder::start`].
    pub fn start() -> Result<Cluster, Error> {
        ClusterBuilder::default().start()
    }

    /// Options for a cluster of another shape.
    pub fn builder() -> ClusterBuilder {
        ClusterBuilder::default()
    }

    /// The server the nodes run.
    pub fn server_version(&self) -> ServerVersion {
        self.binaries.version
    }

    /// Every node the kit started, running or not: the seeds a client starts from.
    pub fn nodes(&self) -> Vec<NodeAddr> {
        self.nodes.iter().map(Process::addr).collect()
    }

    /// The slot of `key`, as the server computes it (`CLUSTER KEYSLOT`, hash tags included).
    ///
    /// # Errors
    ///
    /// [`Error::Redis`] when no node answers.
    pub fn slot_of(&self, key: &str) -> Result<u16, Error> {
        let node = self.live().next().map(Process::addr);
        let node = node.ok_or_else(|| self.timeout_error("a live node"))?;
        self.node_query(&node, redis::cmd("CLUSTER").arg("KEYSLOT").arg(key))
    }

    /// The primary that owns `slot`, as the live nodes agree.
    ///
    /// # Errors
    ///
    /// [`Error::Timeout`] when they do not agree within the cluster's timeout.
    pub fn owner(&self, slot: u16) -> Result<NodeAddr, Error> {
        self.wait_until("the nodes to agree on a slot's owner", |c| {
            c.agreed()?.get(&slot).cloned()
        })
    }

    /// The primaries owning slots, as the live nodes agree, in the order of their slots.
    ///
    /// # Errors
    ///
    /// As [`owner`](Self::owner).
    pub fn primaries(&self) -> Result<Vec<NodeAddr>, Error> {
        self.wait_until("the nodes to agree on the primaries", |c| {
            let mut primaries: Vec<NodeAddr> = Vec::new();
            for owner in c.agreed()?.into_values() {
                if !primaries.contains(&owner) {
                    primaries.push(owner);
                }
            }
            Some(primaries)
        })
    }

    /// The replicas of `primary` that run, as `primary` lists them.
    ///
    /// # Errors
    ///
    /// [`Error::Redis`] when it does not answer.
    pub fn replicas_of(&self, primary: &NodeAddr) -> Result<Vec<NodeAddr>, Error> {
        let lines = self.lines(primary)?;
        let id = lines
            .iter()
            .find(|l| l.addr == *primary)
            .map(|l| l.id.clone());
        Ok(lines
            .into_iter()
            .filter(|l| l.primary_id.is_some() && l.primary_id == id && !l.failed)
            .map(|l| l.addr)
            .filter(|a| self.live().any(|p| p.addr() == *a))
            .collect())
    }

    /// Fails `primary`'s shard over by hand: `CLUSTER FAILOVER` on its first replica, which
    /// pauses the primary's clients until it has caught up, then takes over. Returns the new
    /// primary once every live node agrees and the cluster is healthy again.
    ///
    /// # Errors
    ///
    /// [`Error::Timeout`] when `primary` has no replica or the handover does not complete.
    pub fn failover(&self, primary: &NodeAddr) -> Result<NodeAddr, Error> {
        let replica = self
            .replicas_of(primary)?
            .into_iter()
            .next()
            .ok_or_else(|| self.timeout_error(&format!("a replica of {primary}")))?;
        self.node_query::<()>(&replica, redis::cmd("CLUSTER").arg("FAILOVER"))?;
        self.wait_until("the replica to take over", |c| {
            c.agreed()?.values().any(|o| *o == replica).then_some(())
        })?;
        self.wait_healthy("the cluster to settle after the failover")?;
        Ok(replica)
    }

    /// Kills a node with SIGKILL (our own child, by its handle). A primary's replicas promote
    /// one of them after `cluster-node-timeout`: [`wait_for_new_primary`](Self::wait_for_new_primary).
    ///
    /// # Errors
    ///
    /// [`Error::Io`] when `addr` is not one of the kit's nodes, or the kill fails.
    pub fn kill(&mut self, addr: &NodeAddr) -> Result<(), Error> {
        let replicas = self.replicas_of(addr).unwrap_or_default();
        self.process(addr)?.kill()?;
        self.orphans.insert(addr.clone(), replicas);
        Ok(())
    }

    /// Freezes a node with SIGSTOP: the kernel still accepts its connections, the process never
    /// answers, as a hung node looks from outside. A frozen primary is failed over after
    /// `cluster-node-timeout`, like a dead one; give the cluster a long one to keep it primary.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] when `addr` is not one of the kit's nodes, or the signal fails.
    pub fn pause(&mut self, addr: &NodeAddr) -> Result<(), Error> {
        self.process(addr)?.signal("STOP")
    }

    /// Lets a node frozen by [`pause`](Self::pause) run again (SIGCONT).
    ///
    /// # Errors
    ///
    /// As [`pause`](Self::pause).
    pub fn resume(&mut self, addr: &NodeAddr) -> Result<(), Error> {
        self.process(addr)?.signal("CONT")
    }

    /// Starts a killed node again on its port; it rejoins with the identity it kept
    /// (`nodes.conf`), as a replica when its slots moved meanwhile.
    ///
    /// # Errors
    ///
    /// [`Error::Exited`] when it does not start; [`Error::Timeout`] when the cluster does not
    /// settle.
    pub fn restart(&mut self, addr: &NodeAddr) -> Result<(), Error> {
        let timeout = self.options.timeout;
        let binaries = self.binaries.clone();
        let process = self.process(addr)?;
        process.spawn(&binaries)?;
        process.wait_ready(&Access::default(), timeout)?;
        self.wait_healthy("the restarted node to rejoin")
    }

    /// Waits until a replica of `old`, a primary [`kill`](Self::kill)ed, owns its slots and
    /// the live part of the cluster is healthy again; returns it.
    ///
    /// # Errors
    ///
    /// [`Error::Timeout`] when that does not happen within the cluster's timeout (or `old`
    /// was not killed by the kit, or had no replica).
    pub fn wait_for_new_primary(&self, old: &NodeAddr) -> Result<NodeAddr, Error> {
        let replicas = self.orphans.get(old).cloned().unwrap_or_default();
        let new = self.wait_until("a replica to take the killed primary's slots", |c| {
            let owners = c.agreed()?;
            (!owners.values().any(|o| o == old))
                .then(|| replicas.iter().find(|r| owners.values().any(|o| o == *r)))?
                .cloned()
        })?;
        self.wait_healthy("the cluster to settle after the crash")?;
        Ok(new)
    }

    /// Starts moving `slot` to the primary `to`: `to` imports it and its owner migrates it.
    /// Until [`finish`](Migration::finish), a command for a key of the slot that its owner no
    /// longer holds gets `ASK` (and one for a new key, too).
    ///
    /// # Errors
    ///
    /// [`Error::Redis`] when a node refuses; [`Error::Timeout`] when the owner is unknown.
    pub fn start_migration(&self, slot: u16, to: &NodeAddr) -> Result<Migration<'_>, Error> {
        let from = self.owner(slot)?;
        let id = |addr: &NodeAddr| -> Result<String, Error> {
            self.node_query(addr, redis::cmd("CLUSTER").arg("MYID"))
        };
        let (from_id, to_id) = (id(&from)?, id(to)?);
        let setslot = |state: &str, id: &str| {
            redis::cmd("CLUSTER")
                .arg("SETSLOT")
                .arg(slot)
                .arg(state)
                .arg(id)
                .clone()
        };
        self.node_query::<()>(to, &setslot("IMPORTING", &from_id))?;
        self.node_query::<()>(&from, &setslot("MIGRATING", &to_id))?;
        Ok(Migration {
            cluster: self,
            slot,
            from,
            to: to.clone(),
            to_id,
        })
    }

    /// Moves `slot` to `to` at once: [`start_migration`](Self::start_migration), every key,
    /// [`finish`](Migration::finish).
    ///
    /// # Errors
    ///
    /// As those.
    pub fn migrate_slot(&self, slot: u16, to: &NodeAddr) -> Result<(), Error> {
        let migration = self.start_migration(slot, to)?;
        migration.move_keys()?;
        migration.finish()
    }

    fn process(&mut self, addr: &NodeAddr) -> Result<&mut Process, Error> {
        self.nodes
            .iter_mut()
            .find(|p| p.addr() == *addr)
            .ok_or_else(|| Error::Io {
                context: format!("find {addr}"),
                source: std::io::Error::new(std::io::ErrorKind::NotFound, "not a node of the kit"),
            })
    }

    fn live(&self) -> impl Iterator<Item = &Process> {
        self.nodes.iter().filter(|p| p.is_running())
    }

    /// Starts one node on a port whose bus port (+10000) is free too.
    fn start_node(&mut self) -> Result<(), Error> {
        let mut last = None;
        for _ in 0..START_ATTEMPTS {
            let port = free_bus_port()?;
            let dir = self.root.join(format!("cluster-{port}"));
            fs::create_dir_all(&dir).map_err(io_error("create a node folder"))?;
            let mut conf = format!(
                "port {port}\nbind 127.0.0.1\nprotected-mode no\ndaemonize no\ndir {dir}\n\
                 logfile {log}\nsave \"\"\nappendonly no\nrepl-diskless-sync-delay 0\n\
                 cluster-enabled yes\ncluster-config-file nodes.conf\n\
                 cluster-node-timeout {timeout}\n",
                dir = dir.display(),
                log = dir.join("redis.log").display(),
                timeout = self.options.node_timeout.as_millis(),
            );
            if self.binaries.version.at_least(7, 0) {
                conf.push_str("enable-debug-command local\n");
            }
            let mut process = Process::create(&dir, port, false, &conf)?;
            process.spawn(&self.binaries)?;
            match process.wait_ready(&Access::default(), self.options.timeout) {
                Ok(()) => {
                    self.nodes.push(process);
                    return Ok(());
                }
                Err(err @ Error::Exited { .. }) => last = Some(err),
                Err(err) => return Err(err),
            }
        }
        Err(last.expect("at least one attempt"))
    }

    /// Waits until every live node says `cluster_state:ok`, they agree on every slot's owner
    /// and on which primary each running replica follows, and every live replica's link to
    /// its primary is up.
    fn wait_healthy(&self, what: &str) -> Result<(), Error> {
        self.wait_until(what, |c| {
            c.agreed()?;
            c.followed()?;
            c.live()
                .all(|node| {
                    let addr = node.addr();
                    let info: Option<String> = c
                        .node_query(&addr, redis::cmd("INFO").arg("replication"))
                        .ok();
                    let state: Option<String> =
                        c.node_query(&addr, redis::cmd("CLUSTER").arg("INFO")).ok();
                    state.is_some_and(|s| s.contains("cluster_state:ok"))
                        && info.is_some_and(|i| {
                            i.contains("role:master") || i.contains("master_link_status:up")
                        })
                })
                .then_some(())
        })
    }

    /// Every slot's owner, when every live node's view agrees and covers all slots.
    fn agreed(&self) -> Option<BTreeMap<u16, NodeAddr>> {
        let mut agreed = None;
        for node in self.live() {
            let mut owners = BTreeMap::new();
            for line in self.view(&node.addr())? {
                if line.primary && !line.failed {
                    for (first, last) in &line.slots {
                        for slot in *first..=*last {
                            owners.insert(slot, line.addr.clone());
                        }
                    }
                }
            }
            if owners.len() != usize::from(SLOTS) || agreed.as_ref().is_some_and(|a| *a != owners) {
                return None;
            }
            agreed = Some(owners);
        }
        agreed
    }

    /// Which primary each running replica follows, when every live node's view agrees.
    fn followed(&self) -> Option<BTreeMap<NodeAddr, NodeAddr>> {
        let live: Vec<NodeAddr> = self.live().map(Process::addr).collect();
        let mut agreed = None;
        for node in &live {
            let view = self.view(node)?;
            let addr_of = |id: &str| view.iter().find(|l| l.id == id).map(|l| l.addr.clone());
            let mut follows = BTreeMap::new();
            for line in view.iter().filter(|l| !l.primary && live.contains(&l.addr)) {
                follows.insert(line.addr.clone(), addr_of(line.primary_id.as_deref()?)?);
            }
            if agreed.as_ref().is_some_and(|a| *a != follows) {
                return None;
            }
            agreed = Some(follows);
        }
        agreed
    }

    /// `addr`'s `CLUSTER NODES`, if it answers.
    fn view(&self, addr: &NodeAddr) -> Option<Vec<NodeLine>> {
        self.lines(addr).ok()
    }

    fn lines(&self, addr: &NodeAddr) -> Result<Vec<NodeLine>, Error> {
        let text: String = self.node_query(addr, redis::cmd("CLUSTER").arg("NODES"))?;
        Ok(text.lines().filter_map(NodeLine::parse).collect())
    }

    fn node_query<T: redis::FromRedisValue>(
        &self,
        addr: &NodeAddr,
        cmd: &redis::Cmd,
    ) -> Result<T, Error> {
        query(addr, &Access::default(), cmd).map_err(Error::Redis)
    }

    /// Polls `check` until it returns a value or the cluster's timeout passes; the error then
    /// carries every node's view.
    fn wait_until<T>(
        &self,
        what: &str,
        mut check: impl FnMut(&Self) -> Option<T>,
    ) -> Result<T, Error> {
        let deadline = Instant::now() + self.options.timeout;
        loop {
            if let Some(value) = check(self) {
                return Ok(value);
            }
            if Instant::now() >= deadline {
                return Err(self.timeout_error(what));
            }
            thread::sleep(POLL);
        }
    }

    fn timeout_error(&self, what: &str) -> Error {
        let mut state = String::new();
        for node in &self.nodes {
            let addr = node.addr();
            let view: Result<String, Error> = if node.is_running() {
                self.node_query(&addr, redis::cmd("CLUSTER").arg("NODES"))
            } else {
                Ok("(not running)".to_owned())
            };
            let view = view.unwrap_or_else(|err| format!("(no answer: {err})"));
            state.push_str(&format!(
                "  {addr}:\n    {}\n",
                view.trim().replace('\n', "\n    ")
            ));
        }
        state.push_str(&format!("  logs: {}\n", self.root.display()));
        Error::Timeout {
            what: what.to_owned(),
            state,
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for process in &mut self.nodes {
            // Best effort: a process that is already gone is fine.
            let _ = process.kill();
        }
        if thread::panicking() {
            eprintln!("testkit: logs kept in {}", self.root.display());
        } else {
            let _ = fs::remove_dir_all(&self.root);
        }
    }
}

/// A slot on its way to another primary, from [`Cluster::start_migration`].
#[derive(Debug)]
pub struct Migration<'a> {
    cluster: &'a Cluster,
    slot: u16,
    from: NodeAddr,
    to: NodeAddr,
    to_id: String,
}

impl Migration<'_> {
    /// Moves every key of the slot its owner still holds to the new owner (`MIGRATE`, 100 keys
    /// at a time); returns how many it moved.
    ///
    /// # Errors
    ///
    /// [`Error::Redis`] when a node refuses.
    pub fn move_keys(&self) -> Result<usize, Error> {
        let mut moved = 0;
        loop {
            let keys: Vec<String> = self.cluster.node_query(
                &self.from,
                redis::cmd("CLUSTER")
                    .arg("GETKEYSINSLOT")
                    .arg(self.slot)
                    .arg(100),
            )?;
            if keys.is_empty() {
                return Ok(moved);
            }
            let migrate = redis::cmd("MIGRATE")
                .arg(&self.to.host)
                .arg(self.to.port)
                .arg("")
                .arg(0)
                .arg(5000)
                .arg("KEYS")
                .arg(&keys)
                .clone();
            self.cluster.node_query::<()>(&self.from, &migrate)?;
            moved += keys.len();
        }
    }

    /// Gives the slot to the new owner on every primary (the new owner first, then the old
    /// one, as `redis-cli` does; replicas refuse `SETSLOT` and learn it from theirs), after
    /// moving the keys left; waits until every node agrees.
    ///
    /// # Errors
    ///
    /// [`Error::Redis`] when a node refuses; [`Error::Timeout`] when they do not agree.
    pub fn finish(self) -> Result<(), Error> {
        self.move_keys()?;
        let node = redis::cmd("CLUSTER")
            .arg("SETSLOT")
            .arg(self.slot)
            .arg("NODE")
            .arg(&self.to_id)
            .clone();
        let mut order = vec![self.to.clone(), self.from.clone()];
        order.extend(
            self.cluster
                .primaries()?
                .into_iter()
                .filter(|a| *a != self.to && *a != self.from),
        );
        for addr in &order {
            self.cluster.node_query::<()>(addr, &node)?;
        }
        self.cluster
            .wait_until("the nodes to agree on the slot's new owner", |c| {
                (c.agreed()?.get(&self.slot) == Some(&self.to)).then_some(())
            })
    }
}

/// A free loopback port whose cluster bus port (+10000) is free too.
fn free_bus_port() -> Result<u16, Error> {
    loop {
        let port = free_port().map_err(io_error("pick a free port"))?;
        let Some(bus) = port.checked_add(BUS_OFFSET) else {
            continue;
        };
        if TcpListener::bind(("127.0.0.1", bus)).is_ok() {
            return Ok(port);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_nodes_lines_are_read() {
        let primary = NodeLine::parse(
            "07c3 127.0.0.1:30001@40001,host myself,master - 0 0 1 connected 0-5460 5462 \
             [5463->-e7d1]",
        )
        .unwrap();
        assert_eq!(primary.addr, NodeAddr::new("127.0.0.1", 30001));
        assert!(primary.primary && !primary.failed && primary.primary_id.is_none());
        assert_eq!(primary.slots, vec![(0, 5460), (5462, 5462)]);
        let replica = NodeLine::parse(
            "e7d1 127.0.0.1:30004@40004 slave,fail 07c3 1700000000000 0 1 disconnected",
        )
        .unwrap();
        assert!(!replica.primary && replica.failed);
        assert_eq!(replica.primary_id.as_deref(), Some("07c3"));
        assert!(replica.slots.is_empty());
        assert_eq!(NodeLine::parse("garbage"), None);
    }
}
