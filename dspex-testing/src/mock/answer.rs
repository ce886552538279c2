//! DSPy-aware answer generation: pure, deterministic functions from a prompt to a completion.
//!
//! * A ChatAdapter prompt (a system message with `Your output fields are:` and `[[ ## f ## ]]`
//!   markers) gets `[[ ## f1 ## ]]\n<value>\n\n…[[ ## completed ## ]]`.
//! * A JSONAdapter prompt (`Outputs will be a JSON object with the following fields.`), or any DSPy
//!   prompt sent with a JSON `response_format`, gets one JSON object with every output field.
//! * Values follow each field's type (from the field list, refined by the `# note:` in the field
//!   structure: enums, JSON schemas of models, `list`, `dict`, `Optional`…), and are derived from a
//!   SHA-256 of the last user message and the field name, so the same prompt always gets the same
//!   answer.
//! * Anything else gets `mock completion <hash8>` (or, in JSON mode, an object).

use super::util::{mix_all, mix64, sha_u64, sha256};
use serde_json::{Map, Number, Value};

const OUTPUT_HEADER: &str = "Your output fields are:";
const STRUCTURE_HEADER: &str = "All interactions will be structured in the following way";
const JSON_OUTPUTS: &str = "Outputs will be a JSON object with the following fields.";
const NOTE_PREFIX: &str = "# note: the value you produce ";

/// Deepest nesting generated from a JSON schema (recursive models stop here).
const MAX_DEPTH: usize = 8;

/// What kind of text the client asked for (`response_format`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Format<'a> {
    /// No `response_format`, or `{"type": "text"}`.
    Text,
    /// `{"type": "json_object"}`.
    JsonObject,
    /// `{"type": "json_schema", "json_schema": {"schema": …}}`.
    JsonSchema(Option<&'a Value>),
}

impl Format<'_> {
    fn is_json(&self) -> bool {
        !matches!(self, Format::Text)
    }
}

/// The parts of a request the answer depends on.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Prompt<'a> {
    /// The system message, if any.
    pub(crate) system: Option<&'a str>,
    /// The last user message (all text parts concatenated).
    pub(crate) user: &'a str,
    /// Every message as `role:` and content lines, when a rule needs it.
    pub(crate) conversation: Option<&'a str>,
}

/// How a DSPy prompt wants its outputs laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Layout {
    /// ChatAdapter: `[[ ## field ## ]]` sections and a `[[ ## completed ## ]]` marker.
    Chat,
    /// JSONAdapter: one JSON object.
    Json,
}

/// A DSPy Python type as printed in the field list (`list[str]`, `Literal['a', 'b']`, `Citation`).
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum TypeExpr {
    /// A bare name: `str`, `int`, `Any`, `Citation`, `NoneType`.
    Name(String),
    /// A generic: `list[str]`, `dict[str, int]`, `Union[str, NoneType]`.
    Generic(String, Vec<TypeExpr>),
    /// `Literal[...]` with its members.
    Literal(Vec<LitValue>),
}

/// One member of a `Literal[...]`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum LitValue {
    /// A quoted string.
    Str(String),
    /// An integer.
    Int(i64),
    /// `True` / `False`.
    Bool(bool),
    /// `None`.
    None,
    /// Anything else, kept as written.
    Other(String),
}

/// The `# note: the value you produce …` attached to an output field.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Note {
    /// No note (`str` outputs).
    None,
    /// `must be True or False`.
    Bool,
    /// `must be a single int value`.
    Int,
    /// `must be a single float value`.
    Float,
    /// `must be one of: a; b` (an Enum) or `must exactly match (no extra characters) one of: …`.
    OneOf(Vec<String>),
    /// `must adhere to the JSON schema: {…}`.
    Schema(Value),
}

/// One output field of a DSPy prompt.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct OutputField {
    /// The field name.
    pub(crate) name: String,
    /// Its type as printed in the field list.
    pub(crate) ty: TypeExpr,
    /// Its note from the field structure.
    pub(crate) note: Note,
}

/// A parsed DSPy system prompt.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct DspyPrompt {
    /// Chat or JSON.
    pub(crate) layout: Layout,
    /// The output fields, in order.
    pub(crate) fields: Vec<OutputField>,
}

/// The completion for `prompt`. `salt` distinguishes the choices of an `n > 1` request (0 for
/// the first choice, or for every choice at temperature 0).
pub(crate) fn answer(
    prompt: Prompt<'_>,
    format: Format<'_>,
    dspy_aware: bool,
    salt: u64,
) -> String {
    let base = sha256(&[prompt.user.as_bytes(), &salt.to_le_bytes()]);
    if dspy_aware && let Some(dspy) = prompt.system.and_then(parse_dspy_prompt) {
        let layout = if format.is_json() {
            Layout::Json
        } else {
            dspy.layout
        };
        return render_fields(&dspy.fields, layout, &base);
    }
    let hash8 = format!("{:08x}", (sha_u64(&[&base]) >> 32) as u32);
    match format {
        Format::Text => format!("mock completion {hash8}"),
        Format::JsonSchema(Some(schema)) => {
            let seed = sha_u64(&[&base, b"\0schema"]);
            let value = Generator { root: schema }.value(schema, "response", seed, 0);
            if value.is_object() {
                value.to_string()
            } else {
                let mut object = Map::new();
                object.insert("response".to_owned(), value);
                Value::Object(object).to_string()
            }
        }
        Format::JsonObject | Format::JsonSchema(None) => {
            let mut object = Map::new();
            object.insert(
                "response".to_owned(),
                Value::String(format!("mock completion {hash8}")),
            );
            Value::Object(object).to_string()
        }
    }
}

/// Parses a DSPy ChatAdapter / JSONAdapter system message. `None` when it is not one (no
/// `Your output fields are:` before the field structure, or no output fields).
pub(crate) fn parse_dspy_prompt(system: &str) -> Option<DspyPrompt> {
    let structure_at = system.find(STRUCTURE_HEADER)?;
    let head = &system[..structure_at];
    let list_at = head.rfind(OUTPUT_HEADER)? + OUTPUT_HEADER.len();
    let structure = &system[structure_at..];
    let json_notes = structure
        .find(JSON_OUTPUTS)
        .map(|at| json_notes(&structure[at + JSON_OUTPUTS.len()..]));
    let layout = if json_notes.is_some() {
        Layout::Json
    } else {
        Layout::Chat
    };
    let mut fields = Vec::new();
    for line in head[list_at..].lines() {
        let Some((name, ty)) = parse_field_line(line) else {
            continue;
        };
        if fields.iter().any(|f: &OutputField| f.name == name) {
            continue;
        }
        let note_text = match &json_notes {
            Some(map) => map
                .as_ref()
                .and_then(|m| m.get(&name))
                .and_then(Value::as_str)
                .and_then(|v| v.strip_prefix(&format!("{{{name}}}")))
                .map(str::to_owned),
            None => chat_note(structure, &name).map(str::to_owned),
        };
        let note = note_text.as_deref().map_or(Note::None, parse_note);
        fields.push(OutputField { name, ty, note });
    }
    if fields.is_empty() {
        return None;
    }
    Some(DspyPrompt { layout, fields })
}

/// The JSON object of placeholders after `Outputs will be a JSON object with the following fields.`
fn json_notes(text: &str) -> Option<Map<String, Value>> {
    let text = text.trim_start();
    let mut stream = serde_json::Deserializer::from_str(text).into_iter::<Map<String, Value>>();
    stream.next().and_then(Result::ok)
}

/// The text after `{name}` on the `[[ ## name ## ]]\n{name}` line of the Chat field structure.
fn chat_note<'a>(structure: &'a str, name: &str) -> Option<&'a str> {
    let marker = format!("[[ ## {name} ## ]]\n{{{name}}}");
    let at = structure.find(&marker)? + marker.len();
    let rest = &structure[at..];
    Some(rest.split('\n').next().unwrap_or(rest))
}

fn parse_note(text: &str) -> Note {
    let Some(note) = text.trim_start().strip_prefix(NOTE_PREFIX) else {
        return Note::None;
    };
    let note = note.trim_end();
    if note == "must be True or False" {
        Note::Bool
    } else if note == "must be a single int value" {
        Note::Int
    } else if note == "must be a single float value" {
        Note::Float
    } else if let Some(list) = note
        .strip_prefix("must exactly match (no extra characters) one of: ")
        .or_else(|| note.strip_prefix("must be one of: "))
    {
        Note::OneOf(list.split("; ").map(str::to_owned).collect())
    } else if let Some(schema) = note.strip_prefix("must adhere to the JSON schema: ") {
        serde_json::from_str(schema).map_or(Note::None, Note::Schema)
    } else {
        Note::None
    }
}

/// `1. `name` (type): desc` → (name, type).
fn parse_field_line(line: &str) -> Option<(String, TypeExpr)> {
    let digits = line.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 {
        return None;
    }
    let rest = line[digits..].strip_prefix(". `")?;
    let tick = rest.find('`')?;
    let name = &rest[..tick];
    if name.is_empty() {
        return None;
    }
    let rest = rest[tick + 1..].strip_prefix(" (")?;
    let ty = match parse_type(rest) {
        Some((ty, after)) if after.starts_with("):") => ty,
        // Not our grammar (a Python repr we do not know): keep the raw text as a name.
        _ => {
            let end = rest.rfind("):")?;
            TypeExpr::Name(rest[..end].to_owned())
        }
    };
    Some((name.to_owned(), ty))
}

/// Parses one type expression at the start of `s`; returns it and the rest.
pub(crate) fn parse_type(s: &str) -> Option<(TypeExpr, &str)> {
    let s = s.trim_start();
    let len = s
        .char_indices()
        .find(|(_, c)| !(c.is_alphanumeric() || *c == '_' || *c == '.'))
        .map_or(s.len(), |(i, _)| i);
    if len == 0 {
        return None;
    }
    let name = &s[..len];
    let rest = &s[len..];
    let Some(mut rest) = rest.strip_prefix('[') else {
        return Some((TypeExpr::Name(name.to_owned()), rest));
    };
    if name == "Literal" {
        let mut members = Vec::new();
        loop {
            rest = rest.trim_start();
            let (member, after) = parse_literal_member(rest)?;
            members.push(member);
            rest = after.trim_start();
            if let Some(after) = rest.strip_prefix(',') {
                rest = after;
            } else {
                rest = rest.strip_prefix(']')?;
                return Some((TypeExpr::Literal(members), rest));
            }
        }
    }
    let mut args = Vec::new();
    loop {
        let (arg, after) = parse_type(rest)?;
        args.push(arg);
        rest = after.trim_start();
        if let Some(after) = rest.strip_prefix(',') {
            rest = after;
        } else {
            rest = rest.strip_prefix(']')?;
            return Some((TypeExpr::Generic(name.to_owned(), args), rest));
        }
    }
}

fn parse_literal_member(s: &str) -> Option<(LitValue, &str)> {
    let mut chars = s.char_indices();
    let (_, first) = chars.next()?;
    if first == '\'' || first == '"' {
        let mut text = String::new();
        let mut escaped = false;
        for (i, c) in chars {
            if escaped {
                text.push(c);
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == first {
                return Some((LitValue::Str(text), &s[i + c.len_utf8()..]));
            } else {
                text.push(c);
            }
        }
        return None;
    }
    let end = s.find([',', ']']).unwrap_or(s.len());
    let token = s[..end].trim();
    let value = match token {
        "True" => LitValue::Bool(true),
        "False" => LitValue::Bool(false),
        "None" => LitValue::None,
        _ => token
            .parse::<i64>()
            .map_or_else(|_| LitValue::Other(token.to_owned()), LitValue::Int),
    };
    Some((value, &s[end..]))
}

/// Renders every field's value in the requested layout.
pub(crate) fn render_fields(fields: &[OutputField], layout: Layout, base: &[u8; 32]) -> String {
    let mut values: Vec<(&str, Value)> = fields
        .iter()
        .map(|f| (f.name.as_str(), field_value(f, base)))
        .collect();
    // ReAct: when the agent finishes, it passes no arguments to `finish`.
    let finished = values
        .iter()
        .any(|(n, v)| *n == "next_tool_name" && v.as_str() == Some("finish"));
    if finished {
        for (name, value) in &mut values {
            if *name == "next_tool_args" && value.is_object() {
                *value = Value::Object(Map::new());
            }
        }
    }
    match layout {
        Layout::Json => {
            let object: Map<String, Value> =
                values.into_iter().map(|(n, v)| (n.to_owned(), v)).collect();
            Value::Object(object).to_string()
        }
        Layout::Chat => {
            let mut out = String::new();
            for (name, value) in values {
                out.push_str("[[ ## ");
                out.push_str(name);
                out.push_str(" ## ]]\n");
                out.push_str(&python_text(&value));
                out.push_str("\n\n");
            }
            out.push_str("[[ ## completed ## ]]");
            out
        }
    }
}

/// A value as ChatAdapter text: strings verbatim, Python `True`/`False`/`None`, JSON otherwise.
fn python_text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Bool(true) => "True".to_owned(),
        Value::Bool(false) => "False".to_owned(),
        Value::Null => "None".to_owned(),
        Value::Number(n) => n.to_string(),
        Value::Array(_) | Value::Object(_) => value.to_string(),
    }
}

/// The deterministic value of one field.
pub(crate) fn field_value(field: &OutputField, base: &[u8; 32]) -> Value {
    let seed = sha_u64(&[base, b"\0", field.name.as_bytes()]);
    let name = field.name.as_str();
    match (&field.ty, &field.note) {
        (TypeExpr::Literal(members), _) => pick_literal(members, seed),
        (_, Note::Schema(schema)) => Generator { root: schema }.value(schema, name, seed, 0),
        (_, Note::OneOf(values)) => Value::String(pick_str(values, seed).to_owned()),
        (ty, note) => from_type(ty, note, name, seed, 0),
    }
}

fn from_type(ty: &TypeExpr, note: &Note, name: &str, seed: u64, depth: usize) -> Value {
    if depth > MAX_DEPTH {
        return Value::Null;
    }
    let child = |i: u64| mix_all(&[seed, i]);
    match ty {
        TypeExpr::Literal(members) => pick_literal(members, seed),
        TypeExpr::Name(n) => match n.as_str() {
            "int" => small_int(seed),
            "float" => small_float(seed),
            "bool" => Value::Bool(seed & 1 == 1),
            "NoneType" | "None" => Value::Null,
            "list" | "List" | "tuple" | "set" => {
                Value::Array(vec![phrase(name, child(0)), phrase(name, child(1))])
            }
            "dict" | "Dict" => two_keys(seed, |s| phrase(name, s)),
            // str, Reasoning, Any, Code_*, and names we cannot see into: follow the note.
            _ => match note {
                Note::Bool => Value::Bool(seed & 1 == 1),
                Note::Int => small_int(seed),
                Note::Float => small_float(seed),
                Note::OneOf(values) => Value::String(pick_str(values, seed).to_owned()),
                Note::None | Note::Schema(_) => phrase(name, seed),
            },
        },
        TypeExpr::Generic(g, args) => match (g.as_str(), args.as_slice()) {
            ("list" | "List" | "set" | "Set" | "frozenset" | "Sequence", [item]) => Value::Array(
                (0..2)
                    .map(|i| from_type(item, &Note::None, name, child(i), depth + 1))
                    .collect(),
            ),
            ("tuple" | "Tuple", [item, TypeExpr::Name(e)]) if e == "Ellipsis" => Value::Array(
                (0..2)
                    .map(|i| from_type(item, &Note::None, name, child(i), depth + 1))
                    .collect(),
            ),
            ("tuple" | "Tuple", items) => Value::Array(
                items
                    .iter()
                    .enumerate()
                    .map(|(i, t)| from_type(t, &Note::None, name, child(i as u64), depth + 1))
                    .collect(),
            ),
            ("dict" | "Dict" | "Mapping", [_, value]) => {
                two_keys(seed, |s| from_type(value, &Note::None, name, s, depth + 1))
            }
            ("Union" | "Optional", arms) => {
                let arm = arms
                    .iter()
                    .find(|a| !matches!(a, TypeExpr::Name(n) if n == "NoneType" || n == "None"));
                arm.map_or(Value::Null, |a| from_type(a, note, name, seed, depth + 1))
            }
            _ => phrase(name, seed),
        },
    }
}

/// Generates values that satisfy a (pydantic-style) JSON schema.
struct Generator<'a> {
    root: &'a Value,
}

impl Generator<'_> {
    fn value(&self, schema: &Value, name: &str, seed: u64, depth: usize) -> Value {
        if depth > MAX_DEPTH {
            return Value::Null;
        }
        let Some(obj) = schema.as_object() else {
            // `true` (anything) or `false` (nothing).
            return phrase(name, seed);
        };
        if let Some(target) = obj.get("$ref").and_then(Value::as_str) {
            let resolved = target
                .strip_prefix('#')
                .and_then(|pointer| self.root.pointer(pointer));
            return match resolved {
                Some(s) => self.value(s, name, seed, depth + 1),
                None => phrase(name, seed),
            };
        }
        if let Some(value) = obj.get("const") {
            return value.clone();
        }
        if let Some(members) = obj.get("enum").and_then(Value::as_array)
            && !members.is_empty()
        {
            return pick_json(members, seed);
        }
        for key in ["anyOf", "oneOf", "allOf"] {
            if let Some(arms) = obj.get(key).and_then(Value::as_array) {
                let arm = arms
                    .iter()
                    .find(|a| a.get("type").and_then(Value::as_str) != Some("null"))
                    .or_else(|| arms.first());
                return match arm {
                    Some(a) => self.value(a, name, seed, depth + 1),
                    None => Value::Null,
                };
            }
        }
        let ty = match obj.get("type") {
            Some(Value::String(t)) => t.as_str(),
            Some(Value::Array(types)) => types
                .iter()
                .filter_map(Value::as_str)
                .find(|t| *t != "null")
                .unwrap_or("null"),
            _ if obj.contains_key("properties") => "object",
            _ if obj.contains_key("items") || obj.contains_key("prefixItems") => "array",
            _ => "any",
        };
        let child = |i: u64| mix_all(&[seed, i]);
        match ty {
            "string" => phrase(name, seed),
            "integer" => {
                let (lo, hi) = bounds(obj, 0.0, 99.0);
                let (lo, hi) = (lo.ceil() as i64, hi.floor() as i64);
                let span = (hi - lo).max(0) as u64 + 1;
                Value::from(lo + (seed % span) as i64)
            }
            "number" => {
                let (lo, hi) = bounds(obj, 0.01, 0.99);
                let x = lo + (hi - lo) * ((seed % 99) as f64 / 98.0);
                let x = (x * 100.0).round() / 100.0;
                Number::from_f64(x.clamp(lo, hi)).map_or(Value::Null, Value::Number)
            }
            "boolean" => Value::Bool(seed & 1 == 1),
            "null" => Value::Null,
            "array" => {
                if let Some(prefix) = obj.get("prefixItems").and_then(Value::as_array) {
                    return Value::Array(
                        prefix
                            .iter()
                            .enumerate()
                            .map(|(i, s)| self.value(s, name, child(i as u64), depth + 1))
                            .collect(),
                    );
                }
                let min = obj.get("minItems").and_then(Value::as_u64).unwrap_or(0);
                let max = obj
                    .get("maxItems")
                    .and_then(Value::as_u64)
                    .unwrap_or(u64::MAX);
                let count = 2u64.max(min).min(max).min(16);
                let items = obj.get("items").unwrap_or(&Value::Bool(true));
                Value::Array(
                    (0..count)
                        .map(|i| self.value(items, name, child(i), depth + 1))
                        .collect(),
                )
            }
            "object" => {
                let properties = obj.get("properties").and_then(Value::as_object);
                if let Some(properties) = properties.filter(|p| !p.is_empty()) {
                    let mut out = Map::new();
                    for (i, (key, s)) in properties.iter().enumerate() {
                        out.insert(key.clone(), self.value(s, key, child(i as u64), depth + 1));
                    }
                    return Value::Object(out);
                }
                match obj.get("additionalProperties") {
                    Some(Value::Bool(false)) => Value::Object(Map::new()),
                    Some(s @ Value::Object(_)) => {
                        two_keys(seed, |sd| self.value(s, name, sd, depth + 1))
                    }
                    _ => two_keys(seed, |sd| phrase(name, sd)),
                }
            }
            // `{}` is Any.
            _ => phrase(name, seed),
        }
    }
}

/// `minimum`/`maximum` (and the exclusive forms) of a numeric schema, within a default range.
fn bounds(obj: &Map<String, Value>, lo: f64, hi: f64) -> (f64, f64) {
    let get = |k: &str| obj.get(k).and_then(Value::as_f64);
    let min = get("minimum").or(get("exclusiveMinimum"));
    let max = get("maximum").or(get("exclusiveMaximum"));
    match (min, max) {
        (Some(a), Some(b)) if a <= b => (a, b),
        (Some(a), None) => (a.max(lo), a.max(lo) + (hi - lo)),
        (None, Some(b)) => (lo.min(b - (hi - lo)), hi.min(b)),
        _ => (lo, hi),
    }
}

fn two_keys(seed: u64, mut value: impl FnMut(u64) -> Value) -> Value {
    let mut out = Map::new();
    for i in 0..2u64 {
        let s = mix_all(&[seed, 0x006b_6579, i]);
        out.insert(
            format!("key_{:04x}", s & 0xffff),
            value(mix_all(&[seed, i])),
        );
    }
    // Two equal 16-bit keys are possible in theory; keep the object at two entries regardless.
    if out.len() < 2 {
        out.insert("key_other".to_owned(), value(mix64(seed)));
    }
    Value::Object(out)
}

/// A short deterministic phrase for a text field: a sentence for reasoning-like fields.
fn phrase(name: &str, seed: u64) -> Value {
    let hex = format!("{:06x}", seed & 0xff_ffff);
    let label = if name.is_empty() { "value" } else { name };
    Value::String(match name {
        "reasoning" | "rationale" | "next_thought" | "thought" => {
            format!("Mock reasoning {hex}: the inputs were considered step by step.")
        }
        _ => format!("mock {label} {hex}"),
    })
}

fn small_int(seed: u64) -> Value {
    Value::from(seed % 100)
}

fn small_float(seed: u64) -> Value {
    let x = (seed % 99 + 1) as f64 / 100.0;
    Number::from_f64(x).map_or(Value::Null, Value::Number)
}

/// Picks `finish` when it is a member (so ReAct terminates), else a member by hash.
fn pick_literal(members: &[LitValue], seed: u64) -> Value {
    let finish = members
        .iter()
        .any(|m| matches!(m, LitValue::Str(s) if s == "finish"));
    if finish {
        return Value::String("finish".to_owned());
    }
    let Some(member) = members.get((seed % members.len().max(1) as u64) as usize) else {
        return Value::Null;
    };
    match member {
        LitValue::Str(s) | LitValue::Other(s) => Value::String(s.clone()),
        LitValue::Int(i) => Value::from(*i),
        LitValue::Bool(b) => Value::Bool(*b),
        LitValue::None => Value::Null,
    }
}

fn pick_str(values: &[String], seed: u64) -> &str {
    if values.iter().any(|v| v == "finish") {
        return "finish";
    }
    values
        .get((seed % values.len().max(1) as u64) as usize)
        .map_or("", String::as_str)
}

fn pick_json(values: &[Value], seed: u64) -> Value {
    if values.iter().any(|v| v.as_str() == Some("finish")) {
        return Value::String("finish".to_owned());
    }
    values
        .get((seed % values.len().max(1) as u64) as usize)
        .cloned()
        .unwrap_or(Value::Null)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn fixtures_dir() -> PathBuf {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/fixtures/dspy");
        assert!(
            dir.is_dir(),
            "the DSPy fixtures folder is missing: {} (expected /work/shared/fixtures/dspy)",
            dir.display()
        );
        dir
    }

    fn fixture(name: &str) -> Value {
        let path = fixtures_dir().join(name);
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("cannot read fixture {}: {e}", path.display()));
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("bad fixture {name}: {e}"))
    }

    /// (system, last user) of a fixture's message list.
    fn messages(messages: &Value) -> (String, String) {
        let list = messages.as_array().expect("messages");
        let system = list[0]["content"].as_str().expect("system").to_owned();
        let user = list
            .iter()
            .rev()
            .find(|m| m["role"] == "user")
            .and_then(|m| m["content"].as_str())
            .expect("user")
            .to_owned();
        (system, user)
    }

    fn format_fixtures() -> Vec<(String, Value)> {
        let mut out: Vec<(String, Value)> = std::fs::read_dir(fixtures_dir())
            .expect("fixtures folder")
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with("format_") && n.ends_with(".json"))
            .map(|n| {
                let v = fixture(&n);
                (n, v)
            })
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        assert!(out.len() >= 20, "expected the format_* fixtures");
        out
    }

    /// Splits a ChatAdapter completion into (field, text) sections, asserting the shape.
    fn chat_sections(text: &str) -> Vec<(String, String)> {
        let mut out = Vec::new();
        let mut rest = text;
        loop {
            let start = rest.find("[[ ## ").expect("a marker");
            assert_eq!(start, 0, "text outside sections: {text:?}");
            let end = rest.find(" ## ]]").expect("marker end");
            let name = rest[6..end].to_owned();
            rest = &rest[end + 6..];
            if name == "completed" {
                assert_eq!(rest, "", "completed must be last");
                return out;
            }
            let next = rest.find("\n\n[[ ## ").expect("next marker");
            let body = rest[..next]
                .strip_prefix('\n')
                .expect("newline after marker");
            out.push((name, body.to_owned()));
            rest = &rest[next + 2..];
        }
    }

    fn check_value(ty: &str, schema: Option<&Value>, value: &Value, fixture: &str) {
        let fail = || -> ! { panic!("{fixture}: {value:?} is not a valid {ty}") };
        match ty {
            "str" => {
                if !value.is_string() {
                    fail()
                }
            }
            "int" => {
                if !value.is_i64() && !value.is_u64() {
                    fail()
                }
            }
            "float" => {
                let f = value.as_f64().unwrap_or_else(|| fail());
                assert!((0.0..=1.0).contains(&f), "{fixture}: float {f}");
            }
            "bool" => {
                if !value.is_boolean() {
                    fail()
                }
            }
            "list[str]" => {
                let items = value.as_array().unwrap_or_else(|| fail());
                assert_eq!(items.len(), 2);
                assert!(items.iter().all(Value::is_string));
            }
            "dict[str, int]" => {
                let map = value.as_object().unwrap_or_else(|| fail());
                assert_eq!(map.len(), 2);
                assert!(map.values().all(Value::is_u64));
            }
            "Optional[str]" => {
                if !value.is_string() && !value.is_null() {
                    fail()
                }
            }
            t if t.starts_with("Literal[") => {
                let TypeExpr::Literal(members) = parse_type(t).expect("literal").0 else {
                    panic!("not a literal")
                };
                let ok = members
                    .iter()
                    .any(|m| matches!(m, LitValue::Str(s) if value.as_str() == Some(s)));
                assert!(ok, "{fixture}: {value:?} is not one of {members:?}");
            }
            _ => {
                let schema = schema.unwrap_or_else(|| panic!("{fixture}: no schema for {ty}"));
                let map = value.as_object().unwrap_or_else(|| fail());
                for key in schema["required"].as_array().expect("required") {
                    let key = key.as_str().expect("key");
                    let prop = &schema["properties"][key];
                    let v = map
                        .get(key)
                        .unwrap_or_else(|| panic!("{fixture}: no {key}"));
                    match prop["type"].as_str() {
                        Some("string") => assert!(v.is_string()),
                        Some("integer") => assert!(v.is_u64() || v.is_i64()),
                        other => panic!("unexpected schema type {other:?}"),
                    }
                }
            }
        }
    }

    /// Parses text the way ChatAdapter would for the given declared type.
    fn chat_text_value(ty: &str, text: &str) -> Value {
        match ty {
            "str" | "Optional[str]" => Value::String(text.to_owned()),
            t if t.starts_with("Literal[") => Value::String(text.to_owned()),
            "int" => Value::from(text.parse::<i64>().expect("an int")),
            "float" => Value::from(text.parse::<f64>().expect("a float")),
            "bool" => match text {
                "True" => Value::Bool(true),
                "False" => Value::Bool(false),
                other => panic!("not a Python bool: {other}"),
            },
            _ => serde_json::from_str(text).expect("JSON text"),
        }
    }

    fn expected_outputs(fx: &Value) -> Vec<(String, String, Option<Value>)> {
        let mut outputs: Vec<(String, String, Option<Value>)> = fx["signature"]["outputs"]
            .as_array()
            .expect("outputs")
            .iter()
            .map(|o| {
                (
                    o["name"].as_str().expect("name").to_owned(),
                    o["type"].as_str().expect("type").to_owned(),
                    o.get("schema").cloned(),
                )
            })
            .collect();
        // ChainOfThought prepends `reasoning` to the outputs it was given.
        let system = fx["expected_messages"][0]["content"].as_str().unwrap_or("");
        if system.contains("1. `reasoning` (str)") && outputs[0].0 != "reasoning" {
            outputs.insert(0, ("reasoning".to_owned(), "str".to_owned(), None));
        }
        outputs
    }

    #[test]
    fn every_format_fixture_gets_a_parseable_answer() {
        for (name, fx) in format_fixtures() {
            let (system, user) = messages(&fx["expected_messages"]);
            let prompt = Prompt {
                system: Some(&system),
                user: &user,
                conversation: None,
            };
            let outputs = expected_outputs(&fx);
            let text = answer(prompt, Format::Text, true, 0);
            assert_eq!(
                text,
                answer(prompt, Format::Text, true, 0),
                "{name}: deterministic"
            );
            let values: Vec<(String, Value)> = if fx["adapter"] == "json" {
                let object: Map<String, Value> =
                    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{name}: {e}: {text}"));
                object.into_iter().collect()
            } else {
                let sections = chat_sections(&text);
                sections
                    .into_iter()
                    .map(|(field, body)| {
                        let ty = outputs
                            .iter()
                            .find(|o| o.0 == field)
                            .map_or("str", |o| o.1.as_str());
                        let v = chat_text_value(ty, &body);
                        (field, v)
                    })
                    .collect()
            };
            let names: Vec<&str> = values.iter().map(|(n, _)| n.as_str()).collect();
            let expected: Vec<&str> = outputs.iter().map(|o| o.0.as_str()).collect();
            assert_eq!(
                names, expected,
                "{name}: every output field exactly once, in order"
            );
            for ((_, ty, schema), (_, value)) in outputs.iter().zip(&values) {
                check_value(ty, schema.as_ref(), value, &name);
            }
        }
    }

    #[test]
    fn json_response_format_turns_a_chat_prompt_into_json() {
        let fx = fixture("format_chat_15_extract.json");
        let (system, user) = messages(&fx["expected_messages"]);
        let prompt = Prompt {
            system: Some(&system),
            user: &user,
            conversation: None,
        };
        let text = answer(prompt, Format::JsonObject, true, 0);
        let object: Map<String, Value> = serde_json::from_str(&text).expect("JSON");
        let keys: Vec<&String> = object.keys().collect();
        assert_eq!(keys, ["entities", "counts", "is_fiction"]);
        assert!(object["is_fiction"].is_boolean());
    }

    #[test]
    fn parses_fields_types_and_notes() {
        let fx = fixture("format_chat_18_cite.json");
        let (system, _) = messages(&fx["expected_messages"]);
        let parsed = parse_dspy_prompt(&system).expect("a DSPy prompt");
        assert_eq!(parsed.layout, Layout::Chat);
        assert_eq!(parsed.fields.len(), 1);
        assert_eq!(parsed.fields[0].ty, TypeExpr::Name("Citation".into()));
        assert!(matches!(parsed.fields[0].note, Note::Schema(_)));

        let fx = fixture("format_json_15_extract.json");
        let (system, _) = messages(&fx["expected_messages"]);
        let parsed = parse_dspy_prompt(&system).expect("a DSPy prompt");
        assert_eq!(parsed.layout, Layout::Json);
        let notes: Vec<&Note> = parsed.fields.iter().map(|f| &f.note).collect();
        assert!(matches!(notes[0], Note::Schema(_)));
        assert!(matches!(notes[1], Note::Schema(_)));
        assert_eq!(notes[2], &Note::Bool);
    }

    #[test]
    fn parses_python_type_names() {
        let cases = [
            ("str", TypeExpr::Name("str".into())),
            (
                "dict[str, list[int]]",
                TypeExpr::Generic(
                    "dict".into(),
                    vec![
                        TypeExpr::Name("str".into()),
                        TypeExpr::Generic("list".into(), vec![TypeExpr::Name("int".into())]),
                    ],
                ),
            ),
            (
                r#"Literal['a', "b's", 'c\'d', 3, True, None]"#,
                TypeExpr::Literal(vec![
                    LitValue::Str("a".into()),
                    LitValue::Str("b's".into()),
                    LitValue::Str("c'd".into()),
                    LitValue::Int(3),
                    LitValue::Bool(true),
                    LitValue::None,
                ]),
            ),
        ];
        for (text, expected) in cases {
            let (ty, rest) = parse_type(text).expect(text);
            assert_eq!(ty, expected);
            assert_eq!(rest, "");
        }
        let (name, ty) = parse_field_line("2. `x` (Literal['a)', 'b']): desc").expect("line");
        assert_eq!(name, "x");
        assert!(matches!(ty, TypeExpr::Literal(m) if m.len() == 2));
    }

    #[test]
    fn react_steps_finish_with_no_arguments() {
        let fx = fixture("trace_react_two_tools.json");
        let calls = fx["calls"].as_array().expect("calls");
        let (system, user) = messages(&calls[0]["messages"]);
        let text = answer(
            Prompt {
                system: Some(&system),
                user: &user,
                conversation: None,
            },
            Format::Text,
            true,
            0,
        );
        let sections = chat_sections(&text);
        let names: Vec<&str> = sections.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["next_thought", "next_tool_name", "next_tool_args"]);
        assert_eq!(sections[1].1, "finish");
        assert_eq!(sections[2].1, "{}");
        // The extract step (ChainOfThought) gets reasoning and answer.
        let (system, user) = messages(&calls[calls.len() - 1]["messages"]);
        let text = answer(
            Prompt {
                system: Some(&system),
                user: &user,
                conversation: None,
            },
            Format::Text,
            true,
            0,
        );
        let names: Vec<String> = chat_sections(&text).into_iter().map(|(n, _)| n).collect();
        assert_eq!(names, ["reasoning", "answer"]);
    }

    #[test]
    fn plain_prompts_and_salts() {
        let prompt = Prompt {
            system: None,
            user: "request 1",
            conversation: None,
        };
        let a = answer(prompt, Format::Text, true, 0);
        assert!(a.starts_with("mock completion "), "{a}");
        assert_eq!(a.len(), "mock completion ".len() + 8);
        assert_eq!(a, answer(prompt, Format::Text, true, 0));
        assert_ne!(a, answer(prompt, Format::Text, true, 1));
        assert_ne!(
            a,
            answer(
                Prompt {
                    system: None,
                    user: "request 2",
                    conversation: None,
                },
                Format::Text,
                true,
                0
            )
        );
        let json: Value = serde_json::from_str(&answer(prompt, Format::JsonObject, true, 0))
            .expect("JSON object");
        assert!(json["response"].is_string());
    }

    #[test]
    fn dspy_awareness_can_be_turned_off() {
        let fx = fixture("format_chat_00_qa.json");
        let (system, user) = messages(&fx["expected_messages"]);
        let prompt = Prompt {
            system: Some(&system),
            user: &user,
            conversation: None,
        };
        assert!(answer(prompt, Format::Text, false, 0).starts_with("mock completion "));
    }

    #[test]
    fn schemas_with_refs_enums_and_bounds() {
        let schema: Value = serde_json::json!({
            "type": "object",
            "$defs": {"Inner": {"type": "object", "properties": {"z": {"type": "integer", "minimum": 5, "maximum": 7}}, "required": ["z"]}},
            "properties": {
                "inner": {"$ref": "#/$defs/Inner"},
                "opt": {"anyOf": [{"type": "null"}, {"type": "number"}]},
                "color": {"enum": ["red", "green"]},
                "tags": {"type": "array", "items": {"type": "string"}, "maxItems": 1},
                "pair": {"type": "array", "prefixItems": [{"type": "integer"}, {"type": "string"}]},
                "flag": {"type": ["boolean", "null"]},
                "free": {}
            },
            "required": ["inner", "opt", "color", "tags", "pair", "flag", "free"]
        });
        let text = answer(
            Prompt {
                system: None,
                user: "x",
                conversation: None,
            },
            Format::JsonSchema(Some(&schema)),
            true,
            0,
        );
        let v: Value = serde_json::from_str(&text).expect("JSON");
        let z = v["inner"]["z"].as_i64().expect("z");
        assert!((5..=7).contains(&z));
        assert!(v["opt"].is_f64());
        assert!(["red", "green"].contains(&v["color"].as_str().expect("color")));
        assert_eq!(v["tags"].as_array().expect("tags").len(), 1);
        assert!(v["pair"][0].is_i64() || v["pair"][0].is_u64());
        assert!(v["pair"][1].is_string());
        assert!(v["flag"].is_boolean());
        assert!(v["free"].is_string());
    }

    #[test]
    fn recursive_schemas_terminate() {
        let schema: Value = serde_json::json!({
            "$defs": {"Node": {"type": "object", "properties": {"next": {"$ref": "#/$defs/Node"}}}},
            "$ref": "#/$defs/Node"
        });
        let text = answer(
            Prompt {
                system: None,
                user: "x",
                conversation: None,
            },
            Format::JsonSchema(Some(&schema)),
            true,
            0,
        );
        assert!(serde_json::from_str::<Value>(&text).is_ok());
    }
}
