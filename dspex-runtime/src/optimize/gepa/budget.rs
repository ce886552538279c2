//! The budget knobs (`auto`, `max_full_evals`, `max_metric_calls`: exactly one), DSPy's
//! formula turning them into metric calls, and [`GepaError`], what a bad configuration is.

use super::super::mipro::Auto;

/// What was wrong with a [`GEPA`](super::GEPA) configuration or its input. It reaches the
/// caller inside [`Error::Step`](crate::Error::Step); find it with [`GepaError::find`].
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum GepaError {
    /// Not exactly one of the budget knobs was set.
    #[error(
        "exactly one of max_metric_calls, max_full_evals, auto must be set; you set max_metric_calls={max_metric_calls:?}, max_full_evals={max_full_evals:?}, auto={auto:?}"
    )]
    Budget {
        /// `max_metric_calls` as set.
        max_metric_calls: Option<usize>,
        /// `max_full_evals` as set.
        max_full_evals: Option<usize>,
        /// `auto` as set.
        auto: Option<Auto>,
    },
    /// Neither a reflection LM nor an instruction proposer was given.
    #[error(
        "GEPA requires a reflection LM (`reflection_lm`) or a custom instruction proposer (`instruction_proposer`)"
    )]
    NoReflection,
    /// `track_best_outputs` without `track_stats`.
    #[error("track_stats must be true if track_best_outputs is true")]
    TrackBestOutputs,
    /// The training set is empty.
    #[error("the trainset must be provided and non-empty")]
    EmptyTrainset,
    /// The validation set (the trainset when none is given) is empty.
    #[error("the valset must be non-empty")]
    EmptyValset,
    /// The program has no named predictors, so there is nothing to optimize.
    #[error("the program has no named predictors: GEPA optimizes their instructions")]
    NoPredictors,
    /// `reflection_minibatch_size` is 0.
    #[error("reflection_minibatch_size must be at least 1")]
    MinibatchSize,
    /// The run directory could not be read or written, or holds a state of another run.
    #[error("log_dir {path}: {detail}")]
    LogDir {
        /// The directory.
        path: String,
        /// What went wrong.
        detail: String,
    },
    /// The instruction proposer returned an empty instruction for a component.
    #[error("the reflection LM returned an empty instruction for component {0:?}")]
    EmptyInstruction(String),
    /// No reflective example could be built for any component (every run failed).
    #[error("no valid predictions found for any module")]
    NoReflectiveExamples,
}

impl GepaError {
    /// The `GepaError` inside an error (or anywhere in its chain of sources).
    pub fn find<'a>(error: &'a (dyn std::error::Error + 'static)) -> Option<&'a GepaError> {
        let mut current = Some(error);
        while let Some(e) = current {
            if let Some(found) = e.downcast_ref::<GepaError>() {
                return Some(found);
            }
            current = e.source();
        }
        None
    }
}

impl From<GepaError> for crate::Error {
    fn from(e: GepaError) -> Self {
        crate::Error::step("GEPA", e)
    }
}

/// How much a run may spend, in metric calls (DSPy's three mutually exclusive knobs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Budget {
    /// `auto="light" | "medium" | "heavy"`: DSPy's [`auto_budget`] formula.
    Auto(Auto),
    /// `max_full_evals=k`: `k · (len(trainset) + len(valset))` (the valset counts 0 when none is
    /// given).
    MaxFullEvals(usize),
    /// `max_metric_calls=n`.
    MaxMetricCalls(usize),
}

impl Budget {
    /// The metric calls this budget allows for `components` components, a trainset of `train`
    /// and a valset of `val` (`None` when the trainset doubles as the valset).
    pub fn metric_calls(self, components: usize, train: usize, val: Option<usize>) -> usize {
        match self {
            Budget::MaxMetricCalls(n) => n,
            Budget::MaxFullEvals(k) => k * (train + val.unwrap_or(0)),
            Budget::Auto(auto) => auto_budget(components.max(1), auto.n(), val.unwrap_or(train)),
        }
    }
}

/// DSPy's `GEPA.auto_budget(num_preds, num_candidates, valset_size)` (minibatch size 35, a
/// full evaluation every 5 trials): `V + 5n + T·35 + ((T+1)//5 + 1 + [T < 5])·V` with
/// `T = int(max(2·(2P)·log2(n), 1.5·n))` trials (just `V + 5n` when `T = 0`).
///
/// ```
/// use dspex_runtime::optimize::gepa::auto_budget;
/// // DSPy: GEPA.auto_budget(None, 1, 6, 20) == 460
/// assert_eq!(auto_budget(1, 6, 20), 460);
/// ```
pub fn auto_budget(num_preds: usize, num_candidates: usize, valset_size: usize) -> usize {
    const M: usize = 35;
    const STEPS: usize = 5;
    let n = num_candidates as f64;
    let trials = (2.0 * (num_preds as f64 * 2.0) * n.log2()).max(1.5 * n);
    // Python's int() truncates toward zero.
    let t = if trials.is_finite() && trials > 0.0 {
        trials.trunc() as usize
    } else {
        0
    };
    let v = valset_size;
    let mut total = v + num_candidates * 5 + t * M;
    if t == 0 {
        return total;
    }
    let periodic = (t + 1) / STEPS + 1;
    let extra = usize::from(t < STEPS);
    total += (periodic + extra) * v;
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budget_formula_matches_dspy() {
        // DSPy 3.4.1: GEPA.auto_budget(None, P, n, V)
        assert_eq!(auto_budget(1, 6, 20), 460);
        assert_eq!(auto_budget(2, 12, 50), 1390);
        assert_eq!(auto_budget(3, 18, 10), 1960);
        assert_eq!(auto_budget(1, 6, 0), 380);
        assert_eq!(Budget::Auto(Auto::Light).metric_calls(0, 20, None), 460);
        assert_eq!(Budget::MaxFullEvals(3).metric_calls(1, 10, Some(5)), 45);
        assert_eq!(Budget::MaxFullEvals(3).metric_calls(1, 10, None), 30);
        assert_eq!(Budget::MaxMetricCalls(77).metric_calls(4, 10, None), 77);
    }
}
