//! OpenAI's Responses API (`POST {base}/responses`): DSPy's `model_type="responses"`
//! (`LmBuilder::model_type(ModelType::Responses)`), for OpenAI and the OpenAI-compatible
//! providers that serve it.
//!
//! The request is the chat request translated as DSPy 3.4.1 translates it
//! (`dspy/clients/legacy_requests.py`, `chat_to_responses`): every message becomes an `input`
//! item with its role (system messages included, as DSPy keeps them) and typed content blocks
//! (`input_text` — `output_text` for the assistant —, `input_image`, `input_file`; audio parts
//! go as they are); the token limit is `max_output_tokens`; `reasoning_effort` becomes
//! `reasoning: {effort, summary: "auto"}`; function tools are flattened
//! (`{"type": "function", "name", "parameters", …}`) and a named `tool_choice` too; a JSON schema
//! `response_format` becomes `text.format` with the schema made strict as OpenAI's strict mode
//! takes it. Parameters in the request's `extra` map go out as they are. `n` is not sent (the
//! API answers one output; the client makes the extra calls for `n > 1`).
//!
//! The answer is read as DSPy reads it (`responses_outputs`): the `output_text` of `message`
//! items joined, `function_call` items as tool calls, the text of `reasoning` items as the
//! reasoning content; `status: "incomplete"` for `max_output_tokens` is a `length` finish. A
//! stream's `response.output_text.delta` events are its text, `response.completed` (or
//! `response.incomplete`) its end with the usage, `response.failed` and `error` events a typed
//! error.

use super::openai::openai_failure;
use super::{Chunk, Decoded, Failure, Paths, Protocol, StreamReader, Target};
use crate::stream::StreamEvent;
use crate::types::{
    Choice, Content, ContentPart, FinishReason, LmRequest, ResponseFormat, Role, ToolCall, Usage,
};
use serde_json::{Map, Value, json};

/// The Responses API protocol.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Responses;

impl Protocol for Responses {
    fn name(&self) -> &'static str {
        "openai responses"
    }

    fn paths(&self, _target: Target<'_>) -> Paths {
        Paths {
            call: "responses".to_string(),
            stream: "responses".to_string(),
            embeddings: Some("embeddings".to_string()),
        }
    }

    fn body(
        &self,
        target: Target<'_>,
        request: &LmRequest,
        stream: bool,
    ) -> Result<Vec<u8>, String> {
        let body = request_body(target.model_id, request, stream);
        serde_json::to_vec(&body).map_err(|e| format!("the request cannot be written: {e}"))
    }

    fn response(&self, _target: Target<'_>, body: &[u8]) -> Result<Decoded, String> {
        let value: Value =
            serde_json::from_slice(body).map_err(|e| format!("invalid JSON: {e}"))?;
        let choice = read_output(&value)?;
        Ok(Decoded {
            choices: vec![choice],
            usage: read_usage(value.get("usage")),
            model: value
                .get("model")
                .and_then(Value::as_str)
                .map(str::to_string),
        })
    }

    fn stream(&self, _target: Target<'_>) -> Box<dyn StreamReader> {
        Box::new(ResponsesStream)
    }

    fn error(&self, body: &str) -> Failure {
        openai_failure(body)
    }
}

/// The request body, as DSPy's `chat_to_responses` writes it.
fn request_body(model_id: &str, request: &LmRequest, stream: bool) -> Value {
    let mut body = Map::new();
    body.insert("model".into(), model_id.into());
    let mut input = Vec::with_capacity(request.messages.len());
    for message in &request.messages {
        input.push(json!({
            "role": message.role.as_str(),
            "content": content_blocks(&message.content, message.role),
        }));
    }
    body.insert("input".into(), Value::Array(input));
    let extra = &request.extra;
    let free = |key: &str| !extra.contains_key(key);
    if let Some(max) = request.max_tokens
        && free("max_output_tokens")
    {
        body.insert("max_output_tokens".into(), max.into());
    }
    if let Some(t) = request.temperature
        && free("temperature")
    {
        body.insert("temperature".into(), t.into());
    }
    if let Some(seed) = request.seed
        && free("seed")
    {
        body.insert("seed".into(), seed.into());
    }
    if !request.stop.is_empty() && free("stop") {
        body.insert("stop".into(), request.stop.clone().into());
    }
    if let Some(format) = &request.response_format
        && free("text")
    {
        match format {
            ResponseFormat::Text => {}
            ResponseFormat::JsonObject => {
                body.insert("text".into(), json!({"format": {"type": "json_object"}}));
            }
            ResponseFormat::JsonSchema { json_schema } => {
                let mut format = Map::new();
                if let Some(name) = json_schema.get("name") {
                    format.insert("name".into(), name.clone());
                }
                format.insert("type".into(), "json_schema".into());
                let schema = json_schema.get("schema").cloned().unwrap_or(json!({}));
                format.insert("schema".into(), strict_json_schema(&schema, &schema));
                format.insert("strict".into(), true.into());
                body.insert("text".into(), json!({ "format": format }));
            }
        }
    }
    for (key, value) in extra {
        match key.as_str() {
            // DSPy's renames; a `max_tokens` given as a parameter is the output limit too.
            "max_tokens" | "max_completion_tokens" => {
                if !value.is_null() && free("max_output_tokens") {
                    body.insert("max_output_tokens".into(), value.clone());
                }
            }
            "reasoning_effort" => {
                if extra.get("reasoning").is_none_or(Value::is_null) && !value.is_null() {
                    body.insert(
                        "reasoning".into(),
                        json!({"effort": value, "summary": "auto"}),
                    );
                }
            }
            "tools" => {
                if let Value::Array(tools) = value
                    && !tools.is_empty()
                {
                    body.insert(
                        "tools".into(),
                        Value::Array(tools.iter().map(flat_tool).collect()),
                    );
                }
            }
            "tool_choice" => {
                let choice = match value.get("function").and_then(|f| f.get("name")) {
                    Some(name) => json!({"type": "function", "name": name}),
                    None => value.clone(),
                };
                if !choice.is_null() {
                    body.insert("tool_choice".into(), choice);
                }
            }
            // Absent common parameters are left out, as DSPy's serializer leaves them.
            "top_p" | "n" | "logprobs" | "reasoning" if value.is_null() => {}
            // One output per response: the client makes the calls for `n > 1`.
            "n" => {}
            _ => {
                body.insert(key.clone(), value.clone());
            }
        }
    }
    if stream {
        body.insert("stream".into(), true.into());
    }
    Value::Object(body)
}

/// A message's content as Responses content blocks.
fn content_blocks(content: &Content, role: Role) -> Value {
    let text_type = if role == Role::Assistant {
        "output_text"
    } else {
        "input_text"
    };
    let blocks: Vec<Value> = match content {
        Content::Text(text) => vec![json!({"type": text_type, "text": text})],
        Content::Parts(parts) => parts
            .iter()
            .map(|part| match part {
                ContentPart::Text { text } => json!({"type": text_type, "text": text}),
                ContentPart::ImageUrl { image_url } => {
                    let mut block = json!({"type": "input_image", "image_url": image_url.url});
                    if let Some(detail) = &image_url.detail {
                        block["detail"] = detail.clone().into();
                    }
                    block
                }
                // DSPy copies every key, `null` for an absent one.
                ContentPart::File { file } => json!({
                    "type": "input_file",
                    "file_data": file.file_data,
                    "filename": file.filename,
                    "file_id": file.file_id,
                }),
                other => serde_json::to_value(other).unwrap_or(Value::Null),
            })
            .collect(),
    };
    Value::Array(blocks)
}

/// A chat-style tool (`{"type": "function", "function": {...}}`) flattened.
fn flat_tool(tool: &Value) -> Value {
    let Some(function) = tool.get("function").and_then(Value::as_object) else {
        return tool.clone();
    };
    let mut flat = Map::new();
    flat.insert("type".into(), "function".into());
    if let Some(outer) = tool.as_object() {
        for (k, v) in outer {
            if k != "type" && k != "function" {
                flat.insert(k.clone(), v.clone());
            }
        }
    }
    for (k, v) in function {
        flat.insert(k.clone(), v.clone());
    }
    if flat.get("description").is_some_and(Value::is_null) {
        flat.remove("description");
    }
    Value::Object(flat)
}

/// The schema as OpenAI's strict structured outputs take it (the OpenAI SDK's rules, as DSPy
/// applies them): every property required, objects closed, `None` defaults dropped, a lone
/// `allOf` and a `$ref` with siblings unravelled. `root` resolves `$ref`s.
fn strict_json_schema(schema: &Value, root: &Value) -> Value {
    strict_at(schema, root, 0)
}

fn strict_at(schema: &Value, root: &Value, depth: usize) -> Value {
    // A self-referencing schema through `$ref` siblings cannot recurse for ever.
    if depth > 64 {
        return schema.clone();
    }
    let Value::Object(map) = schema else {
        return schema.clone();
    };
    let mut out = map.clone();
    for key in ["$defs", "definitions"] {
        if let Some(Value::Object(defs)) = out.get(key) {
            let defs = defs
                .iter()
                .map(|(name, sub)| (name.clone(), strict_at(sub, root, depth + 1)))
                .collect();
            out.insert(key.into(), Value::Object(defs));
        }
    }
    if out.get("type").and_then(Value::as_str) == Some("object")
        && !out.contains_key("additionalProperties")
    {
        out.insert("additionalProperties".into(), false.into());
    }
    if let Some(Value::Object(props)) = out.get("properties") {
        let required: Vec<Value> = props.keys().map(|k| Value::from(k.as_str())).collect();
        let props = props
            .iter()
            .map(|(name, sub)| (name.clone(), strict_at(sub, root, depth + 1)))
            .collect();
        out.insert("required".into(), Value::Array(required));
        out.insert("properties".into(), Value::Object(props));
    }
    if let Some(items @ Value::Object(_)) = out.get("items") {
        let items = strict_at(items, root, depth + 1);
        out.insert("items".into(), items);
    }
    if let Some(Value::Array(any)) = out.get("anyOf") {
        let any = any.iter().map(|s| strict_at(s, root, depth + 1)).collect();
        out.insert("anyOf".into(), Value::Array(any));
    }
    if let Some(Value::Array(all)) = out.get("allOf") {
        if all.len() == 1 {
            let only = strict_at(&all[0], root, depth + 1);
            out.remove("allOf");
            if let Value::Object(only) = only {
                out.extend(only);
            }
        } else {
            let all = all.iter().map(|s| strict_at(s, root, depth + 1)).collect();
            out.insert("allOf".into(), Value::Array(all));
        }
    }
    if out.get("default").is_some_and(Value::is_null) {
        out.remove("default");
    }
    if out.len() > 1
        && let Some(Value::String(reference)) = out.get("$ref")
        && let Some(resolved) = resolve_ref(root, reference)
    {
        let mut merged = match strict_at(resolved, root, depth + 1) {
            Value::Object(m) => m,
            _ => Map::new(),
        };
        for (k, v) in out {
            if k != "$ref" {
                merged.insert(k, v);
            }
        }
        return Value::Object(merged);
    }
    Value::Object(out)
}

/// An internal `#/…` reference.
fn resolve_ref<'a>(root: &'a Value, reference: &str) -> Option<&'a Value> {
    let mut node = root;
    for part in reference.strip_prefix("#/")?.split('/') {
        node = node.get(part)?;
    }
    Some(node)
}

/// The one completion of a response object.
fn read_output(response: &Value) -> Result<Choice, String> {
    let output = match response.get("output") {
        Some(Value::Array(items)) => items.as_slice(),
        Some(Value::Null) | None => return Err("no `output` list".to_string()),
        Some(other) => return Err(format!("`output` is not a list: {other}")),
    };
    let mut texts = String::new();
    let mut reasoning = String::new();
    let mut tool_calls = Vec::new();
    for (i, item) in output.iter().enumerate() {
        match item.get("type").and_then(Value::as_str) {
            Some("message") => {
                for part in item
                    .get("content")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    let kind = part.get("type").and_then(Value::as_str);
                    if matches!(kind, Some("text" | "output_text" | "input_text"))
                        && let Some(text) = part.get("text").and_then(Value::as_str)
                    {
                        texts.push_str(text);
                    }
                }
            }
            Some("function_call") => {
                let name = item
                    .get("name")
                    .and_then(Value::as_str)
                    .ok_or_else(|| format!("output item {i}: a function call without `name`"))?;
                // DSPy reads the arguments as JSON, `{}` when they are not.
                let arguments = match item.get("arguments") {
                    Some(Value::String(s)) => serde_json::from_str::<Value>(s)
                        .map(|v| v.to_string())
                        .unwrap_or_else(|_| "{}".to_string()),
                    Some(Value::Null) | None => "{}".to_string(),
                    Some(other) => other.to_string(),
                };
                tool_calls.push(ToolCall {
                    id: item
                        .get("call_id")
                        .and_then(Value::as_str)
                        .map(str::to_string),
                    name: name.to_string(),
                    arguments,
                });
            }
            Some("reasoning") => {
                let parts = item
                    .get("content")
                    .and_then(Value::as_array)
                    .filter(|a| !a.is_empty())
                    .or_else(|| item.get("summary").and_then(Value::as_array));
                for part in parts.into_iter().flatten() {
                    if let Some(text) = part.get("text").and_then(Value::as_str) {
                        reasoning.push_str(text);
                    }
                }
            }
            _ => {}
        }
    }
    let finish_reason = finish_reason(response, !tool_calls.is_empty());
    Ok(Choice {
        text: texts,
        finish_reason,
        tool_calls,
        reasoning_content: (!reasoning.is_empty()).then_some(reasoning),
    })
}

/// The finish reason of a response from its `status`.
fn finish_reason(response: &Value, called: bool) -> Option<FinishReason> {
    match response.get("status").and_then(Value::as_str)? {
        "completed" if called => Some(FinishReason::ToolCalls),
        "completed" => Some(FinishReason::Stop),
        "incomplete" => {
            let reason = response
                .pointer("/incomplete_details/reason")
                .and_then(Value::as_str)
                .unwrap_or("incomplete");
            Some(match reason {
                "max_output_tokens" => FinishReason::Length,
                "content_filter" => FinishReason::ContentFilter,
                other => FinishReason::Other(other.to_string()),
            })
        }
        other => Some(FinishReason::Other(other.to_string())),
    }
}

/// `usage: {input_tokens, output_tokens, total_tokens}`.
fn read_usage(usage: Option<&Value>) -> Usage {
    let n = |k: &str| usage.and_then(|u| u.get(k)).and_then(Value::as_u64);
    let (prompt, completion) = (
        n("input_tokens").unwrap_or(0),
        n("output_tokens").unwrap_or(0),
    );
    Usage {
        prompt_tokens: prompt,
        completion_tokens: completion,
        total_tokens: n("total_tokens").unwrap_or(prompt.saturating_add(completion)),
    }
}

/// A Responses stream: typed events, the answer complete at `response.completed`.
struct ResponsesStream;

impl StreamReader for ResponsesStream {
    fn end_marker(&self) -> &'static str {
        "`response.completed`"
    }

    fn read(&mut self, data: &str) -> Result<Chunk, String> {
        let event: Value = serde_json::from_str(data).map_err(|e| e.to_string())?;
        let kind = event
            .get("type")
            .and_then(Value::as_str)
            .ok_or("an event without `type`")?;
        match kind {
            "response.output_text.delta" => {
                let text = event
                    .get("delta")
                    .and_then(Value::as_str)
                    .ok_or("an output text delta without `delta`")?;
                Ok(Chunk::Events(if text.is_empty() {
                    Vec::new()
                } else {
                    vec![StreamEvent::Delta {
                        index: 0,
                        text: text.to_string(),
                    }]
                }))
            }
            "response.completed" | "response.incomplete" => {
                let response = event.get("response").unwrap_or(&Value::Null);
                let mut events = Vec::new();
                let called = response
                    .get("output")
                    .and_then(Value::as_array)
                    .is_some_and(|items| {
                        items
                            .iter()
                            .any(|i| i.get("type").and_then(Value::as_str) == Some("function_call"))
                    });
                if let Some(reason) = finish_reason(response, called) {
                    events.push(StreamEvent::Finish { index: 0, reason });
                }
                if let Some(usage) = response.get("usage").filter(|u| !u.is_null()) {
                    events.push(StreamEvent::Usage(read_usage(Some(usage))));
                }
                Ok(Chunk::End(events))
            }
            "response.failed" => {
                let error = event
                    .pointer("/response/error")
                    .cloned()
                    .unwrap_or(Value::Null);
                Ok(Chunk::Failed {
                    status: 500,
                    failure: Failure {
                        code: error
                            .get("code")
                            .and_then(Value::as_str)
                            .map(str::to_string),
                        message: error
                            .get("message")
                            .and_then(Value::as_str)
                            .unwrap_or("the response failed")
                            .to_string(),
                    },
                })
            }
            "error" => Ok(Chunk::Failed {
                status: 500,
                failure: Failure {
                    code: event
                        .get("code")
                        .and_then(Value::as_str)
                        .map(str::to_string),
                    message: event
                        .get("message")
                        .and_then(Value::as_str)
                        .unwrap_or("error event")
                        .to_string(),
                },
            }),
            // Lifecycle and other items' events carry nothing the caller reads here.
            _ => Ok(Chunk::Events(Vec::new())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provider::ModelType;
    use crate::types::{Message, ResponseFormat};

    fn target() -> Target<'static> {
        Target {
            model_id: "gpt-4o-mini",
            model_type: ModelType::Responses,
            max_tokens_key: "max_completion_tokens",
            api_version: None,
        }
    }

    #[test]
    fn requests_are_translated_as_dspy_translates_them() {
        let mut request = LmRequest::new(vec![
            Message::system("Be brief."),
            Message::user(Content::Parts(vec![
                ContentPart::text("What is this?"),
                ContentPart::image_url("https://example.com/cat.png"),
            ])),
            Message::assistant("A cat."),
        ]);
        request.max_tokens = Some(500);
        request.temperature = Some(0.0);
        request.n = Some(3);
        request
            .extra
            .insert("reasoning_effort".into(), "low".into());
        request.extra.insert(
            "tools".into(),
            json!([{"type": "function", "function": {"name": "f", "description": null, "parameters": {"type": "object"}}}]),
        );
        request.extra.insert(
            "tool_choice".into(),
            json!({"type": "function", "function": {"name": "f"}}),
        );
        let body: Value =
            serde_json::from_slice(&Responses.body(target(), &request, true).unwrap()).unwrap();
        assert_eq!(
            body,
            json!({
                "model": "gpt-4o-mini",
                "input": [
                    {"role": "system", "content": [{"type": "input_text", "text": "Be brief."}]},
                    {"role": "user", "content": [
                        {"type": "input_text", "text": "What is this?"},
                        {"type": "input_image", "image_url": "https://example.com/cat.png"}
                    ]},
                    {"role": "assistant", "content": [{"type": "output_text", "text": "A cat."}]}
                ],
                "max_output_tokens": 500,
                "temperature": 0.0,
                "reasoning": {"effort": "low", "summary": "auto"},
                "tools": [{"type": "function", "name": "f", "parameters": {"type": "object"}}],
                "tool_choice": {"type": "function", "name": "f"},
                "stream": true
            })
        );
    }

    #[test]
    fn json_schemas_go_out_strict_as_text_format() {
        let mut request = LmRequest::prompt("x");
        request.response_format = Some(ResponseFormat::JsonSchema {
            json_schema: json!({"name": "Out", "schema": {
                "type": "object",
                "properties": {"a": {"type": "string", "default": null}, "b": {"$ref": "#/$defs/B", "description": "b"}},
                "$defs": {"B": {"type": "object", "properties": {"c": {"type": "integer"}}}}
            }}),
        });
        let body: Value =
            serde_json::from_slice(&Responses.body(target(), &request, false).unwrap()).unwrap();
        let format = &body["text"]["format"];
        assert_eq!(format["type"], "json_schema");
        assert_eq!(format["name"], "Out");
        assert_eq!(format["strict"], true);
        let schema = &format["schema"];
        assert_eq!(schema["additionalProperties"], false);
        assert_eq!(schema["required"], json!(["a", "b"]));
        assert!(schema["properties"]["a"].get("default").is_none());
        // A `$ref` with a sibling is unravelled into the referenced schema, made strict.
        assert_eq!(schema["properties"]["b"]["required"], json!(["c"]));
        assert_eq!(schema["properties"]["b"]["description"], "b");
        assert!(body.get("stream").is_none());
    }

    #[test]
    fn responses_are_read_as_dspy_reads_them() {
        let body = json!({
            "model": "gpt-4o-mini-2024-07-18",
            "status": "completed",
            "output": [
                {"type": "reasoning", "summary": [{"type": "summary_text", "text": "Think."}]},
                {"type": "message", "content": [
                    {"type": "output_text", "text": "Hello", "annotations": []},
                    {"type": "output_text", "text": " world"}
                ]},
                {"type": "function_call", "call_id": "call_1", "name": "f", "arguments": "{\"x\": 1}"},
                {"type": "function_call", "name": "g", "arguments": "not json"}
            ],
            "usage": {"input_tokens": 7, "output_tokens": 3, "total_tokens": 10}
        });
        let decoded = Responses
            .response(target(), body.to_string().as_bytes())
            .unwrap();
        let choice = &decoded.choices[0];
        assert_eq!(choice.text, "Hello world");
        assert_eq!(choice.reasoning_content.as_deref(), Some("Think."));
        assert_eq!(choice.tool_calls[0].id.as_deref(), Some("call_1"));
        assert_eq!(choice.tool_calls[0].arguments, "{\"x\":1}");
        assert_eq!(choice.tool_calls[1].arguments, "{}");
        assert_eq!(choice.finish_reason, Some(FinishReason::ToolCalls));
        assert_eq!(decoded.usage.total_tokens, 10);
        assert_eq!(decoded.model.as_deref(), Some("gpt-4o-mini-2024-07-18"));
        let cut = json!({"status": "incomplete", "incomplete_details": {"reason": "max_output_tokens"}, "output": []});
        let decoded = Responses
            .response(target(), cut.to_string().as_bytes())
            .unwrap();
        assert_eq!(decoded.choices[0].finish_reason, Some(FinishReason::Length));
        assert!(Responses.response(target(), b"{}").is_err());
        assert!(Responses.response(target(), b"{\"output\": 3}").is_err());
        assert!(Responses.response(target(), b"nope").is_err());
    }

    #[test]
    fn streams_end_at_completion_and_fail_on_error_events() {
        let mut reader = ResponsesStream;
        assert!(matches!(
            reader.read(r#"{"type": "response.created", "response": {}}"#),
            Ok(Chunk::Events(e)) if e.is_empty()
        ));
        assert!(matches!(
            reader.read(r#"{"type": "response.output_text.delta", "delta": "Hi"}"#),
            Ok(Chunk::Events(e)) if e == [StreamEvent::Delta { index: 0, text: "Hi".into() }]
        ));
        let end = reader
            .read(r#"{"type": "response.completed", "response": {"status": "completed", "output": [], "usage": {"input_tokens": 2, "output_tokens": 1}}}"#)
            .unwrap();
        let Chunk::End(events) = end else {
            panic!("{end:?}")
        };
        assert_eq!(events.len(), 2);
        assert!(matches!(
            reader.read(r#"{"type": "error", "code": "server_error", "message": "boom"}"#),
            Ok(Chunk::Failed { failure, .. }) if failure.message == "boom"
        ));
        assert!(matches!(
            reader.read(r#"{"type": "response.failed", "response": {"error": {"code": "rate_limit_exceeded", "message": "slow"}}}"#),
            Ok(Chunk::Failed { failure, .. }) if failure.code.as_deref() == Some("rate_limit_exceeded")
        ));
        assert!(reader.read("{}").is_err());
        assert!(
            reader
                .read(r#"{"type": "response.output_text.delta"}"#)
                .is_err()
        );
    }
}
