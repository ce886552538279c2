//! Fuzzes the reader of values stored in the Redis tier of the response cache (header, key,
//! checksum, LZ4). The checks live in `dspex_lm::__fuzz::redis_value`, reached through
//! `dspex_runtime::__fuzz::wire::redis_value`; run with `scripts/fuzz SECONDS`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| dspex_runtime::__fuzz::wire::redis_value(data));
