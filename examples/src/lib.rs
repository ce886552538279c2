//! Shared helpers of the examples (paths, the venv's Python, the regex escape of the scripted
//! mock rules) and the benchmark plumbing of `bench_lm` and `bench_predict`. The examples
//! themselves live in `examples/`.

use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

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

/// The `dspex` binary next to the running benchmark (`target/<profile>/dspex`); `scripts/bench`
/// builds it.
pub fn dspex_binary() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().and_then(Path::parent).map(|d| d.join("dspex")))
        .filter(|p| p.exists())
        .expect("build the dspex binary first: cargo build --release -p dspex")
}

/// Starts `dspex mock-lm --port 0` with `extra` arguments and returns it with its base URL
/// (no `/v1`). Kill the child when done.
pub fn start_mock(dspex: &Path, extra: &[&str]) -> (Child, String) {
    let mut child = Command::new(dspex)
        .args(["mock-lm", "--port", "0"])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", dspex.display()));
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("piped stdout"))
        .read_line(&mut line)
        .expect("the mock server prints its address");
    let url = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("unexpected first line from mock-lm: {line:?}"))
        .to_string();
    (child, url)
}

/// The `main` of a side-by-side benchmark: `<bench> worker ARGS…` runs `worker` (one measurement
/// in a fresh process, on a multi-threaded runtime) and prints its JSON; otherwise `orchestrate`
/// runs every measurement (`--quick` for a tenth of the work).
pub fn bench_main<Fut>(worker: impl FnOnce(Vec<String>) -> Fut, orchestrate: impl FnOnce(bool))
where
    Fut: std::future::Future<Output = Value>,
{
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("worker") {
        let result = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .expect("a tokio runtime")
            .block_on(worker(args[1..].to_vec()));
        println!("{result}");
        return;
    }
    orchestrate(args.iter().any(|a| a == "--quick"));
}

/// `text` with every character special to the `regex` crate escaped, for the scripted mock LM's
/// rules that match a question verbatim.
pub fn regex_escape(text: &str) -> String {
    text.chars()
        .flat_map(|c| {
            let special = r"\.+*?()|[]{}^$#&-~".contains(c);
            special
                .then_some('\\')
                .into_iter()
                .chain(std::iter::once(c))
        })
        .collect()
}
