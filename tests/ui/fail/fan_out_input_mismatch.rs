use dspex::prelude::*;

fn main() {
    let length = program_fn(|x: String| async move { Ok(x.len()) });
    let shout = program_fn(|x: String| async move { Ok(x.to_uppercase()) });
    let double = program_fn(|n: usize| async move { Ok(n * 2) });
    // The third branch takes `usize`, the others `String`.
    let _ = fan_out((length, shout, double));
}
