//! [`Secret`]: what must never show where the crate prints its types (passwords, private
//! keys, addresses that may carry credentials), and how an address is shown without its
//! password.

use std::fmt;

/// What stands for a secret wherever the crate shows one.
pub(crate) const REDACTED: &str = "<redacted>";

/// `address` with the password of its user info, if any, replaced by [`REDACTED`]:
/// `redis://user:secret@host:1` shows as `redis://user:<redacted>@host:1`. User info without a
/// colon is hidden whole, as it may be a password alone. The user info runs to the last `@`:
/// a password may hold `/`, `?`, `#` or `@` unencoded, and whatever follows the last `@` is
/// the only part sure to hold none of it. A query parameter whose name ends in `password`
/// (`?sentinel_password=...`) is hidden with everything after it, since an unencoded `&` in
/// it would make its tail look like another parameter.
pub(crate) fn redact_url(address: &str) -> String {
    let query_secret = address.find('?').and_then(|q| {
        let key = "password=";
        address[q..]
            .to_ascii_lowercase()
            .find(key)
            .map(|at| q + at + key.len())
    });
    let address = match query_secret {
        Some(value) => format!("{}{REDACTED}", &address[..value]),
        None => address.to_owned(),
    };
    let start = address.find("://").map_or(0, |i| i + 3);
    let rest = &address[start..];
    let Some(at) = rest.rfind('@') else {
        return address;
    };
    let user = match rest[..at].split_once(':') {
        Some((user, _)) if !user.contains(['/', '?', '#']) => format!("{user}:{REDACTED}"),
        _ => REDACTED.to_owned(),
    };
    format!("{}{user}{}", &address[..start], &rest[at..])
}

/// A value that must not show where the crate's types are printed: a password, a private key,
/// or an address that may carry credentials (`redis://user:password@host:26379`). Its `Debug`
/// shows `<redacted>`, or for an address the address with its password replaced, so that
/// every type holding secrets derives `Debug` and no field added later can leak one.
/// [`expose`](Secret::expose) gives the value.
///
/// ```
/// use r2d2_redis_sentinel::Secret;
///
/// let password = Secret::from("hunter2");
/// assert_eq!(format!("{password:?}"), "<redacted>");
/// assert_eq!(password.expose(), "hunter2");
/// let sentinel = Secret::address("redis://app:hunter2@10.0.0.1:26379");
/// assert_eq!(format!("{sentinel:?}"), r#""redis://app:<redacted>@10.0.0.1:26379""#);
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct Secret<T = String> {
    value: T,
    /// What `Debug` shows: [`REDACTED`], or the address with its password replaced.
    shown: Option<String>,
}

impl<T> Secret<T> {
    /// A secret that shows as `<redacted>`.
    pub fn new(value: T) -> Self {
        Secret { value, shown: None }
    }

    /// The value itself.
    pub fn expose(&self) -> &T {
        &self.value
    }
}

impl Secret {
    /// An address that may carry credentials: it shows with its password replaced
    /// (`redis://user:<redacted>@host:26379`), and a `?...password=` parameter with all that
    /// follows it.
    pub fn address(value: impl Into<String>) -> Self {
        let value = value.into();
        Secret {
            shown: Some(redact_url(&value)),
            value,
        }
    }
}

impl<T> fmt::Debug for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.shown {
            Some(shown) => write!(f, "{shown:?}"),
            None => f.write_str(REDACTED),
        }
    }
}

impl From<String> for Secret {
    /// A secret that shows as `<redacted>`.
    fn from(value: String) -> Self {
        Secret::new(value)
    }
}

impl From<&str> for Secret {
    /// A secret that shows as `<redacted>`.
    fn from(value: &str) -> Self {
        Secret::new(value.to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn neither_form_shows_the_password() {
        let password = Secret::from("p@ss/word");
        assert_eq!(format!("{password:?}"), REDACTED);
        assert_eq!(
            format!("{:?}", Some(&password)),
            format!("Some({REDACTED})")
        );
        let address = Secret::address("redis://u:p@ss/word@h:1");
        let shown = format!("{address:?}");
        assert!(!shown.contains("ss/word"), "{shown}");
        assert!(shown.contains("h:1"), "{shown}");
        assert_eq!(address.expose(), "redis://u:p@ss/word@h:1");
        let key = Secret::new(b"-----BEGIN PRIVATE KEY-----".to_vec());
        assert_eq!(format!("{key:?}"), REDACTED);
    }
}
