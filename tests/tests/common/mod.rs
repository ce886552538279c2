//! Helpers shared by the integration tests; a test file takes them with `mod common;`.

use serde_json::Value;
use std::path::PathBuf;

/// The DSPy fixture `name` from `shared/fixtures/dspy` (recorded from DSPy 3.4.1), parsed.
pub(crate) fn fixture(name: &str) -> Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/fixtures/dspy")
        .join(name);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}
