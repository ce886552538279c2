//! Wire protocols: how one provider family's HTTP API carries an [`LmRequest`] and its answer.
//!
//! The [`LM`](crate::LM) client owns everything that does not depend on the provider — cache
//! and coalescing, retries, limits, the circuit breaker, timeouts, usage, history, streaming's
//! bookkeeping — and asks its [`Protocol`] for the rest:
//!
//! - the endpoint paths of a plain and a streamed call ([`Protocol::paths`]);
//! - the header that carries the key ([`Protocol::auth`]) and fixed headers
//!   ([`Protocol::fixed_headers`]);
//! - the request body ([`Protocol::body`]), or a typed refusal of what the protocol cannot
//!   carry ([`LmError::UnsupportedFeature`]);
//! - the response ([`Protocol::response`]), the events of a stream ([`Protocol::stream`]) and
//!   the meaning of an error answer ([`Protocol::error`]).
//!
//! One file per protocol: `openai` (chat and text completions, the protocol of every
//! OpenAI-compatible server), `azure` (the same bodies at Azure OpenAI's deployment URLs),
//! `responses` (OpenAI's Responses API, DSPy's `model_type="responses"`), `anthropic` (the
//! Messages API), `gemini` (Google AI Studio's `generateContent`). The provider table
//! (`provider.rs`) picks the protocol from the model string's prefix.

pub(crate) mod anthropic;
pub(crate) mod azure;
pub(crate) mod gemini;
pub(crate) mod openai;
pub(crate) mod responses;

use crate::error::LmError;
use crate::provider::ModelType;
use crate::secret::ApiKey;
use crate::stream::StreamEvent;
use crate::types::{Choice, LmRequest, Usage};

/// The model a request goes to, as the protocol needs it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Target<'a> {
    /// The model id the server knows (the model string without its prefix).
    pub(crate) model_id: &'a str,
    /// Chat or text completions.
    pub(crate) model_type: ModelType,
    /// The body key of the token limit, where the provider renames it.
    pub(crate) max_tokens_key: &'static str,
    /// The API version the provider's URLs carry (Azure's `api-version`).
    pub(crate) api_version: Option<&'a str>,
}

/// Endpoint paths, relative to the base URL (no leading slash; may carry a query).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Paths {
    /// A plain call.
    pub(crate) call: String,
    /// A streamed call.
    pub(crate) stream: String,
    /// Embeddings, where the protocol has them.
    pub(crate) embeddings: Option<String>,
}

/// A whole response, read.
#[derive(Debug)]
pub(crate) struct Decoded {
    /// The completions, in index order.
    pub(crate) choices: Vec<Choice>,
    /// Token counts.
    pub(crate) usage: Usage,
    /// The model that answered, when the provider says.
    pub(crate) model: Option<String>,
}

/// An error answer, read: the provider's code and message. The client adds the status, the
/// `Retry-After` and the class ([`LmError::from_provider`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Failure {
    /// The provider's error code or type.
    pub(crate) code: Option<String>,
    /// The provider's message.
    pub(crate) message: String,
}

/// Why a success answer gives no completions ([`Protocol::decode`]).
#[derive(Debug)]
pub(crate) enum Unusable {
    /// It is not what the protocol promises: what is wrong with it.
    Unreadable(String),
    /// The provider reports an error in it, with the status it gives that error.
    Failed {
        /// The status the error is given (the answer's own, 200, for Gemini's blocks).
        status: u16,
        /// Its code and message.
        failure: Failure,
    },
}

/// What one event of a streamed answer held.
#[derive(Debug)]
pub(crate) enum Chunk {
    /// Events for the caller (possibly none).
    Events(Vec<StreamEvent>),
    /// The protocol's end of the answer (OpenAI's `[DONE]`, Anthropic's `message_stop`),
    /// after these last events.
    End(Vec<StreamEvent>),
    /// An error the provider sent inside the stream, with the status it documents for it.
    Failed {
        /// The HTTP status the provider gives this error.
        status: u16,
        /// Its code and message.
        failure: Failure,
    },
}

/// Reads the events of one streamed answer, in order. One per stream: it may keep state
/// (Anthropic's content blocks, the tool calls being assembled).
pub(crate) trait StreamReader: Send {
    /// One server-sent event's `data:` payload (`[DONE]` included, as it came).
    fn read(&mut self, data: &str) -> Result<Chunk, String>;

    /// The protocol's end of an answer, as the error for a stream cut short names it
    /// (`` `data: [DONE]` ``).
    fn end_marker(&self) -> &'static str;

    /// Whether the byte stream may end here without its protocol's end marker, as Gemini's
    /// streams end (after a candidate with a finish reason).
    fn complete_at_eof(&self) -> bool {
        false
    }
}

/// One provider family's wire protocol. Implementations are stateless values; a
/// [`StreamReader`] holds a stream's state.
pub(crate) trait Protocol: Send + Sync + std::fmt::Debug {
    /// The protocol's name in messages (`openai`, `anthropic`).
    fn name(&self) -> &'static str;

    /// The endpoint paths for `target`.
    fn paths(&self, target: Target<'_>) -> Paths;

    /// The header carrying `key`: its name and its value (the client marks it sensitive).
    fn auth(&self, key: &ApiKey) -> (&'static str, String) {
        ("authorization", format!("Bearer {}", key.expose()))
    }

    /// Headers every request carries unless the caller sets the same name.
    fn fixed_headers(&self) -> &'static [(&'static str, &'static str)] {
        &[]
    }

    /// The request body, JSON. `Err` is a message for [`LmError::UnsupportedFeature`]: what
    /// the request needs that this protocol or model type cannot carry.
    fn body(
        &self,
        target: Target<'_>,
        request: &LmRequest,
        stream: bool,
    ) -> Result<Vec<u8>, String>;

    /// A success answer's body, or what is wrong with it.
    fn response(&self, target: Target<'_>, body: &[u8]) -> Result<Decoded, String>;

    /// A success answer's body read as [`response`](Protocol::response) reads it, or why it
    /// gives no completions: unreadable ([`LmError::Decode`]), or an error the provider put
    /// inside a success answer (Gemini's blocked prompts), classified as an error answer.
    fn decode(&self, target: Target<'_>, body: &[u8]) -> Result<Decoded, Unusable> {
        self.response(target, body).map_err(Unusable::Unreadable)
    }

    /// A reader for one streamed answer.
    fn stream(&self, target: Target<'_>) -> Box<dyn StreamReader>;

    /// The code and message of an error answer's body.
    fn error(&self, body: &str) -> Failure;

    /// The wait an error answer's body asks for, for providers that say it there rather than
    /// (or as well as) in a `Retry-After` header — Google's `RetryInfo.retryDelay`. The header
    /// wins when both are present. `None` by default.
    fn retry_after_in_body(&self, _body: &str) -> Option<std::time::Duration> {
        None
    }
}

/// The code and message of an error body whose `error` member is `error`: for an object, the
/// first of `code_keys` it holds (a non-empty string, or a number as text) and its `message`
/// (else the whole body); for a string, that string as the message; else the body as it is.
/// The providers differ only in where `error` sits and which key names the code.
pub(crate) fn failure_from(
    body: &str,
    error: Option<&serde_json::Value>,
    code_keys: &[&str],
) -> Failure {
    use serde_json::Value;
    match error {
        Some(Value::Object(e)) => {
            let text = |k: &str| match e.get(k) {
                Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
                Some(Value::Number(n)) => Some(n.to_string()),
                _ => None,
            };
            Failure {
                code: code_keys.iter().find_map(|k| text(k)),
                message: text("message").unwrap_or_else(|| body.trim().to_string()),
            }
        }
        Some(Value::String(s)) => Failure {
            code: None,
            message: s.clone(),
        },
        _ => Failure {
            code: None,
            message: body.trim().to_string(),
        },
    }
}

/// Refuses a conversation carrying native tool-call history — an assistant message with
/// `tool_calls` or a `tool` message (what an adapter with native function calling makes of a
/// `History` turn's tool calls) — where `protocol` (as the message names it) cannot send it (a
/// text-completion prompt): the message, for [`LmError::UnsupportedFeature`], names the first
/// such message and the way out. Rather this than sending the conversation without the calls.
pub(crate) fn refuse_tool_history(
    protocol: &str,
    messages: &[crate::types::Message],
) -> Result<(), String> {
    use crate::types::Role;
    let found = messages.iter().enumerate().find_map(|(i, m)| {
        if m.role == Role::Tool {
            Some((i, "a tool result (role `tool`)"))
        } else if !m.tool_calls.is_empty() {
            Some((i, "an assistant message with tool calls"))
        } else {
            None
        }
    });
    match found {
        None => Ok(()),
        Some((i, what)) => Err(format!(
            "message {i} is {what}, which the {protocol} protocol does not send; these come from a History turn's tool calls formatted with native function calling — turn it off on the adapter (`.native_function_calling(false)`) to send them as text"
        )),
    }
}

/// Every protocol, for the fuzz targets.
pub(crate) fn all() -> &'static [&'static dyn Protocol] {
    &[
        &openai::OpenAi,
        &azure::AzureOpenAi,
        &responses::Responses,
        &anthropic::Anthropic,
        &gemini::Gemini,
    ]
}

/// `message` as [`LmError::UnsupportedFeature`] for `model`.
pub(crate) fn unsupported(model: &str, feature: String) -> LmError {
    LmError::UnsupportedFeature {
        model: model.to_string(),
        feature,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{Message, MessageToolCall};

    /// A History turn's tool calls with native calling reach every protocol's chat body (each
    /// in its own shape, checked against DSPy in the protocol's tests); none drops them.
    #[test]
    fn tool_history_is_sent_by_every_protocol() {
        let request = LmRequest::new(vec![
            Message::user("Weather?"),
            Message::assistant_tool_calls("", vec![MessageToolCall::new("c1", "f", "{\"x\": 1}")]),
            Message::tool("c1", "f", "Sunny"),
            Message::user("And now?"),
        ]);
        for protocol in all() {
            let target = Target {
                model_id: "gpt-4o-mini",
                model_type: if protocol.name() == "openai responses" {
                    ModelType::Responses
                } else {
                    ModelType::Chat
                },
                max_tokens_key: "max_tokens",
                api_version: Some("2024-10-21"),
            };
            let body = protocol
                .body(target, &request, false)
                .unwrap_or_else(|e| panic!("{}: {e}", protocol.name()));
            let body = String::from_utf8(body).expect("UTF-8");
            for needle in ["\"c1\"", "Sunny", "And now?"] {
                assert!(
                    body.contains(needle),
                    "{}: {needle} in {body}",
                    protocol.name()
                );
            }
        }
    }
}
