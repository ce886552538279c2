//! Fuzzes Gemini's generateContent response and error bodies.
//! The checks live in `dspex_runtime::__fuzz::wire::gemini_response`; run with `scripts/fuzz SECONDS gemini_response`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| dspex_runtime::__fuzz::wire::gemini_response(data));
