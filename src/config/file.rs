//! [`PoolConfig`]: the pool's options as a service keeps them in its configuration file (the
//! `serde` feature), read with any serde format.

use std::time::Duration;

use serde::{Deserialize, Deserializer};

use crate::{Builder, Error, Secret};

/// The pool's options as plain data, for a service's configuration file (TOML, YAML, JSON:
/// any serde format). Every field is optional but where the sentinels are: either `url` (a
/// connection string, as [`SentinelPool::from_url`](crate::SentinelPool::from_url) reads it) or `sentinels`, with `service`
/// (`mymaster` when unset). Durations are written `"500ms"`, `"3s"` or `"1m"`. Fields set here
/// override what the `url` says; a field not set keeps the builder's default. Unknown fields
/// are refused, so that a misspelt option is not silently ignored. For a Redis Cluster, give
/// `nodes` (or a `redis+cluster://` `url`) and call [`cluster_builder`](Self::cluster_builder).
///
/// ```
/// # #[cfg(feature = "serde")] {
/// use r2d2_redis_sentinel::PoolConfig;
///
/// let config: PoolConfig = serde_json::from_str(r#"{
///     "sentinels": ["10.0.0.1:26379", "10.0.0.2:26379"],
///     "service": "orders",
///     "max_size": 32,
///     "read_timeout": "2s",
///     "client_name": "orders-api"
/// }"#)?;
/// let builder = config.builder()?; // then .build()
/// # }
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct PoolConfig {
    /// A connection string (`redis+sentinel://...`); instead of `sentinels` and `service`.
    #[serde(deserialize_with = "address")]
    pub url: Option<Secret>,
    /// Sentinel addresses (`host:port`, `redis://...`), when no `url` is given.
    #[serde(deserialize_with = "addresses")]
    pub sentinels: Vec<Secret>,
    /// A cluster's seed nodes (`host:port`, `redis://...`), for
    /// [`cluster_builder`](Self::cluster_builder) when no `url` is given.
    #[serde(deserialize_with = "addresses")]
    pub nodes: Vec<Secret>,
    /// The service (master) name; `mymaster` when unset.
    pub service: Option<String>,
    /// [`Builder::username`].
    pub username: Option<String>,
    /// [`Builder::password`].
    #[serde(deserialize_with = "secret")]
    pub password: Option<Secret>,
    /// [`Builder::sentinel_username`].
    pub sentinel_username: Option<String>,
    /// [`Builder::sentinel_password`].
    #[serde(deserialize_with = "secret")]
    pub sentinel_password: Option<Secret>,
    /// [`Builder::db`].
    pub db: Option<i64>,
    /// [`Builder::max_size`].
    pub max_size: Option<u32>,
    /// [`Builder::min_idle`].
    pub min_idle: Option<u32>,
    /// [`Builder::checkout_timeout`]; also read under its former name,
    /// `connection_timeout`.
    #[serde(deserialize_with = "duration", alias = "connection_timeout")]
    pub checkout_timeout: Option<Duration>,
    /// [`Builder::connect_timeout`].
    #[serde(deserialize_with = "duration")]
    pub connect_timeout: Option<Duration>,
    /// [`Builder::read_timeout`].
    #[serde(deserialize_with = "duration")]
    pub read_timeout: Option<Duration>,
    /// [`Builder::write_timeout`].
    #[serde(deserialize_with = "duration")]
    pub write_timeout: Option<Duration>,
    /// [`Builder::sentinel_timeout`].
    #[serde(deserialize_with = "duration")]
    pub sentinel_timeout: Option<Duration>,
    /// [`Builder::client_name`].
    pub client_name: Option<String>,
    /// [`Builder::address_map`]: announced address to reachable address, `host:port` each.
    pub address_map: std::collections::BTreeMap<String, String>,
}

impl PoolConfig {
    /// The builder these options describe; set more on it, then `build`.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`] when both `url` and `sentinels` are given, or neither, when
    /// `nodes` (a cluster's) are, or the `url` does not parse. Everything else is checked by
    /// `build`, as the builder's options.
    pub fn builder(&self) -> Result<Builder, Error> {
        if !self.nodes.is_empty() {
            return Err(super::invalid(
                "nodes",
                "`nodes` are a cluster's: use `cluster_builder`, or give `sentinels`",
            ));
        }
        let mut builder = match (&self.url, self.sentinels.is_empty()) {
            (Some(url), true) => super::url::parse(url.expose())?,
            (None, false) => Builder::of(
                self.sentinels.iter().map(Secret::expose),
                self.service.as_deref().unwrap_or("mymaster"),
            ),
            (Some(_), false) => {
                return Err(super::invalid(
                    "sentinels",
                    "give either `url` or `sentinels`, not both",
                ));
            }
            (None, true) => {
                return Err(super::invalid(
                    "sentinels",
                    "give the sentinels: `url` (redis+sentinel://...) or `sentinels` with \
                     `service`",
                ));
            }
        };
        if self.url.is_some() && self.service.is_some() {
            return Err(super::invalid(
                "service",
                "the `url` names the service: drop `service`",
            ));
        }
        let strings = [
            (
                self.sentinel_username.as_ref(),
                Builder::sentinel_username as fn(Builder, String) -> Builder,
            ),
            (
                self.sentinel_password.as_ref().map(Secret::expose),
                Builder::sentinel_password,
            ),
        ];
        for (value, set) in strings {
            if let Some(value) = value {
                builder = set(builder, value.clone());
            }
        }
        if let Some(timeout) = self.sentinel_timeout {
            builder = builder.sentinel_timeout(timeout);
        }
        Ok(self.common(builder))
    }

    /// The builder of a [`ClusterPool`](crate::ClusterPool) these options describe: `url`
    /// (`redis+cluster://...`, as [`ClusterPool::from_url`](crate::ClusterPool::from_url)
    /// reads it) or `nodes`, and the options a cluster has.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`] when both `url` and `nodes` are given, or neither, when a
    /// Sentinel option is set (`sentinels`, `service`, `sentinel_username`,
    /// `sentinel_password`, `sentinel_timeout`), or the `url` does not parse.
    pub fn cluster_builder(&self) -> Result<Builder<super::Cluster>, Error> {
        let sentinel_only = [
            ("sentinels", !self.sentinels.is_empty()),
            ("service", self.service.is_some()),
            ("sentinel_username", self.sentinel_username.is_some()),
            ("sentinel_password", self.sentinel_password.is_some()),
            ("sentinel_timeout", self.sentinel_timeout.is_some()),
        ];
        if let Some((option, _)) = sentinel_only.iter().find(|(_, set)| *set) {
            return Err(super::invalid(
                option,
                "a cluster has no sentinels: drop it, or use `builder` for a Sentinel pool",
            ));
        }
        let builder = match (&self.url, self.nodes.is_empty()) {
            (Some(url), true) => super::url::parse_cluster(url.expose())?,
            (None, false) => crate::ClusterPool::builder(self.nodes.iter().map(Secret::expose)),
            (Some(_), false) => {
                return Err(super::invalid(
                    "nodes",
                    "give either `url` or `nodes`, not both",
                ));
            }
            (None, true) => {
                return Err(super::invalid(
                    "nodes",
                    "give the cluster's nodes: `url` (redis+cluster://...) or `nodes`",
                ));
            }
        };
        Ok(self.common(builder))
    }

    /// The options every topology has, set on `builder`.
    fn common<T>(&self, mut builder: Builder<T>) -> Builder<T> {
        let strings = [
            (
                self.username.as_ref(),
                Builder::<T>::username as fn(Builder<T>, String) -> Builder<T>,
            ),
            (
                self.password.as_ref().map(Secret::expose),
                Builder::<T>::password,
            ),
            (self.client_name.as_ref(), Builder::<T>::client_name),
        ];
        for (value, set) in strings {
            if let Some(value) = value {
                builder = set(builder, value.clone());
            }
        }
        let durations = [
            (
                self.checkout_timeout,
                Builder::<T>::checkout_timeout as fn(Builder<T>, Duration) -> Builder<T>,
            ),
            (self.connect_timeout, Builder::<T>::connect_timeout),
            (self.read_timeout, Builder::<T>::read_timeout),
            (self.write_timeout, Builder::<T>::write_timeout),
        ];
        for (value, set) in durations {
            if let Some(value) = value {
                builder = set(builder, value);
            }
        }
        if let Some(db) = self.db {
            builder = builder.db(db);
        }
        if let Some(max_size) = self.max_size {
            builder = builder.max_size(max_size);
        }
        if let Some(min_idle) = self.min_idle {
            builder = builder.min_idle(Some(min_idle));
        }
        if !self.address_map.is_empty() {
            builder = builder.address_map(&self.address_map);
        }
        builder
    }
}

/// A connection string, which may carry passwords.
fn address<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Secret>, D::Error> {
    Ok(Option::<String>::deserialize(deserializer)?.map(Secret::address))
}

/// Sentinel addresses, which may carry passwords.
fn addresses<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<Secret>, D::Error> {
    let addresses = Vec::<String>::deserialize(deserializer)?;
    Ok(addresses.into_iter().map(Secret::address).collect())
}

/// `"500ms"`, `"3s"`, `"1m"`, as connection strings write durations.
fn duration<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Duration>, D::Error> {
    let text = String::deserialize(deserializer)?;
    super::url::duration("duration", &text)
        .map(Some)
        .map_err(serde::de::Error::custom)
}

/// A password: a string. Anything else is refused with an error that does not quote it, as
/// serde's own would (`invalid type: integer `12345``): a password the file format read as a
/// number is still a password.
fn secret<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Option<Secret>, D::Error> {
    struct Password;
    impl serde::de::Visitor<'_> for Password {
        type Value = Option<Secret>;

        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a password, as a string")
        }

        fn visit_str<E: serde::de::Error>(self, value: &str) -> Result<Self::Value, E> {
            Ok(Some(Secret::from(value)))
        }

        fn visit_string<E: serde::de::Error>(self, value: String) -> Result<Self::Value, E> {
            Ok(Some(Secret::new(value)))
        }

        fn visit_none<E: serde::de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }

        fn visit_unit<E: serde::de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }

        fn visit_bool<E: serde::de::Error>(self, _: bool) -> Result<Self::Value, E> {
            Err(not_text())
        }

        fn visit_i64<E: serde::de::Error>(self, _: i64) -> Result<Self::Value, E> {
            Err(not_text())
        }

        fn visit_u64<E: serde::de::Error>(self, _: u64) -> Result<Self::Value, E> {
            Err(not_text())
        }

        fn visit_i128<E: serde::de::Error>(self, _: i128) -> Result<Self::Value, E> {
            Err(not_text())
        }

        fn visit_u128<E: serde::de::Error>(self, _: u128) -> Result<Self::Value, E> {
            Err(not_text())
        }

        fn visit_f64<E: serde::de::Error>(self, _: f64) -> Result<Self::Value, E> {
            Err(not_text())
        }
    }
    fn not_text<E: serde::de::Error>() -> E {
        E::custom("a password must be a string: quote it (its value is not shown)")
    }
    deserializer.deserialize_any(Password)
}
