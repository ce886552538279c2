//! Metrics with feedback: DSPy's GEPA metric `(gold, pred, trace, pred_name, pred_trace)`,
//! returning a score or a score with textual feedback.

use crate::error::Result;
use crate::evaluate::{IntoScore, Metric};
use crate::example::{Example, Prediction};
use crate::pycompat::pyfmt::py_float;
use crate::settings::TraceEntry;
use futures_util::future::BoxFuture;
use serde::{Deserialize, Serialize};

/// A score with the feedback the reflection LM reads (DSPy's `ScoreWithFeedback`, or a
/// `Prediction(score=…, feedback=…)` returned by a metric).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScoreWithFeedback {
    /// The score.
    pub score: f64,
    /// What could be better; `None` becomes DSPy's "This trajectory got a score of …".
    pub feedback: Option<String>,
}

impl ScoreWithFeedback {
    /// A score with feedback.
    pub fn new(score: f64, feedback: impl Into<String>) -> Self {
        ScoreWithFeedback {
            score,
            feedback: Some(feedback.into()),
        }
    }
}

/// What the predictor being reflected on did, as the metric's last two arguments (DSPy's
/// `pred_name` and `pred_trace`).
#[derive(Debug, Clone, Copy)]
pub struct PredictorFocus<'a> {
    /// The predictor's name (`named_predictors`).
    pub name: &'a str,
    /// The one call of it the feedback is about.
    pub trace: &'a [TraceEntry],
}

/// A GEPA metric: DSPy's `metric(gold, pred, trace=None, pred_name=None, pred_trace=None)`.
///
/// GEPA calls it without `trace` and `focus` to score validation runs, with `trace` to score
/// the runs it reflects on, and with both to ask for feedback on one predictor. Every
/// [`Metric`] is one (its feedback is DSPy's "This trajectory got a score of …"); write one
/// that gives feedback with [`feedback_metric_fn`].
pub trait FeedbackMetric: Send + Sync {
    /// The score of `prediction` for `example`, with feedback if the metric has any.
    fn score_with_feedback<'a>(
        &'a self,
        example: &'a Example,
        prediction: &'a Prediction,
        trace: Option<&'a [TraceEntry]>,
        focus: Option<PredictorFocus<'a>>,
    ) -> BoxFuture<'a, Result<ScoreWithFeedback>>;

    /// Whether scores are pass/fail: DSPy then writes them `True`/`False` in the default
    /// feedback ("This trajectory got a score of True.").
    fn returns_bool(&self) -> bool {
        false
    }

    /// The metric's name.
    fn name(&self) -> &str {
        "metric"
    }
}

impl<M: Metric + ?Sized> FeedbackMetric for M {
    fn score_with_feedback<'a>(
        &'a self,
        example: &'a Example,
        prediction: &'a Prediction,
        trace: Option<&'a [TraceEntry]>,
        _focus: Option<PredictorFocus<'a>>,
    ) -> BoxFuture<'a, Result<ScoreWithFeedback>> {
        Box::pin(async move {
            Ok(ScoreWithFeedback {
                score: self.score(example, prediction, trace).await?,
                feedback: None,
            })
        })
    }

    fn returns_bool(&self) -> bool {
        Metric::returns_bool(self)
    }

    fn name(&self) -> &str {
        Metric::name(self)
    }
}

/// What a [`feedback_metric_fn`] closure may return: anything a [`Metric`] closure may (a
/// score or pass/fail), a [`ScoreWithFeedback`], a `Prediction` with `score` and `feedback`
/// fields, or any of them in a `Result`.
pub trait IntoFeedback {
    /// Whether the score is pass/fail.
    const BOOLEAN: bool = false;

    /// The score, and the feedback if any.
    fn into_feedback(self) -> Result<ScoreWithFeedback>;
}

impl IntoFeedback for ScoreWithFeedback {
    fn into_feedback(self) -> Result<ScoreWithFeedback> {
        Ok(self)
    }
}

impl IntoFeedback for Prediction {
    fn into_feedback(self) -> Result<ScoreWithFeedback> {
        let score = match self.get("score") {
            Some(serde_json::Value::Bool(b)) => f64::from(u8::from(*b)),
            Some(v) => v.as_f64().ok_or_else(|| {
                crate::Error::step(
                    "GEPA metric",
                    format!("the prediction's `score` is not a number: {v}"),
                )
            })?,
            None => {
                return Err(crate::Error::step(
                    "GEPA metric",
                    "the prediction returned by the metric has no `score`",
                ));
            }
        };
        let feedback = match self.get("feedback") {
            None | Some(serde_json::Value::Null) => None,
            Some(serde_json::Value::String(s)) => Some(s.clone()),
            Some(other) => Some(other.to_string()),
        };
        Ok(ScoreWithFeedback { score, feedback })
    }
}

macro_rules! plain_scores {
    ($($t:ty),*) => {$(
        impl IntoFeedback for $t {
            const BOOLEAN: bool = <$t as IntoScore>::BOOLEAN;

            fn into_feedback(self) -> Result<ScoreWithFeedback> {
                Ok(ScoreWithFeedback { score: self.into_score()?, feedback: None })
            }
        }
    )*};
}
plain_scores!(bool, f64, f32);

impl<T: IntoFeedback> IntoFeedback for Result<T> {
    const BOOLEAN: bool = T::BOOLEAN;

    fn into_feedback(self) -> Result<ScoreWithFeedback> {
        self?.into_feedback()
    }
}

/// A GEPA metric from a sync closure over DSPy's five arguments.
///
/// ```
/// use dspex_runtime::optimize::gepa::{FeedbackMetric, ScoreWithFeedback, feedback_metric_fn};
/// use dspex_runtime::{Example, Prediction};
///
/// let metric = feedback_metric_fn("exact", |gold: &Example, pred: &Prediction, _trace, _focus| {
///     let right = gold.get("answer") == pred.get("answer");
///     let feedback = if right { "Correct." } else { "The answer is wrong." };
///     ScoreWithFeedback::new(if right { 1.0 } else { 0.0 }, feedback)
/// });
/// assert_eq!(metric.name(), "exact");
/// ```
pub fn feedback_metric_fn<F, S>(name: impl Into<String>, f: F) -> FeedbackFn<F>
where
    F: for<'a> Fn(
            &'a Example,
            &'a Prediction,
            Option<&'a [TraceEntry]>,
            Option<PredictorFocus<'a>>,
        ) -> S
        + Send
        + Sync,
    S: IntoFeedback,
{
    FeedbackFn {
        name: name.into(),
        f,
    }
}

/// A GEPA metric from a sync closure; see [`feedback_metric_fn`].
#[derive(Clone)]
pub struct FeedbackFn<F> {
    name: String,
    f: F,
}

impl<F> std::fmt::Debug for FeedbackFn<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FeedbackFn")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// The boolean-ness of a closure's return type, read without calling it.
fn boolean_of<F, S>(_: &F) -> bool
where
    F: for<'a> Fn(
        &'a Example,
        &'a Prediction,
        Option<&'a [TraceEntry]>,
        Option<PredictorFocus<'a>>,
    ) -> S,
    S: IntoFeedback,
{
    S::BOOLEAN
}

impl<F, S> FeedbackMetric for FeedbackFn<F>
where
    F: for<'a> Fn(
            &'a Example,
            &'a Prediction,
            Option<&'a [TraceEntry]>,
            Option<PredictorFocus<'a>>,
        ) -> S
        + Send
        + Sync,
    S: IntoFeedback,
{
    fn score_with_feedback<'a>(
        &'a self,
        example: &'a Example,
        prediction: &'a Prediction,
        trace: Option<&'a [TraceEntry]>,
        focus: Option<PredictorFocus<'a>>,
    ) -> BoxFuture<'a, Result<ScoreWithFeedback>> {
        let out = (self.f)(example, prediction, trace, focus).into_feedback();
        Box::pin(std::future::ready(out))
    }

    fn returns_bool(&self) -> bool {
        boolean_of(&self.f)
    }

    fn name(&self) -> &str {
        &self.name
    }
}

/// DSPy's default feedback: `f"This trajectory got a score of {score}."`, the score as Python
/// prints it (`True`/`False` for a pass/fail metric).
pub(crate) fn default_feedback(score: f64, boolean: bool) -> String {
    let shown = if boolean {
        if score != 0.0 { "True" } else { "False" }.to_string()
    } else {
        py_float(score)
    };
    format!("This trajectory got a score of {shown}.")
}
