//! Optimizing a program: evaluate a ChainOfThought QA program, compile it with BootstrapFewShot
//! and with MIPROv2 (light, run as a job with progress), evaluate each, and save the best in
//! DSPy's JSON state format.
//!
//! Run it with `cargo run --example optimize`. The LM is dspex's mock
//! server, started in-process and scripted so that few-shot demos help: it answers a question
//! right when the prompt holds demos, and only some questions without. To optimize against a
//! real model, build the `LM` for it where the example builds the mock's (see the comment there).

use dspex::lm::CacheConfig;
use dspex::module::ChainOfThought;
use dspex::prelude::*;
use dspex::runtime::evaluate::{Evaluate, answer_exact_match};
use dspex::runtime::optimize::{BootstrapFewShot, MIPROv2, Optimizer};
use dspex::settings::{Settings, configure};
use dspex::testing::{MockLm, Rule};
use dspex_examples::regex_escape;
use std::sync::Arc;

/// Answer the arithmetic question with a number.
#[signature]
struct Arithmetic {
    #[input]
    question: String,
    #[output(desc = "a number")]
    answer: String,
}

fn dataset() -> Vec<Example> {
    (0..24)
        .map(|i| {
            let (a, b) = (i % 7 + 2, i / 3 + 3);
            Example::new()
                .with("question", format!("What is {a} plus {b}?"))
                .with("answer", (a + b).to_string())
                .with_inputs(["question"])
        })
        .collect()
}

/// The scripted mock: with demos in the prompt (an assistant turn before the question) every
/// answer is right; without, only every third question is.
fn rules(data: &[Example]) -> dspex::Result<Vec<Rule>> {
    let mut rules = Vec::new();
    for (i, ex) in data.iter().enumerate() {
        let question = ex.get_str("question").unwrap_or_default();
        let answer = ex.get_str("answer").unwrap_or_default();
        let right = format!(
            "[[ ## reasoning ## ]]\nAdding the two numbers gives {answer}.\n\n[[ ## answer ## ]]\n{answer}\n\n[[ ## completed ## ]]"
        );
        let pattern = format!(
            // The last user turn (the only one with "Respond with") asks this question.
            r"(?s)\nassistant:\n.*\nuser:\n\[\[ ## question ## \]\]\n{}\n\nRespond with [^\n]*\z",
            regex_escape(question)
        );
        rules.push(
            Rule::conversation_regex(&pattern, right.as_str())
                .map_err(|e| dspex::Error::step("scripting the mock LM", e))?,
        );
        let zero_shot = if i % 3 == 0 {
            right
        } else {
            "[[ ## reasoning ## ]]\nThe numbers look large.\n\n[[ ## answer ## ]]\n100\n\n[[ ## completed ## ]]".to_string()
        };
        rules.push(Rule::contains(
            format!("[[ ## question ## ]]\n{question}\n"),
            zero_shot,
        ));
    }
    Ok(rules)
}

#[tokio::main]
async fn main() -> dspex::Result<()> {
    let data = dataset();
    let (trainset, devset) = data.split_at(12);
    // The LM: dspex's mock LM server on 127.0.0.1, scripted (above). For a real model, write
    // `let lm = LM::builder("openai/gpt-4o-mini").build()?;` instead (the key from OPENAI_API_KEY;
    // `.api_base(…)` for any OpenAI-compatible server).
    let server = MockLm::builder()
        .rules(rules(&data)?)
        .start()
        .await
        .map_err(|e| Error::step("starting the mock LM", e))?;
    println!(
        "dspex's mock LM server at {} (scripted: demos help)\n",
        server.url()
    );
    let lm = LM::builder("openai/mock")
        .api_base(server.api_base())
        .cache_config(CacheConfig::memory_only())
        .build()?;
    // Process-wide: the optimization job below runs on its own task.
    configure(Settings::new().lm(lm.clone()));

    let evaluate = Evaluate::new(devset.to_vec(), answer_exact_match()).num_threads(16);
    let student = ChainOfThought::<Arithmetic>::new();
    let before = evaluate.call(&student).await?;
    println!(
        "before optimizing:      {:>6.2} on {} dev examples",
        before.score,
        devset.len()
    );

    let bootstrap = BootstrapFewShot::new()
        .metric(answer_exact_match())
        .max_bootstrapped_demos(4)
        .max_labeled_demos(4);
    let bootstrapped = bootstrap.compile(student.clone(), trainset).await?;
    let after_bootstrap = evaluate.call(&bootstrapped).await?;
    println!(
        "after BootstrapFewShot: {:>6.2} ({} demos)",
        after_bootstrap.score,
        bootstrapped.params().demos.len()
    );

    let dir = std::env::temp_dir().join("dspex-optimize-example");
    std::fs::create_dir_all(&dir)
        .map_err(|e| dspex::Error::step("creating the output folder", e))?;
    let log = dir.join("mipro_trials.jsonl");
    let mut job = Arc::new(MIPROv2::new(answer_exact_match())).spawn(
        student.clone(),
        trainset.to_vec(),
        Some(&log),
    )?;
    let mut last_phase = String::new();
    while let Some(progress) = job.next_progress().await {
        let new_phase = progress.phase != last_phase;
        last_phase.clone_from(&progress.phase);
        if !progress.done && (new_phase || progress.trials % 4 == 0) {
            println!(
                "  MIPROv2 {:<24} trials {:>2}{} best {}",
                progress.phase,
                progress.trials,
                progress
                    .total_trials
                    .map(|t| format!("/{t}"))
                    .unwrap_or_default(),
                progress
                    .best_score
                    .map(|s| format!("{s:.2}"))
                    .unwrap_or_else(|| "-".into())
            );
        }
    }
    let tuned = job.wait().await?;
    let after_mipro = evaluate.call(&tuned).await?;
    println!(
        "after MIPROv2 (light):  {:>6.2} ({} demos, instructions: {:?})",
        after_mipro.score,
        tuned.params().demos.len(),
        tuned.params().instructions()
    );

    let (best, score) = if after_mipro.score >= after_bootstrap.score {
        (tuned, after_mipro.score)
    } else {
        (bootstrapped, after_bootstrap.score)
    };
    let path = dir.join("arithmetic_program.json");
    best.save(&path)?;
    println!(
        "\nsaved the best program ({score:.2}) to {}",
        path.display()
    );
    println!("MIPROv2's trials are in {}", log.display());
    let report = dir.join("mipro_report.html");
    dspex::optimize::write_report(&log, &report)?;
    println!("its report (open it in a browser): {}", report.display());
    Ok(())
}
