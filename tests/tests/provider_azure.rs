//! Azure OpenAI and the OpenAI-compatible provider table against the mock server's Azure
//! routes (`/openai/deployments/{deployment}/…?api-version=…`, `api-key` header): a plain call,
//! a typed ChainOfThought call, streaming, n > 1, JSON mode, native tools, images, embeddings,
//! usage and price, each error class with its DSPy name, Retry-After, and the key kept out of
//! `Debug`, errors, events and cache files.

mod common;

use dspex::adapter::{ChatAdapter, JSONAdapter};
use dspex::lm::{CacheConfig, LM, LmError, LmErrorKind, LmRequest, RetryPolicy, StreamEvent};
use dspex::prelude::*;
use dspex::testing::{Fault, FaultWhen, MockLm, MockLmServer, Rule};
use futures_util::StreamExt;
use serde_json::json;
use std::time::Duration;

const KEY: &str = "az-secret-key-0123456789abcdef";

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

/// Get the current weather for a city.
#[tool]
fn get_weather(city: String) -> String {
    format!("sunny in {city}")
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
                "Weather in Paris",
                "[[ ## answer ## ]]\nChecking.\n\n[[ ## completed ## ]]",
            )
            .with_tool_call("get_weather", json!({"city": "Paris"})),
        )
        .start()
        .await
        .expect("the mock LM starts")
}

/// An Azure LM for deployment `gpt-4o-prod` on the mock server.
fn azure(server: &MockLmServer) -> dspex::lm::LmBuilder {
    LM::builder("azure/gpt-4o-prod")
        .api_base(server.url())
        .api_key(KEY)
        .api_version("2024-10-21")
        .cache(false)
        .retry(RetryPolicy::none())
}

#[tokio::test]
async fn plain_typed_streamed_and_multiple_completions() {
    let server = server().await;
    let lm = azure(&server).build().expect("the LM builds");
    assert_eq!(lm.endpoint(), server.url());

    let response = lm
        .call(LmRequest::prompt("Say hello"))
        .await
        .expect("a plain call");
    assert!(!response.text().is_empty());
    assert!(response.usage.total_tokens > 0);
    assert_eq!(
        server
            .stats()
            .requests
            .get("/openai/deployments/{deployment}/chat/completions"),
        Some(&1)
    );

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
    let mut text = String::new();
    let mut usage = None;
    while let Some(event) = events.next().await {
        match event.expect("no stream error") {
            StreamEvent::Delta { text: t, .. } => text.push_str(&t),
            StreamEvent::Usage(u) => usage = Some(u),
            _ => {}
        }
    }
    assert!(!text.is_empty() && usage.is_some());

    let mut request = LmRequest::prompt("Three answers");
    request.n = Some(3);
    assert_eq!(lm.call(request).await.expect("n = 3").choices.len(), 3);
}

#[tokio::test]
async fn json_mode_tools_images_and_embeddings() {
    let server = server().await;
    let lm = azure(&server).build().expect("the LM builds");

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
            question: "Weather in Paris?".into(),
            tools: vec![get_weather_tool()],
        })
        .await
        .expect("native tools");
    assert_eq!(out.tool_calls.calls()[0].name, "get_weather");
    assert_eq!(
        out.tool_calls.execute(&[get_weather_tool()]).await[0],
        Ok(json!("sunny in Paris"))
    );

    let describe = Predict::<Describe>::new().with_config(CallConfig::new().lm(lm.clone()));
    describe
        .forward(DescribeInput {
            image: Image::url("https://example.com/cat.png").unwrap(),
        })
        .await
        .expect("an image input");
    let sent = &lm.history(1)[0].messages;
    assert!(
        sent.iter().any(|m| m.content.has_media()),
        "the image went out as a content part: {sent:?}"
    );

    let embeddings = lm.embed(&["a", "b"]).await.expect("embeddings");
    assert_eq!(embeddings.vectors.len(), 2);
}

#[tokio::test]
async fn each_error_class_with_dspys_name_and_retry_after() {
    let server = server().await;
    // No key (Azure AD users send their own `Authorization` header instead): the call goes out
    // without `api-key`, and Azure's 401 is an auth error.
    let keyless = LM::builder("azure/gpt-4o-prod")
        .api_base(server.url())
        .api_version("2024-10-21")
        .cache(false)
        .build()
        .expect("an Azure LM may be built without a key");
    let err = keyless.call(LmRequest::prompt("x")).await.unwrap_err();
    assert_eq!(err.kind(), LmErrorKind::Auth, "{err}");
    assert_eq!(err.provider_code(), Some("401"));

    let lm = azure(&server).build().expect("the LM builds");
    for (status, kind) in [
        (400, LmErrorKind::InvalidRequest),
        (401, LmErrorKind::Auth),
        (402, LmErrorKind::Billing),
        (403, LmErrorKind::Auth),
        (404, LmErrorKind::InvalidRequest),
        (408, LmErrorKind::Timeout),
        (500, LmErrorKind::Server),
        (503, LmErrorKind::Server),
    ] {
        server.set_faults(vec![(Fault::Status(status), FaultWhen::Always)]);
        let err = lm.call(LmRequest::prompt("x")).await.unwrap_err();
        assert_eq!(err.kind(), kind, "HTTP {status}: {err}");
        assert!(err.to_string().contains(kind.dspy_name()), "{err}");
        assert!(!format!("{err} {err:?}").contains(KEY));
    }
    server.set_faults(vec![(
        Fault::RateLimited {
            retry_after: Duration::from_millis(300),
        },
        FaultWhen::FirstN(1),
    )]);
    let retrying = azure(&server)
        .retry(RetryPolicy::default())
        .build()
        .expect("the LM builds");
    let started = std::time::Instant::now();
    retrying
        .call(LmRequest::prompt("x"))
        .await
        .expect("retried after the wait");
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "Retry-After honoured"
    );
    server.set_faults(vec![(
        Fault::RateLimited {
            retry_after: Duration::from_millis(10),
        },
        FaultWhen::Always,
    )]);
    let err = lm.call(LmRequest::prompt("x")).await.unwrap_err();
    assert!(
        matches!(
            err,
            LmError::RateLimited {
                retry_after: Some(_),
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(err.kind().dspy_name(), "LMRateLimitError");
    server.clear_faults();
}

#[tokio::test]
async fn the_key_stays_out_of_debug_history_and_cache_files() {
    let server = server().await;
    let dir = tempfile::tempdir().unwrap();
    let lm = azure(&server)
        .cache(true)
        .cache_config(CacheConfig::with_disk_dir(dir.path()))
        .build()
        .expect("the LM builds");
    lm.call(LmRequest::prompt("Cache me"))
        .await
        .expect("a call");
    assert!(!format!("{lm:?}").contains(KEY));
    assert!(!lm.inspect_history(5).contains(KEY));
    drop(lm);
    assert!(
        common::files_without(dir.path(), KEY) > 0,
        "the disk cache wrote nothing"
    );
}

#[tokio::test]
async fn compatible_providers_reach_the_same_protocol_and_price_their_calls() {
    let server = server().await;
    // A listed model gets its published price; a model the table does not list costs None.
    for (model, priced) in [("groq/my-finetune", None), ("openai/gpt-4o-mini", Some(()))] {
        let lm = LM::builder(model)
            .api_base(server.api_base())
            .api_key("k")
            .cache(false)
            .build()
            .expect("the LM builds");
        lm.call(LmRequest::prompt("hi")).await.expect("a call");
        let cost = lm.usage().total().cost_usd;
        assert_eq!(cost.map(|_| ()), priced, "{model}: {cost:?}");
        if let Some(cost) = cost {
            assert!(cost > 0.0);
        }
    }
}
