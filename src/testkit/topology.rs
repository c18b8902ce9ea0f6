//! [`Topology`]: a running local Sentinel topology and its options.

use std::{
    collections::{BTreeSet, HashMap},
    fs, io,
    path::PathBuf,
    thread,
    time::{Duration, Instant},
};

use redis::Role;

use super::{
    Error, Listener,
    error::io_error,
    process::{Access, Binaries, Process, ServerVersion, free_port, query, unique_dir},
};
use crate::{Builder, NodeAddr, Secret, SentinelPool};

/// How often readiness and state conditions are polled.
const POLL: Duration = Duration::from_millis(20);
/// How often a process whose port was taken in the meantime is started again on a new port.
const START_ATTEMPTS: usize = 4;

/// Options of a [`Topology`]; made by [`Topology::builder`]. Its `Debug` output shows no
/// password.
#[derive(Clone, Debug)]
#[must_use]
pub struct TopologyBuilder {
    service: String,
    replicas: usize,
    sentinels: usize,
    down_after: Duration,
    failover_timeout: Duration,
    redis_defaults: bool,
    appendonly: bool,
    password: Option<Secret>,
    sentinel_password: Option<Secret>,
    timeout: Duration,
    hostnames: bool,
    #[cfg(feature = "tls")]
    tls: bool,
}

impl Default for TopologyBuilder {
    fn default() -> Self {
        TopologyBuilder {
            service: "mymaster".into(),
            replicas: 2,
            sentinels: 3,
            down_after: Duration::from_millis(1000),
            failover_timeout: Duration::from_secs(10),
            redis_defaults: false,
            appendonly: false,
            password: None,
            sentinel_password: None,
            timeout: Duration::from_secs(30),
            hostnames: false,
            #[cfg(feature = "tls")]
            tls: false,
        }
    }
}

impl TopologyBuilder {
    /// The service (master) name the sentinels monitor.
    ///
    /// Defaults to `"mymaster"`.
    pub fn service(mut self, name: impl Into<String>) -> Self {
        self.service = name.into();
        self
    }

    /// How many replicas.
    ///
    /// Defaults to 2.
    pub fn replicas(mut self, replicas: usize) -> Self {
        self.replicas = replicas;
        self
    }

    /// How many sentinels; the quorum is a majority of them.
    ///
    /// Defaults to 3.
    pub fn sentinels(mut self, sentinels: usize) -> Self {
        self.sentinels = sentinels.max(1);
        self
    }

    /// Sentinel's `down-after-milliseconds`: how long a master may be silent before it is
    /// considered down, which bounds how long a crash takes to fail over.
    ///
    /// Defaults to 1 second (production default: 30 seconds).
    pub fn down_after(mut self, down_after: Duration) -> Self {
        self.down_after = down_after;
        self
    }

    /// Sentinel's `failover-timeout`.
    ///
    /// Defaults to 10 seconds.
    pub fn failover_timeout(mut self, timeout: Duration) -> Self {
        self.failover_timeout = timeout;
        self
    }

    /// Keeps Redis's own replication defaults. Otherwise `repl-diskless-sync-delay` is 0, which
    /// makes failovers end seconds sooner (Redis 7 waits 5 seconds before each full sync, and
    /// the failover leader publishes `+switch-master` only after the sync).
    ///
    /// Defaults to `false`.
    pub fn redis_defaults(mut self, keep: bool) -> Self {
        self.redis_defaults = keep;
        self
    }

    /// The data nodes keep an append-only file (`appendonly yes`, fsynced every second), as
    /// durable mode's [`on_disk`](crate::Durability::on_disk) needs. Otherwise they persist
    /// nothing.
    ///
    /// Defaults to `false`.
    pub fn appendonly(mut self, enabled: bool) -> Self {
        self.appendonly = enabled;
        self
    }

    /// A `requirepass` for the data nodes (and the sentinels' `auth-pass` for them).
    ///
    /// Defaults to none.
    pub fn password(mut self, password: impl Into<String>) -> Self {
        self.password = Some(Secret::new(password.into()));
        self
    }

    /// Every node and sentinel speaks TLS only (`port 0`, `tls-port`, `tls-replication yes`)
    /// and requires client certificates (`tls-auth-clients yes`), with certificates for
    /// 127.0.0.1 from a throwaway CA made in-process at start;
    /// [`pool_builder`](Topology::pool_builder) trusts that CA and presents a client
    /// certificate it signed ([`tls_options`](Topology::tls_options)). Needs the `tls`
    /// feature.
    ///
    /// Defaults to `false`.
    #[cfg(feature = "tls")]
    pub fn tls(mut self, enabled: bool) -> Self {
        self.tls = enabled;
        self
    }

    /// Nodes are known by the hostname `localhost` instead of 127.0.0.1: replicas announce it
    /// (`replica-announce-ip`), and the sentinels monitor the master by it and announce
    /// hostnames (`resolve-hostnames`, `announce-hostnames`). [`data_addrs`](Topology::data_addrs)
    /// keeps 127.0.0.1; what the sentinels name says `localhost`.
    ///
    /// Defaults to `false`.
    pub fn hostnames(mut self, enabled: bool) -> Self {
        self.hostnames = enabled;
        self
    }

    /// A `requirepass` for the sentinels themselves, separate from the data nodes'.
    ///
    /// Defaults to none.
    pub fn sentinel_password(mut self, password: impl Into<String>) -> Self {
        self.sentinel_password = Some(Secret::new(password.into()));
        self
    }

    /// How long starting, settling and failing over may take before they fail with the
    /// topology's state.
    ///
    /// Defaults to 30 seconds.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Starts the processes and waits until the topology is settled.
    ///
    /// # Errors
    ///
    /// [`Error::MissingBinary`] with install instructions; [`Error::Exited`] or
    /// [`Error::Timeout`] with the logs or state when a node does not come up.
    pub fn start(self) -> Result<Topology, Error> {
        let binaries = Binaries::find()?;
        let root = unique_dir()?;
        #[cfg(feature = "tls")]
        let certs = if self.tls {
            Some(super::certs::make(&root)?)
        } else {
            None
        };
        let mut topology = Topology {
            options: self,
            binaries,
            root,
            data: Vec::new(),
            sentinels: Vec::new(),
            #[cfg(feature = "tls")]
            certs,
        };
        let master_port = topology.start_data_node(None)?;
        for _ in 0..topology.options.replicas {
            topology.start_data_node(Some(master_port))?;
        }
        let host = if topology.options.hostnames {
            "localhost"
        } else {
            "127.0.0.1"
        };
        let monitored = NodeAddr::new(host, master_port);
        for _ in 0..topology.options.sentinels {
            topology.start_sentinel(&monitored)?;
        }
        topology.wait_settled()?;
        Ok(topology)
    }
}

/// A running local Sentinel topology; every process is killed when it is dropped.
#[derive(Debug)]
pub struct Topology {
    options: TopologyBuilder,
    binaries: Binaries,
    root: PathBuf,
    data: Vec<Process>,
    sentinels: Vec<Process>,
    /// What clients need, when the topology speaks TLS.
    #[cfg(feature = "tls")]
    certs: Option<super::certs::Certs>,
}

impl Topology {
    /// Starts the default topology: 1 master, 2 replicas, 3 sentinels, `down-after` 1 second.
    ///
    /// # Errors
    ///
    /// As [`TopologyBuilder::start`].
    pub fn start() -> Result<Topology, Error> {
        TopologyBuilder::default().start()
    }

    /// Starts a builder to change the defaults.
    pub fn builder() -> TopologyBuilder {
        TopologyBuilder::default()
    }

    /// The service (master) name.
    pub fn service(&self) -> &str {
        &self.options.service
    }

    /// The former name of [`service`](Self::service).
    #[deprecated(since = "0.1.0", note = "renamed `service`")]
    pub fn service_name(&self) -> &str {
        self.service()
    }

    /// The server the topology runs (from `redis-server --version`, or `valkey-server`'s), for
    /// a test that needs a newer one to say so and skip.
    pub fn server_version(&self) -> ServerVersion {
        self.binaries.version
    }

    /// The sentinels' URLs (`redis://127.0.0.1:port`), those killed included.
    pub fn sentinel_urls(&self) -> Vec<String> {
        self.sentinels
            .iter()
            .map(|s| format!("redis://127.0.0.1:{}", s.port))
            .collect()
    }

    /// The sentinels' addresses, those killed included.
    pub fn sentinel_addrs(&self) -> Vec<NodeAddr> {
        self.sentinels.iter().map(|s| s.addr()).collect()
    }

    /// Every data node's address (master and replicas), those killed included.
    pub fn data_addrs(&self) -> Vec<NodeAddr> {
        self.data.iter().map(|s| s.addr()).collect()
    }

    /// The process id of the node at `addr` (data node or sentinel), while it runs: for
    /// tools that show what they started. `None` for an address not in the topology or a
    /// node killed.
    pub fn pid(&self, addr: &NodeAddr) -> Option<u32> {
        self.data
            .iter()
            .chain(&self.sentinels)
            .find(|node| &node.addr() == addr)
            .and_then(Process::pid)
    }

    /// A pool builder for this topology: its sentinels, service name and passwords.
    pub fn pool_builder(&self) -> Builder {
        let mut builder = SentinelPool::builder(self.sentinel_urls(), self.service());
        if let Some(password) = self.options.password.as_ref().map(Secret::expose) {
            builder = builder.password(password);
        }
        if let Some(password) = self.options.sentinel_password.as_ref().map(Secret::expose) {
            builder = builder.sentinel_password(password);
        }
        #[cfg(feature = "tls")]
        if let Some(tls) = self.tls_options() {
            builder = builder.tls(tls);
        }
        builder
    }

    /// The certificate (PEM) of the CA that signed the nodes' certificates, when the topology
    /// speaks TLS.
    #[cfg(feature = "tls")]
    pub fn ca_certificate_pem(&self) -> Option<&[u8]> {
        self.certs.as_ref().map(|c| c.ca.as_slice())
    }

    /// TLS options that reach this topology: its CA as root, and a client certificate it
    /// signed; `None` when the topology does not speak TLS.
    #[cfg(feature = "tls")]
    pub fn tls_options(&self) -> Option<crate::TlsOptions> {
        self.certs.as_ref().map(|c| {
            crate::TlsOptions::default()
                .root_certificates_pem(c.ca.clone())
                .client_certificate_pem(c.client_cert.clone(), c.client_key.clone())
        })
    }

    /// How the kit reaches its data nodes.
    fn data_access(&self) -> Access {
        Access {
            password: self.options.password.as_ref().map(|p| p.expose().clone()),
            #[cfg(feature = "tls")]
            tls: self.tls_options(),
        }
    }

    /// How the kit reaches its sentinels.
    fn sentinel_access(&self) -> Access {
        Access {
            password: self
                .options
                .sentinel_password
                .as_ref()
                .map(|p| p.expose().clone()),
            #[cfg(feature = "tls")]
            tls: self.tls_options(),
        }
    }

    /// The lines of a node's configuration that say where it listens: plain `port`, or
    /// `tls-port` with the certificates and TLS replication.
    fn listen_conf(&self, port: u16) -> String {
        #[cfg(feature = "tls")]
        if self.certs.is_some() {
            let certs = self.root.join("certs");
            return format!(
                "port 0\ntls-port {port}\ntls-cert-file {dir}/server.crt\n\
                 tls-key-file {dir}/server.key\ntls-ca-cert-file {dir}/ca.crt\n\
                 tls-auth-clients yes\ntls-replication yes\n",
                dir = certs.display()
            );
        }
        format!("port {port}\n")
    }

    /// The master the live sentinels name, when they all name the same one.
    ///
    /// # Errors
    ///
    /// [`Error::Timeout`] when they disagree or none answers within a few seconds.
    pub fn master(&self) -> Result<NodeAddr, Error> {
        self.wait_until(
            "the sentinels to agree on a master",
            Duration::from_secs(5),
            |t| t.agreed_master(),
        )
    }

    /// Asks a sentinel to fail over (`SENTINEL FAILOVER`), waits until every live sentinel
    /// names the promoted node and the node answers `ROLE` as master, and returns its address.
    /// The demoted master keeps running; it becomes a replica of the new one. When Sentinel
    /// gives the failover up (its replica did not take the promotion within
    /// `failover-timeout`), it is asked again.
    ///
    /// # Errors
    ///
    /// [`Error::Timeout`] with the topology's state when the failover does not complete.
    pub fn failover(&self) -> Result<NodeAddr, Error> {
        self.failover_as(false)
    }

    /// As [`failover`](Self::failover), with `SENTINEL FAILOVER <master> COORDINATED`: the
    /// master pauses writes, waits until the replica has them all and hands over by itself
    /// (`FAILOVER TO`). Valkey 9 and later
    /// ([`ServerVersion::coordinated_failover`](super::ServerVersion::coordinated_failover));
    /// other servers refuse it.
    ///
    /// # Errors
    ///
    /// [`Error::Timeout`] with the topology's state when the failover does not complete.
    pub fn failover_coordinated(&self) -> Result<NodeAddr, Error> {
        self.failover_as(true)
    }

    fn failover_as(&self, coordinated: bool) -> Result<NodeAddr, Error> {
        let old = self.master()?;
        let deadline = Instant::now() + self.options.timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let asked = self.wait_until("a sentinel to accept SENTINEL FAILOVER", left, |t| {
                let sentinel = t.sentinels.iter().find(|s| s.is_running())?;
                let mut cmd = redis::cmd("SENTINEL");
                cmd.arg("FAILOVER").arg(&t.options.service);
                if coordinated {
                    cmd.arg("COORDINATED");
                }
                // NOGOODSLAVE or INPROG: a replica is not ready yet, or a failover still runs.
                t.sentinel_query::<String>(sentinel, &cmd)
                    .ok()
                    .map(|_| sentinel.addr())
            })?;
            // Sentinel gives a promotion up when its replica does not turn master within
            // `failover-timeout` (`-failover-abort-slave-timeout`): one still loading a full
            // resync answers `REPLICAOF NO ONE` with LOADING, which Sentinel does not send
            // again. Ask again then, as an operator would.
            let left = deadline.saturating_duration_since(Instant::now());
            let new = self.wait_until(&format!("a master other than {old}"), left, |t| {
                let new = t.new_master(&old);
                (new.is_some() || t.gave_up(&asked, &old)).then_some(new)
            })?;
            if let Some(new) = new {
                return Ok(new);
            }
        }
    }

    /// The master every live sentinel names, when it is not `old` and answers `ROLE` as
    /// master.
    fn new_master(&self, old: &NodeAddr) -> Option<NodeAddr> {
        let master = self.agreed_master()?;
        let is_master = matches!(
            self.data_query::<Role>(&master, &redis::cmd("ROLE")),
            Ok(Role::Primary { .. })
        );
        (master != *old && is_master).then_some(master)
    }

    /// Whether `sentinel`, asked to fail `old` over, runs no failover and still names it.
    fn gave_up(&self, sentinel: &NodeAddr, old: &NodeAddr) -> bool {
        let Some(process) = self.sentinels.iter().find(|s| s.addr() == *sentinel) else {
            return false;
        };
        let mut cmd = redis::cmd("SENTINEL");
        cmd.arg("MASTER").arg(&self.options.service);
        let Ok(master) = self.sentinel_query::<HashMap<String, String>>(process, &cmd) else {
            return false;
        };
        let field = |name: &str| master.get(name).map_or("", String::as_str);
        field("ip") == old.host
            && field("port") == old.port.to_string()
            && !field("flags").contains("failover_in_progress")
    }

    /// Kills the current master with SIGKILL and returns its address; the sentinels fail over
    /// after `down_after`. Use [`wait_for_new_master`](Self::wait_for_new_master) to wait for
    /// it, and [`restart`](Self::restart) to bring the node back (as a replica).
    ///
    /// # Errors
    ///
    /// When the master cannot be found, or the kill fails.
    pub fn kill_master(&mut self) -> Result<NodeAddr, Error> {
        let master = self.master()?;
        let process = self
            .data
            .iter_mut()
            .find(|p| p.port == master.port)
            .expect("the sentinels name one of our data nodes");
        process.kill()?;
        Ok(master)
    }

    /// Waits until every live sentinel names a master other than `old`, and that node answers
    /// `ROLE` as master; returns it.
    ///
    /// # Errors
    ///
    /// [`Error::Timeout`] with the topology's state.
    pub fn wait_for_new_master(
        &self,
        old: &NodeAddr,
        timeout: Duration,
    ) -> Result<NodeAddr, Error> {
        self.wait_until(&format!("a master other than {old}"), timeout, |t| {
            t.new_master(old)
        })
    }

    /// Waits until the topology is settled: every live sentinel names the same master, sees
    /// every live replica linked to it and every other live sentinel, and the master lists
    /// every live replica. A failover can start from such a state.
    ///
    /// # Errors
    ///
    /// [`Error::Timeout`] with the topology's state.
    pub fn wait_settled(&self) -> Result<(), Error> {
        self.wait_until("the topology to settle", self.options.timeout, |t| {
            t.is_settled()?.then_some(())
        })
    }

    /// Restarts a data node that was killed, from its own config file; the sentinels turn a
    /// returning old master into a replica.
    ///
    /// # Errors
    ///
    /// When the node is unknown, still running, or does not come up.
    pub fn restart(&mut self, addr: &NodeAddr) -> Result<(), Error> {
        let binaries = self.binaries.clone();
        let timeout = self.options.timeout;
        let (data, sentinel) = (self.data_access(), self.sentinel_access());
        let process = self.process(addr)?;
        let access = if process.is_sentinel { sentinel } else { data };
        process.spawn(&binaries)?;
        process.wait_ready(&access, timeout)
    }

    /// Kills sentinel `index` (in the order of [`sentinel_urls`](Self::sentinel_urls)) with
    /// SIGKILL.
    ///
    /// # Errors
    ///
    /// When the kill fails.
    ///
    /// # Panics
    ///
    /// When there is no sentinel `index`.
    pub fn kill_sentinel(&mut self, index: usize) -> Result<NodeAddr, Error> {
        let sentinel = &mut self.sentinels[index];
        sentinel.kill()?;
        Ok(sentinel.addr())
    }

    /// Starts one more sentinel monitoring the current master; it joins the group through the
    /// master's hello channel. Returns its address.
    ///
    /// # Errors
    ///
    /// When the master cannot be found or the sentinel does not come up.
    pub fn add_sentinel(&mut self) -> Result<NodeAddr, Error> {
        let master = self.master()?;
        self.start_sentinel(&master)?;
        Ok(self.sentinels.last().expect("just started").addr())
    }

    /// Starts a second master with one replica, and has every live sentinel monitor it as
    /// `service`, with the topology's timings: a failover of another service on the same
    /// sentinels. Returns the master's address. The nodes join
    /// [`data_addrs`](Self::data_addrs); everything else in this kit keeps serving the first
    /// service.
    ///
    /// # Errors
    ///
    /// When a node does not come up, a sentinel refuses the service, or the sentinels do not
    /// see its replica in time.
    pub fn add_service(&mut self, service: &str) -> Result<NodeAddr, Error> {
        let master = NodeAddr::new("127.0.0.1", self.start_data_node(None)?);
        let replica = NodeAddr::new("127.0.0.1", self.start_data_node(Some(master.port))?);
        let quorum = (self.options.sentinels / 2 + 1).to_string();
        for sentinel in self.live_sentinels() {
            let mut monitor = redis::cmd("SENTINEL");
            monitor
                .arg("MONITOR")
                .arg(service)
                .arg(&master.host)
                .arg(master.port)
                .arg(&quorum);
            self.sentinel_query::<()>(sentinel, &monitor)?;
            let mut set = redis::cmd("SENTINEL");
            set.arg("SET")
                .arg(service)
                .arg("down-after-milliseconds")
                .arg(self.options.down_after.as_millis() as u64)
                .arg("failover-timeout")
                .arg(self.options.failover_timeout.as_millis() as u64);
            if let Some(password) = self.options.password.as_ref().map(Secret::expose) {
                set.arg("auth-pass").arg(password);
            }
            self.sentinel_query::<()>(sentinel, &set)?;
        }
        let others = self.live_sentinels().count().saturating_sub(1).to_string();
        self.wait_until(
            &format!("every sentinel to see {service}'s replica and the other sentinels"),
            self.options.timeout,
            |t| {
                t.live_sentinels()
                    .all(|sentinel| {
                        let mut cmd = redis::cmd("SENTINEL");
                        cmd.arg("MASTER").arg(service);
                        let master = t.sentinel_query::<HashMap<String, String>>(sentinel, &cmd);
                        let mut cmd = redis::cmd("SENTINEL");
                        cmd.arg("REPLICAS").arg(service);
                        let replicas =
                            t.sentinel_query::<Vec<HashMap<String, String>>>(sentinel, &cmd);
                        let sees_others = master.is_ok_and(|m| {
                            m.get("num-other-sentinels").map(String::as_str) == Some(&others)
                        });
                        let sees_replica = replicas.is_ok_and(|list| {
                            list.iter().any(|r| {
                                r.get("port").map(String::as_str) == Some(&replica.port.to_string())
                                    && r.get("flags").map(String::as_str) == Some("slave")
                                    && r.get("master-link-status").map(String::as_str) == Some("ok")
                            })
                        });
                        sees_others && sees_replica
                    })
                    .then_some(())
            },
        )?;
        Ok(master)
    }

    /// Subscribes to `channel` (`"+switch-master"`, say) on every live sentinel, independently
    /// of any pool: each publication is received with the instant it arrived, to measure how
    /// fast a pool reacts.
    ///
    /// # Errors
    ///
    /// When a sentinel cannot be subscribed to.
    pub fn listen(&self, channel: &str) -> Result<Listener, Error> {
        Listener::start(
            self.live_sentinels().map(Process::addr).collect(),
            channel,
            &self.sentinel_access(),
        )
    }

    /// Kills any node of the topology, data node or sentinel, with SIGKILL (a data node that
    /// just became master without the sentinels naming it yet, say). The kit's waits leave it
    /// out from then on; [`restart`](Self::restart) brings a data node back.
    ///
    /// # Errors
    ///
    /// When the node is not one of this topology's, or the kill fails.
    pub fn kill(&mut self, addr: &NodeAddr) -> Result<(), Error> {
        self.process(addr)?.kill()
    }

    /// Freezes a node with SIGSTOP: the kernel still accepts its connections, the process never
    /// answers. This is what a hung node looks like from outside. Until it is resumed, the
    /// kit's own waits and failovers leave it out (a frozen sentinel is not asked).
    ///
    /// # Errors
    ///
    /// When the node is not one of this topology's running nodes, or the signal fails.
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

    fn process(&mut self, addr: &NodeAddr) -> Result<&mut Process, Error> {
        self.data
            .iter_mut()
            .chain(self.sentinels.iter_mut())
            .find(|p| p.addr() == *addr)
            .ok_or_else(|| Error::Io {
                context: format!("find node {addr}"),
                source: io::Error::new(io::ErrorKind::NotFound, "not a node of this topology"),
            })
    }

    fn start_data_node(&mut self, master_port: Option<u16>) -> Result<u16, Error> {
        let mut last = None;
        for _ in 0..START_ATTEMPTS {
            let port = free_port().map_err(io_error("pick a free port"))?;
            let dir = self.root.join(format!("redis-{port}"));
            fs::create_dir_all(&dir).map_err(io_error("create a node folder"))?;
            let mut conf = format!(
                "{listen}bind 127.0.0.1\nprotected-mode no\ndaemonize no\ndir {dir}\n\
                 logfile {log}\nsave \"\"\nappendonly {appendonly}\n",
                listen = self.listen_conf(port),
                dir = dir.display(),
                log = dir.join("redis.log").display(),
                appendonly = if self.options.appendonly { "yes" } else { "no" },
            );
            // `DEBUG` is refused from 7.0 on unless enabled; 6.x knows no such option.
            if self.binaries.version.at_least(7, 0) {
                conf.push_str("enable-debug-command local\n");
            }
            if !self.options.redis_defaults {
                conf.push_str("repl-diskless-sync-delay 0\n");
            }
            if self.options.hostnames {
                conf.push_str("replica-announce-ip localhost\n");
            }
            if let Some(password) = self.options.password.as_ref().map(Secret::expose) {
                conf.push_str(&format!("requirepass {password}\nmasterauth {password}\n"));
            }
            if let Some(master_port) = master_port {
                conf.push_str(&format!("replicaof 127.0.0.1 {master_port}\n"));
            }
            let mut process = Process::create(&dir, port, false, &conf)?;
            process.spawn(&self.binaries)?;
            match process.wait_ready(&self.data_access(), self.options.timeout) {
                Ok(()) => {
                    self.data.push(process);
                    return Ok(port);
                }
                Err(err @ Error::Exited { .. }) => last = Some(err),
                Err(err) => return Err(err),
            }
        }
        Err(last.expect("at least one attempt"))
    }

    fn start_sentinel(&mut self, master: &NodeAddr) -> Result<(), Error> {
        let options = &self.options;
        let service = &options.service;
        let mut last = None;
        for _ in 0..START_ATTEMPTS {
            let port = free_port().map_err(io_error("pick a free port"))?;
            let dir = self.root.join(format!("sentinel-{port}"));
            fs::create_dir_all(&dir).map_err(io_error("create a sentinel folder"))?;
            let mut conf = format!(
                "{listen}{names}bind 127.0.0.1\nprotected-mode no\ndaemonize no\ndir {dir}\n\
                 logfile {log}\n\
                 sentinel monitor {service} {host} {mport} {quorum}\n\
                 sentinel down-after-milliseconds {service} {down}\n\
                 sentinel failover-timeout {service} {failover}\n\
                 sentinel parallel-syncs {service} 1\n",
                listen = self.listen_conf(port),
                // Before the monitor line, which names the master by hostname.
                names = if options.hostnames {
                    "sentinel resolve-hostnames yes\nsentinel announce-hostnames yes\n"
                } else {
                    ""
                },
                dir = dir.display(),
                log = dir.join("sentinel.log").display(),
                host = master.host,
                mport = master.port,
                quorum = options.sentinels / 2 + 1,
                down = options.down_after.as_millis(),
                failover = options.failover_timeout.as_millis(),
            );
            if let Some(password) = options.password.as_ref().map(Secret::expose) {
                conf.push_str(&format!("sentinel auth-pass {service} {password}\n"));
            }
            if let Some(password) = options.sentinel_password.as_ref().map(Secret::expose) {
                conf.push_str(&format!(
                    "requirepass {password}\nsentinel sentinel-pass {password}\n"
                ));
            }
            let mut process = Process::create(&dir, port, true, &conf)?;
            process.spawn(&self.binaries)?;
            match process.wait_ready(&self.sentinel_access(), options.timeout) {
                Ok(()) => {
                    self.sentinels.push(process);
                    return Ok(());
                }
                Err(err @ Error::Exited { .. }) => last = Some(err),
                Err(err) => return Err(err),
            }
        }
        Err(last.expect("at least one attempt"))
    }

    /// Polls `check` until it returns a value or `timeout` passes; the error then carries the
    /// topology's state.
    fn wait_until<T>(
        &self,
        what: &str,
        timeout: Duration,
        mut check: impl FnMut(&Self) -> Option<T>,
    ) -> Result<T, Error> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(value) = check(self) {
                return Ok(value);
            }
            if Instant::now() >= deadline {
                return Err(Error::Timeout {
                    what: what.to_owned(),
                    state: self.describe(),
                });
            }
            thread::sleep(POLL);
        }
    }

    fn live_sentinels(&self) -> impl Iterator<Item = &Process> {
        self.sentinels.iter().filter(|s| s.is_running())
    }

    /// The master every live sentinel names, if they agree.
    fn agreed_master(&self) -> Option<NodeAddr> {
        let mut named = None;
        for sentinel in self.live_sentinels() {
            let mut cmd = redis::cmd("SENTINEL");
            cmd.arg("GET-MASTER-ADDR-BY-NAME")
                .arg(&self.options.service);
            let (host, port): (String, u16) = self.sentinel_query(sentinel, &cmd).ok()?;
            let addr = NodeAddr::new(host, port);
            if named.get_or_insert_with(|| addr.clone()) != &addr {
                return None;
            }
        }
        named
    }

    fn is_settled(&self) -> Option<bool> {
        let master = self.agreed_master()?;
        let live_replicas: BTreeSet<u16> = self
            .data
            .iter()
            .filter(|p| p.is_running() && p.port != master.port)
            .map(|p| p.port)
            .collect();
        let Ok(Role::Primary { replicas, .. }) =
            self.data_query::<Role>(&master, &redis::cmd("ROLE"))
        else {
            return Some(false);
        };
        let linked: BTreeSet<u16> = replicas.iter().map(|r| r.port).collect();
        if !live_replicas.is_subset(&linked) {
            return Some(false);
        }
        let live_sentinels = self.live_sentinels().count();
        for sentinel in self.live_sentinels() {
            let mut cmd = redis::cmd("SENTINEL");
            cmd.arg("MASTER").arg(&self.options.service);
            let info: HashMap<String, String> = self.sentinel_query(sentinel, &cmd).ok()?;
            let others: usize = info.get("num-other-sentinels")?.parse().ok()?;
            if info.get("flags")? != "master" || others + 1 < live_sentinels {
                return Some(false);
            }
            let mut cmd = redis::cmd("SENTINEL");
            cmd.arg("REPLICAS").arg(&self.options.service);
            let seen: Vec<HashMap<String, String>> = self.sentinel_query(sentinel, &cmd).ok()?;
            let healthy: BTreeSet<u16> = seen
                .iter()
                .filter(|r| {
                    r.get("flags").is_some_and(|f| f == "slave")
                        && r.get("master-link-status").is_some_and(|s| s == "ok")
                        && r.get("master-port")
                            .is_some_and(|p| *p == master.port.to_string())
                })
                .filter_map(|r| r.get("port")?.parse().ok())
                .collect();
            if !live_replicas.is_subset(&healthy) {
                return Some(false);
            }
        }
        Some(true)
    }

    /// What each node reports, for timeout errors.
    fn describe(&self) -> String {
        let mut out = String::new();
        for process in &self.data {
            let role = if process.is_running() {
                match self.data_query::<Role>(&process.addr(), &redis::cmd("ROLE")) {
                    Ok(role) => format!("{role:?}"),
                    Err(err) => format!("error: {err}"),
                }
            } else {
                "killed".to_owned()
            };
            out.push_str(&format!("  redis {}: {role}\n", process.addr()));
        }
        for sentinel in &self.sentinels {
            let view = if sentinel.is_running() {
                let mut cmd = redis::cmd("SENTINEL");
                cmd.arg("MASTER").arg(&self.options.service);
                let master = match self.sentinel_query::<HashMap<String, String>>(sentinel, &cmd) {
                    Ok(info) => ["ip", "port", "flags", "num-slaves", "num-other-sentinels"]
                        .iter()
                        .map(|k| format!("{k}={}", info.get(*k).map_or("?", String::as_str)))
                        .collect::<Vec<_>>()
                        .join(" "),
                    Err(err) => format!("error: {err}"),
                };
                let mut cmd = redis::cmd("SENTINEL");
                cmd.arg("REPLICAS").arg(&self.options.service);
                let replicas = self
                    .sentinel_query::<Vec<HashMap<String, String>>>(sentinel, &cmd)
                    .unwrap_or_default()
                    .iter()
                    .map(|r| {
                        ["port", "flags", "master-port", "master-link-status"]
                            .iter()
                            .map(|k| r.get(*k).map_or("?", String::as_str))
                            .collect::<Vec<_>>()
                            .join("/")
                    })
                    .collect::<Vec<_>>()
                    .join(", ");
                format!("{master}; replicas (port/flags/master-port/link): {replicas}")
            } else {
                "killed".to_owned()
            };
            out.push_str(&format!("  sentinel {}: {view}\n", sentinel.addr()));
        }
        out.push_str(&format!("  logs: {}\n", self.root.display()));
        out
    }

    fn sentinel_query<T: redis::FromRedisValue>(
        &self,
        sentinel: &Process,
        cmd: &redis::Cmd,
    ) -> redis::RedisResult<T> {
        query(&sentinel.addr(), &self.sentinel_access(), cmd)
    }

    fn data_query<T: redis::FromRedisValue>(
        &self,
        addr: &NodeAddr,
        cmd: &redis::Cmd,
    ) -> redis::RedisResult<T> {
        query(addr, &self.data_access(), cmd)
    }
}

impl Drop for Topology {
    fn drop(&mut self) {
        for process in self.data.iter_mut().chain(self.sentinels.iter_mut()) {
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
