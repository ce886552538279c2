//! [`ScriptedLM`]: an in-process LM that replays given completions and records what it was sent,
//! for tests (DSPy's `DummyLM`).

use super::LanguageModel;
use super::error::LmError;
use super::stream::{EventStream, StreamEvent};
use super::types::{Choice, LmRequest, LmResponse, Message, Usage};
use super::usage::{record_current, record_request_current};
use futures_util::future::BoxFuture;
use serde_json::{Map, Value};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Replays completions in order, one per call, and records every request; each call counts as
/// one request and one call answered (with no tokens) in [`track_usage`](crate::track_usage).
/// Streamed
/// ([`LanguageModel::stream`]), each completion arrives in chunks of
/// [`chunk_size`](ScriptedLM::chunk_size) characters (default 4), so tests see text split at
/// awkward places.
///
/// ```
/// use dspex_lm::{LanguageModel, LmRequest, ScriptedLM};
/// use serde_json::json;
///
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// // Answers written as ChatAdapter output, from field values (like DSPy's DummyLM).
/// let lm = ScriptedLM::from_fields([json!({"answer": "Paris"})]);
/// let r = lm.call(LmRequest::prompt("Capital of France?")).await.unwrap();
/// assert_eq!(r.text(), "[[ ## answer ## ]]\nParis\n\n[[ ## completed ## ]]");
/// assert_eq!(lm.requests()[0].messages[0].content, "Capital of France?");
/// assert!(lm.call(LmRequest::prompt("again")).await.is_err()); // the script is used up
/// # });
/// ```
#[derive(Debug, Clone)]
pub struct ScriptedLM {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    model: String,
    completions: Vec<Choice>,
    repeat_last: bool,
    record: bool,
    chunk_chars: usize,
    response_format: bool,
    reasoning: bool,
    state: Mutex<State>,
}

/// Characters per streamed chunk unless [`ScriptedLM::chunk_size`] says otherwise.
const DEFAULT_CHUNK_CHARS: usize = 4;

#[derive(Debug, Default)]
struct State {
    next: usize,
    requests: Vec<LmRequest>,
}

impl ScriptedLM {
    /// Replays `completions` verbatim, one per call.
    pub fn new<S: Into<String>>(completions: impl IntoIterator<Item = S>) -> Self {
        ScriptedLM {
            inner: Arc::new(Inner {
                model: "scripted".to_string(),
                completions: completions.into_iter().map(Choice::text).collect(),
                repeat_last: false,
                record: true,
                chunk_chars: DEFAULT_CHUNK_CHARS,
                response_format: true,
                reasoning: false,
                state: Mutex::new(State::default()),
            }),
        }
    }

    /// Replays whole completions — text with tool calls (native function calling) — one per
    /// call.
    ///
    /// ```
    /// use dspex_lm::{Choice, LanguageModel, LmRequest, ScriptedLM, ToolCall};
    ///
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// let lm = ScriptedLM::from_choices([Choice::text("")
    ///     .with_tool_calls(vec![ToolCall::new("get_weather", r#"{"city": "Paris"}"#)])]);
    /// let response = lm.call(LmRequest::prompt("Weather?")).await?;
    /// assert_eq!(response.choices[0].tool_calls[0].name, "get_weather");
    /// # Ok::<(), dspex_lm::LmError>(())
    /// # }).unwrap();
    /// ```
    pub fn from_choices(choices: impl IntoIterator<Item = Choice>) -> Self {
        let lm = Self::new(Vec::<String>::new());
        lm.reconfigure(|inner| inner.completions = choices.into_iter().collect())
    }

    /// Answers with the given field values written as ChatAdapter output
    /// (`[[ ## field ## ]]\nvalue` sections, then `[[ ## completed ## ]]`). Non-string values are
    /// written as JSON.
    pub fn from_fields(answers: impl IntoIterator<Item = Value>) -> Self {
        Self::new(answers.into_iter().map(|v| match v {
            Value::Object(fields) => chat_completion(&fields),
            other => other.to_string(),
        }))
    }

    /// After the script is used up, keep answering with its last completion instead of failing.
    #[must_use]
    pub fn repeat_last(self) -> Self {
        self.reconfigure(|inner| inner.repeat_last = true)
    }

    /// Stop recording requests (for long runs such as benchmarks, where the record would grow
    /// without bound).
    #[must_use]
    pub fn without_recording(self) -> Self {
        self.reconfigure(|inner| inner.record = false)
    }

    /// Streams completions — reasoning, text, and each tool call's arguments — in chunks of
    /// `chars` characters (at least 1; default 4).
    #[must_use]
    pub fn chunk_size(self, chars: usize) -> Self {
        self.reconfigure(|inner| inner.chunk_chars = chars.max(1))
    }

    /// Acts as an LM that takes no `response_format` (see
    /// [`LanguageModel::supports_response_format`]): the JSONAdapter then sends none, as DSPy
    /// does for such an LM (the `call` fixtures were recorded against one).
    #[must_use]
    pub fn without_response_format(self) -> Self {
        self.reconfigure(|inner| inner.response_format = false)
    }

    /// Acts as a model that reasons natively (see [`LanguageModel::supports_reasoning`]);
    /// give the reasoning with [`Choice::with_reasoning_content`] in
    /// [`from_choices`](ScriptedLM::from_choices).
    #[must_use]
    pub fn with_native_reasoning(self) -> Self {
        self.reconfigure(|inner| inner.reasoning = true)
    }

    fn reconfigure(self, change: impl FnOnce(&mut Inner)) -> Self {
        let mut inner = Arc::try_unwrap(self.inner).unwrap_or_else(|shared| Inner {
            model: shared.model.clone(),
            completions: shared.completions.clone(),
            repeat_last: shared.repeat_last,
            record: shared.record,
            chunk_chars: shared.chunk_chars,
            response_format: shared.response_format,
            reasoning: shared.reasoning,
            state: Mutex::new(State::default()),
        });
        change(&mut inner);
        ScriptedLM {
            inner: Arc::new(inner),
        }
    }

    /// Every request received, in order.
    pub fn requests(&self) -> Vec<LmRequest> {
        self.lock().requests.clone()
    }

    /// The messages of every request, in order.
    pub fn messages(&self) -> Vec<Vec<Message>> {
        self.lock()
            .requests
            .iter()
            .map(|r| r.messages.clone())
            .collect()
    }

    /// How many calls were answered.
    pub fn calls(&self) -> usize {
        self.lock().next
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.inner.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn answer(&self, request: LmRequest) -> Result<LmResponse, LmError> {
        let n = request.n.unwrap_or(1).max(1) as usize;
        let mut state = self.lock();
        let mut choices = Vec::with_capacity(n);
        for _ in 0..n {
            let index = state.next;
            let choice = match self.inner.completions.get(index) {
                Some(choice) => choice.clone(),
                None if self.inner.repeat_last && !self.inner.completions.is_empty() => {
                    self.inner.completions[self.inner.completions.len() - 1].clone()
                }
                None => {
                    return Err(LmError::ScriptExhausted {
                        model: self.inner.model.clone(),
                        completions: self.inner.completions.len(),
                    });
                }
            };
            state.next += 1;
            choices.push(choice);
        }
        if self.inner.record {
            state.requests.push(request);
        }
        drop(state);
        // Counted by usage tracking as a request and a call answered, with no tokens.
        record_request_current(&self.inner.model);
        record_current(&self.inner.model, Usage::default(), false, None);
        Ok(LmResponse {
            choices,
            usage: Usage::default(),
            model: self.inner.model.clone(),
            latency: Duration::ZERO,
            cache_hit: false,
        })
    }
}

impl LanguageModel for ScriptedLM {
    fn model(&self) -> &str {
        &self.inner.model
    }

    fn supports_response_format(&self) -> bool {
        self.inner.response_format
    }

    fn supports_reasoning(&self) -> bool {
        self.inner.reasoning
    }

    fn call(&self, request: LmRequest) -> BoxFuture<'_, Result<LmResponse, LmError>> {
        let result = self.answer(request);
        Box::pin(std::future::ready(result))
    }

    fn stream(&self, request: LmRequest) -> BoxFuture<'_, Result<EventStream, LmError>> {
        let result = self.answer(request).map(|response| {
            let mut events = Vec::new();
            for (index, choice) in response.choices.iter().enumerate() {
                let index = u32::try_from(index).unwrap_or(u32::MAX);
                let reasoning = choice.reasoning_content.as_deref().unwrap_or_default();
                events.extend(chunks(reasoning, self.inner.chunk_chars).map(|text| {
                    StreamEvent::Reasoning {
                        index,
                        text: text.to_string(),
                    }
                }));
                events.extend(chunks(&choice.text, self.inner.chunk_chars).map(|text| {
                    StreamEvent::Delta {
                        index,
                        text: text.to_string(),
                    }
                }));
                // A call's id and name first, then its arguments in pieces, as OpenAI streams.
                for (call, tool_call) in choice.tool_calls.iter().enumerate() {
                    let call = u32::try_from(call).unwrap_or(u32::MAX);
                    events.push(StreamEvent::ToolCall {
                        index,
                        call,
                        id: tool_call.id.clone(),
                        name: Some(tool_call.name.clone()),
                        arguments: String::new(),
                    });
                    events.extend(chunks(&tool_call.arguments, self.inner.chunk_chars).map(
                        |piece| StreamEvent::ToolCall {
                            index,
                            call,
                            id: None,
                            name: None,
                            arguments: piece.to_string(),
                        },
                    ));
                }
                if let Some(reason) = &choice.finish_reason {
                    events.push(StreamEvent::Finish {
                        index,
                        reason: reason.clone(),
                    });
                }
            }
            let stream: EventStream =
                Box::pin(futures_util::stream::iter(events.into_iter().map(Ok)));
            stream
        });
        Box::pin(std::future::ready(result))
    }
}

/// `text` in pieces of `chars` characters (the last one shorter).
fn chunks(text: &str, chars: usize) -> impl Iterator<Item = &str> {
    let mut rest = text;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let end = rest
            .char_indices()
            .nth(chars)
            .map_or(rest.len(), |(i, _)| i);
        let (piece, tail) = rest.split_at(end);
        rest = tail;
        Some(piece)
    })
}

/// Field values as a ChatAdapter completion.
fn chat_completion(fields: &Map<String, Value>) -> String {
    let mut out = String::new();
    for (name, value) in fields {
        out.push_str("[[ ## ");
        out.push_str(name);
        out.push_str(" ## ]]\n");
        match value {
            Value::String(s) => out.push_str(s),
            other => out.push_str(&other.to_string()),
        }
        out.push_str("\n\n");
    }
    out.push_str("[[ ## completed ## ]]");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::FinishReason;
    use serde_json::json;

    #[tokio::test]
    async fn streams_in_chunks_and_uses_up_the_script() {
        use futures_util::StreamExt;
        let lm = ScriptedLM::new(["héllo wörld", "x"]).chunk_size(3);
        let events: Vec<_> = lm
            .stream(LmRequest::prompt("a"))
            .await
            .unwrap()
            .map(Result::unwrap)
            .collect()
            .await;
        let delta = |t: &str| StreamEvent::Delta {
            index: 0,
            text: t.into(),
        };
        assert_eq!(
            events,
            [
                delta("hél"),
                delta("lo "),
                delta("wör"),
                delta("ld"),
                StreamEvent::Finish {
                    index: 0,
                    reason: FinishReason::Stop
                }
            ]
        );
        assert_eq!(lm.calls(), 1);
        assert_eq!(lm.requests().len(), 1);
        assert_eq!(chunks("", 2).count(), 0);
        drop(lm.stream(LmRequest::prompt("b")).await.unwrap());
        assert!(lm.stream(LmRequest::prompt("c")).await.is_err());
    }

    #[tokio::test]
    async fn replays_records_and_runs_out() {
        let lm = ScriptedLM::new(["one", "two", "three"]);
        assert_eq!(lm.call(LmRequest::prompt("a")).await.unwrap().text(), "one");
        let mut req = LmRequest::prompt("b");
        req.n = Some(2);
        let r = lm.call(req).await.unwrap();
        assert_eq!(r.texts().collect::<Vec<_>>(), ["two", "three"]);
        assert_eq!(lm.calls(), 3);
        assert_eq!(lm.requests().len(), 2);
        let err = lm.call(LmRequest::prompt("c")).await.unwrap_err();
        assert!(err.to_string().contains("3 completion(s)"), "{err}");

        let lm = ScriptedLM::from_fields([json!({"reasoning": "r", "answer": 4})]).repeat_last();
        for _ in 0..3 {
            assert_eq!(
                lm.call(LmRequest::prompt("q")).await.unwrap().text(),
                "[[ ## reasoning ## ]]\nr\n\n[[ ## answer ## ]]\n4\n\n[[ ## completed ## ]]"
            );
        }
    }
}
