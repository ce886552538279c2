//! The cache key: the SHA-256 of the compact, key-sorted JSON of what decides an LM's answer
//! (DSPy's `request_cache` key), and that JSON's canonical writer.

use super::*;

/// The cache key of one request: a SHA-256 over the request's canonical JSON (see
/// [`CacheKey::for_request`]). Prints as hex.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CacheKey([u8; 32]);

impl CacheKey {
    /// The key of `request` sent to `model` (the full model string, `openai/gpt-4o-mini`) by the
    /// kind of call `kind` (`"dspex.chat"`, `"dspex.text"`; the same request made by different
    /// kinds of call does not share entries).
    ///
    /// As in DSPy, the hash is over the compact JSON, keys sorted at every level, of
    /// `{"model", "messages", "temperature", "max_tokens", <n, stop, seed, response_format when
    /// set>, <each entry of extra>, "rollout_id" (when set), "_fn_identifier": kind}`, where an
    /// unset `temperature` or `max_tokens` is `null`. An `extra` entry whose name is one of those
    /// keys goes under `"_extra"` instead, so that it cannot pass for the parameter.
    pub fn for_request(model: &str, kind: &str, request: &LmRequest) -> CacheKey {
        let json = canonical_json(&key_document(model, kind, request));
        CacheKey(Sha256::digest(json.as_bytes()).into())
    }

    /// The 32 bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Lowercase hex, 64 characters.
    pub fn to_hex(&self) -> String {
        let mut out = String::with_capacity(64);
        for byte in self.0 {
            let _ = write!(out, "{byte:02x}");
        }
        out
    }
}

impl fmt::Debug for CacheKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CacheKey({})", self.to_hex())
    }
}

impl fmt::Display for CacheKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

/// Top-level names the key document uses; an `extra` entry with one of them goes under `_extra`.
pub(super) const RESERVED_KEYS: &[&str] = &[
    "model",
    "messages",
    "temperature",
    "max_tokens",
    "n",
    "stop",
    "seed",
    "response_format",
    "rollout_id",
    "_fn_identifier",
    "_extra",
];

/// The JSON object whose canonical form is hashed.
pub(super) fn key_document(model: &str, kind: &str, request: &LmRequest) -> Value {
    let mut doc = Map::new();
    let mut clashing = Map::new();
    for (name, value) in &request.extra {
        if RESERVED_KEYS.contains(&name.as_str()) {
            clashing.insert(name.clone(), value.clone());
        } else {
            doc.insert(name.clone(), value.clone());
        }
    }
    if !clashing.is_empty() {
        doc.insert("_extra".into(), Value::Object(clashing));
    }
    doc.insert("model".into(), model.into());
    let messages = request
        .messages
        .iter()
        // The message as sent: `{"role", "content"}`, with an assistant message's
        // `tool_calls` and a tool message's `tool_call_id` and `name` when it has them (as the
        // message dicts DSPy hashes have them).
        .map(|m| serde_json::to_value(m).unwrap_or(Value::Null))
        .collect();
    doc.insert("messages".into(), Value::Array(messages));
    doc.insert(
        "temperature".into(),
        request.temperature.map_or(Value::Null, Value::from),
    );
    doc.insert(
        "max_tokens".into(),
        request.max_tokens.map_or(Value::Null, Value::from),
    );
    if let Some(n) = request.n {
        doc.insert("n".into(), n.into());
    }
    if !request.stop.is_empty() {
        doc.insert("stop".into(), request.stop.clone().into());
    }
    if let Some(seed) = request.seed {
        doc.insert("seed".into(), seed.into());
    }
    if let Some(format) = &request.response_format {
        let mut obj = Map::new();
        let kind = match format {
            ResponseFormat::Text => "text",
            ResponseFormat::JsonObject => "json_object",
            ResponseFormat::JsonSchema { json_schema } => {
                obj.insert("json_schema".into(), json_schema.clone());
                "json_schema"
            }
        };
        obj.insert("type".into(), kind.into());
        doc.insert("response_format".into(), Value::Object(obj));
    }
    if let Some(rollout_id) = request.rollout_id {
        doc.insert("rollout_id".into(), rollout_id.into());
    }
    doc.insert("_fn_identifier".into(), kind.into());
    Value::Object(doc)
}

/// Compact JSON with the keys of every object sorted (by code point of their UTF-8 bytes, as
/// orjson's `OPT_SORT_KEYS`), independent of the map's own order.
pub(super) fn canonical_json(value: &Value) -> String {
    let mut out = String::new();
    write_canonical(value, &mut out);
    out
}

pub(super) fn write_canonical(value: &Value, out: &mut String) {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => {
            let _ = write!(out, "{n}");
        }
        Value::String(s) => write_json_string(s, out),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(item, out);
            }
            out.push(']');
        }
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
            out.push('{');
            for (i, (name, item)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_json_string(name, out);
                out.push(':');
                write_canonical(item, out);
            }
            out.push('}');
        }
    }
}

/// A JSON string literal, escaped as serde_json and orjson escape (non-ASCII kept as UTF-8).
pub(super) fn write_json_string(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{08}' => out.push_str("\\b"),
            '\u{0c}' => out.push_str("\\f"),
            c if c < '\u{20}' => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}
