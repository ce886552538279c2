//! Gemini's API (Google AI Studio) on the mock server: `POST
//! /v1beta/models/{model}:generateContent` and `:streamGenerateContent` (server-sent events with
//! `?alt=sse`, else one JSON array of the chunks, as Google serves it).
//!
//! The route answers as the OpenAI route does — the same rules, DSPy-aware answers, latency
//! and faults — in Gemini's shapes:
//!
//! - the key must come in `x-goog-api-key` (or `?key=`): without one the answer is 403
//!   `PERMISSION_DENIED`, as Google answers unregistered callers;
//! - the model must exist: ids starting with `gemini`, `gemma`, `learnlm` or `mock` do; any
//!   other answers 404 `NOT_FOUND` with Google's wording (`models/x is not found for API
//!   version v1beta, …`). A model whose id contains `small-context` has a context window of
//!   1 000 tokens (words), the others 1 048 576: a longer prompt answers 400
//!   `INVALID_ARGUMENT` with Google's `The input token count (…) exceeds the maximum number of
//!   tokens allowed (…)`;
//! - the body is checked as strictly as Google checks it: unknown fields, an empty or missing
//!   `contents`, roles other than `user`/`model`, a part without data, `inline_data` that is
//!   not base64, a `candidateCount` outside 1–8, and JSON-Schema-only keys
//!   (`additionalProperties`, `$ref`, …) in `responseSchema` or a function's `parameters`
//!   answer 400 `INVALID_ARGUMENT`;
//! - `candidateCount` gives that many candidates; `responseMimeType: application/json` (with
//!   `responseSchema` or `responseJsonSchema`) gives JSON answers; `thinkingConfig.includeThoughts`
//!   adds a `thought` part and `thoughtsTokenCount`; `maxOutputTokens` cuts the answer
//!   (`MAX_TOKENS`); `usageMetadata` counts words;
//! - a rule's tool calls ([`Rule::with_tool_call`](super::Rule::with_tool_call)) come back as
//!   `functionCall` parts (no ids, as Gemini sends them) when the request declares functions;
//!   a rule made with [`Rule::with_safety_block`](super::Rule::with_safety_block) answers with
//!   a blocked prompt or candidate;
//! - faults: statuses with Google's error JSON (`{"error": {"code", "message", "status"}}`,
//!   the status named after the code: 400 `INVALID_ARGUMENT`, 401 `UNAUTHENTICATED`, 403
//!   `PERMISSION_DENIED`, 404 `NOT_FOUND`, 429 `RESOURCE_EXHAUSTED`, 500 `INTERNAL`, 503
//!   `UNAVAILABLE`, 504 `DEADLINE_EXCEEDED`, …); 429 with `Retry-After` (and Google's
//!   `RetryInfo` detail); hangs; resets; malformed JSON; no candidates; a stream cut before its
//!   last chunk (the one with the finish reason). Faults count with the chat completions
//!   endpoint's.

use super::Shared;
use super::answer::{Format, Prompt};
use super::fault::{Api, Fault, effective_status};
use super::server::{
    STREAM_PIECES, ShuttingDown, event_stream, generate, json_with_fault, pick_fault, reset,
};
use super::stats::Route;
use super::util::{seconds_text, sha_u64, split_deltas, words};
use crate::wire::{Request, Response, full_response};
use bytes::Bytes;
use http::{HeaderValue, StatusCode, header};
use serde::Deserialize;
use serde_json::{Map, Value, json};
use std::sync::atomic::Ordering;
use std::time::Instant;

/// Most candidates Gemini gives for one request.
const MAX_CANDIDATES: u64 = 8;
/// The context window of most mock models, in tokens (words).
const CONTEXT_WINDOW: u64 = 1_048_576;
/// The context window of a `small-context` model.
const SMALL_CONTEXT_WINDOW: u64 = 1_000;

/// How a rule's answer is blocked on the Gemini routes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Block {
    /// `promptFeedback.blockReason` with no candidates.
    Prompt(String),
    /// Every candidate stopped with this `finishReason` before generating anything.
    Candidate(String),
}

impl super::Rule {
    /// The same rule, answering on the Gemini routes with a safety block instead of its
    /// completion: a `promptFeedback.blockReason` of `reason` and no candidates when `reason`
    /// is one of the prompt block reasons (`SAFETY`, `OTHER`, `BLOCKLIST`,
    /// `PROHIBITED_CONTENT`, `IMAGE_SAFETY`), else candidates that finished with `reason`
    /// (`RECITATION`, `SPII`, …) and no content. The OpenAI routes answer the completion.
    ///
    /// ```
    /// use dspex_testing::Rule;
    ///
    /// let rule = Rule::contains("forbidden", "never sent").with_safety_block("SAFETY");
    /// # let _ = rule;
    /// ```
    #[must_use]
    pub fn with_safety_block(mut self, reason: impl Into<String>) -> Self {
        let reason = reason.into();
        self.block = Some(
            if matches!(
                reason.as_str(),
                "SAFETY" | "OTHER" | "BLOCKLIST" | "PROHIBITED_CONTENT" | "IMAGE_SAFETY"
            ) {
                Block::Prompt(reason)
            } else {
                Block::Candidate(reason)
            },
        );
        self
    }

    /// The same rule, answering on the Gemini routes with candidates that finished with
    /// `reason` (`SAFETY`, `RECITATION`, …) before generating anything, whatever the reason.
    #[must_use]
    pub fn with_blocked_candidate(mut self, reason: impl Into<String>) -> Self {
        self.block = Some(Block::Candidate(reason.into()));
        self
    }
}

// ---------------------------------------------------------------------------------------------
// Requests
// ---------------------------------------------------------------------------------------------

/// The top-level fields of a `GenerateContentRequest` (either spelling); Google refuses others.
const REQUEST_FIELDS: &[&str] = &[
    "model",
    "contents",
    "systemInstruction",
    "system_instruction",
    "generationConfig",
    "generation_config",
    "tools",
    "toolConfig",
    "tool_config",
    "safetySettings",
    "safety_settings",
    "cachedContent",
    "cached_content",
    "labels",
    "serviceTier",
    "service_tier",
    "store",
];

/// What the mock reads of a `GenerateContentRequest`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct GenerateRequest {
    #[serde(default)]
    contents: Option<Vec<GeminiContent>>,
    #[serde(default, alias = "system_instruction")]
    system_instruction: Option<GeminiContent>,
    #[serde(default, alias = "generation_config")]
    generation_config: Option<GenerationConfig>,
    #[serde(default)]
    tools: Option<Vec<Value>>,
}

#[derive(Debug, Deserialize)]
struct GeminiContent {
    #[serde(default)]
    role: Option<String>,
    #[serde(default)]
    parts: Option<Vec<Map<String, Value>>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct GenerationConfig {
    #[serde(default, alias = "candidate_count")]
    candidate_count: Option<u64>,
    #[serde(default)]
    temperature: Option<f64>,
    #[serde(default, alias = "max_output_tokens")]
    max_output_tokens: Option<u64>,
    #[serde(default, alias = "response_mime_type")]
    response_mime_type: Option<String>,
    #[serde(default, alias = "response_schema")]
    response_schema: Option<Value>,
    #[serde(default, alias = "response_json_schema")]
    response_json_schema: Option<Value>,
    #[serde(default, alias = "thinking_config")]
    thinking_config: Option<Value>,
}

/// Keys of Gemini's `Schema` type.
const SCHEMA_KEYS: &[&str] = &[
    "type",
    "format",
    "title",
    "description",
    "nullable",
    "enum",
    "maxItems",
    "minItems",
    "properties",
    "required",
    "minProperties",
    "maxProperties",
    "minLength",
    "maxLength",
    "pattern",
    "example",
    "anyOf",
    "propertyOrdering",
    "default",
    "items",
    "minimum",
    "maximum",
];

/// The first key of `schema` Gemini's `Schema` type does not have, with its path.
fn foreign_schema_key(schema: &Value, at: &str, depth: usize) -> Option<String> {
    let Value::Object(obj) = schema else {
        return None;
    };
    if depth > 64 {
        return None;
    }
    for (key, value) in obj {
        let here = format!("{at}.{key}");
        let nested = match key.as_str() {
            "properties" => value.as_object().and_then(|props| {
                props.iter().find_map(|(name, p)| {
                    foreign_schema_key(p, &format!("{here}[{name}]"), depth + 1)
                })
            }),
            "items" => foreign_schema_key(value, &here, depth + 1),
            "anyOf" => value.as_array().and_then(|all| {
                all.iter()
                    .enumerate()
                    .find_map(|(i, s)| foreign_schema_key(s, &format!("{here}[{i}]"), depth + 1))
            }),
            "type" if !value.is_string() => Some(here.clone()),
            other if !SCHEMA_KEYS.contains(&other) => Some(here.clone()),
            _ => None,
        };
        if nested.is_some() {
            return nested;
        }
    }
    None
}

/// Whether `data` is standard base64.
fn is_base64(data: &str) -> bool {
    let trimmed = data.trim_end_matches('=');
    data.len() - trimmed.len() <= 2
        && !trimmed.is_empty()
        && trimmed
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/')
}

/// A content's text parts joined, and its media as `[inline_data <type> <n> bytes]` /
/// `[file_data <type> <uri>]` lines (in the conversation text only); `Err` names a bad part.
fn read_content(content: &GeminiContent, at: &str) -> Result<(String, Vec<String>), String> {
    let parts = content
        .parts
        .as_deref()
        .filter(|p| !p.is_empty())
        .ok_or_else(|| format!("* {at}.parts: must not be empty"))?;
    let mut text = String::new();
    let mut media = Vec::new();
    for (j, part) in parts.iter().enumerate() {
        let here = format!("{at}.parts[{j}]");
        let field = |a: &str, b: &str| part.get(a).or_else(|| part.get(b));
        if let Some(t) = part.get("text") {
            let t = t
                .as_str()
                .ok_or_else(|| format!("Invalid value at '{here}.text' (TYPE_STRING)"))?;
            text.push_str(t);
        } else if let Some(inline) = field("inline_data", "inlineData") {
            let mime = field_str(inline, "mime_type", "mimeType").unwrap_or_default();
            let data = inline
                .get("data")
                .and_then(Value::as_str)
                .unwrap_or_default();
            if mime.is_empty() {
                return Err(format!("* {here}.inline_data.mime_type: must be set"));
            }
            if !is_base64(data) {
                return Err(format!(
                    "Invalid value at '{here}.inline_data.data' (TYPE_BYTES), Base64 decoding failed"
                ));
            }
            media.push(format!("[inline_data {mime} {} bytes]", data.len() / 4 * 3));
        } else if let Some(file) = field("file_data", "fileData") {
            let uri = field_str(file, "file_uri", "fileUri")
                .filter(|u| !u.is_empty())
                .ok_or_else(|| format!("* {here}.file_data.file_uri: must be set"))?;
            let mime = field_str(file, "mime_type", "mimeType").unwrap_or("?");
            media.push(format!("[file_data {mime} {uri}]"));
        } else if part.contains_key("functionCall") || part.contains_key("functionResponse") {
        } else {
            return Err(format!(
                "* {here}: a part needs data (text, inline_data, file_data, …)"
            ));
        }
    }
    Ok((text, media))
}

fn field_str<'a>(v: &'a Value, a: &str, b: &str) -> Option<&'a str> {
    v.get(a).or_else(|| v.get(b)).and_then(Value::as_str)
}

/// What the mock needs of a checked request.
struct Checked {
    system: Option<String>,
    user: String,
    conversation: String,
    prompt_tokens: u64,
    n: u64,
    max_words: Option<u64>,
    distinct: bool,
    thoughts: bool,
    declares_functions: bool,
    schema: Option<Value>,
    json: bool,
}

/// Checks a request as Google does; `Err` is the 400's message.
fn check(body: &[u8]) -> Result<Checked, String> {
    let raw: Map<String, Value> =
        serde_json::from_slice(body).map_err(|e| format!("Invalid JSON payload received. {e}"))?;
    if let Some(key) = raw.keys().find(|k| !REQUEST_FIELDS.contains(&k.as_str())) {
        return Err(format!(
            "Invalid JSON payload received. Unknown name \"{key}\": Cannot find field."
        ));
    }
    let request: GenerateRequest = serde_json::from_value(Value::Object(raw))
        .map_err(|e| format!("Invalid JSON payload received. {e}"))?;
    let contents = request
        .contents
        .as_deref()
        .filter(|c| !c.is_empty())
        .ok_or("* GenerateContentRequest.contents: contents is not specified")?;
    let system = match &request.system_instruction {
        Some(s) => Some(read_content(s, "system_instruction")?.0),
        None => None,
    };
    let mut user = String::new();
    let mut conversation = Vec::new();
    let mut prompt_tokens = system.as_deref().map_or(0, words);
    if let Some(s) = &system {
        conversation.push(format!("system:\n{s}"));
    }
    for (i, content) in contents.iter().enumerate() {
        let role = content.role.as_deref().unwrap_or("user");
        if role != "user" && role != "model" {
            return Err(format!(
                "* GenerateContentRequest.contents[{i}].role: Please use a valid role: user, model."
            ));
        }
        let (text, media) = read_content(content, &format!("contents[{i}]"))?;
        prompt_tokens += words(&text) + media.len() as u64 * 258;
        let mut shown = text.clone();
        for m in media {
            shown.push('\n');
            shown.push_str(&m);
        }
        conversation.push(format!("{role}:\n{shown}"));
        if role == "user" {
            user = text;
        }
    }
    let config = request.generation_config.unwrap_or_default();
    let n = config.candidate_count.unwrap_or(1);
    if !(1..=MAX_CANDIDATES).contains(&n) {
        return Err(format!(
            "* GenerateContentRequest.generation_config.candidate_count: must be between 1 and {MAX_CANDIDATES}, got {n}"
        ));
    }
    if let Some(schema) = &config.response_schema
        && let Some(key) = foreign_schema_key(schema, "generation_config.response_schema", 0)
    {
        return Err(format!(
            "Invalid JSON payload received. Unknown name at '{key}': Cannot find field."
        ));
    }
    let mut declares_functions = false;
    for (i, tool) in request.tools.iter().flatten().enumerate() {
        let decls = tool
            .get("functionDeclarations")
            .or_else(|| tool.get("function_declarations"));
        for (j, d) in decls
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .enumerate()
        {
            declares_functions = true;
            if d.get("name")
                .and_then(Value::as_str)
                .is_none_or(str::is_empty)
            {
                return Err(format!(
                    "* GenerateContentRequest.tools[{i}].function_declarations[{j}].name: [FIELD_INVALID] Invalid function name."
                ));
            }
            if let Some(params) = d.get("parameters") {
                let at = format!("tools[{i}].function_declarations[{j}].parameters");
                if let Some(key) = foreign_schema_key(params, &at, 0) {
                    return Err(format!(
                        "Invalid JSON payload received. Unknown name at '{key}': Cannot find field."
                    ));
                }
                if params.get("type").and_then(Value::as_str) == Some("object")
                    && params
                        .get("properties")
                        .and_then(Value::as_object)
                        .is_none_or(Map::is_empty)
                {
                    return Err(format!(
                        "* GenerateContentRequest.{at}.properties: should be non-empty for OBJECT type"
                    ));
                }
            }
        }
    }
    let json = config
        .response_mime_type
        .as_deref()
        .is_some_and(|m| m == "application/json");
    let thoughts = config
        .thinking_config
        .as_ref()
        .and_then(|t| {
            t.get("includeThoughts")
                .or_else(|| t.get("include_thoughts"))
        })
        .and_then(Value::as_bool)
        .unwrap_or(false);
    Ok(Checked {
        system,
        user,
        conversation: conversation.join("\n"),
        prompt_tokens,
        n,
        max_words: config.max_output_tokens,
        distinct: config.temperature.is_some_and(|t| t > 0.0),
        thoughts,
        declares_functions,
        schema: config.response_schema.or(config.response_json_schema),
        json,
    })
}

// ---------------------------------------------------------------------------------------------
// The route
// ---------------------------------------------------------------------------------------------

/// `POST /v1beta/models/{model}:{method}`.
pub(super) async fn handle(shared: &Shared, req: Request, arrived: Instant) -> Response {
    let path = req.uri().path().to_owned();
    let query = req.uri().query().unwrap_or("").to_owned();
    let Some((model, method)) = path
        .strip_prefix("/v1beta/models/")
        .and_then(|rest| rest.rsplit_once(':'))
    else {
        return not_found_path(&path);
    };
    let streaming = match method {
        "generateContent" => false,
        "streamGenerateContent" => true,
        _ => return not_found_path(&path),
    };
    shared.stats.count_request(if streaming {
        Route::GeminiStream
    } else {
        Route::GeminiGenerate
    });
    let sse = query.split('&').any(|kv| kv == "alt=sse");
    let key_in_query = query
        .split('&')
        .any(|kv| kv.strip_prefix("key=").is_some_and(|k| !k.is_empty()));
    let key_in_header = req
        .headers()
        .get("x-goog-api-key")
        .is_some_and(|v| !v.is_empty());
    if !key_in_header && !key_in_query {
        return google_error(
            StatusCode::FORBIDDEN,
            "Method doesn't allow unregistered callers (callers without established identity). Please use API Key or other form of API consumer identity to call this API.",
        );
    }
    let model = model.to_owned();
    let known = ["gemini", "gemma", "learnlm", "mock"]
        .iter()
        .any(|p| model.starts_with(p));
    if !known {
        return google_error(
            StatusCode::NOT_FOUND,
            &format!(
                "models/{model} is not found for API version v1beta, or is not supported for generateContent. Call ListModels to see the list of available models and their supported methods."
            ),
        );
    }
    let checked = match check(req.body()) {
        Ok(c) => c,
        Err(message) => return google_error(StatusCode::BAD_REQUEST, &message),
    };
    let window = if model.contains("small-context") {
        SMALL_CONTEXT_WINDOW
    } else {
        CONTEXT_WINDOW
    };
    if checked.prompt_tokens > window {
        return google_error(
            StatusCode::BAD_REQUEST,
            &format!(
                "The input token count ({}) exceeds the maximum number of tokens allowed ({window}).",
                checked.prompt_tokens
            ),
        );
    }
    let fault = match prelude(shared, arrived, streaming, &checked.user).await {
        Ok(fault) => fault,
        Err(resp) => return resp,
    };
    let answer = answer_for(shared, &checked, &model, fault == Some(Fault::EmptyChoices));
    if streaming {
        let chunks = stream_chunks(&answer);
        if sse {
            sse_response(&chunks, fault.as_ref())
        } else {
            json_with_fault(&chunks, fault.as_ref())
        }
    } else {
        json_with_fault(&answer.whole(), fault.as_ref())
    }
}

/// One candidate of the answer.
struct Candidate {
    text: String,
    thought: Option<String>,
    finish: &'static str,
}

/// The answer before it is shaped as a whole response or a stream.
struct Answer {
    candidates: Vec<Candidate>,
    calls: Vec<Value>,
    block: Option<Block>,
    prompt_tokens: u64,
    model: String,
    id: String,
}

impl Answer {
    fn usage(&self, with_output: bool) -> Value {
        let mut usage = Map::new();
        usage.insert("promptTokenCount".into(), json!(self.prompt_tokens));
        let (mut out, mut thoughts) = (0u64, 0u64);
        if with_output {
            for c in &self.candidates {
                out += words(&c.text);
                thoughts += c.thought.as_deref().map_or(0, words);
            }
            usage.insert("candidatesTokenCount".into(), json!(out));
            if thoughts > 0 {
                usage.insert("thoughtsTokenCount".into(), json!(thoughts));
            }
        }
        usage.insert(
            "totalTokenCount".into(),
            json!(self.prompt_tokens + out + thoughts),
        );
        usage.insert(
            "promptTokensDetails".into(),
            json!([{"modality": "TEXT", "tokenCount": self.prompt_tokens}]),
        );
        Value::Object(usage)
    }

    fn envelope(&self, candidates: Option<Vec<Value>>, usage: Value) -> Value {
        let mut out = Map::new();
        if let Some(c) = candidates {
            out.insert("candidates".into(), Value::Array(c));
        }
        if let Some(Block::Prompt(reason)) = &self.block {
            out.insert("promptFeedback".into(), json!({ "blockReason": reason }));
        }
        out.insert("usageMetadata".into(), usage);
        out.insert("modelVersion".into(), json!(self.model));
        out.insert("responseId".into(), json!(self.id));
        Value::Object(out)
    }

    /// The candidate's whole content parts.
    fn parts(&self, c: &Candidate) -> Vec<Value> {
        let mut parts = Vec::new();
        if let Some(t) = &c.thought {
            parts.push(json!({ "text": t, "thought": true }));
        }
        if !c.text.is_empty() || self.calls.is_empty() {
            parts.push(json!({ "text": c.text }));
        }
        parts.extend(self.calls.iter().cloned());
        parts
    }

    /// The `generateContent` response.
    fn whole(&self) -> Value {
        match &self.block {
            Some(Block::Prompt(_)) => self.envelope(None, self.usage(false)),
            Some(Block::Candidate(reason)) => {
                let candidates = (0..self.candidates.len().max(1))
                    .map(|i| json!({ "finishReason": reason, "index": i }))
                    .collect();
                self.envelope(Some(candidates), self.usage(false))
            }
            None if self.candidates.is_empty() => self.envelope(None, self.usage(false)),
            None => {
                let candidates = self
                    .candidates
                    .iter()
                    .enumerate()
                    .map(|(i, c)| {
                        json!({
                            "content": { "role": "model", "parts": self.parts(c) },
                            "finishReason": c.finish,
                            "index": i,
                        })
                    })
                    .collect();
                self.envelope(Some(candidates), self.usage(true))
            }
        }
    }
}

/// The answer for a checked request: the rule's (or the generated) completions, its calls and
/// its block.
fn answer_for(shared: &Shared, checked: &Checked, model: &str, empty: bool) -> Answer {
    let format = if !checked.json {
        Format::Text
    } else if checked.schema.is_some() {
        Format::JsonSchema(checked.schema.as_ref())
    } else {
        Format::JsonObject
    };
    let conversation = shared
        .wants_conversation()
        .then_some(checked.conversation.as_str());
    let prompt = Prompt {
        system: checked.system.as_deref(),
        user: &checked.user,
        conversation,
    };
    let rule = shared
        .rules
        .iter()
        .find(|r| r.matcher.matches(&checked.user, conversation));
    let block = rule.and_then(|r| r.block.clone());
    let calls: Vec<Value> = rule
        .filter(|_| checked.declares_functions)
        .map(|r| r.tool_calls.iter().filter_map(function_call).collect())
        .unwrap_or_default();
    let candidates = if empty {
        Vec::new()
    } else {
        generate(
            shared,
            prompt,
            format,
            checked.n,
            checked.distinct,
            checked.max_words,
        )
        .into_iter()
        .map(|(text, finish)| {
            let thought = checked.thoughts.then(|| {
                let h = sha_u64(&[b"thought\0", checked.user.as_bytes()]);
                format!("Thinking it over ({:08x}).", (h >> 32) as u32)
            });
            Candidate {
                text,
                thought,
                finish: if finish == "length" {
                    "MAX_TOKENS"
                } else {
                    "STOP"
                },
            }
        })
        .collect()
    };
    Answer {
        candidates,
        calls,
        block,
        prompt_tokens: checked.prompt_tokens,
        model: model.to_owned(),
        id: format!("mock-{}", shared.seq.fetch_add(1, Ordering::Relaxed)),
    }
}

/// A `functionCall` part from a rule's OpenAI-shaped tool call.
fn function_call(call: &Value) -> Option<Value> {
    let function = call.get("function")?;
    let name = function.get("name")?.as_str()?;
    let args = function
        .get("arguments")
        .and_then(Value::as_str)
        .and_then(|a| serde_json::from_str::<Value>(a).ok())
        .unwrap_or_else(|| json!({}));
    Some(json!({ "functionCall": { "name": name, "args": args } }))
}

/// The chunks of a streamed answer: each candidate's text in pieces, then its last chunk with
/// its calls and finish reason; the usage totals ride the very last chunk.
fn stream_chunks(answer: &Answer) -> Vec<Value> {
    let partial = answer.usage(false);
    match &answer.block {
        Some(Block::Prompt(_)) => return vec![answer.envelope(None, partial)],
        Some(Block::Candidate(reason)) => {
            let c = json!({ "finishReason": reason, "index": 0 });
            return vec![answer.envelope(Some(vec![c]), partial)];
        }
        None => {}
    }
    if answer.candidates.is_empty() {
        return vec![answer.envelope(None, partial)];
    }
    let mut chunks = Vec::new();
    let last = answer.candidates.len() - 1;
    for (i, c) in answer.candidates.iter().enumerate() {
        let piece = |parts: Vec<Value>, finish: Option<&str>| {
            let mut cand = json!({ "content": { "role": "model", "parts": parts }, "index": i });
            if let Some(f) = finish {
                cand["finishReason"] = json!(f);
            }
            cand
        };
        if let Some(t) = &c.thought {
            chunks.push(answer.envelope(
                Some(vec![piece(
                    vec![json!({ "text": t, "thought": true })],
                    None,
                )]),
                partial.clone(),
            ));
        }
        let pieces = split_deltas(&c.text, STREAM_PIECES);
        let (body, tail) = match pieces.split_last() {
            Some((tail, body)) => (body, Some(*tail)),
            None => (&[][..], None),
        };
        for p in body {
            chunks.push(answer.envelope(
                Some(vec![piece(vec![json!({ "text": p })], None)]),
                partial.clone(),
            ));
        }
        let mut parts = vec![json!({ "text": tail.unwrap_or("") })];
        parts.extend(answer.calls.iter().cloned());
        let usage = if i == last {
            answer.usage(true)
        } else {
            partial.clone()
        };
        chunks.push(answer.envelope(Some(vec![piece(parts, Some(c.finish))]), usage));
    }
    chunks
}

/// The chunks as server-sent events, altered by a body fault.
fn sse_response(chunks: &[Value], fault: Option<&Fault>) -> Response {
    let event = |v: &Value| {
        let mut out = b"data: ".to_vec();
        out.extend_from_slice(v.to_string().as_bytes());
        out.extend_from_slice(b"\r\n\r\n");
        Bytes::from(out)
    };
    let mut events: Vec<Bytes> = chunks.iter().map(event).collect();
    match fault {
        Some(Fault::ResetMidBody) => {
            return reset(events.concat().into(), "text/event-stream", false);
        }
        Some(Fault::MalformedJson) => {
            if let Some(first) = events.first() {
                let mut broken = first[..first.len() / 2].to_vec();
                broken.extend_from_slice(b"\r\n\r\n");
                events = vec![Bytes::from(broken)];
            }
        }
        Some(Fault::TruncatedStream) => {
            // Everything before the first chunk with a finish reason: the stream ends with
            // every candidate open.
            let keep = chunks
                .iter()
                .position(|c| c.to_string().contains("\"finishReason\""))
                .unwrap_or(chunks.len());
            events.truncate(keep);
        }
        _ => {}
    }
    event_stream(events)
}

// ---------------------------------------------------------------------------------------------
// Faults and errors
// ---------------------------------------------------------------------------------------------

/// [`pick_fault`](super::server), with the faults that replace the response answered in
/// Google's error bodies.
async fn prelude(
    shared: &Shared,
    arrived: Instant,
    streaming: bool,
    user: &str,
) -> Result<Option<Fault>, Response> {
    let fault = pick_fault(shared, arrived, Api::Chat, streaming, user)
        .await
        .map_err(|ShuttingDown| shutting_down())?;
    match fault {
        Some(Fault::Status(code)) => {
            let status = StatusCode::from_u16(effective_status(code))
                .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let message = match status.as_u16() {
                400 => "Request contains an invalid argument. (mock fault)".to_owned(),
                401 => "Request had invalid authentication credentials. (mock fault)".to_owned(),
                403 => "The caller does not have permission. (mock fault)".to_owned(),
                404 => "Requested entity was not found. (mock fault)".to_owned(),
                503 => "The model is overloaded. Please try again later. (mock fault)".to_owned(),
                s => format!("An internal error has occurred. (mock fault: HTTP {s})"),
            };
            Err(google_error(status, &message))
        }
        Some(Fault::RateLimited { retry_after }) => {
            let secs = seconds_text(retry_after);
            let body = json!({"error": {
                "code": 429,
                "message": "Resource has been exhausted (e.g. check quota). (mock fault)",
                "status": "RESOURCE_EXHAUSTED",
                "details": [{
                    "@type": "type.googleapis.com/google.rpc.RetryInfo",
                    "retryDelay": format!("{secs}s"),
                }],
            }});
            let mut resp = full_response(
                StatusCode::TOO_MANY_REQUESTS,
                "application/json",
                body.to_string().into_bytes(),
            );
            if let Ok(v) = HeaderValue::from_str(&secs) {
                resp.headers_mut().insert(header::RETRY_AFTER, v);
            }
            Err(resp)
        }
        other => Ok(other),
    }
}

/// Google's status name for an HTTP status.
fn status_name(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 => "INVALID_ARGUMENT",
        401 => "UNAUTHENTICATED",
        403 => "PERMISSION_DENIED",
        404 => "NOT_FOUND",
        409 => "ABORTED",
        429 => "RESOURCE_EXHAUSTED",
        499 => "CANCELLED",
        500 => "INTERNAL",
        501 => "UNIMPLEMENTED",
        503 => "UNAVAILABLE",
        504 => "DEADLINE_EXCEEDED",
        _ => "UNKNOWN",
    }
}

/// `{"error": {"code", "message", "status"}}` with this status.
fn google_error(status: StatusCode, message: &str) -> Response {
    let body = json!({"error": {
        "code": status.as_u16(),
        "message": message,
        "status": status_name(status),
    }});
    full_response(status, "application/json", body.to_string().into_bytes())
}

fn shutting_down() -> Response {
    google_error(
        StatusCode::SERVICE_UNAVAILABLE,
        "The mock server is shutting down.",
    )
}

fn not_found_path(path: &str) -> Response {
    google_error(
        StatusCode::NOT_FOUND,
        &format!("The requested URL {path} was not found on this server."),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schemas_outside_geminis_subset_are_found() {
        assert_eq!(
            foreign_schema_key(
                &json!({"type": "object", "properties": {"a": {"type": "string"}}}),
                "s",
                0
            ),
            None
        );
        assert_eq!(
            foreign_schema_key(
                &json!({"type": "object", "properties": {"a": {"type": "object", "additionalProperties": false}}}),
                "s",
                0
            )
            .as_deref(),
            Some("s.properties[a].additionalProperties")
        );
        assert!(foreign_schema_key(&json!({"type": ["string", "null"]}), "s", 0).is_some());
    }

    #[test]
    fn base64_and_requests_are_checked() {
        assert!(is_base64("iVBORw0KGgo="));
        assert!(!is_base64("not base64!"));
        assert!(!is_base64(""));
        let ok = check(br#"{"contents": [{"role": "user", "parts": [{"text": "hi"}]}]}"#).unwrap();
        assert_eq!((ok.user.as_str(), ok.n), ("hi", 1));
        for (body, needle) in [
            (r#"{"messages": []}"#, "Unknown name \"messages\""),
            (r#"{"contents": []}"#, "contents is not specified"),
            (
                r#"{"contents": [{"role": "assistant", "parts": [{"text": "x"}]}]}"#,
                "valid role",
            ),
            (r#"{"contents": [{"parts": []}]}"#, "must not be empty"),
            (
                r#"{"contents": [{"parts": [{"inline_data": {"mime_type": "image/png", "data": "%%"}}]}]}"#,
                "Base64",
            ),
            (
                r#"{"contents": [{"parts": [{"text": "x"}]}], "generationConfig": {"candidateCount": 9}}"#,
                "candidate_count",
            ),
            (
                r#"{"contents": [{"parts": [{"text": "x"}]}], "tools": [{"functionDeclarations": [{"name": "f", "parameters": {"type": "object", "properties": {}}}]}]}"#,
                "non-empty",
            ),
        ] {
            let err = check(body.as_bytes()).err().unwrap_or_default();
            assert!(err.contains(needle), "{body}: {err}");
        }
    }
}
