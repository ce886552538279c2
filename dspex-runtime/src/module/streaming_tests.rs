//! Streamed calls against ScriptedLM and hand-written LMs, offline.

use super::*;
use crate::adapter::{ChatAdapter, JSONAdapter};
use crate::lm::{LmError, LmRequest, LmResponse, ScriptedLM};
use crate::module::{ChainOfThought, DynPredict, Predict, Reasoned};
use crate::signature::Signature;
use futures_util::future::BoxFuture;
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::sync::OnceLock;

fn qa() -> DynPredict {
    DynPredict::new(DynSignature::parse("question -> reasoning, answer").expect("valid"))
}

fn question() -> Example {
    Example::new().with("question", "What is 2 + 2?")
}

async fn collect<T>(stream: FieldStream<T>) -> Vec<Result<StreamItem<T>, StreamError>> {
    stream.collect().await
}

/// The chunks' text per field, in order of first appearance.
fn texts<T>(items: &[Result<StreamItem<T>, StreamError>]) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for item in items {
        if let Ok(StreamItem::Chunk(c)) = item {
            match out.iter_mut().find(|(f, _)| *f == c.field) {
                Some((_, text)) => text.push_str(&c.delta),
                None => out.push((c.field.clone(), c.delta.clone())),
            }
        }
    }
    out
}

fn last<T: std::fmt::Debug>(items: &[Result<StreamItem<T>, StreamError>]) -> &T {
    match items.last() {
        Some(Ok(StreamItem::Final(value))) => value,
        other => panic!("expected a final value last, got {other:?} in {items:?}"),
    }
}

const COMPLETION: &str = "[[ ## reasoning ## ]]\nTwo and two\n  make four.\n\n[[ ## answer ## ]]\n4 \n\n[[ ## completed ## ]]\n";

#[tokio::test]
async fn chunks_then_the_same_prediction_as_a_plain_call() {
    for size in 1..=8 {
        let lm = ScriptedLM::new([COMPLETION, COMPLETION]).chunk_size(size);
        let config = CallConfig::new().lm(lm.clone());
        let items = collect(qa().stream_with(&question(), &config, &StreamOptions::new())).await;
        let plain = qa().call_with(&question(), &config).await.expect("parses");
        assert_eq!(last(&items), &plain);
        assert_eq!(
            texts(&items),
            [
                (
                    "reasoning".to_string(),
                    "Two and two\n  make four.".to_string()
                ),
                ("answer".to_string(), "4".to_string())
            ]
        );
        for item in &items[..items.len() - 1] {
            let Ok(StreamItem::Chunk(chunk)) = item else {
                panic!("{item:?}")
            };
            assert_eq!(chunk.predictor, "self");
            assert!(!chunk.delta.contains("[[") && !chunk.delta.contains("##"));
        }
        // Streamed and plain calls send the same request (and so share cache entries).
        let requests = lm.requests();
        assert_eq!(requests[0], requests[1]);
    }
}

#[tokio::test]
async fn listening_to_some_fields_and_naming_the_predictor() {
    let lm = ScriptedLM::new([COMPLETION]);
    let options = StreamOptions::new()
        .listen("answer")
        .predictor_name("program.qa");
    let items = collect(qa().stream_with(&question(), &CallConfig::new().lm(lm), &options)).await;
    assert_eq!(texts(&items), [("answer".to_string(), "4".to_string())]);
    assert!(items.iter().all(|i| match i {
        Ok(StreamItem::Chunk(c)) => c.predictor == "program.qa",
        _ => true,
    }));
    assert_eq!(
        last(&items).get_str("reasoning"),
        Some("Two and two\n  make four.")
    );

    let lm = ScriptedLM::new([COMPLETION]);
    let options = StreamOptions::new().listen("answer").listen("question");
    let items =
        collect(qa().stream_with(&question(), &CallConfig::new().lm(lm.clone()), &options)).await;
    assert_eq!(items.len(), 1);
    let Err(StreamError::UnknownField {
        predictor,
        field,
        outputs,
    }) = &items[0]
    else {
        panic!("{items:?}")
    };
    assert_eq!((predictor.as_str(), field.as_str()), ("self", "question"));
    assert_eq!(outputs, &["reasoning", "answer"]);
    assert_eq!(lm.calls(), 0, "nothing is sent for a bad listener");
}

#[tokio::test]
async fn several_completions_and_no_lm_are_typed_errors() {
    let lm = ScriptedLM::new([COMPLETION, COMPLETION]);
    let items = collect(qa().stream_with(
        &question(),
        &CallConfig::new().lm(lm.clone()).n(2),
        &StreamOptions::new(),
    ))
    .await;
    assert!(
        matches!(items[..], [Err(StreamError::MultipleCompletions { n: 2 })]),
        "{items:?}"
    );
    assert_eq!(lm.calls(), 0);
    let message = items[0].as_ref().unwrap_err().to_string();
    assert!(message.contains("n = 2"), "{message}");

    let items = collect(qa().stream(&question())).await;
    assert!(
        matches!(items[..], [Err(StreamError::Call(Error::NoLm))]),
        "{items:?}"
    );
    // Into the program error type.
    let error: Error = StreamError::MultipleCompletions { n: 3 }.into();
    assert!(matches!(error, Error::Step { .. }), "{error}");
    let error: Error = StreamError::Call(Error::NoLm).into();
    assert!(matches!(error, Error::NoLm));
}

#[tokio::test]
async fn an_unparsable_completion_falls_back_to_a_plain_json_call() {
    let json = r#"{"reasoning": "Added.", "answer": "4"}"#;
    let lm = ScriptedLM::new(["[[ ## reasoning ## ]]\nthinking…", json]);
    let items = collect(qa().stream_with(
        &question(),
        &CallConfig::new().lm(lm.clone()),
        &StreamOptions::new(),
    ))
    .await;
    // The chunks of the failed completion, the announcement, the fallback's value.
    assert_eq!(
        texts(&items),
        [("reasoning".to_string(), "thinking…".to_string())]
    );
    let fallback = items
        .iter()
        .find_map(|i| match i {
            Ok(StreamItem::Fallback { adapter, error }) => Some((adapter, error)),
            _ => None,
        })
        .expect("a fallback item");
    assert_eq!(*fallback.0, "JSONAdapter");
    assert!(matches!(
        fallback.1,
        AdapterError::Parse {
            adapter: "ChatAdapter",
            ..
        }
    ));
    assert_eq!(last(&items).get_str("answer"), Some("4"));
    assert_eq!(lm.calls(), 2);
    assert!(lm.requests()[1].response_format.is_some());

    // Without a fallback adapter, the parse error is the last item.
    let lm = ScriptedLM::new(["not json at all"]);
    let items = collect(qa().stream_with(
        &question(),
        &CallConfig::new().lm(lm).adapter(JSONAdapter),
        &StreamOptions::new(),
    ))
    .await;
    assert!(
        matches!(
            items.last(),
            Some(Err(StreamError::Call(Error::Adapter(
                AdapterError::Parse { .. }
            ))))
        ),
        "{items:?}"
    );
    // And when the fallback fails too, the final error carries both failures.
    let lm = ScriptedLM::new(["garbage", "more garbage"]);
    let items = collect(qa().stream_with(
        &question(),
        &CallConfig::new().lm(lm),
        &StreamOptions::new(),
    ))
    .await;
    assert!(
        matches!(items[0], Ok(StreamItem::Fallback { .. })),
        "{items:?}"
    );
    let [Err(StreamError::Call(error))] = &items[1..] else {
        panic!("{items:?}")
    };
    assert!(
        matches!(
            error.parse_failures()[..],
            [
                AdapterError::Parse {
                    adapter: "ChatAdapter",
                    completion: first,
                    ..
                },
                AdapterError::Parse {
                    adapter: "JSONAdapter",
                    completion: second,
                    ..
                }
            ] if first == "garbage" && second == "more garbage"
        ),
        "{error:?}"
    );
}

#[tokio::test]
async fn json_adapter_streams_string_values() {
    let completion = "{\n  \"reasoning\": \"Two \\\"and\\\" two.\",\n  \"answer\": \"4\"\n}";
    let lm = ScriptedLM::new([completion]).chunk_size(3);
    let items = collect(qa().stream_with(
        &question(),
        &CallConfig::new().lm(lm).adapter(JSONAdapter),
        &StreamOptions::new(),
    ))
    .await;
    assert_eq!(
        texts(&items),
        [
            ("reasoning".to_string(), "Two \"and\" two.".to_string()),
            ("answer".to_string(), "4".to_string())
        ]
    );
    assert_eq!(last(&items).get_str("reasoning"), Some("Two \"and\" two."));
}

/// An LM whose stream sends some text, then breaks.
#[derive(Debug)]
struct Breaks;

impl LanguageModel for Breaks {
    fn model(&self) -> &str {
        "breaks"
    }

    fn call(&self, _: LmRequest) -> BoxFuture<'_, Result<LmResponse, LmError>> {
        Box::pin(async { Err(self.error()) })
    }

    fn stream(&self, _: LmRequest) -> BoxFuture<'_, Result<EventStream, LmError>> {
        let events = vec![
            Ok(StreamEvent::Delta {
                index: 0,
                text: "[[ ## reasoning ## ]]\nhalf".into(),
            }),
            Err(self.error()),
            Ok(StreamEvent::Delta {
                index: 0,
                text: " never seen".into(),
            }),
        ];
        Box::pin(async move { Ok(futures_util::stream::iter(events).boxed()) })
    }
}

impl Breaks {
    fn error(&self) -> LmError {
        LmError::Connect {
            model: "breaks".into(),
            endpoint: "nowhere".into(),
            message: "the stream ended before `data: [DONE]`".into(),
        }
    }
}

#[tokio::test]
async fn a_broken_stream_ends_with_its_error() {
    let items = collect(qa().stream_with(
        &question(),
        &CallConfig::new().lm(Breaks),
        &StreamOptions::new(),
    ))
    .await;
    assert_eq!(
        texts(&items),
        [("reasoning".to_string(), "half".to_string())]
    );
    assert!(
        matches!(
            items.last(),
            Some(Err(StreamError::Call(Error::Lm(LmError::Connect { .. }))))
        ),
        "{items:?}"
    );
    assert_eq!(items.iter().filter(|i| i.is_err()).count(), 1);
    assert!(!items.iter().any(|i| matches!(i, Ok(StreamItem::Final(_)))));
}

/// An LM with only `call`: the trait's default streams the whole answer at once.
#[derive(Debug)]
struct PlainOnly(ScriptedLM);

impl LanguageModel for PlainOnly {
    fn model(&self) -> &str {
        "plain"
    }

    fn call(&self, request: LmRequest) -> BoxFuture<'_, Result<LmResponse, LmError>> {
        self.0.call(request)
    }
}

#[tokio::test]
async fn an_lm_without_streaming_streams_at_once() {
    let lm = PlainOnly(ScriptedLM::new([COMPLETION]));
    let items = collect(qa().stream_with(
        &question(),
        &CallConfig::new().lm(lm),
        &StreamOptions::new(),
    ))
    .await;
    // One chunk per field, each complete.
    let chunks: Vec<&FieldChunk> = items
        .iter()
        .filter_map(|i| match i {
            Ok(StreamItem::Chunk(c)) => Some(c),
            _ => None,
        })
        .collect();
    assert_eq!(chunks.len(), 2, "{chunks:?}");
    assert!(chunks.iter().all(|c| c.is_last));
    assert_eq!(last(&items).get_str("answer"), Some("4"));
}

#[tokio::test]
async fn settings_are_read_when_the_stream_is_made() {
    let lm = ScriptedLM::new([COMPLETION]);
    let stream =
        crate::settings::with_settings(crate::settings::Settings::new().lm(lm.clone()), async {
            qa().stream(&question())
        })
        .await;
    let items = collect(stream).await;
    assert_eq!(last(&items).get_str("answer"), Some("4"));
    assert_eq!(lm.calls(), 1);
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct In {
    question: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Out {
    answer: i64,
}

struct Sum;

impl Signature for Sum {
    type Input = In;
    type Output = Out;

    fn signature() -> &'static DynSignature {
        static SIG: OnceLock<DynSignature> = OnceLock::new();
        SIG.get_or_init(|| DynSignature::parse("question -> answer: int").expect("valid"))
    }
}

#[tokio::test]
async fn typed_predict_and_chain_of_thought() {
    let input = In {
        question: "2 + 2?".into(),
    };
    let lm = ScriptedLM::from_fields([json!({"answer": 4})]).chunk_size(1);
    let predict = Predict::<Sum>::new().with_config(CallConfig::new().lm(lm));
    let items = collect(predict.stream(input.clone())).await;
    assert_eq!(last(&items), &Out { answer: 4 });
    assert_eq!(texts(&items), [("answer".to_string(), "4".to_string())]);

    let lm =
        ScriptedLM::from_fields([json!({"reasoning": "Add them.", "answer": 4})]).chunk_size(2);
    let cot = ChainOfThought::<Sum>::new().with_config(CallConfig::new().lm(lm));
    let items = collect(cot.stream(input.clone())).await;
    assert_eq!(
        last(&items),
        &Reasoned {
            reasoning: "Add them.".into(),
            output: Out { answer: 4 }
        }
    );
    assert_eq!(
        texts(&items),
        [
            ("reasoning".to_string(), "Add them.".to_string()),
            ("answer".to_string(), "4".to_string())
        ]
    );
    assert!(items.iter().all(|i| match i {
        Ok(StreamItem::Chunk(c)) => c.predictor == "predict",
        _ => true,
    }));

    // A value of the wrong type does not parse; the fallback call finds the script used up.
    let lm = ScriptedLM::from_fields([json!({"answer": "four"})]);
    let predict = Predict::<Sum>::new().with_config(CallConfig::new().lm(lm.clone()));
    let items = collect(predict.stream_with(
        input,
        &CallConfig::new().adapter(ChatAdapter),
        &StreamOptions::new(),
    ))
    .await;
    assert!(
        matches!(
            items.last(),
            Some(Err(StreamError::Call(Error::AdapterFallback { fallback, .. })))
                if matches!(**fallback, Error::Lm(LmError::ScriptExhausted { .. }))
        ),
        "{items:?}"
    );
    assert_eq!(lm.calls(), 1);
}
