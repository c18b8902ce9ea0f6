//! Entry points for `cargo fuzz` (see `fuzz/`): everything the crate parses itself. Built
//! only under `cargo fuzz`, which sets `--cfg fuzzing`; no other build contains it. Each
//! function must return for any input, without a panic.

use std::collections::HashMap;

/// A Sentinel pub/sub message, and the address rewriting applied to it.
pub fn sentinel_message(channel: &str, payload: &str) {
    if let Some(message) = crate::sentinel::message::SentinelMessage::parse(channel, payload) {
        let _ = message.service().map(str::len);
        let _ = message.mapped(&crate::node::AddressMap::default());
    }
}

/// A `SENTINEL MASTER` reply, or one entry of a `SENTINEL REPLICAS` or `SENTINEL SENTINELS`
/// reply, as field pairs.
pub fn sentinel_reply(fields: &[(String, String)]) {
    let reply: HashMap<String, String> = fields.iter().cloned().collect();
    let _ = crate::sentinel::parse_master(&reply);
    let list = [reply];
    let _ = crate::sentinel::parse_replicas(&list);
    let _ = crate::sentinel::parse_promotion(
        &list,
        Some(std::time::Duration::from_secs(1)),
        &crate::node::AddressMap::default(),
    );
    let _ = crate::sentinel::parse_sentinels(&list);
}

/// A connection string, a sentinel address, and their redaction.
pub fn strings(text: &str) {
    if let Ok(builder) = crate::config::url::parse(text) {
        let _ = format!("{builder:?}");
    }
    let _ = crate::config::parse_sentinel(text);
    let _ = crate::secret::redact_url(text);
}

/// The RESP scan of a packed request that tracks what a connection's caller did, and the
/// lookup of what each command does; the same bytes read as a server's `COMMAND` reply.
pub fn packed_request(bytes: &[u8]) {
    let table = redis::parse_redis_value(bytes)
        .ok()
        .and_then(|reply| crate::connection::command_table::CommandTable::parse(&reply));
    for (name, arg) in crate::connection::command::commands(bytes) {
        let _ = (name.len(), arg.map(<[u8]>::len));
        let _ = crate::connection::command_table::traits(name, arg, None);
        let _ = crate::connection::command_table::traits(name, arg, table.as_ref());
    }
}
