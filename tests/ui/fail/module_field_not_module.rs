use dspex::prelude::*;

#[derive(Module)]
struct Pipeline {
    answer: PredictorParams,
    max_hops: usize,
}

fn main() {
    let _ = Pipeline {
        answer: PredictorParams::new(DynSignature::parse("q -> a").unwrap()),
        max_hops: 2,
    };
}
