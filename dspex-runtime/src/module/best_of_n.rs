//! [`BestOfN`]: run a program up to N times at temperature 1.0 and keep the best-rewarded output;
//! the attempt loop, reward and failure accounting it shares with [`super::Refine`].

use crate::callback::{Callbacks, EventError, EventKind, observe, to_json};
use crate::error::{Error, Result};
use crate::program::{Module, Program};
use crate::settings::CallConfig;
use crate::settings::{InputHints, Settings, Trace, TraceEntry, with_settings};
use serde::Serialize;
use std::fmt;
use std::future::Future;
use std::sync::Arc;

/// Scores a program's output for its input; higher is better. Used by [`BestOfN`] and
/// [`super::Refine`] (DSPy's `reward_fn(args, pred)`).
///
/// Plain closures `Fn(&Input, &Output) -> f64` are accepted by `BestOfN::new` and `Refine::new`;
/// implement this trait for rewards that call an LM or can fail (an error counts as a failed
/// attempt, as an exception in DSPy's reward function does):
///
/// ```
/// use dspex_runtime::module::Reward;
/// use dspex_runtime::Result;
///
/// struct Length;
/// impl Reward<String, String> for Length {
///     async fn reward(&self, _question: &String, answer: &String) -> Result<f64> {
///         Ok(1.0 / (1.0 + answer.len() as f64))
///     }
/// }
/// ```
pub trait Reward<I, O>: Send + Sync {
    /// The reward of `output` for `input`.
    fn reward(&self, input: &I, output: &O) -> impl Future<Output = Result<f64>> + Send;
}

/// A [`Reward`] from a plain function or closure (what `BestOfN::new` and `Refine::new` wrap).
#[derive(Clone, Copy)]
pub struct FnReward<F>(pub F);

impl<F> fmt::Debug for FnReward<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("FnReward")
    }
}

impl<I, O, F> Reward<I, O> for FnReward<F>
where
    F: Fn(&I, &O) -> f64 + Send + Sync,
{
    fn reward(&self, input: &I, output: &O) -> impl Future<Output = Result<f64>> + Send {
        std::future::ready(Ok((self.0)(input, output)))
    }
}

/// One failed attempt of [`BestOfN`] or [`super::Refine`].
#[derive(Debug)]
pub struct AttemptFailure {
    /// Which attempt (1-based).
    pub attempt: usize,
    /// The rollout id it ran with.
    pub rollout_id: u64,
    /// What went wrong: the program's error, the reward's, or (in Refine) the feedback call's.
    pub error: Error,
}

/// Why [`BestOfN`] or [`super::Refine`] returned no output. Reach it from the program's
/// [`Error`] with [`AttemptsError::find`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AttemptsError {
    /// An attempt failed when the failure budget was spent (where DSPy re-raises that
    /// attempt's exception). The last failure is the one that ended the run.
    #[error(
        "attempt {} failed with rollout id {} and fail_count ({fail_count}) allows no more failures: {}",
        last(failures).map_or(0, |f| f.attempt),
        last(failures).map_or(0, |f| f.rollout_id),
        last(failures).map_or(String::new(), |f| f.error.to_string())
    )]
    TooManyFailures {
        /// The configured `fail_count`.
        fail_count: usize,
        /// Every failed attempt, in order.
        failures: Vec<AttemptFailure>,
    },
    /// Every attempt failed, or none scored above negative infinity (where DSPy returns `None`).
    #[error("{}", no_prediction_message(failures))]
    NoPrediction {
        /// Every failed attempt, in order.
        failures: Vec<AttemptFailure>,
    },
}

fn last(failures: &[AttemptFailure]) -> Option<&AttemptFailure> {
    failures.last()
}

fn no_prediction_message(failures: &[AttemptFailure]) -> String {
    match failures.last() {
        None => "no attempt produced an output with a reward above -inf".to_string(),
        Some(f) => format!(
            "no attempt succeeded: {} failed, the last (attempt {}, rollout id {}) with: {}",
            failures.len(),
            f.attempt,
            f.rollout_id,
            f.error
        ),
    }
}

impl AttemptsError {
    /// The failed attempts, in order.
    pub fn failures(&self) -> &[AttemptFailure] {
        match self {
            AttemptsError::TooManyFailures { failures, .. }
            | AttemptsError::NoPrediction { failures } => failures,
        }
    }

    /// The `AttemptsError` inside a program error (or anywhere in its chain of sources).
    pub fn find<'a>(error: &'a (dyn std::error::Error + 'static)) -> Option<&'a AttemptsError> {
        let mut current = Some(error);
        while let Some(e) = current {
            if let Some(found) = e.downcast_ref::<AttemptsError>() {
                return Some(found);
            }
            current = e.source();
        }
        None
    }
}

/// The attempt loop of one `BestOfN` or `Refine` call: rollout ids, DSPy's failure accounting,
/// and the best attempt so far.
///
/// Rollout ids start at the `rollout_id` of the call defaults in scope (DSPy reads the LM's
/// `rollout_id`), else 0. DSPy checks `idx > fail_count` when attempt `idx` (0-based) fails,
/// then decrements `fail_count`; with the default `fail_count = N` a run where everything fails
/// therefore stops after `N / 2 + 1` attempts (all of them for N ≤ 4). DSPy keeps the
/// decremented count on the module, so each later call tolerates fewer failures and concurrent
/// calls race on it; here every call starts from the configured `fail_count`.
pub(super) struct Attempts<O> {
    module: &'static str,
    outer: Settings,
    start: u64,
    fail_count: usize,
    remaining: i64,
    failures: Vec<AttemptFailure>,
    best: Option<Attempt<O>>,
}

impl<O> Attempts<O> {
    /// A new loop under the settings in scope.
    pub(super) fn new(module: &'static str, fail_count: usize) -> Self {
        let outer = Settings::current();
        let start = outer
            .call_defaults
            .as_ref()
            .and_then(|c| c.rollout_id)
            .unwrap_or(0);
        Attempts {
            module,
            outer,
            start,
            fail_count,
            remaining: i64::try_from(fail_count).unwrap_or(i64::MAX),
            failures: Vec::new(),
            best: None,
        }
    }

    /// The rollout id of attempt `idx` (0-based).
    pub(super) fn rollout_id(&self, idx: usize) -> u64 {
        self.start + idx as u64
    }

    /// Keeps a successful attempt if its reward is strictly greater than the best so far (ties
    /// keep the earlier attempt; a reward of negative infinity or NaN is never kept).
    pub(super) fn succeeded(&mut self, attempt: Attempt<O>) {
        let best = self.best.as_ref().map_or(f64::NEG_INFINITY, |b| b.reward);
        if attempt.reward > best {
            self.best = Some(attempt);
        }
    }

    /// Records a failed attempt (logged in DSPy's wording); an error when the budget is spent.
    pub(super) fn failed(&mut self, idx: usize, error: Error) -> Result<()> {
        let rollout_id = self.rollout_id(idx);
        if self.module == "Refine" {
            tracing::warn!("Refine: Attempt failed with rollout id {rollout_id}: {error}");
        } else {
            tracing::warn!(
                "{}: Attempt {} failed with rollout id {rollout_id}: {error}",
                self.module,
                idx + 1
            );
        }
        self.failures.push(AttemptFailure {
            attempt: idx + 1,
            rollout_id,
            error,
        });
        if i64::try_from(idx).unwrap_or(i64::MAX) > self.remaining {
            let failures = std::mem::take(&mut self.failures);
            return Err(Error::step(
                self.module,
                AttemptsError::TooManyFailures {
                    fail_count: self.fail_count,
                    failures,
                },
            ));
        }
        self.remaining -= 1;
        Ok(())
    }

    /// The best attempt's output, its predictor calls appended to the trace in scope; the
    /// error when no attempt produced an output.
    pub(super) fn finish(self) -> Result<O> {
        let Some(best) = self.best else {
            return Err(Error::step(
                self.module,
                AttemptsError::NoPrediction {
                    failures: self.failures,
                },
            ));
        };
        if let Some(trace) = &self.outer.trace {
            trace.extend(best.trace);
        }
        Ok(best.output)
    }
}

/// What one successful attempt produced.
pub(super) struct Attempt<O> {
    pub(super) output: O,
    pub(super) trace: Vec<TraceEntry>,
    pub(super) reward: f64,
}

/// Runs one attempt: the program at temperature 1.0 with `rollout_id` (beneath each predictor's
/// own config, like DSPy's `lm.copy(rollout_id=…, temperature=1.0)`), recording its predictor
/// calls in a fresh trace, then the reward (whose own calls are recorded nowhere, as in DSPy).
pub(super) async fn run_attempt<P, R>(
    program: &P,
    reward: &R,
    input: &P::Input,
    rollout_id: u64,
    hints: Option<Arc<InputHints>>,
) -> Result<Attempt<P::Output>>
where
    P: Program,
    P::Input: Clone + Sync,
    P::Output: Sync,
    R: Reward<P::Input, P::Output>,
{
    let trace = Trace::new();
    let mut scope = Settings::new()
        .call_defaults(CallConfig {
            temperature: Some(1.0),
            rollout_id: Some(rollout_id),
            ..CallConfig::default()
        })
        .trace(trace.clone());
    scope.hints = hints;
    let output = with_settings(scope, program.forward(input.clone())).await?;
    let calls = trace.take();
    let reward = with_settings(Settings::new().trace(trace), reward.reward(input, &output)).await?;
    Ok(Attempt {
        output,
        trace: calls,
        reward,
    })
}

/// DSPy's `dspy.BestOfN`: runs a program up to `n` times, each attempt at temperature 1.0 with its
/// own rollout id, and returns the output with the highest reward — or the first whose reward
/// reaches `threshold`.
///
/// - Rollout ids are `start, start + 1, …` where `start` is the `rollout_id` of the
///   [call defaults](crate::settings::Settings::call_defaults) in scope (0 if none). Temperature
///   and rollout id apply to every predictor call in the attempt, beneath each predictor's own
///   config: a predictor constructed with its own temperature keeps it, as in DSPy.
/// - A reward must be strictly greater than the best so far to replace it (ties keep the
///   earlier attempt).
/// - A failed attempt (program or reward error) is logged with `tracing::warn!` as DSPy prints
///   it and the loop goes on, until DSPy's failure budget is spent (see
///   [`BestOfN::fail_count`]); the error then is an [`AttemptsError`] holding every attempt's
///   error. When no attempt produced an output, the error is [`AttemptsError::NoPrediction`]
///   (DSPy returns `None`).
/// - With a [trace](crate::settings::Trace) in scope, the chosen attempt's predictor calls are
///   appended to it.
///
/// Optimizers see the program's predictors under `module` (`module.predict` for a
/// ChainOfThought), as DSPy names them.
///
/// ```
/// use dspex_runtime::lm::ScriptedLM;
/// use dspex_runtime::module::{BestOfN, CallConfig, Predict};
/// use dspex_runtime::Program;
/// use serde_json::json;
/// # use dspex_runtime::{DynSignature, Signature};
/// # use serde::{Deserialize, Serialize};
/// # #[derive(Debug, Clone, Serialize, Deserialize)]
/// # pub struct QAInput { pub question: String }
/// # #[derive(Debug, Clone, Serialize, Deserialize)]
/// # pub struct QAOutput { pub answer: String }
/// # pub struct QA;
/// # impl Signature for QA {
/// #     type Input = QAInput;
/// #     type Output = QAOutput;
/// #     fn signature() -> &'static DynSignature {
/// #         static SIG: std::sync::OnceLock<DynSignature> = std::sync::OnceLock::new();
/// #         SIG.get_or_init(|| DynSignature::parse("question -> answer").expect("valid"))
/// #     }
/// # }
///
/// // With the `dspex` facade, `#[signature("question -> answer")] struct QA;` declares QA.
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let lm = ScriptedLM::from_fields([
///     json!({"answer": "It is Brussels."}),
///     json!({"answer": "Brussels"}),
/// ]);
/// let qa = Predict::<QA>::new().with_config(CallConfig::new().lm(lm.clone()));
/// let one_word = |_: &QAInput, out: &QAOutput| {
///     if out.answer.split_whitespace().count() == 1 { 1.0 } else { 0.0 }
/// };
/// let best_of_3 = BestOfN::new(qa, 3, one_word, 1.0);
/// let question = QAInput { question: "What is the capital of Belgium?".into() };
/// assert_eq!(best_of_3.forward(question).await?.answer, "Brussels");
/// // Two attempts (the second reached the threshold), rollout ids 0 and 1, at temperature 1.0.
/// let sampling: Vec<_> = lm.requests().iter().map(|r| (r.temperature, r.rollout_id)).collect();
/// assert_eq!(sampling, [(Some(1.0), Some(0)), (Some(1.0), Some(1))]);
/// # Ok::<(), dspex_runtime::Error>(())
/// # }).unwrap();
/// ```
#[derive(Clone)]
pub struct BestOfN<P, R> {
    module: P,
    n: usize,
    reward: R,
    threshold: f64,
    fail_count: usize,
    callbacks: Callbacks,
}

impl<P: fmt::Debug, R> fmt::Debug for BestOfN<P, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BestOfN")
            .field("module", &self.module)
            .field("n", &self.n)
            .field("threshold", &self.threshold)
            .field("fail_count", &self.fail_count)
            .field("callbacks", &self.callbacks)
            .finish_non_exhaustive()
    }
}

impl<P: Program, F> BestOfN<P, FnReward<F>>
where
    F: Fn(&P::Input, &P::Output) -> f64 + Send + Sync,
{
    /// Runs `module` up to `n` times, scoring each output with `reward_fn`, stopping at the first
    /// reward `>= threshold`.
    pub fn new(module: P, n: usize, reward_fn: F, threshold: f64) -> Self {
        Self::with_reward(module, n, FnReward(reward_fn), threshold)
    }
}

impl<P, R> BestOfN<P, R> {
    /// As [`BestOfN::new`], with any [`Reward`] (one that calls an LM, or can fail).
    pub fn with_reward(module: P, n: usize, reward: R, threshold: f64) -> Self {
        BestOfN {
            module,
            n,
            reward,
            threshold,
            fail_count: n,
            callbacks: Callbacks::new(),
        }
    }

    /// The same module with callbacks of its own: they receive its module events (named
    /// `BestOfN`), after the callbacks in the settings. The program inside fires its own events
    /// to the callbacks in the settings, as in DSPy (see [`crate::callback`]).
    #[must_use]
    pub fn with_callbacks(mut self, callbacks: impl Into<Callbacks>) -> Self {
        self.callbacks = callbacks.into();
        self
    }

    /// Sets DSPy's failure budget (default `n`; as in DSPy, 0 also means `n`). When attempt `i`
    /// (0-based) fails after `k` earlier failures, the run ends with
    /// [`AttemptsError::TooManyFailures`] if `i > fail_count - k`. The budget starts afresh on
    /// every call (DSPy's decrements persist across calls on the same module).
    #[must_use]
    pub fn fail_count(mut self, fail_count: usize) -> Self {
        self.fail_count = if fail_count == 0 { self.n } else { fail_count };
        self
    }

    /// The wrapped program.
    pub fn module(&self) -> &P {
        &self.module
    }

    /// The wrapped program, to change its parameters.
    pub fn module_mut(&mut self) -> &mut P {
        &mut self.module
    }
}

impl<P, R> Program for BestOfN<P, R>
where
    P: Program,
    P::Input: Clone + Sync + Serialize,
    P::Output: Sync + Serialize,
    R: Reward<P::Input, P::Output>,
{
    type Input = P::Input;
    type Output = P::Output;

    async fn forward(&self, input: P::Input) -> Result<P::Output> {
        observe(
            EventKind::Module,
            || "BestOfN".to_string(),
            Some(&self.callbacks),
            || to_json(&input),
            // Boxed: the attempts nest whole program calls, too deep for one stack frame in
            // debug builds.
            Box::pin(async {
                let mut attempts = Attempts::new("BestOfN", self.fail_count);
                for idx in 0..self.n {
                    let rollout_id = attempts.rollout_id(idx);
                    match run_attempt(&self.module, &self.reward, &input, rollout_id, None).await {
                        Ok(attempt) => {
                            let done = attempt.reward >= self.threshold;
                            attempts.succeeded(attempt);
                            if done {
                                break;
                            }
                        }
                        Err(error) => attempts.failed(idx, error)?,
                    }
                }
                attempts.finish()
            }),
            to_json,
            EventError::of,
        )
        .await
    }
}

crate::program::delegate_module!(impl[P: Module, R] BestOfN<P, R> => module as "module");

/// Typed signatures for the tests of this folder (the `#[signature]` macro lives in `dspex`).
#[cfg(test)]
pub(super) mod testing {
    use crate::signature::{DynSignature, FieldSpec, Signature, TypeSpec};
    use serde::{Deserialize, Serialize};
    use std::sync::OnceLock;

    /// `QA`'s inputs.
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    pub(crate) struct QAInput {
        pub(crate) question: String,
    }

    /// `QA`'s outputs.
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    pub(crate) struct QAOutput {
        pub(crate) answer: String,
    }

    /// DSPy's
    /// `class QA(dspy.Signature): """Answer the question."""; question: str = InputField(desc="a question"); answer: str = OutputField()`.
    pub(crate) struct QA;

    impl Signature for QA {
        type Input = QAInput;
        type Output = QAOutput;

        fn signature() -> &'static DynSignature {
            static SIG: OnceLock<DynSignature> = OnceLock::new();
            SIG.get_or_init(|| {
                DynSignature::from_fields(
                    Some("Answer the question."),
                    [
                        FieldSpec::input("question", TypeSpec::Str).with_desc("a question"),
                        FieldSpec::output("answer", TypeSpec::Str),
                    ],
                )
                .expect("a valid signature")
            })
        }
    }

    pub(crate) fn question(q: &str) -> QAInput {
        QAInput {
            question: q.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::testing::{QA, QAInput, QAOutput, question};
    use super::*;
    use crate::lm::ScriptedLM;
    use crate::module::{ChainOfThought, Predict, Reasoned};
    use crate::settings::PredictorId;
    use serde_json::json;

    fn answers(answers: &[&str]) -> ScriptedLM {
        ScriptedLM::from_fields(answers.iter().map(|a| json!({ "answer": a })))
    }

    fn predict(lm: &ScriptedLM) -> Predict<QA> {
        Predict::<QA>::new().with_config(CallConfig::new().lm(lm.clone()))
    }

    /// Rewards the answer's length: "a" 0.1, "bb" 0.2, ...
    fn by_length(_: &QAInput, out: &QAOutput) -> f64 {
        out.answer.len() as f64 / 10.0
    }

    fn sampling(lm: &ScriptedLM) -> Vec<(Option<f64>, Option<u64>)> {
        lm.requests()
            .iter()
            .map(|r| (r.temperature, r.rollout_id))
            .collect()
    }

    #[tokio::test]
    async fn keeps_the_best_attempt_with_rollout_ids_at_temperature_one() {
        let lm = answers(&["a", "ccc", "bb"]);
        let best = BestOfN::new(predict(&lm), 3, by_length, 1.0);
        let out = best.forward(question("Q")).await.unwrap();
        assert_eq!(out.answer, "ccc");
        assert_eq!(
            sampling(&lm),
            [
                (Some(1.0), Some(0)),
                (Some(1.0), Some(1)),
                (Some(1.0), Some(2))
            ]
        );
    }

    #[tokio::test]
    async fn stops_at_the_threshold_and_ties_keep_the_earlier() {
        let lm = answers(&["a", "dddd", "eeeeeeeeee"]);
        let best = BestOfN::new(predict(&lm), 3, by_length, 0.4);
        assert_eq!(best.forward(question("Q")).await.unwrap().answer, "dddd");
        assert_eq!(lm.calls(), 2, "the third attempt never runs");

        let lm = answers(&["xx", "yy", "zz"]);
        let best = BestOfN::new(predict(&lm), 3, by_length, 1.0);
        assert_eq!(best.forward(question("Q")).await.unwrap().answer, "xx");
        assert_eq!(lm.calls(), 3);
    }

    #[tokio::test]
    async fn rollout_ids_start_at_the_one_in_scope_and_predictor_temperature_wins() {
        let lm = answers(&["a", "b"]);
        // DSPy: a predictor's own temperature beats the LM copy's 1.0 (verified with DSPy 3.4.1).
        let qa =
            Predict::<QA>::new().with_config(CallConfig::new().lm(lm.clone()).temperature(0.3));
        let best = BestOfN::new(qa, 2, |_: &QAInput, _: &QAOutput| 0.0, 1.0);
        let scope = Settings::new().call_defaults(CallConfig {
            rollout_id: Some(5),
            ..CallConfig::default()
        });
        with_settings(scope, best.forward(question("Q")))
            .await
            .unwrap();
        assert_eq!(sampling(&lm), [(Some(0.3), Some(5)), (Some(0.3), Some(6))]);
        // A per-call override wins over both.
        let lm = answers(&["a"]);
        let qa = predict(&lm);
        with_settings(
            Settings::new().call_defaults(CallConfig::new().temperature(1.0)),
            qa.forward_with(question("Q"), &CallConfig::new().temperature(0.0)),
        )
        .await
        .unwrap();
        assert_eq!(sampling(&lm), [(Some(0.0), None)]);
    }

    #[tokio::test]
    async fn several_completions_are_not_forced_to_point_seven() {
        // With the LM copy's temperature 1.0, DSPy's n > 1 rule leaves the temperature alone.
        let lm = answers(&["a", "b"]);
        let qa = Predict::<QA>::new().with_config(CallConfig::new().lm(lm.clone()).n(2));
        let best = BestOfN::new(qa, 1, by_length, 1.0);
        best.forward(question("Q")).await.unwrap();
        assert_eq!(sampling(&lm), [(Some(1.0), Some(0))]);
    }

    #[tokio::test]
    async fn every_attempt_failing_is_a_typed_error_with_each_failure() {
        // An LM with nothing to say: every call fails.
        let lm = ScriptedLM::new(Vec::<String>::new());
        let best = BestOfN::new(predict(&lm), 2, by_length, 1.0);
        let err = best.forward(question("Q")).await.unwrap_err();
        let attempts = AttemptsError::find(&err).expect("an AttemptsError");
        assert!(matches!(attempts, AttemptsError::NoPrediction { .. }));
        let failures = attempts.failures();
        assert_eq!(failures.len(), 2);
        assert_eq!((failures[1].attempt, failures[1].rollout_id), (2, 1));
        assert!(
            failures[0].error.to_string().contains("completion(s)"),
            "{}",
            failures[0].error
        );
        assert!(
            err.to_string()
                .starts_with("BestOfN: no attempt succeeded: 2 failed"),
            "{err}"
        );

        // DSPy's budget: with N = 5 everything failing stops after 4 attempts (i > N - i).
        let best = BestOfN::new(predict(&lm), 5, by_length, 1.0);
        let err = best.forward(question("Q")).await.unwrap_err();
        let attempts = AttemptsError::find(&err).unwrap();
        assert!(matches!(
            attempts,
            AttemptsError::TooManyFailures { fail_count: 5, .. }
        ));
        assert_eq!(attempts.failures().len(), 4);
        // The budget starts afresh on every call (DSPy's would have shrunk to 1).
        let err = best.forward(question("Q")).await.unwrap_err();
        assert_eq!(AttemptsError::find(&err).unwrap().failures().len(), 4);

        // fail_count(1): the second failure (attempt index 1 > 1 - 1) ends the run.
        let best = BestOfN::new(predict(&lm), 5, by_length, 1.0).fail_count(1);
        let err = best.forward(question("Q")).await.unwrap_err();
        assert_eq!(AttemptsError::find(&err).unwrap().failures().len(), 2);
    }

    struct FailsFirst(std::sync::atomic::AtomicUsize);

    impl Reward<QAInput, QAOutput> for FailsFirst {
        async fn reward(&self, _: &QAInput, out: &QAOutput) -> Result<f64> {
            if self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 0 {
                Err(Error::step("judging", "the judge is down"))
            } else {
                Ok(out.answer.len() as f64)
            }
        }
    }

    #[tokio::test]
    async fn a_failing_reward_fails_its_attempt_only() {
        let lm = answers(&["aaaa", "b"]);
        let best = BestOfN::with_reward(predict(&lm), 2, FailsFirst(0.into()), 10.0);
        assert_eq!(best.forward(question("Q")).await.unwrap().answer, "b");
    }

    #[tokio::test]
    async fn the_chosen_attempts_calls_join_the_trace_in_scope() {
        let lm = ScriptedLM::from_fields([
            json!({"reasoning": "r0", "answer": "a"}),
            json!({"reasoning": "r1", "answer": "bbb"}),
            json!({"reasoning": "r2", "answer": "cc"}),
        ]);
        let cot = ChainOfThought::<QA>::new().with_config(CallConfig::new().lm(lm.clone()));
        let by_len = |_: &QAInput, out: &Reasoned<QAOutput>| out.output.answer.len() as f64;
        let best = BestOfN::new(cot, 3, by_len, 10.0);
        let trace = Trace::new();
        let out = with_settings(
            Settings::new().trace(trace.clone()),
            best.forward(question("Q")),
        )
        .await
        .unwrap();
        assert_eq!(out.reasoning, "r1");
        let entries = trace.entries();
        assert_eq!(entries.len(), 1);
        assert_eq!(entries[0].outputs.get_str("answer"), Some("bbb"));
        assert_eq!(entries[0].inputs.get_str("question"), Some("Q"));
        let names = best.named_predictors();
        assert_eq!(names[0].0, "module.predict");
        assert_eq!(entries[0].predictor, PredictorId::of(names[0].1));
        assert_eq!(
            BestOfN::new(predict(&lm), 1, by_length, 0.0).named_predictors()[0].0,
            "module"
        );
    }
}
