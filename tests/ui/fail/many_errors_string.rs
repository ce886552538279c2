use dspex::prelude::*;

// Every mistake in the string is reported at once.
#[signature("1a, type, ok -> answer: Vec<>, score: &str, label: string, fine: int")]
struct QA;

fn main() {
    let _ = QAInput { ok: String::new() };
    // Fields whose type was rejected are kept as `String`, so uses of them do not fail again.
    let _ = QAOutput { answer: String::new(), score: String::new(), label: String::new(), fine: 1 };
}
