//! Entry points for the fuzz targets in `fuzz/` and for the regression and differential tests
//! in `tests/` (cargo feature `fuzzing`; not part of the API, no stability promised).
//!
//! Each target is one function taking the fuzzer's bytes. It runs a parser of bytes dspex does
//! not control and checks the invariants that are cheap to check — a parse that succeeds
//! round-trips, values have their field's type, errors name a field of the signature, two ways
//! of reading the same bytes agree. A broken invariant panics: that is how a fuzzer is told.
//! Inputs that can never reach the parser (text that is not UTF-8 where only text arrives) are
//! skipped.
//!
//! [`seeds`] builds each target's seed corpus from DSPy's fixtures and the mock server's fault
//! answers; [`TARGETS`] names every target, for the fuzz scripts and the regression replay.

pub mod adapter;
pub mod bridge;
pub mod evaluate;
pub mod index;
pub mod mock;
pub mod report;
pub mod seeds;
pub mod wire;

use serde_json::Value;
use std::cell::Cell;
use std::sync::Once;

/// A fuzz target's function: it takes the fuzzer's bytes and panics when an invariant breaks.
pub type Target = fn(&[u8]);

/// Every fuzz target: its name (the binary in `fuzz/fuzz_targets/<name>.rs`, the folders
/// `fuzz/corpus/<name>` and `fuzz/regressions/<name>`) and its function.
pub const TARGETS: &[(&str, Target)] = &[
    ("parse_signature", adapter::parse_signature),
    ("chat_parse", adapter::chat_parse),
    ("json_parse", adapter::json_parse),
    ("xml_parse", adapter::xml_parse),
    ("json_repair", adapter::json_repair),
    ("literal_eval", adapter::literal_eval),
    ("parse_value", adapter::parse_value),
    ("tool_calls", adapter::tool_calls),
    ("http1_response", wire::http1_response),
    ("sse_stream", wire::sse_stream),
    ("anthropic_response", wire::anthropic_response),
    ("anthropic_stream", wire::anthropic_stream),
    ("gemini_response", wire::gemini_response),
    ("gemini_stream", wire::gemini_stream),
    ("provider_wire", wire::provider_wire),
    ("redis_value", wire::redis_value),
    ("bridge_frames", bridge::bridge_frames),
    ("mock_request", mock::mock_request),
    ("bm25_open", index::bm25_open),
    ("embeddings_open", index::embeddings_open),
    ("report_log", report::report_log),
    ("results_file", evaluate::results_file),
];

/// The function of target `name`, if there is one.
pub fn target(name: &str) -> Option<Target> {
    TARGETS.iter().find(|(n, _)| *n == name).map(|(_, f)| *f)
}

/// Splits off the first byte (a selector some targets read); `None` for empty input.
fn split_first(data: &[u8]) -> Option<(u8, &[u8])> {
    data.split_first().map(|(b, rest)| (*b, rest))
}

/// Splits UTF-8 text at its first newline: the first line and the rest.
fn split_line(data: &[u8]) -> Option<(&str, &str)> {
    let text = std::str::from_utf8(data).ok()?;
    Some(text.split_once('\n').unwrap_or((text, "")))
}

/// JSON equality with floats compared to a relative 1e-12 (a float printed and read back may
/// differ in the last bit where serde_json's reader rounds).
fn same_values(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) if x.is_f64() || y.is_f64() => {
            match (x.as_f64(), y.as_f64()) {
                (Some(x), Some(y)) => x == y || (x - y).abs() <= 1e-12 * x.abs().max(y.abs()),
                _ => false,
            }
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| same_values(a, b))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .zip(y)
                    .all(|((ka, va), (kb, vb))| ka == kb && same_values(va, vb))
        }
        _ => a == b,
    }
}

thread_local! {
    /// Panics raised on this thread since the watch began (see [`no_panics`]).
    static PANICS: Cell<usize> = const { Cell::new(0) };
}

/// Runs `f`, then panics if anything panicked on this thread meanwhile — in particular a task
/// of the current-thread runtime the wire targets drive, whose panic tokio would catch and
/// turn into a dropped connection. (Under libFuzzer its own panic hook aborts at once anyway;
/// this makes `cargo test`'s replay as strict.) Panics located in tantivy's code are left out:
/// the BM25 index catches those on purpose (a damaged index that passed the checksums) and
/// reports [`CorruptIndex`](crate::retrieve::RetrieveError::CorruptIndex); they go to no other
/// hook, so libFuzzer's does not abort on them either (an uncaught one still aborts in
/// libFuzzer's catch around the target). `DSPEX_FUZZ_VERBOSE=1` prints those panics too.
fn no_panics<T>(what: &str, f: impl FnOnce() -> T) -> T {
    watch_panics();
    let before = PANICS.with(Cell::get);
    let out = f();
    let after = PANICS.with(Cell::get);
    assert_eq!(before, after, "{what}: a task panicked (and was caught)");
    out
}

/// Installs the panic hook that counts panics per thread (once per process).
fn watch_panics() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let in_tantivy = info
                .location()
                .is_some_and(|l| l.file().contains("tantivy"));
            if !in_tantivy {
                PANICS.with(|p| p.set(p.get() + 1));
                previous(info);
            } else if std::env::var_os("DSPEX_FUZZ_VERBOSE").is_some() {
                let trace = std::backtrace::Backtrace::force_capture();
                eprintln!("a panic inside tantivy (the index should catch it): {info}\n{trace}");
            }
        }));
    });
}
