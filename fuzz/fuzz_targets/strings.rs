//! Connection strings and sentinel addresses.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &str| r2d2_redis_sentinel::fuzzing::strings(data));
