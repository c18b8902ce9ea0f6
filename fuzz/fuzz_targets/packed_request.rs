//! The scan of packed requests that tracks MULTI, WATCH, SUBSCRIBE and session changes.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| r2d2_redis_sentinel::fuzzing::packed_request(data));
