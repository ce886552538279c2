//! Fuzzes Gemini's streamGenerateContent events, read in order by one stream reader.
//! The checks live in `dspex_runtime::__fuzz::wire::gemini_stream`; run with `scripts/fuzz SECONDS gemini_stream`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| dspex_runtime::__fuzz::wire::gemini_stream(data));
