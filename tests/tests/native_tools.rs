//! Native function calling over HTTP: a typed signature with a `tools: Vec<Tool>` input and a
//! `tool_calls: ToolCalls` output, run through `Predict` against the mock LM server (which
//! answers with OpenAI-shaped `tool_calls` when a rule carries them and the request offers
//! tools), then the calls executed against the `#[tool]` functions.

use dspex::adapter::{ChatAdapter, JSONAdapter};
use dspex::lm::LM;
use dspex::prelude::*;
use dspex::testing::{MockLm, MockLmServer, Rule};
use serde_json::json;

/// Get the current weather for a city.
#[tool]
fn get_weather(city: String) -> Result<String, String> {
    match city.as_str() {
        "Paris" => Ok("sunny, 21°C".into()),
        other => Err(format!("no weather for {other}")),
    }
}

/// Search the web and return the top snippet.
#[tool]
async fn search_web(query: String) -> String {
    format!("top result for {query}")
}

/// Answer the question, calling tools when needed.
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
                "Paris and Rome",
                "[[ ## answer ## ]]\nChecking both.\n\n[[ ## completed ## ]]",
            )
            .with_tool_call("get_weather", json!({"city": "Paris"}))
            .with_tool_call("get_weather", json!({"city": "Rome"})),
        )
        .rule(
            Rule::contains("Search for rust", "{\"answer\": \"Let me check.\"}")
                .with_tool_call("search_web", json!({"query": "rust"})),
        )
        .rule(Rule::contains(
            "Say hi",
            "[[ ## answer ## ]]\nHi!\n\n[[ ## completed ## ]]",
        ))
        .start()
        .await
        .expect("the mock LM starts")
}

fn lm(server: &MockLmServer) -> LM {
    LM::builder("openai/mock-model")
        .api_base(server.api_base())
        .api_key("sk-test")
        .cache(false)
        .build()
        .expect("the LM builds")
}

fn tools() -> Vec<Tool> {
    vec![get_weather_tool(), search_web_tool()]
}

#[tokio::test]
async fn calls_come_back_natively_and_run_against_the_tools() {
    let server = server().await;
    let predict = Predict::<ToolQA>::new().with_config(
        CallConfig::new().lm(lm(&server)).adapter(
            ChatAdapter::new()
                .native_function_calling(true)
                .parallel_tool_calls(true),
        ),
    );
    let out = predict
        .forward(ToolQAInput {
            question: "Weather in Paris and Rome?".into(),
            tools: tools(),
        })
        .await
        .expect("the call succeeds");
    assert_eq!(out.answer, "Checking both.");
    let calls = &out.tool_calls;
    assert_eq!(calls.len(), 2);
    assert_eq!(calls.calls()[0].id.as_deref(), Some("call_1"));
    assert_eq!(calls.calls()[1].args["city"], "Rome");

    // Errors are values, one per call, in order.
    let results = calls.execute(&tools()).await;
    assert_eq!(results[0], Ok(json!("sunny, 21°C")));
    assert!(
        matches!(&results[1], Err(e) if e.to_string() == "no weather for Rome"),
        "{results:?}"
    );
    let results = calls.execute_into_results(&tools()).await;
    assert_eq!(results.results()[0].call_id.as_deref(), Some("call_1"));
    assert!(results.results()[1].is_error);
}

#[tokio::test]
async fn json_adapter_is_native_by_default_and_no_calls_is_empty() {
    let server = server().await;
    let json_predict = Predict::<ToolQA>::new()
        .with_config(CallConfig::new().lm(lm(&server)).adapter(JSONAdapter));
    let out = json_predict
        .forward(ToolQAInput {
            question: "Search for rust and answer".into(),
            tools: tools(),
        })
        .await
        .expect("the JSON call succeeds");
    assert_eq!(out.answer, "Let me check.");
    let results = out.tool_calls.execute(&tools()).await;
    assert_eq!(results, vec![Ok(json!("top result for rust"))]);

    // The model answers without calls: DSPy's `None`, an empty `ToolCalls` here.
    let chat = Predict::<ToolQA>::new().with_config(
        CallConfig::new()
            .lm(lm(&server))
            .adapter(ChatAdapter::new().native_function_calling(true)),
    );
    let out = chat
        .forward(ToolQAInput {
            question: "Say hi.".into(),
            tools: tools(),
        })
        .await
        .expect("the call succeeds");
    assert_eq!(out.answer, "Hi!");
    assert!(out.tool_calls.is_empty());
}

#[tokio::test]
async fn text_mode_parses_calls_from_the_completion() {
    let server = MockLm::builder()
        .rule(Rule::contains(
            "Weather in Oslo",
            "[[ ## answer ## ]]\nChecking.\n\n[[ ## tool_calls ## ]]\n{\"tool_calls\": [{\"name\": \"get_weather\", \"args\": {\"city\": \"Oslo\"}}]}\n\n[[ ## completed ## ]]",
        ))
        .start()
        .await
        .expect("the mock LM starts");
    let predict = Predict::<ToolQA>::new()
        .with_config(CallConfig::new().lm(lm(&server)).adapter(ChatAdapter));
    let out = predict
        .forward(ToolQAInput {
            question: "Weather in Oslo?".into(),
            tools: tools(),
        })
        .await
        .expect("the call succeeds");
    assert_eq!(out.tool_calls.calls()[0].name, "get_weather");
    let results = out.tool_calls.execute(&tools()).await;
    assert!(matches!(&results[0], Err(e) if e.to_string().contains("Oslo")));
}

/// A streamed call with native function calling: the answer streams as chunks, the tool calls
/// arrive in pieces (id and name, then the arguments) and come back whole in the final output,
/// as the plain call returns them.
#[tokio::test]
async fn calls_come_back_from_a_stream_too() {
    use dspex::module::{StreamItem, StreamOptions};
    use futures_util::StreamExt;
    let server = server().await;
    let predict = Predict::<ToolQA>::new().with_config(
        CallConfig::new()
            .lm(lm(&server))
            .adapter(ChatAdapter::new().native_function_calling(true)),
    );
    let items: Vec<_> = predict
        .stream_with(
            ToolQAInput {
                question: "Weather in Paris and Rome?".into(),
                tools: tools(),
            },
            &CallConfig::default(),
            &StreamOptions::new(),
        )
        .collect()
        .await;
    let answer: String = items
        .iter()
        .filter_map(|i| match i {
            Ok(StreamItem::Chunk(c)) if c.field == "answer" => Some(c.delta.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(answer, "Checking both.");
    let Some(Ok(StreamItem::Final(out))) = items.last() else {
        panic!("{items:?}")
    };
    assert_eq!(out.answer, "Checking both.");
    let calls = out.tool_calls.calls();
    assert_eq!(calls.len(), 2);
    assert_eq!(calls[0].id.as_deref(), Some("call_1"));
    assert_eq!(calls[0].name, "get_weather");
    assert_eq!(calls[1].args["city"], "Rome");
}
