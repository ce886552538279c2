use dspex::prelude::*;

fn main() {
    let length = program_fn(|x: String| async move { Ok(x.len()) });
    let double = program_fn(|n: usize| async move { Ok(n * 2) });
    // `length` takes `String`, `double` takes `usize`: they cannot run on one input.
    let _ = length.join(double);
}
