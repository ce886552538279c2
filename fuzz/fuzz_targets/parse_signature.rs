//! Fuzzes the signature-string grammar: it never panics, every error points inside the input, field names are the input's text at their spans.
//! The checks live in `dspex_runtime::__fuzz::adapter::parse_signature`; run with `scripts/fuzz SECONDS`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| dspex_runtime::__fuzz::adapter::parse_signature(data));
