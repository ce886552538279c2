//! [`Ensemble`] (DSPy's `dspy.teleprompt.Ensemble`): several programs of one shape run on the
//! same input, their outputs reduced to one (DSPy's `reduce_fn`, commonly `dspy.majority`).

use crate::error::{Error, Result};
use crate::program::{Module, PredictorParams, Program, StateError, join_path};
use crate::pycompat::PyRandom;
use futures_util::future::try_join_all;
use serde::Serialize;
use std::hash::{BuildHasher, Hasher};

/// What building an [`Ensemble`] can fail with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EnsembleError {
    /// `compile` got no programs.
    #[error("Ensemble needs at least one program")]
    NoPrograms,
    /// `size` was 0, or more than the programs given (DSPy's `random.sample` raises
    /// "Sample larger than population" on the first call; here `compile` refuses it).
    #[error("Ensemble size {size} must be between 1 and the number of programs ({programs})")]
    BadSize {
        /// The size asked for.
        size: usize,
        /// How many programs were given.
        programs: usize,
    },
}

impl From<EnsembleError> for Error {
    fn from(e: EnsembleError) -> Self {
        Error::step("Ensemble", e)
    }
}

/// No reduction: the ensemble returns every output, in the order the programs ran (DSPy's
/// `reduce_fn=None`).
#[derive(Debug, Clone, Copy, Default)]
pub struct AllOutputs;

/// How an ensemble turns its programs' outputs into one: [`AllOutputs`] (no reduction) or any
/// `Fn(Vec<O>) -> Result<R>`, such as a vote over the predictions with
/// [`majority`](crate::module::majority).
pub trait Reduce<O>: Send + Sync {
    /// What the ensemble returns.
    type Output: Send + 'static;
    /// Reduces the outputs (in the order of the programs that made them).
    fn reduce(&self, outputs: Vec<O>) -> Result<Self::Output>;
}

impl<O: Send + 'static> Reduce<O> for AllOutputs {
    type Output = Vec<O>;
    fn reduce(&self, outputs: Vec<O>) -> Result<Vec<O>> {
        Ok(outputs)
    }
}

impl<O, R, F> Reduce<O> for F
where
    F: Fn(Vec<O>) -> Result<R> + Send + Sync,
    R: Send + 'static,
{
    type Output = R;
    fn reduce(&self, outputs: Vec<O>) -> Result<R> {
        self(outputs)
    }
}

/// DSPy's `Ensemble` teleprompter: `compile(programs)` makes one program that runs them all (or
/// `size` of them, sampled at random on each call) on its input and reduces their outputs with
/// the `reduce_fn`.
///
/// - The programs run concurrently; their outputs reach the reduce function in the order of
///   the (sampled) programs, as DSPy's list comprehension makes them. The first error fails the
///   call, as in DSPy.
/// - `deterministic(true)` samples by the input instead of at random: the same input always
///   runs the same programs (a seeded `random.Random` keyed by a hash of the input's JSON).
///   DSPy 3.4.1 has the knob but refuses `True` ("TODO: Implement example hashing").
/// - The ensembled program's predictors are named `programs[0].…`, `programs[1].…`, as DSPy
///   names the attribute, so optimizers and save/load reach every member.
///
/// ```
/// use dspex_runtime::optimize::Ensemble;
/// use dspex_runtime::{Program, program_fn};
///
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let programs: Vec<_> = (1..=3)
///     .map(|k| program_fn(move |x: i64| async move { Ok(x * k) }))
///     .collect();
/// let sum = Ensemble::new()
///     .reduce_fn(|outs: Vec<i64>| Ok(outs.into_iter().sum::<i64>()))
///     .compile(programs.clone())?;
/// assert_eq!(sum.forward(10).await?, 60);
/// let two = Ensemble::new().size(2).deterministic(true).compile(programs)?;
/// let outs = two.forward(10).await?;
/// assert_eq!(outs.len(), 2);
/// assert_eq!(two.forward(10).await?, outs); // the same input samples the same programs
/// # Ok::<(), dspex_runtime::Error>(())
/// # }).unwrap();
/// ```
#[derive(Debug, Clone)]
pub struct Ensemble<R = AllOutputs> {
    reduce: R,
    size: Option<usize>,
    deterministic: bool,
}

impl Default for Ensemble {
    fn default() -> Self {
        Self::new()
    }
}

impl Ensemble {
    /// An ensemble of every program, with no reduction (DSPy's defaults).
    pub fn new() -> Self {
        Ensemble {
            reduce: AllOutputs,
            size: None,
            deterministic: false,
        }
    }
}

impl<R> Ensemble<R> {
    /// DSPy's `reduce_fn`: what turns the outputs into the one the ensemble returns.
    pub fn reduce_fn<F>(self, reduce: F) -> Ensemble<F> {
        Ensemble {
            reduce,
            size: self.size,
            deterministic: self.deterministic,
        }
    }

    /// DSPy's `size`: run this many programs, sampled without replacement on each call
    /// (default: all of them, in order).
    pub fn size(mut self, size: usize) -> Self {
        self.size = Some(size);
        self
    }

    /// DSPy's `deterministic`: sample by the input rather than at random (see [`Ensemble`]).
    pub fn deterministic(mut self, deterministic: bool) -> Self {
        self.deterministic = deterministic;
        self
    }

    /// DSPy's `compile(programs)`: the ensembled program.
    ///
    /// # Errors
    ///
    /// [`EnsembleError`] when `programs` is empty or `size` is 0 or larger than it.
    pub fn compile<P: Program>(self, programs: Vec<P>) -> Result<EnsembledProgram<P, R>>
    where
        R: Reduce<P::Output>,
    {
        if programs.is_empty() {
            return Err(EnsembleError::NoPrograms.into());
        }
        if let Some(size) = self.size
            && (size == 0 || size > programs.len())
        {
            return Err(EnsembleError::BadSize {
                size,
                programs: programs.len(),
            }
            .into());
        }
        Ok(EnsembledProgram {
            programs,
            reduce: self.reduce,
            size: self.size,
            deterministic: self.deterministic,
        })
    }
}

/// What [`Ensemble::compile`] returns: DSPy's `EnsembledProgram`.
#[derive(Debug, Clone)]
pub struct EnsembledProgram<P, R = AllOutputs> {
    programs: Vec<P>,
    reduce: R,
    size: Option<usize>,
    deterministic: bool,
}

impl<P, R> EnsembledProgram<P, R> {
    /// The programs, in the order given.
    pub fn programs(&self) -> &[P] {
        &self.programs
    }

    /// The indices of the programs one call on `input` runs, in the order they run.
    fn pick(&self, input: &impl Serialize) -> Result<Vec<usize>> {
        let Some(size) = self.size else {
            return Ok((0..self.programs.len()).collect());
        };
        let seed = if self.deterministic {
            let json = serde_json::to_vec(input)
                .map_err(|e| Error::step("Ensemble: hashing the input", e))?;
            fnv1a(&json)
        } else {
            std::collections::hash_map::RandomState::new()
                .build_hasher()
                .finish()
        };
        PyRandom::new(seed)
            .sample_indices(self.programs.len(), size)
            .map_err(|e| Error::step("Ensemble", e))
    }
}

/// FNV-1a, 64 bits: a hash that stays the same across processes and Rust versions.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

impl<P, R> Program for EnsembledProgram<P, R>
where
    P: Program,
    P::Input: Clone + Serialize,
    R: Reduce<P::Output>,
{
    type Input = P::Input;
    type Output = R::Output;

    async fn forward(&self, input: P::Input) -> Result<R::Output> {
        let picked = self.pick(&input)?;
        let outputs = try_join_all(
            picked
                .into_iter()
                .map(|i| self.programs[i].forward(input.clone())),
        )
        .await?;
        self.reduce.reduce(outputs)
    }
}

impl<P: Module, R> Module for EnsembledProgram<P, R> {
    fn visit_predictors<'a>(
        &'a self,
        path: &str,
        visit: &mut dyn FnMut(String, &'a PredictorParams),
    ) {
        self.programs
            .visit_predictors(&join_path(path, "programs"), visit);
    }

    fn visit_predictors_mut<'a>(
        &'a mut self,
        path: &str,
        visit: &mut dyn FnMut(String, &'a mut PredictorParams),
    ) {
        self.programs
            .visit_predictors_mut(&join_path(path, "programs"), visit);
    }

    fn visit_other_state(&self, path: &str, visit: &mut dyn FnMut(String, serde_json::Value)) {
        self.programs
            .visit_other_state(&join_path(path, "programs"), visit);
    }

    fn load_other_state(
        &mut self,
        path: &str,
        state: &serde_json::Map<String, serde_json::Value>,
        apply: bool,
    ) -> std::result::Result<(), StateError> {
        self.programs
            .load_other_state(&join_path(path, "programs"), state, apply)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::program::program_fn;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(f)
    }

    #[test]
    fn runs_every_program_in_order_without_size() {
        let programs: Vec<_> = (0..4)
            .map(|k| program_fn(move |x: String| async move { Ok(format!("{x}{k}")) }))
            .collect();
        let all = Ensemble::new().compile(programs).unwrap();
        assert_eq!(
            block_on(all.forward("p".into())).unwrap(),
            ["p0", "p1", "p2", "p3"]
        );
    }

    #[test]
    fn samples_size_programs_deterministically_by_input() {
        let calls = Arc::new(AtomicUsize::new(0));
        let programs: Vec<_> = (0..6)
            .map(|k| {
                let calls = calls.clone();
                program_fn(move |_: u32| {
                    calls.fetch_add(1, Ordering::SeqCst);
                    async move { Ok(k) }
                })
            })
            .collect();
        let ens = Ensemble::new()
            .size(3)
            .deterministic(true)
            .compile(programs)
            .unwrap();
        let a = block_on(ens.forward(7)).unwrap();
        assert_eq!(a.len(), 3);
        let mut distinct = a.clone();
        distinct.sort_unstable();
        distinct.dedup();
        assert_eq!(distinct.len(), 3, "sampled without replacement: {a:?}");
        assert_eq!(block_on(ens.forward(7)).unwrap(), a);
        assert_eq!(
            calls.load(Ordering::SeqCst),
            6,
            "only the sampled programs ran"
        );
        // Different inputs spread over the programs.
        let seen: std::collections::HashSet<Vec<i32>> =
            (0..20).map(|x| block_on(ens.forward(x)).unwrap()).collect();
        assert!(seen.len() > 1);
    }

    #[test]
    fn reduces_and_propagates_errors() {
        let ok = program_fn(|x: i64| async move { Ok(x) });
        let ens = Ensemble::new()
            .reduce_fn(|outs: Vec<i64>| Ok(outs.iter().max().copied()))
            .compile(vec![ok.clone(), ok.clone()])
            .unwrap();
        assert_eq!(block_on(ens.forward(5)).unwrap(), Some(5));
        let failing = Ensemble::new()
            .reduce_fn(|_: Vec<i64>| -> Result<i64> { Err(Error::step("vote", "tie")) })
            .compile(vec![ok])
            .unwrap();
        let err = block_on(failing.forward(1)).unwrap_err();
        assert_eq!(err.to_string(), "vote: tie");
    }

    #[test]
    fn bad_configurations_are_refused() {
        let p = program_fn(|x: i64| async move { Ok(x) });
        let mut none = vec![p.clone()];
        none.clear();
        let err = Ensemble::new().compile(none).unwrap_err();
        assert_eq!(
            err.to_string(),
            "Ensemble: Ensemble needs at least one program"
        );
        for size in [0, 3] {
            let err = Ensemble::new()
                .size(size)
                .compile(vec![p.clone(), p.clone()])
                .unwrap_err();
            assert_eq!(
                err.to_string(),
                format!(
                    "Ensemble: Ensemble size {size} must be between 1 and the number of programs (2)"
                )
            );
        }
    }
}
