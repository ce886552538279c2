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
//! - saved program state lists the same prefixes and descriptions dspex computes.
//!
//! The adapters issue extends this to whole prompts and parsing.

use dspex::{DynSignature, FieldSpec, TypeSpec};
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

/// Checks one fixture; returns how many assertions it made.
fn check_fixture(fx: &Value) -> Result<usize, String> {
    match fx["kind"].as_str() {
        Some("format") => {
            let mut sig = signature_from_json(&fx["signature"])?;
            if fx["module"].as_str() == Some("ChainOfThought") {
                sig = with_reasoning(&sig);
            }
            let mut n = check_string_form(&fx["signature"], &sig)?;
            n += check_messages(&fx["expected_messages"], &[sig])?;
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
            Ok(n + 1)
        }
        Some("program_state") => check_program_state(fx),
        Some("trace") => check_trace(fx),
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
        for call in fx["calls"].as_array().ok_or("no calls")? {
            if call["predictor"] == name.as_str() {
                n += check_messages(&call["expected_messages"], std::slice::from_ref(&sig))?;
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
    if let Some(state) = fx["compiled_state"].as_object() {
        for (_, predictor) in state {
            n += check_state_fields(predictor, &sig)?;
        }
    }
    Ok(n)
}
