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

/// Collects the fields of the `dspex::bridge` events of the current thread, as `name=value`.
#[derive(Clone, Default)]
struct Events(std::sync::Arc<std::sync::Mutex<Vec<String>>>);

struct Fields(String);

impl tracing::field::Visit for Fields {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        self.0.push_str(&format!("{}={:?} ", field.name(), value));
    }

    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        self.0.push_str(&format!("{}={} ", field.name(), value));
    }
}

impl tracing::Subscriber for Events {
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, event: &tracing::Event<'_>) {
        if event.metadata().target() == "dspex::bridge" {
            let mut fields = Fields(String::new());
            event.record(&mut fields);
            self.0.lock().unwrap().push(fields.0);
        }
    }
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

/// A call that fails natively with a parse failure (its LM answers what no adapter can parse)
/// is run again by DSPy in the pool, whose LM answers properly; then, with the pool shut down,
/// a bridged program falls back to its native side.
#[tokio::test]
async fn calls_fall_back_between_routes_on_the_classes_named() {
    use dspex::bridge::{BridgedFailure, Fallback, NativeFailure, RoutedProgram};
    use dspex::module::CallConfig;
    use dspex::testing::Rule;
    let python = venv_python();
    within(240, async {
        let events = Events::default();
        let _guard = tracing::subscriber::set_default(events.clone());
        // With a single registered dispatcher, tracing computes a callsite's interest from the
        // default dispatcher of whichever thread hits it first: another test's thread, which
        // has none, would turn the router's callsites off for this one. A second registered
        // dispatcher makes it ask every registered one, this test's included.
        let _second = tracing::Dispatch::new(Events::default());
        tracing::callsite::rebuild_interest_cache();
        let good = MockLm::builder().start().await.expect("the mock LM starts");
        let garbage = MockLm::builder()
            .rule(Rule::contains("", "no fields here, and no JSON either"))
            .start()
            .await
            .expect("the mock LM starts");
        let pool = pool(python).await;
        let router = Router::with_pool(pool.clone()).fallback(
            Fallback::none()
                .to_bridged_on(NativeFailure::Parse)
                .to_native_on(BridgedFailure::Unavailable),
        );
        let question = Example::new()
            .with("question", "What is the capital of France?")
            .with_inputs(["question"]);

        let result = with_settings(Settings::new().lm(lm(&good)), async {
            // Native → bridged on a parse failure.
            let mut predict = router.route("Predict", "question -> answer").await?;
            assert_eq!(predict.primary_route(), Route::Native);
            if let RoutedProgram::Native(m) = predict.program_mut() {
                m.set_config(CallConfig::new().lm(lm(&garbage)));
            }
            let out = predict.forward(question.clone()).await?;
            assert_eq!(keys(&out), ["answer"], "{out:?}");
            assert_eq!(predict.route(), Route::Bridged);
            assert_eq!(predict.primary_route(), Route::Native);
            let stats = predict.stats();
            assert_eq!(
                (stats.bridged, stats.fallbacks_to_bridged),
                (1, 1),
                "{stats:?}"
            );
            assert!(predict.secondary().is_some());
            // The next call falls back again, reusing the bridged side created once.
            predict.forward(question.clone()).await?;
            assert_eq!(predict.stats().fallbacks_to_bridged, 2);
            assert_eq!(pool.stats().recreated, 0);

            // Without the class in the policy, the parse failure is the call's error.
            let strict = Router::with_pool(pool.clone());
            let mut predict = strict.route("Predict", "question -> answer").await?;
            if let RoutedProgram::Native(m) = predict.program_mut() {
                m.set_config(CallConfig::new().lm(lm(&garbage)));
            }
            let err = predict.forward(question.clone()).await.unwrap_err();
            assert!(!err.parse_failures().is_empty(), "{err:?}");
            assert_eq!(predict.stats().failed, 1);
            assert!(predict.secondary().is_none());

            // Bridged → native once the pool is shut down.
            let bridged = router
                .clone()
                .force(Route::Bridged)
                .route("ChainOfThought", "question -> answer")
                .await?;
            assert_eq!(bridged.route(), Route::Bridged);
            pool.shutdown().await;
            let out = bridged.forward(question.clone()).await?;
            assert_eq!(keys(&out), ["reasoning", "answer"], "{out:?}");
            assert_eq!(bridged.route(), Route::Native);
            assert_eq!(bridged.primary_route(), Route::Bridged);
            assert_eq!(bridged.stats().fallbacks_to_native, 1);
            Ok::<_, dspex::Error>(())
        })
        .await;
        result.expect("the fallbacks answer");
        let stats = router.stats();
        assert_eq!(stats.fallbacks_to_bridged, 2, "{stats:?}");
        assert_eq!(stats.fallbacks_to_native, 1, "{stats:?}");
        assert_eq!((stats.bridged, stats.native), (2, 1), "{stats:?}");

        let events = events.0.lock().unwrap().clone();
        let fallbacks: Vec<_> = events
            .iter()
            .filter(|e| e.contains("falling back"))
            .collect();
        assert_eq!(fallbacks.len(), 3, "{events:?}");
        assert!(
            fallbacks[0].contains("dspex.route=bridged")
                && fallbacks[0].contains("dspex.route.fallback_from=native"),
            "{fallbacks:?}"
        );
        assert!(
            fallbacks[2].contains("dspex.route=native")
                && fallbacks[2].contains("dspex.route.fallback_from=bridged")
                && fallbacks[2].contains("shut down"),
            "{fallbacks:?}"
        );
        let served_after_fallback = events
            .iter()
            .filter(|e| e.contains("served a call") && e.contains("fallback_from="))
            .count();
        assert_eq!(served_after_fallback, 3, "{events:?}");
    })
    .await;
}

/// Routes inputs by size: small ones natively, large ones to DSPy's workers, decided per call.
#[derive(Debug)]
struct BySize(usize);

impl dspex::bridge::RouteStrategy for BySize {
    fn choose(&self, ctx: &dspex::bridge::RouteContext<'_>) -> Route {
        match ctx.input_bytes {
            Some(n) if n > self.0 => Route::Bridged,
            _ if ctx.native => Route::Native,
            _ => Route::Bridged,
        }
    }

    fn per_call(&self) -> bool {
        true
    }
}

#[tokio::test]
async fn a_custom_strategy_routes_each_call_by_input_size() {
    let python = venv_python();
    within(240, async {
        let server = MockLm::builder().start().await.expect("the mock LM starts");
        let pool = pool(python).await;
        let router = Router::with_pool(pool.clone()).strategy(BySize(200));
        let result = with_settings(Settings::new().lm(lm(&server)), async {
            let predict = router.route("Predict", "question -> answer").await?;
            assert_eq!(predict.primary_route(), Route::Native);
            let small = Example::new().with("question", "2 + 2?");
            let large = Example::new().with("question", "Why? ".repeat(100));
            predict.forward(small.clone()).await?;
            assert_eq!(predict.route(), Route::Native);
            predict.forward(large).await?;
            assert_eq!(predict.route(), Route::Bridged);
            assert!(matches!(predict.secondary(), Some(p) if p.route() == Route::Bridged));
            predict.forward(small).await?;
            assert_eq!(predict.route(), Route::Native);
            let stats = predict.stats();
            assert_eq!((stats.native, stats.bridged), (2, 1), "{stats:?}");
            assert_eq!(stats.fallbacks_to_bridged + stats.fallbacks_to_native, 0);
            Ok::<_, dspex::Error>(())
        })
        .await;
        result.expect("every call answers");
        assert_eq!(server.stats().requests_to("/v1/chat/completions"), 3);
        pool.shutdown().await;
    })
    .await;
}
