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

fn check_events(events: &[StreamEvent]) {
    for event in events {
        if let StreamEvent::Delta { text, .. } = event {
            assert!(!text.is_empty(), "an empty delta");
        }
    }
}
