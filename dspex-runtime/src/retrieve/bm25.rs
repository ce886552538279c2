//! The embedded BM25 index: tantivy stores the postings and the documents; the scoring is
//! `bm25s`'s (Lucene's BM25 with exact document lengths), so rankings agree with it.

use super::corpus::{BadLine, Document, JsonlLines, OnBadLine, RawLine, parse_fields};
use super::tokenize::for_each_token;
use super::{Passage, RetrieveError, Retriever};
use futures_util::future::BoxFuture;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::cell::RefCell;
use std::collections::HashMap;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tantivy::columnar::Column;
use tantivy::schema::{
    FAST, Field, IndexRecordOption, STORED, Schema, TextFieldIndexing, TextOptions, Value as _,
};
use tantivy::tokenizer::{PreTokenizedString, Token};
use tantivy::{DocAddress, Index, IndexWriter, ReloadPolicy, Searcher, TantivyDocument, Term};

/// The file that marks a directory as a dspex BM25 index and holds its statistics.
const META_FILE: &str = "dspex-bm25.json";
const FORMAT: &str = "dspex-bm25";
const VERSION: u32 = 1;
const TOKENIZER: &str = "bm25s-en";

/// Documents handed to the tokenizing threads at a time.
const CHUNK: usize = 4096;

/// BM25's two knobs. The defaults are `bm25s`'s (and Lucene's `k1` of 1.2 is one change away).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Bm25Params {
    /// Term-frequency saturation.
    pub k1: f32,
    /// Document-length normalisation, from 0 (none) to 1 (full).
    pub b: f32,
}

impl Default for Bm25Params {
    fn default() -> Self {
        Bm25Params { k1: 1.5, b: 0.75 }
    }
}

/// How [`Bm25Index::build`] builds.
#[derive(Debug, Clone)]
pub struct BuildOptions {
    /// What to do with a line that is not a document (stop, by default).
    pub on_bad_line: OnBadLine,
    /// Threads for tokenizing and indexing; 0 (the default) uses every core.
    pub threads: usize,
    /// Memory for the indexing buffers, in bytes, shared by the threads (at least 15 MB each).
    pub memory_budget: usize,
    /// Show a progress bar on standard error (only when it is a terminal).
    pub progress: bool,
    /// Replace an existing dspex index at the output directory.
    pub overwrite: bool,
    /// The scoring parameters stored with the index.
    pub params: Bm25Params,
}

impl Default for BuildOptions {
    fn default() -> Self {
        BuildOptions {
            on_bad_line: OnBadLine::Stop,
            threads: 0,
            memory_budget: 256 << 20,
            progress: false,
            overwrite: false,
            params: Bm25Params::default(),
        }
    }
}

/// What a build did.
#[derive(Debug, Clone, Serialize)]
pub struct BuildReport {
    /// The index directory.
    pub path: PathBuf,
    /// Documents indexed.
    pub documents: u64,
    /// Tokens indexed (after stopwords).
    pub tokens: u64,
    /// Lines skipped under [`OnBadLine::Skip`].
    pub skipped: Vec<BadLine>,
    /// Wall time of the build.
    #[serde(with = "secs")]
    pub elapsed: Duration,
}

mod secs {
    pub(super) fn serialize<S: serde::Serializer>(
        d: &std::time::Duration,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.serialize_f64(d.as_secs_f64())
    }
}

/// One match: where the document is and its score. [`Bm25Index::passage`] fetches its text.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Hit {
    /// The document's position in the corpus it was built from (counted from 0).
    pub position: u32,
    /// Its BM25 score.
    pub score: f32,
    address: DocAddress,
}

/// The statistics stored beside the tantivy index.
#[derive(Debug, Serialize, Deserialize)]
struct Meta {
    format: String,
    version: u32,
    tokenizer: String,
    params: Bm25Params,
    documents: u64,
    tokens: u64,
}

#[derive(Clone, Copy)]
struct Fields {
    id: Field,
    text: Field,
    extra: Field,
    body: Field,
    len: Field,
    pos: Field,
}

impl Fields {
    fn schema() -> (Schema, Fields) {
        let mut builder = Schema::builder();
        let id = builder.add_text_field("id", STORED);
        let text = builder.add_text_field("text", STORED);
        let extra = builder.add_text_field("extra", STORED);
        let indexing = TextFieldIndexing::default()
            .set_tokenizer("raw")
            .set_index_option(IndexRecordOption::WithFreqs)
            .set_fieldnorms(false);
        let body = builder.add_text_field(
            "body",
            TextOptions::default().set_indexing_options(indexing),
        );
        let len = builder.add_u64_field("len", FAST);
        let pos = builder.add_u64_field("pos", FAST);
        let fields = Fields {
            id,
            text,
            extra,
            body,
            len,
            pos,
        };
        (builder.build(), fields)
    }

    fn of(schema: &Schema) -> Result<Fields, String> {
        let get = |name: &str| {
            schema
                .get_field(name)
                .map_err(|_| format!("its schema has no `{name}` field"))
        };
        Ok(Fields {
            id: get("id")?,
            text: get("text")?,
            extra: get("extra")?,
            body: get("body")?,
            len: get("len")?,
            pos: get("pos")?,
        })
    }
}

/// Per segment: what scoring needs in memory, by tantivy doc id.
struct SegmentData {
    /// `k1 * (1 - b + b * len / avgdl)`.
    norms: Vec<f32>,
    /// The document's position in the corpus.
    positions: Vec<u32>,
}

struct Inner {
    path: Option<PathBuf>,
    searcher: Searcher,
    fields: Fields,
    segments: Vec<SegmentData>,
    params: Bm25Params,
    documents: u64,
    tokens: u64,
}

/// A BM25 full-text index, on disk (built by [`Bm25Index::build`] or `dspex index build`, opened by
/// [`Bm25Index::open`]) or in memory ([`Bm25Index::from_documents`]).
///
/// Text is tokenized as `bm25s` does ([`super::tokenize`]) and scored as `bm25s` scores by default:
/// Lucene's BM25 with `idf = ln(1 + (N - df + 0.5) / (df + 0.5))` and the exact token count of each
/// document (tantivy's own scorer rounds lengths to a byte). Passages with equal scores come in
/// corpus order, whatever the number of build threads; `bm25s` leaves ties to numpy's
/// `argpartition` and a reversed `argsort`, so its order among equal scores can differ while the
/// scores agree. Cloning shares the index.
///
/// ```
/// use dspex_runtime::retrieve::{Bm25Index, Corpus};
///
/// let corpus = Corpus::from_texts([
///     "Ada Lovelace wrote the first program.",
///     "Alan Turing described a universal machine.",
///     "Grace Hopper wrote the first compiler.",
/// ]);
/// let index = Bm25Index::from_documents(corpus.documents)?;
/// let hits = index.search("who wrote the first compiler", 2)?;
/// assert_eq!(hits[0].id, "2");
/// assert_eq!(hits.len(), 2);
/// # Ok::<(), dspex_runtime::retrieve::RetrieveError>(())
/// ```
#[derive(Clone)]
pub struct Bm25Index {
    inner: Arc<Inner>,
    /// From this many documents up, `retrieve` searches on the blocking pool.
    blocking_from: u64,
}

impl std::fmt::Debug for Bm25Index {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bm25Index")
            .field("path", &self.inner.path)
            .field("documents", &self.inner.documents)
            .field("params", &self.inner.params)
            .finish()
    }
}

impl Bm25Index {
    /// Builds an index from a JSONL corpus (`{"id", "text", …}` per line; see
    /// [`super::read_jsonl`]) into the directory `out`, on every core. The index is written
    /// beside `out` and moved into place when complete, so `out` never holds half an index. Bad
    /// lines stop the build or are skipped and reported, as `options` says. This blocks: in async
    /// code use [`Bm25Index::build_async`].
    pub fn build(
        corpus: impl AsRef<Path>,
        out: impl AsRef<Path>,
        options: &BuildOptions,
    ) -> Result<BuildReport, RetrieveError> {
        let corpus = corpus.as_ref();
        let size = std::fs::metadata(corpus)
            .map_err(|e| RetrieveError::io(corpus, e))?
            .len();
        let lines = JsonlLines::open(corpus)?;
        build_into(
            lines,
            Some((corpus, size)),
            out.as_ref(),
            options,
            |bad: BadLine| bad.into_error(corpus),
        )
    }

    /// [`Bm25Index::build`] on tokio's blocking pool, so the async runtime keeps running.
    pub async fn build_async(
        corpus: impl Into<PathBuf>,
        out: impl Into<PathBuf>,
        options: BuildOptions,
    ) -> Result<BuildReport, RetrieveError> {
        let (corpus, out) = (corpus.into(), out.into());
        let path = out.clone();
        tokio::task::spawn_blocking(move || Bm25Index::build(corpus, out, &options))
            .await
            .map_err(|e| RetrieveError::Build {
                path,
                message: format!("the build task failed: {e}"),
            })?
    }

    /// Builds an index of `documents` in memory (nothing is written to disk), with the default
    /// parameters. An empty list is [`RetrieveError::EmptyCorpus`].
    pub fn from_documents(
        documents: impl IntoIterator<Item = Document>,
    ) -> Result<Bm25Index, RetrieveError> {
        let index = Index::create_in_ram(Fields::schema().0);
        let path = PathBuf::from("(in memory)");
        let writer = writer(&index, 1, BuildOptions::default().memory_budget, &path)?;
        let mut sink = Sink::new(writer, &path);
        for doc in documents {
            sink.add(Prepared::from(doc))?;
        }
        let (documents, tokens) = sink.finish(&index, &path)?;
        if documents == 0 {
            return Err(RetrieveError::EmptyCorpus { path });
        }
        let meta = Meta::new(BuildOptions::default().params, documents, tokens);
        Bm25Index::from_tantivy(index, None, meta, &path)
    }

    /// Opens an index built by [`Bm25Index::build`]. Reads only the per-document lengths and
    /// positions into memory; postings and texts stay on disk (memory-mapped).
    ///
    /// Every file's checksum is verified first (a sequential read of the index, a few
    /// milliseconds for 100,000 passages), so a damaged index is a
    /// [`RetrieveError::CorruptIndex`] here rather than a failure in the middle of a search.
    pub fn open(dir: impl AsRef<Path>) -> Result<Bm25Index, RetrieveError> {
        let dir = dir.as_ref();
        let meta = read_meta(dir)?;
        // Guarded too: tantivy panics on a file shorter than its footer while checking it.
        let index = guarded(dir, || Index::open_in_dir(dir).map_err(|e| corrupt(dir, e)))?;
        let damaged = guarded(dir, || {
            index.validate_checksum().map_err(|e| corrupt(dir, e))
        })?;
        if !damaged.is_empty() {
            let mut names: Vec<String> = damaged.iter().map(|p| p.display().to_string()).collect();
            names.sort();
            return Err(corrupt(
                dir,
                format!("checksum mismatch in {}", names.join(", ")),
            ));
        }
        guarded(dir, || {
            Bm25Index::from_tantivy(index, Some(dir.to_path_buf()), meta, dir)
        })
    }

    fn from_tantivy(
        index: Index,
        path: Option<PathBuf>,
        meta: Meta,
        shown: &Path,
    ) -> Result<Bm25Index, RetrieveError> {
        let fields = Fields::of(&index.schema()).map_err(|m| corrupt(shown, m))?;
        let reader = index
            .reader_builder()
            .reload_policy(ReloadPolicy::Manual)
            .try_into()
            .map_err(|e| corrupt(shown, e))?;
        let searcher = reader.searcher();
        if searcher.num_docs() != meta.documents {
            return Err(corrupt(
                shown,
                format!(
                    "{META_FILE} says {} documents, the index holds {}",
                    meta.documents,
                    searcher.num_docs()
                ),
            ));
        }
        let params = meta.params;
        let avgdl = meta.tokens as f32 / meta.documents.max(1) as f32;
        let mut segments = Vec::new();
        for segment in searcher.segment_readers() {
            let column = |field: Field| -> Result<Column<u64>, RetrieveError> {
                let name = index.schema().get_field_name(field).to_string();
                segment
                    .fast_fields()
                    .u64(&name)
                    .map_err(|e| corrupt(shown, e))
            };
            let (lens, positions) = (column(fields.len)?, column(fields.pos)?);
            let max_doc = segment.max_doc();
            let mut data = SegmentData {
                norms: Vec::with_capacity(max_doc as usize),
                positions: Vec::with_capacity(max_doc as usize),
            };
            for doc in 0..max_doc {
                let len = lens.first(doc).unwrap_or(0) as f32;
                data.norms.push(norm(params, len, avgdl));
                data.positions
                    .push(positions.first(doc).unwrap_or(u64::from(doc)) as u32);
            }
            segments.push(data);
        }
        Ok(Bm25Index {
            blocking_from: BLOCKING_DOCUMENTS,
            inner: Arc::new(Inner {
                path,
                searcher,
                fields,
                segments,
                params,
                documents: meta.documents,
                tokens: meta.tokens,
            }),
        })
    }

    /// Searches through [`Retriever::retrieve`] run on tokio's blocking pool when the index holds
    /// at least `documents` documents ([`BLOCKING_DOCUMENTS`] by default; 0 always, `u64::MAX`
    /// never).
    pub fn blocking_from(mut self, documents: u64) -> Self {
        self.blocking_from = documents;
        self
    }

    /// The directory the index was opened from (none for an in-memory index).
    pub fn path(&self) -> Option<&Path> {
        self.inner.path.as_deref()
    }

    /// How many documents the index holds.
    pub fn len(&self) -> u64 {
        self.inner.documents
    }

    /// Whether the index holds no documents (a built index never does).
    pub fn is_empty(&self) -> bool {
        self.inner.documents == 0
    }

    /// The scoring parameters.
    pub fn params(&self) -> Bm25Params {
        self.inner.params
    }

    /// The `k` best passages for `query`, best first, with their texts. Documents that share no
    /// token with the query are never returned, so there may be fewer than `k`. Equal scores are
    /// ordered by corpus position.
    pub fn search(&self, query: &str, k: usize) -> Result<Vec<Passage>, RetrieveError> {
        self.hits(query, k)?
            .into_iter()
            .map(|hit| self.passage(&hit))
            .collect()
    }

    /// The `k` best matches for `query` without their texts (what [`Bm25Index::search`] ranks).
    pub fn hits(&self, query: &str, k: usize) -> Result<Vec<Hit>, RetrieveError> {
        guarded(&self.shown_path(), || self.hits_unguarded(query, k))
    }

    fn hits_unguarded(&self, query: &str, k: usize) -> Result<Vec<Hit>, RetrieveError> {
        let inner = &*self.inner;
        if k == 0 {
            return Ok(Vec::new());
        }
        let terms = query_terms(query);
        if terms.is_empty() {
            return Ok(Vec::new());
        }
        let readers = inner.searcher.segment_readers();
        let mut inverted = Vec::with_capacity(readers.len());
        for segment in readers {
            inverted.push(
                segment
                    .inverted_index(inner.fields.body)
                    .map_err(|e| self.search_error(e))?,
            );
        }
        let n = inner.documents as f64;
        SCRATCH.with_borrow_mut(|scratch| {
            scratch.candidates.clear();
            // Per term: its term info in each segment and its idf over the whole index.
            let mut infos = Vec::with_capacity(terms.len());
            for (token, count) in &terms {
                let term = Term::from_field_text(inner.fields.body, token);
                let mut df = 0u64;
                let mut per_segment = Vec::with_capacity(inverted.len());
                for reader in &inverted {
                    let info = reader
                        .get_term_info(&term)
                        .map_err(|e| self.search_error(e))?;
                    df += info.as_ref().map_or(0, |i| u64::from(i.doc_freq));
                    per_segment.push(info);
                }
                if df > 0 {
                    let idf = (1.0 + (n - df as f64 + 0.5) / (df as f64 + 0.5)).ln() as f32;
                    infos.push((per_segment, idf, *count as f32));
                }
            }
            for (s, reader) in inverted.iter().enumerate() {
                let data = &inner.segments[s];
                scratch.reset(data.norms.len());
                for (per_segment, idf, count) in &infos {
                    let Some(info) = &per_segment[s] else {
                        continue;
                    };
                    let mut block = reader
                        .read_block_postings_from_terminfo(info, IndexRecordOption::WithFreqs)
                        .map_err(|e| self.search_error(e))?;
                    let weight = idf * count;
                    loop {
                        let docs = block.docs();
                        if docs.is_empty() {
                            break;
                        }
                        for (&doc, &tf) in docs.iter().zip(block.freqs()) {
                            let Some(norm) = data.norms.get(doc as usize) else {
                                continue;
                            };
                            let tf = tf as f32;
                            let slot = &mut scratch.scores[doc as usize];
                            if *slot == 0.0 {
                                scratch.touched.push(doc);
                            }
                            *slot += weight * (tf / (tf + norm));
                        }
                        block.advance();
                    }
                }
                let Scratch {
                    scores,
                    touched,
                    candidates,
                } = scratch;
                for &doc in touched.iter() {
                    candidates.push(Hit {
                        position: data.positions[doc as usize],
                        score: scores[doc as usize],
                        address: DocAddress::new(s as u32, doc),
                    });
                }
            }
            let candidates = &mut scratch.candidates;
            let order = |a: &Hit, b: &Hit| {
                b.score
                    .total_cmp(&a.score)
                    .then(a.position.cmp(&b.position))
            };
            if candidates.len() > k {
                candidates.select_nth_unstable_by(k - 1, order);
                candidates.truncate(k);
            }
            candidates.sort_unstable_by(order);
            Ok(candidates.clone())
        })
    }

    /// The passage of a hit: its id, text, score and the corpus line's other fields.
    pub fn passage(&self, hit: &Hit) -> Result<Passage, RetrieveError> {
        guarded(&self.shown_path(), || self.passage_unguarded(hit))
    }

    fn passage_unguarded(&self, hit: &Hit) -> Result<Passage, RetrieveError> {
        let fields = &self.inner.fields;
        let doc: TantivyDocument = self
            .inner
            .searcher
            .doc(hit.address)
            .map_err(|e| self.search_error(e))?;
        let text_of = |field: Field| {
            doc.get_first(field)
                .and_then(|v| v.as_str())
                .unwrap_or_default()
                .to_string()
        };
        let extra = match doc.get_first(fields.extra).and_then(|v| v.as_str()) {
            Some(json) if !json.is_empty() => serde_json::from_str::<Map<String, Value>>(json)
                .map_err(|e| self.search_error(format!("a stored document is corrupt: {e}")))?,
            _ => Map::new(),
        };
        Ok(Passage {
            id: text_of(fields.id),
            text: text_of(fields.text),
            score: hit.score,
            extra,
        })
    }

    fn search_error(&self, e: impl std::fmt::Display) -> RetrieveError {
        RetrieveError::Search {
            path: self.shown_path(),
            message: e.to_string(),
        }
    }

    fn shown_path(&self) -> PathBuf {
        self.inner
            .path
            .clone()
            .unwrap_or_else(|| PathBuf::from("(in memory)"))
    }

    /// Tokens indexed in total (after stopwords).
    pub fn tokens(&self) -> u64 {
        self.inner.tokens
    }
}

/// Searches of indexes under [`BLOCKING_DOCUMENTS`] documents (or as set by
/// [`Bm25Index::blocking_from`]) run on the calling task: a query
/// touches only its terms' postings (about 0.1 ms on 120,000 passages, see BENCHMARKS.md).
/// Larger indexes are searched on tokio's blocking pool, so a query over long posting lists never
/// stalls the async runtime (inline when there is no tokio runtime).
impl Retriever for Bm25Index {
    fn retrieve<'a>(
        &'a self,
        query: &'a str,
        k: usize,
    ) -> BoxFuture<'a, Result<Vec<Passage>, RetrieveError>> {
        let runtime = tokio::runtime::Handle::try_current();
        match runtime {
            Ok(runtime) if self.len() >= self.blocking_from => {
                let index = self.clone();
                let query = query.to_string();
                Box::pin(async move {
                    runtime
                        .spawn_blocking(move || index.search(&query, k))
                        .await
                        .unwrap_or_else(|e| {
                            Err(RetrieveError::Search {
                                path: self.shown_path(),
                                message: format!("the search task failed: {e}"),
                            })
                        })
                })
            }
            _ => Box::pin(std::future::ready(self.search(query, k))),
        }
    }
}

/// From this many documents up, [`Retriever::retrieve`] searches on the blocking pool.
pub const BLOCKING_DOCUMENTS: u64 = 1_000_000;

/// Reusable per-thread buffers for scoring.
#[derive(Default)]
struct Scratch {
    scores: Vec<f32>,
    touched: Vec<u32>,
    candidates: Vec<Hit>,
}

impl Scratch {
    /// Zeroes what the last segment touched and makes room for `max_doc` documents.
    fn reset(&mut self, max_doc: usize) {
        for &doc in &self.touched {
            if let Some(s) = self.scores.get_mut(doc as usize) {
                *s = 0.0;
            }
        }
        self.touched.clear();
        if self.scores.len() < max_doc {
            self.scores.resize(max_doc, 0.0);
        }
    }
}

thread_local! {
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch::default());
}

/// The query's distinct tokens with how often each occurs (`bm25s` adds a repeated token's
/// scores once per occurrence), in first-occurrence order.
fn query_terms(query: &str) -> Vec<(String, usize)> {
    let mut terms: Vec<(String, usize)> = Vec::new();
    let mut seen: HashMap<String, usize> = HashMap::new();
    for_each_token(query, &mut String::new(), |token| match seen.get(token) {
        Some(&i) => terms[i].1 += 1,
        None => {
            seen.insert(token.to_string(), terms.len());
            terms.push((token.to_string(), 1));
        }
    });
    terms
}

fn norm(params: Bm25Params, len: f32, avgdl: f32) -> f32 {
    let avgdl = if avgdl > 0.0 { avgdl } else { 1.0 };
    params.k1 * ((1.0 - params.b) + params.b * len / avgdl)
}

/// Runs a read of the index, turning a panic inside tantivy (which it raises on some damaged
/// data that passed the checksums) into [`RetrieveError::CorruptIndex`].
fn guarded<T>(
    path: &Path,
    read: impl FnOnce() -> Result<T, RetrieveError>,
) -> Result<T, RetrieveError> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(read)).unwrap_or_else(|panic| {
        let detail = panic
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| panic.downcast_ref::<&str>().copied())
            .unwrap_or("no message");
        Err(corrupt(
            path,
            format!("reading it failed inside tantivy ({detail})"),
        ))
    })
}

fn corrupt(path: &Path, e: impl std::fmt::Display) -> RetrieveError {
    RetrieveError::CorruptIndex {
        path: path.to_path_buf(),
        message: e.to_string(),
    }
}

impl Meta {
    fn new(params: Bm25Params, documents: u64, tokens: u64) -> Meta {
        Meta {
            format: FORMAT.into(),
            version: VERSION,
            tokenizer: TOKENIZER.into(),
            params,
            documents,
            tokens,
        }
    }
}

fn read_meta(dir: &Path) -> Result<Meta, RetrieveError> {
    if !dir.exists() {
        return Err(RetrieveError::NoIndex {
            path: dir.to_path_buf(),
            reason: "the directory does not exist".into(),
        });
    }
    if !dir.is_dir() {
        return Err(RetrieveError::NoIndex {
            path: dir.to_path_buf(),
            reason: "it is not a directory".into(),
        });
    }
    let file = dir.join(META_FILE);
    let text = match std::fs::read_to_string(&file) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(RetrieveError::NoIndex {
                path: dir.to_path_buf(),
                reason: format!(
                    "it has no {META_FILE}; build an index with `dspex index build CORPUS --out DIR`"
                ),
            });
        }
        Err(e) => return Err(RetrieveError::io(file, e)),
    };
    let meta: Meta = serde_json::from_str(&text)
        .map_err(|e| corrupt(dir, format!("{META_FILE} is not valid: {e}")))?;
    if meta.format != FORMAT || meta.version != VERSION || meta.tokenizer != TOKENIZER {
        return Err(corrupt(
            dir,
            format!(
                "{META_FILE} describes a {} v{} index with tokenizer {}; this build reads {FORMAT} v{VERSION} with {TOKENIZER}",
                meta.format, meta.version, meta.tokenizer
            ),
        ));
    }
    Ok(meta)
}

fn writer(
    index: &Index,
    threads: usize,
    budget: usize,
    path: &Path,
) -> Result<IndexWriter<TantivyDocument>, RetrieveError> {
    // tantivy refuses less than 15 MB per thread (and 4 GB or more).
    let min = 15 << 20;
    let budget = budget.max(min * threads).min(threads * (4000 << 20));
    index
        .writer_with_num_threads(threads, budget)
        .map_err(|e| RetrieveError::Build {
            path: path.to_path_buf(),
            message: e.to_string(),
        })
}

/// A document tokenized and ready to add, except for its default id (which needs its position).
struct Prepared {
    id: Option<String>,
    text: String,
    extra: Map<String, Value>,
    tokens: Vec<Token>,
}

/// One corpus line after preparation: a document or the bad line.
type Item = Result<Prepared, BadLine>;

impl From<Document> for Prepared {
    fn from(doc: Document) -> Prepared {
        let tokens = tokens_of(&doc.text);
        Prepared {
            id: Some(doc.id),
            text: doc.text,
            extra: doc.extra,
            tokens,
        }
    }
}

fn prepare_line(raw: &RawLine) -> Item {
    let bad = |message: String| BadLine {
        line: raw.number,
        message,
    };
    let text = raw.text.as_ref().map_err(|m| bad(m.clone()))?;
    let fields = parse_fields(text).map_err(bad)?;
    let tokens = tokens_of(&fields.text);
    Ok(Prepared {
        id: fields.id,
        text: fields.text,
        extra: fields.extra,
        tokens,
    })
}

fn tokens_of(text: &str) -> Vec<Token> {
    let mut tokens = Vec::new();
    for_each_token(text, &mut String::new(), |t| {
        tokens.push(Token {
            offset_from: 0,
            offset_to: 0,
            position: tokens.len(),
            text: t.to_string(),
            position_length: 1,
        })
    });
    tokens
}

/// Adds prepared documents to the writer in corpus order.
struct Sink {
    writer: IndexWriter<TantivyDocument>,
    fields: Fields,
    path: PathBuf,
    documents: u64,
    tokens: u64,
}

impl Sink {
    fn new(writer: IndexWriter<TantivyDocument>, path: &Path) -> Sink {
        Sink {
            writer,
            // Field ids follow declaration order, so a fresh schema's are the index's.
            fields: Fields::schema().1,
            path: path.to_path_buf(),
            documents: 0,
            tokens: 0,
        }
    }

    fn add(&mut self, doc: Prepared) -> Result<(), RetrieveError> {
        let fields = self.fields;
        let position = self.documents;
        let mut out = TantivyDocument::default();
        out.add_text(fields.id, doc.id.unwrap_or_else(|| position.to_string()));
        if !doc.extra.is_empty() {
            out.add_text(fields.extra, Value::Object(doc.extra).to_string());
        }
        let len = doc.tokens.len() as u64;
        out.add_pre_tokenized_text(
            fields.body,
            PreTokenizedString {
                text: String::new(),
                tokens: doc.tokens,
            },
        );
        out.add_text(fields.text, doc.text);
        out.add_u64(fields.len, len);
        out.add_u64(fields.pos, position);
        self.writer
            .add_document(out)
            .map_err(|e| RetrieveError::Build {
                path: self.path.clone(),
                message: e.to_string(),
            })?;
        self.documents += 1;
        self.tokens += len;
        Ok(())
    }

    /// Commits and merges every segment into one; returns (documents, tokens).
    fn finish(mut self, index: &Index, path: &Path) -> Result<(u64, u64), RetrieveError> {
        let build = |e: tantivy::TantivyError| RetrieveError::Build {
            path: path.to_path_buf(),
            message: e.to_string(),
        };
        self.writer.commit().map_err(build)?;
        let segments = index.searchable_segment_ids().map_err(build)?;
        if segments.len() > 1 {
            self.writer.merge(&segments).wait().map_err(build)?;
        }
        self.writer.wait_merging_threads().map_err(build)?;
        Ok((self.documents, self.tokens))
    }
}

/// Removes a half-built index directory unless the build completed.
struct TempDir {
    path: PathBuf,
    keep: bool,
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if !self.keep {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

/// The build: read lines, prepare them on `threads` threads a chunk at a time, add them in
/// order, commit, merge, write the metadata, and move the directory into place.
fn build_into(
    lines: impl Iterator<Item = Result<RawLine, RetrieveError>>,
    source: Option<(&Path, u64)>,
    out: &Path,
    options: &BuildOptions,
    stop: impl Fn(BadLine) -> RetrieveError,
) -> Result<BuildReport, RetrieveError> {
    let started = Instant::now();
    let threads = match options.threads {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    };
    check_output(out, options.overwrite)?;
    let parent = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&parent).map_err(|e| RetrieveError::io(&parent, e))?;
    let name = out
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "index".into());
    let mut temp = TempDir {
        path: parent.join(format!(".{name}.building-{}", std::process::id())),
        keep: false,
    };
    let _ = std::fs::remove_dir_all(&temp.path);
    std::fs::create_dir_all(&temp.path).map_err(|e| RetrieveError::io(&temp.path, e))?;

    let index =
        Index::create_in_dir(&temp.path, Fields::schema().0).map_err(|e| RetrieveError::Build {
            path: out.to_path_buf(),
            message: e.to_string(),
        })?;
    let writer = writer(&index, threads, options.memory_budget, out)?;
    let mut sink = Sink::new(writer, out);
    let bar = progress_bar(options.progress, source.map(|(_, size)| size));
    let mut skipped = Vec::new();
    let mut chunk: Vec<RawLine> = Vec::with_capacity(CHUNK);
    let mut lines = lines.peekable();
    while lines.peek().is_some() {
        chunk.clear();
        let mut read = 0;
        for item in lines.by_ref().take(CHUNK) {
            let raw = item?;
            read = raw.offset;
            chunk.push(raw);
        }
        for item in prepare_chunk(&chunk, threads) {
            match item {
                Ok(doc) => sink.add(doc)?,
                Err(bad) => match options.on_bad_line {
                    OnBadLine::Stop => return Err(stop(bad)),
                    OnBadLine::Skip => skipped.push(bad),
                },
            }
        }
        if let Some(bar) = &bar {
            bar.set_position(read);
        }
    }
    if let Some(bar) = &bar {
        bar.finish_and_clear();
    }
    if sink.documents == 0 {
        return Err(RetrieveError::EmptyCorpus {
            path: source.map_or_else(|| out.to_path_buf(), |(p, _)| p.to_path_buf()),
        });
    }
    let (documents, tokens) = sink.finish(&index, out)?;
    drop(index);
    let meta = Meta::new(options.params, documents, tokens);
    let meta_path = temp.path.join(META_FILE);
    let json = serde_json::to_string_pretty(&meta).unwrap_or_default();
    std::fs::write(&meta_path, json).map_err(|e| RetrieveError::io(&meta_path, e))?;
    if out.exists() {
        // check_output allowed it: an existing dspex index, to be replaced.
        std::fs::remove_dir_all(out).map_err(|e| RetrieveError::io(out, e))?;
    }
    std::fs::rename(&temp.path, out).map_err(|e| RetrieveError::io(out, e))?;
    temp.keep = true;
    Ok(BuildReport {
        path: out.to_path_buf(),
        documents,
        tokens,
        skipped,
        elapsed: started.elapsed(),
    })
}

/// The output may be missing, an empty directory, or (with `overwrite`) a dspex index.
fn check_output(out: &Path, overwrite: bool) -> Result<(), RetrieveError> {
    if !out.exists() {
        return Ok(());
    }
    let refuse = |message: &str| RetrieveError::Build {
        path: out.to_path_buf(),
        message: message.to_string(),
    };
    if !out.is_dir() {
        return Err(refuse("it exists and is not a directory"));
    }
    let empty = std::fs::read_dir(out)
        .map_err(|e| RetrieveError::io(out, e))?
        .next()
        .is_none();
    if empty {
        return Ok(());
    }
    if !out.join(META_FILE).exists() {
        return Err(refuse(
            "the directory is not empty and does not hold a dspex index; choose another",
        ));
    }
    if !overwrite {
        return Err(refuse(
            "an index already exists there; pass --force (BuildOptions::overwrite) to replace it",
        ));
    }
    Ok(())
}

/// Parses and tokenizes a chunk of lines on up to `threads` threads, keeping their order.
fn prepare_chunk(chunk: &[RawLine], threads: usize) -> Vec<Item> {
    if threads <= 1 || chunk.len() < 64 {
        return chunk.iter().map(prepare_line).collect();
    }
    let per = chunk.len().div_ceil(threads);
    std::thread::scope(|scope| {
        let handles: Vec<_> = chunk
            .chunks(per)
            .map(|part| scope.spawn(move || part.iter().map(prepare_line).collect::<Vec<_>>()))
            .collect();
        handles
            .into_iter()
            .flat_map(|h| {
                h.join().unwrap_or_else(|_| {
                    vec![Err(BadLine {
                        line: 0,
                        message: "the tokenizer thread panicked".into(),
                    })]
                })
            })
            .collect()
    })
}

fn progress_bar(enabled: bool, size: Option<u64>) -> Option<indicatif::ProgressBar> {
    if !enabled || !std::io::stderr().is_terminal() {
        return None;
    }
    let bar =
        indicatif::ProgressBar::with_draw_target(size, indicatif::ProgressDrawTarget::stderr());
    if let Ok(style) = indicatif::ProgressStyle::with_template(
        "indexing: {percent:>3}%|{wide_bar}| {bytes}/{total_bytes} [{elapsed}<{eta}]",
    ) {
        bar.set_style(style);
    }
    Some(bar)
}

#[cfg(test)]
mod tests {
    use super::*;

    const CORPUS: &str = r#"{"id": "ada", "text": "Ada Lovelace wrote the first program for the analytical engine.", "title": "Ada"}
{"id": "alan", "text": "Alan Turing described a universal computing machine."}
{"id": "grace", "text": "Grace Hopper wrote the first compiler; the compiler translated programs."}
{"text": "Charles Babbage designed the analytical engine."}
"#;

    fn corpus_file(text: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("corpus.jsonl");
        std::fs::write(&path, text).unwrap();
        (dir, path)
    }

    fn build(text: &str, options: &BuildOptions) -> (tempfile::TempDir, Bm25Index, BuildReport) {
        let (dir, corpus) = corpus_file(text);
        let out = dir.path().join("index");
        let report = Bm25Index::build(&corpus, &out, options).unwrap();
        let index = Bm25Index::open(&out).unwrap();
        (dir, index, report)
    }

    /// Lucene BM25 as bm25s computes it, from token lists.
    fn expected_score(docs: &[Vec<String>], doc: usize, query: &[String]) -> f32 {
        let (k1, b) = (1.5f64, 0.75f64);
        let n = docs.len() as f64;
        let avgdl = docs.iter().map(Vec::len).sum::<usize>() as f64 / n;
        let mut score = 0.0;
        for token in query {
            let df = docs.iter().filter(|d| d.contains(token)).count() as f64;
            if df == 0.0 {
                continue;
            }
            let idf = (1.0 + (n - df + 0.5) / (df + 0.5)).ln();
            let tf = docs[doc].iter().filter(|t| *t == token).count() as f64;
            let len = docs[doc].len() as f64;
            score += idf * tf / (tf + k1 * (1.0 - b + b * len / avgdl));
        }
        score as f32
    }

    #[test]
    fn builds_opens_and_ranks_as_bm25s_scores() {
        let (_dir, index, report) = build(CORPUS, &BuildOptions::default());
        assert_eq!(report.documents, 4);
        assert!(report.skipped.is_empty());
        assert_eq!(index.len(), 4);
        let texts: Vec<Vec<String>> = CORPUS
            .lines()
            .map(|l| {
                let v: Value = serde_json::from_str(l).unwrap();
                super::super::tokenize(v["text"].as_str().unwrap())
            })
            .collect();
        assert_eq!(
            index.tokens(),
            texts.iter().map(Vec::len).sum::<usize>() as u64
        );

        let query = "who wrote the first compiler compiler";
        let hits = index.search(query, 10).unwrap();
        let ids: Vec<_> = hits.iter().map(|p| p.id.as_str()).collect();
        assert_eq!(ids, ["grace", "ada"]);
        let q = super::super::tokenize(query);
        for (hit, doc) in hits.iter().zip([2, 0]) {
            let want = expected_score(&texts, doc, &q);
            assert!((hit.score - want).abs() < 1e-5, "{} vs {want}", hit.score);
        }
        // Text, extra fields and default ids come back from the store.
        assert_eq!(hits[1].extra["title"], "Ada");
        let engine = index.search("analytical engine", 5).unwrap();
        let ids: Vec<_> = engine.iter().map(|p| p.id.as_str()).collect();
        assert_eq!(ids, ["3", "ada"]);
        assert_eq!(
            engine[0].text,
            "Charles Babbage designed the analytical engine."
        );
        assert!(engine[0].extra.is_empty());
    }

    #[test]
    fn k_limits_and_unknown_or_stopword_queries_find_nothing() {
        let (_dir, index, _) = build(CORPUS, &BuildOptions::default());
        assert_eq!(index.search("the first", 1).unwrap().len(), 1);
        assert!(index.search("the of and", 5).unwrap().is_empty());
        assert!(index.search("zebra", 5).unwrap().is_empty());
        assert!(index.search("compiler", 0).unwrap().is_empty());
        assert!(index.search("", 3).unwrap().is_empty());
    }

    #[test]
    fn ties_are_ordered_by_corpus_position_whatever_the_threads() {
        let text: String = (0..500)
            .map(|i| {
                format!(
                    "{{\"id\": \"d{i}\", \"text\": \"shared word{} filler\"}}\n",
                    i % 7
                )
            })
            .collect();
        let one = build(
            &text,
            &BuildOptions {
                threads: 1,
                ..Default::default()
            },
        );
        let many = build(
            &text,
            &BuildOptions {
                threads: 4,
                ..Default::default()
            },
        );
        let ids = |index: &Bm25Index| -> Vec<String> {
            index
                .search("shared word3", 20)
                .unwrap()
                .into_iter()
                .map(|p| p.id)
                .collect()
        };
        let first = ids(&one.1);
        assert_eq!(first, ids(&many.1));
        // The word3 documents first (positions 3, 10, 17, …), in corpus order.
        assert_eq!(&first[..3], ["d3", "d10", "d17"]);
        assert!(
            first
                .iter()
                .all(|id| id[1..].parse::<usize>().unwrap() % 7 == 3)
        );
    }

    #[test]
    fn bad_lines_stop_the_build_or_are_skipped() {
        let text = "{\"text\": \"good one\"}\nnot json\n{\"text\": 5}\n{\"text\": \"good two\"}\n";
        let (dir, corpus) = corpus_file(text);
        let out = dir.path().join("index");
        let err = Bm25Index::build(&corpus, &out, &BuildOptions::default()).unwrap_err();
        match &err {
            RetrieveError::BadLine { path, line, .. } => {
                assert_eq!(path, &corpus);
                assert_eq!(*line, 2);
            }
            other => panic!("{other:?}"),
        }
        assert!(!out.exists(), "a failed build leaves nothing behind");
        let leftovers: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(leftovers.len(), 1, "only the corpus remains: {leftovers:?}");

        let options = BuildOptions {
            on_bad_line: OnBadLine::Skip,
            ..Default::default()
        };
        let report = Bm25Index::build(&corpus, &out, &options).unwrap();
        assert_eq!(report.documents, 2);
        let lines: Vec<_> = report.skipped.iter().map(|b| b.line).collect();
        assert_eq!(lines, [2, 3]);
        let index = Bm25Index::open(&out).unwrap();
        // Default ids count documents, not lines.
        assert_eq!(index.search("two", 1).unwrap()[0].id, "1");
    }

    #[test]
    fn empty_corpora_and_unreadable_inputs_are_typed_errors() {
        let (dir, corpus) = corpus_file("\n\n");
        let out = dir.path().join("index");
        let err = Bm25Index::build(&corpus, &out, &BuildOptions::default()).unwrap_err();
        assert!(
            matches!(err, RetrieveError::EmptyCorpus { ref path } if path == &corpus),
            "{err:?}"
        );
        assert!(!out.exists());
        let err = Bm25Index::build(
            dir.path().join("missing.jsonl"),
            &out,
            &BuildOptions::default(),
        )
        .unwrap_err();
        assert!(matches!(err, RetrieveError::Io { .. }), "{err:?}");
        assert!(matches!(
            Bm25Index::from_documents(Vec::new()),
            Err(RetrieveError::EmptyCorpus { .. })
        ));
    }

    #[test]
    fn an_existing_output_is_replaced_only_when_asked() {
        let (dir, corpus) = corpus_file(CORPUS);
        let out = dir.path().join("index");
        Bm25Index::build(&corpus, &out, &BuildOptions::default()).unwrap();
        let err = Bm25Index::build(&corpus, &out, &BuildOptions::default()).unwrap_err();
        assert!(err.to_string().contains("--force"), "{err}");
        let options = BuildOptions {
            overwrite: true,
            ..Default::default()
        };
        Bm25Index::build(&corpus, &out, &options).unwrap();
        assert_eq!(Bm25Index::open(&out).unwrap().len(), 4);

        let other = dir.path().join("other");
        std::fs::create_dir(&other).unwrap();
        std::fs::write(other.join("keep.txt"), "mine").unwrap();
        let err = Bm25Index::build(&corpus, &other, &options).unwrap_err();
        assert!(
            err.to_string().contains("does not hold a dspex index"),
            "{err}"
        );
        assert!(other.join("keep.txt").exists());
    }

    #[test]
    fn missing_and_corrupt_indexes_are_typed_errors() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope");
        let err = Bm25Index::open(&missing).unwrap_err();
        assert!(
            matches!(err, RetrieveError::NoIndex { ref path, .. } if path == &missing),
            "{err:?}"
        );
        assert!(err.to_string().contains("does not exist"));

        let empty = dir.path().join("empty");
        std::fs::create_dir(&empty).unwrap();
        let err = Bm25Index::open(&empty).unwrap_err();
        assert!(err.to_string().contains("dspex index build"), "{err}");

        let (_keep, index, _) = build(CORPUS, &BuildOptions::default());
        let path = index.path().unwrap().to_path_buf();
        drop(index);
        let meta = path.join(META_FILE);
        let good = std::fs::read_to_string(&meta).unwrap();

        std::fs::write(&meta, "{not json").unwrap();
        assert!(matches!(
            Bm25Index::open(&path),
            Err(RetrieveError::CorruptIndex { .. })
        ));

        std::fs::write(&meta, good.replace("\"documents\": 4", "\"documents\": 5")).unwrap();
        let err = Bm25Index::open(&path).unwrap_err();
        assert!(err.to_string().contains("says 5 documents"), "{err}");

        std::fs::write(&meta, &good).unwrap();
        std::fs::remove_file(path.join("meta.json")).unwrap();
        let err = Bm25Index::open(&path).unwrap_err();
        assert!(matches!(err, RetrieveError::CorruptIndex { .. }), "{err:?}");
        assert!(err.to_string().contains(&path.display().to_string()));
    }

    #[test]
    fn damaged_files_are_found_at_open_and_panics_inside_tantivy_become_errors() {
        let (_keep, index, _) = build(CORPUS, &BuildOptions::default());
        let path = index.path().unwrap().to_path_buf();
        drop(index);
        // Flip bits at the start of the postings file (its footer, at the end, stays intact).
        let postings = std::fs::read_dir(&path)
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| p.extension().is_some_and(|e| e == "idx"))
            .unwrap();
        let mut bytes = std::fs::read(&postings).unwrap();
        for b in &mut bytes[..8] {
            *b ^= 0xff;
        }
        std::fs::write(&postings, bytes).unwrap();
        let err = Bm25Index::open(&path).unwrap_err();
        assert!(matches!(err, RetrieveError::CorruptIndex { .. }), "{err:?}");
        assert!(err.to_string().contains("checksum mismatch"), "{err}");

        let err = guarded::<()>(&path, || panic!("index out of bounds")).unwrap_err();
        assert!(matches!(err, RetrieveError::CorruptIndex { .. }), "{err:?}");
        assert!(err.to_string().contains("index out of bounds"), "{err}");
    }

    /// A file cut shorter than tantivy's footer made the checksum check panic outside the
    /// guard (`fuzz/regressions/bm25_open/short-term-file`).
    #[test]
    fn files_shorter_than_their_footer_are_corrupt() {
        let (_keep, index, _) = build(CORPUS, &BuildOptions::default());
        let path = index.path().unwrap().to_path_buf();
        drop(index);
        for file in std::fs::read_dir(&path).unwrap().map(|e| e.unwrap().path()) {
            // The segment's files (named by its id), each with a checksummed footer.
            if file.file_stem().is_none_or(|stem| stem.len() != 32) {
                continue;
            }
            let good = std::fs::read(&file).unwrap();
            std::fs::write(&file, b"\0\0\0\0{").unwrap();
            let err = Bm25Index::open(&path).unwrap_err();
            assert!(
                matches!(err, RetrieveError::CorruptIndex { .. }),
                "{}: {err:?}",
                file.display()
            );
            std::fs::write(&file, good).unwrap();
        }
        assert_eq!(Bm25Index::open(&path).unwrap().len(), 4);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn builds_off_the_async_runtime_and_serves_as_a_retriever() {
        let (dir, corpus) = corpus_file(CORPUS);
        let out = dir.path().join("index");
        let report = Bm25Index::build_async(&corpus, &out, BuildOptions::default())
            .await
            .unwrap();
        assert_eq!(report.path, out);
        let index = Bm25Index::open(&out).unwrap();
        let passages = index.retrieve("universal machine", 3).await.unwrap();
        assert_eq!(passages[0].id, "alan");
        // The same answer from the blocking pool.
        let pooled = index.clone().blocking_from(0);
        assert_eq!(
            pooled.retrieve("universal machine", 3).await.unwrap(),
            passages
        );
        let in_memory = Bm25Index::from_documents(
            super::super::read_jsonl(&corpus, OnBadLine::Stop)
                .unwrap()
                .documents,
        )
        .unwrap();
        assert!(in_memory.path().is_none());
        assert_eq!(
            in_memory.search("analytical engine", 2).unwrap(),
            index.search("analytical engine", 2).unwrap()
        );
    }
}
