//! OpenAI's Responses API (`POST {base}/responses`): DSPy's `model_type="responses"`
//! (`LmBuilder::model_type(ModelType::Responses)`), for OpenAI and the OpenAI-compatible
//! providers that serve it.
//!
//! The request is the chat request translated as DSPy 3.4.1 translates it
//! (`dspy/clients/legacy_requests.py`, `chat_to_responses`): every message becomes an `input`
//! item with its role (system messages included, as DSPy keeps them) and typed content blocks
//! (`input_text` — `output_text` for the assistant —, `input_image`, `input_file`; audio parts
//! go as they are) — except a conversation's native tool calls: an assistant message's
//! `tool_calls` become `function_call` items after it (the message itself left out when it has
//! no text), a `tool` message a `function_call_output` item; the token limit is `max_output_tokens`; `reasoning_effort` becomes
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
    Choice, Content, ContentPart, FinishReason, LmRequest, Message, ResponseFormat, Role, ToolCall,
    Usage,
};
use serde::{Deserialize, Serialize};
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
        let response: ApiResponse =
            serde_json::from_slice(body).map_err(|e| format!("invalid JSON: {e}"))?;
        let choice = read_output(&response)?;
        let usage = response.usage.unwrap_or_default();
        let (prompt, completion) = (
            usage.input_tokens.unwrap_or(0),
            usage.output_tokens.unwrap_or(0),
        );
        Ok(Decoded {
            choices: vec![choice],
            usage: Usage {
                prompt_tokens: prompt,
                completion_tokens: completion,
                total_tokens: usage
                    .total_tokens
                    .unwrap_or(prompt.saturating_add(completion)),
            },
            model: response.model,
        })
    }

    fn stream(&self, _target: Target<'_>) -> Box<dyn StreamReader> {
        Box::new(ResponsesStream)
    }

    fn error(&self, body: &str) -> Failure {
        openai_failure(body)
    }
}

/// A request body: the messages borrowed from the request (serialized straight from it, as
/// the chat body is), the parameters as a map.
#[derive(Serialize)]
struct Body<'a> {
    model: &'a str,
    input: Vec<InputItem<'a>>,
    #[serde(flatten)]
    params: Map<String, Value>,
}

/// One item of `input`: a message, or (from a conversation's native tool calls) a function
/// call or a function call's output.
#[derive(Serialize)]
#[serde(untagged)]
enum InputItem<'a> {
    Message {
        role: &'static str,
        content: Vec<Block<'a>>,
        #[serde(skip_serializing_if = "Option::is_none")]
        name: Option<&'a str>,
    },
    Tool(ToolItem<'a>),
}

/// A tool item of `input`, in the key order DSPy's `chat_to_responses` writes.
#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum ToolItem<'a> {
    /// An assistant message's tool call.
    FunctionCall {
        name: &'a str,
        arguments: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        call_id: Option<&'a str>,
    },
    /// A `tool` message: the call's result.
    FunctionCallOutput {
        output: std::borrow::Cow<'a, str>,
        #[serde(skip_serializing_if = "Option::is_none")]
        call_id: Option<&'a str>,
    },
}

/// A content block: a translated part, or a part that goes as it is (audio).
#[derive(Serialize)]
#[serde(untagged)]
enum Block<'a> {
    Typed(TypedBlock<'a>),
    AsIs(&'a ContentPart),
}

#[derive(Serialize)]
#[serde(tag = "type")]
enum TypedBlock<'a> {
    #[serde(rename = "input_text")]
    InputText { text: &'a str },
    #[serde(rename = "output_text")]
    OutputText { text: &'a str },
    #[serde(rename = "input_image")]
    InputImage {
        image_url: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        detail: Option<&'a str>,
    },
    /// DSPy copies every key, `null` for an absent one.
    #[serde(rename = "input_file")]
    InputFile {
        file_data: Option<&'a str>,
        filename: Option<&'a str>,
        file_id: Option<&'a str>,
    },
}

/// The request body, as DSPy's `chat_to_responses` writes it.
fn request_body<'a>(model_id: &'a str, request: &'a LmRequest, stream: bool) -> Body<'a> {
    let mut input = Vec::with_capacity(request.messages.len());
    for message in &request.messages {
        input_items(message, &mut input);
    }
    let mut body = Map::new();
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
    Body {
        model: model_id,
        input,
        params: body,
    }
}

/// DSPy's `chat_to_responses` for one message: a `tool` message is a `function_call_output`;
/// any other is a message item (left out for an assistant message with tool calls and no
/// text), followed, for an assistant message, by one `function_call` per tool call.
fn input_items<'a>(message: &'a Message, input: &mut Vec<InputItem<'a>>) {
    if message.role == Role::Tool {
        input.push(InputItem::Tool(ToolItem::FunctionCallOutput {
            output: message.content.text(),
            call_id: message.tool_call_id.as_deref(),
        }));
        return;
    }
    // An assistant message's empty text beside tool calls is DSPy's `None`: no blocks.
    let blocks = if message.role == Role::Assistant
        && !message.tool_calls.is_empty()
        && message.content == ""
    {
        Vec::new()
    } else {
        content_blocks(&message.content, message.role)
    };
    if !blocks.is_empty() || message.role != Role::Assistant || message.tool_calls.is_empty() {
        input.push(InputItem::Message {
            role: message.role.as_str(),
            content: blocks,
            name: message.name.as_deref(),
        });
    }
    if message.role == Role::Assistant {
        for call in &message.tool_calls {
            input.push(InputItem::Tool(ToolItem::FunctionCall {
                name: &call.name,
                arguments: &call.arguments,
                call_id: Some(&call.id),
            }));
        }
    }
}

/// A message's content as Responses content blocks.
fn content_blocks(content: &Content, role: Role) -> Vec<Block<'_>> {
    let text = |text| {
        Block::Typed(if role == Role::Assistant {
            TypedBlock::OutputText { text }
        } else {
            TypedBlock::InputText { text }
        })
    };
    match content {
        Content::Text(t) => vec![text(t.as_str())],
        Content::Parts(parts) => parts
            .iter()
            .map(|part| match part {
                ContentPart::Text { text: t } => text(t.as_str()),
                ContentPart::ImageUrl { image_url } => Block::Typed(TypedBlock::InputImage {
                    image_url: &image_url.url,
                    detail: image_url.detail.as_deref(),
                }),
                ContentPart::File { file } => Block::Typed(TypedBlock::InputFile {
                    file_data: file.file_data.as_deref(),
                    filename: file.filename.as_deref(),
                    file_id: file.file_id.as_deref(),
                }),
                other => Block::AsIs(other),
            })
            .collect(),
    }
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

/// A response object, read into what DSPy reads of it (and no more).
#[derive(Deserialize)]
struct ApiResponse {
    #[serde(default)]
    output: Option<Vec<ApiItem>>,
    #[serde(default)]
    usage: Option<ApiUsage>,
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    incomplete_details: Option<ApiIncomplete>,
}

#[derive(Deserialize)]
struct ApiItem {
    #[serde(rename = "type", default)]
    kind: Option<String>,
    #[serde(default)]
    content: Option<Vec<ApiPart>>,
    #[serde(default)]
    summary: Option<Vec<ApiPart>>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    arguments: Option<Value>,
    #[serde(default)]
    call_id: Option<String>,
}

#[derive(Deserialize)]
struct ApiPart {
    #[serde(rename = "type", default)]
    kind: Option<String>,
    #[serde(default)]
    text: Option<Value>,
}

impl ApiPart {
    fn text(&self) -> Option<&str> {
        self.text.as_ref().and_then(Value::as_str)
    }
}

#[derive(Deserialize, Default)]
struct ApiUsage {
    #[serde(default)]
    input_tokens: Option<u64>,
    #[serde(default)]
    output_tokens: Option<u64>,
    #[serde(default)]
    total_tokens: Option<u64>,
}

#[derive(Deserialize)]
struct ApiIncomplete {
    #[serde(default)]
    reason: Option<String>,
}

/// The one completion of a response object.
fn read_output(response: &ApiResponse) -> Result<Choice, String> {
    let output = response.output.as_deref().ok_or("no `output` list")?;
    let mut texts = String::new();
    let mut reasoning = String::new();
    let mut tool_calls = Vec::new();
    for (i, item) in output.iter().enumerate() {
        match item.kind.as_deref() {
            Some("message") => {
                for part in item.content.iter().flatten() {
                    if matches!(
                        part.kind.as_deref(),
                        Some("text" | "output_text" | "input_text")
                    ) && let Some(text) = part.text()
                    {
                        texts.push_str(text);
                    }
                }
            }
            Some("function_call") => {
                let name = item
                    .name
                    .as_deref()
                    .ok_or_else(|| format!("output item {i}: a function call without `name`"))?;
                // DSPy reads the arguments as JSON, `{}` when they are not.
                let arguments = match &item.arguments {
                    Some(Value::String(s)) => serde_json::from_str::<Value>(s)
                        .map(|v| v.to_string())
                        .unwrap_or_else(|_| "{}".to_string()),
                    Some(Value::Null) | None => "{}".to_string(),
                    Some(other) => other.to_string(),
                };
                tool_calls.push(ToolCall {
                    id: item.call_id.clone(),
                    name: name.to_string(),
                    arguments,
                });
            }
            Some("reasoning") => {
                let parts = item
                    .content
                    .as_deref()
                    .filter(|c| !c.is_empty())
                    .or(item.summary.as_deref());
                for part in parts.into_iter().flatten() {
                    if let Some(text) = part.text() {
                        reasoning.push_str(text);
                    }
                }
            }
            _ => {}
        }
    }
    let finish_reason = status_finish(
        response.status.as_deref(),
        response
            .incomplete_details
            .as_ref()
            .and_then(|d| d.reason.as_deref()),
        !tool_calls.is_empty(),
    );
    Ok(Choice {
        text: texts,
        finish_reason,
        tool_calls,
        reasoning_content: (!reasoning.is_empty()).then_some(reasoning),
    })
}

/// The finish reason of a response from its `status` (and, when incomplete, why).
fn status_finish(
    status: Option<&str>,
    incomplete: Option<&str>,
    called: bool,
) -> Option<FinishReason> {
    match status? {
        "completed" if called => Some(FinishReason::ToolCalls),
        "completed" => Some(FinishReason::Stop),
        "incomplete" => Some(match incomplete.unwrap_or("incomplete") {
            "max_output_tokens" => FinishReason::Length,
            "content_filter" => FinishReason::ContentFilter,
            other => FinishReason::Other(other.to_string()),
        }),
        other => Some(FinishReason::Other(other.to_string())),
    }
}

/// [`status_finish`] of a response object as JSON (a stream's last event).
fn finish_reason(response: &Value, called: bool) -> Option<FinishReason> {
    status_finish(
        response.get("status").and_then(Value::as_str),
        response
            .pointer("/incomplete_details/reason")
            .and_then(Value::as_str),
        called,
    )
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
    fn tool_calls_and_results_become_function_call_items() {
        use crate::types::MessageToolCall;
        let request = LmRequest::new(vec![
            Message::user("Weather?"),
            Message::assistant_tool_calls(
                "",
                vec![
                    MessageToolCall::new("c1", "get_weather", "{\"city\": \"Paris\"}"),
                    MessageToolCall::new("c2", "get_time", "{}"),
                ],
            ),
            Message::tool("c1", "get_weather", "Sunny"),
            Message::tool("c2", "get_time", "{\"t\": 1}"),
            Message::assistant_tool_calls("Checking.", vec![MessageToolCall::new("c3", "f", "{}")]),
            Message::user("And now?"),
        ]);
        let body: Value =
            serde_json::from_slice(&Responses.body(target(), &request, false).unwrap()).unwrap();
        // What DSPy 3.4.1's `chat_to_responses` gives for the same chat messages.
        let dspy: Value = serde_json::from_str(
            r#"[{"role": "user", "content": [{"type": "input_text", "text": "Weather?"}]}, {"type": "function_call", "name": "get_weather", "arguments": "{\"city\": \"Paris\"}", "call_id": "c1"}, {"type": "function_call", "name": "get_time", "arguments": "{}", "call_id": "c2"}, {"type": "function_call_output", "output": "Sunny", "call_id": "c1"}, {"type": "function_call_output", "output": "{\"t\": 1}", "call_id": "c2"}, {"role": "assistant", "content": [{"type": "output_text", "text": "Checking."}]}, {"type": "function_call", "name": "f", "arguments": "{}", "call_id": "c3"}, {"role": "user", "content": [{"type": "input_text", "text": "And now?"}]}]"#,
        )
        .unwrap();
        assert_eq!(body["input"], dspy);
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
