//! Issue 19, "evaluations that survive crashes": a streamed evaluation of 10,000 examples
//! (`Evaluate::call_stream` over a JSONL file, against the mock LM server) is SIGKILLed twice at
//! random points and resumed each time (`ResultsFile::resume`). At the end the results file
//! holds every example exactly once, each with the score an uninterrupted run gave it, the
//! total is that run's to the bit, and the mock server was paid for each example once, plus at
//! most the examples in flight at each kill (`num_threads` = 16 each).
//!
//! A test without the libtest harness (`harness = false` in `tests/Cargo.toml`): this binary
//! is both the parent (which runs the mock server and kills) and the child (`child …`, one
//! evaluation). `DSPEX_KILL_AT=a,b` fixes the kill points (records written before each kill);
//! otherwise they are drawn at random and printed.

use dspex::evaluate::{Evaluate, ResultsFile, jsonl_examples, metric_fn};
use dspex::lm::{LM, RetryPolicy};
use dspex::module::{CallConfig, DynPredict};
use dspex::prelude::*;
use dspex::testing::{Latency, MockLm};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::hash::{BuildHasher, RandomState};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const N: u64 = 10_000;
const THREADS: usize = 16;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("child") {
        child(&args[1..]);
        return;
    }
    // `cargo test` passes libtest's arguments: `--list`, `--ignored`, a name filter, flags.
    const NAME: &str = "sigkilled_evaluation_resumes_without_loss_or_double_pay";
    if args.iter().any(|a| a == "--list") {
        println!("{NAME}: test");
        return;
    }
    let filters: Vec<&String> = args.iter().filter(|a| !a.starts_with('-')).collect();
    let wanted = filters.is_empty() || filters.iter().any(|f| NAME.contains(f.as_str()));
    if !wanted || args.iter().any(|a| a == "--ignored") {
        println!("test result: ok. 0 passed; 0 failed; 0 ignored; 0 measured; 1 filtered out");
        return;
    }
    sigkilled_evaluation_resumes_without_loss_or_double_pay();
    println!("test {NAME} ... ok");
    println!("test result: ok. 1 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out");
}

/// `child URL DATA RESULTS create|resume`: one evaluation; prints its summary as JSON.
fn child(args: &[String]) {
    let [url, data, results, mode] = args else {
        panic!("usage: child URL DATA RESULTS create|resume");
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let summary = runtime.block_on(async {
        let lm = LM::builder("openai/mock")
            .api_base(format!("{url}/v1"))
            .api_key("sk-test")
            .cache(false)
            .retry(RetryPolicy::none())
            .build()
            .expect("the LM builds");
        let program = DynPredict::new(DynSignature::parse("question -> answer").expect("parses"))
            .with_config(CallConfig::new().lm(lm));
        // A score in sevenths (not exact in binary, so the order of the sum would show) from
        // the mock's answer; every 97th example fails in the metric.
        let metric = metric_fn("sevenths", |e: &Example, p: &Prediction| {
            if e.get("id")
                .and_then(Value::as_u64)
                .unwrap_or(0)
                .is_multiple_of(97)
            {
                return Err(dspex::Error::step(
                    "sevenths",
                    "every 97th cannot be judged",
                ));
            }
            let answer = p.get_str("answer").unwrap_or_default();
            let sum: u64 = answer.bytes().map(u64::from).sum();
            Ok((sum % 7) as f64 / 7.0)
        });
        let file = match mode.as_str() {
            "resume" => ResultsFile::resume(results),
            _ => ResultsFile::create(results),
        };
        Evaluate::for_stream(metric)
            .num_threads(THREADS)
            .report_failures(false)
            .call_stream(&program, jsonl_examples(data, ["question"]), file)
            .await
            .expect("the evaluation runs")
    });
    println!(
        "{}",
        json!({
            "total_bits": summary.total.to_bits(), "score": summary.score,
            "n_examples": summary.n_examples, "n_errors": summary.n_errors,
            "resumed": summary.resumed, "ran": summary.ran,
        })
    );
}

fn child_command(url: &str, data: &Path, results: &Path, mode: &str) -> Command {
    let mut cmd = Command::new(std::env::current_exe().expect("this test's path"));
    cmd.arg("child")
        .arg(url)
        .arg(data)
        .arg(results)
        .arg(mode)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    cmd
}

fn run_child(url: &str, data: &Path, results: &Path, mode: &str) -> Value {
    let out = child_command(url, data, results, mode)
        .output()
        .expect("the child runs");
    assert!(out.status.success(), "the child failed: {:?}", out.status);
    let stdout = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(stdout.lines().last().unwrap_or_default())
        .unwrap_or_else(|e| panic!("the child printed {stdout:?}: {e}"))
}

/// Whole lines in `path` (a cut last line is not counted).
fn whole_lines(path: &Path) -> u64 {
    std::fs::read(path).map_or(0, |b| b.iter().filter(|&&c| c == b'\n').count() as u64)
}

/// Starts a child evaluation and SIGKILLs it once `at` records are written; returns how many
/// whole records the file then holds.
fn run_and_kill(url: &str, data: &Path, results: &Path, mode: &str, at: u64) -> u64 {
    use std::os::unix::process::ExitStatusExt;
    let mut child = child_command(url, data, results, mode)
        .stdout(Stdio::null())
        .spawn()
        .expect("the child starts");
    // Not a timing assertion: a guard against a hung child.
    let give_up = Instant::now() + Duration::from_secs(600);
    loop {
        if let Some(status) = child.try_wait().expect("the child can be waited for") {
            panic!("the child ended ({status:?}) before {at} records were written");
        }
        if whole_lines(results) >= at {
            break;
        }
        assert!(Instant::now() < give_up, "the child made no progress");
        std::thread::sleep(Duration::from_millis(1));
    }
    child.kill().expect("SIGKILL is sent");
    let status = child.wait().expect("the child is reaped");
    assert_eq!(status.signal(), Some(9), "killed by SIGKILL: {status:?}");
    whole_lines(results)
}

/// index → (hash, score as bits, failed) of every record, asserting each index appears once.
fn records(path: &Path) -> BTreeMap<u64, (String, u64, bool)> {
    let text = std::fs::read_to_string(path).expect("the results file");
    let mut out = BTreeMap::new();
    for (n, line) in text.lines().enumerate() {
        let v: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("line {}: {e}", n + 1));
        let index = v["index"].as_u64().expect("an index");
        let record = (
            v["hash"].as_str().expect("a hash").to_string(),
            v["score"].as_f64().expect("a score").to_bits(),
            !v["error"].is_null(),
        );
        assert!(
            out.insert(index, record).is_none(),
            "example {index} is recorded twice (line {})",
            n + 1
        );
    }
    out
}

fn sigkilled_evaluation_resumes_without_loss_or_double_pay() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    // 1 ms per answer: 10,000 examples at 16 in flight take at least 0.6 s, so a kill point
    // before 9,000 records is reached while the child still runs.
    let server = runtime
        .block_on(
            MockLm::builder()
                .latency(Latency::Fixed(Duration::from_millis(1)))
                .start(),
        )
        .expect("the mock LM starts");
    let url = server.url();
    let chat = "/v1/chat/completions";

    let dir = tempfile::tempdir().expect("a temp dir");
    let data = dir.path().join("dev.jsonl");
    let lines: String = (0..N)
        .map(|i| {
            format!(
                "{}\n",
                json!({"id": i, "question": format!("What is {i} + {i}?")})
            )
        })
        .collect();
    std::fs::write(&data, lines).expect("the dataset is written");

    // The uninterrupted run.
    let reference_path = dir.path().join("reference.jsonl");
    let reference = run_child(&url, &data, &reference_path, "create");
    assert_eq!(reference["n_examples"], N);
    assert_eq!(
        server.stats().requests_to(chat),
        N,
        "one request per example"
    );
    let expected = records(&reference_path);
    assert_eq!(expected.len() as u64, N);
    assert!(reference["n_errors"].as_u64().unwrap_or(0) > 0);
    server.reset_stats();

    // Killed twice, resumed twice.
    let (first, second) = match std::env::var("DSPEX_KILL_AT") {
        Ok(at) => {
            let mut it = at
                .split(',')
                .map(|s| s.trim().parse::<u64>().expect("a number"));
            (it.next().unwrap_or(1000), it.next().unwrap_or(5000))
        }
        Err(_) => {
            let r = RandomState::new().hash_one(Instant::now());
            let first = 100 + r % 4000;
            (first, first + 500 + (r >> 32) % 3000)
        }
    };
    println!("kill points (records written): {first}, {second} (DSPEX_KILL_AT={first},{second})");
    let results = dir.path().join("results.jsonl");
    let kept_first = run_and_kill(&url, &data, &results, "create", first);
    let kept_second = run_and_kill(&url, &data, &results, "resume", second);
    let last = run_child(&url, &data, &results, "resume");
    println!("records kept at the kills: {kept_first}, {kept_second}; last run: {last}");
    assert!(kept_first >= first && kept_second >= second.max(kept_first));

    // Every example exactly once, each with the uninterrupted run's hash and score.
    let got = records(&results);
    assert_eq!(got.len() as u64, N, "examples lost");
    assert_eq!(
        got, expected,
        "a record differs from the uninterrupted run's"
    );
    // The same total, to the bit, and the same score.
    assert_eq!(last["total_bits"], reference["total_bits"]);
    assert_eq!(last["score"], reference["score"]);
    assert_eq!(last["n_errors"], reference["n_errors"]);
    assert_eq!(last["n_examples"], N);
    // The last run skipped what the file held and ran the rest.
    assert_eq!(last["resumed"], kept_second);
    assert_eq!(last["ran"], N - kept_second);

    // Paid once per example, plus at most the examples in flight at each kill.
    let paid = server.stats().requests_to(chat);
    println!(
        "LM requests over the three runs: {paid} for {N} examples ({} paid twice; bound {})",
        paid - N,
        2 * THREADS
    );
    assert!(paid >= N);
    assert!(
        paid <= N + 2 * THREADS as u64,
        "{paid} requests: more than the {} in flight at the two kills were paid twice",
        2 * THREADS
    );
    drop(server);
}
