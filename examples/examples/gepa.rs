//! GEPA on a two-step program: `extract` pulls the numbers out of a word problem, `solve` adds
//! them. A metric with textual feedback says what went wrong; GEPA reflects on that feedback
//! (with a reflection LM) and rewrites each predictor's instructions, keeping a Pareto front of
//! candidates over the validation examples. The run is a job with a JSONL log, and the example
//! writes its report (open it in a browser).
//!
//! Run it with `cargo run --example gepa`. The LM is dspex's mock server, scripted so that the
//! feedback helps: `extract` writes spelled-out numbers as digits only when its instructions ask
//! for digits, and `solve` answers with the bare sum only when its instructions ask for that (or
//! for the items whose numbers were spelled out); the reflection LM proposes exactly those
//! instructions. To run it against a real model, build the `LM`s where the example builds the
//! mock's.

use dspex::lm::CacheConfig;
use dspex::prelude::*;
use dspex::runtime::evaluate::{Evaluate, metric_fn};
use dspex::runtime::optimize::gepa::{ScoreWithFeedback, feedback_metric_fn};
use dspex::settings::{Settings, configure};
use dspex::testing::{MockLm, Rule};
use dspex_examples::regex_escape;
use std::sync::Arc;

sig!(WordProblem: "question -> answer");
sig!(Extract: "question -> numbers", instructions = "Pull out the two numbers.");
sig!(Solve: "numbers -> answer", instructions = "Add the numbers.");

#[derive(Module, Clone)]
struct TwoStep {
    extract: Predict<Extract>,
    solve: Predict<Solve>,
}

impl Program for TwoStep {
    type Input = WordProblemInput;
    type Output = WordProblemOutput;

    async fn forward(&self, input: WordProblemInput) -> dspex::Result<WordProblemOutput> {
        let numbers = self
            .extract
            .forward(ExtractInput {
                question: input.question,
            })
            .await?
            .numbers;
        let answer = self.solve.forward(SolveInput { numbers }).await?.answer;
        Ok(WordProblemOutput { answer })
    }
}

const WORDS: [&str; 10] = [
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine",
];

/// Even items spell their numbers out (only `extract`'s fix helps them); odd items write
/// digits but need `solve`'s fix. No single rewrite gets everything right: the Pareto front
/// keeps one candidate for each half, and a merge joins them.
fn dataset() -> Vec<Example> {
    (0..16)
        .map(|i| {
            let (a, b) = (i % 9 + 1, i / 2 + 1);
            let question = if i % 2 == 0 {
                format!(
                    "Ann has {} apples and buys {} more. How many now?",
                    WORDS[a], WORDS[b]
                )
            } else {
                format!("Ann has {a} apples and buys {b} more. How many now?")
            };
            Example::new()
                .with("question", question)
                .with("answer", (a + b).to_string())
                .with("digits", format!("{a}, {b}"))
                .with("spelled", i % 2 == 0)
                .with_inputs(["question"])
        })
        .collect()
}

const DIGITS_HINT: &str = "Write the two numbers as digits, separated by a comma.";
const SUM_HINT: &str = "Answer with the sum as a bare number.";

/// The mock's script (first matching rule answers).
fn rules(data: &[Example]) -> dspex::Result<Vec<Rule>> {
    let script = |e| dspex::Error::step("scripting the mock LM", e);
    let field =
        |name: &str, value: &str| format!("[[ ## {name} ## ]]\n{value}\n\n[[ ## completed ## ]]");
    let mut rules = Vec::new();
    // The reflection LM (DSPy's ProposeInstruction, through JSONAdapter): read the current
    // instruction in the prompt, answer with the fix the feedback asks for.
    for (current, better) in [
        (
            "Pull out the two numbers.",
            format!("Pull out the two numbers. {DIGITS_HINT}"),
        ),
        ("Add the numbers.", format!("Add the numbers. {SUM_HINT}")),
    ] {
        let pattern = format!(
            r"(?s)I provided an assistant with instructions.*\[\[ ## current_instruction ## \]\]\n{}\n",
            regex_escape(current)
        );
        let answer = serde_json::json!({ "new_instruction": better }).to_string();
        rules.push(Rule::conversation_regex(&pattern, answer.as_str()).map_err(script)?);
    }
    for ex in data {
        let question = ex.get_str("question").unwrap_or_default();
        let digits = ex.get_str("digits").unwrap_or_default();
        let answer = ex.get_str("answer").unwrap_or_default();
        let spelled = ex.get("spelled").and_then(|v| v.as_bool()).unwrap_or(false);
        let on_question = format!("[[ ## question ## ]]\n{question}\n");
        if spelled {
            // extract: digits only when its instructions ask for them.
            let asked = format!(
                r"(?s){}.*\[\[ ## question ## \]\]\n{}\n",
                regex_escape(DIGITS_HINT),
                regex_escape(question)
            );
            rules.push(
                Rule::conversation_regex(&asked, field("numbers", digits).as_str())
                    .map_err(script)?,
            );
            let words: Vec<&str> = digits
                .split(", ")
                .map(|d| WORDS[d.parse::<usize>().unwrap_or(0)])
                .collect();
            rules.push(Rule::contains(
                on_question,
                field("numbers", &words.join(" and ")),
            ));
            // solve adds digits it is given.
            rules.push(Rule::contains(
                format!("[[ ## numbers ## ]]\n{digits}\n"),
                field("answer", answer),
            ));
        } else {
            rules.push(Rule::contains(on_question, field("numbers", digits)));
            // solve: the bare sum only when its instructions ask for it.
            let asked = format!(
                r"(?s){}.*\[\[ ## numbers ## \]\]\n{}\n",
                regex_escape(SUM_HINT),
                regex_escape(digits)
            );
            rules.push(
                Rule::conversation_regex(&asked, field("answer", answer).as_str())
                    .map_err(script)?,
            );
            rules.push(Rule::contains(
                format!("[[ ## numbers ## ]]\n{digits}\n"),
                field("answer", &format!("The total is {answer}.")),
            ));
        }
    }
    Ok(rules)
}

#[tokio::main]
async fn main() -> dspex::Result<()> {
    let data = dataset();
    let (trainset, valset) = data.split_at(10);
    let server = MockLm::builder()
        .rules(rules(&data)?)
        .start()
        .await
        .map_err(|e| dspex::Error::step("starting the mock LM", e))?;
    // For a real model: `LM::builder("openai/gpt-4o-mini").build()?` (the key from
    // OPENAI_API_KEY), and a strong model as the reflection LM.
    let lm = LM::builder("openai/mock")
        .api_base(server.api_base())
        .cache_config(CacheConfig::memory_only())
        .build()?;
    configure(Settings::new().lm(lm.clone()));

    // Feedback that says what was wrong, as a person grading the runs would.
    let metric = feedback_metric_fn(
        "exact sum",
        |gold: &Example, pred: &Prediction, _trace, _focus| {
            let expected = gold.get_str("answer").unwrap_or_default();
            let got = pred.get_str("answer").unwrap_or_default();
            if got == expected {
                ScoreWithFeedback::new(1.0, "Correct.")
            } else {
                ScoreWithFeedback::new(
                    0.0,
                    format!(
                        "Expected the bare number {expected}, got {got:?}. The numbers should be extracted as digits ({}) and the answer should be the sum alone.",
                        gold.get_str("digits").unwrap_or_default()
                    ),
                )
            }
        },
    );
    let exact = metric_fn("exact sum", |gold: &Example, pred: &Prediction| {
        gold.get_str("answer") == pred.get_str("answer")
    });
    let evaluate = Evaluate::new(valset.to_vec(), exact).num_threads(8);
    let student = TwoStep {
        extract: Predict::new(),
        solve: Predict::new(),
    };
    let before = evaluate.call(&student).await?;
    println!(
        "before GEPA: {:>6.2} on {} validation examples",
        before.score,
        valset.len()
    );

    let dir = std::env::temp_dir().join("dspex-gepa-example");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(|e| dspex::Error::step("creating the run folder", e))?;
    let log = dir.join("events.jsonl");
    let gepa = GEPA::new(metric)
        .max_metric_calls(120)
        .reflection_lm(lm)
        .reflection_minibatch_size(3)
        .num_threads(8)
        .valset(valset.to_vec())
        .log_dir(&dir);
    let mut job = Arc::new(gepa).spawn(student, trainset.to_vec(), Some(&log))?;
    let mut last = String::new();
    while let Some(progress) = job.next_progress().await {
        if progress.phase != last && !progress.done {
            println!("  {}", progress.phase);
            last.clone_from(&progress.phase);
        }
    }
    let report = dir.join("report.html");
    job.report(&report)?;
    let tuned = job.wait().await?;
    let after = evaluate.call(&tuned).await?;
    println!("after GEPA:  {:>6.2}", after.score);
    for (name, params) in tuned.named_predictors() {
        println!("  {name}: {:?}", params.instructions());
    }
    println!("the run's log and state: {}", dir.display());
    println!("its report (open it in a browser): {}", report.display());
    Ok(())
}
