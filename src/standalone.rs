//! The standalone mode: one Redis server, with no Sentinel and no cluster, behind the same
//! [`SentinelPool`], so that an application's code is the same in development (one local
//! server), on Sentinel and on Cluster. Its manager's connections all go to that server, as a
//! cluster node's do ([`SentinelManager::for_node`](crate::SentinelManager)).

use crate::{
    Builder, Error, SentinelPool, Validation,
    config::{Standalone, invalid, names_port},
};

/// The port of a server whose address names none.
const DEFAULT_PORT: &str = "6379";

impl SentinelPool {
    /// Starts a builder for one Redis server at `address` (`"host:port"`, or
    /// `"redis://[user:password@]host[:port][/db]"`, `"rediss://..."` for TLS; the port
    /// defaults to 6379): the same pool, connection type, `with_retry` and stats as over
    /// Sentinel, with no sentinel asked and no watcher. The server must be a master: a
    /// replica is refused at `build` (a write to it would fail), and one demoted while the
    /// pool runs answers writes with `READONLY`, which retires every connection to it.
    ///
    /// ```no_run
    /// use r2d2_redis_sentinel::{SentinelPool, redis::Commands};
    ///
    /// let pool = SentinelPool::standalone("redis://127.0.0.1:6379/0").max_size(8).build()?;
    /// let _: () = pool.with_retry(|c| c.set("greeting", "hello"))?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn standalone(address: &str) -> Builder<Standalone> {
        Builder::with_topology(
            vec![crate::Secret::address(address)],
            "standalone".to_owned(),
        )
    }
}

impl Builder<Standalone> {
    /// Validates every option, connects to the server once (its credentials and its role
    /// checked) and makes the pool. A pool over one server treats
    /// [`Validation::Adaptive`] as [`Validation::Off`]: with no Sentinel to announce a change,
    /// the round trip would find only what the first request finds (a dead connection, which
    /// `with_retry` absorbs, or a demotion, which `READONLY` reports).
    ///
    /// # Errors
    ///
    /// A configuration error ([`Error::InvalidConfig`] for an address with a path that is not
    /// a db number); the connect's error ([`Error::Connect`], [`Error::Auth`],
    /// [`Error::WrongRole`] for a replica...).
    pub fn build(self) -> Result<SentinelPool, Error> {
        self.durable_without_sentinels()?;
        let mut this = self.data_credentials_from_addresses()?;
        let (address, db) = split_address(this.sentinels[0].expose())?;
        this.sentinels = vec![crate::Secret::address(&address)];
        if let Some(db) = db {
            this = this.db(db);
        }
        let mut config = this.check()?;
        config.watcher = false;
        config.fence = None;
        config.discover_sentinels = false;
        if matches!(config.validation, Validation::Adaptive { .. }) {
            config.validation = Validation::Off;
        }
        let addr = config.sentinels.remove(0);
        config.service = addr.to_string();
        SentinelPool::for_node(config, addr, crate::node::NodeRole::Master, true)
    }
}

/// The address without its path, with a port; the db its path names.
fn split_address(address: &str) -> Result<(String, Option<i64>), Error> {
    let address = address.trim();
    let (scheme, rest) = match address.split_once("://") {
        Some((scheme, rest)) => (Some(scheme), rest),
        None => (None, address),
    };
    // The user info runs to the last `@`; a path begins after the host.
    let (userinfo, hosts) = match rest.rsplit_once('@') {
        Some((userinfo, hosts)) => (Some(userinfo), hosts),
        None => (None, rest),
    };
    let (host_port, path) = hosts.split_once('/').unwrap_or((hosts, ""));
    let db = match path.trim_end_matches('/') {
        "" => None,
        db => Some(db.parse::<i64>().ok().filter(|db| *db >= 0).ok_or_else(|| {
            invalid(
                "address",
                "the path after the host must be a db number from 0, as in redis://host:6379/0",
            )
        })?),
    };
    let port = if names_port(host_port) {
        String::new()
    } else {
        format!(":{DEFAULT_PORT}")
    };
    let mut out = String::new();
    if let Some(scheme) = scheme {
        out.push_str(scheme);
        out.push_str("://");
    }
    if let Some(userinfo) = userinfo {
        out.push_str(userinfo);
        out.push('@');
    }
    out.push_str(host_port);
    out.push_str(&port);
    Ok((out, db))
}

#[cfg(test)]
mod tests {
    use super::split_address;

    #[test]
    fn an_address_gives_its_db_and_a_port() {
        let split = |a: &str| split_address(a).unwrap();
        assert_eq!(split("h"), ("h:6379".to_owned(), None));
        assert_eq!(split("h:7000"), ("h:7000".to_owned(), None));
        assert_eq!(
            split("redis://u:p/w@h/3"),
            ("redis://u:p/w@h:6379".to_owned(), Some(3))
        );
        assert_eq!(
            split("rediss://[::1]:7000/"),
            ("rediss://[::1]:7000".to_owned(), None)
        );
        assert!(split_address("redis://h:1/x").is_err());
        assert!(split_address("redis://h:1/-1").is_err());
    }
}
