//! [`DynSignature`]: a signature as a value.

use super::error::SignatureError;
use super::spec::{FieldRole, FieldSpec, TypeSpec};
use dspex_grammar::{TypeExpr, TypeKind};
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;
use std::fmt;

/// A signature as a value: instructions plus ordered input and output fields.
///
/// Typed signatures (`#[signature]`) and run-time ones (`DynSignature::parse`) reach adapters and
/// optimizers as this one type, so there is one code path. Every edit returns a new value, as
/// DSPy's signature methods return a new class.
///
/// ```
/// use dspex_core::{DynSignature, FieldSpec, TypeSpec};
///
/// let sig = DynSignature::parse("question: str, context: list[str] -> answer")?;
/// assert_eq!(sig.instructions(), "Given the fields `question`, `context`, produce the fields `answer`.");
/// assert_eq!(sig.inputs()[1].dspy_type(), "list[str]");
/// assert_eq!(sig.inputs()[1].rust_type(), "Vec<String>");
///
/// // Both spellings give the same metadata.
/// assert_eq!(sig, DynSignature::parse("question: String, context: Vec<String> -> answer: String")?);
///
/// // What ChainOfThought does: `reasoning` becomes the first output.
/// let cot = sig.prepend(FieldSpec::output("reasoning", TypeSpec::Str))?;
/// assert_eq!(cot.output_names().collect::<Vec<_>>(), ["reasoning", "answer"]);
/// # Ok::<(), dspex_core::SignatureError>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct DynSignature {
    instructions: String,
    inputs: Vec<FieldSpec>,
    outputs: Vec<FieldSpec>,
}

impl DynSignature {
    /// Parses `inputs -> outputs`, with types in Rust or DSPy spelling. Instructions are DSPy's
    /// default for these fields.
    pub fn parse(src: &str) -> Result<Self, SignatureError> {
        Self::parse_with(src, |_| None)
    }

    /// Like [`DynSignature::parse`], resolving user type names (`Citation`) from `types`.
    pub fn parse_with_types(src: &str, types: &[(&str, TypeSpec)]) -> Result<Self, SignatureError> {
        Self::parse_with(src, |name| {
            types
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, t)| t.clone())
        })
    }

    /// Like [`DynSignature::parse`], asking `resolve` for the type of each user type name
    /// (its path as written, `a::B`).
    pub fn parse_with(
        src: &str,
        resolve: impl Fn(&str) -> Option<TypeSpec>,
    ) -> Result<Self, SignatureError> {
        let parsed =
            dspex_grammar::parse_signature(src).map_err(|errors| SignatureError::Parse {
                input: src.to_string(),
                errors,
            })?;
        let field = |f: &dspex_grammar::ParsedField| -> Result<FieldSpec, SignatureError> {
            let role = match f.side {
                dspex_grammar::Side::Input => FieldRole::Input,
                dspex_grammar::Side::Output => FieldRole::Output,
            };
            Ok(match &f.ty {
                None => FieldSpec::new(&f.name, role, TypeSpec::Str),
                Some(ty) => FieldSpec::new(&f.name, role, type_spec(ty, &f.name, &resolve)?)
                    .with_rust_type(ty.rust_name()),
            })
        };
        let inputs = parsed
            .inputs
            .iter()
            .map(field)
            .collect::<Result<Vec<_>, _>>()?;
        let outputs = parsed
            .outputs
            .iter()
            .map(field)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self::from_parts(None, inputs, outputs))
    }

    /// Builds a signature from fields (each knows its role), checking names. `instructions`
    /// `None` means DSPy's default instructions.
    pub fn from_fields(
        instructions: Option<&str>,
        fields: impl IntoIterator<Item = FieldSpec>,
    ) -> Result<Self, SignatureError> {
        let mut sig = Self::from_parts(Some(""), Vec::new(), Vec::new());
        for f in fields {
            sig = sig.insert(-1, f)?;
        }
        sig.instructions = match instructions {
            Some(text) => dspex_grammar::cleandoc(text),
            None => sig.default_instructions(),
        };
        Ok(sig)
    }

    /// Builds a signature from fields that are already known to be valid (as the `#[signature]`
    /// macro's are). Prefer [`DynSignature::from_fields`], which checks them.
    #[doc(hidden)]
    pub fn from_parts(
        instructions: Option<&str>,
        inputs: Vec<FieldSpec>,
        outputs: Vec<FieldSpec>,
    ) -> Self {
        let mut sig = DynSignature {
            instructions: String::new(),
            inputs,
            outputs,
        };
        sig.instructions = match instructions {
            Some(text) => dspex_grammar::cleandoc(text),
            None => sig.default_instructions(),
        };
        sig
    }

    /// The instructions (cleaned as Python's `inspect.cleandoc`, as DSPy reads them).
    pub fn instructions(&self) -> &str {
        &self.instructions
    }

    /// DSPy's default instructions for these fields:
    /// ``Given the fields `a`, produce the fields `b`.``
    pub fn default_instructions(&self) -> String {
        dspex_grammar::default_instructions(self.input_names(), self.output_names())
    }

    /// The same fields with other instructions.
    #[must_use]
    pub fn with_instructions(&self, instructions: impl AsRef<str>) -> Self {
        DynSignature {
            instructions: dspex_grammar::cleandoc(instructions.as_ref()),
            ..self.clone()
        }
    }

    /// The same fields with `text` appended to the instructions after a blank line.
    #[must_use]
    pub fn append_instructions(&self, text: impl AsRef<str>) -> Self {
        self.with_instructions(format!("{}\n\n{}", self.instructions, text.as_ref()))
    }

    /// The input fields, in order.
    pub fn inputs(&self) -> &[FieldSpec] {
        &self.inputs
    }

    /// The output fields, in order.
    pub fn outputs(&self) -> &[FieldSpec] {
        &self.outputs
    }

    /// Inputs then outputs.
    pub fn fields(&self) -> impl Iterator<Item = &FieldSpec> {
        self.inputs.iter().chain(self.outputs.iter())
    }

    /// The field called `name`, on either side.
    pub fn field(&self, name: &str) -> Option<&FieldSpec> {
        self.fields().find(|f| f.name() == name)
    }

    /// Input field names, in order.
    pub fn input_names(&self) -> impl Iterator<Item = &str> {
        self.inputs.iter().map(FieldSpec::name)
    }

    /// Output field names, in order.
    pub fn output_names(&self) -> impl Iterator<Item = &str> {
        self.outputs.iter().map(FieldSpec::name)
    }

    /// Inserts `field` among the fields of its role at `index`; a negative index counts from the
    /// end as DSPy's `Signature.insert` does (`-1` appends). Instructions are kept.
    pub fn insert(&self, index: isize, field: FieldSpec) -> Result<Self, SignatureError> {
        dspex_grammar::check_field_name(field.name())
            .map_err(|(_, reason)| SignatureError::InvalidFieldName { reason })?;
        if self.field(field.name()).is_some() {
            return Err(SignatureError::DuplicateField {
                name: field.name().to_string(),
            });
        }
        let mut out = self.clone();
        let section = match field.role() {
            FieldRole::Input => &mut out.inputs,
            FieldRole::Output => &mut out.outputs,
        };
        let len = section.len();
        let shifted = if index < 0 {
            index + len as isize + 1
        } else {
            index
        };
        if shifted < 0 || shifted as usize > len {
            return Err(SignatureError::InvalidIndex {
                name: field.name().to_string(),
                index,
                role: field.role().as_str(),
                len,
            });
        }
        section.insert(shifted as usize, field);
        // DSPy rebuilds the signature with its instructions, and empty instructions mean "the
        // default" there: they are generated anew for the new fields.
        if out.instructions.is_empty() {
            out.instructions = out.default_instructions();
        }
        Ok(out)
    }

    /// Inserts `field` first among the fields of its role.
    pub fn prepend(&self, field: FieldSpec) -> Result<Self, SignatureError> {
        self.insert(0, field)
    }

    /// Inserts `field` last among the fields of its role.
    pub fn append(&self, field: FieldSpec) -> Result<Self, SignatureError> {
        self.insert(-1, field)
    }

    /// The signature without the field `name` (unchanged if there is none).
    #[must_use]
    pub fn delete(&self, name: &str) -> Self {
        let mut out = self.clone();
        out.inputs.retain(|f| f.name() != name);
        out.outputs.retain(|f| f.name() != name);
        if out.instructions.is_empty() {
            out.instructions = out.default_instructions();
        }
        out
    }

    /// The signature with the field `name` replaced by `update(field)` (role and name must stay).
    pub fn with_updated_field(
        &self,
        name: &str,
        update: impl FnOnce(FieldSpec) -> FieldSpec,
    ) -> Result<Self, SignatureError> {
        let mut out = self.clone();
        let slot = out
            .inputs
            .iter_mut()
            .chain(out.outputs.iter_mut())
            .find(|f| f.name() == name)
            .ok_or_else(|| SignatureError::Description(format!("no field named `{name}`")))?;
        let updated = update(slot.clone());
        if updated.name() != name || updated.role() != slot.role() {
            return Err(SignatureError::Description(format!(
                "updating `{name}` may not change its name or role"
            )));
        }
        *slot = updated;
        Ok(out)
    }

    /// DSPy's `signature` string: the names only, `question, context -> answer`.
    pub fn signature_string(&self) -> String {
        format!(
            "{} -> {}",
            self.input_names().collect::<Vec<_>>().join(", "),
            self.output_names().collect::<Vec<_>>().join(", ")
        )
    }
}

/// `question: str, context: list[str] -> answer: str`: a string [`DynSignature::parse`] reads
/// back to the same fields (user model types need [`DynSignature::parse_with_types`]).
impl fmt::Display for DynSignature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let side = |fields: &[FieldSpec]| {
            fields
                .iter()
                .map(|x| format!("{}: {}", x.name(), x.dspy_type()))
                .collect::<Vec<_>>()
                .join(", ")
        };
        write!(f, "{} -> {}", side(&self.inputs), side(&self.outputs))
    }
}

fn type_spec(
    ty: &TypeExpr,
    field: &str,
    resolve: &dyn Fn(&str) -> Option<TypeSpec>,
) -> Result<TypeSpec, SignatureError> {
    let inner = |t: &TypeExpr| type_spec(t, field, resolve).map(Box::new);
    Ok(match &ty.kind {
        TypeKind::Str => TypeSpec::Str,
        TypeKind::Bool => TypeSpec::Bool,
        TypeKind::Int(_) => TypeSpec::Int,
        TypeKind::Float(_) => TypeSpec::Float,
        TypeKind::Any => TypeSpec::Any,
        TypeKind::List(t) => TypeSpec::List(inner(t)?),
        TypeKind::Map(_, v) => TypeSpec::Dict(inner(v)?),
        TypeKind::Optional(t) => TypeSpec::Optional(inner(t)?),
        TypeKind::Literal(values) => TypeSpec::Literal(values.clone()),
        TypeKind::Named(path) => {
            let name = path.join("::");
            // A user type of the same name wins over DSPy's own `Image`, `History`, ….
            resolve(&name)
                .or_else(|| super::spec::CustomType::from_path(&name).map(TypeSpec::Custom))
                .ok_or_else(|| SignatureError::UnknownType {
                    field: field.to_string(),
                    name,
                })?
        }
    })
}

// ---- JSON form -------------------------------------------------------------------------------
//
// The layout of the DSPy fixtures: {"instructions", "inputs": [...], "outputs": [...]}, each field
// {"name", "type", "desc"?, "schema"?} plus dspex's "prefix" and "rust_type". Reading accepts the
// fixtures as they are (type in DSPy or Rust spelling; a model type needs its "schema").

struct FieldJson<'a>(&'a FieldSpec);

impl Serialize for FieldJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let f = self.0;
        let mut map = s.serialize_map(None)?;
        map.serialize_entry("name", f.name())?;
        map.serialize_entry("type", &f.dspy_type())?;
        if let Some(desc) = f.description() {
            map.serialize_entry("desc", desc)?;
        }
        map.serialize_entry("prefix", f.prefix())?;
        map.serialize_entry("rust_type", f.rust_type())?;
        if let Some(schema) = f.json_schema() {
            map.serialize_entry("schema", schema)?;
        }
        map.end()
    }
}

impl Serialize for DynSignature {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(3))?;
        map.serialize_entry("instructions", &self.instructions)?;
        map.serialize_entry(
            "inputs",
            &self.inputs.iter().map(FieldJson).collect::<Vec<_>>(),
        )?;
        map.serialize_entry(
            "outputs",
            &self.outputs.iter().map(FieldJson).collect::<Vec<_>>(),
        )?;
        map.end()
    }
}

#[derive(Deserialize)]
struct SignatureDoc {
    instructions: Option<String>,
    #[serde(default)]
    inputs: Vec<FieldDoc>,
    #[serde(default)]
    outputs: Vec<FieldDoc>,
}

#[derive(Deserialize)]
struct FieldDoc {
    name: String,
    #[serde(rename = "type", default)]
    ty: Option<String>,
    #[serde(default)]
    desc: Option<String>,
    #[serde(default)]
    prefix: Option<String>,
    #[serde(default)]
    rust_type: Option<String>,
    #[serde(default)]
    schema: Option<Value>,
}

impl FieldDoc {
    fn into_spec(self, role: FieldRole) -> Result<FieldSpec, SignatureError> {
        let (ty, rust) = match &self.ty {
            None => (TypeSpec::Str, None),
            Some(text) => {
                let expr = dspex_grammar::parse_type(text).map_err(|errors| {
                    SignatureError::Description(format!(
                        "field `{}` has type {text:?}: {}",
                        self.name,
                        errors
                            .iter()
                            .map(ToString::to_string)
                            .collect::<Vec<_>>()
                            .join("; ")
                    ))
                })?;
                let schema = self.schema.clone();
                let spec = type_spec(&expr, &self.name, &|name| {
                    schema.clone().map(|schema| TypeSpec::Model {
                        name: name.rsplit("::").next().unwrap_or(name).to_string(),
                        schema,
                    })
                })?;
                (spec, Some(expr.rust_name()))
            }
        };
        let mut spec = FieldSpec::new(self.name, role, ty);
        if let Some(rust) = self.rust_type.or(rust) {
            spec = spec.with_rust_type(rust);
        }
        if let Some(desc) = self.desc {
            spec = spec.with_desc(desc);
        }
        if let Some(prefix) = self.prefix {
            spec = spec.with_prefix(prefix);
        }
        Ok(spec)
    }
}

impl<'de> Deserialize<'de> for DynSignature {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let doc = SignatureDoc::deserialize(d)?;
        let fields = doc
            .inputs
            .into_iter()
            .map(|f| f.into_spec(FieldRole::Input))
            .chain(
                doc.outputs
                    .into_iter()
                    .map(|f| f.into_spec(FieldRole::Output)),
            )
            .collect::<Result<Vec<_>, _>>()
            .map_err(serde::de::Error::custom)?;
        DynSignature::from_fields(doc.instructions.as_deref(), fields)
            .map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dspex_grammar::ErrorKind;
    use serde_json::json;

    #[test]
    fn parse_gives_dspy_metadata() {
        let sig = DynSignature::parse("question: str, context: list[str] -> answer").unwrap();
        assert_eq!(sig.inputs().len(), 2);
        let ctx = &sig.inputs()[1];
        assert_eq!(ctx.name(), "context");
        assert_eq!(ctx.prefix(), "Context:");
        assert_eq!(ctx.desc(), "${context}");
        assert_eq!(ctx.ty(), &TypeSpec::List(Box::new(TypeSpec::Str)));
        assert_eq!(sig.outputs()[0].dspy_type(), "str");
        assert_eq!(sig.signature_string(), "question, context -> answer");
        assert_eq!(
            sig.to_string(),
            "question: str, context: list[str] -> answer: str"
        );
        assert_eq!(DynSignature::parse(&sig.to_string()).unwrap(), sig);
    }

    #[test]
    fn rust_and_dspy_spellings_are_equal() {
        let a = DynSignature::parse(
            "q: String, n: Option<i32>, m: HashMap<String, f64> -> out: Vec<bool>",
        )
        .unwrap();
        let b =
            DynSignature::parse("q: str, n: Optional[int], m: dict[str, float] -> out: list[bool]")
                .unwrap();
        assert_eq!(a, b);
        assert_eq!(a.inputs()[1].rust_type(), "Option<i32>");
        assert_eq!(b.inputs()[1].rust_type(), "Option<i64>");
    }

    #[test]
    fn parse_errors_are_typed_with_positions() {
        let err = DynSignature::parse("question -> answer -> extra").unwrap_err();
        let parse = err.parse_errors();
        assert_eq!(parse[0].kind, ErrorKind::MultipleArrows);
        assert_eq!(parse[0].column, 20);
        assert_eq!(
            err.to_string(),
            "invalid signature \"question -> answer -> extra\": a signature has exactly one `->`; found another one here (column 20)"
        );
        let err = DynSignature::parse("claim -> citation: Citation").unwrap_err();
        assert!(matches!(err, SignatureError::UnknownType { ref name, .. } if name == "Citation"));
    }

    #[test]
    fn dspy_special_types_resolve_and_round_trip() {
        let sig = DynSignature::parse(
            "image: Image, photos: list[dspy.Image], history: dspy.History, question -> answer",
        )
        .unwrap();
        assert_eq!(
            sig.inputs()[0].ty(),
            &TypeSpec::Custom(super::super::spec::CustomType::Image)
        );
        assert_eq!(sig.inputs()[1].dspy_type(), "list[Image]");
        let json = serde_json::to_value(&sig).unwrap();
        assert!(json["inputs"][0].get("schema").is_none());
        let back: DynSignature = serde_json::from_value(json).unwrap();
        assert_eq!(back, sig);
        // A user type of the same name wins.
        let model = TypeSpec::Model {
            name: "Image".into(),
            schema: serde_json::json!({"type": "object", "title": "Image"}),
        };
        let sig = DynSignature::parse_with_types("image: Image -> a", &[("Image", model.clone())])
            .unwrap();
        assert_eq!(sig.inputs()[0].ty(), &model);
    }

    #[test]
    fn user_types_resolve() {
        let model = TypeSpec::Model {
            name: "Citation".into(),
            schema: json!({"type": "object"}),
        };
        let sig =
            DynSignature::parse_with_types("claim -> citation: Citation", &[("Citation", model)])
                .unwrap();
        assert_eq!(sig.outputs()[0].dspy_type(), "Citation");
        assert_eq!(
            sig.outputs()[0].json_schema(),
            Some(&json!({"type": "object"}))
        );
    }

    #[test]
    fn insert_follows_dspy_indexing() {
        let sig = DynSignature::parse("a -> b, c").unwrap();
        let r = FieldSpec::output("reasoning", TypeSpec::Str);
        let names = |s: &DynSignature| s.output_names().map(String::from).collect::<Vec<_>>();
        assert_eq!(
            names(&sig.prepend(r.clone()).unwrap()),
            ["reasoning", "b", "c"]
        );
        assert_eq!(
            names(&sig.append(r.clone()).unwrap()),
            ["b", "c", "reasoning"]
        );
        assert_eq!(
            names(&sig.insert(-2, r.clone()).unwrap()),
            ["b", "reasoning", "c"]
        );
        assert_eq!(
            sig.insert(4, r.clone()).unwrap_err().to_string(),
            "cannot insert `reasoning` at index 4: the output fields have 2 entries (valid: -3 to 2)"
        );
        assert!(sig.insert(-4, r.clone()).is_err());
        assert!(matches!(
            sig.append(FieldSpec::input("b", TypeSpec::Str)),
            Err(SignatureError::DuplicateField { .. })
        ));
        assert!(matches!(
            sig.append(FieldSpec::input("fn", TypeSpec::Str)),
            Err(SignatureError::InvalidFieldName { .. })
        ));
        // Instructions are kept, as DSPy keeps them.
        assert_eq!(sig.prepend(r).unwrap().instructions(), sig.instructions());
        assert_eq!(names(&sig.delete("b")), ["c"]);
    }

    #[test]
    fn instructions_are_cleaned() {
        let sig = DynSignature::parse("a -> b")
            .unwrap()
            .with_instructions("  Do X.\n    more  ");
        assert_eq!(sig.instructions(), "Do X.\nmore  ");
        assert_eq!(
            sig.append_instructions("Then Y.").instructions(),
            "Do X.\nmore  \n\nThen Y."
        );
        assert_ne!(sig, DynSignature::parse("a -> b").unwrap());
    }

    #[test]
    fn json_round_trip_and_fixture_layout() {
        let sig = DynSignature::parse("question -> answer: int")
            .unwrap()
            .with_updated_field("answer", |f| f.with_desc("a number"))
            .unwrap();
        let value = serde_json::to_value(&sig).unwrap();
        assert_eq!(value["outputs"][0]["type"], "int");
        assert_eq!(value["outputs"][0]["desc"], "a number");
        assert!(value["inputs"][0].get("desc").is_none());
        let back: DynSignature = serde_json::from_value(value).unwrap();
        assert_eq!(back, sig);

        let fixture = json!({
            "instructions": "Give one citation for the claim.",
            "inputs": [{"name": "claim", "type": "str"}],
            "outputs": [{"name": "citation", "type": "Citation",
                          "schema": {"type": "object", "title": "Citation"}},
                         {"name": "hint", "type": "Optional[str]"}]
        });
        let sig: DynSignature = serde_json::from_value(fixture).unwrap();
        assert_eq!(sig.outputs()[0].dspy_type(), "Citation");
        assert_eq!(sig.outputs()[1].dspy_type(), "Union[str, NoneType]");
        let bad = json!({"inputs": [{"name": "a", "type": "Vec<"}], "outputs": [{"name": "b"}]});
        let err = serde_json::from_value::<DynSignature>(bad)
            .unwrap_err()
            .to_string();
        assert!(err.contains("field `a` has type \"Vec<\""), "{err}");
    }
}
