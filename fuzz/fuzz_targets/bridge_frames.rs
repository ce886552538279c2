//! Fuzzes a Python worker's stdout: frames, their messages and their dispatch; decoded messages round-trip.
//! The checks live in `dspex_runtime::__fuzz::bridge::bridge_frames`; run with `scripts/fuzz SECONDS`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| dspex_runtime::__fuzz::bridge::bridge_frames(data));
