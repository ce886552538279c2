//! The Python bridge's pool against a fast fake worker (`tests/python/fake_worker.py`, stdlib
//! only, run with the system `python3`): round trips, typed errors, crash detection and retries,
//! timeouts, heartbeats, saturation, affinity, LM calls served in the caller's task, shutdown,
//! the orphan test and a chaos run.
//!
//! Every test runs under a generous overall timeout, so a hang fails instead of blocking the
//! suite.

mod common;

use common::chaos;
use dspex::bridge::{
    AffinityMode, BridgeError, BridgedModule, Optimization, Pool, PoolBuilder, RequestOptions,
    RestartBreaker, ShutdownReport, WorkerState,
};
use dspex::lm::{LM, track_usage};
use dspex::settings::{Settings, with_settings};
use dspex::testing::MockLm;
use dspex::{Example, Program};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use std::future::Future;
use std::path::PathBuf;
use std::time::{Duration, Instant};

fn fake_worker() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("python/fake_worker.py")
}

/// A pool of fake workers with test-friendly timeouts.
fn pool() -> PoolBuilder {
    Pool::builder()
        .python("python3")
        .worker_args([fake_worker()])
        .workers(2)
        .start_timeout(Duration::from_secs(20))
        .checkout_timeout(Duration::from_secs(20))
        .call_timeout(Duration::from_secs(30))
        .heartbeat_interval(Some(Duration::from_secs(1)))
        .restart_backoff(Duration::from_millis(5), Duration::from_millis(100))
}

fn inputs(v: Value) -> Map<String, Value> {
    v.as_object().cloned().unwrap_or_default()
}

/// Fails the test instead of hanging.
async fn within<F: Future>(secs: u64, fut: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(secs), fut)
        .await
        .unwrap_or_else(|_| panic!("the test did not finish within {secs} s (a hang)"))
}

/// Polls `cond` every 20 ms until it holds, failing after `secs`.
async fn eventually(secs: u64, what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !cond() {
        assert!(Instant::now() < deadline, "not within {secs} s: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Whether a process is alive (a zombie counts as dead: nobody may reap orphans in a container).
fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => false,
        Ok(stat) => {
            // pid (comm) state ...; comm may hold spaces or parentheses.
            let state = stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().next());
            !matches!(state, Some("Z") | Some("X") | None)
        }
    }
}

fn signal(pid: u32, sig: &str) {
    let status = std::process::Command::new("kill")
        .args(["-s", sig, &pid.to_string()])
        .status()
        .expect("kill(1) runs");
    assert!(status.success(), "kill -s {sig} {pid}");
}

fn pid_of(outputs: &Map<String, Value>) -> u32 {
    outputs["pid"]
        .as_u64()
        .expect("the fake worker reports its pid") as u32
}

async fn echo(pool: &Pool, v: Value) -> Result<Map<String, Value>, BridgeError> {
    pool.call("echo", inputs(v)).await
}

/// The pid of the (only) busy worker, once one is busy.
async fn busy_pid(pool: &Pool) -> u32 {
    let mut pid = 0;
    eventually(10, "a worker is busy", || {
        let stats = pool.stats();
        match stats.workers.iter().find(|w| w.state == WorkerState::Busy) {
            Some(w) => {
                pid = w.worker.pid;
                true
            }
            None => false,
        }
    })
    .await;
    pid
}

#[tokio::test]
async fn calls_round_trip_and_are_counted() {
    within(60, async {
        let pool = pool().build().await.expect("the pool starts");
        let stats = pool.stats();
        assert_eq!((stats.ready, stats.busy, stats.starting), (2, 0, 0));
        for w in &stats.workers {
            assert_eq!(w.python.split('.').next(), Some("3"));
            let states: Vec<_> = w.transitions.iter().map(|t| (t.from, t.to)).collect();
            assert_eq!(states, [(WorkerState::Starting, WorkerState::Ready)]);
        }

        let out = echo(
            &pool,
            json!({"question": "hi", "n": [1, 2], "print": "to stderr"}),
        )
        .await
        .expect("echo");
        assert_eq!(out["question"], "hi");
        assert_eq!(out["n"], json!([1, 2]));
        assert!(pool.worker_pids().contains(&pid_of(&out)));

        // A large answer (a few MB) crosses in one frame.
        let big = echo(&pool, json!({"big": 3_000_000})).await.expect("big");
        assert_eq!(big["big"].as_str().map(str::len), Some(3_000_000));

        let pong = pool.ping().await.expect("ping");
        assert!(pong.pong);

        let stats = pool.stats();
        assert_eq!((stats.calls, stats.ok, stats.errors), (3, 3, 0));
        assert_eq!(stats.latency.count, 3);
        assert!(stats.latency.quantile(0.5).is_some());
        // The worker went busy and back.
        assert!(stats.workers.iter().any(|w| {
            w.calls > 0
                && w.transitions
                    .iter()
                    .any(|t| (t.from, t.to) == (WorkerState::Ready, WorkerState::Busy))
        }));
        let report = pool.shutdown().await;
        assert_eq!(report.graceful, 2);
    })
    .await;
}

#[tokio::test]
async fn python_errors_are_typed_and_the_worker_lives_on() {
    within(60, async {
        let pool = pool().workers(1).build().await.expect("the pool starts");
        let pid = pool.worker_pids()[0];
        let err = echo(&pool, json!({"fail": "bad input"})).await.unwrap_err();
        let remote = err.remote().expect("a Python error");
        assert_eq!(remote.kind, "ValueError");
        assert_eq!(remote.message, "bad input");
        assert!(
            remote
                .traceback
                .as_deref()
                .unwrap_or("")
                .contains("Traceback")
        );
        assert_eq!(err.worker().map(|w| w.pid), Some(pid));

        let err = pool.call("nope", Map::new()).await.unwrap_err();
        assert_eq!(err.remote().map(|e| e.kind.as_str()), Some("KeyError"));

        // Same worker, still fine.
        let out = echo(&pool, json!({})).await.expect("echo");
        assert_eq!(pid_of(&out), pid);
        let stats = pool.stats();
        assert_eq!((stats.remote_errors, stats.worker_failures), (2, 0));
    })
    .await;
}

#[tokio::test]
async fn handshake_failures_are_typed() {
    within(60, async {
        let err = pool()
            .workers(1)
            .arg("--exit-at-start")
            .arg("3")
            .build()
            .await
            .unwrap_err();
        match &err {
            BridgeError::Handshake {
                message, stderr, ..
            } => {
                assert!(message.contains("exited with status 3"), "{message}");
                assert!(
                    stderr.iter().any(|l| l.contains("exiting at start")),
                    "{stderr:?}"
                );
            }
            other => panic!("expected a handshake error, got {other:?}"),
        }

        let err = pool().workers(1).arg("--protocol").arg("2").build().await.unwrap_err();
        assert!(
            matches!(err, BridgeError::ProtocolVersion { got: 2, expected: 1, .. }),
            "{err:?}"
        );

        let err = pool().workers(1).arg("--junk-first").build().await.unwrap_err();
        assert!(matches!(err, BridgeError::Handshake { .. }), "{err:?}");

        let started = Instant::now();
        let err = pool()
            .workers(1)
            .arg("--no-ready")
            .start_timeout(Duration::from_millis(500))
            .build()
            .await
            .unwrap_err();
        assert!(
            matches!(&err, BridgeError::Handshake { message, .. } if message.contains("start timeout")),
            "{err:?}"
        );
        assert!(started.elapsed() < Duration::from_secs(10));
        // The hung worker was killed.
        let pid = err.worker().expect("names the worker").pid;
        eventually(5, "the hung worker is gone", || !alive(pid)).await;

        let err = pool()
            .python("/nonexistent/python3")
            .build()
            .await
            .unwrap_err();
        assert!(matches!(err, BridgeError::Spawn { .. }), "{err:?}");
    })
    .await;
}

#[tokio::test]
async fn the_environment_is_scrubbed_and_capped() {
    within(60, async {
        let pool = pool()
            .workers(1)
            .env("DSPEX_TEST_EXTRA", "yes")
            .thread_cap(2)
            .memory_mb(4096)
            .build()
            .await
            .expect("the pool starts");
        let names = [
            "OMP_NUM_THREADS",
            "OPENBLAS_NUM_THREADS",
            "MKL_NUM_THREADS",
            "TOKENIZERS_PARALLELISM",
            "PYTHONUNBUFFERED",
            "LITELLM_LOCAL_MODEL_COST_MAP",
            "DSPEX_TEST_EXTRA",
            "PATH",
            "CARGO_MANIFEST_DIR",
            "CARGO_PKG_NAME",
            "DSPEX_PARENT_PID",
        ];
        let out = echo(&pool, json!({"env": names})).await.expect("echo");
        let env = &out["env"];
        assert_eq!(env["OMP_NUM_THREADS"], "2");
        assert_eq!(env["OPENBLAS_NUM_THREADS"], "2");
        assert_eq!(env["MKL_NUM_THREADS"], "2");
        assert_eq!(env["TOKENIZERS_PARALLELISM"], "false");
        assert_eq!(env["PYTHONUNBUFFERED"], "1");
        assert_eq!(env["LITELLM_LOCAL_MODEL_COST_MAP"], "True");
        assert_eq!(env["DSPEX_TEST_EXTRA"], "yes");
        assert_eq!(env["DSPEX_PARENT_PID"], std::process::id().to_string());
        assert!(env["PATH"].is_string());
        // Cargo sets these for the test process; the worker must not inherit them.
        for name in ["CARGO_MANIFEST_DIR", "CARGO_PKG_NAME"] {
            if std::env::var_os(name).is_some() {
                assert_eq!(env[name], Value::Null, "{name} leaked into the worker");
            }
        }
    })
    .await;
}

#[tokio::test]
async fn a_crash_is_seen_at_once_and_idempotent_calls_retry_elsewhere() {
    within(60, async {
        let pool = pool().build().await.expect("the pool starts");

        // An idempotent call in flight on a worker that gets SIGKILLed succeeds on another.
        let call = {
            let pool = pool.clone();
            tokio::spawn(async move { echo(&pool, json!({"sleep": 1.0, "tag": "retried"})).await })
        };
        let victim = busy_pid(&pool).await;
        let killed = Instant::now();
        signal(victim, "KILL");
        let out = call
            .await
            .expect("joins")
            .expect("retried on another worker");
        assert_ne!(pid_of(&out), victim);
        assert_eq!(out["tag"], "retried");
        // Seen at once: well under the 30 s call timeout (the retry itself sleeps 1 s).
        assert!(killed.elapsed() < Duration::from_secs(10));
        assert_eq!(pool.stats().retries, 1);

        // A non-idempotent call gets a typed WorkerCrashed.
        let call = {
            let pool = pool.clone();
            tokio::spawn(async move {
                pool.request_with(
                    dspex::bridge::protocol::Op::Call {
                        object: "echo".into(),
                        inputs: inputs(json!({"sleep": 5.0})),
                    },
                    RequestOptions::new().idempotent(false),
                )
                .await
            })
        };
        let victim = busy_pid(&pool).await;
        let killed = Instant::now();
        signal(victim, "KILL");
        let err = call.await.expect("joins").unwrap_err();
        assert!(
            killed.elapsed() < Duration::from_secs(4),
            "seen late: {:?}",
            killed.elapsed()
        );
        match &err {
            BridgeError::WorkerCrashed {
                worker, reason, op, ..
            } => {
                assert_eq!(worker.pid, victim);
                assert_eq!(*op, "call");
                assert!(
                    reason.contains("SIGKILL") || reason.contains("stdout"),
                    "{reason}"
                );
            }
            other => panic!("expected WorkerCrashed, got {other:?}"),
        }

        // A call that kills every worker it reaches gives up after max_retries.
        let err = echo(&pool, json!({"crash": true})).await.unwrap_err();
        assert!(matches!(err, BridgeError::WorkerCrashed { .. }), "{err:?}");

        // The pool replaced every dead worker.
        eventually(10, "the pool is back to 2 ready workers", || {
            let s = pool.stats();
            s.ready == 2 && s.starting == 0
        })
        .await;
        let stats = pool.stats();
        assert_eq!(stats.worker_failures, 5, "{stats:#?}");
        assert!(stats.restarts >= 5);
        assert_eq!(stats.crashes, 2);
        let gone = &stats.recently_gone;
        assert!(gone.iter().all(|w| w.state == WorkerState::Failed));
        assert!(gone.iter().any(|w| {
            w.transitions
                .iter()
                .any(|t| (t.from, t.to) == (WorkerState::Busy, WorkerState::Failed))
        }));
        for w in gone {
            assert!(!alive(w.worker.pid) || pool.worker_pids().contains(&w.worker.pid));
        }
    })
    .await;
}

#[tokio::test]
async fn a_hung_call_times_out_and_its_worker_is_replaced() {
    within(60, async {
        let pool = pool()
            .workers(1)
            .call_timeout(Duration::from_millis(500))
            .build()
            .await
            .expect("the pool starts");
        let pid = pool.worker_pids()[0];
        let started = Instant::now();
        let err = echo(&pool, json!({"sleep": 30})).await.unwrap_err();
        assert!(
            matches!(err, BridgeError::Timeout { timeout, op: "call", worker } if timeout == Duration::from_millis(500) && worker.pid == pid),
            "{err:?}"
        );
        assert!(started.elapsed() < Duration::from_secs(10));
        eventually(5, "the hung worker is killed", || !alive(pid)).await;
        eventually(10, "a replacement is ready", || {
            let s = pool.stats();
            s.ready == 1 && !pool.worker_pids().contains(&pid)
        })
        .await;
        let out = echo(&pool, json!({})).await.expect("the replacement answers");
        assert_ne!(pid_of(&out), pid);
        // A per-call timeout overrides the pool's.
        let out = pool
            .request_with(
                dspex::bridge::protocol::Op::Call {
                    object: "echo".into(),
                    inputs: inputs(json!({"sleep": 0.8})),
                },
                RequestOptions::new().timeout(Duration::from_secs(10)),
            )
            .await
            .expect("a longer timeout");
        assert_eq!(out["outputs"]["sleep"], 0.8);
        let stats = pool.stats();
        assert_eq!((stats.timeouts, stats.worker_failures), (1, 1));
    })
    .await;
}

#[tokio::test]
async fn a_caller_that_gives_up_leaves_the_worker_busy_until_it_answers() {
    within(60, async {
        let pool = pool().workers(1).build().await.expect("the pool starts");
        let pid = pool.worker_pids()[0];
        // The caller drops its future after 100 ms; the worker keeps running the call.
        let gave_up = tokio::time::timeout(
            Duration::from_millis(100),
            echo(&pool, json!({"sleep": 0.6})),
        )
        .await;
        assert!(gave_up.is_err());
        // The next call waits for the worker, then runs on it: nothing crashed.
        let out = echo(&pool, json!({"after": true})).await.expect("echo");
        assert_eq!(pid_of(&out), pid);
        assert_eq!(pool.stats().worker_failures, 0);
    })
    .await;
}

#[tokio::test]
async fn heartbeats_replace_a_frozen_worker_but_not_a_busy_one() {
    within(60, async {
        let pool = pool()
            .workers(2)
            .heartbeat_interval(Some(Duration::from_millis(200)))
            .heartbeat_timeout(Duration::from_millis(300))
            .max_missed_heartbeats(2)
            .build()
            .await
            .expect("the pool starts");

        // A busy worker answers pings from its reader thread: a 2 s call is not killed.
        let out = echo(&pool, json!({"sleep": 2.0}))
            .await
            .expect("a long call");
        assert!(pool.worker_pids().contains(&pid_of(&out)));
        assert_eq!(pool.stats().worker_failures, 0);

        // A stopped (frozen) worker misses its heartbeats and is replaced.
        let frozen = pool.worker_pids()[0];
        signal(frozen, "STOP");
        eventually(10, "the frozen worker is replaced", || {
            let s = pool.stats();
            s.ready == 2 && !pool.worker_pids().contains(&frozen)
        })
        .await;
        eventually(5, "the frozen worker is killed", || !alive(frozen)).await;
        let stats = pool.stats();
        let gone = stats
            .recently_gone
            .iter()
            .find(|w| w.worker.pid == frozen)
            .expect("recorded");
        assert!(
            gone.failure.as_deref().unwrap_or("").contains("heartbeats"),
            "{:?}",
            gone.failure
        );
        assert_eq!(stats.worker_failures, 1);
    })
    .await;
}

#[tokio::test]
async fn a_saturated_pool_answers_at_once_and_checkout_times_out() {
    within(60, async {
        let pool = pool()
            .workers(1)
            .queue_bound(1)
            .checkout_timeout(Duration::from_secs(2))
            .build()
            .await
            .expect("the pool starts");
        let busy = {
            let pool = pool.clone();
            tokio::spawn(async move { echo(&pool, json!({"sleep": 4.0})).await })
        };
        busy_pid(&pool).await;
        let queued = {
            let pool = pool.clone();
            tokio::spawn(async move { echo(&pool, json!({})).await })
        };
        eventually(5, "one call queued", || pool.stats().queue_depth == 1).await;
        let started = Instant::now();
        let err = echo(&pool, json!({})).await.unwrap_err();
        assert!(
            matches!(
                err,
                BridgeError::PoolSaturated {
                    workers: 1,
                    queued: 1
                }
            ),
            "{err:?}"
        );
        // At once, not after the 2 s checkout timeout.
        assert!(started.elapsed() < Duration::from_secs(1));
        let err = queued.await.expect("joins").unwrap_err();
        assert!(
            matches!(err, BridgeError::CheckoutTimeout { .. }),
            "{err:?}"
        );
        busy.await.expect("joins").expect("the long call succeeds");
        let stats = pool.stats();
        assert_eq!(
            (stats.saturated, stats.checkout_timeouts, stats.ok),
            (1, 1, 1)
        );
    })
    .await;
}

#[tokio::test]
async fn strict_sessions_stay_on_their_worker() {
    within(60, async {
        let pool = pool().workers(3).build().await.expect("the pool starts");
        let session = pool.session(AffinityMode::StrictQueue);
        let object = session
            .create("Predict", "question -> answer", Map::new())
            .await
            .expect("create");
        let home = session.worker().expect("bound").pid;
        for i in 0..5 {
            let out = session.call(&object, inputs(json!({"i": i}))).await.expect("call");
            assert_eq!(pid_of(&out), home);
        }
        // While the worker is busy with a session call, another one queues for it, even though
        // other workers are idle.
        let long = {
            let session = session.clone();
            let object = object.clone();
            tokio::spawn(async move { session.call(&object, inputs(json!({"sleep": 0.5}))).await })
        };
        busy_pid(&pool).await;
        let out = session
            .call(&object, inputs(json!({"second": true})))
            .await
            .expect("queued behind the first");
        assert_eq!(pid_of(&out), home);
        long.await.expect("joins").expect("the long call");

        // Concurrent first calls of a fresh strict session all land on one worker.
        let fresh = pool.session(AffinityMode::StrictQueue);
        let calls: Vec<_> = (0..6)
            .map(|i| {
                let s = fresh.clone();
                tokio::spawn(async move { s.call("echo", inputs(json!({"i": i, "sleep": 0.05}))).await })
            })
            .collect();
        let mut pids = Vec::new();
        for c in calls {
            pids.push(pid_of(&c.await.expect("joins").expect("call")));
        }
        pids.dedup();
        assert_eq!(pids.len(), 1, "a strict session's calls split across workers: {pids:?}");

        // The worker dies: in-flight calls are not retried elsewhere, later calls are SessionLost.
        let inflight = {
            let session = session.clone();
            let object = object.clone();
            tokio::spawn(async move { session.call(&object, inputs(json!({"sleep": 5}))).await })
        };
        eventually(10, "the session's worker is busy", || {
            pool.stats()
                .workers
                .iter()
                .any(|w| w.worker.pid == home && w.state == WorkerState::Busy)
        })
        .await;
        signal(home, "KILL");
        let err = inflight.await.expect("joins").unwrap_err();
        assert!(matches!(err, BridgeError::WorkerCrashed { .. }), "{err:?}");
        let err = session.call(&object, Map::new()).await.unwrap_err();
        assert!(
            matches!(&err, BridgeError::SessionLost { session: s, worker, .. } if s == session.name() && worker.pid == home),
            "{err:?}"
        );
        assert!(session.is_lost());
        // Other sessions and plain calls go on.
        echo(&pool, json!({})).await.expect("the pool still serves");
    })
    .await;
}

/// New strict sessions spread over the idle workers (fewest sessions first), so that one
/// worker's death does not take most of them: the chaos run with bridged DSPy modules lost
/// calls in bursts when re-created modules all landed on the most recently freed worker.
#[tokio::test]
async fn new_strict_sessions_spread_over_the_workers() {
    within(60, async {
        let pool = pool().workers(3).build().await.expect("the pool starts");
        let mut sessions = Vec::new();
        let mut homes = std::collections::BTreeMap::new();
        for _ in 0..6 {
            let session = pool.session(AffinityMode::StrictQueue);
            let out = session.call("echo", Map::new()).await.expect("call");
            *homes.entry(pid_of(&out)).or_insert(0) += 1;
            sessions.push(session);
        }
        assert_eq!(
            homes.values().copied().collect::<Vec<_>>(),
            [2, 2, 2],
            "{homes:?}"
        );
        // Plain calls still take the most recently freed worker.
        let a = pid_of(&echo(&pool, json!({})).await.expect("call"));
        let b = pid_of(&echo(&pool, json!({})).await.expect("call"));
        assert_eq!(a, b);
        pool.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn fail_fast_and_hint_sessions() {
    within(60, async {
        let pool = pool().workers(2).build().await.expect("the pool starts");

        let fast = pool.session(AffinityMode::StrictFailFast);
        let object = fast
            .create("Predict", "a -> b", Map::new())
            .await
            .expect("create");
        let home = fast.worker().expect("bound");
        let long = {
            let fast = fast.clone();
            let object = object.clone();
            tokio::spawn(async move { fast.call(&object, inputs(json!({"sleep": 2.0}))).await })
        };
        busy_pid(&pool).await;
        let started = Instant::now();
        let err = fast.call(&object, Map::new()).await.unwrap_err();
        assert!(
            matches!(&err, BridgeError::SessionBusy { worker, .. } if *worker == home),
            "{err:?}"
        );
        // At once, not after the 2 s call.
        assert!(started.elapsed() < Duration::from_secs(1));
        long.await.expect("joins").expect("the long call");

        // Hint: the session's worker when free; after it dies, another one.
        let hint = pool.session(AffinityMode::Hint);
        let first = pid_of(&hint.call("echo", Map::new()).await.expect("call"));
        assert_eq!(hint.worker().map(|w| w.pid), Some(first));
        assert_eq!(
            pid_of(&hint.call("echo", Map::new()).await.expect("call")),
            first
        );
        signal(first, "KILL");
        eventually(5, "the pool saw the death", || {
            !pool.worker_pids().contains(&first)
        })
        .await;
        let next = pid_of(&hint.call("echo", Map::new()).await.expect("moves on"));
        assert_ne!(next, first);
        assert!(!hint.is_lost());
    })
    .await;
}

#[tokio::test]
async fn lm_calls_are_served_in_the_calling_task_and_tracked() {
    within(60, async {
        let server = MockLm::builder().start().await.expect("the mock LM starts");
        let lm = LM::builder("openai/mock")
            .api_base(server.api_base())
            .api_key("sk-test")
            .cache(false)
            .build()
            .expect("the LM builds");
        let pool = pool()
            .workers(1)
            .init(dspex::bridge::protocol::Op::Configure {
                lm: dspex::bridge::protocol::LmConfig::bridge("openai/mock"),
                adapter: None,
            })
            .build()
            .await
            .expect("the pool starts");

        // No LM anywhere: the worker's LM call fails, and says why.
        let err = echo(&pool, json!({"lm": "hello"})).await.unwrap_err();
        assert!(
            err.remote()
                .is_some_and(|e| e.message.contains("no LM is configured")),
            "{err:?}"
        );

        // The caller's task-scoped LM answers, and its usage tracker sees the calls.
        let (out, usage) = track_usage(with_settings(Settings::new().lm(lm.clone()), async {
            echo(&pool, json!({"lm": "hello there"})).await
        }))
        .await;
        let out = out.expect("the LM call round trip");
        assert!(
            out["answer"]
                .as_str()
                .unwrap_or("")
                .starts_with("mock completion"),
            "{out:?}"
        );
        let total = usage.total();
        assert_eq!(total.calls, 1);
        assert!(total.usage.prompt_tokens > 0);

        // Several LM calls at once from one operation are served concurrently.
        let (out, usage) = track_usage(with_settings(Settings::new().lm(lm.clone()), async {
            echo(&pool, json!({"lm_parallel": 4})).await
        }))
        .await;
        let out = out.expect("parallel LM calls");
        assert_eq!(out["answers"].as_array().map(Vec::len), Some(4));
        assert_eq!(usage.total().calls, 4);
        assert_eq!(server.stats().requests_to("/v1/chat/completions"), 5);

        // An LM call that names another request as its parent (a straggler of an operation that
        // ended) is refused, not served by this caller's LM.
        let (out, usage) = track_usage(with_settings(Settings::new().lm(lm), async {
            echo(&pool, json!({"lm": "stray", "lm_parent": 999_999})).await
        }))
        .await;
        let err = out.unwrap_err();
        assert!(
            err.remote().is_some_and(
                |e| e.message.contains("Cancelled") && e.message.contains("request 999999")
            ),
            "{err:?}"
        );
        assert_eq!(usage.total().calls, 0);
        assert_eq!(server.stats().requests_to("/v1/chat/completions"), 5);
    })
    .await;
}

#[derive(Serialize)]
struct Question {
    question: String,
}

#[derive(Debug, Deserialize)]
struct Echoed {
    question: String,
    module: String,
    object: String,
}

#[tokio::test]
async fn bridged_modules_are_typed_programs() {
    within(60, async {
        let pool = pool().workers(2).build().await.expect("the pool starts");
        let cot = BridgedModule::<Question, Echoed>::create(&pool, "ChainOfThought", "question -> answer")
            .await
            .expect("create");
        assert_eq!(cot.module(), "ChainOfThought");
        let out = cot
            .forward(Question {
                question: "What is 2 + 2?".into(),
            })
            .await
            .expect("a typed call");
        assert_eq!(out.question, "What is 2 + 2?");
        assert_eq!(out.module, "ChainOfThought");
        assert_eq!(out.object, cot.object());

        let state = cot.save_state().await.expect("save");
        assert_eq!(state["signature"], "question -> answer");
        cot.load_state(json!({"demos": [{"question": "q", "answer": "a"}]}))
            .await
            .expect("load");
        assert_eq!(
            cot.save_state().await.expect("save")["demos"][0]["answer"],
            "a"
        );
        let trainset = vec![
            Example::new()
                .with("question", "q1")
                .with("answer", "a1")
                .with_inputs(["question"]),
        ];
        let state = cot
            .optimize(Optimization::new("BootstrapFewShot", trainset).metric("exact_match"))
            .await
            .expect("optimize");
        assert_eq!(
            state,
            json!({"optimized_by": "BootstrapFewShot", "trainset": 1, "input_keys": ["question"], "metric": "exact_match"})
        );

        // Dropping the module drops its object in the worker (in the background).
        let (session, object) = (cot.session(), cot.object());
        drop(cot);
        let mut gone = false;
        for _ in 0..100 {
            let saved = session
                .request(dspex::bridge::protocol::Op::SaveState {
                    object: object.clone(),
                })
                .await;
            if saved.is_err_and(|e| e.remote().is_some_and(|r| r.kind == "KeyError")) {
                gone = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(gone, "the object outlived its module");

        // Failures convert into dspex's Error.
        let bad = BridgedModule::<Value, Value>::create(&pool, "Predict", "a -> b")
            .await
            .expect("create");
        let err = bad.forward(json!({"fail": "nope"})).await.unwrap_err();
        assert!(matches!(err, dspex::Error::Bridge(BridgeError::Remote { .. })), "{err:?}");
    })
    .await;
}

/// Regression (issue 13's chaos run with real DSPy work): a bridged module lived in a strict
/// session, so once its worker died every call failed — the one in flight with `WorkerCrashed`,
/// the later ones with `SessionLost` — although a `call` is idempotent. Now the module is
/// created again on another worker, with the state it had loaded, and the call is repeated.
#[tokio::test]
async fn a_bridged_module_recovers_on_another_worker_with_its_state() {
    within(60, async {
        let pool = pool().workers(2).build().await.expect("the pool starts");
        let module = BridgedModule::<Map<String, Value>, Map<String, Value>>::create(
            &pool,
            "Predict",
            "question -> answer",
        )
        .await
        .expect("create");
        let demos =
            json!({"demos": [{"question": "q", "answer": "a"}], "signature": "question -> answer"});
        module.load_state(demos.clone()).await.expect("load");
        let home = pid_of(&module.call(inputs(json!({"i": 0}))).await.expect("call"));

        // Killed in the middle of a call: the call is answered by the re-created module.
        let call = module.call(inputs(json!({"sleep": 5, "i": 1})));
        let kill = async {
            eventually(10, "the module's worker is busy", || {
                pool.stats()
                    .workers
                    .iter()
                    .any(|w| w.worker.pid == home && w.state == WorkerState::Busy)
            })
            .await;
            signal(home, "KILL");
        };
        let (out, ()) = tokio::join!(call, kill);
        let out = out.expect("the call survives its worker");
        assert_ne!(pid_of(&out), home, "{out:?}");
        assert_eq!(out["i"], 1);
        assert_eq!(module.recreated(), 1);
        assert_eq!(pool.stats().recreated, 1);
        // The new object has the state loaded before.
        assert_eq!(module.save_state().await.expect("save"), demos);

        // A module sharing a session does not recover unless asked to: SessionLost, typed.
        let session = pool.session(AffinityMode::StrictQueue);
        let shared = BridgedModule::<Map<String, Value>, Map<String, Value>>::create_in(
            &session,
            "Predict",
            "question -> answer",
            Map::new(),
        )
        .await
        .expect("create_in");
        let shared_home = pid_of(&shared.call(Map::new()).await.expect("call"));
        signal(shared_home, "KILL");
        eventually(10, "the pool saw the kill", || session.is_lost()).await;
        let err = shared.call(Map::new()).await.unwrap_err();
        assert!(matches!(err, BridgeError::SessionLost { .. }), "{err:?}");
        let shared = shared.with_recovery(true);
        let out = shared
            .call(Map::new())
            .await
            .expect("recovers when asked to");
        assert_ne!(pid_of(&out), shared_home);
        pool.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn shutdown_drains_then_escalates() {
    within(60, async {
        let pool = pool()
            .workers(2)
            .shutdown_grace(Duration::from_millis(1500))
            .term_grace(Duration::from_millis(300))
            .build()
            .await
            .expect("the pool starts");
        let pids = pool.worker_pids();
        // A call running when shutdown starts finishes.
        let running = {
            let pool = pool.clone();
            tokio::spawn(async move { echo(&pool, json!({"sleep": 0.3})).await })
        };
        busy_pid(&pool).await;
        let report = pool.shutdown().await;
        assert_eq!(report.graceful, 2, "{report:?}");
        running.await.expect("joins").expect("drained, not killed");
        for pid in pids {
            eventually(5, "workers exited", || !alive(pid)).await;
        }
        assert!(matches!(
            echo(&pool, json!({})).await,
            Err(BridgeError::ShutDown)
        ));

        // A worker that cannot exit (stopped) is killed after the grace periods.
        let pool = pool_for_escalation().await;
        let frozen = pool.worker_pids()[0];
        signal(frozen, "STOP");
        let report = pool.shutdown().await;
        assert_eq!(report.killed, 1, "{report:?}");
        eventually(5, "the frozen worker is gone", || !alive(frozen)).await;
    })
    .await;
}

/// A worker that dies of a signal instead of leaving on the `shutdown` request did not stop
/// gracefully. The real-worker chaos run met this as a worker SIGKILLed a moment before
/// `shutdown`, which the pool had not seen die yet: still listed as ready, it "exited" at once and
/// was counted as graceful.
#[tokio::test]
async fn a_worker_dying_of_a_signal_at_shutdown_is_not_counted_as_graceful() {
    within(60, async {
        let pool = pool()
            .workers(2)
            .arg("--kill-on-shutdown")
            .build()
            .await
            .expect("the pool starts");
        let pids = pool.worker_pids();
        let report = pool.shutdown().await;
        assert_eq!(
            report,
            ShutdownReport {
                failed: 2,
                ..ShutdownReport::default()
            }
        );
        for pid in pids {
            eventually(5, "workers exited", || !alive(pid)).await;
        }
    })
    .await;
}

/// The chaos runs' end, without the wait: a worker SIGKILLed just before `shutdown` is never
/// counted as graceful, whether the pool had seen it die (it is no longer among the workers) or
/// not yet (it counts as `failed`).
#[tokio::test]
async fn a_worker_killed_just_before_shutdown_is_not_counted_as_graceful() {
    within(60, async {
        let pool = pool().workers(2).build().await.expect("the pool starts");
        let victim = pool.worker_pids()[0];
        signal(victim, "KILL");
        let report = pool.shutdown().await;
        assert_eq!(
            (report.graceful, report.terminated, report.killed),
            (1, 0, 0),
            "{report:?}"
        );
        assert!(report.failed <= 1, "{report:?}");
    })
    .await;
}

/// A replacement still starting when the pool shuts down is abandoned and its process killed
/// before `shutdown` returns (it used to live on until its start ended — up to the start
/// timeout — and was then killed uncounted).
#[tokio::test]
async fn a_start_under_way_at_shutdown_is_abandoned_and_its_process_killed() {
    within(60, async {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let hang = dir.path().join("hang");
        let pool = pool()
            .worker_args([fake_worker(), "--hang-if-exists".into(), hang.clone()])
            .workers(1)
            .start_timeout(Duration::from_secs(600))
            .build()
            .await
            .expect("the pool starts");
        // From now on a new worker hangs before `ready` and writes its pid to `hang`.
        std::fs::write(&hang, "").expect("the hang file");
        let victim = pool.worker_pids()[0];
        signal(victim, "KILL");
        let mut starting = 0;
        eventually(30, "a replacement is starting", || {
            starting = std::fs::read_to_string(&hang)
                .ok()
                .and_then(|text| text.lines().next().and_then(|l| l.trim().parse().ok()))
                .unwrap_or(0);
            starting != 0
        })
        .await;
        assert!(alive(starting));
        let report = pool.shutdown().await;
        assert_eq!(report.abandoned_starts, 1, "{report:?}");
        assert_eq!(
            (report.graceful, report.terminated, report.killed),
            (0, 0, 0),
            "{report:?}"
        );
        // SIGKILL was sent before `shutdown` returned; the exit itself may take a moment.
        eventually(10, "the abandoned worker is gone", || !alive(starting)).await;
    })
    .await;
}

async fn pool_for_escalation() -> Pool {
    pool()
        .workers(1)
        .heartbeat_interval(None)
        .shutdown_grace(Duration::from_millis(300))
        .term_grace(Duration::from_millis(300))
        .build()
        .await
        .expect("the pool starts")
}

#[tokio::test]
async fn a_worker_writing_junk_to_stdout_is_replaced() {
    within(60, async {
        let pool = pool().workers(1).build().await.expect("the pool starts");
        let pid = pool.worker_pids()[0];
        let err = pool
            .request_with(
                dspex::bridge::protocol::Op::Call {
                    object: "echo".into(),
                    inputs: inputs(json!({"garbage": true})),
                },
                RequestOptions::new().idempotent(false),
            )
            .await
            .unwrap_err();
        assert!(
            matches!(&err, BridgeError::WorkerCrashed { reason, .. } if reason.contains("protocol error")),
            "{err:?}"
        );
        eventually(10, "replaced", || {
            pool.stats().ready == 1 && !pool.worker_pids().contains(&pid)
        })
        .await;
    })
    .await;
}

#[tokio::test]
async fn overflow_workers_start_on_demand_and_retire_when_idle() {
    within(60, async {
        let pool = pool()
            .min_workers(1)
            .max_workers(2)
            .idle_timeout(Duration::from_millis(300))
            .build()
            .await
            .expect("the pool starts");
        assert_eq!(pool.worker_pids().len(), 1);
        let calls: Vec<_> = (0..2)
            .map(|_| {
                let pool = pool.clone();
                tokio::spawn(async move { echo(&pool, json!({"sleep": 1.0})).await })
            })
            .collect();
        let mut pids = Vec::new();
        for c in calls {
            pids.push(pid_of(&c.await.expect("joins").expect("call")));
        }
        pids.sort_unstable();
        pids.dedup();
        assert_eq!(pids.len(), 2, "the second call ran on an overflow worker");
        eventually(10, "back to one worker", || pool.worker_pids().len() == 1).await;
        assert_eq!(pool.stats().worker_failures, 0);
    })
    .await;
}

#[tokio::test]
async fn a_light_steady_load_lets_overflow_workers_retire() {
    // Free workers are handed out most recently used first: a trickle of one call at a time
    // keeps one worker busy and lets the others age past the idle timeout (handing them out in
    // turn would keep all three "recently used" for ever).
    within(60, async {
        let pool = pool()
            .min_workers(1)
            .max_workers(3)
            .idle_timeout(Duration::from_millis(300))
            .build()
            .await
            .expect("the pool starts");
        let burst: Vec<_> = (0..3)
            .map(|_| {
                let pool = pool.clone();
                tokio::spawn(async move { echo(&pool, json!({"sleep": 0.5})).await })
            })
            .collect();
        for c in burst {
            c.await.expect("joins").expect("call");
        }
        // Counted as starts, not as live workers: on a loaded machine an overflow worker can
        // come up after the burst's queue was served by the first one, sit idle past the idle
        // timeout and retire before the burst's last call returns (seen under the full suite).
        assert_eq!(
            pool.stats().restarts,
            2,
            "the burst started two overflow workers"
        );
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let trickle = {
            let (pool, stop) = (pool.clone(), stop.clone());
            tokio::spawn(async move {
                let mut calls = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    echo(&pool, json!({"sleep": 0.02}))
                        .await
                        .expect("a trickle call");
                    calls += 1;
                }
                calls
            })
        };
        eventually(10, "back to one worker while calls go on", || {
            pool.worker_pids().len() == 1
        })
        .await;
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        assert!(trickle.await.expect("joins") > 10);
        assert_eq!(pool.stats().worker_failures, 0);
    })
    .await;
}

#[tokio::test]
async fn the_restart_breaker_stops_a_restart_storm() {
    within(60, async {
        let pool = pool()
            .workers(1)
            .max_retries(0)
            .restart_breaker(RestartBreaker {
                max_restarts: 3,
                window: Duration::from_secs(60),
                cooldown: Duration::from_secs(60),
            })
            .build()
            .await
            .expect("the pool starts");
        for _ in 0..4 {
            let err = echo(&pool, json!({"crash": true})).await.unwrap_err();
            assert!(matches!(err, BridgeError::WorkerCrashed { .. }), "{err:?}");
        }
        eventually(10, "the breaker is open", || pool.stats().breaker_open).await;
        let started = Instant::now();
        let err = echo(&pool, json!({})).await.unwrap_err();
        assert!(matches!(err, BridgeError::BreakerOpen { .. }), "{err:?}");
        assert!(started.elapsed() < Duration::from_secs(2), "fails fast");
        assert_eq!(pool.stats().restarts, 3);
    })
    .await;
}

/// Not a test of its own: the process the orphan test starts and SIGKILLs. It owns a pool, keeps
/// one worker busy, prints the workers' pids and waits to be killed.
#[test]
fn orphan_helper() {
    if std::env::var_os("DSPEX_BRIDGE_ORPHAN_HELPER").is_none() {
        return;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    rt.block_on(async {
        let pool = pool().workers(3).build().await.expect("the pool starts");
        let busy = pool.clone();
        tokio::spawn(async move { echo(&busy, json!({"sleep": 60})).await });
        busy_pid(&pool).await;
        let pids: Vec<String> = pool.worker_pids().iter().map(u32::to_string).collect();
        println!("PIDS {}", pids.join(" "));
        use std::io::Write;
        let _ = std::io::stdout().flush();
        tokio::time::sleep(Duration::from_secs(120)).await;
    });
}

#[test]
fn no_worker_outlives_a_sigkilled_pool_process() {
    use std::io::BufRead;
    let exe = std::env::current_exe().expect("the test binary");
    let mut child = std::process::Command::new(exe)
        .args([
            "orphan_helper",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("DSPEX_BRIDGE_ORPHAN_HELPER", "1")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("the helper starts");
    let stdout = child.stdout.take().expect("piped");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            // libtest prints `test orphan_helper ... ` before the test's own output.
            if let Some((_, pids)) = line.split_once("PIDS ") {
                let _ = tx.send(pids.to_string());
                return;
            }
        }
    });
    let line = match rx.recv_timeout(Duration::from_secs(60)) {
        Ok(line) => line,
        Err(e) => {
            let _ = child.kill();
            panic!("the helper did not report its workers: {e}");
        }
    };
    let pids: Vec<u32> = line
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect();
    assert_eq!(pids.len(), 3, "{line}");
    assert!(pids.iter().all(|p| alive(*p)));
    child.kill().expect("SIGKILL the helper");
    let killed = Instant::now();
    child.wait().expect("reaped");
    while pids.iter().any(|p| alive(*p)) && killed.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(10));
    }
    let survivors: Vec<u32> = pids.iter().copied().filter(|p| alive(*p)).collect();
    let took = killed.elapsed();
    assert!(
        survivors.is_empty() && took <= Duration::from_secs(2),
        "workers {survivors:?} outlived their pool's process (checked for {took:?})"
    );
}

/// Executor calls in flight while a worker is SIGKILLed every 100 ms: each call keeps the
/// fake worker's executor busy for 2 ms, so nearly every kill lands in the middle of a call, and
/// each answer echoes its call's number, so an answer handed to the wrong caller is caught. (The
/// issue's figure against the real worker is `tests/tests/bridge_chaos.rs`, whose cheap `ping` is
/// answered by the worker's reader thread and carries nothing to check.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_executor_calls_with_a_worker_killed_every_100ms() {
    within(900, async {
        let pool = pool()
            .workers(4)
            .max_retries(5)
            .restart_backoff(Duration::from_millis(5), Duration::from_millis(50))
            .restart_breaker(RestartBreaker {
                max_restarts: 100_000,
                window: Duration::from_secs(60),
                cooldown: Duration::from_secs(1),
            })
            .build()
            .await
            .expect("the pool starts");
        let plan = chaos::Plan {
            callers: 16,
            min_calls: 10_000,
            min_kills: 20,
            workers: 4,
        };
        chaos::run(&pool, plan, |pool, n| async move {
            let out = echo(&pool, json!({"n": n, "sleep": 0.002})).await?;
            assert_eq!(out["n"], n, "answers are not mixed up");
            Ok(())
        })
        .await;
        pool.shutdown().await;
    })
    .await;
}

/// Where the workers cannot isolate their network (simulated: a "worker" whose check refuses, as
/// one does where unprivileged user namespaces are disabled), `no_network` fails the pool's start
/// with a typed error naming what it needs, and no worker is started.
#[tokio::test]
async fn no_network_refused_by_the_os_fails_the_start_typed() {
    within(60, async {
        let refuse = "import sys\n\
                      assert sys.argv[-1] == '--check-no-network', sys.argv\n\
                      sys.stderr.write('cannot isolate the network: unshare: Operation not permitted\\n')\n\
                      sys.exit(3)\n";
        let err = Pool::builder()
            .python("python3")
            .worker_args(["-c", refuse])
            .workers(1)
            .no_network(true)
            .start_timeout(Duration::from_secs(20))
            .build()
            .await
            .unwrap_err();
        match &err {
            BridgeError::NetworkIsolation { message } => {
                assert!(message.contains("Operation not permitted"), "{message}");
                assert!(message.contains("exit status: 3"), "{message}");
            }
            other => panic!("expected NetworkIsolation, got {other:?}"),
        }
        assert!(err.to_string().contains("unprivileged user namespaces"), "{err}");
    })
    .await;
}
