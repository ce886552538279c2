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
