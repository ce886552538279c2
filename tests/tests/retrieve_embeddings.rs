//! The embeddings retriever through a real `LM` against the mock LM server's `/v1/embeddings`
//! (deterministic hash vectors), saved and reopened, as a program and a tool, and fused with the
//! ColBERTv2 client in a hybrid. Nothing leaves loopback.

use dspex::lm::{LM, RetryPolicy};
use dspex::module::search_tool;
use dspex::prelude::*;
use dspex::runtime::retrieve::{
    ColBERTv2, EmbeddingsRetriever, HybridRetriever, OnBadLine, Retrieve, RetrieveError, Retriever,
    read_jsonl,
};
use dspex::testing::{Fault, FaultWhen, MockColbert, MockLm, MockLmServer};
use std::time::Duration;

const PASSAGES: [&str; 6] = [
    "Ada Lovelace wrote the first published algorithm",
    "Charles Babbage designed the Analytical Engine",
    "Grace Hopper built the first compiler",
    "Alan Turing described a universal machine",
    "Paris is the capital of France",
    "The Analytical Engine was never completed",
];

fn lm(server: &MockLmServer) -> LM {
    LM::builder("openai/mock-embedding")
        .api_base(server.api_base())
        .api_key("sk-test")
        .cache(false)
        .retry(RetryPolicy::none())
        .timeout(Duration::from_secs(5))
        .build()
        .expect("the LM builds")
}

fn embedding_requests(server: &MockLmServer) -> u64 {
    server.stats().requests_to("/v1/embeddings")
}

/// The corpus as a JSONL file with ids and a title per line.
fn corpus_file() -> tempfile::NamedTempFile {
    let mut text = String::new();
    for (i, p) in PASSAGES.iter().enumerate() {
        text.push_str(
            &serde_json::json!({"id": format!("doc-{i}"), "text": p, "title": format!("T{i}")})
                .to_string(),
        );
        text.push('\n');
    }
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), text).unwrap();
    file
}

#[tokio::test]
async fn builds_searches_saves_and_reopens_through_the_lm() {
    let server = MockLm::builder().embedding_dim(32).start().await.unwrap();
    let corpus = read_jsonl(corpus_file().path(), OnBadLine::Stop).unwrap();
    let retriever = EmbeddingsRetriever::builder(lm(&server))
        .batch_size(4)
        .build(corpus)
        .await
        .unwrap();
    assert_eq!((retriever.len(), retriever.dim()), (6, 32));
    // Six passages in batches of four: two requests.
    assert_eq!(embedding_requests(&server), 2);

    // The mock's vectors are a hash of the text: a passage's own text finds it, exactly.
    for (i, passage) in PASSAGES.iter().enumerate() {
        let hits = retriever.retrieve(passage, 3).await.unwrap();
        assert_eq!(hits.len(), 3);
        assert_eq!(hits[0].id, format!("doc-{i}"));
        assert_eq!(hits[0].text, *passage);
        assert_eq!(hits[0].extra["title"], format!("T{i}"));
        assert!((hits[0].score - 1.0).abs() < 1e-5, "{}", hits[0].score);
        assert!(hits[1].score < hits[0].score && hits[2].score <= hits[1].score);
    }
    assert_eq!(embedding_requests(&server), 2 + 6);

    let dir = tempfile::tempdir().unwrap();
    retriever.save(dir.path().join("index")).await.unwrap();
    let reopened = EmbeddingsRetriever::open(dir.path().join("index"), lm(&server))
        .await
        .unwrap();
    reopened.check_embedder().await.unwrap();
    let before = embedding_requests(&server);
    for query in ["Who built a compiler?", PASSAGES[3]] {
        assert_eq!(
            reopened.retrieve(query, 6).await.unwrap(),
            retriever.retrieve(query, 6).await.unwrap()
        );
    }
    // Opening embedded nothing; the check and each query one text each.
    assert_eq!(embedding_requests(&server) - before, 4);
}

#[tokio::test]
async fn as_a_program_and_a_tool() {
    let server = MockLm::start().await.unwrap();
    let retriever = EmbeddingsRetriever::builder(lm(&server))
        .build_texts(PASSAGES)
        .await
        .unwrap();
    let retrieve = Retrieve::new(retriever, 2);
    let found = retrieve.forward(PASSAGES[2].to_string()).await.unwrap();
    assert_eq!(found.passages.len(), 2);
    assert_eq!(found.passages[0].id, "2");
    assert_eq!(found.texts()[0], PASSAGES[2]);

    let tool = search_tool(retrieve.retriever().clone(), 1);
    let mut args = serde_json::Map::new();
    args.insert("query".into(), PASSAGES[4].into());
    assert_eq!(
        tool.call(args).await.unwrap(),
        serde_json::json!([PASSAGES[4]])
    );
}

#[tokio::test]
async fn endpoint_failures_and_other_dimensions_are_typed_errors() {
    let server = MockLm::builder()
        .fault(Fault::Status(400), FaultWhen::matching("poison").unwrap())
        .start()
        .await
        .unwrap();
    let retriever = EmbeddingsRetriever::new(
        lm(&server),
        dspex::runtime::retrieve::Corpus::from_texts(PASSAGES),
    )
    .await
    .unwrap();
    let err = retriever.retrieve("poison pill", 3).await.unwrap_err();
    assert!(matches!(err, RetrieveError::Embed(_)), "{err:?}");
    // Through a program, the same error is the program's.
    let err = Retrieve::new(retriever.clone(), 3)
        .forward("poison again".into())
        .await
        .unwrap_err();
    assert!(
        matches!(err, dspex::Error::Retrieve(RetrieveError::Embed(_))),
        "{err:?}"
    );

    // An index of 64-dimensional vectors queried with a 16-dimensional embedder.
    let small = MockLm::builder().embedding_dim(16).start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    retriever.save(dir.path()).await.unwrap();
    let mismatched = EmbeddingsRetriever::open(dir.path(), lm(&small))
        .await
        .unwrap();
    let err = mismatched.check_embedder().await.unwrap_err();
    assert!(
        matches!(
            err,
            RetrieveError::Dimension {
                expected: 64,
                got: 16,
                ..
            }
        ),
        "{err:?}"
    );
    let err = mismatched.retrieve("anything", 1).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "the query has dimension 16, the index holds vectors of dimension 64"
    );

    // The endpoint failing while building fails the build.
    let failing = MockLm::builder()
        .fault(Fault::Status(400), FaultWhen::Always)
        .start()
        .await
        .unwrap();
    let err = EmbeddingsRetriever::builder(lm(&failing))
        .build_texts(PASSAGES)
        .await
        .unwrap_err();
    assert!(matches!(err, RetrieveError::Embed(_)), "{err:?}");
}

#[tokio::test]
async fn hybrid_fuses_embeddings_and_colbert_by_reciprocal_rank() {
    let lm_server = MockLm::start().await.unwrap();
    let colbert_server = MockColbert::start(PASSAGES).await.unwrap();
    // The ColBERT mock's pids are positions, as are the embeddings corpus's ids.
    let dense = EmbeddingsRetriever::builder(lm(&lm_server))
        .build_texts(PASSAGES)
        .await
        .unwrap();
    let sparse = ColBERTv2::new(colbert_server.url()).unwrap();

    let query = "Analytical Engine";
    let dense_ids: Vec<String> = dense
        .retrieve(query, 6)
        .await
        .unwrap()
        .into_iter()
        .map(|p| p.id)
        .collect();
    let sparse_ids: Vec<String> = sparse
        .retrieve(query, 6)
        .await
        .unwrap()
        .into_iter()
        .map(|p| p.id)
        .collect();
    // ColBERT's mock puts the two passages about the engine first (the shorter one ahead).
    assert_eq!(sparse_ids[..2], ["5", "1"]);

    let hybrid = HybridRetriever::new()
        .with(dense)
        .with(sparse)
        .candidates(6);
    let fused = hybrid.retrieve(query, 6).await.unwrap();
    assert_eq!(fused.len(), 6, "every passage, once");
    let rank_in = |ids: &[String], id: &str| ids.iter().position(|x| x == id).unwrap() + 1;
    // Σ 1/(60 + rank); ties by best rank, then first seen (every passage is in the dense list,
    // which comes first, so by dense rank).
    let mut expected: Vec<(f64, usize, usize, String)> = (0..PASSAGES.len())
        .map(|i| {
            let id = i.to_string();
            let (a, b) = (rank_in(&dense_ids, &id), rank_in(&sparse_ids, &id));
            (
                1.0 / (60.0 + a as f64) + 1.0 / (60.0 + b as f64),
                a.min(b),
                a,
                id,
            )
        })
        .collect();
    expected.sort_by(|x, y| y.0.total_cmp(&x.0).then(x.1.cmp(&y.1)).then(x.2.cmp(&y.2)));
    let fused_ids: Vec<&str> = fused.iter().map(|p| p.id.as_str()).collect();
    let expected_ids: Vec<&str> = expected.iter().map(|e| e.3.as_str()).collect();
    assert_eq!(fused_ids, expected_ids);
    for (passage, expected) in fused.iter().zip(&expected) {
        assert_eq!(passage.score, expected.0 as f32);
    }
    assert_eq!(colbert_server.requests().get, 2);
}
