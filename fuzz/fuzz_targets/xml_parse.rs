//! Fuzzes `XMLAdapter::parse` (first line of the input: the signature), with `chat_parse`'s checks: malformed XML is a parse error naming the problem, never a panic.
//! The checks live in `dspex_runtime::__fuzz::adapter::xml_parse`; run with `scripts/fuzz SECONDS`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| dspex_runtime::__fuzz::adapter::xml_parse(data));
