use dspex::prelude::*;

fn main() {
    let length = program_fn(|x: String| async move { Ok(x.len()) });
    let shout = program_fn(|x: String| async move { Ok(x.to_uppercase()) });
    // `length` returns `usize`, `shout` returns `String`: `branch` needs one output type.
    let _ = branch(|x: &String| x.is_empty(), length, shout);
}
