//! Property tests: the parser never panics, whatever it is given, and what it accepts is
//! internally consistent.

use dspex_grammar::{parse_signature, parse_type};
use proptest::prelude::*;

/// Pieces that signature strings are made of, so generated strings get deep into the grammar
/// instead of failing at the first character.
const PIECES: &[&str] = &[
    "question",
    "answer",
    "a",
    "b",
    "ctx",
    "1a",
    "type",
    "_",
    "é",
    " ",
    ",",
    ":",
    "::",
    "->",
    "-",
    ">",
    "<",
    "[",
    "]",
    "|",
    "=",
    "&",
    "(",
    ")",
    "'",
    "\"",
    "'x'",
    "\"y's\"",
    "\\",
    "str",
    "String",
    "int",
    "i64",
    "u8",
    "float",
    "f32",
    "bool",
    "Any",
    "Vec",
    "list",
    "List",
    "Option",
    "Optional",
    "Union",
    "None",
    "NoneType",
    "dict",
    "HashMap",
    "BTreeMap",
    "Literal",
    "True",
    "False",
    "0",
    "-7",
    "99999999999999999999",
    "Citation",
    "crate",
    "std",
    "tuple",
    "\n",
    "\t",
];

fn pieces() -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(PIECES), 0..40).prop_map(|v| v.concat())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 4000, ..ProptestConfig::default() })]

    #[test]
    fn signature_parser_never_panics(s in pieces()) {
        check_signature(&s);
    }

    #[test]
    fn signature_parser_never_panics_on_any_text(s in any::<String>()) {
        check_signature(&s);
    }

    #[test]
    fn type_parser_never_panics(s in pieces()) {
        if let Err(errors) = parse_type(&s) {
            prop_assert!(!errors.is_empty());
            for e in errors {
                prop_assert!(e.span.start <= e.span.end && e.span.end <= s.len());
            }
        }
    }
}

fn check_signature(s: &str) {
    match parse_signature(s) {
        Ok(sig) => {
            assert!(!sig.inputs.is_empty() && !sig.outputs.is_empty(), "{s:?}");
            for f in sig.fields() {
                assert_eq!(&s[f.name_span.start..f.name_span.end], f.name, "{s:?}");
                if let Some(ty) = &f.ty {
                    // Whatever was accepted renders in both spellings, and the DSPy spelling
                    // parses back to the same type.
                    let dspy = ty.dspy_name();
                    let _ = ty.rust_name();
                    if !matches!(ty.kind, dspex_grammar::TypeKind::Named(_)) {
                        let back = parse_type(&dspy).expect("the DSPy spelling parses");
                        assert_eq!(back.dspy_name(), dspy, "{s:?}");
                    }
                }
            }
        }
        Err(errors) => {
            assert!(!errors.is_empty(), "{s:?}");
            for e in errors {
                assert!(
                    e.span.start <= e.span.end && e.span.end <= s.len(),
                    "{s:?}: {e:?}"
                );
                assert!(e.column >= 1 && !e.message.is_empty());
            }
        }
    }
}
