//! Sentinel messages and replies (`SENTINEL MASTER`, `REPLICAS`, `SENTINELS`): the first line
//! is the channel, the rest the payload; the same bytes read as `key=value` lines make a reply.
#![no_main]

use libfuzzer_sys::fuzz_target;
use r2d2_redis_sentinel::fuzzing;

fuzz_target!(|data: &str| {
    let (channel, payload) = data.split_once('\n').unwrap_or((data, ""));
    fuzzing::sentinel_message(channel, payload);
    let fields: Vec<(String, String)> = data
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    fuzzing::sentinel_reply(&fields);
});
