//! [`Builder::validate`]: every option checked, with an error naming it, into a [`Config`].

use std::time::Duration;

use redis::{
    RedisConnectionInfo,
    io::tcp::{TcpSettings, socket2::TcpKeepalive},
};

use super::{
    Builder, Config, FenceOptions, LONGEST, LONGEST_FENCE, MAX_POOL_SIZE, Validation,
    check_duration, invalid, parse_sentinel, sentinel_address::SentinelUrl,
};
use crate::{
    Error, NodeAddr, RetryPolicy,
    node::{AddressMap, NodeSettings},
};

impl<T> Builder<T> {
    /// Checks every option, family by family, and makes the configuration the pool runs on.
    // `mut` for the TLS a rediss:// address turns on.
    #[cfg_attr(not(feature = "tls"), allow(unused_mut))]
    pub(crate) fn check(mut self) -> Result<Config, Error> {
        let sentinels = self.check_sentinels()?;
        self.check_names()?;
        self.check_pool_size()?;
        self.check_timeouts()?;
        if let Some(retry) = &self.retry {
            check_retry(retry)?;
        }
        self.check_connections()?;
        if let Some(why) = self
            .durability
            .and_then(|d| d.invalid_with(self.read_timeout))
        {
            return Err(invalid("durability", why));
        }
        if self.username.is_some() && self.password.is_none() {
            return Err(invalid(
                "username",
                "a username needs a password: set `password` to the ACL user's password",
            ));
        }

        let mut data = RedisConnectionInfo::default()
            .set_db(self.db)
            .set_protocol(self.protocol);
        if let Some(username) = &self.username {
            data = data.set_username(username);
        }
        if let Some(password) = &self.password {
            data = data.set_password(password.expose());
        }
        let mut sentinel = RedisConnectionInfo::default();
        let sentinel_username = self
            .sentinel_username
            .as_deref()
            .or(sentinels.iter().find_map(|s| s.username.as_deref()));
        let sentinel_password = self
            .sentinel_password
            .as_ref()
            .map(|p| p.expose().as_str())
            .or(sentinels.iter().find_map(|s| s.password.as_deref()));
        if sentinel_username.is_some() && sentinel_password.is_none() {
            return Err(invalid(
                "sentinel_username",
                "a username needs a password: set `sentinel_password` to the sentinel ACL \
                 user's password",
            ));
        }
        if let Some(username) = sentinel_username {
            sentinel = sentinel.set_username(username);
        }
        if let Some(password) = sentinel_password {
            sentinel = sentinel.set_password(password);
        }

        let mut address_map = AddressMap {
            exact: Default::default(),
            function: self.address_function.clone(),
        };
        for (announced, reachable) in &self.address_pairs {
            let parse = |text: &str| {
                parse_host_port(text).ok_or_else(|| Error::InvalidConfig {
                    option: "address_map",
                    reason: format!("{text:?} is not host:port (a port from 1 to 65535)"),
                })
            };
            address_map
                .exact
                .insert(parse(announced)?, parse(reachable)?);
        }

        let mut tcp = TcpSettings::default().set_nodelay(self.tcp_nodelay);
        if let Some(idle) = self.tcp_keepalive {
            tcp = tcp.set_keepalive(keepalive(idle));
        }

        Ok(Config {
            address_map,
            sentinels: sentinels.into_iter().map(|s| s.addr).collect(),
            service: self.service,
            max_size: self.max_size,
            min_idle: self.min_idle,
            checkout_timeout: self.checkout_timeout,
            idle_timeout: self.idle_timeout,
            max_lifetime: self.max_lifetime,
            data: NodeSettings {
                durability: self.durability,
                redis: data,
                client_name: self.client_name,
                tcp: tcp.clone(),
                #[cfg(feature = "tls")]
                tls: self.tls.clone(),
                connect_timeout: self.connect_timeout,
                read_timeout: self.read_timeout,
                write_timeout: self.write_timeout,
            },
            sentinel: NodeSettings {
                durability: None,
                redis: sentinel,
                client_name: None,
                tcp,
                #[cfg(feature = "tls")]
                tls: self.tls.clone(),
                connect_timeout: self.sentinel_timeout,
                read_timeout: self.sentinel_timeout,
                write_timeout: self.sentinel_timeout,
            },
            validation: self.validation,
            retry: self.retry,
            watcher: self.watcher,
            discover_sentinels: self.discover_sentinels,
            max_sentinels: self.max_sentinels,
            fence: self.fence.then_some(FenceOptions {
                timeout: self.fence_timeout,
                resume: self.fence_resume,
            }),
            hooks: self.hooks,
        })
    }
}

impl<T> Builder<T> {
    /// For a topology without sentinels: durable mode with every replica needs them (to
    /// count the replicas that may be promoted), so only `at_least` serves.
    pub(crate) fn durable_without_sentinels(&self) -> Result<(), Error> {
        match self.durability {
            Some(durability) if durability.replicas == crate::durable::Replicas::All => {
                Err(invalid(
                    "durability",
                    "all_replicas counts the replicas the sentinels may promote, and this pool has \
                 no sentinels: use Durability::at_least(n), n the replicas each write must reach",
                ))
            }
            _ => Ok(()),
        }
    }

    /// For a topology whose addresses are data nodes (a cluster's seeds, a standalone
    /// server): the user and password one of them carries (`redis://user:pw@host:port`) are
    /// the data nodes', unless set with [`password`](Builder::password).
    pub(crate) fn data_credentials_from_addresses(mut self) -> Result<Self, Error> {
        if self.password.is_some() {
            return Ok(self);
        }
        for address in &self.sentinels {
            let url = parse_sentinel(address.expose())?;
            if let Some(password) = url.password {
                self.username = url.username;
                self.password = Some(crate::Secret::new(password));
                break;
            }
        }
        Ok(self)
    }
}

impl<T> Builder<T> {
    /// The sentinel addresses, parsed; a TLS scheme turns TLS on for the pool.
    #[cfg_attr(not(feature = "tls"), allow(unused_mut))]
    fn check_sentinels(&mut self) -> Result<Vec<SentinelUrl>, Error> {
        if self.sentinels.is_empty() {
            return Err(Error::NoSentinels);
        }
        let sentinels = self
            .sentinels
            .iter()
            .map(|address| parse_sentinel(address.expose()))
            .collect::<Result<Vec<_>, _>>()?;
        // A TLS scheme turns TLS on for the pool, which speaks it to every node or to none.
        let schemes: Vec<bool> = sentinels.iter().filter_map(|s| s.tls).collect();
        if schemes.contains(&true) {
            if schemes.contains(&false) {
                return Err(invalid(
                    "sentinels",
                    "some addresses are rediss:// (TLS) and others redis://: the pool speaks \
                     TLS to every node or to none",
                ));
            }
            #[cfg(feature = "tls")]
            if self.tls.is_none() {
                self.tls = Some(crate::TlsOptions::default());
            }
            #[cfg(not(feature = "tls"))]
            return Err(invalid(
                "sentinels",
                "a rediss:// (TLS) sentinel address needs the crate's `tls` feature",
            ));
        }
        #[cfg(feature = "tls")]
        if self.tls.is_some() {
            crate::TlsOptions::install_crypto_provider();
        }
        if self.max_sentinels < sentinels.len() || self.max_sentinels > MAX_POOL_SIZE as usize {
            return Err(invalid(
                "max_sentinels",
                format!(
                    "{} is out of range: give at least the {} sentinels listed, at most \
                     {MAX_POOL_SIZE}",
                    self.max_sentinels,
                    sentinels.len()
                ),
            ));
        }
        Ok(sentinels)
    }

    /// The service's name and the db.
    fn check_names(&self) -> Result<(), Error> {
        if self.service.trim().is_empty() {
            return Err(invalid("service", "the service (master) name is empty"));
        }
        // `sentinel monitor <name> ...` takes the name as one word: no sentinel can monitor a
        // name with white space or control characters.
        if self
            .service
            .chars()
            .any(|c| c.is_whitespace() || c.is_control())
        {
            return Err(invalid(
                "service",
                "the service (master) name has white space or control characters; use the \
                 name from `sentinel monitor` in sentinel.conf",
            ));
        }
        if self.db < 0 {
            return Err(invalid(
                "db",
                format!("{} is negative: databases count from 0", self.db),
            ));
        }
        Ok(())
    }

    /// `max_size` and `min_idle`.
    fn check_pool_size(&self) -> Result<(), Error> {
        if self.max_size == 0 || self.max_size > MAX_POOL_SIZE {
            return Err(invalid(
                "max_size",
                format!(
                    "{} is out of range: give 1 to {MAX_POOL_SIZE} (Redis's default maxclients)",
                    self.max_size
                ),
            ));
        }
        if let Some(min_idle) = self.min_idle
            && min_idle > self.max_size
        {
            return Err(invalid(
                "min_idle",
                format!("{min_idle} is larger than max_size {}", self.max_size),
            ));
        }
        Ok(())
    }

    /// Every duration: the timeouts, the validation window and the fence's longest hold.
    fn check_timeouts(&self) -> Result<(), Error> {
        for (option, value) in [
            ("checkout_timeout", self.checkout_timeout),
            ("connect_timeout", self.connect_timeout),
            ("read_timeout", self.read_timeout),
            ("write_timeout", self.write_timeout),
            ("sentinel_timeout", self.sentinel_timeout),
            ("fence_timeout", self.fence_timeout),
        ] {
            check_duration(option, value)?;
        }
        for (option, value) in [
            ("idle_timeout", self.idle_timeout),
            ("max_lifetime", self.max_lifetime),
        ] {
            if let Some(value) = value {
                check_duration(option, value)?;
            }
        }
        if let Validation::Adaptive { window } = self.validation {
            check_duration("validation", window)?;
        }
        if self.fence_timeout > LONGEST_FENCE {
            return Err(invalid(
                "fence_timeout",
                format!(
                    "{:?} is longer than the longest allowed, {LONGEST_FENCE:?}: a failover \
                     that has not committed by then is stuck, and holding writes for it is \
                     worse than what the fence prevents",
                    self.fence_timeout
                ),
            ));
        }
        Ok(())
    }

    /// What every data-node connection sets up: its client name and TCP keepalive.
    fn check_connections(&self) -> Result<(), Error> {
        if let Some(name) = &self.client_name
            && (name.is_empty() || !name.bytes().all(|b| b.is_ascii_graphic()))
        {
            return Err(invalid(
                "client_name",
                "Redis takes a client name of printable ASCII without spaces (letters, digits, \
                 - _ . : and the like), and not an empty one",
            ));
        }
        if let Some(idle) = self.tcp_keepalive {
            check_duration("tcp_keepalive", idle)?;
            // Linux's TCP_KEEPIDLE, in whole seconds; outside it every connect fails with
            // `os error 22`, which names no option.
            if !(Duration::from_secs(1)..=Duration::from_secs(32_767)).contains(&idle) {
                return Err(invalid(
                    "tcp_keepalive",
                    format!(
                        "{idle:?} is outside what the kernel takes for a keepalive's idle \
                         time: 1 s to 32,767 s"
                    ),
                ));
            }
        }
        Ok(())
    }
}

/// Keepalive probes after `idle` of silence, every 10 s (or `idle`, if shorter), 3 of them.
fn keepalive(idle: Duration) -> TcpKeepalive {
    let probes = TcpKeepalive::new()
        .with_time(idle)
        .with_interval(idle.min(Duration::from_secs(10)));
    #[cfg(any(
        target_os = "linux",
        target_os = "android",
        target_os = "macos",
        target_os = "freebsd"
    ))]
    let probes = probes.with_retries(3);
    probes
}

/// `host:port` or `[v6]:port`, port not 0.
fn parse_host_port(text: &str) -> Option<NodeAddr> {
    let (host, port) = text.trim().rsplit_once(':')?;
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    let port: u16 = port.parse().ok().filter(|p| *p != 0)?;
    (!host.is_empty() && !host.contains(char::is_whitespace)).then(|| NodeAddr::new(host, port))
}

/// The retry policy's own bounds.
fn check_retry(policy: &RetryPolicy) -> Result<(), Error> {
    if policy.max_attempts == 0 {
        return Err(invalid("retry_policy", "max_attempts must be at least 1"));
    }
    if policy.deadline.is_zero() || policy.deadline > LONGEST || policy.max_backoff > LONGEST {
        return Err(invalid(
            "retry_policy",
            "the deadline must be longer than zero, and it and the backoffs at most one year",
        ));
    }
    if policy.base_backoff > policy.max_backoff {
        return Err(invalid(
            "retry_policy",
            "base_backoff is longer than max_backoff",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::RetryPolicy;

    fn builder(sentinels: &[&str]) -> Builder {
        Builder::new(
            sentinels
                .iter()
                .map(|s| crate::Secret::address(*s))
                .collect(),
            "mymaster".into(),
        )
    }

    #[test]
    fn sentinel_addresses_parse_with_or_without_scheme() {
        let config = builder(&[
            "redis://127.0.0.1:26379",
            "10.1.2.3:26380",
            "redis://:pw@h:1",
            "valkey://v:2",
            "s1",
            "redis://[::1]",
        ])
        .check()
        .unwrap();
        assert_eq!(
            config.sentinels,
            vec![
                NodeAddr::new("127.0.0.1", 26379),
                NodeAddr::new("10.1.2.3", 26380),
                NodeAddr::new("h", 1),
                NodeAddr::new("v", 2),
                NodeAddr::new("s1", 26379),
                NodeAddr::new("::1", 26379),
            ]
        );
        assert_eq!(config.sentinel.redis.password(), Some("pw"));
    }

    #[test]
    fn malformed_sentinel_addresses_are_rejected_with_the_address() {
        for bad in [
            "",
            "http://h:1",
            "redis://h:notaport",
            "redis+unix:///tmp/s",
        ] {
            match builder(&[bad]).check() {
                Err(Error::InvalidSentinelAddress { address, .. }) => assert_eq!(address, bad),
                other => panic!("{bad:?} gave {other:?}"),
            }
        }
    }

    #[test]
    fn a_tls_scheme_turns_tls_on_and_cannot_be_mixed_with_plain() {
        let mixed = builder(&["rediss://h:1", "redis://h:2"]).check();
        assert!(
            matches!(
                &mixed,
                Err(Error::InvalidConfig {
                    option: "sentinels",
                    ..
                })
            ),
            "{mixed:?}"
        );
        let tls = builder(&["rediss://h:1", "valkeys://h:2", "h:3"]).check();
        #[cfg(feature = "tls")]
        assert!(tls.unwrap().data.tls.is_some());
        #[cfg(not(feature = "tls"))]
        assert!(matches!(
            tls,
            Err(Error::InvalidConfig {
                option: "sentinels",
                ..
            })
        ));
        #[cfg(feature = "tls")]
        assert!(
            builder(&["redis://h:1"])
                .check()
                .unwrap()
                .data
                .tls
                .is_none()
        );
    }

    #[test]
    fn bad_options_name_the_option() {
        let cases: Vec<(Builder, &str)> = vec![
            (builder(&["h:1"]).max_size(0), "max_size"),
            (builder(&["h:1"]).min_idle(Some(11)), "min_idle"),
            (
                builder(&["h:1"]).read_timeout(Duration::ZERO),
                "read_timeout",
            ),
            (
                builder(&["h:1"]).sentinel_timeout(Duration::ZERO),
                "sentinel_timeout",
            ),
            (
                builder(&["h:1"]).retry_policy(RetryPolicy::default().max_attempts(0)),
                "retry_policy",
            ),
            (builder(&["h:1"]).client_name("two words"), "client_name"),
            (builder(&["h:1"]).client_name(""), "client_name"),
            (
                builder(&["h:1"]).tcp_keepalive(Some(Duration::ZERO)),
                "tcp_keepalive",
            ),
        ];
        for (builder, expected) in cases {
            match builder.check() {
                Err(Error::InvalidConfig { option, .. }) => assert_eq!(option, expected),
                other => panic!("expected InvalidConfig for {expected}, got {other:?}"),
            }
        }
        assert!(matches!(builder(&[]).check(), Err(Error::NoSentinels)));
    }

    #[test]
    fn sentinel_and_data_credentials_are_separate() {
        let config = builder(&["h:1"])
            .password("data")
            .sentinel_password("sentinel")
            .check()
            .unwrap();
        assert_eq!(config.data.redis.password(), Some("data"));
        assert_eq!(config.sentinel.redis.password(), Some("sentinel"));
    }
}
