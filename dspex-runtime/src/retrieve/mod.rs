//! Retrieval: passages for a query, from an index on disk, an embeddings endpoint or a server.
//!
//! - [`Retriever`] — query and `k` in, the `k` best [`Passage`]s out (id, text, score). Every
//!   retriever here implements it, and so can yours.
//! - [`Retrieve`] — a retriever as a [`Program`] from a query to [`Retrieved`] passages (DSPy's
//!   `dspy.Retrieve`), to compose with modules;
//!   [`search_tool`](crate::module::search_tool) makes one a ReAct tool.
//! - `Bm25Index` (feature `bm25`, on by default in the `dspex` crate) — the embedded default: a
//!   BM25 full-text index on tantivy, persisted in a directory, built from JSONL, scored exactly as
//!   `bm25s` scores (Lucene's BM25, `k1` 1.5, `b` 0.75, its tokenizer and English stopwords).
//! - [`Corpus`] / [`Document`] — reading a JSONL corpus (`{"id", "text", …}` per line) with bad
//!   lines reported by line number, skipped or fatal as the caller chooses ([`OnBadLine`]).
//! - [`tokenize`] — the `bm25s` tokenizer.
//! - [`EmbeddingsRetriever`] — DSPy's `Embeddings`: an exact cosine index over the vectors of an
//!   [`Embedder`](crate::lm::Embedder) (an [`LM`](crate::lm::LM)'s `/v1/embeddings`, or a
//!   function), in one contiguous buffer, saved to and reopened from a directory.
//! - [`HybridRetriever`] — hybrid search: any retrievers (BM25 and embeddings, say) fused by
//!   reciprocal rank fusion.
//! - [`ColBERTv2`] — a client for a ColBERTv2 server, speaking DSPy's `dspy.ColBERTv2` protocol
//!   (GET or POST, `{"topk": […]}`).

mod colbert;
mod corpus;
mod embeddings;
mod hybrid;
mod tokenize;

#[cfg(feature = "bm25")]
mod bm25;

#[cfg(feature = "bm25")]
pub use bm25::{BLOCKING_DOCUMENTS, Bm25Index, Bm25Params, BuildOptions, BuildReport, Hit};
pub use colbert::ColBERTv2;
pub use corpus::{BadLine, Corpus, Document, OnBadLine, read_jsonl};
pub use embeddings::{EmbeddingsBuilder, EmbeddingsRetriever};
pub use hybrid::HybridRetriever;
pub use tokenize::{STOPWORDS_EN, tokenize};

use crate::lm::LmError;
use crate::program::{Module, PredictorParams, Program, StateError};
use futures_util::future::BoxFuture;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::path::PathBuf;
use std::sync::Arc;

/// One retrieved passage.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Passage {
    /// The passage's id in its corpus.
    pub id: String,
    /// The passage's text (DSPy's `long_text`).
    pub text: String,
    /// The retriever's score: higher is better; comparable only within one retriever's results.
    pub score: f32,
    /// Other fields the corpus or server gave the passage (a title, a url, ColBERT's `prob`, …).
    #[serde(flatten, default, skip_serializing_if = "Map::is_empty")]
    pub extra: Map<String, Value>,
}

impl Passage {
    /// A passage with no extra fields.
    pub fn new(id: impl Into<String>, text: impl Into<String>, score: f32) -> Self {
        Passage {
            id: id.into(),
            text: text.into(),
            score,
            extra: Map::new(),
        }
    }
}

/// Finds the passages that best match a query.
///
/// Implement it for your own search backend; wrap any retriever in [`Retrieve`] to use it as a
/// program, or in [`search_tool`](crate::module::search_tool) to give it to an agent.
///
/// ```
/// use dspex_runtime::retrieve::{Passage, RetrieveError, Retriever};
/// use futures_util::future::BoxFuture;
///
/// /// Passages that contain the query, in corpus order.
/// struct Grep(Vec<String>);
///
/// impl Retriever for Grep {
///     fn retrieve<'a>(&'a self, query: &'a str, k: usize)
///         -> BoxFuture<'a, Result<Vec<Passage>, RetrieveError>> {
///         let hits = self.0.iter().enumerate()
///             .filter(|(_, text)| text.contains(query))
///             .take(k)
///             .map(|(i, text)| Passage::new(i.to_string(), text.clone(), 1.0))
///             .collect();
///         Box::pin(std::future::ready(Ok(hits)))
///     }
/// }
/// ```
pub trait Retriever: Send + Sync {
    /// The at most `k` best passages for `query`, best first.
    fn retrieve<'a>(
        &'a self,
        query: &'a str,
        k: usize,
    ) -> BoxFuture<'a, Result<Vec<Passage>, RetrieveError>>;
}

impl<R: Retriever + ?Sized> Retriever for Arc<R> {
    fn retrieve<'a>(
        &'a self,
        query: &'a str,
        k: usize,
    ) -> BoxFuture<'a, Result<Vec<Passage>, RetrieveError>> {
        (**self).retrieve(query, k)
    }
}

impl<R: Retriever + ?Sized> Retriever for Box<R> {
    fn retrieve<'a>(
        &'a self,
        query: &'a str,
        k: usize,
    ) -> BoxFuture<'a, Result<Vec<Passage>, RetrieveError>> {
        (**self).retrieve(query, k)
    }
}

impl<R: Retriever + ?Sized> Retriever for &R {
    fn retrieve<'a>(
        &'a self,
        query: &'a str,
        k: usize,
    ) -> BoxFuture<'a, Result<Vec<Passage>, RetrieveError>> {
        (**self).retrieve(query, k)
    }
}

/// What building, opening or querying a retriever can fail with. Every variant names the path,
/// url or retriever involved.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RetrieveError {
    /// A file or directory could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What the operating system said.
        #[source]
        source: std::io::Error,
    },
    /// There is no index at the path (or it is not a directory).
    #[error("no index at {path}: {reason}")]
    NoIndex {
        /// The directory asked for.
        path: PathBuf,
        /// What is missing.
        reason: String,
    },
    /// The directory holds an index that cannot be read.
    #[error("the index at {path} is corrupt or not a dspex index: {message}")]
    CorruptIndex {
        /// The index directory.
        path: PathBuf,
        /// What was wrong.
        message: String,
    },
    /// The corpus has no documents (after skipping bad lines, if that was asked for).
    #[error("the corpus {path} has no documents")]
    EmptyCorpus {
        /// The corpus file.
        path: PathBuf,
    },
    /// A JSONL line is not a document, and the build was asked to stop at bad lines.
    #[error("{path}:{line}: {message}")]
    BadLine {
        /// The corpus file.
        path: PathBuf,
        /// The line number, counted from 1.
        line: usize,
        /// What is wrong with the line.
        message: String,
    },
    /// The index could not be built or written.
    #[error("cannot build the index at {path}: {message}")]
    Build {
        /// The index directory.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// A search failed inside the index.
    #[error("search in {path} failed: {message}")]
    Search {
        /// The index directory.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// Embedding passages or a query failed.
    #[error("embedding failed: {0}")]
    Embed(#[from] LmError),
    /// The vectors do not have the dimension the index holds.
    #[error("{what} has dimension {got}, the index holds vectors of dimension {expected}")]
    Dimension {
        /// Which vector (`the query`, `passage 3`, …).
        what: String,
        /// The index's dimension.
        expected: usize,
        /// The vector's.
        got: usize,
    },
    /// A retrieval server could not be reached or answered with an error status.
    #[error("retrieval server {url}: {message}")]
    Http {
        /// The server's url (without the query).
        url: String,
        /// The HTTP status, when the server answered.
        status: Option<u16>,
        /// What went wrong, with an excerpt of the body when there was one.
        message: String,
    },
    /// A retrieval server's answer could not be understood.
    #[error("retrieval server {url} answered something unexpected: {message}")]
    Decode {
        /// The server's url.
        url: String,
        /// What was wrong.
        message: String,
    },
    /// A retriever written by the user failed.
    #[error("{retriever}: {message}")]
    Other {
        /// The retriever.
        retriever: String,
        /// What went wrong.
        message: String,
    },
}

impl RetrieveError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        RetrieveError::Io {
            path: path.into(),
            source,
        }
    }
}

/// The passages a [`Retrieve`] step found.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Retrieved {
    /// Best first.
    pub passages: Vec<Passage>,
}

impl Retrieved {
    /// The passages' texts, best first (DSPy's `Prediction.passages`).
    pub fn texts(&self) -> Vec<String> {
        self.passages.iter().map(|p| p.text.clone()).collect()
    }

    /// The passages' texts, best first, consuming the result.
    pub fn into_texts(self) -> Vec<String> {
        self.passages.into_iter().map(|p| p.text).collect()
    }
}

/// A retriever as a program from a query to its `k` best passages (DSPy's `dspy.Retrieve(k)`,
/// with the retriever given here rather than in global settings).
///
/// ```
/// use dspex_runtime::Program;
/// use dspex_runtime::retrieve::{Passage, Retrieve, RetrieveError, Retriever};
/// use futures_util::future::BoxFuture;
///
/// struct Echo;
/// impl Retriever for Echo {
///     fn retrieve<'a>(&'a self, query: &'a str, k: usize)
///         -> BoxFuture<'a, Result<Vec<Passage>, RetrieveError>> {
///         let hits = (0..k).map(|i| Passage::new(i.to_string(), format!("{query} #{i}"), 1.0));
///         Box::pin(std::future::ready(Ok(hits.collect())))
///     }
/// }
///
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let retrieve = Retrieve::new(Echo, 2);
/// let found = retrieve.forward("ada".to_string()).await?;
/// assert_eq!(found.texts(), ["ada #0", "ada #1"]);
/// # Ok::<(), dspex_runtime::Error>(())
/// # }).unwrap();
/// ```
#[derive(Debug, Clone)]
pub struct Retrieve<R> {
    retriever: R,
    k: usize,
}

impl<R: Retriever> Retrieve<R> {
    /// Retrieves the `k` best passages per query (DSPy's default is 3).
    pub fn new(retriever: R, k: usize) -> Self {
        Retrieve { retriever, k }
    }

    /// How many passages each query gets.
    pub fn k(&self) -> usize {
        self.k
    }

    /// Changes how many passages each query gets.
    pub fn set_k(&mut self, k: usize) {
        self.k = k;
    }

    /// The retriever.
    pub fn retriever(&self) -> &R {
        &self.retriever
    }

    /// The `k` best passages for `query` (the program's `forward` with another `k`).
    pub async fn search(&self, query: &str, k: usize) -> Result<Retrieved, RetrieveError> {
        let passages = self.retriever.retrieve(query, k).await?;
        Ok(Retrieved { passages })
    }
}

impl<R: Retriever> Program for Retrieve<R> {
    type Input = String;
    type Output = Retrieved;

    async fn forward(&self, query: String) -> crate::Result<Retrieved> {
        Ok(self.search(&query, self.k).await?)
    }
}

/// A retriever has no predictors; its state is DSPy's `Retrieve.dump_state()`, `{"k": …}`, saved
/// under its name so DSPy's `load` finds every key it reads.
impl<R> Module for Retrieve<R> {
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

    fn visit_other_state(&self, path: &str, visit: &mut dyn FnMut(String, Value)) {
        visit(state_name(path), serde_json::json!({ "k": self.k }));
    }

    fn load_other_state(
        &mut self,
        path: &str,
        state: &Map<String, Value>,
        apply: bool,
    ) -> Result<(), StateError> {
        let name = state_name(path);
        let Some(entry) = state.get(&name) else {
            return Ok(());
        };
        let k = match entry.get("k") {
            None => return Ok(()),
            Some(k) => k
                .as_u64()
                .and_then(|k| usize::try_from(k).ok())
                .ok_or_else(|| StateError::BadKey {
                    predictor: name.clone(),
                    key: "k".into(),
                    message: format!("expected a non-negative integer, found {k}"),
                })?,
        };
        if apply {
            self.k = k;
        }
        Ok(())
    }
}

/// A parameter at the root of a program is called `self`, as in DSPy.
fn state_name(path: &str) -> String {
    if path.is_empty() {
        "self".into()
    } else {
        path.into()
    }
}

/// DSPy's description of its `Retrieve` step, used for
/// [`search_tool`](crate::module::search_tool).
pub const SEARCH_TOOL_DESC: &str =
    "takes a search query and returns one or more potentially relevant passages from a corpus";

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) struct Fixed(Vec<Passage>);

    impl Retriever for Fixed {
        fn retrieve<'a>(
            &'a self,
            _query: &'a str,
            k: usize,
        ) -> BoxFuture<'a, Result<Vec<Passage>, RetrieveError>> {
            Box::pin(std::future::ready(Ok(self
                .0
                .iter()
                .take(k)
                .cloned()
                .collect())))
        }
    }

    pub(crate) struct Failing;

    impl Retriever for Failing {
        fn retrieve<'a>(
            &'a self,
            _query: &'a str,
            _k: usize,
        ) -> BoxFuture<'a, Result<Vec<Passage>, RetrieveError>> {
            Box::pin(std::future::ready(Err(RetrieveError::Other {
                retriever: "failing".into(),
                message: "index offline".into(),
            })))
        }
    }

    pub(crate) fn fixed() -> Fixed {
        Fixed(vec![
            Passage::new("a", "first", 2.0),
            Passage::new("b", "second", 1.0),
        ])
    }

    #[tokio::test]
    async fn retrieve_takes_k_and_keeps_order() {
        let retrieve = Retrieve::new(fixed(), 1);
        let out = retrieve.forward("q".into()).await.unwrap();
        assert_eq!(out.texts(), ["first"]);
        let out = retrieve.search("q", 5).await.unwrap();
        assert_eq!(out.into_texts(), ["first", "second"]);
        assert!(retrieve.named_predictors().is_empty());
    }

    #[tokio::test]
    async fn retrieve_errors_become_program_errors() {
        let err = Retrieve::new(Failing, 3)
            .forward("q".into())
            .await
            .unwrap_err();
        assert!(matches!(err, crate::Error::Retrieve(_)), "{err:?}");
        assert_eq!(err.to_string(), "failing: index offline");
    }

    #[test]
    fn passages_serialize_extra_fields_flat() {
        let mut p = Passage::new("7", "text", 0.5);
        p.extra.insert("title".into(), Value::from("T"));
        let json = serde_json::to_value(&p).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"id": "7", "text": "text", "score": 0.5, "title": "T"})
        );
        let back: Passage = serde_json::from_value(json).unwrap();
        assert_eq!(back, p);
    }
}
