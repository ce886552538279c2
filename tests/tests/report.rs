//! The optimization report in a real browser: a MIPROv2 job against the mock LM writes its log,
//! `write_report` (what `dspex report` and `job.report` call) turns it into a page, and headless Chromium opens it —
//! no console errors, no request leaves the page, and every plotted point is a trial of the
//! log with its score. A screenshot is saved beside the test build
//! (`target/report-screenshot.png`), the one the README shows.
//!
//! Chromium is Debian's `chromium` (`scripts/test` installs it when missing); `DSPEX_CHROMIUM`
//! names another binary. A machine without it fails this test: it is never skipped.

use dspex::lm::CacheConfig;
use dspex::module::ChainOfThought;
use dspex::prelude::*;
use dspex::runtime::evaluate::answer_exact_match;
use dspex::runtime::optimize::{MIPROv2, Optimizer, RunLog, write_report};
use dspex::testing::{MockLm, Rule};
use regex::Regex;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

#[signature("question -> answer")]
struct QA;

fn dataset() -> Vec<Example> {
    (0..20)
        .map(|i| {
            Example::new()
                .with("question", format!("What is {i} plus 1?"))
                .with("answer", (i + 1).to_string())
                .with_inputs(["question"])
        })
        .collect()
}

/// Right on every third question without demos, and on every question with demos.
fn rules(data: &[Example]) -> Vec<Rule> {
    let mut rules = Vec::new();
    for (i, ex) in data.iter().enumerate() {
        let question = ex.get_str("question").unwrap();
        let answer = ex.get_str("answer").unwrap();
        let right = format!(
            "[[ ## reasoning ## ]]\nAdd one.\n\n[[ ## answer ## ]]\n{answer}\n\n[[ ## completed ## ]]"
        );
        let pattern = format!(
            r"(?s)\nassistant:\n.*\nuser:\n\[\[ ## question ## \]\]\n{}\n\nRespond with [^\n]*\z",
            regex::escape(question)
        );
        rules.push(Rule::conversation_regex(&pattern, right.as_str()).unwrap());
        let zero_shot = if i % 3 == 0 {
            right
        } else {
            "[[ ## reasoning ## ]]\nHm.\n\n[[ ## answer ## ]]\n0\n\n[[ ## completed ## ]]".into()
        };
        rules.push(Rule::contains(
            format!("[[ ## question ## ]]\n{question}\n"),
            zero_shot,
        ));
    }
    rules
}

fn chromium() -> PathBuf {
    if let Some(path) = std::env::var_os("DSPEX_CHROMIUM") {
        return PathBuf::from(path);
    }
    for name in ["chromium", "chromium-browser", "google-chrome"] {
        if let Ok(out) = Command::new("which").arg(name).output()
            && out.status.success()
        {
            return PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        }
    }
    panic!(
        "headless Chromium is needed to check the report: install Debian's `chromium` \
         (scripts/test does) or set DSPEX_CHROMIUM"
    );
}

/// What headless Chromium made of a page: the DOM after load and the console messages.
struct Opened {
    dom: String,
    console: Vec<String>,
}

/// Opens `page` in headless Chromium with every host unresolvable, so any request the page
/// made would fail loudly in the console.
fn open(page: &Path, extra: &[String]) -> Opened {
    let profile = tempfile::tempdir().unwrap();
    let out = Command::new(chromium())
        .args([
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--host-resolver-rules=MAP * ~NOTFOUND",
            "--enable-logging=stderr",
            "--v=0",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(extra)
        .arg(format!("file://{}", page.display()))
        .output()
        .expect("chromium runs");
    assert!(
        out.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    let console = stderr
        .lines()
        .filter(|l| l.contains(":CONSOLE") || l.contains("Failed to load resource"))
        .map(str::to_string)
        .collect();
    Opened {
        dom: String::from_utf8_lossy(&out.stdout).into_owned(),
        console,
    }
}

/// The harness sees console errors: a page that logs one and requests a remote script.
#[test]
fn the_console_check_catches_errors() {
    let dir = tempfile::tempdir().unwrap();
    let page = dir.path().join("bad.html");
    std::fs::write(
        &page,
        "<!DOCTYPE html><html><body><script>console.error('boom')</script>\
         <script src=\"https://cdn.example.com/x.js\"></script></body></html>",
    )
    .unwrap();
    let opened = open(&page, &["--dump-dom".into()]);
    assert!(
        opened.console.iter().any(|l| l.contains("boom")),
        "{:?}",
        opened.console
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_report_of_a_mipro_run_opens_cleanly_and_plots_the_log() {
    let data = dataset();
    let server = MockLm::builder().rules(rules(&data)).start().await.unwrap();
    let lm = LM::builder("openai/mock")
        .api_base(server.api_base())
        .cache_config(CacheConfig::memory_only())
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("mipro.jsonl");
    let mipro = MIPROv2::new(answer_exact_match())
        .task_lm(lm.clone())
        .prompt_lm(lm);
    let mut job = Arc::new(mipro)
        .spawn(ChainOfThought::<QA>::new(), data, Some(&log))
        .unwrap();
    while job.next_progress().await.is_some() {}
    // `job.report` writes the same page as `dspex report` below.
    let from_job = dir.path().join("from_job.html");
    job.report(&from_job).unwrap();
    let job_calls = job.usage().total().calls;
    job.wait().await.unwrap();

    // `write_report` (what `dspex report` calls) from the log file.
    let page = dir.path().join("report.html");
    write_report(&log, &page).unwrap();
    let html = std::fs::read_to_string(&page).unwrap();
    assert_eq!(html, std::fs::read_to_string(&from_job).unwrap());
    assert!(!html.contains("http://") && !html.contains("https://") && !html.contains("<script"));

    let opened = open(&page, &["--dump-dom".into()]);
    assert!(
        opened.console.is_empty(),
        "console messages: {:#?}",
        opened.console
    );
    // Every trial of the log is a point with its number and score, in order.
    let run = RunLog::read(&log).unwrap();
    let point =
        Regex::new(r#"data-trial="(\d+)" data-score="([^"]+)" data-minibatch="(true|false)""#)
            .unwrap();
    let plotted: Vec<(u64, f64, bool)> = point
        .captures_iter(&opened.dom)
        .map(|c| {
            (
                c[1].parse().unwrap(),
                c[2].parse().unwrap(),
                &c[3] == "true",
            )
        })
        .collect();
    let logged: Vec<(u64, f64, bool)> = run
        .trials
        .iter()
        .map(|t| (t.trial, t.score, t.minibatch))
        .collect();
    assert!(logged.len() >= 5, "a light run has trials: {logged:?}");
    assert_eq!(plotted, logged);
    // The budget chart plots the usage the log records, ending at the job's total.
    let calls = Regex::new(r#"class="calls-pt"[^>]*data-value="(\d+)""#).unwrap();
    let last_calls: u64 = calls
        .captures_iter(&opened.dom)
        .last()
        .map(|c| c[1].parse().unwrap())
        .expect("the budget chart has points");
    let logged_calls: Vec<u64> = run
        .trials
        .iter()
        .filter_map(|t| t.usage.map(|u| u.lm_calls))
        .collect();
    assert_eq!(Some(&last_calls), logged_calls.last());
    assert!(
        last_calls > 0 && last_calls <= job_calls,
        "{last_calls} of {job_calls}"
    );
    // The program before and after, and the per-example table of the baseline and the best.
    assert!(
        opened.dom.contains("data-side=\"before\"") && opened.dom.contains("data-side=\"after\"")
    );
    let rows = Regex::new(r#"<tr data-example="\d+""#).unwrap();
    let valset = run.trials[0]
        .example_scores
        .as_ref()
        .expect("the baseline keeps its example scores")
        .len();
    assert!(valset > 0);
    assert_eq!(
        rows.find_iter(&opened.dom).count(),
        valset,
        "the valset's examples"
    );

    let shot = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("report-screenshot.png");
    let _ = std::fs::remove_file(&shot);
    open(
        &page,
        &[
            format!("--screenshot={}", shot.display()),
            "--window-size=1200,2200".into(),
            "--hide-scrollbars".into(),
        ],
    );
    let png = std::fs::read(&shot).expect("the screenshot is written");
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
}

/// GEPA's sections in the browser: every candidate of the log is a lineage node, every parent
/// link an edge (a merge has two), and every per-instance score a Pareto cell, green where it is
/// the best on its instance.
#[test]
fn gepa_lineage_and_pareto_front_match_the_log() {
    let candidates = [
        (0, vec![], vec![0.0, 0.0, 1.0, 0.0]),
        (1, vec![0], vec![1.0, 0.0, 1.0, 0.0]),
        (2, vec![0], vec![0.0, 1.0, 1.0, 0.0]),
        (3, vec![1, 2], vec![1.0, 1.0, 1.0, 0.0]),
    ];
    let mut log = String::new();
    for (trial, (index, parents, scores)) in candidates.iter().enumerate() {
        let mean = scores.iter().sum::<f64>() / scores.len() as f64;
        log.push_str(
            &serde_json::json!({
                "event": "trial", "trial": trial, "score": mean, "minibatch": false,
                "elapsed_ms": trial * 10,
                "candidate": {"index": index, "parents": parents, "val_scores": scores},
                "example_scores": scores,
            })
            .to_string(),
        );
        log.push('\n');
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.jsonl");
    std::fs::write(&path, log).unwrap();
    let page = dir.path().join("report.html");
    write_report(dir.path(), &page).unwrap();
    let opened = open(&page, &["--dump-dom".into()]);
    assert!(opened.console.is_empty(), "{:#?}", opened.console);
    let edge = Regex::new(r#"data-from="(\d+)" data-to="(\d+)""#).unwrap();
    let mut edges: Vec<(u64, u64)> = edge
        .captures_iter(&opened.dom)
        .map(|c| (c[1].parse().unwrap(), c[2].parse().unwrap()))
        .collect();
    edges.sort_unstable();
    assert_eq!(edges, [(0, 1), (0, 2), (1, 3), (2, 3)]);
    let cell = Regex::new(r#"<td class="num( front)?" data-instance="(\d)" data-score="([^"]+)""#)
        .unwrap();
    let cells: Vec<(bool, usize, f64)> = cell
        .captures_iter(&opened.dom)
        .map(|c| {
            (
                c.get(1).is_some(),
                c[2].parse().unwrap(),
                c[3].parse().unwrap(),
            )
        })
        .collect();
    assert_eq!(cells.len(), 16);
    for (k, (front, instance, score)) in cells.iter().enumerate() {
        let (_, _, scores) = &candidates[k / 4];
        assert_eq!((*instance, *score), (k % 4, scores[k % 4]));
        let best = candidates
            .iter()
            .map(|c| c.2[*instance])
            .fold(f64::NEG_INFINITY, f64::max);
        assert_eq!(*front, *score == best, "cell {k}");
    }
    assert!(opened.dom.contains("4 of 4 candidates are on the front"));
}
