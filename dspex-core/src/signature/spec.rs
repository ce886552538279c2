//! Field specs and field types.

use super::schema;
use serde_json::{Value, json};

pub use dspex_grammar::LiteralValue;

/// Whether a field is given to the step or produced by it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FieldRole {
    /// An input field (DSPy's `InputField`).
    Input,
    /// An output field (DSPy's `OutputField`).
    Output,
}

impl FieldRole {
    /// `"input"` or `"output"`.
    pub fn as_str(self) -> &'static str {
        match self {
            FieldRole::Input => "input",
            FieldRole::Output => "output",
        }
    }
}

/// A field's type as DSPy sees it. Every Rust integer width is [`TypeSpec::Int`], every float
/// width [`TypeSpec::Float`]: DSPy's prompts and parsing do not tell them apart (the Rust spelling
/// lives in [`FieldSpec::rust_type`]).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum TypeSpec {
    /// `str`.
    Str,
    /// `bool`.
    Bool,
    /// `int`.
    Int,
    /// `float`.
    Float,
    /// `Any`: any JSON value.
    Any,
    /// `list[T]`.
    List(Box<TypeSpec>),
    /// `dict[str, V]`.
    Dict(Box<TypeSpec>),
    /// `Optional[T]`, rendered `Union[T, NoneType]`.
    Optional(Box<TypeSpec>),
    /// `Literal[...]`: one of fixed values (Rust enums deriving `LiteralEnum`).
    Literal(Vec<LiteralValue>),
    /// One of DSPy's own types: `Image`, `Audio`, `File` (inputs sent as content parts) or
    /// `History` (earlier turns sent as messages).
    Custom(CustomType),
    /// A structured type with a JSON schema (a Rust struct deriving `JsonSchema`, DSPy's pydantic
    /// model).
    Model {
        /// The type's name as DSPy prints it (`Citation`).
        name: String,
        /// Its JSON schema in pydantic's layout (see [`super::model_schema`]).
        schema: Value,
    },
}

impl TypeSpec {
    /// DSPy's spelling: `str`, `list[str]`, `dict[str, int]`, `Union[str, NoneType]`,
    /// `Literal['a', 'b']`, `Citation`.
    pub fn dspy_name(&self) -> String {
        match self {
            TypeSpec::Str => "str".to_string(),
            TypeSpec::Bool => "bool".to_string(),
            TypeSpec::Int => "int".to_string(),
            TypeSpec::Float => "float".to_string(),
            TypeSpec::Any => "Any".to_string(),
            TypeSpec::List(t) => format!("list[{}]", t.dspy_name()),
            TypeSpec::Dict(v) => format!("dict[str, {}]", v.dspy_name()),
            TypeSpec::Optional(t) => format!("Union[{}, NoneType]", t.dspy_name()),
            TypeSpec::Literal(values) => dspex_grammar::literal_type_name(values),
            TypeSpec::Custom(c) => c.name().to_string(),
            TypeSpec::Model { name, .. } => name.clone(),
        }
    }

    /// The name and JSON schema of a type that DSPy treats as a pydantic model: a
    /// [`TypeSpec::Model`], or a [`TypeSpec::Custom`] type with its pydantic schema.
    pub fn as_model(&self) -> Option<(&str, &Value)> {
        match self {
            TypeSpec::Model { name, schema } => Some((name, schema)),
            TypeSpec::Custom(c) => Some((c.name(), c.schema())),
            _ => None,
        }
    }

    /// The custom type, if this is one.
    pub fn custom(&self) -> Option<CustomType> {
        match self {
            TypeSpec::Custom(c) => Some(*c),
            _ => None,
        }
    }

    /// Whether a media type (`Image`, `Audio`, `File`) appears anywhere in this type
    /// (`list[Image]`, `Optional[Audio]`): its values are sent as content parts.
    pub fn has_media(&self) -> bool {
        match self {
            TypeSpec::Custom(c) => c.is_media(),
            TypeSpec::List(t) | TypeSpec::Dict(t) | TypeSpec::Optional(t) => t.has_media(),
            _ => false,
        }
    }

    /// The JSON schema of the type in pydantic's layout (`TypeAdapter(T).json_schema()`), with
    /// models nested inside containers moved to `$defs`.
    pub fn json_schema(&self) -> Value {
        let mut defs = serde_json::Map::new();
        let mut root = self.schema_into(&mut defs, true);
        if !defs.is_empty()
            && let Value::Object(map) = &mut root
        {
            let mut with_defs = serde_json::Map::new();
            with_defs.insert("$defs".to_string(), Value::Object(defs));
            with_defs.extend(std::mem::take(map));
            return Value::Object(with_defs);
        }
        root
    }

    fn schema_into(&self, defs: &mut serde_json::Map<String, Value>, top: bool) -> Value {
        match self {
            TypeSpec::Str => json!({"type": "string"}),
            TypeSpec::Bool => json!({"type": "boolean"}),
            TypeSpec::Int => json!({"type": "integer"}),
            TypeSpec::Float => json!({"type": "number"}),
            TypeSpec::Any => json!({}),
            TypeSpec::List(t) => json!({"items": t.schema_into(defs, false), "type": "array"}),
            // Pydantic writes `dict[str, Any]` as `additionalProperties: true`.
            TypeSpec::Dict(v) if **v == TypeSpec::Any => {
                json!({"additionalProperties": true, "type": "object"})
            }
            TypeSpec::Dict(v) => {
                json!({"additionalProperties": v.schema_into(defs, false), "type": "object"})
            }
            TypeSpec::Optional(t) => {
                json!({"anyOf": [t.schema_into(defs, false), {"type": "null"}]})
            }
            TypeSpec::Literal(values) => schema::literal_schema(values),
            TypeSpec::Model { name, schema } => model_schema_into(name, schema, defs, top),
            TypeSpec::Custom(c) => model_schema_into(c.name(), c.schema(), defs, top),
        }
    }

    /// The schema of a model type, if this is one.
    pub fn model_schema(&self) -> Option<&Value> {
        match self {
            TypeSpec::Model { schema, .. } => Some(schema),
            _ => None,
        }
    }

    /// The Rust type dspex uses for this type when none was written: `String`, `i64`, `f64`,
    /// `Vec<…>`, `BTreeMap<String, …>`, `Option<…>`, `serde_json::Value`.
    pub fn default_rust_type(&self) -> String {
        match self {
            TypeSpec::Str | TypeSpec::Literal(_) => "String".to_string(),
            TypeSpec::Bool => "bool".to_string(),
            TypeSpec::Int => "i64".to_string(),
            TypeSpec::Float => "f64".to_string(),
            TypeSpec::Any => "serde_json::Value".to_string(),
            TypeSpec::List(t) => format!("Vec<{}>", t.default_rust_type()),
            TypeSpec::Dict(v) => format!("BTreeMap<String, {}>", v.default_rust_type()),
            TypeSpec::Optional(t) => format!("Option<{}>", t.default_rust_type()),
            TypeSpec::Custom(c) => c.name().to_string(),
            TypeSpec::Model { name, .. } => name.clone(),
        }
    }
}

/// DSPy's own field types (`dspy.Image`, `dspy.Audio`, `dspy.File`, `dspy.History`,
/// `dspy.Code["python"]`, `dspy.Reasoning`), whose Rust values are [`crate::types::Image`],
/// [`crate::types::Audio`], [`crate::types::File`], [`crate::types::History`],
/// [`crate::types::Code`] and [`crate::types::Reasoning`].
///
/// In a prompt they are named as DSPy names them (`Image`, `list[Image]`, `Code_python`; a
/// `Reasoning` field as `str`); as outputs, their type note is pydantic's JSON schema of the
/// DSPy class, docstring included, as DSPy prints it (none for `Code` and `Reasoning`, which
/// DSPy exempts).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CustomType {
    /// `dspy.Image`.
    Image,
    /// `dspy.Audio`.
    Audio,
    /// `dspy.File`.
    File,
    /// `dspy.History`.
    History,
    /// `dspy.Code["python"]` (class `Code_python`) or bare `dspy.Code`, with its language.
    Code(CodeLanguage),
    /// `dspy.Reasoning`: a string-like output that native reasoning content can fill.
    Reasoning,
    /// `dspy.Tool`: a tool's description ([`crate::types::ToolSpec`]; the runtime's callable
    /// tool is a field type of this DSPy type too).
    Tool,
    /// `dspy.ToolCalls` ([`crate::types::ToolCalls`]).
    ToolCalls,
}

impl CustomType {
    /// Every custom type without a parameter (not [`CustomType::Code`], one per language).
    pub const ALL: [CustomType; 7] = [
        CustomType::Image,
        CustomType::Audio,
        CustomType::File,
        CustomType::History,
        CustomType::Reasoning,
        CustomType::Tool,
        CustomType::ToolCalls,
    ];

    /// DSPy's class name (`Image`, `Code_python`), which is also the Rust type's name for the
    /// types without a parameter.
    pub fn name(self) -> &'static str {
        match self {
            CustomType::Image => "Image",
            CustomType::Audio => "Audio",
            CustomType::File => "File",
            CustomType::History => "History",
            CustomType::Code(lang) => lang.class_name(),
            CustomType::Reasoning => "Reasoning",
            CustomType::Tool => "Tool",
            CustomType::ToolCalls => "ToolCalls",
        }
    }

    /// The type a name in a signature string stands for: `Image`, or with a `dspy.` (`dspy::`)
    /// or `dspex::` path (`dspy.Image`); `Code_python` (the class of `dspy.Code["python"]`) and
    /// bare `Code`.
    pub fn from_path(path: &str) -> Option<Self> {
        let name = [
            "dspy.",
            "dspy::",
            "dspex::",
            "dspex::types::",
            "dspex_core::types::",
        ]
        .iter()
        .find_map(|prefix| path.strip_prefix(prefix))
        .unwrap_or(path);
        if name == "Code" {
            return Some(CustomType::Code(CodeLanguage::bare()));
        }
        if let Some(language) = name.strip_prefix("Code_") {
            return CodeLanguage::new(language).ok().map(CustomType::Code);
        }
        CustomType::ALL.into_iter().find(|c| c.name() == name)
    }

    /// Whether values of the type are sent as content parts (`Image`, `Audio`, `File`; not
    /// `History`, whose turns become messages, nor the string-like `Code` and `Reasoning`, nor
    /// the tool types).
    pub fn is_media(self) -> bool {
        matches!(
            self,
            CustomType::Image | CustomType::Audio | CustomType::File
        )
    }

    /// DSPy's `description()` of the class, which prompts add under a field of the type
    /// (`Type description of Code_python: …`, `Type description of ToolCalls: …`); empty for
    /// the types without one.
    pub fn description(self) -> &'static str {
        match self {
            CustomType::Code(lang) => lang.description(),
            CustomType::ToolCalls => crate::types::ToolCalls::DESCRIPTION,
            _ => "",
        }
    }

    /// Pydantic's JSON schema of the DSPy class (`TypeAdapter(dspy.Image).json_schema()` in
    /// DSPy 3.4.1). Pydantic cannot write one for `dspy.Tool` (it holds a function); dspex's is
    /// the schema of the description it holds (`name`, `desc`, `args`).
    pub fn schema(self) -> &'static Value {
        static SCHEMAS: std::sync::OnceLock<[Value; 7]> = std::sync::OnceLock::new();
        let schemas = SCHEMAS.get_or_init(|| {
            let load = |text: &str| serde_json::from_str(text).unwrap_or(Value::Null);
            [
                load(include_str!("../types/schemas/image.json")),
                load(include_str!("../types/schemas/audio.json")),
                load(include_str!("../types/schemas/file.json")),
                load(include_str!("../types/schemas/history.json")),
                load(include_str!("../types/schemas/reasoning.json")),
                load(include_str!("../types/schemas/tool.json")),
                load(include_str!("../types/schemas/tool_calls.json")),
            ]
        });
        match self {
            CustomType::Image => &schemas[0],
            CustomType::Audio => &schemas[1],
            CustomType::File => &schemas[2],
            CustomType::History => &schemas[3],
            CustomType::Reasoning => &schemas[4],
            CustomType::Tool => &schemas[5],
            CustomType::ToolCalls => &schemas[6],
            CustomType::Code(lang) => lang.schema(),
        }
    }
}

/// The language of a [`CustomType::Code`] field: DSPy's `dspy.Code["python"]` (class
/// `Code_python`) or bare `dspy.Code` (class `Code`, language `python`).
///
/// It is `Copy` like the rest of [`CustomType`]: each language is interned once per process (its
/// class name, description and schema built then and kept), so a language costs a few hundred
/// bytes for the life of the process. [`CodeLanguage::new`] refuses names DSPy could not print
/// sensibly and caps the number of distinct languages read from text at
/// [`CodeLanguage::MAX_INTERNED`].
///
/// ```
/// use dspex_core::signature::{CodeLanguage, CustomType, TypeSpec};
/// use dspex_core::types::{Code, lang::Python};
///
/// let python = CodeLanguage::new("python")?;
/// assert_eq!(python, CodeLanguage::of::<Python>());
/// assert_eq!(python.class_name(), "Code_python");
/// assert_eq!(TypeSpec::Custom(CustomType::Code(python)).dspy_name(), "Code_python");
/// assert_eq!(CodeLanguage::bare().class_name(), "Code");
/// assert_eq!(CodeLanguage::bare().language(), "python");
/// assert!(CodeLanguage::new("").is_err());
/// # Ok::<(), dspex_core::signature::CodeLanguageError>(())
/// ```
#[derive(Clone, Copy)]
pub struct CodeLanguage(&'static CodeLanguageInfo);

struct CodeLanguageInfo {
    language: Box<str>,
    bare: bool,
    class_name: Box<str>,
    description: Box<str>,
    schema: Value,
}

/// A language name [`CodeLanguage::new`] refuses.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CodeLanguageError {
    /// The name is empty.
    #[error("a code language needs a name (as in `Code[\"python\"]`)")]
    Empty,
    /// The name is longer than [`CodeLanguage::MAX_LEN`] bytes or has control characters.
    #[error("`{0}` is not a code language name (at most 64 bytes, no control characters)")]
    Invalid(String),
    /// [`CodeLanguage::MAX_INTERNED`] languages are known already.
    #[error("too many distinct code languages (at most {max})", max = CodeLanguage::MAX_INTERNED)]
    TooMany,
}

impl CodeLanguage {
    /// The longest language name accepted, in bytes.
    pub const MAX_LEN: usize = 64;
    /// How many distinct languages [`CodeLanguage::new`] interns at most.
    pub const MAX_INTERNED: usize = 1024;

    /// `dspy.Code[language]`. Any name DSPy accepts works, within [`CodeLanguage::MAX_LEN`]
    /// bytes and without control characters.
    pub fn new(language: &str) -> Result<Self, CodeLanguageError> {
        if language.is_empty() {
            return Err(CodeLanguageError::Empty);
        }
        if language.len() > Self::MAX_LEN || language.chars().any(char::is_control) {
            return Err(CodeLanguageError::Invalid(language.to_string()));
        }
        Self::intern(language, false, true).ok_or(CodeLanguageError::TooMany)
    }

    /// The language of a Rust marker: `CodeLanguage::of::<Python>()` for `Code<Python>`.
    pub fn of<L: crate::types::Language>() -> Self {
        // Markers are compile-time constants, so they are few: no cap.
        Self::intern(L::NAME, L::BARE, false).unwrap_or_else(Self::bare)
    }

    /// Bare `dspy.Code`: class `Code`, language `python`.
    pub fn bare() -> Self {
        static BARE: std::sync::OnceLock<CodeLanguage> = std::sync::OnceLock::new();
        *BARE.get_or_init(|| CodeLanguage(Box::leak(Box::new(info("python", true)))))
    }

    fn intern(language: &str, bare: bool, capped: bool) -> Option<Self> {
        use std::sync::{Mutex, OnceLock};
        type Table = std::collections::HashMap<(Box<str>, bool), &'static CodeLanguageInfo>;
        if bare && language == "python" {
            return Some(Self::bare());
        }
        static TABLE: OnceLock<Mutex<Table>> = OnceLock::new();
        let mut table = TABLE
            .get_or_init(Default::default)
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(found) = table.get(&(Box::<str>::from(language), bare)) {
            return Some(CodeLanguage(found));
        }
        if capped && table.len() >= Self::MAX_INTERNED {
            return None;
        }
        let leaked: &'static CodeLanguageInfo = Box::leak(Box::new(info(language, bare)));
        table.insert((language.into(), bare), leaked);
        Some(CodeLanguage(leaked))
    }

    /// The language as DSPy's subscript spells it (`python`; also for bare `Code`).
    pub fn language(self) -> &'static str {
        &self.0.language
    }

    /// Whether this is bare `dspy.Code`.
    pub fn is_bare(self) -> bool {
        self.0.bare
    }

    /// DSPy's class name: `Code_python`, or `Code` when bare.
    pub fn class_name(self) -> &'static str {
        &self.0.class_name
    }

    /// DSPy's `Code.description()` for the language.
    pub fn description(self) -> &'static str {
        &self.0.description
    }

    /// Pydantic's JSON schema of the class (`{"properties": {"code": …}, "title":
    /// "Code_python", …}`; bare `Code` carries DSPy's docstring).
    pub fn schema(self) -> &'static Value {
        &self.0.schema
    }
}

fn info(language: &str, bare: bool) -> CodeLanguageInfo {
    let class_name = if bare {
        "Code".to_string()
    } else {
        format!("Code_{language}")
    };
    let mut schema = if bare {
        serde_json::from_str(include_str!("../types/schemas/code.json")).unwrap_or(Value::Null)
    } else {
        json!({"properties": {"code": {"title": "Code", "type": "string"}},
               "required": ["code"], "title": class_name, "type": "object"})
    };
    if let Value::Object(map) = &mut schema {
        map.insert("title".into(), Value::String(class_name.clone()));
    }
    CodeLanguageInfo {
        description: crate::types::code_description(language).into(),
        language: language.into(),
        bare,
        class_name: class_name.into(),
        schema,
    }
}

impl PartialEq for CodeLanguage {
    fn eq(&self, other: &Self) -> bool {
        self.0.bare == other.0.bare && self.0.language == other.0.language
    }
}

impl Eq for CodeLanguage {}

impl std::hash::Hash for CodeLanguage {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.0.language.hash(state);
        self.0.bare.hash(state);
    }
}

impl std::fmt::Debug for CodeLanguage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.class_name())
    }
}

/// A model's schema at the top (itself) or nested (a `$ref` into `defs`); its own `$defs` always
/// move up to the root.
fn model_schema_into(
    name: &str,
    schema: &Value,
    defs: &mut serde_json::Map<String, Value>,
    top: bool,
) -> Value {
    let mut schema = schema.clone();
    if let Some(Value::Object(inner)) = schema.as_object_mut().and_then(|m| m.shift_remove("$defs"))
    {
        defs.extend(inner);
    }
    if top {
        schema
    } else {
        defs.insert(name.to_string(), schema);
        json!({"$ref": format!("#/$defs/{name}")})
    }
}

/// One field of a signature: its name, role, description, DSPy prefix and type.
///
/// Equality compares everything DSPy's prompts and parsing depend on (name, role, description,
/// prefix, DSPy type); the Rust spelling of the type is informational and not compared, so
/// `count: u32` and `count: int` describe the same field.
#[derive(Debug, Clone)]
pub struct FieldSpec {
    name: String,
    role: FieldRole,
    desc: String,
    prefix: String,
    ty: TypeSpec,
    rust_type: String,
}

impl PartialEq for FieldSpec {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
            && self.role == other.role
            && self.desc == other.desc
            && self.prefix == other.prefix
            && self.ty == other.ty
    }
}

impl FieldSpec {
    /// A field with DSPy's defaults: description `${name}`, prefix `Name:` (see
    /// [`dspex_grammar::infer_prefix`]) and the type's default Rust spelling.
    pub fn new(name: impl Into<String>, role: FieldRole, ty: TypeSpec) -> Self {
        let name = name.into();
        FieldSpec {
            desc: default_desc(&name),
            prefix: format!("{}:", dspex_grammar::infer_prefix(&name)),
            rust_type: ty.default_rust_type(),
            name,
            role,
            ty,
        }
    }

    /// An input field with DSPy's defaults.
    pub fn input(name: impl Into<String>, ty: TypeSpec) -> Self {
        Self::new(name, FieldRole::Input, ty)
    }

    /// An output field with DSPy's defaults.
    pub fn output(name: impl Into<String>, ty: TypeSpec) -> Self {
        Self::new(name, FieldRole::Output, ty)
    }

    /// Sets the description (an empty string keeps DSPy's default `${name}`).
    #[must_use]
    pub fn with_desc(mut self, desc: impl Into<String>) -> Self {
        let desc = desc.into();
        self.desc = if desc.is_empty() {
            default_desc(&self.name)
        } else {
            desc
        };
        self
    }

    /// Sets the prefix DSPy stores (`Question:`); prompts do not use it, optimizers do.
    #[must_use]
    pub fn with_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// Sets the Rust spelling of the type (`Vec<String>`, `u32`, `my::Citation`).
    #[must_use]
    pub fn with_rust_type(mut self, rust_type: impl Into<String>) -> Self {
        self.rust_type = rust_type.into();
        self
    }

    /// The same field with another role.
    #[must_use]
    pub fn with_role(mut self, role: FieldRole) -> Self {
        self.role = role;
        self
    }

    /// The field name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Input or output.
    pub fn role(&self) -> FieldRole {
        self.role
    }

    /// DSPy's stored description: the user's text, or `${name}` when none was given.
    pub fn desc(&self) -> &str {
        &self.desc
    }

    /// The description as prompts show it: `None` when it is DSPy's default `${name}`.
    pub fn description(&self) -> Option<&str> {
        (!self.has_default_desc()).then_some(self.desc.as_str())
    }

    /// Whether the description is DSPy's default `${name}`.
    pub fn has_default_desc(&self) -> bool {
        self.desc
            .strip_prefix("${")
            .and_then(|rest| rest.strip_suffix('}'))
            == Some(self.name.as_str())
    }

    /// DSPy's prefix, such as `Question:`.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The field's type.
    pub fn ty(&self) -> &TypeSpec {
        &self.ty
    }

    /// DSPy's spelling of the type (`list[str]`).
    pub fn dspy_type(&self) -> String {
        self.ty.dspy_name()
    }

    /// The Rust spelling of the type (`Vec<String>`).
    pub fn rust_type(&self) -> &str {
        &self.rust_type
    }

    /// The JSON schema of a structured type (DSPy's pydantic models), else `None`.
    pub fn json_schema(&self) -> Option<&Value> {
        self.ty.model_schema()
    }
}

pub(crate) fn default_desc(name: &str) -> String {
    format!("${{{name}}}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_follow_dspy() {
        let f = FieldSpec::input("search_query", TypeSpec::Str);
        assert_eq!(f.desc(), "${search_query}");
        assert!(f.has_default_desc());
        assert_eq!(f.description(), None);
        assert_eq!(f.prefix(), "Search Query:");
        assert_eq!(f.rust_type(), "String");
        let f = f.with_desc("what to search");
        assert_eq!(f.description(), Some("what to search"));
        assert!(
            FieldSpec::input("a", TypeSpec::Str)
                .with_desc("")
                .has_default_desc()
        );
    }

    #[test]
    fn equality_ignores_rust_spelling() {
        let a = FieldSpec::output("n", TypeSpec::Int).with_rust_type("u32");
        let b = FieldSpec::output("n", TypeSpec::Int);
        assert_eq!(a, b);
        assert_ne!(a, FieldSpec::input("n", TypeSpec::Int));
    }

    #[test]
    fn custom_types_are_named_and_schemed_as_dspy() {
        let image = TypeSpec::Custom(CustomType::Image);
        assert_eq!(image.dspy_name(), "Image");
        assert_eq!(
            image.json_schema(),
            json!({"additionalProperties": false, "properties": {"url": {"title": "Url", "type": "string"}},
                "required": ["url"], "title": "Image", "type": "object"})
        );
        let list = TypeSpec::List(Box::new(image.clone()));
        assert_eq!(
            list.json_schema()["items"],
            json!({"$ref": "#/$defs/Image"})
        );
        assert!(list.has_media());
        assert!(!TypeSpec::Custom(CustomType::History).has_media());
        // Only user models carry a schema of their own (a signature's JSON keeps `Image` a
        // custom type when it is read back).
        assert_eq!(image.model_schema(), None);
        assert_eq!(
            CustomType::from_path("dspy::History"),
            Some(CustomType::History)
        );
        assert_eq!(CustomType::from_path("Picture"), None);
        for c in CustomType::ALL {
            assert_eq!(c.schema()["title"], c.name());
        }
    }

    #[test]
    fn type_names_and_schemas() {
        let t = TypeSpec::Optional(Box::new(TypeSpec::Str));
        assert_eq!(t.dspy_name(), "Union[str, NoneType]");
        assert_eq!(
            t.json_schema(),
            json!({"anyOf": [{"type": "string"}, {"type": "null"}]})
        );
        let t = TypeSpec::Dict(Box::new(TypeSpec::Int));
        assert_eq!(t.dspy_name(), "dict[str, int]");
        assert_eq!(
            t.json_schema(),
            json!({"type": "object", "additionalProperties": {"type": "integer"}})
        );
        assert_eq!(
            TypeSpec::Dict(Box::new(TypeSpec::Any)).json_schema(),
            json!({"type": "object", "additionalProperties": true})
        );
        let lit = TypeSpec::Literal(vec![
            LiteralValue::Str("positive".into()),
            LiteralValue::Str("negative".into()),
        ]);
        assert_eq!(lit.dspy_name(), "Literal['positive', 'negative']");
        assert_eq!(
            lit.json_schema(),
            json!({"enum": ["positive", "negative"], "type": "string"})
        );
        let model = TypeSpec::Model {
            name: "Citation".into(),
            schema: json!({"type": "object", "title": "Citation"}),
        };
        assert_eq!(
            TypeSpec::List(Box::new(model)).json_schema(),
            json!({
                "$defs": {"Citation": {"type": "object", "title": "Citation"}},
                "items": {"$ref": "#/$defs/Citation"},
                "type": "array"
            })
        );
    }
}
