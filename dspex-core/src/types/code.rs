//! [`Code`]: source code in a given language (DSPy's `dspy.Code["python"]`), and the
//! [`Language`] markers that name the language in the type.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::marker::PhantomData;

/// A programming language, named in a [`Code`] type: `Code<Python>` is DSPy's
/// `dspy.Code["python"]` (class `Code_python`).
///
/// dspex ships markers for common languages in [`lang`]; any other language is a unit struct
/// implementing this trait:
///
/// ```
/// use dspex_core::types::{Code, Language};
///
/// struct Haskell;
/// impl Language for Haskell {
///     const NAME: &'static str = "haskell";
/// }
///
/// assert_eq!(Code::<Haskell>::dspy_name(), "Code_haskell");
/// assert_eq!(Code::<Haskell>::language(), "haskell");
/// ```
pub trait Language: Send + Sync + 'static {
    /// The language as DSPy's subscript spells it: `"python"` for `dspy.Code["python"]`.
    const NAME: &'static str;

    /// Whether this is DSPy's bare `dspy.Code` (class `Code`, language `python`) rather than a
    /// subscripted `dspy.Code[NAME]`. Only [`lang::Bare`] sets it.
    const BARE: bool = false;
}

/// Marker types for [`Code`]'s language, each named after DSPy's spelling of the language with
/// its first letter upper-cased (`"python"` → [`lang::Python`], `"javascript"` →
/// [`lang::Javascript`]) — the name a `Code["…"]` type in a `sig!` string refers to.
pub mod lang {
    use super::Language;

    macro_rules! languages {
        ($($(#[$doc:meta])* $name:ident = $lang:literal;)+) => {
            $(
                $(#[$doc])*
                #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
                pub struct $name;

                impl Language for $name {
                    const NAME: &'static str = $lang;
                }
            )+

            /// The markers dspex ships, by DSPy's name of the language (`"python"` →
            /// `"Python"`).
            pub const KNOWN: &[(&str, &str)] = &[$(($lang, stringify!($name))),+];
        };
    }

    languages! {
        /// `dspy.Code["python"]`.
        Python = "python";
        /// `dspy.Code["rust"]`.
        Rust = "rust";
        /// `dspy.Code["javascript"]`.
        Javascript = "javascript";
        /// `dspy.Code["typescript"]`.
        Typescript = "typescript";
        /// `dspy.Code["java"]`.
        Java = "java";
        /// `dspy.Code["go"]`.
        Go = "go";
        /// `dspy.Code["c"]`.
        C = "c";
        /// `dspy.Code["cpp"]`.
        Cpp = "cpp";
        /// `dspy.Code["sql"]`.
        Sql = "sql";
        /// `dspy.Code["bash"]`.
        Bash = "bash";
    }

    /// DSPy's bare `dspy.Code`: the class is named `Code` and its language is `python`. The
    /// default language of [`Code`](super::Code).
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
    pub struct Bare;

    impl Language for Bare {
        const NAME: &'static str = "python";
        const BARE: bool = true;
    }
}

/// Source code in language `L` (DSPy's `dspy.Code["python"]` for `Code<Python>`; bare `Code` is
/// DSPy's `dspy.Code`).
///
/// As a signature field the type is named `Code_python` in prompts and carries DSPy's type
/// description, which asks for a markdown code block; an output's answer is reduced to the code
/// inside its first fenced block as DSPy's validator does (see [`Code::from_markdown`]). As a
/// value it is a plain string — the code — exactly as pydantic's `model_dump` of a `dspy.Code`.
///
/// ```
/// use dspex_core::types::{Code, lang::Python};
///
/// let code: Code<Python> = Code::from_markdown("Sure:\n```python\nprint(1)\n```\n");
/// assert_eq!(code.code(), "print(1)");
/// assert_eq!(Code::<Python>::dspy_name(), "Code_python");
/// assert_eq!(serde_json::to_value(&code)?, serde_json::json!("print(1)"));
///
/// // Deserializing takes the code as it is (a string, or `{"code": …}`).
/// let back: Code<Python> = serde_json::from_value(serde_json::json!({"code": "x = 1"}))?;
/// assert_eq!(back, "x = 1");
/// # Ok::<(), serde_json::Error>(())
/// ```
pub struct Code<L: Language = lang::Bare> {
    code: String,
    language: PhantomData<fn() -> L>,
}

impl<L: Language> Code<L> {
    /// Code as it is (no fence extraction).
    pub fn new(code: impl Into<String>) -> Self {
        Code {
            code: code.into(),
            language: PhantomData,
        }
    }

    /// The code of an LM's answer, as DSPy's `Code` validator reads it (`_filter_code`): the
    /// contents of the first fenced block (` ```lang\n…``` `, any info string), else of the first
    /// single-line ` ```…``` `, stripped of surrounding whitespace; text with no complete fence
    /// is kept as it is. See [`extract_code`].
    pub fn from_markdown(text: &str) -> Self {
        Code::new(extract_code(text))
    }

    /// The code.
    pub fn code(&self) -> &str {
        &self.code
    }

    /// The code, owned.
    pub fn into_code(self) -> String {
        self.code
    }

    /// The language, as DSPy's subscript spells it (`"python"`; also for bare `Code`).
    pub fn language() -> &'static str {
        L::NAME
    }

    /// DSPy's class name: `Code_python`, or `Code` for bare `Code`.
    pub fn dspy_name() -> String {
        if L::BARE {
            "Code".to_string()
        } else {
            format!("Code_{}", L::NAME)
        }
    }

    /// DSPy's type description of the class (`Code.description()`), which prompts show under
    /// the field.
    pub fn description() -> String {
        code_description(L::NAME)
    }
}

/// DSPy's `Code.description()` for a language.
pub(crate) fn code_description(language: &str) -> String {
    format!(
        "Code represented in a string, specified in the `code` field. If this is an output field, the code field should follow the markdown code block format, e.g. \n```{}\n{{code}}\n```\nProgramming language: {language}",
        language.to_lowercase()
    )
}

/// DSPy's `_filter_code`: the code inside the first fenced block of `text`.
///
/// 1. A fence with an info string line — ` ``` ` at its first occurrence, anything up to the
///    end of that line, then everything up to the next ` ``` ` — gives that content.
/// 2. Otherwise ` ```…``` ` on one line (or with no newline after the opening) gives what lies
///    between the first two fences.
/// 3. Otherwise (no fence, an unterminated fence) the text is returned unchanged.
///
/// The extracted content is stripped of whitespace as Python's `str.strip` strips it. The info
/// string is not checked against any language: a `rust` block in a `Code<Python>` answer is
/// taken all the same, as DSPy takes it.
///
/// ```
/// use dspex_core::types::extract_code;
///
/// assert_eq!(extract_code("```python\nx = 1\n```"), "x = 1");
/// assert_eq!(extract_code("a:\n```py\nfirst\n```\nb:\n```py\nsecond\n```"), "first");
/// assert_eq!(extract_code("```x = 1```"), "x = 1");
/// assert_eq!(extract_code("```python\nunterminated"), "```python\nunterminated");
/// assert_eq!(extract_code("  no fence  "), "  no fence  ");
/// ```
pub fn extract_code(text: &str) -> &str {
    const FENCE: &str = "```";
    let Some(open) = text.find(FENCE) else {
        return text;
    };
    let after = open + FENCE.len();
    // Case 1: ```[^\n]*\n(.*?)``` — the first newline after the opening, then the next fence.
    if let Some(nl) = text[after..].find('\n').map(|i| after + i)
        && let Some(close) = text[nl + 1..].find(FENCE).map(|i| nl + 1 + i)
    {
        return crate::pycompat::text::py_strip(&text[nl + 1..close]);
    }
    // Case 2: ```(.*?)```.
    if let Some(close) = text[after..].find(FENCE).map(|i| after + i) {
        return crate::pycompat::text::py_strip(&text[after..close]);
    }
    text
}

impl<L: Language> Clone for Code<L> {
    fn clone(&self) -> Self {
        Code::new(self.code.clone())
    }
}

impl<L: Language> PartialEq for Code<L> {
    fn eq(&self, other: &Self) -> bool {
        self.code == other.code
    }
}

impl<L: Language> Eq for Code<L> {}

impl<L: Language> std::hash::Hash for Code<L> {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.code.hash(state);
    }
}

impl<L: Language> Default for Code<L> {
    fn default() -> Self {
        Code::new(String::new())
    }
}

impl<L: Language> fmt::Debug for Code<L> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct(&Self::dspy_name())
            .field("code", &self.code)
            .finish()
    }
}

/// The code, as DSPy's `Code.format()`.
impl<L: Language> fmt::Display for Code<L> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.code)
    }
}

impl<L: Language> AsRef<str> for Code<L> {
    fn as_ref(&self) -> &str {
        &self.code
    }
}

impl<L: Language> From<String> for Code<L> {
    /// Code as it is (see [`Code::new`]).
    fn from(code: String) -> Self {
        Code::new(code)
    }
}

impl<L: Language> From<&str> for Code<L> {
    /// Code as it is (see [`Code::new`]).
    fn from(code: &str) -> Self {
        Code::new(code)
    }
}

impl<L: Language> PartialEq<str> for Code<L> {
    fn eq(&self, other: &str) -> bool {
        self.code == other
    }
}

impl<L: Language> PartialEq<&str> for Code<L> {
    fn eq(&self, other: &&str) -> bool {
        self.code == *other
    }
}

impl<L: Language> PartialEq<String> for Code<L> {
    fn eq(&self, other: &String) -> bool {
        &self.code == other
    }
}

impl<L: Language> Serialize for Code<L> {
    /// The code as a string: pydantic's `model_dump` of a `dspy.Code`.
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.code)
    }
}

impl<'de, L: Language> Deserialize<'de> for Code<L> {
    /// A string, or `{"code": string}` (the shapes DSPy's validator takes), kept as it is.
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        StrOrField::deserialize(d, "code", "a dspy.Code").map(Code::new)
    }
}

/// A string, or an object whose only field `field` is a string: how DSPy's str-like types
/// (`Code`, `Reasoning`) read a value.
pub(crate) struct StrOrField;

impl StrOrField {
    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
        field: &'static str,
        what: &'static str,
    ) -> Result<String, D::Error> {
        struct V {
            field: &'static str,
            what: &'static str,
        }
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = String;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(
                    f,
                    "{}: a string or an object with a string `{}`",
                    self.what, self.field
                )
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<String, E> {
                Ok(v.to_string())
            }
            fn visit_string<E: serde::de::Error>(self, v: String) -> Result<String, E> {
                Ok(v)
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<String, A::Error> {
                let mut found = None;
                while let Some(key) = map.next_key::<String>()? {
                    if key == self.field {
                        if found.is_some() {
                            return Err(serde::de::Error::duplicate_field(self.field));
                        }
                        found = Some(map.next_value::<String>()?);
                    } else {
                        map.next_value::<serde::de::IgnoredAny>()?;
                    }
                }
                found.ok_or_else(|| serde::de::Error::missing_field(self.field))
            }
        }
        d.deserialize_any(V { field, what })
    }
}

#[cfg(test)]
mod tests {
    use super::lang::{Bare, Python, Rust};
    use super::*;
    use serde_json::json;

    /// `_filter_code` on tricky answers, against DSPy 3.4.1 (`testdata/code_reasoning.json`,
    /// `filter`).
    #[test]
    fn fence_extraction_matches_dspy() {
        let data: serde_json::Value =
            serde_json::from_str(include_str!("../adapter/testdata/code_reasoning.json"))
                .expect("valid JSON");
        let cases = data["filter"].as_array().expect("a list");
        assert!(cases.len() >= 20);
        for case in cases {
            let text = case["text"].as_str().expect("text");
            assert_eq!(extract_code(text), case["code"], "{text:?}");
        }
    }

    #[test]
    fn names_descriptions_and_serde() {
        assert_eq!(Code::<Python>::dspy_name(), "Code_python");
        assert_eq!(Code::<Bare>::dspy_name(), "Code");
        assert_eq!(<Code>::language(), "python");
        assert!(Code::<Rust>::description().contains("```rust\n{code}\n```"));
        let c = Code::<Python>::new("```python\nx\n```");
        // `new` keeps the text; `from_markdown` extracts.
        assert_eq!(c.code(), "```python\nx\n```");
        assert_eq!(Code::<Python>::from_markdown(c.code()), "x");
        assert_eq!(
            serde_json::to_value(&c).unwrap(),
            json!("```python\nx\n```")
        );
        let back: Code<Python> = serde_json::from_value(json!("```python\nx\n```")).unwrap();
        assert_eq!(back, c);
        assert!(serde_json::from_value::<Code<Python>>(json!({"code": 5})).is_err());
        assert!(serde_json::from_value::<Code<Python>>(json!({"other": "x"})).is_err());
        assert!(serde_json::from_value::<Code<Python>>(json!(5)).is_err());
        assert_eq!(format!("{c}"), "```python\nx\n```");
        assert!(format!("{c:?}").starts_with("Code_python"));
        assert_eq!(Code::<Python>::from("a").into_code(), "a");
    }
}
