//! The bridge with the real worker (`python -m dspex_worker`, DSPy 3.4.1) from the project's venv
//! (`scripts/python-env`, or the interpreter in `DSPEX_BRIDGE_PYTHON`), against dspex's mock LM
//! server: DSPy's LM calls come back over the bridge and are answered, and counted, in Rust.

mod common;

use common::bridge::{lm, pool, within};
use common::venv_python;
use dspex::bridge::{BridgeError, BridgedModule, Optimization};
use dspex::lm::track_usage;
use dspex::settings::{Settings, with_settings};
use dspex::testing::MockLm;
use dspex::{Example, Program};
use serde::{Deserialize, Serialize};
use serde_json::{Map, json};

#[derive(Debug, Serialize)]
struct Question {
    question: String,
}

#[derive(Debug, Deserialize)]
struct Answer {
    reasoning: String,
    answer: String,
}

#[tokio::test]
async fn a_bridged_chain_of_thought_answers_with_its_lm_calls_tracked_in_rust() {
    let python = venv_python();
    within(180, async {
        let server = MockLm::builder().start().await.expect("the mock LM starts");
        let pool = pool(python)
            .eager_import(true)
            .build()
            .await
            .expect("the pool starts");
        let stats = pool.stats();
        assert_eq!(stats.workers[0].dspy.as_deref(), Some("3.4.1"));

        let lm = lm(&server);
        let (result, usage) = track_usage(with_settings(Settings::new().lm(lm), async {
            let cot = BridgedModule::<Question, Answer>::create(
                &pool,
                "ChainOfThought",
                "question -> answer",
            )
            .await?;
            let answer = cot
                .forward(Question {
                    question: "What is the capital of France?".into(),
                })
                .await?;
            let state = cot.save_state().await?;
            Ok::<_, dspex::Error>((answer, state))
        }))
        .await;
        let (answer, state) = result.expect("the bridged ChainOfThought answers");
        assert!(!answer.answer.is_empty(), "{answer:?}");
        assert!(!answer.reasoning.is_empty(), "{answer:?}");
        assert!(state.get("predict").is_some(), "{state}");
        let total = usage.total();
        assert_eq!(total.calls, 1, "{usage:?}");
        assert!(total.usage.total_tokens > 0);
        assert_eq!(server.stats().requests_to("/v1/chat/completions"), 1);
        let report = pool.shutdown().await;
        assert_eq!(report.graceful, 1, "{report:?}");
    })
    .await;
}

#[tokio::test]
async fn state_optimizers_and_python_errors_through_the_real_worker() {
    let python = venv_python();
    within(180, async {
        let server = MockLm::builder().start().await.expect("the mock LM starts");
        let pool = pool(python)
            .lm(std::sync::Arc::new(lm(&server)))
            .build()
            .await
            .expect("the pool starts");

        let predict =
            BridgedModule::<Map<String, serde_json::Value>, Map<String, serde_json::Value>>::create(
                &pool,
                "Predict",
                "question -> answer",
            )
            .await
            .expect("create");
        let trainset = vec![
            Example::new()
                .with("question", "1 + 1?")
                .with("answer", "2")
                .with_inputs(["question"]),
            Example::new()
                .with("question", "2 + 2?")
                .with("answer", "4")
                .with_inputs(["question"]),
        ];
        let state = predict
            .optimize(Optimization::new("LabeledFewShot", trainset).kwarg("k", 2))
            .await
            .expect("LabeledFewShot compiles");
        let saved = predict.save_state().await.expect("save");
        assert_eq!(saved["demos"].as_array().map(Vec::len), Some(2), "{saved}");
        assert_eq!(state["demos"], saved["demos"]);

        // The state loads back (into a fresh module in the same worker).
        let fresh =
            BridgedModule::<Map<String, serde_json::Value>, Map<String, serde_json::Value>>::create(
                &pool,
                "Predict",
                "question -> answer",
            )
            .await
            .expect("create");
        fresh.load_state(saved.clone()).await.expect("load");
        assert_eq!(
            fresh.save_state().await.expect("save")["demos"],
            saved["demos"]
        );

        // A call answers through the pool's LM.
        let out = fresh
            .call(json!({"question": "3 + 3?"}).as_object().cloned().unwrap_or_default())
            .await
            .expect("call");
        assert!(out.contains_key("answer"), "{out:?}");

        // Python errors are typed and leave the worker alive.
        let err = BridgedModule::<Map<String, serde_json::Value>, Map<String, serde_json::Value>>::create(
            &pool,
            "NoSuchModule",
            "a -> b",
        )
        .await
        .unwrap_err();
        assert!(
            matches!(&err, BridgeError::Remote { error, .. } if error.kind == "BadRequest"),
            "{err:?}"
        );
        assert_eq!(pool.stats().worker_failures, 0);
    })
    .await;
}

/// Answer with the number only.
#[dspex::signature]
struct Sum {
    #[input]
    question: String,
    #[output(desc = "the number alone", prefix = "Result:")]
    answer: String,
}

#[tokio::test]
async fn signature_instructions_and_field_descriptions_reach_dspy() {
    use dspex::bridge::{BridgedPredict, Route, Router};
    use dspex::{DynSignature, Signature};

    let python = venv_python();
    within(180, async {
        let server = MockLm::builder().start().await.expect("the mock LM starts");
        let pool = pool(python)
            .lm(std::sync::Arc::new(lm(&server)))
            .build()
            .await
            .expect("the pool starts");
        let instructions_of = |state: serde_json::Value| {
            state["signature"]["instructions"]
                .as_str()
                .map(str::to_string)
        };

        // A typed signature's doc comment becomes the DSPy signature's instructions.
        let sum: BridgedPredict<Sum> = BridgedModule::for_signature::<Sum>(&pool, "Predict")
            .await
            .expect("create");
        assert_eq!(sum.instructions(), Some("Answer with the number only."));
        assert_eq!(sum.signature(), Sum::signature().to_string());
        let state = sum.save_state().await.expect("save");
        // So do its fields' descriptions and prefixes where they are not DSPy's defaults.
        assert_eq!(
            state["signature"]["fields"],
            json!([
                {"prefix": "Question:", "description": "${question}"},
                {"prefix": "Result:", "description": "the number alone"},
            ])
        );
        assert_eq!(
            instructions_of(state).as_deref(),
            Some("Answer with the number only.")
        );

        // Through the router, a DynSignature's instructions go along; a string gets DSPy's own.
        let router = Router::with_pool(pool.clone()).force(Route::Bridged);
        let custom = DynSignature::parse("question -> answer")
            .expect("parses")
            .with_instructions("Be terse.");
        let routed = router.route("Predict", custom).await.expect("routes");
        let bridged = routed.as_bridged().expect("bridged");
        assert_eq!(bridged.instructions(), Some("Be terse."));
        assert_eq!(
            instructions_of(bridged.save_state().await.expect("save")).as_deref(),
            Some("Be terse.")
        );
        let plain = router
            .route("Predict", "question -> answer")
            .await
            .expect("routes");
        let plain = plain.as_bridged().expect("bridged");
        assert_eq!(plain.instructions(), None);
        assert_eq!(
            instructions_of(plain.save_state().await.expect("save")).as_deref(),
            Some("Given the fields `question`, produce the fields `answer`.")
        );
        pool.shutdown().await;
    })
    .await;
}

/// An LM that never answers: a call served by it hangs until its timeout.
struct HangingLm;

impl dspex::lm::LanguageModel for HangingLm {
    fn model(&self) -> &str {
        "hanging"
    }

    fn call(
        &self,
        _request: dspex::lm::LmRequest,
    ) -> futures_util::future::BoxFuture<'_, Result<dspex::lm::LmResponse, dspex::lm::LmError>>
    {
        Box::pin(std::future::pending())
    }
}

/// The call breaker with the real worker: calls that time out (their LM never answers, so each
/// worker is killed and replaced) push the pool's call error rate over the threshold; the breaker
/// opens and the next call fails fast, typed, without reaching a worker; after the cool-down a
/// probe call goes through, succeeds, and closes the breaker.
#[tokio::test]
async fn the_call_breaker_opens_on_failing_calls_and_a_probe_closes_it() {
    use dspex::bridge::protocol::Op;
    use dspex::bridge::{CallBreaker, CallBreakerState, RequestOptions};
    use std::sync::Arc;
    use std::time::Duration;
    let python = venv_python();
    within(240, async {
        let server = MockLm::builder().start().await.expect("the mock LM starts");
        let cooldown = Duration::from_secs(2);
        let pool = pool(python)
            .fork_server(true)
            .restart_backoff(Duration::from_millis(5), Duration::from_millis(50))
            .call_breaker(Some(CallBreaker {
                window: Duration::from_secs(120),
                max_calls: 10,
                min_calls: 3,
                failure_rate: 0.5,
                cooldown,
            }))
            .init(Op::Create {
                module: "Predict".into(),
                signature: "question -> answer".into(),
                instructions: None,
                fields: Map::new(),
                kwargs: Map::new(),
                session: None,
            })
            .build()
            .await
            .expect("the pool starts");
        let call = |lm: Arc<dyn dspex::lm::LanguageModel>, timeout: Duration| {
            let pool = pool.clone();
            async move {
                let mut inputs = Map::new();
                inputs.insert("question".into(), json!("What is 2 + 2?"));
                pool.request_with(
                    Op::Call {
                        object: "o1".into(),
                        inputs,
                    },
                    RequestOptions::new().lm(lm).timeout(timeout),
                )
                .await
            }
        };
        let hanging: Arc<dyn dspex::lm::LanguageModel> = Arc::new(HangingLm);
        let good: Arc<dyn dspex::lm::LanguageModel> = Arc::new(lm(&server));

        for n in 0..3 {
            assert_eq!(
                pool.stats().call_breaker,
                CallBreakerState::Closed,
                "call {n}"
            );
            let err = call(hanging.clone(), Duration::from_secs(1))
                .await
                .unwrap_err();
            assert!(matches!(err, BridgeError::Timeout { .. }), "{err:?}");
        }
        let stats = pool.stats();
        assert!(
            matches!(stats.call_breaker, CallBreakerState::Open { .. }),
            "{stats:#?}"
        );
        assert_eq!(stats.call_failure_rate, 1.0);

        // Open: a call fails fast, typed, naming the rate and the window; no LM call is made.
        let err = call(good.clone(), Duration::from_secs(60))
            .await
            .unwrap_err();
        match &err {
            BridgeError::CallBreakerOpen {
                failed,
                calls,
                window,
                ..
            } => {
                assert_eq!((*failed, *calls), (3, 3));
                assert_eq!(*window, Duration::from_secs(120));
            }
            other => panic!("expected CallBreakerOpen, got {other:?}"),
        }
        let message = err.to_string();
        assert!(
            message.contains("3 of the last 3 calls within 120s") && message.contains("100%"),
            "{message}"
        );
        assert_eq!(server.stats().requests_to("/v1/chat/completions"), 0);
        assert_eq!(pool.stats().breaker_rejections, 1);

        // After the cool-down the breaker is half-open; a probe succeeds and closes it.
        tokio::time::sleep(cooldown).await;
        let mut waited = Duration::ZERO;
        while !matches!(
            pool.stats().call_breaker,
            CallBreakerState::HalfOpen { probing: false }
        ) {
            assert!(waited < Duration::from_secs(30), "{:#?}", pool.stats());
            tokio::time::sleep(Duration::from_millis(50)).await;
            waited += Duration::from_millis(50);
        }
        let out = call(good.clone(), Duration::from_secs(60))
            .await
            .expect("the probe call succeeds");
        assert!(out["outputs"]["answer"].is_string(), "{out}");
        let stats = pool.stats();
        assert_eq!(stats.call_breaker, CallBreakerState::Closed, "{stats:#?}");
        assert_eq!(stats.call_failure_rate, 0.0);
        assert_eq!(stats.timeouts, 3);
        assert_eq!(server.stats().requests_to("/v1/chat/completions"), 1);
        call(good, Duration::from_secs(60))
            .await
            .expect("calls go through again");
        pool.shutdown().await;
    })
    .await;
}

/// The CPU limit with the real worker: ordinary operations (the init `configure`, a `create`) run
/// under a 1 s per-operation limit; an operation that spins (a `create` whose tool's module loops
/// forever at import) is killed by SIGXCPU, fails typed naming the limit, is not retried, and the
/// worker is replaced.
#[tokio::test]
async fn a_call_past_the_cpu_limit_fails_typed_and_its_worker_is_replaced() {
    cpu_limit_case(false).await;
}

/// The same with workers forked from a fork server: the limit reaches the forked children.
#[tokio::test]
async fn the_cpu_limit_holds_for_workers_forked_from_the_fork_server() {
    cpu_limit_case(true).await;
}

async fn cpu_limit_case(fork_server: bool) {
    use dspex::bridge::WorkerState;
    use dspex::bridge::protocol::Op;
    use std::time::Duration;
    let python = venv_python();
    let helpers = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("python");
    within(240, async {
        let pool = pool(python)
            .fork_server(fork_server)
            .cpu_seconds(1)
            .env("PYTHONPATH", helpers.to_string_lossy())
            .restart_backoff(Duration::from_millis(5), Duration::from_millis(50))
            .build()
            .await
            .expect("the pool starts: init operations run under the limit");
        let create = |tools: Option<&str>| Op::Create {
            module: "Predict".into(),
            signature: "question -> answer".into(),
            instructions: None,
            fields: Map::new(),
            kwargs: tools
                .map(|t| {
                    let mut m = Map::new();
                    m.insert("tools".into(), json!([t]));
                    m
                })
                .unwrap_or_default(),
            session: None,
        };
        pool.request(create(None))
            .await
            .expect("an ordinary create stays within the limit");
        let victim = pool.worker_pids()[0];

        let err = pool
            .request(create(Some("dspex_cpu_spin:spin")))
            .await
            .unwrap_err();
        match &err {
            BridgeError::CpuLimitExceeded {
                worker,
                op,
                seconds,
                ..
            } => {
                assert_eq!(worker.pid, victim);
                assert_eq!(*op, "create");
                assert_eq!(*seconds, 1);
            }
            other => panic!("expected CpuLimitExceeded, got {other:?}"),
        }
        let message = err.to_string();
        assert!(
            message.contains("CPU limit of 1 s") && message.contains("SIGXCPU"),
            "{message}"
        );

        // Replaced: a new worker answers, and the stats tell what happened.
        pool.ping().await.expect("a replacement worker answers");
        let stats = pool.stats();
        assert!(!pool.worker_pids().contains(&victim));
        assert_eq!(stats.cpu_limit_kills, 1, "{stats:#?}");
        assert_eq!(stats.retries, 0, "{stats:#?}");
        let gone = stats
            .recently_gone
            .iter()
            .find(|w| w.worker.pid == victim)
            .expect("the killed worker is listed");
        assert_eq!(gone.state, WorkerState::Failed);
        pool.shutdown().await;
    })
    .await;
}

/// `no_network` with the real worker, on this machine, where unprivileged user namespaces work:
/// the pool starts; code in a worker cannot reach a TCP listener on the host's loopback (which a
/// worker without the option reaches); DSPy's LM calls still come back over the bridge. Plain and
/// forked workers.
#[tokio::test]
async fn no_network_workers_reach_no_network_but_their_lm_calls_work() {
    use dspex::bridge::protocol::Op;
    let python = venv_python();
    let helpers = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("python");
    within(240, async {
        let server = MockLm::builder().start().await.expect("the mock LM starts");
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a local listener");
        let addr = listener.local_addr().unwrap().to_string();
        let probe = Op::Create {
            module: "Predict".into(),
            signature: "question -> answer".into(),
            instructions: None,
            fields: Map::new(),
            kwargs: {
                let mut m = Map::new();
                m.insert("tools".into(), json!(["dspex_net_probe:probe"]));
                m
            },
            session: None,
        };
        for (no_network, fork_server) in [(false, false), (true, false), (true, true)] {
            let pool = pool(python.clone())
                .no_network(no_network)
                .fork_server(fork_server)
                .env("PYTHONPATH", helpers.to_string_lossy())
                .env("DSPEX_NET_PROBE_ADDR", addr.clone())
                .build()
                .await
                .unwrap_or_else(|e| panic!("the pool starts (no_network {no_network}): {e}"));
            let err = pool.request(probe.clone()).await.unwrap_err();
            let message = err.remote().map(|r| r.message.clone()).unwrap_or_default();
            if no_network {
                assert!(
                    message.contains("NET-PROBE: unreachable"),
                    "fork server {fork_server}: {err}"
                );
            } else {
                assert!(message.contains("NET-PROBE: connected"), "{err}");
            }
            // LM calls go over the pipes, not the network.
            let answer = common::bridge::ask_bridged_predict(&pool, &server)
                .await
                .expect("a bridged Predict answers through the pool's LM");
            assert!(answer["answer"].is_string(), "{answer}");
            pool.shutdown().await;
        }
    })
    .await;
}
