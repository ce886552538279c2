//! Fuzzes `JSONAdapter::parse` (first line of the input: the signature), with `chat_parse`'s checks.
//! The checks live in `dspex_runtime::__fuzz::adapter::json_parse`; run with `scripts/fuzz SECONDS`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| dspex_runtime::__fuzz::adapter::json_parse(data));
