//! LM-layer benchmark: dspex's client against DSPy 3.4.1's `dspy.LM`, on one loopback mock
//! server (dspex's own), in one run. Prints a Markdown table.
//!
//! Run it with `scripts/bench lm` (release build, the project venv, a raised file limit). Each
//! measurement runs in a fresh worker process (this binary with `worker …`) so peak RSS and
//! warm caches do not leak between them. `bench_lm fleet` runs only the fleet section (one LM
//! over three mock servers at 20, 50 and 100 ms against one server alone), which needs no
//! Python. `bench_lm redis` runs only the Redis cache tier's hit latency (a throwaway
//! `redis-server` on loopback, memory and disk tiers off), which needs no Python either.

use dspex::lm::{CacheConfig, LM, LmRequest, ModelType, RedisConfig, RetryPolicy};
use dspex_examples::{
    bench_main, dspex_binary, dspy_side, peak_rss_mb, run_json, start_mock, venv_python,
};
use serde_json::{Value, json};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

fn main() {
    bench_main(|args| async move { worker(&args).await }, orchestrate);
}

/// Runs of the 10,000-request burst in a full (not `--quick`) run.
const BURST_RUNS: usize = 5;

fn orchestrate(quick: bool) {
    if std::env::args().skip(1).any(|a| a == "fleet") {
        fleet_section(quick);
        return;
    }
    if std::env::args().skip(1).any(|a| a == "redis") {
        redis_section();
        return;
    }
    let exe = std::env::current_exe().expect("the bench's own path");
    let dspex = dspex_binary();
    let python = venv_python();
    let dspy_side = dspy_side();

    // One runtime thread per server: on a small machine the server shares the cores with the
    // client under test, and a single-threaded server wastes the least of them.
    let (mut fast, fast_url) = start_mock(&dspex, &["--threads", "1"]);
    let (mut slow, slow_url) = start_mock(&dspex, &["--threads", "1", "--latency-ms", "50"]);

    let mut rows = Vec::new();
    for (concurrency, requests) in [(1, 1000), (16, 4000), (64, 4000)] {
        let requests = if quick { requests / 10 } else { requests };
        let rust = run_json(Command::new(&exe).args([
            "worker",
            "rps",
            &fast_url,
            &concurrency.to_string(),
            &requests.to_string(),
        ]));
        let dspy = run_json(
            Command::new(&python)
                .arg(&dspy_side)
                .args(["lm", "--url", &fast_url])
                .args(["--concurrency", &concurrency.to_string()])
                .args(["--requests", &requests.to_string()])
                .env("LITELLM_LOCAL_MODEL_COST_MAP", "True"),
        );
        rows.push((concurrency, requests, rust, dspy));
    }
    let (burst_c, burst_n) = if quick { (100, 1000) } else { (1000, 10_000) };
    // One run of a burst is at the mercy of whatever else the machine does for its 0.5 s:
    // show several, each a process of its own.
    let bursts: Vec<Value> = (0..if quick { 1 } else { BURST_RUNS })
        .map(|_| {
            run_json(Command::new(&exe).args([
                "worker",
                "rps",
                &slow_url,
                &burst_c.to_string(),
                &burst_n.to_string(),
            ]))
        })
        .collect();
    let cache = run_json(Command::new(&exe).args(["worker", "cache", &fast_url]));
    // Every protocol against the same server at concurrency 64, each in a process of its own.
    let protocol_requests = if quick { 2000 } else { 20_000 };
    let protocol_rows: Vec<(&str, Value)> = PROTOCOLS
        .iter()
        .map(|(label, name)| {
            let row = run_json(Command::new(&exe).args([
                "worker",
                "protocol",
                &fast_url,
                name,
                &protocol_requests.to_string(),
            ]));
            (*label, row)
        })
        .collect();
    let _ = fast.kill();
    let _ = slow.kill();

    println!("### LM client: requests/s against the same mock server (0 ms latency, cache off)\n");
    println!(
        "| concurrency | requests | dspex req/s | DSPy 3.4.1 req/s | ratio | dspex peak RSS | DSPy peak RSS |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|");
    for (c, n, rust, dspy) in &rows {
        let r = rust["requests_per_s"].as_f64().unwrap_or(0.0);
        let d = dspy["requests_per_s"].as_f64().unwrap_or(f64::NAN);
        println!(
            "| {c} | {n} | {r:.0} | {d:.0} | {:.1}× | {:.0} MB | {:.0} MB |",
            r / d,
            rust["peak_rss_mb"].as_f64().unwrap_or(0.0),
            dspy["peak_rss_mb"].as_f64().unwrap_or(0.0)
        );
    }
    let floor = burst_n as f64 / burst_c as f64 * 0.050;
    println!("\n### {burst_n} requests at concurrency {burst_c}, 50 ms server latency\n");
    println!("| run | wall time | floor | wall / floor | peak RSS | errors |");
    println!("|---:|---:|---:|---:|---:|---:|");
    let mut walls = Vec::new();
    for (i, burst) in bursts.iter().enumerate() {
        let wall = burst["wall_s"].as_f64().unwrap_or(f64::NAN);
        walls.push(wall / floor);
        println!(
            "| {} | {wall:.3} s | {floor:.3} s | {:.2}× | {:.0} MB | {} |",
            i + 1,
            wall / floor,
            burst["peak_rss_mb"].as_f64().unwrap_or(0.0),
            burst["errors"]
        );
    }
    walls.sort_by(f64::total_cmp);
    println!(
        "\nwall / floor over {} runs: median {:.2}×, worst {:.2}×",
        walls.len(),
        walls[walls.len() / 2],
        walls[walls.len() - 1]
    );
    println!(
        "\n### Protocols: {protocol_requests} requests at concurrency 64 against the same mock server\n"
    );
    println!("CPU is the client process's own (user + system, all threads) per call.\n");
    println!("| protocol | req/s | CPU µs / call | CPU vs OpenAI chat | errors |");
    println!("|---|---:|---:|---:|---:|");
    let base = protocol_rows
        .first()
        .and_then(|(_, r)| r["cpu_us_per_call"].as_f64())
        .unwrap_or(f64::NAN);
    for (label, row) in &protocol_rows {
        let cpu = row["cpu_us_per_call"].as_f64().unwrap_or(f64::NAN);
        println!(
            "| {label} | {:.0} | {cpu:.1} | {:.2}× | {} |",
            row["requests_per_s"].as_f64().unwrap_or(0.0),
            cpu / base,
            row["errors"]
        );
    }
    println!("\n### Cache hits (10,000 lookups each)\n");
    println!("| tier | LM call p50 | LM call p99 | cache get p50 | cache get p99 |");
    println!("|---|---:|---:|---:|---:|");
    for tier in ["memory", "disk"] {
        let t = &cache[tier];
        println!(
            "| {tier} | {:.1} µs | {:.1} µs | {:.1} µs | {:.1} µs |",
            t["call_p50_us"].as_f64().unwrap_or(0.0),
            t["call_p99_us"].as_f64().unwrap_or(0.0),
            t["get_p50_us"].as_f64().unwrap_or(0.0),
            t["get_p99_us"].as_f64().unwrap_or(0.0),
        );
    }
    fleet_section(quick);
}

/// Latencies of the fleet's three mock servers, in milliseconds.
const FLEET_MS: [u64; 3] = [20, 50, 100];
/// Calls in flight in the fleet section.
const FLEET_IN_FLIGHT: usize = 300;
/// Runs of each fleet row (a process each); the table shows the middle one by req/s.
const FLEET_RUNS: usize = 3;

/// One LM over three mock servers at 20, 50 and 100 ms against each server alone: p50/p99
/// latency and requests/s of 10,000 calls at 300 in flight.
fn fleet_section(quick: bool) {
    let exe = std::env::current_exe().expect("the bench's own path");
    let dspex = dspex_binary();
    let mut servers = Vec::new();
    let mut urls = Vec::new();
    for ms in FLEET_MS {
        let (child, url) = start_mock(&dspex, &["--threads", "1", "--latency-ms", &ms.to_string()]);
        servers.push(child);
        urls.push(url);
    }
    let requests = if quick { 1000 } else { 10_000 };
    let runs = if quick { 1 } else { FLEET_RUNS };
    let mut rows = vec![("fleet of 3 (20/50/100 ms)".to_string(), urls.join(","))];
    for (ms, url) in FLEET_MS.iter().zip(&urls) {
        rows.push((format!("one endpoint, {ms} ms"), url.clone()));
    }
    let measured: Vec<(String, Value)> = rows
        .into_iter()
        .map(|(label, target)| {
            let mut results: Vec<Value> = (0..runs)
                .map(|_| {
                    run_json(Command::new(&exe).args([
                        "worker",
                        "fleet",
                        &target,
                        &FLEET_IN_FLIGHT.to_string(),
                        &requests.to_string(),
                    ]))
                })
                .collect();
            results.sort_by(|a, b| {
                let rps = |v: &Value| v["requests_per_s"].as_f64().unwrap_or(0.0);
                rps(a).total_cmp(&rps(b))
            });
            (label, results.swap_remove(results.len() / 2))
        })
        .collect();
    for mut server in servers {
        let _ = server.kill();
    }
    println!(
        "\n### Fleet: {requests} calls at {FLEET_IN_FLIGHT} in flight, one LM over three endpoints\n"
    );
    println!(
        "Middle run of {runs} by req/s; each mock server `--threads 1`; cache and retries off.\n"
    );
    println!("| target | p50 | p99 | req/s | served per endpoint | errors |");
    println!("|---|---:|---:|---:|---|---:|");
    for (label, row) in &measured {
        println!(
            "| {label} | {:.1} ms | {:.1} ms | {:.0} | {} | {} |",
            row["p50_ms"].as_f64().unwrap_or(f64::NAN),
            row["p99_ms"].as_f64().unwrap_or(f64::NAN),
            row["requests_per_s"].as_f64().unwrap_or(0.0),
            row["served"].as_str().unwrap_or("?"),
            row["errors"]
        );
    }
    let mean = FLEET_MS.iter().sum::<u64>() as f64 / FLEET_MS.len() as f64;
    println!("\nMean of the three servers' latencies: {mean:.1} ms.");
}

/// Hit latency of the Redis tier alone, against a throwaway `redis-server` on loopback: each
/// row a worker process of its own.
fn redis_section() {
    let exe = std::env::current_exe().expect("the bench's own path");
    let redis =
        dspex::testing::RedisServer::start().expect("redis-server (apt-get install redis-server)");
    let row = run_json(Command::new(&exe).args(["worker", "redis-cache", &redis.url()]));
    println!("\n### Redis cache tier: hit latency on loopback (10,000 hits each)\n");
    println!("Memory and disk tiers off: every hit is a Redis `GET`, a check and a decode.\n");
    println!("| value | `LM::call` p50 | p99 | `ResponseCache::get` p50 | p99 |");
    println!("|---|---:|---:|---:|---:|");
    for (label, name) in [
        ("plain (short answer)", "plain"),
        ("LZ4 (2 KiB answer, compressed)", "lz4"),
    ] {
        let r = &row[name];
        println!(
            "| {label} | {:.0} µs | {:.0} µs | {:.0} µs | {:.0} µs |",
            r["call_p50_us"].as_f64().unwrap_or(f64::NAN),
            r["call_p99_us"].as_f64().unwrap_or(f64::NAN),
            r["get_p50_us"].as_f64().unwrap_or(f64::NAN),
            r["get_p99_us"].as_f64().unwrap_or(f64::NAN),
        );
    }
}

/// Hit latency through `LM::call` and through the cache alone, with the Redis tier at
/// `redis_url` as the only tier; a short answer (stored plain) and a long one (compressed).
async fn redis_hits(redis_url: &str) -> Value {
    let long = "All work and no play makes Jack a dull boy. ".repeat(48);
    let server = dspex::testing::MockLm::builder()
        .rule(dspex::testing::Rule::contains("long", long.as_str()))
        .start()
        .await
        .expect("the mock LM");
    let mut out = serde_json::Map::new();
    for (name, prompt) in [
        ("plain", "What is the capital of France?"),
        ("lz4", "a long one"),
    ] {
        let config = CacheConfig::memory_only()
            .memory_capacity(0)
            .redis(RedisConfig::new(redis_url).expect("a Redis URL"));
        let lm = LM::builder("openai/mock")
            .api_base(server.api_base())
            .api_key("x")
            .cache_config(config)
            .build()
            .expect("the LM builds");
        let request = LmRequest::prompt(prompt);
        lm.call(request.clone()).await.expect("the first call");
        let mut calls = Vec::with_capacity(10_000);
        for _ in 0..10_000 {
            let t = Instant::now();
            let r = lm.call(request.clone()).await.expect("a hit");
            calls.push(t.elapsed());
            assert!(r.cache_hit);
        }
        let cache = lm.cache().expect("a cache");
        let key = dspex::lm::CacheKey::for_request("openai/mock", "dspex.chat", &request);
        let mut gets = Vec::with_capacity(10_000);
        for _ in 0..10_000 {
            let t = Instant::now();
            assert!(cache.get(&key).await.is_some());
            gets.push(t.elapsed());
        }
        assert_eq!(cache.stats().redis_errors, 0);
        let (c50, c99) = percentiles(calls);
        let (g50, g99) = percentiles(gets);
        out.insert(
            name.to_string(),
            json!({"call_p50_us": c50, "call_p99_us": c99, "get_p50_us": g50, "get_p99_us": g99}),
        );
    }
    Value::Object(out)
}

/// `requests` calls at `in_flight` through one LM over the comma-separated base URLs in
/// `urls`: latency percentiles, requests/s, errors and the calls each endpoint served.
async fn fleet_rps(urls: &str, in_flight: usize, requests: usize) -> Value {
    let bases: Vec<String> = urls.split(',').map(|u| format!("{u}/v1")).collect();
    let lm = LM::builder("openai/mock")
        .endpoints(bases)
        .api_key("x")
        .cache(false)
        .history_size(0)
        .retry(RetryPolicy::none())
        .timeout(Duration::from_secs(60))
        .build()
        .expect("the LM builds");
    lm.call(LmRequest::prompt("warm up"))
        .await
        .expect("warm-up call");
    let before: Vec<u64> = lm.endpoints().iter().map(|e| e.served).collect();
    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let tasks: Vec<_> = (0..in_flight)
        .map(|_| {
            let (lm, next) = (lm.clone(), Arc::clone(&next));
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                let mut errors = 0usize;
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= requests {
                        break;
                    }
                    let t = Instant::now();
                    match lm.call(LmRequest::prompt(format!("request {i}"))).await {
                        Ok(_) => latencies.push(t.elapsed()),
                        Err(_) => errors += 1,
                    }
                }
                (latencies, errors)
            })
        })
        .collect();
    let mut latencies = Vec::with_capacity(requests);
    let mut errors = 0;
    for t in tasks {
        let (l, e) = t.await.expect("a worker task");
        latencies.extend(l);
        errors += e;
    }
    let wall = start.elapsed().as_secs_f64();
    let (p50, p99) = percentiles(latencies);
    let served: Vec<u64> = lm
        .endpoints()
        .iter()
        .zip(&before)
        .map(|(e, b)| e.served - b)
        .collect();
    json!({
        "p50_ms": p50 / 1000.0,
        "p99_ms": p99 / 1000.0,
        "requests_per_s": requests as f64 / wall,
        "errors": errors,
        "served": served.iter().map(u64::to_string).collect::<Vec<_>>().join(" / "),
    })
}

async fn worker(args: &[String]) -> Value {
    match args.first().map(String::as_str) {
        Some("rps") => {
            let url = &args[1];
            let concurrency: usize = args[2].parse().expect("concurrency");
            let requests: usize = args[3].parse().expect("requests");
            rps(url, concurrency, requests).await
        }
        Some("cache") => cache_hits(&args[1]).await,
        Some("redis-cache") => redis_hits(&args[1]).await,
        Some("fleet") => {
            let in_flight: usize = args[2].parse().expect("in flight");
            let requests: usize = args[3].parse().expect("requests");
            fleet_rps(&args[1], in_flight, requests).await
        }
        Some("protocol") => {
            let requests: usize = args[3].parse().expect("requests");
            protocol_rps(&args[1], &args[2], requests).await
        }
        other => panic!("unknown worker {other:?}"),
    }
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

/// `requests` calls from `concurrency` tasks, as DSPy's side does from threads.
async fn rps(url: &str, concurrency: usize, requests: usize) -> Value {
    let lm = client(url);
    lm.call(LmRequest::prompt("warm up"))
        .await
        .expect("warm-up call");
    let (wall, errors) = drive(&lm, concurrency, requests).await;
    json!({
        "requests": requests,
        "concurrency": concurrency,
        "wall_s": wall,
        "requests_per_s": requests as f64 / wall,
        "errors": errors,
        "peak_rss_mb": peak_rss_mb(),
    })
}

/// `requests` distinct calls of `lm` from `concurrency` tasks, as DSPy's side makes them from
/// threads: the wall time in seconds and how many failed.
async fn drive(lm: &LM, concurrency: usize, requests: usize) -> (f64, usize) {
    let next = Arc::new(AtomicUsize::new(0));
    let errors = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let tasks: Vec<_> = (0..concurrency)
        .map(|_| {
            let (lm, next, errors) = (lm.clone(), Arc::clone(&next), Arc::clone(&errors));
            tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= requests {
                        break;
                    }
                    if lm
                        .call(LmRequest::prompt(format!("request {i}")))
                        .await
                        .is_err()
                    {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("a worker task");
    }
    (
        start.elapsed().as_secs_f64(),
        errors.load(Ordering::Relaxed),
    )
}

/// The protocols compared, by label and worker name (OpenAI chat first: the others are shown
/// relative to it).
const PROTOCOLS: &[(&str, &str)] = &[
    ("OpenAI chat (`openai/`)", "openai"),
    ("OpenAI Responses (`ModelType::Responses`)", "responses"),
    ("Azure OpenAI (`azure/`)", "azure"),
    ("Anthropic Messages (`anthropic/`)", "anthropic"),
    ("Gemini generateContent (`gemini/`)", "gemini"),
];

/// An LM of protocol `name` on the mock server at `url`.
fn protocol_client(url: &str, name: &str) -> LM {
    let builder = match name {
        "openai" => LM::builder("openai/mock").api_base(format!("{url}/v1")),
        "responses" => LM::builder("openai/mock")
            .model_type(ModelType::Responses)
            .api_base(format!("{url}/v1")),
        "azure" => LM::builder("azure/mock")
            .api_base(url)
            .api_version("2024-10-21"),
        "anthropic" => LM::builder("anthropic/claude-mock").api_base(url),
        "gemini" => LM::builder("gemini/gemini-2.5-flash").api_base(format!("{url}/v1beta")),
        other => panic!("unknown protocol {other}"),
    };
    builder
        .api_key("x")
        .cache(false)
        .retry(RetryPolicy::none())
        .timeout(Duration::from_secs(60))
        .build()
        .expect("the LM builds")
}

/// CPU time of this process so far (user + system, every thread), from
/// `/proc/self/task/*/schedstat` (nanoseconds; the per-process tick counters are too coarse
/// for a few seconds of work). Threads that ended are not counted: the runtime's workers live
/// to the end.
fn process_cpu() -> Duration {
    let mut total = 0u64;
    if let Ok(tasks) = std::fs::read_dir("/proc/self/task") {
        for task in tasks.flatten() {
            if let Ok(stat) = std::fs::read_to_string(task.path().join("schedstat")) {
                total += stat
                    .split_whitespace()
                    .next()
                    .and_then(|ns| ns.parse::<u64>().ok())
                    .unwrap_or(0);
            }
        }
    }
    Duration::from_nanos(total)
}

/// `requests` calls of protocol `name` from 64 tasks: requests/s and CPU per call.
async fn protocol_rps(url: &str, name: &str, requests: usize) -> Value {
    let lm = protocol_client(url, name);
    for _ in 0..64 {
        lm.call(LmRequest::prompt("warm up"))
            .await
            .expect("warm-up call");
    }
    let cpu = process_cpu();
    let (wall, errors) = drive(&lm, 64, requests).await;
    let cpu = (process_cpu() - cpu).as_secs_f64();
    json!({
        "requests_per_s": requests as f64 / wall,
        "cpu_us_per_call": cpu * 1e6 / requests as f64,
        "errors": errors,
    })
}

fn percentiles(mut samples: Vec<Duration>) -> (f64, f64) {
    samples.sort();
    let at = |q: f64| samples[((samples.len() - 1) as f64 * q) as usize].as_secs_f64() * 1e6;
    (at(0.5), at(0.99))
}

/// Hit latency of each tier, through `LM::call` and through the cache alone.
async fn cache_hits(url: &str) -> Value {
    let dir = tempfile::tempdir().expect("a temp dir");
    let mut out = serde_json::Map::new();
    for (tier, config) in [
        ("memory", CacheConfig::memory_only()),
        (
            "disk",
            CacheConfig::with_disk_dir(dir.path()).memory_capacity(0),
        ),
    ] {
        let lm = LM::builder("openai/mock")
            .api_base(format!("{url}/v1"))
            .api_key("x")
            .cache_config(config)
            .build()
            .expect("the LM builds");
        let request = LmRequest::prompt("What is the capital of France?");
        lm.call(request.clone()).await.expect("the first call");
        let mut calls = Vec::with_capacity(10_000);
        for _ in 0..10_000 {
            let t = Instant::now();
            let r = lm.call(request.clone()).await.expect("a hit");
            calls.push(t.elapsed());
            assert!(r.cache_hit);
        }
        let cache = lm.cache().expect("a cache");
        let key = dspex::lm::CacheKey::for_request("openai/mock", "dspex.chat", &request);
        let mut gets = Vec::with_capacity(10_000);
        for _ in 0..10_000 {
            let t = Instant::now();
            assert!(cache.get(&key).await.is_some());
            gets.push(t.elapsed());
        }
        let (c50, c99) = percentiles(calls);
        let (g50, g99) = percentiles(gets);
        out.insert(
            tier.to_string(),
            json!({"call_p50_us": c50, "call_p99_us": c99, "get_p50_us": g50, "get_p99_us": g99}),
        );
    }
    Value::Object(out)
}
