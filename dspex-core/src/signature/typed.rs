//! The typed face of signatures and the map from Rust types to DSPy types.

use super::dynamic::DynSignature;
use super::spec::{CustomType, FieldSpec, TypeSpec};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::collections::{BTreeMap, HashMap};
use std::fmt::Debug;

/// A signature known at compile time: typed input and output structs plus the metadata every
/// adapter and optimizer reads. Implemented by `#[signature]` (and `sig!`); implement it by hand
/// only to wrap a [`DynSignature`] you build yourself.
///
/// ```
/// use dspex_core::{DynSignature, Signature};
/// use serde::{Deserialize, Serialize};
/// use std::sync::OnceLock;
///
/// #[derive(Debug, Clone, Serialize, Deserialize)]
/// struct In { question: String }
/// #[derive(Debug, Clone, Serialize, Deserialize)]
/// struct Out { answer: String }
///
/// struct QA;
/// impl Signature for QA {
///     type Input = In;
///     type Output = Out;
///     fn signature() -> &'static DynSignature {
///         static SIG: OnceLock<DynSignature> = OnceLock::new();
///         SIG.get_or_init(|| DynSignature::parse("question -> answer").expect("valid"))
///     }
/// }
/// assert_eq!(QA::instructions(), "Given the fields `question`, produce the fields `answer`.");
/// ```
pub trait Signature: Send + Sync + 'static {
    /// The struct holding every input field.
    type Input: Serialize + DeserializeOwned + Clone + Debug + Send + Sync + 'static;
    /// The struct holding every output field.
    type Output: Serialize + DeserializeOwned + Clone + Debug + Send + Sync + 'static;

    /// The signature's metadata, built once.
    fn signature() -> &'static DynSignature;

    /// The instructions (DSPy's docstring).
    fn instructions() -> &'static str {
        Self::signature().instructions()
    }

    /// The input fields, in order.
    fn input_fields() -> &'static [FieldSpec] {
        Self::signature().inputs()
    }

    /// The output fields, in order.
    fn output_fields() -> &'static [FieldSpec] {
        Self::signature().outputs()
    }
}

/// A Rust type that can be a signature field, with its DSPy type.
///
/// Implemented for `String`, `bool`, every integer and float, `serde_json::Value` (`Any`),
/// DSPy's own types [`Image`](crate::types::Image), [`Audio`](crate::types::Audio),
/// [`File`](crate::types::File), [`History`](crate::types::History),
/// [`Code<L>`](crate::types::Code) and [`Reasoning`](crate::types::Reasoning), [`ToolSpec`](crate::types::ToolSpec) (`Tool`) and [`ToolCalls`](crate::types::ToolCalls), `Vec<T>`, `Option<T>`, `HashMap<String, T>` and `BTreeMap<String, T>`; `#[derive(LiteralEnum)]`
/// implements it for enums. Structs need no impl: a struct deriving `schemars::JsonSchema` is a
/// field type as it is (a DSPy model).
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be a signature field type",
    note = "use String, bool, integers, floats, Vec, Option, HashMap/BTreeMap<String, _>, an enum deriving `LiteralEnum`, or a struct deriving `JsonSchema`"
)]
pub trait SignatureType {
    /// The DSPy type of `Self`.
    fn type_spec() -> TypeSpec;
}

macro_rules! impl_signature_type {
    ($spec:expr => $($t:ty),+) => {
        $(impl SignatureType for $t {
            fn type_spec() -> TypeSpec {
                $spec
            }
        })+
    };
}

impl_signature_type!(TypeSpec::Str => String, str);
impl_signature_type!(TypeSpec::Bool => bool);
impl_signature_type!(TypeSpec::Int => i8, i16, i32, i64, i128, isize, u8, u16, u32, u64, u128, usize);
impl_signature_type!(TypeSpec::Float => f32, f64);
impl_signature_type!(TypeSpec::Any => serde_json::Value);
impl_signature_type!(TypeSpec::Custom(CustomType::Image) => crate::types::Image);
impl_signature_type!(TypeSpec::Custom(CustomType::Audio) => crate::types::Audio);
impl_signature_type!(TypeSpec::Custom(CustomType::File) => crate::types::File);
impl_signature_type!(TypeSpec::Custom(CustomType::History) => crate::types::History);
impl_signature_type!(TypeSpec::Custom(CustomType::Reasoning) => crate::types::Reasoning);

impl<L: crate::types::Language> SignatureType for crate::types::Code<L> {
    fn type_spec() -> TypeSpec {
        TypeSpec::Custom(CustomType::Code(super::spec::CodeLanguage::of::<L>()))
    }
}
impl_signature_type!(TypeSpec::Custom(CustomType::Tool) => crate::types::ToolSpec);
impl_signature_type!(TypeSpec::Custom(CustomType::ToolCalls) => crate::types::ToolCalls);

impl<T: SignatureType> SignatureType for Vec<T> {
    fn type_spec() -> TypeSpec {
        TypeSpec::List(Box::new(T::type_spec()))
    }
}

impl<T: SignatureType> SignatureType for Option<T> {
    fn type_spec() -> TypeSpec {
        TypeSpec::Optional(Box::new(T::type_spec()))
    }
}

impl<T: SignatureType + ?Sized> SignatureType for Box<T> {
    fn type_spec() -> TypeSpec {
        T::type_spec()
    }
}

impl<T: SignatureType, S> SignatureType for HashMap<String, T, S> {
    fn type_spec() -> TypeSpec {
        TypeSpec::Dict(Box::new(T::type_spec()))
    }
}

impl<T: SignatureType> SignatureType for BTreeMap<String, T> {
    fn type_spec() -> TypeSpec {
        TypeSpec::Dict(Box::new(T::type_spec()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rust_types_map_to_dspy_types() {
        assert_eq!(<Vec<String>>::type_spec().dspy_name(), "list[str]");
        assert_eq!(
            <Option<u8>>::type_spec().dspy_name(),
            "Union[int, NoneType]"
        );
        assert_eq!(
            <HashMap<String, Vec<f32>>>::type_spec().dspy_name(),
            "dict[str, list[float]]"
        );
        assert_eq!(
            <BTreeMap<String, bool>>::type_spec().dspy_name(),
            "dict[str, bool]"
        );
        assert_eq!(serde_json::Value::type_spec().dspy_name(), "Any");
        assert_eq!(
            <Vec<crate::types::Image>>::type_spec().dspy_name(),
            "list[Image]"
        );
        assert_eq!(crate::types::History::type_spec().dspy_name(), "History");
    }
}
