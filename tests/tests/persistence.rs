//! Programs saved in DSPy's JSON state format: the `program_state_rag` fixture (saved by DSPy
//! 3.4.1) loads into the equivalent typed Rust program, which then sends exactly the recorded
//! prompts; saving it back writes the same state.

mod common;

use common::fixture;
use common::rag::{GenerateQuery, Rag};
use dspex::lm::ScriptedLM;
use dspex::module::Predict;
use dspex::prelude::*;
use dspex::runtime::program::StateError;
use dspex::settings::{Settings, with_settings};
use serde_json::{Value, json};

#[tokio::test]
async fn a_program_saved_by_dspy_loads_and_sends_the_recorded_prompts() {
    let fx = fixture("program_state_rag.json");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rag.json");
    std::fs::write(&path, serde_json::to_string(&fx["state"]).unwrap()).unwrap();
    let mut rag = Rag::new();
    rag.load(&path).unwrap();
    assert_eq!(
        rag.answer.params().instructions(),
        "Answer in at most five words."
    );

    for call in fx["calls"].as_array().unwrap() {
        let lm = ScriptedLM::from_fields([json!({
            "reasoning": "r", "search_query": "q", "answer": "a"
        })]);
        let settings = Settings::new().lm(lm.clone());
        match call["predictor"].as_str().unwrap() {
            "generate_query.predict" => {
                let input = serde_json::from_value(call["inputs"].clone()).unwrap();
                with_settings(settings, rag.generate_query.forward(input))
                    .await
                    .unwrap();
            }
            "answer" => {
                let input = serde_json::from_value(call["inputs"].clone()).unwrap();
                with_settings(settings, rag.answer.forward(input))
                    .await
                    .unwrap();
            }
            other => panic!("the fixture calls an unknown predictor {other}"),
        }
        assert_eq!(
            serde_json::to_value(&lm.messages()[0]).unwrap(),
            call["expected_messages"],
            "predictor {}",
            call["predictor"]
        );
    }

    // Saved back, the state is DSPy's, key for key (metadata aside).
    let again = dir.path().join("again.json");
    rag.save(&again).unwrap();
    let mut saved: Value = serde_json::from_str(&std::fs::read_to_string(&again).unwrap()).unwrap();
    let mut original = fx["state"].clone();
    assert_eq!(
        saved["metadata"]["dependency_versions"],
        original["metadata"]["dependency_versions"]
    );
    saved.as_object_mut().unwrap().remove("metadata");
    original.as_object_mut().unwrap().remove("metadata");
    assert_eq!(saved, original);
    assert_eq!(
        serde_json::to_string(&saved).unwrap(),
        serde_json::to_string(&original).unwrap(),
        "same key order"
    );
}

#[test]
fn loading_into_a_program_of_another_shape_names_what_is_missing() {
    #[derive(Module)]
    struct Other {
        summarize: Predict<GenerateQuery>,
    }
    let fx = fixture("program_state_rag.json");
    let mut other = Other {
        summarize: Predict::new(),
    };
    let err = other.load_state(&fx["state"]).unwrap_err();
    assert!(
        matches!(&err, StateError::MissingPredictor { predictor, .. } if predictor == "summarize"),
        "{err}"
    );
    let mut broken = fx["state"].clone();
    broken["answer"]["demos"] = json!("not a list");
    let mut rag = Rag::new();
    let err = rag.load_state(&broken).unwrap_err();
    assert_eq!(
        err.to_string(),
        "predictor `answer`, key `demos`: must be a list of objects"
    );
    assert!(rag.answer.params().demos.is_empty(), "nothing applied");
}

/// A `Retrieve` inside a program: its `k` is saved under its name, read back when present, left
/// alone when absent, and a malformed one fails the whole load with nothing changed.
#[test]
fn a_retrievers_k_is_state_and_bad_values_change_nothing() {
    use dspex::retrieve::{Bm25Index, Corpus, Retrieve};

    #[derive(Module)]
    struct WithRetriever {
        generate_query: Predict<GenerateQuery>,
        search: Vec<Retrieve<Bm25Index>>,
    }

    let index = Bm25Index::from_documents(Corpus::from_texts(["a passage"]).documents).unwrap();
    let mut program = WithRetriever {
        generate_query: Predict::new(),
        search: vec![Retrieve::new(index.clone(), 4)],
    };
    let state = program.dump_state();
    assert_eq!(state["search[0]"], json!({"k": 4}));
    let keys: Vec<&String> = state.as_object().unwrap().keys().collect();
    assert_eq!(keys, ["generate_query", "search[0]"]);

    let mut changed = state.clone();
    changed["search[0]"]["k"] = json!(7);
    changed["generate_query"]["signature"]["instructions"] = json!("New instructions.");
    program.load_state(&changed).unwrap();
    assert_eq!(program.search[0].k(), 7);

    // No entry for the retriever (a file saved before retrievers had state): k stays.
    let mut without = changed.clone();
    without.as_object_mut().unwrap().remove("search[0]");
    program.load_state(&without).unwrap();
    assert_eq!(program.search[0].k(), 7);

    let mut bad = state.clone();
    bad["search[0]"]["k"] = json!("many");
    bad["generate_query"]["signature"]["instructions"] = json!("Should not land.");
    let err = program.load_state(&bad).unwrap_err();
    assert!(
        matches!(&err, StateError::BadKey { predictor, key, .. } if predictor == "search[0]" && key == "k"),
        "{err}"
    );
    assert_eq!(program.search[0].k(), 7);
    assert_eq!(
        program.generate_query.params().instructions(),
        "New instructions."
    );
}
