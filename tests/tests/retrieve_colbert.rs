//! The ColBERTv2 client against the mock ColBERTv2 server on loopback, and real DSPy 3.4.1's
//! `dspy.ColBERTv2` against the same mock getting the same passages (the Python side runs in the
//! project's venv, created or reused by `scripts/python-env`). Nothing leaves loopback.

mod common;

use common::{repo_root, venv_python};

use dspex::prelude::*;
use dspex::runtime::retrieve::{ColBERTv2, Passage, Retrieve, RetrieveError, Retriever};
use dspex::testing::{ColbertFault, MockColbert, MockColbertStats};
use serde_json::{Value, json};
use std::process::Command;
use std::time::Duration;

const PASSAGES: [&str; 8] = [
    "Ada Lovelace wrote the first published algorithm for the Analytical Engine",
    "Charles Babbage designed the Analytical Engine",
    "Grace Hopper built the first compiler",
    "Alan Turing described a universal machine",
    "Paris is the capital of France",
    "The Analytical Engine was never completed in Babbage's lifetime",
    "Lovelace's notes describe how the engine could compute Bernoulli numbers",
    "Hopper popularized the term debugging",
];

const QUERIES: [&str; 4] = [
    "Who designed the Analytical Engine?",
    "first compiler",
    "Lovelace notes Bernoulli numbers",
    "capital of France: Paris",
];

const K: usize = 3;

/// Runs `tests/python/dspy_colbert.py` with `config` (DSPy's request cache in a fresh directory)
/// off the async runtime, and reads the JSON object it prints.
async fn run_dspy(config: Value) -> Value {
    let cache = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(venv_python());
    cmd.arg(repo_root().join("tests/python/dspy_colbert.py"))
        .arg(config.to_string())
        .env("LITELLM_LOCAL_MODEL_COST_MAP", "True")
        .env("DSPY_CACHEDIR", cache.path());
    let out = tokio::task::spawn_blocking(move || cmd.output().expect("python runs"))
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "DSPy's ColBERTv2 failed against the mock:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("one JSON object")
}

/// Checks that DSPy's passages (dicts) are the Rust client's, field by field.
fn assert_same(what: &str, dspy: &Value, rust: &[Passage]) {
    let dspy = dspy
        .as_array()
        .unwrap_or_else(|| panic!("{what}: DSPy got no list: {dspy}"));
    assert_eq!(dspy.len(), rust.len(), "{what}");
    for (d, r) in dspy.iter().zip(rust) {
        assert_eq!(d["pid"].to_string(), r.id, "{what}");
        assert_eq!(d["text"], r.text.as_str(), "{what}");
        assert_eq!(d["score"].as_f64().unwrap() as f32, r.score, "{what}");
        for key in ["rank", "prob"] {
            assert_eq!(d[key], r.extra[key], "{what}: {key}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dspy_colbertv2_and_dspex_get_the_same_passages_from_the_mock() {
    let server = MockColbert::start(PASSAGES).await.unwrap();
    let error_json = MockColbert::builder(PASSAGES)
        .fault(ColbertFault::ErrorJson("index offline".into()))
        .start()
        .await
        .unwrap();
    let status_500 = MockColbert::builder(PASSAGES)
        .fault(ColbertFault::Status(500))
        .start()
        .await
        .unwrap();
    let malformed = MockColbert::builder(PASSAGES)
        .fault(ColbertFault::Malformed)
        .start()
        .await
        .unwrap();

    let get = ColBERTv2::new(server.url()).unwrap();
    let post = ColBERTv2::new(server.url()).unwrap().post_requests(true);
    let port = ColBERTv2::with_port("http://127.0.0.1", server.addr().port()).unwrap();
    let mut rust = Vec::new();
    for query in QUERIES {
        let by_get = get.retrieve(query, K).await.unwrap();
        assert_eq!(by_get.len(), K);
        assert_eq!(post.retrieve(query, K).await.unwrap(), by_get);
        assert_eq!(port.retrieve(query, K).await.unwrap(), by_get);
        rust.push(by_get);
    }
    // The mock found what the words say.
    assert_eq!(rust[0][0].id, "1");
    assert_eq!(rust[1][0].id, "2");
    assert_eq!(rust[2][0].id, "6");
    assert_eq!(rust[3][0].id, "4");
    assert_eq!(
        server.requests(),
        MockColbertStats {
            get: 2 * QUERIES.len(),
            post: QUERIES.len()
        }
    );

    let result = run_dspy(json!({
        "url": server.url(),
        "host": "http://127.0.0.1",
        "port": server.addr().port(),
        "queries": QUERIES,
        "k": K,
        "failing": {
            "error_json": error_json.url(),
            "status_500": status_500.url(),
            "malformed": malformed.url(),
        },
    }))
    .await;
    assert_eq!(result["dspy_version"], "3.4.1");
    for (query, passages) in QUERIES.iter().zip(&rust) {
        for mode in ["get", "post", "port"] {
            assert_same(&format!("{mode} {query:?}"), &result[mode][query], passages);
        }
        // DSPy's GET adds `long_text`, the text again: the Rust client's `text`.
        for (d, r) in result["get"][query]
            .as_array()
            .unwrap()
            .iter()
            .zip(passages)
        {
            assert_eq!(d["long_text"], r.text.as_str());
        }
    }
    let simplified: Vec<String> = rust[0].iter().map(|p| p.text.clone()).collect();
    assert_eq!(result["simplify"], json!(simplified));
    // DSPy asked as often as the Rust clients did (its cache was fresh; `simplify` was cached).
    assert_eq!(
        server.requests(),
        MockColbertStats {
            get: 4 * QUERIES.len(),
            post: 2 * QUERIES.len()
        }
    );

    // Both clients refuse the failing servers: DSPy with exceptions, dspex with typed errors.
    let failing = &result["failing"];
    assert_eq!(failing["error_json"]["error_type"], "ValueError");
    assert_eq!(
        failing["error_json"]["error"],
        "ColBERTv2 server returned an error: index offline"
    );
    assert_eq!(failing["status_500"]["error_type"], "HTTPError");
    assert!(failing["malformed"]["error_type"].is_string(), "{failing}");

    let err = ColBERTv2::new(error_json.url())
        .unwrap()
        .retrieve(QUERIES[0], K)
        .await
        .unwrap_err();
    match &err {
        RetrieveError::Http { message, .. } => assert_eq!(
            message,
            failing["error_json"]["error"].as_str().unwrap(),
            "the same message as DSPy's"
        ),
        other => panic!("{other:?}"),
    }
    let err = ColBERTv2::new(status_500.url())
        .unwrap()
        .retrieve(QUERIES[0], K)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            RetrieveError::Http {
                status: Some(500),
                ..
            }
        ),
        "{err:?}"
    );
    let err = ColBERTv2::new(malformed.url())
        .unwrap()
        .retrieve(QUERIES[0], K)
        .await
        .unwrap_err();
    assert!(matches!(err, RetrieveError::Decode { .. }), "{err:?}");
}

#[tokio::test]
async fn colbert_as_a_retrieve_program_with_faults_healing() {
    let server = MockColbert::start(PASSAGES).await.unwrap();
    let retrieve = Retrieve::new(
        ColBERTv2::new(server.url())
            .unwrap()
            .timeout(Duration::from_millis(300)),
        2,
    );
    let found = retrieve.forward("Grace Hopper".into()).await.unwrap();
    assert_eq!(found.passages.len(), 2);
    // Both words in five (2 + 2/5), then one word in four (1 + 1/4).
    assert_eq!(found.passages[0].text, PASSAGES[2]);
    assert_eq!(found.passages[1].text, PASSAGES[7]);

    server.set_fault(Some(ColbertFault::Status(503)));
    let err = retrieve.forward("Grace Hopper".into()).await.unwrap_err();
    assert!(
        matches!(
            &err,
            dspex::Error::Retrieve(RetrieveError::Http {
                status: Some(503),
                ..
            })
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains(&server.url()), "{err}");

    server.set_fault(Some(ColbertFault::Hang));
    let err = retrieve.forward("Grace Hopper".into()).await.unwrap_err();
    assert!(
        matches!(
            &err,
            dspex::Error::Retrieve(RetrieveError::Http { status: None, .. })
        ),
        "{err:?}"
    );

    server.set_fault(None);
    assert_eq!(
        retrieve.forward("Grace Hopper".into()).await.unwrap(),
        found
    );
    server.shutdown().await;
}

/// Four passages for the client's own checks.
const FOUR: [&str; 4] = [
    "Ada Lovelace wrote the first program",
    "The Analytical Engine was designed by Charles Babbage",
    "Lovelace and Babbage corresponded about the Analytical Engine",
    "Paris is the capital of France",
];

#[tokio::test]
async fn the_client_reads_the_mock_by_get_and_post() {
    let server = MockColbert::start(FOUR).await.unwrap();
    let get = ColBERTv2::new(server.url()).unwrap();
    let post = ColBERTv2::new(server.url()).unwrap().post_requests(true);
    let a = get
        .retrieve("Who wrote the first program?", 3)
        .await
        .unwrap();
    let b = post
        .retrieve("Who wrote the first program?", 3)
        .await
        .unwrap();
    assert_eq!(a, b);
    assert_eq!(a[0].id, "0");
    assert_eq!(a[0].text, FOUR[0]);
    assert_eq!(a[0].extra["rank"], 1);
    assert_eq!(a.len(), 3);
    assert_eq!(server.requests(), MockColbertStats { get: 1, post: 1 });
}

#[tokio::test]
async fn faults_become_the_clients_typed_errors() {
    let server = MockColbert::builder(FOUR)
        .fault(ColbertFault::ErrorJson("index offline".into()))
        .start()
        .await
        .unwrap();
    let client = ColBERTv2::new(server.url()).unwrap();
    let err = client.retrieve("q", 3).await.unwrap_err();
    assert!(
        matches!(&err, RetrieveError::Http { status: Some(200), message, .. }
            if message == "ColBERTv2 server returned an error: index offline"),
        "{err:?}"
    );

    server.set_fault(Some(ColbertFault::Status(500)));
    let err = client.retrieve("q", 3).await.unwrap_err();
    match &err {
        RetrieveError::Http {
            url,
            status,
            message,
        } => {
            assert_eq!(url, &server.url());
            assert_eq!(*status, Some(500));
            assert!(
                message.contains("mock ColBERTv2 failure (HTTP 500)"),
                "{message}"
            );
        }
        other => panic!("{other:?}"),
    }

    server.set_fault(Some(ColbertFault::Malformed));
    let err = client.retrieve("q", 3).await.unwrap_err();
    assert!(
        matches!(&err, RetrieveError::Decode { message, .. } if message.starts_with("not JSON")),
        "{err:?}"
    );

    server.set_fault(Some(ColbertFault::Hang));
    let quick = client.clone().timeout(Duration::from_millis(200));
    let err = quick.retrieve("q", 3).await.unwrap_err();
    assert!(
        matches!(&err, RetrieveError::Http { status: None, message, .. } if message.starts_with("no answer within")),
        "{err:?}"
    );

    server.set_fault(None);
    assert_eq!(client.retrieve("Paris", 1).await.unwrap()[0].id, "3");
    server.shutdown().await;
}
