//! [`EmbeddingsRetriever`]: an exact cosine index over the vectors of an [`Embedder`] (DSPy's
//! `dspy.retrievers.Embeddings` with brute-force search), persisted to a directory.
//!
//! The vectors live in one contiguous row-major `f32` buffer (row `i` is passage `i`), unit length
//! when normalizing (the default, as in DSPy), next to the passages' ids, texts and extra fields.
//! A query is embedded, normalized, and scored against every row (a dot product, so the cosine
//! similarity); the `k` best are kept in a bounded heap, not found by sorting every score.
//!
//! On disk an index is a directory of three files: `embeddings.json` (format name, version,
//! dimension, count, normalization), `vectors.f32` (the buffer as raw little-endian `f32`s) and
//! `passages.jsonl` (one `{"id", "text", …}` per row, a corpus that [`read_jsonl`] reads back).
//! Opening checks each of them against the others.
//!
//! [`read_jsonl`]: super::read_jsonl

mod format;

use super::{Corpus, Passage, RetrieveError, Retriever};
use crate::lm::Embedder;
use format::*;
use futures_util::StreamExt;
use futures_util::future::BoxFuture;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::io::{BufRead, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tracing::Instrument;

/// DSPy's floor for a norm when normalizing (`np.maximum(norms, 1e-10)`).
const MIN_NORM: f64 = 1e-10;
/// Scoring an index with at least this many multiply-adds per query (rows × dimension) runs on
/// tokio's blocking pool instead of a runtime thread (about a tenth of a millisecond of work).
const BLOCKING_THRESHOLD: usize = 1 << 18;
/// The name errors give this retriever.
const NAME: &str = "embeddings retriever";

/// The rows of an index: the vectors in one buffer, the passages alongside.
struct Rows {
    dim: usize,
    /// `ids.len() * dim` values, row-major.
    vectors: Vec<f32>,
    ids: Vec<String>,
    texts: Vec<String>,
    extra: Vec<Map<String, Value>>,
}

impl Rows {
    fn len(&self) -> usize {
        self.ids.len()
    }

    fn passage(&self, row: usize, score: f32) -> Passage {
        Passage {
            id: self.ids[row].clone(),
            text: self.texts[row].clone(),
            score,
            extra: self.extra[row].clone(),
        }
    }
}

/// An embeddings retriever: passages ranked by the cosine similarity of their embeddings to the
/// query's (DSPy's `dspy.retrievers.Embeddings`, exact search).
///
/// Build one from a [`Corpus`] with [`EmbeddingsRetriever::builder`] (or [`new`](Self::new)),
/// [`save`](Self::save) it, and [`open`](Self::open) it later without embedding the corpus again.
/// The embedder is anything implementing [`Embedder`]: an [`LM`](crate::lm::LM) (its
/// `/v1/embeddings` endpoint) or a function wrapped by [`embedder_fn`](crate::lm::embedder_fn).
/// Cloning one is cheap: clones share the index.
///
/// ```
/// use dspex_runtime::lm::embedder_fn;
/// use dspex_runtime::retrieve::{Corpus, EmbeddingsRetriever, Retriever};
///
/// // A toy embedder: how often each of three words occurs.
/// let embedder = embedder_fn(|text: &str| {
///     ["cat", "dog", "fish"].iter().map(|w| text.matches(w).count() as f32).collect()
/// });
/// let corpus = Corpus::from_texts(["a cat and a cat", "a dog", "a fish and a dog"]);
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let retriever = EmbeddingsRetriever::new(embedder, corpus).await?;
/// let hits = retriever.retrieve("dog", 2).await?;
/// assert_eq!(hits[0].text, "a dog");
/// assert!((hits[0].score - 1.0).abs() < 1e-6); // cosine similarity
/// assert_eq!(hits[1].id, "2");
///
/// let dir = tempfile::tempdir()?;
/// retriever.save(dir.path()).await?;
/// let embedder = embedder_fn(|text: &str| {
///     ["cat", "dog", "fish"].iter().map(|w| text.matches(w).count() as f32).collect()
/// });
/// let reopened = EmbeddingsRetriever::open(dir.path(), embedder).await?;
/// assert_eq!(reopened.retrieve("dog", 2).await?, hits);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # }).unwrap();
/// ```
#[derive(Clone)]
pub struct EmbeddingsRetriever {
    embedder: Arc<dyn Embedder>,
    rows: Arc<Rows>,
    normalize: bool,
}

impl std::fmt::Debug for EmbeddingsRetriever {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddingsRetriever")
            .field("len", &self.rows.len())
            .field("dim", &self.rows.dim)
            .field("normalize", &self.normalize)
            .finish_non_exhaustive()
    }
}

/// Called with the number of passages embedded so far and the total.
type ProgressFn = Box<dyn Fn(usize, usize) + Send + Sync>;

/// Configures how an [`EmbeddingsRetriever`] is built; from [`EmbeddingsRetriever::builder`].
pub struct EmbeddingsBuilder {
    embedder: Arc<dyn Embedder>,
    batch_size: usize,
    concurrency: usize,
    normalize: bool,
    display_progress: bool,
    on_progress: Option<ProgressFn>,
}

impl std::fmt::Debug for EmbeddingsBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddingsBuilder")
            .field("batch_size", &self.batch_size)
            .field("concurrency", &self.concurrency)
            .field("normalize", &self.normalize)
            .field("display_progress", &self.display_progress)
            .finish_non_exhaustive()
    }
}

impl EmbeddingsBuilder {
    /// How many texts go to the embedder at once by default (DSPy's `Embedder` batch size).
    pub const DEFAULT_BATCH_SIZE: usize = 200;

    /// How many batches are embedded at the same time by default.
    pub const DEFAULT_CONCURRENCY: usize = 4;

    /// How many texts go to the embedder in one call (default
    /// [`DEFAULT_BATCH_SIZE`](Self::DEFAULT_BATCH_SIZE); at least 1).
    pub fn batch_size(mut self, n: usize) -> Self {
        self.batch_size = n.max(1);
        self
    }

    /// How many batches are embedded at the same time (default
    /// [`DEFAULT_CONCURRENCY`](Self::DEFAULT_CONCURRENCY); at least 1). An
    /// [`LM`](crate::lm::LM) applies its own limits on top.
    pub fn concurrency(mut self, n: usize) -> Self {
        self.concurrency = n.max(1);
        self
    }

    /// Whether vectors (the passages' and the queries') are scaled to unit length, making the
    /// score the cosine similarity (default `true`, as DSPy's `normalize=True`). Without it the
    /// score is the raw dot product.
    pub fn normalize(mut self, on: bool) -> Self {
        self.normalize = on;
        self
    }

    /// Whether to draw a progress bar on stderr while embedding (only when stderr is a
    /// terminal; default off).
    pub fn display_progress(mut self, show: bool) -> Self {
        self.display_progress = show;
        self
    }

    /// Calls `f(done, total)` after each embedded batch, with the passages embedded so far.
    pub fn on_progress(mut self, f: impl Fn(usize, usize) + Send + Sync + 'static) -> Self {
        self.on_progress = Some(Box::new(f));
        self
    }

    /// Embeds the corpus's documents and builds the index; ids, texts and extra fields come from
    /// the documents.
    ///
    /// Fails with [`RetrieveError::EmptyCorpus`] for a corpus without documents,
    /// [`RetrieveError::Embed`] when the embedder fails, [`RetrieveError::Dimension`] when its
    /// vectors do not all have one length, and [`RetrieveError::Other`] when it returns the wrong
    /// number of vectors, an empty vector or a non-finite value.
    pub async fn build(self, corpus: Corpus) -> Result<EmbeddingsRetriever, RetrieveError> {
        let n = corpus.documents.len();
        if n == 0 {
            return Err(RetrieveError::EmptyCorpus {
                path: PathBuf::from("(in-memory corpus)"),
            });
        }
        let mut ids = Vec::with_capacity(n);
        let mut texts = Vec::with_capacity(n);
        let mut extra = Vec::with_capacity(n);
        for doc in corpus.documents {
            ids.push(doc.id);
            texts.push(doc.text);
            extra.push(doc.extra);
        }
        let span = tracing::debug_span!("retrieve.embeddings.build", passages = n);
        let vectors = self.embed_all(&ids, &texts).instrument(span).await?;
        let dim = vectors.len() / n;
        Ok(EmbeddingsRetriever {
            embedder: self.embedder,
            rows: Arc::new(Rows {
                dim,
                vectors,
                ids,
                texts,
                extra,
            }),
            normalize: self.normalize,
        })
    }

    /// Builds the index over `texts`, whose ids are their positions (`"0"`, `"1"`, …).
    pub async fn build_texts<S: Into<String>>(
        self,
        texts: impl IntoIterator<Item = S>,
    ) -> Result<EmbeddingsRetriever, RetrieveError> {
        self.build(Corpus::from_texts(texts)).await
    }

    /// Embeds every text in batches, checking and normalizing each vector into one buffer.
    async fn embed_all(&self, ids: &[String], texts: &[String]) -> Result<Vec<f32>, RetrieveError> {
        let total = texts.len();
        let bar = self.progress_bar(total);
        let embedder = &self.embedder;
        let mut batches = futures_util::stream::iter(
            texts
                .chunks(self.batch_size)
                .map(|chunk| async move { (chunk.len(), embedder.embed(chunk).await) }),
        )
        .buffered(self.concurrency);
        let mut buffer: Vec<f32> = Vec::new();
        let mut dim = 0;
        let mut done = 0;
        while let Some((asked, result)) = batches.next().await {
            let vectors = result?;
            if vectors.len() != asked {
                return Err(other(format!(
                    "the embedder returned {} vectors for a batch of {asked} texts (passages {} to {})",
                    vectors.len(),
                    done,
                    done + asked - 1
                )));
            }
            for vector in vectors {
                let id = &ids[done];
                let what = || format!("passage `{id}`");
                if dim == 0 {
                    if vector.is_empty() {
                        return Err(other(format!(
                            "the embedder returned an empty vector for {}",
                            what()
                        )));
                    }
                    dim = vector.len();
                    buffer.reserve_exact(dim * total);
                }
                check_vector(&vector, dim, what)?;
                push_row(&mut buffer, &vector, self.normalize);
                done += 1;
            }
            if let Some(f) = &self.on_progress {
                f(done, total);
            }
            if let Some(bar) = &bar {
                bar.set_position(done as u64);
            }
        }
        if let Some(bar) = bar {
            bar.finish_and_clear();
        }
        Ok(buffer)
    }

    fn progress_bar(&self, total: usize) -> Option<indicatif::ProgressBar> {
        use std::io::IsTerminal;
        if !self.display_progress || !std::io::stderr().is_terminal() {
            return None;
        }
        let bar = indicatif::ProgressBar::with_draw_target(
            Some(total as u64),
            indicatif::ProgressDrawTarget::stderr(),
        );
        if let Ok(style) = indicatif::ProgressStyle::with_template(
            "Embedding: {percent:>3}%|{wide_bar}| {pos}/{len} [{elapsed}<{eta}]",
        ) {
            bar.set_style(style);
        }
        Some(bar)
    }
}

impl EmbeddingsRetriever {
    /// A builder embedding with `embedder`: batches of
    /// [`DEFAULT_BATCH_SIZE`](EmbeddingsBuilder::DEFAULT_BATCH_SIZE) texts,
    /// [`DEFAULT_CONCURRENCY`](EmbeddingsBuilder::DEFAULT_CONCURRENCY) at a time, normalized
    /// vectors, no progress bar.
    pub fn builder(embedder: impl Embedder + 'static) -> EmbeddingsBuilder {
        EmbeddingsBuilder {
            embedder: Arc::new(embedder),
            batch_size: EmbeddingsBuilder::DEFAULT_BATCH_SIZE,
            concurrency: EmbeddingsBuilder::DEFAULT_CONCURRENCY,
            normalize: true,
            display_progress: false,
            on_progress: None,
        }
    }

    /// Embeds `corpus` with the defaults of [`builder`](Self::builder).
    pub async fn new(
        embedder: impl Embedder + 'static,
        corpus: Corpus,
    ) -> Result<Self, RetrieveError> {
        Self::builder(embedder).build(corpus).await
    }

    /// How many passages the index holds.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// Whether the index holds no passages (never, for one that was built or opened).
    pub fn is_empty(&self) -> bool {
        self.rows.len() == 0
    }

    /// The dimension of the index's vectors.
    pub fn dim(&self) -> usize {
        self.rows.dim
    }

    /// Whether vectors are normalized (scores are cosine similarities).
    pub fn normalized(&self) -> bool {
        self.normalize
    }

    /// The passage ids, in row order.
    pub fn ids(&self) -> &[String] {
        &self.rows.ids
    }

    /// Replaces the embedder used for queries (the index's vectors stay as they are).
    pub fn with_embedder(mut self, embedder: impl Embedder + 'static) -> Self {
        self.embedder = Arc::new(embedder);
        self
    }

    /// Embeds a probe text and checks that the embedder's vectors have the index's dimension
    /// ([`RetrieveError::Dimension`] if not): worth doing once after [`open`](Self::open)ing an
    /// index with an embedder that may not be the one it was built with.
    pub async fn check_embedder(&self) -> Result<(), RetrieveError> {
        self.embed_query("dimension check").await.map(|_| ())
    }

    /// The `k` passages whose vectors are most similar to the query's, best first; ties go to
    /// the earlier row. The score is the cosine similarity (the dot product, without
    /// normalization).
    pub async fn search(&self, query: &str, k: usize) -> Result<Vec<Passage>, RetrieveError> {
        if k == 0 {
            return Ok(Vec::new());
        }
        let vector = self.embed_query(query).await?;
        self.search_vector(&vector, k).await
    }

    /// The `k` passages most similar to an already embedded query (normalized here when the
    /// index normalizes). A vector of another dimension is [`RetrieveError::Dimension`].
    pub async fn search_vector(
        &self,
        query: &[f32],
        k: usize,
    ) -> Result<Vec<Passage>, RetrieveError> {
        check_vector(query, self.rows.dim, || "the query".to_string())?;
        let k = k.min(self.rows.len());
        if k == 0 {
            return Ok(Vec::new());
        }
        let mut q = Vec::with_capacity(query.len());
        push_row(&mut q, query, self.normalize);
        let hits = if self.rows.len() * self.rows.dim >= BLOCKING_THRESHOLD {
            let rows = Arc::clone(&self.rows);
            off_runtime(move || Ok(top_k(&rows.vectors, rows.dim, &q, k))).await?
        } else {
            top_k(&self.rows.vectors, self.rows.dim, &q, k)
        };
        Ok(hits
            .into_iter()
            .map(|hit| self.rows.passage(hit.row, hit.score))
            .collect())
    }

    /// The query's vector, checked.
    async fn embed_query(&self, query: &str) -> Result<Vec<f32>, RetrieveError> {
        let texts = [query.to_string()];
        let mut vectors = self.embedder.embed(&texts).await?;
        if vectors.len() != 1 {
            return Err(other(format!(
                "the embedder returned {} vectors for one query",
                vectors.len()
            )));
        }
        let vector = vectors.pop().unwrap_or_default();
        check_vector(&vector, self.rows.dim, || "the query".to_string())?;
        Ok(vector)
    }

    /// Writes the index to `dir` (created if missing; an index already there is replaced), off
    /// the async runtime. The metadata file is written last, so an interrupted save leaves a
    /// directory that [`open`](Self::open) refuses rather than a mix of two indexes.
    pub async fn save(&self, dir: impl AsRef<Path>) -> Result<(), RetrieveError> {
        let dir = dir.as_ref().to_path_buf();
        let rows = Arc::clone(&self.rows);
        let normalize = self.normalize;
        off_runtime(move || write_index(&dir, &rows, normalize)).await
    }

    /// Opens an index saved by [`save`](Self::save), off the async runtime; `embedder` embeds
    /// the queries and should be the one the index was built with.
    ///
    /// Every file is checked: a missing directory or metadata file is [`RetrieveError::NoIndex`];
    /// metadata that is not JSON, of another format or a newer version, vectors that are missing,
    /// truncated, of another dimension or count, non-finite or (for a normalized index) not of
    /// unit length, and passages that are missing, malformed or not one per vector are
    /// [`RetrieveError::CorruptIndex`] naming the file.
    pub async fn open(
        dir: impl AsRef<Path>,
        embedder: impl Embedder + 'static,
    ) -> Result<Self, RetrieveError> {
        let dir = dir.as_ref().to_path_buf();
        let (rows, normalize) = off_runtime(move || read_index(&dir)).await?;
        Ok(EmbeddingsRetriever {
            embedder: Arc::new(embedder),
            rows: Arc::new(rows),
            normalize,
        })
    }
}

impl Retriever for EmbeddingsRetriever {
    fn retrieve<'a>(
        &'a self,
        query: &'a str,
        k: usize,
    ) -> BoxFuture<'a, Result<Vec<Passage>, RetrieveError>> {
        let span = tracing::debug_span!("retrieve.embeddings", k, rows = self.rows.len());
        Box::pin(self.search(query, k).instrument(span))
    }
}

fn other(message: String) -> RetrieveError {
    RetrieveError::Other {
        retriever: NAME.to_string(),
        message,
    }
}

/// Checks a vector's length against `dim` and its values for finiteness.
fn check_vector(
    vector: &[f32],
    dim: usize,
    what: impl Fn() -> String,
) -> Result<(), RetrieveError> {
    if vector.len() != dim {
        return Err(RetrieveError::Dimension {
            what: what(),
            expected: dim,
            got: vector.len(),
        });
    }
    if let Some(i) = vector.iter().position(|x| !x.is_finite()) {
        return Err(other(format!(
            "{} has a non-finite value ({}) at position {i}",
            what(),
            vector[i]
        )));
    }
    Ok(())
}

/// Appends `vector` to `buffer`, scaled to unit length when `normalize` (DSPy's `v / max(‖v‖,
/// 1e-10)`: a zero vector stays zero).
fn push_row(buffer: &mut Vec<f32>, vector: &[f32], normalize: bool) {
    if !normalize {
        buffer.extend_from_slice(vector);
        return;
    }
    let norm = norm(vector).max(MIN_NORM);
    buffer.extend(vector.iter().map(|&x| (f64::from(x) / norm) as f32));
}

fn norm(vector: &[f32]) -> f64 {
    vector
        .iter()
        .map(|&x| f64::from(x) * f64::from(x))
        .sum::<f64>()
        .sqrt()
}

/// The dot product, in eight independent lanes so the compiler can vectorize it.
fn dot(a: &[f32], b: &[f32]) -> f32 {
    const LANES: usize = 8;
    let mut acc = [0.0f32; LANES];
    let (a_chunks, b_chunks) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let (a_rest, b_rest) = (a_chunks.remainder(), b_chunks.remainder());
    for (x, y) in a_chunks.zip(b_chunks) {
        for ((acc, x), y) in acc.iter_mut().zip(x).zip(y) {
            *acc += x * y;
        }
    }
    let mut sum = (acc[0] + acc[4]) + (acc[1] + acc[5]) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
    for (x, y) in a_rest.iter().zip(b_rest) {
        sum += x * y;
    }
    sum
}

/// A scored row. Ordered worst first: a lower score, then (for equal scores) a later row, is
/// "greater", so a max-heap of hits keeps the worst of the best on top.
#[derive(Debug, Clone, Copy)]
struct Hit {
    score: f32,
    row: usize,
}

impl Ord for Hit {
    fn cmp(&self, other: &Self) -> Ordering {
        other
            .score
            .total_cmp(&self.score)
            .then(self.row.cmp(&other.row))
    }
}

impl PartialOrd for Hit {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Hit {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Hit {}

/// The `k` rows of `vectors` with the largest dot product with `query`, best first (equal scores
/// by row), selected with a heap of `k` hits.
fn top_k(vectors: &[f32], dim: usize, query: &[f32], k: usize) -> Vec<Hit> {
    if k == 0 || dim == 0 {
        return Vec::new();
    }
    let mut heap: BinaryHeap<Hit> = BinaryHeap::with_capacity(k + 1);
    for (row, vector) in vectors.chunks_exact(dim).enumerate() {
        let hit = Hit {
            score: dot(vector, query),
            row,
        };
        if heap.len() < k {
            heap.push(hit);
        } else if let Some(mut worst) = heap.peek_mut()
            && hit < *worst
        {
            *worst = hit;
        }
    }
    heap.into_sorted_vec()
}

/// Runs blocking work on tokio's blocking pool when inside a runtime, in place otherwise.
async fn off_runtime<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, RetrieveError> + Send + 'static,
) -> Result<T, RetrieveError> {
    match tokio::runtime::Handle::try_current() {
        Ok(handle) => handle
            .spawn_blocking(f)
            .await
            .unwrap_or_else(|e| Err(other(format!("the blocking task failed: {e}")))),
        Err(_) => f(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lm::embedder_fn;
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicUsize, Ordering as AtomicOrdering};

    /// Counts of three words: a tiny, predictable embedding.
    fn words(text: &str) -> Vec<f32> {
        ["cat", "dog", "fish"]
            .iter()
            .map(|w| text.matches(w).count() as f32)
            .collect()
    }

    fn corpus() -> Corpus {
        Corpus::from_texts(["cat cat", "dog", "fish dog", "cat dog fish", "nothing here"])
    }

    async fn built() -> EmbeddingsRetriever {
        EmbeddingsRetriever::new(embedder_fn(words), corpus())
            .await
            .unwrap()
    }

    #[test]
    fn dot_matches_the_naive_sum_for_every_length() {
        for len in 0..40 {
            let a: Vec<f32> = (0..len).map(|i| (i as f32 * 0.37).sin()).collect();
            let b: Vec<f32> = (0..len).map(|i| (i as f32 * 0.11).cos()).collect();
            let naive: f64 = a
                .iter()
                .zip(&b)
                .map(|(x, y)| f64::from(*x) * f64::from(*y))
                .sum();
            assert!((f64::from(dot(&a, &b)) - naive).abs() < 1e-4, "len {len}");
        }
    }

    #[test]
    fn top_k_agrees_with_a_full_sort_and_breaks_ties_by_row() {
        // 50 rows of dimension 3 with many equal scores.
        let dim = 3;
        let vectors: Vec<f32> = (0..50)
            .flat_map(|i| [(i % 7) as f32, (i % 3) as f32, 1.0])
            .collect();
        let query = [1.0, 0.5, 0.0];
        for k in [1, 5, 17, 50, 80] {
            let mut all: Vec<(f32, usize)> = vectors
                .chunks_exact(dim)
                .enumerate()
                .map(|(row, v)| (dot(v, &query), row))
                .collect();
            all.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
            all.truncate(k);
            let got: Vec<(f32, usize)> = top_k(&vectors, dim, &query, k)
                .into_iter()
                .map(|h| (h.score, h.row))
                .collect();
            assert_eq!(got, all, "k = {k}");
        }
        assert!(top_k(&vectors, dim, &query, 0).is_empty());
    }

    #[tokio::test]
    async fn ranks_by_cosine_similarity_with_ids_and_scores() {
        let r = built().await;
        assert_eq!((r.len(), r.dim(), r.normalized()), (5, 3, true));
        let hits = r.search("dog", 3).await.unwrap();
        let ids: Vec<_> = hits.iter().map(|p| p.id.as_str()).collect();
        // "dog" is [0,1,0]: row 1 exactly, then rows 2 (1/√2) and 3 (1/√3).
        assert_eq!(ids, ["1", "2", "3"]);
        assert!((hits[0].score - 1.0).abs() < 1e-6);
        assert!((hits[1].score - std::f32::consts::FRAC_1_SQRT_2).abs() < 1e-6);
        assert!((hits[2].score - 1.0 / 3f32.sqrt()).abs() < 1e-6);
        // k beyond the corpus gives every row; the zero vector scores 0 and comes last.
        let all = r.search("dog", 50).await.unwrap();
        assert_eq!(all.len(), 5);
        assert_eq!(all[4].id, "4");
        assert_eq!(all[4].score, 0.0);
        assert!(r.search("dog", 0).await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn without_normalization_scores_are_raw_dot_products() {
        let r = EmbeddingsRetriever::builder(embedder_fn(words))
            .normalize(false)
            .build(corpus())
            .await
            .unwrap();
        let hits = r.search("cat cat cat", 2).await.unwrap();
        assert_eq!(hits[0].id, "0");
        assert_eq!(hits[0].score, 6.0);
        assert_eq!(hits[1].score, 3.0);
    }

    #[tokio::test]
    async fn documents_keep_their_ids_and_extra_fields() {
        let mut corpus = corpus();
        corpus.documents[1].id = "doggo".into();
        corpus.documents[1]
            .extra
            .insert("title".into(), Value::from("Dogs"));
        let r = EmbeddingsRetriever::new(embedder_fn(words), corpus)
            .await
            .unwrap();
        let hit = &r.search("dog", 1).await.unwrap()[0];
        assert_eq!(hit.id, "doggo");
        assert_eq!(hit.extra["title"], "Dogs");
        assert_eq!(r.ids()[1], "doggo");
    }

    #[tokio::test]
    async fn embeds_in_batches_with_progress() {
        let calls = Arc::new(AtomicUsize::new(0));
        let seen = Arc::new(Mutex::new(Vec::new()));
        struct Counting(Arc<AtomicUsize>);
        impl Embedder for Counting {
            fn embed<'a>(
                &'a self,
                texts: &'a [String],
            ) -> BoxFuture<'a, Result<Vec<Vec<f32>>, crate::lm::LmError>> {
                self.0.fetch_add(1, AtomicOrdering::SeqCst);
                assert!(texts.len() <= 2, "batch of {}", texts.len());
                Box::pin(std::future::ready(Ok(texts
                    .iter()
                    .map(|t| words(t))
                    .collect())))
            }
        }
        let progress = Arc::clone(&seen);
        let r = EmbeddingsRetriever::builder(Counting(Arc::clone(&calls)))
            .batch_size(2)
            .concurrency(2)
            .on_progress(move |done, total| progress.lock().unwrap().push((done, total)))
            .build(corpus())
            .await
            .unwrap();
        // Three batches for five texts, then one call per query.
        assert_eq!(calls.load(AtomicOrdering::SeqCst), 3);
        assert_eq!(*seen.lock().unwrap(), [(2, 5), (4, 5), (5, 5)]);
        // Batches run concurrently but the rows stay in corpus order.
        assert_eq!(r.search("fish dog", 1).await.unwrap()[0].id, "2");
        assert_eq!(calls.load(AtomicOrdering::SeqCst), 4);
    }

    #[tokio::test]
    async fn bad_embedder_output_and_bad_corpora_are_typed_errors() {
        let empty = EmbeddingsRetriever::new(embedder_fn(words), Corpus::default()).await;
        assert!(
            matches!(empty, Err(RetrieveError::EmptyCorpus { .. })),
            "{empty:?}"
        );

        let ragged = embedder_fn(|t: &str| {
            if t.contains("fish") {
                vec![1.0; 4]
            } else {
                words(t)
            }
        });
        let err = EmbeddingsRetriever::new(ragged, corpus())
            .await
            .unwrap_err();
        match &err {
            RetrieveError::Dimension {
                what,
                expected,
                got,
            } => {
                assert_eq!((what.as_str(), *expected, *got), ("passage `2`", 3, 4));
            }
            other => panic!("{other:?}"),
        }

        let nan = embedder_fn(|t: &str| {
            if t == "dog" {
                vec![f32::NAN; 3]
            } else {
                words(t)
            }
        });
        let err = EmbeddingsRetriever::new(nan, corpus()).await.unwrap_err();
        assert!(
            err.to_string()
                .contains("passage `1` has a non-finite value"),
            "{err}"
        );

        let hollow = embedder_fn(|_: &str| Vec::new());
        let err = EmbeddingsRetriever::new(hollow, corpus())
            .await
            .unwrap_err();
        assert!(err.to_string().contains("empty vector"), "{err}");

        struct Short;
        impl Embedder for Short {
            fn embed<'a>(
                &'a self,
                texts: &'a [String],
            ) -> BoxFuture<'a, Result<Vec<Vec<f32>>, crate::lm::LmError>> {
                let n = texts.len().saturating_sub(1);
                Box::pin(std::future::ready(Ok(vec![vec![1.0]; n])))
            }
        }
        let err = EmbeddingsRetriever::new(Short, corpus()).await.unwrap_err();
        assert!(
            err.to_string()
                .contains("returned 4 vectors for a batch of 5"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn a_query_of_the_wrong_dimension_is_a_dimension_error() {
        let r = built()
            .await
            .with_embedder(embedder_fn(|_: &str| vec![1.0; 5]));
        let err = r.search("dog", 3).await.unwrap_err();
        assert!(
            matches!(
                &err,
                RetrieveError::Dimension { what, expected: 3, got: 5 } if what == "the query"
            ),
            "{err:?}"
        );
        assert!(matches!(
            r.check_embedder().await,
            Err(RetrieveError::Dimension { .. })
        ));
        let err = built()
            .await
            .search_vector(&[1.0, 2.0], 1)
            .await
            .unwrap_err();
        assert!(matches!(err, RetrieveError::Dimension { got: 2, .. }));
        let err = built()
            .await
            .search_vector(&[1.0, f32::INFINITY, 0.0], 1)
            .await
            .unwrap_err();
        assert!(err.to_string().contains("non-finite"), "{err}");
    }

    #[tokio::test]
    async fn big_indexes_are_scored_off_the_runtime_with_the_same_result() {
        // 20,000 × 16 rows is above the blocking threshold.
        let n = 20_000;
        let embed = |t: &str| -> Vec<f32> {
            let seed: u32 = t
                .bytes()
                .fold(7, |h, b| h.wrapping_mul(31).wrapping_add(b.into()));
            (0..16u32)
                .map(|i| ((seed.wrapping_mul(i + 1) % 1000) as f32) - 500.0)
                .collect()
        };
        assert!(n * 16 >= BLOCKING_THRESHOLD);
        let r = EmbeddingsRetriever::builder(embedder_fn(embed))
            .build_texts((0..n).map(|i| format!("passage {i}")))
            .await
            .unwrap();
        let hits = r.search("passage 1234", 3).await.unwrap();
        assert_eq!(hits[0].id, "1234");
        assert!((hits[0].score - 1.0).abs() < 1e-5);
        // The same scan in place agrees.
        let mut q = Vec::new();
        push_row(&mut q, &embed("passage 1234"), true);
        let direct = top_k(&r.rows.vectors, 16, &q, 3);
        let rows: Vec<usize> = direct.iter().map(|h| h.row).collect();
        let ids: Vec<String> = hits.iter().map(|p| p.id.clone()).collect();
        assert_eq!(ids, rows.iter().map(|r| r.to_string()).collect::<Vec<_>>());
    }

    #[tokio::test]
    async fn saves_and_opens_the_same_index() {
        let mut corpus = corpus();
        corpus.documents[0]
            .extra
            .insert("url".into(), Value::from("https://example.invalid/cat"));
        let r = EmbeddingsRetriever::new(embedder_fn(words), corpus)
            .await
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nested/index");
        r.save(&path).await.unwrap();
        let size = std::fs::metadata(path.join(VECTORS_FILE)).unwrap().len();
        assert_eq!(size, 5 * 3 * 4);
        let meta: Value =
            serde_json::from_str(&std::fs::read_to_string(path.join(METADATA_FILE)).unwrap())
                .unwrap();
        assert_eq!(meta["format"], FORMAT);
        assert_eq!(meta["version"], 1);
        assert_eq!(meta["dim"], 3);
        assert_eq!(meta["count"], 5);
        // The passages file is a corpus.
        let back = super::super::read_jsonl(path.join(PASSAGES_FILE), Default::default()).unwrap();
        assert_eq!(back.documents.len(), 5);
        assert_eq!(
            back.documents[0].extra["url"],
            "https://example.invalid/cat"
        );

        let opened = EmbeddingsRetriever::open(&path, embedder_fn(words))
            .await
            .unwrap();
        assert_eq!((opened.len(), opened.dim()), (5, 3));
        assert_eq!(opened.rows.vectors, r.rows.vectors);
        for q in ["cat", "dog fish", "fish"] {
            assert_eq!(
                opened.search(q, 5).await.unwrap(),
                r.search(q, 5).await.unwrap()
            );
        }
        // Saving again over the same directory replaces it.
        let smaller = EmbeddingsRetriever::builder(embedder_fn(words))
            .normalize(false)
            .build_texts(["fish"])
            .await
            .unwrap();
        smaller.save(&path).await.unwrap();
        let opened = EmbeddingsRetriever::open(&path, embedder_fn(words))
            .await
            .unwrap();
        assert_eq!((opened.len(), opened.normalized()), (1, false));
        assert!(!path.join(format!("{VECTORS_FILE}.tmp")).exists());
    }

    async fn saved() -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("index");
        built().await.save(&path).await.unwrap();
        (dir, path)
    }

    async fn open_err(path: &Path) -> RetrieveError {
        EmbeddingsRetriever::open(path, embedder_fn(words))
            .await
            .unwrap_err()
    }

    fn edit_meta(path: &Path, edit: impl FnOnce(&mut Value)) {
        let file = path.join(METADATA_FILE);
        let mut meta: Value =
            serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
        edit(&mut meta);
        std::fs::write(&file, meta.to_string()).unwrap();
    }

    #[tokio::test]
    async fn missing_directories_and_metadata_are_no_index() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope");
        let err = open_err(&missing).await;
        assert!(
            matches!(&err, RetrieveError::NoIndex { path, .. } if path == &missing),
            "{err:?}"
        );
        assert!(err.to_string().contains("does not exist"), "{err}");

        let file = dir.path().join("file");
        std::fs::write(&file, "x").unwrap();
        assert!(matches!(
            open_err(&file).await,
            RetrieveError::NoIndex { .. }
        ));

        let err = open_err(dir.path()).await;
        assert!(err.to_string().contains(METADATA_FILE), "{err}");
        assert!(matches!(err, RetrieveError::NoIndex { .. }));
    }

    #[tokio::test]
    async fn bad_metadata_is_corrupt_naming_the_file() {
        type Edit = Box<dyn FnOnce(&mut Value)>;
        let cases: Vec<(Edit, &str)> = vec![
            (
                Box::new(|m| m["format"] = "faiss".into()),
                "the format is \"faiss\"",
            ),
            (Box::new(|m| m["version"] = 2.into()), "version 2"),
            (Box::new(|m| m["dim"] = 0.into()), "dimension is 0"),
            (Box::new(|m| m["dtype"] = "float16".into()), "float16"),
            (Box::new(|m| m["count"] = "many".into()), "bad metadata"),
        ];
        for (edit, expected) in cases {
            let (_dir, path) = saved().await;
            edit_meta(&path, edit);
            let err = open_err(&path).await;
            match &err {
                RetrieveError::CorruptIndex { path: p, message } => {
                    assert_eq!(p, &path.join(METADATA_FILE));
                    assert!(message.contains(expected), "{message}");
                }
                other => panic!("{other:?}"),
            }
        }
        let (_dir, path) = saved().await;
        std::fs::write(path.join(METADATA_FILE), "{not json").unwrap();
        assert!(open_err(&path).await.to_string().contains("not JSON"));
    }

    #[tokio::test]
    async fn bad_vectors_are_corrupt_naming_the_file() {
        let vectors_path = |p: &Path| p.join(VECTORS_FILE);

        let (_dir, path) = saved().await;
        let bytes = std::fs::read(vectors_path(&path)).unwrap();
        std::fs::write(vectors_path(&path), &bytes[..bytes.len() - 6]).unwrap();
        let err = open_err(&path).await;
        assert!(
            matches!(&err, RetrieveError::CorruptIndex { path: p, message }
                if p == &vectors_path(&path) && message.starts_with("truncated")),
            "{err:?}"
        );

        // The metadata claims another dimension.
        let (_dir, path) = saved().await;
        edit_meta(&path, |m| m["dim"] = 4.into());
        let err = open_err(&path).await;
        assert!(err.to_string().contains("dimension 4"), "{err}");

        let (_dir, path) = saved().await;
        let mut bytes = std::fs::read(vectors_path(&path)).unwrap();
        bytes[4..8].copy_from_slice(&f32::NAN.to_le_bytes());
        std::fs::write(vectors_path(&path), &bytes).unwrap();
        assert!(
            open_err(&path)
                .await
                .to_string()
                .contains("vector 0 has a non-finite value at position 1")
        );

        let (_dir, path) = saved().await;
        let mut bytes = std::fs::read(vectors_path(&path)).unwrap();
        bytes[12..16].copy_from_slice(&3.0f32.to_le_bytes());
        std::fs::write(vectors_path(&path), &bytes).unwrap();
        assert!(
            open_err(&path)
                .await
                .to_string()
                .contains("vector 1 has norm")
        );

        let (_dir, path) = saved().await;
        std::fs::remove_file(vectors_path(&path)).unwrap();
        assert!(open_err(&path).await.to_string().contains("missing"));
    }

    #[tokio::test]
    async fn bad_passages_are_corrupt_naming_the_file() {
        let passages = |p: &Path| p.join(PASSAGES_FILE);
        let rewrite = |p: &Path, f: &dyn Fn(&str) -> String| {
            let text = std::fs::read_to_string(passages(p)).unwrap();
            std::fs::write(passages(p), f(&text)).unwrap();
        };

        let (_dir, path) = saved().await;
        rewrite(&path, &|t| {
            t.lines().take(4).map(|l| format!("{l}\n")).collect()
        });
        let err = open_err(&path).await;
        assert!(
            matches!(&err, RetrieveError::CorruptIndex { path: p, message }
                if p == &passages(&path) && message.contains("4 passages, but the metadata says 5")),
            "{err:?}"
        );

        let (_dir, path) = saved().await;
        rewrite(&path, &|t| {
            format!("{t}{{\"id\": \"x\", \"text\": \"y\"}}\n")
        });
        assert!(
            open_err(&path)
                .await
                .to_string()
                .contains("more than the 5")
        );

        let (_dir, path) = saved().await;
        rewrite(&path, &|t| t.replacen("\"id\":\"0\",", "", 1));
        assert!(
            open_err(&path)
                .await
                .to_string()
                .contains("line 1: no string \"id\"")
        );

        let (_dir, path) = saved().await;
        rewrite(&path, &|t| t.replacen('{', "[", 1));
        assert!(
            open_err(&path)
                .await
                .to_string()
                .contains("line 1: not a JSON object")
        );

        let (_dir, path) = saved().await;
        std::fs::remove_file(passages(&path)).unwrap();
        assert!(
            open_err(&path)
                .await
                .to_string()
                .contains("passages file is missing")
        );
    }

    #[test]
    fn opening_outside_a_runtime_works_in_place() {
        let dir = tempfile::tempdir().unwrap();
        let err = futures_util::FutureExt::now_or_never(EmbeddingsRetriever::open(
            dir.path().join("nope"),
            embedder_fn(words),
        ))
        .expect("no runtime: the read runs in place")
        .unwrap_err();
        assert!(matches!(err, RetrieveError::NoIndex { .. }));
    }
}
