//! Redis nodes: their addresses, and opening a connection to one with every wait bounded.

use std::{fmt, time::Duration};

use redis::{
    ConnectionAddr, ErrorKind, IntoConnectionInfo, RedisConnectionInfo, RedisError, Role,
    ServerErrorKind,
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

/// How to reach one kind of node (data nodes or sentinels): credentials, protocol and timeouts.
#[derive(Debug, Clone)]
pub(crate) struct NodeSettings {
    pub(crate) redis: RedisConnectionInfo,
    pub(crate) connect_timeout: Duration,
    pub(crate) read_timeout: Duration,
    pub(crate) write_timeout: Duration,
}

/// Opens a connection to `addr`: TCP connect, `HELLO`/`AUTH` and `SELECT` all within
/// `connect_timeout`, then read and write timeouts on every later call.
pub(crate) fn connect(
    addr: &NodeAddr,
    settings: &NodeSettings,
) -> redis::RedisResult<redis::Connection> {
    let info = ConnectionAddr::Tcp(addr.host.clone(), addr.port)
        .into_connection_info()?
        .set_redis_settings(settings.redis.clone());
    let client = redis::Client::open(info)?;
    let conn = client.get_connection_with_timeout(settings.connect_timeout)?;
    conn.set_read_timeout(Some(settings.read_timeout))?;
    conn.set_write_timeout(Some(settings.write_timeout))?;
    Ok(conn)
}

/// True when the error says the credentials were missing or wrong.
pub(crate) fn is_auth_error(err: &RedisError) -> bool {
    err.kind() == ErrorKind::AuthenticationFailed
        || matches!(err.code(), Some("NOAUTH" | "WRONGPASS"))
        || err.kind() == ErrorKind::Server(ServerErrorKind::NoPerm)
}

/// The name Redis itself uses for a role, for messages and events.
pub(crate) fn role_name(role: &Role) -> &'static str {
    match role {
        Role::Primary { .. } => "master",
        Role::Replica { .. } => "replica",
        Role::Sentinel { .. } => "sentinel",
        _ => "unknown role",
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
    fn auth_errors_are_recognised_by_kind_and_code() {
        let wrongpass = redis::make_extension_error("WRONGPASS".into(), Some("invalid".into()));
        let noauth = redis::make_extension_error("NOAUTH".into(), None);
        let failed = RedisError::from((
            ErrorKind::AuthenticationFailed,
            "Password authentication failed",
        ));
        let other = redis::make_extension_error("WRONGTYPE".into(), None);
        assert!(is_auth_error(&wrongpass));
        assert!(is_auth_error(&noauth));
        assert!(is_auth_error(&failed));
        assert!(!is_auth_error(&other));
    }
}
