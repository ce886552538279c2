//! The streaming parsers against the adapters' own parsers, at every split of the completion.

use super::*;
use crate::adapter::chat::split_sections;
use crate::adapter::tests::Rng;
use crate::adapter::{ChatAdapter, JSONAdapter};
use serde_json::Value as Json;

/// Feeds `chunks` and finishes.
fn run(mut parser: FieldStreamParser, chunks: &[&str]) -> Vec<FieldDelta> {
    let mut out = Vec::new();
    for chunk in chunks {
        out.extend(parser.feed(chunk));
    }
    out.extend(parser.finish());
    out
}

/// Every field's concatenated text, in the order fields streamed; checks the shape on the way:
/// each field's deltas are contiguous, the last one (only) has `is_last`, and no delta but a
/// last one is empty.
fn joined(deltas: &[FieldDelta]) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    let mut open = false;
    for d in deltas {
        match out.last_mut() {
            Some((field, text)) if *field == d.field && open => text.push_str(&d.delta),
            _ => {
                assert!(
                    !open,
                    "{:?} began before the field before it ended: {deltas:?}",
                    d.field
                );
                assert!(
                    out.iter().all(|(f, _)| *f != d.field),
                    "{:?} streamed twice: {deltas:?}",
                    d.field
                );
                out.push((d.field.clone(), d.delta.clone()));
            }
        }
        assert!(
            d.is_last || !d.delta.is_empty(),
            "an empty delta: {deltas:?}"
        );
        open = !d.is_last;
    }
    assert!(!open, "a field never ended: {deltas:?}");
    out
}

/// Every way to cut `text` into two pieces, and into three for short texts, plus one
/// character at a time.
fn splits(text: &str) -> Vec<Vec<&str>> {
    let bounds: Vec<usize> = (0..=text.len())
        .filter(|&i| text.is_char_boundary(i))
        .collect();
    let mut out = vec![vec![text]];
    for &i in &bounds {
        out.push(vec![&text[..i], &text[i..]]);
    }
    if bounds.len() <= 90 {
        for (n, &i) in bounds.iter().enumerate() {
            for &j in &bounds[n..] {
                out.push(vec![&text[..i], &text[i..j], &text[j..]]);
            }
        }
    }
    out.push(
        text.char_indices()
            .map(|(i, c)| &text[i..i + c.len_utf8()])
            .collect(),
    );
    out
}

impl Rng {
    /// `text` cut into random pieces of 1 to 6 characters.
    fn chunks<'a>(&mut self, text: &'a str) -> Vec<&'a str> {
        let mut out = Vec::new();
        let mut rest = text;
        while !rest.is_empty() {
            let n = (self.next() % 6 + 1) as usize;
            let end = rest.char_indices().nth(n).map_or(rest.len(), |(i, _)| i);
            out.push(&rest[..end]);
            rest = &rest[end..];
        }
        out
    }
}

/// What ChatAdapter's parser reads for each output field: the first section of that name.
fn chat_expected(sig: &DynSignature, completion: &str) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for (name, text) in split_sections(completion) {
        let Some(name) = name else { continue };
        if sig.output_names().any(|o| o == name) && out.iter().all(|(f, _)| f != name) {
            out.push((name.to_string(), text));
        }
    }
    out
}

fn sig(text: &str) -> DynSignature {
    DynSignature::parse(text).expect("a valid signature")
}

const CHAT: &[&str] = &[
    "[[ ## reasoning ## ]]\nTwo and two.\n\n[[ ## answer ## ]]\nfour\n\n[[ ## completed ## ]]",
    "[[ ## answer ## ]]\nfour",
    "Sure! Here it is.\n[[ ## reasoning ## ]]\n  indented\n\n  lines  \n\n\n[[ ## answer ## ]]\n4\n[[ ## completed ## ]]\n",
    "[[ ## reasoning ## ]] on the header line   \nand more\n[[ ## answer ## ]]x",
    "   [[ ## answer ## ]]\nParis\n\n[[ ## completed ## ]]",
    "\t[[ ## answer ## ]]5",
    "[[ ## reasoning ## ]]\r\nwindows\r\nlines\r\n\r\n[[ ## answer ## ]]\rold mac\u{2028}unicode\u{85}breaks",
    "[[ ## answer ## ]]\nfirst\n[[ ## answer ## ]]\nsecond",
    "[[ ## question ## ]]\nnot an output\n[[ ## answer ## ]]\nyes",
    "[[ ## answer ## ]]\n[[ ## not closed\n[[ ## also not ## ]\n[[ ## two words ## ]]\n[[## tight ##]]\nx [[ ## answer ## ]] inline\n]] [[ ##",
    "[[ ## reasoning ## ]]\n\n\n[[ ## answer ## ]]\n\n",
    "[[ ## answer ## ]]\nends with a partial [[ ## comp",
    "[[ ## answer ## ]]\nends with a partial header\n[[ ## comp",
    "[[ ## reasoning ## ]]\nhéllo wörld 🎉 日本\n[[ ## réponse ## ]]\nnot ours\n[[ ## answer ## ]]\n«ok»",
    "[[ ## answer ## ]]\n\u{1c}sep\u{a0}nbsp\u{a0}\n\u{3000}",
    "no headers at all",
    "",
    "[[ ## answer ## ]]",
    "[[ ## answer ## ]]   \n   \n",
];

#[test]
fn chat_deltas_are_the_parsed_sections_at_every_split() {
    let sig = sig("question -> reasoning, answer");
    let mut rng = Rng(0x2545_F491_4F6C_DD1D);
    for completion in CHAT {
        let expected = chat_expected(&sig, completion);
        let mut cases = splits(completion);
        cases.extend((0..200).map(|_| rng.chunks(completion)));
        for chunks in cases {
            let deltas = run(FieldStreamParser::chat(&sig), &chunks);
            assert_eq!(
                joined(&deltas),
                expected,
                "completion {completion:?} in chunks {chunks:?}"
            );
        }
    }
}

#[test]
fn chat_deltas_equal_parsed_str_values_and_leak_no_markers() {
    let mut checked = 0;
    for (sig, completion) in ["question -> reasoning, answer", "question -> answer"]
        .into_iter()
        .flat_map(|s| CHAT.iter().map(move |c| (sig(s), c)))
    {
        let Ok(parsed) = ChatAdapter.parse(&sig, completion) else {
            continue;
        };
        checked += 1;
        for chunks in splits(completion) {
            let deltas = run(FieldStreamParser::chat(&sig), &chunks);
            for (field, text) in joined(&deltas) {
                assert_eq!(
                    Json::String(text),
                    parsed[&field],
                    "{completion:?} {chunks:?}"
                );
            }
            for d in &deltas {
                for marker in [
                    "[[ ## answer",
                    "[[ ## completed",
                    "[[ ## reasoning",
                    "## ]]",
                ] {
                    assert!(
                        !d.delta.contains(marker) || completion.contains("inline"),
                        "{d:?} leaks a marker, {completion:?} in {chunks:?}"
                    );
                }
            }
        }
    }
    assert!(checked >= 20, "too few completions parse: {checked}");
}

#[test]
fn chat_no_marker_fragment_is_ever_emitted() {
    // Header fragments arrive at every possible cut; none shows up in any delta.
    let sig = sig("question -> reasoning, answer");
    let completion =
        "[[ ## reasoning ## ]]\nabc\n\n[[ ## answer ## ]]\ndef\n\n[[ ## completed ## ]]\n";
    for chunks in splits(completion) {
        for d in run(FieldStreamParser::chat(&sig), &chunks) {
            assert!(
                d.delta.chars().all(|c| "abcdef\n".contains(c)),
                "{d:?} in {chunks:?}"
            );
        }
    }
}

#[test]
fn chat_streams_early_and_marks_ends() {
    let sig = sig("question -> reasoning, answer");
    let mut parser = FieldStreamParser::chat(&sig);
    assert_eq!(
        parser.feed("[[ ## reasoning ## ]]\nThinking"),
        [delta("reasoning", "Thinking", false)]
    );
    // Trailing whitespace waits for text; a possible header waits for its decision.
    assert_eq!(parser.feed(" hard  "), [delta("reasoning", " hard", false)]);
    assert_eq!(parser.feed("\n[["), []);
    assert_eq!(parser.feed(" x"), [delta("reasoning", "  \n[[ x", false)]);
    assert_eq!(
        parser.feed("\n[[ ## answer ## ]]\n42"),
        [delta("reasoning", "", true), delta("answer", "42", false)]
    );
    assert_eq!(
        parser.feed("\n\n[[ ## completed ## ]]\n"),
        [delta("answer", "", true)]
    );
    assert_eq!(parser.finish(), []);

    // Only the fields listened to.
    let deltas = run(
        FieldStreamParser::chat(&sig).listen_only(["answer"]),
        &["[[ ## reasoning ## ]]\nr\n[[ ## answer ## ]]\na"],
    );
    assert_eq!(
        deltas,
        [delta("answer", "a", false), delta("answer", "", true)]
    );
    let mut parser = FieldStreamParser::chat(&sig).listen_only(["answer"]);
    assert_eq!(
        parser.feed("[[ ## reasoning ## ]]\nr\n[[ ## answer ## ]]\na\n[[ ## completed ## ]]"),
        [delta("answer", "a", true)]
    );
    let deltas = run(
        FieldStreamParser::chat(&sig).listen_only(["nope"]),
        &[CHAT[0]],
    );
    assert_eq!(deltas, []);
}

fn delta(field: &str, text: &str, is_last: bool) -> FieldDelta {
    FieldDelta {
        field: field.into(),
        delta: text.into(),
        is_last,
    }
}

#[test]
fn chat_long_lines_are_linear() {
    // A long run of whitespace or of name characters at a line start is decided one character
    // at a time, not rescanned.
    let sig = sig("question -> answer");
    let long = format!(
        "[[ ## answer ## ]]\ny{}x\n[[ ## {}",
        " ".repeat(200_000),
        "a".repeat(200_000)
    );
    let start = std::time::Instant::now();
    let deltas = run(FieldStreamParser::chat(&sig), &[&long]);
    assert!(start.elapsed().as_secs() < 5, "{:?}", start.elapsed());
    assert_eq!(
        joined(&deltas)[0].1.len(),
        1 + 200_000 + 1 + 1 + 6 + 200_000
    );
}

const JSON: &[&str] = &[
    r#"{"reasoning": "Two and two.", "answer": "four"}"#,
    "```json\n{\n  \"reasoning\": \"a \\\"quoted\\\" word,\\nnew line \\\\ \\/ \\t tab \\u00e9 \\ud83c\\udf89 }\",\n  \"answer\": \"ok\"\n}\n```",
    r#"Here: {"answer": "only answer", "reasoning": "second"} trailing {"answer": "ignored"}"#,
    r#"{"reasoning":"","answer":"x"}"#,
    r#"{"other": {"answer": "nested, not ours"}, "answer": "top"}"#,
    r#"{"reasoning": "lone \ud83c surrogate \udf89 and \u0041", "answer": "z"}"#,
    r#"{"reasoning": "cut off at the end"#,
];

/// The decoded top-level string values of the object (the first occurrence of each field).
fn json_expected(completion: &str) -> Vec<(String, String)> {
    let start = completion.find('{').expect("an object");
    let mut de = serde_json::Deserializer::from_str(&completion[start..]).into_iter::<Json>();
    let Some(Ok(Json::Object(map))) = de.next() else {
        return Vec::new();
    };
    map.into_iter()
        .filter(|(k, _)| k == "reasoning" || k == "answer")
        .map(|(k, v)| match v {
            Json::String(s) => (k, s),
            other => (k, other.to_string()),
        })
        .collect()
}

#[test]
fn json_deltas_are_the_decoded_strings_at_every_split() {
    let sig = sig("question -> reasoning, answer");
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    for (n, completion) in JSON.iter().enumerate() {
        let expected = match n {
            // serde_json rejects lone surrogates; the adapter's reader makes them U+FFFD.
            5 => vec![
                (
                    "reasoning".to_string(),
                    "lone \u{fffd} surrogate \u{fffd} and A".to_string(),
                ),
                ("answer".to_string(), "z".to_string()),
            ],
            6 => vec![("reasoning".to_string(), "cut off at the end".to_string())],
            _ => json_expected(completion),
        };
        let mut cases = splits(completion);
        cases.extend((0..200).map(|_| rng.chunks(completion)));
        for chunks in cases {
            let deltas = run(FieldStreamParser::json(&sig), &chunks);
            let got = joined(&deltas);
            assert_eq!(
                got, expected,
                "completion {completion:?} in chunks {chunks:?}"
            );
            if let Ok(parsed) = JSONAdapter.parse(&sig, completion) {
                for (field, text) in got {
                    assert_eq!(Json::String(text), parsed[&field], "{completion:?}");
                }
            }
        }
    }
}

#[test]
fn json_other_values_stream_as_written() {
    let sig = sig("question -> answer: int, tags: list[str], meta: dict[str, int], note");
    let completion = r#"{"answer":  42 , "tags": ["a, b", "}]\"", "c"], "meta": {"x": 1, "y": [2]}, "note": null}"#;
    for chunks in splits(completion) {
        let got = joined(&run(FieldStreamParser::json(&sig), &chunks));
        assert_eq!(
            got,
            [
                ("answer".to_string(), "42".to_string()),
                ("tags".to_string(), r#"["a, b", "}]\"", "c"]"#.to_string()),
                ("meta".to_string(), r#"{"x": 1, "y": [2]}"#.to_string()),
                ("note".to_string(), "null".to_string()),
            ],
            "{chunks:?}"
        );
    }
}

#[test]
fn json_gives_up_quietly_on_what_it_cannot_follow() {
    let sig = sig("question -> answer");
    for completion in [
        "{'answer': 'single'}",
        "{answer: 1}",
        "[1, 2]",
        "no json",
        "{\"answer\" 1}",
    ] {
        for chunks in splits(completion) {
            let deltas = run(FieldStreamParser::json(&sig), &chunks);
            assert!(deltas.iter().all(|d| !d.delta.contains('\'')), "{deltas:?}");
            joined(&deltas);
        }
    }
}

#[test]
fn parsers_by_adapter_name() {
    #[derive(Debug)]
    struct Custom;
    impl Adapter for Custom {
        fn name(&self) -> &'static str {
            "Custom"
        }
        fn format(
            &self,
            _: &DynSignature,
            _: &[crate::Example],
            _: &crate::Example,
        ) -> Result<Vec<crate::types::Message>, super::super::AdapterError> {
            Ok(Vec::new())
        }
        fn parse(
            &self,
            _: &DynSignature,
            _: &str,
        ) -> Result<serde_json::Map<String, Json>, super::super::AdapterError> {
            Ok(serde_json::Map::new())
        }
    }
    let sig = sig("q -> answer");
    assert!(FieldStreamParser::new(&ChatAdapter, &sig).is_some());
    assert!(FieldStreamParser::new(&JSONAdapter, &sig).is_some());
    assert!(FieldStreamParser::new(&Custom, &sig).is_none());
    let deltas = run(
        FieldStreamParser::new(&JSONAdapter, &sig).expect("json"),
        &[r#"{"answer": "a"}"#],
    );
    assert_eq!(deltas, [delta("answer", "a", true)]);
}
