//! Predict overhead per call — format + in-process LM + parse, typed, 3 demos — against DSPy
//! 3.4.1's `dspy.Predict` with its `DummyLM` (`../shared/bench/dspy_side.py predict`), in one run.
//! Prints a Markdown table. Run it with `scripts/bench predict`.

use dspex::lm::ScriptedLM;
use dspex::module::{CallConfig, Predict};
use dspex::prelude::*;
use serde_json::{Value, json};
use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

#[signature("question -> answer")]
struct QA;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("worker") {
        let calls: usize = args.get(1).and_then(|n| n.parse().ok()).unwrap_or(20_000);
        let result = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("a tokio runtime")
            .block_on(worker(calls));
        println!("{result}");
        return;
    }
    let quick = args.iter().any(|a| a == "--quick");
    let exe = std::env::current_exe().expect("the bench's own path");
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let python = {
        let out = Command::new(root.join("scripts/python-env"))
            .output()
            .expect("scripts/python-env runs");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        root.join(
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .last()
                .unwrap_or_default()
                .trim(),
        )
    };
    let (rust_calls, dspy_calls) = if quick { (2_000, 200) } else { (20_000, 2_000) };
    let rust = run_json(Command::new(&exe).args(["worker", &rust_calls.to_string()]));
    let dspy = run_json(
        Command::new(&python)
            .arg(root.join("../shared/bench/dspy_side.py"))
            .args(["predict", "--calls", &dspy_calls.to_string()])
            .env("LITELLM_LOCAL_MODEL_COST_MAP", "True"),
    );
    let (r, d) = (
        rust["us_per_call"].as_f64().unwrap_or(f64::NAN),
        dspy["us_per_call"].as_f64().unwrap_or(f64::NAN),
    );
    println!("### Predict overhead per call (format + in-process LM + parse, typed, 3 demos)\n");
    println!("| side | calls | µs per call | peak RSS |");
    println!("|---|---:|---:|---:|");
    println!(
        "| dspex `Predict<QA>` + `ScriptedLM` | {rust_calls} | {r:.2} | {:.1} MB |",
        rust["peak_rss_mb"].as_f64().unwrap_or(0.0)
    );
    println!(
        "| DSPy 3.4.1 `dspy.Predict` + `DummyLM` | {dspy_calls} | {d:.1} | {:.1} MB |",
        dspy["peak_rss_mb"].as_f64().unwrap_or(0.0)
    );
    println!("\ndspex is {:.0}× faster per call.", d / r);
}

fn run_json(cmd: &mut Command) -> Value {
    let out = cmd.output().expect("the worker runs");
    assert!(
        out.status.success(),
        "{cmd:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(stdout.lines().last().unwrap_or_default()).expect("one JSON line")
}

fn peak_rss_mb() -> f64 {
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

/// The same shape as DSPy's side: three demos, one question per call, answers parsed.
async fn worker(calls: usize) -> Value {
    let lm = ScriptedLM::from_fields([json!({"answer": "42"})])
        .repeat_last()
        .without_recording();
    let mut predict = Predict::<QA>::new().with_config(CallConfig::new().lm(lm));
    for i in 0..3 {
        predict.params_mut().demos.push(
            Example::new()
                .with("question", format!("q{i}"))
                .with("answer", format!("a{i}"))
                .with_inputs(["question"]),
        );
    }
    let question = |i: usize| QAInput {
        question: format!("What is {i}?"),
    };
    predict.forward(question(0)).await.expect("warm-up call");
    let start = Instant::now();
    for i in 0..calls {
        let out = predict.forward(question(i)).await.expect("a call");
        assert_eq!(out.answer, "42");
    }
    let wall = start.elapsed().as_secs_f64();
    json!({"calls": calls, "wall_s": wall, "us_per_call": wall / calls as f64 * 1e6, "peak_rss_mb": peak_rss_mb()})
}
