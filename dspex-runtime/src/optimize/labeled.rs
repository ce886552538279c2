//! [`LabeledFewShot`]: every predictor gets `k` training examples as demos.

use super::{JobContext, Optimizable, Optimizer};
use crate::error::Result;
use crate::example::Example;
use crate::program::Module;
use crate::pycompat::PyRandom;

/// DSPy's `LabeledFewShot(k)`: each predictor's demos become `k` examples of the training set
/// (all of it when it is smaller), drawn with Python's `random.Random(0).sample` — one generator
/// for the whole compile, continuing from predictor to predictor in
/// [`named_predictors`](Module::named_predictors) order, so two predictors get different
/// samples exactly as in DSPy. With [`sample(false)`](LabeledFewShot::sample) each predictor gets
/// the first `k` examples instead.
///
/// The student's own demos are discarded first (DSPy's `reset_copy()`); an empty training set
/// leaves every predictor without demos. Demos are the training examples themselves, with all
/// their fields.
///
/// Unlike DSPy's `reset_copy()`, a predictor's own LM is kept: in dspex it is part of the
/// program's call configuration, not of the parameters an optimizer tunes.
///
/// ```
/// use dspex_runtime::module::DynPredict;
/// use dspex_runtime::optimize::LabeledFewShot;
/// use dspex_runtime::{DynSignature, Example, Module};
///
/// let trainset: Vec<Example> = (0..8)
///     .map(|i| Example::new().with("question", format!("Q{i}")).with("answer", format!("A{i}")))
///     .collect();
/// let program = vec![
///     DynPredict::new(DynSignature::parse("question -> answer")?),
///     DynPredict::new(DynSignature::parse("question -> answer")?),
/// ];
/// let compiled = LabeledFewShot::new(4).apply(program, &trainset);
/// let questions = |name: &str| -> Vec<String> {
///     compiled.predictor(name).unwrap().demos.iter()
///         .map(|d| d.get_str("question").unwrap().to_string()).collect()
/// };
/// // Python: rng = random.Random(0); rng.sample(trainset, 4); rng.sample(trainset, 4)
/// assert_eq!(questions("[0]"), ["Q6", "Q7", "Q3", "Q0"]);
/// assert_eq!(questions("[1]"), ["Q4", "Q7", "Q3", "Q5"]);
/// # Ok::<(), dspex_runtime::SignatureError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LabeledFewShot {
    k: usize,
    sample: bool,
}

impl Default for LabeledFewShot {
    /// DSPy's defaults: `k = 16`, sampled.
    fn default() -> Self {
        LabeledFewShot::new(16)
    }
}

impl LabeledFewShot {
    /// Up to `k` demos per predictor, sampled with `random.Random(0)`.
    pub fn new(k: usize) -> Self {
        LabeledFewShot { k, sample: true }
    }

    /// Whether to sample the demos (`true`, the default) or take the first `k` examples (DSPy's
    /// `compile(..., sample=False)`).
    #[must_use]
    pub fn sample(mut self, sample: bool) -> Self {
        self.sample = sample;
        self
    }

    /// The number of demos per predictor.
    pub fn k(&self) -> usize {
        self.k
    }

    /// Compiles `student` at once (nothing here calls an LM): its demos cleared, then each
    /// predictor's demos drawn from `trainset`.
    pub fn apply<P: Module>(&self, mut student: P, trainset: &[Example]) -> P {
        clear_demos(&mut student);
        if trainset.is_empty() {
            return student;
        }
        let k = self.k.min(trainset.len());
        let mut rng = PyRandom::new(0);
        student.visit_predictors_mut("", &mut |_, params| {
            params.demos = if self.sample {
                // k <= len, so the sample cannot fail.
                rng.sample(trainset, k).unwrap_or_default()
            } else {
                trainset[..k].to_vec()
            };
        });
        student
    }
}

impl Optimizer for LabeledFewShot {
    fn compile_in<P: Optimizable>(
        &self,
        student: P,
        trainset: &[Example],
        _ctx: &JobContext,
    ) -> impl std::future::Future<Output = Result<P>> + Send {
        std::future::ready(Ok(self.apply(student, trainset)))
    }
}

/// DSPy's `reset_copy()` as far as dspex parameters go: every predictor's demos cleared.
pub(crate) fn clear_demos<P: Module + ?Sized>(program: &mut P) {
    program.visit_predictors_mut("", &mut |_, params| params.demos.clear());
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::module::DynPredict;
    use crate::optimize::qa_trainset as trainset;
    use crate::signature::DynSignature;

    fn questions(p: &crate::PredictorParams) -> Vec<&str> {
        p.demos
            .iter()
            .map(|d| d.get_str("question").unwrap())
            .collect()
    }

    fn program(n: usize) -> Vec<DynPredict> {
        (0..n)
            .map(|_| DynPredict::new(DynSignature::parse("question -> answer").unwrap()))
            .collect()
    }

    #[test]
    fn one_generator_across_predictors_as_dspy() {
        let mut student = program(3);
        student[0].params_mut().demos = trainset(1);
        let compiled = LabeledFewShot::new(4).apply(student, &trainset(8));
        // Verified with DSPy 3.4.1: 8 examples, k=4 -> 6,7,3,0 then 4,7,3,5.
        assert_eq!(questions(compiled[0].params()), ["Q6", "Q7", "Q3", "Q0"]);
        assert_eq!(questions(compiled[1].params()), ["Q4", "Q7", "Q3", "Q5"]);
        // Python: rng.sample(range(8), 4) a third time.
        let mut rng = PyRandom::new(0);
        let _ = rng.sample_indices(8, 4);
        let _ = rng.sample_indices(8, 4);
        let third: Vec<String> = rng
            .sample_indices(8, 4)
            .unwrap()
            .into_iter()
            .map(|i| format!("Q{i}"))
            .collect();
        assert_eq!(questions(compiled[2].params()), third);
        // Demos are the examples themselves, input keys and all.
        assert_eq!(compiled[0].params().demos[0], trainset(8)[6]);
        assert!(compiled[0].params().demos[0].input_keys().is_some());
    }

    #[test]
    fn first_k_small_sets_and_empty_sets() {
        let compiled = LabeledFewShot::new(3)
            .sample(false)
            .apply(program(2), &trainset(8));
        assert_eq!(questions(compiled[1].params()), ["Q0", "Q1", "Q2"]);
        // k larger than the set: all of it, in sampled order (a permutation).
        let compiled = LabeledFewShot::new(16).apply(program(1), &trainset(3));
        let mut got = questions(compiled[0].params());
        assert_eq!(got.len(), 3);
        got.sort_unstable();
        assert_eq!(got, ["Q0", "Q1", "Q2"]);
        // An empty set clears the demos.
        let mut student = program(1);
        student[0].params_mut().demos = trainset(2);
        let compiled = LabeledFewShot::default().apply(student, &[]);
        assert!(compiled[0].params().demos.is_empty());
    }

    #[tokio::test]
    async fn compiles_as_an_optimizer() {
        let student = program(1).remove(0);
        let compiled = LabeledFewShot::new(2)
            .compile(student, &trainset(5))
            .await
            .unwrap();
        assert_eq!(questions(compiled.params()), ["Q3", "Q4"]);
    }
}
