//! OpenAI wire types: what the mock accepts and the exact shapes it sends back.

use super::answer::Format;
use serde::{Deserialize, Serialize};
use serde_json::Value;

// ---------------------------------------------------------------------------------------------
// Requests
// ---------------------------------------------------------------------------------------------

/// `POST /v1/chat/completions`. Unknown fields are ignored.
#[derive(Debug, Deserialize)]
pub(crate) struct ChatRequest {
    #[serde(default)]
    pub(crate) model: Option<String>,
    pub(crate) messages: Vec<Message>,
    #[serde(default)]
    pub(crate) n: Option<u64>,
    #[serde(default)]
    pub(crate) temperature: Option<f64>,
    #[serde(default)]
    pub(crate) stream: Option<bool>,
    #[serde(default)]
    pub(crate) stream_options: Option<StreamOptions>,
    #[serde(default)]
    pub(crate) max_tokens: Option<u64>,
    #[serde(default)]
    pub(crate) max_completion_tokens: Option<u64>,
    #[serde(default)]
    pub(crate) response_format: Option<Value>,
    /// The tools offered (native function calling); a rule's tool calls are answered only
    /// when there are some.
    #[serde(default)]
    pub(crate) tools: Option<Vec<Value>>,
}

/// One chat message; only its role and text matter to the mock.
#[derive(Debug, Deserialize)]
pub(crate) struct Message {
    pub(crate) role: String,
    #[serde(default)]
    pub(crate) content: Option<Content>,
}

/// A message's content: a string or a list of content parts.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(crate) enum Content {
    Text(String),
    Parts(Vec<Part>),
}

/// A content part; non-text parts (images, audio) contribute nothing.
#[derive(Debug, Deserialize)]
pub(crate) struct Part {
    #[serde(default)]
    pub(crate) text: Option<String>,
}

impl Message {
    /// The message's text (text parts concatenated).
    pub(crate) fn text(&self) -> std::borrow::Cow<'_, str> {
        match &self.content {
            None => "".into(),
            Some(Content::Text(s)) => s.as_str().into(),
            Some(Content::Parts(parts)) => {
                let texts: Vec<&str> = parts.iter().filter_map(|p| p.text.as_deref()).collect();
                if texts.len() == 1 {
                    texts[0].into()
                } else {
                    texts.concat().into()
                }
            }
        }
    }
}

/// `stream_options`.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct StreamOptions {
    #[serde(default)]
    pub(crate) include_usage: Option<bool>,
}

/// `POST /v1/completions`.
#[derive(Debug, Deserialize)]
pub(crate) struct CompletionRequest {
    #[serde(default)]
    pub(crate) model: Option<String>,
    pub(crate) prompt: PromptInput,
    #[serde(default)]
    pub(crate) n: Option<u64>,
    #[serde(default)]
    pub(crate) temperature: Option<f64>,
    #[serde(default)]
    pub(crate) stream: Option<bool>,
    #[serde(default)]
    pub(crate) stream_options: Option<StreamOptions>,
    #[serde(default)]
    pub(crate) max_tokens: Option<u64>,
}

/// A text-completion prompt: one string or several.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(crate) enum PromptInput {
    One(String),
    Many(Vec<String>),
}

/// `POST /v1/embeddings`.
#[derive(Debug, Deserialize)]
pub(crate) struct EmbeddingRequest {
    #[serde(default)]
    pub(crate) model: Option<String>,
    pub(crate) input: EmbeddingInput,
    #[serde(default)]
    pub(crate) encoding_format: Option<String>,
    #[serde(default)]
    pub(crate) dimensions: Option<u64>,
}

/// Embedding input: text(s) or token id list(s) (tokens are hashed as their decimal text).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(crate) enum EmbeddingInput {
    One(String),
    Many(Vec<String>),
    Tokens(Vec<i64>),
    TokenLists(Vec<Vec<i64>>),
}

impl EmbeddingInput {
    pub(crate) fn texts(&self) -> Vec<std::borrow::Cow<'_, str>> {
        let tokens = |t: &[i64]| {
            t.iter()
                .map(i64::to_string)
                .collect::<Vec<_>>()
                .join(" ")
                .into()
        };
        match self {
            EmbeddingInput::One(s) => vec![s.as_str().into()],
            EmbeddingInput::Many(v) => v.iter().map(|s| s.as_str().into()).collect(),
            EmbeddingInput::Tokens(t) => vec![tokens(t)],
            EmbeddingInput::TokenLists(v) => v.iter().map(|t| tokens(t)).collect(),
        }
    }
}

/// Reads `response_format`; `Err` names what is wrong with it.
pub(crate) fn response_format(value: Option<&Value>) -> Result<Format<'_>, String> {
    let Some(value) = value.filter(|v| !v.is_null()) else {
        return Ok(Format::Text);
    };
    let Some(ty) = value.get("type").and_then(Value::as_str) else {
        return Err("'response_format' must be an object with a string 'type'".to_owned());
    };
    match ty {
        "text" => Ok(Format::Text),
        "json_object" => Ok(Format::JsonObject),
        "json_schema" => Ok(Format::JsonSchema(
            value
                .get("json_schema")
                .and_then(|s| s.get("schema"))
                .filter(|s| s.is_object()),
        )),
        other => Err(format!(
            "Invalid value for 'response_format.type': '{other}'. Supported values are: 'text', 'json_object' and 'json_schema'."
        )),
    }
}

// ---------------------------------------------------------------------------------------------
// Responses
// ---------------------------------------------------------------------------------------------

/// Token accounting (the mock counts whitespace-separated words).
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub(crate) struct Usage {
    pub(crate) prompt_tokens: u64,
    pub(crate) completion_tokens: u64,
    pub(crate) total_tokens: u64,
}

impl Usage {
    pub(crate) fn new(prompt_tokens: u64, completion_tokens: u64) -> Self {
        Usage {
            prompt_tokens,
            completion_tokens,
            total_tokens: prompt_tokens + completion_tokens,
        }
    }
}

/// `chat.completion`.
#[derive(Debug, Serialize)]
pub(crate) struct ChatCompletion<'a> {
    pub(crate) id: &'a str,
    pub(crate) object: &'static str,
    pub(crate) created: u64,
    pub(crate) model: &'a str,
    pub(crate) choices: Vec<ChatChoice<'a>>,
    pub(crate) usage: Usage,
    pub(crate) system_fingerprint: &'static str,
}

#[derive(Debug, Serialize)]
pub(crate) struct ChatChoice<'a> {
    pub(crate) index: u64,
    pub(crate) message: AssistantMessage<'a>,
    pub(crate) logprobs: Option<()>,
    pub(crate) finish_reason: &'static str,
}

#[derive(Debug, Serialize)]
pub(crate) struct AssistantMessage<'a> {
    pub(crate) role: &'static str,
    pub(crate) content: &'a str,
    pub(crate) refusal: Option<()>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) tool_calls: Option<&'a [Value]>,
}

/// `chat.completion.chunk`.
#[derive(Debug, Serialize)]
pub(crate) struct ChatChunk<'a> {
    pub(crate) id: &'a str,
    pub(crate) object: &'static str,
    pub(crate) created: u64,
    pub(crate) model: &'a str,
    pub(crate) system_fingerprint: &'static str,
    pub(crate) choices: Vec<ChunkChoice<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) usage: Option<Usage>,
}

#[derive(Debug, Serialize)]
pub(crate) struct ChunkChoice<'a> {
    pub(crate) index: u64,
    pub(crate) delta: Delta<'a>,
    pub(crate) logprobs: Option<()>,
    pub(crate) finish_reason: Option<&'static str>,
}

#[derive(Debug, Default, Serialize)]
pub(crate) struct Delta<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) role: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) content: Option<&'a str>,
}

/// `text_completion` (both the whole response and a stream chunk).
#[derive(Debug, Serialize)]
pub(crate) struct TextCompletion<'a> {
    pub(crate) id: &'a str,
    pub(crate) object: &'static str,
    pub(crate) created: u64,
    pub(crate) model: &'a str,
    pub(crate) choices: Vec<TextChoice<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) usage: Option<Usage>,
}

#[derive(Debug, Serialize)]
pub(crate) struct TextChoice<'a> {
    pub(crate) text: &'a str,
    pub(crate) index: u64,
    pub(crate) logprobs: Option<()>,
    pub(crate) finish_reason: Option<&'static str>,
}

/// The embeddings `list`.
#[derive(Debug, Serialize)]
pub(crate) struct EmbeddingList<'a> {
    pub(crate) object: &'static str,
    pub(crate) data: Vec<EmbeddingItem>,
    pub(crate) model: &'a str,
    pub(crate) usage: EmbeddingUsage,
}

#[derive(Debug, Serialize)]
pub(crate) struct EmbeddingItem {
    pub(crate) object: &'static str,
    pub(crate) index: u64,
    pub(crate) embedding: EmbeddingData,
}

/// A vector as floats or as base64 of little-endian `f32`s (`encoding_format: "base64"`).
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub(crate) enum EmbeddingData {
    Floats(Vec<f32>),
    Base64(String),
}

#[derive(Debug, Serialize)]
pub(crate) struct EmbeddingUsage {
    pub(crate) prompt_tokens: u64,
    pub(crate) total_tokens: u64,
}

/// `{"error": {"message", "type", "param", "code"}}`.
#[derive(Debug, Serialize)]
pub(crate) struct ErrorBody<'a> {
    pub(crate) error: ErrorDetail<'a>,
}

#[derive(Debug, Serialize)]
pub(crate) struct ErrorDetail<'a> {
    pub(crate) message: &'a str,
    #[serde(rename = "type")]
    pub(crate) kind: &'a str,
    pub(crate) param: Option<&'a str>,
    pub(crate) code: Option<&'a str>,
}
