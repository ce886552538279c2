//! Fuzzes opening (and searching) a BM25 index with one damaged file: a typed error naming the index, never a panic or a hang.
//! The checks live in `dspex_runtime::__fuzz::index::bm25_open`; run with `scripts/fuzz SECONDS`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| dspex_runtime::__fuzz::index::bm25_open(data));
