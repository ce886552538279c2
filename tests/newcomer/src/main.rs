use dspex::prelude::*;

#[derive(Debug, Clone, Copy, PartialEq, LiteralEnum)]
#[literal(rename_all = "lowercase")]
enum Sentiment {
    Positive,
    Negative,
    Neutral,
}

/// Classify the sentiment of a sentence.
#[signature]
struct Classify {
    #[input]
    sentence: String,
    #[output]
    sentiment: Sentiment,
    #[output(desc = "between 0 and 1")]
    confidence: f64,
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    // OpenAI's API with OPENAI_API_KEY, or any OpenAI-compatible server at OPENAI_API_BASE
    // (`dspex mock-lm` prints its address).
    let lm = LM::builder("openai/gpt-4o-mini").build()?;
    configure(Settings::new().lm(lm));

    let classify = ChainOfThought::<Classify>::new();
    let out = classify
        .forward(ClassifyInput {
            sentence: "This crate was a joy to set up.".into(),
        })
        .await?;
    println!("{:?} ({:.2})", out.sentiment, out.confidence);
    println!("reasoning: {}", out.reasoning);
    Ok(())
}
