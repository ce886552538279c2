//! Streamed completions: the events a [`LanguageModel::stream`](super::LanguageModel::stream)
//! yields, and the server-sent-events decoding behind [`LM`](super::LM)'s streams.

use super::error::LmError;
use super::types::{FinishReason, LmResponse, Usage};
use futures_util::stream::BoxStream;

/// A streamed completion: events as they arrive; an error item ends it early (a stream that
/// ends without an error item is complete).
pub type EventStream = BoxStream<'static, Result<StreamEvent, LmError>>;

/// One piece of a streamed completion.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum StreamEvent {
    /// Text for completion `index`.
    Delta {
        /// Which completion (for `n > 1`).
        index: u32,
        /// The new text.
        text: String,
    },
    /// Completion `index` finished.
    Finish {
        /// Which completion.
        index: u32,
        /// Why it finished.
        reason: FinishReason,
    },
    /// Token counts (sent last when the server includes usage).
    Usage(Usage),
    /// A piece of a tool call of completion `index` (native function calling): call number
    /// `call` of that completion, its id and name with its first piece, and the next piece of
    /// its arguments (JSON text, put together by appending).
    ToolCall {
        /// Which completion.
        index: u32,
        /// Which call of that completion (0, 1, … in order).
        call: u32,
        /// The call's id, when this piece carries it.
        id: Option<String>,
        /// The function's name, when this piece carries it.
        name: Option<String>,
        /// The next piece of the arguments.
        arguments: String,
    },
    /// Reasoning text for completion `index`: what a reasoning model sends as
    /// `reasoning_content` (or as thinking) before its answer.
    Reasoning {
        /// Which completion.
        index: u32,
        /// The new reasoning text.
        text: String,
    },
}

impl StreamEvent {
    /// A whole response as the events a stream of it would end up with: per completion, its
    /// [`Reasoning`](StreamEvent::Reasoning) when it has some, one
    /// [`Delta`](StreamEvent::Delta) with all its text (none for an empty text), one
    /// [`ToolCall`](StreamEvent::ToolCall) per call, and a
    /// [`Finish`](StreamEvent::Finish) when its finish reason is known; then
    /// [`Usage`](StreamEvent::Usage) when any tokens were counted. This is how a response that was
    /// not streamed (a cache hit, an LM without streaming) is streamed.
    ///
    /// ```
    /// use dspex_lm::{Choice, FinishReason, LmResponse, StreamEvent, Usage};
    /// use std::time::Duration;
    ///
    /// let response = LmResponse {
    ///     choices: vec![Choice::text("Hi")],
    ///     usage: Usage::default(),
    ///     model: "m".into(),
    ///     latency: Duration::ZERO,
    ///     cache_hit: true,
    /// };
    /// assert_eq!(
    ///     StreamEvent::from_response(&response),
    ///     [
    ///         StreamEvent::Delta { index: 0, text: "Hi".into() },
    ///         StreamEvent::Finish { index: 0, reason: FinishReason::Stop },
    ///     ]
    /// );
    /// ```
    pub fn from_response(response: &LmResponse) -> Vec<StreamEvent> {
        let mut events = Vec::with_capacity(2 * response.choices.len() + 1);
        for (index, choice) in response.choices.iter().enumerate() {
            let index = u32::try_from(index).unwrap_or(u32::MAX);
            if let Some(reasoning) = choice.reasoning_content.as_ref().filter(|r| !r.is_empty()) {
                events.push(StreamEvent::Reasoning {
                    index,
                    text: reasoning.clone(),
                });
            }
            if !choice.text.is_empty() {
                events.push(StreamEvent::Delta {
                    index,
                    text: choice.text.clone(),
                });
            }
            for (call, tool_call) in choice.tool_calls.iter().enumerate() {
                events.push(StreamEvent::ToolCall {
                    index,
                    call: u32::try_from(call).unwrap_or(u32::MAX),
                    id: tool_call.id.clone(),
                    name: Some(tool_call.name.clone()),
                    arguments: tool_call.arguments.clone(),
                });
            }
            if let Some(reason) = &choice.finish_reason {
                events.push(StreamEvent::Finish {
                    index,
                    reason: reason.clone(),
                });
            }
        }
        if response.usage != Usage::default() {
            events.push(StreamEvent::Usage(response.usage));
        }
        events
    }

    /// The events of a whole response as an [`EventStream`].
    pub fn stream_of(response: &LmResponse) -> EventStream {
        Box::pin(futures_util::stream::iter(
            Self::from_response(response).into_iter().map(Ok),
        ))
    }
}

/// Splits an SSE byte stream into `data:` payloads. Feed bytes as they arrive; complete events
/// come out, a partial one waits for more.
#[derive(Debug, Default)]
pub struct SseDecoder {
    buffer: Vec<u8>,
    /// How much of `buffer` has been searched for the end of an event: no end starts before
    /// `scanned - 3`, so a long event arriving in many reads is searched once, not once per read.
    scanned: usize,
}

/// What one `data:` payload was.
#[derive(Debug, PartialEq)]
pub enum SseData {
    /// A JSON chunk.
    Json(String),
    /// `[DONE]`.
    Done,
}

impl SseDecoder {
    pub fn feed(&mut self, bytes: &[u8]) -> Vec<SseData> {
        self.buffer.extend_from_slice(bytes);
        let mut out = Vec::new();
        // Events end with a blank line ("\n\n" or "\r\n\r\n"). The events read are removed
        // from the buffer once, at the end (removing each would move the rest every time).
        let mut start = 0;
        let mut from = self.scanned.saturating_sub(3);
        while let Some((at, sep)) = find_event_end(&self.buffer[from..]) {
            let end = from + at;
            let event = &self.buffer[start..end];
            start = end + sep;
            from = start;
            let text = String::from_utf8_lossy(event);
            let mut data = String::new();
            for line in text.lines() {
                if let Some(rest) = line.strip_prefix("data:") {
                    if !data.is_empty() {
                        data.push('\n');
                    }
                    data.push_str(rest.strip_prefix(' ').unwrap_or(rest));
                }
            }
            if data.is_empty() {
                continue;
            }
            out.push(if data.trim() == "[DONE]" {
                SseData::Done
            } else {
                SseData::Json(data)
            });
        }
        self.buffer.drain(..start);
        self.scanned = self.buffer.len();
        out
    }
}

/// Where the first event of `buf` ends: the position of its blank line and the blank line's
/// length. One pass (looking for each separator over the whole buffer in turn would read all
/// of it for every event of a stream that uses the other one).
fn find_event_end(buf: &[u8]) -> Option<(usize, usize)> {
    buf.iter().enumerate().find_map(|(i, b)| match b {
        b'\n' if buf.get(i + 1) == Some(&b'\n') => Some((i, 2)),
        b'\r' if buf[i..].starts_with(b"\r\n\r\n") => Some((i, 4)),
        _ => None,
    })
}

/// Reads one `chat.completion.chunk`.
pub fn parse_chunk(json: &str) -> Result<Vec<StreamEvent>, String> {
    let v: serde_json::Value = serde_json::from_str(json).map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    if let Some(choices) = v.get("choices").and_then(|c| c.as_array()) {
        for c in choices {
            let index = c.get("index").and_then(|i| i.as_u64()).unwrap_or(0) as u32;
            if let Some(text) = c
                .pointer("/delta/reasoning_content")
                .and_then(|t| t.as_str())
                && !text.is_empty()
            {
                out.push(StreamEvent::Reasoning {
                    index,
                    text: text.to_string(),
                });
            }
            if let Some(text) = c.pointer("/delta/content").and_then(|t| t.as_str())
                && !text.is_empty()
            {
                out.push(StreamEvent::Delta {
                    index,
                    text: text.to_string(),
                });
            }
            // Tool calls come in pieces: the first of a call carries its id and name, the rest
            // the next characters of its arguments; `index` says which call.
            if let Some(calls) = c.pointer("/delta/tool_calls").and_then(|t| t.as_array()) {
                for (position, call) in calls.iter().enumerate() {
                    let text =
                        |p: &str| call.pointer(p).and_then(|v| v.as_str()).map(str::to_string);
                    let arguments = match call.pointer("/function/arguments") {
                        Some(serde_json::Value::String(s)) => s.clone(),
                        None | Some(serde_json::Value::Null) => String::new(),
                        Some(other) => other.to_string(),
                    };
                    out.push(StreamEvent::ToolCall {
                        index,
                        call: call
                            .get("index")
                            .and_then(|i| i.as_u64())
                            .map_or(position as u32, |i| u32::try_from(i).unwrap_or(u32::MAX)),
                        id: text("/id"),
                        name: text("/function/name"),
                        arguments,
                    });
                }
            }
            if let Some(reason) = c.get("finish_reason").and_then(|r| r.as_str()) {
                out.push(StreamEvent::Finish {
                    index,
                    reason: FinishReason::from_provider(reason),
                });
            }
        }
    }
    if let Some(u) = v.get("usage").filter(|u| !u.is_null()) {
        let n = |k: &str| u.get(k).and_then(|x| x.as_u64()).unwrap_or(0);
        out.push(StreamEvent::Usage(Usage {
            prompt_tokens: n("prompt_tokens"),
            completion_tokens: n("completion_tokens"),
            total_tokens: n("total_tokens"),
        }));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_events_across_reads() {
        let mut d = SseDecoder::default();
        assert!(d.feed(b"data: {\"a\"").is_empty());
        let got = d.feed(b":1}\n\ndata: [DONE]\n\n");
        assert_eq!(got, [SseData::Json("{\"a\":1}".into()), SseData::Done]);
        let got = d.feed(b": keep-alive\r\n\r\ndata: x\r\n\r\n");
        assert_eq!(got, [SseData::Json("x".into())]);
    }

    /// A long event in small reads, or many events in one read, is linear work: searching the
    /// whole buffer on every read, and moving the rest after every event, made both quadratic
    /// (minutes of CPU for a few megabytes).
    #[test]
    fn long_and_many_events_are_linear() {
        let started = std::time::Instant::now();
        let mut d = SseDecoder::default();
        let long = format!("data: \"{}\"", "x".repeat(8 << 20));
        for piece in long.as_bytes().chunks(64) {
            assert!(d.feed(piece).is_empty());
        }
        assert_eq!(d.feed(b"\n\n"), [SseData::Json(long[6..].to_string())]);
        let many = "data: {}\r\n\r\n".repeat(400_000);
        assert_eq!(d.feed(many.as_bytes()).len(), 400_000);
        assert!(d.feed(b"").is_empty());
        // Unoptimized, this takes well under a second; quadratic, it took minutes.
        assert!(started.elapsed().as_secs() < 20, "{:?}", started.elapsed());
    }

    #[test]
    fn reads_chunks() {
        let events = parse_chunk(
            r#"{"choices":[{"index":0,"delta":{"content":"Hel"},"finish_reason":null}]}"#,
        )
        .unwrap();
        assert_eq!(
            events,
            [StreamEvent::Delta {
                index: 0,
                text: "Hel".into()
            }]
        );
        let events = parse_chunk(
            r#"{"choices":[{"index":0,"delta":{},"finish_reason":"stop"}],"usage":{"prompt_tokens":3,"completion_tokens":2,"total_tokens":5}}"#,
        )
        .unwrap();
        assert_eq!(events.len(), 2);
        assert!(parse_chunk("nope").is_err());
        // Reasoning and the pieces of a tool call.
        let events = parse_chunk(
            r#"{"choices":[{"index":0,"delta":{"reasoning_content":"Hmm.","tool_calls":[{"index":0,"id":"call_1","type":"function","function":{"name":"f","arguments":"{\"a\""}}]}}]}"#,
        )
        .unwrap();
        assert_eq!(
            events,
            [
                StreamEvent::Reasoning {
                    index: 0,
                    text: "Hmm.".into()
                },
                StreamEvent::ToolCall {
                    index: 0,
                    call: 0,
                    id: Some("call_1".into()),
                    name: Some("f".into()),
                    arguments: "{\"a\"".into()
                },
            ]
        );
        let events = parse_chunk(
            r#"{"choices":[{"index":0,"delta":{"tool_calls":[{"index":1,"function":{"arguments":": 1}"}}]}}]}"#,
        )
        .unwrap();
        assert!(
            matches!(&events[0], StreamEvent::ToolCall { call: 1, id: None, name: None, arguments, .. } if arguments == ": 1}")
        );
    }
}
