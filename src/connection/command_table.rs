//! Which commands write, block, or may answer that they changed nothing: as the server itself
//! says (the flags of its `COMMAND` reply: `write`, `readonly`, `may_replicate`, `blocking`),
//! asked once per pool on its first connection, and otherwise as this crate's own lists say.
//! A pooled connection looks up every command it sends, to tell whether a reply means
//! something was applied (durable mode's `WAIT`, the retry loop's classes) and whether the
//! request may block (the fence releases such requests). Where the server or our ACL user
//! refuses `COMMAND`, or for a command it does not list, the lists decide, and anything they
//! do not name as a read counts as a write.

use redis::Value;

use crate::reply::{items, text};

/// What a reply that is not an error says about the command it answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Effect {
    /// It only reads: nothing was applied.
    Read,
    /// Something may have been applied.
    Write,
    /// A write whose nil (or empty) reply says it changed nothing: a pop or a move from an
    /// empty list, a blocking one that timed out, a `GETDEL` of no key.
    WriteUnlessNil,
    /// A write whose reply 0 says it changed nothing: a conditional write whose condition
    /// failed (`SETNX`, `EXPIRE NX`...), a removal of nothing (`DEL`, `SREM`...).
    WriteUnlessZero,
}

impl Effect {
    pub(crate) fn may_write(self) -> bool {
        self != Effect::Read
    }

    /// Whether `reply` (not an error) says something was applied.
    pub(crate) fn applied(self, reply: &Value) -> bool {
        match self {
            Effect::Read => false,
            Effect::Write => true,
            Effect::WriteUnlessNil => {
                !matches!(reply, Value::Nil) && !matches!(reply, Value::Array(a) if a.is_empty())
            }
            Effect::WriteUnlessZero => !matches!(reply, Value::Int(0)),
        }
    }
}

/// What a command does, as far as a pooled connection cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Traits {
    pub(crate) effect: Effect,
    /// It may block until data comes or its timeout ends.
    pub(crate) blocks: bool,
    /// Told by its subcommand (its first argument): another command of the same name may
    /// do something else.
    pub(crate) by_subcommand: bool,
}

/// The longest command name looked up; a longer one counts as a write that does not block.
const LONGEST_NAME: usize = 48;

/// What the command `name` (with `first`, its first argument, which names the subcommand of
/// a container such as `CONFIG` or `OBJECT`) does: as the server's `table` says, else as this
/// crate's lists say. Runs for every command sent: the name is upper-cased once, on the stack,
/// and looked up with one binary search while the table knows it.
pub(crate) fn traits(name: &[u8], first: Option<&[u8]>, table: Option<&CommandTable>) -> Traits {
    let mut buf = [0u8; LONGEST_NAME];
    let Some(upper) = upper_case(name, &mut buf) else {
        return Traits {
            effect: Effect::Write,
            blocks: false,
            by_subcommand: false,
        };
    };
    if let Some(traits) = table.and_then(|table| table.find(upper, first)) {
        return traits;
    }
    let effect = if listed(ONLY_READ, upper) {
        Effect::Read
    } else {
        write_effect(upper)
    };
    Traits {
        effect,
        blocks: listed(BLOCKING, upper),
        by_subcommand: false,
    }
}

/// The effect of a write named `upper`: whether its reply can say it changed nothing.
fn write_effect(upper: &[u8]) -> Effect {
    if listed(UNLESS_NIL, upper) {
        Effect::WriteUnlessNil
    } else if listed(UNLESS_ZERO, upper) {
        Effect::WriteUnlessZero
    } else {
        Effect::Write
    }
}

/// `name` in upper case, in `buf`; `None` when it is longer.
fn upper_case<'a>(name: &[u8], buf: &'a mut [u8; LONGEST_NAME]) -> Option<&'a [u8]> {
    let upper = buf.get_mut(..name.len())?;
    upper.copy_from_slice(name);
    upper.make_ascii_uppercase();
    Some(upper)
}

/// Whether `upper` is in `list`, sorted by bytes.
fn listed(list: &[&str], upper: &[u8]) -> bool {
    list.binary_search_by(|r| r.as_bytes().cmp(upper)).is_ok()
}

/// The commands a server knows, sorted by name (upper case), with what each does; a
/// container (`CONFIG`, `OBJECT`...) by its subcommands, sorted too.
#[derive(Debug, Default)]
pub(crate) struct CommandTable {
    entries: Vec<(Box<[u8]>, Kind)>,
}

#[derive(Debug)]
enum Kind {
    Command(Traits),
    /// A container: its subcommands (upper case, without the container's name).
    Container(Vec<(Box<[u8]>, Traits)>),
}

impl CommandTable {
    /// `COMMAND`, packed.
    pub(crate) fn request() -> Vec<u8> {
        redis::cmd("COMMAND").get_packed_command()
    }

    /// Reads a `COMMAND` reply; `None` when it is not one.
    pub(crate) fn parse(reply: &Value) -> Option<CommandTable> {
        let mut entries: Vec<(Box<[u8]>, Kind)> = items(reply)?.iter().filter_map(entry).collect();
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

    /// What the command `upper` (upper case) with the first argument `first` does, as the
    /// server says; `None` when it does not tell (an unknown command, a container's unknown
    /// or missing subcommand).
    fn find(&self, upper: &[u8], first: Option<&[u8]>) -> Option<Traits> {
        let at = self
            .entries
            .binary_search_by(|(entry, _)| (**entry).cmp(upper))
            .ok()?;
        match &self.entries[at].1 {
            Kind::Command(traits) => Some(*traits),
            Kind::Container(subs) => {
                let mut buf = [0u8; LONGEST_NAME];
                let sub = upper_case(first?, &mut buf)?;
                let at = subs
                    .binary_search_by(|(entry, _)| (**entry).cmp(sub))
                    .ok()?;
                Some(subs[at].1)
            }
        }
    }
}

/// One entry of a `COMMAND` reply (`[name, arity, flags, first key, last key, step, ...]`,
/// with its subcommands tenth from Redis 7.0). A container's own flags say nothing of what
/// its subcommands do: it is known by theirs. A subcommand is named `container|sub`.
fn entry(value: &Value) -> Option<(Box<[u8]>, Kind)> {
    let fields = items(value)?;
    let name = text(fields.first()?)?.to_ascii_uppercase();
    if let Some(subcommands) = fields.get(9).and_then(items).filter(|s| !s.is_empty()) {
        let subs = subcommands
            .iter()
            .filter_map(entry)
            .filter_map(|(sub, kind)| match kind {
                Kind::Command(traits) => {
                    let at = sub.iter().position(|&b| b == b'|')?;
                    Some((sub[at + 1..].into(), traits))
                }
                Kind::Container(_) => None,
            })
            .collect();
        return Some((name.into_bytes().into(), Kind::Container(subs)));
    }
    let flags: Vec<&str> = items(fields.get(2)?)?.iter().filter_map(text).collect();
    let flagged = |flag: &str| flags.iter().any(|f| f.eq_ignore_ascii_case(flag));
    // A subcommand's own name is what the lists know it by, if at all (they do not).
    let upper = name.as_bytes();
    let effect = if flagged("write") || flagged("may_replicate") {
        write_effect(upper)
    } else {
        Effect::Read
    };
    let traits = Traits {
        effect,
        blocks: flagged("blocking") || listed(BLOCKING, upper),
        by_subcommand: false,
    };
    Some((name.into_bytes().into(), Kind::Command(traits)))
}

/// Commands that only read: a reply to one says nothing was applied, so a later command of
/// the same attempt that is refused unsent leaves the attempt safe to run again. Any command
/// not listed (writes, scripts, module commands, anything new) counts as one that may write.
/// Sorted by bytes, for [`only_reads`].
const ONLY_READ: &[&str] = &[
    "BITCOUNT",
    "BITFIELD_RO",
    "BITPOS",
    "DBSIZE",
    "DUMP",
    "ECHO",
    "EVALSHA_RO",
    "EVAL_RO",
    "EXISTS",
    "EXPIRETIME",
    "FCALL_RO",
    "GEODIST",
    "GEOHASH",
    "GEOPOS",
    "GEORADIUSBYMEMBER_RO",
    "GEORADIUS_RO",
    "GEOSEARCH",
    "GET",
    "GETBIT",
    "GETRANGE",
    "HELLO",
    "HEXISTS",
    "HGET",
    "HGETALL",
    "HKEYS",
    "HLEN",
    "HMGET",
    "HRANDFIELD",
    "HSCAN",
    "HSTRLEN",
    "HVALS",
    "INFO",
    "KEYS",
    "LASTSAVE",
    "LCS",
    "LINDEX",
    "LLEN",
    "LPOS",
    "LRANGE",
    "MGET",
    "PEXPIRETIME",
    "PING",
    "PTTL",
    "RANDOMKEY",
    "ROLE",
    "SCAN",
    "SCARD",
    "SDIFF",
    "SINTER",
    "SINTERCARD",
    "SISMEMBER",
    "SMEMBERS",
    "SMISMEMBER",
    "SORT_RO",
    "SRANDMEMBER",
    "SSCAN",
    "STRLEN",
    "SUBSTR",
    "SUNION",
    "TIME",
    "TTL",
    "TYPE",
    "XLEN",
    "XPENDING",
    "XRANGE",
    "XREAD",
    "XREVRANGE",
    "ZCARD",
    "ZCOUNT",
    "ZDIFF",
    "ZINTER",
    "ZINTERCARD",
    "ZLEXCOUNT",
    "ZMSCORE",
    "ZRANDMEMBER",
    "ZRANGE",
    "ZRANGEBYLEX",
    "ZRANGEBYSCORE",
    "ZRANK",
    "ZREVRANGE",
    "ZREVRANGEBYLEX",
    "ZREVRANGEBYSCORE",
    "ZREVRANK",
    "ZSCAN",
    "ZSCORE",
    "ZUNION",
];

/// Commands that block until data comes or their timeout ends: a connection blocked in one on
/// a master the fence closes is released (`CLIENT UNBLOCK`). Sorted by bytes.
const BLOCKING: &[&str] = &[
    "BLMOVE",
    "BLMPOP",
    "BLPOP",
    "BRPOP",
    "BRPOPLPUSH",
    "BZMPOP",
    "BZPOPMAX",
    "BZPOPMIN",
    "WAIT",
    "WAITAOF",
    "XREAD",
    "XREADGROUP",
];

/// Writes whose nil (or empty) reply says they changed nothing ([`Effect::WriteUnlessNil`]).
/// Sorted by bytes. `SET` is not here: with `GET`, a nil reply means it did set.
const UNLESS_NIL: &[&str] = &[
    "BLMOVE",
    "BLMPOP",
    "BLPOP",
    "BRPOP",
    "BRPOPLPUSH",
    "BZMPOP",
    "BZPOPMAX",
    "BZPOPMIN",
    "GETDEL",
    "LMOVE",
    "LMPOP",
    "LPOP",
    "RPOP",
    "RPOPLPUSH",
    "SPOP",
    "XREADGROUP",
    "ZMPOP",
    "ZPOPMAX",
    "ZPOPMIN",
];

/// Writes whose reply 0 says they changed nothing ([`Effect::WriteUnlessZero`]). Sorted by
/// bytes. `HSET` and `ZADD` are not here: they count what they added, not what they updated.
const UNLESS_ZERO: &[&str] = &[
    "DEL",
    "EXPIRE",
    "EXPIREAT",
    "HDEL",
    "HSETNX",
    "LPUSHX",
    "LREM",
    "MSETNX",
    "PERSIST",
    "PEXPIRE",
    "PEXPIREAT",
    "RENAMENX",
    "RPUSHX",
    "SADD",
    "SETNX",
    "SMOVE",
    "SREM",
    "UNLINK",
    "XACK",
    "XDEL",
    "ZREM",
];

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

    fn effect(name: &str, first: Option<&str>, table: Option<&CommandTable>) -> Option<Effect> {
        let first = first.map(str::as_bytes);
        table
            .map_or(Some(traits(name.as_bytes(), first, None)), |t| {
                t.find(&name.to_ascii_uppercase().into_bytes(), first)
            })
            .map(|t| t.effect)
    }

    #[test]
    fn writes_are_told_from_reads_by_the_servers_flags() {
        let reply = Value::Array(vec![
            entry("set", &["write", "denyoom"], vec![]),
            entry("blmove", &["write", "blocking"], vec![]),
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
        let t = Some(&table);
        assert_eq!(effect("SET", None, t), Some(Effect::Write));
        assert_eq!(effect("set", Some("k"), t), Some(Effect::Write));
        assert_eq!(effect("BLMOVE", None, t), Some(Effect::WriteUnlessNil));
        assert_eq!(effect("PFCOUNT", None, t), Some(Effect::Read));
        assert_eq!(effect("publish", None, t), Some(Effect::Write));
        assert_eq!(effect("PING", None, t), Some(Effect::Read));
        assert_eq!(effect("config", Some("get"), t), Some(Effect::Read));
        assert_eq!(effect("CONFIG", Some("SET"), t), Some(Effect::Write));
        // A container alone, an unknown subcommand, an unknown command: not told.
        assert_eq!(effect("CONFIG", None, t), None);
        assert_eq!(effect("CONFIG", Some("NOPE"), t), None);
        assert_eq!(effect("JSON.GET", None, t), None);
        // What the table does not tell, the lists do.
        assert_eq!(traits(b"json.get", None, t).effect, Effect::Write);
        assert!(traits(b"blmove", None, t).blocks);
        assert!(!traits(b"set", None, t).blocks);
    }

    #[test]
    fn what_is_not_a_command_reply_gives_no_table() {
        assert!(CommandTable::parse(&Value::Nil).is_none());
        assert!(CommandTable::parse(&Value::Array(vec![])).is_none());
        assert!(CommandTable::parse(&Value::Array(vec![Value::Int(1)])).is_none());
    }

    #[test]
    fn the_lists_are_sorted_and_found_in_any_case() {
        assert!(BLOCKING.windows(2).all(|w| w[0] < w[1]));
        for (list, expected) in [
            (ONLY_READ, Effect::Read),
            (UNLESS_NIL, Effect::WriteUnlessNil),
            (UNLESS_ZERO, Effect::WriteUnlessZero),
        ] {
            assert!(list.windows(2).all(|w| w[0] < w[1]));
            for name in list {
                assert_eq!(effect(name, None, None), Some(expected), "{name}");
                let lower = name.to_ascii_lowercase();
                assert_eq!(effect(&lower, None, None), Some(expected), "{name}");
            }
        }
        for name in ["SET", "INCR", "EVAL", "XADD", "", "GE"] {
            assert_eq!(effect(name, None, None), Some(Effect::Write), "{name}");
        }
        let long = "X".repeat(LONGEST_NAME + 1);
        assert_eq!(effect(&long, None, None), Some(Effect::Write));
    }

    #[test]
    fn a_reply_that_shows_nothing_changed_applied_nothing() {
        let of = |name: &str| traits(name.as_bytes(), None, None).effect;
        let empty = Value::Array(vec![]);
        let text = Value::BulkString(b"job".to_vec());
        assert!(!of("BLMOVE").applied(&Value::Nil));
        assert!(!of("ZPOPMIN").applied(&empty));
        assert!(of("BLMOVE").applied(&text));
        assert!(!of("SETNX").applied(&Value::Int(0)));
        assert!(of("SETNX").applied(&Value::Int(1)));
        // A nil from SET may mean it set (SET ... GET of a key that did not exist).
        assert!(of("SET").applied(&Value::Nil));
        assert!(!of("GET").applied(&text));
    }
}
