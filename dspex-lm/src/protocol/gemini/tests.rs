use super::*;
use crate::types::{FilePart, ImageUrl, InputAudio};

fn target(model: &str) -> Target<'_> {
    Target {
        model_id: model,
        model_type: ModelType::Chat,
        max_tokens_key: "max_tokens",
        api_version: None,
    }
}

fn body(request: &LmRequest) -> Value {
    serde_json::from_slice(
        &Gemini
            .body(target("gemini-2.5-flash"), request, false)
            .unwrap(),
    )
    .unwrap()
}

fn refusal(request: &LmRequest) -> String {
    Gemini
        .body(target("gemini-2.5-flash"), request, false)
        .unwrap_err()
}

#[test]
fn paths_and_auth() {
    let p = Gemini.paths(target("gemini-2.5-flash"));
    assert_eq!(p.call, "models/gemini-2.5-flash:generateContent");
    assert_eq!(
        p.stream,
        "models/gemini-2.5-flash:streamGenerateContent?alt=sse"
    );
    assert!(p.embeddings.is_none());
    assert_eq!(
        Gemini.paths(target("models/x y?")).call,
        "models/x%20y%3F:generateContent"
    );
    let (name, value) = Gemini.auth(&ApiKey::new("AIza-key"));
    assert_eq!((name, value.as_str()), ("x-goog-api-key", "AIza-key"));
}

#[test]
fn messages_become_system_instruction_and_alternating_contents() {
    let mut req = LmRequest::new(vec![
        Message::system("Be brief."),
        Message::user("a"),
        Message::user("b"),
        Message::assistant("c"),
        Message::user("d"),
    ]);
    req.temperature = Some(0.0);
    req.max_tokens = Some(50);
    req.stop = vec!["END".into()];
    req.seed = Some(7);
    req.n = Some(3);
    assert_eq!(
        body(&req),
        json!({
            "contents": [
                {"role": "user", "parts": [{"text": "a"}, {"text": "b"}]},
                {"role": "model", "parts": [{"text": "c"}]},
                {"role": "user", "parts": [{"text": "d"}]}
            ],
            "systemInstruction": {"parts": [{"text": "Be brief."}]},
            "generationConfig": {
                "temperature": 0.0, "maxOutputTokens": 50, "candidateCount": 3,
                "seed": 7, "stopSequences": ["END"]
            }
        })
    );
    // n = 1 sends no candidateCount; extra parameters win and map to Gemini's names.
    let mut req = LmRequest::prompt("hi");
    req.temperature = Some(0.0);
    for (k, v) in [
        ("temperature", json!(0.5)),
        ("top_p", json!(0.9)),
        ("top_k", json!(40)),
        ("max_completion_tokens", json!(9)),
        ("stop", json!("X")),
        ("parallel_tool_calls", json!(true)),
        (
            "safetySettings",
            json!([{"category": "HARM_CATEGORY_HARASSMENT", "threshold": "BLOCK_NONE"}]),
        ),
        ("generationConfig", json!({"topK": 3})),
    ] {
        req.extra.insert(k.into(), v);
    }
    let b = body(&req);
    assert_eq!(
        b["generationConfig"],
        json!({"temperature": 0.5, "maxOutputTokens": 9, "stopSequences": ["X"], "topP": 0.9, "topK": 3})
    );
    assert_eq!(b["safetySettings"][0]["threshold"], "BLOCK_NONE");
    assert!(b.get("parallel_tool_calls").is_none());
}

#[test]
fn media_parts() {
    let req = LmRequest::new(vec![Message::user(Content::Parts(vec![
        ContentPart::text("What is this?"),
        ContentPart::ImageUrl {
            image_url: ImageUrl {
                url: "data:image/png;base64,iVBORw0K".into(),
                detail: Some("high".into()),
            },
        },
        ContentPart::image_url("https://example.com/cat.JPG?x=1"),
        ContentPart::image_url("gs://bucket/noext"),
        ContentPart::InputAudio {
            input_audio: InputAudio {
                data: "UklGR".into(),
                format: "wav".into(),
            },
        },
        ContentPart::File {
            file: FilePart {
                file_data: Some("data:application/pdf;base64,JVBER".into()),
                file_id: None,
                filename: Some("a.pdf".into()),
            },
        },
        ContentPart::File {
            file: FilePart {
                file_data: None,
                file_id: Some("files/abc123".into()),
                filename: Some("notes.txt".into()),
            },
        },
    ]))]);
    assert_eq!(
        body(&req)["contents"][0]["parts"],
        json!([
            {"text": "What is this?"},
            {"inline_data": {"mime_type": "image/png", "data": "iVBORw0K"}},
            {"file_data": {"file_uri": "https://example.com/cat.JPG?x=1", "mime_type": "image/jpeg"}},
            {"file_data": {"file_uri": "gs://bucket/noext"}},
            {"inline_data": {"mime_type": "audio/wav", "data": "UklGR"}},
            {"inline_data": {"mime_type": "application/pdf", "data": "JVBER"}},
            {"file_data": {"file_uri": "files/abc123", "mime_type": "text/plain"}}
        ])
    );
}

#[test]
fn what_gemini_cannot_carry_is_refused() {
    let mut req = LmRequest::prompt("hi");
    req.extra.insert("logit_bias".into(), json!({"1": 2}));
    assert!(refusal(&req).contains("`logit_bias`"));
    let req = LmRequest::new(vec![Message::system("only a system prompt")]);
    assert!(refusal(&req).contains("at least one turn"));
    let req = LmRequest::new(vec![
        Message::system(Content::Parts(vec![ContentPart::image_url(
            "https://x/a.png",
        )])),
        Message::user("x"),
    ]);
    assert!(refusal(&req).contains("system message with images"));
    let req = LmRequest::new(vec![Message::user(Content::Parts(vec![
        ContentPart::image_url("data:image/png,rawbytes"),
    ]))]);
    assert!(refusal(&req).contains("not base64"));
    let req = LmRequest::new(vec![Message::user(Content::Parts(vec![
        ContentPart::image_url("ftp://host/a.png"),
    ]))]);
    assert!(refusal(&req).contains("ftp://host/a.png"));
    let mut req = LmRequest::prompt("hi");
    req.extra
        .insert("reasoning_effort".into(), json!("extreme"));
    assert!(refusal(&req).contains("\"extreme\""));
    let mut req = LmRequest::prompt("hi");
    req.extra
        .insert("tools".into(), json!([{"type": "web_search"}]));
    assert!(refusal(&req).contains("`web_search`"));
    let mut req = LmRequest::prompt("hi");
    req.extra.insert("tool_choice".into(), json!("sometimes"));
    assert!(refusal(&req).contains("\"sometimes\""));
    let text = Target {
        model_type: ModelType::Text,
        ..target("gemini-2.5-flash")
    };
    assert!(
        Gemini
            .body(text, &LmRequest::prompt("x"), false)
            .unwrap_err()
            .contains("no text-completion endpoint")
    );
}

#[test]
fn json_mode_picks_the_schema_field() {
    let mut req = LmRequest::prompt("hi");
    req.response_format = Some(ResponseFormat::JsonObject);
    assert_eq!(
        body(&req)["generationConfig"],
        json!({"responseMimeType": "application/json"})
    );
    let openapi = json!({"type": "object", "properties": {"answer": {"type": "string"},
        "n": {"type": "array", "items": {"type": "integer"}}}, "required": ["answer"]});
    req.response_format = Some(ResponseFormat::JsonSchema {
        json_schema: json!({"name": "out", "schema": openapi, "strict": true}),
    });
    assert_eq!(body(&req)["generationConfig"]["responseSchema"], openapi);
    let full = json!({"type": "object", "properties": {"answer": {"type": "string"}},
        "additionalProperties": false});
    req.response_format = Some(ResponseFormat::JsonSchema {
        json_schema: json!({"name": "out", "schema": full}),
    });
    let config = &body(&req)["generationConfig"];
    assert_eq!(config["responseJsonSchema"], full);
    assert!(config.get("responseSchema").is_none());
    assert!(!fits_openapi_subset(&json!({"type": ["string", "null"]})));
    assert!(!fits_openapi_subset(
        &json!({"type": "object", "properties": {"a": {"$ref": "#/$defs/A"}}})
    ));
    req.response_format = Some(ResponseFormat::JsonSchema {
        json_schema: json!({"name": "out"}),
    });
    assert!(refusal(&req).contains("without a `schema`"));
}

#[test]
fn tools_and_tool_choice() {
    let mut req = LmRequest::prompt("weather?");
    req.extra.insert(
        "tools".into(),
        json!([
            {"type": "function", "function": {"name": "get_weather", "description": "Weather.",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}},
            {"type": "function", "function": {"name": "finish", "description": "Done.",
                "parameters": {"type": "object", "properties": {}, "additionalProperties": false}}},
            {"type": "function", "function": {"name": "lookup",
                "parameters": {"type": "object", "properties": {"q": {"type": "string"}}, "additionalProperties": false}}}
        ]),
    );
    req.extra.insert(
        "tool_choice".into(),
        json!({"type": "function", "function": {"name": "get_weather"}}),
    );
    let b = body(&req);
    assert_eq!(
        b["tools"],
        json!([{"functionDeclarations": [
            {"name": "get_weather", "description": "Weather.",
             "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}},
            {"name": "finish", "description": "Done."},
            {"name": "lookup", "parametersJsonSchema":
                {"type": "object", "properties": {"q": {"type": "string"}}, "additionalProperties": false}}
        ]}])
    );
    assert_eq!(
        b["toolConfig"],
        json!({"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["get_weather"]}})
    );
    for (choice, mode) in [("auto", "AUTO"), ("none", "NONE"), ("required", "ANY")] {
        assert_eq!(
            tool_config(&json!(choice)).unwrap()["functionCallingConfig"]["mode"],
            mode
        );
    }
}

#[test]
fn reasoning_effort_becomes_thinking_config() {
    let config = |model: &str, effort: &str| thinking_config(model, &json!(effort)).unwrap();
    assert_eq!(
        config("gemini-2.5-flash", "low"),
        json!({"thinkingBudget": 2048, "includeThoughts": true})
    );
    assert_eq!(
        config("gemini-2.5-pro", "none"),
        json!({"thinkingBudget": 0})
    );
    assert_eq!(
        config("gemini-3-pro-preview", "xhigh"),
        json!({"thinkingLevel": "high", "includeThoughts": true})
    );
    assert_eq!(
        config("models/gemini-3-flash", "none"),
        json!({"thinkingLevel": "minimal", "includeThoughts": false})
    );
    let mut req = LmRequest::prompt("hi");
    req.extra.insert("reasoning_effort".into(), json!("medium"));
    assert_eq!(
        body(&req)["generationConfig"]["thinkingConfig"],
        json!({"thinkingBudget": 8192, "includeThoughts": true})
    );
}

fn decode(body: Value) -> Result<Decoded, Unusable> {
    decode_response(body.to_string().as_bytes())
}

#[test]
fn responses_give_text_thoughts_calls_and_usage() {
    let d = decode(json!({
        "candidates": [
            {"index": 1, "content": {"role": "model", "parts": [{"text": "B"}]}, "finishReason": "MAX_TOKENS"},
            {"index": 0, "content": {"role": "model", "parts": [
                {"text": "I think", "thought": true},
                {"text": "Hel"}, {"text": "lo"},
                {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}},
                {"functionCall": {"id": "c9", "name": "now"}}
            ]}, "finishReason": "STOP"}
        ],
        "usageMetadata": {"promptTokenCount": 5, "candidatesTokenCount": 7, "thoughtsTokenCount": 3, "totalTokenCount": 15},
        "modelVersion": "gemini-2.5-flash-001"
    }))
    .unwrap();
    assert_eq!(d.choices.len(), 2);
    let first = &d.choices[0];
    assert_eq!(first.text, "Hello");
    assert_eq!(first.reasoning_content.as_deref(), Some("I think"));
    assert_eq!(first.finish_reason, Some(FinishReason::ToolCalls));
    assert_eq!(
        first.tool_calls,
        [
            ToolCall {
                id: Some("tool_call_0".into()),
                name: "get_weather".into(),
                arguments: "{\"city\":\"Paris\"}".into()
            },
            ToolCall {
                id: Some("c9".into()),
                name: "now".into(),
                arguments: "{}".into()
            }
        ]
    );
    assert_eq!(d.choices[1].finish_reason, Some(FinishReason::Length));
    assert_eq!(
        d.usage,
        Usage {
            prompt_tokens: 5,
            completion_tokens: 10,
            total_tokens: 15
        }
    );
    assert_eq!(d.model.as_deref(), Some("gemini-2.5-flash-001"));
    // Counts near u64::MAX saturate.
    let d = decode(json!({"candidates": [{"content": {"parts": [{"text": "x"}]}}],
        "usageMetadata": {"promptTokenCount": 18446744073709551615u64, "candidatesTokenCount": 2, "thoughtsTokenCount": 18446744073709551615u64}}))
    .unwrap();
    assert_eq!(d.usage.total_tokens, u64::MAX);
    assert_eq!(d.choices[0].finish_reason, None);
}

#[test]
fn blocks_and_empty_answers_are_errors() {
    let failed = |v: Value| match decode(v) {
        Err(Unusable::Failed { status, failure }) => (status, failure),
        other => panic!("not a failure: {:?}", other.map(|d| d.choices)),
    };
    let (status, f) = failed(json!({"promptFeedback": {"blockReason": "SAFETY"},
        "usageMetadata": {"promptTokenCount": 3}}));
    assert_eq!(status, 200);
    assert_eq!(f.code.as_deref(), Some("SAFETY"));
    assert!(f.message.contains("blocked the prompt"), "{}", f.message);
    let (_, f) = failed(json!({"candidates": [{"finishReason": "RECITATION", "index": 0}]}));
    assert_eq!(f.code.as_deref(), Some("RECITATION"));
    let (_, f) = failed(
        json!({"candidates": [{"content": {"parts": []}, "finishReason": "PROHIBITED_CONTENT", "finishMessage": "no"}]}),
    );
    assert!(f.message.ends_with(": no"), "{}", f.message);
    // Text cut by a filter is kept, marked as filtered.
    let d = decode(json!({"candidates": [{"content": {"parts": [{"text": "partial"}]}, "finishReason": "SAFETY"}]})).unwrap();
    assert_eq!(
        d.choices[0].finish_reason,
        Some(FinishReason::ContentFilter)
    );
    // BLOCK_REASON_UNSPECIFIED is no block.
    assert!(
        decode(
            json!({"promptFeedback": {"blockReason": "BLOCK_REASON_UNSPECIFIED"},
        "candidates": [{"content": {"parts": [{"text": "ok"}]}, "finishReason": "STOP"}]})
        )
        .is_ok()
    );
    for empty in [
        json!({}),
        json!({"candidates": []}),
        json!({"usageMetadata": {}}),
    ] {
        assert!(
            matches!(decode(empty), Err(Unusable::Unreadable(m)) if m.contains("no candidates"))
        );
    }
    assert!(matches!(
        decode(json!({"candidates": [{"content": {"parts": [{"functionCall": {"args": {}}}]}}]})),
        Err(Unusable::Unreadable(m)) if m.contains("functionCall without a name")
    ));
    assert!(matches!(
        decode_response(b"{not json"),
        Err(Unusable::Unreadable(m)) if m.starts_with("invalid JSON")
    ));
}

#[test]
fn error_bodies_give_status_and_message() {
    assert_eq!(
        gemini_failure(
            r#"{"error": {"code": 400, "message": "API key not valid. Please pass a valid API key.", "status": "INVALID_ARGUMENT"}}"#
        ),
        Failure {
            code: Some("INVALID_ARGUMENT".into()),
            message: "API key not valid. Please pass a valid API key.".into()
        }
    );
    assert_eq!(
        gemini_failure(r#"[{"error": {"code": 503, "message": "overloaded"}}]"#).code,
        Some("503".into())
    );
    assert_eq!(gemini_failure(" upstream died \n").message, "upstream died");
}

fn events(reader: &mut GeminiStream, data: Value) -> Vec<StreamEvent> {
    match reader.read(&data.to_string()).unwrap() {
        Chunk::Events(e) => e,
        other => panic!("{other:?}"),
    }
}

#[test]
fn streams_complete_when_every_candidate_finished() {
    let mut r = GeminiStream::default();
    assert!(!r.complete_at_eof());
    let e = events(
        &mut r,
        json!({"candidates": [{"content": {"parts": [{"text": "Hel"}]}, "index": 0},
                            {"content": {"parts": [{"text": "Yo"}]}, "index": 1}],
               "usageMetadata": {"promptTokenCount": 2}}),
    );
    assert_eq!(e.len(), 2);
    assert!(!r.complete_at_eof());
    let e = events(
        &mut r,
        json!({"candidates": [{"content": {"parts": [{"text": "lo"}, {"text": "hmm", "thought": true}]}, "finishReason": "STOP", "index": 0}],
               "usageMetadata": {"promptTokenCount": 2, "candidatesTokenCount": 1}}),
    );
    // Candidate 1 is still open: no usage yet. The thought streams as reasoning.
    assert_eq!(
        e,
        [
            StreamEvent::Reasoning {
                index: 0,
                text: "hmm".into()
            },
            StreamEvent::Delta {
                index: 0,
                text: "lo".into()
            },
            StreamEvent::Finish {
                index: 0,
                reason: FinishReason::Stop
            }
        ]
    );
    assert!(!r.complete_at_eof());
    let e = events(
        &mut r,
        json!({"candidates": [{"content": {"parts": []}, "finishReason": "MAX_TOKENS", "index": 1}],
               "usageMetadata": {"promptTokenCount": 2, "candidatesTokenCount": 3, "totalTokenCount": 5}}),
    );
    assert_eq!(
        e,
        [
            StreamEvent::Finish {
                index: 1,
                reason: FinishReason::Length
            },
            StreamEvent::Usage(Usage {
                prompt_tokens: 2,
                completion_tokens: 3,
                total_tokens: 5
            })
        ]
    );
    assert!(r.complete_at_eof());
    assert!(
        r.read(r#"{"candidates": [{"content": {"parts": [{"text": "more"}]}, "index": 1}]}"#)
            .unwrap_err()
            .contains("after its finishReason")
    );
}

#[test]
fn streams_report_blocks_and_errors() {
    let failed = |data: &str| match GeminiStream::default().read(data) {
        Ok(Chunk::Failed { status, failure }) => (status, failure),
        Ok(other) => panic!("{other:?}"),
        Err(e) => panic!("{e}"),
    };
    let (status, f) = failed(r#"{"promptFeedback": {"blockReason": "PROHIBITED_CONTENT"}}"#);
    assert_eq!(
        (status, f.code.as_deref()),
        (200, Some("PROHIBITED_CONTENT"))
    );
    let (_, f) = failed(r#"{"candidates": [{"finishReason": "SAFETY"}]}"#);
    assert_eq!(f.code.as_deref(), Some("SAFETY"));
    let (status, f) = failed(
        r#"{"error": {"code": 503, "message": "The model is overloaded.", "status": "UNAVAILABLE"}}"#,
    );
    assert_eq!((status, f.code.as_deref()), (503, Some("UNAVAILABLE")));
    let (status, _) = failed(r#"{"error": {"code": 99999, "message": "?"}}"#);
    assert_eq!(status, 500);
    // A filter after some text finishes the candidate as filtered.
    let mut r = GeminiStream::default();
    events(
        &mut r,
        json!({"candidates": [{"content": {"parts": [{"text": "a"}]}}]}),
    );
    let e = events(&mut r, json!({"candidates": [{"finishReason": "SAFETY"}]}));
    assert_eq!(
        e,
        [StreamEvent::Finish {
            index: 0,
            reason: FinishReason::ContentFilter
        }]
    );
    assert!(GeminiStream::default().read("[DONE]").is_err());
    assert!(GeminiStream::default().read("{").is_err());
    assert!(
        GeminiStream::default()
            .read(r#"{"candidates": 3}"#)
            .is_err()
    );
}

#[test]
fn fuzzing_entry_points() {
    assert!(fuzzing::response(b"{}").is_err());
    let (events, complete) = fuzzing::stream([
        r#"{"candidates": [{"content": {"parts": [{"text": "a"}]}}]}"#,
        r#"{"candidates": [{"finishReason": "STOP"}]}"#,
    ]);
    assert_eq!(events.len(), 2);
    assert!(complete);
    let (_, complete) =
        fuzzing::stream([r#"{"candidates": [{"content": {"parts": [{"text": "a"}]}}]}"#]);
    assert!(!complete);
    assert_eq!(fuzzing::error("{}").1, "{}");
}

#[test]
fn retry_info_in_the_body_is_the_wait() {
    let body = json!({"error": {"code": 429, "message": "Resource has been exhausted",
    "status": "RESOURCE_EXHAUSTED",
    "details": [
        {"@type": "type.googleapis.com/google.rpc.QuotaFailure", "violations": []},
        {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "1.5s"}
    ]}})
    .to_string();
    assert_eq!(
        Gemini.retry_after_in_body(&body),
        Some(std::time::Duration::from_millis(1500))
    );
    assert_eq!(
        Gemini.retry_after_in_body(&format!("[{body}]")),
        Some(std::time::Duration::from_millis(1500))
    );
    for bad in [
        r#"{"error": {"details": [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "soon"}]}}"#,
        r#"{"error": {"details": [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "-1s"}]}}"#,
        r#"{"error": {"details": [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "1e300s"}]}}"#,
        r#"{"error": {"details": "none"}}"#,
        "not json",
    ] {
        assert_eq!(Gemini.retry_after_in_body(bad), None, "{bad}");
    }
}

/// A History turn's native tool calls and results, against DSPy 3.4.1's native client
/// (`request_from_openai_chat`, then `GeminiLM.build_request`) on the same chat messages:
/// `functionCall` parts after the model's text, consecutive results as `functionResponse`
/// parts of one user turn, the next user message a turn of its own.
#[test]
fn tool_calls_and_results_as_dspy_sends_them() {
    use crate::types::MessageToolCall;
    let request = LmRequest::new(vec![
        Message::system("Be brief."),
        Message::user("Weather?"),
        Message::assistant_tool_calls(
            "",
            vec![
                MessageToolCall::new("c1", "get_weather", "{\"city\": \"Paris\"}"),
                MessageToolCall::new("c2", "get_time", "{}"),
            ],
        ),
        Message::tool("c1", "get_weather", "Sunny"),
        Message::tool("c2", "get_time", "{\"t\": 1}"),
        Message::assistant_tool_calls("Checking.", vec![MessageToolCall::new("c3", "f", "{}")]),
        Message::tool("c3", "f", "ok"),
        Message::user("And now?"),
    ]);
    let sent = body(&request);
    let dspy: Value = serde_json::from_str(r#"[{"role": "user", "parts": [{"text": "Weather?"}]}, {"role": "model", "parts": [{"functionCall": {"name": "get_weather", "args": {"city": "Paris"}, "id": "c1"}}, {"functionCall": {"name": "get_time", "args": {}, "id": "c2"}}]}, {"role": "user", "parts": [{"functionResponse": {"name": "get_weather", "response": {"result": "Sunny"}, "id": "c1"}}, {"functionResponse": {"name": "get_time", "response": {"result": "{\"t\": 1}"}, "id": "c2"}}]}, {"role": "model", "parts": [{"text": "Checking."}, {"functionCall": {"name": "f", "args": {}, "id": "c3"}}]}, {"role": "user", "parts": [{"functionResponse": {"name": "f", "response": {"result": "ok"}, "id": "c3"}}]}, {"role": "user", "parts": [{"text": "And now?"}]}]"#).unwrap();
    assert_eq!(sent["contents"], dspy);
    assert_eq!(
        sent["systemInstruction"],
        json!({"parts": [{"text": "Be brief."}]})
    );
    // A result without the tool's name takes it from the call it answers.
    let mut unnamed = request.clone();
    unnamed.messages[3].name = None;
    assert_eq!(body(&unnamed)["contents"], dspy);
    unnamed.messages[3].tool_call_id = Some("c9".into());
    assert!(refusal(&unnamed).contains("no earlier call has the id `c9`"));
}
