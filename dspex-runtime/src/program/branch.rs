//! Conditional steps: one of two programs, chosen per input.

use super::{Module, Program, delegate_module};
use crate::Result;

/// Runs `if_true` when `condition` holds for the input, else `if_false`. Both take the same input
/// and return the same output (adapt one with [`.map`](super::ProgramExt::map), or use
/// [`branch_either`] to keep two output types apart). The condition is a plain function of the
/// input, checked before either program starts.
///
/// ```
/// use dspex_runtime::program::branch;
/// use dspex_runtime::{Program, ProgramExt, program_fn};
///
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let retrieve = program_fn(|q: String| async move { Ok(vec![format!("a passage on {q}")]) });
/// let answer_with = program_fn(|docs: Vec<String>| async move { Ok(format!("from {}", docs[0])) });
/// let answer_directly = program_fn(|q: String| async move { Ok(format!("just {q}")) });
///
/// // If the question needs retrieval, retrieve then answer; else answer directly.
/// let rag = branch(
///     |q: &String| q.starts_with("who"),
///     retrieve.then(answer_with),
///     answer_directly,
/// );
/// assert_eq!(rag.forward("who wrote it".into()).await?, "from a passage on who wrote it");
/// assert_eq!(rag.forward("2 + 2".into()).await?, "just 2 + 2");
/// # Ok::<(), dspex_runtime::Error>(())
/// # }).unwrap();
/// ```
///
/// Optimizers see the predictors of both programs, whichever way inputs go, under the parameter
/// names `if_true` and `if_false`: were `answer_with` above a predictor, it would be `if_true.1`
/// (the second step of a `then`).
pub fn branch<C, T, F>(condition: C, if_true: T, if_false: F) -> Branch<C, T, F>
where
    T: Program,
    F: Program<Input = T::Input, Output = T::Output>,
    C: Fn(&T::Input) -> bool + Send + Sync,
{
    Branch {
        condition,
        if_true,
        if_false,
    }
}

/// Like [`branch`], for programs with different outputs: the output is
/// [`Either::Left`] with `if_true`'s output or [`Either::Right`] with `if_false`'s. Fan back in
/// with `.map(|e| e.either(f, g))` or handle both cases in the next step.
///
/// ```
/// use dspex_runtime::program::{Either, branch_either};
/// use dspex_runtime::{Program, program_fn};
///
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let count = program_fn(|s: String| async move { Ok(s.len()) });
/// let shout = program_fn(|s: String| async move { Ok(s.to_uppercase()) });
/// let step = branch_either(|s: &String| s.len() > 3, count, shout);
/// assert_eq!(step.forward("long text".into()).await?, Either::Left(9));
/// assert_eq!(step.forward("hi".into()).await?, Either::Right("HI".to_string()));
/// # Ok::<(), dspex_runtime::Error>(())
/// # }).unwrap();
/// ```
pub fn branch_either<C, T, F>(condition: C, if_true: T, if_false: F) -> BranchEither<C, T, F>
where
    T: Program,
    F: Program<Input = T::Input>,
    C: Fn(&T::Input) -> bool + Send + Sync,
{
    BranchEither {
        inner: Branch {
            condition,
            if_true,
            if_false,
        },
    }
}

/// One of two programs with the same input and output, chosen per input: see [`branch`].
/// Predictors are named `if_true.…` and `if_false.…`.
#[derive(Clone)]
pub struct Branch<C, T, F> {
    condition: C,
    if_true: T,
    if_false: F,
}

impl<C, T, F> Branch<C, T, F> {
    /// The program run when the condition holds.
    pub fn if_true(&self) -> &T {
        &self.if_true
    }

    /// The program run when it does not.
    pub fn if_false(&self) -> &F {
        &self.if_false
    }
}

impl<C, T: std::fmt::Debug, F: std::fmt::Debug> std::fmt::Debug for Branch<C, T, F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Branch")
            .field("if_true", &self.if_true)
            .field("if_false", &self.if_false)
            .finish_non_exhaustive()
    }
}

impl<C, T, F> Program for Branch<C, T, F>
where
    T: Program,
    F: Program<Input = T::Input, Output = T::Output>,
    C: Fn(&T::Input) -> bool + Send + Sync,
{
    type Input = T::Input;
    type Output = T::Output;

    async fn forward(&self, input: Self::Input) -> Result<Self::Output> {
        if (self.condition)(&input) {
            self.if_true.forward(input).await
        } else {
            self.if_false.forward(input).await
        }
    }
}

delegate_module!(impl[C, T: Module, F: Module] Branch<C, T, F> => if_true as "if_true", if_false as "if_false");

/// One of two programs with the same input and possibly different outputs: see
/// [`branch_either`]. Predictors are named as in [`Branch`].
#[derive(Clone)]
pub struct BranchEither<C, T, F> {
    inner: Branch<C, T, F>,
}

impl<C, T, F> BranchEither<C, T, F> {
    /// The program run when the condition holds.
    pub fn if_true(&self) -> &T {
        &self.inner.if_true
    }

    /// The program run when it does not.
    pub fn if_false(&self) -> &F {
        &self.inner.if_false
    }
}

impl<C, T: std::fmt::Debug, F: std::fmt::Debug> std::fmt::Debug for BranchEither<C, T, F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BranchEither")
            .field("if_true", &self.inner.if_true)
            .field("if_false", &self.inner.if_false)
            .finish_non_exhaustive()
    }
}

impl<C, T, F> Program for BranchEither<C, T, F>
where
    T: Program,
    F: Program<Input = T::Input>,
    C: Fn(&T::Input) -> bool + Send + Sync,
{
    type Input = T::Input;
    type Output = Either<T::Output, F::Output>;

    async fn forward(&self, input: Self::Input) -> Result<Self::Output> {
        let Branch {
            condition,
            if_true,
            if_false,
        } = &self.inner;
        Ok(if condition(&input) {
            Either::Left(if_true.forward(input).await?)
        } else {
            Either::Right(if_false.forward(input).await?)
        })
    }
}

delegate_module!(impl[C, T: Module, F: Module] BranchEither<C, T, F> => inner);

/// The output of [`branch_either`]: `Left` from the `if_true` program, `Right` from `if_false`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Either<L, R> {
    /// The condition held: `if_true`'s output.
    Left(L),
    /// The condition did not hold: `if_false`'s output.
    Right(R),
}

impl<L, R> Either<L, R> {
    /// Folds both cases into one value.
    pub fn either<O>(self, left: impl FnOnce(L) -> O, right: impl FnOnce(R) -> O) -> O {
        match self {
            Either::Left(l) => left(l),
            Either::Right(r) => right(r),
        }
    }

    /// The `Left` value, if that is the case.
    pub fn left(self) -> Option<L> {
        self.either(Some, |_| None)
    }

    /// The `Right` value, if that is the case.
    pub fn right(self) -> Option<R> {
        self.either(|_| None, Some)
    }

    /// Whether this is `Left`.
    pub fn is_left(&self) -> bool {
        matches!(self, Either::Left(_))
    }

    /// Whether this is `Right`.
    pub fn is_right(&self) -> bool {
        matches!(self, Either::Right(_))
    }
}

impl<T> Either<T, T> {
    /// The value, whichever case holds it.
    pub fn into_inner(self) -> T {
        self.either(|v| v, |v| v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Error;
    use crate::program::{PredictorParams, ProgramExt, program_fn};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A program that counts its calls and tags its output.
    fn counted(
        tag: &'static str,
        calls: &Arc<AtomicUsize>,
    ) -> impl Program<Input = String, Output = String> {
        let calls = Arc::clone(calls);
        program_fn(move |q: String| {
            calls.fetch_add(1, Ordering::SeqCst);
            async move { Ok(format!("{tag}: {q}")) }
        })
    }

    #[tokio::test]
    async fn only_the_chosen_branch_runs() {
        let (yes, no) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let step = branch(
            |q: &String| q.ends_with('?'),
            counted("retrieved", &yes),
            counted("direct", &no),
        );
        assert_eq!(
            step.forward("who?".into()).await.unwrap(),
            "retrieved: who?"
        );
        assert_eq!(step.forward("hello".into()).await.unwrap(), "direct: hello");
        assert_eq!(
            step.forward("why?".into()).await.unwrap(),
            "retrieved: why?"
        );
        assert_eq!(yes.load(Ordering::SeqCst), 2);
        assert_eq!(no.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn errors_come_from_the_chosen_branch() {
        let fails = program_fn(|q: String| async move {
            Err::<usize, _>(Error::step("retrieval", format!("nothing for {q:?}")))
        });
        let length = program_fn(|q: String| async move { Ok(q.len()) });
        let step = branch(|q: &String| q.is_empty(), length, fails);
        assert_eq!(step.forward(String::new()).await.unwrap(), 0);
        let err = step.forward("x".into()).await.unwrap_err();
        assert_eq!(err.to_string(), "retrieval: nothing for \"x\"");
    }

    #[tokio::test]
    async fn either_keeps_two_output_types_and_folds_back() {
        let count = program_fn(|s: String| async move { Ok(s.len()) });
        let shout = program_fn(|s: String| async move { Ok(s.to_uppercase()) });
        let step = branch_either(|s: &String| s.len() > 3, count, shout)
            .map(|e| e.either(|n| format!("{n} chars"), |s| s));
        assert_eq!(step.forward("long text".into()).await.unwrap(), "9 chars");
        assert_eq!(step.forward("hi".into()).await.unwrap(), "HI");

        let e: Either<u8, u8> = Either::Right(3);
        assert!(e.is_right() && !e.is_left());
        assert_eq!(e.left(), None);
        assert_eq!(e.right(), Some(3));
        assert_eq!(e.into_inner(), 3);
    }

    #[test]
    fn branches_are_named_if_true_and_if_false() {
        use crate::signature::DynSignature;
        let p = |s: &str| PredictorParams::new(DynSignature::parse(s).unwrap());
        let step = BranchEither {
            inner: Branch {
                condition: |_: &()| true,
                if_true: vec![p("a -> b"), p("b -> c")],
                if_false: p("a -> d"),
            },
        };
        let names: Vec<_> = step
            .named_predictors()
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        assert_eq!(names, ["if_true[0]", "if_true[1]", "if_false"]);
    }
}
