//! Adapters: the exact prompt formats DSPy uses, and their parsers.
//!
//! An [`Adapter`] turns a signature, few-shot demos and inputs into chat messages, and a
//! completion back into output field values. [`ChatAdapter`](struct@ChatAdapter), [`JSONAdapter`](struct@JSONAdapter) and
//! [`XMLAdapter`](struct@XMLAdapter) reproduce DSPy 3.4.1 byte for byte (checked against every fixture in
//! `../shared/fixtures/dspy`, and against DSPy itself on thousands of generated signatures,
//! demos and completions).
//!
//! What they reproduce, beyond the obvious layout:
//! - field lists whose empty descriptions leave a trailing space on every line but the last;
//!   DSPy's own quoting of `Literal[...]` members; output type notes with the JSON schema's
//!   `"type"` first and every other key sorted at every depth, printed as Python's `json.dumps`;
//! - values as DSPy's `format_field_value` prints them: strings as they are, lists given to a
//!   `str` field as `[1] «a»\n[2] «b»`, other lists and objects as JSON, floats in Python's
//!   `repr` (`1e+20`, `3.0`), `null` as `None`;
//! - incomplete demos first with "Not supplied for this particular example. ", demos missing all
//!   inputs or all outputs dropped; instructions dedented and indented by 8 spaces;
//! - parsing: Python's `splitlines`/`strip`, first header wins, the indented-header offset quirk,
//!   and `parse_value`'s pipeline — a port of `json_repair` 0.64.6, `ast.literal_eval`, and
//!   pydantic's lax coercions (`"12.0"` → 12, `"yes"` → true, `'2'` → `Literal[2]`, `Optional[str]`
//!   never `None`, models checked against their JSON schema).
//!
//! Where dspex deliberately differs:
//! - an empty completion is an [`AdapterError::Parse`] in `parse` itself (DSPy raises the same
//!   error one step earlier, in `_call_postprocess`);
//! - values JSON cannot hold — `nan`/`inf` for a float field, integers beyond 64 bits, Python
//!   `bytes`/complex/`...` for an `Any` field — are parse errors (or text) instead of Python
//!   objects;
//! - the lenient JSON reader gives up (a parse error) on nesting deeper than 200 or on inputs so
//!   irregular that repairing them would take more than a fixed amount of work (DSPy spends tens
//!   of seconds on such inputs);
//! - a list with non-string items given to a `str` field is [`AdapterError::Format`] (DSPy raises
//!   a `TypeError`).
//!
//! [`FieldStreamParser`] reads output fields from a completion while it streams (for
//! `Predict::stream` and friends); the final value is still `parse`'s.
//!
//! The module layer owns the LM calls: DSPy's retry with [`JSONAdapter`](struct@JSONAdapter) after a ChatAdapter
//! (or XMLAdapter) parse failure is [`Adapter::fallback`]; with `n > 1`, every completion is parsed and one
//! failure fails the call.

mod chat;
#[cfg(test)]
mod code_reasoning_tests;
pub mod custom;
#[doc(hidden)]
pub mod format;
#[cfg(test)]
mod history_tools_tests;
mod json;
pub mod native;
#[cfg(test)]
mod special_types_tests;
mod stream;
pub mod two_step;
mod xml;

pub use chat::ChatAdapter;
pub use json::JSONAdapter;
pub use stream::{FieldDelta, FieldStreamParser};
pub use xml::XMLAdapter;

use crate::example::Example;
use crate::signature::DynSignature;
use crate::types::{Message, ResponseFormat};
use serde_json::{Map, Value};
use std::fmt;

/// A prompt format and its parser.
pub trait Adapter: Send + Sync + fmt::Debug {
    /// DSPy's name for it (`ChatAdapter`, `JSONAdapter`, `XMLAdapter`).
    fn name(&self) -> &'static str;

    /// The messages of one call: system message, demo turns, then the inputs.
    fn format(
        &self,
        signature: &DynSignature,
        demos: &[Example],
        inputs: &Example,
    ) -> Result<Vec<Message>, AdapterError>;

    /// The output fields' values read from a completion (typed per the signature's field types).
    fn parse(
        &self,
        signature: &DynSignature,
        completion: &str,
    ) -> Result<Map<String, Value>, AdapterError>;

    /// The `response_format` to request for this signature, if any.
    fn response_format(&self, _signature: &DynSignature) -> Option<ResponseFormat> {
        None
    }

    /// The adapter DSPy retries with, in a second LM call, when this one's completion cannot
    /// be parsed ([`AdapterError::Parse`]): [`JSONAdapter`](struct@JSONAdapter) for [`ChatAdapter`](struct@ChatAdapter) and
    /// [`XMLAdapter`](struct@XMLAdapter), none otherwise.
    /// The retry sends `fallback.format(...)` with `fallback.response_format(...)` and parses
    /// with `fallback.parse(...)`; its error, if any, is final (there is no third attempt).
    fn fallback(&self) -> Option<&'static dyn Adapter> {
        None
    }

    /// Its native function-calling options (DSPy's `use_native_function_calling` and
    /// `parallel_tool_calls`); the module layer applies them around the LM call with
    /// [`native::prepare`] and [`native::finish`]. Off by default.
    fn native_tool_calling(&self) -> native::NativeToolCalling {
        native::NativeToolCalling::OFF
    }

    /// Whether `Reasoning` is among the adapter's native response types (DSPy's
    /// `native_response_types`, `[Citations, Reasoning]` by default): a `Reasoning` output is
    /// then left to an LM that reasons natively. `true` by default.
    fn native_reasoning_enabled(&self) -> bool {
        true
    }

    /// For an adapter whose outputs are read by a second LM call (the TwoStepAdapter), that
    /// call; the module layer runs it in place of [`parse`](Adapter::parse). `None` for the
    /// adapters that parse.
    fn extractor(&self) -> Option<&dyn two_step::Extractor> {
        None
    }

    /// DSPy's `format_user_message_content(signature, values)` without the output reminder: the
    /// `[[ ## name ## ]]` block of every input of `signature` present in `values`, in the
    /// signature's order, values printed as in a prompt, joined by blank lines. ReAct formats
    /// its trajectory this way; JSONAdapter shares ChatAdapter's layout, XMLAdapter writes
    /// `<name>` elements.
    fn format_fields(
        &self,
        signature: &DynSignature,
        values: &Map<String, Value>,
    ) -> Result<String, AdapterError> {
        let mut out = String::new();
        format::write_user_content(&mut out, self.name(), signature, values, "", None)?;
        Ok(out)
    }
}

/// What formatting or parsing can fail with.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum AdapterError {
    /// The completion does not hold the output fields (DSPy's `AdapterParseError`).
    #[error("{adapter} could not parse the completion{}: {message}; completion: {completion:?}", field.as_ref().map(|f| format!(" (field `{f}`)")).unwrap_or_default())]
    Parse {
        /// The adapter that tried.
        adapter: &'static str,
        /// The field that failed, when one did.
        field: Option<String>,
        /// What was wrong.
        message: String,
        /// The raw completion.
        completion: String,
    },
    /// The inputs or demos cannot be formatted (a value that has no text form, …).
    #[error("{adapter} could not format the prompt: {message}")]
    Format {
        /// The adapter that tried.
        adapter: &'static str,
        /// What was wrong.
        message: String,
    },
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signature::{FieldSpec, LiteralValue, TypeSpec};
    use serde_json::json;
    use std::time::Instant;

    fn signatures() -> Vec<DynSignature> {
        let model = TypeSpec::Model {
            name: "Citation".into(),
            schema: json!({"properties": {"title": {"title": "Title", "type": "string"},
                "year": {"title": "Year", "type": "integer"}},
                "required": ["title", "year"], "title": "Citation", "type": "object"}),
        };
        let outputs = [
            TypeSpec::Str,
            TypeSpec::Int,
            TypeSpec::Float,
            TypeSpec::Bool,
            TypeSpec::Any,
            TypeSpec::List(Box::new(TypeSpec::Int)),
            TypeSpec::Dict(Box::new(TypeSpec::Str)),
            TypeSpec::Optional(Box::new(TypeSpec::Int)),
            TypeSpec::Literal(vec![LiteralValue::Str("a".into()), LiteralValue::Int(1)]),
            model.clone(),
            TypeSpec::List(Box::new(model)),
        ];
        outputs
            .into_iter()
            .map(|ty| {
                DynSignature::from_fields(
                    Some("Do it."),
                    [
                        FieldSpec::input("q", TypeSpec::Str),
                        FieldSpec::output("answer", ty),
                    ],
                )
                .expect("a valid signature")
            })
            .collect()
    }

    /// A deterministic xorshift generator, so failures reproduce (the stream parser's tests
    /// use it too).
    pub(super) struct Rng(pub(super) u64);

    impl Rng {
        pub(super) fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }

        fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
            items[(self.next() % items.len() as u64) as usize]
        }
    }

    const PIECES: &[&str] = &[
        "{",
        "}",
        "[",
        "]",
        "(",
        ")",
        ",",
        ":",
        "\"",
        "'",
        "“",
        "”",
        "„",
        "\\",
        "\\u12",
        "\\x4",
        " ",
        "\n",
        "\r",
        "\t",
        "#",
        "//",
        "/*",
        "*/",
        "`",
        "```json",
        "-",
        ".",
        "e",
        "+",
        "_",
        "1",
        "23",
        "4.5",
        "true",
        "None",
        "null",
        "abc",
        "é",
        "日本",
        "🎉",
        "\u{0}",
        "\u{1c}",
        "\u{85}",
        "\u{2028}",
        "\u{feff}",
        "\u{fffd}",
        "[[ ## answer ## ]]",
        "  [[ ## answer ## ]]",
        "[[ ## completed ## ]]",
        "Literal[",
        "str[",
        "0x",
        "1_0",
        "...",
        "set()",
        "b'",
        "r\"",
        "<answer>",
        "</answer>",
        "<item>",
        "</item>",
        "<entry key='a b'>",
        "</entry>",
        "<title>",
        "</title>",
        "<a/>",
        "<![CDATA[",
        "]]>",
        "<!--",
        "-->",
        "<?p ",
        "?>",
        "&amp;",
        "&#x",
        "&nbsp;",
        " xmlns='u'",
        "<p:a xmlns:p='u'>",
        "</dspy_root>",
    ];

    #[test]
    fn parsing_never_panics_on_garbage() {
        let sigs = signatures();
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        for _ in 0..3000 {
            let n = (rng.next() % 24) as usize;
            let text: String = (0..n).map(|_| rng.pick(PIECES)).collect();
            for sig in &sigs {
                let _ = ChatAdapter.parse(sig, &text);
                let _ = JSONAdapter.parse(sig, &text);
                let _ = ChatAdapter.parse(sig, &format!("[[ ## answer ## ]]\n{text}"));
                let _ = XMLAdapter.parse(sig, &text);
                let _ = XMLAdapter.parse(sig, &format!("<answer>{text}</answer>"));
            }
        }
    }

    #[test]
    fn parsing_huge_and_deep_inputs_is_bounded() {
        let sigs = signatures();
        let big = 100_000;
        let inputs = [
            "[".repeat(big),
            "{".repeat(big),
            "(".repeat(big),
            "{\"a\": ".repeat(big / 6),
            "[{\"a\": [".repeat(big / 8),
            "\"".repeat(big),
            "'".repeat(big),
            ",".repeat(big),
            "{\"k\": \"v, ".repeat(big / 10),
            "[\"a, ".repeat(big / 5),
            "x".repeat(big),
            "1, ".repeat(big / 3),
            "\\".repeat(big),
            "{\"a\": \"".to_string() + &"}".repeat(big),
            "[[ ## answer ## ]]\n".repeat(big / 19),
            "é🎉\u{2028}".repeat(big / 3),
        ];
        // `sigs[1]` has an `int` output, so both adapters run the lenient JSON reader.
        for input in &inputs {
            let start = Instant::now();
            let _ = JSONAdapter.parse(&sigs[1], input);
            let _ = ChatAdapter.parse(&sigs[1], &format!("[[ ## answer ## ]]\n{input}"));
            let _ = XMLAdapter.parse(&sigs[1], &format!("<answer>{input}</answer>"));
            let _ = XMLAdapter.parse(&sigs[10], input);
            let elapsed = start.elapsed();
            assert!(
                elapsed.as_secs() < 15,
                "{:?}... took {elapsed:?}",
                &input.chars().take(20).collect::<String>()
            );
        }
        // Deep and long XML: every output type, nested answers, repeated items, markup runs.
        let xml_inputs = [
            "<answer>".repeat(big / 8) + &"</answer>".repeat(big / 8),
            "<answer><item>".repeat(big / 14) + &"</item></answer>".repeat(big / 14),
            "<answer><item>1</item></answer>".repeat(big / 30),
            format!("<answer>{}</answer>", "<item>1</item>".repeat(big / 14)),
            format!("<answer>{}</answer>", "<!---->".repeat(big / 7)),
            format!("<answer>{}</answer>", "&amp;".repeat(big / 5)),
            "<!--".repeat(big / 4),
        ];
        for input in &xml_inputs {
            let start = Instant::now();
            for sig in &sigs {
                let _ = XMLAdapter.parse(sig, input);
            }
            let elapsed = start.elapsed();
            // Generous: this runs unoptimized; a release build is 10-20 times faster.
            assert!(
                elapsed.as_secs() < 15,
                "{:?}... took {elapsed:?}",
                &input.chars().take(20).collect::<String>()
            );
        }
    }

    /// Rough per-call cost of format + parse (run with `--release -- --ignored --nocapture`).
    #[test]
    #[ignore = "a timing loop, not a check"]
    fn format_and_parse_timing() {
        let qa = DynSignature::parse("question -> answer").expect("valid");
        let cot = qa
            .prepend(FieldSpec::output("reasoning", TypeSpec::Str))
            .expect("valid");
        let typed = DynSignature::parse(
            "question: str, context: list[str] -> answer: str, confidence: float, tags: list[str]",
        )
        .expect("valid");
        let demo = |i: usize| {
            Example::from_pairs([
                ("question", json!(format!("What is {i} + {i}?"))),
                ("context", json!(["a passage", "another one"])),
                ("reasoning", json!(format!("Adding {i} and {i}."))),
                ("answer", json!(format!("{}", 2 * i))),
                ("confidence", json!(0.9)),
                ("tags", json!(["math"])),
            ])
        };
        let demos: Vec<Example> = (1..=3).map(demo).collect();
        let inputs = Example::from_pairs([
            ("question", json!("What is 9 + 9?")),
            ("context", json!(["nine", "plus nine"])),
        ]);
        let cases = [
            (
                "Predict qa",
                &qa,
                "[[ ## answer ## ]]\n18\n\n[[ ## completed ## ]]",
            ),
            (
                "ChainOfThought qa",
                &cot,
                "[[ ## reasoning ## ]]\nAdding 9 and 9.\n\n[[ ## answer ## ]]\n18\n\n[[ ## completed ## ]]",
            ),
            (
                "typed",
                &typed,
                "[[ ## answer ## ]]\n18\n\n[[ ## confidence ## ]]\n0.9\n\n[[ ## tags ## ]]\n[\"math\"]\n\n[[ ## completed ## ]]",
            ),
        ];
        let n = 20_000u32;
        for (label, sig, completion) in cases {
            let start = Instant::now();
            for _ in 0..n {
                std::hint::black_box(ChatAdapter.format(sig, &demos, &inputs).expect("formats"));
            }
            let format = start.elapsed() / n;
            let start = Instant::now();
            for _ in 0..n {
                std::hint::black_box(ChatAdapter.parse(sig, completion).expect("parses"));
            }
            let parse = start.elapsed() / n;
            let start = Instant::now();
            for _ in 0..n {
                std::hint::black_box(JSONAdapter.format(sig, &demos, &inputs).expect("formats"));
            }
            let json_format = start.elapsed() / n;
            eprintln!(
                "{label}: ChatAdapter format (3 demos) {format:?}, parse {parse:?}; JSONAdapter format {json_format:?}"
            );
        }
    }
}
