//! The embedded BM25 index against Python's `bm25s` (`../shared/bench/dspy_side.py bm25`), in one
//! run, on the same corpus and queries: index build documents/s, query latency p50/p99,
//! queries/s, and the overlap of the two top-10 lists. Prints a Markdown table.
//!
//! The corpus is made from text already on the machine: the documentation Debian packages install
//! under `/usr/share/doc` (plain and gzipped), split into paragraphs, whitespace collapsed,
//! paragraphs of 8 tokens or more and at most 2,000 characters, exact duplicates dropped (licence
//! texts repeat in every package), files in path order. Queries are 2 to 4 tokens of 4 letters or
//! more drawn from random paragraphs with a fixed seed, kept when more than 10 passages match (so
//! neither side pads its top 10 with non-matching passages, which `bm25s` would) and the 10th
//! score is above the 11th: when passages tie at the cut-off, `bm25s` keeps an arbitrary subset
//! (numpy's `argpartition`) and the overlap would measure that, not the ranking. The table also
//! gives the overlap that counts such ties, computed over the same queries.
//!
//! Run it with `scripts/bench bm25 [--quick] [--docs N] [--queries N]` (defaults 120,000 and
//! 2,000; `--quick` uses 20,000 and 500; `--keep DIR` keeps the corpus, queries and index).

use dspex::retrieve::{Bm25Index, BuildOptions, tokenize};
use dspex_examples::{dspy_side, run_json, venv_python};
use serde_json::json;
use std::collections::HashSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const K: usize = 10;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let quick = args.iter().any(|a| a == "--quick");
    let flag = |name: &str, default: usize| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .map(|v| {
                v.parse()
                    .unwrap_or_else(|_| panic!("{name} takes a number"))
            })
            .unwrap_or(default)
    };
    let docs = flag("--docs", if quick { 20_000 } else { 120_000 });
    let queries = flag("--queries", if quick { 500 } else { 2_000 });

    let temp = tempfile::tempdir().expect("a temporary directory");
    // `--keep DIR` leaves the corpus, queries and index in DIR for a closer look.
    let keep = args
        .iter()
        .position(|a| a == "--keep")
        .and_then(|i| args.get(i + 1))
        .map(PathBuf::from);
    let work_dir = keep.clone().unwrap_or_else(|| temp.path().to_path_buf());
    std::fs::create_dir_all(&work_dir).expect("the --keep directory");
    let corpus_path = work_dir.join("corpus.jsonl");
    let started = Instant::now();
    let paragraphs = collect_paragraphs(Path::new("/usr/share/doc"), docs);
    assert!(
        paragraphs.len() >= docs,
        "only {} paragraphs of documentation on this machine; ask for fewer with --docs",
        paragraphs.len()
    );
    write_corpus(&corpus_path, &paragraphs);
    eprintln!(
        "corpus: {} paragraphs, {:.1} MB, gathered in {:.1} s",
        paragraphs.len(),
        std::fs::metadata(&corpus_path).map_or(0, |m| m.len()) as f64 / 1e6,
        started.elapsed().as_secs_f64()
    );

    // dspex: build on every core, reopen, query on one thread and on every core.
    let index_dir = work_dir.join("index");
    let _ = std::fs::remove_dir_all(&index_dir);
    let report = Bm25Index::build(&corpus_path, &index_dir, &BuildOptions::default())
        .expect("the index builds");
    let build_s = report.elapsed.as_secs_f64();
    let t = Instant::now();
    let index = Bm25Index::open(&index_dir).expect("the index opens");
    let open_ms = t.elapsed().as_secs_f64() * 1e3;

    let query_list = make_queries(&paragraphs, &index, queries);
    let queries_path = work_dir.join("queries.txt");
    std::fs::write(&queries_path, query_list.join("\n") + "\n").expect("queries written");

    // Warm the page cache and the scratch buffers, as bm25s's index is warm in memory.
    for q in query_list.iter().take(50) {
        index.search(q, K).expect("search");
    }
    let mut latencies = Vec::with_capacity(query_list.len());
    let mut ours: Vec<Vec<String>> = Vec::with_capacity(query_list.len());
    let t = Instant::now();
    for q in &query_list {
        let one = Instant::now();
        let passages = index.search(q, K).expect("search");
        latencies.push(one.elapsed());
        ours.push(passages.into_iter().map(|p| p.id).collect());
    }
    let single_s = t.elapsed().as_secs_f64();
    let t = Instant::now();
    for q in &query_list {
        index.hits(q, K).expect("search");
    }
    let hits_only_s = t.elapsed().as_secs_f64();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let t = Instant::now();
    std::thread::scope(|scope| {
        for part in query_list.chunks(query_list.len().div_ceil(cores)) {
            let index = &index;
            scope.spawn(move || {
                for q in part {
                    index.search(q, K).expect("search");
                }
            });
        }
    });
    let parallel_s = t.elapsed().as_secs_f64();
    latencies.sort();
    let pct = |p: f64| latencies[((latencies.len() as f64 * p) as usize).min(latencies.len() - 1)];

    // bm25s, same corpus and queries, in the project venv.
    let python = venv_python();
    let theirs = run_json(
        Command::new(python)
            .arg(dspy_side())
            .args(["bm25", "--corpus"])
            .arg(&corpus_path)
            .arg("--queries")
            .arg(&queries_path)
            .args(["-k", &K.to_string()]),
    );
    let their_ids: Vec<Vec<String>> = theirs["top_ids"]
        .as_array()
        .expect("top_ids")
        .iter()
        .map(|row| {
            row.as_array()
                .expect("a row of ids")
                .iter()
                .map(|id| id.as_str().map_or_else(|| id.to_string(), str::to_string))
                .collect()
        })
        .collect();
    assert_eq!(their_ids.len(), ours.len(), "bm25s answered every query");
    let overlap = ours
        .iter()
        .zip(&their_ids)
        .map(|(a, b)| {
            let b: HashSet<&String> = b.iter().collect();
            a.iter().filter(|id| b.contains(id)).count() as f64 / K as f64
        })
        .sum::<f64>()
        / ours.len() as f64;

    // Exact ties at the cut-off: bm25s keeps an arbitrary subset of the passages tied with its
    // 10th (numpy's argpartition), dspex the first in corpus order. A bm25s passage outside our
    // top 10 whose score equals our 10th's is as good a 10th as ours.
    let tie_overlap = query_list
        .iter()
        .zip(&their_ids)
        .map(|(q, theirs)| {
            // Every matching passage, scored (the corpus's ids are `p{position}`).
            let all = index.hits(q, usize::MAX).expect("search");
            let cut = all[K - 1].score;
            let score: std::collections::HashMap<String, f32> = all
                .iter()
                .map(|h| (format!("p{}", h.position), h.score))
                .collect();
            theirs
                .iter()
                .filter(|id| score.get(*id).is_some_and(|s| *s >= cut * (1.0 - 1e-6)))
                .count()
                .min(K) as f64
                / K as f64
        })
        .sum::<f64>()
        / ours.len() as f64;
    let n = query_list.len() as f64;
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let their_qps = theirs["queries_per_s"].as_f64().unwrap_or(0.0);
    let their_build = theirs["docs_per_s"].as_f64().unwrap_or(0.0);
    let our_qps = n / single_s;
    println!(
        "## BM25: dspex (tantivy, {cores} cores) vs bm25s — {} passages, {} queries, top {K}\n",
        paragraphs.len(),
        query_list.len()
    );
    println!("| | dspex | bm25s | ratio |");
    println!("|---|---|---|---|");
    println!(
        "| index build, documents/s | {:.0} ({build_s:.2} s, {cores} threads, JSONL to disk) | {their_build:.0} ({:.2} s, tokenize + index in memory) | {:.2}× |",
        paragraphs.len() as f64 / build_s,
        theirs["build_s"].as_f64().unwrap_or(0.0),
        paragraphs.len() as f64 / build_s / their_build
    );
    println!(
        "| queries/s, one thread (with texts) | {our_qps:.0} | {their_qps:.0} (one thread, ids only) | {:.2}× |",
        our_qps / their_qps
    );
    println!(
        "| queries/s, one thread (ids only) | {:.0} | | {:.2}× |",
        n / hits_only_s,
        n / hits_only_s / their_qps
    );
    println!(
        "| queries/s, {cores} threads (with texts) | {:.0} | | {:.2}× |",
        n / parallel_s,
        n / parallel_s / their_qps
    );
    println!(
        "| query latency p50 / p99 (with texts) | {:.3} ms / {:.3} ms | {:.3} ms mean | |",
        ms(pct(0.5)),
        ms(pct(0.99)),
        theirs["query_s"].as_f64().unwrap_or(0.0) * 1e3 / n
    );
    println!("| open an existing index | {open_ms:.1} ms | | |");
    println!("| top-{K} overlap with bm25s (same ids) | {overlap:.4} | | goal ≥ 0.9 |");
    println!("| top-{K} overlap counting passages tied with the 10th | {tie_overlap:.4} | | |");
    let summary = json!({
        "docs": paragraphs.len(), "queries": query_list.len(), "cores": cores,
        "build_s": build_s, "docs_per_s": paragraphs.len() as f64 / build_s,
        "open_ms": open_ms, "qps_single": our_qps, "qps_hits_only": n / hits_only_s,
        "qps_parallel": n / parallel_s, "p50_ms": ms(pct(0.5)), "p99_ms": ms(pct(0.99)),
        "overlap": overlap, "overlap_with_ties": tie_overlap,
        "bm25s": {"build_s": theirs["build_s"], "docs_per_s": their_build,
                  "queries_per_s": their_qps, "query_s": theirs["query_s"],
                  "peak_rss_mb": theirs["peak_rss_mb"]},
    });
    println!("\n{summary}");
    let goals_met = our_qps >= their_qps && overlap >= 0.9;
    println!(
        "goals (queries/s ≥ bm25s's, overlap ≥ 0.9): {}",
        if goals_met { "met" } else { "NOT met" }
    );
}

/// Paragraphs of the documentation under `root`, deduplicated, until there are `want`.
fn collect_paragraphs(root: &Path, want: usize) -> Vec<String> {
    let mut files = Vec::new();
    walk(root, &mut files);
    files.sort();
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for file in files {
        let Some(text) = read_text(&file) else {
            continue;
        };
        for paragraph in text.split("\n\n") {
            let clean = paragraph.split_whitespace().collect::<Vec<_>>().join(" ");
            if clean.len() > 2000 || tokenize(&clean).len() < 8 {
                continue;
            }
            if seen.insert(clean.clone()) {
                out.push(clean);
                if out.len() == want {
                    return out;
                }
            }
        }
    }
    out
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let Ok(kind) = entry.file_type() else {
            continue;
        };
        if kind.is_dir() {
            walk(&entry.path(), out);
        } else if kind.is_file() {
            out.push(entry.path());
        }
    }
}

/// A file's text (gunzipped by `gzip -dc` when it ends in `.gz`); `None` for binary files.
fn read_text(path: &Path) -> Option<String> {
    let bytes = if path.extension().is_some_and(|e| e == "gz") {
        let out = Command::new("gzip").arg("-dc").arg(path).output().ok()?;
        out.status.success().then_some(out.stdout)?
    } else {
        std::fs::read(path).ok()?
    };
    if bytes.len() > 8 << 20 || bytes.contains(&0) {
        return None;
    }
    String::from_utf8(bytes)
        .ok()
        .map(|t| t.replace("\r\n", "\n"))
}

fn write_corpus(path: &Path, paragraphs: &[String]) {
    let mut out = std::io::BufWriter::new(std::fs::File::create(path).expect("corpus file"));
    for (i, text) in paragraphs.iter().enumerate() {
        writeln!(out, "{}", json!({"id": format!("p{i}"), "text": text})).expect("write");
    }
    out.flush().expect("flush");
}

/// `n` queries of 2 to 4 tokens (4+ letters) from seeded random paragraphs, each matching more
/// than `K` passages with a well-defined top `K` (the `K`th score above the next).
fn make_queries(paragraphs: &[String], index: &Bm25Index, n: usize) -> Vec<String> {
    let mut state: u64 = 0x5eed_1234_abcd_0042;
    let mut next = move || {
        // SplitMix64.
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    };
    let mut out = Vec::with_capacity(n);
    let mut tries = 0;
    while out.len() < n {
        tries += 1;
        assert!(tries < n * 50, "cannot find {n} queries with {K} matches");
        let paragraph = &paragraphs[(next() % paragraphs.len() as u64) as usize];
        let words: Vec<String> = tokenize(paragraph)
            .into_iter()
            .filter(|t| t.chars().count() >= 4 && t.chars().all(char::is_alphabetic))
            .collect();
        if words.len() < 4 {
            continue;
        }
        let count = 2 + (next() % 3) as usize;
        let query: Vec<&str> = (0..count)
            .map(|_| words[(next() % words.len() as u64) as usize].as_str())
            .collect();
        let query = query.join(" ");
        let hits = index.hits(&query, K + 1).unwrap_or_default();
        if hits.len() == K + 1 && hits[K - 1].score > hits[K].score * (1.0 + 1e-5) {
            out.push(query);
        }
    }
    out
}
