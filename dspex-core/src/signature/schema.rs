//! JSON schemas in pydantic's layout, which is what DSPy puts in its prompts.

use super::spec::LiteralValue;
use serde_json::{Map, Value, json};

/// The JSON schema of a Rust type deriving `schemars::JsonSchema`, reshaped to match what pydantic
/// emits for the equivalent model: no `$schema`, a `title` on every property (pydantic's
/// `field_name.title().replace('_', ' ')`), no `format`/`minimum` hints that schemars adds for
/// Rust integer and float widths, and `["T", "null"]` type arrays written as `anyOf`.
pub fn model_schema<T: schemars::JsonSchema>() -> Value {
    let schema = schemars::SchemaGenerator::default().into_root_schema_for::<T>();
    let mut value = schema.to_value();
    if let Value::Object(map) = &mut value {
        map.remove("$schema");
    }
    pydantic_style(&mut value);
    value
}

/// Python's `str.title()` of a field name with `_` turned into spaces: `is_fiction` →
/// `Is Fiction`, as pydantic titles properties.
pub fn pydantic_title(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut prev_cased = false;
    for c in name.chars() {
        if c.is_alphabetic() {
            if prev_cased {
                out.extend(c.to_lowercase());
            } else {
                out.extend(c.to_uppercase());
            }
            prev_cased = true;
        } else {
            out.push(if c == '_' { ' ' } else { c });
            prev_cased = false;
        }
    }
    out
}

const NUMERIC_FORMATS: &[&str] = &[
    "int", "int8", "int16", "int32", "int64", "int128", "uint", "uint8", "uint16", "uint32",
    "uint64", "uint128", "float", "double",
];

fn pydantic_style(value: &mut Value) {
    match value {
        Value::Object(map) => {
            if map
                .get("format")
                .and_then(Value::as_str)
                .is_some_and(|f| NUMERIC_FORMATS.contains(&f))
            {
                let unsigned = map
                    .get("format")
                    .and_then(Value::as_str)
                    .is_some_and(|f| f.starts_with("uint"));
                map.remove("format");
                if unsigned && map.get("minimum") == Some(&json!(0)) {
                    map.remove("minimum");
                }
            }
            nullable_type_array_to_any_of(map);
            if let Some(Value::Object(props)) = map.get_mut("properties") {
                for (name, prop) in props.iter_mut() {
                    if let Value::Object(p) = prop
                        && !p.contains_key("title")
                    {
                        p.insert("title".to_string(), Value::String(pydantic_title(name)));
                    }
                }
            }
            for v in map.values_mut() {
                pydantic_style(v);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(pydantic_style),
        _ => {}
    }
}

/// `{"type": ["string", "null"]}` → `{"anyOf": [{"type": "string"}, {"type": "null"}]}`.
fn nullable_type_array_to_any_of(map: &mut Map<String, Value>) {
    let Some(Value::Array(types)) = map.get("type") else {
        return;
    };
    let types = types.clone();
    map.remove("type");
    let variants: Vec<Value> = types.into_iter().map(|t| json!({ "type": t })).collect();
    map.insert("anyOf".to_string(), Value::Array(variants));
}

/// Pydantic's schema for `Literal[...]`: `const` for one value, `enum` for several, with `type`
/// when every value has the same JSON type.
pub(crate) fn literal_schema(values: &[LiteralValue]) -> Value {
    let json_values: Vec<Value> = values.iter().map(literal_json).collect();
    let json_type = |v: &Value| match v {
        Value::String(_) => "string",
        Value::Number(_) => "integer",
        Value::Bool(_) => "boolean",
        _ => "null",
    };
    let mut out = Map::new();
    match json_values.as_slice() {
        [one] => {
            out.insert("const".to_string(), one.clone());
        }
        many => {
            out.insert("enum".to_string(), Value::Array(many.to_vec()));
        }
    }
    if let Some(first) = json_values.first()
        && json_values.iter().all(|v| json_type(v) == json_type(first))
    {
        out.insert(
            "type".to_string(),
            Value::String(json_type(first).to_string()),
        );
    }
    Value::Object(out)
}

/// A literal member as a JSON value.
pub(crate) fn literal_json(v: &LiteralValue) -> Value {
    match v {
        LiteralValue::Str(s) => Value::String(s.clone()),
        LiteralValue::Int(i) => json!(i),
        LiteralValue::Bool(b) => Value::Bool(*b),
        LiteralValue::None => Value::Null,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[allow(dead_code)]
    #[derive(schemars::JsonSchema)]
    struct Citation {
        title: String,
        year: i64,
    }

    #[test]
    fn matches_pydantic_for_a_simple_model() {
        // The schema DSPy 3.4.1 recorded for `class Citation(BaseModel): title: str; year: int`
        // (fixtures/dspy/format_chat_18_cite.json).
        let want = json!({
            "properties": {
                "title": {"title": "Title", "type": "string"},
                "year": {"title": "Year", "type": "integer"}
            },
            "required": ["title", "year"],
            "title": "Citation",
            "type": "object"
        });
        assert_eq!(model_schema::<Citation>(), want);
    }

    #[test]
    fn titles_follow_python() {
        assert_eq!(pydantic_title("is_fiction"), "Is Fiction");
        assert_eq!(pydantic_title("year2k"), "Year2K");
        assert_eq!(pydantic_title("HTMLParser"), "Htmlparser");
    }

    #[test]
    fn literal_schemas() {
        let one = literal_schema(&[LiteralValue::Str("a".into())]);
        assert_eq!(one, json!({"const": "a", "type": "string"}));
        let mixed = literal_schema(&[LiteralValue::Int(1), LiteralValue::Str("a".into())]);
        assert_eq!(mixed, json!({"enum": [1, "a"]}));
    }
}
