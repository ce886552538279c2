//! OpenAI's Responses API (`ModelType::Responses`, DSPy's `model_type="responses"`) against the
//! mock server's `/v1/responses`: a plain call, a typed ChainOfThought call, streaming (raw and
//! typed), n > 1 (one output per response: the client makes the other calls), JSON mode
//! (`text.format`), native tools (`function_call` items), an image input, usage, typed errors and
//! Retry-After, and the refusal for a provider that does not speak it.

use dspex::adapter::{ChatAdapter, JSONAdapter};
use dspex::lm::{LM, LmErrorKind, LmRequest, ModelType, RetryPolicy, StreamEvent};
use dspex::module::StreamItem;
use dspex::prelude::*;
use dspex::testing::{Fault, FaultWhen, MockLm, MockLmServer, Rule};
use futures_util::StreamExt;
use serde_json::json;
use std::time::Duration;

#[signature("question -> answer")]
struct QA;

/// Describe the picture.
#[signature]
struct Describe {
    #[input]
    image: Image,
    #[output]
    caption: String,
}

/// Look a word up.
#[tool]
fn lookup(word: String) -> String {
    format!("{word}: a word")
}

/// Answer, calling tools when needed.
#[signature]
struct ToolQA {
    #[input]
    question: String,
    #[input]
    tools: Vec<Tool>,
    #[output]
    answer: String,
    #[output]
    tool_calls: ToolCalls,
}

async fn server() -> MockLmServer {
    MockLm::builder()
        .rule(
            Rule::contains(
                "Define serendipity",
                "[[ ## answer ## ]]\nLooking.\n\n[[ ## completed ## ]]",
            )
            .with_tool_call("lookup", json!({"word": "serendipity"})),
        )
        .start()
        .await
        .expect("the mock LM starts")
}

fn lm(server: &MockLmServer) -> LM {
    LM::builder("openai/gpt-4o-mini")
        .model_type(ModelType::Responses)
        .api_base(server.api_base())
        .api_key("sk-responses")
        .cache(false)
        .retry(RetryPolicy::none())
        .build()
        .expect("the LM builds")
}

#[tokio::test]
async fn plain_typed_streamed_and_several_completions() {
    let server = server().await;
    let lm = lm(&server);
    let response = lm
        .call(LmRequest::prompt("Say hello"))
        .await
        .expect("a plain call");
    assert!(!response.text().is_empty());
    assert!(response.usage.prompt_tokens > 0 && response.usage.completion_tokens > 0);
    assert_eq!(server.stats().requests.get("/v1/responses"), Some(&1));

    let cot = ChainOfThought::<QA>::new().with_config(CallConfig::new().lm(lm.clone()));
    let out = cot
        .forward(QAInput {
            question: "What is 2 + 2?".into(),
        })
        .await
        .expect("a typed call");
    assert!(!out.reasoning.is_empty() && !out.answer.is_empty());

    let mut events = lm
        .stream(LmRequest::prompt("Stream please"))
        .await
        .expect("a stream");
    let (mut text, mut usage, mut finished) = (String::new(), None, false);
    while let Some(event) = events.next().await {
        match event.expect("no stream error") {
            StreamEvent::Delta { text: t, .. } => text.push_str(&t),
            StreamEvent::Usage(u) => usage = Some(u),
            StreamEvent::Finish { .. } => finished = true,
            _ => {}
        }
    }
    assert!(!text.is_empty() && usage.is_some() && finished);

    let items: Vec<_> = cot
        .stream(QAInput {
            question: "Why is the sky blue?".into(),
        })
        .collect()
        .await;
    assert!(
        matches!(items.last(), Some(Ok(StreamItem::Final(out))) if !out.answer.is_empty()),
        "{items:?}"
    );

    server.reset_stats();
    let mut request = LmRequest::prompt("Three answers");
    request.n = Some(3);
    assert_eq!(lm.call(request).await.expect("n = 3").choices.len(), 3);
    assert_eq!(server.stats().requests.get("/v1/responses"), Some(&3));
}

#[tokio::test]
async fn json_mode_tools_and_images() {
    let server = server().await;
    let lm = lm(&server);
    let json_mode =
        Predict::<QA>::new().with_config(CallConfig::new().lm(lm.clone()).adapter(JSONAdapter));
    let out = json_mode
        .forward(QAInput {
            question: "Capital of France?".into(),
        })
        .await
        .expect("JSON mode");
    assert!(!out.answer.is_empty());

    let tools = Predict::<ToolQA>::new().with_config(
        CallConfig::new()
            .lm(lm.clone())
            .adapter(ChatAdapter::new().native_function_calling(true)),
    );
    let out = tools
        .forward(ToolQAInput {
            question: "Define serendipity".into(),
            tools: vec![lookup_tool()],
        })
        .await
        .expect("native tools");
    assert_eq!(out.answer, "Looking.");
    assert_eq!(out.tool_calls.calls()[0].name, "lookup");
    assert_eq!(out.tool_calls.calls()[0].args["word"], "serendipity");

    let describe = Predict::<Describe>::new().with_config(CallConfig::new().lm(lm.clone()));
    let out = describe
        .forward(DescribeInput {
            image: Image::url("https://example.com/cat.png").unwrap(),
        })
        .await
        .expect("an image input");
    assert!(!out.caption.is_empty());
}

#[tokio::test]
async fn errors_are_typed_and_retry_after_is_honoured() {
    let server = server().await;
    let lm = lm(&server);
    for (status, kind) in [
        (400, LmErrorKind::InvalidRequest),
        (401, LmErrorKind::Auth),
        (500, LmErrorKind::Server),
    ] {
        server.set_faults(vec![(Fault::Status(status), FaultWhen::Always)]);
        let err = lm.call(LmRequest::prompt("x")).await.unwrap_err();
        assert_eq!(err.kind(), kind, "HTTP {status}: {err}");
        assert!(!err.to_string().contains("sk-responses"));
    }
    server.set_faults(vec![(
        Fault::RateLimited {
            retry_after: Duration::from_millis(250),
        },
        FaultWhen::FirstN(1),
    )]);
    let retrying = LM::builder("openai/gpt-4o-mini")
        .model_type(ModelType::Responses)
        .api_base(server.api_base())
        .api_key("sk-responses")
        .cache(false)
        .build()
        .unwrap();
    let started = std::time::Instant::now();
    retrying
        .call(LmRequest::prompt("x"))
        .await
        .expect("retried");
    assert!(started.elapsed() >= Duration::from_millis(250));
    server.set_faults(vec![(Fault::TruncatedStream, FaultWhen::Always)]);
    let mut events = lm
        .stream(LmRequest::prompt("x"))
        .await
        .expect("the stream opens");
    let mut last = None;
    while let Some(event) = events.next().await {
        last = Some(event);
    }
    let err = last.unwrap().unwrap_err();
    assert!(err.to_string().contains("response.completed"), "{err}");

    // Providers that do not speak OpenAI's protocol refuse the model type at build time.
    let err = LM::builder("azure/dep")
        .model_type(ModelType::Responses)
        .api_base(server.url())
        .api_key("k")
        .build()
        .unwrap_err();
    assert_eq!(err.kind(), LmErrorKind::Configuration);
}
