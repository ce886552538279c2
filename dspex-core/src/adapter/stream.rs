//! [`FieldStreamParser`]: output fields read from a completion while it streams.

use super::Adapter;
use crate::pycompat::text::{is_line_break, is_py_space};
use crate::signature::DynSignature;
use std::collections::HashSet;

/// New text of one output field, read from a streaming completion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldDelta {
    /// The output field.
    pub field: String,
    /// Its new text (empty on a last delta that only marks the end).
    pub delta: String,
    /// Whether the field is complete: nothing more of it follows.
    pub is_last: bool,
}

/// Reads output fields from a completion while it streams (DSPy's `StreamListener`, for every
/// listened field at once).
///
/// Feed text deltas as they arrive; out come [`FieldDelta`]s, the new text of each output field,
/// without the adapter's syntax around it. The final value of a call is always parsed by the
/// adapter's [`parse`](super::Adapter::parse) on the whole completion; the deltas are a preview
/// that matches it:
///
/// - **ChatAdapter.** A field's deltas concatenate to exactly the text `parse` reads for it (for
///   a `str` field, its value): the section after the field's first `[[ ## name ## ]]` header
///   line, its lines joined with `\n`, stripped as Python strips. Header lines are recognised as
///   `parse` recognises them (Python's line boundaries, leading whitespace, DSPy's offset quirk
///   for indented headers), and a line that might still become a header is held back until it is
///   decided, so no marker text (`[[ ## answer ## ]]`, `[[ ## completed ## ]]`, or a fragment of
///   one) ever appears in a delta. Trailing whitespace is held back until more text follows, as
///   DSPy's `StreamListener` does, since `parse` strips it.
/// - **JSONAdapter.** The completion's first top-level JSON object is scanned as it arrives. A
///   field whose value is a JSON string streams the decoded string (no quotes, escapes decoded):
///   for a `str` field, exactly its parsed value. Any other value (number, list, object) streams
///   as its JSON text, leading and trailing whitespace dropped; the typed value comes from
///   `parse`. JSON that the scanner cannot follow (single-quoted keys, comments) stops the
///   deltas; `parse`, which repairs such JSON, still gives the final value.
///
/// Only the first occurrence of a field streams (ChatAdapter's `parse` also keeps the first; for a
/// JSON object with a repeated key, `parse` keeps the last, so there the deltas and the final
/// value differ). Each field that streams ends with a delta whose `is_last` is set (possibly with
/// empty text), when the next field starts or the completion ends.
///
/// ```
/// use dspex_core::DynSignature;
/// use dspex_core::adapter::{ChatAdapter, FieldStreamParser};
///
/// let sig = DynSignature::parse("question -> reasoning, answer")?;
/// let mut parser = FieldStreamParser::new(&ChatAdapter, &sig).expect("ChatAdapter streams");
/// let pieces = [
///     "[[ ## reas",
///     "oning ## ]]\nTwo and",
///     " two.\n\n[[ ## ans",
///     "wer ## ]]\n4\n\n[[ ## comp",
///     "leted ## ]]",
/// ];
/// let mut seen = Vec::new();
/// for piece in pieces {
///     for d in parser.feed(piece) {
///         let mark = if d.is_last { " (last)" } else { "" };
///         seen.push(format!("{}:{:?}{mark}", d.field, d.delta));
///     }
/// }
/// assert!(parser.finish().is_empty());
/// assert_eq!(
///     seen,
///     [
///         r#"reasoning:"Two and""#,
///         r#"reasoning:" two.""#,
///         r#"reasoning:"" (last)"#,
///         r#"answer:"4""#,
///         r#"answer:"" (last)"#,
///     ]
/// );
/// # Ok::<(), dspex_core::SignatureError>(())
/// ```
#[derive(Debug, Clone)]
pub struct FieldStreamParser {
    fields: Fields,
    format: Format,
    out: Vec<FieldDelta>,
}

/// Which output fields stream.
#[derive(Debug, Clone)]
struct Fields {
    /// Every output field of the signature.
    outputs: Vec<String>,
    /// The ones listened to.
    listened: HashSet<String>,
    /// Output fields whose (first) value has begun.
    seen: HashSet<String>,
}

impl Fields {
    /// The field a value for `name` streams to: a listened output not seen before. Marks
    /// outputs as seen either way.
    fn begin(&mut self, name: &str) -> Option<String> {
        if !self.outputs.iter().any(|o| o == name) || !self.seen.insert(name.to_string()) {
            return None;
        }
        self.listened.contains(name).then(|| name.to_string())
    }
}

#[derive(Debug, Clone)]
enum Format {
    Chat(ChatState),
    Json(JsonState),
}

impl FieldStreamParser {
    /// A parser for `adapter`'s completions of `signature`, listening to every output field;
    /// `None` when the adapter has no streaming parser (only [`ChatAdapter`](struct@super::ChatAdapter)
    /// and [`JSONAdapter`](struct@super::JSONAdapter) have one; adapters are told apart by
    /// [`Adapter::name`]).
    pub fn new(adapter: &dyn Adapter, signature: &DynSignature) -> Option<Self> {
        match adapter.name() {
            "ChatAdapter" => Some(Self::chat(signature)),
            "JSONAdapter" => Some(Self::json(signature)),
            _ => None,
        }
    }

    /// A parser for ChatAdapter completions (`[[ ## field ## ]]` sections).
    pub fn chat(signature: &DynSignature) -> Self {
        Self::with_format(signature, Format::Chat(ChatState::default()))
    }

    /// A parser for JSONAdapter completions (one JSON object).
    pub fn json(signature: &DynSignature) -> Self {
        Self::with_format(signature, Format::Json(JsonState::default()))
    }

    fn with_format(signature: &DynSignature, format: Format) -> Self {
        let outputs: Vec<String> = signature.output_names().map(str::to_string).collect();
        FieldStreamParser {
            fields: Fields {
                listened: outputs.iter().cloned().collect(),
                outputs,
                seen: HashSet::new(),
            },
            format,
            out: Vec::new(),
        }
    }

    /// Streams only these output fields (names that are not outputs are ignored; check them
    /// first if that matters).
    #[must_use]
    pub fn listen_only<S: AsRef<str>>(mut self, fields: impl IntoIterator<Item = S>) -> Self {
        self.fields.listened = fields.into_iter().map(|f| f.as_ref().to_string()).collect();
        self
    }

    /// Reads the next piece of the completion; returns the field text it completes, in order
    /// (at most one delta per field and call, except when a field ends and the next begins).
    pub fn feed(&mut self, delta: &str) -> Vec<FieldDelta> {
        let mut sink = Sink {
            fields: &mut self.fields,
            out: &mut self.out,
        };
        match &mut self.format {
            Format::Chat(state) => {
                for c in delta.chars() {
                    state.push(c, &mut sink);
                }
            }
            Format::Json(state) => {
                for c in delta.chars() {
                    state.push(c, &mut sink);
                }
            }
        }
        std::mem::take(&mut self.out)
    }

    /// Ends the completion: the text held back (a last line that turned out not to be a
    /// header) and the end of the field in progress. Feeding after `finish` starts over as if
    /// the completion went on, which is rarely useful.
    pub fn finish(&mut self) -> Vec<FieldDelta> {
        let mut sink = Sink {
            fields: &mut self.fields,
            out: &mut self.out,
        };
        match &mut self.format {
            Format::Chat(state) => state.finish(&mut sink),
            Format::Json(state) => state.finish(&mut sink),
        }
        std::mem::take(&mut self.out)
    }
}

/// Where deltas go: consecutive text of one field merges into one delta.
struct Sink<'a> {
    fields: &'a mut Fields,
    out: &'a mut Vec<FieldDelta>,
}

impl Sink<'_> {
    fn text(&mut self, field: &str, text: &str) {
        if text.is_empty() {
            return;
        }
        match self.out.last_mut() {
            Some(last) if last.field == field && !last.is_last => last.delta.push_str(text),
            _ => self.out.push(FieldDelta {
                field: field.to_string(),
                delta: text.to_string(),
                is_last: false,
            }),
        }
    }

    fn end(&mut self, field: &str) {
        match self.out.last_mut() {
            Some(last) if last.field == field && !last.is_last => last.is_last = true,
            _ => self.out.push(FieldDelta {
                field: field.to_string(),
                delta: String::new(),
                is_last: true,
            }),
        }
    }
}

/// A field's value being streamed, stripped as Python strips: leading whitespace dropped,
/// trailing whitespace held until text follows it.
#[derive(Debug, Clone)]
struct Value {
    field: String,
    started: bool,
    held: String,
}

impl Value {
    fn new(field: String) -> Self {
        Value {
            field,
            started: false,
            held: String::new(),
        }
    }

    fn push(&mut self, c: char, sink: &mut Sink<'_>) {
        if is_py_space(c) {
            if self.started {
                self.held.push(c);
            }
            return;
        }
        self.started = true;
        if !self.held.is_empty() {
            sink.text(&self.field, &self.held);
            self.held.clear();
        }
        let mut buf = [0u8; 4];
        sink.text(&self.field, c.encode_utf8(&mut buf));
    }
}

// ---------------------------------------------------------------------------------------------
// ChatAdapter
// ---------------------------------------------------------------------------------------------

const HEADER_OPEN: &[u8] = b"[[ ## ";
const HEADER_CLOSE: &[u8] = b" ## ]]";

/// What the start of a line says about it being a `[[ ## name ## ]]` header line.
#[derive(Debug, PartialEq)]
enum LineStart {
    /// It may still become one.
    Undecided,
    /// It is not one.
    Text,
    /// It is one: the name, and the header's length in characters.
    Header(String, usize),
}

/// ChatAdapter's header rule (`match_header` on the Python-stripped line), decided one
/// character at a time in linear time.
#[derive(Debug, Clone, Default)]
struct HeaderMatch {
    phase: Phase,
    name: String,
    name_chars: usize,
}

#[derive(Debug, Clone, Copy, Default, PartialEq)]
enum Phase {
    /// Leading whitespace.
    #[default]
    Indent,
    /// Matched this many bytes of `[[ ## `.
    Open(usize),
    /// In the name.
    Name,
    /// Matched this many bytes of ` ## ]]`.
    Close(usize),
}

impl HeaderMatch {
    fn step(&mut self, c: char) -> LineStart {
        match self.phase {
            Phase::Indent if is_py_space(c) => LineStart::Undecided,
            Phase::Indent => {
                self.phase = Phase::Open(0);
                self.step(c)
            }
            Phase::Open(i) => {
                if c != char::from(HEADER_OPEN[i]) {
                    return LineStart::Text;
                }
                self.phase = if i + 1 == HEADER_OPEN.len() {
                    Phase::Name
                } else {
                    Phase::Open(i + 1)
                };
                LineStart::Undecided
            }
            Phase::Name if c.is_alphanumeric() || c == '_' => {
                self.name.push(c);
                self.name_chars += 1;
                LineStart::Undecided
            }
            Phase::Name if self.name.is_empty() => LineStart::Text,
            Phase::Name => {
                self.phase = Phase::Close(0);
                self.step(c)
            }
            Phase::Close(i) => {
                if c != char::from(HEADER_CLOSE[i]) {
                    return LineStart::Text;
                }
                if i + 1 < HEADER_CLOSE.len() {
                    self.phase = Phase::Close(i + 1);
                    return LineStart::Undecided;
                }
                let chars = HEADER_OPEN.len() + self.name_chars + HEADER_CLOSE.len();
                LineStart::Header(std::mem::take(&mut self.name), chars)
            }
        }
    }
}

#[derive(Debug, Clone, Default)]
struct ChatState {
    /// The start of the current line, while it may still be a header.
    line: String,
    /// Whether `line` is a header.
    header: HeaderMatch,
    /// Where the current line stands.
    mode: LineMode,
    /// The last character was `\r` (a following `\n` belongs to the same line break).
    after_cr: bool,
    /// The field whose section this is, when it streams.
    value: Option<Value>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq)]
enum LineMode {
    /// Collecting the line's start in `line`.
    #[default]
    Undecided,
    /// An ordinary line: its text is the section's.
    Text,
    /// The rest of a header line: stripped on its own, as `parse` does.
    HeaderRest,
}

impl ChatState {
    fn push(&mut self, c: char, sink: &mut Sink<'_>) {
        if std::mem::take(&mut self.after_cr) && c == '\n' {
            return;
        }
        if is_line_break(c) {
            self.end_line(sink);
            self.after_cr = c == '\r';
            return;
        }
        match self.mode {
            LineMode::Text | LineMode::HeaderRest => self.text(c, sink),
            LineMode::Undecided => {
                self.line.push(c);
                match self.header.step(c) {
                    LineStart::Undecided => {}
                    LineStart::Text => {
                        self.mode = LineMode::Text;
                        self.flush_line(sink);
                    }
                    LineStart::Header(name, header_chars) => {
                        self.begin_section(&name, sink);
                        self.mode = LineMode::HeaderRest;
                        // DSPy measures the header on the stripped line but cuts the unstripped
                        // one: an indented header leaves its last characters as text.
                        let line = std::mem::take(&mut self.line);
                        for c in line.chars().skip(header_chars) {
                            self.text(c, sink);
                        }
                    }
                }
            }
        }
    }

    fn text(&mut self, c: char, sink: &mut Sink<'_>) {
        if let Some(value) = &mut self.value {
            value.push(c, sink);
        }
    }

    /// The collected line start is text after all.
    fn flush_line(&mut self, sink: &mut Sink<'_>) {
        let line = std::mem::take(&mut self.line);
        for c in line.chars() {
            self.text(c, sink);
        }
    }

    fn end_line(&mut self, sink: &mut Sink<'_>) {
        match self.mode {
            LineMode::Undecided => self.flush_line(sink),
            LineMode::Text => {}
            // The header line's own trailing whitespace is stripped, not held.
            LineMode::HeaderRest => {
                if let Some(value) = &mut self.value {
                    value.held.clear();
                }
            }
        }
        self.mode = LineMode::Undecided;
        self.header = HeaderMatch::default();
        // Lines are joined with `\n`; held like any trailing whitespace.
        self.text('\n', sink);
    }

    fn begin_section(&mut self, name: &str, sink: &mut Sink<'_>) {
        self.end_value(sink);
        self.value = sink.fields.begin(name).map(Value::new);
    }

    fn end_value(&mut self, sink: &mut Sink<'_>) {
        if let Some(value) = self.value.take() {
            sink.end(&value.field);
        }
    }

    fn finish(&mut self, sink: &mut Sink<'_>) {
        if self.mode == LineMode::Undecided {
            self.flush_line(sink);
        }
        self.mode = LineMode::Undecided;
        self.header = HeaderMatch::default();
        self.after_cr = false;
        self.end_value(sink);
    }
}

// ---------------------------------------------------------------------------------------------
// JSONAdapter
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Default)]
struct JsonState {
    at: JsonAt,
    /// The key being read, or the last one read.
    key: String,
    /// A `\` escape in progress (in a key or a string value).
    escape: Escape,
    /// The field the current value streams to.
    value: Option<Value>,
    /// Decoded text of one character, reused.
    scratch: String,
}

#[derive(Debug, Clone, Copy, Default, PartialEq)]
enum JsonAt {
    /// Before the top-level object (a preamble or a code fence).
    #[default]
    Seek,
    /// In the object, where a key, `,` or `}` may come.
    Key,
    /// In a key string.
    KeyString,
    /// After a key, before `:`.
    Colon,
    /// After `:`, before the value.
    ValueStart,
    /// In a string value.
    StringValue,
    /// In another value: depth of brackets, whether in a string.
    Raw { depth: u32, in_string: bool },
    /// After a value, before `,` or `}`.
    AfterValue,
    /// The object ended, or the text is not JSON the scanner can follow.
    Done,
}

/// A JSON string escape being decoded.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
enum Escape {
    #[default]
    None,
    /// After `\`.
    Backslash,
    /// In `\uXXXX`: the code so far and how many digits were read.
    Unicode { code: u32, digits: u8 },
    /// After a `\uXXXX` high surrogate, waiting for `\` of a low one.
    High(u32),
    /// After a high surrogate and `\`.
    HighBackslash(u32),
    /// In the `\uXXXX` after a high surrogate.
    Low { high: u32, code: u32, digits: u8 },
}

impl JsonState {
    /// One character of a string body (after the opening quote): decoded characters go to
    /// `out`; returns whether it was the closing quote. Escapes decode as the adapter's
    /// lenient reader decodes them (surrogate pairs joined, a lone surrogate as U+FFFD).
    fn string_char(&mut self, c: char, out: &mut String) -> bool {
        match self.escape {
            Escape::None => match c {
                '\\' => self.escape = Escape::Backslash,
                '"' => return true,
                c => out.push(c),
            },
            Escape::Backslash => {
                self.escape = Escape::None;
                out.push(match c {
                    'n' => '\n',
                    't' => '\t',
                    'r' => '\r',
                    'b' => '\u{8}',
                    'f' => '\u{c}',
                    'u' => {
                        self.escape = Escape::Unicode { code: 0, digits: 0 };
                        return false;
                    }
                    // `\"`, `\\`, `\/`, and anything else as itself.
                    other => other,
                });
            }
            Escape::Unicode { code, digits } => {
                let Some(d) = c.to_digit(16) else {
                    self.escape = Escape::None;
                    return self.string_char(c, out);
                };
                let code = code * 16 + d;
                if digits < 3 {
                    self.escape = Escape::Unicode {
                        code,
                        digits: digits + 1,
                    };
                } else if (0xD800..0xDC00).contains(&code) {
                    self.escape = Escape::High(code);
                } else {
                    self.escape = Escape::None;
                    out.push(char::from_u32(code).unwrap_or('\u{fffd}'));
                }
            }
            Escape::High(high) => {
                if c == '\\' {
                    self.escape = Escape::HighBackslash(high);
                } else {
                    out.push('\u{fffd}');
                    self.escape = Escape::None;
                    return self.string_char(c, out);
                }
            }
            Escape::HighBackslash(high) => {
                if c == 'u' {
                    self.escape = Escape::Low {
                        high,
                        code: 0,
                        digits: 0,
                    };
                } else {
                    out.push('\u{fffd}');
                    self.escape = Escape::Backslash;
                    return self.string_char(c, out);
                }
            }
            Escape::Low { high, code, digits } => {
                let Some(d) = c.to_digit(16) else {
                    out.push('\u{fffd}');
                    self.escape = Escape::None;
                    return self.string_char(c, out);
                };
                let code = code * 16 + d;
                if digits < 3 {
                    self.escape = Escape::Low {
                        high,
                        code,
                        digits: digits + 1,
                    };
                } else if (0xDC00..0xE000).contains(&code) {
                    self.escape = Escape::None;
                    let joined = 0x10000 + ((high - 0xD800) << 10) + (code - 0xDC00);
                    out.push(char::from_u32(joined).unwrap_or('\u{fffd}'));
                } else {
                    // The high surrogate was alone; this escape stands on its own.
                    out.push('\u{fffd}');
                    if (0xD800..0xDC00).contains(&code) {
                        self.escape = Escape::High(code);
                    } else {
                        self.escape = Escape::None;
                        out.push(char::from_u32(code).unwrap_or('\u{fffd}'));
                    }
                }
            }
        }
        false
    }

    fn push(&mut self, c: char, sink: &mut Sink<'_>) {
        match self.at {
            JsonAt::Seek => {
                if c == '{' {
                    self.at = JsonAt::Key;
                }
            }
            JsonAt::Key => match c {
                '"' => {
                    self.key.clear();
                    self.escape = Escape::None;
                    self.at = JsonAt::KeyString;
                }
                '}' => self.at = JsonAt::Done,
                c if c == ',' || c.is_whitespace() => {}
                _ => self.at = JsonAt::Done,
            },
            JsonAt::KeyString => {
                let mut key = std::mem::take(&mut self.key);
                if self.string_char(c, &mut key) {
                    self.at = JsonAt::Colon;
                }
                self.key = key;
            }
            JsonAt::Colon => match c {
                ':' => self.at = JsonAt::ValueStart,
                c if c.is_whitespace() => {}
                _ => self.at = JsonAt::Done,
            },
            JsonAt::ValueStart => {
                if c.is_whitespace() {
                    return;
                }
                self.value = sink.fields.begin(&self.key).map(Value::new);
                if c == '"' {
                    self.escape = Escape::None;
                    self.at = JsonAt::StringValue;
                } else {
                    self.at = JsonAt::Raw {
                        depth: 0,
                        in_string: false,
                    };
                    self.push(c, sink);
                }
            }
            JsonAt::StringValue => {
                let mut text = std::mem::take(&mut self.scratch);
                let end = self.string_char(c, &mut text);
                if let Some(value) = &self.value {
                    sink.text(&value.field, &text);
                }
                text.clear();
                self.scratch = text;
                if end {
                    self.end_value(sink);
                    self.at = JsonAt::AfterValue;
                }
            }
            JsonAt::Raw { depth, in_string } => {
                if in_string {
                    let mut scratch = std::mem::take(&mut self.scratch);
                    let end = self.string_char(c, &mut scratch);
                    scratch.clear();
                    self.scratch = scratch;
                    if end {
                        self.at = JsonAt::Raw {
                            depth,
                            in_string: false,
                        };
                    }
                    self.raw(c, sink);
                    return;
                }
                match c {
                    ',' | '}' if depth == 0 => {
                        self.end_value(sink);
                        self.at = if c == '}' { JsonAt::Done } else { JsonAt::Key };
                        return;
                    }
                    '{' | '[' => {
                        self.at = JsonAt::Raw {
                            depth: depth + 1,
                            in_string,
                        }
                    }
                    '}' | ']' => {
                        self.at = JsonAt::Raw {
                            depth: depth.saturating_sub(1),
                            in_string,
                        }
                    }
                    '"' => {
                        self.escape = Escape::None;
                        self.at = JsonAt::Raw {
                            depth,
                            in_string: true,
                        }
                    }
                    _ => {}
                }
                self.raw(c, sink);
            }
            JsonAt::AfterValue => match c {
                ',' => self.at = JsonAt::Key,
                '}' => self.at = JsonAt::Done,
                c if c.is_whitespace() => {}
                _ => self.at = JsonAt::Done,
            },
            JsonAt::Done => {}
        }
    }

    /// A character of a non-string value, as written.
    fn raw(&mut self, c: char, sink: &mut Sink<'_>) {
        if let Some(value) = &mut self.value {
            value.push(c, sink);
        }
    }

    fn end_value(&mut self, sink: &mut Sink<'_>) {
        if let Some(value) = self.value.take() {
            sink.end(&value.field);
        }
    }

    fn finish(&mut self, sink: &mut Sink<'_>) {
        self.end_value(sink);
        self.at = JsonAt::Done;
    }
}

#[cfg(test)]
#[path = "stream_tests.rs"]
mod tests;
