//! The LM client's readers of what a server sends: the HTTP/1.1 response reader (status line,
//! headers, `Content-Length`, chunked bodies and trailers, bodies that run to the close), the
//! server-sent-events decoder and the JSON bodies of completions, stream chunks and embeddings,
//! and Gemini's response bodies and stream events.

use super::split_first;
use crate::lm::gemini_fuzzing;
use crate::lm::http1::{Pool, Target};
use crate::lm::stream::{SseData, SseDecoder, parse_chunk};
use crate::lm::wire::{CompletionResponse, EmbeddingResponse};
use crate::lm::{FinishReason, ModelType, StreamEvent};
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::runtime::Runtime;

/// Longest one exchange may take before it counts as a hang.
const HANG: Duration = Duration::from_secs(10);

/// A runtime and a loopback listener kept for the whole fuzzing run.
pub(super) struct Loopback {
    pub(super) runtime: Runtime,
    listener: TcpListener,
    port: u16,
}

pub(super) fn loopback() -> &'static Loopback {
    static LOOPBACK: OnceLock<Loopback> = OnceLock::new();
    LOOPBACK.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a tokio runtime");
        let listener = runtime
            .block_on(TcpListener::bind("127.0.0.1:0"))
            .expect("a loopback listener");
        let port = listener.local_addr().expect("a bound port").port();
        Loopback {
            runtime,
            listener,
            port,
        }
    })
}

/// What the client made of one answer: the status and the body, or the error's text.
type Outcome = Result<(u16, Vec<u8>), String>;

/// Target `http1_response`: the first byte picks how the server cuts its writes (1 to 16
/// bytes, or all at once), the rest is everything the server answers before closing. The
/// answer is read twice — whole with `bytes()` after one write, and piece by piece with
/// `chunk()` after cut writes — and both reads must agree; neither may hang; a body is never
/// longer than what was sent; a status is the one on the last status line sent.
pub fn http1_response(data: &[u8]) {
    let Some((cut, answer)) = split_first(data) else {
        return;
    };
    let lb = loopback();
    let (whole, piecewise) = super::no_panics("reading an answer", || {
        (
            lb.runtime.block_on(exchange(lb, answer, None)),
            lb.runtime
                .block_on(exchange(lb, answer, Some(usize::from(cut % 16) + 1))),
        )
    });
    match (&whole, &piecewise) {
        (Ok(a), Ok(b)) => assert_eq!(a, b, "bytes() and chunk() read different answers"),
        (Err(_), Err(_)) => {}
        _ => panic!("one read failed and the other did not: {whole:?} vs {piecewise:?}"),
    }
    if let Ok((status, body)) = &whole {
        assert!(body.len() <= answer.len());
        let needle = format!(" {status:03}");
        assert!(
            answer.windows(needle.len()).any(|w| w == needle.as_bytes()),
            "status {status} is nowhere in the answer"
        );
    }
}

/// Sends one request through a fresh pool to the loopback listener, whose side answers
/// `answer` (in writes of `cut` bytes when given) and closes; reads the answer with `bytes()`
/// (no cut) or `chunk()` (cut).
async fn exchange(lb: &Loopback, answer: &[u8], cut: Option<usize>) -> Outcome {
    let server = async {
        let (mut stream, _) = lb.listener.accept().await.expect("the client connects");
        let _ = stream.set_nodelay(true);
        // The request: a head, then the 2-byte body.
        let mut request = Vec::new();
        let mut buf = [0u8; 1024];
        while !request.ends_with(b"\r\n\r\n{}") {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => request.extend_from_slice(&buf[..n]),
            }
        }
        match cut {
            None => {
                let _ = stream.write_all(answer).await;
            }
            Some(n) => {
                for piece in answer.chunks(n) {
                    if stream.write_all(piece).await.is_err() {
                        break;
                    }
                    tokio::task::yield_now().await;
                }
            }
        }
        let _ = stream.shutdown().await;
        // Until the client is done with the connection (it closes first).
        while let Ok(n) = stream.read(&mut buf).await {
            if n == 0 {
                break;
            }
        }
    };
    let client = async {
        let pool = Arc::new(Pool::new(
            "127.0.0.1",
            lb.port,
            Duration::from_secs(5),
            Duration::from_secs(60),
        ));
        let authority = format!("127.0.0.1:{}", lb.port);
        let target = Target::post(
            &authority,
            "/v1/chat/completions",
            &[("content-type", b"application/json")],
        );
        let outcome = async {
            let mut response = pool.post(&target, b"{}").await.map_err(|e| e.to_string())?;
            let status = response.status;
            let body = if cut.is_none() {
                response
                    .bytes(u64::MAX)
                    .await
                    .map_err(|e| e.to_string())?
                    .to_vec()
            } else {
                let mut body = Vec::new();
                while let Some(piece) = response.chunk().await.map_err(|e| e.to_string())? {
                    body.extend_from_slice(&piece);
                }
                body
            };
            Ok((status, body))
        }
        .await;
        drop(pool);
        outcome
    };
    let (_, outcome) = tokio::time::timeout(HANG, async { tokio::join!(server, client) })
        .await
        .unwrap_or_else(|_| panic!("reading the answer {answer:?} hangs"));
    outcome
}

/// `body` decoded as server-sent events whole, and in reads of 1 to 16 bytes (`cut` picks):
/// the events, which must be the same both ways.
fn decode_cut_and_whole(cut: u8, body: &[u8]) -> Vec<SseData> {
    let whole = SseDecoder::default().feed(body);
    let mut decoder = SseDecoder::default();
    let mut pieces = Vec::new();
    for piece in body.chunks(usize::from(cut % 16) + 1) {
        pieces.extend(decoder.feed(piece));
    }
    assert_eq!(whole, pieces, "cutting the stream changes its events");
    whole
}

/// Target `sse_stream`: the first byte picks how the bytes are cut (1 to 16 bytes per read),
/// the rest is a streamed body. Decoding it cut and whole gives the same events; every event's
/// JSON chunk reads (or fails) without panicking, and its deltas are not empty. The bytes are
/// also read as a whole completion, text completion and embeddings response body.
pub fn sse_stream(data: &[u8]) {
    let Some((cut, body)) = split_first(data) else {
        return;
    };
    let whole = decode_cut_and_whole(cut, body);
    for data in &whole {
        match data {
            SseData::Done => {}
            SseData::Json(text) => {
                assert!(!text.is_empty());
                if let Ok(events) = parse_chunk(text) {
                    for event in events {
                        if let StreamEvent::Delta { text, .. } = event {
                            assert!(!text.is_empty(), "an empty delta");
                        }
                    }
                }
            }
        }
    }
    response_bodies(body);
}

/// The provider protocols' readers of response bodies, error bodies and streams: the first
/// byte picks the protocol (`dspex_lm::__fuzz::provider_wire` holds the checks).
pub fn provider_wire(data: &[u8]) {
    crate::lm::__fuzz::provider_wire(data);
}

/// A value read from the Redis tier of the response cache (`dspex_lm::__fuzz::redis_value`
/// holds the checks).
pub fn redis_value(data: &[u8]) {
    crate::lm::__fuzz::redis_value(data);
}

/// The non-streaming bodies: a chat and a text completion, an embeddings answer (error bodies
/// are read by every protocol in `provider_wire`).
fn response_bodies(body: &[u8]) {
    for model_type in [ModelType::Chat, ModelType::Text] {
        if let Ok(mut parsed) = serde_json::from_slice::<CompletionResponse>(body) {
            if let Ok(choices) = parsed.choices(model_type) {
                assert!(!choices.is_empty(), "an answer without choices is an error");
            }
            let _ = parsed.usage();
        }
    }
    if let Ok(parsed) = serde_json::from_slice::<serde_json::Value>(body) {
        let rows = parsed
            .get("data")
            .and_then(serde_json::Value::as_array)
            .map_or(0, Vec::len);
        if let Ok(mut embeddings) = serde_json::from_slice::<EmbeddingResponse>(body) {
            if let Ok(vectors) = embeddings.vectors(rows) {
                assert_eq!(vectors.len(), rows);
            }
            let _ = embeddings.usage();
        }
    }
}

/// Target `anthropic_response`: the bytes as an Anthropic Messages response body and as an
/// error body. Reading never panics; a message read is one completion whose total is the sum
/// of its counts, whose tool calls are named and whose arguments are JSON objects' text.
pub fn anthropic_response(data: &[u8]) {
    if let Ok((choice, _usage)) = crate::lm::anthropic_fuzzing::response(data) {
        for call in &choice.tool_calls {
            assert!(!call.name.is_empty(), "a tool call without a name");
            assert!(
                serde_json::from_str::<serde_json::Value>(&call.arguments).is_ok(),
                "tool arguments that are not JSON: {:?}",
                call.arguments
            );
        }
        if let Some(reasoning) = &choice.reasoning_content {
            assert!(!reasoning.is_empty(), "empty reasoning content");
        }
    }
    let (_, message) = crate::lm::anthropic_fuzzing::error_body(&String::from_utf8_lossy(data));
    assert!(
        message.len() <= data.len().max(64) * 3,
        "an error message longer than its body"
    );
}

/// Target `anthropic_stream`: the first byte picks how the bytes are cut (1 to 16 bytes per
/// read), the rest is a streamed body. Decoded cut and whole, the events are the same; read
/// by Anthropic's stream reader (as the client reads it: up to the end, an error event or an
/// unreadable event) they never panic, deltas are not empty, usage adds up and an error event
/// has an HTTP error status.
pub fn anthropic_stream(data: &[u8]) {
    use crate::lm::anthropic_fuzzing::{Read, stream_events};
    let Some((cut, body)) = split_first(data) else {
        return;
    };
    let whole = decode_cut_and_whole(cut, body);
    let payloads: Vec<&str> = whole
        .iter()
        .map(|d| match d {
            SseData::Done => "[DONE]",
            SseData::Json(text) => text.as_str(),
        })
        .collect();
    let reads = stream_events(&payloads);
    assert!(reads.len() <= payloads.len());
    for (i, read) in reads.iter().enumerate() {
        let events = match read {
            Read::Events(events) | Read::End(events) => events,
            Read::Failed(status, _) => {
                assert!((400..600).contains(status), "error status {status}");
                continue;
            }
            Read::Invalid(message) => {
                assert!(!message.is_empty());
                continue;
            }
        };
        if !matches!(read, Read::Events(_)) {
            assert_eq!(i + 1, reads.len(), "events read past the end");
        }
        for event in events {
            match event {
                StreamEvent::Delta { index, text } => {
                    assert_eq!(*index, 0, "a message is one completion");
                    assert!(!text.is_empty(), "an empty delta");
                }
                StreamEvent::Usage(u) => assert_eq!(
                    u.total_tokens,
                    u.prompt_tokens.saturating_add(u.completion_tokens)
                ),
                StreamEvent::Finish { index, .. } => assert_eq!(*index, 0),
                StreamEvent::Reasoning { index, text } => {
                    assert_eq!(*index, 0, "a message is one completion");
                    assert!(!text.is_empty(), "an empty reasoning delta");
                }
                StreamEvent::ToolCall { index, .. } => assert_eq!(*index, 0),
                _ => {}
            }
        }
    }
    anthropic_response(body);
}

/// Target `gemini_response`: the bytes as a Gemini `generateContent` body and as a Google
/// error body. A body that reads gives at least one completion; every tool call has a name, an
/// id (Gemini's or a generated one) and JSON arguments; reasoning is never an empty string; a
/// body that does not read says why.
pub fn gemini_response(data: &[u8]) {
    match gemini_fuzzing::response(data) {
        Ok(choices) => {
            assert!(
                !choices.is_empty(),
                "an answer without candidates is an error"
            );
            for choice in &choices {
                for call in &choice.tool_calls {
                    assert!(!call.name.is_empty(), "a nameless call");
                    assert!(call.id.as_deref().is_some_and(|id| !id.is_empty()));
                    assert!(
                        serde_json::from_str::<serde_json::Value>(&call.arguments).is_ok(),
                        "arguments that are not JSON: {}",
                        call.arguments
                    );
                }
                assert_ne!(choice.reasoning_content.as_deref(), Some(""));
                if !choice.tool_calls.is_empty() && choice.finish_reason.is_some() {
                    assert_ne!(choice.finish_reason, Some(FinishReason::Stop));
                }
            }
        }
        Err((class, message)) => {
            assert!(matches!(class, "unreadable" | "failed"));
            assert!(!message.is_empty(), "an error without a message");
        }
    }
    let (_, message) = gemini_fuzzing::error(&String::from_utf8_lossy(data));
    let _ = message;
}

/// Target `gemini_stream`: the first byte picks how the bytes are cut (1 to 16 bytes per
/// read), the rest is a `streamGenerateContent?alt=sse` body. Its events, read in order by one
/// Gemini stream reader: deltas are never empty; no completion gets text after its finish; a
/// stream is complete only when it finished a completion and every completion it started; usage
/// comes only with a finish; failures have messages.
pub fn gemini_stream(data: &[u8]) {
    let Some((cut, body)) = split_first(data) else {
        return;
    };
    let mut decoder = SseDecoder::default();
    let mut texts = Vec::new();
    for piece in body.chunks(usize::from(cut % 16) + 1) {
        for event in decoder.feed(piece) {
            texts.push(match event {
                SseData::Done => "[DONE]".to_string(),
                SseData::Json(text) => text,
            });
        }
    }
    let (chunks, complete) = gemini_fuzzing::stream(texts.iter().map(String::as_str));
    let mut started = std::collections::BTreeSet::new();
    let mut finished = std::collections::BTreeSet::new();
    let mut failed = false;
    for chunk in &chunks {
        match chunk {
            Ok(events) => {
                let finishes = events
                    .iter()
                    .filter(|e| matches!(e, StreamEvent::Finish { .. }))
                    .count();
                for event in events {
                    match event {
                        StreamEvent::Delta { index, text } => {
                            assert!(!text.is_empty(), "an empty delta");
                            assert!(!finished.contains(index), "text after a finish");
                            started.insert(*index);
                        }
                        StreamEvent::Finish { index, .. } => {
                            assert!(finished.insert(*index), "a second finish of {index}");
                            started.insert(*index);
                        }
                        StreamEvent::Usage(_) => {
                            assert!(finishes > 0, "usage without a finish in its chunk");
                        }
                        StreamEvent::Reasoning { index, text } => {
                            assert!(!text.is_empty(), "an empty reasoning delta");
                            assert!(!finished.contains(index), "reasoning after a finish");
                        }
                        StreamEvent::ToolCall { index, name, .. } => {
                            assert!(
                                name.as_ref().is_some_and(|n| !n.is_empty()),
                                "a call without a name"
                            );
                            assert!(!finished.contains(index), "a call after a finish");
                            started.insert(*index);
                        }
                        _ => {}
                    }
                }
            }
            Err(message) => {
                assert!(!message.is_empty(), "a failure without a message");
                failed = true;
            }
        }
    }
    if complete {
        assert!(!failed, "a failed stream counts as complete");
        assert!(!finished.is_empty(), "complete without any finish");
        assert!(
            started.is_subset(&finished),
            "complete with open completions: {started:?} vs {finished:?}"
        );
    }
}
