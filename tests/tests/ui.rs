//! Compile-time behaviour of the macros: `ui/pass` must compile and run, `ui/fail` must fail with
//! exactly the committed `.stderr`. Regenerate those with
//! `TRYBUILD=overwrite cargo test -p dspex-tests --test ui` and read every diff.

#[test]
fn ui() {
    // Paths are relative to this crate's directory, where cargo runs its tests.
    let t = trybuild::TestCases::new();
    t.pass("ui/pass/*.rs");
    t.compile_fail("ui/fail/*.rs");
}
