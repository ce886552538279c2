//! Predict overhead per call — format + in-process LM + parse, typed, 3 demos — against DSPy
//! 3.4.1's `dspy.Predict` with its `DummyLM` (`../shared/bench/dspy_side.py predict`), in one run.
//! Prints a Markdown table. Run it with `scripts/bench predict`.

use dspex::lm::ScriptedLM;
use dspex::module::{CallConfig, Predict};
use dspex::prelude::*;
use dspex_examples::{dspy_side, peak_rss_mb, run_json, venv_python};
use serde_json::{Value, json};
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
    let python = venv_python();
    let (rust_calls, dspy_calls) = if quick { (2_000, 200) } else { (20_000, 2_000) };
    let rust = run_json(Command::new(&exe).args(["worker", &rust_calls.to_string()]));
    let dspy = run_json(
        Command::new(&python)
            .arg(dspy_side())
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
