//! The RESP command reader: the name and first argument of each command in a packed request,
//! as redis-rs writes them, and what a name says about the session. Pure; fuzzed.

pub(crate) fn is_subscribe(name: &[u8]) -> bool {
    [&b"SUBSCRIBE"[..], b"PSUBSCRIBE", b"SSUBSCRIBE", b"MONITOR"]
        .iter()
        .any(|s| name.eq_ignore_ascii_case(s))
}

/// Commands after which the connection is no longer what the pool made: another db, user,
/// protocol or reply mode, a name or tracking the next caller did not ask for. `RESET` does
/// all of these at once (db 0, user `default`, RESP2).
pub(crate) fn changes_session(name: &[u8], arg: Option<&[u8]>) -> bool {
    let is = |n: &str| name.eq_ignore_ascii_case(n.as_bytes());
    // `HELLO` with no argument only reports (the pool asks roles with it); with a protocol
    // version it may switch protocol, user and name.
    if is("SELECT") || is("AUTH") || is("RESET") || (is("HELLO") && arg.is_some()) {
        return true;
    }
    if is("READONLY") || is("READWRITE") {
        return true;
    }
    is("CLIENT")
        && arg.is_some_and(|sub| {
            ["REPLY", "SETNAME", "TRACKING", "NO-EVICT", "NO-TOUCH"]
                .iter()
                .any(|s| sub.eq_ignore_ascii_case(s.as_bytes()))
        })
}

/// The name and first argument of each command in a packed request (RESP arrays of bulk
/// strings, as redis-rs writes them). Stops quietly at anything it does not understand, which
/// [`Commands::rest`] then holds.
pub(crate) fn commands(packed: &[u8]) -> Commands<'_> {
    Commands { rest: packed }
}

/// The iterator of [`commands`].
#[derive(Debug)]
pub(crate) struct Commands<'a> {
    rest: &'a [u8],
}

impl<'a> Commands<'a> {
    /// What was not read: empty once every command was.
    pub(crate) fn rest(&self) -> &'a [u8] {
        self.rest
    }
}

impl<'a> Iterator for Commands<'a> {
    type Item = (&'a [u8], Option<&'a [u8]>);

    fn next(&mut self) -> Option<Self::Item> {
        let (args, mut rest) = read_header(self.rest, b'*')?;
        let (mut name, mut first) = (None, None);
        for i in 0..args {
            let (len, after) = read_header(rest, b'$')?;
            let body = after.get(..len)?;
            match i {
                0 => name = Some(body),
                1 => first = Some(body),
                _ => {}
            }
            rest = after.get(len + 2..)?;
        }
        let name = name?;
        self.rest = rest;
        Some((name, first))
    }
}

/// One command of a packed request: where its bytes lie, and its arguments (its name first).
pub(crate) type Part<'a> = (std::ops::Range<usize>, Vec<&'a [u8]>);

/// Every command of a packed request with all its arguments (its name first) and where its
/// bytes lie in `packed`; `None` when the request is not RESP arrays of bulk strings through
/// to its end (an inline command, say).
pub(crate) fn split(packed: &[u8]) -> Option<Vec<Part<'_>>> {
    let mut out = Vec::new();
    let mut rest = packed;
    while !rest.is_empty() {
        let start = packed.len() - rest.len();
        let (count, mut after) = read_header(rest, b'*')?;
        let mut args = Vec::with_capacity(count.min(64));
        for _ in 0..count {
            let (len, body) = read_header(after, b'$')?;
            args.push(body.get(..len)?);
            after = body.get(len..)?.strip_prefix(b"\r\n")?;
        }
        if args.is_empty() {
            return None;
        }
        rest = after;
        out.push((start..packed.len() - rest.len(), args));
    }
    Some(out)
}

/// Reads `<marker><number>\r\n` at the start of `buf`.
fn read_header(buf: &[u8], marker: u8) -> Option<(usize, &[u8])> {
    let rest = buf.strip_prefix(&[marker])?;
    let mut number: usize = 0;
    for (i, &byte) in rest.iter().enumerate() {
        match byte {
            b'0'..=b'9' => {
                number = number
                    .checked_mul(10)?
                    .checked_add(usize::from(byte - b'0'))?;
            }
            b'\r' if i > 0 => return Some((number, rest.get(i + 2..)?)),
            _ => return None,
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(packed: &[u8]) -> Vec<String> {
        commands(packed)
            .map(|(n, _)| String::from_utf8_lossy(n).into_owned())
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
    fn split_gives_every_argument_and_the_bytes_of_each_command() {
        let mut pipe = redis::pipe();
        pipe.set("k\r\n", "v").cmd("MGET").arg("a").arg("b");
        let packed = pipe.get_packed_pipeline();
        let parts = split(&packed).unwrap();
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0].1, [&b"SET"[..], b"k\r\n", b"v"]);
        assert_eq!(parts[1].1, [&b"MGET"[..], b"a", b"b"]);
        assert_eq!(parts[1].0.end, packed.len());
        assert_eq!(
            &packed[parts[1].0.clone()],
            &redis::cmd("MGET").arg("a").arg("b").get_packed_command()[..]
        );
        assert!(split(b"PING\r\n").is_none());
        assert!(split(b"*2\r\n$3\r\nGET\r\n").is_none());
    }

    #[test]
    fn session_changes_are_recognised_with_their_subcommand() {
        let first = |cmd: &redis::Cmd| {
            let packed = cmd.get_packed_command();
            let (name, arg) = commands(&packed).next().unwrap();
            changes_session(name, arg)
        };
        assert!(first(redis::cmd("select").arg(1)));
        assert!(first(redis::cmd("HELLO").arg(3)));
        assert!(!first(&redis::cmd("HELLO")));
        assert!(first(redis::cmd("CLIENT").arg("reply").arg("off")));
        assert!(first(redis::cmd("CLIENT").arg("SETNAME").arg("x")));
        assert!(!first(redis::cmd("CLIENT").arg("ID")));
        assert!(!first(redis::cmd("GET").arg("SELECT")));
    }

    #[test]
    fn headers_read_digits_only() {
        assert_eq!(read_header(b"*12\r\nrest", b'*'), Some((12, &b"rest"[..])));
        assert_eq!(read_header(b"$0\r\n", b'$'), Some((0, &b""[..])));
        for garbage in [
            &b"$\r\n"[..],
            b"$-1\r\n",
            b"$+5\r\n",
            b"$5",
            b"*5\r\n",
            b"$99999999999999999999999\r\n",
        ] {
            assert_eq!(read_header(garbage, b'$'), None, "{garbage:?}");
        }
    }

    #[test]
    fn command_names_stops_at_garbage_and_keeps_what_it_did_not_read() {
        assert!(names(b"PING\r\n").is_empty());
        assert_eq!(commands(b"PING\r\n").rest(), b"PING\r\n");
        assert_eq!(names(b"*1\r\n$4\r\nPING\r\n*9"), ["PING"]);
        let mut parsed = commands(b"*1\r\n$4\r\nPING\r\n*9");
        parsed.by_ref().for_each(drop);
        assert_eq!(parsed.rest(), b"*9");
        let mut whole = commands(b"*1\r\n$4\r\nPING\r\n");
        whole.by_ref().for_each(drop);
        assert!(whole.rest().is_empty());
    }
}
