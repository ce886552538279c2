//! Real DSPy 3.4.1 runs unchanged against dspex's mock LM server. The Python side runs in the
//! project's venv, created (or reused) by `scripts/python-env`; nothing leaves loopback.

mod common;

use common::{repo_root, venv_python};

use dspex::prelude::*;
use dspex::testing::MockLm;
use std::process::Command;

/// Runs `tests/python/<script> <arg>` with the venv's Python (DSPy's cache in `cache` when
/// given; no network) off the async runtime, and reads the JSON object it prints.
async fn run_script(
    script: &str,
    args: &[&str],
    cache: Option<&std::path::Path>,
    failure: &str,
) -> serde_json::Value {
    let python = venv_python();
    let mut cmd = Command::new(python);
    cmd.arg(repo_root().join("tests/python").join(script))
        .args(args)
        .env("LITELLM_LOCAL_MODEL_COST_MAP", "True");
    if let Some(dir) = cache {
        cmd.env("DSPY_CACHEDIR", dir);
    }
    let out = tokio::task::spawn_blocking(move || cmd.output().expect("python runs"))
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{failure}:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("one JSON object")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dspy_predict_gets_parsed_answers_from_the_mock() {
    let server = MockLm::builder()
        .start()
        .await
        .expect("the mock server starts");
    let cache = tempfile::tempdir().unwrap();
    let result = run_script(
        "dspy_against_mock.py",
        &[&server.api_base()],
        Some(cache.path()),
        "DSPy failed against the mock",
    )
    .await;
    assert_eq!(result["dspy_version"], "3.4.1");
    for key in [
        "predict_answer",
        "cot_reasoning",
        "cot_answer",
        "json_answer",
    ] {
        let text = result[key].as_str().unwrap_or_default();
        assert!(!text.trim().is_empty(), "{key} is empty: {result}");
    }
    assert!(result["typed"]["count"].is_i64(), "{result}");
    assert!(result["typed"]["words"].is_array(), "{result}");
    assert!(result["typed"]["flag"].is_boolean(), "{result}");
    assert_eq!(
        server.stats().requests_to("/v1/chat/completions"),
        4,
        "one request per DSPy call"
    );
}

/// A program saved by dspex loads in DSPy 3.4.1 with the same demos, instructions and field
/// metadata (the `program_state_rag` fixture, loaded into Rust, saved, loaded into Python).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dspy_loads_what_dspex_saves() {
    let fx = common::fixture("program_state_rag.json");
    let mut rag = common::rag::Rag::new();
    rag.load_state(&fx["state"]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rag.json");
    rag.save(&path).unwrap();
    let loaded = run_script(
        "dspy_load_state.py",
        &[&path.to_string_lossy()],
        None,
        "DSPy could not load dspex's file",
    )
    .await;
    assert_eq!(loaded["dspy_version"], "3.4.1");
    let mut want = fx["state"].clone();
    want.as_object_mut().unwrap().remove("metadata");
    assert_eq!(loaded["state"], want);
}

/// A program holding a `Retrieve` saves its `k` under the retriever's name, as DSPy does, so
/// DSPy's `load` (which reads every parameter's key) takes the file; and dspex reads it back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dspy_loads_a_saved_program_with_a_retriever() {
    use dspex::module::ChainOfThought;
    use dspex::retrieve::{Bm25Index, Corpus, Retrieve};

    #[signature("context: list[str], question -> query")]
    struct GenerateQuery;

    #[signature("context: list[str], question -> answer")]
    struct GenerateAnswer;

    #[derive(Module)]
    struct MultiHop {
        generate_query: Vec<Predict<GenerateQuery>>,
        retrieve: Retrieve<Bm25Index>,
        generate_answer: ChainOfThought<GenerateAnswer>,
    }

    let index = Bm25Index::from_documents(Corpus::from_texts(["one passage"]).documents).unwrap();
    let mut program = MultiHop {
        generate_query: vec![Predict::new(), Predict::new()],
        retrieve: Retrieve::new(index.clone(), 2),
        generate_answer: ChainOfThought::new(),
    };
    program.generate_query[1]
        .params_mut()
        .set_instructions("Write the follow-up query.");
    let state = program.dump_state();
    assert_eq!(state["retrieve"], serde_json::json!({"k": 2}));

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("multihop.json");
    program.save(&path).unwrap();
    let loaded = run_script(
        "dspy_load_state.py",
        &[&path.to_string_lossy(), "multihop"],
        None,
        "DSPy could not load dspex's file",
    )
    .await;
    assert_eq!(loaded["state"], state, "DSPy holds what dspex saved");

    let mut other = MultiHop {
        generate_query: vec![Predict::new(), Predict::new()],
        retrieve: Retrieve::new(index, 3),
        generate_answer: ChainOfThought::new(),
    };
    other.load(&path).unwrap();
    assert_eq!(other.retrieve.k(), 2);
    assert_eq!(
        other.generate_query[1].params().instructions(),
        "Write the follow-up query."
    );
}
