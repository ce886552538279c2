use dspex::prelude::*;

#[derive(Module)]
struct Pipeline {
    answer: PredictorParams,
    #[module(skp)]
    max_hops: usize,
}

fn main() {
    let p = Pipeline {
        answer: PredictorParams::new(DynSignature::parse("q -> a").unwrap()),
        max_hops: 2,
    };
    let _ = p.named_predictors();
    let _ = p.max_hops;
}
