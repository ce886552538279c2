//! The bridge's router with the real worker (`python -m dspex_worker`, DSPy 3.4.1) from the
//! project's venv (`scripts/python-env`, or the interpreter in `DSPEX_BRIDGE_PYTHON`), against
//! dspex's mock LM server: native and bridged modules behind one program type, the route
//! chosen by module name or forced, and reported.

mod common;

use common::bridge::{lm, within};
use common::venv_python;
use dspex::bridge::{BridgeError, Pool, Route, Router, RouterError};
use dspex::lm::track_usage;
use dspex::settings::{Settings, with_settings};
use dspex::testing::MockLm;
use dspex::{Example, Module, Prediction, Program};
use serde::{Deserialize, Serialize};
use serde_json::json;

async fn pool(python: std::path::PathBuf) -> Pool {
    common::bridge::pool(python)
        .build()
        .await
        .expect("the pool starts")
}

fn keys(prediction: &Prediction) -> Vec<String> {
    prediction.keys().map(ToString::to_string).collect()
}

#[derive(Debug, Serialize)]
struct Question {
    question: String,
}

#[derive(Debug, Deserialize)]
struct Reasoned {
    reasoning: String,
    answer: String,
}

#[tokio::test]
async fn native_and_bridged_modules_behind_one_type() {
    let python = venv_python();
    within(240, async {
        let server = MockLm::builder().start().await.expect("the mock LM starts");
        let pool = pool(python).await;
        let router = Router::with_pool(pool.clone());
        let bridged = router.clone().force(Route::Bridged);
        let question = Example::new()
            .with("question", "What is the capital of France?")
            .with("answer", "Paris")
            .with_inputs(["question"]);

        let (result, usage) = track_usage(with_settings(Settings::new().lm(lm(&server)), async {
            // Predict: native by default, DSPy's when forced; the same output fields.
            let native_predict = router.route("Predict", "question -> answer").await?;
            let bridged_predict = bridged.route("Predict", "question -> answer").await?;
            assert_eq!(native_predict.route(), Route::Native);
            assert_eq!(bridged_predict.route(), Route::Bridged);
            assert_eq!(
                bridged_predict.as_bridged().map(|m| m.module().to_string()),
                Some("Predict".to_string())
            );
            let native_out = native_predict.forward(question.clone()).await?;
            let bridged_out = bridged_predict.forward(question.clone()).await?;
            assert_eq!(keys(&native_out), ["answer"], "{native_out:?}");
            assert_eq!(keys(&bridged_out), ["answer"], "{bridged_out:?}");

            // ChainOfThought: both routes answer with reasoning first, typed too.
            let native_cot = router.route("ChainOfThought", "question -> answer").await?;
            let bridged_cot = bridged.route("ChainOfThought", "question -> answer").await?;
            let native_out = native_cot.forward(question.clone()).await?;
            let bridged_out = bridged_cot.forward(question.clone()).await?;
            assert_eq!(keys(&native_out), ["reasoning", "answer"], "{native_out:?}");
            assert_eq!(keys(&bridged_out), ["reasoning", "answer"], "{bridged_out:?}");

            // Native parameters are visible to optimizers; bridged ones live in Python. A native
            // ChainOfThought's state loads into DSPy's.
            assert_eq!(native_cot.named_predictors().len(), 1);
            assert_eq!(native_cot.named_predictors()[0].0, "predict");
            assert!(bridged_cot.named_predictors().is_empty());
            let state = native_cot.dump_state();
            let dspy_cot = bridged_cot.as_bridged().expect("bridged");
            dspy_cot.load_state(state).await?;
            assert!(dspy_cot.save_state().await?.get("predict").is_some());

            let typed = bridged_cot.typed::<Question, Reasoned>();
            assert_eq!(typed.route(), Route::Bridged);
            let answer = typed
                .forward(Question {
                    question: "What is 2 + 2?".into(),
                })
                .await?;
            assert!(!answer.reasoning.is_empty() && !answer.answer.is_empty());

            // MultiChainComparison is native now (from the router's registry), fed the
            // attempts in `completions` as DSPy's forward takes them.
            let mcc = router
                .route("MultiChainComparison", "question -> answer")
                .await?;
            assert_eq!(mcc.route(), Route::Native);
            let attempts = json!([
                {"reasoning": "Paris is the capital.", "answer": "Paris"},
                {"reasoning": "Lyon is large.", "answer": "Lyon"},
                {"reasoning": "The capital is Paris.", "answer": "Paris"},
            ]);
            let out = mcc
                .forward(
                    Example::new()
                        .with("question", "What is the capital of France?")
                        .with("completions", attempts),
                )
                .await?;
            assert!(out.get("answer").is_some(), "{out:?}");
            Ok::<_, dspex::Error>(())
        }))
        .await;
        result.expect("every routed module answers");
        // 2 Predict + 2 ChainOfThought + 1 typed ChainOfThought + 1 MultiChainComparison call,
        // all answered (and counted) in Rust.
        assert_eq!(usage.total().calls, 6, "{usage:?}");
        assert_eq!(server.stats().requests_to("/v1/chat/completions"), 6);

        // Typed errors: native forced for a module dspex lacks; DSPy cannot create the module.
        let err = router
            .clone()
            .force(Route::Native)
            .route("ReAct", "question -> answer")
            .await
            .unwrap_err();
        assert!(matches!(err, RouterError::NoNative { .. }), "{err:?}");
        let err = router
            .route("NoSuchModule", "a -> b")
            .await
            .unwrap_err();
        assert!(
            matches!(&err, RouterError::Bridge(BridgeError::Remote { error, .. }) if error.kind == "BadRequest"),
            "{err:?}"
        );
        let report = pool.shutdown().await;
        assert_eq!(report.graceful, 1, "{report:?}");
    })
    .await;
}
