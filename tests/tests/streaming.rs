//! Output-field streaming end to end: Predict and ChainOfThought against dspex's mock LM server
//! over HTTP server-sent events — chunks, final values, the JSON adapter and its fallback, the
//! cache, and faults. Nothing here reaches the internet.

use dspex::adapter::JSONAdapter;
use dspex::lm::{CacheConfig, LM, LmError, RetryPolicy};
use dspex::module::{
    CallConfig, ChainOfThought, FieldChunk, FieldStream, Predict, StreamError, StreamItem,
    StreamOptions,
};
use dspex::prelude::*;
use dspex::testing::{Fault, FaultWhen, MockLm, MockLmServer, Rule};
use futures_util::StreamExt;
use std::time::Duration;

#[signature("question -> answer")]
struct QA;

fn lm(server: &MockLmServer, cache: bool) -> LM {
    let builder = LM::builder("openai/mock")
        .api_base(server.api_base())
        .api_key("sk-test")
        .retry(
            RetryPolicy::attempts(3)
                .with_delays(Duration::from_millis(10), Duration::from_millis(40)),
        )
        .timeout(Duration::from_secs(5));
    let builder = if cache {
        builder.cache_config(CacheConfig::memory_only())
    } else {
        builder.cache(false)
    };
    builder.build().expect("the LM builds")
}

async fn server(rules: Vec<Rule>, faults: Vec<(Fault, FaultWhen)>) -> MockLmServer {
    let mut builder = MockLm::builder().seed(11).rules(rules);
    for (fault, when) in faults {
        builder = builder.fault(fault, when);
    }
    builder.start().await.expect("the mock server starts")
}

fn chat_requests(server: &MockLmServer) -> u64 {
    server.stats().requests_to("/v1/chat/completions")
}

fn question(text: &str) -> QAInput {
    QAInput {
        question: text.to_string(),
    }
}

async fn collect<T>(stream: FieldStream<T>) -> Vec<Result<StreamItem<T>, StreamError>> {
    stream.collect().await
}

fn chunks<T>(items: &[Result<StreamItem<T>, StreamError>]) -> Vec<&FieldChunk> {
    items
        .iter()
        .filter_map(|i| match i {
            Ok(StreamItem::Chunk(c)) => Some(c),
            _ => None,
        })
        .collect()
}

/// The chunks' text per field, in order of first appearance.
fn texts<T>(items: &[Result<StreamItem<T>, StreamError>]) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for c in chunks(items) {
        match out.iter_mut().find(|(f, _)| *f == c.field) {
            Some((_, text)) => text.push_str(&c.delta),
            None => out.push((c.field.clone(), c.delta.clone())),
        }
    }
    out
}

fn final_value<T: std::fmt::Debug>(items: &[Result<StreamItem<T>, StreamError>]) -> &T {
    match items.last() {
        Some(Ok(StreamItem::Final(value))) => value,
        other => panic!("expected the final value last, got {other:?} in {items:?}"),
    }
}

fn assert_no_markers<T>(items: &[Result<StreamItem<T>, StreamError>]) {
    for c in chunks(items) {
        assert!(
            !c.delta.contains("[[") && !c.delta.contains("##") && !c.delta.contains("]]"),
            "a marker leaked: {c:?}"
        );
    }
}

const LONG: &str = "[[ ## answer ## ]]\nThe answer spans many words, so the mock server splits it across several server-sent events.\n\n[[ ## completed ## ]]";

#[tokio::test]
async fn predict_streams_fields_over_sse_then_the_plain_result() {
    let server = server(vec![Rule::contains("long one", LONG)], vec![]).await;
    let qa = Predict::<QA>::new().with_config(CallConfig::new().lm(lm(&server, false)));

    let items = collect(qa.stream(question("What is the capital of France?"))).await;
    let out = final_value(&items);
    assert_eq!(
        texts(&items),
        [("answer".to_string(), out.answer.clone())],
        "{items:?}"
    );
    assert!(!out.answer.is_empty());
    assert!(chunks(&items).iter().all(|c| c.predictor == "self"));
    assert_no_markers(&items);
    // The plain call parses the same answer from the same (deterministic) completion.
    let plain = qa
        .forward(question("What is the capital of France?"))
        .await
        .expect("a plain call");
    assert_eq!(&plain, out);
    assert_eq!(chat_requests(&server), 2);

    // A long answer arrives in several chunks, each already free of markers.
    let items = collect(qa.stream(question("the long one"))).await;
    let expected = "The answer spans many words, so the mock server splits it across several server-sent events.";
    assert_eq!(final_value(&items).answer, expected);
    assert_eq!(
        texts(&items),
        [("answer".to_string(), expected.to_string())]
    );
    let pieces = chunks(&items)
        .iter()
        .filter(|c| !c.delta.is_empty())
        .count();
    assert!(pieces >= 2, "streamed in {pieces} piece(s): {items:?}");
    assert_no_markers(&items);
}

#[tokio::test]
async fn chain_of_thought_streams_reasoning_then_the_answer() {
    let server = server(vec![], vec![]).await;
    let cot = ChainOfThought::<QA>::new().with_config(CallConfig::new().lm(lm(&server, false)));
    let items = collect(cot.stream(question("Why is the sky blue?"))).await;
    let out = final_value(&items);
    assert_eq!(
        texts(&items),
        [
            ("reasoning".to_string(), out.reasoning.clone()),
            ("answer".to_string(), out.output.answer.clone())
        ]
    );
    assert!(chunks(&items).iter().all(|c| c.predictor == "predict"));
    assert_eq!(chunks(&items).iter().filter(|c| c.is_last).count(), 2);
    assert_no_markers(&items);

    // Listening to the answer only.
    let items = collect(cot.stream_with(
        question("Why is the sky blue?"),
        &CallConfig::default(),
        &StreamOptions::new().listen("answer"),
    ))
    .await;
    assert_eq!(
        texts(&items),
        [(
            "answer".to_string(),
            final_value(&items).output.answer.clone()
        )]
    );
}

#[tokio::test]
async fn json_adapter_streams_string_values_over_sse() {
    let server = server(vec![], vec![]).await;
    let cot = ChainOfThought::<QA>::new().with_config(CallConfig::new().lm(lm(&server, false)));
    let items = collect(cot.stream_with(
        question("Name a prime number."),
        &CallConfig::new().adapter(JSONAdapter),
        &StreamOptions::new(),
    ))
    .await;
    let out = final_value(&items);
    assert_eq!(
        texts(&items),
        [
            ("reasoning".to_string(), out.reasoning.clone()),
            ("answer".to_string(), out.output.answer.clone())
        ]
    );
    for c in chunks(&items) {
        assert!(
            !c.delta.contains('{') && !c.delta.contains("\":"),
            "JSON syntax leaked: {c:?}"
        );
    }
}

#[tokio::test]
async fn an_unparsable_streamed_completion_falls_back_to_a_plain_json_call() {
    // The ChatAdapter prompt gets prose; the JSONAdapter prompt falls through to a JSON answer.
    let server = server(
        vec![Rule::contains(
            "Respond with the corresponding output fields",
            "I would rather not use your markers.",
        )],
        vec![],
    )
    .await;
    let qa = Predict::<QA>::new().with_config(CallConfig::new().lm(lm(&server, false)));
    let items = collect(qa.stream(question("Anything?"))).await;
    assert!(chunks(&items).is_empty(), "{items:?}");
    assert!(
        matches!(
            items[0],
            Ok(StreamItem::Fallback {
                adapter: "JSONAdapter",
                ..
            })
        ),
        "{items:?}"
    );
    assert!(!final_value(&items).answer.is_empty());
    assert_eq!(chat_requests(&server), 2);
}

#[tokio::test]
async fn a_truncated_stream_ends_with_a_typed_error_item() {
    let server = server(
        vec![Rule::contains("long one", LONG)],
        vec![(Fault::TruncatedStream, FaultWhen::Always)],
    )
    .await;
    let qa = Predict::<QA>::new().with_config(CallConfig::new().lm(lm(&server, true)));
    let items = collect(qa.stream(question("the long one"))).await;
    assert!(
        matches!(
            items.last(),
            Some(Err(StreamError::Call(dspex::Error::Lm(LmError::Connect { message, .. }))))
                if message.contains("[DONE]")
        ),
        "{items:?}"
    );
    assert_eq!(items.iter().filter(|i| i.is_err()).count(), 1);
    assert!(!items.iter().any(|i| matches!(i, Ok(StreamItem::Final(_)))));
    // Whatever arrived before the break streamed, without markers; nothing was retried.
    assert_no_markers(&items);
    assert_eq!(chat_requests(&server), 1);

    // A broken stream is not cached: once healed, the next call goes to the server.
    server.set_faults(vec![]);
    let items = collect(qa.stream(question("the long one"))).await;
    final_value(&items);
    assert_eq!(chat_requests(&server), 2);
}

#[tokio::test]
async fn failures_before_the_stream_are_retried() {
    let server = server(vec![], vec![(Fault::Status(503), FaultWhen::FirstN(1))]).await;
    let qa = Predict::<QA>::new().with_config(CallConfig::new().lm(lm(&server, false)));
    let items = collect(qa.stream(question("Retry me."))).await;
    final_value(&items);
    assert_eq!(chat_requests(&server), 2);
}

#[tokio::test]
async fn streams_and_plain_calls_share_the_cache() {
    let server = server(vec![], vec![]).await;
    let lm = lm(&server, true);
    let qa = Predict::<QA>::new().with_config(CallConfig::new().lm(lm.clone()));

    let streamed = collect(qa.stream(question("Cache me."))).await;
    assert_eq!(chat_requests(&server), 1);
    // The completed stream was stored: the plain call is a hit.
    let plain = qa.forward(question("Cache me.")).await.expect("a hit");
    assert_eq!(&plain, final_value(&streamed));
    assert_eq!(chat_requests(&server), 1);
    // A hit streams too, each field at once.
    let again = collect(qa.stream(question("Cache me."))).await;
    assert_eq!(final_value(&again), &plain);
    assert_eq!(texts(&again), texts(&streamed));
    assert!(chunks(&again).iter().all(|c| c.is_last), "{again:?}");
    assert_eq!(chat_requests(&server), 1);
    // Every call is in the history, the hits marked as such.
    let hits: Vec<bool> = lm.history(10).iter().map(|h| h.cache_hit).collect();
    assert_eq!(hits, [false, true, true]);
    assert!(lm.history(10)[0].usage.total_tokens > 0);
}

#[tokio::test]
async fn several_completions_are_refused_before_any_request() {
    let server = server(vec![], vec![]).await;
    let qa = Predict::<QA>::new().with_config(CallConfig::new().lm(lm(&server, false)));
    let items = collect(qa.stream_with(
        question("Two answers?"),
        &CallConfig::new().n(2),
        &StreamOptions::new(),
    ))
    .await;
    assert!(
        matches!(items[..], [Err(StreamError::MultipleCompletions { n: 2 })]),
        "{items:?}"
    );
    assert_eq!(chat_requests(&server), 0);
}
