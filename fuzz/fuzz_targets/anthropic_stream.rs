//! Fuzzes Anthropic's streamed events (`message_start` … `message_stop`, `error`) as the client
//! reads them: cut and whole decoding agree, no panics, non-empty deltas, usage that adds up.
//! The checks live in `dspex_runtime::__fuzz::wire::anthropic_stream`; run with `scripts/fuzz SECONDS`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| dspex_runtime::__fuzz::wire::anthropic_stream(data));
