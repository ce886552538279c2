//! Cancellation as a value: a [`CancelToken`] is a flag that turns on once and that work can
//! both check (before starting something new) and await (to race what is in flight against it).
//!
//! An optimization [job](crate::optimize::Job) owns one (see
//! [`JobContext::cancel_token`](crate::optimize::JobContext::cancel_token)); hand it to an
//! [`Evaluate`](crate::evaluate::Evaluate) with
//! [`cancel_on`](crate::evaluate::Evaluate::cancel_on) to stop an evaluation within one
//! example's time.

use std::future::Future;
use std::sync::Arc;
use tokio::sync::watch;

/// A cancellation flag shared by its clones: [`cancel`](Self::cancel) turns it on for all of
/// them, for good.
///
/// ```
/// use dspex_runtime::cancel::CancelToken;
///
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let token = CancelToken::new();
/// let seen = token.clone();
/// assert!(!seen.is_cancelled());
/// token.cancel();
/// assert!(seen.is_cancelled());
/// seen.cancelled().await; // resolves at once
/// // Work raced against a cancelled token is dropped.
/// assert_eq!(seen.run_until_cancelled(std::future::pending::<()>()).await, None);
/// # });
/// ```
#[derive(Clone)]
pub struct CancelToken {
    flag: Arc<watch::Sender<bool>>,
}

impl std::fmt::Debug for CancelToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CancelToken")
            .field("cancelled", &self.is_cancelled())
            .finish()
    }
}

impl Default for CancelToken {
    fn default() -> Self {
        Self::new()
    }
}

impl CancelToken {
    /// A token that is not cancelled.
    pub fn new() -> Self {
        let (flag, _) = watch::channel(false);
        CancelToken {
            flag: Arc::new(flag),
        }
    }

    /// Cancels: every clone now reports it, and every [`cancelled`](Self::cancelled) future
    /// resolves. Cancelling again does nothing.
    pub fn cancel(&self) {
        self.flag
            .send_if_modified(|cancelled| !std::mem::replace(cancelled, true));
    }

    /// Whether the token was cancelled.
    pub fn is_cancelled(&self) -> bool {
        *self.flag.borrow()
    }

    /// Resolves once the token is cancelled (at once if it already is); never otherwise.
    pub fn cancelled(&self) -> impl Future<Output = ()> + Send + 'static {
        let mut flag = self.flag.subscribe();
        let keep = Arc::clone(&self.flag);
        async move {
            // The sender lives as long as `keep`, so this only ends on a cancellation.
            let _ = flag.wait_for(|cancelled| *cancelled).await.is_ok();
            drop(keep);
        }
    }

    /// Runs `fut` until it finishes (`Some(output)`) or the token is cancelled (`None`;
    /// `fut` is then dropped where it stands). A token cancelled beforehand never polls `fut`.
    pub async fn run_until_cancelled<F: Future>(&self, fut: F) -> Option<F::Output> {
        tokio::select! {
            biased;
            () = self.cancelled() => None,
            out = fut => Some(out),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test(start_paused = true)]
    async fn cancelling_wakes_waiters_and_drops_raced_work() {
        let token = CancelToken::new();
        let waiter = tokio::spawn(token.cancelled());
        let dropped = Arc::new(());
        let held = Arc::clone(&dropped);
        let raced = {
            let token = token.clone();
            tokio::spawn(async move {
                token
                    .run_until_cancelled(async move {
                        let _held = held;
                        tokio::time::sleep(Duration::from_secs(3600)).await;
                    })
                    .await
            })
        };
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert!(!waiter.is_finished());
        token.cancel();
        token.cancel();
        waiter.await.unwrap();
        assert_eq!(raced.await.unwrap(), None);
        // The raced future was dropped, with what it held.
        assert_eq!(Arc::strong_count(&dropped), 1);
        // Work that finishes first is returned.
        let fresh = CancelToken::new();
        assert_eq!(fresh.run_until_cancelled(async { 7 }).await, Some(7));
        assert!(!fresh.is_cancelled());
    }
}
