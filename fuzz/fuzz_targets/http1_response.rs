//! Fuzzes the HTTP/1.1 response reader of the LM client over loopback (status line, headers, Content-Length, chunked bodies, trailers): whole and cut reads agree, no hang.
//! The checks live in `dspex_runtime::__fuzz::wire::http1_response`; run with `scripts/fuzz SECONDS`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| dspex_runtime::__fuzz::wire::http1_response(data));
