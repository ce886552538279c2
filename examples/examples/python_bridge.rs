//! DSPy modules run from Rust through the pool of Python workers (real DSPy 3.4.1 in worker
//! processes, their LM calls answered by dspex's LM layer):
//!
//! 1. a typed `dspy.ChainOfThought` call, and the same module **streamed** (DSPy's `streamify`
//!    in the worker, chunks arriving in Rust as the LM generates them);
//! 2. a **hybrid program** — plan (ChainOfThought) → compute (ProgramOfThought) → explain
//!    (ChainOfThought) — whose ChainOfThought steps run natively in dspex and whose
//!    ProgramOfThought step runs in DSPy, saved and loaded as one file in DSPy's format;
//! 3. a **chat service's sessions**: a `SessionStore` keeps each user's conversation on one
//!    worker, with the user's state beside it;
//! 4. a routed module with a **fallback**: DSPy's module first, dspex's own when the pool is
//!    gone.
//!
//! Run it with `cargo run --example python_bridge`. It needs the project venv with DSPy and the
//! worker package (`scripts/python-env` creates it; this example runs it for you). The LM is
//! dspex's mock server started in-process. ProgramOfThought runs generated code: DSPy's own
//! interpreter needs Deno, so the example names the worker package's in-process one
//! (`dspex_worker.exec_interpreter`, not a sandbox: for trusted code, or a sandboxed pool).

use dspex::bridge::protocol::{LmConfig, Op};
use dspex::bridge::{
    BridgedFailure, BridgedModule, Fallback, HybridProgram, HybridSpec, Pool, Route, Router,
    SessionOptions, SessionStore,
};
use dspex::lm::CacheConfig;
use dspex::lm::track_usage;
use dspex::module::{Reasoned, StreamItem};
use dspex::prelude::*;
use dspex::settings::{Settings, with_settings};
use dspex::testing::{MockLm, Rule};
use dspex_examples::venv_python;
use futures_util::StreamExt;
use serde_json::{Map, Value, json};
use std::io::Write;
use std::time::{Duration, Instant};

#[signature("question -> answer")]
struct QA;

/// What the mock LM answers ProgramOfThought's code step: code that computes and SUBMITs.
const GENERATED: &str = "[[ ## reasoning ## ]]\nMultiply six by seven.\n\n[[ ## generated_code ## ]]\n```python\nproduct = 6 * 7\nSUBMIT({\"result\": product})\n```\n\n[[ ## completed ## ]]";

fn question(text: &str) -> Map<String, Value> {
    let mut inputs = Map::new();
    inputs.insert("question".into(), json!(text));
    inputs
}

#[tokio::main]
async fn main() -> dspex::Result<()> {
    // The LM: dspex's mock LM server on 127.0.0.1. For a real model, write
    // `let lm = LM::builder("openai/gpt-4o-mini").build()?;` instead (the key from OPENAI_API_KEY;
    // `.api_base(…)` for any OpenAI-compatible server).
    let server = MockLm::builder()
        .rule(Rule::contains("[[ ## generated_code ## ]]", GENERATED))
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
    let router = Router::with_pool(pool.clone());

    let (done, usage) = track_usage(with_settings(Settings::new().lm(lm.clone()), async {
        // 1. DSPy's ChainOfThought, typed: dspex's `Reasoned<T>` reads its `reasoning`.
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
        println!("\n1. dspy.ChainOfThought, called from Rust:");
        println!("  reasoning: {}", reasoned.reasoning);
        println!("  answer:    {}", reasoned.output.answer);

        // The same module streamed: the same items a native module's stream yields.
        println!("  streamed:");
        let mut stream = cot.stream(QAInput {
            question: "What is the capital of Peru?".into(),
        });
        let mut chunks = 0;
        while let Some(item) = stream.next().await {
            match item? {
                StreamItem::Chunk(chunk) => {
                    chunks += 1;
                    println!("    [{}] {}", chunk.field, chunk.delta.trim_end());
                    std::io::stdout().flush().ok();
                }
                StreamItem::Final(out) => {
                    println!(
                        "  final answer after {chunks} chunks: {}",
                        out.output.answer
                    )
                }
                _ => {}
            }
        }

        // 2. A hybrid program from one description.
        let mut pot_kwargs = Map::new();
        pot_kwargs.insert(
            "interpreter_factory".into(),
            json!("dspex_worker.exec_interpreter:ExecInterpreter"),
        );
        let spec = HybridSpec::new()
            .step("plan", "ChainOfThought", "question -> plan")
            .step_with(
                "compute",
                "ProgramOfThought",
                "question, plan -> result",
                pot_kwargs,
            )
            .step("explain", "ChainOfThought", "question, result -> answer");
        let program = HybridProgram::build(&router, spec.clone()).await?;
        let out = program
            .forward(Example::new().with("question", "What is 6 * 7?"))
            .await?;
        println!("\n2. hybrid program, each step routed on its own:");
        for (step, route) in program.routes() {
            println!("  {step:<8} {route:?}");
        }
        println!("  answer:  {}", out.get_str("answer").unwrap_or_default());
        let dir = tempfile::tempdir().map_err(|e| Error::step("a temporary directory", e))?;
        let file = dir.path().join("hybrid.json");
        program.save(&file).await?;
        let mut reloaded = HybridProgram::build(&router, spec).await?;
        reloaded.load(&file).await?;
        let saved: Value = serde_json::from_str(
            &std::fs::read_to_string(&file).map_err(|e| Error::step("reading the save", e))?,
        )
        .map_err(|e| Error::step("parsing the save", e))?;
        let keys: Vec<&String> = saved
            .as_object()
            .map(|o| o.keys().collect())
            .unwrap_or_default();
        println!("  saved in DSPy's format (keys {keys:?}) and loaded again");

        // 3. A chat service: each user's session stays on one worker, with its state.
        let store: SessionStore = SessionStore::new(
            &pool,
            SessionOptions::new()
                .idle_ttl(Duration::from_secs(600))
                .var("persona", "concise"),
        );
        println!("\n3. chat sessions:");
        for (user, text) in [
            ("alice", "What is the tallest mountain?"),
            ("bob", "What is the longest river?"),
            ("alice", "And the deepest lake?"),
            ("bob", "And the largest desert?"),
        ] {
            let session = store.get_or_create(user.to_string()).await;
            let object = match session.get("object") {
                Some(Value::String(object)) => object,
                _ => {
                    let object = session
                        .create("Predict", "question -> answer", Map::new())
                        .await?;
                    session.set("object", object.clone());
                    object
                }
            };
            let out = session.call(object, question(text)).await?;
            let turns = session.update(|state| {
                let turns = state.get("turns").and_then(Value::as_u64).unwrap_or(0) + 1;
                state.insert("turns".into(), json!(turns));
                turns
            });
            println!(
                "  {user:<5} turn {turns} on worker {} (session {}): {}",
                session.worker().map(|w| w.id).unwrap_or_default(),
                session.name(),
                out.get("answer")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
            );
        }
        let live = pool.stats().live_sessions;
        println!(
            "  {} sessions in the store ({live} live in the pool, the modules' above included)",
            store.len()
        );
        store.clear().await?;
        println!(
            "  store cleared: {} sessions, {} live in the pool (the users' DSPy objects dropped)",
            store.len(),
            pool.stats().live_sessions
        );
        Ok::<_, dspex::Error>(())
    }))
    .await;
    done?;
    println!(
        "\nLM calls answered by dspex so far: {} ({} tokens)",
        usage.total().calls,
        usage.total().usage.total_tokens
    );

    // 4. Fallback: DSPy's ChainOfThought first; dspex's native one when the pool cannot serve.
    let routed = router
        .clone()
        .force(Route::Bridged)
        .fallback(Fallback::none().to_native_on(BridgedFailure::Unavailable))
        .route("ChainOfThought", "question -> answer")
        .await?;
    let report = pool.shutdown().await;
    println!("\npool shut down: {report:?}");
    let out = with_settings(
        Settings::new().lm(lm.clone()),
        routed.forward(Example::new().with("question", "What is the capital of Chile?")),
    )
    .await?;
    let stats = routed.stats();
    println!(
        "4. routed ChainOfThought, created on {:?}, served by {:?} ({} fallback to native): {}",
        routed.primary_route(),
        routed.route(),
        stats.fallbacks_to_native,
        out.get_str("answer").unwrap_or_default()
    );
    Ok(())
}
