//! `Ensemble` as DSPy's: several modules of one shape on the same input, a majority vote over
//! their answers, DSPy's predictor names (`programs[0].predict`, …) for optimizers and
//! save/load, and sampling that is repeatable when asked.

use dspex::lm::ScriptedLM;
use dspex::module::{CallConfig, ChainOfThought, majority};
use dspex::prelude::*;
use serde_json::json;

#[signature("question -> answer")]
struct QA;

/// Three chains of thought, each answering `answer` through its own scripted LM.
fn members(answers: &[&str]) -> Vec<ChainOfThought<QA>> {
    answers
        .iter()
        .map(|a| {
            let lm =
                ScriptedLM::from_fields([json!({"reasoning": "r", "answer": a})]).repeat_last();
            ChainOfThought::<QA>::new().with_config(CallConfig::new().lm(lm))
        })
        .collect()
}

fn vote(outputs: Vec<Reasoned<QAOutput>>) -> dspex::Result<String> {
    let predictions = outputs
        .iter()
        .map(Prediction::from_typed)
        .collect::<Result<Vec<_>, _>>()?;
    let winner = majority(predictions.iter().map(Prediction::as_map), Some("answer"))?;
    Ok(winner.get_str("answer").unwrap_or_default().to_string())
}

#[tokio::test]
async fn a_majority_of_chains_of_thought_answers() {
    let ensemble = Ensemble::new()
        .reduce_fn(vote)
        .compile(members(&["Paris", "Lyon", "paris!"]))
        .unwrap();
    let answer = ensemble
        .forward(QAInput {
            question: "Capital of France?".into(),
        })
        .await
        .unwrap();
    assert_eq!(answer, "Paris");
    let names: Vec<String> = ensemble
        .named_predictors()
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    // DSPy 3.4.1: `Ensemble(reduce_fn=dspy.majority).compile([cot, cot]).named_predictors()`.
    assert_eq!(
        names,
        [
            "programs[0].predict",
            "programs[1].predict",
            "programs[2].predict"
        ]
    );
    let state = ensemble.dump_state();
    assert!(state.get("programs[2].predict").is_some(), "{state}");
}

#[tokio::test]
async fn a_deterministic_sample_depends_on_the_input_only() {
    let ensemble = Ensemble::new()
        .size(2)
        .deterministic(true)
        .compile(members(&["a", "b", "c", "d", "e"]))
        .unwrap();
    let ask = |q: &str| {
        ensemble.forward(QAInput {
            question: q.to_string(),
        })
    };
    let answers = |outs: Vec<Reasoned<QAOutput>>| -> Vec<String> {
        outs.into_iter().map(|o| o.output.answer).collect()
    };
    let first = answers(ask("q1").await.unwrap());
    assert_eq!(first.len(), 2);
    assert_ne!(first[0], first[1]);
    for _ in 0..5 {
        assert_eq!(answers(ask("q1").await.unwrap()), first);
    }
}

#[test]
fn a_size_larger_than_the_ensemble_is_refused() {
    let err = Ensemble::new()
        .size(4)
        .compile(members(&["a", "b"]))
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "Ensemble: Ensemble size 4 must be between 1 and the number of programs (2)"
    );
}
