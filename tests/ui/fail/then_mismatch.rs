use dspex::prelude::*;

fn main() {
    let length = program_fn(|x: String| async move { Ok(x.len()) });
    let shout = program_fn(|x: String| async move { Ok(x.to_uppercase()) });
    // `length` returns `usize`; `shout` takes `String`.
    let _ = length.then(shout);
}
