//! The signature-string grammar of dspex, shared by the proc-macros (compile time) and the runtime
//! (`DynSignature::parse`), so both accept exactly the same strings and report the same errors.
//!
//! A signature string is `inputs -> outputs`, each side a comma-separated list of `name` or
//! `name: type`. Types may be spelled the Rust way (`String`, `Vec<String>`, `Option<i64>`,
//! `HashMap<String, f64>`) or the DSPy way (`str`, `list[str]`, `Optional[int]`, `dict[str, float]`,
//! `Literal['a', 'b']`, `int | None`); both spellings resolve to the same [`TypeKind`].
//!
//! The parser never panics: every problem is a [`ParseError`] carrying a byte [`Span`] into the
//! source and a one-line reason, and parsing recovers at the next `,` or `->` so one pass reports
//! every mistake.
//!
//! ```
//! use dspex_grammar::{parse_signature, TypeKind};
//!
//! let sig = parse_signature("question: str, context: list[str] -> answer").unwrap();
//! assert_eq!(sig.inputs[1].name, "context");
//! assert_eq!(sig.inputs[1].ty.as_ref().unwrap().dspy_name(), "list[str]");
//! assert!(sig.outputs[0].ty.is_none()); // untyped fields are strings
//!
//! let err = parse_signature("question answer").unwrap_err();
//! assert_eq!(err[0].to_string(), "a signature needs `->` between its inputs and outputs (column 1)");
//! ```

mod lexer;
mod parser;
mod types;

pub use parser::{parse_signature, parse_signature_partial, parse_type};
pub use types::{
    FloatKind, IntKind, LiteralValue, MapKind, TypeExpr, TypeKind, code_language_marker,
    code_type_language, literal_type_name, python_str_repr, write_python_str_repr,
};

use std::fmt;

/// A byte range `start..end` inside the parsed string.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Span {
    /// Byte offset of the first byte.
    pub start: usize,
    /// Byte offset one past the last byte.
    pub end: usize,
}

impl Span {
    /// A span from `start` to `end` (byte offsets).
    pub fn new(start: usize, end: usize) -> Self {
        Span { start, end }
    }

    /// The smallest span covering both.
    pub fn join(self, other: Span) -> Span {
        Span::new(self.start.min(other.start), self.end.max(other.end))
    }
}

/// Which side of `->` a field is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Side {
    /// Left of `->`: the field is given to the step.
    Input,
    /// Right of `->`: the step produces the field.
    Output,
}

impl fmt::Display for Side {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Side::Input => "input",
            Side::Output => "output",
        })
    }
}

/// One `name` or `name: type` entry of a signature string.
#[derive(Debug, Clone, PartialEq)]
pub struct ParsedField {
    /// The field name, a valid Rust and Python identifier.
    pub name: String,
    /// Where the name is in the source.
    pub name_span: Span,
    /// The declared type; `None` when the field had no annotation (it is then a string).
    pub ty: Option<TypeExpr>,
    /// Input or output.
    pub side: Side,
}

/// A whole parsed signature string.
#[derive(Debug, Clone, PartialEq)]
pub struct ParsedSignature {
    /// Fields left of `->`, in order.
    pub inputs: Vec<ParsedField>,
    /// Fields right of `->`, in order.
    pub outputs: Vec<ParsedField>,
}

impl ParsedSignature {
    /// Inputs then outputs, in declaration order.
    pub fn fields(&self) -> impl Iterator<Item = &ParsedField> {
        self.inputs.iter().chain(self.outputs.iter())
    }
}

/// What went wrong, for callers that branch on the kind of mistake.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// No `->` in the string.
    MissingArrow,
    /// More than one `->`.
    MultipleArrows,
    /// Nothing left of `->`.
    EmptyInputs,
    /// Nothing right of `->`.
    EmptyOutputs,
    /// The same name twice on one side.
    DuplicateField,
    /// The same name as an input and an output.
    NameOnBothSides,
    /// A name that is not an identifier.
    InvalidIdentifier,
    /// A Rust keyword used as a field name.
    Keyword,
    /// A type this grammar does not support.
    UnsupportedType,
    /// A token that does not belong where it is.
    UnexpectedToken,
    /// The string ended in the middle of a field or type.
    UnexpectedEnd,
    /// A malformed `Literal[...]` member.
    InvalidLiteral,
}

/// A mistake in a signature string: what, where, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    /// The kind of mistake.
    pub kind: ErrorKind,
    /// Where it is (byte offsets into the source string).
    pub span: Span,
    /// 1-based column (in characters) of the span's start.
    pub column: usize,
    /// The reason, in one line.
    pub message: String,
}

impl ParseError {
    pub(crate) fn new(src: &str, kind: ErrorKind, span: Span, message: impl Into<String>) -> Self {
        let start = span.start.min(src.len());
        let column = src.char_indices().take_while(|(i, _)| *i < start).count() + 1;
        ParseError {
            kind,
            span,
            column,
            message: message.into(),
        }
    }
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (column {})", self.message, self.column)
    }
}

impl std::error::Error for ParseError {}

/// Rust's strict and reserved keywords (2024 edition), which cannot name a generated struct field.
pub const RUST_KEYWORDS: &[&str] = &[
    "Self", "abstract", "as", "async", "await", "become", "box", "break", "const", "continue",
    "crate", "do", "dyn", "else", "enum", "extern", "false", "final", "fn", "for", "gen", "if",
    "impl", "in", "let", "loop", "macro", "match", "mod", "move", "mut", "override", "priv", "pub",
    "ref", "return", "self", "static", "struct", "super", "trait", "true", "try", "type", "typeof",
    "unsafe", "unsized", "use", "virtual", "where", "while", "yield",
];

/// Checks that `name` can be a signature field name: an ASCII identifier (not `_`) that is not a
/// Rust keyword. Returns the kind of problem and a reason.
pub fn check_field_name(name: &str) -> Result<(), (ErrorKind, String)> {
    let mut chars = name.chars();
    let valid = match chars.next() {
        Some(c) if c == '_' || c.is_ascii_alphabetic() => {
            chars.all(|c| c == '_' || c.is_ascii_alphanumeric())
        }
        _ => false,
    };
    if !valid || name == "_" {
        return Err((
            ErrorKind::InvalidIdentifier,
            format!(
                "`{name}` is not a valid field name: use letters, digits and `_`, not starting with a digit"
            ),
        ));
    }
    if RUST_KEYWORDS.contains(&name) {
        return Err((
            ErrorKind::Keyword,
            format!("`{name}` is a Rust keyword and cannot name a field; pick another name"),
        ));
    }
    Ok(())
}

/// DSPy's default instructions for a signature with these input and output names:
/// ``Given the fields `a`, `b`, produce the fields `c`.``
pub fn default_instructions<'a>(
    inputs: impl IntoIterator<Item = &'a str>,
    outputs: impl IntoIterator<Item = &'a str>,
) -> String {
    let join = |names: &mut dyn Iterator<Item = &'a str>| {
        names
            .map(|n| format!("`{n}`"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    format!(
        "Given the fields {}, produce the fields {}.",
        join(&mut inputs.into_iter()),
        join(&mut outputs.into_iter())
    )
}

/// DSPy's `infer_prefix`: `search_query` → `Search Query`, `HTMLParser` → `HTML Parser`,
/// `text2number` → `Text 2 Number`. The stored prefix adds a colon.
pub fn infer_prefix(name: &str) -> String {
    // The four regex substitutions of dspy/signatures/signature.py, applied in order.
    let chars: Vec<char> = name.chars().collect();
    // 1. (.)([A-Z][a-z]+) -> \1_\2
    let step1 = {
        let mut out = String::new();
        let mut i = 0;
        while i < chars.len() {
            let c = chars[i];
            out.push(c);
            // Python's regex scans left to right without overlap: a match consumes `(.)` and the
            // capitalized word, so continue after the word.
            if i + 1 < chars.len()
                && chars[i + 1].is_ascii_uppercase()
                && i + 2 < chars.len()
                && chars[i + 2].is_ascii_lowercase()
            {
                out.push('_');
                let mut j = i + 1;
                out.push(chars[j]);
                j += 1;
                while j < chars.len() && chars[j].is_ascii_lowercase() {
                    out.push(chars[j]);
                    j += 1;
                }
                i = j;
                continue;
            }
            i += 1;
        }
        out
    };
    // 2. ([a-z0-9])([A-Z]) -> \1_\2
    let step2 = split_between(&step1, |a, b| {
        (a.is_ascii_lowercase() || a.is_ascii_digit()) && b.is_ascii_uppercase()
    });
    // 3. ([a-zA-Z])(\d) -> \1_\2, then (\d)([a-zA-Z]) -> \1_\2
    let step3 = split_between(&step2, |a, b| a.is_ascii_alphabetic() && b.is_ascii_digit());
    let step4 = split_between(&step3, |a, b| a.is_ascii_digit() && b.is_ascii_alphabetic());
    step4
        .split('_')
        .map(|word| {
            if is_python_upper(word) {
                word.to_string()
            } else {
                python_capitalize(word)
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Inserts `_` between adjacent characters `a`, `b` where `pred(a, b)`, scanning without overlap
/// exactly as `re.sub` with a two-character pattern does.
fn split_between(s: &str, pred: impl Fn(char, char) -> bool) -> String {
    let chars: Vec<char> = s.chars().collect();
    let mut out = String::with_capacity(s.len() + 4);
    let mut i = 0;
    while i < chars.len() {
        if i + 1 < chars.len() && pred(chars[i], chars[i + 1]) {
            out.push(chars[i]);
            out.push('_');
            out.push(chars[i + 1]);
            i += 2;
        } else {
            out.push(chars[i]);
            i += 1;
        }
    }
    out
}

/// Python's `str.isupper()`: at least one cased character and no lowercase ones.
fn is_python_upper(word: &str) -> bool {
    word.chars().any(|c| c.is_uppercase() || c.is_lowercase())
        && !word.chars().any(char::is_lowercase)
}

/// Python's `str.capitalize()`: first character upper-cased, the rest lower-cased.
fn python_capitalize(word: &str) -> String {
    let mut chars = word.chars();
    match chars.next() {
        Some(first) => first
            .to_uppercase()
            .chain(chars.flat_map(char::to_lowercase))
            .collect(),
        None => String::new(),
    }
}

/// Python's `inspect.cleandoc`, which DSPy applies to every signature's instructions: tabs
/// expanded, the first line left-stripped, the common indentation of the other non-blank lines
/// removed, then leading and trailing empty lines dropped.
pub fn cleandoc(doc: &str) -> String {
    let lines: Vec<Vec<char>> = doc.split('\n').map(expand_tabs).collect();
    let indent = |line: &[char]| line.iter().take_while(|c| c.is_whitespace()).count();
    let margin = lines
        .iter()
        .skip(1)
        .filter(|line| indent(line) < line.len())
        .map(|line| indent(line))
        .min();
    let mut out: Vec<String> = lines
        .iter()
        .enumerate()
        .map(|(i, line)| {
            let skip = if i == 0 {
                indent(line)
            } else {
                margin.unwrap_or(0)
            };
            line.iter().skip(skip).collect()
        })
        .collect();
    while out.last().is_some_and(String::is_empty) {
        out.pop();
    }
    let leading = out.iter().take_while(|l| l.is_empty()).count();
    out.drain(..leading);
    out.join("\n")
}

/// Python's `str.expandtabs()` with tab stops every 8 columns.
fn expand_tabs(line: &str) -> Vec<char> {
    let mut out = Vec::with_capacity(line.len());
    for c in line.chars() {
        if c == '\t' {
            let pad = 8 - out.len() % 8;
            out.extend(std::iter::repeat_n(' ', pad));
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_match_dspy() {
        let cases = [
            ("question", "Question"),
            ("search_query", "Search Query"),
            ("searchQuery", "Search Query"),
            ("HTMLParser", "HTML Parser"),
            ("getHTTPResponseCode", "Get HTTP Response Code"),
            ("text2number", "Text 2 Number"),
            ("v2_API", "V 2 API"),
            ("ABC_def", "ABC Def"),
            ("answer_1", "Answer 1"),
            ("_private", " Private"),
            ("__x", "  X"),
            ("is_fiction", "Is Fiction"),
        ];
        for (name, want) in cases {
            assert_eq!(infer_prefix(name), want, "prefix of {name}");
        }
    }

    #[test]
    fn default_instructions_match_dspy() {
        assert_eq!(
            default_instructions(["a", "b"], ["c"]),
            "Given the fields `a`, `b`, produce the fields `c`."
        );
        assert_eq!(
            default_instructions([], ["b"]),
            "Given the fields , produce the fields `b`."
        );
    }

    #[test]
    fn cleandoc_matches_python() {
        assert_eq!(cleandoc("  Do X.\n    more  "), "Do X.\nmore  ");
        assert_eq!(
            cleandoc(" Answer questions.\n\n with care."),
            "Answer questions.\n\nwith care."
        );
        assert_eq!(cleandoc("\n\n  a\n   b\n  c\n\n"), "a\n b\nc");
        assert_eq!(cleandoc("   "), "");
        assert_eq!(cleandoc("a\n   \n  b"), "a\n \nb");
        assert_eq!(cleandoc("x\n\tb"), "x\nb");
    }

    #[test]
    fn field_names() {
        assert!(check_field_name("question").is_ok());
        assert!(check_field_name("_x1").is_ok());
        assert_eq!(
            check_field_name("1a").unwrap_err().0,
            ErrorKind::InvalidIdentifier
        );
        assert_eq!(
            check_field_name("_").unwrap_err().0,
            ErrorKind::InvalidIdentifier
        );
        assert_eq!(
            check_field_name("héllo").unwrap_err().0,
            ErrorKind::InvalidIdentifier
        );
        assert_eq!(check_field_name("type").unwrap_err().0, ErrorKind::Keyword);
    }
}
