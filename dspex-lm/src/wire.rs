//! The OpenAI wire format: request bodies serialized straight from an [`LmRequest`] (no
//! intermediate JSON tree) and typed response structs, so the hot path allocates little.

use super::provider::ModelType;
use super::types::{Choice, FinishReason, LmRequest, Message, ResponseFormat, ToolCall, Usage};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// A chat or text completion request body. Known parameters are skipped when `extra` sets the
/// same key, so a provider parameter given explicitly always wins and no key appears twice.
#[derive(Serialize)]
pub struct Body<'a> {
    model: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    messages: Option<&'a [Message]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    prompt: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_tokens: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_completion_tokens: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    temperature: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    n: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    seed: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    stop: Option<&'a [String]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    response_format: Option<&'a ResponseFormat>,
    #[serde(skip_serializing_if = "Option::is_none")]
    stream: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    stream_options: Option<StreamOptions>,
    #[serde(flatten)]
    extra: &'a Map<String, Value>,
}

#[derive(Serialize)]
struct StreamOptions {
    include_usage: bool,
}

impl<'a> Body<'a> {
    /// The body for `request` to `model_id`. `max_tokens_key` is the provider's name for the
    /// token limit (`max_completion_tokens` for OpenAI chat).
    pub fn new(
        model_id: &'a str,
        model_type: ModelType,
        max_tokens_key: &str,
        request: &'a LmRequest,
    ) -> Self {
        let free = |key: &str| !request.extra.contains_key(key);
        let (messages, prompt, max_key) = match model_type {
            ModelType::Chat | ModelType::Responses => {
                (Some(request.messages.as_slice()), None, max_tokens_key)
            }
            ModelType::Text => {
                let parts: Vec<std::borrow::Cow<'_, str>> =
                    request.messages.iter().map(|m| m.content.text()).collect();
                (None, Some(parts.join("\n\n")), "max_tokens")
            }
        };
        let max = request.max_tokens.filter(|_| free(max_key));
        Body {
            model: model_id,
            messages,
            prompt,
            max_tokens: max.filter(|_| max_key == "max_tokens"),
            max_completion_tokens: max.filter(|_| max_key == "max_completion_tokens"),
            temperature: request.temperature.filter(|_| free("temperature")),
            n: request.n.filter(|n| *n > 1 && free("n")),
            seed: request.seed.filter(|_| free("seed")),
            stop: (!request.stop.is_empty() && free("stop")).then_some(request.stop.as_slice()),
            response_format: request
                .response_format
                .as_ref()
                .filter(|f| !matches!(f, ResponseFormat::Text) && free("response_format")),
            stream: None,
            stream_options: None,
            extra: &request.extra,
        }
    }

    /// The same body asking for an SSE stream with usage at the end.
    pub fn streaming(mut self) -> Self {
        self.stream = Some(true);
        self.stream_options = Some(StreamOptions {
            include_usage: true,
        });
        self
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        // Sized for the texts up front: the body is held until the answer arrives, and a
        // doubling buffer would hold up to twice its length per call in flight.
        let texts: usize = self
            .messages
            .map_or(0, |m| m.iter().map(|m| m.content.size_hint() + 32).sum())
            + self.prompt.as_ref().map_or(0, String::len);
        let mut out = Vec::with_capacity(self.model.len() + texts + texts / 16 + 96);
        // Serializing these types cannot fail: every map key is a string.
        let _ = serde_json::to_writer(&mut out, self);
        // A large body that grew past the estimate (parameters, escapes) gives back the spare.
        let spare = out.capacity() - out.len();
        if spare > 256 && spare > out.len() / 8 {
            out.shrink_to_fit();
        }
        out
    }
}

/// An embeddings request body.
#[derive(Serialize)]
pub struct EmbeddingBody<'a> {
    pub model: &'a str,
    pub input: &'a [&'a str],
}

/// A completion response, chat or text.
#[derive(Deserialize)]
pub struct CompletionResponse {
    choices: Option<Vec<ApiChoice>>,
    #[serde(default)]
    usage: Option<ApiUsage>,
    #[serde(default)]
    pub model: Option<String>,
}

#[derive(Deserialize)]
struct ApiChoice {
    #[serde(default)]
    index: Option<u64>,
    #[serde(default)]
    message: Option<ApiMessage>,
    #[serde(default)]
    text: Option<String>,
    #[serde(default)]
    finish_reason: Option<String>,
}

#[derive(Deserialize)]
struct ApiMessage {
    #[serde(default)]
    content: Option<Value>,
    #[serde(default)]
    tool_calls: Option<Vec<Value>>,
    /// Reasoning models' thinking, as LiteLLM and OpenAI-compatible servers return it.
    #[serde(default)]
    reasoning_content: Option<Value>,
}

#[derive(Deserialize, Default)]
struct ApiUsage {
    #[serde(default)]
    prompt_tokens: Option<u64>,
    #[serde(default)]
    completion_tokens: Option<u64>,
    #[serde(default)]
    total_tokens: Option<u64>,
}

impl From<Option<ApiUsage>> for Usage {
    fn from(u: Option<ApiUsage>) -> Usage {
        let u = u.unwrap_or_default();
        let (prompt, completion) = (
            u.prompt_tokens.unwrap_or(0),
            u.completion_tokens.unwrap_or(0),
        );
        Usage {
            prompt_tokens: prompt,
            completion_tokens: completion,
            // The server's numbers: their sum must not overflow.
            total_tokens: u.total_tokens.unwrap_or(prompt.saturating_add(completion)),
        }
    }
}

impl CompletionResponse {
    /// The choices in index order, or what is wrong with them.
    pub fn choices(&mut self, model_type: ModelType) -> Result<Vec<Choice>, String> {
        let choices = self.choices.take().ok_or("no `choices` list")?;
        if choices.is_empty() {
            return Err("the response has no choices".to_string());
        }
        let mut indexed = Vec::with_capacity(choices.len());
        for (i, c) in choices.into_iter().enumerate() {
            let mut tool_calls = Vec::new();
            let mut reasoning_content = None;
            let text = match model_type {
                ModelType::Chat | ModelType::Responses => {
                    let (content, calls, reasoning) = c.message.map_or((None, None, None), |m| {
                        (m.content, m.tool_calls, m.reasoning_content)
                    });
                    // DSPy keeps it only when it is a non-empty string.
                    if let Some(Value::String(r)) = reasoning
                        && !r.is_empty()
                    {
                        reasoning_content = Some(r);
                    }
                    for (j, call) in calls.unwrap_or_default().iter().enumerate() {
                        tool_calls.push(
                            ToolCall::from_openai(call)
                                .map_err(|e| format!("choice {i}, tool call {j}: {e}"))?,
                        );
                    }
                    match content {
                        Some(Value::String(s)) => s,
                        Some(Value::Null) | None => String::new(),
                        Some(other) => {
                            return Err(format!("choice {i} has non-text content {other}"));
                        }
                    }
                }
                ModelType::Text => c.text.unwrap_or_default(),
            };
            let finish_reason = c.finish_reason.as_deref().map(FinishReason::from_provider);
            indexed.push((
                c.index.unwrap_or(i as u64),
                Choice {
                    text,
                    finish_reason,
                    tool_calls,
                    reasoning_content,
                },
            ));
        }
        indexed.sort_by_key(|(i, _)| *i);
        Ok(indexed.into_iter().map(|(_, c)| c).collect())
    }

    pub fn usage(&mut self) -> Usage {
        self.usage.take().into()
    }
}

/// An embeddings response.
#[derive(Deserialize)]
pub struct EmbeddingResponse {
    data: Option<Vec<EmbeddingRow>>,
    #[serde(default)]
    usage: Option<ApiUsage>,
    #[serde(default)]
    pub model: Option<String>,
}

#[derive(Deserialize)]
struct EmbeddingRow {
    #[serde(default)]
    index: Option<u64>,
    #[serde(default)]
    embedding: Option<Vec<f32>>,
}

impl EmbeddingResponse {
    /// One vector per input in input order, or what is wrong.
    pub fn vectors(&mut self, inputs: usize) -> Result<Vec<Vec<f32>>, String> {
        let rows = self.data.take().ok_or("no `data` list")?;
        if rows.len() != inputs {
            return Err(format!("{} embeddings for {inputs} inputs", rows.len()));
        }
        let mut indexed: Vec<(u64, Vec<f32>)> = rows
            .into_iter()
            .enumerate()
            .map(|(i, r)| (r.index.unwrap_or(i as u64), r.embedding.unwrap_or_default()))
            .collect();
        indexed.sort_by_key(|(i, _)| *i);
        Ok(indexed.into_iter().map(|(_, v)| v).collect())
    }

    pub fn usage(&mut self) -> Usage {
        self.usage.take().into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn body(request: &LmRequest, model_type: ModelType, key: &str) -> Value {
        serde_json::from_slice(&Body::new("gpt-4o-mini", model_type, key, request).to_bytes())
            .unwrap()
    }

    #[test]
    fn chat_and_text_bodies() {
        let mut req = LmRequest::prompt("hi");
        req.max_tokens = Some(10);
        req.n = Some(1);
        req.extra.insert("top_p".into(), json!(0.9));
        assert_eq!(
            body(&req, ModelType::Chat, "max_completion_tokens"),
            json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}],
                   "max_completion_tokens": 10, "top_p": 0.9})
        );
        let req = LmRequest::new(vec![Message::system("a"), Message::user("b")]);
        assert_eq!(
            body(&req, ModelType::Text, "max_completion_tokens"),
            json!({"model": "gpt-4o-mini", "prompt": "a\n\nb"})
        );
    }

    #[test]
    fn extra_parameters_win_without_duplicate_keys() {
        let mut req = LmRequest::prompt("hi");
        req.temperature = Some(0.0);
        req.n = Some(3);
        req.extra.insert("temperature".into(), json!(0.7));
        let bytes = Body::new("m", ModelType::Chat, "max_tokens", &req).to_bytes();
        let text = String::from_utf8(bytes).unwrap();
        assert_eq!(text.matches("temperature").count(), 1, "{text}");
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["temperature"], 0.7);
        assert_eq!(v["n"], 3);
    }

    /// Token counts near `u64::MAX` without a total once overflowed summing them
    /// `fuzz/regressions/sse_stream/usage-overflow`).
    #[test]
    fn huge_token_counts_saturate() {
        let mut r: CompletionResponse = serde_json::from_str(
            r#"{"choices": [], "usage": {"prompt_tokens": 18446744073709551615, "completion_tokens": 2}}"#,
        )
        .unwrap();
        assert_eq!(r.usage().total_tokens, u64::MAX);
    }

    #[test]
    fn reasoning_content_is_read_from_the_message() {
        let mut r: CompletionResponse = serde_json::from_value(serde_json::json!({
            "choices": [
                {"message": {"content": "a", "reasoning_content": "because"}},
                {"message": {"content": "b", "reasoning_content": ""}},
                {"message": {"content": "c", "reasoning_content": 3}}
            ]
        }))
        .unwrap();
        let choices = r.choices(ModelType::Chat).unwrap();
        assert_eq!(choices[0].reasoning_content.as_deref(), Some("because"));
        assert_eq!(choices[1].reasoning_content, None);
        assert_eq!(choices[2].reasoning_content, None);
    }

    #[test]
    fn tool_calls_are_read_from_the_message() {
        let mut r: CompletionResponse = serde_json::from_value(json!({
            "choices": [{"message": {"content": null, "tool_calls": [
                {"id": "call_1", "type": "function",
                 "function": {"name": "get_weather", "arguments": "{\"city\": \"Paris\"}"}},
                {"type": "function", "function": {"name": "now", "arguments": {"tz": "UTC"}}}
            ]}, "finish_reason": "tool_calls"}]
        }))
        .unwrap();
        let choices = r.choices(ModelType::Chat).unwrap();
        assert_eq!(choices[0].text, "");
        assert_eq!(choices[0].finish_reason, Some(FinishReason::ToolCalls));
        assert_eq!(
            choices[0].tool_calls,
            [
                ToolCall {
                    id: Some("call_1".into()),
                    name: "get_weather".into(),
                    arguments: "{\"city\": \"Paris\"}".into()
                },
                ToolCall::new("now", "{\"tz\":\"UTC\"}"),
            ]
        );
        assert_eq!(
            ToolCall::from_openai(&choices[0].tool_calls[0].to_openai()).unwrap(),
            choices[0].tool_calls[0]
        );
        let mut nameless: CompletionResponse = serde_json::from_value(json!({
            "choices": [{"message": {"tool_calls": [{"function": {"arguments": "{}"}}]}}]
        }))
        .unwrap();
        let err = nameless.choices(ModelType::Chat).unwrap_err();
        assert!(
            err.contains("tool call 0") && err.contains("function.name"),
            "{err}"
        );
    }

    #[test]
    fn responses() {
        let mut r: CompletionResponse = serde_json::from_value(json!({
            "choices": [{"index": 1, "message": {"content": "B"}, "finish_reason": "length"},
                        {"index": 0, "message": {"content": null}}],
            "usage": {"prompt_tokens": 3, "completion_tokens": 4}
        }))
        .unwrap();
        let choices = r.choices(ModelType::Chat).unwrap();
        assert_eq!(choices[0].text, "");
        assert_eq!(choices[1].finish_reason, Some(FinishReason::Length));
        assert_eq!(r.usage().total_tokens, 7);
        let mut empty: CompletionResponse = serde_json::from_value(json!({"choices": []})).unwrap();
        assert!(
            empty
                .choices(ModelType::Chat)
                .unwrap_err()
                .contains("no choices")
        );
        let mut e: EmbeddingResponse = serde_json::from_value(json!({
            "data": [{"index": 1, "embedding": [1.0]}, {"index": 0, "embedding": [0.5]}]
        }))
        .unwrap();
        assert_eq!(e.vectors(2).unwrap(), vec![vec![0.5], vec![1.0]]);
    }
}
