//! DSPy's built-in metrics (`dspy.evaluate.metrics`): SQuAD-style exact match and token F1 over
//! [`normalize_text`], HotPotQA's F1, and the passage match of DPR.

use super::metric::{IntoScore, Metric};
use crate::error::{Error, Result};
use crate::example::{Example, Prediction};
use crate::module::normalize_text;
use crate::settings::TraceEntry;
use futures_util::future::BoxFuture;
use regex::Regex;
use serde_json::Value;
use std::collections::HashMap;
use std::sync::LazyLock;
use unicode_normalization::UnicodeNormalization;

/// What a built-in metric can fail with (DSPy raises on each of these; evaluation records the
/// example as failed).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum MetricError {
    /// The example or the prediction lacks a field the metric reads.
    #[error("the {side} has no field `{field}`")]
    MissingField {
        /// `"example"` or `"prediction"`.
        side: &'static str,
        /// The field.
        field: String,
    },
    /// A field holds a value of a type the metric cannot read.
    #[error("the {side}'s `{field}` must be {expected}, got {found}")]
    InvalidType {
        /// `"example"` or `"prediction"`.
        side: &'static str,
        /// The field.
        field: String,
        /// What it must be.
        expected: &'static str,
        /// The value found (as JSON).
        found: String,
    },
    /// Exact match or F1 over an empty list of reference answers (Python's `max()` of nothing).
    #[error("there are no reference answers to compare with")]
    NoAnswers,
}

impl From<MetricError> for Error {
    fn from(e: MetricError) -> Self {
        Error::step("metric", e)
    }
}

/// DSPy's `em_score`: the two strings are equal after [`normalize_text`].
///
/// ```
/// use dspex_runtime::evaluate::em_score;
/// assert!(em_score("The Eiffel Tower!", "eiffel tower"));
/// assert!(!em_score("paris", "Paris, France"));
/// ```
pub fn em_score(prediction: &str, ground_truth: &str) -> bool {
    normalize_text(prediction) == normalize_text(ground_truth)
}

/// DSPy's `f1_score`: token F1 between the [`normalize_text`] forms, split on whitespace, with
/// overlap counted as a multiset. No overlap (including two empty strings) scores 0.
///
/// ```
/// use dspex_runtime::evaluate::f1_score;
/// assert_eq!(f1_score("the Eiffel Tower", "Eiffel Tower"), 1.0);
/// assert_eq!(f1_score("Eiffel Tower is in Paris", "Paris"), 0.33333333333333337);
/// ```
pub fn f1_score(prediction: &str, ground_truth: &str) -> f64 {
    token_f1(&normalize_text(prediction), &normalize_text(ground_truth))
}

/// DSPy's `hotpot_f1_score`: [`f1_score`], except that it is 0 when either side normalizes to
/// `yes`, `no` or `noanswer` and the two differ.
pub fn hotpot_f1_score(prediction: &str, ground_truth: &str) -> f64 {
    let (p, g) = (normalize_text(prediction), normalize_text(ground_truth));
    let special = |s: &str| matches!(s, "yes" | "no" | "noanswer");
    if (special(&p) || special(&g)) && p != g {
        return 0.0;
    }
    token_f1(&p, &g)
}

/// DSPy's `precision_score`: the share of the prediction's normalized tokens found in the
/// ground truth (multiset overlap); 0 without overlap.
pub fn precision_score(prediction: &str, ground_truth: &str) -> f64 {
    let (p, g) = (normalize_text(prediction), normalize_text(ground_truth));
    let (p, g) = (tokens(&p), tokens(&g));
    let same = overlap(&p, &g);
    if same == 0 {
        return 0.0;
    }
    1.0 * same as f64 / p.len() as f64
}

/// The whitespace tokens of a normalized string.
fn tokens(normalized: &str) -> Vec<&str> {
    normalized.split(' ').filter(|t| !t.is_empty()).collect()
}

/// Token F1 of two normalized strings (single spaces between tokens).
fn token_f1(prediction: &str, ground_truth: &str) -> f64 {
    let (p, g) = (tokens(prediction), tokens(ground_truth));
    let same = overlap(&p, &g);
    if same == 0 {
        return 0.0;
    }
    // The same operations, in the same order, as DSPy's Python.
    let precision = 1.0 * same as f64 / p.len() as f64;
    let recall = 1.0 * same as f64 / g.len() as f64;
    (2.0 * precision * recall) / (precision + recall)
}

/// `sum((Counter(a) & Counter(b)).values())`.
fn overlap(a: &[&str], b: &[&str]) -> usize {
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for t in b {
        *counts.entry(t).or_default() += 1;
    }
    let mut same = 0;
    for t in a {
        if let Some(n) = counts.get_mut(t)
            && *n > 0
        {
            *n -= 1;
            same += 1;
        }
    }
    same
}

/// DSPy's `EM(prediction, answers_list)`: whether the prediction matches any answer
/// ([`em_score`]).
///
/// # Errors
///
/// [`MetricError::NoAnswers`] for an empty list.
pub fn em<S: AsRef<str>>(prediction: &str, answers: &[S]) -> Result<bool, MetricError> {
    if answers.is_empty() {
        return Err(MetricError::NoAnswers);
    }
    let p = normalize_text(prediction);
    Ok(answers.iter().any(|a| normalize_text(a.as_ref()) == p))
}

/// DSPy's `F1(prediction, answers_list)`: the best [`f1_score`] over the answers.
///
/// # Errors
///
/// [`MetricError::NoAnswers`] for an empty list.
pub fn f1<S: AsRef<str>>(prediction: &str, answers: &[S]) -> Result<f64, MetricError> {
    best(answers, |a| f1_score(prediction, a))
}

/// DSPy's `HotPotF1(prediction, answers_list)`: the best [`hotpot_f1_score`] over the answers.
///
/// # Errors
///
/// [`MetricError::NoAnswers`] for an empty list.
pub fn hotpot_f1<S: AsRef<str>>(prediction: &str, answers: &[S]) -> Result<f64, MetricError> {
    best(answers, |a| hotpot_f1_score(prediction, a))
}

/// Python's `max(f(a) for a in answers)` (the first maximum; NaN never occurs).
fn best<S: AsRef<str>>(answers: &[S], f: impl Fn(&str) -> f64) -> Result<f64, MetricError> {
    let mut scores = answers.iter().map(|a| f(a.as_ref()));
    let first = scores.next().ok_or(MetricError::NoAnswers)?;
    Ok(scores.fold(first, |m, s| if s > m { s } else { m }))
}

/// DSPy's `_passage_match`: whether any passage contains any answer as a contiguous run of
/// tokens, both sides [`normalize_text`]-ed, then tokenized as DPR does (runs of letters, digits
/// and marks, or single other visible characters). An answer that normalizes to nothing matches
/// every passage; no passages match nothing.
///
/// ```
/// use dspex_runtime::evaluate::passage_match;
/// let passages = ["The Eiffel Tower is in Paris.", "The Louvre is a museum."];
/// assert!(passage_match(&passages, &["eiffel tower"]));
/// assert!(!passage_match(&passages, &["Eiffel Towers"]));
/// ```
pub fn passage_match<P: AsRef<str>, A: AsRef<str>>(passages: &[P], answers: &[A]) -> bool {
    let answers: Vec<Vec<String>> = answers
        .iter()
        .map(|a| dpr_tokens(&normalize_text(a.as_ref())))
        .collect();
    passages.iter().any(|passage| {
        let text = dpr_tokens(&normalize_text(passage.as_ref()));
        answers.iter().any(|answer| {
            answer.is_empty()
                || (answer.len() <= text.len() && text.windows(answer.len()).any(|w| w == answer))
        })
    })
}

/// DPR's `SimpleTokenizer` (`[\p{L}\p{N}\p{M}]+|[^\p{Z}\p{C}]` over the NFD form), lowercased.
fn dpr_tokens(text: &str) -> Vec<String> {
    static TOKEN: LazyLock<Option<Regex>> =
        LazyLock::new(|| Regex::new(r"[\p{L}\p{N}\p{M}]+|[^\p{Z}\p{C}]").ok());
    let nfd: String = text.nfd().collect();
    match TOKEN.as_ref() {
        Some(re) => re
            .find_iter(&nfd)
            .map(|m| m.as_str().to_lowercase())
            .collect(),
        // The pattern is a constant that compiles (a test checks); whitespace split otherwise.
        None => nfd.split_whitespace().map(str::to_lowercase).collect(),
    }
}

/// Reads a field as a list of reference answers: a string is one answer, a list of strings
/// several (DSPy's `answer_exact_match` and `answer_passage_match`).
fn answers_of(example: &Example, field: &str) -> Result<Vec<String>, MetricError> {
    let value = example
        .get(field)
        .ok_or_else(|| MetricError::MissingField {
            side: "example",
            field: field.to_string(),
        })?;
    strings_of(value, "example", field, "a string or a list of strings")
}

fn strings_of(
    value: &Value,
    side: &'static str,
    field: &str,
    expected: &'static str,
) -> Result<Vec<String>, MetricError> {
    let invalid = || MetricError::InvalidType {
        side,
        field: field.to_string(),
        expected,
        found: value.to_string(),
    };
    match value {
        Value::String(s) => Ok(vec![s.clone()]),
        Value::Array(items) => items
            .iter()
            .map(|v| v.as_str().map(str::to_string).ok_or_else(invalid))
            .collect(),
        _ => Err(invalid()),
    }
}

fn prediction_str<'a>(prediction: &'a Prediction, field: &str) -> Result<&'a str, MetricError> {
    let value = prediction
        .get(field)
        .ok_or_else(|| MetricError::MissingField {
            side: "prediction",
            field: field.to_string(),
        })?;
    value.as_str().ok_or_else(|| MetricError::InvalidType {
        side: "prediction",
        field: field.to_string(),
        expected: "a string",
        found: value.to_string(),
    })
}

/// `impl Metric` for a built-in whose `check(example, prediction)` returns a `bool` or an `f64`
/// (converted and flagged through [`IntoScore`]), named by `$name` (a closure over `&self`).
macro_rules! check_metric {
    ($ty:ty, $out:ty, |$m:ident| $name:expr) => {
        impl Metric for $ty {
            fn score<'a>(
                &'a self,
                example: &'a Example,
                prediction: &'a Prediction,
                _trace: Option<&'a [TraceEntry]>,
            ) -> BoxFuture<'a, Result<f64>> {
                let checked = self.check(example, prediction).map_err(Error::from);
                Box::pin(std::future::ready(checked.into_score()))
            }

            fn name(&self) -> &str {
                let $m = self;
                $name
            }

            fn returns_bool(&self) -> bool {
                <$out as IntoScore>::BOOLEAN
            }
        }
    };
}

/// DSPy's `answer_exact_match` as a [`Metric`]: the prediction's `answer` against the example's
/// `answer` (a string, or a list of acceptable answers). With `frac` 1 (the default) it is
/// [`em`]; with `frac < 1` it passes when the best token F1 ([`f1`]) is at least `frac`.
/// Pass/fail; named `answer_exact_match`.
///
/// ```
/// use dspex_runtime::evaluate::{AnswerExactMatch, Metric};
/// use dspex_runtime::{Example, Prediction};
///
/// let ex = Example::new().with("answer", serde_json::json!(["Eiffel Tower", "Louvre"]));
/// let pred = Prediction::from_pairs([("answer", "The Eiffel Tower is tall")]);
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// assert_eq!(AnswerExactMatch::new().score(&ex, &pred, None).await?, 0.0);
/// assert_eq!(AnswerExactMatch::new().frac(0.5).score(&ex, &pred, None).await?, 1.0);
/// assert_eq!(AnswerExactMatch::new().frac(0.67).score(&ex, &pred, None).await?, 0.0);
/// # Ok::<(), dspex_runtime::Error>(())
/// # }).unwrap();
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct AnswerExactMatch {
    frac: f64,
    example_field: String,
    prediction_field: String,
}

impl Default for AnswerExactMatch {
    fn default() -> Self {
        Self::new()
    }
}

impl AnswerExactMatch {
    /// Exact match on `answer` (`frac` 1).
    pub fn new() -> Self {
        AnswerExactMatch {
            frac: 1.0,
            example_field: "answer".into(),
            prediction_field: "answer".into(),
        }
    }

    /// Below 1, pass when the best token F1 reaches `frac` instead of requiring exact match.
    #[must_use]
    pub fn frac(mut self, frac: f64) -> Self {
        self.frac = frac;
        self
    }

    /// Compare these fields instead of `answer` (DSPy always reads `answer`).
    #[must_use]
    pub fn fields(mut self, example_field: &str, prediction_field: &str) -> Self {
        self.example_field = example_field.to_string();
        self.prediction_field = prediction_field.to_string();
        self
    }

    /// The pass/fail decision for one example.
    ///
    /// # Errors
    ///
    /// [`MetricError`] when a field is missing or of the wrong type, or there are no answers.
    pub fn check(&self, example: &Example, prediction: &Prediction) -> Result<bool, MetricError> {
        let answers = answers_of(example, &self.example_field)?;
        let predicted = prediction_str(prediction, &self.prediction_field)?;
        if self.frac >= 1.0 {
            em(predicted, &answers)
        } else {
            Ok(f1(predicted, &answers)? >= self.frac)
        }
    }
}

/// DSPy's `answer_exact_match` with `frac` 1; see [`AnswerExactMatch`].
pub fn answer_exact_match() -> AnswerExactMatch {
    AnswerExactMatch::new()
}

check_metric!(AnswerExactMatch, bool, |_m| "answer_exact_match");

/// DSPy's `answer_passage_match` as a [`Metric`]: whether any passage of the prediction's
/// `context` contains one of the example's answers ([`passage_match`]). Pass/fail; named
/// `answer_passage_match`.
///
/// `context` is a list of passages; a single string counts as one passage (DSPy would iterate
/// over its characters).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnswerPassageMatch {
    example_field: String,
    context_field: String,
}

impl Default for AnswerPassageMatch {
    fn default() -> Self {
        Self::new()
    }
}

impl AnswerPassageMatch {
    /// Answers from `answer`, passages from `context`.
    pub fn new() -> Self {
        AnswerPassageMatch {
            example_field: "answer".into(),
            context_field: "context".into(),
        }
    }

    /// Read the answers and the passages from these fields instead.
    #[must_use]
    pub fn fields(mut self, example_field: &str, context_field: &str) -> Self {
        self.example_field = example_field.to_string();
        self.context_field = context_field.to_string();
        self
    }

    /// The pass/fail decision for one example.
    ///
    /// # Errors
    ///
    /// [`MetricError`] when a field is missing or of the wrong type.
    pub fn check(&self, example: &Example, prediction: &Prediction) -> Result<bool, MetricError> {
        let answers = answers_of(example, &self.example_field)?;
        let context =
            prediction
                .get(&self.context_field)
                .ok_or_else(|| MetricError::MissingField {
                    side: "prediction",
                    field: self.context_field.clone(),
                })?;
        let passages = strings_of(
            context,
            "prediction",
            &self.context_field,
            "a list of strings",
        )?;
        Ok(passage_match(&passages, &answers))
    }
}

/// DSPy's `answer_passage_match`; see [`AnswerPassageMatch`].
pub fn answer_passage_match() -> AnswerPassageMatch {
    AnswerPassageMatch::new()
}

check_metric!(AnswerPassageMatch, bool, |_m| "answer_passage_match");

/// The best token F1 of the prediction's `answer` against the example's answers, as a
/// [`Metric`] scoring 0–1 (DSPy's `F1`, or `HotPotF1` with [`AnswerF1::hotpot`]). Named
/// `answer_f1` (`answer_hotpot_f1`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnswerF1 {
    hotpot: bool,
    example_field: String,
    prediction_field: String,
}

impl Default for AnswerF1 {
    fn default() -> Self {
        Self::new()
    }
}

impl AnswerF1 {
    /// SQuAD token F1 ([`f1`]) on `answer`.
    pub fn new() -> Self {
        AnswerF1 {
            hotpot: false,
            example_field: "answer".into(),
            prediction_field: "answer".into(),
        }
    }

    /// HotPotQA's F1 ([`hotpot_f1`]) on `answer`.
    pub fn hotpot() -> Self {
        AnswerF1 {
            hotpot: true,
            ..Self::new()
        }
    }

    /// Compare these fields instead of `answer`.
    #[must_use]
    pub fn fields(mut self, example_field: &str, prediction_field: &str) -> Self {
        self.example_field = example_field.to_string();
        self.prediction_field = prediction_field.to_string();
        self
    }

    /// The F1 for one example.
    ///
    /// # Errors
    ///
    /// [`MetricError`] when a field is missing or of the wrong type, or there are no answers.
    pub fn check(&self, example: &Example, prediction: &Prediction) -> Result<f64, MetricError> {
        let answers = answers_of(example, &self.example_field)?;
        let predicted = prediction_str(prediction, &self.prediction_field)?;
        if self.hotpot {
            hotpot_f1(predicted, &answers)
        } else {
            f1(predicted, &answers)
        }
    }
}

check_metric!(AnswerF1, f64, |m| if m.hotpot {
    "answer_hotpot_f1"
} else {
    "answer_f1"
});

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn block<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(f)
    }

    #[test]
    fn the_dpr_pattern_compiles() {
        assert!(Regex::new(r"[\p{L}\p{N}\p{M}]+|[^\p{Z}\p{C}]").is_ok());
        assert_eq!(
            dpr_tokens("Hello, wörld! 3.5\u{200b}x"),
            ["hello", ",", "wo\u{308}rld", "!", "3", ".", "5", "x"]
        );
    }

    #[test]
    fn token_metrics_match_dspy() {
        // Values from DSPy 3.4.1 (dspy.evaluate.metrics), CPython 3.11.
        assert!(em_score("The Eiffel Tower", "Eiffel Tower"));
        assert!(em("paris", &["Paris"]).unwrap());
        assert!(!em("paris", &["Paris, France"]).unwrap());
        assert_eq!(em::<&str>("x", &[]), Err(MetricError::NoAnswers));
        assert_eq!(
            f1_score("Eiffel Tower is in Paris", "Paris"),
            0.33333333333333337
        );
        assert_eq!(
            f1_score("the cat the cat sat", "cat cat cat"),
            0.6666666666666666
        );
        assert_eq!(f1_score("", ""), 0.0);
        // `a` is an article.
        assert_eq!(f1_score("a b c", "c d"), 0.5);
        assert_eq!(
            f1("The Eiffel Tower is tall", &["Eiffel Tower", "Louvre"]).unwrap(),
            0.6666666666666666
        );
        assert_eq!(hotpot_f1_score("yes", "no"), 0.0);
        assert_eq!(hotpot_f1_score("yes", "Yes!"), 1.0);
        assert_eq!(hotpot_f1_score("yes it is", "yes"), 0.0);
        assert_eq!(hotpot_f1_score("it is yes", "is"), 0.5);
        assert_eq!(
            precision_score("eiffel tower in paris", "eiffel tower"),
            0.5
        );
        assert_eq!(hotpot_f1("no", &["yes", "no"]).unwrap(), 1.0);
    }

    #[test]
    fn passage_match_matches_dspy() {
        let passages = ["The Eiffel Tower is in Paris.", "Towers of Babel"];
        assert!(passage_match(&passages, &["Eiffel Tower"]));
        assert!(passage_match(&passages, &["tower"]));
        assert!(!passage_match(&["Towers of Babel"], &["tower"]));
        assert!(passage_match(&passages, &["towers"]));
        assert!(!passage_match(&passages, &["Paris France"]));
        // An answer that normalizes to nothing matches any passage, but there must be one.
        assert!(passage_match(&passages, &["The"]));
        assert!(passage_match(&[""], &["The"]));
        assert!(!passage_match::<&str, &str>(&[], &["The"]));
        assert!(!passage_match::<&str, &str>(&passages, &[]));
        // Punctuation is removed before tokenizing; accents stay as marks after NFD.
        assert!(passage_match(
            &["Cafe-au-lait, s'il vous plait"],
            &["cafeaulait"]
        ));
        assert!(!passage_match(&["Café-au-lait"], &["cafeaulait"]));
        assert!(!passage_match(&["Café"], &["cafe"]));
    }

    #[test]
    fn answer_metrics_read_strings_and_lists() {
        let pred = Prediction::from_pairs([("answer", "The Eiffel Tower is tall")]);
        let listed = Example::new().with("answer", json!(["Eiffel Tower", "Louvre"]));
        let single = Example::new().with("answer", "the eiffel tower is TALL");
        block(async {
            let m = answer_exact_match();
            assert_eq!(m.score(&listed, &pred, None).await.unwrap(), 0.0);
            assert_eq!(m.score(&single, &pred, None).await.unwrap(), 1.0);
            assert_eq!(
                m.clone()
                    .frac(0.5)
                    .score(&listed, &pred, None)
                    .await
                    .unwrap(),
                1.0
            );
            assert_eq!(
                m.clone()
                    .frac(0.67)
                    .score(&listed, &pred, None)
                    .await
                    .unwrap(),
                0.0
            );
            assert!(m.returns_bool());
            assert_eq!(m.name(), "answer_exact_match");

            let bad = Example::new().with("answer", 3);
            let err = m.score(&bad, &pred, None).await.unwrap_err().to_string();
            assert!(
                err.contains("`answer` must be a string or a list of strings"),
                "{err}"
            );
            let err = m
                .score(&Example::new(), &pred, None)
                .await
                .unwrap_err()
                .to_string();
            assert!(err.contains("the example has no field `answer`"), "{err}");
            let none = Example::new().with("answer", json!([]));
            assert!(m.score(&none, &pred, None).await.is_err());

            let f = AnswerF1::new();
            assert_eq!(
                f.score(&listed, &pred, None).await.unwrap(),
                0.6666666666666666
            );
            assert!(!f.returns_bool());
            assert_eq!(AnswerF1::hotpot().name(), "answer_hotpot_f1");

            let ctx = Prediction::from_pairs([(
                "context",
                json!(["The Louvre is big.", "A tower in Paris."]),
            )]);
            let p = answer_passage_match();
            assert_eq!(p.score(&listed, &ctx, None).await.unwrap(), 1.0);
            assert_eq!(p.score(&single, &ctx, None).await.unwrap(), 0.0);
            let one = Prediction::from_pairs([("context", "all about the Louvre")]);
            assert_eq!(p.score(&listed, &one, None).await.unwrap(), 1.0);
            assert!(p.score(&listed, &pred, None).await.is_err());
        });
    }
}
