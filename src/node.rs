//! Redis nodes: their addresses, opening a connection to one with every wait bounded, and
//! asking a node its role.
//!
//! A timeout bounds the whole operation it names. redis-rs reads each reply of a pipelined
//! request with the full read timeout, so a node that accepts connections and never answers
//! costs one timeout per reply. Hence: connections skip redis-rs's `CLIENT SETINFO` setup
//! pipeline, `SELECT` runs after the handshake within what is left of the connect timeout, and
//! a pipelined check reads each reply within its share of the read timeout.

use std::{
    collections::HashMap,
    fmt,
    time::{Duration, Instant},
};

use redis::{
    ConnectionAddr, ErrorKind, IntoConnectionInfo, RedisConnectionInfo, RedisError, RedisResult,
    Role, Value, io::tcp::TcpSettings,
};

/// The address of a Redis node (master, replica or sentinel), as the sentinels announce it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeAddr {
    /// Host name or IP address.
    pub host: String,
    /// TCP port.
    pub port: u16,
}

impl NodeAddr {
    /// Makes an address from a host and a port.
    pub fn new(host: impl Into<String>, port: u16) -> Self {
        NodeAddr {
            host: host.into(),
            port,
        }
    }
}

impl fmt::Display for NodeAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// Rewrites the addresses sentinels announce into addresses this client can reach (Docker,
/// NAT): exact pairs first, then the function, else the address as announced.
#[derive(Clone, Debug, Default)]
pub(crate) struct AddressMap {
    pub(crate) exact: std::collections::HashMap<NodeAddr, NodeAddr>,
    pub(crate) function: Option<MapFunction>,
}

/// The general form of an address map: `None` keeps the address as announced.
pub(crate) type MapFn = dyn Fn(&NodeAddr) -> Option<NodeAddr> + Send + Sync;

/// A user's address function, shared; shows as `<function>`.
#[derive(Clone)]
pub(crate) struct MapFunction(pub(crate) std::sync::Arc<MapFn>);

impl fmt::Debug for MapFunction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<function>")
    }
}

impl AddressMap {
    /// The address to connect to for `announced`.
    pub(crate) fn apply(&self, announced: NodeAddr) -> NodeAddr {
        if let Some(mapped) = self.exact.get(&announced) {
            return mapped.clone();
        }
        match &self.function {
            Some(MapFunction(function)) => function(&announced).unwrap_or(announced),
            None => announced,
        }
    }
}

/// How to reach one kind of node (data nodes or sentinels): credentials, protocol and timeouts.
#[derive(Debug, Clone)]
pub(crate) struct NodeSettings {
    pub(crate) redis: RedisConnectionInfo,
    /// `CLIENT SETNAME` on every connection, if set.
    pub(crate) client_name: Option<String>,
    /// `TCP_NODELAY` and keepalive.
    pub(crate) tcp: TcpSettings,
    /// Durable mode (data nodes only).
    pub(crate) durability: Option<crate::Durability>,
    /// TLS, when the pool speaks it.
    #[cfg(feature = "tls")]
    pub(crate) tls: Option<crate::TlsOptions>,
    pub(crate) connect_timeout: Duration,
    pub(crate) read_timeout: Duration,
    pub(crate) write_timeout: Duration,
}

/// Opens a connection to `addr`: TCP connect, `HELLO`/`AUTH` and `SELECT` all within
/// `connect_timeout` together, then read and write timeouts on every later call.
pub(crate) fn connect(addr: &NodeAddr, settings: &NodeSettings) -> RedisResult<redis::Connection> {
    let deadline = Instant::now() + settings.connect_timeout;
    let db = settings.redis.db();
    let redis = settings.redis.clone().set_db(0).set_skip_set_lib_name();
    let client = client(addr, settings, redis)?;
    let mut conn = client.get_connection_with_timeout(settings.connect_timeout)?;
    // The db and the name in one round trip, after the handshake.
    let mut setup = redis::pipe();
    if db != 0 {
        setup.cmd("SELECT").arg(db).ignore();
    }
    if let Some(name) = &settings.client_name {
        setup.cmd("CLIENT").arg("SETNAME").arg(name).ignore();
    }
    if !setup.is_empty() {
        bound(&conn, deadline)?;
        setup.query::<()>(&mut conn)?;
    }
    conn.set_read_timeout(Some(settings.read_timeout))?;
    conn.set_write_timeout(Some(settings.write_timeout))?;
    Ok(conn)
}

/// A client for `addr`, in TLS when the settings say so.
fn client(
    addr: &NodeAddr,
    settings: &NodeSettings,
    redis: RedisConnectionInfo,
) -> RedisResult<redis::Client> {
    #[cfg(feature = "tls")]
    if let Some(tls) = &settings.tls {
        let info = ConnectionAddr::TcpTls {
            host: addr.host.clone(),
            port: addr.port,
            insecure: false,
            tls_params: None,
        }
        .into_connection_info()?
        .set_redis_settings(redis)
        .set_tcp_settings(settings.tcp.clone());
        return redis::Client::build_with_tls(info, tls.certificates());
    }
    #[cfg(not(feature = "tls"))]
    let _ = settings;
    let info = ConnectionAddr::Tcp(addr.host.clone(), addr.port)
        .into_connection_info()?
        .set_redis_settings(redis)
        .set_tcp_settings(settings.tcp.clone());
    redis::Client::open(info)
}

/// Sets the read and write timeouts of `conn` to what is left until `deadline`; a timeout
/// error when nothing is left.
pub(crate) fn bound(conn: &redis::Connection, deadline: Instant) -> RedisResult<()> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return Err(crate::outcome::timed_out());
    }
    conn.set_read_timeout(Some(left))?;
    conn.set_write_timeout(Some(left))
}

/// A node's role, as `ROLE` or `HELLO` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NodeRole {
    Master,
    /// A replica linked to its master (`ROLE`'s state `connected`; `HELLO` cannot tell, and
    /// says replica).
    Replica,
    /// A replica that is not linked to its master: still connecting, syncing, or cut off (its
    /// data may be any age, or the master it followed before a failover).
    UnlinkedReplica,
    Sentinel,
    Other,
}

impl NodeRole {
    /// The name Redis itself uses, for messages and events.
    pub(crate) fn name(self) -> &'static str {
        match self {
            NodeRole::Master => "master",
            NodeRole::Replica => "replica",
            NodeRole::UnlinkedReplica => "replica without a link to its master",
            NodeRole::Sentinel => "sentinel",
            NodeRole::Other => "unknown role",
        }
    }

    pub(crate) fn from_role(role: &Role) -> Self {
        match role {
            Role::Primary { .. } => NodeRole::Master,
            Role::Replica {
                replication_state, ..
            } if replication_state == "connected" => NodeRole::Replica,
            Role::Replica { .. } => NodeRole::UnlinkedReplica,
            Role::Sentinel { .. } => NodeRole::Sentinel,
            _ => NodeRole::Other,
        }
    }

    /// Reads the `role` field of a `HELLO` reply (a map in RESP3, a flat list in RESP2).
    fn from_hello(reply: Value) -> RedisResult<Self> {
        let fields: HashMap<String, Value> = redis::from_redis_value(reply)?;
        let role: String = match fields.get("role") {
            Some(value) => redis::from_redis_value_ref(value)?,
            None => {
                return Err(RedisError::from((
                    ErrorKind::UnexpectedReturnType,
                    "HELLO reply without a role",
                )));
            }
        };
        Ok(match role.as_str() {
            "master" => NodeRole::Master,
            "replica" | "slave" => NodeRole::Replica,
            _ => NodeRole::Other,
        })
    }
}

/// How a data node is asked its role. `ROLE` is in the `@admin` and `@dangerous` ACL
/// categories, which least-privilege users (`+@all -@dangerous`) lack; `HELLO` is a connection
/// command every user may run, and its reply carries the role too. It is sent with the
/// connection's own protocol version, which changes nothing (Redis 6.0 refuses `HELLO` with no
/// argument).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RoleProbe {
    Role,
    Hello,
}

impl RoleProbe {
    pub(crate) fn command(self) -> &'static str {
        match self {
            RoleProbe::Role => "ROLE",
            RoleProbe::Hello => "HELLO",
        }
    }

    /// Sends `PING` (when `ping`) and the probe in one round trip on `conn`, and reads the
    /// role. Each reply is read within its share of `read_timeout`, so a node that never
    /// answers costs `read_timeout` in all; the steady read timeout is restored afterwards.
    pub(crate) fn ask(
        self,
        conn: &mut impl redis::ConnectionLike,
        ping: bool,
        protocol: redis::ProtocolVersion,
    ) -> RedisResult<NodeRole> {
        self.ask_listing(conn, ping, protocol).map(|(role, _)| role)
    }

    /// As [`ask`](Self::ask), with the replicas a master lists as connected, by the address
    /// they announce (`ROLE` tells, `HELLO` does not).
    pub(crate) fn ask_listing(
        self,
        conn: &mut impl redis::ConnectionLike,
        ping: bool,
        protocol: redis::ProtocolVersion,
    ) -> RedisResult<(NodeRole, Option<Vec<NodeAddr>>)> {
        let mut pipe = redis::pipe();
        if ping {
            pipe.cmd("PING");
        }
        pipe.cmd(self.command());
        if self == RoleProbe::Hello {
            pipe.arg(match protocol {
                redis::ProtocolVersion::RESP2 => 2,
                _ => 3,
            });
        }
        let mut replies: Vec<Value> = pipe.query(conn)?;
        let reply = replies.pop().ok_or_else(|| {
            RedisError::from((
                ErrorKind::UnexpectedReturnType,
                "no reply to the role probe",
            ))
        })?;
        if ping {
            let pong: String = redis::from_redis_value(replies.pop().unwrap_or(Value::Nil))?;
            if pong != "PONG" {
                return Err(RedisError::from((
                    ErrorKind::UnexpectedReturnType,
                    "PING did not answer PONG",
                    pong,
                )));
            }
        }
        match self {
            RoleProbe::Role => {
                let role: Role = redis::from_redis_value(reply)?;
                let node_role = NodeRole::from_role(&role);
                let replicas = match role {
                    Role::Primary { replicas, .. } => Some(
                        replicas
                            .into_iter()
                            .map(|r| NodeAddr::new(r.ip, r.port))
                            .collect(),
                    ),
                    _ => None,
                };
                Ok((node_role, replicas))
            }
            RoleProbe::Hello => NodeRole::from_hello(reply).map(|role| (role, None)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv6_addresses_are_bracketed() {
        assert_eq!(NodeAddr::new("::1", 6379).to_string(), "[::1]:6379");
        assert_eq!(NodeAddr::new("10.0.0.1", 6379).to_string(), "10.0.0.1:6379");
    }

    #[test]
    fn a_replica_counts_as_one_only_while_linked_to_its_master() {
        let replica = |state: &str| Role::Replica {
            primary_ip: "10.0.0.1".into(),
            primary_port: 6379,
            replication_state: state.into(),
            data_received: 0,
        };
        assert_eq!(
            NodeRole::from_role(&replica("connected")),
            NodeRole::Replica
        );
        for state in ["connect", "connecting", "handshake", "sync", "none"] {
            assert_eq!(
                NodeRole::from_role(&replica(state)),
                NodeRole::UnlinkedReplica,
                "{state}"
            );
        }
    }

    #[test]
    fn the_role_is_read_from_a_hello_reply_in_either_protocol() {
        let text = |s: &str| Value::BulkString(s.as_bytes().to_vec());
        let resp2 = Value::Array(vec![
            text("server"),
            text("redis"),
            text("role"),
            text("replica"),
        ]);
        assert_eq!(NodeRole::from_hello(resp2).unwrap(), NodeRole::Replica);
        let resp3 = Value::Map(vec![(text("role"), text("master"))]);
        assert_eq!(NodeRole::from_hello(resp3).unwrap(), NodeRole::Master);
        assert!(NodeRole::from_hello(Value::Array(vec![text("proto"), Value::Int(2)])).is_err());
        assert!(NodeRole::from_hello(Value::Int(1)).is_err());
    }
}
