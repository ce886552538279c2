//! Fuzzes the lax validation of a field's text (or JSON value) into a typed output (first byte: the type).
//! The checks live in `dspex_runtime::__fuzz::adapter::parse_value`; run with `scripts/fuzz SECONDS`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| dspex_runtime::__fuzz::adapter::parse_value(data));
