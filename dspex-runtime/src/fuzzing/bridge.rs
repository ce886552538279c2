//! What a Python worker writes on its stdout: length-prefixed frames, JSON or MessagePack,
//! decoded into the worker's messages and dispatched the way the pool does (responses into
//! operation results, LM calls into LM requests and request bodies).

use super::{same_values, split_first};
use crate::bridge::protocol::{
    CallResult, CancelResult, CreateResult, Encoding, Frame, FrameCodec, FrameError, PingResult,
    StateResult, WorkerMessage, decode_frame, decode_msgpack_frame, encode_frame,
    encode_msgpack_frame, read_encoded_frame,
};
use crate::lm::ModelType;
use crate::lm::wire::Body;
use futures_util::FutureExt;
use serde_json::Value;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, ReadBuf};

/// Most frames read from one input (a stream of empty frames would otherwise be long).
const MAX_FRAMES: usize = 4096;

/// A reader of `data` that hands out at most `cut` bytes per read.
struct CutReader<'a> {
    data: &'a [u8],
    cut: usize,
}

impl AsyncRead for CutReader<'_> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let n = self.data.len().min(self.cut).min(buf.remaining());
        let (head, rest) = self.data.split_at(n);
        buf.put_slice(head);
        self.data = rest;
        Poll::Ready(Ok(()))
    }
}

/// Target `bridge_frames`: the first byte picks how many bytes each read returns (1 to 16, or
/// all), the rest is a worker's stdout. Frames are read until the end or the first error (a
/// truncated frame is [`FrameError::Truncated`], never a hang); every frame is decoded as a
/// [`WorkerMessage`] in its encoding (JSON, or MessagePack when its length word has the flag)
/// and dispatched. A decoded message (`stream_chunk` and `status` frames of a stream included)
/// encodes to a frame that decodes to the same message, in both encodings and through a
/// [`FrameCodec`] with a small threshold; an LM call (streamed or not) that becomes an LM request
/// gives a request body that is JSON.
pub fn bridge_frames(data: &[u8]) {
    let Some((cut, stream)) = split_first(data) else {
        return;
    };
    let cut = match cut % 17 {
        0 => usize::MAX,
        n => usize::from(n),
    };
    let mut reader = CutReader { data: stream, cut };
    for _ in 0..MAX_FRAMES {
        let frame = read_encoded_frame(&mut reader)
            .now_or_never()
            .expect("reading frames from bytes at hand never waits");
        match frame {
            Ok(Some(frame)) => dispatch(&frame),
            Ok(None) => break,
            Err(FrameError::Truncated { expected, read }) => {
                assert!(read < expected);
                break;
            }
            Err(FrameError::TooLarge { len }) => {
                assert!(len > crate::bridge::protocol::MAX_FRAME_BYTES);
                break;
            }
            Err(e) => panic!("reading bytes at hand failed: {e}"),
        }
    }
}

fn dispatch(frame: &Frame) {
    let message = match frame.decode::<WorkerMessage>() {
        Ok(message) => message,
        Err(FrameError::Json { excerpt, .. }) => {
            assert_eq!(frame.encoding, Encoding::Json);
            assert!(excerpt.len() <= 200 * 3, "the excerpt is short");
            return;
        }
        Err(FrameError::MessagePack { excerpt, .. }) => {
            assert_eq!(frame.encoding, Encoding::MessagePack);
            assert!(excerpt.len() <= 32 * 2 + 3, "the excerpt is short");
            return;
        }
        Err(e) => panic!("decoding fails with {e:?}"),
    };
    round_trip(&message);
    match message {
        WorkerMessage::Response(response) => {
            if let Ok(value) = response.into_result() {
                let _ = serde_json::from_value::<CallResult>(value.clone());
                let _ = serde_json::from_value::<StateResult>(value.clone());
                let _ = serde_json::from_value::<PingResult>(value.clone());
                let _ = serde_json::from_value::<CreateResult>(value.clone());
                let _ = serde_json::from_value::<CancelResult>(value);
            }
        }
        WorkerMessage::LmCall(call) => {
            if let Ok(request) = call.request.to_lm_request() {
                for model_type in [ModelType::Chat, ModelType::Text] {
                    let body = Body::new("m", model_type, "max_tokens", &request).to_bytes();
                    if let Err(e) = serde_json::from_slice::<Value>(&body) {
                        panic!(
                            "the request body of {request:?} is not JSON ({e}): {}",
                            String::from_utf8_lossy(&body)
                        );
                    }
                }
            }
        }
        _ => {}
    }
}

/// A message, encoded as a frame and decoded again, is the same message: as JSON, as
/// MessagePack, and through a codec that picks by size.
fn round_trip(message: &WorkerMessage) {
    let a = serde_json::to_value(message).expect("a message is JSON");
    let frame = encode_frame(message).expect("a decoded message encodes");
    let again: WorkerMessage = decode_frame(&frame[4..]).expect("an encoded message decodes");
    let b = serde_json::to_value(&again).expect("a message is JSON");
    assert!(same_values(&a, &b), "{a} is re-read from JSON as {b}");
    let packed = encode_msgpack_frame(message).expect("a decoded message packs");
    let again: WorkerMessage =
        decode_msgpack_frame(&packed[4..]).expect("a packed message decodes");
    let b = serde_json::to_value(&again).expect("a message is JSON");
    assert!(
        same_values(&a, &b),
        "{a} is re-read from MessagePack as {b}"
    );
    let codec = FrameCodec::msgpack_above(64);
    let chosen = codec.encode(message).expect("the codec encodes");
    let expect_packed = frame.len() - 4 > 64;
    assert_eq!(
        chosen[0] & 0x80 != 0,
        expect_packed,
        "a {}-byte JSON message against a 64-byte threshold",
        frame.len() - 4
    );
    let chosen = read_encoded_frame(&mut &chosen[..])
        .now_or_never()
        .expect("bytes at hand")
        .expect("a frame")
        .expect("not the end");
    let again: WorkerMessage = chosen.decode().expect("the codec's frame decodes");
    let b = serde_json::to_value(&again).expect("a message is JSON");
    assert!(
        same_values(&a, &b),
        "{a} is re-read through the codec as {b}"
    );
}
