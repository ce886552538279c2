//! [`Example`] — an ordered record of named JSON values — and [`ExampleError`].

use std::any::type_name;
use std::collections::BTreeSet;
use std::fmt::{self, Write as _};
use std::hash::{Hash, Hasher};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};

/// Keys starting with this prefix are internal to DSPy-style machinery: hidden from
/// `len`/`keys`/`iter` and `Display`, but part of equality, hashing and serialization.
const HIDDEN_PREFIX: &str = "dspy_";

/// Whether `key` is hidden from the visible views of an [`Example`] or a
/// [`Prediction`](super::Prediction).
pub(crate) fn is_hidden_key(key: &str) -> bool {
    key.starts_with(HIDDEN_PREFIX)
}

/// What went wrong while splitting or converting an [`Example`] or a
/// [`Prediction`](super::Prediction).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ExampleError {
    /// [`Example::inputs`] or [`Example::labels`] was called before the input keys were set.
    #[error("inputs have not been set for this example; call `with_inputs(...)` first")]
    InputsNotSet,
    /// A typed value was turned into an example but did not serialize to a JSON object.
    #[error(
        "cannot build an example from `{type_name}`: it serializes to {found}, not to a JSON object"
    )]
    NotAnObject {
        /// The Rust type that was converted (from [`std::any::type_name`]).
        type_name: &'static str,
        /// What the value serialized to instead, e.g. `an array` or `a string`.
        found: &'static str,
    },
    /// Converting between the fields and a typed value failed (a missing field, a value of the
    /// wrong type, a value that cannot be represented as JSON, ...).
    #[error("cannot convert between example fields and `{type_name}`: {message}")]
    Convert {
        /// The Rust type on the other side of the conversion (from [`std::any::type_name`]).
        type_name: &'static str,
        /// The underlying serde message, which names the missing or invalid field.
        message: String,
    },
    /// [`Prediction::from_completions`](super::Prediction::from_completions) got no completions.
    #[error("a prediction needs at least one completion, but the list of completions is empty")]
    EmptyCompletions,
}

/// A short English description of the kind of a JSON value, for error messages.
fn describe_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Serializes `value` and returns its fields; it must serialize to a JSON object.
pub(crate) fn map_from_typed<T: Serialize + ?Sized>(
    value: &T,
) -> Result<Map<String, Value>, ExampleError> {
    let type_name = type_name::<T>();
    match serde_json::to_value(value) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(other) => Err(ExampleError::NotAnObject {
            type_name,
            found: describe_kind(&other),
        }),
        Err(err) => Err(ExampleError::Convert {
            type_name,
            message: err.to_string(),
        }),
    }
}

/// Deserializes a `T` from `map` (all keys, hidden ones included).
pub(crate) fn map_to_typed<T: DeserializeOwned>(
    map: &Map<String, Value>,
) -> Result<T, ExampleError> {
    T::deserialize(map).map_err(|err| ExampleError::Convert {
        type_name: type_name::<T>(),
        message: err.to_string(),
    })
}

/// Appends Python's `repr()` of a JSON value (`'text'`, `True`, `None`, `[1, 2]`, `{'k': 'v'}`).
fn write_python_repr(out: &mut String, value: &Value) {
    match value {
        Value::Null => out.push_str("None"),
        Value::Bool(true) => out.push_str("True"),
        Value::Bool(false) => out.push_str("False"),
        Value::Number(n) => {
            let _ = write!(out, "{n}");
        }
        Value::String(s) => out.push_str(&dspex_grammar::python_str_repr(s)),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_python_repr(out, item);
            }
            out.push(']');
        }
        Value::Object(map) => write_python_dict(out, map.iter()),
    }
}

/// Appends a Python dict literal of the given entries.
fn write_python_dict<'a>(out: &mut String, entries: impl Iterator<Item = (&'a String, &'a Value)>) {
    out.push('{');
    for (i, (key, value)) in entries.enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        out.push_str(&dspex_grammar::python_str_repr(key));
        out.push_str(": ");
        write_python_repr(out, value);
    }
    out.push('}');
}

/// Python's `repr()` of a JSON value, used by the `Display` impls.
pub(crate) fn python_repr(value: &Value) -> String {
    let mut out = String::new();
    write_python_repr(&mut out, value);
    out
}

/// An ordered record of named JSON values: a training example, a few-shot demo, the inputs of a
/// call — DSPy's `dspy.Example`.
///
/// Fields keep their insertion order. An example may also know which of its keys are *inputs*
/// ([`with_inputs`](Self::with_inputs)); [`inputs`](Self::inputs) and [`labels`](Self::labels)
/// then split it in two.
///
/// Keys starting with `dspy_` are internal: [`len`](Self::len), [`keys`](Self::keys),
/// [`iter`](Self::iter) and `Display` skip them, while [`iter_all`](Self::iter_all),
/// [`as_map`](Self::as_map), [`contains_key`](Self::contains_key), [`get`](Self::get), equality,
/// hashing and serialization include them.
///
/// Two examples are equal when their fields are equal, regardless of order; input keys are
/// ignored. An example also equals a [`Prediction`](super::Prediction) with the same fields.
///
/// Serialized, an example is the flat JSON object of its fields (input keys are not serialized).
///
/// ```
/// use dspex_core::Example;
///
/// let ex = Example::from_pairs([("question", "Capital of France?"), ("answer", "Paris")])
///     .with_inputs(["question"]);
/// assert_eq!(ex.get_str("answer"), Some("Paris"));
/// assert_eq!(
///     ex.to_string(),
///     "Example({'question': 'Capital of France?', 'answer': 'Paris'}) (input_keys={'question'})"
/// );
/// assert_eq!(serde_json::to_string(&ex).unwrap(), r#"{"question":"Capital of France?","answer":"Paris"}"#);
/// ```
#[derive(Debug, Clone, Default)]
pub struct Example {
    fields: Map<String, Value>,
    input_keys: Option<BTreeSet<String>>,
}

impl Example {
    /// An empty example without input keys.
    pub fn new() -> Self {
        Self::default()
    }

    /// An example with the given fields (in their order) and no input keys.
    pub fn from_map(fields: Map<String, Value>) -> Self {
        Self {
            fields,
            input_keys: None,
        }
    }

    /// An example built from `(key, value)` pairs, in order; a repeated key keeps its first
    /// position and its last value.
    ///
    /// ```
    /// use dspex_core::Example;
    /// use serde_json::json;
    ///
    /// let ex = Example::from_pairs([("question", json!("2+2?")), ("answer", json!(4))]);
    /// assert_eq!(ex.get("answer"), Some(&json!(4)));
    /// ```
    pub fn from_pairs<K, V>(pairs: impl IntoIterator<Item = (K, V)>) -> Self
    where
        K: Into<String>,
        V: Into<Value>,
    {
        Self::from_map(
            pairs
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        )
    }

    /// An example holding the fields of a typed value, which must serialize to a JSON object
    /// (a struct with named fields or a map with string keys).
    ///
    /// # Errors
    ///
    /// [`ExampleError::NotAnObject`] if `value` serializes to anything but an object, and
    /// [`ExampleError::Convert`] if serialization itself fails.
    pub fn from_typed<T: Serialize + ?Sized>(value: &T) -> Result<Self, ExampleError> {
        map_from_typed(value).map(Self::from_map)
    }

    /// Deserializes a typed value from all the fields (hidden `dspy_` keys included; unknown
    /// fields are ignored unless `T` denies them).
    ///
    /// # Errors
    ///
    /// [`ExampleError::Convert`] naming `T` and carrying serde's message, which names the missing
    /// or invalid field.
    pub fn to_typed<T: DeserializeOwned>(&self) -> Result<T, ExampleError> {
        map_to_typed(&self.fields)
    }

    field_accessors!();

    /// A mutable reference to the value of `key`, hidden keys included.
    pub fn get_mut(&mut self, key: &str) -> Option<&mut Value> {
        self.fields.get_mut(key)
    }

    /// Sets `key` to `value`, returning the previous value. An existing key keeps its position; a
    /// new key goes last.
    pub fn insert(&mut self, key: impl Into<String>, value: impl Into<Value>) -> Option<Value> {
        self.fields.insert(key.into(), value.into())
    }

    /// Builder form of [`insert`](Self::insert).
    #[must_use]
    pub fn with(mut self, key: impl Into<String>, value: impl Into<Value>) -> Self {
        self.insert(key, value);
        self
    }

    /// Removes `key`, keeping the order of the other fields, and returns its value. Input keys are
    /// left as they are.
    pub fn remove(&mut self, key: &str) -> Option<Value> {
        self.fields.shift_remove(key)
    }

    /// All the fields, hidden `dspy_` keys included; the input keys are dropped.
    pub fn into_map(self) -> Map<String, Value> {
        self.fields
    }

    /// A copy whose input keys are exactly `keys` (names not present among the fields are
    /// allowed, as in DSPy).
    #[must_use]
    pub fn with_inputs<S: Into<String>>(&self, keys: impl IntoIterator<Item = S>) -> Self {
        Self {
            fields: self.fields.clone(),
            input_keys: Some(keys.into_iter().map(Into::into).collect()),
        }
    }

    /// The input keys, or `None` if they were never set.
    pub fn input_keys(&self) -> Option<&BTreeSet<String>> {
        self.input_keys.as_ref()
    }

    /// A new example of the fields whose key is an input key (in field order), carrying the same
    /// input keys.
    ///
    /// # Errors
    ///
    /// [`ExampleError::InputsNotSet`] if [`with_inputs`](Self::with_inputs) was never applied.
    pub fn inputs(&self) -> Result<Self, ExampleError> {
        let keys = self.input_keys.as_ref().ok_or(ExampleError::InputsNotSet)?;
        Ok(Self {
            fields: self
                .fields
                .iter()
                .filter(|(k, _)| keys.contains(k.as_str()))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            input_keys: Some(keys.clone()),
        })
    }

    /// A new example (without input keys) of every field that is not an input — outputs, but
    /// also hidden `dspy_` keys and metadata such as `augmented`.
    ///
    /// # Errors
    ///
    /// [`ExampleError::InputsNotSet`] if [`with_inputs`](Self::with_inputs) was never applied.
    pub fn labels(&self) -> Result<Self, ExampleError> {
        let keys = self.input_keys.as_ref().ok_or(ExampleError::InputsNotSet)?;
        Ok(Self::from_map(
            self.fields
                .iter()
                .filter(|(k, _)| !keys.contains(k.as_str()))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        ))
    }

    /// A copy without the given keys (input keys are kept as they are).
    #[must_use]
    pub fn without<S: AsRef<str>>(&self, keys: impl IntoIterator<Item = S>) -> Self {
        let mut copy = self.clone();
        for key in keys {
            copy.remove(key.as_ref());
        }
        copy
    }

    /// Adds every field of `other`: existing keys take `other`'s value in place, new keys go last.
    /// Input keys are united: if either side has input keys, the result has the union of both
    /// (so `ex.inputs()?` merged with `ex.labels()?` gives back `ex`).
    pub fn merge(&mut self, other: Self) {
        self.fields.extend(other.fields);
        if let Some(other_keys) = other.input_keys {
            self.input_keys
                .get_or_insert_with(BTreeSet::new)
                .extend(other_keys);
        }
    }
}

impl PartialEq for Example {
    /// Equal fields, in any order; input keys are ignored.
    fn eq(&self, other: &Self) -> bool {
        self.fields == other.fields
    }
}

impl Eq for Example {}

impl Hash for Example {
    /// Hashes the fields independently of their order (consistent with `Eq`).
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.fields.hash(state);
    }
}

impl fmt::Display for Example {
    /// DSPy's repr: `Example({'question': 'Q', 'answer': 'A'}) (input_keys={'question'})`, with
    /// visible fields only and values spelled as Python literals.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut out = String::from("Example(");
        write_python_dict(
            &mut out,
            self.fields.iter().filter(|(k, _)| !is_hidden_key(k)),
        );
        out.push_str(") (input_keys=");
        match &self.input_keys {
            None => out.push_str("None"),
            Some(keys) if keys.is_empty() => out.push_str("set()"),
            Some(keys) => {
                out.push('{');
                for (i, key) in keys.iter().enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    out.push_str(&dspex_grammar::python_str_repr(key));
                }
                out.push('}');
            }
        }
        out.push(')');
        f.write_str(&out)
    }
}

impl Serialize for Example {
    /// The flat JSON object of all fields (hidden keys included, input keys omitted).
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.fields.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Example {
    /// Any JSON object; the result has no input keys.
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Map::deserialize(deserializer).map(Self::from_map)
    }
}

impl From<Map<String, Value>> for Example {
    fn from(fields: Map<String, Value>) -> Self {
        Self::from_map(fields)
    }
}

impl From<Example> for Map<String, Value> {
    fn from(example: Example) -> Self {
        example.fields
    }
}

impl FromIterator<(String, Value)> for Example {
    fn from_iter<I: IntoIterator<Item = (String, Value)>>(iter: I) -> Self {
        Self::from_map(iter.into_iter().collect())
    }
}

impl Extend<(String, Value)> for Example {
    /// Inserts every pair as [`insert`](Example::insert) would.
    fn extend<I: IntoIterator<Item = (String, Value)>>(&mut self, iter: I) {
        self.fields.extend(iter);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn qa() -> Example {
        Example::new()
            .with("question", "What is 2+2?")
            .with("answer", "4")
    }

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Qa {
        question: String,
        answer: u32,
    }

    #[test]
    fn dspy_keys_are_hidden_from_views_but_not_from_equality() {
        let plain = qa();
        let tagged = qa().with("dspy_uuid", "abc");

        assert_eq!(tagged.len(), 2);
        assert_eq!(tagged.keys().collect::<Vec<_>>(), ["question", "answer"]);
        assert_eq!(tagged.values().count(), 2);
        assert!(tagged.iter().all(|(k, _)| !k.starts_with("dspy_")));
        assert_eq!(tagged.iter_all().count(), 3);
        assert_eq!(tagged.as_map().len(), 3);
        assert!(tagged.contains_key("dspy_uuid"));
        assert_eq!(tagged.get_str("dspy_uuid"), Some("abc"));
        assert!(!tagged.to_string().contains("dspy_uuid"));

        // Hidden keys still count for equality and serialization.
        assert_ne!(plain, tagged);
        assert_eq!(
            serde_json::to_value(&tagged).unwrap(),
            json!({"question": "What is 2+2?", "answer": "4", "dspy_uuid": "abc"})
        );

        let only_hidden = Example::new().with("dspy_x", 1);
        assert!(only_hidden.is_empty());
        assert_ne!(only_hidden, Example::new());
    }

    #[test]
    fn inputs_and_labels_split_the_fields() {
        let ex = qa()
            .with("augmented", true)
            .with("dspy_split", "train")
            .with_inputs(["question", "not_a_field"]);

        let inputs = ex.inputs().unwrap();
        assert_eq!(inputs.keys().collect::<Vec<_>>(), ["question"]);
        assert_eq!(inputs.input_keys(), ex.input_keys());

        let labels = ex.labels().unwrap();
        assert_eq!(
            labels.iter_all().map(|(k, _)| k).collect::<Vec<_>>(),
            ["answer", "augmented", "dspy_split"]
        );
        assert_eq!(labels.get("augmented"), Some(&json!(true)));
        assert_eq!(labels.input_keys(), None);

        // Merging the halves back gives the original, input keys included.
        let mut merged = inputs;
        merged.merge(labels);
        assert_eq!(merged, ex);
        assert_eq!(merged.input_keys(), ex.input_keys());
    }

    #[test]
    fn inputs_and_labels_need_input_keys() {
        let ex = qa();
        assert_eq!(ex.input_keys(), None);
        assert_eq!(ex.inputs(), Err(ExampleError::InputsNotSet));
        assert_eq!(ex.labels(), Err(ExampleError::InputsNotSet));
        assert_eq!(
            ExampleError::InputsNotSet.to_string(),
            "inputs have not been set for this example; call `with_inputs(...)` first"
        );

        // An empty set of input keys is "set": everything is a label.
        let ex = ex.with_inputs(Vec::<String>::new());
        assert!(ex.inputs().unwrap().is_empty());
        assert_eq!(ex.labels().unwrap(), qa());
    }

    #[test]
    fn with_inputs_copies_and_without_keeps_input_keys() {
        let base = qa();
        let with = base.with_inputs(["question"]);
        assert_eq!(base.input_keys(), None);
        let keys: BTreeSet<String> = ["question".to_string()].into();
        assert_eq!(with.input_keys(), Some(&keys));

        let trimmed = with.without(["answer", "missing"]);
        assert_eq!(trimmed.keys().collect::<Vec<_>>(), ["question"]);
        assert_eq!(trimmed.input_keys(), Some(&keys));
        assert_eq!(with.len(), 2);
        assert_eq!(with.clone().input_keys(), Some(&keys));
    }

    #[test]
    fn insert_and_remove_keep_order() {
        let mut ex = Example::from_pairs([("a", 1), ("b", 2), ("c", 3)]);
        assert_eq!(ex.insert("a", 10), Some(json!(1)));
        assert_eq!(ex.remove("b"), Some(json!(2)));
        assert_eq!(ex.remove("b"), None);
        ex.insert("d", 4);
        assert_eq!(ex.keys().collect::<Vec<_>>(), ["a", "c", "d"]);
        assert_eq!(ex.get("a"), Some(&json!(10)));
        assert_eq!(ex.get_str("a"), None);
        if let Some(v) = ex.get_mut("c") {
            *v = json!("three");
        }
        assert_eq!(ex.get_str("c"), Some("three"));
    }

    #[test]
    fn equality_ignores_order_and_input_keys() {
        let a = Example::from_pairs([("x", json!({"p": 1, "q": 2})), ("y", json!([1, 2]))]);
        let b = Example::from_pairs([("y", json!([1, 2])), ("x", json!({"q": 2, "p": 1}))])
            .with_inputs(["x"]);
        assert_eq!(a, b);

        use std::collections::hash_map::DefaultHasher;
        let hash = |e: &Example| {
            let mut h = DefaultHasher::new();
            e.hash(&mut h);
            h.finish()
        };
        assert_eq!(hash(&a), hash(&b));

        // Array order does matter.
        let c = Example::from_pairs([("x", json!({"p": 1, "q": 2})), ("y", json!([2, 1]))]);
        assert_ne!(a, c);
    }

    #[test]
    fn typed_round_trip() {
        let value = Qa {
            question: "2+2?".into(),
            answer: 4,
        };
        let ex = Example::from_typed(&value).unwrap();
        assert_eq!(ex.keys().collect::<Vec<_>>(), ["question", "answer"]);
        assert_eq!(ex.get("answer"), Some(&json!(4)));
        assert_eq!(ex.input_keys(), None);
        assert_eq!(ex.to_typed::<Qa>().unwrap(), value);

        // Extra (and hidden) fields are ignored by default.
        let extended = ex.clone().with("dspy_uuid", "u").with("extra", true);
        assert_eq!(extended.to_typed::<Qa>().unwrap(), value);
    }

    #[test]
    fn to_typed_errors_name_the_field_and_the_type() {
        let missing = Example::new().with("question", "2+2?");
        let err = missing.to_typed::<Qa>().unwrap_err();
        let ExampleError::Convert { type_name, message } = &err else {
            panic!("expected Convert, got {err:?}");
        };
        assert!(type_name.ends_with("Qa"), "{type_name}");
        assert!(message.contains("missing field `answer`"), "{message}");
        assert!(err.to_string().contains("Qa"), "{err}");

        let invalid = missing.with("answer", "four");
        let err = invalid.to_typed::<Qa>().unwrap_err();
        assert!(matches!(err, ExampleError::Convert { .. }));
        assert!(err.to_string().contains("invalid type"), "{err}");
    }

    #[test]
    fn from_typed_rejects_non_objects() {
        let err = Example::from_typed(&vec![1, 2, 3]).unwrap_err();
        assert_eq!(
            err,
            ExampleError::NotAnObject {
                type_name: type_name::<Vec<i32>>(),
                found: "an array",
            }
        );
        assert!(err.to_string().contains("an array"), "{err}");
        assert!(err.to_string().contains("Vec<i32>"), "{err}");

        assert!(matches!(
            Example::from_typed("text"),
            Err(ExampleError::NotAnObject {
                found: "a string",
                ..
            })
        ));
        assert!(matches!(
            Example::from_typed(&Option::<Qa>::None),
            Err(ExampleError::NotAnObject { found: "null", .. })
        ));

        // Maps whose keys are not strings cannot become JSON objects.
        let bad: std::collections::BTreeMap<Vec<u8>, u8> = [(vec![1], 1)].into();
        assert!(matches!(
            Example::from_typed(&bad),
            Err(ExampleError::Convert { .. })
        ));
    }

    #[test]
    fn serializes_as_a_flat_object() {
        let ex = qa().with_inputs(["question"]);
        let text = serde_json::to_string(&ex).unwrap();
        assert_eq!(text, r#"{"question":"What is 2+2?","answer":"4"}"#);

        let back: Example = serde_json::from_str(&text).unwrap();
        assert_eq!(back, ex);
        assert_eq!(back.input_keys(), None);
        assert_eq!(back.keys().collect::<Vec<_>>(), ["question", "answer"]);

        assert!(serde_json::from_str::<Example>("[1, 2]").is_err());
    }

    #[test]
    fn display_mirrors_dspy_repr() {
        assert_eq!(
            qa().with_inputs(["question"]).to_string(),
            "Example({'question': 'What is 2+2?', 'answer': '4'}) (input_keys={'question'})"
        );
        let ex = Example::from_pairs([
            ("n", json!(1.5)),
            ("ok", json!(false)),
            ("none", Value::Null),
            ("list", json!(["it's", 2])),
            ("obj", json!({"k": true})),
        ]);
        assert_eq!(
            ex.to_string(),
            "Example({'n': 1.5, 'ok': False, 'none': None, 'list': [\"it's\", 2], \
             'obj': {'k': True}}) (input_keys=None)"
        );
        assert_eq!(
            Example::new().with_inputs(Vec::<&str>::new()).to_string(),
            "Example({}) (input_keys=set())"
        );
        assert_eq!(python_repr(&json!(["a"])), "['a']");
    }

    #[test]
    fn conversions_from_maps_and_iterators() {
        let map = json!({"a": 1, "b": 2}).as_object().cloned().unwrap();
        let ex = Example::from(map.clone());
        assert_eq!(Map::from(ex.clone()), map);
        assert_eq!(ex.clone().into_map(), map);

        let collected: Example = map.clone().into_iter().collect();
        assert_eq!(collected, ex);

        let mut extended = Example::new().with("b", 0).with("z", 26);
        extended.extend(map);
        assert_eq!(extended.keys().collect::<Vec<_>>(), ["b", "z", "a"]);
        assert_eq!(extended.get("b"), Some(&json!(2)));
    }

    #[test]
    fn merge_overwrites_values_and_adopts_input_keys() {
        let mut a = Example::from_pairs([("x", 1), ("y", 2)]);
        a.merge(Example::from_pairs([("y", 20), ("z", 30)]));
        assert_eq!(a.iter_all().count(), 3);
        assert_eq!(a.get("y"), Some(&json!(20)));
        assert_eq!(a.input_keys(), None);

        a.merge(Example::new().with_inputs(["x"]));
        assert_eq!(a.inputs().unwrap().keys().collect::<Vec<_>>(), ["x"]);
    }
}
