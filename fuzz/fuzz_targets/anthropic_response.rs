//! Fuzzes the Anthropic Messages response body and error body readers: no panics, one
//! completion, named tool calls with JSON arguments, usage that adds up.
//! The checks live in `dspex_runtime::__fuzz::wire::anthropic_response`; run with `scripts/fuzz SECONDS`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| dspex_runtime::__fuzz::wire::anthropic_response(data));
