//! The embedded BM25 index ranks and scores as Python's `bm25s` does (the package DSPy's BM25
//! examples use), on a synthetic corpus with a skewed vocabulary, in the project venv.

mod common;

use common::{repo_root, venv_python};
use dspex::module::search_tool;
use dspex::prelude::*;
use dspex::retrieve::{Bm25Index, BuildOptions, Retrieve};
use std::process::Command;

const K: usize = 10;

/// A deterministic corpus: sentences over a Zipf-like vocabulary with stopwords, punctuation,
/// mixed case, digits and non-ASCII words.
fn corpus(n: usize) -> Vec<String> {
    let vocab: Vec<String> = (0..600)
        .map(|i| match i % 9 {
            0 => format!("Wörd{i}"),
            1 => format!("term_{i}"),
            2 => format!("X{i}y"),
            _ => format!("w{i}"),
        })
        .collect();
    let stop = ["the", "of", "and", "a", "is", "to", "with"];
    let mut state = 7u64;
    let mut next = move || {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (state >> 33) as usize
    };
    (0..n)
        .map(|_| {
            let len = 5 + next() % 40;
            let mut words = Vec::with_capacity(len);
            for _ in 0..len {
                let r = next() % 1000;
                // Skewed: low ranks much more often.
                let rank = (r * r / 1000 * vocab.len()) / 1000;
                words.push(if r % 5 == 0 {
                    stop[r % stop.len()].to_string()
                } else {
                    vocab[rank].clone()
                });
            }
            words.join(if next() % 3 == 0 { ", " } else { " " }) + "."
        })
        .collect()
}

#[test]
fn scores_and_rankings_match_bm25s() {
    let dir = tempfile::tempdir().unwrap();
    let texts = corpus(3000);
    let corpus_path = dir.path().join("corpus.jsonl");
    let lines: Vec<String> = texts
        .iter()
        .enumerate()
        .map(|(i, t)| serde_json::json!({"id": format!("d{i}"), "text": t}).to_string())
        .collect();
    std::fs::write(&corpus_path, lines.join("\n") + "\n").unwrap();
    let index_dir = dir.path().join("index");
    let options = BuildOptions {
        threads: 2,
        ..BuildOptions::default()
    };
    Bm25Index::build(&corpus_path, &index_dir, &options).unwrap();
    let index = Bm25Index::open(&index_dir).unwrap();

    // Queries: words of varied frequency, a repeated word, stopwords and an unknown word.
    let mut queries: Vec<String> = (0..60)
        .map(|i| format!("w{} w{} term_{}", 3 + i * 7, 40 + i * 5, 1 + (i % 60) * 9))
        .collect();
    queries.push("W13 w13 the of X2y".into());
    queries.push("wörd0 WÖRD9 unknownword".into());
    let queries_path = dir.path().join("queries.txt");
    std::fs::write(&queries_path, queries.join("\n") + "\n").unwrap();

    let out = Command::new(venv_python())
        .arg(repo_root().join("tests/python/bm25s_topk.py"))
        .arg(&corpus_path)
        .arg(&queries_path)
        .arg(K.to_string())
        .output()
        .expect("python runs");
    assert!(
        out.status.success(),
        "bm25s failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let reference: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();

    let mut compared = 0;
    for (q, query) in queries.iter().enumerate() {
        let ours = index.search(query, K + 1).unwrap();
        let their_scores: Vec<f64> = reference["scores"][q]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s.as_f64().unwrap())
            .collect();
        let their_ids: Vec<&str> = reference["ids"][q]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s.as_str().unwrap())
            .collect();
        // Every score bm25s gives (above zero: it pads with non-matching passages) is ours, in order.
        for (rank, theirs) in their_scores.iter().enumerate().filter(|(_, s)| **s > 0.0) {
            let mine = f64::from(ours[rank].score);
            assert!(
                (mine - theirs).abs() <= 1e-5 * theirs.max(1.0),
                "query {query:?} rank {rank}: dspex {mine}, bm25s {theirs}"
            );
        }
        // Where the top 10 is well defined (no tie at the cut-off), the same passages.
        if ours.len() > K && ours[K - 1].score > ours[K].score * (1.0 + 1e-5) {
            let mut mine: Vec<&str> = ours[..K].iter().map(|p| p.id.as_str()).collect();
            let mut theirs = their_ids.clone();
            mine.sort_unstable();
            theirs.sort_unstable();
            assert_eq!(mine, theirs, "query {query:?}");
            compared += 1;
        }
    }
    assert!(
        compared >= 40,
        "only {compared} queries had a well-defined top {K}"
    );
}

#[tokio::test]
async fn an_index_is_a_program_step_and_an_agent_tool() {
    let texts = [
        "The Rhine flows through Basel.",
        "Basel is a city in Switzerland.",
        "The Danube flows through Vienna.",
    ];
    let index =
        Bm25Index::from_documents(dspex::retrieve::Corpus::from_texts(texts).documents).unwrap();
    let step = Retrieve::new(index.clone(), 2).map(|found| found.into_texts());
    let passages = step
        .forward("Which river flows through Basel?".into())
        .await
        .unwrap();
    assert_eq!(passages[0], "The Rhine flows through Basel.");
    assert_eq!(passages.len(), 2);

    let tool = search_tool(index, 1);
    let mut args = serde_json::Map::new();
    args.insert("query".into(), "Vienna".into());
    assert_eq!(
        tool.call(args).await.unwrap(),
        serde_json::json!(["The Danube flows through Vienna."])
    );
}

/// Hybrid search as the issue describes it: the BM25 index and an embeddings retriever fused by
/// reciprocal rank. BM25 finds the word match; the embedder (a toy one that knows "car" and
/// "automobile" are the same) finds the synonym; the fusion keeps both, each once.
#[tokio::test]
async fn hybrid_bm25_and_embeddings_fuse_by_reciprocal_rank() {
    use dspex::lm::embedder_fn;
    use dspex::retrieve::{Corpus, EmbeddingsRetriever, HybridRetriever, Retriever};

    let texts = [
        "An automobile needs fuel.",
        "A car parked by the river.",
        "Bicycles need no fuel at all.",
        "Rivers flow to the sea.",
    ];
    let corpus = Corpus::from_texts(texts);
    let bm25 = Bm25Index::from_documents(corpus.documents.clone()).unwrap();
    let concept = |text: &str| {
        let t = text.to_lowercase();
        let has = |w: &str| f32::from(u8::from(t.contains(w)));
        vec![
            has("car") + has("automobile"),
            has("fuel"),
            has("river") + has("sea"),
            has("bicycle"),
            0.1,
            0.5 * has("car"),
        ]
    };
    let dense = EmbeddingsRetriever::builder(embedder_fn(concept))
        .build(corpus)
        .await
        .unwrap();

    let lexical: Vec<String> = bm25
        .retrieve("car", 4)
        .await
        .unwrap()
        .into_iter()
        .map(|p| p.id)
        .collect();
    assert_eq!(lexical, ["1"], "BM25 alone misses the synonym");

    let hybrid = HybridRetriever::new().with(bm25).with(dense).candidates(4);
    let fused = hybrid.retrieve("car", 3).await.unwrap();
    let ids: Vec<&str> = fused.iter().map(|p| p.id.as_str()).collect();
    // "1" is first in both lists; "0" is second for the embeddings only.
    assert_eq!(ids[..2], ["1", "0"]);
    let expected_top = 1.0 / 61.0 + 1.0 / 61.0;
    assert!(
        (f64::from(fused[0].score) - expected_top).abs() < 1e-6,
        "{}",
        fused[0].score
    );
    assert_eq!(fused.len(), 3);
}
