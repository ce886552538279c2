//! DSPy's custom-type markers: how an `Image`, `Audio` or `File` value inside a formatted user
//! message becomes content parts.
//!
//! DSPy formats every field value as text. A value of one of its own types (`dspy.Type`) is
//! written as its content parts in JSON between two markers,
//! `<<CUSTOM-TYPE-START-IDENTIFIER>>[{"type": "image_url", …}]<<CUSTOM-TYPE-END-IDENTIFIER>>`,
//! and once a message is complete the text around the markers and the parts between them become
//! the message's list of parts (`dspy/adapters/_legacy_type_markers.py`). dspex does the same,
//! so the parts land where DSPy puts them, byte for byte, in every adapter.
//!
//! Like DSPy, the expansion applies to user messages only and to any text carrying the markers,
//! including an input string that happens to contain them. One difference: a block between the
//! markers that is a JSON object but not one of the four part types OpenAI defines (text,
//! `image_url`, `input_audio`, `file`) is kept as a text part holding its JSON, where DSPy would
//! send the unknown object on.

use crate::pycompat::{json_repair, py, text::py_strip};
use crate::types::{Content, ContentPart, Message, Role};
use serde::Deserialize;
use serde_json::Value;

/// The marker before a custom type's parts (DSPy's `CUSTOM_TYPE_START_IDENTIFIER`).
pub const CUSTOM_TYPE_START: &str = "<<CUSTOM-TYPE-START-IDENTIFIER>>";
/// The marker after them (DSPy's `CUSTOM_TYPE_END_IDENTIFIER`).
pub const CUSTOM_TYPE_END: &str = "<<CUSTOM-TYPE-END-IDENTIFIER>>";

/// The text DSPy writes for a value whose parts are `parts`: the parts as JSON (Python's
/// `json.dumps(…, ensure_ascii=False)` spacing) between the markers.
pub fn marked(parts: &[ContentPart]) -> String {
    let json = serde_json::to_value(parts).unwrap_or(Value::Null);
    let mut out = String::with_capacity(CUSTOM_TYPE_START.len() + CUSTOM_TYPE_END.len() + 64);
    out.push_str(CUSTOM_TYPE_START);
    crate::pycompat::text::write_py_json(&mut out, &json);
    out.push_str(CUSTOM_TYPE_END);
    out
}

/// Turns a user message whose text carries custom-type markers into a list of parts (text
/// before, the parts between each pair of markers, text after); every other message is
/// returned as it is.
pub fn expand_markers(mut message: Message) -> Message {
    let marked = matches!(&message.content,
        Content::Text(text) if message.role == Role::User && text.contains(CUSTOM_TYPE_START));
    if !marked {
        return message;
    }
    let Content::Text(text) = std::mem::take(&mut message.content) else {
        return message;
    };
    let mut parts = Vec::new();
    let mut last_end = 0;
    let mut search = 0;
    while let Some(start) = text[search..].find(CUSTOM_TYPE_START).map(|i| search + i) {
        let inner_start = start + CUSTOM_TYPE_START.len();
        let Some(inner_end) = text[inner_start..]
            .find(CUSTOM_TYPE_END)
            .map(|i| inner_start + i)
        else {
            break;
        };
        if start > last_end {
            parts.push(ContentPart::text(&text[last_end..start]));
        }
        payload_parts(py_strip(&text[inner_start..inner_end]), &mut parts);
        last_end = inner_end + CUSTOM_TYPE_END.len();
        search = last_end;
    }
    if last_end == 0 {
        message.content = Content::Text(text);
        return message;
    }
    if last_end < text.len() {
        parts.push(ContentPart::text(&text[last_end..]));
    }
    Message {
        content: Content::Parts(parts),
        ..message
    }
}

/// The parts one marker pair holds: its JSON list's objects (read as `json.loads`, then as
/// JSON quoted twice, then as `json_repair.loads`), non-objects as their text; anything else
/// is the payload as one text part.
fn payload_parts(payload: &str, out: &mut Vec<ContentPart>) {
    match parse_payload(payload) {
        Some(Value::Array(blocks)) => {
            for block in blocks {
                out.push(block_part(block));
            }
        }
        _ => out.push(ContentPart::text(payload)),
    }
}

fn block_part(block: Value) -> ContentPart {
    match block {
        Value::Object(_) => match ContentPart::deserialize(&block) {
            Ok(part) => part,
            Err(_) => ContentPart::text(block.to_string()),
        },
        Value::String(s) => ContentPart::text(s),
        other => ContentPart::text(crate::pycompat::pyfmt::py_str(&other)),
    }
}

fn parse_payload(payload: &str) -> Option<Value> {
    if let Ok(v) = serde_json::from_str::<Value>(payload) {
        return Some(v);
    }
    // JSON quoted twice: the payload is the inside of a JSON string.
    if let Ok(Value::String(inner)) = serde_json::from_str::<Value>(&format!("\"{payload}\""))
        && let Ok(v) = serde_json::from_str::<Value>(&inner)
    {
        return Some(v);
    }
    json_repair::loads(payload)
        .ok()
        .and_then(|v| py::to_json(&v).ok())
}

/// [`expand_markers`] for every message.
pub fn expand_all(messages: Vec<Message>) -> Vec<Message> {
    messages.into_iter().map(expand_markers).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn user_parts(text: &str) -> Value {
        serde_json::to_value(expand_markers(Message::user(text)).content).unwrap()
    }

    #[test]
    fn parts_between_markers_split_the_text_around_them() {
        let image = marked(&[ContentPart::image_url("https://example.com/cat.png")]);
        assert_eq!(
            image,
            "<<CUSTOM-TYPE-START-IDENTIFIER>>[{\"type\": \"image_url\", \"image_url\": {\"url\": \"https://example.com/cat.png\"}}]<<CUSTOM-TYPE-END-IDENTIFIER>>"
        );
        let text = format!("[[ ## image ## ]]\n{image}\n\n[[ ## question ## ]]\nWhat?");
        assert_eq!(
            user_parts(&text),
            json!([
                {"type": "text", "text": "[[ ## image ## ]]\n"},
                {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}},
                {"type": "text", "text": "\n\n[[ ## question ## ]]\nWhat?"},
            ])
        );
    }

    #[test]
    fn messages_without_markers_and_other_roles_are_left_alone() {
        assert_eq!(user_parts("plain"), json!("plain"));
        let image = marked(&[ContentPart::image_url("u")]);
        let system = expand_markers(Message::system(image.clone()));
        assert_eq!(system.content, image.as_str());
        // A start marker without an end marker is text.
        let open = format!("a {CUSTOM_TYPE_START} b");
        assert_eq!(user_parts(&open), json!(open));
    }

    #[test]
    fn two_values_back_to_back_and_at_the_edges() {
        let a = marked(&[ContentPart::image_url("a")]);
        let b = marked(&[ContentPart::image_url("b")]);
        assert_eq!(
            user_parts(&format!("{a}{b}")),
            json!([
                {"type": "image_url", "image_url": {"url": "a"}},
                {"type": "image_url", "image_url": {"url": "b"}},
            ])
        );
    }

    #[test]
    fn payloads_that_are_not_a_list_of_parts_stay_text() {
        let s = CUSTOM_TYPE_START;
        let e = CUSTOM_TYPE_END;
        // Not JSON at all, and not a list: the payload (stripped) as text.
        assert_eq!(
            user_parts(&format!("{s} hello {e}")),
            json!([{"type": "text", "text": "hello"}])
        );
        assert_eq!(
            user_parts(&format!("{s}{{\"a\": 1}}{e}")),
            json!([{"type": "text", "text": "{\"a\": 1}"}])
        );
        // A list of non-objects: each item as text, as Python's str() prints it.
        assert_eq!(
            user_parts(&format!("{s}[1, \"x\", true]{e}")),
            json!([
                {"type": "text", "text": "1"},
                {"type": "text", "text": "x"},
                {"type": "text", "text": "True"},
            ])
        );
        // JSON quoted twice (a marker nested inside a JSON-formatted list).
        assert_eq!(
            user_parts(&format!(
                "{s}[{{\\\"type\\\": \\\"image_url\\\", \\\"image_url\\\": {{\\\"url\\\": \\\"u\\\"}}}}]{e}"
            )),
            json!([{"type": "image_url", "image_url": {"url": "u"}}])
        );
    }
}
