use dspex::prelude::*;

#[derive(Debug, Clone, Copy, LiteralEnum)]
#[literal(rename_all = "lowercas")]
enum Tone {
    Calm,
    #[literal(rename = "Calm")]
    Upset,
}

#[derive(Debug, Clone, Copy, LiteralEnum)]
#[literal(rename = "x")]
enum Other {
    A,
}

fn main() {}
