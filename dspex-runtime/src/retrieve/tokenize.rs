//! The tokenizer of `bm25s` (`bm25s.tokenize(texts, stopwords="en")`), so that an index built here
//! ranks as `bm25s` ranks: lowercase the text, take every run of two or more word characters
//! (Python's `(?u)\b\w\w+\b`), drop English stopwords.

/// The English stopwords `bm25s` drops (`stopwords="en"`; Lucene's English stop set).
pub const STOPWORDS_EN: [&str; 33] = [
    "a", "an", "and", "are", "as", "at", "be", "but", "by", "for", "if", "in", "into", "is", "it",
    "no", "not", "of", "on", "or", "such", "that", "the", "their", "then", "there", "these",
    "they", "this", "to", "was", "will", "with",
];

/// Whether `token` is one of [`STOPWORDS_EN`].
pub(crate) fn is_stopword(token: &str) -> bool {
    STOPWORDS_EN.binary_search(&token).is_ok()
}

/// A word character: a Unicode letter or number, or `_` — Python's `\w`, except that Rust's
/// alphabetic class also holds a few combining marks Python's leaves out.
fn is_word_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// Calls `each` with every token of `text`, in order, reusing one buffer.
pub(crate) fn for_each_token(text: &str, buffer: &mut String, mut each: impl FnMut(&str)) {
    buffer.clear();
    let mut chars = 0;
    let mut flush = |buffer: &mut String, chars: &mut usize| {
        if *chars >= 2 && !is_stopword(buffer) {
            each(buffer);
        }
        buffer.clear();
        *chars = 0;
    };
    if text.is_ascii() {
        for b in text.bytes() {
            if b.is_ascii_alphanumeric() || b == b'_' {
                buffer.push(char::from(b.to_ascii_lowercase()));
                chars += 1;
            } else if chars > 0 {
                flush(buffer, &mut chars);
            }
        }
    } else {
        // The whole string at once, as Python's `str.lower` does: a final sigma depends on its
        // neighbours.
        for c in text.to_lowercase().chars() {
            if is_word_char(c) {
                buffer.push(c);
                chars += 1;
            } else if chars > 0 {
                flush(buffer, &mut chars);
            }
        }
    }
    flush(buffer, &mut chars);
}

/// The tokens of `text` as `bm25s` makes them (lowercased, stopwords removed).
///
/// ```
/// use dspex_runtime::retrieve::tokenize;
///
/// assert_eq!(tokenize("The Quick-brown fox, a dog & 2 cats_ok!"), ["quick", "brown", "fox", "dog", "cats_ok"]);
/// ```
pub fn tokenize(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for_each_token(text, &mut String::new(), |t| out.push(t.to_string()));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stopwords_are_sorted_for_binary_search() {
        assert!(STOPWORDS_EN.windows(2).all(|w| w[0] < w[1]));
        assert!(is_stopword("the") && is_stopword("with") && !is_stopword("thee"));
    }

    #[test]
    fn matches_python_word_runs() {
        // Single characters are not tokens; underscores and digits are word characters.
        assert_eq!(tokenize("I x y2 _a 42 3"), ["y2", "_a", "42"]);
        // Lowercasing happens before splitting, and non-ASCII letters are word characters.
        assert_eq!(
            tokenize("ÉCOLE Straße ΣΊΣΥΦΟΣ"),
            ["école", "straße", "σίσυφος"]
        );
        // Punctuation and symbols split words; stopwords go after lowercasing.
        assert_eq!(tokenize("THE end—of-it...isn't"), ["end", "isn"]);
        assert!(tokenize("").is_empty());
    }
}
