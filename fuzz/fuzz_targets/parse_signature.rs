//! Fuzzes the signature-string grammar: it must never panic, and every error must point inside
//! the input. Run it with `scripts/fuzz SECONDS` (stable) or `cargo fuzz run parse_signature`
//! (nightly); CI builds it with `cargo build --manifest-path fuzz/Cargo.toml`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (sig, errors) = dspex_grammar::parse_signature_partial(text);
    for e in &errors {
        assert!(e.span.start <= e.span.end && e.span.end <= text.len());
        assert!(e.column >= 1);
    }
    for f in sig.fields() {
        assert_eq!(&text[f.name_span.start..f.name_span.end], f.name);
        if let Some(ty) = &f.ty {
            let _ = (ty.dspy_name(), ty.rust_name());
        }
    }
    let _ = dspex_grammar::parse_type(text);
});
