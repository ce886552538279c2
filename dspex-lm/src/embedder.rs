//! [`Embedder`]: texts to vectors, from an embeddings endpoint or a function (DSPy's
//! `dspy.Embedder`).

use super::{LM, LmError};
use futures_util::future::BoxFuture;
use std::sync::Arc;

/// Turns texts into vectors, one per text, in order. [`LM`] embeds through its provider's
/// `/v1/embeddings` endpoint (with its retries, limits and breaker), in batches of 200 as DSPy
/// does; [`embedder_fn`] wraps any function (a local model, a hash for tests).
pub trait Embedder: Send + Sync {
    /// The vectors of `texts`.
    fn embed<'a>(&'a self, texts: &'a [String]) -> BoxFuture<'a, Result<Vec<Vec<f32>>, LmError>>;
}

/// DSPy's `Embedder` batch size.
const BATCH_SIZE: usize = 200;

impl Embedder for LM {
    fn embed<'a>(&'a self, texts: &'a [String]) -> BoxFuture<'a, Result<Vec<Vec<f32>>, LmError>> {
        Box::pin(async move {
            let mut out = Vec::with_capacity(texts.len());
            for batch in texts.chunks(BATCH_SIZE) {
                let embeddings = LM::embed(self, batch).await?;
                if embeddings.vectors.len() != batch.len() {
                    return Err(LmError::Decode {
                        model: self.model().to_string(),
                        endpoint: "embeddings".into(),
                        message: format!(
                            "asked for {} embeddings, got {}",
                            batch.len(),
                            embeddings.vectors.len()
                        ),
                        raw: String::new(),
                    });
                }
                out.extend(embeddings.vectors);
            }
            Ok(out)
        })
    }
}

impl<E: Embedder + ?Sized> Embedder for Arc<E> {
    fn embed<'a>(&'a self, texts: &'a [String]) -> BoxFuture<'a, Result<Vec<Vec<f32>>, LmError>> {
        (**self).embed(texts)
    }
}

/// An embedder from a function of one text.
///
/// ```
/// use dspex_lm::{Embedder, embedder_fn};
///
/// let lengths = embedder_fn(|text: &str| vec![text.len() as f32, 1.0]);
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let vectors = lengths.embed(&["ab".to_string(), "abc".to_string()]).await?;
/// assert_eq!(vectors, [vec![2.0, 1.0], vec![3.0, 1.0]]);
/// # Ok::<(), dspex_lm::LmError>(())
/// # }).unwrap();
/// ```
pub fn embedder_fn<F>(f: F) -> EmbedderFn<F>
where
    F: Fn(&str) -> Vec<f32> + Send + Sync,
{
    EmbedderFn(f)
}

/// An embedder from a function; see [`embedder_fn`].
#[derive(Clone)]
pub struct EmbedderFn<F>(F);

impl<F> Embedder for EmbedderFn<F>
where
    F: Fn(&str) -> Vec<f32> + Send + Sync,
{
    fn embed<'a>(&'a self, texts: &'a [String]) -> BoxFuture<'a, Result<Vec<Vec<f32>>, LmError>> {
        let out = texts.iter().map(|t| (self.0)(t)).collect();
        Box::pin(std::future::ready(Ok(out)))
    }
}
