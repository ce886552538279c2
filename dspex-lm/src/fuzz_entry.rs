//! Entry points for the fuzz targets (`fuzz/`), not part of the API: the provider protocols'
//! readers of bytes dspex does not control.

use crate::protocol::{self, Chunk, Target};
use crate::provider::ModelType;
use crate::stream::{SseData, SseDecoder, StreamEvent};

/// One protocol (the first byte picks it) reads the rest as a whole response body, as an
/// error body and as an SSE stream: no panic, and what it accepts holds together — a read
/// response has a completion, a stream's deltas are not empty, nothing is read after its end.
pub fn provider_wire(data: &[u8]) {
    let Some((&pick, body)) = data.split_first() else {
        return;
    };
    let protocols = protocol::all();
    let protocol = protocols[usize::from(pick) % protocols.len()];
    let target = Target {
        model_id: "m",
        model_type: if pick & 0x80 == 0 {
            ModelType::Chat
        } else {
            ModelType::Text
        },
        max_tokens_key: "max_tokens",
        api_version: None,
    };
    if let Ok(decoded) = protocol.response(target, body) {
        assert!(
            !decoded.choices.is_empty(),
            "a response read with no completion"
        );
    }
    let failure = protocol.error(&String::from_utf8_lossy(body));
    assert!(failure.code.as_ref().is_none_or(|c| !c.is_empty()));
    let mut reader = protocol.stream(target);
    for data in SseDecoder::default().feed(body) {
        let text = match data {
            SseData::Done => "[DONE]".to_string(),
            SseData::Json(text) => text,
        };
        match reader.read(&text) {
            Ok(Chunk::Events(events)) => check_events(&events),
            Ok(Chunk::End(events)) => {
                check_events(&events);
                break;
            }
            Ok(Chunk::Failed { status, .. }) => {
                assert!((100..=599).contains(&status), "status {status}");
                break;
            }
            Err(message) => {
                assert!(!message.is_empty());
                break;
            }
        }
    }
}

/// A value read from the Redis tier of the response cache (`cache::codec`): no panic, no
/// allocation beyond the format's bounds, and a value it accepts re-encodes (plain and
/// compressed) to bytes that decode to the same response. Bytes 6..38 are overwritten with the
/// key looked up, so the fuzzer gets past the key check.
#[cfg(any(feature = "redis", feature = "fuzzing"))]
pub fn redis_value(data: &[u8]) {
    use crate::cache::codec;
    let key = redis_fuzz_key();
    let mut bytes = data.to_vec();
    if let Some(slot) = bytes.get_mut(6..38) {
        slot.copy_from_slice(key.as_bytes());
    }
    if let Ok(response) = codec::decode(&key, &bytes) {
        assert!(!response.choices.is_empty(), "a value with no completion");
        for threshold in [0, usize::MAX] {
            let again = codec::encode(&key, &response, threshold).expect("a read value encodes");
            assert_eq!(
                codec::decode(&key, &again).as_ref(),
                Ok(&response),
                "a re-encoded value reads differently"
            );
        }
    }
}

/// A stored Redis value of a response answering `text`, compressed or not: seeds for
/// [`redis_value`].
#[cfg(any(feature = "redis", feature = "fuzzing"))]
pub fn redis_value_seed(text: &str, compressed: bool) -> Vec<u8> {
    let response = crate::types::LmResponse {
        choices: vec![crate::types::Choice {
            text: text.to_string(),
            finish_reason: Some(crate::types::FinishReason::Stop),
            tool_calls: Vec::new(),
            reasoning_content: None,
        }],
        usage: crate::types::Usage::default(),
        model: "m".into(),
        latency: std::time::Duration::ZERO,
        cache_hit: false,
    };
    let threshold = if compressed { 0 } else { usize::MAX };
    crate::cache::codec::encode(&redis_fuzz_key(), &response, threshold).unwrap_or_default()
}

#[cfg(any(feature = "redis", feature = "fuzzing"))]
fn redis_fuzz_key() -> crate::cache::CacheKey {
    crate::cache::CacheKey::for_request("m", "dspex.chat", &crate::types::LmRequest::prompt("fuzz"))
}

fn check_events(events: &[StreamEvent]) {
    for event in events {
        if let StreamEvent::Delta { text, .. } = event {
            assert!(!text.is_empty(), "an empty delta");
        }
    }
}
