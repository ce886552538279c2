//! Saving and loading a program's parameters in DSPy's JSON state format (`Module.save` /
//! `Module.load` with a `.json` path).
//!
//! The state maps each predictor's DSPy name (`generate_query.predict`, `answer`) to
//! `{"traces": [], "train": [], "demos": [...], "signature": {"instructions": ..., "fields":
//! [{"prefix", "description"}, ...]}, "lm": null}`, with `metadata.dependency_versions` last; a
//! program that is a single predictor is saved unkeyed. Field names and types are not stored:
//! they come from the code, and saved prefixes and descriptions apply by position, as in DSPy.
//! Files written here load in DSPy 3.4.1, and DSPy's files load here.

use super::{Module, PredictorParams};
use crate::example::Example;
use serde_json::{Map, Value, json};
use std::path::{Path, PathBuf};

/// The DSPy release whose state format dspex writes (and whose name it records in the
/// metadata, so DSPy loads the file without a version warning).
pub const DSPY_STATE_VERSION: &str = "3.4.1";

/// What saving or loading a program's state can fail with. Each names the file, predictor or
/// key at fault.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StateError {
    /// The file could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        #[source]
        source: std::io::Error,
    },
    /// The path does not end in `.json`.
    #[error(
        "{}: a program state file must end with `.json` (DSPy's `.pkl` pickles run arbitrary code and are not supported)",
        path.display()
    )]
    UnsupportedFormat {
        /// The file.
        path: PathBuf,
    },
    /// The file is not JSON, or not a JSON object.
    #[error("{}: not a program state: {message}", path.display())]
    NotState {
        /// The file.
        path: PathBuf,
        /// What was wrong.
        message: String,
    },
    /// The file has no `metadata.dependency_versions` (DSPy refuses such files too).
    #[error("the state has no `metadata.dependency_versions`; it was not written by `save`")]
    MissingMetadata,
    /// The program has a predictor the state does not mention.
    #[error(
        "the state has no entry for predictor `{predictor}` (it has: {available}); was it saved from a program of the same shape?"
    )]
    MissingPredictor {
        /// The predictor's name.
        predictor: String,
        /// The names the state does have.
        available: String,
    },
    /// A predictor's entry has a key of the wrong shape.
    #[error("predictor `{predictor}`, key `{key}`: {message}")]
    BadKey {
        /// The predictor's name.
        predictor: String,
        /// The key (`demos[2]`, `signature.fields[0].prefix`, …).
        key: String,
        /// What was wrong.
        message: String,
    },
    /// The state could not be turned into JSON text.
    #[error("the state cannot be written as JSON: {0}")]
    Serialize(String),
}

/// The state of every predictor in `module`, and of its other parameters (DSPy's `Retrieve`:
/// `{"k": …}`, after the predictors), as DSPy's `dump_state()` (without metadata).
pub fn dump_state<M: Module + ?Sized>(module: &M) -> Value {
    let named = module.named_predictors();
    if let [(name, params)] = named.as_slice()
        && name == "self"
    {
        return Value::Object(predictor_state(params));
    }
    let mut out = Map::new();
    for (name, params) in named {
        out.insert(name, Value::Object(predictor_state(params)));
    }
    module.visit_other_state("", &mut |name, state| {
        out.insert(name, state);
    });
    Value::Object(out)
}

/// DSPy's `Predict.dump_state()` in JSON mode.
fn predictor_state(params: &PredictorParams) -> Map<String, Value> {
    let mut state = Map::new();
    state.insert("traces".into(), json!([]));
    state.insert("train".into(), json!([]));
    state.insert(
        "demos".into(),
        Value::Array(
            params
                .demos
                .iter()
                .map(|d| Value::Object(d.as_map().clone()))
                .collect(),
        ),
    );
    let fields: Vec<Value> = params
        .signature
        .fields()
        .map(|f| json!({"prefix": f.prefix(), "description": f.desc()}))
        .collect();
    state.insert(
        "signature".into(),
        json!({"instructions": params.signature.instructions(), "fields": fields}),
    );
    state.insert("lm".into(), Value::Null);
    state
}

/// Applies `state` (as [`dump_state`] or DSPy's `dump_state()` writes it) to `module`: each
/// predictor's demos, instructions and field prefixes/descriptions, and the other parameters'
/// entries (a `Retrieve`'s `k`) when present. Every predictor must have an entry; extra entries
/// are ignored. The whole state is checked before anything changes, so
/// a bad state leaves the module as it was.
pub fn load_state<M: Module + ?Sized>(module: &mut M, state: &Value) -> Result<(), StateError> {
    let root = state.as_object().ok_or_else(|| StateError::BadKey {
        predictor: "(root)".into(),
        key: "(root)".into(),
        message: "the state must be a JSON object".into(),
    })?;
    let mut updates: Vec<PredictorParams> = Vec::new();
    let named = module.named_predictors();
    let bare = matches!(named.as_slice(), [(name, _)] if name == "self");
    for (name, params) in &named {
        let entry = if bare {
            root
        } else {
            root.get(name).and_then(Value::as_object).ok_or_else(|| {
                StateError::MissingPredictor {
                    predictor: name.clone(),
                    available: root
                        .keys()
                        .filter(|k| *k != "metadata")
                        .map(|k| format!("`{k}`"))
                        .collect::<Vec<_>>()
                        .join(", "),
                }
            })?
        };
        updates.push(apply_predictor_state(name, params, entry)?);
    }
    drop(named);
    module.load_other_state("", root, false)?;
    let mut updates = updates.into_iter();
    module.visit_predictors_mut("", &mut |_, params| {
        if let Some(new) = updates.next() {
            *params = new;
        }
    });
    // Checked just above, so this cannot fail.
    module.load_other_state("", root, true)
}

/// `params` with `entry` applied, or the first problem with `entry`.
fn apply_predictor_state(
    name: &str,
    params: &PredictorParams,
    entry: &Map<String, Value>,
) -> Result<PredictorParams, StateError> {
    let bad = |key: String, message: &str| StateError::BadKey {
        predictor: name.to_string(),
        key,
        message: message.to_string(),
    };
    let mut out = params.clone();
    if entry.contains_key("extended_signature") {
        return Err(bad(
            "extended_signature".into(),
            "legacy state (DSPy < 2.5) is not supported; re-save the program with a current DSPy",
        ));
    }
    if let Some(demos) = entry.get("demos") {
        let demos = demos
            .as_array()
            .ok_or_else(|| bad("demos".into(), "must be a list of objects"))?;
        out.demos = demos
            .iter()
            .enumerate()
            .map(|(i, d)| {
                d.as_object()
                    .map(|m| Example::from_map(m.clone()))
                    .ok_or_else(|| bad(format!("demos[{i}]"), "must be an object"))
            })
            .collect::<Result<_, _>>()?;
    }
    if let Some(sig) = entry.get("signature") {
        let sig = sig
            .as_object()
            .ok_or_else(|| bad("signature".into(), "must be an object"))?;
        if let Some(instructions) = sig.get("instructions") {
            let text = instructions
                .as_str()
                .ok_or_else(|| bad("signature.instructions".into(), "must be a string"))?;
            out.signature = out.signature.with_instructions(text);
        }
        if let Some(fields) = sig.get("fields") {
            let fields = fields
                .as_array()
                .ok_or_else(|| bad("signature.fields".into(), "must be a list"))?;
            let names: Vec<String> = out
                .signature
                .fields()
                .map(|f| f.name().to_string())
                .collect();
            if fields.len() != names.len() {
                tracing::warn!(
                    predictor = name,
                    saved = fields.len(),
                    current = names.len(),
                    "the saved signature has a different number of fields; applying prefixes and descriptions by position, as DSPy does"
                );
            }
            for (i, (field, name_i)) in fields.iter().zip(&names).enumerate() {
                let field = field
                    .as_object()
                    .ok_or_else(|| bad(format!("signature.fields[{i}]"), "must be an object"))?;
                let text = |key: &str| -> Result<Option<String>, StateError> {
                    match field.get(key) {
                        None | Some(Value::Null) => Ok(None),
                        Some(Value::String(s)) => Ok(Some(s.clone())),
                        Some(_) => Err(bad(
                            format!("signature.fields[{i}].{key}"),
                            "must be a string",
                        )),
                    }
                };
                let prefix = text("prefix")?;
                let desc = text("description")?;
                out.signature = out
                    .signature
                    .with_updated_field(name_i, |mut f| {
                        if let Some(p) = prefix {
                            f = f.with_prefix(p);
                        }
                        if let Some(d) = desc {
                            f = f.with_desc(d);
                        }
                        f
                    })
                    .map_err(|e| bad(format!("signature.fields[{i}]"), &e.to_string()))?;
            }
        }
    }
    Ok(out)
}

/// The text of a state file, as DSPy's `save` writes it: `state` (an object of predictor states)
/// with `metadata.dependency_versions` last, 2-space indented, a trailing newline.
pub(crate) fn saved_text(state: Value) -> Result<String, StateError> {
    let mut state = match state {
        Value::Object(map) => map,
        _ => Map::new(),
    };
    state.insert(
        "metadata".into(),
        json!({
            "dependency_versions": {
                "python": "3.11",
                "dspy": DSPY_STATE_VERSION,
                "cloudpickle": "3.1",
            },
            "dspex": env!("CARGO_PKG_VERSION"),
        }),
    );
    let mut text = serde_json::to_string_pretty(&Value::Object(state))
        .map_err(|e| StateError::Serialize(e.to_string()))?;
    text.push('\n');
    Ok(text)
}

/// Writes `module`'s state to `path` (`.json`), as DSPy's `save`: 2-space indented UTF-8 with
/// `metadata.dependency_versions` last and a trailing newline.
pub fn save<M: Module + ?Sized>(module: &M, path: &Path) -> Result<(), StateError> {
    check_suffix(path)?;
    let text = saved_text(dump_state(module))?;
    std::fs::write(path, text).map_err(|source| StateError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// Loads the state in `path` (`.json`, written by [`save`] or by DSPy) into `module`; see
/// [`load_state`]. A file saved with another DSPy version loads with a warning, as in DSPy.
pub fn load<M: Module + ?Sized>(module: &mut M, path: &Path) -> Result<(), StateError> {
    check_suffix(path)?;
    let text = std::fs::read_to_string(path).map_err(|source| StateError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let state: Value = serde_json::from_str(&text).map_err(|e| StateError::NotState {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    let Some(versions) = state
        .get("metadata")
        .and_then(|m| m.get("dependency_versions"))
        .and_then(Value::as_object)
    else {
        return Err(StateError::MissingMetadata);
    };
    if let Some(saved) = versions.get("dspy").and_then(Value::as_str)
        && saved != DSPY_STATE_VERSION
    {
        tracing::warn!(
            saved,
            expected = DSPY_STATE_VERSION,
            "the state was saved with another DSPy version; loading it anyway"
        );
    }
    load_state(module, &state)
}

fn check_suffix(path: &Path) -> Result<(), StateError> {
    if path.extension().is_some_and(|e| e == "json") {
        Ok(())
    } else {
        Err(StateError::UnsupportedFormat {
            path: path.to_path_buf(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signature::DynSignature;

    #[derive(Debug, Clone, PartialEq)]
    struct Two {
        first: PredictorParams,
        second: PredictorParams,
    }

    impl Module for Two {
        fn visit_predictors<'a>(
            &'a self,
            path: &str,
            visit: &mut dyn FnMut(String, &'a PredictorParams),
        ) {
            visit(super::super::join_path(path, "first"), &self.first);
            visit(
                super::super::join_path(path, "second.predict"),
                &self.second,
            );
        }

        fn visit_predictors_mut<'a>(
            &'a mut self,
            path: &str,
            visit: &mut dyn FnMut(String, &'a mut PredictorParams),
        ) {
            visit(super::super::join_path(path, "first"), &mut self.first);
            visit(
                super::super::join_path(path, "second.predict"),
                &mut self.second,
            );
        }
    }

    fn two() -> Two {
        Two {
            first: PredictorParams::new(DynSignature::parse("question -> answer").unwrap()),
            second: PredictorParams::new(DynSignature::parse("text -> summary").unwrap()),
        }
    }

    #[test]
    fn round_trips_demos_instructions_and_field_metadata() {
        let mut program = two();
        program.first.set_instructions("Be brief.");
        program.first.demos.push(
            Example::new()
                .with("question", "Q")
                .with("answer", "A")
                .with("augmented", true),
        );
        program.second.signature = program
            .second
            .signature
            .with_updated_field("summary", |f| f.with_prefix("Gist:").with_desc("one line"))
            .unwrap();
        let state = dump_state(&program);
        assert_eq!(
            state["first"]
                .as_object()
                .unwrap()
                .keys()
                .collect::<Vec<_>>(),
            ["traces", "train", "demos", "signature", "lm"]
        );
        assert_eq!(state["first"]["demos"][0]["augmented"], true);
        assert_eq!(
            state["second.predict"]["signature"]["fields"][1],
            json!({"prefix": "Gist:", "description": "one line"})
        );
        let mut fresh = two();
        load_state(&mut fresh, &state).unwrap();
        assert_eq!(fresh, program);
    }

    #[test]
    fn a_bad_state_names_the_predictor_and_key_and_changes_nothing() {
        let mut program = two();
        let mut state = dump_state(&program);
        state["first"]["demos"] = json!([{"question": "Q"}]);
        state["second.predict"]["signature"]["fields"][0]["prefix"] = json!(3);
        let err = load_state(&mut program, &state).unwrap_err();
        assert_eq!(
            err.to_string(),
            "predictor `second.predict`, key `signature.fields[0].prefix`: must be a string"
        );
        assert_eq!(program, two(), "nothing was applied");

        let err = load_state(&mut program, &json!({"first": state["first"].clone()})).unwrap_err();
        assert!(
            matches!(&err, StateError::MissingPredictor { predictor, .. } if predictor == "second.predict"),
            "{err}"
        );
        assert!(err.to_string().contains("(it has: `first`)"), "{err}");
    }

    #[test]
    fn a_single_predictor_is_saved_unkeyed() {
        let mut p = PredictorParams::new(DynSignature::parse("q -> a").unwrap());
        p.set_instructions("Answer.");
        let state = dump_state(&p);
        assert_eq!(state["signature"]["instructions"], "Answer.");
        let mut back = PredictorParams::new(DynSignature::parse("q -> a").unwrap());
        load_state(&mut back, &state).unwrap();
        assert_eq!(back, p);
    }

    #[test]
    fn files_need_json_and_metadata() {
        let dir = std::env::temp_dir().join(format!("dspex-state-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let program = two();
        let err = save(&program, &dir.join("p.pkl")).unwrap_err();
        assert!(matches!(err, StateError::UnsupportedFormat { .. }));
        let path = dir.join("p.json");
        save(&program, &path).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.ends_with("}\n"));
        assert!(text.starts_with("{\n  \"first\": {\n    \"traces\": [],"));
        let mut back = two();
        load(&mut back, &path).unwrap();
        assert_eq!(back, program);

        std::fs::write(&path, r#"{"first": {}, "second.predict": {}}"#).unwrap();
        assert!(matches!(
            load(&mut back, &path).unwrap_err(),
            StateError::MissingMetadata
        ));
        std::fs::write(&path, "{not json").unwrap();
        let err = load(&mut back, &path).unwrap_err();
        assert!(err.to_string().contains("not a program state"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
