//! [`majority`]: the most common answer among completions, and DSPy's [`normalize_text`].

use crate::error::Error;
use crate::example::Prediction;
use crate::pycompat::text::is_py_space;
use serde_json::{Map, Value};
use unicode_normalization::UnicodeNormalization;

/// What [`majority`] can fail with.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum MajorityError {
    /// There were no completions to vote over.
    #[error("majority needs at least one completion")]
    NoCompletions,
    /// No field was named and the first completion has none to take the last of.
    #[error("majority: no field was given and the first completion has no fields")]
    NoField,
    /// A completion lacks the voted field.
    #[error("majority: completion {index} has no field `{field}`")]
    MissingField {
        /// The voted field.
        field: String,
        /// The completion's position (0-based).
        index: usize,
    },
    /// A completion's value for the voted field is not text, so it cannot be normalized.
    #[error("majority: the `{field}` of completion {index} is not a string: {value}")]
    NotText {
        /// The voted field.
        field: String,
        /// The completion's position (0-based).
        index: usize,
        /// The value found.
        value: Value,
    },
}

impl From<MajorityError> for Error {
    fn from(e: MajorityError) -> Self {
        Error::step("majority", e)
    }
}

/// DSPy's `majority` (`dspy.predict.aggregation`): the completion whose `field` holds the most
/// common answer after [`normalize_text`].
///
/// - `field` defaults to the last key of the first completion (for a prediction of DSPy's
///   `Predict` or `ChainOfThought` that is the signature's last output field, as in DSPy).
/// - Answers that normalize to nothing (`""`, `"The"`, `"A"`, `"!!"`) are ignored, unless every
///   answer does — then they all count as one empty answer.
/// - A tie goes to the answer seen first; the result is the first completion with the winning
///   answer, as a prediction with that one completion.
///
/// Pass `prediction.completions()` to vote over the completions of one call (`n > 1`), or the
/// fields of several predictions (`preds.iter().map(Prediction::as_map)`).
///
/// ```
/// use dspex_runtime::module::majority;
/// use dspex_runtime::Prediction;
/// use serde_json::json;
///
/// let completions: Vec<_> = ["Paris", "paris!", "Lyon", "The"]
///     .iter()
///     .map(|a| json!({"reasoning": "...", "answer": a}).as_object().unwrap().clone())
///     .collect();
/// let pred = Prediction::from_completions(completions).unwrap();
/// let winner = majority(pred.completions(), None)?;
/// assert_eq!(winner.get_str("answer"), Some("Paris"));
/// # Ok::<(), dspex_runtime::module::MajorityError>(())
/// ```
///
/// # Errors
///
/// [`MajorityError`] when there are no completions, a completion lacks the field, or its value is
/// not a string (DSPy raises on each of these).
pub fn majority<'a>(
    completions: impl IntoIterator<Item = &'a Map<String, Value>>,
    field: Option<&str>,
) -> Result<Prediction, MajorityError> {
    majority_by(completions, field, default_normalize)
}

/// [`majority`] with another normalizer: answers for which `normalize` returns `None` are ignored
/// (unless all are). DSPy's `majority(..., normalize=...)`; pass `|s| Some(s.to_string())` to
/// compare answers as they are.
///
/// # Errors
///
/// As [`majority`].
pub fn majority_by<'a>(
    completions: impl IntoIterator<Item = &'a Map<String, Value>>,
    field: Option<&str>,
    normalize: impl Fn(&str) -> Option<String>,
) -> Result<Prediction, MajorityError> {
    let completions: Vec<&Map<String, Value>> = completions.into_iter().collect();
    let first = completions.first().ok_or(MajorityError::NoCompletions)?;
    let field = match field {
        Some(f) => f,
        None => first
            .keys()
            .next_back()
            .map(String::as_str)
            .ok_or(MajorityError::NoField)?,
    };
    let mut normalized = Vec::with_capacity(completions.len());
    for (index, completion) in completions.iter().enumerate() {
        let value = completion
            .get(field)
            .ok_or_else(|| MajorityError::MissingField {
                field: field.to_string(),
                index,
            })?;
        let text = value.as_str().ok_or_else(|| MajorityError::NotText {
            field: field.to_string(),
            index,
            value: value.clone(),
        })?;
        normalized.push(normalize(text));
    }
    // Count in order of first appearance, so that a tie goes to the earliest answer.
    let ignore_none = normalized.iter().any(Option::is_some);
    let mut counts: Vec<(&Option<String>, usize)> = Vec::new();
    for value in normalized.iter().filter(|v| !ignore_none || v.is_some()) {
        match counts.iter_mut().find(|(v, _)| *v == value) {
            Some((_, n)) => *n += 1,
            None => counts.push((value, 1)),
        }
    }
    let mut winner = counts[0];
    for &(value, n) in &counts[1..] {
        if n > winner.1 {
            winner = (value, n);
        }
    }
    let index = normalized
        .iter()
        .position(|v| v == winner.0)
        .unwrap_or_default();
    Ok(Prediction::new(completions[index].clone()))
}

/// DSPy's default normalizer for `majority`: [`normalize_text`], with an empty result meaning
/// "no answer".
fn default_normalize(s: &str) -> Option<String> {
    Some(normalize_text(s)).filter(|n| !n.is_empty())
}

/// DSPy's `normalize_text` (`dspy.evaluate.metrics`), used by `majority` and by the exact-match
/// and F1 metrics: Unicode NFD, lowercase, ASCII punctuation removed, the whole words `a`, `an`
/// and `the` removed, whitespace collapsed to single spaces.
///
/// ```
/// use dspex_runtime::module::normalize_text;
///
/// assert_eq!(normalize_text("The,  Eiffel  Tower!"), "eiffel tower");
/// assert_eq!(normalize_text("An apple a day"), "apple day");
/// assert_eq!(normalize_text("Café"), "cafe\u{301}");
/// ```
///
/// Words are runs of letters, digits and `_`, as Python's `\w`; Rust's notion of a letter also
/// takes in the few combining marks Unicode calls alphabetic (in some Indic scripts, for
/// example), so an article written right against such a mark is kept here where DSPy removes it.
pub fn normalize_text(s: &str) -> String {
    // Lowercase after NFD, then drop ASCII punctuation (Python's `string.punctuation`).
    let lowered: String = s.nfd().collect::<String>().to_lowercase();
    let text: String = lowered
        .chars()
        .filter(|c| !c.is_ascii_punctuation())
        .collect();
    // `re.sub(r"\b(a|an|the)\b", " ", text)`: whole words only.
    let mut without_articles = String::with_capacity(text.len());
    let mut rest = text.as_str();
    while let Some(start) = rest.find(is_word_char) {
        without_articles.push_str(&rest[..start]);
        let word_len = rest[start..]
            .find(|c: char| !is_word_char(c))
            .unwrap_or(rest.len() - start);
        let word = &rest[start..start + word_len];
        if matches!(word, "a" | "an" | "the") {
            without_articles.push(' ');
        } else {
            without_articles.push_str(word);
        }
        rest = &rest[start + word_len..];
    }
    without_articles.push_str(rest);
    // `" ".join(text.split())`, splitting on what Python's `str.isspace` accepts.
    let mut out = String::with_capacity(without_articles.len());
    for word in without_articles
        .split(is_py_space)
        .filter(|w| !w.is_empty())
    {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(word);
    }
    out
}

/// Python's `\w` for `str` patterns (approximately: see [`normalize_text`]).
fn is_word_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn comps(answers: &[Value]) -> Vec<Map<String, Value>> {
        answers
            .iter()
            .enumerate()
            .map(|(i, a)| {
                json!({"reasoning": format!("r{i}"), "answer": a})
                    .as_object()
                    .unwrap()
                    .clone()
            })
            .collect()
    }

    fn vote(answers: &[Value]) -> Result<Prediction, MajorityError> {
        majority(&comps(answers), None)
    }

    #[test]
    fn normalize_text_matches_dspy() {
        // Expected values computed with DSPy 3.4.1's `normalize_text`.
        let cases = [
            ("The,  Eiffel  Tower!", "eiffel tower"),
            ("  Paris!! ", "paris"),
            ("A", ""),
            ("The", ""),
            ("an", ""),
            ("a.b", "ab"),
            ("l'a", "la"),
            ("the_cat", "thecat"),
            ("theater an-d a", "theater and"),
            ("Café", "cafe\u{301}"),
            ("à la carte", "\u{300} la carte"),
            // NFD splits "Å" into "A" + ring, and the lone "a" is an article.
            ("ÅNGSTRÖM", "\u{30a}ngstro\u{308}m"),
            ("x\u{1c}y\u{a0}z", "x y z"),
            ("ΣΑΣ", "σας"),
            ("\u{1c4} \u{fb01}", "\u{1c6} \u{fb01}"),
            ("\u{2460}a \u{b2}the", "\u{2460}a \u{b2}the"),
            ("An apple a day", "apple day"),
            ("", ""),
        ];
        for (input, expected) in cases {
            assert_eq!(normalize_text(input), expected, "{input:?}");
        }
    }

    #[test]
    fn most_common_normalized_answer_wins() {
        let out = vote(&[
            json!("Lyon"),
            json!("paris"),
            json!("Paris!"),
            json!("lyon."),
        ])
        .unwrap();
        // 2–2 tie: the answer seen first wins, as the first completion holding it.
        assert_eq!(out.get_str("answer"), Some("Lyon"));
        assert_eq!(out.get_str("reasoning"), Some("r0"));
        assert_eq!(out.num_completions(), 1);

        let out = vote(&[json!("Lyon"), json!("paris"), json!("Paris!")]).unwrap();
        assert_eq!(out.get_str("answer"), Some("paris"));
        assert_eq!(out.get_str("reasoning"), Some("r1"));
    }

    #[test]
    fn articles_and_empty_answers_are_ignored_unless_all_are() {
        // DSPy's trap: "The" and "A" normalize to nothing and drop out of the vote.
        let out = vote(&[json!("The"), json!("A"), json!("The"), json!("B")]).unwrap();
        assert_eq!(out.get_str("answer"), Some("B"));
        // Every answer empty: they all tie as "no answer"; the first completion wins.
        let out = vote(&[json!("The"), json!("!"), json!("")]).unwrap();
        assert_eq!(out.get_str("answer"), Some("The"));
    }

    #[test]
    fn field_choice_and_errors() {
        let c = comps(&[json!("x"), json!("y"), json!("y")]);
        assert_eq!(
            majority(&c, Some("reasoning"))
                .unwrap()
                .get_str("reasoning"),
            Some("r0")
        );
        assert_eq!(majority(&c, None).unwrap().get_str("answer"), Some("y"));
        let as_is = majority_by(&c, Some("answer"), |s| Some(s.to_string())).unwrap();
        assert_eq!(as_is.get_str("reasoning"), Some("r1"));

        let none: Vec<Map<String, Value>> = Vec::new();
        assert_eq!(majority(&none, None), Err(MajorityError::NoCompletions));
        assert_eq!(
            majority(&c, Some("score")),
            Err(MajorityError::MissingField {
                field: "score".into(),
                index: 0
            })
        );
        let err = vote(&[json!("x"), json!(3)]).unwrap_err();
        assert!(
            matches!(err, MajorityError::NotText { index: 1, .. }),
            "{err}"
        );
        let empty = vec![Map::new()];
        assert_eq!(majority(&empty, None), Err(MajorityError::NoField));
        // The error converts into the program error.
        let e: Error = MajorityError::NoCompletions.into();
        assert_eq!(
            e.to_string(),
            "majority: majority needs at least one completion"
        );
    }

    #[test]
    fn votes_over_several_predictions() {
        let preds: Vec<Prediction> = comps(&[json!("b"), json!("a"), json!("b ")])
            .into_iter()
            .map(Prediction::new)
            .collect();
        let out = majority(preds.iter().map(Prediction::as_map), None).unwrap();
        assert_eq!(out.get_str("answer"), Some("b"));
    }
}
