//! Google AI Studio's Gemini API (`gemini/<model>`): `POST {base}/models/{model}:generateContent`
//! and `:streamGenerateContent?alt=sse`, the key in `x-goog-api-key`.
//!
//! # What is mapped
//!
//! Request (an [`LmRequest`] → a `GenerateContentRequest`):
//!
//! - system messages → `systemInstruction.parts` (text only); user and assistant messages →
//!   `contents` with roles `user` and `model`, consecutive messages of one role merged into one
//!   turn (Gemini wants the roles to alternate);
//! - a conversation's native tool calls, as DSPy's native client sends them: an assistant
//!   message's `tool_calls` → `{"functionCall": {name, args, id}}` parts after its text,
//!   consecutive `tool` messages → one `user` turn of `{"functionResponse": {name, response:
//!   {result}, id}}` parts (not merged with a user message's text);
//! - text parts → `{"text"}`; images, audio and files given as `data:` URIs →
//!   `inline_data {mime_type, data}`; `http(s)://`, `gs://` URLs and uploaded file ids →
//!   `file_data {file_uri, mime_type}` (the type guessed from the extension, left out when it
//!   cannot be told); an image's OpenAI `detail` has no per-part field and is not sent;
//! - `temperature`, `max_tokens` → `generationConfig.temperature`, `maxOutputTokens`; `stop`
//!   → `stopSequences`; `n > 1` → `candidateCount`; `seed`; `top_p`, `top_k`,
//!   `presence_penalty`, `frequency_penalty`, `logprobs`/`top_logprobs` from the request's
//!   extra parameters → `topP`, `topK`, `presencePenalty`, `frequencyPenalty`,
//!   `responseLogprobs`/`logprobs`;
//! - `response_format`: `json_object` → `responseMimeType: application/json`; `json_schema` →
//!   the same plus the schema, as `responseSchema` when it fits Gemini's OpenAPI subset and as
//!   `responseJsonSchema` (full JSON Schema) when it does not — `additionalProperties`, `$ref`,
//!   `const`, a list of types… — as DSPy's vendored client (lm15) and LiteLLM choose. Nothing
//!   is stripped from a schema;
//! - `tools` (OpenAI's `[{"type": "function", "function": {name, description, parameters}}]`)
//!   → `tools: [{functionDeclarations}]`, each schema as `parameters` or, when it leaves
//!   Gemini's subset, `parametersJsonSchema` (the same rule); a function without arguments
//!   sends no schema (Gemini rejects an object schema with no properties). `tool_choice`
//!   `auto`/`none`/`required`/`{"function": {"name"}}` → `toolConfig.functionCallingConfig`
//!   `AUTO`/`NONE`/`ANY`/`ANY` with `allowedFunctionNames`. `parallel_tool_calls` has no
//!   Gemini field (the model may always return several calls) and is dropped;
//! - `reasoning_effort` → `generationConfig.thinkingConfig` as DSPy's lm15 maps it: Gemini 3
//!   models get `thinkingLevel` (`xhigh`/`max` clamped to `high`; `none` to `minimal`, the
//!   lowest, as they cannot turn thinking off), others `thinkingBudget` (`minimal` 1024, `low`
//!   2048, `medium` 8192, `high` 16384, `xhigh` 24576, `max` 32768; `none`/`disable` 0), with
//!   `includeThoughts` so the thoughts come back as `reasoning_content`;
//! - Gemini's own fields pass through: `safetySettings`, `cachedContent`, `labels`,
//!   `serviceTier`, and `generationConfig` / `thinkingConfig` objects, whose keys win over the
//!   ones mapped above.
//!
//! Response: each candidate's non-thought `text` parts joined → [`Choice::text`]; `thought`
//! parts → [`Choice::reasoning_content`]; `functionCall` parts → [`Choice::tool_calls`]
//! (arguments as JSON text; a call without an id gets `tool_call_<i>`, `i` counting the
//! candidate's calls, as lm15 names them); `finishReason` `STOP` → stop, `MAX_TOKENS` →
//! length, the content filters (`SAFETY`, `RECITATION`, `BLOCKLIST`, `PROHIBITED_CONTENT`,
//! `SPII`, `IMAGE_SAFETY`, …) → content filter, a candidate with calls → tool calls;
//! `usageMetadata` → [`Usage`] (completion tokens are `candidatesTokenCount` plus
//! `thoughtsTokenCount`: thinking is billed as output). Streams: every `data:` is a whole
//! `GenerateContentResponse`; its text parts become deltas of the candidate's index, its finish
//! reason a finish, and the usage of the chunk that finishes the last open candidate the usage
//! event. A stream ends without a marker: it is complete once every candidate it started has a
//! finish reason; one cut before that is an error. Streamed thoughts and calls are not
//! delivered ([`StreamEvent`] has no event for them; a plain call returns them).
//!
//! # What is refused
//!
//! With [`LmError::UnsupportedFeature`](crate::LmError::UnsupportedFeature), before anything is
//! sent: text-completion models (`model_type="text"`: Gemini has no such endpoint); images,
//! audio or files in a system message (`systemInstruction` takes text); a request with no user
//! or assistant message; `data:` URIs that are not base64; tools that are not functions;
//! unknown `tool_choice` and `reasoning_effort` values; and any other extra parameter — Gemini
//! rejects fields it does not know, and an OpenAI parameter with no Gemini field must not be
//! dropped silently (LiteLLM refuses them too unless told to drop them).
//!
//! # Errors inside a success answer
//!
//! Gemini answers 200 when it blocks a prompt (`promptFeedback.blockReason`, no candidates) or
//! a candidate (`finishReason` `SAFETY`, `RECITATION`, `PROHIBITED_CONTENT`, … with no text and
//! no call). Both become [`LmError::Http`](crate::LmError::Http) with status 200, the reason as
//! the provider code and the kind [`LmErrorKind::InvalidRequest`](crate::LmErrorKind) (DSPy's
//! `LMInvalidRequestError`): this is what DSPy 3.4.1's Gemini client raises, the request's
//! content is what was refused, and sending it again would be refused again — so it is not
//! retried, and it is not an empty completion a program would parse as an answer. A candidate
//! cut by a filter after some text keeps its text with the content-filter finish reason. A
//! body with no candidates and no block reason is [`LmError::Decode`](crate::LmError::Decode)
//! (`LMUnexpectedError`), as a response without choices is for OpenAI.

use super::{
    Chunk, Decoded, Failure, Paths, Protocol, StreamReader, Target, Unusable, failure_from,
};
use crate::provider::ModelType;
use crate::secret::ApiKey;
use crate::stream::StreamEvent;
use crate::types::{
    Choice, Content, ContentPart, FinishReason, LmRequest, Message, ResponseFormat, Role, ToolCall,
    Usage,
};
use serde::Deserialize;
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;

/// The Gemini protocol.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Gemini;

impl Protocol for Gemini {
    fn name(&self) -> &'static str {
        "gemini"
    }

    fn paths(&self, target: Target<'_>) -> Paths {
        let model = model_path(target.model_id);
        Paths {
            call: format!("{model}:generateContent"),
            stream: format!("{model}:streamGenerateContent?alt=sse"),
            embeddings: None,
        }
    }

    fn auth(&self, key: &ApiKey) -> (&'static str, String) {
        ("x-goog-api-key", key.expose().to_string())
    }

    fn body(
        &self,
        target: Target<'_>,
        request: &LmRequest,
        _stream: bool,
    ) -> Result<Vec<u8>, String> {
        if target.model_type == ModelType::Text {
            return Err(
                "model_type \"text\": Gemini has no text-completion endpoint (use the chat model type)"
                    .to_string(),
            );
        }
        let body = request_body(target.model_id, request)?;
        serde_json::to_vec(&body).map_err(|e| format!("the request cannot be serialized: {e}"))
    }

    fn response(&self, target: Target<'_>, body: &[u8]) -> Result<Decoded, String> {
        self.decode(target, body).map_err(|e| match e {
            Unusable::Unreadable(message) => message,
            Unusable::Failed { failure, .. } => failure.message,
        })
    }

    fn decode(&self, _target: Target<'_>, body: &[u8]) -> Result<Decoded, Unusable> {
        decode_response(body)
    }

    fn stream(&self, _target: Target<'_>) -> Box<dyn StreamReader> {
        Box::new(GeminiStream::default())
    }

    fn error(&self, body: &str) -> Failure {
        gemini_failure(body)
    }

    fn retry_after_in_body(&self, body: &str) -> Option<std::time::Duration> {
        retry_delay(body)
    }
}

/// `models/{id}` (an id that already starts with `models/` or `tunedModels/` is kept), with the
/// characters a path segment cannot hold escaped.
fn model_path(id: &str) -> String {
    let mut escaped = String::with_capacity(id.len() + 7);
    for c in id.chars() {
        match c {
            'A'..='Z' | 'a'..='z' | '0'..='9' | '-' | '.' | '_' | '~' | '/' | '@' => {
                escaped.push(c);
            }
            other => {
                let mut buf = [0u8; 4];
                for b in other.encode_utf8(&mut buf).bytes() {
                    escaped.push_str(&format!("%{b:02X}"));
                }
            }
        }
    }
    if escaped.starts_with("models/") || escaped.starts_with("tunedModels/") {
        escaped
    } else {
        format!("models/{escaped}")
    }
}

// ---------------------------------------------------------------------------------------------
// Request
// ---------------------------------------------------------------------------------------------

/// Extra parameters this protocol maps or passes through; any other is refused.
const KNOWN_EXTRA: &[&str] = &[
    "temperature",
    "max_tokens",
    "max_completion_tokens",
    "n",
    "seed",
    "stop",
    "response_format",
    "top_p",
    "top_k",
    "presence_penalty",
    "frequency_penalty",
    "logprobs",
    "top_logprobs",
    "tools",
    "tool_choice",
    "parallel_tool_calls",
    "reasoning_effort",
    "safetySettings",
    "cachedContent",
    "labels",
    "serviceTier",
    "generationConfig",
    "thinkingConfig",
];

/// Gemini's top-level fields passed through as they are.
const PASSTHROUGH: &[&str] = &["safetySettings", "cachedContent", "labels", "serviceTier"];

/// The `GenerateContentRequest` for `request`, or what it needs that Gemini cannot carry.
pub(crate) fn request_body(model_id: &str, request: &LmRequest) -> Result<Value, String> {
    let extra = &request.extra;
    if let Some(key) = extra.keys().find(|k| !KNOWN_EXTRA.contains(&k.as_str())) {
        return Err(format!(
            "the parameter `{key}`: Gemini has no such field (mapped: temperature, max_tokens, n, seed, stop, response_format, top_p, top_k, presence_penalty, frequency_penalty, logprobs, top_logprobs, tools, tool_choice, parallel_tool_calls, reasoning_effort; passed through: safetySettings, cachedContent, labels, serviceTier, generationConfig, thinkingConfig)"
        ));
    }
    let mut body = Map::new();
    let (system, contents) = contents(&request.messages)?;
    body.insert("contents".into(), Value::Array(contents));
    if let Some(system) = system {
        body.insert("systemInstruction".into(), system);
    }
    let config = generation_config(model_id, request)?;
    if !config.is_empty() {
        body.insert("generationConfig".into(), Value::Object(config));
    }
    if let Some(tools) = extra.get("tools").filter(|t| !t.is_null()) {
        let declarations = function_declarations(tools)?;
        if !declarations.is_empty() {
            body.insert(
                "tools".into(),
                json!([{ "functionDeclarations": declarations }]),
            );
        }
    }
    if let Some(choice) = extra.get("tool_choice").filter(|t| !t.is_null()) {
        body.insert("toolConfig".into(), tool_config(choice)?);
    }
    for key in PASSTHROUGH {
        if let Some(v) = extra.get(*key) {
            body.insert((*key).to_string(), v.clone());
        }
    }
    Ok(Value::Object(body))
}

/// `systemInstruction` and `contents`.
fn contents(messages: &[Message]) -> Result<(Option<Value>, Vec<Value>), String> {
    let mut system_parts = Vec::new();
    // Each turn: its role, its parts, and whether it holds tool results (a tool results turn
    // is not merged with a user message's text, as DSPy's native client keeps them apart).
    let mut turns: Vec<(&'static str, Vec<Value>, bool)> = Vec::new();
    for (i, m) in messages.iter().enumerate() {
        match m.role {
            Role::System => {
                if m.content.has_media() {
                    return Err(format!(
                        "message {i}: a system message with images, audio or files (Gemini's systemInstruction takes text only; put the media in a user message)"
                    ));
                }
                system_parts.push(json!({ "text": m.content.text() }));
            }
            Role::Tool => {
                let part = function_response(i, m, &messages[..i])?;
                match turns.last_mut() {
                    Some(("user", existing, true)) => existing.push(part),
                    _ => turns.push(("user", vec![part], true)),
                }
            }
            Role::User | Role::Assistant => {
                let role = if m.role == Role::User {
                    "user"
                } else {
                    "model"
                };
                let mut parts =
                    if m.role == Role::Assistant && !m.tool_calls.is_empty() && m.content == "" {
                        Vec::new()
                    } else {
                        parts(&m.content).map_err(|e| format!("message {i}: {e}"))?
                    };
                for (j, call) in m.tool_calls.iter().enumerate() {
                    let args = match serde_json::from_str::<Value>(&call.arguments) {
                        Ok(args @ Value::Object(_)) => args,
                        _ => {
                            return Err(format!(
                                "message {i}, tool call {j} (`{}`): its arguments are not a JSON object, which a functionCall's `args` must be",
                                call.name
                            ));
                        }
                    };
                    parts.push(
                        json!({"functionCall": {"name": call.name, "args": args, "id": call.id}}),
                    );
                }
                match turns.last_mut() {
                    Some((last, existing, false)) if *last == role => existing.extend(parts),
                    _ => turns.push((role, parts, false)),
                }
            }
        }
    }
    if turns.is_empty() {
        return Err(
            "a request without user or assistant messages (Gemini needs at least one turn in `contents`)"
                .to_string(),
        );
    }
    let system = (!system_parts.is_empty()).then(|| json!({ "parts": system_parts }));
    let contents = turns
        .into_iter()
        .map(|(role, parts, _)| json!({ "role": role, "parts": parts }))
        .collect();
    Ok((system, contents))
}

/// A `tool` message as a `functionResponse` part, as DSPy's native client writes it: `{"name",
/// "response": {"result": text}, "id"}`; the name, when the message has none, is that of the
/// call it answers in `earlier`.
fn function_response(i: usize, m: &Message, earlier: &[Message]) -> Result<Value, String> {
    let id = m.tool_call_id.as_deref().ok_or_else(|| {
        format!("message {i} (tool) has no tool_call_id: a functionResponse must name its call")
    })?;
    if m.content.has_media() {
        return Err(format!(
            "message {i} (tool) holds images, audio or files: dspex sends a tool result's text only"
        ));
    }
    let name = match &m.name {
        Some(name) => name.as_str(),
        None => earlier
            .iter()
            .rev()
            .flat_map(|e| e.tool_calls.iter())
            .find(|call| call.id == id)
            .map(|call| call.name.as_str())
            .ok_or_else(|| {
                format!("message {i} (tool) names no tool, and no earlier call has the id `{id}`")
            })?,
    };
    Ok(json!({"functionResponse": {
        "name": name,
        "response": {"result": m.content.text()},
        "id": id,
    }}))
}

/// The parts of one message.
fn parts(content: &Content) -> Result<Vec<Value>, String> {
    match content {
        Content::Text(text) => Ok(vec![json!({ "text": text })]),
        Content::Parts(parts) => parts.iter().map(part).collect(),
    }
}

fn part(part: &ContentPart) -> Result<Value, String> {
    match part {
        ContentPart::Text { text } => Ok(json!({ "text": text })),
        ContentPart::ImageUrl { image_url } => media(&image_url.url, None, "an image"),
        ContentPart::InputAudio { input_audio } => {
            if input_audio.data.is_empty() {
                return Err("an audio part with no data".to_string());
            }
            Ok(json!({ "inline_data": {
                "mime_type": audio_mime(&input_audio.format),
                "data": input_audio.data,
            }}))
        }
        ContentPart::File { file } => {
            let from_name = file.filename.as_deref().and_then(guess_mime);
            if let Some(data) = &file.file_data {
                media(data, from_name, "a file")
            } else if let Some(id) = &file.file_id {
                let mut data = Map::new();
                data.insert("file_uri".into(), Value::String(id.clone()));
                if let Some(mime) = from_name.or_else(|| guess_mime(id)) {
                    data.insert("mime_type".into(), Value::String(mime.to_string()));
                }
                Ok(json!({ "file_data": data }))
            } else {
                Err("a file part with neither file_data nor file_id".to_string())
            }
        }
    }
}

/// `inline_data` for a `data:` URI, `file_data` for a URL.
fn media(url: &str, mime_hint: Option<&'static str>, what: &str) -> Result<Value, String> {
    if let Some(rest) = url.strip_prefix("data:") {
        let (meta, data) = rest
            .split_once(',')
            .ok_or_else(|| format!("{what} as a data: URI without a comma"))?;
        let Some(mime) = meta.strip_suffix(";base64") else {
            return Err(format!(
                "{what} as a data: URI that is not base64 (`data:<type>;base64,<data>`)"
            ));
        };
        let mime = if mime.is_empty() {
            mime_hint.unwrap_or("application/octet-stream")
        } else {
            mime
        };
        return Ok(json!({ "inline_data": { "mime_type": mime, "data": data } }));
    }
    let lower = url.to_ascii_lowercase();
    if !(lower.starts_with("https://")
        || lower.starts_with("http://")
        || lower.starts_with("gs://"))
    {
        return Err(format!(
            "{what} at `{}`: Gemini takes a data: URI or an http(s):// or gs:// URL",
            crate::error::excerpt(url, 80)
        ));
    }
    let mut data = Map::new();
    data.insert("file_uri".into(), Value::String(url.to_string()));
    if let Some(mime) = mime_hint.or_else(|| guess_mime(url)) {
        data.insert("mime_type".into(), Value::String(mime.to_string()));
    }
    Ok(json!({ "file_data": data }))
}

/// The MIME type of an audio format name (`wav`, `mp3`, or a type already).
fn audio_mime(format: &str) -> String {
    let f = format.trim().to_ascii_lowercase();
    if f.contains('/') {
        return f;
    }
    match f.as_str() {
        "mp3" | "mpeg" => "audio/mp3".to_string(),
        "m4a" => "audio/mp4".to_string(),
        other => format!("audio/{other}"),
    }
}

/// The MIME type Gemini takes for a name's extension (the query and fragment of a URL
/// ignored), if it is a common one.
fn guess_mime(name: &str) -> Option<&'static str> {
    let path = name.split(['?', '#']).next().unwrap_or(name);
    let file = path.rsplit('/').next().unwrap_or(path);
    let (_, ext) = file.rsplit_once('.')?;
    Some(match ext.to_ascii_lowercase().as_str() {
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "webp" => "image/webp",
        "gif" => "image/gif",
        "heic" => "image/heic",
        "heif" => "image/heif",
        "pdf" => "application/pdf",
        "txt" => "text/plain",
        "md" => "text/md",
        "html" | "htm" => "text/html",
        "csv" => "text/csv",
        "xml" => "text/xml",
        "wav" => "audio/wav",
        "mp3" => "audio/mp3",
        "aac" => "audio/aac",
        "ogg" => "audio/ogg",
        "flac" => "audio/flac",
        "aiff" => "audio/aiff",
        "mp4" => "video/mp4",
        "mpeg" | "mpg" => "video/mpeg",
        "mov" => "video/mov",
        "webm" => "video/webm",
        _ => return None,
    })
}

/// `generationConfig`.
fn generation_config(model_id: &str, request: &LmRequest) -> Result<Map<String, Value>, String> {
    let extra = &request.extra;
    let given = |key: &str| extra.get(key).filter(|v| !v.is_null());
    let mut c = Map::new();
    let number = |key: &str, v: &Value| -> Result<Value, String> {
        if v.is_number() {
            Ok(v.clone())
        } else {
            Err(format!("the parameter `{key}` must be a number, not {v}"))
        }
    };
    match given("temperature") {
        Some(v) => {
            c.insert("temperature".into(), number("temperature", v)?);
        }
        None => {
            if let Some(t) = request.temperature {
                c.insert("temperature".into(), json!(t));
            }
        }
    }
    match given("max_completion_tokens").or_else(|| given("max_tokens")) {
        Some(v) => {
            c.insert("maxOutputTokens".into(), number("max_tokens", v)?);
        }
        None => {
            if let Some(m) = request.max_tokens {
                c.insert("maxOutputTokens".into(), json!(m));
            }
        }
    }
    let n = match given("n") {
        Some(v) => v
            .as_u64()
            .ok_or_else(|| format!("the parameter `n` must be a positive integer, not {v}"))?,
        None => u64::from(request.n.unwrap_or(1)),
    };
    if n > 1 {
        c.insert("candidateCount".into(), json!(n));
    }
    match given("seed") {
        Some(v) => {
            c.insert("seed".into(), number("seed", v)?);
        }
        None => {
            if let Some(s) = request.seed {
                c.insert("seed".into(), json!(s));
            }
        }
    }
    match given("stop") {
        Some(Value::String(s)) => {
            c.insert("stopSequences".into(), json!([s]));
        }
        Some(v @ Value::Array(_)) => {
            c.insert("stopSequences".into(), v.clone());
        }
        Some(v) => {
            return Err(format!(
                "the parameter `stop` must be text or a list, not {v}"
            ));
        }
        None => {
            if !request.stop.is_empty() {
                c.insert("stopSequences".into(), json!(request.stop));
            }
        }
    }
    for (from, to) in [
        ("top_p", "topP"),
        ("top_k", "topK"),
        ("presence_penalty", "presencePenalty"),
        ("frequency_penalty", "frequencyPenalty"),
    ] {
        if let Some(v) = given(from) {
            c.insert(to.into(), number(from, v)?);
        }
    }
    match given("logprobs") {
        Some(Value::Bool(true)) => {
            c.insert("responseLogprobs".into(), Value::Bool(true));
            if let Some(v) = given("top_logprobs") {
                c.insert("logprobs".into(), number("top_logprobs", v)?);
            }
        }
        Some(Value::Bool(false)) | None => {}
        Some(v) => {
            return Err(format!(
                "the parameter `logprobs` must be true or false, not {v}"
            ));
        }
    }
    let format = match given("response_format") {
        Some(v) => Some(
            serde_json::from_value::<ResponseFormat>(v.clone())
                .map_err(|e| format!("the parameter `response_format`: {e}"))?,
        ),
        None => request.response_format.clone(),
    };
    match format {
        None | Some(ResponseFormat::Text) => {}
        Some(ResponseFormat::JsonObject) => {
            c.insert("responseMimeType".into(), json!("application/json"));
        }
        Some(ResponseFormat::JsonSchema { json_schema }) => {
            c.insert("responseMimeType".into(), json!("application/json"));
            match json_schema.get("schema").filter(|s| s.is_object()) {
                Some(schema) => {
                    let key = if fits_openapi_subset(schema) {
                        "responseSchema"
                    } else {
                        "responseJsonSchema"
                    };
                    c.insert(key.into(), schema.clone());
                }
                None => {
                    return Err(
                        "a json_schema response_format without a `schema` object".to_string()
                    );
                }
            }
        }
    }
    if let Some(effort) = given("reasoning_effort") {
        c.insert("thinkingConfig".into(), thinking_config(model_id, effort)?);
    }
    if let Some(v) = given("thinkingConfig") {
        c.insert("thinkingConfig".into(), v.clone());
    }
    match given("generationConfig") {
        Some(Value::Object(own)) => {
            for (k, v) in own {
                c.insert(k.clone(), v.clone());
            }
        }
        Some(v) => return Err(format!("`generationConfig` must be an object, not {v}")),
        None => {}
    }
    Ok(c)
}

/// Thinking budgets per effort, for the models before Gemini 3 (lm15's table).
const THINKING_BUDGETS: [(&str, u32); 6] = [
    ("minimal", 1024),
    ("low", 2048),
    ("medium", 8192),
    ("high", 16384),
    ("xhigh", 24576),
    ("max", 32768),
];

/// `thinkingConfig` for a `reasoning_effort`.
fn thinking_config(model_id: &str, effort: &Value) -> Result<Value, String> {
    let Some(effort) = effort.as_str() else {
        return Err(format!("`reasoning_effort` must be text, not {effort}"));
    };
    let id = model_id.to_ascii_lowercase();
    let id = id.strip_prefix("models/").unwrap_or(&id);
    let levels = id.starts_with("gemini-3");
    let off = matches!(effort, "none" | "disable" | "off");
    if levels {
        let level = match effort {
            _ if off => "minimal",
            "minimal" | "low" | "medium" | "high" => effort,
            "xhigh" | "max" => "high",
            other => return Err(unknown_effort(other)),
        };
        return Ok(json!({ "thinkingLevel": level, "includeThoughts": !off }));
    }
    if off {
        return Ok(json!({ "thinkingBudget": 0 }));
    }
    let budget = THINKING_BUDGETS
        .iter()
        .find(|(name, _)| *name == effort)
        .map(|(_, b)| *b)
        .ok_or_else(|| unknown_effort(effort))?;
    Ok(json!({ "thinkingBudget": budget, "includeThoughts": true }))
}

fn unknown_effort(effort: &str) -> String {
    format!(
        "`reasoning_effort` \"{effort}\" (Gemini takes none, disable, minimal, low, medium, high, xhigh or max)"
    )
}

/// Keys of Gemini's `Schema` (the OpenAPI 3.0 subset `responseSchema` and `parameters` take).
const OPENAPI_KEYS: &[&str] = &[
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

/// Whether a JSON schema uses only what Gemini's `Schema` type holds (else it goes as
/// `responseJsonSchema` / `parametersJsonSchema`, which take full JSON Schema).
fn fits_openapi_subset(schema: &Value) -> bool {
    fn walk(schema: &Value, depth: usize) -> bool {
        let Value::Object(obj) = schema else {
            return false;
        };
        if depth > 64 {
            return false;
        }
        obj.iter().all(|(key, value)| match key.as_str() {
            "type" => value.is_string(),
            "properties" => value
                .as_object()
                .is_some_and(|props| props.values().all(|p| walk(p, depth + 1))),
            "items" => walk(value, depth + 1),
            "anyOf" => value
                .as_array()
                .is_some_and(|all| all.iter().all(|s| walk(s, depth + 1))),
            other => OPENAPI_KEYS.contains(&other),
        })
    }
    walk(schema, 0)
}

/// `functionDeclarations` from OpenAI-shaped tools.
fn function_declarations(tools: &Value) -> Result<Vec<Value>, String> {
    let Value::Array(tools) = tools else {
        return Err(format!("`tools` must be a list, not {tools}"));
    };
    let mut out = Vec::with_capacity(tools.len());
    for (i, tool) in tools.iter().enumerate() {
        let kind = tool
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or("function");
        if kind != "function" {
            return Err(format!(
                "tool {i} of type `{kind}`: Gemini's functionDeclarations take functions only"
            ));
        }
        let function = tool.get("function").unwrap_or(tool);
        let name = function
            .get("name")
            .and_then(Value::as_str)
            .filter(|n| !n.is_empty())
            .ok_or_else(|| format!("tool {i} has no `function.name`"))?;
        let mut decl = Map::new();
        decl.insert("name".into(), Value::String(name.to_string()));
        if let Some(d) = function.get("description").and_then(Value::as_str) {
            decl.insert("description".into(), Value::String(d.to_string()));
        }
        if let Some(params) = function.get("parameters").filter(|p| !p.is_null()) {
            let no_arguments = params.get("type").and_then(Value::as_str) == Some("object")
                && params
                    .get("properties")
                    .and_then(Value::as_object)
                    .is_none_or(Map::is_empty);
            if !no_arguments {
                let key = if fits_openapi_subset(params) {
                    "parameters"
                } else {
                    "parametersJsonSchema"
                };
                decl.insert(key.into(), params.clone());
            }
        }
        out.push(Value::Object(decl));
    }
    Ok(out)
}

/// `toolConfig` from OpenAI's `tool_choice`.
fn tool_config(choice: &Value) -> Result<Value, String> {
    let mode = |m: &str| Ok(json!({ "functionCallingConfig": { "mode": m } }));
    match choice {
        Value::String(s) => match s.as_str() {
            "auto" => mode("AUTO"),
            "none" => mode("NONE"),
            "required" | "any" => mode("ANY"),
            other => Err(format!(
                "`tool_choice` \"{other}\" (Gemini takes auto, none, required or a function)"
            )),
        },
        Value::Object(o) => {
            let name = o
                .get("function")
                .and_then(|f| f.get("name"))
                .and_then(Value::as_str)
                .ok_or_else(|| format!("`tool_choice` {choice} names no function"))?;
            Ok(json!({ "functionCallingConfig": {
                "mode": "ANY",
                "allowedFunctionNames": [name],
            }}))
        }
        other => Err(format!(
            "`tool_choice` must be text or an object, not {other}"
        )),
    }
}

// ---------------------------------------------------------------------------------------------
// Response
// ---------------------------------------------------------------------------------------------

/// A `GenerateContentResponse` (a whole answer, or one chunk of a stream).
#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct ApiResponse {
    #[serde(default)]
    candidates: Option<Vec<ApiCandidate>>,
    #[serde(default)]
    prompt_feedback: Option<ApiFeedback>,
    #[serde(default)]
    usage_metadata: Option<ApiUsage>,
    #[serde(default)]
    model_version: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct ApiCandidate {
    #[serde(default)]
    content: Option<ApiContent>,
    #[serde(default)]
    finish_reason: Option<String>,
    #[serde(default)]
    finish_message: Option<String>,
    #[serde(default)]
    index: Option<u32>,
}

#[derive(Deserialize, Default)]
struct ApiContent {
    #[serde(default)]
    parts: Option<Vec<ApiPart>>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct ApiPart {
    #[serde(default)]
    text: Option<String>,
    #[serde(default)]
    thought: Option<bool>,
    #[serde(default)]
    function_call: Option<ApiFunctionCall>,
}

#[derive(Deserialize, Default)]
struct ApiFunctionCall {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    args: Option<Value>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct ApiFeedback {
    #[serde(default)]
    block_reason: Option<String>,
    #[serde(default)]
    block_reason_message: Option<String>,
}

#[derive(Deserialize, Default, Clone, Copy)]
#[serde(rename_all = "camelCase")]
struct ApiUsage {
    #[serde(default)]
    prompt_token_count: Option<u64>,
    #[serde(default)]
    candidates_token_count: Option<u64>,
    #[serde(default)]
    thoughts_token_count: Option<u64>,
    #[serde(default)]
    total_token_count: Option<u64>,
}

impl From<ApiUsage> for Usage {
    fn from(u: ApiUsage) -> Usage {
        let prompt = u.prompt_token_count.unwrap_or(0);
        let completion = u
            .candidates_token_count
            .unwrap_or(0)
            .saturating_add(u.thoughts_token_count.unwrap_or(0));
        Usage {
            prompt_tokens: prompt,
            completion_tokens: completion,
            total_tokens: u
                .total_token_count
                .unwrap_or(prompt.saturating_add(completion)),
        }
    }
}

/// Finish reasons of a candidate the provider stopped (lm15's list): with nothing generated,
/// the call failed.
const BLOCKING_FINISH: &[&str] = &[
    "SAFETY",
    "RECITATION",
    "LANGUAGE",
    "BLOCKLIST",
    "PROHIBITED_CONTENT",
    "SPII",
    "MALFORMED_FUNCTION_CALL",
    "IMAGE_SAFETY",
    "IMAGE_PROHIBITED_CONTENT",
    "IMAGE_OTHER",
    "NO_IMAGE",
    "IMAGE_RECITATION",
    "UNEXPECTED_TOOL_CALL",
    "TOO_MANY_TOOL_CALLS",
    "MISSING_THOUGHT_SIGNATURE",
    "MALFORMED_RESPONSE",
];

/// Gemini's `finishReason` as a [`FinishReason`]; `None` for an unspecified one.
fn finish_reason(reason: &str, has_calls: bool) -> Option<FinishReason> {
    if has_calls && matches!(reason, "STOP" | "") {
        return Some(FinishReason::ToolCalls);
    }
    Some(match reason {
        "" | "FINISH_REASON_UNSPECIFIED" => return None,
        "STOP" => FinishReason::Stop,
        "MAX_TOKENS" => FinishReason::Length,
        "SAFETY"
        | "RECITATION"
        | "BLOCKLIST"
        | "PROHIBITED_CONTENT"
        | "SPII"
        | "IMAGE_SAFETY"
        | "IMAGE_PROHIBITED_CONTENT"
        | "IMAGE_RECITATION" => FinishReason::ContentFilter,
        other => FinishReason::Other(other.to_string()),
    })
}

/// The failure of a prompt Gemini blocked (`promptFeedback.blockReason`), if it did.
fn prompt_blocked(feedback: Option<&ApiFeedback>) -> Option<Failure> {
    let feedback = feedback?;
    let reason = feedback
        .block_reason
        .as_deref()
        .filter(|r| !r.is_empty() && *r != "BLOCK_REASON_UNSPECIFIED")?;
    let detail = feedback
        .block_reason_message
        .as_deref()
        .map(|m| format!(": {m}"))
        .unwrap_or_default();
    Some(Failure {
        code: Some(reason.to_string()),
        message: format!("Gemini blocked the prompt ({reason}){detail}"),
    })
}

/// The failure of candidate `index`, stopped by `reason` before it generated anything.
fn candidate_blocked(index: u32, reason: &str, message: Option<&str>) -> Failure {
    let detail = message.map(|m| format!(": {m}")).unwrap_or_default();
    Failure {
        code: Some(reason.to_string()),
        message: format!(
            "Gemini stopped candidate {index} ({reason}) before it generated anything{detail}"
        ),
    }
}

/// What one candidate's parts hold.
struct Read {
    text: String,
    reasoning: String,
    calls: Vec<ToolCall>,
}

/// Reads the parts of a candidate; `Err` names a call without a name.
fn read_parts(index: u32, parts: &[ApiPart]) -> Result<Read, String> {
    let mut read = Read {
        text: String::new(),
        reasoning: String::new(),
        calls: Vec::new(),
    };
    for (j, p) in parts.iter().enumerate() {
        if let Some(call) = &p.function_call {
            let name = call
                .name
                .as_deref()
                .filter(|n| !n.is_empty())
                .ok_or_else(|| {
                    format!("candidate {index}, part {j}: a functionCall without a name")
                })?;
            let arguments = match &call.args {
                None | Some(Value::Null) => "{}".to_string(),
                Some(args) => args.to_string(),
            };
            let id = call
                .id
                .clone()
                .filter(|id| !id.is_empty())
                .unwrap_or_else(|| format!("tool_call_{}", read.calls.len()));
            read.calls.push(ToolCall {
                id: Some(id),
                name: name.to_string(),
                arguments,
            });
        } else if let Some(text) = &p.text {
            if p.thought == Some(true) {
                read.reasoning.push_str(text);
            } else {
                read.text.push_str(text);
            }
        }
    }
    Ok(read)
}

/// Reads a whole `generateContent` answer.
pub(crate) fn decode_response(body: &[u8]) -> Result<Decoded, Unusable> {
    let parsed: ApiResponse = serde_json::from_slice(body)
        .map_err(|e| Unusable::Unreadable(format!("invalid JSON: {e}")))?;
    if let Some(failure) = prompt_blocked(parsed.prompt_feedback.as_ref()) {
        return Err(Unusable::Failed {
            status: 200,
            failure,
        });
    }
    let candidates = parsed.candidates.unwrap_or_default();
    if candidates.is_empty() {
        return Err(Unusable::Unreadable(
            "the response has no candidates (and no promptFeedback.blockReason)".to_string(),
        ));
    }
    let mut indexed = Vec::with_capacity(candidates.len());
    for (i, c) in candidates.into_iter().enumerate() {
        let index = c.index.unwrap_or(i as u32);
        let parts = c.content.and_then(|c| c.parts).unwrap_or_default();
        let read = read_parts(index, &parts).map_err(Unusable::Unreadable)?;
        let reason = c.finish_reason.unwrap_or_default();
        if read.text.is_empty()
            && read.calls.is_empty()
            && BLOCKING_FINISH.contains(&reason.as_str())
        {
            return Err(Unusable::Failed {
                status: 200,
                failure: candidate_blocked(index, &reason, c.finish_message.as_deref()),
            });
        }
        let finish = finish_reason(&reason, !read.calls.is_empty());
        indexed.push((
            index,
            Choice {
                text: read.text,
                finish_reason: finish,
                tool_calls: read.calls,
                reasoning_content: (!read.reasoning.is_empty()).then_some(read.reasoning),
            },
        ));
    }
    indexed.sort_by_key(|(i, _)| *i);
    Ok(Decoded {
        choices: indexed.into_iter().map(|(_, c)| c).collect(),
        usage: parsed.usage_metadata.map(Usage::from).unwrap_or_default(),
        model: parsed.model_version,
    })
}

/// The code and message of a Google error body (`{"error": {"code", "message", "status"}}`,
/// or a list of such objects, as some Google front ends send), else the body as it is.
/// Google's `RetryInfo.retryDelay` (`"37s"`, `"1.5s"`) among an error body's `details`.
pub(crate) fn retry_delay(body: &str) -> Option<std::time::Duration> {
    let parsed: Value = serde_json::from_str(body).ok()?;
    let error = match &parsed {
        Value::Array(items) => items.first()?.get("error")?,
        v => v.get("error")?,
    };
    error
        .get("details")?
        .as_array()?
        .iter()
        .filter(|d| {
            d.get("@type")
                .and_then(Value::as_str)
                .is_some_and(|t| t.ends_with("google.rpc.RetryInfo"))
        })
        .find_map(|d| {
            let delay = d.get("retryDelay")?.as_str()?.strip_suffix('s')?;
            let seconds: f64 = delay.trim().parse().ok()?;
            (0.0..=86_400.0)
                .contains(&seconds)
                .then(|| std::time::Duration::from_secs_f64(seconds))
        })
}

pub(crate) fn gemini_failure(body: &str) -> Failure {
    let parsed: Option<Value> = serde_json::from_str(body).ok();
    let error = match &parsed {
        Some(Value::Array(items)) => items.first().and_then(|v| v.get("error")),
        Some(v) => v.get("error"),
        None => None,
    };
    failure_from(body, error, &["status", "code"])
}

// ---------------------------------------------------------------------------------------------
// Streams
// ---------------------------------------------------------------------------------------------

/// What a stream said of one candidate so far.
#[derive(Default)]
struct Candidate {
    /// Whether it delivered any text or call.
    generated: bool,
    /// Whether it has its finish reason.
    finished: bool,
    /// How many tool calls it streamed so far (the next call's number).
    calls: u32,
}

/// A `streamGenerateContent?alt=sse` stream: whole responses, one per event, no end marker.
#[derive(Default)]
pub(crate) struct GeminiStream {
    candidates: BTreeMap<u32, Candidate>,
}

impl GeminiStream {
    /// Whether every candidate the stream started has finished (and one did).
    fn all_finished(&self) -> bool {
        !self.candidates.is_empty() && self.candidates.values().all(|c| c.finished)
    }
}

impl StreamReader for GeminiStream {
    fn end_marker(&self) -> &'static str {
        "a candidate with a `finishReason`"
    }

    fn complete_at_eof(&self) -> bool {
        self.all_finished()
    }

    fn read(&mut self, data: &str) -> Result<Chunk, String> {
        if data.trim() == "[DONE]" {
            return Err("`[DONE]` is not a Gemini stream event".to_string());
        }
        let value: Value = serde_json::from_str(data).map_err(|e| e.to_string())?;
        if let Some(error) = value
            .get("error")
            .filter(|_| value.get("candidates").is_none())
        {
            let status = error
                .get("code")
                .and_then(Value::as_u64)
                .and_then(|c| u16::try_from(c).ok())
                .filter(|c| (400..600).contains(c))
                .unwrap_or(500);
            return Ok(Chunk::Failed {
                status,
                failure: gemini_failure(data),
            });
        }
        let parsed: ApiResponse = serde_json::from_value(value).map_err(|e| e.to_string())?;
        if let Some(failure) = prompt_blocked(parsed.prompt_feedback.as_ref()) {
            return Ok(Chunk::Failed {
                status: 200,
                failure,
            });
        }
        let mut events = Vec::new();
        let mut finished_now = false;
        for (i, c) in parsed
            .candidates
            .unwrap_or_default()
            .into_iter()
            .enumerate()
        {
            let index = c.index.unwrap_or(i as u32);
            let parts = c.content.and_then(|c| c.parts).unwrap_or_default();
            let read = read_parts(index, &parts)?;
            let state = self.candidates.entry(index).or_default();
            if state.finished {
                return Err(format!(
                    "candidate {index} continues after its finishReason"
                ));
            }
            state.generated |= !read.text.is_empty() || !read.calls.is_empty();
            let has_calls = !read.calls.is_empty();
            if !read.reasoning.is_empty() {
                events.push(StreamEvent::Reasoning {
                    index,
                    text: read.reasoning,
                });
            }
            if !read.text.is_empty() {
                events.push(StreamEvent::Delta {
                    index,
                    text: read.text,
                });
            }
            // Each call comes whole in one part; a call without an id gets one numbered across
            // the stream, as a whole answer numbers them.
            let given_ids: Vec<bool> = parts
                .iter()
                .filter_map(|p| p.function_call.as_ref())
                .map(|c| c.id.as_deref().is_some_and(|id| !id.is_empty()))
                .collect();
            for (k, call) in read.calls.into_iter().enumerate() {
                let number = state.calls;
                state.calls = state.calls.saturating_add(1);
                let id = if given_ids.get(k).copied().unwrap_or(true) {
                    call.id
                } else {
                    Some(format!("tool_call_{number}"))
                };
                events.push(StreamEvent::ToolCall {
                    index,
                    call: number,
                    id,
                    name: Some(call.name),
                    arguments: call.arguments,
                });
            }
            let reason = c.finish_reason.unwrap_or_default();
            if reason.is_empty() || reason == "FINISH_REASON_UNSPECIFIED" {
                continue;
            }
            if !state.generated && BLOCKING_FINISH.contains(&reason.as_str()) {
                return Ok(Chunk::Failed {
                    status: 200,
                    failure: candidate_blocked(index, &reason, c.finish_message.as_deref()),
                });
            }
            state.finished = true;
            finished_now = true;
            if let Some(reason) = finish_reason(&reason, has_calls || state.calls > 0) {
                events.push(StreamEvent::Finish { index, reason });
            }
        }
        if finished_now
            && self.all_finished()
            && let Some(usage) = parsed.usage_metadata
        {
            events.push(StreamEvent::Usage(usage.into()));
        }
        Ok(Chunk::Events(events))
    }
}

/// Entry points for the fuzz targets (`dspex_runtime::__fuzz::wire`): Gemini's readers of
/// bytes from the network. Not part of the API.
pub mod fuzzing {
    use super::*;

    /// What reading one `generateContent` body gave: the completions, or the error's class
    /// (`"unreadable"` or `"failed"`) and message.
    pub fn response(body: &[u8]) -> Result<Vec<Choice>, (&'static str, String)> {
        match decode_response(body) {
            Ok(decoded) => Ok(decoded.choices),
            Err(Unusable::Unreadable(m)) => Err(("unreadable", m)),
            Err(Unusable::Failed { failure, .. }) => Err(("failed", failure.message)),
        }
    }

    /// Reads a stream's events in order with one reader: per event, its stream events, or the
    /// failure's message (`Err`), stopping at the first failure or end; then whether the
    /// stream was complete at its end.
    pub fn stream<'a>(
        events: impl IntoIterator<Item = &'a str>,
    ) -> (Vec<Result<Vec<StreamEvent>, String>>, bool) {
        let mut reader = GeminiStream::default();
        let mut out = Vec::new();
        for data in events {
            match reader.read(data) {
                Ok(Chunk::Events(e)) | Ok(Chunk::End(e)) => out.push(Ok(e)),
                Ok(Chunk::Failed { failure, .. }) => {
                    out.push(Err(failure.message));
                    return (out, false);
                }
                Err(m) => {
                    out.push(Err(m));
                    return (out, false);
                }
            }
        }
        (out, reader.complete_at_eof())
    }

    /// The code and message of an error body.
    pub fn error(body: &str) -> (Option<String>, String) {
        let f = gemini_failure(body);
        (f.code, f.message)
    }
}

#[cfg(test)]
mod tests;
