//! The HTTP side: routes, request handling, fault injection and OpenAI-shaped responses.
//!
//! Every handler reads the whole body itself and parses it with `serde_json`, so a malformed
//! request always gets a 400 with an OpenAI-style error object, never a panic.

use super::Shared;
use super::answer::{self, Format, Prompt};
use super::fault::{Api, Fault, effective_status};
use super::openai::{
    AssistantMessage, ChatChoice, ChatChunk, ChatCompletion, ChatRequest, ChunkChoice,
    CompletionRequest, Delta, EmbeddingData, EmbeddingItem, EmbeddingList, EmbeddingRequest,
    EmbeddingUsage, ErrorBody, ErrorDetail, PromptInput, TextChoice, TextCompletion, Usage,
    response_format,
};
use super::stats::Route;
use super::timer;
use super::util::{
    base64, mix_all, seconds_text, sha_u64, split_deltas, truncate_words, unit, words,
};
use crate::wire::{Body, Request, Response, full_response};
use bytes::Bytes;
use futures_util::stream;
use http::{HeaderValue, Method, StatusCode, header};
use serde::Serialize;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Largest accepted request body.
pub(crate) const BODY_LIMIT: usize = 64 << 20;
/// Largest `n`.
const MAX_N: u64 = 128;
/// Largest embedding dimension.
const MAX_DIM: u64 = 65_536;
/// Content pieces per streamed choice (or block, on every route).
pub(super) const STREAM_PIECES: usize = 4;
/// How long a reset response waits between its partial body and the reset.
const RESET_DELAY: Duration = Duration::from_millis(20);

/// Routes a request: the API paths with and without `/v1`, `/stats`, `/health`; 405 for a
/// known path with the wrong method, 404 for the rest.
pub(super) async fn handle(shared: &Shared, req: Request) -> Response {
    if matches!(req.uri().path(), "/stats" | "/health") {
        return route(shared, req).await;
    }
    let wave = shared.stats.arrive();
    let response = route(shared, req).await;
    shared.stats.answered(wave);
    response
}

async fn route(shared: &Shared, req: Request) -> Response {
    // Latency counts from here: the request has just been read whole.
    let arrived = Instant::now();
    let post = req.method() == Method::POST;
    // HEAD is answered like GET; the HTTP layer leaves the body out.
    let get = req.method() == Method::GET || req.method() == Method::HEAD;
    match req.uri().path() {
        "/v1/chat/completions" if post => chat(shared, Route::ChatV1, req, arrived).await,
        "/chat/completions" if post => chat(shared, Route::Chat, req, arrived).await,
        "/v1/completions" if post => completions(shared, Route::CompletionsV1, req, arrived).await,
        "/completions" if post => completions(shared, Route::Completions, req, arrived).await,
        "/v1/embeddings" if post => embeddings(shared, Route::EmbeddingsV1, req, arrived).await,
        "/embeddings" if post => embeddings(shared, Route::Embeddings, req, arrived).await,
        "/v1/messages" if post => {
            super::anthropic::messages(shared, Route::MessagesV1, req, arrived).await
        }
        "/messages" if post => {
            super::anthropic::messages(shared, Route::Messages, req, arrived).await
        }
        "/v1/models" if get => models(shared, Route::ModelsV1),
        "/models" if get => models(shared, Route::Models),
        "/stats" if get => json(StatusCode::OK, &shared.stats.snapshot()),
        "/health" if get => json(StatusCode::OK, &serde_json::json!({"status": "ok"})),
        "/v1/chat/completions"
        | "/chat/completions"
        | "/v1/completions"
        | "/completions"
        | "/v1/embeddings"
        | "/embeddings"
        | "/v1/models"
        | "/models"
        | "/v1/messages"
        | "/messages"
        | "/stats"
        | "/health" => method_not_allowed(&req),
        p if post && p.starts_with("/v1beta/models/") => {
            super::gemini::handle(shared, req, arrived).await
        }
        "/v1/responses" if post => {
            super::responses::responses(shared, Route::ResponsesV1, req, arrived).await
        }
        "/responses" if post => {
            super::responses::responses(shared, Route::Responses, req, arrived).await
        }
        "/v1/responses" | "/responses" => method_not_allowed(&req),
        path if path.starts_with("/openai/deployments/") => azure(shared, req, arrived).await,
        _ => not_found(&req),
    }
}

/// Azure OpenAI's deployment routes (`/openai/deployments/{deployment}/chat/completions`,
/// `/completions`, `/embeddings`): the OpenAI handlers, behind Azure's checks — an
/// `api-version` query (404 without, as Azure answers) and an `api-key` header (401 without).
async fn azure(shared: &Shared, req: Request, arrived: Instant) -> Response {
    let path = req.uri().path().to_string();
    let rest = path
        .strip_prefix("/openai/deployments/")
        .and_then(|r| r.split_once('/'))
        .filter(|(deployment, _)| !deployment.is_empty())
        .map(|(_, rest)| rest.to_string());
    let route = match rest.as_deref() {
        Some("chat/completions") => Route::AzureChat,
        Some("completions") => Route::AzureCompletions,
        Some("embeddings") => Route::AzureEmbeddings,
        _ => return not_found(&req),
    };
    if req.method() != Method::POST {
        return method_not_allowed(&req);
    }
    let has_version = req.uri().query().is_some_and(|q| {
        q.split('&')
            .any(|pair| pair.starts_with("api-version=") && pair.len() > "api-version=".len())
    });
    if !has_version {
        return json(
            StatusCode::NOT_FOUND,
            &serde_json::json!({"error": {"code": "404", "message": "Resource not found"}}),
        );
    }
    if !req.headers().contains_key("api-key") {
        return json(
            StatusCode::UNAUTHORIZED,
            &serde_json::json!({"error": {"code": "401", "message": "Access denied due to invalid subscription key or wrong API endpoint. Make sure to provide a valid key for an active subscription and use a correct regional API endpoint for your resource."}}),
        );
    }
    match route {
        Route::AzureChat => chat(shared, route, req, arrived).await,
        Route::AzureCompletions => completions(shared, route, req, arrived).await,
        _ => embeddings(shared, route, req, arrived).await,
    }
}

fn models(shared: &Shared, route: Route) -> Response {
    shared.stats.count_request(route);
    json(StatusCode::OK, &model_list())
}

// ---------------------------------------------------------------------------------------------
// Chat completions
// ---------------------------------------------------------------------------------------------

async fn chat(shared: &Shared, route: Route, req: Request, arrived: Instant) -> Response {
    shared.stats.count_request(route);
    let body = match read_body(req).await {
        Ok(body) => body,
        Err(resp) => return resp,
    };
    let request: ChatRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => return bad_request(&format!("Invalid chat completion request: {e}")),
    };
    if request.messages.is_empty() {
        return bad_request("'messages' must contain at least one message.");
    }
    let n = request.n.unwrap_or(1);
    if n == 0 || n > MAX_N {
        return bad_request(&format!("'n' must be between 1 and {MAX_N}, got {n}."));
    }
    let format = match response_format(request.response_format.as_ref()) {
        Ok(f) => f,
        Err(message) => return bad_request(&message),
    };
    let streaming = request.stream.unwrap_or(false);
    let system = request
        .messages
        .iter()
        .find(|m| m.role == "system" || m.role == "developer")
        .map(|m| m.text());
    let user = request
        .messages
        .iter()
        .rev()
        .find(|m| m.role == "user")
        .or(request.messages.last())
        .map(|m| m.text())
        .unwrap_or_default();

    let fault = match prelude(shared, arrived, Api::Chat, streaming, &user).await {
        Ok(fault) => fault,
        Err(resp) => return resp,
    };

    let prompt_tokens: u64 = request.messages.iter().map(|m| words(&m.text())).sum();
    let empty = fault == Some(Fault::EmptyChoices);
    let conversation = shared.wants_conversation().then(|| {
        request
            .messages
            .iter()
            .map(|m| format!("{}:\n{}", m.role, m.text()))
            .collect::<Vec<_>>()
            .join("\n")
    });
    let prompt = Prompt {
        system: system.as_deref(),
        user: &user,
        conversation: conversation.as_deref(),
    };
    let max_words = request.max_completion_tokens.or(request.max_tokens);
    let distinct = request.temperature.is_some_and(|t| t > 0.0);
    let choices = if empty {
        Vec::new()
    } else {
        generate(shared, prompt, format, n, distinct, max_words)
    };
    let completion_tokens = choices.iter().map(|(c, _)| words(c)).sum();
    let usage = Usage::new(prompt_tokens, completion_tokens);
    let id = format!(
        "chatcmpl-mock{}",
        shared.seq.fetch_add(1, Ordering::Relaxed)
    );
    let created = now();
    let model = request.model.as_deref().unwrap_or("mock");

    // A rule's tool calls, when the request offers tools (native function calling).
    let tool_calls = request
        .tools
        .as_ref()
        .filter(|tools| !tools.is_empty())
        .and_then(|_| shared.tool_calls_for(&user, conversation.as_deref()))
        .filter(|calls| !calls.is_empty());
    if streaming {
        let include_usage = request
            .stream_options
            .as_ref()
            .and_then(|o| o.include_usage)
            .unwrap_or(false);
        let meta = Meta {
            id: &id,
            created,
            model,
        };
        let events = chat_events(
            &meta,
            &choices,
            tool_calls.unwrap_or_default(),
            include_usage.then_some(usage),
            empty,
        );
        return sse(events, fault.as_ref());
    }
    let response = ChatCompletion {
        id: &id,
        object: "chat.completion",
        created,
        model,
        choices: choices
            .iter()
            .enumerate()
            .map(|(i, (content, finish))| ChatChoice {
                index: i as u64,
                message: AssistantMessage {
                    role: "assistant",
                    content,
                    refusal: None,
                    tool_calls,
                },
                logprobs: None,
                finish_reason: if tool_calls.is_some() && *finish == "stop" {
                    "tool_calls"
                } else {
                    finish
                },
            })
            .collect(),
        usage,
        system_fingerprint: "fp_mock",
    };
    json_with_fault(&response, fault.as_ref())
}

/// The `n` completions for a prompt, each with its finish reason.
pub(super) fn generate(
    shared: &Shared,
    prompt: Prompt<'_>,
    format: Format<'_>,
    n: u64,
    distinct: bool,
    max_words: Option<u64>,
) -> Vec<(String, &'static str)> {
    let finish = |text: String| match max_words.and_then(|m| truncate_words(&text, m)) {
        Some(cut) => (cut.to_owned(), "length"),
        None => (text, "stop"),
    };
    if let Some(text) = shared.rule_for(prompt.user, prompt.conversation) {
        let one = finish(text);
        return vec![one; n as usize];
    }
    if distinct {
        (0..n)
            .map(|i| finish(answer::answer(prompt, format, shared.dspy_aware, i)))
            .collect()
    } else {
        let one = finish(answer::answer(prompt, format, shared.dspy_aware, 0));
        vec![one; n as usize]
    }
}

/// What every chunk of one response repeats.
struct Meta<'a> {
    id: &'a str,
    created: u64,
    model: &'a str,
}

fn chat_chunk(meta: &Meta<'_>, choices: Vec<ChunkChoice<'_>>, usage: Option<Usage>) -> Bytes {
    event(&ChatChunk {
        id: meta.id,
        object: "chat.completion.chunk",
        created: meta.created,
        model: meta.model,
        system_fingerprint: "fp_mock",
        choices,
        usage,
    })
}

fn chat_delta(
    meta: &Meta<'_>,
    index: usize,
    delta: Delta<'_>,
    finish_reason: Option<&'static str>,
) -> Bytes {
    let choice = ChunkChoice {
        index: index as u64,
        delta,
        logprobs: None,
        finish_reason,
    };
    chat_chunk(meta, vec![choice], None)
}

/// The SSE events of a streamed chat completion, `data: [DONE]` last. Tool calls follow each
/// choice's text as OpenAI streams them: a first piece with the call's id and name, then its
/// arguments in two pieces; the choice then finishes with `tool_calls`.
fn chat_events(
    meta: &Meta<'_>,
    choices: &[(String, &'static str)],
    tool_calls: &[serde_json::Value],
    usage: Option<Usage>,
    empty: bool,
) -> Vec<Bytes> {
    let mut events = Vec::new();
    if empty {
        events.push(chat_chunk(meta, Vec::new(), None));
    }
    for (index, (content, finish)) in choices.iter().enumerate() {
        let role = Delta {
            role: Some("assistant"),
            content: Some(""),
        };
        events.push(chat_delta(meta, index, role, None));
        for piece in split_deltas(content, STREAM_PIECES) {
            let delta = Delta {
                role: None,
                content: Some(piece),
            };
            events.push(chat_delta(meta, index, delta, None));
        }
        for (call_index, call) in tool_calls.iter().enumerate() {
            let arguments = call
                .pointer("/function/arguments")
                .and_then(serde_json::Value::as_str)
                .unwrap_or("{}");
            let cut = arguments
                .char_indices()
                .nth(arguments.chars().count() / 2)
                .map_or(0, |(i, _)| i);
            let piece = |value: serde_json::Value| {
                event(&serde_json::json!({
                    "id": meta.id,
                    "object": "chat.completion.chunk",
                    "created": meta.created,
                    "model": meta.model,
                    "system_fingerprint": "fp_mock",
                    "choices": [{"index": index, "delta": {"tool_calls": [value]}, "logprobs": null, "finish_reason": null}],
                }))
            };
            events.push(piece(serde_json::json!({
                "index": call_index,
                "id": call.get("id"),
                "type": "function",
                "function": {"name": call.pointer("/function/name"), "arguments": ""},
            })));
            for part in [&arguments[..cut], &arguments[cut..]] {
                events.push(piece(serde_json::json!({
                    "index": call_index,
                    "function": {"arguments": part},
                })));
            }
        }
        let finish = if tool_calls.is_empty() || *finish != "stop" {
            finish
        } else {
            "tool_calls"
        };
        events.push(chat_delta(meta, index, Delta::default(), Some(finish)));
    }
    if let Some(usage) = usage {
        events.push(chat_chunk(meta, Vec::new(), Some(usage)));
    }
    events.push(Bytes::from_static(b"data: [DONE]\n\n"));
    events
}

// ---------------------------------------------------------------------------------------------
// Text completions
// ---------------------------------------------------------------------------------------------

async fn completions(shared: &Shared, route: Route, req: Request, arrived: Instant) -> Response {
    shared.stats.count_request(route);
    let body = match read_body(req).await {
        Ok(body) => body,
        Err(resp) => return resp,
    };
    let request: CompletionRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => return bad_request(&format!("Invalid completion request: {e}")),
    };
    let prompts: Vec<&str> = match &request.prompt {
        PromptInput::One(p) => vec![p.as_str()],
        PromptInput::Many(ps) => ps.iter().map(String::as_str).collect(),
    };
    if prompts.is_empty() {
        return bad_request("'prompt' must not be an empty list.");
    }
    let n = request.n.unwrap_or(1);
    if n == 0 || n > MAX_N {
        return bad_request(&format!("'n' must be between 1 and {MAX_N}, got {n}."));
    }
    let streaming = request.stream.unwrap_or(false);
    let fault = match prelude(shared, arrived, Api::Completions, streaming, prompts[0]).await {
        Ok(fault) => fault,
        Err(resp) => return resp,
    };
    let empty = fault == Some(Fault::EmptyChoices);
    let distinct = request.temperature.is_some_and(|t| t > 0.0);
    let mut choices: Vec<(String, &'static str)> = Vec::new();
    if !empty {
        for p in &prompts {
            let prompt = Prompt {
                system: Some(p),
                user: p,
                conversation: None,
            };
            choices.extend(generate(
                shared,
                prompt,
                Format::Text,
                n,
                distinct,
                request.max_tokens,
            ));
        }
    }
    let prompt_tokens = prompts.iter().map(|p| words(p)).sum();
    let usage = Usage::new(prompt_tokens, choices.iter().map(|(c, _)| words(c)).sum());
    let id = format!("cmpl-mock{}", shared.seq.fetch_add(1, Ordering::Relaxed));
    let created = now();
    let model = request.model.as_deref().unwrap_or("mock");
    let meta = Meta {
        id: &id,
        created,
        model,
    };
    if streaming {
        let mut events = Vec::new();
        if empty {
            events.push(event(&text_completion(&meta, Vec::new(), None)));
        }
        for (index, (text, finish)) in choices.iter().enumerate() {
            for piece in split_deltas(text, STREAM_PIECES) {
                let c = text_choice(piece, index, None);
                events.push(event(&text_completion(&meta, vec![c], None)));
            }
            let last = text_choice("", index, Some(finish));
            events.push(event(&text_completion(&meta, vec![last], None)));
        }
        let include_usage = request
            .stream_options
            .as_ref()
            .and_then(|o| o.include_usage)
            .unwrap_or(false);
        if include_usage {
            events.push(event(&text_completion(&meta, Vec::new(), Some(usage))));
        }
        events.push(Bytes::from_static(b"data: [DONE]\n\n"));
        return sse(events, fault.as_ref());
    }
    let all = choices
        .iter()
        .enumerate()
        .map(|(index, (text, finish))| text_choice(text, index, Some(finish)))
        .collect();
    json_with_fault(&text_completion(&meta, all, Some(usage)), fault.as_ref())
}

fn text_completion<'a>(
    meta: &Meta<'a>,
    choices: Vec<TextChoice<'a>>,
    usage: Option<Usage>,
) -> TextCompletion<'a> {
    TextCompletion {
        id: meta.id,
        object: "text_completion",
        created: meta.created,
        model: meta.model,
        choices,
        usage,
    }
}

fn text_choice<'a>(
    text: &'a str,
    index: usize,
    finish_reason: Option<&'static str>,
) -> TextChoice<'a> {
    TextChoice {
        text,
        index: index as u64,
        logprobs: None,
        finish_reason,
    }
}

// ---------------------------------------------------------------------------------------------
// Embeddings and the model list
// ---------------------------------------------------------------------------------------------

async fn embeddings(shared: &Shared, route: Route, req: Request, arrived: Instant) -> Response {
    shared.stats.count_request(route);
    let body = match read_body(req).await {
        Ok(body) => body,
        Err(resp) => return resp,
    };
    let request: EmbeddingRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            return bad_request(&format!(
                "Invalid embeddings request ('input' must be a string, a list of strings or token ids): {e}"
            ));
        }
    };
    let texts = request.input.texts();
    if texts.is_empty() {
        return bad_request("'input' must not be an empty list.");
    }
    let dim = match request.dimensions {
        None => shared.embedding_dim,
        Some(d) if (1..=MAX_DIM).contains(&d) => d as usize,
        Some(d) => {
            return bad_request(&format!(
                "'dimensions' must be between 1 and {MAX_DIM}, got {d}."
            ));
        }
    };
    let base64_format = match request.encoding_format.as_deref() {
        None | Some("float") => false,
        Some("base64") => true,
        Some(other) => {
            return bad_request(&format!(
                "Invalid value for 'encoding_format': '{other}'. Supported values are: 'float' and 'base64'."
            ));
        }
    };
    let first = texts.first().map_or("", |t| t.as_ref());
    let fault = match prelude(shared, arrived, Api::Embeddings, false, first).await {
        Ok(fault) => fault,
        Err(resp) => return resp,
    };
    let data = if fault == Some(Fault::EmptyChoices) {
        Vec::new()
    } else {
        texts
            .iter()
            .enumerate()
            .map(|(index, text)| {
                let v = embed(text, dim);
                let embedding = if base64_format {
                    let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
                    EmbeddingData::Base64(base64(&bytes))
                } else {
                    EmbeddingData::Floats(v)
                };
                EmbeddingItem {
                    object: "embedding",
                    index: index as u64,
                    embedding,
                }
            })
            .collect()
    };
    let tokens = texts.iter().map(|t| words(t)).sum();
    let response = EmbeddingList {
        object: "list",
        data,
        model: request.model.as_deref().unwrap_or("mock-embedding"),
        usage: EmbeddingUsage {
            prompt_tokens: tokens,
            total_tokens: tokens,
        },
    };
    json_with_fault(&response, fault.as_ref())
}

/// A deterministic unit vector for `text`: the same text always gives the same vector.
pub(super) fn embed(text: &str, dim: usize) -> Vec<f32> {
    let seed = sha_u64(&[b"embedding\0", text.as_bytes()]);
    let raw: Vec<f64> = (0..dim as u64)
        .map(|i| unit(mix_all(&[seed, i])) * 2.0 - 1.0)
        .collect();
    let norm = raw.iter().map(|x| x * x).sum::<f64>().sqrt();
    if norm == 0.0 {
        let mut v = vec![0.0; dim];
        if let Some(first) = v.first_mut() {
            *first = 1.0;
        }
        return v;
    }
    raw.iter().map(|x| (x / norm) as f32).collect()
}

fn model_list() -> serde_json::Value {
    serde_json::json!({
        "object": "list",
        "data": [
            {"id": "mock", "object": "model", "created": 0, "owned_by": "dspex"},
            {"id": "mock-embedding", "object": "model", "created": 0, "owned_by": "dspex"}
        ]
    })
}

// ---------------------------------------------------------------------------------------------
// Faults and latency
// ---------------------------------------------------------------------------------------------

/// The server is stopping: the request is answered with the protocol's "shutting down" error.
pub(super) struct ShuttingDown;

/// What every route does before its answer, whatever its protocol: picks the request's fault
/// and counts it, sleeps the latency, and sleeps out a hang (which then answers normally). `Ok`
/// carries the fault left for the route: a status or rate limit it answers in its own error
/// shape, or a fault that alters its response.
pub(super) async fn pick_fault(
    shared: &Shared,
    arrived: Instant,
    api: Api,
    streaming: bool,
    user: &str,
) -> Result<Option<Fault>, ShuttingDown> {
    let faults = shared.faults();
    let fault = if faults.is_empty() {
        None
    } else {
        faults.select(api, streaming, user).cloned()
    };
    drop(faults);
    if let Some(f) = &fault {
        shared.stats.count_fault(f.kind());
    }
    if shared.latency != super::Latency::None {
        let k = shared.draws.fetch_add(1, Ordering::Relaxed);
        let latency = shared.latency.sample(shared.seed, k);
        if !shared.pause_until(timer::after(arrived, latency)).await {
            return Err(ShuttingDown);
        }
    }
    match fault {
        Some(Fault::Hang(d)) => {
            if shared.pause_until(timer::after(Instant::now(), d)).await {
                Ok(None)
            } else {
                Err(ShuttingDown)
            }
        }
        other => Ok(other),
    }
}

/// [`pick_fault`], with the faults that replace the response answered in OpenAI's shapes. `Ok`
/// carries a fault that alters the response.
pub(super) async fn prelude(
    shared: &Shared,
    arrived: Instant,
    api: Api,
    streaming: bool,
    user: &str,
) -> Result<Option<Fault>, Response> {
    let fault = pick_fault(shared, arrived, api, streaming, user)
        .await
        .map_err(|ShuttingDown| shutting_down())?;
    match fault {
        Some(Fault::Status(code)) => {
            let status = StatusCode::from_u16(effective_status(code))
                .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let kind = if status.is_client_error() {
                "invalid_request_error"
            } else {
                "server_error"
            };
            let message = format!(
                "The server had an error while processing your request (mock fault: HTTP {}).",
                status.as_u16()
            );
            Err(error(status, &message, kind, Some("mock_fault")))
        }
        Some(Fault::RateLimited { retry_after }) => {
            let secs = seconds_text(retry_after);
            let message = format!(
                "Rate limit reached for requests (mock fault). Please try again in {secs}s."
            );
            let mut resp = error(
                StatusCode::TOO_MANY_REQUESTS,
                &message,
                "requests",
                Some("rate_limit_exceeded"),
            );
            let headers = resp.headers_mut();
            if let Ok(v) = HeaderValue::from_str(&secs) {
                headers.insert(header::RETRY_AFTER, v);
            }
            if let Ok(v) = HeaderValue::from_str(&retry_after.as_millis().to_string()) {
                headers.insert("retry-after-ms", v);
            }
            Err(resp)
        }
        other => Ok(other),
    }
}

/// A JSON response, altered by a body fault.
pub(super) fn json_with_fault<T: Serialize>(value: &T, fault: Option<&Fault>) -> Response {
    let body = match serde_json::to_vec(value) {
        Ok(b) => b,
        Err(e) => return internal(&e.to_string()),
    };
    match fault {
        Some(Fault::ResetMidBody) => reset(body.into(), "application/json", true),
        Some(Fault::MalformedJson) => {
            let cut = (body.len() / 2).max(1).min(body.len());
            full_response(StatusCode::OK, "application/json", body[..cut].to_vec())
        }
        _ => full_response(StatusCode::OK, "application/json", body),
    }
}

/// A server-sent-events response, altered by a body fault.
pub(super) fn sse(mut events: Vec<Bytes>, fault: Option<&Fault>) -> Response {
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
                events = vec![Bytes::from(broken), Bytes::from_static(b"data: [DONE]\n\n")];
            }
        }
        Some(Fault::TruncatedStream) => {
            // Keep the first half of the data events: no final chunk, no [DONE].
            let data_events = events.len().saturating_sub(1);
            events.truncate((data_events / 2).max(1));
        }
        Some(Fault::StreamError(code)) => {
            // The first half of the data events, then an error object, no [DONE].
            let data_events = events.len().saturating_sub(1);
            events.truncate((data_events / 2).max(1));
            let status = effective_status(*code);
            let message =
                format!("The server had an error while streaming (mock fault: HTTP {status}).");
            let kind = if status < 500 {
                "invalid_request_error"
            } else {
                "server_error"
            };
            events.push(event(&ErrorBody {
                error: ErrorDetail {
                    message: &message,
                    kind,
                    param: None,
                    code: Some(kind),
                },
            }));
        }
        _ => {}
    }
    event_stream(events)
}

/// A `text/event-stream` response of these events, sent one write each.
pub(super) fn event_stream(events: Vec<Bytes>) -> Response {
    let body = Body::from_stream(stream::iter(
        events.into_iter().map(Ok::<_, std::io::Error>),
    ));
    let mut resp = Response::new(body);
    let headers = resp.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    resp
}

/// Sends the status, the headers and half the body, then fails the body so the connection is
/// dropped. With `declare_length`, `Content-Length` announces the whole body.
pub(super) fn reset(full: Bytes, content_type: &'static str, declare_length: bool) -> Response {
    let total = full.len();
    let half = full.slice(..total / 2);
    let parts = stream::unfold(0u8, move |state| {
        let half = half.clone();
        async move {
            match state {
                0 => Some((Ok(half), 1)),
                1 => {
                    // Let the partial body reach the socket before the connection dies.
                    tokio::time::sleep(RESET_DELAY).await;
                    let err = std::io::Error::new(
                        std::io::ErrorKind::ConnectionReset,
                        "mock fault: connection reset mid-body",
                    );
                    Some((Err(err), 2))
                }
                _ => None,
            }
        }
    });
    let mut resp = Response::new(Body::from_stream(parts));
    let headers = resp.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    if declare_length {
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from(total));
    }
    resp
}

// ---------------------------------------------------------------------------------------------
// Plumbing
// ---------------------------------------------------------------------------------------------

/// The request's body (read whole, within [`BODY_LIMIT`], by the HTTP layer).
async fn read_body(req: Request) -> Result<Bytes, Response> {
    Ok(req.into_body())
}

pub(super) fn event<T: Serialize>(value: &T) -> Bytes {
    let mut out = b"data: ".to_vec();
    // Serializing these plain structs cannot fail; an error would only drop the payload.
    let _ = serde_json::to_writer(&mut out, value);
    out.extend_from_slice(b"\n\n");
    Bytes::from(out)
}

pub(super) fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn json<T: Serialize>(status: StatusCode, value: &T) -> Response {
    match serde_json::to_vec(value) {
        Ok(body) => full_response(status, "application/json", body),
        Err(e) => internal(&e.to_string()),
    }
}

fn error(status: StatusCode, message: &str, kind: &str, code: Option<&str>) -> Response {
    let body = ErrorBody {
        error: ErrorDetail {
            message,
            kind,
            param: None,
            code,
        },
    };
    let bytes = serde_json::to_vec(&body).unwrap_or_else(|_| {
        br#"{"error":{"message":"error","type":"server_error","param":null,"code":null}}"#.to_vec()
    });
    full_response(status, "application/json", bytes)
}

pub(super) fn bad_request(message: &str) -> Response {
    error(
        StatusCode::BAD_REQUEST,
        message,
        "invalid_request_error",
        Some("invalid_request"),
    )
}

fn internal(message: &str) -> Response {
    error(
        StatusCode::INTERNAL_SERVER_ERROR,
        message,
        "server_error",
        None,
    )
}

fn shutting_down() -> Response {
    error(
        StatusCode::SERVICE_UNAVAILABLE,
        "The mock server is shutting down.",
        "server_error",
        Some("shutting_down"),
    )
}

fn not_found(req: &Request) -> Response {
    let message = format!(
        "Unknown request URL: {} {}. Please check the URL for typos.",
        req.method(),
        req.uri().path()
    );
    error(
        StatusCode::NOT_FOUND,
        &message,
        "invalid_request_error",
        Some("unknown_url"),
    )
}

fn method_not_allowed(req: &Request) -> Response {
    let message = format!(
        "Method {} is not allowed for {}.",
        req.method(),
        req.uri().path()
    );
    error(
        StatusCode::METHOD_NOT_ALLOWED,
        &message,
        "invalid_request_error",
        Some("method_not_allowed"),
    )
}
