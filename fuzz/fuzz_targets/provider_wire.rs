//! Fuzzes every provider protocol's readers (response body, error body, SSE stream events): the
//! first byte picks the protocol. The checks live in `dspex_lm::__fuzz::provider_wire`, reached
//! through `dspex_runtime::__fuzz::wire::provider_wire`; run with `scripts/fuzz SECONDS`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| dspex_runtime::__fuzz::wire::provider_wire(data));
