//! Fuzzes the `json_repair` port: valid JSON reads as serde_json reads it, a result written as JSON reads back the same.
//! The checks live in `dspex_runtime::__fuzz::adapter::json_repair`; run with `scripts/fuzz SECONDS`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| dspex_runtime::__fuzz::adapter::json_repair(data));
