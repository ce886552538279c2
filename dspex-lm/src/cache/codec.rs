//! The value format of the Redis tier: a versioned header with the entry's own key and a
//! checksum, then the response's JSON, LZ4-compressed above a size threshold.
//!
//! ```text
//! 0..4    magic "DXRR"
//! 4       format version (1)
//! 5       flags: bit 0 = payload compressed with LZ4 (block format)
//! 6..38   the entry's CacheKey (a value copied under another key is foreign: dropped)
//! 38..46  stored payload length, u64 LE
//! 46..54  JSON length once decompressed, u64 LE (at most 256 MiB)
//! 54..62  first 8 bytes of the SHA-256 of the JSON
//! 62..    payload
//! ```
//!
//! Compression is LZ4 through `lz4_flex`: pure Rust with its `unsafe` code switched off
//! (`safe-encode`, `safe-decode`), a decoder that checks every offset (`checked-decode`), well
//! kept, fast enough (GB/s) that a cache hit does not notice it, and already in the build through
//! tantivy — zstd compresses JSON better but needs a C library and costs more CPU per hit.

use super::CacheKey;
use crate::types::LmResponse;
use sha2::{Digest, Sha256};

const MAGIC: [u8; 4] = *b"DXRR";
const VERSION: u8 = 1;
const FLAG_LZ4: u8 = 1;
const KEY_LEN: usize = 32;
const HEADER_LEN: usize = 4 + 1 + 1 + KEY_LEN + 8 + 8 + 8;
/// The largest decompressed JSON accepted (well above the client's 64 MiB response cap).
const MAX_RAW_LEN: u64 = 256 * 1024 * 1024;
/// LZ4 expands at most ~255×: a claimed length beyond that is a lie, not worth allocating.
const MAX_LZ4_RATIO: u64 = 255;

/// Default size (bytes of JSON) above which values are compressed.
#[cfg_attr(not(feature = "redis"), allow(dead_code))]
pub(crate) const DEFAULT_COMPRESS_ABOVE: usize = 1024;

/// The bytes stored in Redis for `response` under `key`, compressed when its JSON is longer
/// than `compress_above` bytes.
pub(crate) fn encode(
    key: &CacheKey,
    response: &LmResponse,
    compress_above: usize,
) -> Result<Vec<u8>, serde_json::Error> {
    let json = serde_json::to_vec(response)?;
    let (flags, payload) = if json.len() > compress_above {
        (FLAG_LZ4, lz4_flex::block::compress(&json))
    } else {
        (0, json.clone())
    };
    let mut out = Vec::with_capacity(HEADER_LEN + payload.len());
    out.extend_from_slice(&MAGIC);
    out.push(VERSION);
    out.push(flags);
    out.extend_from_slice(key.as_bytes());
    out.extend_from_slice(&(payload.len() as u64).to_le_bytes());
    out.extend_from_slice(&(json.len() as u64).to_le_bytes());
    out.extend_from_slice(&checksum(&json));
    out.extend_from_slice(&payload);
    Ok(out)
}

/// The response stored in `bytes` for `key`, or why the value is corrupt or foreign.
pub(crate) fn decode(key: &CacheKey, bytes: &[u8]) -> Result<LmResponse, &'static str> {
    let (header, payload) = bytes
        .split_at_checked(HEADER_LEN)
        .ok_or("truncated header")?;
    if header[..4] != MAGIC {
        return Err("bad magic");
    }
    if header[4] != VERSION {
        return Err("unknown format version");
    }
    let flags = header[5];
    if flags & !FLAG_LZ4 != 0 {
        return Err("unknown flags");
    }
    if header[6..6 + KEY_LEN] != key.as_bytes()[..] {
        return Err("stored for another key");
    }
    let read_u64 = |at: usize| {
        let mut b = [0u8; 8];
        b.copy_from_slice(&header[at..at + 8]);
        u64::from_le_bytes(b)
    };
    let stored_len = read_u64(6 + KEY_LEN);
    let raw_len = read_u64(6 + KEY_LEN + 8);
    let sum = &header[6 + KEY_LEN + 16..];
    if stored_len != payload.len() as u64 {
        return Err("length mismatch");
    }
    if raw_len > MAX_RAW_LEN {
        return Err("too large");
    }
    let decompressed;
    let json = if flags & FLAG_LZ4 != 0 {
        if raw_len > stored_len.saturating_mul(MAX_LZ4_RATIO) {
            return Err("implausible decompressed length");
        }
        // Bounded above: at most MAX_RAW_LEN.
        let raw_len = usize::try_from(raw_len).map_err(|_| "too large")?;
        decompressed =
            lz4_flex::block::decompress(payload, raw_len).map_err(|_| "bad compressed payload")?;
        if decompressed.len() != raw_len {
            return Err("length mismatch");
        }
        &decompressed[..]
    } else {
        if raw_len != stored_len {
            return Err("length mismatch");
        }
        payload
    };
    if sum != checksum(json) {
        return Err("checksum mismatch");
    }
    let response: LmResponse = serde_json::from_slice(json).map_err(|_| "invalid JSON")?;
    if response.choices.is_empty() {
        return Err("no choices");
    }
    Ok(response)
}

fn checksum(json: &[u8]) -> [u8; 8] {
    let digest: [u8; 32] = Sha256::digest(json).into();
    let mut out = [0; 8];
    out.copy_from_slice(&digest[..8]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{Choice, FinishReason, LmRequest, Usage};
    use std::time::Duration;

    fn key(text: &str) -> CacheKey {
        CacheKey::for_request("m", "dspex.chat", &LmRequest::prompt(text))
    }

    fn response(text: &str) -> LmResponse {
        LmResponse {
            choices: vec![Choice {
                text: text.into(),
                finish_reason: Some(FinishReason::Stop),
                tool_calls: Vec::new(),
                reasoning_content: None,
            }],
            usage: Usage::default(),
            model: "m".into(),
            latency: Duration::from_millis(3),
            cache_hit: false,
        }
    }

    #[test]
    fn small_values_are_stored_plain_and_large_ones_compressed() {
        let k = key("a");
        let small = response("short");
        let bytes = encode(&k, &small, DEFAULT_COMPRESS_ABOVE).unwrap();
        assert_eq!(&bytes[..4], b"DXRR");
        assert_eq!(bytes[5], 0);
        assert_eq!(decode(&k, &bytes).unwrap(), small);

        let large = response(&"the same words again and again ".repeat(200));
        let bytes = encode(&k, &large, DEFAULT_COMPRESS_ABOVE).unwrap();
        assert_eq!(bytes[5], FLAG_LZ4);
        let json_len = serde_json::to_vec(&large).unwrap().len();
        assert!(bytes.len() < json_len / 4, "{} vs {json_len}", bytes.len());
        assert_eq!(decode(&k, &bytes).unwrap(), large);
        // The threshold is the caller's: usize::MAX never compresses.
        assert_eq!(encode(&k, &large, usize::MAX).unwrap()[5], 0);
    }

    #[test]
    fn damaged_or_foreign_values_are_rejected() {
        let k = key("a");
        for text in ["short", &"long text to compress ".repeat(100)] {
            let bytes = encode(&k, &response(text), DEFAULT_COMPRESS_ABOVE).unwrap();
            assert_eq!(decode(&k, &bytes[..10]).unwrap_err(), "truncated header");
            assert_eq!(
                decode(&key("b"), &bytes).unwrap_err(),
                "stored for another key"
            );
            let mut bad = bytes.clone();
            bad[0] = b'X';
            assert_eq!(decode(&k, &bad).unwrap_err(), "bad magic");
            let mut bad = bytes.clone();
            bad[4] = 2;
            assert_eq!(decode(&k, &bad).unwrap_err(), "unknown format version");
            let mut bad = bytes.clone();
            bad[5] |= 0x80;
            assert_eq!(decode(&k, &bad).unwrap_err(), "unknown flags");
            assert_eq!(
                decode(&k, &bytes[..bytes.len() - 1]).unwrap_err(),
                "length mismatch"
            );
            // A flipped bit anywhere is caught, or (inside LZ4 data) decompresses to the very
            // same JSON, which the checksum then vouches for: never a different response.
            let original = decode(&k, &bytes).unwrap();
            for i in 0..bytes.len() {
                let mut bad = bytes.clone();
                bad[i] ^= 0x04;
                match decode(&k, &bad) {
                    Err(_) => {}
                    Ok(r) => assert!(i >= HEADER_LEN && r == original, "flip at {i} accepted"),
                }
            }
        }
        // A huge claimed length is refused before any allocation.
        let mut bad = encode(&k, &response(&"x".repeat(5000)), 10).unwrap();
        bad[46..54].copy_from_slice(&(200u64 * 1024 * 1024).to_le_bytes());
        assert_eq!(
            decode(&k, &bad).unwrap_err(),
            "implausible decompressed length"
        );
        bad[46..54].copy_from_slice(&u64::MAX.to_le_bytes());
        assert_eq!(decode(&k, &bad).unwrap_err(), "too large");
        assert_eq!(decode(&k, b"").unwrap_err(), "truncated header");
    }

    #[test]
    fn a_valid_header_over_something_else_is_rejected() {
        let k = key("a");
        let json = br#"{"not":"a response"}"#;
        let mut bytes = Vec::new();
        bytes.extend_from_slice(&MAGIC);
        bytes.push(VERSION);
        bytes.push(0);
        bytes.extend_from_slice(k.as_bytes());
        bytes.extend_from_slice(&(json.len() as u64).to_le_bytes());
        bytes.extend_from_slice(&(json.len() as u64).to_le_bytes());
        bytes.extend_from_slice(&checksum(json));
        bytes.extend_from_slice(json);
        assert_eq!(decode(&k, &bytes).unwrap_err(), "invalid JSON");
    }
}
