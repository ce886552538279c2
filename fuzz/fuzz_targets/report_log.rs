//! Fuzzes the optimization report's readers (a job's JSONL log, GEPA's saved state) and the page
//! made from them. The checks live in `dspex_runtime::__fuzz::report::report_log`; run with
//! `scripts/fuzz SECONDS`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| dspex_runtime::__fuzz::report::report_log(data));
