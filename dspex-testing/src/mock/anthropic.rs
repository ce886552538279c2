//! Anthropic's Messages API on the mock server: `POST /v1/messages` (and `/messages`), written
//! from Anthropic's published API reference.
//!
//! - **Headers.** `x-api-key` (any non-empty value) and `anthropic-version` must be present:
//!   401 `authentication_error` / 400 `invalid_request_error` otherwise, as Anthropic answers.
//! - **Body.** Checked as the API checks it: `model`, `max_tokens` (≥ 1) and a non-empty
//!   `messages` list are required; roles are `user` and `assistant` (a `system` role is the
//!   API's 400: the system prompt is the top-level `system`); content is a string or a list of
//!   known blocks (`text`, `image` with a `base64` source of a JPEG/PNG/GIF/WebP or a `url`
//!   source, `document`, `tool_use`, `tool_result`, `thinking`, …); `temperature` is within
//!   0–1; `tool_choice` needs `tools`; `thinking.budget_tokens` is at least 1024 and below
//!   `max_tokens`; unknown top-level fields are refused (`n: Extra inputs are not permitted`).
//!   A prompt of more than 200 000 words (the mock's tokens) is `prompt is too long`.
//! - **Answers.** The same DSPy-aware answers, rules and tool calls as the OpenAI routes: the
//!   `system` prompt and the last user message make the completion, a JSON answer when
//!   `output_config.format` asks for a schema; a rule's tool calls
//!   ([`Rule::with_tool_call`](super::Rule::with_tool_call)) come back as `tool_use` blocks
//!   (ids `toolu_<i>`) when the request offers tools, with `stop_reason: "tool_use"`;
//!   `thinking` (enabled or adaptive) adds a `thinking` block first; `max_tokens` cuts the text
//!   (`stop_reason: "max_tokens"`); a stop sequence found in the text ends it there
//!   (`stop_sequence`). Usage counts words.
//! - **Streams.** `message_start`, per block `content_block_start` / `_delta` (`text_delta`,
//!   `thinking_delta` and `signature_delta`, `input_json_delta`) / `_stop`, a `ping`,
//!   `message_delta` (stop reason, output tokens), `message_stop`; each as `event:` and
//!   `data:` lines.
//! - **Faults.** The same latency and faults as the other routes, in Anthropic's shapes: a
//!   status fault answers `{"type": "error", "error": {"type", "message"}}` with the type of
//!   the status (`overloaded_error` for 529, `billing_error` for 402, `not_found_error` with
//!   Anthropic's `model: <id>` for 404, …); 429 is `rate_limit_error` with `retry-after`;
//!   [`Fault::StreamError`] sends an `error` event mid-stream; an empty-choices fault answers a
//!   message with no content blocks.

use super::Shared;
use super::answer::{self, Format, Prompt};
use super::fault::{Api, Fault, effective_status};
use super::server::{
    STREAM_PIECES, ShuttingDown, event_stream, json_with_fault, pick_fault, reset,
};
use super::stats::Route;
use super::util::{seconds_text, split_deltas, truncate_words, words};
use crate::wire::{Request, Response, full_response};
use bytes::Bytes;
use http::{HeaderValue, StatusCode, header};
use serde_json::{Value, json};
use std::sync::atomic::Ordering;
use std::time::Instant;

/// The mock's context window, in words.
pub(crate) const CONTEXT_WINDOW: u64 = 200_000;

/// The top-level fields of a Messages request.
const FIELDS: [&str; 19] = [
    "model",
    "messages",
    "max_tokens",
    "system",
    "temperature",
    "top_p",
    "top_k",
    "stop_sequences",
    "stream",
    "tools",
    "tool_choice",
    "thinking",
    "metadata",
    "output_config",
    "service_tier",
    "container",
    "mcp_servers",
    "context_management",
    "inference_geo",
];

/// The content block types a request may hold.
const BLOCKS: [&str; 10] = [
    "text",
    "image",
    "document",
    "tool_use",
    "tool_result",
    "thinking",
    "redacted_thinking",
    "search_result",
    "server_tool_use",
    "web_search_tool_result",
];

/// A request that passed the checks: what the answer depends on.
struct Parsed {
    model: String,
    max_tokens: u64,
    system: Option<String>,
    /// The last user message's text.
    user: String,
    /// Every message as `role:` and text lines (for conversation rules).
    conversation: String,
    prompt_tokens: u64,
    stream: bool,
    temperature: Option<f64>,
    schema: Option<Value>,
    has_tools: bool,
    thinking: bool,
    stop_sequences: Vec<String>,
}

/// `POST /v1/messages`.
pub(super) async fn messages(
    shared: &Shared,
    route: Route,
    req: Request,
    arrived: Instant,
) -> Response {
    shared.stats.count_request(route);
    let key = req
        .headers()
        .get("x-api-key")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| !v.trim().is_empty());
    if !key {
        return error(
            StatusCode::UNAUTHORIZED,
            "authentication_error",
            "x-api-key header is required",
        );
    }
    if !req.headers().contains_key("anthropic-version") {
        return invalid("anthropic-version: header is required");
    }
    let body = req.into_body();
    let value: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => return invalid(&format!("There was an issue with your request body: {e}")),
    };
    let parsed = match parse(&value) {
        Ok(p) => p,
        Err(message) => return invalid(&message),
    };
    if parsed.prompt_tokens > CONTEXT_WINDOW {
        return invalid(&format!(
            "prompt is too long: {} tokens > {CONTEXT_WINDOW} maximum",
            parsed.prompt_tokens
        ));
    }
    let fault = match prelude(shared, arrived, parsed.stream, &parsed.user, &parsed.model).await {
        Ok(fault) => fault,
        Err(resp) => return resp,
    };
    let message = compose(shared, &parsed, fault.as_ref());
    if parsed.stream {
        return sse(events(&message), fault.as_ref());
    }
    json_with_fault(&message.to_json(), fault.as_ref())
}

/// The checks of the request body, as the API makes them.
fn parse(value: &Value) -> Result<Parsed, String> {
    let Some(body) = value.as_object() else {
        return Err("The request body must be a JSON object.".to_owned());
    };
    if let Some(key) = body.keys().find(|k| !FIELDS.contains(&k.as_str())) {
        return Err(format!("{key}: Extra inputs are not permitted"));
    }
    let model = match body.get("model") {
        Some(Value::String(m)) if !m.is_empty() => m.clone(),
        Some(_) => return Err("model: Input should be a valid string".to_owned()),
        None => return Err("model: Field required".to_owned()),
    };
    let max_tokens = match body.get("max_tokens") {
        None => return Err("max_tokens: Field required".to_owned()),
        Some(v) => match v.as_u64() {
            Some(n) if n >= 1 => n,
            _ => {
                return Err(format!(
                    "max_tokens: Input should be an integer greater than or equal to 1, got {v}"
                ));
            }
        },
    };
    let system = match body.get("system") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(Value::Array(blocks)) => {
            let mut text = String::new();
            for (i, b) in blocks.iter().enumerate() {
                match (b.get("type").and_then(Value::as_str), b.get("text")) {
                    (Some("text"), Some(Value::String(t))) => text.push_str(t),
                    _ => {
                        return Err(format!(
                            "system.{i}: system content blocks must be text blocks"
                        ));
                    }
                }
            }
            Some(text)
        }
        Some(_) => return Err("system: Input should be a valid string or list".to_owned()),
    };
    let Some(messages) = body.get("messages").and_then(Value::as_array) else {
        return Err("messages: Field required (a list of messages)".to_owned());
    };
    if messages.is_empty() {
        return Err("messages: at least one message is required".to_owned());
    }
    let mut user = String::new();
    let mut conversation = String::new();
    let mut prompt_tokens = system.as_deref().map_or(0, words);
    if let Some(s) = &system {
        conversation.push_str("system:\n");
        conversation.push_str(s);
        conversation.push('\n');
    }
    for (i, m) in messages.iter().enumerate() {
        let role = m.get("role").and_then(Value::as_str);
        let role = match role {
            Some(r @ ("user" | "assistant")) => r,
            Some("system") => {
                return Err(format!(
                    "messages.{i}.role: Unexpected role \"system\". The Messages API accepts a top-level `system` parameter, not \"system\" as an input message role."
                ));
            }
            Some(other) => {
                return Err(format!(
                    "messages.{i}.role: Input should be 'user' or 'assistant', got '{other}'"
                ));
            }
            None => return Err(format!("messages.{i}.role: Field required")),
        };
        let text = content_text(i, m.get("content"))?;
        prompt_tokens += words(&text);
        conversation.push_str(role);
        conversation.push_str(":\n");
        conversation.push_str(&text);
        conversation.push('\n');
        if role == "user" {
            user = text;
        }
    }
    let temperature = match body.get("temperature") {
        None | Some(Value::Null) => None,
        Some(v) => match v.as_f64() {
            Some(t) if (0.0..=1.0).contains(&t) => Some(t),
            _ => {
                return Err(format!(
                    "temperature: Input should be a number between 0 and 1, got {v}"
                ));
            }
        },
    };
    let stop_sequences = match body.get("stop_sequences") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => items
            .iter()
            .map(|s| s.as_str().map(str::to_owned))
            .collect::<Option<Vec<_>>>()
            .ok_or("stop_sequences: Input should be a list of strings")?,
        Some(_) => return Err("stop_sequences: Input should be a valid list".to_owned()),
    };
    let stream = match body.get("stream") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err("stream: Input should be a valid boolean".to_owned()),
    };
    let has_tools = match body.get("tools") {
        None | Some(Value::Null) => false,
        Some(Value::Array(tools)) => {
            for (i, t) in tools.iter().enumerate() {
                check_tool(i, t)?;
            }
            !tools.is_empty()
        }
        Some(_) => return Err("tools: Input should be a valid list".to_owned()),
    };
    if let Some(choice) = body.get("tool_choice").filter(|c| !c.is_null()) {
        match choice.get("type").and_then(Value::as_str) {
            Some("auto" | "any" | "none") => {}
            Some("tool") if choice.get("name").is_some_and(Value::is_string) => {}
            _ => {
                return Err(format!(
                    "tool_choice: Input tag does not match any of the expected tags: 'auto', 'any', 'tool', 'none' (got {choice})"
                ));
            }
        }
        if !has_tools {
            return Err("tool_choice may only be specified while providing tools.".to_owned());
        }
    }
    let thinking = match body.get("thinking") {
        None | Some(Value::Null) => false,
        Some(t) => match t.get("type").and_then(Value::as_str) {
            Some("disabled") => false,
            Some("adaptive") => true,
            Some("enabled") => {
                let budget = t.get("budget_tokens").and_then(Value::as_u64);
                match budget {
                    Some(b) if b < 1024 => {
                        return Err(
                            "thinking.enabled.budget_tokens: Input should be greater than or equal to 1024"
                                .to_owned(),
                        );
                    }
                    Some(b) if b >= max_tokens => {
                        return Err(format!(
                            "`max_tokens` must be greater than `thinking.budget_tokens` ({b} >= {max_tokens})"
                        ));
                    }
                    Some(_) => true,
                    None => {
                        return Err("thinking.enabled.budget_tokens: Field required".to_owned());
                    }
                }
            }
            _ => {
                return Err(
                    "thinking: Input tag does not match any of the expected tags: 'enabled', 'disabled', 'adaptive'"
                        .to_owned(),
                );
            }
        },
    };
    let schema = match body.get("output_config").and_then(|c| c.get("format")) {
        None | Some(Value::Null) => None,
        Some(f) => match (f.get("type").and_then(Value::as_str), f.get("schema")) {
            (Some("json_schema"), Some(s)) if s.is_object() => Some(s.clone()),
            _ => {
                return Err(
                    "output_config.format: expected {\"type\": \"json_schema\", \"schema\": {…}}"
                        .to_owned(),
                );
            }
        },
    };
    Ok(Parsed {
        model,
        max_tokens,
        system,
        user,
        conversation,
        prompt_tokens,
        stream,
        temperature,
        schema,
        has_tools,
        thinking,
        stop_sequences,
    })
}

/// A message's text (its text blocks concatenated), checking its blocks.
fn content_text(i: usize, content: Option<&Value>) -> Result<String, String> {
    match content {
        Some(Value::String(s)) => Ok(s.clone()),
        Some(Value::Array(blocks)) => {
            let mut text = String::new();
            for (j, b) in blocks.iter().enumerate() {
                let at = format!("messages.{i}.content.{j}");
                let kind = b
                    .get("type")
                    .and_then(Value::as_str)
                    .ok_or_else(|| format!("{at}.type: Field required"))?;
                if !BLOCKS.contains(&kind) {
                    return Err(format!(
                        "{at}: Input tag '{kind}' found using 'type' does not match any of the expected tags"
                    ));
                }
                match kind {
                    "text" => match b.get("text") {
                        Some(Value::String(t)) => text.push_str(t),
                        _ => return Err(format!("{at}.text: Field required")),
                    },
                    "image" => check_image(&at, b)?,
                    "document" if !b.get("source").is_some_and(Value::is_object) => {
                        return Err(format!("{at}.source: Field required"));
                    }
                    "tool_result" if !b.get("tool_use_id").is_some_and(Value::is_string) => {
                        return Err(format!("{at}.tool_use_id: Field required"));
                    }
                    _ => {}
                }
            }
            Ok(text)
        }
        _ => Err(format!(
            "messages.{i}.content: Input should be a valid string or list"
        )),
    }
}

/// An `image` block's source.
fn check_image(at: &str, block: &Value) -> Result<(), String> {
    let source = block
        .get("source")
        .ok_or_else(|| format!("{at}.source: Field required"))?;
    match source.get("type").and_then(Value::as_str) {
        Some("base64") => {
            let media = source.get("media_type").and_then(Value::as_str);
            if !matches!(
                media,
                Some("image/jpeg" | "image/png" | "image/gif" | "image/webp")
            ) {
                return Err(format!(
                    "{at}.source.base64.media_type: Input should be 'image/jpeg', 'image/png', 'image/gif' or 'image/webp'"
                ));
            }
            match source.get("data").and_then(Value::as_str) {
                Some(d) if !d.is_empty() => Ok(()),
                _ => Err(format!("{at}.source.base64.data: Field required")),
            }
        }
        Some("url") if source.get("url").is_some_and(Value::is_string) => Ok(()),
        Some("file") if source.get("file_id").is_some_and(Value::is_string) => Ok(()),
        _ => Err(format!(
            "{at}.source: Input tag does not match any of the expected tags: 'base64', 'url', 'file'"
        )),
    }
}

/// One tool definition: a client tool has a `name` and an `input_schema` object; a server tool
/// a versioned `type`.
fn check_tool(i: usize, tool: &Value) -> Result<(), String> {
    if !tool.get("name").is_some_and(Value::is_string) {
        return Err(format!("tools.{i}.name: Field required"));
    }
    let custom = tool
        .get("type")
        .and_then(Value::as_str)
        .is_none_or(|t| t == "custom");
    if custom && !tool.get("input_schema").is_some_and(Value::is_object) {
        return Err(format!("tools.{i}.custom.input_schema: Field required"));
    }
    Ok(())
}

/// The answer, block by block.
struct Message {
    id: String,
    model: String,
    thinking: Option<String>,
    text: String,
    tool_uses: Vec<(String, String, Value)>,
    stop_reason: &'static str,
    stop_sequence: Option<String>,
    input_tokens: u64,
    output_tokens: u64,
}

impl Message {
    fn blocks(&self) -> Vec<Value> {
        let mut blocks = Vec::new();
        if let Some(thinking) = &self.thinking {
            blocks.push(
                json!({"type": "thinking", "thinking": thinking, "signature": "mock-signature"}),
            );
        }
        if !self.text.is_empty() {
            blocks.push(json!({"type": "text", "text": self.text}));
        }
        for (id, name, input) in &self.tool_uses {
            blocks.push(json!({"type": "tool_use", "id": id, "name": name, "input": input}));
        }
        blocks
    }

    fn to_json(&self) -> Value {
        json!({
            "id": self.id,
            "type": "message",
            "role": "assistant",
            "model": self.model,
            "content": self.blocks(),
            "stop_reason": self.stop_reason,
            "stop_sequence": self.stop_sequence,
            "usage": {"input_tokens": self.input_tokens, "output_tokens": self.output_tokens},
        })
    }
}

/// The completion for a parsed request: rules first, then the DSPy-aware answer.
fn compose(shared: &Shared, p: &Parsed, fault: Option<&Fault>) -> Message {
    let id = format!("msg_mock{:016}", shared.seq.fetch_add(1, Ordering::Relaxed));
    let conversation = shared
        .wants_conversation()
        .then_some(p.conversation.as_str());
    let mut message = Message {
        id,
        model: p.model.clone(),
        thinking: None,
        text: String::new(),
        tool_uses: Vec::new(),
        stop_reason: "end_turn",
        stop_sequence: None,
        input_tokens: p.prompt_tokens,
        output_tokens: 0,
    };
    if fault == Some(&Fault::EmptyChoices) {
        return message;
    }
    let format = match &p.schema {
        Some(schema) => Format::JsonSchema(Some(schema)),
        None => Format::Text,
    };
    let prompt = Prompt {
        system: p.system.as_deref(),
        user: &p.user,
        conversation,
    };
    // Temperature above zero: a different answer per request, as distinct choices get.
    let salt = if p.temperature.is_some_and(|t| t > 0.0) {
        shared.seq.load(Ordering::Relaxed)
    } else {
        0
    };
    let mut text = shared
        .rule_for(&p.user, conversation)
        .unwrap_or_else(|| answer::answer(prompt, format, shared.dspy_aware, salt));
    if p.thinking {
        message.thinking = Some(format!(
            "Mock reasoning about: {}",
            p.user
                .split_whitespace()
                .take(12)
                .collect::<Vec<_>>()
                .join(" ")
        ));
    }
    if let Some((at, stop)) = p
        .stop_sequences
        .iter()
        .filter_map(|s| text.find(s.as_str()).map(|at| (at, s)))
        .min_by_key(|(at, _)| *at)
    {
        text.truncate(at);
        message.stop_reason = "stop_sequence";
        message.stop_sequence = Some(stop.clone());
    }
    if let Some(cut) = truncate_words(&text, p.max_tokens) {
        text = cut.to_owned();
        message.stop_reason = "max_tokens";
        message.stop_sequence = None;
    }
    if p.has_tools
        && message.stop_reason != "max_tokens"
        && let Some(calls) = shared
            .tool_calls_for(&p.user, conversation)
            .filter(|c| !c.is_empty())
    {
        for (i, call) in calls.iter().enumerate() {
            let function = call.get("function");
            let name = function
                .and_then(|f| f.get("name"))
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned();
            let input = function
                .and_then(|f| f.get("arguments"))
                .and_then(Value::as_str)
                .and_then(|a| serde_json::from_str::<Value>(a).ok())
                .filter(Value::is_object)
                .unwrap_or_else(|| json!({}));
            message
                .tool_uses
                .push((format!("toolu_{}", i + 1), name, input));
        }
        message.stop_reason = "tool_use";
    }
    message.output_tokens = words(&text)
        + message.thinking.as_deref().map_or(0, words)
        + message.tool_uses.len() as u64;
    message.text = text;
    message
}

/// One SSE event: its `event:` line and its `data:` line.
fn event(kind: &str, data: &Value) -> Bytes {
    Bytes::from(format!("event: {kind}\ndata: {data}\n\n"))
}

/// The events of a streamed message, `message_stop` last.
fn events(m: &Message) -> Vec<Bytes> {
    let mut out = vec![event(
        "message_start",
        &json!({"type": "message_start", "message": {
            "id": m.id, "type": "message", "role": "assistant", "model": m.model,
            "content": [], "stop_reason": null, "stop_sequence": null,
            "usage": {"input_tokens": m.input_tokens, "output_tokens": 1},
        }}),
    )];
    let mut index = 0;
    let mut block = |out: &mut Vec<Bytes>, start: Value, deltas: Vec<Value>| {
        out.push(event(
            "content_block_start",
            &json!({"type": "content_block_start", "index": index, "content_block": start}),
        ));
        if index == 0 {
            out.push(event("ping", &json!({"type": "ping"})));
        }
        for delta in deltas {
            out.push(event(
                "content_block_delta",
                &json!({"type": "content_block_delta", "index": index, "delta": delta}),
            ));
        }
        out.push(event(
            "content_block_stop",
            &json!({"type": "content_block_stop", "index": index}),
        ));
        index += 1;
    };
    if let Some(thinking) = &m.thinking {
        let mut deltas: Vec<Value> = split_deltas(thinking, STREAM_PIECES)
            .into_iter()
            .map(|p| json!({"type": "thinking_delta", "thinking": p}))
            .collect();
        deltas.push(json!({"type": "signature_delta", "signature": "mock-signature"}));
        block(
            &mut out,
            json!({"type": "thinking", "thinking": "", "signature": ""}),
            deltas,
        );
    }
    if !m.text.is_empty() {
        let deltas = split_deltas(&m.text, STREAM_PIECES)
            .into_iter()
            .map(|p| json!({"type": "text_delta", "text": p}))
            .collect();
        block(&mut out, json!({"type": "text", "text": ""}), deltas);
    }
    for (id, name, input) in &m.tool_uses {
        let json = input.to_string();
        let (a, b) = json.split_at(json.len() / 2);
        let deltas = [a, b]
            .into_iter()
            .filter(|p| !p.is_empty())
            .map(|p| json!({"type": "input_json_delta", "partial_json": p}))
            .collect();
        block(
            &mut out,
            json!({"type": "tool_use", "id": id, "name": name, "input": {}}),
            deltas,
        );
    }
    out.push(event(
        "message_delta",
        &json!({"type": "message_delta",
                "delta": {"stop_reason": m.stop_reason, "stop_sequence": m.stop_sequence},
                "usage": {"output_tokens": m.output_tokens}}),
    ));
    out.push(event("message_stop", &json!({"type": "message_stop"})));
    out
}

/// Anthropic's error type for an HTTP status.
fn error_type(status: u16) -> &'static str {
    match status {
        400 => "invalid_request_error",
        401 => "authentication_error",
        402 => "billing_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        504 => "timeout_error",
        529 => "overloaded_error",
        500..=599 => "api_error",
        _ => "invalid_request_error",
    }
}

/// The message Anthropic gives with an error type (the mock's wording where Anthropic's varies).
fn error_message(status: u16, model: &str) -> String {
    match error_type(status) {
        "authentication_error" => "invalid x-api-key".to_owned(),
        "billing_error" => {
            "Your credit balance is too low to access the Anthropic API. Please go to Plans & Billing to upgrade or purchase credits.".to_owned()
        }
        "permission_error" => {
            "Your API key does not have permission to use the specified resource.".to_owned()
        }
        "not_found_error" => format!("model: {model}"),
        "request_too_large" => "Request exceeds the maximum allowed number of bytes.".to_owned(),
        "overloaded_error" => "Overloaded".to_owned(),
        "timeout_error" => "Request timed out (mock fault).".to_owned(),
        "api_error" => format!("Internal server error (mock fault: HTTP {status})."),
        _ => format!("Invalid request (mock fault: HTTP {status})."),
    }
}

/// `{"type": "error", "error": {"type", "message"}, "request_id"}`.
fn error_body(kind: &str, message: &str) -> Value {
    json!({"type": "error", "error": {"type": kind, "message": message}, "request_id": "req_mock"})
}

fn error(status: StatusCode, kind: &str, message: &str) -> Response {
    full_response(
        status,
        "application/json",
        error_body(kind, message).to_string().into_bytes(),
    )
}

fn invalid(message: &str) -> Response {
    error(StatusCode::BAD_REQUEST, "invalid_request_error", message)
}

/// [`pick_fault`](super::server), with the faults that replace the response answered in
/// Anthropic's shapes. `Ok` carries a fault that
/// alters the response.
async fn prelude(
    shared: &Shared,
    arrived: Instant,
    streaming: bool,
    user: &str,
    model: &str,
) -> Result<Option<Fault>, Response> {
    let stopping = || {
        error(
            StatusCode::SERVICE_UNAVAILABLE,
            "api_error",
            "The mock server is shutting down.",
        )
    };
    let fault = pick_fault(shared, arrived, Api::Chat, streaming, user)
        .await
        .map_err(|ShuttingDown| stopping())?;
    match fault {
        Some(Fault::Status(code)) => {
            let code = effective_status(code);
            let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            Err(error(status, error_type(code), &error_message(code, model)))
        }
        Some(Fault::RateLimited { retry_after }) => {
            let secs = seconds_text(retry_after);
            let mut resp = error(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limit_error",
                &format!(
                    "This request would exceed your organization's rate limit (mock fault). Please try again in {secs}s."
                ),
            );
            if let Ok(v) = HeaderValue::from_str(&secs) {
                resp.headers_mut().insert(header::RETRY_AFTER, v);
            }
            Err(resp)
        }
        other => Ok(other),
    }
}

/// A server-sent-events response, altered by a body fault.
fn sse(mut events: Vec<Bytes>, fault: Option<&Fault>) -> Response {
    let stop = || event("message_stop", &json!({"type": "message_stop"}));
    match fault {
        Some(Fault::ResetMidBody) => {
            return reset(events.concat().into(), "text/event-stream", false);
        }
        Some(Fault::MalformedJson) => {
            // The first event's JSON is cut off; the stream still ends properly.
            if let Some(first) = events.first() {
                let cut = first.len() / 2;
                let mut broken = first[..cut].to_vec();
                broken.extend_from_slice(b"\n\n");
                events = vec![Bytes::from(broken), stop()];
            }
        }
        Some(Fault::TruncatedStream) => {
            // The first half of the events: no message_delta, no message_stop.
            let keep = (events.len().saturating_sub(2) / 2).max(1);
            events.truncate(keep);
        }
        Some(Fault::StreamError(code)) => {
            let keep = (events.len().saturating_sub(2) / 2).max(1);
            events.truncate(keep);
            let code = effective_status(*code);
            let kind = error_type(code);
            let message = match kind {
                "overloaded_error" => "Overloaded".to_owned(),
                _ => format!("Stream interrupted (mock fault: {kind})."),
            };
            events.push(event("error", &error_body(kind, &message)));
        }
        _ => {}
    }
    event_stream(events)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `value` with `key` set.
    fn with(mut value: Value, key: &str, v: Value) -> Value {
        if let Some(o) = value.as_object_mut() {
            o.insert(key.to_owned(), v);
        }
        value
    }

    fn request() -> Value {
        json!({"model": "claude-mock", "max_tokens": 100,
               "messages": [{"role": "user", "content": "hello there"}]})
    }

    #[test]
    fn requests_are_checked_as_the_api_checks_them() {
        let p = parse(&request()).unwrap();
        assert_eq!(p.user, "hello there");
        assert_eq!(p.prompt_tokens, 2);
        let err = |v: Value| parse(&v).err().unwrap_or_default();
        assert!(err(with(request(), "n", json!(2))).contains("n: Extra inputs are not permitted"));
        let mut v = request();
        v.as_object_mut().map(|o| o.remove("max_tokens"));
        assert!(err(v).contains("max_tokens: Field required"));
        assert!(err(with(request(), "temperature", json!(1.5))).contains("temperature"));
        assert!(
            err(with(
                request(),
                "messages",
                json!([{"role": "system", "content": "x"}])
            ))
            .contains("Unexpected role \"system\"")
        );
        assert!(
            err(with(
                request(),
                "messages",
                json!([{"role": "user", "content": [{"type": "audio", "data": "x"}]}])
            ))
            .contains("'audio'")
        );
        assert!(
            err(with(
                request(),
                "messages",
                json!([{"role": "user", "content": [{"type": "image",
                    "source": {"type": "base64", "media_type": "image/bmp", "data": "x"}}]}])
            ))
            .contains("media_type")
        );
        assert!(err(with(request(), "tool_choice", json!({"type": "auto"}))).contains("tools"));
        assert!(
            err(with(
                request(),
                "thinking",
                json!({"type": "enabled", "budget_tokens": 2048})
            ))
            .contains("greater than `thinking.budget_tokens`")
        );
        assert!(err(with(request(), "tools", json!([{"name": "f"}]))).contains("input_schema"));
    }

    #[test]
    fn error_types_follow_the_status() {
        assert_eq!(error_type(529), "overloaded_error");
        assert_eq!(error_type(503), "api_error");
        assert_eq!(error_type(402), "billing_error");
        assert_eq!(error_message(404, "claude-x"), "model: claude-x");
    }
}
