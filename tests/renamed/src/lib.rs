//! Tests only: see `tests/renamed.rs`.
