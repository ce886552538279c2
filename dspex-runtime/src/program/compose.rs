//! Composition of programs: sequencing, output mapping, fan-out, blocking calls, and programs
//! from async functions.

use super::delegate_module;
use super::fan_out::FanOut;
use super::{Module, PredictorParams, Program};
use crate::Result;
use crate::callback::Instrumented;
use std::future::Future;
use std::marker::PhantomData;

/// Composition methods for every [`Program`].
pub trait ProgramExt: Program + Sized {
    /// Runs `self`, then `next` on its output. Compiles only when `next` takes exactly what
    /// `self` returns.
    fn then<B>(self, next: B) -> Then<Self, B>
    where
        B: Program<Input = Self::Output>,
    {
        Then {
            first: self,
            second: next,
        }
    }

    /// Runs `self`, then `f` on its output.
    fn map<F, O>(self, f: F) -> Map<Self, F>
    where
        F: Fn(Self::Output) -> O + Send + Sync,
        O: Send + 'static,
    {
        Map { inner: self, f }
    }

    /// Runs `self` and `other` on clones of the same input, concurrently on the calling task,
    /// and returns both outputs: `(self's, other's)`. Compiles only when both take the same
    /// input type, and that type is `Clone`. The first error fails the step and cancels the other
    /// branch; see [`FanOut`] for the details and names (`0`, `1`), and
    /// [`fan_out`](super::fan_out()) for three branches or more.
    ///
    /// ```
    /// use dspex_runtime::{Program, ProgramExt, program_fn};
    ///
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// let words = program_fn(|s: String| async move { Ok(s.split_whitespace().count()) });
    /// let shout = program_fn(|s: String| async move { Ok(s.to_uppercase()) });
    /// let both = words.join(shout).map(|(n, loud)| format!("{loud} ({n})"));
    /// assert_eq!(both.forward("hi there".into()).await?, "HI THERE (2)");
    /// # Ok::<(), dspex_runtime::Error>(())
    /// # }).unwrap();
    /// ```
    fn join<B>(self, other: B) -> FanOut<(Self, B)>
    where
        B: Program<Input = Self::Input>,
        Self::Input: Clone,
    {
        super::fan_out((self, other))
    }

    /// Runs the program to completion from synchronous code, on a tokio runtime shared by the
    /// process and built on first use. Inside a tokio runtime it does not block but returns
    /// [`Error::Blocking`](crate::Error::Blocking): `.await` [`forward`](Program::forward)
    /// there. See [`blocking`](super::blocking).
    ///
    /// ```
    /// use dspex_runtime::{ProgramExt, program_fn};
    ///
    /// let words = program_fn(|s: String| async move { Ok(s.split_whitespace().count()) });
    /// assert_eq!(words.forward_blocking("no async here".into())?, 3);
    /// # Ok::<(), dspex_runtime::Error>(())
    /// ```
    fn forward_blocking(&self, input: Self::Input) -> Result<Self::Output> {
        super::blocking::block_on(self.forward(input))
    }

    /// Reports every call of `self` to the [callbacks](crate::callback) as a module call named
    /// `name` (DSPy fires module events for every `dspy.Module`; a program you write fires them
    /// through this wrapper). Give it callbacks of its own with
    /// [`Instrumented::with_callbacks`]. Inputs and outputs are reported as JSON, so they must be
    /// `Serialize`.
    fn instrumented(self, name: impl Into<String>) -> Instrumented<Self> {
        Instrumented::new(self, name)
    }
}

impl<P: Program> ProgramExt for P {}

/// `a.then(b)`: `b` runs on `a`'s output. Optimizers see `a`'s predictors under `0` and `b`'s
/// under `1`; give steps DSPy's names by declaring a struct with `#[derive(Module)]` instead.
#[derive(Debug, Clone)]
pub struct Then<A, B> {
    first: A,
    second: B,
}

impl<A, B> Then<A, B> {
    /// The first step.
    pub fn first(&self) -> &A {
        &self.first
    }

    /// The second step.
    pub fn second(&self) -> &B {
        &self.second
    }
}

impl<A, B> Program for Then<A, B>
where
    A: Program,
    B: Program<Input = A::Output>,
{
    type Input = A::Input;
    type Output = B::Output;

    async fn forward(&self, input: Self::Input) -> Result<Self::Output> {
        let mid = self.first.forward(input).await?;
        self.second.forward(mid).await
    }
}

delegate_module!(impl[A: Module, B: Module] Then<A, B> => first as "0", second as "1");

/// `a.map(f)`: `f` applied to `a`'s output. Its predictors are `a`'s, under the same names.
#[derive(Clone)]
pub struct Map<P, F> {
    inner: P,
    f: F,
}

impl<P: std::fmt::Debug, F> std::fmt::Debug for Map<P, F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Map")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl<P, F, O> Program for Map<P, F>
where
    P: Program,
    F: Fn(P::Output) -> O + Send + Sync,
    O: Send + 'static,
{
    type Input = P::Input;
    type Output = O;

    async fn forward(&self, input: Self::Input) -> Result<O> {
        let out = self.inner.forward(input).await?;
        Ok((self.f)(out))
    }
}

delegate_module!(impl[P: Module, F] Map<P, F> => inner);

/// A program made from an async function; see [`program_fn`]. It holds no predictors.
pub struct FnProgram<F, I, O> {
    f: F,
    _types: PhantomData<fn(I) -> O>,
}

impl<F: Clone, I, O> Clone for FnProgram<F, I, O> {
    fn clone(&self) -> Self {
        FnProgram {
            f: self.f.clone(),
            _types: PhantomData,
        }
    }
}

impl<F, I, O> std::fmt::Debug for FnProgram<F, I, O> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "FnProgram<{} -> {}>",
            std::any::type_name::<I>(),
            std::any::type_name::<O>()
        )
    }
}

/// A program from an async function or closure: glue steps, tools, and test doubles.
pub fn program_fn<I, O, F, Fut>(f: F) -> FnProgram<F, I, O>
where
    F: Fn(I) -> Fut + Send + Sync,
    Fut: Future<Output = Result<O>> + Send,
    I: Send + 'static,
    O: Send + 'static,
{
    FnProgram {
        f,
        _types: PhantomData,
    }
}

impl<F, Fut, I, O> Program for FnProgram<F, I, O>
where
    F: Fn(I) -> Fut + Send + Sync,
    Fut: Future<Output = Result<O>> + Send,
    I: Send + 'static,
    O: Send + 'static,
{
    type Input = I;
    type Output = O;

    fn forward(&self, input: I) -> impl Future<Output = Result<O>> + Send {
        (self.f)(input)
    }
}

impl<F, I, O> Module for FnProgram<F, I, O> {
    fn visit_predictors<'a>(
        &'a self,
        _path: &str,
        _visit: &mut dyn FnMut(String, &'a PredictorParams),
    ) {
    }

    fn visit_predictors_mut<'a>(
        &'a mut self,
        _path: &str,
        _visit: &mut dyn FnMut(String, &'a mut PredictorParams),
    ) {
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{DynSignature, Error};

    fn block_on<F: Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(f)
    }

    #[test]
    fn then_and_map_compose() {
        let parse = program_fn(|s: String| async move {
            s.trim()
                .parse::<i64>()
                .map_err(|e| Error::step(format!("parsing {s:?}"), e))
        });
        let square = program_fn(|n: i64| async move { Ok(n * n) });
        let pipeline = parse.then(square).map(|n| format!("= {n}"));
        assert_eq!(block_on(pipeline.forward(" 7 ".into())).unwrap(), "= 49");
        let err = block_on(pipeline.forward("x".into())).unwrap_err();
        assert_eq!(
            err.to_string(),
            "parsing \"x\": invalid digit found in string"
        );
    }

    #[test]
    fn then_names_its_steps() {
        let p = |s: &str| PredictorParams::new(DynSignature::parse(s).unwrap());
        let chain = Then {
            first: p("a -> b"),
            second: Then {
                first: p("b -> c"),
                second: p("c -> d"),
            },
        };
        let names: Vec<_> = chain
            .named_predictors()
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        assert_eq!(names, ["0", "1.0", "1.1"]);
    }
}
