//! Parity with DSPy 3.4.1 on what signatures mean, checked against every fixture in
//! `../shared/fixtures/dspy/` (read from there at run time, never copied in, so new fixtures count
//! without code changes).
//!
//! For each fixture this test rebuilds the signatures DSPy used — from the fixture's signature JSON,
//! from its signature string, or from the program description — and checks:
//! - the field list DSPy printed at the top of every system message (`1. `name` (type): desc`)
//!   equals dspex's rendering of the same signature: names, order, DSPy type spellings and
//!   descriptions;
//! - every JSON schema DSPy printed in an output type note equals `TypeSpec::json_schema`;
//! - a signature string parses to the same fields as the signature JSON beside it;
//! - saved program state lists the same prefixes and descriptions dspex computes;
//! - whole prompts: every `format` fixture's `expected_messages` equal what `ChatAdapter` /
//!   `JSONAdapter` produce, byte for byte; so do the calls recorded in `program_state` fixtures
//!   (each predictor's signature from the program description, with the saved instructions and
//!   demos) and the final call of the BootstrapFewShot trace (the compiled program's demos);
//! - ReAct traces are replayed: dspex's `DynReAct`, given the recorded completions in order and
//!   tools that return the recorded observations, sends every recorded prompt byte for byte and
//!   returns the recorded outputs and trajectory;
//! - parsing: every `parse` fixture's completion parses to exactly the `expected` values (an int
//!   field gives an integer, a float field a float) or fails with `AdapterError::Parse`;
//! - `call` fixtures are replayed through `dspex::replay` (what `dspex replay FILE` prints) on
//!   a scripted LM answering the recorded replies: every request's messages and options equal
//!   DSPy's and the outputs (or the error class) equal `expected`. Every fixture is checked: a
//!   new one that needs what dspex lacks fails, naming it.

use dspex::runtime::adapter::{Adapter, AdapterError, ChatAdapter, JSONAdapter, XMLAdapter};
use dspex::runtime::lm::{Content, Message, ScriptedLM};
use dspex::runtime::module::{CallConfig, DynReAct, Tool};
use dspex::{DynSignature, Example, FieldSpec, TypeSpec};
use serde_json::Value;
use std::fs;
use std::path::PathBuf;

fn fixtures_dir() -> PathBuf {
    match std::env::var_os("DSPEX_DSPY_FIXTURES") {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/fixtures/dspy"),
    }
}

#[test]
fn every_dspy_fixture_agrees_with_dspex_signatures() {
    let dir = fixtures_dir();
    let entries = fs::read_dir(&dir).unwrap_or_else(|e| {
        panic!(
            "the DSPy fixtures folder {} cannot be read ({e}); it must be ../shared/fixtures/dspy beside the checkout (or set DSPEX_DSPY_FIXTURES)",
            dir.display()
        )
    });
    let mut files: Vec<PathBuf> = entries
        .map(|e| e.expect("a readable directory entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no fixtures in {}", dir.display());

    let mut failures = Vec::new();
    let mut checks = 0usize;
    for path in &files {
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        let text = fs::read_to_string(path).unwrap();
        let fixture: Value =
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{name} is not JSON: {e}"));
        match check_fixture(&fixture) {
            Ok(n) if n > 0 => checks += n,
            Ok(_) => failures.push(format!("{name}: nothing was checked")),
            Err(e) => failures.push(format!("{name}: {e}")),
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} fixtures disagree:\n{}",
        failures.len(),
        files.len(),
        failures.join("\n")
    );
    eprintln!("{} fixtures, {checks} checks", files.len());
}

/// Replays a `call` fixture: the module on a scripted LM answering `replies` sends DSPy's
/// requests and returns `expected`.
fn check_call(fx: &Value) -> Result<usize, String> {
    // The same replay `dspex replay FILE` prints: what dspex sent and returned, in the
    // fixture's own encoding.
    let run = dspex::replay::replay(fx).map_err(|e| e.to_string())?;
    let expected = fx["expected_requests"]
        .as_array()
        .ok_or("no expected_requests")?;
    compare_requests("", &run.requests, expected)?;
    let mut n = run.requests.len();
    if let Some(want) = fx["expected_extraction_requests"].as_array() {
        compare_requests("extraction ", &run.extraction_requests, want)?;
        n += want.len();
    }
    match (&fx["expected"]["ok"], &run.outcome) {
        (Value::Object(want), Ok(outputs)) => {
            for (field, value) in want {
                if outputs.get(field) != Some(value) {
                    return Err(format!(
                        "output `{field}`: dspex {:?}, DSPy {value}",
                        outputs.get(field)
                    ));
                }
                n += 1;
            }
            if outputs.len() != want.len() {
                return Err(format!("dspex returns {outputs:?}, DSPy {want:?}"));
            }
        }
        (Value::Object(_), Err(class)) => {
            return Err(format!("DSPy's call succeeds, dspex's fails with {class}"));
        }
        (_, Ok(outputs)) => {
            return Err(format!(
                "DSPy raises {}, dspex returns {outputs:?}",
                fx["expected"]["error"]
            ));
        }
        (_, Err(class)) => {
            if fx["expected"]["error"] != class.as_str() {
                return Err(format!(
                    "DSPy raises {}, dspex {class}",
                    fx["expected"]["error"]
                ));
            }
            n += 1;
        }
    }
    Ok(n)
}

/// dspex's LM requests (messages and options) equal DSPy's, one for one.
fn compare_requests(which: &str, got: &[Value], want: &[Value]) -> Result<(), String> {
    if got.len() != want.len() {
        return Err(format!(
            "{} {which}LM call(s) made, DSPy made {}",
            got.len(),
            want.len()
        ));
    }
    for (i, (got, want)) in got.iter().zip(want).enumerate() {
        if got["messages"] != want["messages"] {
            let ours: Vec<Message> = serde_json::from_value(got["messages"].clone())
                .map_err(|e| format!("{which}LM call {i}: {e}"))?;
            let wanted = want["messages"]
                .as_array()
                .ok_or("expected messages are not a list")?;
            compare_messages(&format!("{which}LM call {i}"), wanted, &ours)?;
            return Err(format!("{which}LM call {i}: messages differ from DSPy's"));
        }
        if got["options"] != want["options"] {
            return Err(format!(
                "{which}LM call {i}: options {} where DSPy sent {}",
                got["options"], want["options"]
            ));
        }
    }
    Ok(())
}

/// Checks one fixture; returns how many assertions it made.
fn check_fixture(fx: &Value) -> Result<usize, String> {
    match fx["kind"].as_str() {
        Some("format") => {
            let mut sig = signature_from_json(&fx["signature"])?;
            if fx["module"].as_str() == Some("ChainOfThought") {
                sig = with_reasoning(&sig);
            }
            let mut n = check_string_form(&fx["signature"], &sig)?;
            n += check_messages(&fx["expected_messages"], std::slice::from_ref(&sig))?;
            let demos = examples(&fx["demos"])?;
            let inputs = example(&fx["inputs"])?;
            n += check_prompt(
                adapter_of(fx)?,
                &sig,
                &demos,
                &inputs,
                &fx["expected_messages"],
            )?;
            Ok(n)
        }
        Some("parse") => {
            let sig = signature_from_json(&fx["signature"])?;
            let n = check_string_form(&fx["signature"], &sig)?;
            // Every output DSPy parsed (or failed to) is a field of the signature.
            if let Some(ok) = fx["expected"]["ok"].as_object() {
                for key in ok.keys() {
                    if sig.outputs().iter().all(|f| f.name() != key) {
                        return Err(format!("parsed field `{key}` is not an output"));
                    }
                }
            }
            Ok(n + 1 + check_parse(fx, &sig)?)
        }
        Some("program_state") => check_program_state(fx),
        Some("trace") => check_trace(fx),
        Some("call") => check_call(fx),
        other => Err(format!("unknown fixture kind {other:?}")),
    }
}

fn signature_from_json(v: &Value) -> Result<DynSignature, String> {
    serde_json::from_value(v.clone()).map_err(|e| format!("signature does not load: {e}"))
}

fn with_reasoning(sig: &DynSignature) -> DynSignature {
    sig.prepend(FieldSpec::output("reasoning", TypeSpec::Str))
        .expect("reasoning can be prepended")
}

/// When the fixture records the string a signature came from, parsing it gives the same fields.
fn check_string_form(doc: &Value, sig: &DynSignature) -> Result<usize, String> {
    let Some(string) = doc["string"].as_str() else {
        return Ok(0);
    };
    let parsed = DynSignature::parse(string)
        .map_err(|e| format!("{e}"))?
        .with_instructions(sig.instructions());
    let base = sig.delete("reasoning");
    let base = if doc["outputs"]
        .as_array()
        .is_some_and(|o| o.iter().any(|f| f["name"] == "reasoning"))
    {
        sig.clone()
    } else {
        base
    };
    if parsed != base {
        return Err(format!(
            "{string:?} parses to {parsed} but the signature JSON is {base}"
        ));
    }
    Ok(1)
}

/// DSPy's field description block (`dspy/adapters/utils.py` `get_field_description_string`).
fn field_block(sig: &DynSignature) -> String {
    let items = |fields: &[FieldSpec]| {
        fields
            .iter()
            .enumerate()
            .map(|(i, f)| {
                format!(
                    "{}. `{}` ({}): {}",
                    i + 1,
                    f.name(),
                    f.dspy_type(),
                    f.description().unwrap_or("")
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
            .trim()
            .to_string()
    };
    format!(
        "Your input fields are:\n{}\nYour output fields are:\n{}\nAll interactions will be structured",
        items(sig.inputs()),
        items(sig.outputs())
    )
}

/// Every system message starts with the field block of one of `candidates`, and every JSON schema
/// in its output notes equals dspex's schema of that field.
fn check_messages(messages: &Value, candidates: &[DynSignature]) -> Result<usize, String> {
    let mut n = 0;
    for m in messages.as_array().ok_or("messages are not a list")? {
        if m["role"] != "system" {
            continue;
        }
        let content = m["content"].as_str().ok_or("system content is not text")?;
        let sig = candidates
            .iter()
            .find(|s| content.starts_with(&field_block(s)))
            .ok_or_else(|| {
                format!(
                    "no signature renders this system message's field list.\nDSPy:\n{}\ndspex:\n{}",
                    content
                        .split("\nAll interactions")
                        .next()
                        .unwrap_or(content),
                    candidates
                        .iter()
                        .map(field_block)
                        .collect::<Vec<_>>()
                        .join("\n--\n")
                )
            })?;
        n += 1;
        for f in sig.outputs() {
            let marker = format!(
                "{{{}}}        # note: the value you produce must adhere to the JSON schema: ",
                f.name()
            );
            if let Some(start) = content.find(&marker) {
                let rest = &content[start + marker.len()..];
                let line = rest.split('\n').next().unwrap_or(rest);
                // JSONAdapter prompts show the note inside a JSON string: unescape it first.
                let line = if line.starts_with("{\\\"") {
                    let end = line.rfind('"').unwrap_or(line.len());
                    serde_json::from_str::<String>(&format!("\"{}\"", &line[..end]))
                        .map_err(|e| format!("escaped schema note of `{}`: {e}", f.name()))?
                } else {
                    line.to_string()
                };
                let dspy: Value = serde_json::from_str(&line)
                    .map_err(|e| format!("schema note of `{}` is not JSON: {e}", f.name()))?;
                let ours = f.ty().json_schema();
                if dspy != ours {
                    return Err(format!(
                        "schema of `{}`: DSPy {dspy} but dspex {ours}",
                        f.name()
                    ));
                }
                n += 1;
            }
        }
    }
    Ok(n)
}

fn program_signature(desc: &Value) -> Result<DynSignature, String> {
    let string = desc["signature"]
        .as_str()
        .ok_or("program has no signature")?;
    let sig = DynSignature::parse(string).map_err(|e| e.to_string())?;
    Ok(match desc["module"].as_str() {
        Some("ChainOfThought") => with_reasoning(&sig),
        _ => sig,
    })
}

/// Saved state lists `{prefix, description}` per field in `fields` order, as dspex computes them.
fn check_state_fields(state: &Value, sig: &DynSignature) -> Result<usize, String> {
    let sig = match state["signature"]["instructions"].as_str() {
        Some(i) => sig.with_instructions(i),
        None => sig.clone(),
    };
    let fields = state["signature"]["fields"]
        .as_array()
        .ok_or("state has no signature.fields")?;
    let ours: Vec<&FieldSpec> = sig.fields().collect();
    if fields.len() != ours.len() {
        return Err(format!(
            "state has {} fields, dspex {}",
            fields.len(),
            ours.len()
        ));
    }
    for (saved, f) in fields.iter().zip(ours) {
        if saved["prefix"] != f.prefix() || saved["description"] != f.desc() {
            return Err(format!(
                "field `{}`: DSPy saved {saved}, dspex has prefix {:?} description {:?}",
                f.name(),
                f.prefix(),
                f.desc()
            ));
        }
    }
    Ok(fields.len())
}

fn check_program_state(fx: &Value) -> Result<usize, String> {
    let program = fx["program"].as_object().ok_or("no program")?;
    let mut n = 0;
    for (name, desc) in program {
        let sig = program_signature(desc)?;
        let state = &fx["state"][name];
        n += check_state_fields(state, &sig)?;
        let sig = sig.with_instructions(state["signature"]["instructions"].as_str().unwrap_or(""));
        let demos = examples(&state["demos"])?;
        for call in fx["calls"].as_array().ok_or("no calls")? {
            if call["predictor"] == name.as_str() {
                n += check_messages(&call["expected_messages"], std::slice::from_ref(&sig))?;
                let inputs = example(&call["inputs"])?;
                n += check_prompt(
                    &ChatAdapter,
                    &sig,
                    &demos,
                    &inputs,
                    &call["expected_messages"],
                )
                .map_err(|e| format!("call of `{name}`: {e}"))?;
            }
        }
    }
    Ok(n)
}

fn check_trace(fx: &Value) -> Result<usize, String> {
    let program = &fx["program"];
    let sig = program_signature(program)?;
    let mut candidates = vec![sig.clone()];
    if program["module"] == "ReAct" {
        // ReAct's two internal signatures (dspy/predict/react.py): the step signature, whose
        // tool choice is a Literal of the tool names plus `finish`, and the final extraction,
        // a ChainOfThought over the inputs and the trajectory.
        let mut tools: Vec<String> = program["tools"]
            .as_array()
            .ok_or("ReAct program lists no tools")?
            .iter()
            .map(|t| format!("'{}'", t["name"].as_str().unwrap_or_default()))
            .collect();
        tools.push("'finish'".to_string());
        let inputs: Vec<&str> = sig.input_names().collect();
        let step = format!(
            "{}, trajectory -> next_thought, next_tool_name: Literal[{}], next_tool_args: dict[str, Any]",
            inputs.join(", "),
            tools.join(", ")
        );
        candidates.push(DynSignature::parse(&step).map_err(|e| e.to_string())?);
        let extract = DynSignature::parse(&format!(
            "{}, trajectory -> {}",
            inputs.join(", "),
            sig.output_names().collect::<Vec<_>>().join(", ")
        ))
        .map_err(|e| e.to_string())?;
        candidates.push(with_reasoning(&extract));
    }
    let mut n = 0;
    for call in fx["calls"].as_array().ok_or("no calls")? {
        n += check_messages(&call["messages"], &candidates)?;
    }
    if program["module"] == "ReAct" {
        n += replay_react(fx, &sig)?;
    }
    if let Some(state) = fx["compiled_state"].as_object() {
        for (_, predictor) in state {
            n += check_state_fields(predictor, &sig)?;
        }
        // The compiled program's own call (the last one, after compiling) sends exactly the
        // prompt its saved state describes.
        if let [(_, predictor)] = state.iter().collect::<Vec<_>>().as_slice() {
            let compiled = match predictor["signature"]["instructions"].as_str() {
                Some(i) => sig.with_instructions(i),
                None => sig.clone(),
            };
            let demos = examples(&predictor["demos"])?;
            let inputs = example(&fx["inputs"])?;
            let last = fx["calls"]
                .as_array()
                .and_then(|c| c.last())
                .ok_or("the trace records no calls")?;
            n += check_prompt(&ChatAdapter, &compiled, &demos, &inputs, &last["messages"])
                .map_err(|e| format!("the compiled program's call: {e}"))?;
        }
    }
    Ok(n)
}

/// Replays a ReAct trace: the recorded completions in order, and tools that return the
/// observation DSPy recorded for the same tool and arguments. dspex's ReAct must send every
/// recorded message list exactly and end with the recorded outputs and trajectory.
fn replay_react(fx: &Value, sig: &DynSignature) -> Result<usize, String> {
    let program = &fx["program"];
    let output = fx["output"].as_object().ok_or("the trace has no output")?;
    let recorded = output
        .get("trajectory")
        .and_then(Value::as_object)
        .cloned()
        .ok_or("the trace's output has no trajectory")?;
    let mut tools = Vec::new();
    for t in program["tools"]
        .as_array()
        .ok_or("ReAct program lists no tools")?
    {
        let name = t["name"].as_str().ok_or("a tool has no name")?.to_string();
        let args = t["args"].as_object().cloned().unwrap_or_default();
        let trajectory = recorded.clone();
        let tool_name = name.clone();
        let tool = Tool::from_json_fn(&name, t["desc"].as_str(), args, move |args| {
            let trajectory = trajectory.clone();
            let tool_name = tool_name.clone();
            async move {
                (0..)
                    .map_while(|i| Some((i, trajectory.get(&format!("tool_name_{i}"))?)))
                    .find(|(i, name)| {
                        *name == tool_name.as_str()
                            && trajectory.get(&format!("tool_args_{i}"))
                                == Some(&Value::Object(args.clone()))
                    })
                    .and_then(|(i, _)| trajectory.get(&format!("observation_{i}")).cloned())
                    .ok_or_else(|| format!("DSPy never called {tool_name} with {args:?}"))
            }
        })
        .map_err(|e| e.to_string())?;
        tools.push(tool);
    }
    let calls = fx["calls"].as_array().ok_or("no calls")?;
    let lm = ScriptedLM::new(
        calls
            .iter()
            .map(|c| c["completion"].as_str().unwrap_or_default()),
    );
    let mut agent = DynReAct::new(sig.clone(), tools)
        .map_err(|e| e.to_string())?
        .with_config(CallConfig::new().lm(lm.clone()));
    if let Some(max) = program["max_iters"].as_u64() {
        agent = agent.with_max_iters(max as usize);
    }
    let inputs = example(&fx["inputs"])?;
    let result = tokio::runtime::Builder::new_current_thread()
        .build()
        .map_err(|e| e.to_string())?
        .block_on(agent.call(&inputs));
    let sent = lm.messages();
    let mut n = 0;
    for (i, call) in calls.iter().enumerate() {
        let expected = call["messages"]
            .as_array()
            .ok_or("a call has no messages")?;
        let ours = sent.get(i).ok_or_else(|| {
            format!(
                "DSPy made {} LM calls, dspex's ReAct {}; {}",
                calls.len(),
                sent.len(),
                match &result {
                    Err(e) => format!("it failed with {e}"),
                    Ok(_) => "it finished early".to_string(),
                }
            )
        })?;
        n += compare_messages(&format!("ReAct call {i}"), expected, ours)?;
    }
    if sent.len() != calls.len() {
        return Err(format!(
            "DSPy made {} LM calls, dspex's ReAct {}",
            calls.len(),
            sent.len()
        ));
    }
    let prediction = result.map_err(|e| format!("dspex's ReAct failed: {e}"))?;
    for (key, want) in output {
        if prediction.get(key) != Some(want) {
            return Err(format!(
                "ReAct output `{key}`: DSPy {want}, dspex {:?}",
                prediction.get(key)
            ));
        }
        n += 1;
    }
    Ok(n)
}

/// The adapter a fixture names (`adapter`: `chat` | `json`).
fn adapter_of(fx: &Value) -> Result<&'static dyn Adapter, String> {
    match fx["adapter"].as_str() {
        Some("chat") => Ok(&ChatAdapter),
        Some("json") => Ok(&JSONAdapter),
        Some("xml") => Ok(&XMLAdapter),
        other => Err(format!("unknown adapter {other:?}")),
    }
}

fn example(v: &Value) -> Result<Example, String> {
    // DSPy's own types are built through the Rust types, as `dspex replay` builds them.
    match dspex::replay::decode_value(v).map_err(|e| e.to_string())? {
        Value::Object(map) => Ok(Example::from_map(map)),
        other => Err(format!("expected an object of field values, found {other}")),
    }
}

fn examples(v: &Value) -> Result<Vec<Example>, String> {
    match v {
        Value::Null => Ok(Vec::new()),
        Value::Array(items) => items.iter().map(example).collect(),
        other => Err(format!("expected a list of demos, found {other}")),
    }
}

/// dspex's messages for the call equal DSPy's, role and content byte for byte. On a difference
/// the error shows the first differing message and, inside it, the first differing line.
fn check_prompt(
    adapter: &dyn Adapter,
    sig: &DynSignature,
    demos: &[Example],
    inputs: &Example,
    expected: &Value,
) -> Result<usize, String> {
    let expected = expected
        .as_array()
        .ok_or("expected messages are not a list")?;
    let ours = adapter
        .format(sig, demos, inputs)
        .map_err(|e| format!("{} cannot format the call: {e}", adapter.name()))?;
    compare_messages(adapter.name(), expected, &ours)
}

/// Checks dspex's messages against the list DSPy sent, naming the first difference.
fn compare_messages(label: &str, expected: &[Value], ours: &[Message]) -> Result<usize, String> {
    for (i, want) in expected.iter().enumerate() {
        let role = want["role"].as_str().ok_or("a message has no role")?;
        // Text, or (a user message with images, audio or files) a list of parts, compared as
        // JSON and shown as pretty JSON when they differ.
        let content = match &want["content"] {
            Value::String(text) => text.clone(),
            parts @ Value::Array(_) => serde_json::to_string_pretty(parts).unwrap(),
            _ => return Err("a message's content is neither text nor a list of parts".into()),
        };
        let Some(got) = ours.get(i) else {
            return Err(format!(
                "{}: DSPy sends {} messages, dspex only {}; the first missing one is {role}:\n{content}",
                label,
                expected.len(),
                ours.len()
            ));
        };
        if got.role.as_str() != role {
            return Err(format!(
                "{}: message {i} is {role} in DSPy but {} in dspex",
                label,
                got.role.as_str()
            ));
        }
        let got_value = serde_json::to_value(&got.content).unwrap();
        if got_value != want["content"] {
            let ours = match &got.content {
                Content::Text(text) => text.clone(),
                Content::Parts(_) => serde_json::to_string_pretty(&got_value).unwrap(),
            };
            return Err(format!(
                "{}: message {i} ({role}) differs.\n{}",
                label,
                first_difference(&content, &ours)
            ));
        }
    }
    if ours.len() != expected.len() {
        return Err(format!(
            "{}: DSPy sends {} messages, dspex {}; the extra one is:\n{}",
            label,
            expected.len(),
            ours.len(),
            ours[expected.len()].content
        ));
    }
    Ok(expected.len())
}

/// The first line where two texts differ, both versions shown with escapes visible.
fn first_difference(dspy: &str, ours: &str) -> String {
    let (a, b): (Vec<&str>, Vec<&str>) = (dspy.split('\n').collect(), ours.split('\n').collect());
    for i in 0..a.len().max(b.len()) {
        let (x, y) = (a.get(i), b.get(i));
        if x != y {
            return format!(
                "first differing line {}:\n  DSPy:  {}\n  dspex: {}",
                i + 1,
                x.map_or("<no line>".to_string(), |l| format!("{l:?}")),
                y.map_or("<no line>".to_string(), |l| format!("{l:?}"))
            );
        }
    }
    "the texts differ only in line endings".to_string()
}

/// The fixture's completion parses as DSPy parsed it: the same values (integers stay integers,
/// floats floats) or an `AdapterError::Parse` naming the completion.
fn check_parse(fx: &Value, sig: &DynSignature) -> Result<usize, String> {
    let adapter = adapter_of(fx)?;
    let completion = fx["completion"]
        .as_str()
        .ok_or("the completion is not text")?;
    let got = adapter.parse(sig, completion);
    match (&fx["expected"]["ok"], fx["expected"]["error"].as_str(), got) {
        (Value::Object(want), _, Ok(got)) => {
            // `Value` equality tells integers from floats; the fields also come in DSPy's order.
            if !got.keys().eq(want.keys()) || got != *want {
                return Err(format!(
                    "{} parses {completion:?} to {} but DSPy to {}",
                    adapter.name(),
                    Value::Object(got),
                    Value::Object(want.clone())
                ));
            }
        }
        (Value::Object(want), _, Err(e)) => {
            return Err(format!(
                "{} fails on {completion:?} ({e}) but DSPy parses {}",
                adapter.name(),
                Value::Object(want.clone())
            ));
        }
        (_, Some("AdapterParseError"), Err(AdapterError::Parse { completion: c, .. })) => {
            if c.is_empty() || !completion.contains(c.as_str()) {
                return Err(format!(
                    "the parse error should carry the completion, it carries {c:?}"
                ));
            }
        }
        (_, Some(kind), Err(e)) => {
            return Err(format!(
                "DSPy raises {kind}; dspex fails differently: {e:?}"
            ));
        }
        (_, Some(kind), Ok(got)) => {
            return Err(format!(
                "DSPy raises {kind} on {completion:?} but {} parses {}",
                adapter.name(),
                Value::Object(got)
            ));
        }
        (other, None, _) => return Err(format!("unknown expected result {other}")),
    }
    Ok(1)
}
