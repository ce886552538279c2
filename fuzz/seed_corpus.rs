//! Writes every fuzz target's seed corpus: `seed_corpus CORPUS FIXTURES` puts the seeds of
//! target `t` in `CORPUS/t/seed-<hash>` (a seed already there is left alone), built from DSPy's
//! fixtures in `FIXTURES` (`../shared/fixtures/dspy`, read in place, never copied into the
//! repository) and from the mock LM server's answers, faults included.

use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};
use std::path::PathBuf;
use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [corpus, fixtures] = args.as_slice() else {
        eprintln!("usage: seed_corpus CORPUS_DIR FIXTURES_DIR");
        return ExitCode::from(2);
    };
    let (corpus, fixtures) = (PathBuf::from(corpus), PathBuf::from(fixtures));
    let mut seeds = match dspex_runtime::__fuzz::seeds::all(&fixtures) {
        Ok(seeds) => seeds,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    for target in ["bm25_open", "embeddings_open"] {
        for seed in dspex_runtime::__fuzz::seeds::index_seeds(target) {
            seeds.push((target, seed));
        }
    }
    let mut written: BTreeMap<&str, usize> = BTreeMap::new();
    for (target, bytes) in &seeds {
        let dir = corpus.join(target);
        if let Err(e) = std::fs::create_dir_all(&dir) {
            eprintln!("error: cannot create {}: {e}", dir.display());
            return ExitCode::FAILURE;
        }
        let mut hasher = std::hash::DefaultHasher::new();
        bytes.hash(&mut hasher);
        let path = dir.join(format!("seed-{:016x}", hasher.finish()));
        if !path.exists() {
            if let Err(e) = std::fs::write(&path, bytes) {
                eprintln!("error: cannot write {}: {e}", path.display());
                return ExitCode::FAILURE;
            }
            *written.entry(target).or_default() += 1;
        }
    }
    for (target, _) in dspex_runtime::__fuzz::TARGETS {
        println!(
            "{target}: {} new seeds",
            written.get(target).copied().unwrap_or(0)
        );
    }
    ExitCode::SUCCESS
}
