//! Helpers shared by the integration tests; a test file takes them with `mod common;`.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};

/// The DSPy fixture `name` from `shared/fixtures/dspy` (recorded from DSPy 3.4.1), parsed.
#[allow(dead_code)] // Not every test file that takes `common` uses it.
pub(crate) fn fixture(name: &str) -> Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/fixtures/dspy")
        .join(name);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}

/// DSPy's two-step RAG program: the shape of the `program_state_rag` fixture.
#[allow(dead_code)] // Not every test file that takes `common` uses it.
pub(crate) mod rag {
    use dspex::module::{ChainOfThought, Predict};
    use dspex::prelude::*;

    #[signature("question -> search_query")]
    pub(crate) struct GenerateQuery;

    #[signature("context: list[str], question -> answer")]
    pub(crate) struct Answer;

    /// `generate_query = ChainOfThought(GenerateQuery)`, then `answer = Predict(Answer)`.
    #[derive(Module)]
    pub(crate) struct Rag {
        pub(crate) generate_query: ChainOfThought<GenerateQuery>,
        pub(crate) answer: Predict<Answer>,
    }

    impl Rag {
        pub(crate) fn new() -> Self {
            Rag {
                generate_query: ChainOfThought::new(),
                answer: Predict::new(),
            }
        }
    }
}

/// The repository root.
#[allow(dead_code)] // Not every test file that takes `common` uses it.
pub(crate) fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The project venv's Python (DSPy 3.4.1 and the bridge worker), created by `scripts/python-env`
/// if needed (fails loudly if it cannot), or the interpreter in `DSPEX_BRIDGE_PYTHON`.
#[allow(dead_code)] // Not every test file that takes `common` uses it.
pub(crate) fn venv_python() -> PathBuf {
    if let Some(python) = std::env::var_os("DSPEX_BRIDGE_PYTHON") {
        return PathBuf::from(python);
    }
    let out = Command::new(repo_root().join("scripts/python-env"))
        .output()
        .expect("scripts/python-env runs");
    assert!(
        out.status.success(),
        "scripts/python-env failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let path = stdout
        .lines()
        .last()
        .expect("python-env prints the python path")
        .trim();
    repo_root().join(path)
}

/// Setup shared by the tests that run the real bridge worker against the mock LM.
#[allow(dead_code)] // Not every test file that takes `common` uses it.
pub(crate) mod bridge {
    use dspex::bridge::protocol::{LmConfig, Op};
    use dspex::bridge::{Pool, PoolBuilder};
    use dspex::lm::LM;
    use dspex::testing::MockLmServer;
    use std::future::Future;
    use std::path::PathBuf;
    use std::time::Duration;

    /// One worker with generous timeouts, DSPy configured to send its LM calls over the bridge.
    pub(crate) fn pool(python: PathBuf) -> PoolBuilder {
        Pool::builder()
            .python(python)
            .workers(1)
            .start_timeout(Duration::from_secs(60))
            .call_timeout(Duration::from_secs(60))
            .init(Op::Configure {
                lm: LmConfig::bridge("openai/mock"),
                adapter: None,
            })
    }

    /// An uncached client of the mock server.
    pub(crate) fn lm(server: &MockLmServer) -> LM {
        LM::builder("openai/mock")
            .api_base(server.api_base())
            .api_key("sk-test")
            .cache(false)
            .build()
            .expect("the LM builds")
    }

    /// Asks a bridged `dspy.Predict("question -> answer")`, created in `pool`, "What is 2 + 2?"
    /// with `server`'s LM in the settings (its LM call comes back over the bridge): the
    /// prediction's fields.
    pub(crate) async fn ask_bridged_predict(
        pool: &Pool,
        server: &MockLmServer,
    ) -> dspex::Result<serde_json::Value> {
        #[derive(serde::Serialize)]
        struct Question {
            question: String,
        }
        dspex::settings::with_settings(dspex::settings::Settings::new().lm(lm(server)), async {
            let predict = dspex::bridge::BridgedModule::<Question, serde_json::Value>::create(
                pool,
                "Predict",
                "question -> answer",
            )
            .await?;
            dspex::Program::forward(
                &predict,
                Question {
                    question: "What is 2 + 2?".into(),
                },
            )
            .await
        })
        .await
    }

    /// `fut`, failing the test instead of hanging past `secs`.
    pub(crate) async fn within<F: Future>(secs: u64, fut: F) -> F::Output {
        tokio::time::timeout(Duration::from_secs(secs), fut)
            .await
            .unwrap_or_else(|_| panic!("the test did not finish within {secs} s (a hang)"))
    }
}

/// A chaos run shared by the bridge's chaos tests: callers keep calling while a random worker of
/// the pool is SIGKILLed every 100 ms.
#[allow(dead_code)] // Not every test file that takes `common` uses it.
pub(crate) mod chaos {
    use dspex::bridge::{BridgeError, Pool};
    use std::collections::HashMap;
    use std::future::Future;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::time::{Duration, Instant};

    /// How a run should go.
    pub(crate) struct Plan {
        /// Concurrent callers.
        pub(crate) callers: usize,
        /// Calls to make at least.
        pub(crate) min_calls: usize,
        /// Kills to see at least: calling goes on past `min_calls` until there were this many, so
        /// a fast run still meets many crashes.
        pub(crate) min_kills: usize,
        /// The pool's size, to be back at the end.
        pub(crate) workers: usize,
    }

    /// What a run did.
    #[derive(Debug)]
    pub(crate) struct Report {
        pub(crate) calls: usize,
        pub(crate) ok: usize,
        pub(crate) kills: usize,
        /// The failed calls, by call number, with their typed errors.
        pub(crate) errors: Vec<(usize, BridgeError)>,
        pub(crate) took: Duration,
        /// Every worker process id seen during the run.
        pub(crate) seen: Vec<u32>,
    }

    impl Report {
        /// The failures counted by the error's variant (`WorkerCrashed`, `SessionLost`, …).
        pub(crate) fn failures_by_kind(&self) -> std::collections::BTreeMap<String, usize> {
            let mut kinds = std::collections::BTreeMap::new();
            for (_, e) in &self.errors {
                let kind = kind(e).to_string();
                *kinds.entry(kind).or_insert(0) += 1;
            }
            kinds
        }
    }

    /// The name of a bridge error's variant.
    pub(crate) fn kind(e: &BridgeError) -> &'static str {
        match e {
            BridgeError::Spawn { .. } => "Spawn",
            BridgeError::Handshake { .. } => "Handshake",
            BridgeError::ProtocolVersion { .. } => "ProtocolVersion",
            BridgeError::Protocol { .. } => "Protocol",
            BridgeError::Timeout { .. } => "Timeout",
            BridgeError::WorkerCrashed { .. } => "WorkerCrashed",
            BridgeError::Remote { .. } => "Remote",
            BridgeError::BadResult { .. } => "BadResult",
            BridgeError::PoolSaturated { .. } => "PoolSaturated",
            BridgeError::CheckoutTimeout { .. } => "CheckoutTimeout",
            BridgeError::SessionLost { .. } => "SessionLost",
            BridgeError::SessionBusy { .. } => "SessionBusy",
            BridgeError::BreakerOpen { .. } => "BreakerOpen",
            BridgeError::ShutDown => "ShutDown",
            _ => "another variant",
        }
    }

    /// The live processes (not zombies) whose process group is one of `groups`.
    pub(crate) fn processes_in_groups(groups: &[u32]) -> Vec<u32> {
        let Ok(dir) = std::fs::read_dir("/proc") else {
            return Vec::new();
        };
        dir.filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
            .filter(|pid| {
                let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
                    return false;
                };
                let Some((_, rest)) = stat.rsplit_once(')') else {
                    return false;
                };
                // state ppid pgrp …
                let fields: Vec<&str> = rest.split_whitespace().collect();
                let pgrp = fields.get(2).and_then(|g| g.parse::<u32>().ok());
                fields
                    .first()
                    .is_some_and(|state| *state != "Z" && *state != "X")
                    && pgrp.is_some_and(|g| groups.contains(&g))
            })
            .collect()
    }

    /// The state letter and start time (clock ticks since boot) of a live process, from
    /// `/proc/<pid>/stat`; `None` when there is no such process.
    fn stat(pid: u32) -> Option<(String, u64)> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // pid (comm) state ppid … starttime is the 22nd field; comm may hold spaces or parentheses.
        let (_, rest) = stat.rsplit_once(')')?;
        let fields: Vec<&str> = rest.split_whitespace().collect();
        Some((fields.first()?.to_string(), fields.get(19)?.parse().ok()?))
    }

    /// Runs `call(pool, n)` for call numbers `n` from `plan.callers` tasks while a worker is
    /// SIGKILLed every 100 ms; then checks the bar: ≥ 99.9 % of the calls succeed, none
    /// hangs (30 s each), the pool is back to `plan.workers` ready workers, and no killed worker
    /// process is left running. A call that answers wrongly panics inside `call`.
    ///
    /// Kills stop with the calls, and the run returns only once the pool has seen every kill
    /// (no killed worker is still among its workers) and is back to full size, so every worker
    /// left is a live process: a caller may then expect all of them to stop gracefully.
    pub(crate) async fn run<F, Fut>(pool: &Pool, plan: Plan, call: F) -> Report
    where
        F: Fn(Pool, usize) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), BridgeError>> + Send + 'static,
    {
        let started = Instant::now();
        let done = Arc::new(AtomicBool::new(false));
        let kills = Arc::new(AtomicUsize::new(0));
        let next = Arc::new(AtomicUsize::new(0));
        let call = Arc::new(call);
        let killer = {
            let (pool, done, kills) = (pool.clone(), done.clone(), kills.clone());
            tokio::spawn(async move {
                // Every worker process seen, and every one killed, with its start time (pids
                // are reused).
                let mut seen: HashMap<u32, u64> = HashMap::new();
                let mut killed: HashMap<u32, u64> = HashMap::new();
                let mut seed = 0x2545_f491_4f6c_dd1du64;
                loop {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    // Checked after the sleep: a kill after the last call would go unchecked.
                    if done.load(Ordering::Relaxed) {
                        break;
                    }
                    let pids = pool.worker_pids();
                    for pid in &pids {
                        if let Some((_, start)) = stat(*pid) {
                            seen.entry(*pid).or_insert(start);
                        }
                    }
                    if pids.is_empty() {
                        continue;
                    }
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    let pid = pids[(seed % pids.len() as u64) as usize];
                    let ok = tokio::process::Command::new("kill")
                        .args(["-s", "KILL", &pid.to_string()])
                        .status()
                        .await
                        .is_ok_and(|s| s.success());
                    if ok {
                        kills.fetch_add(1, Ordering::Relaxed);
                        if let Some(start) = seen.get(&pid) {
                            killed.insert(pid, *start);
                        }
                    }
                }
                (seen, killed)
            })
        };
        let tasks: Vec<_> = (0..plan.callers)
            .map(|_| {
                let (pool, call, next, kills) =
                    (pool.clone(), call.clone(), next.clone(), kills.clone());
                let (min_calls, min_kills) = (plan.min_calls, plan.min_kills);
                tokio::spawn(async move {
                    let (mut calls, mut ok, mut errors) = (0usize, 0usize, Vec::new());
                    loop {
                        let n = next.fetch_add(1, Ordering::Relaxed);
                        if n >= min_calls && kills.load(Ordering::Relaxed) >= min_kills {
                            break;
                        }
                        calls += 1;
                        let answer =
                            tokio::time::timeout(Duration::from_secs(30), call(pool.clone(), n));
                        match answer.await {
                            Err(_) => panic!("call {n} hung (no answer within 30 s)"),
                            Ok(Ok(())) => ok += 1,
                            Ok(Err(e)) => errors.push((n, e)),
                        }
                    }
                    (calls, ok, errors)
                })
            })
            .collect();
        let mut report = Report {
            calls: 0,
            ok: 0,
            kills: 0,
            errors: Vec::new(),
            took: Duration::ZERO,
            seen: Vec::new(),
        };
        for t in tasks {
            let (calls, ok, errors) = t.await.expect("a caller task panicked");
            report.calls += calls;
            report.ok += ok;
            report.errors.extend(errors);
        }
        report.took = started.elapsed();
        done.store(true, Ordering::Relaxed);
        let (seen, killed) = killer.await.expect("the killer joins");
        report.kills = kills.load(Ordering::Relaxed);
        report.seen = seen.keys().copied().collect();

        assert!(report.calls >= plan.min_calls, "{report:?}");
        assert!(report.kills >= plan.min_kills, "{report:?}");
        assert!(
            report.ok * 1000 >= report.calls * 999,
            "{}/{} succeeded with {} kills; failures {:?}: {:?}",
            report.ok,
            report.calls,
            report.kills,
            report.failures_by_kind(),
            report.errors
        );
        // A worker killed a moment ago is still listed, `Ready`, until the pool reads the end of
        // its stdout or its exit: wait until none is (its pid gone from the pool, or reused by a
        // process that started later), then for its replacement.
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let s = pool.stats();
            let unseen_kill = s.workers.iter().any(|w| {
                let pid = w.worker.pid;
                killed
                    .get(&pid)
                    .is_some_and(|start| stat(pid).is_none_or(|(_, now)| now == *start))
            });
            if !unseen_kill
                && s.ready == plan.workers
                && s.starting == 0
                && s.workers.len() == plan.workers
            {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the pool is not back to {} ready workers within 60 s: {} ready, {} starting, \
                 {} live",
                plan.workers,
                s.ready,
                s.starting,
                s.workers.len()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // Every worker process gone from the pool is gone from the system (a zombie counts as
        // gone; a pid reused by another process does not count: its start time differs).
        let live = pool.worker_pids();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let left: Vec<u32> = seen
                .iter()
                .filter(|(pid, start)| {
                    !live.contains(pid)
                        && stat(**pid).is_some_and(|(state, s)| s == **start && state != "Z")
                })
                .map(|(pid, _)| *pid)
                .collect();
            // Workers run in process groups of their own (a forked worker joins its stub's):
            // nothing may be left in the group of a worker gone from the pool.
            let gone: Vec<u32> = seen
                .keys()
                .filter(|pid| !live.contains(pid))
                .copied()
                .collect();
            let strays = processes_in_groups(&gone);
            if left.is_empty() && strays.is_empty() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "worker processes {left:?} outlived their place in the pool; processes {strays:?} \
                 outlived their worker's process group"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let s = pool.stats();
        eprintln!(
            "chaos: {}/{} ok in {:?}, {} kills, failures {:?}, {} retries, {} modules re-created, \
             {} restarts, {} worker failures, latency p50 ≤ {:?}, p99 ≤ {:?}",
            report.ok,
            report.calls,
            report.took,
            report.kills,
            report.failures_by_kind(),
            s.retries,
            s.recreated,
            s.restarts,
            s.worker_failures,
            s.latency.quantile(0.5),
            s.latency.quantile(0.99)
        );
        report
    }
}

/// A tracing subscriber that collects every event's and span's fields as text (`name=value`
/// lines), for tests that check what logs carry (an API key must never appear).
#[allow(dead_code)] // Not every test file that takes `common` uses it.
#[derive(Clone, Default)]
pub(crate) struct Capture(pub(crate) Arc<Mutex<String>>);

impl tracing::Subscriber for Capture {
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, span: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        span.record(&mut Visitor(Arc::clone(&self.0)));
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, values: &tracing::span::Record<'_>) {
        values.record(&mut Visitor(Arc::clone(&self.0)));
    }
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, event: &tracing::Event<'_>) {
        event.record(&mut Visitor(Arc::clone(&self.0)));
    }
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

struct Visitor(Arc<Mutex<String>>);

impl tracing::field::Visit for Visitor {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        let mut log = self.0.lock().unwrap();
        log.push_str(&format!("{}={value:?}\n", field.name()));
    }
}

/// How many files lie below `dir` (recursively), after checking that none holds `secret`.
#[allow(dead_code)] // Not every test file that takes `common` uses it.
pub(crate) fn files_without(dir: &Path, secret: &str) -> usize {
    let mut files = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files += files_without(&path, secret);
            continue;
        }
        let bytes = std::fs::read(&path).unwrap();
        assert!(
            !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
            "{} holds the key",
            path.display()
        );
        files += 1;
    }
    files
}

/// Asserts that `key` is in none of what a secrecy test collected: `Debug` output, error texts,
/// the captured log (which must have caught an LM call), and the files of the disk cache in
/// `cache_dir` (which must have written some).
#[allow(dead_code)] // Not every test file that takes `common` uses it.
pub(crate) fn assert_key_kept(key: &str, debug: &str, errors: &str, log: &str, cache_dir: &Path) {
    assert!(!debug.contains(key), "Debug output leaks the key: {debug}");
    assert!(!errors.contains(key), "an error leaks the key: {errors}");
    assert!(log.contains("LM call"), "tracing captured nothing: {log}");
    assert!(!log.contains(key), "a log line leaks the key");
    assert!(
        files_without(cache_dir, key) > 0,
        "the disk cache wrote nothing"
    );
}

/// What the optimizer parity tests share: the traces `scripts/gen_*_trace(s).py` recorded from
/// DSPy 3.4.1 and the pieces of their scripted LMs, whose answers are functions of the prompt.
#[allow(dead_code)] // Not every test file that takes `common` uses it.
pub(crate) mod parity {
    use dspex::lm::{Choice, FinishReason, LmResponse, Message, Usage};
    use dspex::prelude::*;
    use serde_json::Value;
    use sha2::{Digest, Sha256};
    use std::path::PathBuf;
    use std::time::Duration;

    /// The trace `name` from `tests/data`, parsed.
    pub(crate) fn trace(name: &str) -> Value {
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("data")
            .join(name);
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
        serde_json::from_str(&text).unwrap()
    }

    /// Lowercase hex.
    pub(crate) fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// The scripts' `digest(messages)`: SHA-256 over each message's role, `\x01`, its text and
    /// `\x00`, in hex.
    pub(crate) fn digest(messages: &[Message]) -> String {
        let mut h = Sha256::new();
        for m in messages {
            h.update(m.role.as_str().as_bytes());
            h.update([1u8]);
            h.update(m.content.text().as_bytes());
            h.update([0u8]);
        }
        hex(&h.finalize())
    }

    /// A response of the scripted LM: one choice per text, finished, no usage.
    pub(crate) fn response(texts: impl IntoIterator<Item = String>) -> LmResponse {
        LmResponse {
            choices: texts
                .into_iter()
                .map(|text| Choice {
                    text,
                    finish_reason: Some(FinishReason::Stop),
                    tool_calls: Vec::new(),
                    reasoning_content: None,
                })
                .collect(),
            usage: Usage::default(),
            model: "dummy".into(),
            latency: Duration::ZERO,
            cache_hit: false,
        }
    }

    /// A trace's examples (`question` the input).
    pub(crate) fn examples(set: &Value) -> Vec<Example> {
        set.as_array()
            .unwrap()
            .iter()
            .map(|ex| {
                serde_json::from_value::<Example>(ex.clone())
                    .unwrap()
                    .with_inputs(["question"])
            })
            .collect()
    }
}
