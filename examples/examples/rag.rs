//! Multi-hop retrieval-augmented generation: write a search query, retrieve, write a follow-up
//! query from what was found, retrieve again, then answer from everything retrieved. The corpus
//! (`examples/data/rag_corpus.jsonl`) is indexed on disk with the embedded BM25 index; the program
//! is evaluated on a dev set, compiled with BootstrapFewShot on a train set (its demos hold whole
//! multi-hop traces: both queries and the answer), evaluated again, and saved in DSPy's format.
//!
//! Run it with `cargo run --example rag`. The LM is dspex's mock server,
//! started in-process and scripted from `examples/data/rag_qa.jsonl`: it writes the queries a
//! capable model would write (the `hops`), answers only when the passage holding the answer is in
//! the prompt, and answers tersely (as the metric wants) when the prompt holds demos, but only for
//! every other question without. To run it against a real model, build the `LM` for it where
//! the example builds the mock's (see the comment there).

use dspex::lm::CacheConfig;
use dspex::module::{ChainOfThought, Predict};
use dspex::prelude::*;
use dspex::retrieve::{Bm25Index, BuildOptions, Retrieve};
use dspex::runtime::evaluate::{Evaluate, answer_exact_match};
use dspex::runtime::optimize::{BootstrapFewShot, Optimizer};
use dspex::settings::{Settings, configure};
use dspex::testing::{MockLm, Rule};
use dspex_examples::regex_escape;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// Write a simple search query that will help answer a complex question.
#[signature]
struct GenerateSearchQuery {
    #[input(desc = "may contain relevant facts")]
    context: Vec<String>,
    #[input]
    question: String,
    #[output]
    query: String,
}

/// Answer questions with short factoid answers.
#[signature]
struct GenerateAnswer {
    #[input(desc = "may contain relevant facts")]
    context: Vec<String>,
    #[input]
    question: String,
    #[output(desc = "often between 1 and 5 words")]
    answer: String,
}

/// The program: one query writer per hop, a retriever, an answerer. `#[derive(Module)]` names
/// the predictors as DSPy would (`generate_query[0]`, `generate_query[1]`,
/// `generate_answer.predict`) for optimizers and saved state; the retriever has no parameters.
#[derive(Module, Clone)]
struct MultiHop {
    generate_query: Vec<Predict<GenerateSearchQuery>>,
    retrieve: Retrieve<Bm25Index>,
    generate_answer: ChainOfThought<GenerateAnswer>,
}

#[derive(Serialize, Deserialize)]
struct Question {
    question: String,
}

#[derive(Serialize, Deserialize)]
struct Answer {
    context: Vec<String>,
    answer: String,
}

impl MultiHop {
    fn new(index: Bm25Index, hops: usize, passages_per_hop: usize) -> Self {
        MultiHop {
            generate_query: (0..hops).map(|_| Predict::new()).collect(),
            retrieve: Retrieve::new(index, passages_per_hop),
            generate_answer: ChainOfThought::new(),
        }
    }
}

impl Program for MultiHop {
    type Input = Question;
    type Output = Answer;

    async fn forward(&self, input: Question) -> dspex::Result<Answer> {
        let mut context: Vec<String> = Vec::new();
        for hop in &self.generate_query {
            let query = hop
                .forward(GenerateSearchQueryInput {
                    context: context.clone(),
                    question: input.question.clone(),
                })
                .await?
                .query;
            for passage in self.retrieve.forward(query).await?.into_texts() {
                if !context.contains(&passage) {
                    context.push(passage);
                }
            }
        }
        let answered = self
            .generate_answer
            .forward(GenerateAnswerInput {
                context: context.clone(),
                question: input.question,
            })
            .await?;
        Ok(Answer {
            context,
            answer: answered.output.answer,
        })
    }
}

/// One line of `rag_qa.jsonl`.
#[derive(Deserialize)]
struct Item {
    question: String,
    answer: String,
    /// What a capable model would search for at each hop (scripts the mock LM only).
    hops: Vec<String>,
    /// The start of the passage that holds the answer.
    evidence: String,
}

fn data_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("data")
}

fn read_items() -> dspex::Result<Vec<Item>> {
    let path = data_dir().join("rag_qa.jsonl");
    let text = std::fs::read_to_string(&path)
        .map_err(|e| dspex::Error::step(format!("reading {}", path.display()), e))?;
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .enumerate()
        .map(|(i, line)| {
            serde_json::from_str(line)
                .map_err(|e| dspex::Error::step(format!("{}:{}", path.display(), i + 1), e))
        })
        .collect()
}

/// The scripted mock LM (see the module docs). Rules are tried in order; the first match answers.
fn rules(items: &[Item]) -> dspex::Result<Vec<Rule>> {
    let script = |e| dspex::Error::step("scripting the mock LM", e);
    let mut rules = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let question = regex_escape(&item.question);
        let asks = format!(r"\[\[ ## question ## \]\]\n{question}\n\nRespond with [^\n]*");
        let query = |q: &str| format!("[[ ## query ## ]]\n{q}\n\n[[ ## completed ## ]]");
        // The first hop has no context yet; later hops do.
        rules.push(
            Rule::regex(
                &format!(r"\[\[ ## context ## \]\]\n\[\]\n\n{asks}`\[\[ ## query"),
                query(&item.hops[0]).as_str(),
            )
            .map_err(script)?,
        );
        let last_hop = item.hops.last().map(String::as_str).unwrap_or_default();
        rules.push(
            Rule::regex(&format!(r"{asks}`\[\[ ## query"), query(last_hop).as_str())
                .map_err(script)?,
        );
        let terse = format!(
            "[[ ## reasoning ## ]]\nThe passages name it.\n\n[[ ## answer ## ]]\n{}\n\n[[ ## completed ## ]]",
            item.answer
        );
        let wordy = format!(
            "[[ ## reasoning ## ]]\nThe passages name it.\n\n[[ ## answer ## ]]\nAccording to the passages, it is {}.\n\n[[ ## completed ## ]]",
            item.answer
        );
        let evidence = regex_escape(&item.evidence);
        // With demos (an assistant turn earlier in the conversation) and the evidence retrieved.
        rules.push(
            Rule::conversation_regex(
                &format!(
                    r"(?s)\nassistant:\n.*{evidence}.*{asks}`\[\[ ## reasoning ## \]\]`[^\n]*\z"
                ),
                terse.as_str(),
            )
            .map_err(script)?,
        );
        // Without demos: terse for every other question.
        rules.push(
            Rule::regex(
                &format!(r"(?s){evidence}.*{asks}`\[\[ ## reasoning"),
                if i % 2 == 0 { terse } else { wordy },
            )
            .map_err(script)?,
        );
    }
    Ok(rules)
}

#[tokio::main]
async fn main() -> dspex::Result<()> {
    let items = read_items()?;
    let examples: Vec<Example> = items
        .iter()
        .map(|item| {
            Example::new()
                .with("question", item.question.as_str())
                .with("answer", item.answer.as_str())
                .with_inputs(["question"])
        })
        .collect();
    let (trainset, devset) = examples.split_at(examples.len() / 2);

    // The index, built on disk off the async runtime, then opened as any saved index would be.
    let workdir = std::env::temp_dir().join("dspex-rag-example");
    let index_dir = workdir.join("index");
    let options = BuildOptions {
        overwrite: true,
        ..BuildOptions::default()
    };
    let report =
        Bm25Index::build_async(data_dir().join("rag_corpus.jsonl"), &index_dir, options).await?;
    let index = Bm25Index::open(&index_dir)?;
    println!(
        "indexed {} passages into {} in {:.0} ms",
        report.documents,
        index_dir.display(),
        report.elapsed.as_secs_f64() * 1e3
    );

    // The LM: dspex's mock LM server on 127.0.0.1, scripted (above). For a real model, write
    // `let lm = LM::builder("openai/gpt-4o-mini").build()?;` instead (the key from OPENAI_API_KEY;
    // `.api_base(…)` for any OpenAI-compatible server).
    let server = MockLm::builder()
        .rules(rules(&items)?)
        .start()
        .await
        .map_err(|e| Error::step("starting the mock LM", e))?;
    println!(
        "dspex's mock LM server at {} (scripted: demos help)",
        server.url()
    );
    let lm = LM::builder("openai/mock")
        .api_base(server.api_base())
        .cache_config(CacheConfig::memory_only())
        .build()?;
    configure(Settings::new().lm(lm));

    // Why two hops: the passage with the answer rarely shares words with the question.
    let single = Retrieve::new(index.clone(), 4);
    let mut found_single = 0;
    for item in &items {
        let texts = single.forward(item.question.clone()).await?.into_texts();
        found_single += usize::from(texts.iter().any(|t| t.starts_with(&item.evidence)));
    }

    let program = MultiHop::new(index, 2, 2);
    let evaluate = Evaluate::new(devset.to_vec(), answer_exact_match()).num_threads(8);
    let before = evaluate.call(&program).await?;
    let found_multi = before
        .records
        .iter()
        .zip(&items[trainset.len()..])
        .filter(|(record, item)| {
            record
                .prediction
                .as_ref()
                .and_then(|p| p.get("context"))
                .and_then(|c| c.as_array())
                .is_some_and(|c| {
                    c.iter()
                        .any(|t| t.as_str().is_some_and(|t| t.starts_with(&item.evidence)))
                })
        })
        .count();
    println!(
        "\npassage with the answer retrieved: {found_single}/{} by the question alone (k=4), {found_multi}/{} on the dev set by two hops (k=2 each)",
        items.len(),
        devset.len()
    );
    println!(
        "before compiling:       {:>6.2} exact match on {} dev questions",
        before.score,
        devset.len()
    );

    let compiled = BootstrapFewShot::new()
        .metric(answer_exact_match())
        .max_bootstrapped_demos(2)
        .max_labeled_demos(0)
        .compile(program, trainset)
        .await?;
    let after = evaluate.call(&compiled).await?;
    println!(
        "after BootstrapFewShot: {:>6.2} ({})",
        after.score,
        compiled
            .named_predictors()
            .iter()
            .map(|(name, p)| format!("{name}: {} demos", p.demos.len()))
            .collect::<Vec<_>>()
            .join(", ")
    );

    let question = Question {
        question: devset[1]
            .get_str("question")
            .unwrap_or_default()
            .to_string(),
    };
    println!("\nQ: {}", question.question);
    let answer = compiled.forward(question).await?;
    for passage in &answer.context {
        println!("   retrieved: {passage}");
    }
    println!("A: {}", answer.answer);

    let path = workdir.join("multihop_program.json");
    compiled.save(&path)?;
    println!("\nsaved the compiled program to {}", path.display());
    Ok(())
}
