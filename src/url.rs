//! One string of configuration, for programs configured from one environment variable:
//!
//! ```text
//! redis+sentinel://[user:password@]host:port[,host:port...]/service[/db][?sentinel_username=...&sentinel_password=...&role=master|replica]
//! ```
//!
//! The user and password are the data nodes'; the sentinels' come as query parameters, since
//! they are separate. Reserved characters in any part are percent-encoded (`%40` for `@`).
//! The result is a [`Builder`], whose options still override what the string said.

use crate::{Builder, Error, SentinelPool};

const SCHEME: &str = "redis+sentinel://";
/// The same over TLS, to sentinels and data nodes, checked against the platform's root
/// certificates (the `tls` feature).
const TLS_SCHEME: &str = "rediss+sentinel://";

/// Parses a `redis+sentinel://` (or `rediss+sentinel://`) URL into a builder. Sentinel
/// addresses are checked by `build`, as the builder's are.
pub(crate) fn parse(url: &str) -> Result<Builder, Error> {
    let url = url.trim();
    let (rest, tls) = match (url.strip_prefix(SCHEME), url.strip_prefix(TLS_SCHEME)) {
        (Some(rest), _) => (rest, false),
        (None, Some(rest)) => (rest, true),
        (None, None) => {
            return Err(invalid(
                "url",
                "it must start with redis+sentinel:// (or rediss+sentinel:// for TLS)",
            ));
        }
    };
    if tls && cfg!(not(feature = "tls")) {
        return Err(invalid(
            "url",
            "rediss+sentinel:// needs the crate's `tls` feature",
        ));
    }
    // A password or parameter with `/`, `?`, `#` or `@` unencoded would be cut in the wrong
    // place, and pieces of it shown as hosts or names: refuse it, quoting nothing.
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

    let mut builder = SentinelPool::builder(sentinels, service);
    #[cfg(feature = "tls")]
    if tls {
        builder = builder.tls(crate::TlsOptions::default());
    }
    if let Some(db) = db {
        builder = builder.db(db);
    }
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
    for (position, pair) in query.split('&').filter(|p| !p.is_empty()).enumerate() {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        builder = match key {
            "sentinel_username" => builder.sentinel_username(decode(value)?),
            "sentinel_password" => builder.sentinel_password(decode(value)?),
            "role" if value == "master" => builder,
            "role" if value == "replica" => builder.replicas(crate::ReplicaOptions::default()),
            "role" => {
                return Err(invalid(
                    "url",
                    "role is master (the default) or replica (reads from the replicas)",
                ));
            }
            // Not quoted: an unencoded `&` in a password makes its tail look like a key.
            _ => {
                return Err(invalid(
                    "url",
                    format!(
                        "parameter {} (counting from 1) is not one of sentinel_username, \
                         sentinel_password or role; a & or = inside a value must be \
                         percent-encoded (%26, %3D)",
                        position + 1
                    ),
                ));
            }
        };
    }
    Ok(builder)
}

/// Decodes `%XX` escapes; the result must be UTF-8. Errors never quote the text (it may be a
/// password).
fn decode(text: &str) -> Result<String, Error> {
    crate::config::percent_decode(text).ok_or_else(|| {
        invalid(
            "url",
            "a % is not followed by two hex digits, or a part is not UTF-8 once decoded",
        )
    })
}

pub(crate) fn invalid(option: &'static str, reason: impl Into<String>) -> Error {
    Error::InvalidConfig {
        option,
        reason: reason.into(),
    }
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
}
