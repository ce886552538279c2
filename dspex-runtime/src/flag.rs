//! Stop flags: a `watch` channel of `bool` that turns `true` once.

use tokio::sync::watch;

/// Resolves once `flag` turns `true` or its sender is gone — either way, time to stop.
///
/// The guard `wait_for` returns is not `Send`; this lets go of it, so the future can be held
/// across `.await`s in spawned tasks and `select!`s.
pub(crate) async fn raised(flag: &mut watch::Receiver<bool>) {
    let _ = flag.wait_for(|raised| *raised).await.is_ok();
}
