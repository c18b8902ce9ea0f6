//! One string of configuration, for programs configured from one environment variable:
//!
//! ```text
//! redis+sentinel://[user:password@]host[:port][,host[:port]...]/service[/db][?param=value&...]
//! ```
//!
//! The user and password are the data nodes'; the sentinels' come as query parameters, since
//! they are separate. A sentinel without a port listens on 26379. Reserved characters in any
//! part are percent-encoded (`%40` for `@`). The parameters (the anchors are go-redis's
//! `ParseFailoverURL` and Lettuce's `redis-sentinel://...?timeout=`):
//!
//! | parameter | builder option | value |
//! | --- | --- | --- |
//! | `sentinel_username`, `sentinel_password` | the sentinels' ACL user | text |
//! | `role` | `master` (default) or `replica` ([`Builder::read_from_replicas`]) | word |
//! | `connect_timeout`, `read_timeout`, `write_timeout`, `sentinel_timeout`, `checkout_timeout` | the timeout of the same name | `500ms`, `3s`, `1m`; a bare number is seconds |
//! | `max_size`, `min_idle` | pool sizes | number |
//! | `client_name` | [`Builder::client_name`] | text |
//! | `address_map` | [`Builder::address_map`] | `announced=reachable` pairs, comma-separated |
//!
//! The result is a [`Builder`], whose options still override what the string said.

use super::{Cluster, invalid};
use crate::{Builder, Error};

const SCHEME: &str = "redis+sentinel://";
/// The same over TLS, to sentinels and data nodes, checked against the platform's root
/// certificates (the `tls` feature).
const TLS_SCHEME: &str = "rediss+sentinel://";
/// A cluster's nodes.
const CLUSTER_SCHEME: &str = "redis+cluster://";
/// The same over TLS.
const CLUSTER_TLS_SCHEME: &str = "rediss+cluster://";

/// Parses a `redis+sentinel://` (or `rediss+sentinel://`) URL into a builder. Sentinel
/// addresses are checked by `build`, as the builder's are.
pub(crate) fn parse(url: &str) -> Result<Builder, Error> {
    let parts = split(url, SCHEME, TLS_SCHEME)?;
    let Parts {
        userinfo,
        hosts,
        path,
        query,
        ..
    } = parts;
    let sentinels: Vec<&str> = hosts.split(',').filter(|h| !h.is_empty()).collect();
    if sentinels.is_empty() {
        return Err(invalid("url", "it names no sentinel before the service"));
    }
    let mut segments = path.split('/');
    let service = decode(segments.next().unwrap_or(""))?;
    if service.is_empty() {
        return Err(invalid(
            "url",
            "the service (master) name is missing: write it after the sentinels, as /mymaster",
        ));
    }
    let db = match segments.next() {
        None => None,
        Some(db) => Some(
            db.parse::<i64>()
                .ok()
                .filter(|db| *db >= 0)
                .ok_or_else(|| invalid("db", "the db after the service must be a number from 0"))?,
        ),
    };
    if segments.next().is_some() {
        return Err(invalid(
            "url",
            "nothing may follow /service/db but ?parameters",
        ));
    }

    let mut builder = Builder::of(sentinels, service);
    #[cfg(feature = "tls")]
    if parts.tls {
        builder = builder.tls(crate::TlsOptions::default());
    }
    if let Some(db) = db {
        builder = builder.db(db);
    }
    builder = with_userinfo(builder, userinfo)?;
    for (position, pair) in query.split('&').filter(|p| !p.is_empty()).enumerate() {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        builder = match key {
            "sentinel_username" => builder.sentinel_username(decode(value)?),
            "sentinel_password" => builder.sentinel_password(decode(value)?),
            "sentinel_timeout" => builder.sentinel_timeout(duration("sentinel_timeout", value)?),
            "role" if value == "master" => builder,
            "role" if value == "replica" => {
                builder.read_from_replicas(crate::ReplicaOptions::default())
            }
            "role" => {
                return Err(invalid(
                    "url",
                    "role is master (the default) or replica (reads from the replicas)",
                ));
            }
            _ => match common(builder, key, value)? {
                Ok(builder) => builder,
                // Not quoted: an unencoded `&` in a password makes its tail look like a key.
                Err(_) => {
                    return Err(unknown_parameter(
                        position,
                        "sentinel_username, sentinel_password, role, sentinel_timeout, ",
                    ));
                }
            },
        };
    }
    Ok(builder)
}

/// Parses a `redis+cluster://` (or `rediss+cluster://`) URL into a builder for a
/// [`ClusterPool`](crate::ClusterPool):
///
/// ```text
/// redis+cluster://[user:password@]host:port[,host:port...][?param=value&...]
/// ```
///
/// The parameters are the Sentinel URL's that a cluster has: the timeouts but
/// `sentinel_timeout`, `max_size`, `min_idle`, `client_name` and `address_map`.
pub(crate) fn parse_cluster(url: &str) -> Result<Builder<Cluster>, Error> {
    let parts = split(url, CLUSTER_SCHEME, CLUSTER_TLS_SCHEME)?;
    let Parts {
        userinfo,
        hosts,
        path,
        query,
        ..
    } = parts;
    if !path.is_empty() {
        return Err(invalid(
            "url",
            "a cluster URL has no path: a cluster has one database, 0; write the nodes, then \
             ?parameters",
        ));
    }
    let seeds: Vec<&str> = hosts.split(',').filter(|h| !h.is_empty()).collect();
    if seeds.is_empty() {
        return Err(invalid("url", "it names no cluster node"));
    }
    let mut builder = crate::ClusterPool::builder(seeds);
    #[cfg(feature = "tls")]
    if parts.tls {
        builder = builder.tls(crate::TlsOptions::default());
    }
    builder = with_userinfo(builder, userinfo)?;
    for (position, pair) in query.split('&').filter(|p| !p.is_empty()).enumerate() {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        builder = match common(builder, key, value)? {
            Ok(builder) => builder,
            Err(_) => return Err(unknown_parameter(position, "")),
        };
    }
    Ok(builder)
}

/// A connection string cut into its parts, its scheme checked.
#[derive(Clone, Copy)]
struct Parts<'a> {
    /// A TLS scheme (only read where the `tls` feature can turn TLS on).
    #[cfg(feature = "tls")]
    tls: bool,
    userinfo: Option<&'a str>,
    hosts: &'a str,
    path: &'a str,
    query: &'a str,
}

/// Cuts `url` (of the scheme `scheme`, or `tls_scheme` for TLS) into its parts. A password or
/// parameter with `/`, `?`, `#` or `@` unencoded would be cut in the wrong place, and pieces
/// of it shown as hosts or names: it is refused, quoting nothing.
fn split<'a>(url: &'a str, scheme: &str, tls_scheme: &str) -> Result<Parts<'a>, Error> {
    let url = url.trim();
    let (rest, tls) = match (url.strip_prefix(scheme), url.strip_prefix(tls_scheme)) {
        (Some(rest), _) => (rest, false),
        (None, Some(rest)) => (rest, true),
        (None, None) => {
            return Err(invalid(
                "url",
                format!("it must start with {scheme} (or {tls_scheme} for TLS)"),
            ));
        }
    };
    if tls && cfg!(not(feature = "tls")) {
        return Err(invalid(
            "url",
            format!("{tls_scheme} needs the crate's `tls` feature"),
        ));
    }
    let (rest, query) = rest.split_once('?').unwrap_or((rest, ""));
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    if url.contains('#') || path.contains('@') || query.contains('@') {
        return Err(invalid(
            "url",
            "a reserved character in the user, password or a parameter is not percent-encoded: \
             write / as %2F, ? as %3F, # as %23, @ as %40 (in a password, only these four and % \
             need it)",
        ));
    }
    let (userinfo, hosts) = match authority.rsplit_once('@') {
        Some((userinfo, hosts)) => (Some(userinfo), hosts),
        None => (None, authority),
    };
    Ok(Parts {
        #[cfg(feature = "tls")]
        tls,
        userinfo,
        hosts,
        path,
        query,
    })
}

/// The data nodes' user and password, from a URL's `user:password@`.
fn with_userinfo<T>(mut builder: Builder<T>, userinfo: Option<&str>) -> Result<Builder<T>, Error> {
    if let Some(userinfo) = userinfo {
        let (user, password) = match userinfo.split_once(':') {
            Some((user, password)) => (user, Some(password)),
            None => (userinfo, None),
        };
        if !user.is_empty() {
            builder = builder.username(decode(user)?);
        }
        if let Some(password) = password {
            builder = builder.password(decode(password)?);
        }
    }
    Ok(builder)
}

/// A parameter every topology has: the builder with it set, or the builder back (`Err`)
/// when `key` is not one.
fn common<T>(
    builder: Builder<T>,
    key: &str,
    value: &str,
) -> Result<Result<Builder<T>, Builder<T>>, Error> {
    Ok(Ok(match key {
        "connect_timeout" => builder.connect_timeout(duration("connect_timeout", value)?),
        "read_timeout" => builder.read_timeout(duration("read_timeout", value)?),
        "write_timeout" => builder.write_timeout(duration("write_timeout", value)?),
        // `connection_timeout`: its former name, still read.
        "checkout_timeout" | "connection_timeout" => {
            builder.checkout_timeout(duration("checkout_timeout", value)?)
        }
        "max_size" => builder.max_size(number("max_size", value)?),
        "min_idle" => builder.min_idle(Some(number("min_idle", value)?)),
        "client_name" => builder.client_name(decode(value)?),
        "address_map" => builder.address_map(address_pairs("address_map", &decode(value)?)?),
        _ => return Ok(Err(builder)),
    }))
}

/// The error of a parameter no option has; `more` lists the topology's own ones first.
/// Not quoted: an unencoded `&` in a password makes its tail look like a key.
fn unknown_parameter(position: usize, more: &str) -> Error {
    invalid(
        "url",
        format!(
            "parameter {} (counting from 1) is not one of {more}connect_timeout, \
             read_timeout, write_timeout, checkout_timeout, max_size, min_idle, client_name \
             or address_map; a & inside a value must be percent-encoded (%26)",
            position + 1
        ),
    )
}

/// A duration parameter: a number (fractions allowed) and a unit, `ms`, `s` or `m`; a bare
/// number is seconds, as in go-redis.
pub(crate) fn duration(key: &'static str, value: &str) -> Result<std::time::Duration, Error> {
    let split = value
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(value.len());
    let (number, unit) = value.split_at(split);
    let scale = match unit {
        "ms" => 0.001,
        "" | "s" => 1.0,
        "m" => 60.0,
        _ => f64::NAN,
    };
    number
        .parse::<f64>()
        .ok()
        .and_then(|n| std::time::Duration::try_from_secs_f64(n * scale).ok())
        .ok_or_else(|| {
            invalid(
                key,
                format!(
                    "{value:?} is not a duration: write 500ms, 3s or 1m (a bare number is seconds)"
                ),
            )
        })
}

/// A count parameter.
fn number(key: &'static str, value: &str) -> Result<u32, Error> {
    value
        .parse()
        .map_err(|_| invalid(key, format!("{value:?} is not a whole number")))
}

/// `announced=reachable` pairs of `host:port`, comma-separated (`ADDRESS_MAP`'s form too);
/// each address is checked by `build`.
pub(crate) fn address_pairs(
    option: &'static str,
    text: &str,
) -> Result<Vec<(String, String)>, Error> {
    text.split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|pair| {
            pair.split_once('=')
                .map(|(a, b)| (a.trim().to_owned(), b.trim().to_owned()))
                .ok_or_else(|| {
                    invalid(
                        option,
                        format!(
                            "{pair:?} is not announced=reachable: give comma-separated \
                             host:port=host:port pairs"
                        ),
                    )
                })
        })
        .collect()
}

/// Decodes `%XX` escapes; the result must be UTF-8. Errors never quote the text (it may be a
/// password).
fn decode(text: &str) -> Result<String, Error> {
    super::percent_decode(text).ok_or_else(|| {
        invalid(
            "url",
            "a % is not followed by two hex digits, or a part is not UTF-8 once decoded",
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_escapes_decode_and_bad_ones_are_refused() {
        assert_eq!(decode("a%20b%40c%25").unwrap(), "a b@c%");
        assert_eq!(decode("n%C3%B6").unwrap(), "nö");
        for bad in ["%", "%2", "%zz", "%ff"] {
            assert!(decode(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn parameters_set_timeouts_sizes_the_name_and_the_address_map() {
        let builder = parse(
            "redis+sentinel://s1,s2:26380/cache?connect_timeout=250ms&read_timeout=2&\
             write_timeout=1.5s&sentinel_timeout=100ms&checkout_timeout=1m&max_size=32&\
             min_idle=4&client_name=orders&address_map=10.0.0.5:6379%3D127.0.0.1:7000",
        )
        .unwrap();
        let ms = std::time::Duration::from_millis;
        assert_eq!(builder.connect_timeout, ms(250));
        assert_eq!(builder.read_timeout, ms(2000));
        assert_eq!(builder.write_timeout, ms(1500));
        assert_eq!(builder.sentinel_timeout, ms(100));
        assert_eq!(builder.checkout_timeout, ms(60_000));
        assert_eq!((builder.max_size, builder.min_idle), (32, Some(4)));
        assert_eq!(builder.client_name.as_deref(), Some("orders"));
        assert_eq!(
            builder.address_pairs,
            vec![("10.0.0.5:6379".to_owned(), "127.0.0.1:7000".to_owned())]
        );
        // A sentinel without a port listens on 26379.
        let config = builder.check().unwrap();
        assert_eq!(config.sentinels[0], crate::NodeAddr::new("s1", 26379));
    }

    #[test]
    fn a_cluster_url_gives_its_seeds_credentials_and_parameters() {
        let builder =
            parse_cluster("redis+cluster://app:s%40cret@n1:7000,n2:7001?read_timeout=2&max_size=4")
                .unwrap();
        assert_eq!(builder.sentinels.len(), 2);
        assert_eq!(builder.username.as_deref(), Some("app"));
        assert_eq!(
            builder.password.as_ref().map(|p| p.expose().as_str()),
            Some("s@cret")
        );
        assert_eq!(builder.read_timeout, std::time::Duration::from_secs(2));
        assert_eq!(builder.max_size, 4);
        for bad in [
            "redis+sentinel://n1:7000/m",
            "redis+cluster://",
            "redis+cluster://n1:7000/0",
            "redis+cluster://n1:7000?sentinel_timeout=1s",
            "redis+cluster://n1:7000?role=replica",
        ] {
            assert!(
                matches!(parse_cluster(bad), Err(Error::InvalidConfig { .. })),
                "{bad}"
            );
        }
    }

    #[test]
    fn a_bad_parameter_value_names_its_parameter() {
        for (query, option) in [
            ("read_timeout=soon", "read_timeout"),
            ("connect_timeout=5h", "connect_timeout"),
            ("max_size=-1", "max_size"),
            ("address_map=10.0.0.5:6379", "address_map"),
            ("nonsense=1", "url"),
        ] {
            match parse(&format!("redis+sentinel://h:1/m?{query}")) {
                Err(Error::InvalidConfig { option: o, .. }) => assert_eq!(o, option, "{query}"),
                other => panic!("{query}: {other:?}"),
            }
        }
    }
}
