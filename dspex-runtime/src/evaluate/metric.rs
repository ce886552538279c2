//! [`Metric`]: how well a prediction answers an example.

use crate::error::Result;
use crate::example::{Example, Prediction};
use crate::settings::TraceEntry;
use futures_util::future::BoxFuture;
use std::future::Future;

/// Scores a prediction against the example it answers (DSPy's `metric(example, prediction,
/// trace=None)`). Higher is better; `bool` metrics score 1 or 0.
///
/// [`crate::evaluate::Evaluate`] calls it without a trace; optimizers such as BootstrapFewShot
/// pass the predictor calls of the run, so a metric can be stricter while bootstrapping. An
/// error counts as a failed example, never as a crash.
///
/// Write one with [`metric_fn`] (sync closure returning `bool`, `f64` or a `Result` of either),
/// [`metric_with_trace`] or [`async_metric`] (an LM-judged metric is an async program), or
/// implement the trait.
pub trait Metric: Send + Sync {
    /// The score of `prediction` for `example`.
    fn score<'a>(
        &'a self,
        example: &'a Example,
        prediction: &'a Prediction,
        trace: Option<&'a [TraceEntry]>,
    ) -> BoxFuture<'a, Result<f64>>;

    /// The metric's name: the column of result tables and exports (DSPy uses the function's
    /// name).
    fn name(&self) -> &str {
        "metric"
    }

    /// Whether the metric is pass/fail (DSPy's metrics returning `bool`): its scores are 1 or 0,
    /// result exports write them as `true`/`True` and the "Average Metric" log line sums them as
    /// integers, as DSPy does. Closures returning `bool` say so; the default is `false`.
    fn returns_bool(&self) -> bool {
        false
    }
}

impl<M: Metric + ?Sized> Metric for std::sync::Arc<M> {
    fn score<'a>(
        &'a self,
        example: &'a Example,
        prediction: &'a Prediction,
        trace: Option<&'a [TraceEntry]>,
    ) -> BoxFuture<'a, Result<f64>> {
        (**self).score(example, prediction, trace)
    }

    fn name(&self) -> &str {
        (**self).name()
    }

    fn returns_bool(&self) -> bool {
        (**self).returns_bool()
    }
}

/// What a metric closure may return: a pass/fail, a score, or either in a `Result`.
pub trait IntoScore {
    /// Whether this is a pass/fail (`bool`) score; see [`Metric::returns_bool`].
    const BOOLEAN: bool = false;

    /// The score as a number (`true` is 1, `false` 0).
    fn into_score(self) -> Result<f64>;
}

impl IntoScore for bool {
    const BOOLEAN: bool = true;

    fn into_score(self) -> Result<f64> {
        Ok(if self { 1.0 } else { 0.0 })
    }
}

impl IntoScore for f64 {
    fn into_score(self) -> Result<f64> {
        Ok(self)
    }
}

impl IntoScore for f32 {
    fn into_score(self) -> Result<f64> {
        Ok(f64::from(self))
    }
}

impl<T: IntoScore> IntoScore for Result<T> {
    const BOOLEAN: bool = T::BOOLEAN;

    fn into_score(self) -> Result<f64> {
        self?.into_score()
    }
}

/// A named metric over `(example, prediction)` from a sync closure.
///
/// ```
/// use dspex_runtime::evaluate::{Metric, metric_fn};
/// use dspex_runtime::{Example, Prediction};
///
/// let exact = metric_fn("exact", |ex: &Example, pred: &Prediction| {
///     ex.get_str("answer") == pred.get_str("answer")
/// });
/// let ex = Example::new().with("question", "2 + 2?").with("answer", "4");
/// let pred = Prediction::from_pairs([("answer", "4")]);
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// assert_eq!(exact.score(&ex, &pred, None).await?, 1.0);
/// # Ok::<(), dspex_runtime::Error>(())
/// # }).unwrap();
/// assert_eq!(exact.name(), "exact");
/// ```
pub fn metric_fn<F, S>(name: impl Into<String>, f: F) -> MetricFn<F>
where
    F: Fn(&Example, &Prediction) -> S + Send + Sync,
    S: IntoScore,
{
    MetricFn {
        name: name.into(),
        f,
    }
}

/// A metric from a sync closure; see [`metric_fn`].
#[derive(Clone)]
pub struct MetricFn<F> {
    name: String,
    f: F,
}

impl<F, S> Metric for MetricFn<F>
where
    F: Fn(&Example, &Prediction) -> S + Send + Sync,
    S: IntoScore,
{
    fn score<'a>(
        &'a self,
        example: &'a Example,
        prediction: &'a Prediction,
        _trace: Option<&'a [TraceEntry]>,
    ) -> BoxFuture<'a, Result<f64>> {
        Box::pin(std::future::ready(
            (self.f)(example, prediction).into_score(),
        ))
    }

    fn name(&self) -> &str {
        &self.name
    }

    fn returns_bool(&self) -> bool {
        S::BOOLEAN
    }
}

/// A named metric that also sees the trace of predictor calls when an optimizer passes one.
pub fn metric_with_trace<F, S>(name: impl Into<String>, f: F) -> TraceMetricFn<F>
where
    F: Fn(&Example, &Prediction, Option<&[TraceEntry]>) -> S + Send + Sync,
    S: IntoScore,
{
    TraceMetricFn {
        name: name.into(),
        f,
    }
}

/// A metric from a sync closure that sees the trace; see [`metric_with_trace`].
#[derive(Clone)]
pub struct TraceMetricFn<F> {
    name: String,
    f: F,
}

impl<F, S> Metric for TraceMetricFn<F>
where
    F: Fn(&Example, &Prediction, Option<&[TraceEntry]>) -> S + Send + Sync,
    S: IntoScore,
{
    fn score<'a>(
        &'a self,
        example: &'a Example,
        prediction: &'a Prediction,
        trace: Option<&'a [TraceEntry]>,
    ) -> BoxFuture<'a, Result<f64>> {
        Box::pin(std::future::ready(
            (self.f)(example, prediction, trace).into_score(),
        ))
    }

    fn name(&self) -> &str {
        &self.name
    }

    fn returns_bool(&self) -> bool {
        S::BOOLEAN
    }
}

/// A named metric from an async closure over owned copies of the example and prediction (for
/// metrics that call an LM or another program).
pub fn async_metric<F, Fut, S>(name: impl Into<String>, f: F) -> AsyncMetricFn<F>
where
    F: Fn(Example, Prediction) -> Fut + Send + Sync,
    Fut: Future<Output = S> + Send + 'static,
    S: IntoScore,
{
    AsyncMetricFn {
        name: name.into(),
        f,
    }
}

/// A metric from an async closure; see [`async_metric`].
#[derive(Clone)]
pub struct AsyncMetricFn<F> {
    name: String,
    f: F,
}

impl<F, Fut, S> Metric for AsyncMetricFn<F>
where
    F: Fn(Example, Prediction) -> Fut + Send + Sync,
    Fut: Future<Output = S> + Send + 'static,
    S: IntoScore,
{
    fn score<'a>(
        &'a self,
        example: &'a Example,
        prediction: &'a Prediction,
        _trace: Option<&'a [TraceEntry]>,
    ) -> BoxFuture<'a, Result<f64>> {
        let fut = (self.f)(example.clone(), prediction.clone());
        Box::pin(async move { fut.await.into_score() })
    }

    fn name(&self) -> &str {
        &self.name
    }

    fn returns_bool(&self) -> bool {
        S::BOOLEAN
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Error;

    fn block<F: Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(f)
    }

    #[test]
    fn closures_of_every_shape_score() {
        let ex = Example::new().with("answer", "4");
        let right = Prediction::from_pairs([("answer", "4")]);
        let wrong = Prediction::from_pairs([("answer", "5")]);
        let exact = metric_fn("exact", |e: &Example, p: &Prediction| {
            e.get_str("answer") == p.get_str("answer")
        });
        let half = metric_fn("half", |_: &Example, _: &Prediction| 0.5);
        let failing = metric_fn("failing", |_: &Example, _: &Prediction| -> Result<bool> {
            Err(Error::step("judging", "no judge"))
        });
        let traced = metric_with_trace(
            "traced",
            |_: &Example, _: &Prediction, t: Option<&[TraceEntry]>| t.is_some(),
        );
        let judged = async_metric("judged", |e: Example, p: Prediction| async move {
            e.get_str("answer") == p.get_str("answer")
        });
        block(async {
            assert_eq!(exact.score(&ex, &right, None).await.unwrap(), 1.0);
            assert_eq!(exact.score(&ex, &wrong, None).await.unwrap(), 0.0);
            assert_eq!(half.score(&ex, &wrong, None).await.unwrap(), 0.5);
            assert!(failing.score(&ex, &right, None).await.is_err());
            assert_eq!(traced.score(&ex, &right, None).await.unwrap(), 0.0);
            assert_eq!(traced.score(&ex, &right, Some(&[])).await.unwrap(), 1.0);
            assert_eq!(judged.score(&ex, &right, None).await.unwrap(), 1.0);
            // Pass/fail metrics say so; exports write their scores as booleans.
            assert!(exact.returns_bool() && failing.returns_bool() && judged.returns_bool());
            assert!(!half.returns_bool());
            let shared: std::sync::Arc<dyn Metric> = std::sync::Arc::new(exact);
            assert_eq!(shared.name(), "exact");
            assert_eq!(shared.score(&ex, &right, None).await.unwrap(), 1.0);
        });
    }
}
