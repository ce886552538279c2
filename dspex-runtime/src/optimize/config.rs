//! [`DemoConfig`]: the demo knobs the bootstrapping optimizers share, and [`DemoKnobs`], their
//! builder methods, written once for every optimizer that embeds a `DemoConfig`.

/// `max_errors` when none is set: DSPy's `settings.max_errors` default.
pub const DEFAULT_MAX_ERRORS: usize = 10;

/// Runs in flight at once unless [`DemoKnobs::concurrency`] says otherwise.
pub const DEFAULT_CONCURRENCY: usize = 16;

/// The knobs DSPy repeats on every optimizer that bootstraps demos — `BootstrapFewShot`,
/// `BootstrapFewShotWithRandomSearch`, `MIPROv2` (and `KNNFewShot`, through its
/// `BootstrapFewShot`) — as one value each of them embeds.
///
/// Each optimizer starts from its own DSPy defaults ([`DemoConfig::bootstrap_few_shot`],
/// [`DemoConfig::mipro_v2`]); set knobs one at a time with the [`DemoKnobs`] builder methods
/// (`.max_bootstrapped_demos(n)`, `.metric_threshold(t)`, …), or pass a whole value with
/// [`DemoKnobs::with_demo_config`] and read it back with [`DemoKnobs::demo_config`]. The
/// builder methods work on a `DemoConfig` too, so one value can be prepared and handed to
/// several optimizers.
///
/// ```
/// use dspex_runtime::evaluate::answer_exact_match;
/// use dspex_runtime::optimize::{BootstrapFewShot, DemoConfig, DemoKnobs, MIPROv2};
///
/// let config = DemoConfig::mipro_v2().max_labeled_demos(2).max_errors(3);
/// let mipro = MIPROv2::new(answer_exact_match()).with_demo_config(config);
/// assert_eq!(mipro.demo_config(), &config);
///
/// // The same knobs one by one, on another optimizer with other defaults.
/// let bootstrap = BootstrapFewShot::new().max_labeled_demos(2).max_errors(3);
/// assert_eq!(bootstrap.demo_config().max_labeled_demos, 2);
/// assert_eq!(bootstrap.demo_config().max_bootstrapped_demos, 4);
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub struct DemoConfig {
    /// DSPy's `max_bootstrapped_demos`: how many examples to bootstrap, and so the most
    /// bootstrapped demos per predictor; 0 bootstraps nothing. Random search and MIPROv2 build
    /// their shuffled candidates with a size drawn from 1 to this; MIPROv2 with 0 here and in
    /// [`max_labeled_demos`](Self::max_labeled_demos) tunes instructions only.
    pub max_bootstrapped_demos: usize,
    /// DSPy's `max_labeled_demos`: demos per predictor in total — the bootstrapped ones, then
    /// labeled training examples up to this number. BootstrapFewShot also gives its teacher
    /// this many labeled demos; random search and MIPROv2 build their labeled-only candidate
    /// with it.
    pub max_labeled_demos: usize,
    /// DSPy's `max_errors`: the number of errors (failed teacher runs or metric calls, counted
    /// in training-set order) at which bootstrapping fails; `None` is
    /// [`DEFAULT_MAX_ERRORS`], DSPy's `settings.max_errors`.
    pub max_errors: Option<usize>,
    /// DSPy's `metric_threshold`: a bootstrapped run is accepted when the metric is at least
    /// this. As in DSPy, `None` and a threshold of 0 accept a run whose metric is non-zero.
    pub metric_threshold: Option<f64>,
    /// How much runs at once (DSPy runs one at a time: its `num_threads` plays this part only in
    /// evaluations). Teacher runs in flight while bootstrapping — only runs the sequential loop
    /// surely makes, unless [`BootstrapFewShot::speculative`](super::BootstrapFewShot::speculative)
    /// — for MIPROv2, also the examples it evaluates at once (random search has its own
    /// `num_threads` for those). 0 counts as 1. The demos chosen are the sequential run's for
    /// every value.
    pub concurrency: usize,
}

impl Default for DemoConfig {
    /// [`DemoConfig::bootstrap_few_shot`].
    fn default() -> Self {
        DemoConfig::bootstrap_few_shot()
    }
}

impl DemoConfig {
    /// The defaults of DSPy's `BootstrapFewShot` and `BootstrapFewShotWithRandomSearch`: 4
    /// bootstrapped and 16 labeled demos, `max_errors` and `metric_threshold` unset;
    /// [`DEFAULT_CONCURRENCY`] runs at once.
    pub const fn bootstrap_few_shot() -> Self {
        DemoConfig {
            max_bootstrapped_demos: 4,
            max_labeled_demos: 16,
            max_errors: None,
            metric_threshold: None,
            concurrency: DEFAULT_CONCURRENCY,
        }
    }

    /// The defaults of DSPy's `MIPROv2`: 4 bootstrapped and 4 labeled demos, `max_errors` and
    /// `metric_threshold` unset; [`DEFAULT_CONCURRENCY`] runs at once.
    pub const fn mipro_v2() -> Self {
        DemoConfig {
            max_labeled_demos: 4,
            ..DemoConfig::bootstrap_few_shot()
        }
    }

    /// The error budget in effect: `max_errors`, or
    /// [`DEFAULT_MAX_ERRORS`] when it is unset.
    pub(crate) fn error_budget(&self) -> usize {
        self.max_errors.unwrap_or(DEFAULT_MAX_ERRORS)
    }

    /// How many runs go at once: `concurrency`, at least 1.
    pub(crate) fn runs_at_once(&self) -> usize {
        self.concurrency.max(1)
    }

    /// DSPy's success test of a bootstrapped run: `metric_val >= threshold` when the threshold
    /// is truthy, else the truthiness of `metric_val` (NaN is truthy in Python, and is here).
    pub(crate) fn accepts(&self, metric_value: f64) -> bool {
        match self.metric_threshold {
            Some(threshold) if threshold != 0.0 => metric_value >= threshold,
            _ => metric_value != 0.0,
        }
    }
}

/// The builder methods of the [`DemoConfig`] knobs, under DSPy's names, for every optimizer
/// that embeds one ([`BootstrapFewShot`](super::BootstrapFewShot),
/// [`BootstrapFewShotWithRandomSearch`](super::BootstrapFewShotWithRandomSearch),
/// [`MIPROv2`](super::MIPROv2), [`KNNFewShot`](super::KNNFewShot)) and for `DemoConfig` itself.
/// An implementation only exposes its embedded value; every method comes from here.
///
/// The trait is in `dspex::prelude`; without the prelude, import it from
/// `dspex::optimize` to call `.max_bootstrapped_demos(n)` and the others.
pub trait DemoKnobs: Sized {
    /// The knobs as they are set.
    fn demo_config(&self) -> &DemoConfig;

    /// The knobs, to change in place.
    fn demo_config_mut(&mut self) -> &mut DemoConfig;

    /// Sets every knob at once from `config`.
    #[must_use]
    fn with_demo_config(mut self, config: DemoConfig) -> Self {
        *self.demo_config_mut() = config;
        self
    }

    /// Sets [`DemoConfig::max_bootstrapped_demos`] (DSPy's `max_bootstrapped_demos`).
    #[must_use]
    fn max_bootstrapped_demos(mut self, n: usize) -> Self {
        self.demo_config_mut().max_bootstrapped_demos = n;
        self
    }

    /// Sets [`DemoConfig::max_labeled_demos`] (DSPy's `max_labeled_demos`).
    #[must_use]
    fn max_labeled_demos(mut self, n: usize) -> Self {
        self.demo_config_mut().max_labeled_demos = n;
        self
    }

    /// Sets [`DemoConfig::max_errors`] (DSPy's `max_errors`).
    #[must_use]
    fn max_errors(mut self, n: usize) -> Self {
        self.demo_config_mut().max_errors = Some(n);
        self
    }

    /// Sets [`DemoConfig::metric_threshold`] (DSPy's `metric_threshold`).
    #[must_use]
    fn metric_threshold(mut self, threshold: f64) -> Self {
        self.demo_config_mut().metric_threshold = Some(threshold);
        self
    }

    /// Sets [`DemoConfig::concurrency`]; 0 counts as 1.
    #[must_use]
    fn concurrency(mut self, n: usize) -> Self {
        self.demo_config_mut().concurrency = n.max(1);
        self
    }
}

impl DemoKnobs for DemoConfig {
    fn demo_config(&self) -> &DemoConfig {
        self
    }

    fn demo_config_mut(&mut self) -> &mut DemoConfig {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::{Error, Result};
    use crate::evaluate::{answer_exact_match, metric_fn};
    use crate::example::{Example, Prediction};
    use crate::lm::{ScriptedLM, embedder_fn};
    use crate::module::DynPredict;
    use crate::optimize::qa_trainset as examples;
    use crate::optimize::{
        BootstrapError, BootstrapFewShot, BootstrapFewShotWithRandomSearch, KNNFewShot, MIPROv2,
        Optimizer,
    };
    use crate::settings::{Settings, with_settings};
    use crate::signature::DynSignature;
    use serde_json::json;
    use std::sync::Arc;

    fn student() -> DynPredict {
        DynPredict::new(DynSignature::parse("question -> answer").unwrap())
    }

    /// Every knob away from every optimizer's default.
    fn custom() -> DemoConfig {
        DemoConfig {
            max_bootstrapped_demos: 2,
            max_labeled_demos: 3,
            max_errors: Some(5),
            metric_threshold: Some(0.5),
            concurrency: 2,
        }
    }

    /// The knobs of [`custom`], one builder method at a time.
    fn one_by_one<T: DemoKnobs>(optimizer: T) -> T {
        optimizer
            .max_bootstrapped_demos(2)
            .max_labeled_demos(3)
            .max_errors(5)
            .metric_threshold(0.5)
            .concurrency(2)
    }

    #[tokio::test]
    async fn each_optimizer_starts_from_its_dspy_defaults() {
        // DSPy 3.4.1: BootstrapFewShot(max_bootstrapped_demos=4, max_labeled_demos=16,
        // max_errors=None, metric_threshold=None), the same in
        // BootstrapFewShotWithRandomSearch, MIPROv2(max_bootstrapped_demos=4,
        // max_labeled_demos=4, max_errors=None, metric_threshold=None).
        let few_shot = DemoConfig {
            max_bootstrapped_demos: 4,
            max_labeled_demos: 16,
            max_errors: None,
            metric_threshold: None,
            concurrency: DEFAULT_CONCURRENCY,
        };
        let mipro = DemoConfig {
            max_labeled_demos: 4,
            ..few_shot
        };
        assert_eq!(DemoConfig::default(), few_shot);
        assert_eq!(DemoConfig::bootstrap_few_shot(), few_shot);
        assert_eq!(DemoConfig::mipro_v2(), mipro);
        assert_eq!(BootstrapFewShot::new().demo_config(), &few_shot);
        assert_eq!(
            BootstrapFewShotWithRandomSearch::new(answer_exact_match()).demo_config(),
            &few_shot
        );
        assert_eq!(MIPROv2::new(answer_exact_match()).demo_config(), &mipro);
        let knn = KNNFewShot::new(
            1,
            examples(2),
            Arc::new(embedder_fn(|_: &str| vec![1.0])),
            BootstrapFewShot::new(),
        )
        .await
        .unwrap();
        assert_eq!(knn.demo_config(), &few_shot);
        assert_eq!(one_by_one(knn).demo_config(), &custom());
        // Unset knobs mean DSPy's settings.max_errors and Python truthiness.
        assert_eq!(few_shot.error_budget(), DEFAULT_MAX_ERRORS);
        assert_eq!(DEFAULT_MAX_ERRORS, 10);
        assert!(few_shot.accepts(0.1) && !few_shot.accepts(0.0));
    }

    #[test]
    fn knobs_one_by_one_and_a_whole_config_build_the_same_optimizer() {
        let config = custom();
        assert_eq!(
            (config.error_budget(), config.runs_at_once()),
            (5, 2),
            "{config:?}"
        );
        assert!(!config.accepts(0.4) && config.accepts(0.5));

        assert_eq!(one_by_one(DemoConfig::default()), config);
        assert_eq!(one_by_one(DemoConfig::mipro_v2()), config);

        let by_knob = one_by_one(BootstrapFewShot::new());
        let whole = BootstrapFewShot::new().with_demo_config(config);
        assert_eq!(by_knob.demo_config(), &config);
        assert_eq!(format!("{by_knob:?}"), format!("{whole:?}"));

        let search = || BootstrapFewShotWithRandomSearch::new(answer_exact_match());
        let by_knob = one_by_one(search());
        let whole = search().with_demo_config(config);
        assert_eq!(by_knob.demo_config(), &config);
        assert_eq!(format!("{by_knob:?}"), format!("{whole:?}"));

        let mipro = || MIPROv2::new(answer_exact_match());
        let by_knob = one_by_one(mipro());
        assert_eq!(by_knob.demo_config(), &config);
        assert_eq!(mipro().with_demo_config(config).demo_config(), &config);

        // In place, and 0 runs at once counts as 1.
        let mut optimizer = BootstrapFewShot::new();
        optimizer.demo_config_mut().max_labeled_demos = 3;
        assert_eq!(optimizer.demo_config().max_labeled_demos, 3);
        assert_eq!(DemoConfig::default().concurrency(0).concurrency, 1);
        let config = DemoConfig {
            concurrency: 0,
            ..DemoConfig::default()
        };
        assert_eq!(config.runs_at_once(), 1);
    }

    #[tokio::test]
    async fn knobs_and_configs_compile_the_same_demos() {
        // No bootstrapping: the labeled demos alone show the knobs reached the compile.
        let lm = ScriptedLM::new(Vec::<String>::new());
        let config = DemoConfig::default()
            .max_bootstrapped_demos(0)
            .max_labeled_demos(3);
        let by_knob = BootstrapFewShot::new()
            .max_bootstrapped_demos(0)
            .max_labeled_demos(3);
        let whole = BootstrapFewShot::new().with_demo_config(config);
        let scope = || Settings::new().lm(lm.clone());
        let a = with_settings(scope(), by_knob.compile(student(), &examples(6)))
            .await
            .unwrap();
        let b = with_settings(scope(), whole.compile(student(), &examples(6)))
            .await
            .unwrap();
        assert_eq!(a.params().demos.len(), 3);
        assert_eq!(a.params().demos, b.params().demos);
        assert_eq!(lm.calls(), 0);
    }

    #[test]
    fn random_search_takes_a_bootstrap_but_keeps_its_demo_counts() {
        let search = BootstrapFewShotWithRandomSearch::new(answer_exact_match())
            .max_bootstrapped_demos(2)
            .max_labeled_demos(3)
            .bootstrap(BootstrapFewShot::new().with_demo_config(custom().max_labeled_demos(9)));
        assert_eq!(search.demo_config(), &custom());
    }

    #[tokio::test]
    async fn mipro_bootstraps_with_its_error_budget() {
        // The inner BootstrapFewShot runs get MIPROv2's knobs: one failing metric call ends the
        // compile with a budget of 1 (the default budget of 10 would let it go on).
        let lm = ScriptedLM::from_fields([json!({"answer": "x"})]).repeat_last();
        let failing = metric_fn("failing", |_: &Example, _: &Prediction| -> Result<bool> {
            Err(Error::step("judging", "no judge"))
        });
        let mipro = MIPROv2::new(failing).max_errors(1).concurrency(1);
        let err = with_settings(
            Settings::new().lm(lm),
            mipro.compile(student(), &examples(5)),
        )
        .await
        .unwrap_err();
        match BootstrapError::find(&err) {
            Some(BootstrapError::TooManyErrors {
                errors, max_errors, ..
            }) => assert_eq!((*errors, *max_errors), (1, 1)),
            other => panic!("{other:?}: {err}"),
        }
    }
}
