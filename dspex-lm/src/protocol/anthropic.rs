//! Anthropic's Messages API (`POST {base}/messages`, `x-api-key`, `anthropic-version:
//! 2023-06-01`), as DSPy 3.4.1 speaks it natively (its vendored `lm15` Anthropic client) and as
//! LiteLLM's proxy serves it at `/v1/messages`.
//!
//! # What the request carries
//!
//! - **Messages.** System messages (wherever they are) become the top-level `system` string,
//!   joined by blank lines; user and assistant messages become `messages`, a plain text as a
//!   string, a list of parts as content blocks: text → `text`; an image `data:` URI →
//!   `image` with a `base64` source (`image/jpeg`, `image/png`, `image/gif`, `image/webp`); an
//!   `http(s)` image URL → `image` with a `url` source; a file → `document` (a PDF `data:` URI
//!   as a `base64` source, a `file_id` as a `file` source — the Files API wants an
//!   `anthropic-beta` header, set it with [`header`](crate::LmBuilder::header) —, its
//!   `filename` as the `title`). A conversation's native tool calls go as DSPy's native
//!   client sends them: an assistant message's `tool_calls` → `tool_use` blocks (`{"id",
//!   "name", "input"}`) after its text blocks, consecutive `tool` messages → one user message of
//!   `tool_result` blocks (`{"tool_use_id", "content"}`).
//! - **Parameters.** `max_tokens` always (the API requires it): the request's, else
//!   `max_completion_tokens` from `extra`, else DSPy 3.4.1's default for the model class
//!   (4096 for `claude-3-haiku`/`-opus`/`-sonnet`, 8192 for `claude-3-5`/`claude-3.5`, 16384
//!   for every other model); `temperature` (clamped to the API's ceiling of 1.0, as DSPy does);
//!   `stop` → `stop_sequences`; `extra.user` → `metadata.user_id`.
//! - **Native tools.** OpenAI-shaped `tools` in `extra` (`{"type": "function", "function":
//!   {"name", "description", "parameters"}}`) → `{"name", "description", "input_schema"}`
//!   (tools already in Anthropic's shape, server tools included, pass as they are);
//!   `tool_choice` `"auto"` → `{"type": "auto"}`, `"required"` → `{"type": "any"}`, `"none"` →
//!   `{"type": "none"}`, `{"type": "function", "function": {"name"}}` → `{"type": "tool",
//!   "name"}`; `parallel_tool_calls: false` → `tool_choice.disable_parallel_tool_use: true`.
//! - **JSON mode.** A `json_schema` response format → `output_config.format` (`{"type":
//!   "json_schema", "schema"}`), DSPy's native mapping. A `json_object` format is not sent:
//!   the Messages API has no any-JSON mode, and DSPy 3.4.1 sends such a request through
//!   LiteLLM, which leaves it out (the adapter's prompt asks for the JSON object).
//! - **Extended thinking.** `reasoning_effort` in `extra` → `thinking`, as DSPy's native client
//!   maps it: for the models that take adaptive thinking (`sonnet-4-6`, `opus-4-6`…`opus-4-8`,
//!   the 5-series) `{"type": "adaptive"}` with `output_config.effort` (`minimal` becomes
//!   `low`); for the others `{"type": "enabled", "budget_tokens"}` with the budget of the
//!   effort (`minimal` 1024, `low` 2048, `medium` 8192, `high` 16384, `xhigh` 24576, `max`
//!   32768) added to `max_tokens` (which counts the thinking). `none`/`off`/`disable` send no
//!   thinking. A `thinking` object in `extra` is sent as it is instead.
//! - **Other `extra` keys** are sent as they are and win over the mapped parameters, except
//!   OpenAI's parameters the API has no field for, which are left out: `n`, `seed`,
//!   `frequency_penalty`, `presence_penalty`, `logit_bias`, `logprobs`, `top_logprobs`,
//!   `stream_options`.
//! - **`n > 1`.** The API has no `n`: it is not sent, one completion comes back and the client
//!   asks for the others one request each.
//!
//! # What is refused ([`LmError::UnsupportedFeature`](crate::LmError::UnsupportedFeature))
//!
//! Audio parts (the Messages API takes no audio); images of other types or in other URL
//! schemes; files that are neither a PDF `data:` URI nor a `file_id`; images or files in a
//! system message; a request with no user or assistant message; a text-completion model type;
//! an unknown `reasoning_effort`; malformed `tools`, `tool_choice` or `response_format`.
//!
//! Tool calls and tool results *in the conversation* cannot be sent as `tool_use` /
//! `tool_result` blocks: [`Message`](crate::Message) has no tool calls, no tool-call id and no
//! `tool` role, so earlier turns of a tool loop travel as text, as the adapters format them.
//!
//! # What the response gives
//!
//! `text` blocks → the completion's text (concatenated); `thinking` blocks →
//! [`Choice::reasoning_content`](crate::Choice::reasoning_content); `tool_use` blocks →
//! [`Choice::tool_calls`](crate::Choice::tool_calls) (the `input` object as the arguments'
//! JSON text); other blocks (redacted thinking, server tools' blocks) are skipped. `stop_reason`
//! → the finish reason (`end_turn`, `stop_sequence` → stop; `max_tokens`,
//! `model_context_window_exceeded` → length; `tool_use` → tool calls; `refusal` → content
//! filter; anything else by its name). Usage: prompt tokens are `input_tokens` plus the cache's
//! `cache_creation_input_tokens` and `cache_read_input_tokens` (as LiteLLM counts them),
//! completion tokens `output_tokens`.
//!
//! Streams: `message_start` (input tokens), `content_block_start` / `_delta` / `_stop`
//! (`text_delta` → [`StreamEvent::Delta`]), `message_delta` (the stop reason →
//! [`StreamEvent::Finish`], the output tokens → [`StreamEvent::Usage`]), `message_stop` (the
//! end), `ping`, and `error` → the typed error of its type's status (`overloaded_error` 529,
//! `rate_limit_error` 429, `api_error` 500, …). Thinking and tool-input deltas have no stream
//! event and are not delivered: a streamed answer carries its text only.

use super::{Chunk, Decoded, Failure, Paths, Protocol, StreamReader, Target, failure_from};
use crate::provider::ModelType;
use crate::secret::ApiKey;
use crate::stream::StreamEvent;
use crate::types::{
    Choice, Content, ContentPart, FilePart, FinishReason, LmRequest, Message, ResponseFormat, Role,
    ToolCall, Usage,
};
use serde::Deserialize;
use serde_json::{Map, Value, json};

/// The `anthropic-version` every request carries.
pub(crate) const API_VERSION: &str = "2023-06-01";

/// The image types the Messages API reads.
const IMAGE_TYPES: [&str; 4] = ["image/jpeg", "image/png", "image/gif", "image/webp"];

/// OpenAI parameters with no field in the Messages API: left out of the body.
const OPENAI_ONLY: [&str; 8] = [
    "n",
    "seed",
    "frequency_penalty",
    "presence_penalty",
    "logit_bias",
    "logprobs",
    "top_logprobs",
    "stream_options",
];

/// `extra` keys this protocol maps itself.
const MAPPED: [&str; 7] = [
    "tools",
    "tool_choice",
    "parallel_tool_calls",
    "reasoning_effort",
    "max_completion_tokens",
    "user",
    "response_format",
];

/// Thinking budgets per `reasoning_effort` (DSPy 3.4.1's `lm15` `EFFORT_THINKING_BUDGETS`).
const THINKING_BUDGETS: [(&str, u32); 6] = [
    ("minimal", 1024),
    ("low", 2048),
    ("medium", 8192),
    ("high", 16384),
    ("xhigh", 24576),
    ("max", 32768),
];

/// Model-name markers of the models that take `thinking: {"type": "adaptive"}` with
/// `output_config.effort` (DSPy 3.4.1's `lm15` `_ADAPTIVE_CLASS_MARKERS`).
const ADAPTIVE_MARKERS: [&str; 9] = [
    "sonnet-5",
    "opus-5",
    "sonnet-4-6",
    "opus-4-6",
    "opus-4-7",
    "opus-4-8",
    "fable",
    "mythos",
    "haiku-5",
];

/// `max_tokens` when the request sets none: DSPy 3.4.1's default for the model class (`lm15`
/// `_default_max_tokens`): the 3.x models' documented ceilings, 16384 for the rest.
pub(crate) fn default_max_tokens(model_id: &str) -> u32 {
    let model = model_id.to_ascii_lowercase();
    for (marker, ceiling) in [
        ("claude-3-haiku", 4096),
        ("claude-3-opus", 4096),
        ("claude-3-sonnet", 4096),
        ("claude-3-5-", 8192),
        ("claude-3.5-", 8192),
    ] {
        if model.contains(marker) {
            return ceiling;
        }
    }
    16384
}

/// The HTTP status Anthropic documents for an error type (what an `error` event in a stream
/// stands for).
pub(crate) fn status_of(error_type: &str) -> u16 {
    match error_type {
        "invalid_request_error" => 400,
        "authentication_error" => 401,
        "billing_error" => 402,
        "permission_error" => 403,
        "not_found_error" => 404,
        "request_too_large" => 413,
        "rate_limit_error" => 429,
        "timeout_error" => 504,
        "overloaded_error" => 529,
        _ => 500,
    }
}

/// The Anthropic Messages protocol.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Anthropic;

impl Protocol for Anthropic {
    fn name(&self) -> &'static str {
        "anthropic"
    }

    fn paths(&self, _target: Target<'_>) -> Paths {
        Paths {
            call: "messages".to_string(),
            stream: "messages".to_string(),
            embeddings: None,
        }
    }

    fn auth(&self, key: &ApiKey) -> (&'static str, String) {
        ("x-api-key", key.expose().to_string())
    }

    fn fixed_headers(&self) -> &'static [(&'static str, &'static str)] {
        &[("anthropic-version", API_VERSION)]
    }

    fn body(
        &self,
        target: Target<'_>,
        request: &LmRequest,
        stream: bool,
    ) -> Result<Vec<u8>, String> {
        let body = request_body(target, request, stream)?;
        serde_json::to_vec(&body).map_err(|e| format!("the request cannot be serialized: {e}"))
    }

    fn response(&self, _target: Target<'_>, body: &[u8]) -> Result<Decoded, String> {
        parse_response(body)
    }

    fn stream(&self, _target: Target<'_>) -> Box<dyn StreamReader> {
        Box::new(AnthropicStream::default())
    }

    fn error(&self, body: &str) -> Failure {
        anthropic_failure(body)
    }
}

// ---------------------------------------------------------------------------------------------
// Requests
// ---------------------------------------------------------------------------------------------

/// The request body as JSON, or what the request needs that the API cannot take.
pub(crate) fn request_body(
    target: Target<'_>,
    request: &LmRequest,
    stream: bool,
) -> Result<Value, String> {
    if target.model_type == ModelType::Text {
        return Err(
            "model_type \"text\": the Messages API has no text completions (use the chat model type)"
                .to_string(),
        );
    }
    let extra = &request.extra;
    let mut system: Vec<String> = Vec::new();
    let mut messages: Vec<Value> = Vec::with_capacity(request.messages.len());
    // Whether the last message written holds tool results (consecutive ones share it).
    let mut in_results = false;
    for (i, message) in request.messages.iter().enumerate() {
        let results = message.role == Role::Tool;
        match message.role {
            Role::System => system.push(system_text(i, message)?),
            Role::Tool => {
                let block = tool_result_block(i, message)?;
                match messages
                    .last_mut()
                    .and_then(|m| m["content"].as_array_mut())
                {
                    Some(blocks) if in_results => blocks.push(block),
                    _ => messages.push(json!({"role": "user", "content": [block]})),
                }
            }
            Role::Assistant if !message.tool_calls.is_empty() => {
                messages.push(json!({
                    "role": "assistant",
                    "content": tool_use_content(i, message)?,
                }));
            }
            Role::User | Role::Assistant => messages.push(json!({
                "role": message.role.as_str(),
                "content": content(i, message)?,
            })),
        }
        if message.role != Role::System {
            in_results = results;
        }
    }
    if messages.is_empty() {
        return Err(
            "a request with no user or assistant message: the Messages API needs at least one (system messages go to `system`)"
                .to_string(),
        );
    }
    let mut body = Map::new();
    body.insert("model".into(), target.model_id.into());
    body.insert("messages".into(), Value::Array(messages));
    if !system.is_empty() {
        body.insert("system".into(), system.join("\n\n").into());
    }
    let visible = match (request.max_tokens, extra.get("max_completion_tokens")) {
        (Some(max), _) => max,
        (None, Some(v)) => v
            .as_u64()
            .and_then(|v| u32::try_from(v).ok())
            .ok_or_else(|| {
                format!("`max_completion_tokens` must be a positive integer, got {v}")
            })?,
        (None, None) => default_max_tokens(target.model_id),
    };
    let mut max_tokens = visible;
    if let Some(t) = request.temperature {
        body.insert("temperature".into(), t.clamp(0.0, 1.0).into());
    }
    if !request.stop.is_empty() {
        body.insert("stop_sequences".into(), json!(request.stop));
    }
    if let Some(Value::String(user)) = extra.get("user") {
        body.insert("metadata".into(), json!({ "user_id": user }));
    }
    let mut output_config = Map::new();
    // `reasoning_effort` → thinking, unless `thinking` is given as it is.
    match extra.get("reasoning_effort") {
        None | Some(Value::Null) => {}
        Some(_) if extra.contains_key("thinking") => {}
        Some(Value::String(effort)) => match effort.as_str() {
            "none" | "off" | "disable" | "disabled" => {}
            effort => {
                let budget = THINKING_BUDGETS
                    .iter()
                    .find(|(name, _)| *name == effort)
                    .map(|(_, budget)| *budget)
                    .ok_or_else(|| {
                        format!(
                            "reasoning_effort `{effort}`: Anthropic's thinking takes none, minimal, low, medium, high, xhigh or max"
                        )
                    })?;
                let model = target.model_id.to_ascii_lowercase();
                if ADAPTIVE_MARKERS.iter().any(|m| model.contains(m)) {
                    body.insert("thinking".into(), json!({"type": "adaptive"}));
                    let effort = if effort == "minimal" { "low" } else { effort };
                    output_config.insert("effort".into(), effort.into());
                } else {
                    body.insert(
                        "thinking".into(),
                        json!({"type": "enabled", "budget_tokens": budget}),
                    );
                    max_tokens = max_tokens.saturating_add(budget);
                }
            }
        },
        Some(other) => return Err(format!("reasoning_effort must be a string, got {other}")),
    }
    body.insert("max_tokens".into(), max_tokens.into());
    // The response format: the request's, or one given in `extra`.
    let from_extra;
    let format = match extra.get("response_format") {
        Some(v) if !v.is_null() => {
            from_extra = serde_json::from_value::<ResponseFormat>(v.clone()).map_err(|e| {
                format!("response_format {v} is not a text, json_object or json_schema format: {e}")
            })?;
            Some(&from_extra)
        }
        _ => request.response_format.as_ref(),
    };
    if let Some(ResponseFormat::JsonSchema { json_schema }) = format {
        let schema = json_schema
            .get("schema")
            .filter(|s| s.is_object())
            .ok_or("a json_schema response_format without a `schema` object")?;
        output_config.insert(
            "format".into(),
            json!({"type": "json_schema", "schema": schema}),
        );
    }
    if !output_config.is_empty() {
        body.insert("output_config".into(), Value::Object(output_config));
    }
    let has_tools = match extra.get("tools") {
        None | Some(Value::Null) => false,
        Some(Value::Array(tools)) => {
            let tools = tools
                .iter()
                .enumerate()
                .map(|(i, t)| tool(i, t))
                .collect::<Result<Vec<_>, _>>()?;
            let any = !tools.is_empty();
            if any {
                body.insert("tools".into(), Value::Array(tools));
            }
            any
        }
        Some(other) => return Err(format!("`tools` must be a list, got {other}")),
    };
    let mut choice = match extra.get("tool_choice") {
        None | Some(Value::Null) => None,
        Some(choice) => Some(tool_choice(choice)?),
    };
    if has_tools && extra.get("parallel_tool_calls") == Some(&Value::Bool(false)) {
        let choice = choice.get_or_insert_with(|| json!({"type": "auto"}));
        if choice.get("type").and_then(Value::as_str) != Some("none")
            && let Some(object) = choice.as_object_mut()
        {
            object.insert("disable_parallel_tool_use".into(), Value::Bool(true));
        }
    }
    if let Some(choice) = choice.filter(|_| has_tools) {
        body.insert("tool_choice".into(), choice);
    }
    for (key, value) in extra {
        if MAPPED.contains(&key.as_str()) || OPENAI_ONLY.contains(&key.as_str()) {
            continue;
        }
        if matches!(key.as_str(), "model" | "messages" | "stream") {
            continue;
        }
        body.insert(key.clone(), value.clone());
    }
    if stream {
        body.insert("stream".into(), Value::Bool(true));
    }
    Ok(Value::Object(body))
}

/// A system message's text (the Messages API's `system` takes text only).
fn system_text(i: usize, message: &Message) -> Result<String, String> {
    match &message.content {
        Content::Text(text) => Ok(text.clone()),
        Content::Parts(parts) => {
            let mut out = String::new();
            for part in parts {
                match part {
                    ContentPart::Text { text } => out.push_str(text),
                    other => {
                        return Err(format!(
                            "message {i} (system) holds {}: Anthropic's `system` takes text only",
                            other.placeholder()
                        ));
                    }
                }
            }
            Ok(out)
        }
    }
}

/// An assistant message with tool calls, as DSPy's native client writes it: its text (if any)
/// as content blocks, then a `tool_use` block per call (`{"type", "id", "name", "input"}`, the
/// arguments read as the JSON object they must be).
fn tool_use_content(i: usize, message: &Message) -> Result<Vec<Value>, String> {
    let mut blocks = match &message.content {
        Content::Text(text) if text.is_empty() => Vec::new(),
        Content::Text(text) => vec![json!({"type": "text", "text": text})],
        Content::Parts(parts) => parts
            .iter()
            .enumerate()
            .map(|(j, part)| {
                block(part).map_err(|e| format!("message {i} (assistant), part {j}: {e}"))
            })
            .collect::<Result<_, _>>()?,
    };
    for (j, call) in message.tool_calls.iter().enumerate() {
        let input = match serde_json::from_str::<Value>(&call.arguments) {
            Ok(input @ Value::Object(_)) => input,
            _ => {
                return Err(format!(
                    "message {i} (assistant), tool call {j} (`{}`): its arguments are not a JSON object, which a tool_use block's `input` must be",
                    call.name
                ));
            }
        };
        blocks.push(json!({"type": "tool_use", "id": call.id, "name": call.name, "input": input}));
    }
    Ok(blocks)
}

/// A `tool` message as a `tool_result` block: `{"type", "tool_use_id", "content"}`, the content
/// its text.
fn tool_result_block(i: usize, message: &Message) -> Result<Value, String> {
    let id = message.tool_call_id.as_deref().ok_or_else(|| {
        format!(
            "message {i} (tool) has no tool_call_id: a tool_result block must name its tool_use"
        )
    })?;
    if message.content.has_media() {
        return Err(format!(
            "message {i} (tool) holds images, audio or files: dspex sends a tool result's text only"
        ));
    }
    Ok(json!({"type": "tool_result", "tool_use_id": id, "content": message.content.text()}))
}

/// A user or assistant message's content: its text, or its parts as content blocks.
fn content(i: usize, message: &Message) -> Result<Value, String> {
    let parts = match &message.content {
        Content::Text(text) => return Ok(Value::String(text.clone())),
        Content::Parts(parts) => parts,
    };
    let role = message.role.as_str();
    parts
        .iter()
        .enumerate()
        .map(|(j, part)| block(part).map_err(|e| format!("message {i} ({role}), part {j}: {e}")))
        .collect::<Result<Vec<_>, _>>()
        .map(Value::Array)
}

/// One content part as a content block.
fn block(part: &ContentPart) -> Result<Value, String> {
    match part {
        ContentPart::Text { text } => Ok(json!({"type": "text", "text": text})),
        ContentPart::ImageUrl { image_url } => {
            let url = image_url.url.as_str();
            if let Some((mime, data)) = data_uri(url) {
                if !IMAGE_TYPES.contains(&mime.as_str()) {
                    return Err(format!(
                        "an image of type `{mime}`: Anthropic reads image/jpeg, image/png, image/gif and image/webp"
                    ));
                }
                Ok(json!({
                    "type": "image",
                    "source": {"type": "base64", "media_type": mime, "data": data},
                }))
            } else if url.starts_with("https://") || url.starts_with("http://") {
                Ok(json!({"type": "image", "source": {"type": "url", "url": url}}))
            } else {
                Err(format!(
                    "an image URL that is neither a base64 `data:` URI nor http(s): `{}`",
                    crate::error::excerpt(url, 60)
                ))
            }
        }
        ContentPart::InputAudio { input_audio } => Err(format!(
            "audio ({}): the Messages API takes no audio input",
            input_audio.format
        )),
        ContentPart::File { file } => document(file),
    }
}

/// A file part as a `document` block.
fn document(file: &FilePart) -> Result<Value, String> {
    let source = match (&file.file_data, &file.file_id) {
        (Some(data), _) => match data_uri(data) {
            Some((mime, data)) if mime == "application/pdf" => {
                json!({"type": "base64", "media_type": mime, "data": data})
            }
            Some((mime, _)) => {
                return Err(format!(
                    "a file of type `{mime}`: Anthropic's documents are PDFs (application/pdf) here"
                ));
            }
            None => return Err("a file whose data is not a base64 `data:` URI".to_string()),
        },
        (None, Some(id)) => json!({"type": "file", "file_id": id}),
        (None, None) => return Err("a file with neither data nor a file id".to_string()),
    };
    let mut block = json!({"type": "document", "source": source});
    if let (Some(name), Some(object)) = (&file.filename, block.as_object_mut()) {
        object.insert("title".into(), name.clone().into());
    }
    Ok(block)
}

/// `data:<mime>;base64,<data>` → the MIME type (lowercase) and the data.
fn data_uri(uri: &str) -> Option<(String, &str)> {
    let rest = uri.strip_prefix("data:")?;
    let (head, data) = rest.split_once(',')?;
    let mut params = head.split(';');
    let mime = params.next()?.trim().to_ascii_lowercase();
    if mime.is_empty() || !params.any(|p| p.trim().eq_ignore_ascii_case("base64")) {
        return None;
    }
    Some((mime, data))
}

/// One tool: OpenAI's function shape → Anthropic's; Anthropic's own shapes as they are.
fn tool(i: usize, tool: &Value) -> Result<Value, String> {
    let Some(object) = tool.as_object() else {
        return Err(format!("tool {i} is not an object: {tool}"));
    };
    let Some(function) = object.get("function") else {
        // Already Anthropic's: a client tool (`name`, `input_schema`) or a server tool (`type`).
        if object.get("name").is_some_and(Value::is_string) {
            return Ok(tool.clone());
        }
        return Err(format!(
            "tool {i} has neither OpenAI's `function` nor Anthropic's `name`"
        ));
    };
    let name = function
        .get("name")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
        .ok_or_else(|| format!("tool {i} has no `function.name`"))?;
    let mut out = Map::new();
    out.insert("name".into(), name.into());
    if let Some(Value::String(d)) = function.get("description") {
        out.insert("description".into(), d.clone().into());
    }
    let schema = match function.get("parameters") {
        None | Some(Value::Null) => json!({"type": "object", "properties": {}}),
        Some(p) if p.is_object() => p.clone(),
        Some(other) => {
            return Err(format!(
                "tool {i} (`{name}`): `parameters` must be a JSON schema object, got {other}"
            ));
        }
    };
    out.insert("input_schema".into(), schema);
    Ok(Value::Object(out))
}

/// OpenAI's `tool_choice` → Anthropic's (Anthropic's own shape as it is).
fn tool_choice(choice: &Value) -> Result<Value, String> {
    let bad = || {
        format!(
            "tool_choice {choice}: expected \"auto\", \"required\", \"none\", {{\"type\": \"function\", \"function\": {{\"name\"}}}} or Anthropic's {{\"type\": \"auto\"|\"any\"|\"tool\"|\"none\"}}"
        )
    };
    match choice {
        Value::String(s) => match s.as_str() {
            "auto" => Ok(json!({"type": "auto"})),
            "required" | "any" => Ok(json!({"type": "any"})),
            "none" => Ok(json!({"type": "none"})),
            _ => Err(bad()),
        },
        Value::Object(o) => match o.get("type").and_then(Value::as_str) {
            Some("function") => {
                let name = o
                    .get("function")
                    .and_then(|f| f.get("name"))
                    .and_then(Value::as_str)
                    .ok_or_else(bad)?;
                Ok(json!({"type": "tool", "name": name}))
            }
            Some("auto" | "any" | "none") => Ok(choice.clone()),
            Some("tool") if o.get("name").is_some_and(Value::is_string) => Ok(choice.clone()),
            _ => Err(bad()),
        },
        _ => Err(bad()),
    }
}

// ---------------------------------------------------------------------------------------------
// Responses
// ---------------------------------------------------------------------------------------------

/// A `message` response.
#[derive(Deserialize)]
struct MessageResponse {
    #[serde(default, rename = "type")]
    kind: Option<String>,
    #[serde(default)]
    content: Option<Vec<Value>>,
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    stop_reason: Option<String>,
    #[serde(default)]
    usage: Option<ApiUsage>,
    #[serde(default)]
    error: Option<Value>,
}

/// `usage` of a message (or of `message_start` / `message_delta`).
#[derive(Deserialize, Default, Clone, Copy)]
struct ApiUsage {
    #[serde(default)]
    input_tokens: Option<u64>,
    #[serde(default)]
    output_tokens: Option<u64>,
    #[serde(default)]
    cache_creation_input_tokens: Option<u64>,
    #[serde(default)]
    cache_read_input_tokens: Option<u64>,
}

impl ApiUsage {
    /// Prompt tokens: input plus the cache's writes and reads (each counted apart by Anthropic).
    fn prompt(&self) -> Option<u64> {
        let parts = [
            self.input_tokens,
            self.cache_creation_input_tokens,
            self.cache_read_input_tokens,
        ];
        parts.iter().any(Option::is_some).then(|| {
            parts
                .iter()
                .flatten()
                .fold(0u64, |a, b| a.saturating_add(*b))
        })
    }
}

/// Anthropic's stop reason as a finish reason.
pub(crate) fn finish_reason(stop_reason: &str) -> FinishReason {
    match stop_reason {
        "end_turn" | "stop_sequence" => FinishReason::Stop,
        "max_tokens" | "model_context_window_exceeded" => FinishReason::Length,
        "tool_use" => FinishReason::ToolCalls,
        "refusal" => FinishReason::ContentFilter,
        other => FinishReason::Other(other.to_string()),
    }
}

/// A whole `message` response, or what is wrong with it.
pub(crate) fn parse_response(body: &[u8]) -> Result<Decoded, String> {
    let parsed: MessageResponse =
        serde_json::from_slice(body).map_err(|e| format!("invalid JSON: {e}"))?;
    if parsed.kind.as_deref() == Some("error") || parsed.error.is_some() {
        let failure = anthropic_failure(&String::from_utf8_lossy(body));
        return Err(format!(
            "an error in place of a message: {}{}",
            failure.code.map(|c| format!("{c}: ")).unwrap_or_default(),
            failure.message
        ));
    }
    let blocks = parsed.content.ok_or("no `content` list")?;
    let mut text = String::new();
    let mut reasoning: Vec<String> = Vec::new();
    let mut tool_calls = Vec::new();
    for (i, block) in blocks.iter().enumerate() {
        let kind = block
            .get("type")
            .and_then(Value::as_str)
            .ok_or_else(|| format!("content block {i} has no `type`"))?;
        match kind {
            "text" => match block.get("text") {
                Some(Value::String(t)) => text.push_str(t),
                _ => return Err(format!("content block {i} (text) has no string `text`")),
            },
            "thinking" => {
                if let Some(Value::String(t)) = block.get("thinking")
                    && !t.is_empty()
                {
                    reasoning.push(t.clone());
                }
            }
            "tool_use" => tool_calls.push(tool_use(i, block)?),
            // Redacted thinking, server tools' calls and results, citations' blocks: nothing
            // a completion carries.
            _ => {}
        }
    }
    let usage = parsed.usage.unwrap_or_default();
    let prompt = usage.prompt().unwrap_or(0);
    let completion = usage.output_tokens.unwrap_or(0);
    Ok(Decoded {
        choices: vec![Choice {
            text,
            finish_reason: parsed.stop_reason.as_deref().map(finish_reason),
            tool_calls,
            reasoning_content: (!reasoning.is_empty()).then(|| reasoning.join("\n\n")),
        }],
        usage: Usage {
            prompt_tokens: prompt,
            completion_tokens: completion,
            total_tokens: prompt.saturating_add(completion),
        },
        model: parsed.model,
    })
}

/// A `tool_use` block as a tool call.
fn tool_use(i: usize, block: &Value) -> Result<ToolCall, String> {
    let name = block
        .get("name")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
        .ok_or_else(|| format!("content block {i} (tool_use) has no `name`"))?;
    let arguments = match block.get("input") {
        None | Some(Value::Null) => "{}".to_string(),
        Some(input) => input.to_string(),
    };
    Ok(ToolCall {
        id: block.get("id").and_then(Value::as_str).map(str::to_string),
        name: name.to_string(),
        arguments,
    })
}

/// The code and message of an error body: Anthropic's `{"type": "error", "error": {"type",
/// "message"}}`, OpenAI's `{"error": {"message", "code"|"type"}}` (LiteLLM's proxy), `{"error":
/// "text"}`, else the body as it is.
pub(crate) fn anthropic_failure(body: &str) -> Failure {
    let parsed: Option<Value> = serde_json::from_str(body).ok();
    failure_from(
        body,
        parsed.as_ref().and_then(|v| v.get("error")),
        &["type", "code"],
    )
}

// ---------------------------------------------------------------------------------------------
// Streams
// ---------------------------------------------------------------------------------------------

/// The state of one streamed message: the prompt tokens `message_start` reported, and the
/// `tool_use` blocks open so far (content block index → call number, and whether any of the
/// call's input arrived).
#[derive(Debug, Default)]
pub(crate) struct AnthropicStream {
    prompt_tokens: Option<u64>,
    tool_blocks: std::collections::BTreeMap<u64, (u32, bool)>,
    calls: u32,
}

/// One stream event's payload.
#[derive(Deserialize)]
struct Event {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    index: Option<u64>,
    #[serde(default)]
    message: Option<EventMessage>,
    #[serde(default)]
    content_block: Option<Value>,
    #[serde(default)]
    delta: Option<Value>,
    #[serde(default)]
    usage: Option<ApiUsage>,
    #[serde(default)]
    error: Option<Value>,
}

#[derive(Deserialize)]
struct EventMessage {
    #[serde(default)]
    usage: Option<ApiUsage>,
}

impl StreamReader for AnthropicStream {
    fn end_marker(&self) -> &'static str {
        "the `message_stop` event"
    }

    fn read(&mut self, data: &str) -> Result<Chunk, String> {
        let event: Event = serde_json::from_str(data).map_err(|e| e.to_string())?;
        let mut events = Vec::new();
        match event.kind.as_str() {
            "message_start" => {
                let usage = event
                    .message
                    .ok_or("a `message_start` event without `message`")?
                    .usage;
                self.prompt_tokens = usage.and_then(|u| u.prompt());
            }
            "content_block_start" => {
                let block = event.content_block.as_ref();
                match block.and_then(|b| b.get("type")).and_then(Value::as_str) {
                    // A text block may open with text of its own.
                    Some("text") => {
                        if let Some(Value::String(text)) = block.and_then(|b| b.get("text"))
                            && !text.is_empty()
                        {
                            events.push(StreamEvent::Delta {
                                index: 0,
                                text: text.clone(),
                            });
                        }
                    }
                    // A tool call opens with its id and name; its input follows as
                    // `input_json_delta`s.
                    Some("tool_use") => {
                        let block = block.unwrap_or(&Value::Null);
                        let name = block
                            .get("name")
                            .and_then(Value::as_str)
                            .filter(|n| !n.is_empty())
                            .ok_or("a `tool_use` block without a `name`")?;
                        let call = self.calls;
                        self.calls = self.calls.saturating_add(1);
                        self.tool_blocks
                            .insert(event.index.unwrap_or(u64::MAX), (call, false));
                        events.push(StreamEvent::ToolCall {
                            index: 0,
                            call,
                            id: block.get("id").and_then(Value::as_str).map(str::to_string),
                            name: Some(name.to_string()),
                            arguments: String::new(),
                        });
                    }
                    _ => {}
                }
            }
            "content_block_stop" => {
                // A call whose input never streamed has no arguments: `{}`, as a whole
                // message's empty `input` reads.
                if let Some((call, false)) = event.index.and_then(|i| self.tool_blocks.remove(&i)) {
                    events.push(StreamEvent::ToolCall {
                        index: 0,
                        call,
                        id: None,
                        name: None,
                        arguments: "{}".to_string(),
                    });
                }
            }
            "content_block_delta" => {
                let delta = event
                    .delta
                    .ok_or("a `content_block_delta` event without `delta`")?;
                if delta.get("type").and_then(Value::as_str) == Some("text_delta") {
                    match delta.get("text") {
                        Some(Value::String(text)) => {
                            if !text.is_empty() {
                                events.push(StreamEvent::Delta {
                                    index: 0,
                                    text: text.clone(),
                                });
                            }
                        }
                        _ => return Err("a `text_delta` without a string `text`".to_string()),
                    }
                }
                match delta.get("type").and_then(Value::as_str) {
                    Some("thinking_delta") => {
                        if let Some(Value::String(text)) = delta.get("thinking")
                            && !text.is_empty()
                        {
                            events.push(StreamEvent::Reasoning {
                                index: 0,
                                text: text.clone(),
                            });
                        }
                    }
                    Some("input_json_delta") => {
                        let piece = match delta.get("partial_json") {
                            Some(Value::String(piece)) => piece,
                            _ => {
                                return Err(
                                    "an `input_json_delta` without a string `partial_json`"
                                        .to_string(),
                                );
                            }
                        };
                        let block = event.index.unwrap_or(u64::MAX);
                        let Some((call, seen)) = self.tool_blocks.get_mut(&block) else {
                            return Err(format!(
                                "an `input_json_delta` for block {block}, which is not an open `tool_use` block"
                            ));
                        };
                        if !piece.is_empty() {
                            *seen = true;
                            events.push(StreamEvent::ToolCall {
                                index: 0,
                                call: *call,
                                id: None,
                                name: None,
                                arguments: piece.clone(),
                            });
                        }
                    }
                    // signature_delta, citations_delta: no stream event carries them.
                    _ => {}
                }
            }
            "message_delta" => {
                if let Some(reason) = event
                    .delta
                    .as_ref()
                    .and_then(|d| d.get("stop_reason"))
                    .and_then(Value::as_str)
                {
                    events.push(StreamEvent::Finish {
                        index: 0,
                        reason: finish_reason(reason),
                    });
                }
                if let Some(usage) = event.usage {
                    // `message_delta`'s counts are cumulative; servers that put the input
                    // tokens here too (LiteLLM's proxy) are read as well.
                    let prompt = usage.prompt().or(self.prompt_tokens).unwrap_or(0);
                    let completion = usage.output_tokens.unwrap_or(0);
                    events.push(StreamEvent::Usage(Usage {
                        prompt_tokens: prompt,
                        completion_tokens: completion,
                        total_tokens: prompt.saturating_add(completion),
                    }));
                }
            }
            "message_stop" => return Ok(Chunk::End(events)),
            "error" => {
                let error = event.error.unwrap_or(Value::Null);
                let text = |k: &str| {
                    error
                        .get(k)
                        .and_then(Value::as_str)
                        .filter(|s| !s.is_empty())
                        .map(str::to_string)
                };
                let code = text("type").or_else(|| text("code"));
                let status = code.as_deref().map_or(500, status_of);
                let message =
                    text("message").unwrap_or_else(|| "an error event without a message".into());
                return Ok(Chunk::Failed {
                    status,
                    failure: Failure { code, message },
                });
            }
            // `ping`, `content_block_stop`, and event types added later (the API says
            // clients should handle them gracefully).
            _ => {}
        }
        Ok(Chunk::Events(events))
    }
}

/// Entry points of the parsers for the fuzz targets (`dspex-runtime`'s `__fuzz`).
#[cfg(feature = "fuzzing")]
pub mod fuzzing {
    use super::*;

    /// A whole response body: the choices, or what is wrong (never a panic). Checks: a
    /// decoded response has exactly one choice, and its totals add up.
    pub fn response(body: &[u8]) -> Result<(Choice, Usage), String> {
        let decoded = parse_response(body)?;
        assert_eq!(decoded.choices.len(), 1, "a message is one completion");
        let usage = decoded.usage;
        assert_eq!(
            usage.total_tokens,
            usage.prompt_tokens.saturating_add(usage.completion_tokens)
        );
        let choice = decoded
            .choices
            .into_iter()
            .next()
            .unwrap_or_else(|| Choice::text(""));
        Ok((choice, usage))
    }

    /// What one event of a stream read as.
    #[derive(Debug, PartialEq)]
    pub enum Read {
        /// Events for the caller.
        Events(Vec<StreamEvent>),
        /// The end of the message, after these events.
        End(Vec<StreamEvent>),
        /// An error event, with the status of its type and its code.
        Failed(u16, Option<String>),
        /// An event that does not read, and why.
        Invalid(String),
    }

    /// What one stream's event payloads read as, in order, up to the end of the message, an
    /// error event or an event that does not read (where the client stops too).
    pub fn stream_events(payloads: &[&str]) -> Vec<Read> {
        let mut reader = AnthropicStream::default();
        let mut out = Vec::new();
        for data in payloads {
            let read = match reader.read(data) {
                Ok(Chunk::Events(events)) => Read::Events(events),
                Ok(Chunk::End(events)) => Read::End(events),
                Ok(Chunk::Failed { status, failure }) => Read::Failed(status, failure.code),
                Err(e) => Read::Invalid(e),
            };
            let last = !matches!(read, Read::Events(_));
            out.push(read);
            if last {
                break;
            }
        }
        out
    }

    /// An error body's code and message.
    pub fn error_body(body: &str) -> (Option<String>, String) {
        let failure = anthropic_failure(body);
        (failure.code, failure.message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{ImageUrl, InputAudio};

    fn target(model_id: &str) -> Target<'_> {
        Target {
            model_id,
            model_type: ModelType::Chat,
            max_tokens_key: "max_tokens",
            api_version: None,
        }
    }

    fn body(request: &LmRequest) -> Value {
        request_body(target("claude-sonnet-4-5"), request, false).unwrap()
    }

    /// A History turn's native tool calls and results, against DSPy 3.4.1's native client
    /// (`request_from_openai_chat`, then `AnthropicLM.build_request`) on the same chat messages:
    /// `tool_use` blocks after the assistant's text, consecutive results as `tool_result`
    /// blocks of one user message, the next user message apart.
    #[test]
    fn tool_calls_and_results_as_dspy_sends_them() {
        use crate::types::MessageToolCall;
        let request = LmRequest::new(vec![
            Message::system("Be brief."),
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
            Message::tool("c3", "f", "ok"),
            Message::user("And now?"),
        ]);
        let sent = body(&request);
        let messages = sent["messages"].as_array().unwrap();
        assert_eq!(messages.len(), 6);
        let dspy: Value = serde_json::from_str(r#"[{"role": "assistant", "content": [{"type": "tool_use", "id": "c1", "name": "get_weather", "input": {"city": "Paris"}}, {"type": "tool_use", "id": "c2", "name": "get_time", "input": {}}]}, {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "c1", "content": "Sunny"}, {"type": "tool_result", "tool_use_id": "c2", "content": "{\"t\": 1}"}]}, {"role": "assistant", "content": [{"type": "text", "text": "Checking."}, {"type": "tool_use", "id": "c3", "name": "f", "input": {}}]}, {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "c3", "content": "ok"}]}]"#).unwrap();
        assert_eq!(Value::Array(messages[1..5].to_vec()), dspy);
        assert_eq!(messages[5], json!({"role": "user", "content": "And now?"}));
        let mut bad = request.clone();
        bad.messages[2].tool_calls[0].arguments = "[1]".into();
        let e = request_body(target("claude-sonnet-4-5"), &bad, false).unwrap_err();
        assert!(e.contains("message 2 (assistant), tool call 0"), "{e}");
        bad.messages[2] = Message::assistant("x");
        bad.messages[3].tool_call_id = None;
        let e = request_body(target("claude-sonnet-4-5"), &bad, false).unwrap_err();
        assert!(e.contains("message 3 (tool) has no tool_call_id"), "{e}");
    }

    #[test]
    fn system_messages_go_to_system_and_parameters_are_renamed() {
        let mut req = LmRequest::new(vec![
            Message::system("Be brief."),
            Message::user("hi"),
            Message::assistant("hello"),
            Message::system("Again."),
            Message::user("bye"),
        ]);
        req.temperature = Some(1.7);
        req.stop = vec!["END".into()];
        req.n = Some(3);
        req.seed = Some(4);
        req.extra.insert("top_k".into(), json!(5));
        req.extra.insert("presence_penalty".into(), json!(0.5));
        req.extra.insert("user".into(), json!("u-1"));
        assert_eq!(
            body(&req),
            json!({
                "model": "claude-sonnet-4-5",
                "system": "Be brief.\n\nAgain.",
                "messages": [
                    {"role": "user", "content": "hi"},
                    {"role": "assistant", "content": "hello"},
                    {"role": "user", "content": "bye"},
                ],
                "max_tokens": 16384,
                "temperature": 1.0,
                "stop_sequences": ["END"],
                "top_k": 5,
                "metadata": {"user_id": "u-1"},
            })
        );
        let streamed = request_body(target("m"), &req, true).unwrap();
        assert_eq!(streamed["stream"], true);
    }

    #[test]
    fn max_tokens_defaults_follow_dspy() {
        assert_eq!(default_max_tokens("claude-3-haiku-20240307"), 4096);
        assert_eq!(default_max_tokens("claude-3-5-sonnet-latest"), 8192);
        assert_eq!(default_max_tokens("claude-opus-4-1"), 16384);
        let mut req = LmRequest::prompt("x");
        req.extra.insert("max_completion_tokens".into(), json!(77));
        assert_eq!(body(&req)["max_tokens"], 77);
        req.max_tokens = Some(12);
        assert_eq!(body(&req)["max_tokens"], 12);
        req.max_tokens = None;
        req.extra
            .insert("max_completion_tokens".into(), json!("many"));
        let err = request_body(target("m"), &req, false).unwrap_err();
        assert!(err.contains("max_completion_tokens"), "{err}");
    }

    #[test]
    fn media_parts_become_blocks_and_audio_is_refused() {
        let req = LmRequest::new(vec![Message::user(vec![
            ContentPart::text("What is this?"),
            ContentPart::image_url("data:image/png;base64,iVBORw0KGgo="),
            ContentPart::image_url("https://example.com/cat.jpg"),
            ContentPart::File {
                file: FilePart {
                    file_data: Some("data:application/pdf;base64,JVBERi0=".into()),
                    file_id: None,
                    filename: Some("a.pdf".into()),
                },
            },
            ContentPart::File {
                file: FilePart {
                    file_data: None,
                    file_id: Some("file_1".into()),
                    filename: None,
                },
            },
        ])]);
        assert_eq!(
            body(&req)["messages"][0]["content"],
            json!([
                {"type": "text", "text": "What is this?"},
                {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}},
                {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}},
                {"type": "document", "title": "a.pdf", "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBERi0="}},
                {"type": "document", "source": {"type": "file", "file_id": "file_1"}},
            ])
        );
        let refused = |part: ContentPart| {
            request_body(
                target("m"),
                &LmRequest::new(vec![Message::user(vec![part])]),
                false,
            )
            .unwrap_err()
        };
        let err = refused(ContentPart::InputAudio {
            input_audio: InputAudio {
                data: "AAAA".into(),
                format: "wav".into(),
            },
        });
        assert!(err.contains("audio") && err.contains("part 0"), "{err}");
        let err = refused(ContentPart::ImageUrl {
            image_url: ImageUrl {
                url: "data:image/bmp;base64,Qk0=".into(),
                detail: None,
            },
        });
        assert!(err.contains("image/bmp"), "{err}");
        let err = refused(ContentPart::image_url("ftp://x/y.png"));
        assert!(err.contains("neither"), "{err}");
        let err = refused(ContentPart::File {
            file: FilePart {
                file_data: Some("data:text/csv;base64,YQ==".into()),
                ..FilePart::default()
            },
        });
        assert!(err.contains("text/csv"), "{err}");
        let err = request_body(
            target("m"),
            &LmRequest::new(vec![Message::system(vec![ContentPart::image_url(
                "https://x/y.png",
            )])]),
            false,
        )
        .unwrap_err();
        assert!(err.contains("system"), "{err}");
        let err = request_body(
            target("m"),
            &LmRequest::new(vec![Message::system("only")]),
            false,
        )
        .unwrap_err();
        assert!(err.contains("no user or assistant message"), "{err}");
        let text_model = Target {
            model_type: ModelType::Text,
            ..target("m")
        };
        assert!(
            request_body(text_model, &LmRequest::prompt("x"), false)
                .unwrap_err()
                .contains("text completions")
        );
    }

    #[test]
    fn openai_tools_and_choices_are_translated() {
        let mut req = LmRequest::prompt("weather?");
        req.extra.insert(
            "tools".into(),
            json!([
                {"type": "function", "function": {"name": "get_weather", "description": "Weather.",
                 "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}},
                {"type": "function", "function": {"name": "now"}},
                {"type": "web_search_20250305", "name": "web_search"},
            ]),
        );
        req.extra.insert("tool_choice".into(), json!("auto"));
        req.extra.insert("parallel_tool_calls".into(), json!(false));
        let b = body(&req);
        assert_eq!(
            b["tools"],
            json!([
                {"name": "get_weather", "description": "Weather.",
                 "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}},
                {"name": "now", "input_schema": {"type": "object", "properties": {}}},
                {"type": "web_search_20250305", "name": "web_search"},
            ])
        );
        assert_eq!(
            b["tool_choice"],
            json!({"type": "auto", "disable_parallel_tool_use": true})
        );
        assert!(b.get("parallel_tool_calls").is_none());
        for (openai, anthropic) in [
            (json!("required"), json!({"type": "any"})),
            (json!("none"), json!({"type": "none"})),
            (
                json!({"type": "function", "function": {"name": "now"}}),
                json!({"type": "tool", "name": "now"}),
            ),
            (json!({"type": "any"}), json!({"type": "any"})),
        ] {
            assert_eq!(tool_choice(&openai).unwrap(), anthropic);
        }
        assert!(
            tool_choice(&json!("sometimes"))
                .unwrap_err()
                .contains("sometimes")
        );
        req.extra.insert(
            "tools".into(),
            json!([{"type": "function", "function": {}}]),
        );
        let err = request_body(target("m"), &req, false).unwrap_err();
        assert!(
            err.contains("tool 0") && err.contains("function.name"),
            "{err}"
        );
        // No tools: no tool_choice either (the API refuses one without tools).
        let mut req = LmRequest::prompt("x");
        req.extra.insert("tool_choice".into(), json!("auto"));
        assert!(body(&req).get("tool_choice").is_none());
    }

    #[test]
    fn json_modes_and_thinking() {
        let mut req = LmRequest::prompt("x");
        req.response_format = Some(ResponseFormat::JsonSchema {
            json_schema: json!({"name": "out", "strict": true,
                                "schema": {"type": "object", "properties": {"a": {"type": "integer"}}}}),
        });
        assert_eq!(
            body(&req)["output_config"],
            json!({"format": {"type": "json_schema",
                              "schema": {"type": "object", "properties": {"a": {"type": "integer"}}}}})
        );
        req.response_format = Some(ResponseFormat::JsonObject);
        assert!(body(&req).get("output_config").is_none());
        req.response_format = Some(ResponseFormat::JsonSchema {
            json_schema: json!({"name": "out"}),
        });
        assert!(
            request_body(target("m"), &req, false)
                .unwrap_err()
                .contains("schema")
        );

        let mut req = LmRequest::prompt("think");
        req.max_tokens = Some(1000);
        req.extra.insert("reasoning_effort".into(), json!("low"));
        let b = body(&req);
        assert_eq!(
            b["thinking"],
            json!({"type": "enabled", "budget_tokens": 2048})
        );
        assert_eq!(b["max_tokens"], 3048);
        assert!(b.get("reasoning_effort").is_none());
        let adaptive = request_body(target("claude-opus-4-6"), &req, false).unwrap();
        assert_eq!(adaptive["thinking"], json!({"type": "adaptive"}));
        assert_eq!(adaptive["output_config"], json!({"effort": "low"}));
        assert_eq!(adaptive["max_tokens"], 1000);
        req.extra.insert("reasoning_effort".into(), json!("none"));
        assert!(body(&req).get("thinking").is_none());
        req.extra
            .insert("reasoning_effort".into(), json!("extreme"));
        assert!(
            request_body(target("m"), &req, false)
                .unwrap_err()
                .contains("extreme")
        );
        req.extra.insert(
            "thinking".into(),
            json!({"type": "enabled", "budget_tokens": 5000}),
        );
        assert_eq!(body(&req)["thinking"]["budget_tokens"], 5000);
    }

    #[test]
    fn responses_give_text_reasoning_tool_calls_and_usage() {
        let decoded = parse_response(
            json!({
                "id": "msg_1", "type": "message", "role": "assistant", "model": "claude-x",
                "content": [
                    {"type": "thinking", "thinking": "Let me see.", "signature": "sig"},
                    {"type": "redacted_thinking", "data": "xyz"},
                    {"type": "text", "text": "It is "},
                    {"type": "text", "text": "sunny."},
                    {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}},
                ],
                "stop_reason": "tool_use", "stop_sequence": null,
                "usage": {"input_tokens": 10, "output_tokens": 5, "cache_read_input_tokens": 3}
            })
            .to_string()
            .as_bytes(),
        )
        .unwrap();
        let choice = &decoded.choices[0];
        assert_eq!(choice.text, "It is sunny.");
        assert_eq!(choice.reasoning_content.as_deref(), Some("Let me see."));
        assert_eq!(choice.finish_reason, Some(FinishReason::ToolCalls));
        assert_eq!(
            choice.tool_calls,
            [ToolCall {
                id: Some("toolu_1".into()),
                name: "get_weather".into(),
                arguments: "{\"city\":\"Paris\"}".into(),
            }]
        );
        assert_eq!(
            decoded.usage,
            Usage {
                prompt_tokens: 13,
                completion_tokens: 5,
                total_tokens: 18
            }
        );
        assert_eq!(decoded.model.as_deref(), Some("claude-x"));
        for (reason, finish) in [
            ("end_turn", FinishReason::Stop),
            ("stop_sequence", FinishReason::Stop),
            ("max_tokens", FinishReason::Length),
            ("refusal", FinishReason::ContentFilter),
            ("pause_turn", FinishReason::Other("pause_turn".into())),
        ] {
            assert_eq!(finish_reason(reason), finish);
        }
        let err = |body: &str| parse_response(body.as_bytes()).unwrap_err();
        assert!(err("{}").contains("no `content`"));
        assert!(err("not json").contains("invalid JSON"));
        assert!(err(r#"{"content": [{"text": "a"}]}"#).contains("block 0 has no `type`"));
        assert!(err(r#"{"content": [{"type": "tool_use", "input": {}}]}"#).contains("no `name`"));
        assert!(
            err(r#"{"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}"#)
                .contains("overloaded_error: Overloaded")
        );
        let huge = parse_response(
            br#"{"content": [], "usage": {"input_tokens": 18446744073709551615, "cache_read_input_tokens": 5, "output_tokens": 1}}"#,
        )
        .unwrap();
        assert_eq!(huge.usage.total_tokens, u64::MAX);
        assert_eq!(huge.choices[0].text, "");
    }

    #[test]
    fn error_bodies_give_type_and_message() {
        assert_eq!(
            anthropic_failure(
                r#"{"type": "error", "error": {"type": "not_found_error", "message": "model: nope"}, "request_id": "r"}"#
            ),
            Failure {
                code: Some("not_found_error".into()),
                message: "model: nope".into()
            }
        );
        assert_eq!(
            anthropic_failure(r#"{"error": {"message": "bad", "code": "400"}}"#)
                .code
                .as_deref(),
            Some("400")
        );
        assert_eq!(anthropic_failure(" oops ").message, "oops");
        assert_eq!(status_of("overloaded_error"), 529);
        assert_eq!(status_of("rate_limit_error"), 429);
        assert_eq!(status_of("something_new"), 500);
    }

    #[test]
    fn streams_read_anthropics_events() {
        let mut reader = AnthropicStream::default();
        let mut read = |data: Value| reader.read(&data.to_string()).unwrap();
        assert!(matches!(
            read(json!({"type": "message_start", "message": {"id": "m", "content": [],
                         "usage": {"input_tokens": 25, "output_tokens": 1}}})),
            Chunk::Events(e) if e.is_empty()
        ));
        assert!(matches!(read(json!({"type": "ping"})), Chunk::Events(e) if e.is_empty()));
        read(json!({"type": "content_block_start", "index": 0,
                    "content_block": {"type": "thinking", "thinking": ""}}));
        assert!(matches!(
            read(json!({"type": "content_block_delta", "index": 0,
                        "delta": {"type": "thinking_delta", "thinking": "hmm"}})),
            Chunk::Events(e) if e == [StreamEvent::Reasoning { index: 0, text: "hmm".into() }]
        ));
        read(json!({"type": "content_block_stop", "index": 0}));
        read(json!({"type": "content_block_start", "index": 1,
                    "content_block": {"type": "text", "text": ""}}));
        match read(json!({"type": "content_block_delta", "index": 1,
                          "delta": {"type": "text_delta", "text": "Hello"}}))
        {
            Chunk::Events(e) => assert_eq!(
                e,
                [StreamEvent::Delta {
                    index: 0,
                    text: "Hello".into()
                }]
            ),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            read(json!({"type": "content_block_start", "index": 2,
                        "content_block": {"type": "tool_use", "id": "t", "name": "f", "input": {}}})),
            Chunk::Events(e) if e == [StreamEvent::ToolCall { index: 0, call: 0, id: Some("t".into()), name: Some("f".into()), arguments: String::new() }]
        ));
        assert!(matches!(
            read(json!({"type": "content_block_delta", "index": 2,
                        "delta": {"type": "input_json_delta", "partial_json": "{\"a\":"}})),
            Chunk::Events(e) if e == [StreamEvent::ToolCall { index: 0, call: 0, id: None, name: None, arguments: "{\"a\":".into() }]
        ));
        // A second call without input: `{}` when its block stops.
        read(json!({"type": "content_block_start", "index": 3,
                    "content_block": {"type": "tool_use", "id": "u", "name": "g", "input": {}}}));
        assert!(matches!(
            read(json!({"type": "content_block_stop", "index": 3})),
            Chunk::Events(e) if e == [StreamEvent::ToolCall { index: 0, call: 1, id: None, name: None, arguments: "{}".into() }]
        ));
        match read(json!({"type": "message_delta",
                          "delta": {"stop_reason": "end_turn", "stop_sequence": null},
                          "usage": {"output_tokens": 15}}))
        {
            Chunk::Events(e) => assert_eq!(
                e,
                [
                    StreamEvent::Finish {
                        index: 0,
                        reason: FinishReason::Stop
                    },
                    StreamEvent::Usage(Usage {
                        prompt_tokens: 25,
                        completion_tokens: 15,
                        total_tokens: 40
                    })
                ]
            ),
            other => panic!("{other:?}"),
        }
        assert!(matches!(read(json!({"type": "future_event"})), Chunk::Events(e) if e.is_empty()));
        assert!(matches!(read(json!({"type": "message_stop"})), Chunk::End(e) if e.is_empty()));

        let mut reader = AnthropicStream::default();
        assert!(matches!(
            reader.read(r#"{"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}"#),
            Ok(Chunk::Failed { status: 529, failure })
                if failure.code.as_deref() == Some("overloaded_error") && failure.message == "Overloaded"
        ));
        assert!(matches!(
            reader.read(r#"{"type": "error"}"#),
            Ok(Chunk::Failed { status: 500, failure }) if failure.message.contains("without a message")
        ));
        assert!(reader.read("{").is_err());
        assert!(reader.read(r#"{"no": "type"}"#).is_err());
        assert!(
            reader
                .read(r#"{"type": "message_start"}"#)
                .unwrap_err()
                .contains("message")
        );
        assert!(
            reader
                .read(r#"{"type": "content_block_delta", "delta": {"type": "text_delta"}}"#)
                .is_err()
        );
    }
}
