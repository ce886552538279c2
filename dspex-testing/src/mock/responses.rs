//! OpenAI's Responses API on the mock server (`POST /v1/responses`, `/responses`): the same
//! DSPy-aware answers, rules, latency and faults as the chat route, in the Responses shapes
//! (an `output` list with a `message` item, `function_call` items for a rule's tool calls when
//! the request offers tools, `usage` with input/output tokens) and its stream of typed events
//! (`response.created`, `response.output_text.delta`…, `response.completed`).

use super::Shared;
use super::answer::{Format, Prompt};
use super::fault::Api;
use super::server::{STREAM_PIECES, bad_request, event, generate, json_with_fault, prelude, sse};
use super::stats::Route;
use super::util::{split_deltas, words};
use crate::wire::{Request, Response};
use bytes::Bytes;
use serde_json::{Value, json};
use std::sync::atomic::Ordering;
use std::time::Instant;

/// Handles one Responses request.
pub(super) async fn responses(
    shared: &Shared,
    route: Route,
    req: Request,
    arrived: Instant,
) -> Response {
    shared.stats.count_request(route);
    let body = req.into_body();
    let request: Value = match serde_json::from_slice(&body) {
        Ok(v @ Value::Object(_)) => v,
        Ok(_) => return bad_request("The request body must be a JSON object."),
        Err(e) => return bad_request(&format!("Invalid Responses request: {e}")),
    };
    let items: Vec<(String, String)> = match request.get("input") {
        Some(Value::String(text)) => vec![("user".to_string(), text.clone())],
        Some(Value::Array(items)) => items.iter().filter_map(item_text).collect(),
        _ => return bad_request("Missing required parameter: 'input'."),
    };
    if items.is_empty() {
        return bad_request("'input' must contain at least one message.");
    }
    if request.get("n").is_some_and(|n| !n.is_null()) {
        return bad_request("Unsupported parameter: 'n'.");
    }
    let format_value = request.pointer("/text/format");
    let format = match format_value
        .and_then(|f| f.get("type"))
        .and_then(Value::as_str)
    {
        None | Some("text") => Format::Text,
        Some("json_object") => Format::JsonObject,
        Some("json_schema") => Format::JsonSchema(format_value.and_then(|f| f.get("schema"))),
        Some(other) => return bad_request(&format!("Invalid 'text.format.type': '{other}'.")),
    };
    let streaming = request
        .get("stream")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let instructions = request.get("instructions").and_then(Value::as_str);
    let system = instructions.map(str::to_string).or_else(|| {
        items
            .iter()
            .find(|(role, _)| role == "system" || role == "developer")
            .map(|(_, text)| text.clone())
    });
    let user = items
        .iter()
        .rev()
        .find(|(role, _)| role == "user")
        .or(items.last())
        .map(|(_, text)| text.clone())
        .unwrap_or_default();
    let fault = match prelude(shared, arrived, Api::Chat, streaming, &user).await {
        Ok(fault) => fault,
        Err(resp) => return resp,
    };
    let conversation = shared.wants_conversation().then(|| {
        items
            .iter()
            .map(|(role, text)| format!("{role}:\n{text}"))
            .collect::<Vec<_>>()
            .join("\n")
    });
    let prompt = Prompt {
        system: system.as_deref(),
        user: &user,
        conversation: conversation.as_deref(),
    };
    let max_words = request.get("max_output_tokens").and_then(Value::as_u64);
    let distinct = request
        .get("temperature")
        .and_then(Value::as_f64)
        .is_some_and(|t| t > 0.0);
    let (text, finish) = generate(shared, prompt, format, 1, distinct, max_words)
        .pop()
        .unwrap_or_default();
    let input_tokens: u64 = items.iter().map(|(_, t)| words(t)).sum();
    let output_tokens = words(&text);
    let usage = json!({
        "input_tokens": input_tokens,
        "output_tokens": output_tokens,
        "total_tokens": input_tokens + output_tokens,
    });
    let tool_calls = request
        .get("tools")
        .and_then(Value::as_array)
        .filter(|tools| !tools.is_empty())
        .and_then(|_| shared.tool_calls_for(&user, conversation.as_deref()))
        .filter(|calls| !calls.is_empty());
    let id = format!("resp_mock{}", shared.seq.fetch_add(1, Ordering::Relaxed));
    let model = request
        .get("model")
        .and_then(Value::as_str)
        .unwrap_or("mock")
        .to_string();
    let mut output = vec![json!({
        "type": "message",
        "id": format!("msg_{id}"),
        "status": "completed",
        "role": "assistant",
        "content": [{"type": "output_text", "text": text, "annotations": []}],
    })];
    for call in tool_calls.into_iter().flatten() {
        let call_id = call.get("id").cloned().unwrap_or(Value::Null);
        output.push(json!({
            "type": "function_call",
            "id": format!("fc_{}", call_id.as_str().unwrap_or_default()),
            "call_id": call_id,
            "name": call.pointer("/function/name"),
            "arguments": call.pointer("/function/arguments"),
            "status": "completed",
        }));
    }
    let (status, incomplete) = if finish == "length" {
        ("incomplete", json!({"reason": "max_output_tokens"}))
    } else {
        ("completed", Value::Null)
    };
    let response = json!({
        "id": id,
        "object": "response",
        "created_at": super::server::now(),
        "status": status,
        "incomplete_details": incomplete,
        "model": model,
        "output": output,
        "usage": usage,
    });
    if streaming {
        return sse(stream_events(&response, &text), fault.as_ref());
    }
    json_with_fault(&response, fault.as_ref())
}

/// One input item's role and text (text blocks concatenated); `None` for items that are not
/// messages (function calls and their outputs).
fn item_text(item: &Value) -> Option<(String, String)> {
    let role = item.get("role").and_then(Value::as_str)?;
    let text = match item.get("content") {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(blocks)) => blocks
            .iter()
            .filter_map(|b| b.get("text").and_then(Value::as_str))
            .collect(),
        _ => String::new(),
    };
    Some((role.to_string(), text))
}

/// The SSE events of a streamed response, `response.completed` (or `response.incomplete`)
/// last; no `[DONE]`, as the Responses API sends none.
fn stream_events(response: &Value, text: &str) -> Vec<Bytes> {
    let mut events = Vec::new();
    let mut seq = 0u64;
    let mut push = |mut value: Value| {
        value["sequence_number"] = seq.into();
        seq += 1;
        events.push(event(&value));
    };
    let mut created = response.clone();
    created["status"] = "in_progress".into();
    created["output"] = json!([]);
    push(json!({"type": "response.created", "response": created}));
    for piece in split_deltas(text, STREAM_PIECES) {
        push(json!({
            "type": "response.output_text.delta",
            "output_index": 0,
            "content_index": 0,
            "delta": piece,
        }));
    }
    push(json!({
        "type": "response.output_text.done",
        "output_index": 0,
        "content_index": 0,
        "text": text,
    }));
    let last = if response["status"] == "incomplete" {
        "response.incomplete"
    } else {
        "response.completed"
    };
    push(json!({"type": last, "response": response}));
    events
}
