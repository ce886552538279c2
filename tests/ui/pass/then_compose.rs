// `a.then(b)` type-checks when `b` takes what `a` returns, including through signature structs.
use dspex::prelude::*;

#[signature("question -> answer")]
struct QA;

fn main() {
    let length = program_fn(|x: String| async move { Ok(x.len()) });
    let double = program_fn(|n: usize| async move { Ok(n * 2) });
    let describe = program_fn(|n: usize| async move { Ok(format!("{n} bytes")) });
    let pipeline = length.then(double).then(describe);

    // Typed steps built from a signature's generated structs.
    let ask = program_fn(|q: String| async move { Ok(QAInput { question: q }) });
    let answer = program_fn(|i: QAInput| async move {
        Ok(QAOutput {
            answer: i.question.to_uppercase(),
        })
    });
    let unwrap = program_fn(|o: QAOutput| async move { Ok(o.answer) });
    let typed = ask.then(answer).then(unwrap).then(pipeline);

    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let out = rt.block_on(typed.forward("abc".to_string())).unwrap();
    assert_eq!(out, "6 bytes");

    fn takes_string_returns_string<P: Program<Input = String, Output = String>>(_: &P) {}
    takes_string_returns_string(&typed);
    assert_eq!(QA::output_fields().len(), 1);
}
