//! The wire format between the pool and a Python worker: `python/PROTOCOL.md`, version 1.
//!
//! Every message is one frame — a 4-byte big-endian length, then that many bytes of UTF-8 JSON
//! holding one object — at most [`MAX_FRAME_BYTES`] long. [`WorkerMessage`] is what a worker
//! sends (`ready`, `response`, `lm_call`, and for a `stream_call` in progress `stream_chunk` and
//! `status`); [`Op`] is what the pool asks for in a `request`, and [`LmResult`] answers an
//! `lm_call` (a streamed one after [`LmChunk`]s).
//!
//! Large messages may travel as MessagePack instead, once both sides have agreed to it (see
//! [`FrameCodec`]): the high bit of the length word ([`MSGPACK_FLAG`]) marks a MessagePack body.
//! A reader that does not know it sees a length over [`MAX_FRAME_BYTES`] and refuses the frame,
//! so the two encodings can never be mistaken for one another.
//!
//! ```
//! use dspex_runtime::bridge::protocol::{Op, encode_request, decode_frame};
//! use serde_json::{Value, json};
//!
//! let frame = encode_request(7, &Op::SaveState { object: "o1".into() })?;
//! assert_eq!(&frame[..4], &(frame.len() as u32 - 4).to_be_bytes());
//! let body: Value = decode_frame(&frame[4..])?;
//! assert_eq!(body, json!({"kind": "request", "id": 7, "op": "save_state", "object": "o1"}));
//! # Ok::<(), dspex_runtime::bridge::protocol::FrameError>(())
//! ```

use crate::lm::{
    ApiKey, Content, ContentPart, LmRequest, LmResponse, Message, MessageToolCall, ResponseFormat,
    Role, Usage,
};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// The protocol version this crate speaks (the `protocol` of the worker's `ready`).
pub const PROTOCOL_VERSION: u32 = 1;

/// The largest frame either side may send: 64 MiB. A longer frame is a protocol error.
pub const MAX_FRAME_BYTES: usize = 64 * 1024 * 1024;

/// What reading or writing a frame can fail with.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    /// A frame's length is over [`MAX_FRAME_BYTES`].
    #[error("a frame of {len} bytes is over the {MAX_FRAME_BYTES}-byte limit")]
    TooLarge {
        /// The length, as announced or as encoded.
        len: usize,
    },
    /// The stream ended inside a frame.
    #[error("the stream ended inside a frame ({read} of {expected} bytes read)")]
    Truncated {
        /// Bytes expected (header or body).
        expected: usize,
        /// Bytes read before the end.
        read: usize,
    },
    /// The stream failed.
    #[error("I/O error: {0}")]
    Io(String),
    /// The frame is not the JSON object expected.
    #[error("bad frame: {message}; frame starts with: {excerpt}")]
    Json {
        /// What serde said.
        message: String,
        /// The start of the frame, for the log.
        excerpt: String,
    },
    /// A MessagePack frame is not the message expected (or a message could not be encoded).
    #[error("bad MessagePack frame: {message}; frame starts with (hex): {excerpt}")]
    MessagePack {
        /// What rmp-serde said.
        message: String,
        /// The first bytes of the frame in hex, for the log.
        excerpt: String,
    },
}

/// Encodes `message` as one frame: the 4-byte big-endian length, then the JSON.
pub fn encode_frame<T: Serialize + ?Sized>(message: &T) -> Result<Vec<u8>, FrameError> {
    let mut buf = Vec::with_capacity(128);
    buf.extend_from_slice(&[0; 4]);
    serde_json::to_writer(&mut buf, message).map_err(|e| FrameError::Json {
        message: e.to_string(),
        excerpt: String::new(),
    })?;
    finish_frame(buf, 0)
}

/// Parses a frame's body (the bytes after the length).
pub fn decode_frame<T: DeserializeOwned>(body: &[u8]) -> Result<T, FrameError> {
    serde_json::from_slice(body).map_err(|e| FrameError::Json {
        message: e.to_string(),
        excerpt: String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned(),
    })
}

/// Reads one JSON frame's body. `Ok(None)` is a clean end of stream (before any byte of a frame);
/// an end inside a frame is [`FrameError::Truncated`]. A MessagePack frame (its length word has
/// [`MSGPACK_FLAG`]) reads as [`FrameError::TooLarge`], as it does for a reader of the
/// protocol's first form: use [`read_encoded_frame`] to take both.
pub async fn read_frame<R: AsyncRead + Unpin + ?Sized>(
    reader: &mut R,
) -> Result<Option<Vec<u8>>, FrameError> {
    Ok(read_any(reader, false).await?.map(|frame| frame.body))
}

async fn read_any<R: AsyncRead + Unpin + ?Sized>(
    reader: &mut R,
    msgpack: bool,
) -> Result<Option<Frame>, FrameError> {
    let mut header = [0u8; 4];
    let mut got = 0;
    while got < 4 {
        let n = reader
            .read(&mut header[got..])
            .await
            .map_err(|e| FrameError::Io(e.to_string()))?;
        if n == 0 {
            return if got == 0 {
                Ok(None)
            } else {
                Err(FrameError::Truncated {
                    expected: 4,
                    read: got,
                })
            };
        }
        got += n;
    }
    let word = u32::from_be_bytes(header);
    let (encoding, len) = if msgpack && word & MSGPACK_FLAG != 0 {
        (Encoding::MessagePack, (word & !MSGPACK_FLAG) as usize)
    } else {
        (Encoding::Json, word as usize)
    };
    if len > MAX_FRAME_BYTES {
        return Err(FrameError::TooLarge { len });
    }
    let mut body = vec![0u8; len];
    let mut read = 0;
    while read < len {
        let n = reader
            .read(&mut body[read..])
            .await
            .map_err(|e| FrameError::Io(e.to_string()))?;
        if n == 0 {
            return Err(FrameError::Truncated {
                expected: len,
                read,
            });
        }
        read += n;
    }
    Ok(Some(Frame { encoding, body }))
}

/// Writes an encoded frame (from [`encode_frame`]) and flushes.
pub async fn write_frame<W: AsyncWrite + Unpin + ?Sized>(
    writer: &mut W,
    frame: &[u8],
) -> Result<(), FrameError> {
    writer
        .write_all(frame)
        .await
        .map_err(|e| FrameError::Io(e.to_string()))?;
    writer
        .flush()
        .await
        .map_err(|e| FrameError::Io(e.to_string()))
}

// ---- Encodings: MessagePack frames for large messages ---------------------------------------

/// The high bit of a frame's length word: set, the body is MessagePack; clear, JSON. The length
/// is the other 31 bits. A reader that knows only JSON frames reads a length of at least 2 GiB,
/// over [`MAX_FRAME_BYTES`], and refuses the frame ([`FrameError::TooLarge`]): it can never
/// parse MessagePack as JSON.
pub const MSGPACK_FLAG: u32 = 0x8000_0000;

/// The default size above which a message travels as MessagePack (64 KiB of JSON):
/// [`PoolBuilder::msgpack_threshold`](super::PoolBuilder::msgpack_threshold).
pub const DEFAULT_MSGPACK_THRESHOLD: usize = 64 * 1024;

/// Deepest nesting a MessagePack body may have (serde_json's own limit for JSON bodies).
const MSGPACK_MAX_DEPTH: usize = 128;

/// How a frame's body is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Encoding {
    /// UTF-8 JSON (every frame of a worker that does not announce MessagePack).
    Json,
    /// MessagePack: maps with field names, strings as `str`.
    MessagePack,
}

impl Encoding {
    /// The name a worker's `ready` announces it under (`json`, `msgpack`).
    pub fn name(self) -> &'static str {
        match self {
            Encoding::Json => "json",
            Encoding::MessagePack => "msgpack",
        }
    }
}

/// One frame's body and its encoding, as [`read_encoded_frame`] returns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// How the body is encoded (the length word's [`MSGPACK_FLAG`]).
    pub encoding: Encoding,
    /// The bytes after the length word.
    pub body: Vec<u8>,
}

impl Frame {
    /// Parses the body in its encoding ([`decode_frame`] or [`decode_msgpack_frame`]).
    pub fn decode<T: DeserializeOwned>(&self) -> Result<T, FrameError> {
        match self.encoding {
            Encoding::Json => decode_frame(&self.body),
            Encoding::MessagePack => decode_msgpack_frame(&self.body),
        }
    }
}

/// Encodes `message` as one MessagePack frame: the length word with [`MSGPACK_FLAG`] set, then
/// the body (structs as maps with their field names, as the JSON has them).
pub fn encode_msgpack_frame<T: Serialize + ?Sized>(message: &T) -> Result<Vec<u8>, FrameError> {
    let mut buf = Vec::with_capacity(128);
    buf.extend_from_slice(&[0; 4]);
    rmp_serde::encode::write_named(&mut buf, message).map_err(|e| FrameError::MessagePack {
        message: e.to_string(),
        excerpt: String::new(),
    })?;
    finish_frame(buf, MSGPACK_FLAG)
}

/// Parses a MessagePack frame's body. The whole body must be one value, at most 128 levels deep,
/// with nothing after it; a `bin` or `ext` value where a message has JSON values is an error, as
/// is a float JSON cannot carry (NaN, infinities).
pub fn decode_msgpack_frame<T: DeserializeOwned>(body: &[u8]) -> Result<T, FrameError> {
    let fail = |message: String| FrameError::MessagePack {
        message,
        excerpt: hex_excerpt(body),
    };
    check_msgpack(body).map_err(|message| fail(message.to_string()))?;
    // Reading from the slice itself: strings are borrowed, not copied through a buffer.
    let mut de = rmp_serde::Deserializer::from_read_ref(body);
    de.set_max_depth(MSGPACK_MAX_DEPTH);
    T::deserialize(&mut de).map_err(|e| fail(e.to_string()))
}

/// Walks a MessagePack body without building anything: exactly one value, nothing after it, and
/// no float JSON cannot carry (NaN, infinities: a JSON frame cannot hold them, so a MessagePack
/// frame may not either — both encodings read the same messages). Iterative: a count of the
/// values still to read instead of recursion.
fn check_msgpack(body: &[u8]) -> Result<(), &'static str> {
    const TRUNCATED: &str = "the body ends inside a value";
    const NOT_JSON: &str = "a NaN or infinite float, which JSON cannot carry";
    let mut pos = 0usize;
    let mut pending: u64 = 1;
    while pending > 0 {
        pending -= 1;
        let marker = *body.get(pos).ok_or(TRUNCATED)?;
        pos += 1;
        // The big-endian number in the next `n` bytes.
        let mut number = |n: usize| -> Result<u64, &'static str> {
            let bytes = body.get(pos..pos + n).ok_or(TRUNCATED)?;
            pos += n;
            Ok(bytes.iter().fold(0u64, |acc, &x| (acc << 8) | u64::from(x)))
        };
        let (skip, children): (u64, u64) = match marker {
            0x00..=0x7f | 0xe0..=0xff | 0xc0 | 0xc2 | 0xc3 => (0, 0),
            0x80..=0x8f => (0, 2 * u64::from(marker & 0x0f)),
            0x90..=0x9f => (0, u64::from(marker & 0x0f)),
            0xa0..=0xbf => (u64::from(marker & 0x1f), 0),
            0xc1 => return Err("marker 0xc1, which MessagePack never uses"),
            0xc4 | 0xd9 => (number(1)?, 0),
            0xc5 | 0xda => (number(2)?, 0),
            0xc6 | 0xdb => (number(4)?, 0),
            0xc7 => (number(1)? + 1, 0),
            0xc8 => (number(2)? + 1, 0),
            0xc9 => (number(4)? + 1, 0),
            0xca => {
                let bits = u32::try_from(number(4)?).map_err(|_| TRUNCATED)?;
                if !f32::from_bits(bits).is_finite() {
                    return Err(NOT_JSON);
                }
                (0, 0)
            }
            0xcb => {
                if !f64::from_bits(number(8)?).is_finite() {
                    return Err(NOT_JSON);
                }
                (0, 0)
            }
            0xcc | 0xd0 => (1, 0),
            0xcd | 0xd1 => (2, 0),
            0xce | 0xd2 => (4, 0),
            0xcf | 0xd3 => (8, 0),
            0xd4 => (2, 0),
            0xd5 => (3, 0),
            0xd6 => (5, 0),
            0xd7 => (9, 0),
            0xd8 => (17, 0),
            0xdc => (0, number(2)?),
            0xdd => (0, number(4)?),
            0xde => (0, 2 * number(2)?),
            0xdf => (0, 2 * number(4)?),
        };
        let left = (body.len() - pos) as u64;
        if skip > left {
            return Err(TRUNCATED);
        }
        pos += skip as usize;
        pending += children;
        // Every value takes at least one byte: more values than bytes left is a truncation.
        if pending > (body.len() - pos) as u64 {
            return Err(TRUNCATED);
        }
    }
    if pos != body.len() {
        return Err("bytes after the message");
    }
    Ok(())
}

/// The first bytes of a binary body, in hex, for error messages.
fn hex_excerpt(body: &[u8]) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    for b in body.iter().take(32) {
        let _ = write!(out, "{b:02x}");
    }
    if body.len() > 32 {
        out.push('…');
    }
    out
}

/// Writes the length word (with `flag`) into the first four bytes of `buf`.
fn finish_frame(mut buf: Vec<u8>, flag: u32) -> Result<Vec<u8>, FrameError> {
    let len = buf.len() - 4;
    if len > MAX_FRAME_BYTES {
        return Err(FrameError::TooLarge { len });
    }
    let header = u32::try_from(len).map_err(|_| FrameError::TooLarge { len })? | flag;
    buf[..4].copy_from_slice(&header.to_be_bytes());
    Ok(buf)
}

/// Reads one frame in either encoding. `Ok(None)` is a clean end of stream; an end inside a
/// frame is [`FrameError::Truncated`]; a length (without [`MSGPACK_FLAG`]) over
/// [`MAX_FRAME_BYTES`] is [`FrameError::TooLarge`], refused before anything is allocated.
pub async fn read_encoded_frame<R: AsyncRead + Unpin + ?Sized>(
    reader: &mut R,
) -> Result<Option<Frame>, FrameError> {
    read_any(reader, true).await
}

/// Which encoding a pool or worker gives its outgoing messages: JSON, or MessagePack for those
/// whose JSON would be over a threshold. A worker's `ready` says whether it reads MessagePack
/// ([`Ready::accepts`]); the pool then tells it the threshold for its own large answers
/// ([`FrameOptions`]).
///
/// ```
/// use dspex_runtime::bridge::protocol::{FrameCodec, Encoding, read_encoded_frame};
/// use serde_json::{Value, json};
///
/// let codec = FrameCodec::msgpack_above(16);
/// let small = codec.encode(&json!({"a": 1}))?;
/// let large = codec.encode(&json!({"text": "x".repeat(100)}))?;
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let mut stream: &[u8] = &[small, large].concat();
/// let first = read_encoded_frame(&mut stream).await?.unwrap();
/// assert_eq!(first.encoding, Encoding::Json);
/// let second = read_encoded_frame(&mut stream).await?.unwrap();
/// assert_eq!(second.encoding, Encoding::MessagePack);
/// assert_eq!(second.decode::<Value>()?, json!({"text": "x".repeat(100)}));
/// # Ok::<(), dspex_runtime::bridge::protocol::FrameError>(())
/// # })?;
/// # Ok::<(), dspex_runtime::bridge::protocol::FrameError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FrameCodec {
    msgpack_above: Option<usize>,
}

impl FrameCodec {
    /// Every frame JSON (the protocol's first form; what a worker that does not announce
    /// MessagePack gets).
    pub const JSON: FrameCodec = FrameCodec {
        msgpack_above: None,
    };

    /// JSON for messages whose JSON is at most `threshold` bytes, MessagePack above.
    pub fn msgpack_above(threshold: usize) -> Self {
        FrameCodec {
            msgpack_above: Some(threshold),
        }
    }

    /// The threshold, when MessagePack is on.
    pub fn threshold(&self) -> Option<usize> {
        self.msgpack_above
    }

    /// Encodes `message` as one frame: JSON while its JSON stays within the threshold (the JSON
    /// encoder stops as soon as it passes it), else MessagePack.
    pub fn encode<T: Serialize + ?Sized>(&self, message: &T) -> Result<Vec<u8>, FrameError> {
        let Some(threshold) = self.msgpack_above else {
            return encode_frame(message);
        };
        let mut buf = Vec::with_capacity(128);
        buf.extend_from_slice(&[0; 4]);
        let mut capped = Capped {
            buf: &mut buf,
            cap: threshold.saturating_add(4),
        };
        match serde_json::to_writer(&mut capped, message) {
            Ok(()) => finish_frame(buf, 0),
            Err(e) if e.is_io() => encode_msgpack_frame(message),
            Err(e) => Err(FrameError::Json {
                message: e.to_string(),
                excerpt: String::new(),
            }),
        }
    }

    /// Encodes request `id` for `op` as a frame ([`encode_request`] in this codec).
    pub fn encode_request(&self, id: u64, op: &Op) -> Result<Vec<u8>, FrameError> {
        self.encode_request_in(id, op, None)
    }

    /// [`encode_request`](Self::encode_request) with the variables of the session the request
    /// runs in (its `session_state`, which the worker's Python code reads with
    /// `dspex_worker.session_state()`).
    pub fn encode_request_in(
        &self,
        id: u64,
        op: &Op,
        session_state: Option<&Map<String, Value>>,
    ) -> Result<Vec<u8>, FrameError> {
        self.encode(&RequestFrame {
            id,
            op,
            session_state,
        })
    }
}

/// A writer into a buffer that fails once the buffer would pass `cap` bytes.
struct Capped<'a> {
    buf: &'a mut Vec<u8>,
    cap: usize,
}

impl std::io::Write for Capped<'_> {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        if self.buf.len() + bytes.len() > self.cap {
            return Err(std::io::Error::other("over the MessagePack threshold"));
        }
        self.buf.extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The pool's answer to a `ready` that announces MessagePack: `{"kind": "frames",
/// "msgpack_above": N}`, sent once, before any request. From then on the worker sends its
/// messages whose encoding would be over `N` bytes as MessagePack. A worker never told so sends
/// JSON only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename = "frames")]
pub struct FrameOptions {
    /// The threshold in bytes.
    pub msgpack_above: usize,
}

/// A message from a worker.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum WorkerMessage {
    /// The first frame: the worker takes requests from now on.
    Ready(Ready),
    /// The answer to a request.
    Response(Response),
    /// DSPy inside the worker needs an LM completion (LM mode `bridge`).
    LmCall(LmCall),
    /// New text of an output field of a `stream_call` in progress (DSPy's `StreamResponse`).
    StreamChunk(StreamChunk),
    /// A status message of a `stream_call` in progress (DSPy's `StatusMessage`).
    Status(StatusUpdate),
    /// A kind this version does not know (logged and ignored).
    #[serde(other)]
    Unknown,
}

/// The worker's `ready` frame.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Ready {
    /// The protocol version the worker speaks.
    pub protocol: u32,
    /// The worker's process id.
    pub pid: u32,
    /// The Python version (`3.11.7`).
    pub python: String,
    /// DSPy's version, or `None` while `import dspy` has not happened (lazy import).
    #[serde(default)]
    pub dspy: Option<String>,
    /// What the worker does beyond the first version of the protocol ([`FEATURE_STREAM`]);
    /// empty from an older worker.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub features: Vec<String>,
    /// The frame encodings the worker reads besides JSON (`["json", "msgpack"]`); empty from a
    /// worker that announces none, which gets JSON only.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub encodings: Vec<String>,
}

impl Ready {
    /// Whether the worker announced that it reads `encoding` (JSON always).
    pub fn accepts(&self, encoding: Encoding) -> bool {
        encoding == Encoding::Json || self.encodings.iter().any(|e| e == encoding.name())
    }
}

/// The [`Ready::features`] entry of a worker that answers `stream_call` and streamed `lm_call`s.
pub const FEATURE_STREAM: &str = "stream";

/// `{"kind": "stream_chunk", "id": 7, "predictor": "predict", "field": "answer", "chunk": "Par",
/// "is_last": false}`: new text of output `field` of predictor `predictor` (its name in the
/// module, as DSPy's `StreamResponse.predict_name` gives it) for `stream_call` `id`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamChunk {
    /// The `stream_call`'s request id.
    pub id: u64,
    /// The predictor's name in the module (`predict` in a ChainOfThought, `self` for a Predict).
    pub predictor: String,
    /// The output field.
    pub field: String,
    /// The new text (may be empty on a last chunk).
    pub chunk: String,
    /// Whether the field is complete.
    #[serde(default)]
    pub is_last: bool,
}

/// `{"kind": "status", "id": 7, "message": "Calling tool search..."}`: a status message of
/// `stream_call` `id` (DSPy's `StatusMessage`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusUpdate {
    /// The `stream_call`'s request id.
    pub id: u64,
    /// The message.
    pub message: String,
}

/// `{"kind": "lm_chunk", "id": 3, "text": "..."}`: new text of streamed `lm_call` `id`, sent by
/// the pool while its LM generates; the call ends with its [`LmResult`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename = "lm_chunk")]
pub struct LmChunk {
    /// The `lm_call`'s id.
    pub id: u64,
    /// The new text of the completion.
    pub text: String,
}

/// The answer to request `id`: `ok` or `error`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Response {
    /// The request's id.
    pub id: u64,
    /// The result object, on success.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ok: Option<Value>,
    /// The error, on failure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<RemoteError>,
}

impl Response {
    /// The result, or the error (a response with neither is an error of type `ProtocolError`).
    pub fn into_result(self) -> Result<Value, RemoteError> {
        match (self.ok, self.error) {
            (_, Some(error)) => Err(error),
            (Some(ok), None) => Ok(ok),
            (None, None) => Err(RemoteError::new(
                "ProtocolError",
                "the response has neither `ok` nor `error`",
            )),
        }
    }
}

/// A structured error from the other side: a Python exception (type, message, traceback), or an
/// LM failure answered to an `lm_call`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemoteError {
    /// The exception's type name (`ValueError`, `Cancelled`, `LmError`).
    #[serde(rename = "type")]
    pub kind: String,
    /// Its message.
    pub message: String,
    /// The Python traceback, when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceback: Option<String>,
}

impl RemoteError {
    /// An error without a traceback.
    pub fn new(kind: impl Into<String>, message: impl Into<String>) -> Self {
        RemoteError {
            kind: kind.into(),
            message: message.into(),
            traceback: None,
        }
    }
}

impl std::fmt::Display for RemoteError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.kind, self.message)
    }
}

/// The worker asks for an LM completion.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LmCall {
    /// The worker's own id for this call (answered by [`LmResult::id`]).
    pub id: u64,
    /// The id of the request whose operation made the call: the pool serves it for that
    /// request's caller, and refuses it (error `Cancelled`) when nobody waits for that request
    /// any more. `None` from a worker that does not say: the running operation's caller serves it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<u64>,
    /// Whether the worker wants the completion streamed: [`LmChunk`]s as the LM generates, then
    /// the [`LmResult`] (a `stream_call`'s listened predictor asks so).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub stream: bool,
    /// What to complete.
    pub request: LmCallRequest,
}

/// The LM request inside an `lm_call`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LmCallRequest {
    /// The model DSPy's LM names (informational: the pool's LM answers).
    #[serde(default)]
    pub model: Option<String>,
    /// The conversation: `role` and `content` (a string, or OpenAI's list of content parts).
    pub messages: Vec<WireMessage>,
    /// Sampling temperature.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f64>,
    /// Most tokens to generate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u32>,
    /// Completions wanted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub n: Option<u32>,
    /// Stop sequences (a string, a list, or null on the wire).
    #[serde(
        default,
        deserialize_with = "stop_sequences",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub stop: Vec<String>,
    /// Other parameters, passed on as they are.
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub extra: Map<String, Value>,
}

/// One message of an [`LmCallRequest`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WireMessage {
    /// `system`, `user`, `assistant` or `tool` (`developer` is read as `system`).
    pub role: String,
    /// A string, or a list of `{"type": "text", "text": ...}` parts (`null`: none).
    pub content: Value,
    /// An assistant message's tool calls, in OpenAI's shape (`{"id", "type": "function",
    /// "function": {"name", "arguments"}}`), as DSPy sends a History turn's calls with native
    /// function calling.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<Value>,
    /// The call a `tool` message answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_call_id: Option<String>,
    /// The tool whose result a `tool` message carries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

fn stop_sequences<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Stop {
        One(String),
        Many(Vec<String>),
    }
    Ok(match Option::<Stop>::deserialize(d)? {
        None => Vec::new(),
        Some(Stop::One(s)) => vec![s],
        Some(Stop::Many(v)) => v,
    })
}

impl LmCallRequest {
    /// The request as the LM layer's [`LmRequest`]. From `extra`, `response_format`, `seed` and
    /// `rollout_id` move to their own fields (when they have the LM layer's shape) and `cache` is
    /// dropped (the [`LanguageModel`](crate::lm::LanguageModel) trait has no per-request cache
    /// switch; the LM's own cache setting applies); the other keys are passed on. Fails (with a
    /// message for the worker) on a role or content the LM layer cannot send (a content part
    /// other than text, `image_url`, `input_audio` or `file`).
    pub fn to_lm_request(&self) -> Result<LmRequest, String> {
        let mut messages = Vec::with_capacity(self.messages.len());
        for (i, m) in self.messages.iter().enumerate() {
            let role = match m.role.as_str() {
                "system" | "developer" => Role::System,
                "user" => Role::User,
                "assistant" => Role::Assistant,
                "tool" => Role::Tool,
                other => return Err(format!("messages[{i}]: unsupported role `{other}`")),
            };
            let content = match &m.content {
                Value::String(s) => Content::Text(s.clone()),
                Value::Array(parts) => {
                    let mut out = Vec::with_capacity(parts.len());
                    for (j, part) in parts.iter().enumerate() {
                        let part = ContentPart::deserialize(part).map_err(|e| {
                            format!(
                                "messages[{i}].content[{j}]: not a text, image_url, input_audio or file part ({e})"
                            )
                        })?;
                        out.push(part);
                    }
                    Content::Parts(out)
                }
                Value::Null => Content::default(),
                _ => {
                    return Err(format!(
                        "messages[{i}]: content must be a string or a list of parts"
                    ));
                }
            };
            let mut message = Message::new(role, content);
            for (j, call) in m.tool_calls.iter().enumerate() {
                let call = MessageToolCall::deserialize(call).map_err(|e| {
                    format!(
                        "messages[{i}].tool_calls[{j}]: not an OpenAI tool call {{\"id\", \"function\": {{\"name\", \"arguments\"}}}} ({e})"
                    )
                })?;
                message.tool_calls.push(call);
            }
            message.tool_call_id.clone_from(&m.tool_call_id);
            message.name.clone_from(&m.name);
            messages.push(message);
        }
        let mut extra = self.extra.clone();
        extra.remove("cache");
        let response_format = match extra.get("response_format") {
            Some(v) => match serde_json::from_value::<ResponseFormat>(v.clone()) {
                Ok(format) => {
                    extra.remove("response_format");
                    Some(format)
                }
                Err(_) => None,
            },
            None => None,
        };
        let mut take_u64 = |key: &str| match extra.get(key).and_then(Value::as_u64) {
            Some(n) => {
                extra.remove(key);
                Some(n)
            }
            None => None,
        };
        let seed = take_u64("seed");
        let rollout_id = take_u64("rollout_id");
        Ok(LmRequest {
            messages,
            temperature: self.temperature,
            max_tokens: self.max_tokens,
            n: self.n,
            stop: self.stop.clone(),
            seed,
            response_format,
            extra,
            rollout_id,
        })
    }
}

/// The answer to an `lm_call`: `{"kind": "lm_result", "id": 3, "ok": {...}}` or `..."error": {...}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename = "lm_result")]
pub struct LmResult {
    /// The `lm_call`'s id.
    pub id: u64,
    /// The completions, on success.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ok: Option<LmCompletion>,
    /// The failure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<RemoteError>,
}

impl LmResult {
    /// A successful answer from an LM response.
    pub fn from_response(id: u64, response: &LmResponse) -> Self {
        LmResult {
            id,
            ok: Some(LmCompletion {
                choices: response.texts().map(str::to_string).collect(),
                usage: response.usage,
                model: response.model.clone(),
            }),
            error: None,
        }
    }

    /// A failed answer.
    pub fn error(id: u64, kind: impl Into<String>, message: impl Into<String>) -> Self {
        LmResult {
            id,
            ok: None,
            error: Some(RemoteError::new(kind, message)),
        }
    }
}

/// The `ok` of an [`LmResult`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LmCompletion {
    /// Each completion's text.
    pub choices: Vec<String>,
    /// Token counts.
    pub usage: Usage,
    /// The model that answered.
    pub model: String,
}

/// How a worker's DSPy reaches its LM (`configure`'s `lm.mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LmMode {
    /// Completions come back over the bridge (`lm_call`) to the pool's LM: one cache, one set
    /// of limits, one usage tracker.
    Bridge,
    /// The worker calls the endpoint itself (`dspy.LM(model, ...)`).
    Direct,
}

/// The LM a worker's DSPy is configured with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LmConfig {
    /// Bridge or direct.
    pub mode: LmMode,
    /// DSPy's model string (`openai/gpt-4o-mini`).
    pub model: String,
    /// The endpoint (direct mode).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_base: Option<String>,
    /// The key (direct mode). Printed as `***`; sent to the worker as it is.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "expose_key",
        deserialize_with = "read_key"
    )]
    pub api_key: Option<ApiKey>,
    /// Other `dspy.LM` keyword arguments.
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub kwargs: Map<String, Value>,
}

impl LmConfig {
    /// Bridge mode: DSPy's completions are answered by the pool's LM.
    pub fn bridge(model: impl Into<String>) -> Self {
        LmConfig {
            mode: LmMode::Bridge,
            model: model.into(),
            api_base: None,
            api_key: None,
            kwargs: Map::new(),
        }
    }

    /// Direct mode: the worker calls `model` at `api_base` itself.
    pub fn direct(
        model: impl Into<String>,
        api_base: Option<String>,
        api_key: Option<ApiKey>,
    ) -> Self {
        LmConfig {
            mode: LmMode::Direct,
            model: model.into(),
            api_base,
            api_key,
            kwargs: Map::new(),
        }
    }
}

fn expose_key<S: Serializer>(key: &Option<ApiKey>, s: S) -> Result<S::Ok, S::Error> {
    match key {
        Some(k) => s.serialize_some(k.expose()),
        None => s.serialize_none(),
    }
}

fn read_key<'de, D: Deserializer<'de>>(d: D) -> Result<Option<ApiKey>, D::Error> {
    Ok(Option::<String>::deserialize(d)?.map(ApiKey::new))
}

/// DSPy's adapter for a worker (`configure`'s `adapter`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AdapterKind {
    /// `dspy.ChatAdapter`.
    Chat,
    /// `dspy.JSONAdapter`.
    Json,
}

/// An operation the pool asks a worker for: the `op` of a `request` and its arguments.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Op {
    /// Liveness: `{"pong": true, "busy": bool, "rss_mb": float}` ([`PingResult`]), answered
    /// even while another operation runs.
    Ping,
    /// Configures DSPy's LM and adapter for the worker's process.
    Configure {
        /// The LM.
        lm: LmConfig,
        /// The adapter (DSPy's default when absent).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        adapter: Option<AdapterKind>,
    },
    /// Creates a DSPy module: `{"object": "o1"}` ([`CreateResult`]).
    Create {
        /// An attribute of `dspy` (`Predict`, `ChainOfThought`, `ReAct`, …).
        module: String,
        /// The signature string (`question -> answer`).
        signature: String,
        /// The signature's instructions (`dspy.Signature(signature, instructions)`); DSPy's
        /// default ones when `None`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        instructions: Option<String>,
        /// Field descriptions and prefixes that differ from DSPy's defaults, by field name:
        /// `{"answer": {"desc": "a number", "prefix": "Answer:"}}`.
        #[serde(default, skip_serializing_if = "Map::is_empty")]
        fields: Map<String, Value>,
        /// Other constructor arguments.
        #[serde(default, skip_serializing_if = "Map::is_empty")]
        kwargs: Map<String, Value>,
        /// The session the object belongs to.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        session: Option<String>,
    },
    /// Calls an object: `{"outputs": {...}}` ([`CallResult`]).
    Call {
        /// The object's id.
        object: String,
        /// The input fields.
        inputs: Map<String, Value>,
    },
    /// Calls an object under `dspy.streamify`: `stream_chunk` and `status` frames while it runs,
    /// then `{"outputs": {...}}` ([`CallResult`]). Only for workers with [`FEATURE_STREAM`].
    StreamCall {
        /// The object's id.
        object: String,
        /// The input fields.
        inputs: Map<String, Value>,
        /// The output fields to stream; `None`: every output field of the module's last
        /// predictor.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        fields: Option<Vec<String>>,
        /// Which status messages to send (DSPy's default, tool calls only, when absent).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        status: Option<StatusMessages>,
    },
    /// An object's state (DSPy's `dump_state(json_mode=True)`): `{"state": ...}`
    /// ([`StateResult`]).
    SaveState {
        /// The object's id.
        object: String,
    },
    /// Loads a state into an object.
    LoadState {
        /// The object's id.
        object: String,
        /// The state.
        state: Value,
    },
    /// Compiles an object with a DSPy optimizer, replacing it: `{"state": ...}`.
    Optimize {
        /// The object's id.
        object: String,
        /// An attribute of `dspy` (`MIPROv2`, `GEPA`, `SIMBA`, `BootstrapFewShot`, …).
        optimizer: String,
        /// The optimizer's constructor arguments.
        #[serde(default, skip_serializing_if = "Map::is_empty")]
        kwargs: Map<String, Value>,
        /// `compile`'s extra arguments.
        #[serde(default, skip_serializing_if = "Map::is_empty")]
        compile_kwargs: Map<String, Value>,
        /// The training examples.
        trainset: Vec<Map<String, Value>>,
        /// Which keys of the examples are inputs.
        input_keys: Vec<String>,
        /// `dspy.evaluate.<name>` or `exact_match`; none for optimizers without a metric
        /// (`LabeledFewShot`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        metric: Option<String>,
    },
    /// Forgets an object.
    Drop {
        /// The object's id.
        object: String,
    },
    /// Drops every object created in a session: `{"dropped": n}` ([`CloseSessionResult`]). The
    /// pool sends it when a [`Session`](super::Session) closes.
    CloseSession {
        /// The session's name (`s1`).
        session: String,
    },
    /// Asks the worker to cancel request `target` (best effort): `{"cancelled": bool}`.
    Cancel {
        /// The request id to cancel.
        target: u64,
    },
    /// Answers `{}`, then the worker exits.
    Shutdown,
}

impl Op {
    /// The op's wire name (`call`, `save_state`, …).
    pub fn name(&self) -> &'static str {
        match self {
            Op::Ping => "ping",
            Op::Configure { .. } => "configure",
            Op::Create { .. } => "create",
            Op::Call { .. } => "call",
            Op::StreamCall { .. } => "stream_call",
            Op::SaveState { .. } => "save_state",
            Op::LoadState { .. } => "load_state",
            Op::Optimize { .. } => "optimize",
            Op::Drop { .. } => "drop",
            Op::CloseSession { .. } => "close_session",
            Op::Cancel { .. } => "cancel",
            Op::Shutdown => "shutdown",
        }
    }

    /// Whether running the op twice is harmless, so the pool may retry it on another worker
    /// when its worker crashed: `ping`, `configure`, `call`, `stream_call` (until its first
    /// chunk or status message reached the caller: never after), `save_state`, `load_state`,
    /// `drop` and `close_session` are; `create` (a new object each time), `optimize` (long and costly), `cancel` and
    /// `shutdown` are not. [`RequestOptions::idempotent`](super::RequestOptions::idempotent)
    /// overrides it per request.
    pub fn is_idempotent(&self) -> bool {
        matches!(
            self,
            Op::Ping
                | Op::Configure { .. }
                | Op::Call { .. }
                | Op::StreamCall { .. }
                | Op::SaveState { .. }
                | Op::LoadState { .. }
                | Op::Drop { .. }
                | Op::CloseSession { .. }
        )
    }

    /// Whether the worker answers it from its reader at once (`ping`, `cancel`) instead of
    /// queueing it for the executor.
    pub fn is_immediate(&self) -> bool {
        matches!(self, Op::Ping | Op::Cancel { .. })
    }
}

#[derive(Serialize)]
#[serde(tag = "kind", rename = "request")]
struct RequestFrame<'a> {
    id: u64,
    #[serde(flatten)]
    op: &'a Op,
    /// The variables of the session the request runs in (`call` and `stream_call`), which the
    /// worker's Python code reads with `dspex_worker.session_state()`.
    #[serde(skip_serializing_if = "Option::is_none")]
    session_state: Option<&'a Map<String, Value>>,
}

/// Encodes request `id` for `op` as a frame.
pub fn encode_request(id: u64, op: &Op) -> Result<Vec<u8>, FrameError> {
    encode_frame(&RequestFrame {
        id,
        op,
        session_state: None,
    })
}

/// Which status messages a `stream_call` sends (its `status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum StatusMessages {
    /// DSPy's default `StatusMessageProvider`: a message as each tool call starts and ends.
    #[default]
    Tools,
    /// Also one as each module and LM call starts and ends.
    All,
}

/// The result of `ping`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PingResult {
    /// Always `true`.
    pub pong: bool,
    /// Whether an operation was running.
    #[serde(default)]
    pub busy: bool,
    /// The worker's resident memory in MiB.
    #[serde(default)]
    pub rss_mb: f64,
}

/// The result of `close_session`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct CloseSessionResult {
    /// How many objects the worker dropped.
    pub dropped: u64,
}

/// The result of `create`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreateResult {
    /// The new object's id.
    pub object: String,
}

/// The result of `call`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CallResult {
    /// The prediction's fields.
    pub outputs: Map<String, Value>,
}

/// The result of `save_state` and `optimize`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StateResult {
    /// DSPy's state of the object.
    pub state: Value,
}

/// The result of `cancel`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct CancelResult {
    /// Whether the target was found (queued or running).
    pub cancelled: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn body(frame: &[u8]) -> Value {
        let len = u32::from_be_bytes([frame[0], frame[1], frame[2], frame[3]]) as usize;
        assert_eq!(len, frame.len() - 4, "the header is the body's length");
        decode_frame(&frame[4..]).unwrap()
    }

    #[test]
    fn requests_have_the_documented_shape() {
        let cases = [
            (Op::Ping, json!({"kind": "request", "id": 1, "op": "ping"})),
            (
                Op::Shutdown,
                json!({"kind": "request", "id": 1, "op": "shutdown"}),
            ),
            (
                Op::Call {
                    object: "o1".into(),
                    inputs: json!({"question": "q"}).as_object().unwrap().clone(),
                },
                json!({"kind": "request", "id": 1, "op": "call", "object": "o1", "inputs": {"question": "q"}}),
            ),
            (
                Op::Create {
                    module: "ChainOfThought".into(),
                    signature: "question -> answer".into(),
                    instructions: None,
                    fields: Map::new(),
                    kwargs: Map::new(),
                    session: Some("s1".into()),
                },
                json!({"kind": "request", "id": 1, "op": "create", "module": "ChainOfThought",
                       "signature": "question -> answer", "session": "s1"}),
            ),
            (
                Op::Create {
                    module: "Predict".into(),
                    signature: "question -> answer".into(),
                    instructions: Some("Answer in one word.".into()),
                    fields: Map::new(),
                    kwargs: Map::new(),
                    session: None,
                },
                json!({"kind": "request", "id": 1, "op": "create", "module": "Predict",
                       "signature": "question -> answer", "instructions": "Answer in one word."}),
            ),
            (
                Op::Configure {
                    lm: LmConfig::direct(
                        "openai/x",
                        Some("http://h/v1".into()),
                        Some(ApiKey::new("sk")),
                    ),
                    adapter: Some(AdapterKind::Json),
                },
                json!({"kind": "request", "id": 1, "op": "configure",
                       "lm": {"mode": "direct", "model": "openai/x", "api_base": "http://h/v1", "api_key": "sk"},
                       "adapter": "json"}),
            ),
            (
                Op::StreamCall {
                    object: "o1".into(),
                    inputs: json!({"question": "q"}).as_object().unwrap().clone(),
                    fields: None,
                    status: None,
                },
                json!({"kind": "request", "id": 1, "op": "stream_call", "object": "o1", "inputs": {"question": "q"}}),
            ),
            (
                Op::StreamCall {
                    object: "o1".into(),
                    inputs: Map::new(),
                    fields: Some(vec!["answer".into()]),
                    status: Some(StatusMessages::All),
                },
                json!({"kind": "request", "id": 1, "op": "stream_call", "object": "o1", "inputs": {},
                       "fields": ["answer"], "status": "all"}),
            ),
            (
                Op::CloseSession {
                    session: "s1".into(),
                },
                json!({"kind": "request", "id": 1, "op": "close_session", "session": "s1"}),
            ),
            (
                Op::Cancel { target: 7 },
                json!({"kind": "request", "id": 1, "op": "cancel", "target": 7}),
            ),
            (
                Op::Optimize {
                    object: "o1".into(),
                    optimizer: "MIPROv2".into(),
                    kwargs: Map::new(),
                    compile_kwargs: Map::new(),
                    trainset: vec![
                        json!({"question": "q", "answer": "a"})
                            .as_object()
                            .unwrap()
                            .clone(),
                    ],
                    input_keys: vec!["question".into()],
                    metric: Some("exact_match".into()),
                },
                json!({"kind": "request", "id": 1, "op": "optimize", "object": "o1", "optimizer": "MIPROv2",
                       "trainset": [{"question": "q", "answer": "a"}], "input_keys": ["question"],
                       "metric": "exact_match"}),
            ),
        ];
        for (op, want) in cases {
            assert_eq!(body(&encode_request(1, &op).unwrap()), want, "{op:?}");
            // The op reads back from the request's own object (minus kind and id).
            let mut obj = want.as_object().unwrap().clone();
            obj.remove("kind");
            obj.remove("id");
            let back: Op = serde_json::from_value(Value::Object(obj)).unwrap();
            assert_eq!(back, op);
        }
    }

    #[test]
    fn lm_calls_keep_a_conversations_tool_calls() {
        let call: LmCallRequest = serde_json::from_value(json!({"messages": [
            {"role": "user", "content": "Weather?"},
            {"role": "assistant", "content": null, "tool_calls": [{"id": "c1", "type": "function",
                "function": {"name": "get_weather", "arguments": "{\"city\": \"Paris\"}"}}]},
            {"role": "tool", "tool_call_id": "c1", "name": "get_weather", "content": "Sunny"},
        ]}))
        .unwrap();
        let request = call.to_lm_request().unwrap();
        assert_eq!(
            request.messages[1],
            Message::assistant_tool_calls(
                "",
                vec![MessageToolCall::new(
                    "c1",
                    "get_weather",
                    "{\"city\": \"Paris\"}"
                )]
            )
        );
        assert_eq!(
            request.messages[2],
            Message::tool("c1", "get_weather", "Sunny")
        );
        let bad: LmCallRequest = serde_json::from_value(json!({"messages": [
            {"role": "assistant", "content": null, "tool_calls": [{"function": {}}]},
        ]}))
        .unwrap();
        let e = bad.to_lm_request().unwrap_err();
        assert!(e.contains("messages[0].tool_calls[0]"), "{e}");
    }

    #[test]
    fn the_api_key_never_prints() {
        let c = LmConfig::direct("m", None, Some(ApiKey::new("sk-secret")));
        assert!(!format!("{c:?}").contains("sk-secret"));
    }

    #[test]
    fn worker_messages_decode() {
        let ready: WorkerMessage = decode_frame(
            br#"{"kind": "ready", "protocol": 1, "pid": 42, "python": "3.11.7", "dspy": null}"#,
        )
        .unwrap();
        assert_eq!(
            ready,
            WorkerMessage::Ready(Ready {
                protocol: 1,
                pid: 42,
                python: "3.11.7".into(),
                dspy: None,
                features: Vec::new(),
                encodings: Vec::new(),
            })
        );
        let ok: WorkerMessage =
            decode_frame(br#"{"kind": "response", "id": 7, "ok": {"object": "o1"}}"#).unwrap();
        let WorkerMessage::Response(r) = ok else {
            panic!("not a response")
        };
        assert_eq!(r.into_result().unwrap(), json!({"object": "o1"}));
        let err: WorkerMessage = decode_frame(
            br#"{"kind": "response", "id": 7, "error": {"type": "ValueError", "message": "no", "traceback": "tb"}}"#,
        )
        .unwrap();
        let WorkerMessage::Response(r) = err else {
            panic!("not a response")
        };
        let e = r.into_result().unwrap_err();
        assert_eq!(
            (e.kind.as_str(), e.traceback.as_deref()),
            ("ValueError", Some("tb"))
        );
        let neither = Response {
            id: 1,
            ok: None,
            error: None,
        };
        assert_eq!(neither.into_result().unwrap_err().kind, "ProtocolError");
        // An lm_call that does not name its parent (served for the running operation).
        let orphan: WorkerMessage =
            decode_frame(br#"{"kind": "lm_call", "id": 4, "request": {"messages": []}}"#).unwrap();
        assert!(
            matches!(&orphan, WorkerMessage::LmCall(c) if c.id == 4 && c.parent.is_none()),
            "{orphan:?}"
        );
        let unknown: WorkerMessage = decode_frame(br#"{"kind": "log", "line": "x"}"#).unwrap();
        assert_eq!(unknown, WorkerMessage::Unknown);
        assert!(decode_frame::<WorkerMessage>(b"{not json").is_err());
        assert!(decode_frame::<WorkerMessage>(br#"{"kind": "response"}"#).is_err());
    }

    #[test]
    fn stream_frames_have_the_documented_shape() {
        let chunk: WorkerMessage = decode_frame(
            br#"{"kind": "stream_chunk", "id": 7, "predictor": "predict", "field": "answer", "chunk": "Par", "is_last": false}"#,
        )
        .unwrap();
        assert_eq!(
            chunk,
            WorkerMessage::StreamChunk(StreamChunk {
                id: 7,
                predictor: "predict".into(),
                field: "answer".into(),
                chunk: "Par".into(),
                is_last: false,
            })
        );
        let status: WorkerMessage =
            decode_frame(br#"{"kind": "status", "id": 7, "message": "Calling tool search..."}"#)
                .unwrap();
        assert_eq!(
            status,
            WorkerMessage::Status(StatusUpdate {
                id: 7,
                message: "Calling tool search...".into()
            })
        );
        // A chunk must name its request, field and predictor.
        assert!(
            decode_frame::<WorkerMessage>(br#"{"kind": "stream_chunk", "id": 7, "chunk": "x"}"#)
                .is_err()
        );
        // A streamed lm_call says so; a plain one (an older worker's) reads as not streamed.
        let call: WorkerMessage = decode_frame(
            br#"{"kind": "lm_call", "id": 3, "parent": 7, "stream": true, "request": {"messages": []}}"#,
        )
        .unwrap();
        assert!(matches!(
            call,
            WorkerMessage::LmCall(LmCall { stream: true, .. })
        ));
        let plain: LmCall =
            serde_json::from_value(json!({"id": 3, "request": {"messages": []}})).unwrap();
        assert!(!plain.stream);
        assert_eq!(
            serde_json::to_value(&plain).unwrap(),
            json!({"id": 3, "request": {"model": null, "messages": []}})
        );
        assert_eq!(
            body(
                &encode_frame(&LmChunk {
                    id: 3,
                    text: "Pa".into()
                })
                .unwrap()
            ),
            json!({"kind": "lm_chunk", "id": 3, "text": "Pa"})
        );
        // Features: absent from an older worker's ready frame.
        let ready: Ready = serde_json::from_value(
            json!({"protocol": 1, "pid": 1, "python": "3.11", "features": [FEATURE_STREAM]}),
        )
        .unwrap();
        assert_eq!(ready.features, [FEATURE_STREAM]);
        let old: Ready =
            serde_json::from_value(json!({"protocol": 1, "pid": 1, "python": "3.11"})).unwrap();
        assert!(old.features.is_empty());
    }

    #[test]
    fn lm_calls_become_lm_requests() {
        let msg: WorkerMessage = decode_frame(
            br#"{"kind": "lm_call", "id": 3, "parent": 17, "request": {"model": "openai/x",
                "messages": [{"role": "system", "content": "s"},
                             {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}],
                "temperature": 0.5, "max_tokens": 10, "n": 2, "stop": "END",
                "extra": {"top_p": 0.9, "cache": false, "rollout_id": 3, "seed": 5,
                          "response_format": {"type": "json_object"}}}}"#,
        )
        .unwrap();
        let WorkerMessage::LmCall(call) = msg else {
            panic!("not an lm_call")
        };
        assert_eq!((call.id, call.parent), (3, Some(17)));
        let req = call.request.to_lm_request().unwrap();
        // Content parts are sent on as parts, as DSPy sends them.
        assert_eq!(
            req.messages,
            vec![
                Message::system("s"),
                Message::user(vec![
                    crate::lm::ContentPart::text("a"),
                    crate::lm::ContentPart::text("b")
                ])
            ]
        );
        assert_eq!(req.temperature, Some(0.5));
        assert_eq!(req.max_tokens, Some(10));
        assert_eq!(req.n, Some(2));
        assert_eq!(req.stop, vec!["END".to_string()]);
        assert_eq!(req.extra, *json!({"top_p": 0.9}).as_object().unwrap());
        assert_eq!((req.rollout_id, req.seed), (Some(3), Some(5)));
        assert_eq!(req.response_format, Some(ResponseFormat::JsonObject));
        // A response format the LM layer does not know stays in `extra`.
        let odd: LmCallRequest = serde_json::from_value(json!({
            "messages": [], "extra": {"response_format": {"type": "weird"}, "rollout_id": "x"}}))
        .unwrap();
        let req = odd.to_lm_request().unwrap();
        assert_eq!(req.response_format, None);
        assert_eq!(req.extra.len(), 2);

        let bad: LmCallRequest = serde_json::from_value(
            json!({"messages": [{"role": "function", "content": "x"}], "stop": null}),
        )
        .unwrap();
        assert!(bad.to_lm_request().unwrap_err().contains("role `function`"));

        // Images go through; a part the LM layer does not know is named.
        let image: LmCallRequest = serde_json::from_value(json!({"messages": [{"role": "user",
            "content": [{"type": "image_url", "image_url": {"url": "https://x/cat.png"}}]}]}))
        .unwrap();
        assert!(
            image.to_lm_request().unwrap().messages[0]
                .content
                .has_media()
        );
        let odd_part: LmCallRequest = serde_json::from_value(json!({"messages": [{"role": "user",
            "content": ["a", {"type": "video", "video": {}}]}]}))
        .unwrap();
        assert!(
            odd_part
                .to_lm_request()
                .unwrap_err()
                .contains("messages[0].content[0]")
        );
    }

    #[test]
    fn lm_results_have_the_documented_shape() {
        let response = LmResponse {
            choices: vec![crate::lm::Choice {
                text: "hi".into(),
                finish_reason: None,
                tool_calls: Vec::new(),
                reasoning_content: None,
            }],
            usage: Usage {
                prompt_tokens: 1,
                completion_tokens: 2,
                total_tokens: 3,
            },
            model: "m".into(),
            latency: std::time::Duration::ZERO,
            cache_hit: false,
        };
        assert_eq!(
            body(&encode_frame(&LmResult::from_response(3, &response)).unwrap()),
            json!({"kind": "lm_result", "id": 3, "ok": {"choices": ["hi"],
                   "usage": {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3}, "model": "m"}})
        );
        assert_eq!(
            body(&encode_frame(&LmResult::error(4, "LmError", "down")).unwrap()),
            json!({"kind": "lm_result", "id": 4, "error": {"type": "LmError", "message": "down"}})
        );
    }

    #[tokio::test]
    async fn frames_round_trip_and_fail_cleanly() {
        let a = encode_frame(&json!({"a": 1})).unwrap();
        let b = encode_frame(&json!({"b": "é"})).unwrap();
        let mut stream: &[u8] = &[a.clone(), b].concat();
        assert_eq!(
            decode_frame::<Value>(&read_frame(&mut stream).await.unwrap().unwrap()).unwrap(),
            json!({"a": 1})
        );
        assert_eq!(
            decode_frame::<Value>(&read_frame(&mut stream).await.unwrap().unwrap()).unwrap(),
            json!({"b": "é"})
        );
        assert_eq!(read_frame(&mut stream).await, Ok(None));

        // A frame cut short, in the header or in the body.
        let mut cut: &[u8] = &a[..2];
        assert_eq!(
            read_frame(&mut cut).await,
            Err(FrameError::Truncated {
                expected: 4,
                read: 2
            })
        );
        let mut cut: &[u8] = &a[..a.len() - 1];
        assert!(matches!(
            read_frame(&mut cut).await,
            Err(FrameError::Truncated { .. })
        ));

        // An announced length over the cap is refused before anything is allocated.
        let mut huge: &[u8] = &((MAX_FRAME_BYTES as u32) + 1).to_be_bytes();
        assert_eq!(
            read_frame(&mut huge).await,
            Err(FrameError::TooLarge {
                len: MAX_FRAME_BYTES + 1
            })
        );
        // Exactly at the cap is allowed (the body is then read).
        let mut at_cap: &[u8] = &(MAX_FRAME_BYTES as u32).to_be_bytes();
        assert!(matches!(
            read_frame(&mut at_cap).await,
            Err(FrameError::Truncated { .. })
        ));

        // Writing goes through write_frame unchanged.
        let mut out = Vec::new();
        write_frame(&mut out, &a).await.unwrap();
        assert_eq!(out, a);

        // An oversized message is refused when encoding.
        let big = "x".repeat(MAX_FRAME_BYTES);
        assert!(matches!(
            encode_frame(&json!([big])),
            Err(FrameError::TooLarge { .. })
        ));
    }
    #[tokio::test]
    async fn msgpack_frames_round_trip_and_are_told_apart_from_json() {
        let messages = [
            json!({"kind": "response", "id": 7, "ok": {"outputs": {"answer": "é\n\"q\"", "n": -3, "x": 1.5, "ok": true, "none": null}}}),
            json!({"kind": "lm_call", "id": 3, "parent": 7, "request": {"messages": [{"role": "user", "content": "hi"}]}}),
            json!({"kind": "ready", "protocol": 1, "pid": 4, "python": "3.11.7", "encodings": ["json", "msgpack"]}),
        ];
        for m in &messages {
            let packed = encode_msgpack_frame(m).unwrap();
            assert_ne!(packed[0] & 0x80, 0, "the flag is set");
            let len = (u32::from_be_bytes([packed[0], packed[1], packed[2], packed[3]])
                & !MSGPACK_FLAG) as usize;
            assert_eq!(len, packed.len() - 4);
            let frame = read_encoded_frame(&mut &packed[..]).await.unwrap().unwrap();
            assert_eq!(frame.encoding, Encoding::MessagePack);
            assert_eq!(frame.decode::<Value>().unwrap(), *m);
            let typed: WorkerMessage = frame.decode().unwrap();
            let json_typed: WorkerMessage = decode_frame(&encode_frame(m).unwrap()[4..]).unwrap();
            assert_eq!(typed, json_typed, "both encodings read as the same message");
            // A reader of JSON frames only refuses it (as an old worker would), never parses it.
            assert!(matches!(
                read_frame(&mut &packed[..]).await,
                Err(FrameError::TooLarge { len }) if len > MAX_FRAME_BYTES
            ));
        }
        let ready: WorkerMessage =
            decode_msgpack_frame(&encode_msgpack_frame(&messages[2]).unwrap()[4..]).unwrap();
        let WorkerMessage::Ready(ready) = ready else {
            panic!("not ready")
        };
        assert!(ready.accepts(Encoding::MessagePack) && ready.accepts(Encoding::Json));
        let old: Ready =
            serde_json::from_value(json!({"protocol": 1, "pid": 4, "python": "3"})).unwrap();
        assert!(
            !old.accepts(Encoding::MessagePack),
            "no announcement, no MessagePack"
        );
        assert!(old.accepts(Encoding::Json));
    }

    #[tokio::test]
    async fn the_codec_switches_to_msgpack_just_above_the_threshold() {
        // {"s":"xxx"} is 8 bytes of JSON around the string.
        let at = |n: usize| json!({"s": "x".repeat(n)});
        let threshold = 100;
        let codec = FrameCodec::msgpack_above(threshold);
        let exactly = codec.encode(&at(threshold - 8)).unwrap();
        assert_eq!(exactly.len() - 4, threshold);
        assert_eq!(exactly[0] & 0x80, 0, "at the threshold: JSON");
        assert_eq!(exactly, encode_frame(&at(threshold - 8)).unwrap());
        let above = codec.encode(&at(threshold - 7)).unwrap();
        assert_ne!(above[0] & 0x80, 0, "one byte over: MessagePack");
        assert_eq!(above, encode_msgpack_frame(&at(threshold - 7)).unwrap());
        let frame = read_encoded_frame(&mut &above[..]).await.unwrap().unwrap();
        assert_eq!(frame.decode::<Value>().unwrap(), at(threshold - 7));
        // Off: JSON whatever the size; a zero threshold packs everything.
        let big = at(1 << 20);
        assert_eq!(FrameCodec::JSON.encode(&big).unwrap()[0] & 0x80, 0);
        assert_eq!(FrameCodec::default(), FrameCodec::JSON);
        assert_ne!(
            FrameCodec::msgpack_above(0).encode(&json!({})).unwrap()[0] & 0x80,
            0
        );
        // Requests through the codec read back as requests.
        let op = Op::Call {
            object: "o1".into(),
            inputs: at(500).as_object().unwrap().clone(),
        };
        let frame = codec.encode_request(9, &op).unwrap();
        let frame = read_encoded_frame(&mut &frame[..]).await.unwrap().unwrap();
        assert_eq!(frame.encoding, Encoding::MessagePack);
        assert_eq!(
            frame.decode::<Value>().unwrap(),
            json!({"kind": "request", "id": 9, "op": "call", "object": "o1", "inputs": at(500)})
        );
        // The pool's `frames` message.
        assert_eq!(
            body(
                &encode_frame(&FrameOptions {
                    msgpack_above: 65536
                })
                .unwrap()
            ),
            json!({"kind": "frames", "msgpack_above": 65536})
        );
    }

    #[tokio::test]
    async fn bad_msgpack_frames_fail_typed() {
        let bad: [&[u8]; 7] = [
            b"",                                          // nothing
            b"\xc1",                                      // a marker MessagePack never uses
            b"\x82\xa4kind\xa8response\xa2ok\xc4\x03abc", // `bin` where a JSON value goes
            b"\x81\xa4kind\xdb\xff\xff\xff\xffab",        // a string longer than the body
            b"\x81\xa1k\xa1v\x00",                        // a byte after the message
            b"\xa3\xff\xfe\xfd",                          // a string that is not UTF-8
            &[0x91; 200],                                 // nested past the depth limit
        ];
        // Floats JSON cannot carry: NaN (f64) and infinity (f32); a finite one reads.
        let nan64 = [
            &[0x81, 0xa1, b'x', 0xcb][..],
            &f64::NAN.to_bits().to_be_bytes(),
        ]
        .concat();
        let inf32 = [&[0x91, 0xca][..], &f32::INFINITY.to_bits().to_be_bytes()].concat();
        let finite = [&[0x91, 0xcb][..], &1.5f64.to_bits().to_be_bytes()].concat();
        assert_eq!(
            decode_msgpack_frame::<Value>(&finite).unwrap(),
            json!([1.5])
        );
        for body in [&nan64[..], &inf32[..]] {
            let e = decode_msgpack_frame::<Value>(body).unwrap_err();
            assert!(e.to_string().contains("NaN or infinite"), "{e}");
        }
        // More elements announced than bytes left; a length past the body.
        assert!(decode_msgpack_frame::<Value>(&[0xdd, 0xff, 0xff, 0xff, 0xff, 0x01]).is_err());
        assert!(decode_msgpack_frame::<Value>(&[0xc6, 0xff, 0xff, 0xff, 0xff]).is_err());
        for body in bad {
            match decode_msgpack_frame::<Value>(body) {
                Err(FrameError::MessagePack { excerpt, .. }) => {
                    assert!(excerpt.len() <= 32 * 2 + 3, "{excerpt}");
                }
                other => panic!("{body:?} decoded as {other:?}"),
            }
        }
        // A message of the wrong shape.
        let e = decode_msgpack_frame::<WorkerMessage>(
            &encode_msgpack_frame(&json!({"kind": "response"})).unwrap()[4..],
        )
        .unwrap_err();
        assert!(e.to_string().contains("bad MessagePack frame"), "{e}");
        // Over the cap, with the flag: refused before anything is allocated.
        let mut huge: &[u8] = &(MSGPACK_FLAG | (MAX_FRAME_BYTES as u32 + 1)).to_be_bytes();
        assert_eq!(
            read_encoded_frame(&mut huge).await,
            Err(FrameError::TooLarge {
                len: MAX_FRAME_BYTES + 1
            })
        );
        let mut cut: &[u8] = &encode_msgpack_frame(&json!({"a": 1})).unwrap()[..6];
        assert!(matches!(
            read_encoded_frame(&mut cut).await,
            Err(FrameError::Truncated { .. })
        ));
        // Encoding a message over the cap fails in both encodings.
        let big = json!(["x".repeat(MAX_FRAME_BYTES)]);
        assert!(matches!(
            encode_msgpack_frame(&big),
            Err(FrameError::TooLarge { .. })
        ));
        assert!(matches!(
            FrameCodec::msgpack_above(1024).encode(&big),
            Err(FrameError::TooLarge { .. })
        ));
    }
}
