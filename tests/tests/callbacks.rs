//! Callbacks end to end (DSPy's `BaseCallback`): the exact order of the events of Predict,
//! ChainOfThought, ReAct with a tool and Evaluate over the mock LM, with call and parent ids;
//! callbacks from the settings and from instances; a parse failure in the end events; and the
//! guarantees — a panicking or slow callback leaves the call's result and latency alone, and no
//! event carries the API key.

use dspex::callback::{
    Callback, CallbackHandle, Callbacks, EndEvent, ErrorKind, EventError, EventKind, StartEvent,
};
use dspex::lm::{LM, ScriptedLM};
use dspex::module::{CallConfig, ChainOfThought, DynPredict, ReAct, Tool};
use dspex::prelude::*;
use dspex::settings::{Settings, configure, with_settings};
use dspex::testing::{MockLm, MockLmServer, Rule};
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const FLUSH: Duration = Duration::from_secs(10);
const SECRET: &str = "sk-callbacks-test-secret-0123456789";

#[signature("question -> answer")]
struct QA;

/// One event as received.
#[derive(Debug, Clone)]
struct Seen {
    hook: String,
    kind: EventKind,
    start: bool,
    call_id: u64,
    parent_id: Option<u64>,
    name: String,
    payload: Option<Value>,
    error: Option<EventError>,
}

#[derive(Default)]
struct Recorder(Mutex<Vec<Seen>>);

impl Recorder {
    fn start(&self, e: &StartEvent) {
        self.0.lock().unwrap().push(Seen {
            hook: format!("{}_start", e.kind),
            kind: e.kind,
            start: true,
            call_id: e.call_id.as_u64(),
            parent_id: e.parent_id.map(|p| p.as_u64()),
            name: e.name.clone(),
            payload: Some(e.inputs.clone()),
            error: None,
        });
    }

    fn end(&self, e: &EndEvent) {
        self.0.lock().unwrap().push(Seen {
            hook: format!("{}_end", e.kind),
            kind: e.kind,
            start: false,
            call_id: e.call_id.as_u64(),
            parent_id: e.parent_id.map(|p| p.as_u64()),
            name: e.name.clone(),
            payload: e.outputs.clone(),
            error: e.error.clone(),
        });
    }

    fn seen(&self) -> Vec<Seen> {
        self.0.lock().unwrap().clone()
    }

    /// `hook name` per event.
    fn trail(&self) -> Vec<String> {
        self.seen()
            .iter()
            .map(|s| format!("{} {}", s.hook, s.name))
            .collect()
    }
}

impl Callback for Recorder {
    fn on_module_start(&self, e: &StartEvent) {
        self.start(e);
    }
    fn on_module_end(&self, e: &EndEvent) {
        self.end(e);
    }
    fn on_lm_start(&self, e: &StartEvent) {
        self.start(e);
    }
    fn on_lm_end(&self, e: &EndEvent) {
        self.end(e);
    }
    fn on_adapter_format_start(&self, e: &StartEvent) {
        self.start(e);
    }
    fn on_adapter_format_end(&self, e: &EndEvent) {
        self.end(e);
    }
    fn on_adapter_parse_start(&self, e: &StartEvent) {
        self.start(e);
    }
    fn on_adapter_parse_end(&self, e: &EndEvent) {
        self.end(e);
    }
    fn on_tool_start(&self, e: &StartEvent) {
        self.start(e);
    }
    fn on_tool_end(&self, e: &EndEvent) {
        self.end(e);
    }
    fn on_evaluate_start(&self, e: &StartEvent) {
        self.start(e);
    }
    fn on_evaluate_end(&self, e: &EndEvent) {
        self.end(e);
    }
}

fn new_recorder() -> (Arc<Recorder>, CallbackHandle) {
    let recorder = Arc::new(Recorder::default());
    let handle = CallbackHandle::new(recorder.clone());
    (recorder, handle)
}

async fn server() -> MockLmServer {
    MockLm::builder()
        .rule(Rule::contains(
            "unparseable",
            "this answer follows no format",
        ))
        .start()
        .await
        .expect("the mock LM starts")
}

fn lm(server: &MockLmServer) -> LM {
    LM::builder("openai/mock-model")
        .api_base(server.api_base())
        .api_key(SECRET)
        .cache(false)
        .build()
        .expect("the LM builds")
}

/// The events of one predictor call, from its module start to its module end.
fn predict_trail(adapter: &str, model: &str) -> Vec<String> {
    vec![
        "module_start Predict".into(),
        format!("adapter_format_start {adapter}"),
        format!("adapter_format_end {adapter}"),
        format!("lm_start {model}"),
        format!("lm_end {model}"),
        format!("adapter_parse_start {adapter}"),
        format!("adapter_parse_end {adapter}"),
        "module_end Predict".into(),
    ]
}

/// Checks what every trail must satisfy: each end closes the innermost open call with the same
/// id, kind and parent; each call's parent is the innermost open module, tool or evaluation
/// (`None` at the top); ids are not reused; nothing stays open. Returns the events.
fn check_nesting(seen: &[Seen]) {
    let mut open: Vec<&Seen> = Vec::new();
    let mut ids = std::collections::HashSet::new();
    for event in seen {
        if event.start {
            let parent = open
                .iter()
                .rev()
                .find(|s| {
                    matches!(
                        s.kind,
                        EventKind::Module | EventKind::Tool | EventKind::Evaluate
                    )
                })
                .map(|s| s.call_id);
            assert_eq!(event.parent_id, parent, "parent of {event:?}");
            assert!(ids.insert(event.call_id), "id reused: {event:?}");
            open.push(event);
        } else {
            let start = open
                .pop()
                .unwrap_or_else(|| panic!("an end without a start: {event:?}"));
            assert_eq!(
                (start.call_id, start.kind, start.parent_id, &start.name),
                (event.call_id, event.kind, event.parent_id, &event.name),
                "{event:?} does not close {start:?}"
            );
        }
    }
    assert!(open.is_empty(), "calls left open: {open:?}");
}

fn assert_no_secret(seen: &[Seen]) {
    let all = format!("{seen:?}");
    assert!(!all.contains(SECRET), "an event carries the API key");
}

#[tokio::test]
async fn predict_fires_module_adapter_and_lm_events_in_order() {
    let server = server().await;
    let (recorder, handle) = new_recorder();
    let predict = Predict::<QA>::new();
    let settings = Settings::new().lm(lm(&server)).callbacks(handle.clone());
    let out = with_settings(
        settings,
        predict.forward(QAInput {
            question: "What is 2 + 2?".into(),
        }),
    )
    .await
    .expect("the call succeeds");
    assert!(handle.flush(FLUSH));
    let seen = recorder.seen();
    assert_eq!(
        recorder.trail(),
        predict_trail("ChatAdapter", "openai/mock-model")
    );
    check_nesting(&seen);
    // The module call is the parent of the six calls inside it.
    assert_eq!(seen[0].parent_id, None);
    assert!(
        seen[1..7]
            .iter()
            .all(|s| s.parent_id == Some(seen[0].call_id))
    );
    assert_eq!(
        seen[0].payload.as_ref().unwrap()["question"],
        "What is 2 + 2?"
    );
    assert_eq!(
        seen[7].payload.as_ref().unwrap()["answer"],
        json!(out.answer)
    );
    // The LM's end event carries the response, its start the request (and no key).
    assert_eq!(seen[4].payload.as_ref().unwrap()["model"], "mock-model");
    assert!(seen[3].payload.as_ref().unwrap()["messages"].is_array());
    assert_no_secret(&seen);
}

#[tokio::test]
async fn chain_of_thought_nests_its_predict_inside_its_own_module_call() {
    let server = server().await;
    let (recorder, handle) = new_recorder();
    let (own, own_handle) = new_recorder();
    let cot = ChainOfThought::<QA>::new().with_callbacks(own_handle.clone());
    let settings = Settings::new().lm(lm(&server)).callbacks(handle.clone());
    let out = with_settings(
        settings,
        cot.forward(QAInput {
            question: "Why is the sky blue?".into(),
        }),
    )
    .await
    .expect("the call succeeds");
    assert!(handle.flush(FLUSH) && own_handle.flush(FLUSH));
    let mut expected = vec!["module_start ChainOfThought".to_string()];
    expected.extend(predict_trail("ChatAdapter", "openai/mock-model"));
    expected.push("module_end ChainOfThought".into());
    assert_eq!(recorder.trail(), expected);
    let seen = recorder.seen();
    check_nesting(&seen);
    assert_eq!(seen[1].parent_id, Some(seen[0].call_id));
    assert_eq!(
        seen[9].payload.as_ref().unwrap()["reasoning"],
        json!(out.reasoning)
    );
    // The module's own callback sees its module events only, with the same ids.
    assert_eq!(
        own.trail(),
        ["module_start ChainOfThought", "module_end ChainOfThought"]
    );
    assert_eq!(own.seen()[0].call_id, seen[0].call_id);
    assert_no_secret(&seen);
}

/// Add two integers.
#[derive(Deserialize, JsonSchema)]
struct Add {
    a: i64,
    b: i64,
}

#[tokio::test]
async fn react_reports_its_steps_tools_and_extraction_inside_one_module_call() {
    let (recorder, handle) = new_recorder();
    let (tool_own, tool_handle) = new_recorder();
    let add = Tool::new("add", |Add { a, b }| async move {
        a.checked_add(b).ok_or("the sum overflows")
    })
    .unwrap()
    .with_callbacks(tool_handle.clone());
    let lm = ScriptedLM::from_fields([
        json!({"next_thought": "Add them.", "next_tool_name": "add", "next_tool_args": {"a": 2, "b": 3}}),
        json!({"next_thought": "Done.", "next_tool_name": "finish", "next_tool_args": {}}),
        json!({"reasoning": "2 + 3 = 5.", "answer": "5"}),
    ]);
    let agent = ReAct::<QA>::new([add]).unwrap();
    let settings = Settings::new().lm(lm).callbacks(handle.clone());
    let out = with_settings(
        settings,
        agent.forward(QAInput {
            question: "What is 2 + 3?".into(),
        }),
    )
    .await
    .expect("the agent answers");
    assert_eq!(out.output.answer, "5");
    assert!(handle.flush(FLUSH) && tool_handle.flush(FLUSH));

    let step = predict_trail("ChatAdapter", "scripted");
    let mut expected = vec!["module_start ReAct".to_string()];
    expected.extend(step.clone());
    expected.extend(["tool_start add".into(), "tool_end add".into()]);
    expected.extend(step.clone());
    expected.extend(["tool_start finish".into(), "tool_end finish".into()]);
    expected.extend(step);
    expected.push("module_end ReAct".into());
    assert_eq!(recorder.trail(), expected);
    let seen = recorder.seen();
    check_nesting(&seen);
    let tool_start = &seen[9];
    assert_eq!(tool_start.parent_id, Some(seen[0].call_id));
    assert_eq!(tool_start.payload, Some(json!({"a": 2, "b": 3})));
    assert_eq!(seen[10].payload, Some(json!(5)));
    let end = seen.last().unwrap().payload.as_ref().unwrap();
    assert_eq!(end["answer"], "5");
    assert_eq!(end["trajectory"]["tool_name_0"], "add");
    // The tool's own callback saw its call, with the same id.
    assert_eq!(tool_own.trail(), ["tool_start add", "tool_end add"]);
    assert_eq!(tool_own.seen()[0].call_id, tool_start.call_id);
}

#[tokio::test]
async fn evaluate_is_the_parent_of_the_program_calls_it_makes() {
    let server = server().await;
    let (recorder, handle) = new_recorder();
    let (own, own_handle) = new_recorder();
    let devset: Vec<Example> = ["one", "two"]
        .iter()
        .map(|q| {
            Example::new()
                .with("question", *q)
                .with("answer", "x")
                .with_inputs(["question"])
        })
        .collect();
    let program = Predict::<QA>::new();
    let evaluate = Evaluate::new(devset, answer_exact_match())
        .num_threads(1)
        .report_failures(false)
        .callbacks(own_handle.clone());
    let settings = Settings::new().lm(lm(&server)).callbacks(handle.clone());
    let result = with_settings(settings, evaluate.call(&program))
        .await
        .expect("the evaluation runs");
    assert!(handle.flush(FLUSH) && own_handle.flush(FLUSH));
    let mut expected = vec!["evaluate_start Evaluate".to_string()];
    expected.extend(predict_trail("ChatAdapter", "openai/mock-model"));
    expected.extend(predict_trail("ChatAdapter", "openai/mock-model"));
    expected.push("evaluate_end Evaluate".into());
    assert_eq!(recorder.trail(), expected);
    let seen = recorder.seen();
    check_nesting(&seen);
    assert_eq!(seen[0].payload.as_ref().unwrap()["devset_size"], 2);
    let end = seen.last().unwrap().payload.as_ref().unwrap();
    assert_eq!(end["score"], json!(result.score));
    assert_eq!(end["n_examples"], 2);
    assert_eq!(
        own.trail(),
        ["evaluate_start Evaluate", "evaluate_end Evaluate"]
    );
    assert_no_secret(&seen);
}

#[tokio::test]
async fn a_parse_failure_and_the_fallback_arrive_in_the_end_events() {
    let server = server().await;
    let (recorder, handle) = new_recorder();
    let predict = DynPredict::new(DynSignature::parse("question -> answer").unwrap());
    let settings = Settings::new().lm(lm(&server)).callbacks(handle.clone());
    let error = with_settings(
        settings,
        predict.call(&Example::new().with("question", "an unparseable question")),
    )
    .await
    .expect_err("neither adapter can parse the answer");
    assert_eq!(error.parse_failures().len(), 2);
    assert!(handle.flush(FLUSH));
    let mut expected = predict_trail("ChatAdapter", "openai/mock-model");
    expected.pop();
    expected.extend(predict_trail("JSONAdapter", "openai/mock-model")[1..7].to_vec());
    expected.push("module_end Predict".into());
    assert_eq!(recorder.trail(), expected);
    let seen = recorder.seen();
    check_nesting(&seen);
    for index in [6, 12] {
        let parse_end = &seen[index];
        assert_eq!(parse_end.payload, None);
        assert_eq!(parse_end.error.as_ref().unwrap().kind, ErrorKind::Parse);
    }
    let module_end = seen.last().unwrap();
    assert_eq!(module_end.payload, None);
    let error_event = module_end.error.as_ref().unwrap();
    assert_eq!(error_event.kind, ErrorKind::Parse);
    assert_eq!(error_event.message, error.to_string());
    assert_no_secret(&seen);
}

/// Panics in every hook.
struct Panicker;

impl Callback for Panicker {
    fn on_module_start(&self, _: &StartEvent) {
        panic!("a callback bug");
    }
    fn on_module_end(&self, _: &EndEvent) {
        panic!("a callback bug");
    }
    fn on_lm_start(&self, _: &StartEvent) {
        panic!("a callback bug");
    }
    fn on_lm_end(&self, _: &EndEvent) {
        panic!("a callback bug");
    }
    fn on_adapter_format_start(&self, _: &StartEvent) {
        panic!("a callback bug");
    }
    fn on_adapter_parse_end(&self, _: &EndEvent) {
        panic!("a callback bug");
    }
}

/// Sleeps in every hook it has.
struct Sleeper;

const SLEEP: Duration = Duration::from_secs(5);

impl Callback for Sleeper {
    fn on_module_start(&self, _: &StartEvent) {
        std::thread::sleep(SLEEP);
    }
    fn on_lm_start(&self, _: &StartEvent) {
        std::thread::sleep(SLEEP);
    }
    fn on_lm_end(&self, _: &EndEvent) {
        std::thread::sleep(SLEEP);
    }
    fn on_module_end(&self, _: &EndEvent) {
        std::thread::sleep(SLEEP);
    }
}

#[tokio::test]
async fn panicking_and_slow_callbacks_change_neither_the_result_nor_the_latency() {
    let server = server().await;
    let input = || QAInput {
        question: "What is the capital of France?".into(),
    };
    let predict = Predict::<QA>::new().with_config(CallConfig::new().lm(lm(&server)));
    let (recorder, handle) = new_recorder();
    let without = with_settings(
        Settings::new().callbacks(Callbacks::new()),
        predict.forward(input()),
    )
    .await
    .expect("the plain call succeeds");

    let panicking = CallbackHandle::new(Panicker);
    let slow = CallbackHandle::new(Sleeper);
    let settings = Settings::new().callbacks(
        Callbacks::new()
            .with_handle(panicking.clone())
            .with_handle(slow.clone())
            .with_handle(handle.clone()),
    );
    let started = Instant::now();
    let with = with_settings(settings, async {
        (
            predict.forward(input()).await,
            predict.forward(input()).await,
        )
    })
    .await;
    let elapsed = started.elapsed();
    assert_eq!(with.0.expect("the first call succeeds"), without);
    assert_eq!(with.1.expect("the second call succeeds"), without);
    // The slow callback's first hook alone sleeps 5 s; the calls did not wait for it.
    assert!(
        elapsed < Duration::from_secs(3),
        "the calls took {elapsed:?}"
    );
    // The panicking callback's thread survived its panics: it still answers a flush.
    assert!(panicking.flush(FLUSH));
    // The well-behaved callback got all 16 events, unaffected by the other two.
    assert!(handle.flush(FLUSH));
    assert_eq!(recorder.seen().len(), 16);
    check_nesting(&recorder.seen());
    assert_eq!(panicking.dropped() + handle.dropped(), 0);
}

/// The only test that touches the process's settings: every other test sets callbacks in its
/// own scope, which replace these.
#[tokio::test]
async fn configured_callbacks_and_a_modules_own_both_fire() {
    let server = server().await;
    let (global, global_handle) = new_recorder();
    let (own, own_handle) = new_recorder();
    configure(Settings::new().callbacks(global_handle.clone()));
    let predict = Predict::<QA>::new()
        .with_config(CallConfig::new().lm(lm(&server)))
        .with_callbacks(own_handle.clone());
    let result = predict
        .forward(QAInput {
            question: "Who wrote Hamlet?".into(),
        })
        .await;
    configure(Settings::new().callbacks(Callbacks::new()));
    result.expect("the call succeeds");
    assert!(global_handle.flush(FLUSH) && own_handle.flush(FLUSH));
    assert_eq!(
        global.trail(),
        predict_trail("ChatAdapter", "openai/mock-model")
    );
    assert_eq!(own.trail(), ["module_start Predict", "module_end Predict"]);
    assert_eq!(own.seen()[1].call_id, global.seen()[7].call_id);
    check_nesting(&global.seen());
}

#[tokio::test]
async fn a_program_you_write_reports_module_events_through_instrumented() {
    let server = server().await;
    let (recorder, handle) = new_recorder();
    let pipeline = Predict::<QA>::new()
        .map(|out| out.answer.len())
        .instrumented("AnswerLength");
    assert_eq!(pipeline.name(), "AnswerLength");
    // Optimizers still see the predictor inside.
    assert_eq!(pipeline.named_predictors().len(), 1);
    let settings = Settings::new().lm(lm(&server)).callbacks(handle.clone());
    let length = with_settings(
        settings,
        pipeline.forward(QAInput {
            question: "Name a colour.".into(),
        }),
    )
    .await
    .expect("the call succeeds");
    assert!(handle.flush(FLUSH));
    let mut expected = vec!["module_start AnswerLength".to_string()];
    expected.extend(predict_trail("ChatAdapter", "openai/mock-model"));
    expected.push("module_end AnswerLength".into());
    assert_eq!(recorder.trail(), expected);
    let seen = recorder.seen();
    check_nesting(&seen);
    assert_eq!(seen[1].parent_id, Some(seen[0].call_id));
    assert_eq!(seen.last().unwrap().payload, Some(json!(length)));
}

#[tokio::test]
async fn a_stream_fires_the_events_of_a_plain_call_wherever_it_is_polled() {
    use dspex::module::StreamItem;
    use futures_util::StreamExt;
    let server = server().await;
    let (recorder, handle) = new_recorder();
    let cot = ChainOfThought::<QA>::new();
    let settings = Settings::new().lm(lm(&server)).callbacks(handle.clone());
    // Made inside the scope and read outside it: the events still reach the scope's callbacks.
    let stream = with_settings(settings, async {
        cot.stream(QAInput {
            question: "Why is the sky blue?".into(),
        })
    })
    .await;
    let items: Vec<_> = stream.collect().await;
    let Some(Ok(StreamItem::Final(out))) = items.last() else {
        panic!("no final item: {items:?}")
    };
    assert!(
        items
            .iter()
            .any(|i| matches!(i, Ok(StreamItem::Chunk(c)) if c.field == "answer")),
        "the answer streamed"
    );
    assert!(handle.flush(FLUSH));
    let mut expected = vec!["module_start ChainOfThought".to_string()];
    expected.extend(predict_trail("ChatAdapter", "openai/mock-model"));
    expected.push("module_end ChainOfThought".into());
    assert_eq!(recorder.trail(), expected);
    let seen = recorder.seen();
    check_nesting(&seen);
    // The LM's end event is the response as it streamed; the modules end with the final value.
    let lm_end = seen[5].payload.as_ref().unwrap();
    assert_eq!(lm_end["streamed"], true);
    assert!(
        lm_end["choices"][0]["text"]
            .as_str()
            .unwrap()
            .contains("[[ ## answer ## ]]")
    );
    assert_eq!(
        seen[9].payload.as_ref().unwrap()["answer"],
        json!(out.answer)
    );
    assert_eq!(
        seen[9].payload.as_ref().unwrap()["reasoning"],
        json!(out.reasoning)
    );
    assert_no_secret(&seen);
}

#[tokio::test]
async fn a_stream_dropped_half_read_ends_its_calls_as_cancelled() {
    use futures_util::StreamExt;
    let server = server().await;
    let (recorder, handle) = new_recorder();
    let predict = Predict::<QA>::new();
    let settings = Settings::new().lm(lm(&server)).callbacks(handle.clone());
    let mut stream = with_settings(settings, async {
        predict.stream(QAInput {
            question: "Name a colour.".into(),
        })
    })
    .await;
    let first = stream.next().await;
    assert!(matches!(first, Some(Ok(_))), "{first:?}");
    drop(stream);
    assert!(handle.flush(FLUSH));
    let seen = recorder.seen();
    check_nesting(&seen);
    assert_eq!(
        recorder.trail(),
        [
            "module_start Predict",
            "adapter_format_start ChatAdapter",
            "adapter_format_end ChatAdapter",
            "lm_start openai/mock-model",
            "lm_end openai/mock-model",
            "module_end Predict",
        ]
    );
    for end in [&seen[4], &seen[5]] {
        assert_eq!(end.error.as_ref().unwrap().kind, ErrorKind::Cancelled);
    }
}

#[tokio::test]
async fn best_of_n_refine_and_multi_chain_comparison_are_module_calls() {
    use dspex::module::{BestOfN, MultiChainComparison, Reasoned, Refine};
    let server = server().await;
    let (recorder, handle) = new_recorder();
    let (own, own_handle) = new_recorder();
    let settings = Settings::new().lm(lm(&server)).callbacks(handle.clone());
    let input = || QAInput {
        question: "What is 2 + 2?".into(),
    };

    let best = BestOfN::new(
        Predict::<QA>::new(),
        3,
        |_: &QAInput, _: &QAOutput| 1.0,
        0.5,
    )
    .with_callbacks(own_handle.clone());
    with_settings(settings.clone(), best.forward(input()))
        .await
        .expect("BestOfN succeeds");
    let refine = Refine::new(
        Predict::<QA>::new(),
        1,
        |_: &QAInput, _: &QAOutput| 1.0,
        0.5,
    );
    with_settings(settings.clone(), refine.forward(input()))
        .await
        .expect("Refine succeeds");
    let compare = MultiChainComparison::<QA>::new(2).expect("the module builds");
    let attempt = |answer: &str| Reasoned {
        reasoning: "Add them.".to_string(),
        output: QAOutput {
            answer: answer.to_string(),
        },
    };
    with_settings(
        settings,
        compare.forward_with(
            &[attempt("4"), attempt("5")],
            input(),
            &CallConfig::default(),
        ),
    )
    .await
    .expect("MultiChainComparison succeeds");

    assert!(handle.flush(FLUSH) && own_handle.flush(FLUSH));
    let mut expected = Vec::new();
    for module in ["BestOfN", "Refine", "MultiChainComparison"] {
        expected.push(format!("module_start {module}"));
        expected.extend(predict_trail("ChatAdapter", "openai/mock-model"));
        expected.push(format!("module_end {module}"));
    }
    assert_eq!(recorder.trail(), expected);
    let seen = recorder.seen();
    check_nesting(&seen);
    assert_eq!(
        seen[0].payload.as_ref().unwrap()["question"],
        "What is 2 + 2?"
    );
    // MultiChainComparison's inputs are the attempts and the input fields.
    let compare_start = seen[20].payload.as_ref().unwrap();
    assert_eq!(compare_start["completions"][1]["answer"], "5");
    assert_eq!(compare_start["question"], "What is 2 + 2?");
    // The instance's callbacks see its own module events only.
    assert_eq!(own.trail(), ["module_start BestOfN", "module_end BestOfN"]);
}
