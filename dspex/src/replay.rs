//! Replaying DSPy's `call` fixtures: one module call run through dspex with a scripted LM, and
//! what it sent and returned, in the fixtures' own encoding (`dspex replay FILE` prints it).
//!
//! A `call` fixture (`../shared/fixtures/README.md`) records one DSPy 3.4.1 module call: the
//! module (`Predict` or `ChainOfThought`), the adapter and its options, the signature, demos
//! and inputs, the LM's `replies` in order, and what DSPy sent (`expected_requests`) and
//! returned (`expected`). [`replay`] runs the same call through dspex against a
//! [`ScriptedLM`](crate::lm::ScriptedLM) answering the `replies`, and gives back the requests
//! dspex sent (messages and the options that shape the call) and the outputs or the DSPy class
//! name of the error — the shape of the fixture's own expectations, so the two compare as JSON.
//!
//! Values of DSPy's own types are tagged as in the fixtures: an input `{"$type": "Image", "url":
//! …}` is the value `{"url": …}` (the shape pydantic's `model_dump` gives, which is how dspex
//! holds these values in an [`Example`]), and an output of such a type is tagged again.
//!
//! The scripted LM takes no `response_format`, like the LM the fixtures were recorded with, so
//! the JSONAdapter sends none (see
//! [`LanguageModel::supports_response_format`](crate::lm::LanguageModel::supports_response_format)).
//!
//! ```
//! use serde_json::json;
//!
//! let fixture = json!({
//!     "kind": "call", "module": "Predict", "adapter": "chat", "adapter_options": {},
//!     "signature": {"instructions": "Answer.", "inputs": [{"name": "question", "type": "str"}],
//!                   "outputs": [{"name": "answer", "type": "int"}]},
//!     "demos": [], "inputs": {"question": "2+2?"},
//!     "replies": [{"content": "[[ ## answer ## ]]\n4\n\n[[ ## completed ## ]]"}],
//! });
//! let run = dspex::replay::replay(&fixture)?;
//! assert_eq!(run.outcome, Ok(json!({"answer": 4}).as_object().unwrap().clone()));
//! assert_eq!(run.requests.len(), 1);
//! assert_eq!(run.to_json()["outputs"]["answer"], 4);
//! # Ok::<(), dspex::replay::ReplayError>(())
//! ```

use crate::lm::{Choice, LmRequest, ScriptedLM, ToolCall};
use crate::module::{CallConfig, DynPredict};
use crate::{CustomType, DynSignature, Error, Example, FieldSpec, TypeSpec};
use dspex_runtime::adapter::{AdapterError, ChatAdapter, JSONAdapter, TwoStepAdapter, XMLAdapter};
use serde_json::{Map, Value, json};

/// What one replayed call did.
#[derive(Debug, Clone, PartialEq)]
pub struct Replay {
    /// Each LM request dspex sent: `{"messages": [...], "options": {...}}` (options: the
    /// `response_format`, `tools`, `tool_choice` and `parallel_tool_calls` sent, if any).
    pub requests: Vec<Value>,
    /// The extraction LM's requests (the TwoStepAdapter's second LM); empty otherwise.
    pub extraction_requests: Vec<Value>,
    /// The call's outputs (special types tagged), or the DSPy class name of its error
    /// (`AdapterParseError`, …).
    pub outcome: Result<Map<String, Value>, String>,
}

impl Replay {
    /// The object `dspex replay` prints: `{"requests", "extraction_requests", "outputs"}`, or
    /// with `"error": "ClassName"` in place of `outputs`.
    pub fn to_json(&self) -> Value {
        let mut out = Map::new();
        out.insert("requests".into(), Value::Array(self.requests.clone()));
        out.insert(
            "extraction_requests".into(),
            Value::Array(self.extraction_requests.clone()),
        );
        match &self.outcome {
            Ok(outputs) => out.insert("outputs".into(), Value::Object(outputs.clone())),
            Err(class) => out.insert("error".into(), Value::String(class.clone())),
        };
        Value::Object(out)
    }
}

/// Why a fixture could not be replayed at all (as opposed to a call that fails, which is a
/// [`Replay`] whose outcome is the error's class name).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ReplayError {
    /// The file is not a `call` fixture, or a part of it is malformed.
    #[error("not a replayable call fixture: {0}")]
    Fixture(String),
    /// The fixture needs something dspex does not do yet.
    #[error("the fixture needs {0}, which dspex cannot replay yet")]
    Unsupported(String),
}

/// Replays a `call` fixture (see the [module docs](self)). Runs the call on dspex's shared
/// blocking runtime; from async code use [`replay_async`].
pub fn replay(fixture: &Value) -> Result<Replay, ReplayError> {
    let plan = Plan::read(fixture)?;
    let outcome = crate::blocking::block_on(async { Ok(plan.run().await) })
        .map_err(|e| ReplayError::Fixture(format!("cannot run the call: {e}")))?;
    Ok(outcome)
}

/// [`replay`] from async code.
pub async fn replay_async(fixture: &Value) -> Result<Replay, ReplayError> {
    Ok(Plan::read(fixture)?.run().await)
}

/// A fixture read and checked, ready to run.
struct Plan {
    signature: DynSignature,
    adapter: AdapterKind,
    options: AdapterOptions,
    demos: Vec<Example>,
    inputs: Example,
    replies: Vec<Choice>,
    extraction_replies: Vec<Choice>,
}

/// DSPy's adapter options a fixture may set (`adapter_options`).
#[derive(Clone, Copy, Default)]
struct AdapterOptions {
    /// `use_native_function_calling`; `None` keeps the adapter's default (on for the
    /// JSONAdapter, off for the others).
    native_function_calling: Option<bool>,
    /// `parallel_tool_calls`.
    parallel_tool_calls: Option<bool>,
    /// `use_json_adapter_fallback` (ChatAdapter).
    json_adapter_fallback: Option<bool>,
}

impl AdapterOptions {
    fn read(v: &Value, adapter: AdapterKind) -> Result<Self, ReplayError> {
        let mut options = AdapterOptions::default();
        let map = match v {
            Value::Null => return Ok(options),
            Value::Object(map) => map,
            other => {
                return Err(ReplayError::Fixture(format!(
                    "adapter_options is {}",
                    short(other)
                )));
            }
        };
        for (name, value) in map {
            let flag = match value {
                Value::Bool(b) => Some(*b),
                Value::Null => None,
                other => {
                    return Err(ReplayError::Fixture(format!(
                        "the adapter option `{name}` is {}",
                        short(other)
                    )));
                }
            };
            let supported = match (name.as_str(), adapter) {
                ("use_native_function_calling", AdapterKind::Chat | AdapterKind::Json) => {
                    options.native_function_calling = flag;
                    true
                }
                ("parallel_tool_calls", AdapterKind::Chat | AdapterKind::Json) => {
                    options.parallel_tool_calls = flag;
                    true
                }
                ("use_json_adapter_fallback", AdapterKind::Chat) => {
                    options.json_adapter_fallback = flag;
                    true
                }
                _ => false,
            };
            if !supported {
                return Err(ReplayError::Unsupported(format!(
                    "the adapter option `{name}`"
                )));
            }
        }
        Ok(options)
    }

    fn chat(self) -> ChatAdapter {
        let mut adapter = ChatAdapter::new();
        if let Some(on) = self.native_function_calling {
            adapter = adapter.native_function_calling(on);
        }
        if let Some(on) = self.parallel_tool_calls {
            adapter = adapter.parallel_tool_calls(on);
        }
        if let Some(on) = self.json_adapter_fallback {
            adapter = adapter.json_adapter_fallback(on);
        }
        adapter
    }

    fn json(self) -> JSONAdapter {
        let mut adapter = JSONAdapter::new();
        if let Some(on) = self.native_function_calling {
            adapter = adapter.native_function_calling(on);
        }
        if let Some(on) = self.parallel_tool_calls {
            adapter = adapter.parallel_tool_calls(on);
        }
        adapter
    }
}

#[derive(Clone, Copy)]
enum AdapterKind {
    Chat,
    Json,
    Xml,
    TwoStep,
}

impl Plan {
    fn read(fx: &Value) -> Result<Plan, ReplayError> {
        let bad = |what: &str| ReplayError::Fixture(what.to_string());
        if fx["kind"] != "call" {
            return Err(bad(&format!(
                "`kind` is {}, not \"call\"",
                short(&fx["kind"])
            )));
        }
        let mut signature: DynSignature = serde_json::from_value(fx["signature"].clone())
            .map_err(|e| bad(&format!("the signature does not load: {e}")))?;
        match fx["module"].as_str() {
            Some("Predict") => {}
            Some("ChainOfThought") => {
                signature = signature
                    .prepend(FieldSpec::output("reasoning", TypeSpec::Str))
                    .map_err(|e| bad(&format!("ChainOfThought's reasoning field: {e}")))?;
            }
            other => {
                return Err(ReplayError::Unsupported(format!(
                    "the module {}",
                    other.map_or_else(|| short(&fx["module"]), str::to_string)
                )));
            }
        }
        let adapter = match fx["adapter"].as_str() {
            Some("chat") => AdapterKind::Chat,
            Some("json") => AdapterKind::Json,
            Some("xml") => AdapterKind::Xml,
            Some("two_step") => AdapterKind::TwoStep,
            _ => {
                return Err(bad(&format!(
                    "unknown adapter {} (chat, json, xml or two_step)",
                    short(&fx["adapter"])
                )));
            }
        };
        let options = AdapterOptions::read(&fx["adapter_options"], adapter)?;
        let demos = match &fx["demos"] {
            Value::Null => Vec::new(),
            Value::Array(items) => items
                .iter()
                .enumerate()
                .map(|(i, d)| example(d).map_err(|e| bad(&format!("demos[{i}]: {e}"))))
                .collect::<Result<_, _>>()?,
            other => return Err(bad(&format!("demos is {}", short(other)))),
        };
        if let Some(tag) =
            find_unsupported_tag(&fx["inputs"]).or_else(|| find_unsupported_tag(&fx["demos"]))
        {
            return Err(ReplayError::Unsupported(format!("DSPy's `{tag}` type")));
        }
        let inputs = example(&fx["inputs"]).map_err(|e| bad(&format!("inputs: {e}")))?;
        let replies = scripted_replies(&fx["replies"], "replies")?;
        let extraction_replies = match (&fx["extraction_replies"], adapter) {
            (Value::Null, AdapterKind::TwoStep) => {
                return Err(bad("a two_step fixture needs `extraction_replies`"));
            }
            (Value::Null, _) => Vec::new(),
            (list, _) => scripted_replies(list, "extraction_replies")?,
        };
        Ok(Plan {
            signature,
            adapter,
            options,
            demos,
            inputs,
            replies,
            extraction_replies,
        })
    }

    async fn run(self) -> Replay {
        let lm = ScriptedLM::from_choices(self.replies).without_response_format();
        let extraction =
            ScriptedLM::from_choices(self.extraction_replies).without_response_format();
        let config = CallConfig::new().lm(lm.clone());
        let config = match self.adapter {
            AdapterKind::Chat => config.adapter(self.options.chat()),
            AdapterKind::Json => config.adapter(self.options.json()),
            AdapterKind::Xml => config.adapter(XMLAdapter),
            AdapterKind::TwoStep => config.adapter(TwoStepAdapter::new(extraction.clone())),
        };
        let mut predict = DynPredict::new(self.signature.clone());
        predict.params_mut().demos = self.demos;
        let result = predict.call_with(&self.inputs, &config).await;
        let requests = lm.requests().iter().map(request_json).collect();
        let outcome = match result {
            Ok(prediction) => Ok(tag_outputs(&self.signature, prediction.into_map())),
            Err(e) => Err(dspy_error_class(&e).to_string()),
        };
        Replay {
            requests,
            extraction_requests: extraction.requests().iter().map(request_json).collect(),
            outcome,
        }
    }
}

/// The scripted LM's answers: each reply's `content` and its `tool_calls` (OpenAI's shape).
fn scripted_replies(list: &Value, what: &str) -> Result<Vec<Choice>, ReplayError> {
    list.as_array()
        .ok_or_else(|| ReplayError::Fixture(format!("`{what}` is not a list")))?
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let text = match &r["content"] {
                Value::String(s) => s.clone(),
                Value::Null => String::new(),
                other => {
                    return Err(ReplayError::Fixture(format!(
                        "{what}[{i}].content is {}",
                        short(other)
                    )));
                }
            };
            let calls = match &r["tool_calls"] {
                Value::Null => Vec::new(),
                Value::Array(calls) => calls
                    .iter()
                    .enumerate()
                    .map(|(j, c)| {
                        ToolCall::from_openai(c).map_err(|e| {
                            ReplayError::Fixture(format!("{what}[{i}].tool_calls[{j}]: {e}"))
                        })
                    })
                    .collect::<Result<_, _>>()?,
                other => {
                    return Err(ReplayError::Fixture(format!(
                        "{what}[{i}].tool_calls is {}",
                        short(other)
                    )));
                }
            };
            Ok(Choice::text(text).with_tool_calls(calls))
        })
        .collect()
}

/// The `$type` tags of DSPy's types that dspex builds.
const KNOWN_TAGS: [&str; 7] = [
    "Image",
    "Audio",
    "File",
    "History",
    "Code",
    "Tool",
    "ToolCalls",
];

/// The first `$type` tag of a type dspex cannot build yet, at any depth.
fn find_unsupported_tag(v: &Value) -> Option<String> {
    match v {
        Value::Object(map) => match map.get("$type").and_then(Value::as_str) {
            Some(tag) if !KNOWN_TAGS.contains(&tag) => Some(tag.to_string()),
            _ => map.values().find_map(find_unsupported_tag),
        },
        Value::Array(items) => items.iter().find_map(find_unsupported_tag),
        _ => None,
    }
}

/// An [`Example`] from a fixture's field values, DSPy's own types built through the Rust types.
fn example(v: &Value) -> Result<Example, String> {
    match decode_value(v).map_err(|e| e.to_string())? {
        Value::Object(map) => Ok(Example::from_map(map)),
        other => Err(format!(
            "expected an object of field values, found {}",
            short(&other)
        )),
    }
}

/// A fixture's value with DSPy's own types decoded, at any depth: `{"$type": "Image", "url"}`
/// becomes the value of [`Image::url`](crate::Image::url) (`{"url"}`), `Audio` of
/// [`Audio::new`](crate::Audio::new), `File` and `History` of their serde forms, `{"$type":
/// "Code", "code"}` the string of [`Code::new`](crate::Code::new), `Tool` the value of
/// [`ToolSpec`](crate::ToolSpec) and `ToolCalls` of [`ToolCalls`](crate::ToolCalls) — each
/// built through the Rust type, so a malformed one is an error naming it. A tag of a type dspex
/// does not know is [`ReplayError::Unsupported`].
pub fn decode_value(v: &Value) -> Result<Value, ReplayError> {
    let bad = |what: String| ReplayError::Fixture(what);
    let str_of = |map: &Map<String, Value>, key: &str| -> Result<String, ReplayError> {
        map.get(key)
            .and_then(Value::as_str)
            .map(str::to_string)
            .ok_or_else(|| bad(format!("a tagged value without `{key}`: {}", short(v))))
    };
    let json = |r: Result<Value, serde_json::Error>| r.map_err(|e| bad(e.to_string()));
    Ok(match v {
        Value::Object(map) => match map.get("$type").and_then(Value::as_str) {
            Some("Image") => json(serde_json::to_value(
                crate::Image::url(str_of(map, "url")?).map_err(|e| bad(e.to_string()))?,
            ))?,
            Some("Audio") => json(serde_json::to_value(
                crate::Audio::new(str_of(map, "data")?, str_of(map, "audio_format")?)
                    .map_err(|e| bad(e.to_string()))?,
            ))?,
            Some("File") => {
                let mut fields = map.clone();
                fields.shift_remove("$type");
                let file: crate::File = serde_json::from_value(Value::Object(fields))
                    .map_err(|e| bad(format!("a File: {e}")))?;
                json(serde_json::to_value(file))?
            }
            Some("Code") => json(serde_json::to_value(<crate::Code>::new(str_of(
                map, "code",
            )?)))?,
            Some("History") => {
                let messages = decode_value(map.get("messages").unwrap_or(&Value::Null))?;
                let messages = serde_json::from_value(messages)
                    .map_err(|e| bad(format!("a History's messages: {e}")))?;
                json(serde_json::to_value(crate::History::from_messages(
                    messages,
                )))?
            }
            Some("Tool") => {
                let mut fields = map.clone();
                fields.shift_remove("$type");
                let tool = crate::ToolSpec::from_value(&Value::Object(fields))
                    .map_err(|e| bad(format!("a Tool: {e}")))?;
                json(serde_json::to_value(tool))?
            }
            Some("ToolCalls") => {
                let mut fields = map.clone();
                fields.shift_remove("$type");
                let calls = crate::ToolCalls::from_value(&Value::Object(fields))
                    .map_err(|e| bad(format!("a ToolCalls: {e}")))?;
                json(serde_json::to_value(calls))?
            }
            Some(other) => {
                return Err(ReplayError::Unsupported(format!("DSPy's `{other}` type")));
            }
            None => Value::Object(
                map.iter()
                    .map(|(k, x)| Ok((k.clone(), decode_value(x)?)))
                    .collect::<Result<_, ReplayError>>()?,
            ),
        },
        Value::Array(items) => {
            Value::Array(items.iter().map(decode_value).collect::<Result<_, _>>()?)
        }
        other => other.clone(),
    })
}

/// Outputs whose type is one of DSPy's own tagged with `$type`, as the fixtures write them
/// (`Code` as `{"$type": "Code", "code"}`, whatever its language; `Reasoning`, which the
/// fixtures do not tag, stays a string).
fn tag_outputs(signature: &DynSignature, mut outputs: Map<String, Value>) -> Map<String, Value> {
    for field in signature.outputs() {
        let Some(custom) = field.ty().custom() else {
            continue;
        };
        if let crate::CustomType::Code(_) = custom {
            if let Some(value) = outputs.get_mut(field.name())
                && let Value::String(code) = value
            {
                let code = <crate::Code>::new(std::mem::take(code));
                *value = json!({"$type": "Code", "code": code.into_code()});
            }
            continue;
        }
        // The fixtures write tool calls as DSPy's `format()` does: names and args, no ids.
        if custom == CustomType::ToolCalls
            && let Some(value) = outputs.get_mut(field.name())
            && let Ok(calls) = serde_json::from_value::<crate::ToolCalls>(value.clone())
            && !value.is_null()
        {
            *value = calls.format_value();
        }
        if let Some(Value::Object(value)) = outputs.get_mut(field.name()) {
            let mut tagged = Map::new();
            tagged.insert("$type".into(), Value::String(custom.name().into()));
            tagged.extend(std::mem::take(value));
            *value = tagged;
        }
    }
    outputs
}

/// A request as the fixtures record it: messages, and the options that shape the call.
fn request_json(request: &LmRequest) -> Value {
    let mut options = Map::new();
    if let Some(format) = &request.response_format {
        options.insert(
            "response_format".into(),
            serde_json::to_value(format).unwrap_or(Value::Null),
        );
    }
    // In the order the call set them, as DSPy's `lm_kwargs` holds them.
    for (key, v) in &request.extra {
        if ["tools", "tool_choice", "parallel_tool_calls"].contains(&key.as_str()) {
            options.insert(key.clone(), v.clone());
        }
    }
    json!({
        "messages": serde_json::to_value(&request.messages).unwrap_or(Value::Null),
        "options": options,
    })
}

/// The class DSPy raises for an error like this one: `AdapterParseError` for answers that do
/// not parse (also after the JSONAdapter fallback), `ValueError` for prompts that cannot be
/// formatted or inputs of the wrong shape, `RuntimeError` for the rest (LM failures, …).
pub fn dspy_error_class(error: &Error) -> &'static str {
    match error {
        Error::Adapter(AdapterError::Parse { .. }) | Error::AdapterFallback { .. } => {
            "AdapterParseError"
        }
        Error::Adapter(_) | Error::Signature(_) | Error::Example(_) => "ValueError",
        _ => "RuntimeError",
    }
}

fn short(v: &Value) -> String {
    let text = v.to_string();
    match text.char_indices().nth(60) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture() -> Value {
        json!({
            "kind": "call", "module": "Predict", "adapter": "json", "adapter_options": {},
            "signature": {"instructions": "Answer.", "inputs": [{"name": "question", "type": "str"}],
                          "outputs": [{"name": "answer", "type": "str"}]},
            "demos": [], "inputs": {"question": "Hi?"},
            "replies": [{"content": "not json"}, {"content": "still not"}],
        })
    }

    #[test]
    fn a_failing_call_gives_its_requests_and_dspy_class() {
        let run = replay(&fixture()).unwrap();
        assert_eq!(run.outcome, Err("AdapterParseError".to_string()));
        assert_eq!(run.requests.len(), 1);
        // No response_format: the scripted LM takes none, as the fixtures' LM did.
        assert_eq!(run.requests[0]["options"], json!({}));
        assert_eq!(run.to_json()["error"], "AdapterParseError");
    }

    #[test]
    fn bad_fixtures_are_typed_errors_naming_the_part() {
        let mut fx = fixture();
        fx["kind"] = json!("format");
        assert!(matches!(replay(&fx), Err(ReplayError::Fixture(m)) if m.contains("kind")));
        let mut fx = fixture();
        fx["replies"] = json!([{"content": 3}]);
        assert!(
            matches!(replay(&fx), Err(ReplayError::Fixture(m)) if m.contains("replies[0].content"))
        );
        let mut fx = fixture();
        fx["adapter"] = json!("two_step");
        assert!(
            matches!(replay(&fx), Err(ReplayError::Fixture(m)) if m.contains("extraction_replies"))
        );
        let mut fx = fixture();
        fx["adapter_options"] = json!({"native_response_types": true});
        assert!(matches!(replay(&fx), Err(ReplayError::Unsupported(_))));
        let mut fx = fixture();
        fx["adapter_options"] = json!({"use_native_function_calling": 1});
        assert!(matches!(replay(&fx), Err(ReplayError::Fixture(_))));
        let mut fx = fixture();
        fx["replies"] = json!([{"content": "x", "tool_calls": [{"id": "c"}]}]);
        assert!(
            matches!(replay(&fx), Err(ReplayError::Fixture(m)) if m.contains("replies[0].tool_calls[0]"))
        );
        let mut fx = fixture();
        fx["inputs"] = json!([1]);
        assert!(matches!(replay(&fx), Err(ReplayError::Fixture(m)) if m.contains("inputs")));
    }

    #[test]
    fn tagged_values_are_built_through_the_rust_types() {
        let v = json!([{"$type": "Image", "url": "https://example.com/a.png"},
                       {"$type": "File", "file_id": "f"}]);
        assert_eq!(
            decode_value(&v).unwrap(),
            json!([{"url": "https://example.com/a.png"},
                   {"file_data": null, "file_id": "f", "filename": null}])
        );
        let bad = json!({"$type": "Audio", "data": "%%%", "audio_format": "wav"});
        assert!(matches!(decode_value(&bad), Err(ReplayError::Fixture(_))));
        let missing = json!({"$type": "Image"});
        assert!(
            matches!(decode_value(&missing), Err(ReplayError::Fixture(m)) if m.contains("url"))
        );
        let code = json!({"$type": "Code", "code": "x = 1"});
        assert_eq!(decode_value(&code).unwrap(), json!("x = 1"));
        assert!(matches!(
            decode_value(&json!({"$type": "Code"})),
            Err(ReplayError::Fixture(m)) if m.contains("code")
        ));
        let tool = json!({"$type": "Tool", "name": "t"});
        assert_eq!(
            decode_value(&tool).unwrap(),
            json!({"name": "t", "desc": null, "args": {}})
        );
        let nameless = json!({"$type": "Tool", "desc": "t"});
        assert!(matches!(
            decode_value(&nameless),
            Err(ReplayError::Fixture(_))
        ));
        let calls = json!({"$type": "ToolCalls", "tool_calls": [{"name": "t", "args": {}}]});
        assert_eq!(
            decode_value(&calls).unwrap(),
            json!({"tool_calls": [{"name": "t", "args": {}}]})
        );
        let code = json!({"$type": "Code", "code": "x"});
        assert_eq!(decode_value(&code).unwrap(), json!("x"));
        let unknown = json!({"$type": "Document", "data": "x"});
        assert!(matches!(
            decode_value(&unknown),
            Err(ReplayError::Unsupported(_))
        ));
    }
}
