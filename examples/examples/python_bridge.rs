//! A DSPy module run from Rust through the pool of Python workers, typed: real DSPy 3.4.1's
//! `dspy.ChainOfThought("question -> answer")` in a worker process, its LM calls answered by
//! dspex's LM layer (and counted by its usage tracker).
//!
//! Run it with `cargo run --example python_bridge`. It needs the project venv with DSPy and the
//! worker package (`scripts/python-env` creates it; this example runs it for you). The LM is
//! dspex's mock server started in-process.

use dspex::bridge::protocol::{LmConfig, Op};
use dspex::bridge::{BridgedModule, Pool};
use dspex::lm::CacheConfig;
use dspex::lm::track_usage;
use dspex::module::Reasoned;
use dspex::prelude::*;
use dspex::settings::{Settings, with_settings};
use dspex::testing::MockLm;
use dspex_examples::venv_python;
use std::time::{Duration, Instant};

#[signature("question -> answer")]
struct QA;

#[tokio::main]
async fn main() -> dspex::Result<()> {
    // The LM: dspex's mock LM server on 127.0.0.1. For a real model, write
    // `let lm = LM::builder("openai/gpt-4o-mini").build()?;` instead (the key from OPENAI_API_KEY;
    // `.api_base(…)` for any OpenAI-compatible server).
    let server = MockLm::builder()
        .start()
        .await
        .map_err(|e| Error::step("starting the mock LM", e))?;
    println!("dspex's mock LM server at {}", server.url());
    let lm = LM::builder("openai/mock")
        .api_base(server.api_base())
        .cache_config(CacheConfig::memory_only())
        .build()?;
    let started = Instant::now();
    let pool = Pool::builder()
        .python(venv_python())
        .workers(2)
        .eager_import(true)
        .start_timeout(Duration::from_secs(120))
        // Every worker's DSPy sends its LM calls back over the bridge.
        .init(Op::Configure {
            lm: LmConfig::bridge(lm.model()),
            adapter: None,
        })
        .build()
        .await?;
    let stats = pool.stats();
    println!(
        "pool of {} workers ready in {:.2?} (DSPy {})",
        stats.workers.len(),
        started.elapsed(),
        stats.workers[0].dspy.as_deref().unwrap_or("not imported")
    );

    let (answer, usage) = track_usage(with_settings(Settings::new().lm(lm.clone()), async {
        // DSPy's ChainOfThought adds `reasoning`; dspex's `Reasoned<T>` reads it typed.
        let cot = BridgedModule::<QAInput, Reasoned<QAOutput>>::create(
            &pool,
            "ChainOfThought",
            QA::signature().to_string(),
        )
        .await?;
        let reasoned = cot
            .forward(QAInput {
                question: "What is the capital of France?".into(),
            })
            .await?;
        // The same signature through dspy.Predict, typed from the dspex signature.
        let predict = BridgedModule::for_signature::<QA>(&pool, "Predict").await?;
        let plain = predict
            .forward(QAInput {
                question: "What is the capital of Peru?".into(),
            })
            .await?;
        Ok::<_, dspex::Error>((reasoned, plain))
    }))
    .await;
    let (reasoned, plain) = answer?;
    println!("\ndspy.ChainOfThought, called from Rust:");
    println!("  reasoning: {}", reasoned.reasoning);
    println!("  answer:    {}", reasoned.output.answer);
    println!("dspy.Predict: {}", plain.answer);
    println!(
        "  LM calls answered by dspex: {} ({} tokens)",
        usage.total().calls,
        usage.total().usage.total_tokens
    );

    let report = pool.shutdown().await;
    println!("\npool shut down: {report:?}");
    Ok(())
}
