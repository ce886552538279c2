//! Examples and predictions: the dynamic records dspex programs consume and produce.
//!
//! * [`Example`] — an ordered map of named JSON values (a training example, a demo, the inputs of a
//!   call), optionally knowing which of its keys are *inputs*; [`Example::inputs`] and
//!   [`Example::labels`] split it accordingly.
//! * [`Prediction`] — the output fields of one LM answer, plus every completion when more than one
//!   was requested.
//! * [`ExampleError`] — what can go wrong: unset inputs, typed conversions that do not fit, an empty
//!   list of completions.
//!
//! Both records follow DSPy 3.4.1 (`dspy.Example`, `dspy.Prediction`): keys starting with `dspy_`
//! are hidden from `len`/`keys`/`iter` and from `Display`, but take part in equality and
//! serialization; equality ignores key order and input keys; an [`Example`] and a [`Prediction`]
//! with the same fields compare equal.
//!
//! ```
//! use dspex_runtime::{Example, Prediction};
//! use serde_json::json;
//!
//! let ex = Example::new()
//!     .with("question", "What is 2 + 2?")
//!     .with("answer", "4")
//!     .with_inputs(["question"]);
//! assert_eq!(ex.inputs().unwrap().keys().collect::<Vec<_>>(), ["question"]);
//! assert_eq!(ex.labels().unwrap().get_str("answer"), Some("4"));
//!
//! let pred = Prediction::new(json!({"answer": "4"}).as_object().unwrap().clone());
//! assert_eq!(pred, ex.without(["question"]));
//! ```

#[allow(clippy::module_inception)]
mod example;
mod prediction;

pub use example::{Example, ExampleError};
pub use prediction::Prediction;
