//! Which commands write, as the server itself says: the flags of its `COMMAND` reply
//! (`write`, `readonly`, `may_replicate`), asked once per pool, on its first connection. A
//! pooled connection reads them for every command it sends, to tell whether a reply means
//! something was applied (durable mode's `WAIT`, the retry loop's classes). Where the server
//! or our ACL user refuses `COMMAND`, the connection falls back to its own list of commands
//! that only read.

use redis::Value;

/// The commands a server knows, sorted by name (upper case), and whether each may write; a
/// container (`CONFIG`, `OBJECT`...) by its subcommands, sorted too.
#[derive(Debug, Default)]
pub(crate) struct CommandTable {
    entries: Vec<(String, Kind)>,
}

#[derive(Debug)]
enum Kind {
    /// A command: whether it may write.
    Command(bool),
    /// A container: its subcommands (upper case, without the container's name) and whether
    /// each may write.
    Container(Vec<(String, bool)>),
}

impl CommandTable {
    /// `COMMAND`, packed.
    pub(crate) fn request() -> Vec<u8> {
        redis::cmd("COMMAND").get_packed_command()
    }

    /// Reads a `COMMAND` reply; `None` when it is not one.
    pub(crate) fn parse(reply: &Value) -> Option<CommandTable> {
        let mut entries: Vec<(String, Kind)> = items(reply)?.iter().filter_map(entry).collect();
        if entries.is_empty() {
            return None;
        }
        entries.sort_by(|a, b| a.0.cmp(&b.0));
        entries.dedup_by(|a, b| a.0 == b.0);
        for (_, kind) in &mut entries {
            if let Kind::Container(subs) = kind {
                subs.sort_by(|a, b| a.0.cmp(&b.0));
            }
        }
        Some(CommandTable { entries })
    }

    /// Whether the command `name` (with `first`, its first argument, which names the
    /// subcommand of a container such as `CONFIG` or `OBJECT`) may write, as the server
    /// says; `None` when the table does not tell (an unknown command, a container's unknown
    /// subcommand). Runs for every command sent: binary searches, no allocation.
    pub(crate) fn writes(&self, name: &[u8], first: Option<&[u8]>) -> Option<bool> {
        match &find(&self.entries, name)?.1 {
            Kind::Command(writes) => Some(*writes),
            Kind::Container(subs) => Some(find(subs, first?)?.1),
        }
    }
}

/// The entry named `name` (in any case) in `sorted`.
fn find<'a, T>(sorted: &'a [(String, T)], name: &[u8]) -> Option<&'a (String, T)> {
    sorted
        .binary_search_by(|(entry, _)| entry.bytes().cmp(name.iter().map(u8::to_ascii_uppercase)))
        .ok()
        .map(|at| &sorted[at])
}

/// The elements of an array (or, in RESP3, a set).
fn items(value: &Value) -> Option<&[Value]> {
    match value {
        Value::Array(items) | Value::Set(items) => Some(items),
        _ => None,
    }
}

fn text(value: &Value) -> Option<&str> {
    match value {
        Value::BulkString(bytes) => std::str::from_utf8(bytes).ok(),
        Value::SimpleString(text) => Some(text),
        _ => None,
    }
}

/// One entry of a `COMMAND` reply (`[name, arity, flags, first key, last key, step, ...]`,
/// with its subcommands tenth from Redis 7.0). A container's own flags say nothing of what
/// its subcommands do: it is known by theirs.
fn entry(value: &Value) -> Option<(String, Kind)> {
    let fields = items(value)?;
    let name = text(fields.first()?)?.to_ascii_uppercase();
    if let Some(subcommands) = fields.get(9).and_then(items).filter(|s| !s.is_empty()) {
        let subs = subcommands
            .iter()
            .filter_map(entry)
            .filter_map(|(sub, kind)| match kind {
                // Named `container|sub`.
                Kind::Command(writes) => {
                    let (_, sub) = sub.split_once('|')?;
                    Some((sub.to_owned(), writes))
                }
                Kind::Container(_) => None,
            })
            .collect();
        return Some((name, Kind::Container(subs)));
    }
    let writes = items(fields.get(2)?)?
        .iter()
        .filter_map(text)
        .any(|f| f.eq_ignore_ascii_case("write") || f.eq_ignore_ascii_case("may_replicate"));
    Some((name, Kind::Command(writes)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(name: &str, flags: &[&str], subcommands: Vec<Value>) -> Value {
        let text = |s: &str| Value::BulkString(s.as_bytes().to_vec());
        let status = |s: &str| Value::SimpleString(s.to_owned());
        let mut fields = vec![
            text(name),
            Value::Int(-2),
            Value::Array(flags.iter().map(|f| status(f)).collect()),
            Value::Int(1),
            Value::Int(1),
            Value::Int(1),
        ];
        if !subcommands.is_empty() {
            fields.extend([
                Value::Array(vec![]),
                Value::Array(vec![]),
                Value::Array(vec![]),
                Value::Array(subcommands),
            ]);
        }
        Value::Array(fields)
    }

    #[test]
    fn writes_are_told_from_reads_by_the_servers_flags() {
        let reply = Value::Array(vec![
            entry("set", &["write", "denyoom"], vec![]),
            entry("pfcount", &["readonly"], vec![]),
            entry("publish", &["pubsub", "may_replicate"], vec![]),
            entry("ping", &["fast"], vec![]),
            entry(
                "config",
                &[],
                vec![
                    entry("config|get", &["admin", "noscript"], vec![]),
                    entry("config|set", &["admin", "may_replicate"], vec![]),
                ],
            ),
        ]);
        let table = CommandTable::parse(&reply).unwrap();
        assert_eq!(table.writes(b"SET", None), Some(true));
        assert_eq!(table.writes(b"set", Some(b"k")), Some(true));
        assert_eq!(table.writes(b"PFCOUNT", None), Some(false));
        assert_eq!(table.writes(b"publish", None), Some(true));
        assert_eq!(table.writes(b"PING", None), Some(false));
        assert_eq!(table.writes(b"config", Some(b"get")), Some(false));
        assert_eq!(table.writes(b"CONFIG", Some(b"SET")), Some(true));
        // A container alone, an unknown subcommand, an unknown command: not told.
        assert_eq!(table.writes(b"CONFIG", None), None);
        assert_eq!(table.writes(b"CONFIG", Some(b"NOPE")), None);
        assert_eq!(table.writes(b"JSON.GET", None), None);
    }

    #[test]
    fn what_is_not_a_command_reply_gives_no_table() {
        assert!(CommandTable::parse(&Value::Nil).is_none());
        assert!(CommandTable::parse(&Value::Array(vec![])).is_none());
        assert!(CommandTable::parse(&Value::Array(vec![Value::Int(1)])).is_none());
    }
}
