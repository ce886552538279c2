//! [`Reasoning`]: a model's reasoning (DSPy's `dspy.Reasoning`).

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;

/// A model's reasoning, for an output field (DSPy's `dspy.Reasoning`): a string-like value.
///
/// Prompts treat it as `str` (its type is printed `str`, it gets no type note). When the LM
/// returns native reasoning content beside its answer (`message.reasoning_content`, as reasoning
/// models do through LiteLLM), that content fills a `Reasoning` output, replacing anything parsed
/// from the text, as DSPy's `Reasoning.parse_lm_response` does.
///
/// As a value it is a plain string, exactly as pydantic's `model_dump` of a `dspy.Reasoning`;
/// it reads back from a string or `{"content": …}`. It derefs to `str`.
///
/// ```
/// use dspex_core::types::Reasoning;
///
/// let r = Reasoning::new("Two and two make four.");
/// assert_eq!(r, "Two and two make four.");
/// assert_eq!(r.content(), "Two and two make four.");
/// assert!(r.starts_with("Two")); // any `str` method
/// assert_eq!(serde_json::to_value(&r)?, serde_json::json!("Two and two make four."));
/// let back: Reasoning = serde_json::from_value(serde_json::json!({"content": "x"}))?;
/// assert_eq!(back.into_content(), "x");
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Reasoning {
    content: String,
}

impl Reasoning {
    /// Reasoning of this text.
    pub fn new(content: impl Into<String>) -> Self {
        Reasoning {
            content: content.into(),
        }
    }

    /// The text.
    pub fn content(&self) -> &str {
        &self.content
    }

    /// The text, owned.
    pub fn into_content(self) -> String {
        self.content
    }
}

impl std::ops::Deref for Reasoning {
    type Target = str;
    fn deref(&self) -> &str {
        &self.content
    }
}

impl AsRef<str> for Reasoning {
    fn as_ref(&self) -> &str {
        &self.content
    }
}

/// The text, as DSPy's `str(reasoning)`.
impl fmt::Display for Reasoning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.content)
    }
}

impl From<String> for Reasoning {
    fn from(content: String) -> Self {
        Reasoning::new(content)
    }
}

impl From<&str> for Reasoning {
    fn from(content: &str) -> Self {
        Reasoning::new(content)
    }
}

impl From<Reasoning> for String {
    fn from(r: Reasoning) -> Self {
        r.content
    }
}

impl PartialEq<str> for Reasoning {
    fn eq(&self, other: &str) -> bool {
        self.content == other
    }
}

impl PartialEq<&str> for Reasoning {
    fn eq(&self, other: &&str) -> bool {
        self.content == *other
    }
}

impl PartialEq<String> for Reasoning {
    fn eq(&self, other: &String) -> bool {
        &self.content == other
    }
}

impl Serialize for Reasoning {
    /// The text as a string: pydantic's `model_dump` of a `dspy.Reasoning`.
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.content)
    }
}

impl<'de> Deserialize<'de> for Reasoning {
    /// A string, or `{"content": string}` (the shapes DSPy's validator takes).
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        super::code::StrOrField::deserialize(d, "content", "a dspy.Reasoning").map(Reasoning::new)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn str_like_and_serde_shapes() {
        let r = Reasoning::from("abc");
        assert_eq!(r.len(), 3);
        assert_eq!(format!("{r}"), "abc");
        assert_eq!(String::from(r.clone()), "abc");
        assert_eq!(
            serde_json::from_value::<Reasoning>(json!("abc")).unwrap(),
            r
        );
        assert!(serde_json::from_value::<Reasoning>(json!({"content": 1})).is_err());
        assert!(serde_json::from_value::<Reasoning>(json!({})).is_err());
        assert!(serde_json::from_value::<Reasoning>(json!(null)).is_err());
    }
}
