//! Fuzzes `ChatAdapter::parse` (first line of the input: the signature): outputs complete and typed, re-formatted answers parse back the same, errors name an output field.
//! The checks live in `dspex_runtime::__fuzz::adapter::chat_parse`; run with `scripts/fuzz SECONDS`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| dspex_runtime::__fuzz::adapter::chat_parse(data));
