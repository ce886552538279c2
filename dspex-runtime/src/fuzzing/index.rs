//! Opening a damaged index directory: a small valid BM25 index and a small valid embeddings
//! index are built once; each input damages one of their files, then the index is opened (and,
//! when that works, searched). Damage must give a typed error naming the index, never a panic
//! or a hang.

use super::wire::loopback;
use crate::lm::embedder_fn;
use crate::retrieve::{Bm25Index, BuildOptions, EmbeddingsRetriever, RetrieveError};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock, PoisonError};

/// The passages both indexes hold.
const PASSAGES: &[&str] = &[
    "Paris is the capital and largest city of France.",
    "The Eiffel Tower was completed in 1889.",
    "Berlin is the capital of Germany.",
    "Water boils at 100 degrees Celsius at sea level.",
    "The quick brown fox jumps over the lazy dog.",
];

/// A valid index (its files' bytes, by name) and a copy of it that inputs damage.
struct Pristine {
    files: Vec<(String, Vec<u8>)>,
    work: PathBuf,
    /// The file the previous input damaged (restored before the next one).
    touched: Mutex<Option<usize>>,
}

impl Pristine {
    /// Reads the files of the index at `dir` and copies them into `work`.
    fn of(dir: &Path, work: PathBuf) -> Pristine {
        let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
            .expect("the built index is readable")
            .filter_map(Result::ok)
            .filter(|e| e.path().is_file())
            .map(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                let bytes = std::fs::read(e.path()).expect("an index file is readable");
                (name, bytes)
            })
            .collect();
        // In an order that does not depend on the segment's random id, so an input picks the
        // same file in every process: dspex's and tantivy's metadata, then the segment's files
        // by extension.
        files.sort_by_key(|(name, _)| {
            let (stem, ext) = name.rsplit_once('.').unwrap_or((name.as_str(), ""));
            let segment = stem.len() == 32 && stem.bytes().all(|b| b.is_ascii_hexdigit());
            (
                segment,
                if segment {
                    ext.to_string()
                } else {
                    name.clone()
                },
            )
        });
        let _ = std::fs::remove_dir_all(&work);
        std::fs::create_dir_all(&work).expect("a work directory");
        for (name, bytes) in &files {
            std::fs::write(work.join(name), bytes).expect("the work copy is writable");
        }
        Pristine {
            files,
            work,
            touched: Mutex::new(None),
        }
    }

    /// Restores the file the previous input damaged, then damages one as `data` says: the
    /// first byte picks the file, the second what happens to it — its bytes replaced by the
    /// rest of the input, truncated, overwritten at an offset, or removed.
    fn damage(&self, data: &[u8]) -> Option<String> {
        let mut touched = self.touched.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(i) = touched.take() {
            let (name, bytes) = &self.files[i];
            std::fs::write(self.work.join(name), bytes).expect("the work copy is writable");
        }
        let (&which, rest) = data.split_first()?;
        let (&how, payload) = rest.split_first()?;
        let i = usize::from(which) % self.files.len();
        let (name, original) = &self.files[i];
        let number = |p: &[u8]| {
            usize::from(u16::from_le_bytes([
                p.first().copied().unwrap_or(0),
                p.get(1).copied().unwrap_or(0),
            ]))
        };
        let path = self.work.join(name);
        *touched = Some(i);
        match how % 4 {
            0 => std::fs::write(&path, payload),
            1 => std::fs::write(&path, &original[..number(payload) % (original.len() + 1)]),
            2 => {
                let mut bytes = original.clone();
                let at = number(payload) % (bytes.len() + 1);
                let patch = payload.get(2..).unwrap_or_default();
                let end = (at + patch.len()).min(bytes.len());
                bytes.splice(at..end, patch.iter().copied());
                std::fs::write(&path, bytes)
            }
            _ => std::fs::remove_file(&path),
        }
        .expect("the work copy is writable");
        Some(name.clone())
    }
}

/// A fresh directory under the system's temporary directory, for this process.
/// Directories of processes that are gone are removed.
fn scratch(what: &str) -> PathBuf {
    let prefix = format!("dspex-fuzz-{what}-");
    let proc_fs = Path::new("/proc/self").exists();
    if let Ok(entries) = std::fs::read_dir(std::env::temp_dir())
        && proc_fs
    {
        for entry in entries.filter_map(Result::ok) {
            let name = entry.file_name().to_string_lossy().into_owned();
            if let Some(pid) = name.strip_prefix(&prefix)
                && !Path::new("/proc").join(pid).exists()
            {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
    }
    let dir = std::env::temp_dir().join(format!("{prefix}{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("a scratch directory");
    dir
}

/// An error from opening a damaged index must be one of the typed errors about it, naming the
/// directory.
fn check_error(e: &RetrieveError, dir: &Path, damaged: &str) {
    let typed = matches!(
        e,
        RetrieveError::CorruptIndex { .. }
            | RetrieveError::NoIndex { .. }
            | RetrieveError::Io { .. }
    );
    assert!(typed, "damaging {damaged} gives {e:?}");
    let text = e.to_string();
    assert!(
        text.contains(&dir.display().to_string()),
        "the error does not name the index: {text}"
    );
}

fn bm25() -> &'static Pristine {
    static BM25: OnceLock<Pristine> = OnceLock::new();
    BM25.get_or_init(|| {
        super::watch_panics();
        let dir = scratch("bm25");
        let corpus = dir.join("corpus.jsonl");
        let lines: Vec<String> = PASSAGES
            .iter()
            .enumerate()
            .map(|(i, t)| serde_json::json!({"id": format!("p{i}"), "text": t}).to_string())
            .collect();
        std::fs::write(&corpus, lines.join("\n")).expect("the corpus is writable");
        let built = dir.join("index");
        Bm25Index::build(&corpus, &built, &BuildOptions::default()).expect("the index builds");
        Pristine::of(&built, dir.join("work"))
    })
}

/// The bytes of the valid index's files, in the order inputs pick them: the BM25 index's
/// (`bm25`) or the embeddings index's.
pub fn pristine_files(bm25_index: bool) -> Vec<Vec<u8>> {
    let pristine = if bm25_index { bm25() } else { embeddings() };
    pristine
        .files
        .iter()
        .map(|(_, bytes)| bytes.clone())
        .collect()
}

/// Target `bm25_open`: opens a damaged BM25 index (see [`Pristine::damage`]) and searches it.
pub fn bm25_open(data: &[u8]) {
    let pristine = bm25();
    let Some(damaged) = pristine.damage(data) else {
        return;
    };
    super::no_panics("opening a damaged BM25 index", || {
        bm25_check(pristine, &damaged)
    });
}

fn bm25_check(pristine: &Pristine, damaged: &str) {
    match Bm25Index::open(&pristine.work) {
        Ok(index) => {
            for query in ["capital of France", "fox", "1889 tower"] {
                match index.search(query, 3) {
                    Ok(passages) => assert!(passages.len() <= 3),
                    Err(e) => assert!(
                        matches!(
                            e,
                            RetrieveError::CorruptIndex { .. } | RetrieveError::Search { .. }
                        ),
                        "searching after damaging {damaged} gives {e:?}"
                    ),
                }
            }
        }
        Err(e) => check_error(&e, &pristine.work, damaged),
    }
}

/// The embedder of the embeddings index: 8 numbers from the text's bytes.
fn embed(text: &str) -> Vec<f32> {
    let mut v = [0.1f32; 8];
    for (i, b) in text.bytes().enumerate() {
        v[i % 8] += f32::from(b) / 255.0;
    }
    v.to_vec()
}

fn embeddings() -> &'static Pristine {
    static EMBEDDINGS: OnceLock<Pristine> = OnceLock::new();
    EMBEDDINGS.get_or_init(|| {
        let dir = scratch("embeddings");
        let built = dir.join("index");
        loopback().runtime.block_on(async {
            let index = EmbeddingsRetriever::builder(embedder_fn(embed))
                .build_texts(PASSAGES.iter().copied())
                .await
                .expect("the index builds");
            index.save(&built).await.expect("the index saves");
        });
        Pristine::of(&built, dir.join("work"))
    })
}

/// Target `embeddings_open`: opens a damaged embeddings index (see [`Pristine::damage`]) and
/// searches it.
pub fn embeddings_open(data: &[u8]) {
    let pristine = embeddings();
    let Some(damaged) = pristine.damage(data) else {
        return;
    };
    super::no_panics("opening a damaged embeddings index", || {
        loopback()
            .runtime
            .block_on(embeddings_check(pristine, &damaged));
    });
}

async fn embeddings_check(pristine: &Pristine, damaged: &str) {
    match EmbeddingsRetriever::open(&pristine.work, embedder_fn(embed)).await {
        Ok(index) => {
            assert_eq!(index.ids().len(), index.len());
            match index.search("capital of France", 3).await {
                Ok(passages) => assert!(passages.len() <= 3.min(index.len())),
                Err(e) => panic!("searching an index that opened fails: {e:?}"),
            }
        }
        Err(e) => check_error(&e, &pristine.work, damaged),
    }
}
