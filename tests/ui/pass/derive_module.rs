// `#[derive(Module)]`: fields are visited under their names; `Vec` fields as `name[i]`, `Option`
// fields when present, nested modules with dotted paths, generic structs with the bounds they need;
// `#[module(skip)]` fields are left out.
use dspex::prelude::*;

fn params(s: &str) -> PredictorParams {
    PredictorParams::new(DynSignature::parse(s).unwrap())
}

#[derive(Module)]
struct Hop {
    generate_query: PredictorParams,
    #[module(skip)]
    label: String,
}

#[derive(Module)]
struct MultiHop {
    hops: Vec<Hop>,
    rerank: Option<PredictorParams>,
    fallback: Option<PredictorParams>,
    answer: PredictorParams,
    #[module(skip)]
    max_hops: usize,
}

#[derive(Module)]
struct Wrapper<M> {
    inner: M,
    #[module(skip)]
    name: &'static str,
}

#[derive(Module)]
struct Pair<A: Module, B>(A, B)
where
    B: Module;

fn names(m: &impl Module) -> Vec<String> {
    m.named_predictors().into_iter().map(|(n, _)| n).collect()
}

fn main() {
    let hop = |label: &str| Hop {
        generate_query: params("question -> query"),
        label: label.into(),
    };
    let mut program = MultiHop {
        hops: vec![hop("first"), hop("second")],
        rerank: Some(params("passages -> ranked")),
        fallback: None,
        answer: params("context, question -> answer"),
        max_hops: 2,
    };
    assert_eq!(
        names(&program),
        [
            "hops[0].generate_query",
            "hops[1].generate_query",
            "rerank",
            "answer"
        ]
    );
    program
        .predictor_mut("answer")
        .unwrap()
        .set_instructions("Answer briefly.");
    assert_eq!(
        program.predictor("answer").unwrap().instructions(),
        "Answer briefly."
    );
    assert_eq!(program.max_hops, 2);
    assert_eq!(program.hops[1].label, "second");

    let wrapped = Wrapper {
        inner: params("a -> b"),
        name: "w",
    };
    assert_eq!(names(&wrapped), ["inner"]);
    assert_eq!(wrapped.name, "w");
    let nested = Wrapper {
        inner: Wrapper {
            inner: params("a -> b"),
            name: "x",
        },
        name: "y",
    };
    assert_eq!(names(&nested), ["inner.inner"]);

    let pair = Pair(params("a -> b"), vec![params("b -> c")]);
    assert_eq!(names(&pair), ["0", "1[0]"]);
}
