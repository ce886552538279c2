//! dspex quickstart: declare signatures three ways, look at the metadata adapters and optimizers
//! see, compose a typed program, move data between typed structs and DSPy-style examples, and run
//! a typed ChainOfThought program on an LM.
//!
//! Run it with `cargo run --example quickstart`. With no configuration it talks to dspex's mock
//! LM server, started in-process on 127.0.0.1; set `DSPEX_LM=openai/<model>` (and
//! `OPENAI_API_KEY`, or `DSPEX_API_BASE` for any OpenAI-compatible server) to use a real one.

use dspex::lm::track_usage;
use dspex::prelude::*;
use dspex::testing::MockLm;
use dspex::{FieldSpec, TypeSpec};

/// Answer questions with short factoid answers.
#[signature]
struct FactoidQA {
    #[input(desc = "a trivia question")]
    question: String,
    #[input(desc = "passages that may contain the answer")]
    context: Vec<String>,
    #[output(desc = "often 1-5 words")]
    answer: String,
    #[output]
    confidence: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, LiteralEnum)]
#[literal(rename_all = "lowercase")]
enum Sentiment {
    Positive,
    Negative,
    Neutral,
}

#[signature("sentence -> sentiment: Sentiment, topics: list[str]")]
struct Classify;

sig!(GenerateQuery: "question -> search_query", instructions = "Write a search query.");

fn print_signature(title: &str, sig: &DynSignature) {
    println!("== {title}: {}", sig.signature_string());
    println!("   instructions: {:?}", sig.instructions());
    for f in sig.fields() {
        println!(
            "   {:<6} {:<12} {:<16} {:<22} rust: {:<14} desc: {}",
            f.role().as_str(),
            f.name(),
            f.prefix(),
            f.dspy_type(),
            f.rust_type(),
            f.description().unwrap_or("-"),
        );
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> dspex::Result<()> {
    // 1. Signatures, as the adapters and optimizers will see them.
    print_signature("FactoidQA (field form)", FactoidQA::signature());
    print_signature("Classify (string form)", Classify::signature());
    print_signature("GenerateQuery (sig!)", GenerateQuery::signature());

    // 2. The same metadata from a string at run time, in DSPy's spelling.
    let dynamic =
        DynSignature::parse("question: str, context: list[str] -> answer: str, confidence: float")?;
    println!(
        "\nrun-time `{dynamic}` has the same fields as FactoidQA: {}",
        dynamic
            .fields()
            .map(FieldSpec::name)
            .eq(FactoidQA::signature().fields().map(FieldSpec::name))
    );
    // ChainOfThought adds `reasoning` as the first output, exactly as DSPy does.
    let cot = dynamic.prepend(FieldSpec::output("reasoning", TypeSpec::Str))?;
    println!("with reasoning: {}", cot.signature_string());
    println!(
        "as JSON: {}",
        serde_json::to_string(Classify::signature()).unwrap_or_default()
    );

    // 3. A typed program: the compiler checks that each step takes what the previous returns.
    let retrieve = program_fn(|q: GenerateQueryInput| async move {
        Ok(FactoidQAInput {
            context: vec![format!("Passage about {}.", q.question)],
            question: q.question,
        })
    });
    let answer = program_fn(|input: FactoidQAInput| async move {
        Ok(FactoidQAOutput {
            answer: format!("{} passage(s) read", input.context.len()),
            confidence: 0.5,
        })
    });
    let pipeline = retrieve.then(answer);
    let out = pipeline
        .forward(GenerateQueryInput {
            question: "Why is the sky blue?".into(),
        })
        .await?;
    println!("\npipeline output: {out:?}");

    // 4. Typed structs and DSPy-style examples convert both ways.
    let example = Example::from_typed(&FactoidQAInput {
        question: "Who wrote Hamlet?".into(),
        context: vec!["Shakespeare wrote plays.".into()],
    })?
    .with("answer", "Shakespeare")
    .with("confidence", 0.9)
    .with_inputs(["question", "context"]);
    println!("example: {example}");
    let labels: FactoidQAOutput = example.labels()?.to_typed()?;
    println!("its labels as the typed output: {labels:?}");

    // 5. A typed ChainOfThought program on a real LM client: DSPy's exact prompt goes over HTTP
    //    (cache, retries, limits and usage accounting included) and the answer comes back typed.
    //    The LM is `DSPEX_LM` (e.g. `openai/gpt-4o-mini`, its key from `OPENAI_API_KEY`; any
    //    OpenAI-compatible server at `DSPEX_API_BASE`), or else dspex's mock LM server, started
    //    here on 127.0.0.1 (`dspex mock-lm` serves the same from the command line).
    let mut server = None;
    let lm = match std::env::var("DSPEX_LM") {
        Ok(model) => match std::env::var("DSPEX_API_BASE") {
            Ok(base) => LM::builder(model).api_base(base).build()?,
            Err(_) => LM::builder(model).build()?,
        },
        Err(_) => {
            let mock = MockLm::start()
                .await
                .map_err(|e| Error::step("starting the mock LM", e))?;
            println!(
                "\nno DSPEX_LM set: using dspex's mock LM server at {}",
                mock.url()
            );
            let lm = LM::builder("openai/mock")
                .api_base(mock.api_base())
                .build()?;
            server = Some(mock);
            lm
        }
    };
    let qa = ChainOfThought::<FactoidQA>::new();
    let input = FactoidQAInput {
        question: "Why is the sky blue?".into(),
        context: vec!["Rayleigh scattering affects short wavelengths most.".into()],
    };
    let settings = Settings::new().lm(lm.clone());
    let (out, usage) = track_usage(with_settings(settings, qa.forward(input))).await;
    let out = out?;
    println!("\nChainOfThought<FactoidQA> on {}:", lm.model());
    println!("  reasoning:  {}", out.reasoning);
    println!("  answer:     {}", out.answer); // Reasoned<FactoidQAOutput> derefs to the outputs
    println!("  confidence: {}", out.confidence);
    println!(
        "  tokens used: {}; predictor names for optimizers: {:?}",
        usage.total().usage.total_tokens,
        qa.named_predictors()
            .into_iter()
            .map(|(n, _)| n)
            .collect::<Vec<_>>()
    );
    println!("\nThe exact prompt sent (DSPy's ChatAdapter format):");
    print!("{}", lm.inspect_history(1));
    if let Some(server) = server {
        server.shutdown().await;
    }
    Ok(())
}
