//! Fuzzes the `ast.literal_eval` port: a value's repr reads back as the same value.
//! The checks live in `dspex_runtime::__fuzz::adapter::literal_eval`; run with `scripts/fuzz SECONDS`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| dspex_runtime::__fuzz::adapter::literal_eval(data));
