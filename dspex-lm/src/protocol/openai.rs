//! OpenAI's chat and text completions (`/chat/completions`, `/completions`): the protocol of
//! OpenAI and of every OpenAI-compatible server (vLLM, Ollama, LM Studio, llama.cpp, LiteLLM's
//! proxy, Groq, Together, …). The body and response types are in `wire.rs`, the stream chunks
//! in `stream.rs`.

use super::{Chunk, Decoded, Failure, Paths, Protocol, StreamReader, Target, failure_from};
use crate::provider::ModelType;
use crate::stream::parse_chunk;
use crate::types::LmRequest;
use crate::wire::{Body, CompletionResponse};
use serde_json::Value;

/// The OpenAI protocol.
#[derive(Debug, Clone, Copy)]
pub(crate) struct OpenAi;

impl Protocol for OpenAi {
    fn name(&self) -> &'static str {
        "openai"
    }

    fn paths(&self, target: Target<'_>) -> Paths {
        let call = match target.model_type {
            ModelType::Chat => "chat/completions",
            ModelType::Text => "completions",
            // The builder gives a Responses model the Responses protocol; this is its path.
            ModelType::Responses => "responses",
        };
        Paths {
            call: call.to_string(),
            stream: call.to_string(),
            embeddings: Some("embeddings".to_string()),
        }
    }

    fn body(
        &self,
        target: Target<'_>,
        request: &LmRequest,
        stream: bool,
    ) -> Result<Vec<u8>, String> {
        if target.model_type == ModelType::Text
            && let Some(m) = request.messages.iter().find(|m| m.content.has_media())
        {
            return Err(format!(
                "a {} message with images, audio or files for a text-completion model (model_type \"text\" sends one prompt string)",
                m.role.as_str()
            ));
        }
        if target.model_type == ModelType::Text {
            super::refuse_tool_history("text-completion (model_type \"text\")", &request.messages)?;
        }
        let body = Body::new(
            target.model_id,
            target.model_type,
            target.max_tokens_key,
            request,
        );
        Ok(if stream { body.streaming() } else { body }.to_bytes())
    }

    fn response(&self, target: Target<'_>, body: &[u8]) -> Result<Decoded, String> {
        let mut parsed: CompletionResponse =
            serde_json::from_slice(body).map_err(|e| format!("invalid JSON: {e}"))?;
        Ok(Decoded {
            choices: parsed.choices(target.model_type)?,
            usage: parsed.usage(),
            model: parsed.model.take(),
        })
    }

    fn stream(&self, _target: Target<'_>) -> Box<dyn StreamReader> {
        Box::new(OpenAiStream)
    }

    fn error(&self, body: &str) -> Failure {
        openai_failure(body)
    }
}

/// The code and message of an OpenAI-style error body (`{"error": {"message", "code",
/// "type"}}`, or `{"error": "text"}`), else the body as it is.
pub(crate) fn openai_failure(body: &str) -> Failure {
    let parsed: Option<Value> = serde_json::from_str(body).ok();
    failure_from(
        body,
        parsed.as_ref().and_then(|v| v.get("error")),
        &["code", "type"],
    )
}

/// A chat completion stream: `chat.completion.chunk`s, then `[DONE]`.
struct OpenAiStream;

impl StreamReader for OpenAiStream {
    fn end_marker(&self) -> &'static str {
        "`data: [DONE]`"
    }

    fn read(&mut self, data: &str) -> Result<Chunk, String> {
        if data.trim() == "[DONE]" {
            return Ok(Chunk::End(Vec::new()));
        }
        // An error object in place of a chunk (OpenAI and vLLM send one when generation
        // fails mid-stream).
        if data.contains("\"error\"")
            && let Ok(Value::Object(v)) = serde_json::from_str::<Value>(data)
            && v.contains_key("error")
            && !v.contains_key("choices")
        {
            return Ok(Chunk::Failed {
                status: 500,
                failure: openai_failure(data),
            });
        }
        parse_chunk(data).map(Chunk::Events)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(model_type: ModelType) -> Target<'static> {
        Target {
            model_id: "m",
            model_type,
            max_tokens_key: "max_tokens",
            api_version: None,
        }
    }

    #[test]
    fn chat_bodies_carry_tool_calls_and_tool_results() {
        use crate::types::{Message, MessageToolCall};
        let request = LmRequest::new(vec![
            Message::user("Weather?"),
            Message::assistant_tool_calls(
                "",
                vec![MessageToolCall::new(
                    "c1",
                    "get_weather",
                    "{\"city\": \"Paris\"}",
                )],
            ),
            Message::tool("c1", "get_weather", "Sunny"),
            Message::assistant_tool_calls("Checking.", vec![MessageToolCall::new("c2", "f", "{}")]),
        ]);
        let body = OpenAi
            .body(target(ModelType::Chat), &request, false)
            .unwrap();
        let body: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            body["messages"],
            serde_json::json!([
                {"role": "user", "content": "Weather?"},
                {"role": "assistant", "content": null, "tool_calls": [{"id": "c1", "type": "function",
                    "function": {"name": "get_weather", "arguments": "{\"city\": \"Paris\"}"}}]},
                {"role": "tool", "content": "Sunny", "tool_call_id": "c1", "name": "get_weather"},
                {"role": "assistant", "content": "Checking.", "tool_calls": [{"id": "c2", "type": "function",
                    "function": {"name": "f", "arguments": "{}"}}]},
            ])
        );
        // A text-completion prompt has no place for them.
        let e = OpenAi
            .body(target(ModelType::Text), &request, false)
            .unwrap_err();
        assert!(
            e.contains("message 1 is an assistant message with tool calls"),
            "{e}"
        );
    }

    #[test]
    fn error_bodies_give_code_and_message() {
        assert_eq!(
            openai_failure(
                r#"{"error": {"message": "too long", "type": "invalid_request_error", "code": "context_length_exceeded"}}"#
            ),
            Failure {
                code: Some("context_length_exceeded".into()),
                message: "too long".into()
            }
        );
        assert_eq!(
            openai_failure(r#"{"error": {"message": "slow down", "type": "rate_limit_error"}}"#)
                .code
                .as_deref(),
            Some("rate_limit_error")
        );
        assert_eq!(openai_failure(r#"{"error": "plain"}"#).message, "plain");
        assert_eq!(openai_failure(" not json \n").message, "not json");
    }

    #[test]
    fn streams_end_at_done_and_report_error_objects() {
        let mut reader = OpenAiStream;
        assert!(matches!(reader.read("[DONE]"), Ok(Chunk::End(e)) if e.is_empty()));
        assert!(matches!(
            reader.read(r#"{"error": {"message": "overloaded", "code": "server_error"}}"#),
            Ok(Chunk::Failed { status: 500, failure }) if failure.code.as_deref() == Some("server_error")
        ));
        assert!(matches!(
            reader.read(r#"{"choices":[{"index":0,"delta":{"content":"a"}}]}"#),
            Ok(Chunk::Events(e)) if e.len() == 1
        ));
    }
}
