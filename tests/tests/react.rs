//! ReAct end to end: the `trace_react_two_tools` fixture replayed through the typed `ReAct<S>`
//! with real Rust tools whose argument schemas come from schemars, and the mock LM server driving
//! an agent over HTTP.

mod common;

use common::fixture;
use dspex::lm::ScriptedLM;
use dspex::module::{CallConfig, ReAct, Tool};
use dspex::prelude::*;
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{Value, json};

#[signature("question -> answer")]
struct QA;

/// Add two integers.
#[derive(Deserialize, JsonSchema)]
struct Add {
    a: i64,
    b: i64,
}

/// Look up a fact by its key.
#[derive(Deserialize, JsonSchema)]
struct Lookup {
    key: String,
}

fn tools() -> Vec<Tool> {
    vec![
        Tool::new("add", |Add { a, b }| async move {
            a.checked_add(b).ok_or("the sum overflows")
        })
        .unwrap(),
        Tool::new("lookup", |Lookup { key }| async move {
            match key.as_str() {
                "capital of France" => Ok("Paris".to_string()),
                other => Err(format!("nothing is known about {other:?}")),
            }
        })
        .unwrap(),
    ]
}

#[tokio::test]
async fn typed_react_with_rust_tools_replays_dspys_trace_exactly() {
    let fx = fixture("trace_react_two_tools.json");
    let calls = fx["calls"].as_array().unwrap();
    let lm = ScriptedLM::new(calls.iter().map(|c| c["completion"].as_str().unwrap()));
    let agent = ReAct::<QA>::new(tools())
        .unwrap()
        .with_max_iters(fx["program"]["max_iters"].as_u64().unwrap() as usize)
        .with_config(CallConfig::new().lm(lm.clone()));
    let input: QAInput = serde_json::from_value(fx["inputs"].clone()).unwrap();
    let out = agent.forward(input).await.unwrap();

    let sent = lm.messages();
    assert_eq!(sent.len(), calls.len());
    for (i, call) in calls.iter().enumerate() {
        assert_eq!(
            serde_json::to_value(&sent[i]).unwrap(),
            call["messages"],
            "LM call {i} differs from DSPy's"
        );
    }
    assert_eq!(out.output.answer, fx["output"]["answer"]);
    assert_eq!(
        serde_json::to_value(&out.trajectory).unwrap(),
        fx["output"]["trajectory"]
    );
    assert_eq!(out.trajectory.steps().len(), 3);
    assert_eq!(out.trajectory.steps()[1].tool_name, "lookup");
    assert_eq!(out.reasoning, "2 + 3 = 5 and the capital is Paris.");

    let names: Vec<String> = agent
        .named_predictors()
        .into_iter()
        .map(|(name, _)| name)
        .collect();
    assert_eq!(names, ["react", "extract.predict"]);
}

#[tokio::test]
async fn react_runs_against_the_mock_lm_server() {
    let server = dspex::testing::MockLm::builder().start().await.unwrap();
    let lm = dspex::lm::LM::builder("openai/mock")
        .api_base(server.api_base())
        .api_key("x")
        .cache(false)
        .build()
        .unwrap();
    let agent = ReAct::<QA>::new(tools())
        .unwrap()
        .with_max_iters(3)
        .with_config(CallConfig::new().lm(lm));
    let out = agent
        .forward(QAInput {
            question: "What is 2 + 3?".into(),
        })
        .await
        .unwrap();
    // The mock answers every field with a value of its type: a tool name from the literal, an
    // object for the arguments (which the tools refuse, so errors are observed), text otherwise.
    assert!(!out.output.answer.is_empty());
    assert!((1..=3).contains(&out.trajectory.steps().len()));
    for step in out.trajectory.steps() {
        assert!(["add", "lookup", "finish"].contains(&step.tool_name.as_str()));
    }
    assert_eq!(
        server.stats().requests_to("/v1/chat/completions"),
        out.trajectory.steps().len() as u64 + 1
    );
}

#[tokio::test]
async fn native_react_runs_tool_calls_from_the_mock_lm_server_in_order() {
    use dspex::testing::Rule;
    let thought = |t: &str| format!("[[ ## next_thought ## ]]\n{t}\n\n[[ ## completed ## ]]");
    let server = dspex::testing::MockLm::builder()
        .rules([
            Rule::contains(
                "starting with the field `[[ ## reasoning ## ]]`",
                "[[ ## reasoning ## ]]\n2 + 3 = 5; Paris.\n\n[[ ## answer ## ]]\n5, Paris\n\n[[ ## completed ## ]]",
            ),
            Rule::contains("[[ ## observation_2 ## ]]", thought("Done.")),
            Rule::contains("[[ ## trajectory ## ]]", thought("Three calls."))
                .with_tool_call("add", json!({"a": 2, "b": 3}))
                .with_tool_call("lookup", json!({"key": "capital of France"}))
                .with_tool_call("search", json!({"q": "x"})),
        ])
        .start()
        .await
        .unwrap();
    let lm = dspex::lm::LM::builder("openai/mock")
        .api_base(server.api_base())
        .api_key("x")
        .cache(false)
        .build()
        .unwrap();
    let agent = ReAct::<QA>::new(tools())
        .unwrap()
        .native_function_calling(true)
        .unwrap()
        .with_max_iters(4)
        .with_config(CallConfig::new().lm(lm));
    let out = agent
        .forward(QAInput {
            question: "What is 2 + 3, and the capital of France?".into(),
        })
        .await
        .unwrap();
    assert_eq!(out.output.answer, "5, Paris");
    let steps: Vec<(&str, Value)> = out
        .trajectory
        .steps()
        .iter()
        .map(|s| (s.tool_name.as_str(), s.observation.clone()))
        .collect();
    assert_eq!(
        steps,
        [
            ("add", json!(5)),
            ("lookup", json!("Paris")),
            (
                "search",
                json!("Execution error in search: no tool has this name")
            ),
            ("finish", json!("Completed.")),
        ]
    );
    // Two steps and the extraction went over HTTP. The mock answers with tool calls only when
    // the request offers tools, so the calls above show the steps sent them natively.
    assert_eq!(server.stats().requests_to("/v1/chat/completions"), 3);
}

#[test]
fn tool_schemas_from_schemars_match_dspys() {
    let fx = fixture("trace_react_two_tools.json");
    for (tool, want) in tools()
        .iter()
        .zip(fx["program"]["tools"].as_array().unwrap())
    {
        assert_eq!(tool.name(), want["name"]);
        assert_eq!(tool.desc(), want["desc"].as_str());
        assert_eq!(Value::Object(tool.args().clone()), want["args"]);
    }
    let _ = json!(null);
}
