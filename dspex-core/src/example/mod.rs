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
//! use dspex_core::{Example, Prediction};
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

/// The read accessors `Example` and `Prediction` share, over their `fields` map (keys starting
/// with `dspy_` hidden from `len`/`keys`/`values`/`iter`, as in DSPy).
macro_rules! field_accessors {
    () => {
        /// The value of `key`, hidden keys included.
        pub fn get(&self, key: &str) -> Option<&Value> {
            self.fields.get(key)
        }

        /// The value of `key` if it is a JSON string.
        pub fn get_str(&self, key: &str) -> Option<&str> {
            self.fields.get(key).and_then(Value::as_str)
        }

        /// Whether `key` is present, hidden keys included.
        pub fn contains_key(&self, key: &str) -> bool {
            self.fields.contains_key(key)
        }

        /// The number of visible fields (keys starting with `dspy_` are not counted).
        pub fn len(&self) -> usize {
            self.fields.keys().filter(|k| !is_hidden_key(k)).count()
        }

        /// Whether there are no visible fields (there may still be hidden `dspy_` ones).
        pub fn is_empty(&self) -> bool {
            self.len() == 0
        }

        /// The visible keys, in order.
        pub fn keys(&self) -> impl Iterator<Item = &str> {
            self.iter().map(|(k, _)| k)
        }

        /// The visible values, in order.
        pub fn values(&self) -> impl Iterator<Item = &Value> {
            self.iter().map(|(_, v)| v)
        }

        /// The visible `(key, value)` pairs, in order.
        pub fn iter(&self) -> impl Iterator<Item = (&str, &Value)> {
            self.iter_all().filter(|(k, _)| !is_hidden_key(k))
        }

        /// Every `(key, value)` pair, hidden `dspy_` keys included, in order.
        pub fn iter_all(&self) -> impl Iterator<Item = (&str, &Value)> {
            self.fields.iter().map(|(k, v)| (k.as_str(), v))
        }

        /// All the fields, hidden `dspy_` keys included.
        pub fn as_map(&self) -> &Map<String, Value> {
            &self.fields
        }
    };
}

#[allow(clippy::module_inception)]
mod example;
mod prediction;

pub use example::{Example, ExampleError};
pub use prediction::Prediction;
