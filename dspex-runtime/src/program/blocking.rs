//! Running programs from synchronous code: scripts, `fn main`, tests without `#[tokio::test]`.
//!
//! [`ProgramExt::forward_blocking`](super::ProgramExt::forward_blocking) runs one program call
//! to completion; [`block_on`] does the same for any dspex future, such as
//! [`DynPredict::call`](crate::module::DynPredict::call). Both run on one tokio runtime for the
//! whole process, multi-threaded and built on first use, so the LM clients' connection pools and
//! background tasks live on between calls.
//!
//! From inside a tokio runtime — an `async fn`, a `#[tokio::main]` program, a task, and also
//! `spawn_blocking` — they do not block: they return [`BlockingError::InsideRuntime`], because
//! blocking a runtime thread on another runtime stalls it (tokio itself panics). There, `.await`
//! the future; in `spawn_blocking`, `tokio::runtime::Handle::current().block_on(...)` keeps the
//! call on the runtime you are in.
//!
//! ```
//! use dspex_runtime::{ProgramExt, program_fn};
//!
//! let words = program_fn(|s: String| async move { Ok(s.split_whitespace().count()) });
//! assert_eq!(words.forward_blocking("no async here".into())?, 3);
//! # Ok::<(), dspex_runtime::Error>(())
//! ```

use crate::Result;
use std::future::Future;
use std::sync::OnceLock;
use tokio::runtime::{Builder, Handle, Runtime};

/// Why a blocking call could not run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BlockingError {
    /// Called from inside a tokio runtime, where blocking would stall it.
    #[error(
        "a blocking dspex call (forward_blocking / blocking::block_on) was made inside a tokio runtime, where it would block the runtime's thread: `.await` the program's `forward(...)` instead (inside `spawn_blocking`, use `tokio::runtime::Handle::current().block_on(...)`)"
    )]
    InsideRuntime,
    /// The shared runtime could not be started.
    #[error("cannot start the tokio runtime for blocking dspex calls: {0}")]
    RuntimeStart(#[source] std::io::Error),
}

/// Runs `future` to completion on dspex's shared runtime and returns its result, or
/// [`BlockingError::InsideRuntime`] (as [`Error::Blocking`](crate::Error::Blocking)) when called inside a tokio runtime.
///
/// ```
/// use dspex_runtime::lm::ScriptedLM;
/// use dspex_runtime::module::{CallConfig, DynPredict};
/// use dspex_runtime::program::blocking::block_on;
/// use dspex_runtime::{DynSignature, Example};
/// use serde_json::json;
///
/// let lm = ScriptedLM::from_fields([json!({"answer": "Paris"})]);
/// let qa = DynPredict::new(DynSignature::parse("question -> answer")?)
///     .with_config(CallConfig::new().lm(lm));
/// let out = block_on(qa.call(&Example::new().with("question", "Capital of France?")))?;
/// assert_eq!(out.get_str("answer"), Some("Paris"));
/// # Ok::<(), dspex_runtime::Error>(())
/// ```
pub fn block_on<T, F>(future: F) -> Result<T>
where
    F: Future<Output = Result<T>>,
{
    if Handle::try_current().is_ok() {
        return Err(BlockingError::InsideRuntime.into());
    }
    runtime()?.block_on(future)
}

static RUNTIME: OnceLock<Runtime> = OnceLock::new();

/// The shared runtime, built on first use. If two threads race to build it, one runtime wins
/// and the other is dropped unused.
fn runtime() -> Result<&'static Runtime, BlockingError> {
    if let Some(rt) = RUNTIME.get() {
        return Ok(rt);
    }
    let built = Builder::new_multi_thread()
        .thread_name("dspex-blocking")
        .enable_all()
        .build()
        .map_err(BlockingError::RuntimeStart)?;
    Ok(RUNTIME.get_or_init(|| built))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Error;
    use crate::program::{Program, ProgramExt, program_fn};
    use crate::settings::{Settings, with_settings};

    #[test]
    fn blocks_from_sync_code_and_reuses_one_runtime() {
        let sleepy = program_fn(|n: u64| async move {
            // Needs the time driver: the shared runtime has it enabled.
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
            Ok(n + 1)
        });
        assert_eq!(sleepy.forward_blocking(1).unwrap(), 2);
        let first = RUNTIME.get().map(|rt| rt as *const Runtime);
        assert_eq!(sleepy.forward_blocking(2).unwrap(), 3);
        assert_eq!(first, RUNTIME.get().map(|rt| rt as *const Runtime));
        // From several threads at once.
        let sleepy = &sleepy;
        std::thread::scope(|s| {
            let handles: Vec<_> = (0..4)
                .map(|i| s.spawn(move || sleepy.forward_blocking(i)))
                .collect();
            for (i, h) in handles.into_iter().enumerate() {
                assert_eq!(h.join().unwrap().unwrap(), i as u64 + 1);
            }
        });
    }

    #[test]
    fn errors_pass_through() {
        let fails = program_fn(|_: ()| async { Err::<(), _>(Error::NoLm) });
        assert!(matches!(fails.forward_blocking(()), Err(Error::NoLm)));
    }

    #[tokio::test]
    async fn inside_a_runtime_it_is_a_typed_error_not_a_panic() {
        let id = program_fn(|n: u8| async move { Ok(n) });
        let err = id.forward_blocking(7).unwrap_err();
        assert!(
            matches!(err, Error::Blocking(BlockingError::InsideRuntime)),
            "{err:?}"
        );
        assert!(err.to_string().contains("`.await`"), "{err}");
        // In a nested program too (the shared runtime is a runtime), and the async path works.
        let nested = program_fn(move |n: u8| {
            let id = id.clone();
            async move { id.forward_blocking(n) }
        });
        assert!(matches!(
            nested.forward(1).await,
            Err(Error::Blocking(BlockingError::InsideRuntime))
        ));
        assert!(matches!(
            std::thread::spawn(move || nested.forward_blocking(1))
                .join()
                .unwrap(),
            Err(Error::Blocking(BlockingError::InsideRuntime))
        ));
        // spawn_blocking has a runtime handle, so it is refused as well.
        let in_blocking = tokio::task::spawn_blocking(|| block_on(async { Ok(1) }))
            .await
            .unwrap();
        assert!(matches!(
            in_blocking,
            Err(Error::Blocking(BlockingError::InsideRuntime))
        ));
    }

    #[test]
    fn settings_set_around_the_call_apply() {
        let lm = crate::lm::LM::builder("openai/blocking-test")
            .api_base("http://127.0.0.1:9/v1")
            .cache(false)
            .build()
            .unwrap();
        let model = program_fn(|_: ()| async {
            Ok(Settings::current().lm.map(|lm| lm.model().to_string()))
        });
        let seen = block_on(with_settings(Settings::new().lm(lm), model.forward(()))).unwrap();
        assert_eq!(seen.as_deref(), Some("openai/blocking-test"));
    }
}
