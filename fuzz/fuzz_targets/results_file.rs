//! Fuzzes the reader of a streamed evaluation's results file (what `ResultsFile::resume` reads
//! after a crash). The checks live in `dspex_runtime::__fuzz::evaluate::results_file`; run with
//! `scripts/fuzz SECONDS results_file`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| dspex_runtime::__fuzz::evaluate::results_file(data));
