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
}

impl StreamEvent {
    /// A whole response as the events a stream of it would end up with: per completion, one
    /// [`Delta`](StreamEvent::Delta) with all its text (none for an empty text) and a
    /// [`Finish`](StreamEvent::Finish) when its finish reason is known; then
    /// [`Usage`](StreamEvent::Usage) when any tokens were counted. This is how a response that was
    /// not streamed (a cache hit, an LM without streaming) is streamed.
    ///
    /// ```
    /// use dspex_runtime::lm::{Choice, FinishReason, LmResponse, StreamEvent, Usage};
    /// use std::time::Duration;
    ///
    /// let response = LmResponse {
    ///     choices: vec![Choice { text: "Hi".into(), finish_reason: Some(FinishReason::Stop) }],
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
            if !choice.text.is_empty() {
                events.push(StreamEvent::Delta {
                    index,
                    text: choice.text.clone(),
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
    pub(crate) fn stream_of(response: &LmResponse) -> EventStream {
        Box::pin(futures_util::stream::iter(
            Self::from_response(response).into_iter().map(Ok),
        ))
    }
}

/// Splits an SSE byte stream into `data:` payloads. Feed bytes as they arrive; complete events
/// come out, a partial one waits for more.
#[derive(Debug, Default)]
pub(crate) struct SseDecoder {
    buffer: Vec<u8>,
}

/// What one `data:` payload was.
#[derive(Debug, PartialEq)]
pub(crate) enum SseData {
    /// A JSON chunk.
    Json(String),
    /// `[DONE]`.
    Done,
}

impl SseDecoder {
    pub(crate) fn feed(&mut self, bytes: &[u8]) -> Vec<SseData> {
        self.buffer.extend_from_slice(bytes);
        let mut out = Vec::new();
        // Events end with a blank line ("\n\n" or "\r\n\r\n").
        while let Some((end, sep)) = find_event_end(&self.buffer) {
            let event: Vec<u8> = self.buffer.drain(..end + sep).collect();
            let text = String::from_utf8_lossy(&event[..end]);
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
        out
    }
}

fn find_event_end(buf: &[u8]) -> Option<(usize, usize)> {
    let lf = buf.windows(2).position(|w| w == b"\n\n").map(|i| (i, 2));
    let crlf = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| (i, 4));
    match (lf, crlf) {
        (Some(a), Some(b)) => Some(if a.0 <= b.0 { a } else { b }),
        (a, b) => a.or(b),
    }
}

/// Reads one `chat.completion.chunk`.
pub(crate) fn parse_chunk(json: &str) -> Result<Vec<StreamEvent>, String> {
    let v: serde_json::Value = serde_json::from_str(json).map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    if let Some(choices) = v.get("choices").and_then(|c| c.as_array()) {
        for c in choices {
            let index = c.get("index").and_then(|i| i.as_u64()).unwrap_or(0) as u32;
            if let Some(text) = c.pointer("/delta/content").and_then(|t| t.as_str())
                && !text.is_empty()
            {
                out.push(StreamEvent::Delta {
                    index,
                    text: text.to_string(),
                });
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
    }
}
