//! Where a request goes: the keys of each command, as the server's own `COMMAND` reply places
//! them (first key, last key, step), their slots, and the refusal of a command or an atomic
//! request whose keys span slots, before anything is sent.
//!
//! Commands whose keys move with their arguments (`movablekeys`: `ZUNIONSTORE`, `XREAD`,
//! `SORT ... STORE`...) are asked of a node with `COMMAND GETKEYS`, one round trip; scripts
//! and functions (`EVAL`, `EVALSHA`, `FCALL` and their `_RO` forms) give their key count as
//! their second argument and are read here.

use std::collections::HashMap;

use redis::{ErrorKind, RedisError, ServerErrorKind, Value};

use super::slot;
use crate::reply::{bytes, int, items};

/// Where a command's keys are, as the server says.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Spec {
    /// Keys from argument `first` to `last` (negative: counted from the end), every `step`;
    /// `first` 0 for a command without keys.
    Range { first: i64, last: i64, step: i64 },
    /// A script or function: the key count is argument 2, the keys follow it.
    NumKeys,
    /// Moves with the arguments: ask the server.
    Movable,
    /// A container (`OBJECT`, `XINFO`...) whose subcommands have their own (Redis 7.0+).
    Container(HashMap<Vec<u8>, Spec>),
}

/// The key positions of every command a node listed, by lower-case name.
#[derive(Debug, Default)]
pub(crate) struct KeyTable {
    commands: HashMap<Vec<u8>, Spec>,
}

/// The keys of one command.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Keys<'a> {
    Known(Vec<&'a [u8]>),
    /// Only the server can tell (`COMMAND GETKEYS`).
    AskServer,
}

impl KeyTable {
    /// Reads a `COMMAND` reply; `None` when it is not one.
    pub(crate) fn parse(reply: &Value) -> Option<KeyTable> {
        let commands: HashMap<Vec<u8>, Spec> = items(reply)?.iter().filter_map(entry).collect();
        (!commands.is_empty()).then_some(KeyTable { commands })
    }

    /// The keys of the command `args` (its name first).
    pub(crate) fn keys<'a>(&self, args: &[&'a [u8]]) -> Keys<'a> {
        let Some(name) = args.first() else {
            return Keys::Known(Vec::new());
        };
        let Some(mut spec) = self.commands.get(&name.to_ascii_lowercase()) else {
            // A command this node did not list (a module loaded since, say).
            return Keys::AskServer;
        };
        if let Spec::Container(subs) = spec {
            match args
                .get(1)
                .and_then(|sub| subs.get(&sub.to_ascii_lowercase()))
            {
                Some(sub) => spec = sub,
                None => return Keys::Known(Vec::new()),
            }
        }
        match spec {
            Spec::Range { first, last, step } => {
                Keys::Known(in_range(args, *first, *last, *step).unwrap_or_default())
            }
            Spec::NumKeys => match args.get(2).and_then(|n| parse_count(n)) {
                Some(n) => Keys::Known(args.iter().skip(3).take(n).copied().collect()),
                None => Keys::Known(Vec::new()),
            },
            Spec::Movable | Spec::Container(_) => Keys::AskServer,
        }
    }
}

/// The arguments from `first` to `last` every `step`, as a `COMMAND` entry places keys.
fn in_range<'a>(args: &[&'a [u8]], first: i64, last: i64, step: i64) -> Option<Vec<&'a [u8]>> {
    if first <= 0 || step <= 0 {
        return Some(Vec::new());
    }
    let len = i64::try_from(args.len()).ok()?;
    let last = if last < 0 {
        len + last
    } else {
        last.min(len - 1)
    };
    let mut keys = Vec::new();
    let mut at = first;
    while at <= last {
        keys.push(*args.get(usize::try_from(at).ok()?)?);
        at += step;
    }
    Some(keys)
}

fn parse_count(bytes: &[u8]) -> Option<usize> {
    std::str::from_utf8(bytes).ok()?.parse().ok()
}

/// One entry of a `COMMAND` reply (`[name, arity, flags, first, last, step, ...]`, its
/// subcommands tenth from Redis 7.0).
fn entry(value: &Value) -> Option<(Vec<u8>, Spec)> {
    let fields = items(value)?;
    let name = bytes(fields.first()?)?.to_ascii_lowercase();
    if let Some(subs) = fields.get(9).and_then(items).filter(|s| !s.is_empty()) {
        let subs = subs
            .iter()
            .filter_map(entry)
            .filter_map(|(full, spec)| {
                let at = full.iter().position(|&b| b == b'|')?;
                Some((full[at + 1..].to_vec(), spec))
            })
            .collect();
        return Some((name, Spec::Container(subs)));
    }
    let movable = items(fields.get(2)?)?
        .iter()
        .filter_map(bytes)
        .any(|f| f.eq_ignore_ascii_case(b"movablekeys"));
    let scripted = matches!(
        &name[..],
        b"eval" | b"evalsha" | b"eval_ro" | b"evalsha_ro" | b"fcall" | b"fcall_ro"
    );
    let spec = match (scripted, movable) {
        (true, _) => Spec::NumKeys,
        (false, true) => Spec::Movable,
        (false, false) => Spec::Range {
            first: int(fields.get(3)?)?,
            last: int(fields.get(4)?)?,
            step: int(fields.get(5)?)?,
        },
    };
    Some((name, spec))
}

/// The one slot all of `keys` hash to: `None` without keys; an error naming each key's
/// slot when they span more than one.
pub(crate) fn slot_of(keys: &[&[u8]]) -> Result<Option<u16>, RedisError> {
    let mut slots = keys.iter().map(|k| slot::of(k));
    let Some(first) = slots.next() else {
        return Ok(None);
    };
    if slots.all(|s| s == first) {
        return Ok(Some(first));
    }
    let named: Vec<String> = keys
        .iter()
        .map(|k| format!("{} in slot {}", String::from_utf8_lossy(k), slot::of(k)))
        .collect();
    Err(cross_slot(&named.join(", ")))
}

/// The error of a request refused unsent because its keys span slots: `what` names them.
pub(crate) fn cross_slot(what: &str) -> RedisError {
    RedisError::from((
        ErrorKind::Server(ServerErrorKind::CrossSlot),
        "keys in different slots (refused unsent)",
        format!(
            "{what}; a command, a transaction or a script must keep its keys in one slot: give \
             them a common hash tag, as in {{user:42}}:name and {{user:42}}:email"
        ),
    ))
}

/// Reads a `COMMAND GETKEYS` reply: the keys, or none when the command has none.
pub(crate) fn keys_from_server(reply: &Value) -> Vec<Vec<u8>> {
    items(reply)
        .map(|keys| keys.iter().filter_map(bytes).map(<[u8]>::to_vec).collect())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &str) -> Value {
        Value::BulkString(s.as_bytes().to_vec())
    }

    fn command(name: &str, flags: &[&str], first: i64, last: i64, step: i64) -> Value {
        Value::Array(vec![
            bulk(name),
            Value::Int(-2),
            Value::Array(
                flags
                    .iter()
                    .map(|f| Value::SimpleString((*f).into()))
                    .collect(),
            ),
            Value::Int(first),
            Value::Int(last),
            Value::Int(step),
        ])
    }

    fn table() -> KeyTable {
        let mut object = match command("object", &[], 0, 0, 0) {
            Value::Array(fields) => fields,
            _ => unreachable!(),
        };
        object.extend([
            Value::Array(vec![]),
            Value::Array(vec![]),
            Value::Array(vec![]),
            Value::Array(vec![command("object|encoding", &["readonly"], 2, 2, 1)]),
        ]);
        KeyTable::parse(&Value::Array(vec![
            command("get", &["readonly"], 1, 1, 1),
            command("mset", &["write"], 1, -1, 2),
            command("ping", &[], 0, 0, 0),
            command("evalsha", &["movablekeys"], 0, 0, 0),
            command("zunionstore", &["write", "movablekeys"], 1, 1, 1),
            Value::Array(object),
        ]))
        .unwrap()
    }

    fn keys<'a>(table: &KeyTable, args: &[&'a str]) -> Keys<'a> {
        let args: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
        table.keys(&args)
    }

    #[test]
    fn keys_are_where_the_server_says() {
        let t = table();
        assert_eq!(keys(&t, &["GET", "a"]), Keys::Known(vec![b"a"]));
        assert_eq!(
            keys(&t, &["MSET", "a", "1", "b", "2"]),
            Keys::Known(vec![b"a", b"b"])
        );
        assert_eq!(keys(&t, &["ping"]), Keys::Known(vec![]));
        assert_eq!(
            keys(&t, &["EVALSHA", "sha", "2", "k1", "k2", "arg"]),
            Keys::Known(vec![b"k1", b"k2"])
        );
        assert_eq!(
            keys(&t, &["ZUNIONSTORE", "d", "2", "a", "b"]),
            Keys::AskServer
        );
        assert_eq!(keys(&t, &["NOSUCH", "x"]), Keys::AskServer);
        assert_eq!(
            keys(&t, &["OBJECT", "ENCODING", "k"]),
            Keys::Known(vec![b"k"])
        );
        assert_eq!(keys(&t, &["OBJECT", "HELP"]), Keys::Known(vec![]));
        // Too few arguments: no key is invented.
        assert_eq!(keys(&t, &["GET"]), Keys::Known(vec![]));
    }

    #[test]
    fn keys_spanning_slots_are_refused_with_their_slots() {
        assert_eq!(slot_of(&[]).unwrap(), None);
        assert_eq!(
            slot_of(&[b"{u1}a", b"{u1}b"]).unwrap(),
            Some(slot::of(b"u1"))
        );
        let err = slot_of(&[b"foo", b"bar"]).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Server(ServerErrorKind::CrossSlot));
        let detail = err.detail().unwrap();
        assert!(detail.contains("foo in slot 12182"), "{detail}");
        assert!(detail.contains("bar in slot 5061"), "{detail}");
    }
}
