//! [`Prediction`] — the output fields of one LM answer, with every completion when `n > 1`.

use std::fmt;
use std::hash::{Hash, Hasher};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};

use super::example::{is_hidden_key, map_from_typed, map_to_typed, python_repr};
use super::{Example, ExampleError};

/// The values of one LM answer — DSPy's `dspy.Prediction`.
///
/// A prediction is an ordered map of output fields. When several completions were requested
/// (`n > 1`), it also keeps all of them: [`completions`](Self::completions) lists every
/// completion, and the first one always equals the prediction's own fields (editing the
/// prediction with [`insert`](Self::insert) or [`remove`](Self::remove) edits the first completion
/// too). A prediction with a single completion reports exactly one, its own fields.
///
/// As in [`Example`], keys starting with `dspy_` are hidden from [`len`](Self::len),
/// [`keys`](Self::keys), [`iter`](Self::iter) and `Display`, but not from equality or
/// serialization. Equality compares the fields only (in any order; other completions are
/// ignored), and a prediction equals an [`Example`] with the same fields.
///
/// Serialized, a prediction is the flat JSON object of its fields; the other completions are not
/// serialized, so a deserialized prediction has exactly one completion.
///
/// ```
/// use dspex_core::Prediction;
/// use serde_json::json;
///
/// let pred = Prediction::from_completions(vec![
///     json!({"answer": "Paris"}).as_object().unwrap().clone(),
///     json!({"answer": "Lyon"}).as_object().unwrap().clone(),
/// ])
/// .unwrap();
/// assert_eq!(pred.get_str("answer"), Some("Paris"));
/// assert_eq!(pred.num_completions(), 2);
/// assert_eq!(pred.completions()[1]["answer"], "Lyon");
/// assert_eq!(serde_json::to_string(&pred).unwrap(), r#"{"answer":"Paris"}"#);
/// ```
#[derive(Debug, Clone, Default)]
pub struct Prediction {
    fields: Map<String, Value>,
    /// Every completion (the first equal to `fields`) when there are more than one; empty when
    /// the prediction is its only completion.
    completions: Vec<Map<String, Value>>,
}

impl Prediction {
    /// A prediction with the given fields and a single completion.
    pub fn new(fields: Map<String, Value>) -> Self {
        Self {
            fields,
            completions: Vec::new(),
        }
    }

    /// A prediction with these fields, in order.
    ///
    /// ```
    /// use dspex_core::Prediction;
    ///
    /// let pred = Prediction::from_pairs([("answer", "4")]);
    /// assert_eq!(pred.get_str("answer"), Some("4"));
    /// ```
    pub fn from_pairs<K, V>(pairs: impl IntoIterator<Item = (K, V)>) -> Self
    where
        K: Into<String>,
        V: Into<Value>,
    {
        Self::new(
            pairs
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        )
    }

    /// A prediction from every completion of one call: its fields are the first completion's.
    ///
    /// # Errors
    ///
    /// [`ExampleError::EmptyCompletions`] if `completions` is empty.
    pub fn from_completions(
        mut completions: Vec<Map<String, Value>>,
    ) -> Result<Self, ExampleError> {
        let fields = completions
            .first()
            .cloned()
            .ok_or(ExampleError::EmptyCompletions)?;
        if completions.len() == 1 {
            // A single completion is the prediction itself.
            completions.clear();
        }
        Ok(Self {
            fields,
            completions,
        })
    }

    /// A prediction holding the fields of a typed value, which must serialize to a JSON object.
    ///
    /// # Errors
    ///
    /// [`ExampleError::NotAnObject`] if `value` serializes to anything but an object, and
    /// [`ExampleError::Convert`] if serialization itself fails.
    pub fn from_typed<T: Serialize + ?Sized>(value: &T) -> Result<Self, ExampleError> {
        map_from_typed(value).map(Self::new)
    }

    /// Deserializes a typed value from the fields (hidden `dspy_` keys included; unknown fields
    /// are ignored unless `T` denies them).
    ///
    /// # Errors
    ///
    /// [`ExampleError::Convert`] naming `T` and carrying serde's message, which names the missing
    /// or invalid field.
    pub fn to_typed<T: DeserializeOwned>(&self) -> Result<T, ExampleError> {
        map_to_typed(&self.fields)
    }

    field_accessors!();

    /// Sets `key` to `value` (in the fields and in the first completion), returning the previous
    /// value. An existing key keeps its position; a new key goes last.
    pub fn insert(&mut self, key: impl Into<String>, value: impl Into<Value>) -> Option<Value> {
        let key = key.into();
        let value = value.into();
        if let Some(first) = self.completions.first_mut() {
            first.insert(key.clone(), value.clone());
        }
        self.fields.insert(key, value)
    }

    /// Removes `key` (from the fields and from the first completion), keeping the order of the
    /// other fields, and returns its value.
    pub fn remove(&mut self, key: &str) -> Option<Value> {
        if let Some(first) = self.completions.first_mut() {
            first.shift_remove(key);
        }
        self.fields.shift_remove(key)
    }

    /// All the fields, hidden `dspy_` keys included; other completions are dropped.
    pub fn into_map(self) -> Map<String, Value> {
        self.fields
    }

    /// Every completion, in order; the first equals the prediction's fields. Never empty.
    pub fn completions(&self) -> &[Map<String, Value>] {
        if self.completions.is_empty() {
            std::slice::from_ref(&self.fields)
        } else {
            &self.completions
        }
    }

    /// The number of completions (at least 1).
    pub fn num_completions(&self) -> usize {
        self.completions().len()
    }

    /// An [`Example`] with the same fields and no input keys.
    pub fn into_example(self) -> Example {
        Example::from_map(self.fields)
    }

    /// The numeric `score` field, as DSPy's `float(prediction)` reads it; `None` if there is no
    /// `score` or it is not a number.
    pub fn score(&self) -> Option<f64> {
        self.fields.get("score").and_then(Value::as_f64)
    }
}

impl PartialEq for Prediction {
    /// Equal fields, in any order; other completions are ignored.
    fn eq(&self, other: &Self) -> bool {
        self.fields == other.fields
    }
}

impl Eq for Prediction {}

impl Hash for Prediction {
    /// Hashes the fields independently of their order (consistent with `Eq`).
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.fields.hash(state);
    }
}

impl PartialEq<Example> for Prediction {
    /// Equal fields, in any order (input keys and other completions are ignored).
    fn eq(&self, other: &Example) -> bool {
        &self.fields == other.as_map()
    }
}

impl PartialEq<Prediction> for Example {
    /// Equal fields, in any order (input keys and other completions are ignored).
    fn eq(&self, other: &Prediction) -> bool {
        self.as_map() == &other.fields
    }
}

impl fmt::Display for Prediction {
    /// DSPy's repr: `Prediction(\n    answer='A'\n)` with visible fields only; with several
    /// completions the tail reads `completions=Completions(...)\n) (<n-1> completions omitted)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let items: Vec<String> = self
            .iter()
            .map(|(k, v)| format!("{k}={}", python_repr(v)))
            .collect();
        let items = items.join(",\n    ");
        let n = self.num_completions();
        if n <= 1 {
            write!(f, "Prediction(\n    {items}\n)")
        } else {
            write!(
                f,
                "Prediction(\n    {items},\n    completions=Completions(...)\n) ({} completions omitted)",
                n - 1
            )
        }
    }
}

impl Serialize for Prediction {
    /// The flat JSON object of the fields (hidden keys included); other completions are omitted.
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.fields.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Prediction {
    /// Any JSON object, as a prediction with a single completion.
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Map::deserialize(deserializer).map(Self::new)
    }
}

impl From<Map<String, Value>> for Prediction {
    fn from(fields: Map<String, Value>) -> Self {
        Self::new(fields)
    }
}

impl From<Prediction> for Map<String, Value> {
    fn from(prediction: Prediction) -> Self {
        prediction.fields
    }
}

impl From<Prediction> for Example {
    fn from(prediction: Prediction) -> Self {
        prediction.into_example()
    }
}

impl From<Example> for Prediction {
    /// The example's fields as a single-completion prediction; input keys are dropped.
    fn from(example: Example) -> Self {
        Self::new(example.into_map())
    }
}

impl FromIterator<(String, Value)> for Prediction {
    fn from_iter<I: IntoIterator<Item = (String, Value)>>(iter: I) -> Self {
        Self::new(iter.into_iter().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn map(value: Value) -> Map<String, Value> {
        value.as_object().cloned().unwrap()
    }

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Answer {
        reasoning: String,
        answer: String,
    }

    #[test]
    fn single_completion_is_the_prediction_itself() {
        let pred = Prediction::new(map(json!({"answer": "4"})));
        assert_eq!(pred.num_completions(), 1);
        assert_eq!(pred.completions(), [map(json!({"answer": "4"}))]);

        let pred = Prediction::from_completions(vec![map(json!({"answer": "4"}))]).unwrap();
        assert_eq!(pred.num_completions(), 1);
        assert_eq!(pred.get_str("answer"), Some("4"));
    }

    #[test]
    fn from_completions_takes_the_first_and_keeps_all() {
        let completions = vec![
            map(json!({"reasoning": "r1", "answer": "a1"})),
            map(json!({"reasoning": "r2", "answer": "a2"})),
            map(json!({"reasoning": "r3", "answer": "a3"})),
        ];
        let mut pred = Prediction::from_completions(completions.clone()).unwrap();
        assert_eq!(pred.as_map(), &completions[0]);
        assert_eq!(pred.keys().collect::<Vec<_>>(), ["reasoning", "answer"]);
        assert_eq!(pred.num_completions(), 3);
        assert_eq!(pred.completions(), completions.as_slice());

        // Editing the prediction edits the first completion only.
        pred.insert("answer", "changed");
        pred.remove("reasoning");
        assert_eq!(pred.completions()[0], map(json!({"answer": "changed"})));
        assert_eq!(pred.completions()[1], completions[1]);
        assert_eq!(pred.completions()[0], *pred.as_map());

        // Equality ignores the other completions.
        assert_eq!(pred, Prediction::new(map(json!({"answer": "changed"}))));
    }

    #[test]
    fn from_completions_rejects_an_empty_list() {
        let err = Prediction::from_completions(Vec::new()).unwrap_err();
        assert_eq!(err, ExampleError::EmptyCompletions);
        assert!(err.to_string().contains("empty"), "{err}");
    }

    #[test]
    fn example_and_prediction_compare_by_fields() {
        let pred = Prediction::new(map(json!({"question": "Q", "answer": "A"})));
        let ex =
            Example::from_pairs([("answer", "A"), ("question", "Q")]).with_inputs(["question"]);
        assert!(pred == ex);
        assert!(ex == pred);
        assert_eq!(pred.clone().into_example(), ex);
        assert_eq!(pred.clone().into_example().input_keys(), None);
        assert_eq!(Prediction::from(ex.clone()), pred);
        assert_eq!(Example::from(pred.clone()), ex);

        let other = ex.clone().with("dspy_trace", 1);
        assert!(pred != other);
        assert!(other != pred);
    }

    #[test]
    fn dspy_keys_are_hidden_but_compared() {
        let mut pred = Prediction::new(map(json!({"answer": "A"})));
        pred.insert("dspy_uuid", "u");
        assert_eq!(pred.len(), 1);
        assert!(!pred.is_empty());
        assert_eq!(pred.keys().collect::<Vec<_>>(), ["answer"]);
        assert_eq!(pred.values().count(), 1);
        assert_eq!(pred.iter_all().count(), 2);
        assert!(pred.contains_key("dspy_uuid"));
        assert_ne!(pred, Prediction::new(map(json!({"answer": "A"}))));
        assert!(!pred.to_string().contains("dspy_uuid"));
    }

    #[test]
    fn serializes_flat_without_other_completions() {
        let pred = Prediction::from_completions(vec![
            map(json!({"answer": "a1", "score": 0.5})),
            map(json!({"answer": "a2", "score": 0.9})),
        ])
        .unwrap();
        let text = serde_json::to_string(&pred).unwrap();
        assert_eq!(text, r#"{"answer":"a1","score":0.5}"#);

        let back: Prediction = serde_json::from_str(&text).unwrap();
        assert_eq!(back, pred);
        assert_eq!(back.num_completions(), 1);
        assert_eq!(back.keys().collect::<Vec<_>>(), ["answer", "score"]);
    }

    #[test]
    fn typed_round_trip() {
        let value = Answer {
            reasoning: "2+2 is 4".into(),
            answer: "4".into(),
        };
        let pred = Prediction::from_typed(&value).unwrap();
        assert_eq!(pred.keys().collect::<Vec<_>>(), ["reasoning", "answer"]);
        assert_eq!(pred.to_typed::<Answer>().unwrap(), value);

        let err = Prediction::new(map(json!({"answer": "4"})))
            .to_typed::<Answer>()
            .unwrap_err();
        assert!(
            err.to_string().contains("missing field `reasoning`"),
            "{err}"
        );
        assert!(err.to_string().contains("Answer"), "{err}");

        assert!(matches!(
            Prediction::from_typed(&[1, 2]),
            Err(ExampleError::NotAnObject {
                found: "an array",
                ..
            })
        ));
    }

    #[test]
    fn score_reads_a_numeric_score_field() {
        assert_eq!(
            Prediction::new(map(json!({"score": 0.75}))).score(),
            Some(0.75)
        );
        assert_eq!(Prediction::new(map(json!({"score": 3}))).score(), Some(3.0));
        assert_eq!(Prediction::new(map(json!({"score": "high"}))).score(), None);
        assert_eq!(Prediction::new(map(json!({"answer": "A"}))).score(), None);
    }

    #[test]
    fn display_mirrors_dspy_repr() {
        let pred = Prediction::new(map(json!({"reasoning": "r", "answer": 4})));
        assert_eq!(
            pred.to_string(),
            "Prediction(\n    reasoning='r',\n    answer=4\n)"
        );

        let pred = Prediction::from_completions(vec![
            map(json!({"answer": "a"})),
            map(json!({"answer": "b"})),
        ])
        .unwrap();
        assert_eq!(
            pred.to_string(),
            "Prediction(\n    answer='a',\n    completions=Completions(...)\n) (1 completions omitted)"
        );
    }

    #[test]
    fn conversions() {
        let fields = map(json!({"a": 1}));
        let pred = Prediction::from(fields.clone());
        assert_eq!(Map::from(pred.clone()), fields);
        assert_eq!(pred.clone().into_map(), fields);
        let collected: Prediction = fields.into_iter().collect();
        assert_eq!(collected, pred);
        assert_eq!(Prediction::default().num_completions(), 1);
        assert!(Prediction::default().is_empty());
    }
}
