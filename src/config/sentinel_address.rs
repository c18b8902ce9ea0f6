//! Sentinel addresses as users write them (`redis://user:password@host:port` or
//! `host:port`), and how the crate shows them without their passwords.

use redis::IntoConnectionInfo;

use crate::{Error, NodeAddr, secret::redact_url};

pub(crate) struct SentinelUrl {
    pub(super) addr: NodeAddr,
    pub(super) username: Option<String>,
    pub(super) password: Option<String>,
    /// `Some(true)` for `rediss://` or `valkeys://`, `Some(false)` for `redis://` or
    /// `valkey://`, `None` without a scheme.
    pub(super) tls: Option<bool>,
}

/// Parses `redis://[user:pass@]host[:port]` (or `rediss://`, `valkey://`, `valkeys://`) or a
/// bare `host[:port]`; the port defaults to 26379. The user info runs to the
/// last `@`, so a password may hold reserved characters unencoded (`%XX` escapes are decoded
/// too); the host and port are checked by redis-rs without it, so that no error can quote it.
pub(crate) fn parse_sentinel(address: &str) -> Result<SentinelUrl, Error> {
    let rejected = |reason: &str| Error::InvalidSentinelAddress {
        address: redact_url(address),
        reason: reason.to_owned(),
    };
    let trimmed = address.trim();
    if trimmed.is_empty() {
        return Err(rejected("it is empty"));
    }
    let (tls, rest) = match trimmed.split_once("://") {
        Some(("redis" | "valkey", rest)) => (Some(false), rest),
        Some(("rediss" | "valkeys", rest)) => (Some(true), rest),
        Some(_) => {
            return Err(rejected(
                "sentinels are reached with redis:// or valkey://, or rediss:// or valkeys:// \
                 over TLS",
            ));
        }
        None => (None, trimmed),
    };
    let (userinfo, after) = match rest.rsplit_once('@') {
        Some((userinfo, after)) => (Some(userinfo), after),
        None => (None, rest),
    };
    let host_port = after.split(['/', '?', '#']).next().unwrap_or(after);
    // `[v6]:port` or `host:port`: an IPv6 literal's own colons are no port.
    let has_port = match host_port.rsplit_once(']') {
        Some((_, after)) => after.starts_with(':'),
        None => host_port.contains(':'),
    };
    // Sentinel's own port when none is given, as other clients assume.
    let port = if has_port { "" } else { ":26379" };
    let info = format!("redis://{host_port}{port}")
        .as_str()
        .into_connection_info()
        .map_err(|e| rejected(&e.to_string()))?;
    let (username, password) = match userinfo {
        None => (None, None),
        Some(userinfo) => {
            let decoded = |part: &str| {
                percent_decode(part).ok_or_else(|| {
                    rejected("its user or password has a % not followed by two hex digits, or is not UTF-8 once decoded")
                })
            };
            match userinfo.split_once(':') {
                Some((user, password)) => (
                    Some(decoded(user)?).filter(|u| !u.is_empty()),
                    Some(decoded(password)?),
                ),
                None => (Some(decoded(userinfo)?), None),
            }
        }
    };
    match info.addr() {
        redis::ConnectionAddr::Tcp(_, 0) => Err(rejected("port 0 is no port to connect to")),
        redis::ConnectionAddr::Tcp(host, port) => Ok(SentinelUrl {
            addr: NodeAddr::new(host.clone(), *port),
            username,
            password,
            tls,
        }),
        _ => Err(rejected("sentinels are reached over plain TCP")),
    }
}

/// Whether an address (`host:port`, `[v6]:port`, with a scheme, user info and a path or
/// not) names its port.
pub(crate) fn names_port(address: &str) -> bool {
    let address = address.trim();
    let address = address.split_once("://").map_or(address, |(_, rest)| rest);
    let address = address.rsplit_once('@').map_or(address, |(_, hosts)| hosts);
    let host_port = address.split(['/', '?', '#']).next().unwrap_or(address);
    match host_port.rsplit_once(':') {
        Some((host, port)) => {
            port.parse::<u16>().is_ok() && (host.ends_with(']') || !host.contains(':'))
        }
        None => false,
    }
}

/// Decodes `%XX` escapes; `None` when one is malformed or the result is not UTF-8.
pub(crate) fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3)?;
            if !hex.iter().all(u8::is_ascii_hexdigit) {
                return None;
            }
            out.push(u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_names_its_port_or_not() {
        for named in [
            "h:7000",
            "redis://u:p@h:7000",
            "[::1]:7000",
            "rediss://h:7000/3",
        ] {
            assert!(names_port(named), "{named}");
        }
        for bare in [
            "h",
            "redis://h",
            "::1",
            "h:port",
            "redis://u:p@h",
            "redis://h/0",
        ] {
            assert!(!names_port(bare), "{bare}");
        }
    }

    #[test]
    fn passwords_in_urls_are_redacted() {
        for (url, shown) in [
            ("redis://user:pw@h:1", "redis://user:<redacted>@h:1"),
            ("redis://:pw@h:1/0", "redis://:<redacted>@h:1/0"),
            ("redis://pw@h:1", "redis://<redacted>@h:1"),
            ("user:p@ss@h:1", "user:<redacted>@h:1"),
            ("redis://h:1", "redis://h:1"),
            ("h:1", "h:1"),
            // Reserved characters left unencoded in a password: hidden all the same.
            ("redis://:pa/ss@h:1", "redis://:<redacted>@h:1"),
            ("redis://u:p?w@h:1", "redis://u:<redacted>@h:1"),
            ("redis://u:p#w@h:1", "redis://u:<redacted>@h:1"),
            ("redis://u:p@w@h:1", "redis://u:<redacted>@h:1"),
            ("redis://pa/ss:x@h:1", "redis://<redacted>@h:1"),
            // An `@` after the host cannot be told from one in a password: hidden too.
            ("redis://h:1/?x=a@b", "redis://h:<redacted>@b"),
            // The sentinels' password as a parameter, and all that follows it.
            (
                "redis+sentinel://h:1/m?sentinel_password=s3&cret&max_size=2",
                "redis+sentinel://h:1/m?sentinel_password=<redacted>",
            ),
            (
                "redis+sentinel://u:pw@h:1/m?Sentinel_Password=s",
                "redis+sentinel://u:<redacted>@h:1/m?Sentinel_Password=<redacted>",
            ),
        ] {
            assert_eq!(redact_url(url), shown, "{url}");
        }
    }

    #[test]
    fn passwords_with_reserved_characters_reach_the_sentinel_settings() {
        for (url, user, password) in [
            ("redis://:pa/ss@h:1", None, "pa/ss"),
            ("redis://u:p?w@h:1", Some("u"), "p?w"),
            ("u:p#w@h:1", Some("u"), "p#w"),
            ("redis://u:p@w@h:1/", Some("u"), "p@w"),
            ("redis://u:p%40w%3A@h:1", Some("u"), "p@w:"),
            ("redis://u:p:w@h:1", Some("u"), "p:w"),
        ] {
            let parsed = parse_sentinel(url).unwrap_or_else(|e| panic!("{url}: {e}"));
            assert_eq!(parsed.addr, NodeAddr::new("h", 1), "{url}");
            assert_eq!(parsed.username.as_deref(), user, "{url}");
            assert_eq!(parsed.password.as_deref(), Some(password), "{url}");
        }
        assert!(parse_sentinel("redis://u:%zz@h:1").is_err());
    }
}
