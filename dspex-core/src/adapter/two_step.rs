//! The prompts of DSPy's `TwoStepAdapter` (`dspy/adapters/two_step_adapter.py`): a free-form
//! first prompt for the main LM, and the extraction signature whose ChatAdapter prompt a second
//! LM answers with the output fields.
//!
//! The adapter itself holds the extraction LM, so it lives in the runtime
//! (`dspex_runtime::adapter::TwoStepAdapter`); this module is its formatting, with no I/O.

use super::AdapterError;
use super::format::{INCOMPLETE_DEMO_PREFIX, order_demos, write_field_list};
use crate::example::Example;
use crate::pycompat::pyfmt::py_str;
use crate::pycompat::text::py_strip;
use crate::signature::{DynSignature, FieldSpec, TypeSpec};
use crate::types::Message;
use serde_json::{Map, Value};
use std::pin::Pin;

/// The adapter's name, as DSPy spells it.
pub const NAME: &str = "TwoStepAdapter";

/// The first step's messages: the task description as the system message, the demos as
/// `name: value` turns, then the inputs as `name: value` lines (DSPy's
/// `TwoStepAdapter.format`).
pub fn format(
    sig: &DynSignature,
    demos: &[Example],
    inputs: &Example,
) -> Result<Vec<Message>, AdapterError> {
    let mut messages = Vec::with_capacity(2 + 2 * demos.len());
    messages.push(Message::system(task_description(sig)));
    for (demo, complete) in order_demos(sig, demos) {
        let prefix = if complete { "" } else { INCOMPLETE_DEMO_PREFIX };
        messages.push(Message::user(lines(sig.inputs(), demo, prefix)));
        messages.push(Message::assistant(lines(sig.outputs(), demo, "")));
    }
    messages.push(Message::user(lines(sig.inputs(), inputs.as_map(), "")));
    Ok(super::custom::expand_all(messages))
}

/// `format_task_description`: what the main LM is told about the task.
fn task_description(sig: &DynSignature) -> String {
    let mut out = String::with_capacity(512);
    out.push_str("You are a helpful assistant that can solve tasks based on user input.");
    out.push_str("\nAs input, you will be provided with:\n");
    write_field_list(&mut out, sig.inputs());
    out.push_str("\nYour outputs must contain:\n");
    write_field_list(&mut out, sig.outputs());
    out.push_str(
        "\nYou should lay out your outputs in detail so that your answer can be understood by another agent",
    );
    if !sig.instructions().is_empty() {
        out.push_str("\nSpecific instructions: ");
        out.push_str(sig.instructions());
    }
    out
}

/// `format_user_message_content` / `format_assistant_message_content`: `name: value` for each
/// of `fields` present in `values` (values as Python's `str()` prints them), after `prefix`,
/// joined by blank lines and stripped.
fn lines(fields: &[FieldSpec], values: &Map<String, Value>, prefix: &str) -> String {
    let mut parts = vec![prefix.to_string()];
    for f in fields {
        if let Some(v) = values.get(f.name()) {
            let text = match v {
                Value::String(s) => s.clone(),
                other => py_str(other),
            };
            parts.push(format!("{}: {text}", f.name()));
        }
    }
    parts.push(String::new());
    py_strip(&parts.join("\n\n")).to_string()
}

/// `_create_extractor_signature`: a `text` input and the original outputs, with DSPy's
/// instructions (a line continuation inside its f-string leaves 12 spaces in the middle).
pub fn extractor_signature(sig: &DynSignature) -> Result<DynSignature, AdapterError> {
    let outputs = sig
        .outputs()
        .iter()
        .map(|f| format!("`{}`", f.name()))
        .collect::<Vec<_>>()
        .join(", ");
    let instructions = format!(
        "The input is a text that should contain all the necessary information to produce the fields {outputs}.             Your job is to extract the fields from the text verbatim. Extract precisely the appropriate value (content) for each field."
    );
    let mut fields = vec![FieldSpec::input("text", TypeSpec::Str)];
    fields.extend(sig.outputs().iter().cloned());
    DynSignature::from_fields(Some(&instructions), fields).map_err(|e| AdapterError::Format {
        adapter: NAME,
        message: format!("the extraction signature cannot be built: {e}"),
    })
}

/// What an [`Extractor`] returns: the output fields, or why they could not be read (a
/// [`AdapterError::Parse`] naming `TwoStepAdapter`, or the error of the extraction LM's call,
/// boxed because it belongs to a higher layer).
pub type ExtractResult = Result<Map<String, Value>, Box<dyn std::error::Error + Send + Sync>>;

/// The future of one [`Extractor::extract`].
pub type ExtractFuture<'a> = Pin<Box<dyn Future<Output = ExtractResult> + Send + 'a>>;

/// An adapter whose output fields are read by a second model call instead of a parser (the
/// TwoStepAdapter's extraction LM). The module layer calls it in place of
/// [`Adapter::parse`](super::Adapter::parse) when
/// [`Adapter::extractor`](super::Adapter::extractor) gives one.
pub trait Extractor: Send + Sync {
    /// The output fields of `signature` read from the main LM's `completion`.
    fn extract<'a>(&'a self, signature: &'a DynSignature, completion: &'a str)
    -> ExtractFuture<'a>;
}

/// The error of [`Adapter::parse`](super::Adapter::parse) on an adapter that reads its outputs
/// with an LM: parsing needs the module layer, which runs the extraction.
pub fn parse_needs_extraction(completion: &str) -> AdapterError {
    AdapterError::Parse {
        adapter: NAME,
        field: None,
        message: "the TwoStepAdapter reads the outputs with its extraction LM, which a module call runs (Predict, ChainOfThought, …); it has no parser of its own".into(),
        completion: completion.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn first_step_prompt_is_dspys() {
        let sig = DynSignature::parse("question -> answer: int, unit").unwrap();
        let inputs = Example::from_pairs([("question", json!("How many?"))]);
        let demo = Example::from_pairs([
            ("question", json!("Two and two?")),
            ("answer", json!(4)),
            ("unit", json!(["a", 1])),
        ]);
        let messages = format(&sig, &[demo], &inputs).unwrap();
        assert_eq!(
            messages[0].content,
            "You are a helpful assistant that can solve tasks based on user input.\nAs input, you will be provided with:\n1. `question` (str):\nYour outputs must contain:\n1. `answer` (int): \n2. `unit` (str):\nYou should lay out your outputs in detail so that your answer can be understood by another agent\nSpecific instructions: Given the fields `question`, produce the fields `answer`, `unit`."
        );
        assert_eq!(messages[1].content, "question: Two and two?");
        assert_eq!(messages[2].content, "answer: 4\n\nunit: ['a', 1]");
        assert_eq!(messages[3].content, "question: How many?");
    }

    #[test]
    fn extraction_signature_has_text_and_the_outputs() {
        let sig = DynSignature::parse("question -> answer: int, unit").unwrap();
        let ex = extractor_signature(&sig).unwrap();
        let names: Vec<_> = ex.fields().map(|f| f.name().to_string()).collect();
        assert_eq!(names, ["text", "answer", "unit"]);
        assert!(
            ex.instructions()
                .contains("`answer`, `unit`.             Your job")
        );
    }
}
