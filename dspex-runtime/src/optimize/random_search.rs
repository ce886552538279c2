//! [`BootstrapFewShotWithRandomSearch`]: many BootstrapFewShot candidates, each scored on the
//! valset; the best wins.

use super::{
    BootstrapFewShot, DemoConfig, DemoKnobs, JobContext, LabeledFewShot, Optimizable, Optimizer,
    PyRandom, TrialEvent, is_cancellation,
};
use crate::error::{Error, Result};
use crate::evaluate::{Evaluate, Metric};
use crate::example::Example;
use futures_util::StreamExt;
use futures_util::future::BoxFuture;
use serde_json::json;
use std::sync::Arc;
use tokio::sync::Semaphore;

/// DSPy's `BootstrapFewShotWithRandomSearch`: candidates for seeds −3 (no demos), −2 (labeled
/// demos only), −1 (BootstrapFewShot on the trainset as given) and 0…N−1 (BootstrapFewShot on a
/// copy shuffled with `random.Random(seed)`, with a size drawn from another `Random(seed)`),
/// each scored on the valset (the trainset unless given). The first strictly best score wins;
/// `stop_at_score` ends the search at the first candidate that reaches it.
///
/// The demo knobs ([`DemoConfig`], set with the [`DemoKnobs`] builder methods) start from DSPy's
/// defaults, [`DemoConfig::bootstrap_few_shot`]; every BootstrapFewShot candidate is compiled
/// with them (its size drawn for `max_bootstrapped_demos`). Their `concurrency` is the teacher
/// runs of one candidate in flight; evaluations have their own limit,
/// [`num_threads`](Self::num_threads).
///
/// Candidates are built and scored several at a time, but chosen in seed order, so the result
/// is the sequential run's; all their evaluations share one limit on examples in flight.
///
/// Cancelling the [job](super::Job) drops the BootstrapFewShot runs and evaluations in flight, so
/// no new LM call starts after it; the compile returns the best candidate taken so far (in seed
/// order), or [`Error::Cancelled`] if none was.
#[derive(Clone)]
pub struct BootstrapFewShotWithRandomSearch {
    metric: Arc<dyn Metric>,
    /// What every candidate compiles with; its demo knobs are this optimizer's.
    bootstrap: BootstrapFewShot,
    num_candidate_programs: usize,
    stop_at_score: Option<f64>,
    num_threads: usize,
    candidates_at_once: usize,
    restrict: Option<Vec<i64>>,
    labeled_sample: bool,
}

impl std::fmt::Debug for BootstrapFewShotWithRandomSearch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BootstrapFewShotWithRandomSearch")
            .field("metric", &self.metric.name())
            .field("num_candidate_programs", &self.num_candidate_programs)
            .field("demo_config", self.demo_config())
            .field("stop_at_score", &self.stop_at_score)
            .finish_non_exhaustive()
    }
}

impl DemoKnobs for BootstrapFewShotWithRandomSearch {
    fn demo_config(&self) -> &DemoConfig {
        self.bootstrap.demo_config()
    }

    fn demo_config_mut(&mut self) -> &mut DemoConfig {
        self.bootstrap.demo_config_mut()
    }
}

impl BootstrapFewShotWithRandomSearch {
    /// DSPy's defaults: 16 candidate programs (19 with the three fixed ones), the demo knobs of
    /// [`DemoConfig::bootstrap_few_shot`] (4 bootstrapped and 16 labeled demos); 16 examples in
    /// flight, 4 candidates at once.
    pub fn new(metric: impl Metric + 'static) -> Self {
        let metric: Arc<dyn Metric> = Arc::new(metric);
        BootstrapFewShotWithRandomSearch {
            bootstrap: BootstrapFewShot::new().metric_arc(metric.clone()),
            metric,
            num_candidate_programs: 16,
            stop_at_score: None,
            num_threads: 16,
            candidates_at_once: 4,
            restrict: None,
            labeled_sample: true,
        }
    }

    /// Shuffled candidates (the three fixed ones come on top).
    #[must_use]
    pub fn num_candidate_programs(mut self, n: usize) -> Self {
        self.num_candidate_programs = n;
        self
    }

    /// Stop at the first candidate scoring at least this.
    #[must_use]
    pub fn stop_at_score(mut self, score: f64) -> Self {
        self.stop_at_score = Some(score);
        self
    }

    /// Further BootstrapFewShot settings for every candidate: its rounds, teacher settings and
    /// [speculation](BootstrapFewShot::speculative), and its demo knobs but the demo counts
    /// (metric threshold, max errors, concurrency), in place of those set before. The metric
    /// and the demo counts stay this optimizer's.
    #[must_use]
    pub fn bootstrap(mut self, bootstrap: BootstrapFewShot) -> Self {
        let DemoConfig {
            max_bootstrapped_demos,
            max_labeled_demos,
            ..
        } = *self.demo_config();
        self.bootstrap = bootstrap
            .metric_arc(self.metric.clone())
            .max_bootstrapped_demos(max_bootstrapped_demos)
            .max_labeled_demos(max_labeled_demos);
        self
    }

    /// Examples evaluated at once, across all candidates (DSPy's `num_threads`).
    #[must_use]
    pub fn num_threads(mut self, n: usize) -> Self {
        self.num_threads = n.max(1);
        self
    }

    /// Candidates built and scored at once.
    #[must_use]
    pub fn candidates_at_once(mut self, n: usize) -> Self {
        self.candidates_at_once = n.max(1);
        self
    }

    /// Only these seeds (DSPy's `restrict`).
    #[must_use]
    pub fn restrict(mut self, seeds: impl IntoIterator<Item = i64>) -> Self {
        self.restrict = Some(seeds.into_iter().collect());
        self
    }

    /// Whether the labeled candidate samples its demos (DSPy's `labeled_sample`).
    #[must_use]
    pub fn labeled_sample(mut self, sample: bool) -> Self {
        self.labeled_sample = sample;
        self
    }

    /// The candidate for `seed`; [`Error::Cancelled`] once `ctx` is cancelled.
    async fn candidate<P: Optimizable>(
        &self,
        seed: i64,
        student: &P,
        trainset: &[Example],
        ctx: &JobContext,
    ) -> Result<P> {
        Ok(match seed {
            -3 => {
                let mut p = student.clone();
                p.visit_predictors_mut("", &mut |_, params| params.demos.clear());
                p
            }
            -2 => LabeledFewShot::new(self.demo_config().max_labeled_demos)
                .sample(self.labeled_sample)
                .apply(student.clone(), trainset),
            _ => {
                let mut copy = trainset.to_vec();
                let max_bootstrapped = self.demo_config().max_bootstrapped_demos;
                let size = if seed == -1 {
                    max_bootstrapped
                } else {
                    PyRandom::from_i64(seed).shuffle(&mut copy);
                    PyRandom::from_i64(seed)
                        .randint(1, max_bootstrapped as i64)
                        .map_err(|e| Error::step("random search", e))? as usize
                };
                // Its trials are not this job's, its cancellation is: a cancelled run returns
                // at once with a partial program, thrown away here.
                let compiled = self
                    .bootstrap
                    .clone()
                    .max_bootstrapped_demos(size)
                    .compile_in(student.clone(), &copy, &ctx.muted())
                    .await?;
                if ctx.is_cancelled() {
                    return Err(ctx.cancelled_error());
                }
                compiled
            }
        })
    }

    /// Compiles with an explicit valset (DSPy's `valset=`; the trainset otherwise).
    pub async fn compile_with_valset<P: Optimizable>(
        &self,
        student: P,
        trainset: &[Example],
        valset: Option<&[Example]>,
        ctx: &JobContext,
    ) -> Result<P> {
        let valset = valset.unwrap_or(trainset).to_vec();
        let seeds: Vec<i64> = (-3..self.num_candidate_programs as i64)
            .filter(|s| self.restrict.as_ref().is_none_or(|r| r.contains(s)))
            .collect();
        if seeds.is_empty() {
            return Err(Error::step(
                "random search",
                format!(
                    "`restrict` matches no candidate seed in -3..{}; nothing would be evaluated",
                    self.num_candidate_programs
                ),
            ));
        }
        ctx.phase("building and scoring candidates", Some(seeds.len()));
        let limit = Arc::new(Semaphore::new(self.num_threads));
        let evaluate = Evaluate::new(valset, self.metric.clone())
            .num_threads(self.num_threads)
            .shared_limit(limit)
            .cancel_on(ctx.cancel_token())
            // One report per candidate would flood stderr; failures are logged through tracing.
            .report_failures(false);
        let (student, trainset) = (&student, trainset);
        let work: Vec<BoxFuture<'_, Result<(i64, P, f64)>>> = seeds
            .iter()
            .map(|&seed| -> BoxFuture<'_, Result<(i64, P, f64)>> {
                let evaluate = &evaluate;
                Box::pin(async move {
                    if ctx.is_cancelled() {
                        return Err(ctx.cancelled_error());
                    }
                    let program = self.candidate(seed, student, trainset, ctx).await?;
                    let result = evaluate.call(&program).await?;
                    if result.cancelled {
                        return Err(ctx.cancelled_error());
                    }
                    Ok((seed, program, result.score))
                })
            })
            .collect();
        let mut results = futures_util::stream::iter(work).buffered(self.candidates_at_once);
        let mut best: Option<(P, f64)> = None;
        let mut trial = 0usize;
        while let Some(result) = results.next().await {
            let (seed, program, score) = match result {
                Err(e) if is_cancellation(&e) => break,
                result => result?,
            };
            ctx.trial(TrialEvent {
                trial,
                score,
                minibatch: false,
                candidate: json!({"seed": seed})
                    .as_object()
                    .cloned()
                    .unwrap_or_default(),
            });
            trial += 1;
            if best.as_ref().is_none_or(|(_, b)| score > *b) {
                best = Some((program, score));
            }
            if self.stop_at_score.is_some_and(|stop| score >= stop) || ctx.is_cancelled() {
                break;
            }
        }
        match best {
            Some((program, _)) => Ok(program),
            None if ctx.is_cancelled() => Err(ctx.cancelled_error()),
            None => Ok(student.clone()),
        }
    }
}

impl Optimizer for BootstrapFewShotWithRandomSearch {
    async fn compile_in<P: Optimizable>(
        &self,
        student: P,
        trainset: &[Example],
        ctx: &JobContext,
    ) -> Result<P> {
        self.compile_with_valset(student, trainset, None, ctx).await
    }
}
