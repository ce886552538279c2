//! [`History`]: earlier turns of a conversation (DSPy's `dspy.History`).

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The earlier turns of a conversation, for a signature input of type `History` (DSPy's
/// `dspy.History`).
///
/// Each turn maps field names of the signature to values — typically the inputs the program was
/// given and the outputs it answered. The adapters do not print the history field: they send
/// every turn as a user message (the turn's inputs) and an assistant message (its outputs)
/// before the current inputs, exactly as DSPy's `format_conversation_history` does. As a field
/// value it is `{"messages": [{…}, …]}`.
///
/// ```
/// use dspex_core::types::History;
/// use serde_json::json;
///
/// let mut history = History::new();
/// history.push(json!({"question": "What is the capital of France?", "answer": "Paris"}))?;
/// assert_eq!(history.len(), 1);
/// assert_eq!(history.messages()[0]["answer"], "Paris");
/// assert_eq!(
///     serde_json::to_value(&history)?,
///     json!({"messages": [{"question": "What is the capital of France?", "answer": "Paris"}]})
/// );
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct History {
    messages: Vec<Map<String, Value>>,
}

/// A history turn that is not a JSON object.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a history turn must serialize to a JSON object of field values, not {found}")]
pub struct HistoryTurnError {
    found: String,
}

impl History {
    /// An empty history.
    pub fn new() -> Self {
        History::default()
    }

    /// A history of these turns.
    pub fn from_messages(messages: Vec<Map<String, Value>>) -> Self {
        History { messages }
    }

    /// Appends a turn: anything that serializes to a JSON object of field values (a
    /// `serde_json` object, a map, a struct).
    pub fn push(&mut self, turn: impl Serialize) -> Result<(), HistoryTurnError> {
        let turn = to_object(turn)?;
        self.messages.push(turn);
        Ok(())
    }

    /// Appends one turn made of a call's inputs and its outputs (each anything that serializes
    /// to a JSON object — the typed input and output structs of a signature, say), as DSPy's
    /// `History(messages=[{**inputs, **outputs}])`.
    pub fn push_turn(
        &mut self,
        inputs: impl Serialize,
        outputs: impl Serialize,
    ) -> Result<(), HistoryTurnError> {
        let mut turn = to_object(inputs)?;
        turn.extend(to_object(outputs)?);
        self.messages.push(turn);
        Ok(())
    }

    /// The turns, oldest first.
    pub fn messages(&self) -> &[Map<String, Value>] {
        &self.messages
    }

    /// The number of turns.
    pub fn len(&self) -> usize {
        self.messages.len()
    }

    /// Whether there are no turns.
    pub fn is_empty(&self) -> bool {
        self.messages.is_empty()
    }
}

impl FromIterator<Map<String, Value>> for History {
    fn from_iter<I: IntoIterator<Item = Map<String, Value>>>(iter: I) -> Self {
        History {
            messages: iter.into_iter().collect(),
        }
    }
}

fn to_object(value: impl Serialize) -> Result<Map<String, Value>, HistoryTurnError> {
    match serde_json::to_value(value) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(other) => Err(HistoryTurnError {
            found: crate::pycompat::text::compact_json(&other),
        }),
        Err(e) => Err(HistoryTurnError {
            found: format!("a value that does not serialize ({e})"),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn turns_are_objects() {
        let mut h = History::new();
        assert!(h.is_empty());
        assert!(h.push(json!([1])).is_err());
        h.push_turn(json!({"q": "a"}), json!({"answer": "b"}))
            .unwrap();
        assert_eq!(
            h.messages()[0],
            json!({"q": "a", "answer": "b"})
                .as_object()
                .unwrap()
                .clone()
        );
        let back: History = serde_json::from_value(serde_json::to_value(&h).unwrap()).unwrap();
        assert_eq!(back, h);
        assert!(serde_json::from_value::<History>(json!({"messages": [], "x": 1})).is_err());
    }
}
