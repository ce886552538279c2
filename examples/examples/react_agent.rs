//! A ReAct agent with two tools — a calculator and a fact lookup — answering a question that
//! needs both.
//!
//! Run it with `cargo run --example react_agent`. The LM is dspex's mock
//! server, started in-process on 127.0.0.1 with a scripted trajectory (rules keyed on the
//! prompt: compute first, then look up, then finish, then answer), so the run is the same every
//! time. To run it against a real model, build the `LM` for it where the example
//! builds the mock's (see the comment there).

use dspex::lm::CacheConfig;
use dspex::module::{CallConfig, ReAct, Tool};
use dspex::prelude::*;
use dspex::testing::{MockLm, Rule};
use schemars::JsonSchema;
use serde::Deserialize;
use std::collections::HashMap;
use std::sync::Arc;

/// Answer the question using the tools; give a short answer.
#[signature]
struct AgentQA {
    #[input]
    question: String,
    #[output(desc = "a short answer")]
    answer: String,
}

/// An arithmetic operation.
#[derive(Debug, Clone, Copy, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
enum Op {
    Add,
    Sub,
    Mul,
    Div,
}

/// Computes `a <op> b` exactly (integers; division must be exact).
#[derive(Deserialize, JsonSchema)]
struct Calculate {
    op: Op,
    a: i64,
    b: i64,
}

/// Looks up a fact by its key, e.g. "capital of Japan".
#[derive(Deserialize, JsonSchema)]
struct Lookup {
    key: String,
}

fn calculator() -> Result<Tool, dspex::Error> {
    Ok(Tool::new(
        "calculator",
        |Calculate { op, a, b }| async move {
            let value = match op {
                Op::Add => a.checked_add(b),
                Op::Sub => a.checked_sub(b),
                Op::Mul => a.checked_mul(b),
                Op::Div if b != 0 && a % b == 0 => Some(a / b),
                Op::Div => None,
            };
            value.ok_or_else(|| format!("{a} {op:?} {b} has no exact integer result"))
        },
    )?)
}

fn lookup() -> Result<Tool, dspex::Error> {
    let facts: Arc<HashMap<&str, &str>> = Arc::new(HashMap::from([
        ("capital of japan", "Tokyo"),
        ("capital of france", "Paris"),
        ("boiling point of water", "100 °C at sea level"),
    ]));
    Ok(Tool::new("lookup", move |Lookup { key }| {
        let facts = facts.clone();
        async move {
            facts
                .get(key.trim().to_lowercase().as_str())
                .map(|v| v.to_string())
                .ok_or_else(|| format!("no fact is stored under {key:?}"))
        }
    })?)
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> dspex::Result<()> {
    // The LM: dspex's mock LM server on 127.0.0.1, scripted (above). For a real model, write
    // `let lm = LM::builder("openai/gpt-4o-mini").build()?;` instead (the key from OPENAI_API_KEY;
    // `.api_base(…)` for any OpenAI-compatible server).
    let server = MockLm::builder()
        .rules(scripted_trajectory())
        .start()
        .await
        .map_err(|e| Error::step("starting the mock LM", e))?;
    println!(
        "dspex's mock LM server at {} with a scripted trajectory\n",
        server.url()
    );
    let lm = LM::builder("openai/mock")
        .api_base(server.api_base())
        .cache_config(CacheConfig::memory_only())
        .build()?;
    let agent = ReAct::<AgentQA>::new([calculator()?, lookup()?])?
        .with_max_iters(6)
        .with_config(CallConfig::new().lm(lm.clone()));

    println!("tools, as the model sees them:");
    for tool in agent.as_dyn().tools() {
        println!("  {tool}");
    }

    let question = "What is 17 * 23, and what is the capital of Japan?";
    println!("\nquestion: {question}");
    let out = agent
        .forward(AgentQAInput {
            question: question.into(),
        })
        .await?;
    for step in out.trajectory.steps() {
        println!("\nstep {}:", step.index);
        println!("  thought:     {}", step.thought);
        println!(
            "  tool:        {}({})",
            step.tool_name,
            serde_json::Value::Object(step.tool_args.clone())
        );
        match &step.observation {
            serde_json::Value::String(text) => println!("  observation: {text}"),
            other => println!("  observation: {other}"),
        }
    }
    println!("\nreasoning: {}", out.reasoning);
    println!("answer:    {}", out.output.answer);
    println!(
        "\npredictors an optimizer would tune: {:?}",
        agent
            .named_predictors()
            .into_iter()
            .map(|(name, _)| name)
            .collect::<Vec<_>>()
    );
    Ok(())
}

/// The scripted trajectory: each rule matches the last user message of one kind of call. The
/// extraction call is recognised by its reminder (it asks for `reasoning` first); the steps by
/// how far the trajectory has got.
fn scripted_trajectory() -> Vec<Rule> {
    let step = |thought: &str, tool: &str, args: &str| {
        format!(
            "[[ ## next_thought ## ]]\n{thought}\n\n[[ ## next_tool_name ## ]]\n{tool}\n\n[[ ## next_tool_args ## ]]\n{args}\n\n[[ ## completed ## ]]"
        )
    };
    vec![
        Rule::contains(
            "starting with the field `[[ ## reasoning ## ]]`",
            "[[ ## reasoning ## ]]\nThe calculator gave 17 * 23 = 391 and the lookup said the capital of Japan is Tokyo.\n\n[[ ## answer ## ]]\n391; Tokyo\n\n[[ ## completed ## ]]",
        ),
        Rule::contains(
            "[[ ## observation_1 ## ]]",
            step("I have both facts now.", "finish", "{}"),
        ),
        Rule::contains(
            "[[ ## observation_0 ## ]]",
            step(
                "Now I need the capital of Japan.",
                "lookup",
                r#"{"key": "capital of Japan"}"#,
            ),
        ),
        Rule::contains(
            "[[ ## trajectory ## ]]",
            step(
                "First compute 17 * 23 with the calculator.",
                "calculator",
                r#"{"op": "mul", "a": 17, "b": 23}"#,
            ),
        ),
    ]
}
