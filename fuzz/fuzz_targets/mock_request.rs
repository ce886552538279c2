//! Fuzzes the mock LM server's HTTP/1.1 request reader and router over loopback: no hang, answers are HTTP.
//! The checks live in `dspex_runtime::__fuzz::mock::mock_request`; run with `scripts/fuzz SECONDS`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| dspex_runtime::__fuzz::mock::mock_request(data));
