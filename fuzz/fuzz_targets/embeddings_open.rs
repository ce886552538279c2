//! Fuzzes opening (and searching) an embeddings index with one damaged file: a typed error naming the index, never a panic or a hang.
//! The checks live in `dspex_runtime::__fuzz::index::embeddings_open`; run with `scripts/fuzz SECONDS`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| dspex_runtime::__fuzz::index::embeddings_open(data));
