//! DSPy's grounded instruction proposer (`dspy/propose/`): a dataset summary, a description of
//! the program and of each predictor, and new instructions written by a prompt model — with
//! DSPy's exact signatures, so the prompt model sees what it sees under DSPy.

use crate::error::Result;
use crate::example::Example;
use crate::lm::LanguageModel;
use crate::module::{CallConfig, DynPredict};
use crate::program::PredictorParams;
use crate::pycompat::py::{from_json, py_str};
use crate::signature::{DynSignature, FieldSpec, TypeSpec};
use std::sync::Arc;

/// The tips MIPROv2 picks from, in DSPy's order (`TIPS`).
pub(crate) const TIPS: [(&str, &str); 6] = [
    ("none", ""),
    (
        "creative",
        "Don't be afraid to be creative when creating the new instruction!",
    ),
    ("simple", "Keep the instruction clear and concise."),
    (
        "description",
        "Make sure your instruction is very informative and descriptive.",
    ),
    (
        "high_stakes",
        "The instruction should include a high stakes scenario in which the LM must solve the task!",
    ),
    (
        "persona",
        "Include a persona that is relevant to the task in the instruction (ie. \"You are a ...\")",
    ),
];

fn input(name: &str, desc: &str) -> FieldSpec {
    FieldSpec::input(name, TypeSpec::Str).with_desc(desc)
}

fn output(name: &str, desc: &str) -> FieldSpec {
    FieldSpec::output(name, TypeSpec::Str).with_desc(desc)
}

fn signature(instructions: &str, fields: Vec<FieldSpec>) -> DynSignature {
    DynSignature::from_fields(Some(instructions), fields)
        .expect("the proposer's signatures are fixed and valid")
}

/// `ObservationSummarizer`.
pub(crate) fn observation_summarizer() -> DynSignature {
    signature(
        "Given a series of observations I have made about my dataset, please summarize them into a brief 2-3 sentence summary which highlights only the most important details.",
        vec![
            input("observations", "Observations I have made about my dataset"),
            output(
                "summary",
                "Two to Three sentence summary of only the most significant highlights of my observations",
            ),
        ],
    )
}

/// `DatasetDescriptor`.
pub(crate) fn dataset_descriptor() -> DynSignature {
    signature(
        "Given several examples from a dataset please write observations about trends that hold for most or all of the samples. Some areas you may consider in your observations: topics, content, syntax, conciseness, etc. It will be useful to make an educated guess as to the nature of the task this dataset will enable. Don't be afraid to be creative",
        vec![
            input("examples", "Sample data points from the dataset"),
            output(
                "observations",
                "Somethings that holds true for most or all of the data you observed",
            ),
        ],
    )
}

/// `DatasetDescriptorWithPriorObservations` (DSPy's "conciceness" and double space included).
pub(crate) fn dataset_descriptor_with_prior() -> DynSignature {
    signature(
        "Given several examples from a dataset please write observations about trends that hold for most or all of the samples. I will also provide you with a few observations I have already made.  Please add your own observations or if you feel the observations are comprehensive say 'COMPLETE' Some areas you may consider in your observations: topics, content, syntax, conciceness, etc. It will be useful to make an educated guess as to the nature of the task this dataset will enable. Don't be afraid to be creative",
        vec![
            input("examples", "Sample data points from the dataset"),
            input(
                "prior_observations",
                "Some prior observations I made about the data",
            ),
            output(
                "observations",
                "Somethings that holds true for most or all of the data you observed or COMPLETE if you have nothing to add",
            ),
        ],
    )
}

const PSEUDO_CODE_DESC: &str =
    "Pseudocode for a language model program designed to solve a particular task.";
const PROGRAM_DESCRIPTION_DESC: &str =
    "Summary of the task the program is designed to solve, and how it goes about solving it.";

/// `DescribeProgram`.
pub(crate) fn describe_program() -> DynSignature {
    signature(
        "Below is some pseudo-code for a pipeline that solves tasks with calls to language models. Please describe what type of task this program appears to be designed to solve, and how it appears to work.",
        vec![
            input("program_code", PSEUDO_CODE_DESC),
            input("program_example", "An example of the program in use."),
            output(
                "program_description",
                "Describe what task the program is designed to solve, and how it goes about solving this task.",
            ),
        ],
    )
}

/// `DescribeModule`.
pub(crate) fn describe_module() -> DynSignature {
    signature(
        "Below is some pseudo-code for a pipeline that solves tasks with calls to language models. Please describe the purpose of one of the specified module in this pipeline.",
        vec![
            input("program_code", PSEUDO_CODE_DESC),
            input("program_example", "An example of the program in use."),
            input("program_description", PROGRAM_DESCRIPTION_DESC),
            input(
                "module",
                "The module in the program that we want to describe.",
            ),
            output(
                "module_description",
                "Description of the module's role in the broader program.",
            ),
        ],
    )
}

/// `GenerateSingleModuleInstruction` with the fields its switches enable (MIPROv2 never uses the
/// instruction history).
pub(crate) fn generate_instruction(
    use_dataset_summary: bool,
    program_aware: bool,
    use_tip: bool,
) -> DynSignature {
    let mut fields = Vec::new();
    if use_dataset_summary {
        fields.push(input(
            "dataset_description",
            "A description of the dataset that we are using.",
        ));
    }
    if program_aware {
        fields.push(input(
            "program_code",
            "Language model program designed to solve a particular task.",
        ));
        fields.push(input("program_description", PROGRAM_DESCRIPTION_DESC));
        fields.push(input("module", "The module to create an instruction for."));
        fields.push(input(
            "module_description",
            "Description of the module to create an instruction for.",
        ));
    }
    fields.push(input("task_demos", "Example inputs/outputs of our module."));
    fields.push(input("basic_instruction", "Basic instruction."));
    if use_tip {
        fields.push(input(
            "tip",
            "A suggestion for how to go about generating the new instruction.",
        ));
    }
    fields.push(output(
        "proposed_instruction",
        "Propose an instruction that will be used to prompt a Language Model to perform this task.",
    ));
    signature(
        "Use the information below to learn about a task that we are trying to solve using calls to an LM, then generate a new instruction that will be used to prompt a Language Model to better solve the task.",
        fields,
    )
}

/// DSPy's `strip_prefix`: drops a leading label of up to five words and a colon
/// (`^[\*\s]*(([\w'\-]+\s+){0,4}[\w'\-]+):\s*`), then `"` from both ends.
pub(crate) fn strip_prefix(text: &str) -> String {
    let is_word = |c: char| c.is_alphanumeric() || c == '_' || c == '\'' || c == '-';
    let chars: Vec<(usize, char)> = text.char_indices().collect();
    let mut i = 0;
    while i < chars.len() && (chars[i].1 == '*' || chars[i].1.is_whitespace()) {
        i += 1;
    }
    let mut cut = None;
    let mut words = 0;
    let mut j = i;
    loop {
        let start = j;
        while j < chars.len() && is_word(chars[j].1) {
            j += 1;
        }
        if j == start {
            break;
        }
        words += 1;
        if j < chars.len() && chars[j].1 == ':' {
            let mut k = j + 1;
            while k < chars.len() && chars[k].1.is_whitespace() {
                k += 1;
            }
            cut = Some(k);
            break;
        }
        if words == 5 || j >= chars.len() || !chars[j].1.is_whitespace() {
            break;
        }
        while j < chars.len() && chars[j].1.is_whitespace() {
            j += 1;
        }
    }
    let rest = match cut {
        Some(k) if k < chars.len() => &text[chars[k].0..],
        Some(_) => "",
        None => text,
    };
    rest.trim_matches('"').to_string()
}

/// Python's `repr` of a list of examples, with each `input_keys={...}` set sorted
/// (`order_input_keys_in_string`).
pub(crate) fn examples_repr(examples: &[Example]) -> String {
    let items: Vec<String> = examples.iter().map(ToString::to_string).collect();
    format!("[{}]", items.join(", "))
}

/// `create_example_string`: one `"{prefix} {value}"` line per field of the predictor's signature
/// (`None` for a field the demo lacks).
pub(crate) fn example_string(signature: &DynSignature, demo: &Example) -> String {
    signature
        .fields()
        .map(|f| {
            let value = demo
                .get(f.name())
                .map(|v| py_str(&from_json(v)))
                .unwrap_or_else(|| "None".to_string());
            format!("{} {value}", f.prefix())
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// `Predict(question) -> reasoning, answer`: how DSPy names a predictor to the prompt model.
pub(crate) fn module_string(signature: &DynSignature) -> String {
    format!(
        "Predict({}) -> {}",
        signature.input_names().collect::<Vec<_>>().join(", "),
        signature.output_names().collect::<Vec<_>>().join(", ")
    )
}

/// A pseudo-code description of a program for the prompt model: DSPy sends the Python source of
/// the program's class and signatures, which a Rust program does not have, so dspex describes
/// each predictor by name, signature and instructions (users can supply their own text).
pub(crate) fn describe_predictors(predictors: &[(String, &PredictorParams)]) -> String {
    predictors
        .iter()
        .map(|(name, p)| {
            format!(
                "{name} = Predict(\"{}\")\n    instructions: {:?}",
                p.signature.signature_string(),
                p.signature.instructions()
            )
        })
        .collect::<Vec<_>>()
        .join("\n\n")
}

/// One call of a proposer signature with the prompt model: `n=1`, the given temperature and
/// rollout id, the first completion's field.
pub(crate) async fn ask(
    lm: &Arc<dyn LanguageModel>,
    signature: DynSignature,
    inputs: Example,
    temperature: f64,
    rollout_id: Option<u64>,
    field: &str,
) -> Result<String> {
    let mut config = CallConfig::new().temperature(temperature).n(1);
    config.lm = Some(lm.clone());
    config.rollout_id = rollout_id;
    let prediction = DynPredict::new(signature)
        .with_config(config)
        .call(&inputs)
        .await?;
    Ok(prediction
        .get(field)
        .map(|v| py_str(&from_json(v)))
        .unwrap_or_default())
}

/// `create_dataset_summary`: observations on the first batch of `view_data_batch_size`
/// examples, more observations on later batches (at most 9 more calls; five `COMPLETE`
/// answers end it early; an error keeps what was observed), then a summary.
pub(crate) async fn dataset_summary(
    lm: &Arc<dyn LanguageModel>,
    trainset: &[Example],
    view_data_batch_size: usize,
) -> Result<String> {
    let batch = view_data_batch_size.max(1);
    let upper = trainset.len().min(batch);
    let mut observations = ask(
        lm,
        dataset_descriptor(),
        Example::new().with("examples", examples_repr(&trainset[..upper])),
        1.0,
        None,
        "observations",
    )
    .await?;
    let mut skips = 0;
    let mut calls = 0;
    let mut b = batch;
    while b < trainset.len() {
        calls += 1;
        if calls >= 10 {
            break;
        }
        let upper = trainset.len().min(b + batch);
        let more = ask(
            lm,
            dataset_descriptor_with_prior(),
            Example::new()
                .with("prior_observations", observations.clone())
                .with("examples", examples_repr(&trainset[b..upper])),
            1.0,
            None,
            "observations",
        )
        .await;
        let more = match more {
            Ok(text) => text,
            Err(e) => {
                tracing::debug!(error = %e, "dataset summary: keeping the observations so far");
                break;
            }
        };
        if more.chars().count() >= 8
            && more.chars().take(8).collect::<String>().to_uppercase() == "COMPLETE"
        {
            skips += 1;
            if skips >= 5 {
                break;
            }
        } else {
            observations.push_str(&more);
        }
        b += batch;
    }
    let summary = ask(
        lm,
        observation_summarizer(),
        Example::new().with("observations", observations),
        1.0,
        None,
        "summary",
    )
    .await?;
    Ok(strip_prefix(&summary))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strip_prefix_drops_labels_of_up_to_five_words() {
        assert_eq!(strip_prefix("Proposed Instruction: Be brief."), "Be brief.");
        assert_eq!(strip_prefix("**Summary:** text"), "** text");
        assert_eq!(strip_prefix("  a b c d e: x"), "x");
        assert_eq!(strip_prefix("a b c d e f: x"), "a b c d e f: x");
        assert_eq!(strip_prefix("\"quoted\""), "quoted");
        assert_eq!(strip_prefix("no label here"), "no label here");
        assert_eq!(strip_prefix("time: 10:30"), "10:30");
        assert_eq!(strip_prefix("It's-ok: yes"), "yes");
        assert_eq!(strip_prefix("Label:"), "");
    }

    #[test]
    fn example_strings_and_module_names_follow_dspy() {
        let sig = DynSignature::parse("question -> reasoning, answer").unwrap();
        let demo = Example::new()
            .with("augmented", true)
            .with("question", "Q?")
            .with("answer", 4);
        assert_eq!(
            example_string(&sig, &demo),
            "Question: Q?\nReasoning: None\nAnswer: 4"
        );
        assert_eq!(
            module_string(&sig),
            "Predict(question) -> reasoning, answer"
        );
        let ex = Example::new()
            .with("question", "QQ0?")
            .with("answer", "A0")
            .with_inputs(["question"]);
        assert_eq!(
            examples_repr(&[ex.clone(), ex]),
            "[Example({'question': 'QQ0?', 'answer': 'A0'}) (input_keys={'question'}), Example({'question': 'QQ0?', 'answer': 'A0'}) (input_keys={'question'})]"
        );
    }
}
