//! Evaluate, BootstrapFewShot, MIPROv2 and GEPA against DSPy 3.4.1 (`../shared/bench/dspy_side.py
//! evaluate`, `bootstrap`, `mipro` and `gepa`), on the same mock LM servers (0 ms and 50 ms
//! latency), in one run: wall time and peak RSS at equal concurrency (16) and at each side's
//! best setting; for the optimizers also the LM calls each side made and the sequential waves of
//! calls (as the mock server counted them: a request's wave is one more than the highest wave
//! answered before it arrived, so at a fixed latency `waves × latency` is the least wall time
//! that run could take; at 0 ms every request is its own wave).
//! dspex's BootstrapFewShot runs by default and with speculation. Prints Markdown tables.
//!
//! Run it with `scripts/bench optimize [--quick]` (`DSPEX_BENCH_ONLY=mipro,gepa` for some sections:
//! `evaluate`, `evaluate_stream`, `bootstrap`, `mipro`, `gepa`; `evaluate_stream` is dspex alone:
//! `Evaluate::call_stream` over 1,000,000 examples, with the mock server in its own process and
//! in the evaluating one). Every measurement runs in a fresh worker
//! process (this binary with `worker …`) so peak RSS is its own.

use dspex::lm::{LM, RetryPolicy};
use dspex::module::{ChainOfThought, Predict};
use dspex::prelude::*;
use dspex::runtime::evaluate::{
    Evaluate, ResultsFile, answer_exact_match, jsonl_examples, metric_fn,
};
use dspex::runtime::optimize::gepa::{ScoreWithFeedback, feedback_metric_fn};
use dspex::runtime::optimize::{
    Auto, BootstrapFewShot, DemoKnobs, GEPA, JobContext, MIPROv2, Optimizer, Teacher,
};
use dspex::settings::{Settings, with_settings};
use dspex::testing::{MockLm, MockLmServer};
use dspex_examples::{
    bench_main, dspex_binary, dspy_side, peak_rss_mb, run_json, start_mock, venv_python,
};
use serde_json::{Value, json};
use std::io::{Read, Write};
use std::process::Command;
use std::time::{Duration, Instant};

#[signature("question -> answer")]
struct QA;

fn main() {
    bench_main(|args| async move { worker(&args).await }, orchestrate);
}

/// The dev/train set of `dspy_side.py` (`qa_set`).
fn qa_set(n: usize) -> Vec<Example> {
    (0..n)
        .map(|i| {
            Example::new()
                .with("question", format!("What is item {i}?"))
                .with("answer", format!("answer-{}", i % 9973))
                .with_inputs(["question"])
        })
        .collect()
}

/// The `i` of `What is item {i}?`.
fn item_number(ex: &Example) -> Option<usize> {
    ex.get_str("question")
        .and_then(|q| q.split_whitespace().last())
        .and_then(|w| w.trim_end_matches('?').parse::<usize>().ok())
}

fn client(url: &str) -> LM {
    LM::builder("openai/mock")
        .api_base(format!("{url}/v1"))
        .api_key("x")
        .cache(false)
        .retry(RetryPolicy::none())
        .timeout(Duration::from_secs(60))
        .build()
        .expect("the LM builds")
}

async fn worker(args: &[String]) -> Value {
    let what = args.first().map(String::as_str);
    let url = &args[1];
    let n: usize = args[2].parse().expect("a size");
    let concurrency: usize = args[3].parse().expect("a concurrency");
    if what == Some("evaluate_stream") {
        // Its URL may be `inproc`: it builds its own client.
        let keep_history = args.get(4).is_none_or(|a| a != "no_history");
        return evaluate_stream(url, n, concurrency, keep_history).await;
    }
    let settings = Settings::new().lm(client(url));
    match what {
        Some("evaluate") => {
            let evaluate = Evaluate::new(qa_set(n), answer_exact_match()).num_threads(concurrency);
            let program = Predict::<QA>::new();
            let start = Instant::now();
            let result = with_settings(settings, evaluate.call(&program))
                .await
                .expect("the evaluation runs");
            json!({
                "examples": n, "concurrency": concurrency,
                "wall_s": start.elapsed().as_secs_f64(), "score": result.score,
                "errors": result.n_errors, "peak_rss_mb": peak_rss_mb(),
            })
        }
        Some("bootstrap") => {
            // DSPy's metric: true on items 0, 25, 50, 75.
            let every_25th = metric_fn("every_25th", |ex: &Example, _: &Prediction| {
                item_number(ex).is_some_and(|i| i % 25 == 0)
            });
            let speculative = args.get(4).is_some_and(|s| s == "speculative");
            let optimizer = BootstrapFewShot::new()
                .metric(every_25th)
                .max_bootstrapped_demos(4)
                .max_labeled_demos(16)
                .concurrency(concurrency)
                .speculative(speculative);
            let student = ChainOfThought::<QA>::new();
            let start = Instant::now();
            let (compiled, report) = with_settings(
                settings,
                optimizer.compile_with_report(
                    student.clone(),
                    Teacher::Program(student),
                    &qa_set(n),
                    &JobContext::detached(),
                ),
            )
            .await
            .expect("the compile runs");
            json!({
                "trainset": n, "concurrency": concurrency, "speculative": speculative,
                "wall_s": start.elapsed().as_secs_f64(),
                "demos": compiled.params().demos.len(), "peak_rss_mb": peak_rss_mb(),
                "lm_requests": report.lm_requests, "discarded_runs": report.discarded_runs,
                "dropped_in_flight": report.dropped_in_flight,
                "discarded_lm_requests": report.discarded_lm_requests,
            })
        }
        Some("mipro") => {
            // `dspy_side.py mipro`: MIPROv2(auto="light", seed 0) on Predict("question -> answer"),
            // the metric true on items divisible by 5, the last fifth as the valset.
            let every_5th = metric_fn("every_5th", |ex: &Example, _: &Prediction| {
                item_number(ex).is_some_and(|i| i % 5 == 0)
            });
            let data = qa_set(n);
            let (train, val) = data.split_at(n - n / 5);
            let optimizer = MIPROv2::new(every_5th)
                .seed(0)
                .concurrency(concurrency)
                .task_lm(client(url))
                .prompt_lm(client(url));
            let start = Instant::now();
            let compiled = optimizer
                .compile_with_valset(
                    Predict::<QA>::new(),
                    train,
                    Some(val),
                    &JobContext::detached(),
                )
                .await
                .expect("the compile runs");
            json!({
                "trainset": train.len(), "valset": val.len(), "concurrency": concurrency,
                "wall_s": start.elapsed().as_secs_f64(),
                "demos": compiled.params().demos.len(), "peak_rss_mb": peak_rss_mb(),
            })
        }
        Some("gepa") => {
            // `dspy_side.py gepa`: GEPA(auto="light", seed 0, reflection_lm = the same mock) on
            // Predict("question -> answer"); score 1 on items divisible by 5, with feedback.
            let metric = feedback_metric_fn(
                "every_5th",
                |gold: &Example, _: &Prediction, _trace, _focus| {
                    if item_number(gold).is_some_and(|i| i % 5 == 0) {
                        ScoreWithFeedback::new(1.0, "correct")
                    } else {
                        ScoreWithFeedback::new(
                            0.0,
                            format!("expected {}", gold.get_str("answer").unwrap_or_default()),
                        )
                    }
                },
            );
            let data = qa_set(n);
            let (train, val) = data.split_at(n - n / 5);
            let gepa = GEPA::new(metric)
                .auto(Auto::Light)
                .seed(0)
                .num_threads(concurrency)
                .reflection_lm(client(url))
                .valset(val.to_vec());
            let start = Instant::now();
            let compiled = with_settings(
                settings,
                gepa.compile_in(Predict::<QA>::new(), train, &JobContext::detached()),
            )
            .await
            .expect("the compile runs");
            json!({
                "trainset": train.len(), "valset": val.len(), "concurrency": concurrency,
                "wall_s": start.elapsed().as_secs_f64(),
                "instructions": compiled.params().instructions(), "peak_rss_mb": peak_rss_mb(),
            })
        }
        other => panic!("unknown worker {other:?}"),
    }
}

/// `Evaluate::call_stream` over `n` examples of `qa_set`'s shape, written to a temporary JSONL
/// file first (as they are generated, not held), records to a results file. `url` `inproc`
/// starts the mock server in this process (so its memory counts in the peak RSS). Without
/// `keep_history`, the LM's history and the process-wide one (1,000 and 10,000 calls by default,
/// as DSPy keeps them) are off, leaving the evaluation's own memory.
async fn evaluate_stream(url: &str, n: usize, concurrency: usize, keep_history: bool) -> Value {
    if !keep_history {
        dspex::lm::set_global_history_size(0);
    }
    let dir = tempfile::tempdir().expect("a temp dir");
    let data = dir.path().join("dev.jsonl");
    let results = dir.path().join("results.jsonl");
    {
        let file = std::fs::File::create(&data).expect("the dataset file");
        let mut out = std::io::BufWriter::new(file);
        for i in 0..n {
            let line = json!({"question": format!("What is item {i}?"), "answer": format!("answer-{}", i % 9973)});
            writeln!(out, "{line}").expect("a line is written");
        }
        out.flush().expect("the dataset is written");
    }
    let inproc = if url == "inproc" {
        Some(MockLm::start().await.expect("the mock server starts"))
    } else {
        None
    };
    let url = inproc
        .as_ref()
        .map_or_else(|| url.to_string(), MockLmServer::url);
    let mut lm = client(&url);
    if !keep_history {
        lm = LM::builder("openai/mock")
            .api_base(format!("{url}/v1"))
            .api_key("x")
            .cache(false)
            .retry(RetryPolicy::none())
            .timeout(Duration::from_secs(60))
            .history_size(0)
            .build()
            .expect("the LM builds");
    }
    let settings = Settings::new().lm(lm);
    let evaluate = Evaluate::for_stream(answer_exact_match()).num_threads(concurrency);
    let program = Predict::<QA>::new();
    let start = Instant::now();
    let result = with_settings(
        settings,
        evaluate.call_stream(
            &program,
            jsonl_examples(&data, ["question"]),
            ResultsFile::create(&results),
        ),
    )
    .await
    .expect("the evaluation runs");
    let wall = start.elapsed().as_secs_f64();
    let size = |p: &std::path::Path| std::fs::metadata(p).map_or(0, |m| m.len());
    json!({
        "examples": result.n_examples, "concurrency": concurrency, "wall_s": wall,
        "examples_per_s": result.n_examples as f64 / wall, "score": result.score,
        "errors": result.n_errors, "peak_rss_mb": peak_rss_mb(),
        "dataset_bytes": size(&data), "results_bytes": size(&results),
    })
}

fn rust(what: &str, url: &str, n: usize, c: usize) -> Value {
    rust_with(what, url, n, c, &[])
}

fn rust_with(what: &str, url: &str, n: usize, c: usize, extra: &[&str]) -> Value {
    let exe = std::env::current_exe().expect("the bench's own path");
    run_json(
        Command::new(exe)
            .args(["worker", what, url, &n.to_string(), &c.to_string()])
            .args(extra),
    )
}

/// The mock server's `GET /stats` at `url`.
fn server_stats(url: &str) -> Value {
    let addr = url.trim_start_matches("http://").trim_end_matches('/');
    let mut stream = std::net::TcpStream::connect(addr).expect("the mock server answers");
    write!(
        stream,
        "GET /stats HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .expect("the request is sent");
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .expect("the stats are read");
    let body = response.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    serde_json::from_str(body).expect("the stats are JSON")
}

/// Runs `measure` and adds the chat requests the server at `url` received meanwhile as
/// `served`, and the sequential waves they came in as `waves` (after a pause, so that
/// requests of a process that just exited are counted).
fn counting(url: &str, measure: impl FnOnce() -> Value) -> Value {
    let requests = |s: &Value| s["requests"]["/v1/chat/completions"].as_u64().unwrap_or(0);
    let before = server_stats(url);
    let mut v = measure();
    std::thread::sleep(Duration::from_millis(200));
    let after = server_stats(url);
    v["served"] = json!(requests(&after) - requests(&before));
    v["waves"] =
        json!(after["waves"].as_u64().unwrap_or(0) - before["waves"].as_u64().unwrap_or(0));
    v
}

fn dspy(what: &str, url: &str, extra: &[&str]) -> Value {
    run_json(
        Command::new(venv_python())
            .arg(dspy_side())
            .args([what, "--url", url])
            .args(extra)
            .env("LITELLM_LOCAL_MODEL_COST_MAP", "True"),
    )
}

fn f(v: &Value, key: &str) -> f64 {
    v[key].as_f64().unwrap_or(f64::NAN)
}

/// A row's wall, speed-up over `base` (DSPy's run), floor, ratio to it and peak RSS cells.
fn row_cells(v: &Value, base: Option<&Value>, n: usize, c: usize, latency: u64) -> String {
    let wall = f(v, "wall_s");
    let vs = base.map_or_else(
        || "—".to_string(),
        |b| format!("{:.1}× faster", f(b, "wall_s") / wall),
    );
    let (floor, ratio) = if latency == 0 {
        ("—".to_string(), "—".to_string())
    } else {
        let floor = (n as f64 / c as f64).ceil() * latency as f64 / 1000.0;
        (format!("{floor:.2} s"), format!("{:.2}×", wall / floor))
    };
    format!(
        "{wall:.3} s | {vs} | {floor} | {ratio} | {:.0} MB",
        f(v, "peak_rss_mb")
    )
}

/// One optimizer against DSPy's at 16 and 64 threads on each server: wall time, LM calls and
/// waves as the server counted them, the waves × latency floor, peak RSS.
fn optimizer_table(what: &str, title: &str, n: usize, servers: &[(u64, &String)]) {
    println!(
        "\n### {title}: {n} examples (valset the last {}), Predict(\"question -> answer\"), metric true on items divisible by 5\n",
        n / 5
    );
    println!(
        "| latency | side | threads | wall | vs DSPy | LM calls (server) | waves (server) | floor (waves × latency) | × floor | peak RSS |"
    );
    println!("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    for &(latency, url) in servers {
        let side = |threads: usize| {
            counting(url, || {
                dspy(
                    what,
                    url,
                    &[
                        "--trainset",
                        &n.to_string(),
                        "--threads",
                        &threads.to_string(),
                    ],
                )
            })
        };
        let (d16, d64) = (side(16), side(64));
        let dspy_best = if f(&d64, "wall_s") < f(&d16, "wall_s") {
            d64.clone()
        } else {
            d16.clone()
        };
        let ours = |c: usize| counting(url, || rust(what, url, n, c));
        let rows = [
            ("DSPy 3.4.1", 16, d16.clone(), None),
            ("DSPy 3.4.1", 64, d64, None),
            ("dspex", 16, ours(16), Some(&d16)),
            ("dspex", 64, ours(64), Some(&dspy_best)),
        ];
        for (side, c, v, base) in &rows {
            let wall = f(v, "wall_s");
            let vs = base.map_or("—".to_string(), |b| {
                format!("{:.1}× faster", f(b, "wall_s") / wall)
            });
            let waves = v["waves"].as_u64().unwrap_or(0);
            let (floor, ratio) = if latency == 0 {
                ("—".to_string(), "—".to_string())
            } else {
                let floor = waves as f64 * latency as f64 / 1000.0;
                (format!("{floor:.2} s"), format!("{:.2}×", wall / floor))
            };
            println!(
                "| {latency} ms | {side} | {c} | {wall:.3} s | {vs} | {} | {waves} | {floor} | {ratio} | {:.0} MB |",
                v["served"],
                f(v, "peak_rss_mb")
            );
        }
    }
}

/// Whether the section `name` runs: all of them, or those listed in `DSPEX_BENCH_ONLY`
/// (comma-separated: `evaluate`, `evaluate_stream`, `bootstrap`, `mipro`, `gepa`).
fn wanted(name: &str) -> bool {
    std::env::var("DSPEX_BENCH_ONLY").map_or(true, |only| only.split(',').any(|s| s.trim() == name))
}

fn orchestrate(quick: bool) {
    let dspex = dspex_binary();
    let (mut fast, fast_url) = start_mock(&dspex, &["--threads", "1"]);
    let (mut slow, slow_url) = start_mock(&dspex, &["--threads", "1", "--latency-ms", "50"]);
    let n_eval = if quick { 200 } else { 1000 };
    let n_boot = 100;

    if wanted("evaluate") {
        println!(
            "### Evaluate: {n_eval} examples, Predict(\"question -> answer\"), answer_exact_match\n"
        );
        println!("| latency | side | concurrency | wall | vs DSPy | floor | × floor | peak RSS |");
        println!("|---|---|---:|---:|---:|---:|---:|---:|");
        for (latency, url) in [(0u64, &fast_url), (50, &slow_url)] {
            let d16 = dspy(
                "evaluate",
                url,
                &["--examples", &n_eval.to_string(), "--threads", "16"],
            );
            let d64 = dspy(
                "evaluate",
                url,
                &["--examples", &n_eval.to_string(), "--threads", "64"],
            );
            let dspy_best = if f(&d64, "wall_s") < f(&d16, "wall_s") {
                &d64
            } else {
                &d16
            };
            let mut rows = vec![
                ("DSPy 3.4.1", 16, d16.clone()),
                ("DSPy 3.4.1", 64, d64.clone()),
            ];
            let settings: &[usize] = if latency == 0 {
                &[16, 64]
            } else {
                &[16, 100, n_eval]
            };
            for &c in settings {
                rows.push(("dspex", c, rust("evaluate", url, n_eval, c)));
            }
            for (side, c, v) in &rows {
                let base = (*side == "dspex").then_some(if *c == 16 { &d16 } else { dspy_best });
                let cells = row_cells(v, base, n_eval, *c, latency);
                println!("| {latency} ms | {side} | {c} | {cells} |");
            }
        }
    }
    if wanted("evaluate_stream") {
        let n = if quick { 100_000 } else { 1_000_000 };
        let c = 64;
        println!(
            "\n### Evaluate::call_stream: {n} examples from a JSONL file, records to a results file, Predict(\"question -> answer\"), answer_exact_match, 0 ms latency, concurrency {c}\n"
        );
        println!(
            "| mock server | LM histories | examples | wall | examples/s | peak RSS | dataset file | results file |"
        );
        println!("|---|---|---:|---:|---:|---:|---:|---:|");
        for (label, url, history) in [
            (
                "own process (`dspex mock-lm`)",
                fast_url.as_str(),
                "default",
            ),
            (
                "own process (`dspex mock-lm`)",
                fast_url.as_str(),
                "no_history",
            ),
            ("in the evaluating process", "inproc", "default"),
            ("in the evaluating process", "inproc", "no_history"),
        ] {
            let v = rust_with("evaluate_stream", url, n, c, &[history]);
            let history = if history == "default" {
                "on (1,000 + 10,000 calls)"
            } else {
                "off"
            };
            let mb = |key: &str| v[key].as_f64().unwrap_or(0.0) / 1e6;
            println!(
                "| {label} | {history} | {} | {:.1} s | {:.0} | {:.1} MB | {:.0} MB | {:.0} MB |",
                v["examples"],
                f(&v, "wall_s"),
                f(&v, "examples_per_s"),
                f(&v, "peak_rss_mb"),
                mb("dataset_bytes"),
                mb("results_bytes"),
            );
        }
    }
    if wanted("bootstrap") {
        println!(
            "\n### BootstrapFewShot: {n_boot} examples, ChainOfThought, metric true on items 0/25/50/75\n"
        );
        println!(
            "| latency | side | concurrency | wall | vs DSPy | floor | × floor | peak RSS | demos | LM calls (server) | LM requests kept (report) | runs discarded (in flight) | their LM requests (report) |"
        );
        println!("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
        let boot = |url: &str, c: usize, speculative: bool| {
            let extra: &[&str] = if speculative { &["speculative"] } else { &[] };
            counting(url, || rust_with("bootstrap", url, n_boot, c, extra))
        };
        for (latency, url) in [(0u64, &fast_url), (50, &slow_url)] {
            let d = counting(url, || {
                dspy("bootstrap", url, &["--trainset", &n_boot.to_string()])
            });
            let rows = [
                ("DSPy 3.4.1", 1, d.clone()),
                ("dspex", 16, boot(url, 16, false)),
                ("dspex", 64, boot(url, 64, false)),
                ("dspex, speculative", 16, boot(url, 16, true)),
                ("dspex, speculative", 64, boot(url, 64, true)),
            ];
            for (side, c, v) in &rows {
                let base = (*side != "DSPy 3.4.1").then_some(&d);
                let cells = row_cells(v, base, n_boot, *c, latency);
                let report = |key: &str| v.get(key).map_or("—".to_string(), Value::to_string);
                let discarded = match (v.get("discarded_runs"), v.get("dropped_in_flight")) {
                    (Some(runs), Some(in_flight)) => format!("{runs} ({in_flight})"),
                    _ => "—".to_string(),
                };
                println!(
                    "| {latency} ms | {side} | {c} | {cells} | {} | {} | {} | {discarded} | {} |",
                    v["demos"],
                    v["served"],
                    report("lm_requests"),
                    report("discarded_lm_requests"),
                );
            }
        }
    }
    let n_opt = 100;
    for (what, title) in [
        ("mipro", "MIPROv2 light"),
        ("gepa", "GEPA light (reflection LM = the same mock)"),
    ] {
        if wanted(what) {
            optimizer_table(what, title, n_opt, &[(0, &fast_url), (50, &slow_url)]);
        }
    }
    let _ = fast.kill();
    let _ = slow.kill();
}
