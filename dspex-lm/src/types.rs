//! Requests and responses of the LM layer.

pub use dspex_core::types::{
    Content, ContentPart, FilePart, ImageUrl, InputAudio, Message, MessageToolCall, ResponseFormat,
    Role,
};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::time::Duration;

/// One LM request: the messages and the sampling parameters. Parameters left `None` are not sent
/// (the provider's defaults apply) but do take part in the cache key, as in DSPy.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LmRequest {
    /// The conversation.
    pub messages: Vec<Message>,
    /// Sampling temperature.
    pub temperature: Option<f64>,
    /// Most tokens to generate.
    pub max_tokens: Option<u32>,
    /// Completions wanted (`n`).
    pub n: Option<u32>,
    /// Stop sequences.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stop: Vec<String>,
    /// Seed for providers that support deterministic sampling.
    pub seed: Option<u64>,
    /// The answer's shape.
    pub response_format: Option<ResponseFormat>,
    /// Other provider parameters, sent as they are (`top_p`, `logit_bias`, …).
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub extra: Map<String, Value>,
    /// Distinguishes deliberate resamples of the same request: part of the cache key, never sent
    /// (DSPy 3's `rollout_id`).
    pub rollout_id: Option<u64>,
}

impl LmRequest {
    /// A request with these messages and no parameters set.
    pub fn new(messages: Vec<Message>) -> Self {
        LmRequest {
            messages,
            ..LmRequest::default()
        }
    }

    /// A one-message request: `lm("hello")` in DSPy.
    pub fn prompt(text: impl Into<String>) -> Self {
        Self::new(vec![Message::user(text.into())])
    }
}

/// Why the model stopped.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FinishReason {
    /// It finished its answer or hit a stop sequence.
    Stop,
    /// It hit `max_tokens`: the answer may be cut off.
    Length,
    /// The provider filtered the content.
    ContentFilter,
    /// It asked for a tool.
    ToolCalls,
    /// Something else, as the provider named it.
    #[serde(untagged)]
    Other(String),
}

impl FinishReason {
    /// Reads the provider's `finish_reason` string.
    pub fn from_provider(reason: &str) -> Self {
        match reason {
            "stop" | "eos" | "end_turn" => FinishReason::Stop,
            "length" | "max_tokens" => FinishReason::Length,
            "content_filter" => FinishReason::ContentFilter,
            "tool_calls" | "function_call" => FinishReason::ToolCalls,
            other => FinishReason::Other(other.to_string()),
        }
    }
}

/// One completion.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Choice {
    /// The generated text.
    pub text: String,
    /// Why generation ended, when the provider says.
    pub finish_reason: Option<FinishReason>,
    /// The tools the model asked to call (native function calling), in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<ToolCall>,
    /// The model's native reasoning, when the provider returns it beside the answer
    /// (`message.reasoning_content`, as LiteLLM exposes reasoning models' thinking). A
    /// `Reasoning` output field takes it in place of any text parsed for it, as DSPy does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reasoning_content: Option<String>,
}

impl Choice {
    /// An empty completion, to put a streamed one together with [`absorb`](Choice::absorb).
    pub fn empty() -> Self {
        Choice {
            text: String::new(),
            finish_reason: None,
            tool_calls: Vec::new(),
            reasoning_content: None,
        }
    }

    /// Adds one event of a stream of this completion: a text delta is appended, reasoning to
    /// the reasoning content, a tool call's piece to its call (a call number past the calls
    /// seen so far starts the next one; a larger gap is ignored, so a server cannot make it
    /// allocate), a finish sets the finish reason. Usage and other completions' indexes are not
    /// looked at; the caller routes events by index.
    ///
    /// ```
    /// use dspex_lm::{Choice, StreamEvent};
    ///
    /// let mut choice = Choice::empty();
    /// for event in [
    ///     StreamEvent::Delta { index: 0, text: "Checking".into() },
    ///     StreamEvent::ToolCall { index: 0, call: 0, id: Some("c1".into()), name: Some("f".into()), arguments: "{\"a\":".into() },
    ///     StreamEvent::ToolCall { index: 0, call: 0, id: None, name: None, arguments: " 1}".into() },
    /// ] {
    ///     choice.absorb(&event);
    /// }
    /// assert_eq!(choice.text, "Checking");
    /// assert_eq!(choice.tool_calls[0].arguments, "{\"a\": 1}");
    /// ```
    pub fn absorb(&mut self, event: &crate::StreamEvent) {
        use crate::StreamEvent;
        match event {
            StreamEvent::Delta { text, .. } => self.text.push_str(text),
            StreamEvent::Finish { reason, .. } => self.finish_reason = Some(reason.clone()),
            StreamEvent::Reasoning { text, .. } => self
                .reasoning_content
                .get_or_insert_with(String::new)
                .push_str(text),
            StreamEvent::ToolCall {
                call,
                id,
                name,
                arguments,
                ..
            } => {
                let call = *call as usize;
                if call > self.tool_calls.len() {
                    return;
                }
                if call == self.tool_calls.len() {
                    self.tool_calls
                        .push(ToolCall::new(String::new(), String::new()));
                }
                let entry = &mut self.tool_calls[call];
                if id.is_some() {
                    entry.id.clone_from(id);
                }
                if let Some(name) = name
                    && entry.name.is_empty()
                {
                    entry.name.clone_from(name);
                }
                entry.arguments.push_str(arguments);
            }
            StreamEvent::Usage(_) => {}
        }
    }

    /// A completion of `text` that stopped normally, with no tool calls.
    pub fn text(text: impl Into<String>) -> Self {
        Choice {
            text: text.into(),
            finish_reason: Some(FinishReason::Stop),
            tool_calls: Vec::new(),
            reasoning_content: None,
        }
    }

    /// The same completion with this native reasoning content.
    #[must_use]
    pub fn with_reasoning_content(mut self, reasoning: impl Into<String>) -> Self {
        self.reasoning_content = Some(reasoning.into());
        self
    }

    /// The same completion with these tool calls.
    #[must_use]
    pub fn with_tool_calls(mut self, tool_calls: Vec<ToolCall>) -> Self {
        self.tool_calls = tool_calls;
        self
    }
}

/// A tool call the model asked for: OpenAI's `message.tool_calls[i]` (`{"id", "type":
/// "function", "function": {"name", "arguments"}}`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ToolCall {
    /// The provider's id of the call, when it gives one (results refer to it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// The tool's name.
    pub name: String,
    /// The arguments as the model wrote them: JSON text, not checked here (models write
    /// broken JSON; the adapter reads it leniently, as DSPy does with `json_repair`).
    pub arguments: String,
}

impl ToolCall {
    /// A call of `name` with `arguments` (JSON text) and no id.
    pub fn new(name: impl Into<String>, arguments: impl Into<String>) -> Self {
        ToolCall {
            id: None,
            name: name.into(),
            arguments: arguments.into(),
        }
    }

    /// Reads OpenAI's shape `{"id"?, "type": "function", "function": {"name", "arguments"}}`
    /// (arguments as a JSON string, or an object some servers send), naming what is missing.
    pub fn from_openai(value: &serde_json::Value) -> Result<Self, String> {
        let function = value
            .get("function")
            .ok_or("a tool call without `function`")?;
        let name = function
            .get("name")
            .and_then(serde_json::Value::as_str)
            .ok_or("a tool call without `function.name`")?;
        let arguments = match function.get("arguments") {
            None | Some(serde_json::Value::Null) => "{}".to_string(),
            Some(serde_json::Value::String(s)) => s.clone(),
            Some(other) => other.to_string(),
        };
        Ok(ToolCall {
            id: value
                .get("id")
                .and_then(serde_json::Value::as_str)
                .map(str::to_string),
            name: name.to_string(),
            arguments,
        })
    }

    /// The call as a signature's `ToolCalls` output holds it: the arguments read leniently as
    /// DSPy reads them (`json_repair`; text that is not a JSON object gives no arguments).
    ///
    /// ```
    /// use dspex_lm::ToolCall;
    ///
    /// let call = ToolCall::new("get_weather", "{\"city\": \"Paris\"");
    /// assert_eq!(call.to_dspy().args["city"], "Paris");
    /// ```
    pub fn to_dspy(&self) -> dspex_core::types::ToolCall {
        dspex_core::types::ToolCall::from_provider(self.id.clone(), &self.name, &self.arguments)
    }

    /// OpenAI's shape of the call (what [`from_openai`](ToolCall::from_openai) reads).
    pub fn to_openai(&self) -> serde_json::Value {
        let mut call = serde_json::Map::new();
        if let Some(id) = &self.id {
            call.insert("id".into(), id.clone().into());
        }
        call.insert("type".into(), "function".into());
        call.insert(
            "function".into(),
            serde_json::json!({"name": self.name, "arguments": self.arguments}),
        );
        serde_json::Value::Object(call)
    }
}

/// Token counts of a call (zero when the provider does not report them).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Usage {
    /// Tokens in the prompt.
    pub prompt_tokens: u64,
    /// Tokens generated.
    pub completion_tokens: u64,
    /// Their sum, as the provider reports it.
    pub total_tokens: u64,
}

impl Usage {
    /// Adds another call's counts.
    pub fn add(&mut self, other: Usage) {
        self.prompt_tokens += other.prompt_tokens;
        self.completion_tokens += other.completion_tokens;
        self.total_tokens += other.total_tokens;
    }
}

impl std::ops::AddAssign for Usage {
    fn add_assign(&mut self, other: Usage) {
        self.add(other);
    }
}

/// What an LM call returns.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LmResponse {
    /// The completions, in order (one unless `n > 1`).
    pub choices: Vec<Choice>,
    /// Token counts; zero on a cache hit (nothing was spent), as DSPy reports `{}`.
    pub usage: Usage,
    /// The model the provider says answered.
    pub model: String,
    /// Wall time of the call, retries included; near zero on a cache hit.
    #[serde(with = "duration_micros")]
    pub latency: Duration,
    /// Whether the answer came from the cache.
    #[serde(default)]
    pub cache_hit: bool,
}

impl LmResponse {
    /// The first completion's text (empty if there are no choices).
    pub fn text(&self) -> &str {
        self.choices.first().map_or("", |c| c.text.as_str())
    }

    /// Every completion's text.
    pub fn texts(&self) -> impl Iterator<Item = &str> {
        self.choices.iter().map(|c| c.text.as_str())
    }
}

mod duration_micros {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub(super) fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        Ok(Duration::from_micros(u64::deserialize(d)?))
    }
}

/// One embeddings call's result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Embeddings {
    /// One vector per input, in input order.
    pub vectors: Vec<Vec<f32>>,
    /// Token counts.
    pub usage: Usage,
    /// The model the provider says answered.
    pub model: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn wire_shapes() {
        assert_eq!(
            serde_json::to_value(Message::user("hi")).unwrap(),
            json!({"role": "user", "content": "hi"})
        );
        assert_eq!(
            serde_json::to_value(ResponseFormat::JsonObject).unwrap(),
            json!({"type": "json_object"})
        );
        assert_eq!(FinishReason::from_provider("length"), FinishReason::Length);
        assert_eq!(
            serde_json::to_value(FinishReason::Other("weird".into())).unwrap(),
            json!("weird")
        );
        let r = LmResponse {
            choices: vec![Choice {
                text: "a".into(),
                finish_reason: Some(FinishReason::Stop),
                tool_calls: Vec::new(),
                reasoning_content: None,
            }],
            usage: Usage {
                prompt_tokens: 1,
                completion_tokens: 2,
                total_tokens: 3,
            },
            model: "m".into(),
            latency: Duration::from_micros(1500),
            cache_hit: false,
        };
        let back: LmResponse = serde_json::from_value(serde_json::to_value(&r).unwrap()).unwrap();
        assert_eq!(back, r);
    }
}
