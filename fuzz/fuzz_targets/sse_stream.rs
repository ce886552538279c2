//! Fuzzes the server-sent-events decoder and the JSON bodies of completions, stream chunks and embeddings: cut and whole decoding agree.
//! The checks live in `dspex_runtime::__fuzz::wire::sse_stream`; run with `scripts/fuzz SECONDS`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| dspex_runtime::__fuzz::wire::sse_stream(data));
