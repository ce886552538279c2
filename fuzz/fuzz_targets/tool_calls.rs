//! Fuzzes tool-call arguments as providers return them and `ToolCalls` values as completions
//! give them: reading never panics, valid JSON arguments read as they are, and calls that read
//! written back read the same. The checks live in `dspex_runtime::__fuzz::adapter::tool_calls`;
//! run with `scripts/fuzz SECONDS`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| dspex_runtime::__fuzz::adapter::tool_calls(data));
