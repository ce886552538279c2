//! GEPA on a program users write with the facade: a ReAct agent, whose named predictors
//! (`react`, `extract.predict`) are GEPA's components, round-robin.

mod common;

use common::parity::response;
use dspex::lm::{LanguageModel, LmError, LmRequest, LmResponse};
use dspex::module::Tool;
use dspex::prelude::*;
use dspex::runtime::evaluate::metric_fn;
use dspex::runtime::optimize::gepa::{InstructionProposer, ReflectiveDataset};
use futures_util::future::BoxFuture;
use std::sync::{Arc, Mutex};

#[signature("question -> answer")]
struct QA;

/// The agent finishes at once; its extraction answers right once its instructions say
/// "Answer with A".
struct AgentLm;

impl LanguageModel for AgentLm {
    fn model(&self) -> &str {
        "agent"
    }

    fn call(&self, request: LmRequest) -> BoxFuture<'_, Result<LmResponse, LmError>> {
        let system = request.messages[0].content.text();
        let user = request.messages[request.messages.len() - 1].content.text();
        let text = if system.contains("`next_tool_name`") {
            "[[ ## next_thought ## ]]\nDone.\n\n[[ ## next_tool_name ## ]]\nfinish\n\n[[ ## next_tool_args ## ]]\n{}\n\n[[ ## completed ## ]]".to_string()
        } else {
            let q = user
                .split("[[ ## question ## ]]\n")
                .nth(1)
                .and_then(|s| s.lines().next())
                .unwrap_or_default();
            let answer = if system.contains("Answer with A") {
                q.replacen('Q', "A", 1)
            } else {
                "wrong".to_string()
            };
            format!(
                "[[ ## reasoning ## ]]\nr\n\n[[ ## answer ## ]]\n{answer}\n\n[[ ## completed ## ]]"
            )
        };
        Box::pin(std::future::ready(Ok(response([text]))))
    }
}

/// Proposes "Answer with A." for every component it is asked about, and remembers which.
#[derive(Default)]
struct Fixed(Mutex<Vec<Vec<String>>>);

impl InstructionProposer for Fixed {
    fn propose<'a>(
        &'a self,
        _candidate: &'a [(String, String)],
        _dataset: &'a ReflectiveDataset,
        components: &'a [String],
    ) -> BoxFuture<'a, dspex::Result<Vec<(String, String)>>> {
        self.0.lock().unwrap().push(components.to_vec());
        Box::pin(std::future::ready(Ok(components
            .iter()
            .map(|c| (c.clone(), "Answer with A.".to_string()))
            .collect())))
    }
}

#[tokio::test]
async fn a_react_agent_is_optimized_through_its_named_predictors() {
    let agent = ReAct::<QA>::new(Vec::<Tool>::new()).unwrap();
    let names: Vec<String> = agent
        .named_predictors()
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    assert_eq!(names, ["react", "extract.predict"]);
    let trainset: Vec<Example> = (0..4)
        .map(|i| {
            Example::new()
                .with("question", format!("Q{i}"))
                .with("answer", format!("A{i}"))
                .with_inputs(["question"])
        })
        .collect();
    let exact = metric_fn("exact", |ex: &Example, pred: &Prediction| {
        ex.get_str("answer") == pred.get_str("answer")
    });
    let proposer = Arc::new(Fixed::default());
    let gepa = GEPA::new(exact)
        .max_metric_calls(30)
        .instruction_proposer(proposer.clone())
        .num_threads(2);
    let out = with_settings(Settings::new().lm(AgentLm), gepa.compile(agent, &trainset))
        .await
        .unwrap();
    // Round-robin: `react` first (its rewrite cannot help), then `extract.predict`, which does.
    let asked = proposer.0.lock().unwrap().clone();
    assert_eq!(asked[0], ["react"]);
    assert!(asked.iter().any(|c| c == &["extract.predict"]), "{asked:?}");
    let instructions: Vec<String> = out
        .named_predictors()
        .into_iter()
        .map(|(_, p)| p.instructions().to_string())
        .collect();
    assert_eq!(instructions[1], "Answer with A.");
}
