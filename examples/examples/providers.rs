//! One typed program against every provider: the same `ChainOfThought` signature sent through
//! OpenAI's chat and Responses APIs, Azure OpenAI, Anthropic's Messages API, Gemini and an
//! OpenAI-compatible host, printing each answer with its tokens and estimated cost.
//!
//! Run it with `cargo run --example providers`. Each entry of `DSPEX_LM` (comma-separated DSPy
//! model strings; `responses:` before one calls it through the Responses API) is used as it is
//! when its provider is configured — its key (and base) in the provider's variables, e.g.
//! `ANTHROPIC_API_KEY`, see the README's provider table — and otherwise goes to dspex's mock LM
//! server, started here on 127.0.0.1, which speaks every one of these protocols. With no
//! `DSPEX_LM`, the default list is used, all on the mock unless keys are set.

use dspex::lm::{LM, LmBuilder, ModelType};
use dspex::prelude::*;
use dspex::testing::{MockLm, MockLmServer};

/// Answer questions with short factoid answers.
#[signature]
struct Factoid {
    #[input]
    question: String,
    #[output(desc = "often 1-5 words")]
    answer: String,
}

/// The models tried when `DSPEX_LM` is not set.
const DEFAULT_MODELS: &str = "openai/gpt-4o-mini, responses:openai/gpt-4o-mini, \
    azure/gpt-4o-mini, anthropic/claude-sonnet-4-5, gemini/gemini-2.5-flash, \
    groq/llama-3.3-70b-versatile";

/// The LM for one entry: the real provider when it is configured, else the mock server's
/// route for the provider's protocol. Returns the LM and where it goes.
fn lm_for(entry: &str, mock: &MockLmServer) -> dspex::Result<(LM, &'static str)> {
    let (responses, model) = match entry.strip_prefix("responses:") {
        Some(model) => (true, model),
        None => (false, entry),
    };
    // Uncached, so every run shows what each provider used and cost.
    let typed = |builder: LmBuilder| {
        let builder = builder.cache(false);
        if responses {
            builder.model_type(ModelType::Responses)
        } else {
            builder
        }
    };
    if let Ok(lm) = typed(LM::builder(model)).build() {
        return Ok((lm, "provider"));
    }
    let prefix = model.split_once('/').map_or("openai", |(p, _)| p);
    let builder = typed(LM::builder(model)).api_key("mock-key");
    let builder = match prefix {
        "azure" => builder.api_base(mock.url()).api_version("2024-10-21"),
        "gemini" => builder.api_base(format!("{}/v1beta", mock.url())),
        _ => builder.api_base(mock.api_base()),
    };
    Ok((builder.build()?, "mock"))
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> dspex::Result<()> {
    let mock = MockLm::start()
        .await
        .map_err(|e| Error::step("starting the mock LM", e))?;
    let models = std::env::var("DSPEX_LM").unwrap_or_else(|_| DEFAULT_MODELS.to_string());
    let program = ChainOfThought::<Factoid>::new();
    println!(
        "ChainOfThought<Factoid> on each provider (mock server at {})\n",
        mock.url()
    );
    for entry in models.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let (lm, place) = lm_for(entry, &mock)?;
        let out = with_settings(
            Settings::new().lm(lm.clone()),
            program.forward(FactoidInput {
                question: "What is the capital of France?".into(),
            }),
        )
        .await;
        let usage = lm.usage().total();
        let cost = usage
            .cost_usd
            .map_or("unknown".to_string(), |c| format!("${c:.6}"));
        match out {
            Ok(out) => println!(
                "{entry} ({place}, {}):\n  answer:    {}\n  reasoning: {}\n  tokens:    {} in, {} out\n  cost:      {cost}\n",
                lm.endpoint(),
                out.answer,
                out.reasoning,
                usage.usage.prompt_tokens,
                usage.usage.completion_tokens,
            ),
            Err(e) => println!("{entry} ({place}): failed: {e}\n"),
        }
    }
    Ok(())
}
