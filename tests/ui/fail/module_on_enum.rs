use dspex::prelude::*;

#[derive(Module)]
enum Pipeline {
    One(PredictorParams),
}

fn main() {}
