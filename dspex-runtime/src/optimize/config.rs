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
    /// evaluations). Teacher runs in flight while bootstrapping; for MIPROv2, also the examples
    /// it evaluates at once (random search has its own `num_threads` for those). 0 counts as 1.
    /// The demos chosen are the sequential run's for every value.
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
