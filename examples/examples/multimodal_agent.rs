//! A typed multimodal agent: it takes an image (a sketch of a chart) and the chat so far, calls
//! `#[tool]` functions through ReAct's native function-calling mode (the tools go out as the
//! request's `tools`, the calls come back as the response's tool calls), and returns Python
//! code as a `Code<lang::Python>`.
//!
//! Run it with `cargo run --example multimodal_agent`. With no configuration it talks to
//! dspex's mock LM server, started in-process on 127.0.0.1 with a scripted trajectory (rules
//! keyed on the prompt; the first step answers with two native tool calls), so the run is the
//! same every time. Set `DSPEX_LM=openai/<model>` (a vision model with function calling, e.g.
//! `openai/gpt-4o-mini`; its key from `OPENAI_API_KEY`, or `DSPEX_API_BASE` for any
//! OpenAI-compatible server) to run it on a real one.

use dspex::lang;
use dspex::lm::CacheConfig;
use dspex::module::{CallConfig, ReAct};
use dspex::prelude::*;
use dspex::testing::{MockLm, Rule};
use serde_json::{Value, json};

/// Write a self-contained Python (matplotlib) script that draws the chart in the sketch,
/// following what the user asked for in the conversation.
#[signature]
struct SketchToCode {
    #[input(desc = "a hand-drawn sketch of the chart")]
    sketch: Image,
    #[input]
    history: History,
    #[input]
    request: String,
    #[output(desc = "a runnable matplotlib script")]
    code: Code<lang::Python>,
}

/// The colours of a company's style guide, as hex codes, main colour first.
#[tool]
fn brand_palette(company: String) -> Result<Vec<String>, String> {
    match company.trim().to_lowercase().as_str() {
        "acme" => Ok(vec!["#0B3D91".into(), "#FC3D21".into(), "#F2F2F2".into()]),
        other => Err(format!("no style guide is stored for {other:?}")),
    }
}

/// The figure size (inches) and resolution a company's reports use for a kind of figure.
#[tool]
fn figure_spec(company: String, kind: String) -> Result<Value, String> {
    match (
        company.trim().to_lowercase().as_str(),
        kind.trim().to_lowercase().as_str(),
    ) {
        ("acme", "bar chart" | "bar") => Ok(json!({"width": 8, "height": 4.5, "dpi": 150})),
        ("acme", other) => Err(format!("the style guide has no spec for {other:?} figures")),
        (other, _) => Err(format!("no style guide is stored for {other:?}")),
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> dspex::Result<()> {
    // The LM: `DSPEX_LM` if set, else dspex's mock LM server on 127.0.0.1, scripted below.
    let mut server = None;
    let lm = match std::env::var("DSPEX_LM") {
        Ok(model) => match std::env::var("DSPEX_API_BASE") {
            Ok(base) => LM::builder(model).api_base(base).build()?,
            Err(_) => LM::builder(model).build()?,
        },
        Err(_) => {
            let mock = MockLm::builder()
                .rules(scripted_trajectory())
                .start()
                .await
                .map_err(|e| Error::step("starting the mock LM", e))?;
            println!(
                "no DSPEX_LM set: using dspex's mock LM server at {} with a scripted trajectory\n",
                mock.url()
            );
            let lm = LM::builder("openai/mock")
                .api_base(mock.api_base())
                .cache_config(CacheConfig::memory_only())
                .build()?;
            server = Some(mock);
            lm
        }
    };

    let agent = ReAct::<SketchToCode>::new([brand_palette_tool(), figure_spec_tool()])?
        .native_function_calling(true)?
        .with_max_iters(5)
        .with_config(CallConfig::new().lm(lm));
    println!("tools, offered natively as the request's `tools`:");
    for tool in agent.as_dyn().tools() {
        println!("  {}", tool.name());
    }

    // The chat so far: one earlier turn of this program (its inputs and outputs).
    let mut history = History::new();
    history
        .push(json!({
            "request": "Who is this chart for?",
            "code": "# For ACME's quarterly report: use ACME's style guide.",
        }))
        .map_err(|e| Error::step("building the history", e))?;
    // The sketch: a PNG in `examples/data`, sent as a `data:` URI image part.
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/data/chart_sketch.png");
    let sketch = Image::from_file(path).map_err(|e| Error::step("reading the sketch", e))?;
    let request = "Turn my sketch into a matplotlib script, in the company's style.";
    println!(
        "\nimage:   {} ({}, {} bytes)",
        path.rsplit('/').next().unwrap_or(path),
        sketch.mime_type().unwrap_or("unknown type"),
        sketch.bytes().map_or(0, |b| b.len())
    );
    println!("history: {} earlier turn(s)", history.messages().len());
    println!("request: {request}");

    let out = agent
        .forward(SketchToCodeInput {
            sketch,
            history,
            request: request.into(),
        })
        .await?;
    for step in out.trajectory.steps() {
        // One entry per tool call; calls the model made in the same turn share its thought.
        println!("\ncall {}:", step.index);
        if !step.thought.is_empty() {
            println!("  thought:     {}", step.thought);
        }
        println!(
            "  tool call:   {}({})",
            step.tool_name,
            Value::Object(step.tool_args.clone())
        );
        match &step.observation {
            Value::String(text) => println!("  observation: {text}"),
            other => println!("  observation: {other}"),
        }
    }
    println!("\nreasoning: {}", out.reasoning);
    println!("code (Code<lang::Python>):\n{}", out.output.code.code());
    drop(server);
    Ok(())
}

/// The scripted trajectory: each rule matches the last user message of one kind of call. The
/// extraction is recognised by its reminder (it asks for `reasoning` first); the first step
/// (empty trajectory) answers with two native tool calls; the next, which sees both
/// observations, calls nothing, which ends the loop.
fn scripted_trajectory() -> Vec<Rule> {
    let thought = |text: &str| format!("[[ ## next_thought ## ]]\n{text}\n\n[[ ## completed ## ]]");
    vec![
        Rule::contains(
            "starting with the field `[[ ## reasoning ## ]]`",
            "[[ ## reasoning ## ]]\nThe sketch is a bar chart of revenue by quarter; ACME's palette and \
             figure spec come from the tools.\n\n[[ ## code ## ]]\n```python\n\
             import matplotlib.pyplot as plt\n\n\
             quarters = [\"Q1\", \"Q2\", \"Q3\", \"Q4\"]\n\
             revenue = [12, 15, 11, 18]\n\n\
             fig, ax = plt.subplots(figsize=(8, 4.5), dpi=150)\n\
             fig.patch.set_facecolor(\"#F2F2F2\")\n\
             ax.bar(quarters, revenue, color=[\"#0B3D91\", \"#0B3D91\", \"#0B3D91\", \"#FC3D21\"])\n\
             ax.set_title(\"Revenue by quarter\")\n\
             ax.set_ylabel(\"Revenue (M$)\")\n\
             fig.savefig(\"revenue.png\")\n```\n\n[[ ## completed ## ]]",
        ),
        Rule::contains(
            "[[ ## observation_1 ## ]]",
            thought("I have ACME's palette and figure spec; the script can be written."),
        ),
        Rule::contains(
            "[[ ## trajectory ## ]]",
            thought(
                "The history says the chart is for ACME: get its palette and its bar-chart spec.",
            ),
        )
        .with_tool_call("brand_palette", json!({"company": "ACME"}))
        .with_tool_call(
            "figure_spec",
            json!({"company": "ACME", "kind": "bar chart"}),
        ),
    ]
}
