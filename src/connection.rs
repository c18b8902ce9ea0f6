//! A pooled connection: a redis connection, the generation it was born in, and what it has
//! seen that makes it unfit to hand to the next caller.

use std::time::{Duration, Instant};

use redis::{ConnectionLike, ErrorKind, RedisError, RedisResult, Role, ServerErrorKind, Value};

use crate::{NodeAddr, retry};

/// A connection to a Redis data node, handed out by the pool inside an
/// [`r2d2::PooledConnection`].
///
/// It implements [`redis::ConnectionLike`], so every command of [`redis::Commands`] and every
/// [`redis::Cmd`] or [`redis::Pipeline`] works on it. It watches what goes through it, so that
/// a connection left in a bad state is never handed to the next caller: one returned inside
/// `MULTI`, subscribed, after an I/O error or timeout (a reply may still be in flight), after a
/// failover error (`READONLY`: the node is no longer master), or while its thread panics.
pub struct Connection {
    inner: redis::Connection,
    addr: NodeAddr,
    generation: u64,
    in_transaction: bool,
    unusable: bool,
    /// The error that showed the node is no longer a writable master, if one did.
    failover_error: Option<RedisError>,
    /// When the node last answered a request without error.
    last_ok: Instant,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("addr", &self.addr)
            .field("generation", &self.generation)
            .field("in_transaction", &self.in_transaction)
            .field("unusable", &self.unusable)
            .field("failover_error", &self.failover_error)
            .finish_non_exhaustive()
    }
}

impl Connection {
    pub(crate) fn new(inner: redis::Connection, addr: NodeAddr, generation: u64) -> Self {
        Connection {
            inner,
            addr,
            generation,
            in_transaction: false,
            unusable: false,
            failover_error: None,
            last_ok: Instant::now(),
        }
    }

    /// The node this connection talks to.
    pub fn addr(&self) -> &NodeAddr {
        &self.addr
    }

    /// The pool generation this connection was born in: the generation current when its node
    /// was looked up.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Sends `ROLE` and returns the node's answer.
    ///
    /// # Errors
    ///
    /// Any error of the round trip.
    pub fn role(&mut self) -> RedisResult<Role> {
        redis::cmd("ROLE").query(self)
    }

    /// True while nothing has made the connection unfit for another caller.
    pub(crate) fn is_reusable(&self) -> bool {
        !self.unusable
            && !self.in_transaction
            && self.failover_error.is_none()
            && self.inner.is_open()
    }

    /// True when the node answered a request without error less than `window` ago.
    pub(crate) fn answered_within(&self, window: Duration) -> bool {
        self.last_ok.elapsed() < window
    }

    /// The error that showed the node is no longer a writable master (`READONLY`...), if any.
    pub(crate) fn failover_error(&self) -> Option<&RedisError> {
        self.failover_error.as_ref()
    }

    /// PING and ROLE in one round trip; returns the role.
    pub(crate) fn ping_role(&mut self) -> RedisResult<Role> {
        let (pong, role): (String, Role) = redis::pipe().cmd("PING").cmd("ROLE").query(self)?;
        if pong != "PONG" {
            self.unusable = true;
            return Err(RedisError::from((
                ErrorKind::UnexpectedReturnType,
                "PING did not answer PONG",
                pong,
            )));
        }
        Ok(role)
    }

    fn before(&mut self, packed: &[u8]) {
        for name in command_names(packed) {
            if name.eq_ignore_ascii_case(b"MULTI") {
                self.in_transaction = true;
            } else if name.eq_ignore_ascii_case(b"EXEC")
                || name.eq_ignore_ascii_case(b"DISCARD")
                || name.eq_ignore_ascii_case(b"RESET")
            {
                self.in_transaction = false;
            } else if is_subscribe(name) {
                // Subscribed connections only take (un)subscribe commands: never reuse one.
                self.unusable = true;
            }
        }
    }

    fn after<T>(&mut self, result: RedisResult<T>) -> RedisResult<T> {
        match &result {
            Ok(_) => self.last_ok = Instant::now(),
            Err(err) => self.observe(err),
        }
        result
    }

    /// redis-rs hands server errors (`READONLY`, `EXECABORT`...) back as values, to be turned
    /// into errors later by the caller's `query`; they are looked at here, as they pass.
    fn observe_reply(&mut self, reply: &Value) {
        if let Value::ServerError(err) = reply {
            self.observe(&RedisError::from(err.clone()));
        }
    }

    fn observe(&mut self, err: &RedisError) {
        if retry::classify(err).is_failover() {
            self.failover_error = Some(err.clone());
        }
        // A server error is a complete reply: the connection is still in step. Anything else
        // (I/O error, timeout, unparsable reply) may leave a reply in flight.
        if !matches!(
            err.kind(),
            ErrorKind::Server(_) | ErrorKind::Extension | ErrorKind::UnexpectedReturnType
        ) {
            self.unusable = true;
        }
        if err.kind() == ErrorKind::Server(ServerErrorKind::ExecAbort) {
            self.in_transaction = false;
        }
    }
}

impl ConnectionLike for Connection {
    fn req_packed_command(&mut self, cmd: &[u8]) -> RedisResult<Value> {
        self.before(cmd);
        let result = self.inner.req_packed_command(cmd);
        if let Ok(reply) = &result {
            self.observe_reply(reply);
        }
        self.after(result)
    }

    fn req_packed_commands(
        &mut self,
        cmd: &[u8],
        offset: usize,
        count: usize,
    ) -> RedisResult<Vec<Value>> {
        self.before(cmd);
        let result = self.inner.req_packed_commands(cmd, offset, count);
        if let Ok(replies) = &result {
            for reply in replies {
                self.observe_reply(reply);
            }
        }
        self.after(result)
    }

    fn get_db(&self) -> i64 {
        self.inner.get_db()
    }

    fn check_connection(&mut self) -> bool {
        redis::cmd("PING").query::<String>(self).is_ok()
    }

    fn is_open(&self) -> bool {
        self.inner.is_open()
    }
}

fn is_subscribe(name: &[u8]) -> bool {
    [&b"SUBSCRIBE"[..], b"PSUBSCRIBE", b"SSUBSCRIBE", b"MONITOR"]
        .iter()
        .any(|s| name.eq_ignore_ascii_case(s))
}

/// The names of the commands in a packed request (RESP arrays of bulk strings, as redis-rs
/// writes them). Stops quietly at anything it does not understand.
fn command_names(mut packed: &[u8]) -> impl Iterator<Item = &[u8]> {
    std::iter::from_fn(move || {
        let (args, rest) = read_header(packed, b'*')?;
        let mut rest = rest;
        let mut name = None;
        for i in 0..args {
            let (len, after) = read_header(rest, b'$')?;
            let body = after.get(..len)?;
            if i == 0 {
                name = Some(body);
            }
            rest = after.get(len + 2..)?;
        }
        packed = rest;
        name
    })
}

/// Reads `<marker><number>\r\n` at the start of `buf`.
fn read_header(buf: &[u8], marker: u8) -> Option<(usize, &[u8])> {
    let rest = buf.strip_prefix(&[marker])?;
    let end = rest.iter().position(|&b| b == b'\r')?;
    let number = std::str::from_utf8(&rest[..end]).ok()?.parse().ok()?;
    Some((number, rest.get(end + 2..)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(packed: &[u8]) -> Vec<String> {
        command_names(packed)
            .map(|n| String::from_utf8_lossy(n).into_owned())
            .collect()
    }

    #[test]
    fn command_names_reads_single_commands_and_pipelines() {
        assert_eq!(names(&redis::cmd("MULTI").get_packed_command()), ["MULTI"]);
        let mut pipe = redis::pipe();
        pipe.atomic().set("k", "v\r\n$3").incr("n", 1);
        assert_eq!(
            names(&pipe.get_packed_pipeline()),
            ["MULTI", "SET", "INCRBY", "EXEC"]
        );
    }

    #[test]
    fn command_names_stops_at_garbage() {
        assert!(names(b"PING\r\n").is_empty());
        assert_eq!(names(b"*1\r\n$4\r\nPING\r\n*9"), ["PING"]);
    }
}
