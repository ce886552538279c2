//! [`ChatAdapter`](struct@ChatAdapter): DSPy's default prompt format, with `[[ ## field ## ]]` section markers.

use super::format::{
    INCOMPLETE_DEMO_PREFIX, NOT_SUPPLIED, STRUCTURE_HEADER, order_demos, strip_tail,
    write_field_description, write_field_value, write_reminder_hint, write_task_description,
    write_type_note, write_user_content,
};
use super::json::JSONAdapter;
use super::native::NativeToolCalling;
use super::{Adapter, AdapterError};
use crate::example::Example;
use crate::pycompat::text::{
    is_py_space, py_splitlines, py_strip, write_json_str, write_py_json, write_py_json_indented,
};
use crate::pycompat::value::{apply_defaults, parse_value};
use crate::signature::FieldSpec;
use crate::signature::{CustomType, DynSignature, TypeSpec};
use crate::types::{Message, MessageToolCall, ToolCallResults, ToolCalls};
use serde::Deserialize;
use serde_json::{Map, Value};

/// DSPy's `ChatAdapter` (3.4.1), reproduced byte for byte.
///
/// **Prompt.** A system message listing the fields (`1. `name` (type): description`), the
/// structure every turn follows (`[[ ## name ## ]]` then `{name}`, with a type note on typed
/// outputs, ending with `[[ ## completed ## ]]`) and the instructions; then one user/assistant
/// pair per demo (incomplete demos first, with DSPy's "not supplied" wording); then the inputs
/// with a reminder of the output order and types.
///
/// **Parsing.** The completion is cut at header lines (`[[ ## name ## ]]`, first occurrence of
/// each output wins, text before the first header is ignored) and each section is converted to
/// its field's type as DSPy's `parse_value` does: `str` is kept as text, other types go through
/// lenient JSON (a port of `json_repair`), Python literals (`True`, `None`, `'x'`, `1, 2`) and
/// pydantic's lax coercions. A missing output (other than an `Optional` one, which becomes
/// `null`) or a value of the wrong type is [`AdapterError::Parse`].
///
/// **Fallback.** DSPy retries a failed parse once with [`JSONAdapter`](struct@JSONAdapter) (a second LM call with
/// the JSON prompt); [`Adapter::fallback`] returns that adapter, and the module layer makes the
/// call.
///
/// ```
/// use dspex_core::adapter::{Adapter, ChatAdapter};
/// use dspex_core::{DynSignature, Example};
///
/// let sig = DynSignature::parse("question -> answer: int")?;
/// let messages = ChatAdapter.format(&sig, &[], &Example::from_pairs([("question", "2+2?")]))?;
/// assert!(messages[1].content.text().ends_with(
///     "`[[ ## answer ## ]]` (must be formatted as a valid Python int), and then ending with the marker for `[[ ## completed ## ]]`."
/// ));
/// let out = ChatAdapter.parse(&sig, "[[ ## answer ## ]]\n4\n\n[[ ## completed ## ]]")?;
/// assert_eq!(out["answer"], 4);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// **Options** (DSPy's `ChatAdapter(...)` arguments). `ChatAdapter` is both the type and its
/// default value; [`ChatAdapter::new`] gives the same, and the builder methods change it:
/// [`native_function_calling`](ChatAdapter::native_function_calling) (DSPy's
/// `use_native_function_calling`: a `list[Tool]` input goes out as the request's `tools` and a
/// `ToolCalls` output comes from the response's tool calls, see [`super::native`]),
/// [`parallel_tool_calls`](ChatAdapter::parallel_tool_calls) and
/// [`json_adapter_fallback`](ChatAdapter::json_adapter_fallback) (DSPy's
/// `use_json_adapter_fallback`).
///
/// ```
/// use dspex_core::adapter::{Adapter, ChatAdapter};
///
/// let adapter = ChatAdapter::new().native_function_calling(true).parallel_tool_calls(true);
/// assert!(adapter.native_tool_calling().enabled);
/// assert!(ChatAdapter.fallback().is_some());
/// assert!(ChatAdapter::new().json_adapter_fallback(false).fallback().is_none());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ChatAdapter {
    tools: NativeToolCalling,
    json_fallback: bool,
    native_reasoning: bool,
}

/// The default [`ChatAdapter`](struct@ChatAdapter) as a value, so `ChatAdapter` reads as DSPy's `dspy.ChatAdapter()`.
#[allow(non_upper_case_globals)]
pub const ChatAdapter: ChatAdapter = ChatAdapter::new();

impl Default for ChatAdapter {
    fn default() -> Self {
        ChatAdapter::new()
    }
}

impl ChatAdapter {
    /// DSPy's defaults: no native function calling, the provider's default for parallel calls,
    /// the JSONAdapter fallback on.
    pub const fn new() -> Self {
        ChatAdapter {
            tools: NativeToolCalling::OFF,
            json_fallback: true,
            native_reasoning: true,
        }
    }

    /// DSPy's `native_response_types` with (`true`, the default) or without `Reasoning`: whether
    /// a `Reasoning` output is left to an LM that reasons natively
    /// (`LanguageModel::supports_reasoning`) instead of being asked for in the prompt. (DSPy's
    /// other default native type, `Citations`, has no dspex counterpart yet.)
    #[must_use]
    pub const fn native_reasoning(mut self, on: bool) -> Self {
        self.native_reasoning = on;
        self
    }

    /// DSPy's `use_native_function_calling`.
    #[must_use]
    pub const fn native_function_calling(mut self, on: bool) -> Self {
        self.tools.enabled = on;
        self
    }

    /// DSPy's `parallel_tool_calls`: sent (with `tool_choice: "auto"`) when native function
    /// calling is in use.
    #[must_use]
    pub const fn parallel_tool_calls(mut self, on: bool) -> Self {
        self.tools.parallel_tool_calls = Some(on);
        self
    }

    /// DSPy's `use_json_adapter_fallback`: whether a completion that does not parse is retried
    /// with the JSONAdapter (on by default).
    #[must_use]
    pub const fn json_adapter_fallback(mut self, on: bool) -> Self {
        self.json_fallback = on;
        self
    }
}

/// The name DSPy gives the adapter.
const NAME: &str = "ChatAdapter";

/// Which of DSPy's two prompt layouts to write.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Style {
    /// `ChatAdapter`.
    Chat,
    /// `JSONAdapter`.
    Json,
    /// `XMLAdapter`.
    Xml,
}

impl Style {
    fn adapter_name(self) -> &'static str {
        match self {
            Style::Chat => NAME,
            Style::Json => "JSONAdapter",
            Style::Xml => super::xml::NAME,
        }
    }
}

/// `Adapter.format` for every layout: system message, demo turns, the conversation history
/// (when the signature has a `History` input), the main request. `native` is the adapter's
/// `use_native_function_calling`, which decides how the history's tool calls are sent.
pub(crate) fn format_messages(
    style: Style,
    native: bool,
    sig: &DynSignature,
    demos: &[Example],
    inputs: &Example,
) -> Result<Vec<Message>, AdapterError> {
    let adapter = style.adapter_name();
    let ordered = order_demos(sig, demos);
    let mut messages = Vec::with_capacity(2 + 2 * ordered.len());

    // DSPy's `format`: with a `History` input, the history field leaves the signature of the
    // history turns and of the main request (the system message and the demos keep it).
    let history_field = sig
        .inputs()
        .iter()
        .find(|f| *f.ty() == TypeSpec::Custom(CustomType::History));
    let without_history = history_field.map(|f| sig.delete(f.name()));
    let main_sig = without_history.as_ref().unwrap_or(sig);

    let mut system = String::with_capacity(1024);
    write_field_description(&mut system, sig);
    system.push('\n');
    match style {
        Style::Chat => write_chat_structure(&mut system, sig),
        Style::Json => write_json_structure(&mut system, sig),
        Style::Xml => super::xml::write_structure(&mut system, sig),
    }
    system.push('\n');
    write_task_description(&mut system, sig);
    // Messages live as long as the call and then in the LM's history: no spare capacity.
    system.shrink_to_fit();
    messages.push(Message::system(system));

    let not_supplied = Value::String(NOT_SUPPLIED.to_string());
    for (demo, complete) in ordered {
        let prefix = if complete { "" } else { INCOMPLETE_DEMO_PREFIX };
        messages.push(Message::user(user_turn(style, sig, demo, prefix, false)?));
        // Complete demos never miss a field, so DSPy's other wording for them never shows.
        messages.push(Message::assistant(assistant_turn(
            style,
            sig,
            demo,
            &not_supplied,
        )?));
    }

    if let Some(field) = history_field {
        for turn in history_turns(adapter, field.name(), inputs.as_map().get(field.name()))? {
            history_turn(style, native, main_sig, turn, &mut messages)?;
        }
    }

    let user = user_turn(style, main_sig, inputs.as_map(), "", true)?;
    if !user.is_empty() {
        messages.push(Message::user(user));
    }
    // Values of DSPy's own types (images, audio, files) were written between markers; they
    // become the user messages' content parts.
    Ok(super::custom::expand_all(messages))
}

/// One turn of `format_conversation_history`: its inputs as a user message (with the output
/// reminder when it has any input), then its outputs — and its tool calls and their results,
/// when a value of the turn is a `ToolCalls` (an object with a `"tool_calls"` key, whose
/// `"tool_call_results"` are the results).
///
/// With native function calling and tool calls: an assistant message with the turn's other
/// outputs (if any) and, when there are results whose call ids are the calls' ids (all
/// non-empty), the calls as OpenAI `tool_calls`, followed by one `tool` message per result.
/// Without: the outputs as an assistant message (the calls without their results; a missing
/// output is `None`), then the results as a user message of `tool_call_results`.
fn history_turn(
    style: Style,
    native: bool,
    sig: &DynSignature,
    turn: &Map<String, Value>,
    messages: &mut Vec<Message>,
) -> Result<(), AdapterError> {
    let adapter = style.adapter_name();
    let main_request = sig.inputs().iter().any(|f| turn.contains_key(f.name()));
    let user = user_turn(style, sig, turn, "", main_request)?;
    if !user.is_empty() {
        messages.push(Message::user(user));
    }
    let calls = history_tool_calls(adapter, turn)?;

    if native && let Some((_, calls, results)) = &calls {
        // The outputs the turn has, other than tool calls, form the content.
        let mut content_sig = std::borrow::Cow::Borrowed(sig);
        for f in sig.outputs() {
            let absent = turn.get(f.name()).is_none_or(Value::is_null);
            if absent || *f.ty() == TypeSpec::Custom(CustomType::ToolCalls) {
                content_sig = std::borrow::Cow::Owned(content_sig.delete(f.name()));
            }
        }
        let content = if content_sig.outputs().is_empty() {
            String::new()
        } else {
            assistant_turn(style, &content_sig, turn, &Value::Null)?
        };
        // Results go out only when they answer the calls one for one, by id.
        let results = results.as_ref().filter(|results| {
            calls.len() == results.results().len()
                && calls
                    .calls()
                    .iter()
                    .zip(results.results())
                    .all(|(call, result)| {
                        call.id.as_deref().is_some_and(|id| !id.is_empty())
                            && call.id == result.call_id
                    })
        });
        if let Some(results) = results {
            let tool_calls = calls
                .calls()
                .iter()
                .map(|call| {
                    let mut arguments = String::with_capacity(64);
                    write_py_json(&mut arguments, &Value::Object(call.args.clone()));
                    MessageToolCall::new(
                        call.id.clone().unwrap_or_default(),
                        call.name.clone(),
                        arguments,
                    )
                })
                .collect();
            messages.push(Message::assistant_tool_calls(content, tool_calls));
            for result in results.results() {
                let content = match &result.value {
                    Value::String(text) => text.clone(),
                    other => {
                        let mut text = String::with_capacity(64);
                        write_py_json(&mut text, other);
                        text
                    }
                };
                messages.push(Message::tool(
                    result.call_id.clone().unwrap_or_default(),
                    result.name.clone(),
                    content,
                ));
            }
        } else if !content.is_empty() {
            messages.push(Message::assistant(content));
        }
        return Ok(());
    }

    // Text mode: the calls are printed as DSPy prints a `ToolCalls` whose results were taken
    // out, and the results follow as a user message.
    let results = calls.as_ref().and_then(|(_, _, results)| results.as_ref());
    let stripped;
    let values = match (&calls, results) {
        (Some((name, calls, _)), Some(_)) => {
            let mut copy = turn.clone();
            copy.insert((*name).to_string(), calls.format_value());
            stripped = copy;
            &stripped
        }
        _ => turn,
    };
    let assistant = assistant_turn(style, sig, values, &Value::Null)?;
    if !assistant.is_empty() {
        messages.push(Message::assistant(assistant));
    }
    if let Some(results) = results {
        let mut values = Map::with_capacity(1);
        values.insert(
            "tool_call_results".to_string(),
            serde_json::to_value(results).unwrap_or(Value::Null),
        );
        messages.push(Message::user(user_turn(
            style,
            &TOOL_CALL_RESULTS_SIGNATURE,
            &values,
            "",
            false,
        )?));
    }
    Ok(())
}

/// DSPy's `_TOOL_CALL_RESULTS_SIGNATURE`: one `tool_call_results` input (typed `Any` here, which
/// prints a `ToolCallResults` as DSPy prints it: its JSON dump).
static TOOL_CALL_RESULTS_SIGNATURE: std::sync::LazyLock<DynSignature> =
    std::sync::LazyLock::new(|| {
        DynSignature::from_fields(None, [FieldSpec::input("tool_call_results", TypeSpec::Any)])
            .expect("a one-input signature is valid")
    });

/// A history turn's tool calls: the key holding them, the calls, and their results if any.
type TurnToolCalls<'a> = (&'a str, ToolCalls, Option<ToolCallResults>);

/// DSPy's `_tool_calls_from_message`: the first value of `turn` that is a `ToolCalls` (an
/// object with a `"tool_calls"` key), with its key and its `tool_call_results` (a
/// `ToolCallResults` object or a bare list of results; `null` or absent: none). A value that
/// does not validate is [`AdapterError::Format`], as DSPy's `model_validate` raises.
fn history_tool_calls<'a>(
    adapter: &'static str,
    turn: &'a Map<String, Value>,
) -> Result<Option<TurnToolCalls<'a>>, AdapterError> {
    let Some((name, value)) = turn
        .iter()
        .find(|(_, v)| v.as_object().is_some_and(|m| m.contains_key("tool_calls")))
    else {
        return Ok(None);
    };
    let bad = |message: String| AdapterError::Format {
        adapter,
        message: format!("history value `{name}`: {message}"),
    };
    let calls = ToolCalls::from_value(value).map_err(|e| bad(e.to_string()))?;
    let results = match value.get("tool_call_results") {
        None | Some(Value::Null) => None,
        Some(Value::Array(items)) => Some(ToolCallResults::deserialize(
            &serde_json::json!({"tool_call_results": items}),
        )),
        Some(other) => Some(ToolCallResults::deserialize(other)),
    }
    .transpose()
    .map_err(|e| bad(format!("invalid tool_call_results: {e}")))?;
    Ok(Some((name.as_str(), calls, results)))
}

/// `format_user_message_content`: `prefix`, the inputs of `sig` present in `values`, and the
/// output reminder when `main_request`.
fn user_turn(
    style: Style,
    sig: &DynSignature,
    values: &Map<String, Value>,
    prefix: &str,
    main_request: bool,
) -> Result<String, AdapterError> {
    let mut user = String::with_capacity(256);
    let reminder = |out: &mut String| match style {
        Style::Chat => write_chat_reminder(out, sig),
        Style::Json => write_json_reminder(out, sig),
        Style::Xml => super::xml::write_reminder(out, sig),
    };
    let reminder: Option<&dyn Fn(&mut String)> = if main_request { Some(&reminder) } else { None };
    match style {
        Style::Xml => super::xml::write_user(&mut user, sig, values, prefix, reminder)?,
        _ => write_user_content(
            &mut user,
            style.adapter_name(),
            sig,
            values,
            prefix,
            reminder,
        )?,
    }
    user.shrink_to_fit();
    Ok(user)
}

/// `format_assistant_message_content`: the outputs of `sig` in `values`, `missing` for an
/// absent one.
fn assistant_turn(
    style: Style,
    sig: &DynSignature,
    values: &Map<String, Value>,
    missing: &Value,
) -> Result<String, AdapterError> {
    let mut assistant = String::with_capacity(128);
    match style {
        Style::Chat => write_chat_assistant(&mut assistant, sig, values, missing)?,
        Style::Json => write_json_assistant(&mut assistant, sig, values, missing)?,
        Style::Xml => super::xml::write_assistant(&mut assistant, sig, values, missing)?,
    }
    assistant.shrink_to_fit();
    Ok(assistant)
}

/// The turns of a `History` value (`{"messages": [{…}, …]}`); none when the field is absent or
/// `null`.
fn history_turns<'a>(
    adapter: &'static str,
    field: &str,
    value: Option<&'a Value>,
) -> Result<Vec<&'a Map<String, Value>>, AdapterError> {
    let value = match value {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(v) => v,
    };
    let turns = value
        .as_object()
        .filter(|map| map.len() == 1)
        .and_then(|map| map.get("messages"))
        .and_then(Value::as_array)
        .and_then(|items| {
            items
                .iter()
                .map(Value::as_object)
                .collect::<Option<Vec<_>>>()
        });
    turns.ok_or_else(|| AdapterError::Format {
        adapter,
        message: format!(
            "field `{field}` is a History, whose value is {{\"messages\": [{{field: value, …}}, …]}}, not {}",
            crate::pycompat::text::compact_json(value)
        ),
    })
}

/// The `[[ ## name ## ]]\n{name}<note>` blocks of `fields`, joined by blank lines.
fn write_placeholders(out: &mut String, fields: &[crate::signature::FieldSpec]) {
    for (i, f) in fields.iter().enumerate() {
        if i > 0 {
            out.push_str("\n\n");
        }
        out.push_str("[[ ## ");
        out.push_str(f.name());
        out.push_str(" ## ]]\n{");
        out.push_str(f.name());
        out.push('}');
        write_type_note(out, f);
    }
}

/// ChatAdapter's `format_field_structure`.
fn write_chat_structure(out: &mut String, sig: &DynSignature) {
    out.push_str(STRUCTURE_HEADER);
    out.push_str("\n\n");
    write_placeholders(out, sig.inputs());
    out.push_str("\n\n");
    write_placeholders(out, sig.outputs());
    // The part is `[[ ## completed ## ]]\n`; the final strip drops its newline.
    out.push_str("\n\n[[ ## completed ## ]]");
}

/// JSONAdapter's `format_field_structure`: the input blocks, then the outputs as an indented
/// JSON object whose values are the placeholders with their notes.
fn write_json_structure(out: &mut String, sig: &DynSignature) {
    out.push_str(STRUCTURE_HEADER);
    out.push_str("\n\nInputs will have the following structure:\n\n");
    write_placeholders(out, sig.inputs());
    out.push_str("\n\nOutputs will be a JSON object with the following fields.\n\n");
    if sig.outputs().is_empty() {
        out.push_str("{}");
        return;
    }
    out.push('{');
    let mut placeholder = String::with_capacity(64);
    for (i, f) in sig.outputs().iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str("\n  ");
        write_json_str(out, f.name());
        out.push_str(": ");
        placeholder.clear();
        placeholder.push('{');
        placeholder.push_str(f.name());
        placeholder.push('}');
        write_type_note(&mut placeholder, f);
        write_json_str(out, &placeholder);
    }
    out.push_str("\n}");
}

/// ChatAdapter's output reminder.
fn write_chat_reminder(out: &mut String, sig: &DynSignature) {
    out.push_str("Respond with the corresponding output fields, starting with the field ");
    for (i, f) in sig.outputs().iter().enumerate() {
        if i > 0 {
            out.push_str(", then ");
        }
        out.push_str("`[[ ## ");
        out.push_str(f.name());
        out.push_str(" ## ]]`");
        write_reminder_hint(out, f);
    }
    out.push_str(", and then ending with the marker for `[[ ## completed ## ]]`.");
}

/// JSONAdapter's output reminder.
fn write_json_reminder(out: &mut String, sig: &DynSignature) {
    out.push_str("Respond with a JSON object in the following order of fields: ");
    for (i, f) in sig.outputs().iter().enumerate() {
        if i > 0 {
            out.push_str(", then ");
        }
        out.push('`');
        out.push_str(f.name());
        out.push('`');
        write_reminder_hint(out, f);
    }
    out.push('.');
}

/// ChatAdapter's assistant turn: every output's block (missing ones say "not supplied"),
/// stripped, then `[[ ## completed ## ]]` and a newline.
fn write_chat_assistant(
    out: &mut String,
    sig: &DynSignature,
    demo: &Map<String, Value>,
    missing: &Value,
) -> Result<(), AdapterError> {
    let start = out.len();
    for (i, f) in sig.outputs().iter().enumerate() {
        if i > 0 {
            out.push_str("\n\n");
        }
        out.push_str("[[ ## ");
        out.push_str(f.name());
        out.push_str(" ## ]]\n");
        let value = demo.get(f.name()).unwrap_or(missing);
        write_field_value(out, NAME, f, value)?;
    }
    strip_tail(out, start);
    out.push_str("\n\n[[ ## completed ## ]]\n");
    Ok(())
}

/// JSONAdapter's assistant turn: the outputs as an indented JSON object (`missing` for an
/// absent one; media values as their marked parts, as DSPy's `serialize_for_json` gives them).
fn write_json_assistant(
    out: &mut String,
    sig: &DynSignature,
    demo: &Map<String, Value>,
    missing: &Value,
) -> Result<(), AdapterError> {
    if sig.outputs().is_empty() {
        out.push_str("{}");
        return Ok(());
    }
    out.push('{');
    for (i, f) in sig.outputs().iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str("\n  ");
        write_json_str(out, f.name());
        out.push_str(": ");
        let value = demo.get(f.name()).unwrap_or(missing);
        // `Tool` and `ToolCalls` values as their `format()` (a call's id is not shown).
        let tools = super::format::format_tool_values(f.ty(), value);
        let value = tools.as_ref().unwrap_or(value);
        match super::format::mark_media("JSONAdapter", f, f.ty(), value)? {
            Some(marked) => write_py_json_indented(out, &marked, 1),
            None => write_py_json_indented(out, value, 1),
        }
    }
    out.push_str("\n}");
    Ok(())
}

/// Whether `line` (already Python-stripped) starts with a `[[ ## name ## ]]` header; returns
/// the name and the header's length in characters.
fn match_header(line: &str) -> Option<(&str, usize)> {
    let rest = line.strip_prefix("[[ ## ")?;
    let name_len = rest
        .char_indices()
        .find(|&(_, c)| !(c.is_alphanumeric() || c == '_'))
        .map_or(rest.len(), |(i, _)| i);
    if name_len == 0 {
        return None;
    }
    let (name, after) = rest.split_at(name_len);
    after.strip_prefix(" ## ]]")?;
    Some((name, 6 + name.chars().count() + 6))
}

/// ChatAdapter's section split: `(header, text)` pairs in order, the text before the first
/// header under `None`. Reproduces DSPy's offset quirk: the header length is measured on the
/// stripped line but the rest is cut from the unstripped one.
pub(crate) fn split_sections(completion: &str) -> Vec<(Option<&str>, String)> {
    let mut sections: Vec<(Option<&str>, Vec<&str>)> = vec![(None, Vec::new())];
    for line in py_splitlines(completion) {
        match match_header(py_strip(line)) {
            Some((name, header_chars)) => {
                let rest = line
                    .char_indices()
                    .nth(header_chars)
                    .map_or("", |(i, _)| &line[i..]);
                let rest = py_strip(rest);
                let lines = if rest.is_empty() { vec![] } else { vec![rest] };
                sections.push((Some(name), lines));
            }
            None => {
                if let Some(last) = sections.last_mut() {
                    last.1.push(line);
                }
            }
        }
    }
    sections
        .into_iter()
        .map(|(name, lines)| {
            let joined = lines.join("\n");
            let text = joined.trim_matches(is_py_space);
            let text = if text.len() == joined.len() {
                joined
            } else {
                text.to_string()
            };
            (name, text)
        })
        .collect()
}

/// The error DSPy raises when outputs are missing after defaults.
pub(crate) fn missing_fields_error(
    adapter: &'static str,
    sig: &DynSignature,
    parsed: &Map<String, Value>,
    completion: &str,
) -> AdapterError {
    let expected: Vec<&str> = sig.output_names().collect();
    let missing: Vec<&str> = expected
        .iter()
        .copied()
        .filter(|n| !parsed.contains_key(*n))
        .collect();
    AdapterError::Parse {
        adapter,
        field: missing.first().map(|s| (*s).to_string()),
        message: format!(
            "expected output fields [{}], found [{}] (missing: {})",
            expected.join(", "),
            parsed
                .keys()
                .map(String::as_str)
                .collect::<Vec<_>>()
                .join(", "),
            missing.join(", ")
        ),
        completion: completion.to_string(),
    }
}

/// The error for an empty completion (DSPy checks this before parsing).
pub(crate) fn empty_error(adapter: &'static str) -> AdapterError {
    AdapterError::Parse {
        adapter,
        field: None,
        message: "The LM returned an empty or null response.".to_string(),
        completion: String::new(),
    }
}

impl Adapter for ChatAdapter {
    fn name(&self) -> &'static str {
        NAME
    }

    fn format(
        &self,
        signature: &DynSignature,
        demos: &[Example],
        inputs: &Example,
    ) -> Result<Vec<Message>, AdapterError> {
        format_messages(Style::Chat, self.tools.enabled, signature, demos, inputs)
    }

    fn parse(
        &self,
        signature: &DynSignature,
        completion: &str,
    ) -> Result<Map<String, Value>, AdapterError> {
        if completion.is_empty() {
            return Err(empty_error(NAME));
        }
        let mut fields: Map<String, Value> = Map::new();
        for (name, text) in split_sections(completion) {
            let Some(name) = name else { continue };
            if fields.contains_key(name) {
                continue;
            }
            let Some(field) = signature.outputs().iter().find(|f| f.name() == name) else {
                continue;
            };
            let value = parse_value(field.ty(), &crate::pycompat::py::Py::Str(text.clone())).map_err(
                |e| AdapterError::Parse {
                    adapter: NAME,
                    field: Some(name.to_string()),
                    message: format!(
                        "Failed to parse field {name} with value {text} from the LM response. Error message: {e}"
                    ),
                    completion: completion.to_string(),
                },
            )?;
            fields.insert(name.to_string(), value);
        }
        let fields = apply_defaults(signature, fields);
        if fields.len() != signature.outputs().len() {
            return Err(missing_fields_error(NAME, signature, &fields, completion));
        }
        Ok(fields)
    }

    fn fallback(&self) -> Option<&'static dyn Adapter> {
        self.json_fallback
            .then(|| JSONAdapter::fallback_for(self.tools) as &'static dyn Adapter)
    }

    fn native_tool_calling(&self) -> NativeToolCalling {
        self.tools
    }

    fn native_reasoning_enabled(&self) -> bool {
        self.native_reasoning
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sections(text: &str) -> Vec<(Option<&str>, String)> {
        split_sections(text)
    }

    #[test]
    fn header_matching() {
        assert_eq!(match_header("[[ ## answer ## ]]"), Some(("answer", 18)));
        assert_eq!(
            match_header("[[ ## answer ## ]] rest"),
            Some(("answer", 18))
        );
        assert_eq!(
            match_header("[[ ## réponse_2 ## ]]"),
            Some(("réponse_2", 21))
        );
        assert_eq!(match_header("[[## answer ##]]"), None);
        assert_eq!(match_header("[[ ## ## ]]"), None);
        assert_eq!(match_header("[[ ## a b ## ]]"), None);
        assert_eq!(match_header("x [[ ## a ## ]]"), None);
    }

    #[test]
    fn section_splitting_quirks() {
        // Text before the first header is dropped; inner indentation is kept.
        let s = sections("Sure!\n[[ ## answer ## ]]\n  multi\nline  \n\n[[ ## completed ## ]]\n");
        assert_eq!(s[1], (Some("answer"), "multi\nline".to_string()));
        assert_eq!(s[2], (Some("completed"), String::new()));
        // Content on the header line.
        let s = sections("[[ ## answer ## ]] 42\nmore");
        assert_eq!(s[1], (Some("answer"), "42\nmore".to_string()));
        // An indented header leaks its last characters into the content (DSPy's offset bug).
        let s = sections("   [[ ## answer ## ]]\nParis");
        assert_eq!(s[1], (Some("answer"), "]]\nParis".to_string()));
        let s = sections("\t[[ ## n ## ]]5");
        assert_eq!(s[1], (Some("n"), "]5".to_string()));
        // Python's line boundaries.
        let s = sections("[[ ## a ## ]]\r\nx\u{2028}[[ ## b ## ]]\ry");
        assert_eq!(s[1], (Some("a"), "x".to_string()));
        assert_eq!(s[2], (Some("b"), "y".to_string()));
    }
}
