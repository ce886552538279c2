//! [`Parallel`]: a program over a batch, under a concurrency limit.

use crate::error::{Error, Result};
use crate::program::delegate_module;
use crate::program::{Module, Program};
use futures_util::StreamExt;

/// Runs a program over a batch of inputs with at most `limit` in flight, keeping the results in
/// input order and each item's error in its place (DSPy's `dspy.Parallel`, without losing the
/// results already computed when some items fail).
///
/// The items run on the calling task (no spawning), so task-scoped settings and usage tracking
/// apply to all of them.
///
/// ```
/// use dspex_runtime::module::Parallel;
/// use dspex_runtime::{Error, Program, program_fn};
///
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// let half = program_fn(|n: u32| async move {
///     if n % 2 == 0 { Ok(n / 2) } else { Err(Error::step("halving", format!("{n} is odd"))) }
/// });
/// let results = Parallel::new(half, 8).forward(vec![4, 7, 10]).await?;
/// assert_eq!(results[0].as_ref().ok(), Some(&2));
/// assert!(results[1].is_err());
/// assert_eq!(results[2].as_ref().ok(), Some(&5));
/// # Ok::<(), Error>(())
/// # }).unwrap();
/// ```
#[derive(Debug, Clone)]
pub struct Parallel<P> {
    program: P,
    limit: usize,
}

impl<P> Parallel<P> {
    /// `program` over batches, at most `limit` items at once (at least 1).
    pub fn new(program: P, limit: usize) -> Self {
        Parallel {
            program,
            limit: limit.max(1),
        }
    }

    /// The program run on each item.
    pub fn program(&self) -> &P {
        &self.program
    }
}

impl<P: Program> Program for Parallel<P> {
    type Input = Vec<P::Input>;
    type Output = Vec<Result<P::Output, Error>>;

    async fn forward(&self, inputs: Vec<P::Input>) -> Result<Self::Output> {
        Ok(futures_util::stream::iter(inputs)
            .map(|input| self.program.forward(input))
            .buffered(self.limit)
            .collect()
            .await)
    }
}

delegate_module!(impl[P: Module] Parallel<P> => program);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::program::program_fn;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    #[tokio::test]
    async fn order_limit_and_errors() {
        let running = Arc::new(AtomicUsize::new(0));
        let peak = Arc::new(AtomicUsize::new(0));
        let (r, p) = (Arc::clone(&running), Arc::clone(&peak));
        let program = program_fn(move |i: u64| {
            let (running, peak) = (Arc::clone(&r), Arc::clone(&p));
            async move {
                let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                peak.fetch_max(now, Ordering::SeqCst);
                // Later items finish first: the output order must still be the input order.
                tokio::time::sleep(Duration::from_millis(30 - i)).await;
                running.fetch_sub(1, Ordering::SeqCst);
                if i == 3 {
                    Err(Error::step("item", "three fails"))
                } else {
                    Ok(i * 10)
                }
            }
        });
        let out = Parallel::new(program, 4)
            .forward((0..10).collect())
            .await
            .unwrap();
        assert_eq!(out.len(), 10);
        for (i, r) in out.iter().enumerate() {
            match r {
                Ok(v) => assert_eq!(*v, i as u64 * 10),
                Err(e) => {
                    assert_eq!(i, 3);
                    assert!(e.to_string().contains("three fails"));
                }
            }
        }
        assert!(peak.load(Ordering::SeqCst) <= 4);
        assert!(peak.load(Ordering::SeqCst) >= 2, "items ran concurrently");
    }
}
