//! Small deterministic helpers: hashing, lock-free pseudo-randomness, base64, word counts.

use sha2::{Digest, Sha256};

/// SHA-256 over the concatenation of `parts`.
pub(crate) fn sha256(parts: &[&[u8]]) -> [u8; 32] {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update(part);
    }
    let digest = hasher.finalize();
    let mut out = [0u8; 32];
    out.copy_from_slice(&digest);
    out
}

/// The first 8 bytes of SHA-256 over `parts`, as a little-endian `u64`.
pub(crate) fn sha_u64(parts: &[&[u8]]) -> u64 {
    let digest = sha256(parts);
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&digest[..8]);
    u64::from_le_bytes(bytes)
}

/// SplitMix64's finaliser: a fast, well-mixed 64-bit hash of `x`.
pub(crate) fn mix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// Mixes several words into one hash (order matters).
pub(crate) fn mix_all(words: &[u64]) -> u64 {
    words
        .iter()
        .fold(0x6A09_E667_F3BC_C908, |acc, w| mix64(acc ^ mix64(*w)))
}

/// A uniform number in `[0, 1)` from a hash.
pub(crate) fn unit(hash: u64) -> f64 {
    // 53 random bits, the precision of an f64 mantissa.
    (hash >> 11) as f64 / (1u64 << 53) as f64
}

/// A process-random seed (used when the builder is given none).
pub(crate) fn random_seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(0x5eed);
    hasher.finish()
}

/// Standard base64 (with padding) of `bytes`.
pub(crate) fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        let sextet = |shift: u32| char::from(ALPHABET[((n >> shift) & 63) as usize]);
        out.push(sextet(18));
        out.push(sextet(12));
        out.push(if chunk.len() > 1 { sextet(6) } else { '=' });
        out.push(if chunk.len() > 2 { sextet(0) } else { '=' });
    }
    out
}

/// Whitespace-separated word count: the mock's notion of a token.
pub(crate) fn words(text: &str) -> u64 {
    text.split_whitespace().count() as u64
}

/// Cuts `text` after its `max`-th word. Returns `None` when it has at most `max` words.
pub(crate) fn truncate_words(text: &str, max: u64) -> Option<&str> {
    let mut seen = 0u64;
    let mut in_word = false;
    for (i, c) in text.char_indices() {
        if c.is_whitespace() {
            in_word = false;
        } else if !in_word {
            in_word = true;
            if seen == max {
                return Some(text[..i].trim_end());
            }
            seen += 1;
        }
    }
    None
}

/// Splits `text` into at most `parts` consecutive pieces at word starts; the pieces concatenate
/// back to `text` exactly. An empty text gives no pieces.
pub(crate) fn split_deltas(text: &str, parts: usize) -> Vec<&str> {
    if text.is_empty() {
        return Vec::new();
    }
    let mut starts: Vec<usize> = Vec::new();
    let mut prev_space = true;
    for (i, c) in text.char_indices() {
        let space = c.is_whitespace();
        if !space && prev_space && i > 0 {
            starts.push(i);
        }
        prev_space = space;
    }
    let parts = parts.max(1);
    let pieces = (starts.len() + 1).min(parts);
    let mut cuts: Vec<usize> = (1..pieces)
        .map(|k| starts[k * starts.len() / pieces])
        .collect();
    cuts.dedup();
    let mut out = Vec::with_capacity(cuts.len() + 1);
    let mut from = 0;
    for cut in cuts {
        if cut > from {
            out.push(&text[from..cut]);
            from = cut;
        }
    }
    out.push(&text[from..]);
    out
}

/// Seconds as short decimal text: `1`, `0.2`, `1.25`.
pub(crate) fn seconds_text(d: std::time::Duration) -> String {
    let text = format!("{:.3}", d.as_secs_f64());
    let text = text.trim_end_matches('0').trim_end_matches('.');
    if text.is_empty() {
        "0".to_owned()
    } else {
        text.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn base64_matches_rfc4648_vectors() {
        let cases = [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ];
        for (plain, encoded) in cases {
            assert_eq!(base64(plain.as_bytes()), encoded);
        }
    }

    #[test]
    fn truncation_keeps_the_first_words() {
        assert_eq!(truncate_words("a b  c d", 2), Some("a b"));
        assert_eq!(truncate_words("a b", 2), None);
        assert_eq!(truncate_words("  a\nb c", 1), Some("  a"));
        assert_eq!(truncate_words("a b", 0), Some(""));
        assert_eq!(truncate_words("", 0), None);
    }

    #[test]
    fn deltas_concatenate_to_the_text() {
        for text in [
            "",
            "one",
            "one two",
            "a b c d e f g h i",
            "[[ ## a ## ]]\nx\n\n[[ ## completed ## ]]",
        ] {
            let parts = split_deltas(text, 4);
            assert!(parts.len() <= 4);
            assert_eq!(parts.concat(), text);
            assert!(parts.iter().all(|p| !p.is_empty()));
        }
        assert_eq!(split_deltas("a b c d e f g h", 4).len(), 4);
    }

    #[test]
    fn seconds_are_short() {
        assert_eq!(seconds_text(Duration::from_millis(200)), "0.2");
        assert_eq!(seconds_text(Duration::from_secs(2)), "2");
        assert_eq!(seconds_text(Duration::from_millis(1250)), "1.25");
        assert_eq!(seconds_text(Duration::ZERO), "0");
    }

    #[test]
    fn unit_is_in_range() {
        for i in 0..1000 {
            let u = unit(mix64(i));
            assert!((0.0..1.0).contains(&u));
        }
        assert!(unit(u64::MAX) < 1.0);
    }
}
