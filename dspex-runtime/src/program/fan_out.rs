//! Fan-out and fan-in: several programs on clones of one input, at the same time.

use super::{Module, PredictorParams, Program, delegate_module, join_path};
use crate::Result;
use std::future::Future;

/// Runs every program of `branches` (a tuple of 2 to 8 programs that take the same input) on a
/// clone of the input, concurrently, and returns their outputs as a tuple in the same order.
/// `a.join(b)` is the two-branch form; fan back in with [`.map`](super::ProgramExt::map) or
/// [`.then`](super::ProgramExt::then) on the tuple.
///
/// ```
/// use dspex_runtime::program::fan_out;
/// use dspex_runtime::{Program, ProgramExt, program_fn};
///
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let words = program_fn(|s: String| async move { Ok(s.split_whitespace().count()) });
/// let chars = program_fn(|s: String| async move { Ok(s.chars().count()) });
/// let shout = program_fn(|s: String| async move { Ok(s.to_uppercase()) });
/// let report = fan_out((words, chars, shout))
///     .map(|(w, c, s)| format!("{s}: {w} words, {c} chars"));
/// assert_eq!(report.forward("a bc".into()).await?, "A BC: 2 words, 4 chars");
/// # Ok::<(), dspex_runtime::Error>(())
/// # }).unwrap();
/// ```
///
/// See [`FanOut`] for how the branches run, fail and are named.
pub fn fan_out<T: Branches>(branches: T) -> FanOut<T> {
    FanOut { branches }
}

/// Programs that run side by side on one input: tuples of 2 to 8 [`Program`]s whose `Input`
/// types are the same type, which must be `Clone`. Used through [`fan_out`] and
/// [`ProgramExt::join`](super::ProgramExt::join); not implemented outside this crate.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be fanned out over one input",
    label = "not a tuple of 2 to 8 programs that take the same `Clone` input",
    note = "every branch of a fan-out must take the same `Input` type, and that type must be `Clone`; adapt a branch's input with a `program_fn` step, or nest fan-outs for more than 8 branches"
)]
pub trait Branches: sealed::Sealed + Send + Sync {
    /// The input every branch takes (a clone each).
    type Input: Clone + Send + 'static;
    /// The tuple of the branches' outputs.
    type Output: Send + 'static;
    /// The tuple of the branches' results, each kept on its own.
    type Settled: Send + 'static;

    /// Runs all branches; the first error fails the whole run and drops the other branches.
    fn run(&self, input: Self::Input) -> impl Future<Output = Result<Self::Output>> + Send;

    /// Runs all branches to completion, keeping each branch's result.
    fn run_settled(&self, input: Self::Input) -> impl Future<Output = Self::Settled> + Send;
}

mod sealed {
    #[allow(unreachable_pub)]
    pub trait Sealed {}
}

/// Several programs on clones of one input, concurrently: [`fan_out`] or `a.join(b)`.
///
/// - **Concurrency**: the branches are polled together on the calling task
///   ([`tokio::try_join!`]); nothing is spawned. They overlap while they wait (on the LM, on I/O)
///   but do not run CPU work in parallel. The width is fixed by the tuple, so the tuple is the
///   concurrency limit; for a data-dependent number of items use
///   [`Parallel`](crate::module::Parallel), which takes one.
/// - **Settings**: because the branches run on the caller's task, the task-scoped settings of
///   [`with_settings`](crate::settings::with_settings) (LM, adapter) apply inside every branch.
/// - **Errors**: the first branch to fail fails the step with its error; the other branches are
///   cancelled — their futures are dropped at their next `.await`, so an LM request in flight is
///   abandoned and its answer lost. To keep every branch's result instead, use
///   [`FanOut::settled`].
/// - **Names**: optimizers see branch `i`'s predictors under `i` (`0`, `1`, …; `0.predict` for a
///   ChainOfThought in the first branch), the field names of the tuple, as [`Then`](super::Then)
///   names its steps. `a.join(b).join(c)` nests (`0.0`, `0.1`, `1`); `fan_out((a, b, c))` is
///   flat (`0`, `1`, `2`).
#[derive(Debug, Clone)]
pub struct FanOut<T> {
    branches: T,
}

impl<T> FanOut<T> {
    /// The tuple of branches.
    pub fn branches(&self) -> &T {
        &self.branches
    }

    /// The tuple of branches, mutable.
    pub fn branches_mut(&mut self) -> &mut T {
        &mut self.branches
    }

    /// The same fan-out, but every branch runs to completion and the output is the tuple of
    /// their results (`(Result<A>, Result<B>, …)`): one branch's failure neither cancels the
    /// others nor fails the step.
    pub fn settled(self) -> FanOutSettled<T> {
        FanOutSettled { inner: self }
    }
}

impl<T: Branches> Program for FanOut<T> {
    type Input = T::Input;
    type Output = T::Output;

    fn forward(&self, input: Self::Input) -> impl Future<Output = Result<Self::Output>> + Send {
        self.branches.run(input)
    }
}

/// A fan-out that keeps every branch's result: [`FanOut::settled`]. Its own run never fails;
/// it names its predictors as [`FanOut`] does.
#[derive(Debug, Clone)]
pub struct FanOutSettled<T> {
    inner: FanOut<T>,
}

impl<T> FanOutSettled<T> {
    /// The tuple of branches.
    pub fn branches(&self) -> &T {
        &self.inner.branches
    }
}

impl<T: Branches> Program for FanOutSettled<T> {
    type Input = T::Input;
    type Output = T::Settled;

    async fn forward(&self, input: Self::Input) -> Result<Self::Output> {
        Ok(self.inner.branches.run_settled(input).await)
    }
}

delegate_module!(impl[T] FanOutSettled<T> where [FanOut<T>: Module] => inner);

/// `Branches` and `Module` for one tuple arity: `impl_branches!(A 0, B 1, …)`.
macro_rules! impl_branches {
    ($First:ident $first:tt $(, $T:ident $i:tt)+) => {
        impl<$First, $($T),+> sealed::Sealed for ($First, $($T),+) {}

        impl<$First, $($T),+> Branches for ($First, $($T),+)
        where
            $First: Program,
            <$First as Program>::Input: Clone,
            $($T: Program<Input = <$First as Program>::Input>),+
        {
            type Input = <$First as Program>::Input;
            type Output = (<$First as Program>::Output, $(<$T as Program>::Output),+);
            type Settled = (
                Result<<$First as Program>::Output>,
                $(Result<<$T as Program>::Output>),+
            );

            async fn run(&self, input: Self::Input) -> Result<Self::Output> {
                tokio::try_join!(
                    self.$first.forward(input.clone()),
                    $(self.$i.forward(input.clone())),+
                )
            }

            async fn run_settled(&self, input: Self::Input) -> Self::Settled {
                tokio::join!(
                    self.$first.forward(input.clone()),
                    $(self.$i.forward(input.clone())),+
                )
            }
        }

        impl<$First: Module, $($T: Module),+> Module for FanOut<($First, $($T),+)> {
            fn visit_predictors<'a>(
                &'a self,
                path: &str,
                visit: &mut dyn FnMut(String, &'a PredictorParams),
            ) {
                self.branches.$first.visit_predictors(&join_path(path, stringify!($first)), visit);
                $(self.branches.$i.visit_predictors(&join_path(path, stringify!($i)), visit);)+
            }

            fn visit_predictors_mut<'a>(
                &'a mut self,
                path: &str,
                visit: &mut dyn FnMut(String, &'a mut PredictorParams),
            ) {
                self.branches
                    .$first
                    .visit_predictors_mut(&join_path(path, stringify!($first)), visit);
                $(self.branches.$i.visit_predictors_mut(&join_path(path, stringify!($i)), visit);)+
            }

            fn visit_other_state(
                &self,
                path: &str,
                visit: &mut dyn FnMut(String, serde_json::Value),
            ) {
                self.branches.$first.visit_other_state(&join_path(path, stringify!($first)), visit);
                $(self.branches.$i.visit_other_state(&join_path(path, stringify!($i)), visit);)+
            }

            fn load_other_state(
                &mut self,
                path: &str,
                state: &serde_json::Map<String, serde_json::Value>,
                apply: bool,
            ) -> Result<(), crate::program::StateError> {
                self.branches
                    .$first
                    .load_other_state(&join_path(path, stringify!($first)), state, apply)?;
                $(self.branches.$i.load_other_state(&join_path(path, stringify!($i)), state, apply)?;)+
                Ok(())
            }
        }

    };
}

impl_branches!(A 0, B 1);
impl_branches!(A 0, B 1, C 2);
impl_branches!(A 0, B 1, C 2, D 3);
impl_branches!(A 0, B 1, C 2, D 3, E 4);
impl_branches!(A 0, B 1, C 2, D 3, E 4, F 5);
impl_branches!(A 0, B 1, C 2, D 3, E 4, F 5, G 6);
impl_branches!(A 0, B 1, C 2, D 3, E 4, F 5, G 6, H 7);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Error;
    use crate::program::{ProgramExt, branch, program_fn};
    use crate::settings::{Settings, with_settings};
    use crate::signature::DynSignature;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::Duration;
    use tokio::sync::Barrier;
    use tokio::time::timeout;

    const PATIENCE: Duration = Duration::from_secs(5);

    /// A program that waits at `barrier`, then returns `tag`: two of them finish only if they
    /// run at the same time.
    fn meets(
        barrier: &Arc<Barrier>,
        tag: &'static str,
    ) -> impl Program<Input = u32, Output = String> {
        let barrier = Arc::clone(barrier);
        program_fn(move |n: u32| {
            let barrier = Arc::clone(&barrier);
            async move {
                barrier.wait().await;
                Ok(format!("{tag}{n}"))
            }
        })
    }

    #[tokio::test(flavor = "current_thread")]
    async fn branches_run_concurrently_on_one_task() {
        // On a single-threaded runtime with no spawning, the barrier opens only if both
        // branches are polled together; run one after the other, they would wait forever.
        let barrier = Arc::new(Barrier::new(2));
        let both = meets(&barrier, "a").join(meets(&barrier, "b"));
        let out = timeout(PATIENCE, both.forward(1)).await;
        assert_eq!(
            out.expect("branches ran one after the other").unwrap(),
            ("a1".to_string(), "b1".to_string())
        );

        let barrier = Arc::new(Barrier::new(3));
        let three = fan_out((
            meets(&barrier, "a"),
            meets(&barrier, "b"),
            meets(&barrier, "c"),
        ))
        .map(|(a, b, c)| [a, b, c].join(","));
        let out = timeout(PATIENCE, three.forward(2)).await;
        assert_eq!(
            out.expect("branches ran one after the other").unwrap(),
            "a2,b2,c2"
        );
    }

    /// Sets its flag when dropped.
    struct DropFlag(Arc<AtomicBool>);

    impl Drop for DropFlag {
        fn drop(&mut self) {
            self.0.store(true, Ordering::SeqCst);
        }
    }

    #[tokio::test(flavor = "current_thread")]
    async fn the_first_error_fails_the_step_and_cancels_the_others() {
        let dropped = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&dropped);
        let never = program_fn(move |_: u32| {
            let guard = DropFlag(Arc::clone(&flag));
            async move {
                let _guard = guard;
                std::future::pending::<()>().await;
                Ok(0u32)
            }
        });
        let fails = program_fn(|n: u32| async move {
            tokio::task::yield_now().await;
            Err::<u32, _>(Error::step("branch b", format!("no {n}")))
        });
        let both = never.join(fails);
        let err = timeout(PATIENCE, both.forward(3))
            .await
            .expect("the error did not end the step")
            .unwrap_err();
        assert_eq!(err.to_string(), "branch b: no 3");
        assert!(
            dropped.load(Ordering::SeqCst),
            "the pending branch was cancelled"
        );
    }

    #[tokio::test(flavor = "current_thread")]
    async fn settled_keeps_every_result() {
        let barrier = Arc::new(Barrier::new(2));
        let waits = meets(&barrier, "ok");
        let b2 = Arc::clone(&barrier);
        let fails_late = program_fn(move |_: u32| {
            let barrier = Arc::clone(&b2);
            async move {
                barrier.wait().await;
                Err::<(), _>(Error::step("late", "failed"))
            }
        });
        let settled = waits.join(fails_late).settled();
        let (ok, err) = timeout(PATIENCE, settled.forward(5))
            .await
            .expect("settled branches ran one after the other")
            .unwrap();
        assert_eq!(ok.unwrap(), "ok5");
        assert_eq!(err.unwrap_err().to_string(), "late: failed");
    }

    fn model() -> Option<String> {
        Settings::current().lm.map(|lm| lm.model().to_string())
    }

    #[tokio::test]
    async fn branches_see_the_callers_settings() {
        let lm = crate::lm::LM::builder("openai/fan-out-test")
            .api_base("http://127.0.0.1:9/v1")
            .cache(false)
            .build()
            .unwrap();
        let read = || {
            program_fn(|_: ()| async {
                tokio::task::yield_now().await;
                Ok(model())
            })
        };
        let all = fan_out((read(), read(), read())).settled();
        let (a, b, c) = with_settings(Settings::new().lm(lm), all.forward(()))
            .await
            .unwrap();
        for seen in [a, b, c] {
            assert_eq!(seen.unwrap().as_deref(), Some("openai/fan-out-test"));
        }
    }

    /// A pass-through program holding one predictor, to name.
    #[derive(Clone)]
    struct Step {
        params: PredictorParams,
    }

    impl Program for Step {
        type Input = u32;
        type Output = u32;

        async fn forward(&self, input: u32) -> Result<u32> {
            Ok(input)
        }
    }

    crate::program::delegate_module!(impl[] Step => params);

    fn step(sig: &str) -> Step {
        Step {
            params: PredictorParams::new(DynSignature::parse(sig).unwrap()),
        }
    }

    #[test]
    fn nested_compositions_name_their_predictors() {
        let pipeline = step("q -> a")
            .then(fan_out((
                step("a -> b"),
                step("a -> c").then(step("c -> d")),
                branch(|n: &u32| *n > 1, step("a -> e"), step("a -> f")),
            )))
            .map(|(b, d, e)| b + d + e)
            .then(step("x -> y").join(step("x -> z")).settled().map(|_| 0));
        let mut pipeline = pipeline;
        let names: Vec<String> = pipeline
            .named_predictors()
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        assert_eq!(
            names,
            [
                "0.0",
                "0.1.0",
                "0.1.1.0",
                "0.1.1.1",
                "0.1.2.if_true",
                "0.1.2.if_false",
                "1.0",
                "1.1",
            ]
        );
        pipeline
            .predictor_mut("0.1.2.if_false")
            .unwrap()
            .set_instructions("Changed.");
        let changed = pipeline.predictor("0.1.2.if_false").unwrap();
        assert_eq!(changed.instructions(), "Changed.");
        assert_eq!(changed.signature.output_names().collect::<Vec<_>>(), ["f"]);
    }
}
