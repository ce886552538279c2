//! Adapters: the exact prompt formats DSPy uses, and their parsers.
//!
//! An [`Adapter`] turns a signature, few-shot demos and inputs into chat messages, and a
//! completion back into output field values. `ChatAdapter` and `JSONAdapter` reproduce DSPy
//! 3.4.1 byte for byte (checked against every fixture in `../shared/fixtures/dspy`).

use crate::example::Example;
use crate::lm::{Message, ResponseFormat};
use crate::signature::DynSignature;
use serde_json::{Map, Value};
use std::fmt;

/// A prompt format and its parser.
pub trait Adapter: Send + Sync + fmt::Debug {
    /// DSPy's name for it (`ChatAdapter`, `JSONAdapter`).
    fn name(&self) -> &'static str;

    /// The messages of one call: system message, demo turns, then the inputs.
    fn format(
        &self,
        signature: &DynSignature,
        demos: &[Example],
        inputs: &Example,
    ) -> Result<Vec<Message>, AdapterError>;

    /// The output fields' values read from a completion (typed per the signature's field types).
    fn parse(
        &self,
        signature: &DynSignature,
        completion: &str,
    ) -> Result<Map<String, Value>, AdapterError>;

    /// The `response_format` to request for this signature, if any.
    fn response_format(&self, _signature: &DynSignature) -> Option<ResponseFormat> {
        None
    }
}

/// What formatting or parsing can fail with.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum AdapterError {
    /// The completion does not hold the output fields (DSPy's `AdapterParseError`).
    #[error("{adapter} could not parse the completion{}: {message}; completion: {completion:?}", field.as_ref().map(|f| format!(" (field `{f}`)")).unwrap_or_default())]
    Parse {
        /// The adapter that tried.
        adapter: &'static str,
        /// The field that failed, when one did.
        field: Option<String>,
        /// What was wrong.
        message: String,
        /// The raw completion.
        completion: String,
    },
    /// The inputs or demos cannot be formatted (a value that has no text form, …).
    #[error("{adapter} could not format the prompt: {message}")]
    Format {
        /// The adapter that tried.
        adapter: &'static str,
        /// What was wrong.
        message: String,
    },
}
