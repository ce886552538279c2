//! Shared helpers of the benchmark examples (`bench_lm`, `bench_predict`). The examples
//! themselves live in `examples/`.

use serde_json::Value;
use std::path::PathBuf;
use std::process::Command;

/// The repository root.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The project venv's Python, created by `scripts/python-env` if needed.
pub fn venv_python() -> PathBuf {
    let root = repo_root();
    let out = Command::new(root.join("scripts/python-env"))
        .output()
        .expect("scripts/python-env runs");
    assert!(
        out.status.success(),
        "scripts/python-env failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    root.join(stdout.lines().last().unwrap_or_default().trim())
}

/// `../shared/bench/dspy_side.py`, the DSPy side of every side-by-side benchmark.
pub fn dspy_side() -> PathBuf {
    let path = repo_root().join("../shared/bench/dspy_side.py");
    assert!(path.exists(), "missing {}", path.display());
    path
}

/// Runs `cmd` and reads the JSON object on its last stdout line; panics with its stderr if it
/// fails.
pub fn run_json(cmd: &mut Command) -> Value {
    let out = cmd.output().expect("the command runs");
    assert!(
        out.status.success(),
        "{cmd:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let last = stdout.lines().last().unwrap_or_default();
    serde_json::from_str(last).unwrap_or_else(|e| panic!("{cmd:?} printed {last:?}: {e}"))
}

/// Peak resident set size of this process, in MB (Linux `VmHWM`; 0 elsewhere).
pub fn peak_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmHWM:")).and_then(|l| {
                l.split_whitespace()
                    .nth(1)
                    .and_then(|kb| kb.parse::<f64>().ok())
            })
        })
        .map_or(0.0, |kb| kb / 1024.0)
}
