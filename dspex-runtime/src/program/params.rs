//! Predictor parameters and the walk over a program's predictors.

use crate::example::Example;
use crate::signature::DynSignature;

/// What an optimizer tunes in one predictor: its signature (instructions, field descriptions and
/// prefixes) and its few-shot demos. Plain data, saved and loaded in DSPy's JSON state format.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct PredictorParams {
    /// The signature the predictor prompts with (instructions included).
    pub signature: DynSignature,
    /// Few-shot demos shown before the input, in order.
    pub demos: Vec<Example>,
}

impl PredictorParams {
    /// Parameters for `signature` with no demos.
    pub fn new(signature: DynSignature) -> Self {
        PredictorParams {
            signature,
            demos: Vec::new(),
        }
    }

    /// The current instructions.
    pub fn instructions(&self) -> &str {
        self.signature.instructions()
    }

    /// Replaces the instructions, keeping the fields.
    pub fn set_instructions(&mut self, instructions: impl AsRef<str>) {
        self.signature = self.signature.with_instructions(instructions);
    }
}

/// A program whose predictors optimizers can reach by name, as DSPy's `named_predictors()`.
///
/// Derive it for a struct of modules with `#[derive(Module)]`: each field is visited under its
/// name (`generate_query`, then `generate_query.predict` inside a ChainOfThought), and fields that
/// hold no predictors are marked `#[module(skip)]`. `Vec<T>` fields are visited as `name[0]`,
/// `name[1]`, … and `Option<T>` fields when present.
///
/// ```
/// use dspex_runtime::{DynSignature, Module, PredictorParams};
///
/// let mut p = PredictorParams::new(DynSignature::parse("question -> answer")?);
/// p.set_instructions("Answer briefly.");
/// let named = p.named_predictors();
/// assert_eq!(named[0].0, "self");
/// assert_eq!(named[0].1.instructions(), "Answer briefly.");
/// # Ok::<(), dspex_runtime::SignatureError>(())
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` does not expose predictors to optimizers",
    label = "this field's type does not implement `Module`",
    note = "mark fields that hold no predictors with `#[module(skip)]`"
)]
pub trait Module {
    /// Calls `visit` with the full name and parameters of every predictor under `path`.
    fn visit_predictors<'a>(
        &'a self,
        path: &str,
        visit: &mut dyn FnMut(String, &'a PredictorParams),
    );

    /// Calls `visit` with the full name and mutable parameters of every predictor under `path`.
    fn visit_predictors_mut<'a>(
        &'a mut self,
        path: &str,
        visit: &mut dyn FnMut(String, &'a mut PredictorParams),
    );

    /// Calls `visit` with the full name and DSPy state of every parameter under `path` that is
    /// not a predictor — DSPy's `Retrieve`, whose state is `{"k": …}` — so that a saved program
    /// holds every key DSPy's `load` reads. Containers forward it to their fields as they forward
    /// [`Module::visit_predictors`]; the default visits nothing.
    fn visit_other_state(&self, path: &str, visit: &mut dyn FnMut(String, serde_json::Value)) {
        let _ = (path, visit);
    }

    /// Reads the entries of `state` (a whole program's state, keyed by full name) for the
    /// parameters [`Module::visit_other_state`] names under `path`: checks them when `apply` is
    /// false, applies them when it is true (after a successful check). A missing entry leaves the
    /// parameter as it is; a malformed one is [`StateError::BadKey`](super::StateError::BadKey).
    /// The default reads nothing.
    fn load_other_state(
        &mut self,
        path: &str,
        state: &serde_json::Map<String, serde_json::Value>,
        apply: bool,
    ) -> Result<(), super::StateError> {
        let _ = (path, state, apply);
        Ok(())
    }

    /// Every predictor with its DSPy name, in declaration order.
    fn named_predictors(&self) -> Vec<(String, &PredictorParams)> {
        let mut out = Vec::new();
        self.visit_predictors("", &mut |name, p| out.push((name, p)));
        out
    }

    /// Every predictor with its DSPy name, mutable, in declaration order.
    fn named_predictors_mut(&mut self) -> Vec<(String, &mut PredictorParams)> {
        let mut out = Vec::new();
        self.visit_predictors_mut("", &mut |name, p| out.push((name, p)));
        out
    }

    /// The predictor called `name`, if there is one.
    fn predictor(&self, name: &str) -> Option<&PredictorParams> {
        self.named_predictors()
            .into_iter()
            .find(|(n, _)| n == name)
            .map(|(_, p)| p)
    }

    /// The predictor called `name`, mutable, if there is one.
    fn predictor_mut(&mut self, name: &str) -> Option<&mut PredictorParams> {
        self.named_predictors_mut()
            .into_iter()
            .find(|(n, _)| n == name)
            .map(|(_, p)| p)
    }

    /// Every predictor's demos, instructions and field metadata in DSPy's state format
    /// (`dump_state()`); see [`super::state`].
    fn dump_state(&self) -> serde_json::Value {
        super::state::dump_state(self)
    }

    /// Applies a state from [`Module::dump_state`] or DSPy's `dump_state()`; nothing changes
    /// when it fails. See [`super::state::load_state`].
    fn load_state(&mut self, state: &serde_json::Value) -> Result<(), super::StateError> {
        super::state::load_state(self, state)
    }

    /// Saves the parameters to a `.json` file DSPy 3.4.1 can `load` (DSPy's `save`).
    fn save(&self, path: impl AsRef<std::path::Path>) -> Result<(), super::StateError>
    where
        Self: Sized,
    {
        super::state::save(self, path.as_ref())
    }

    /// Loads parameters saved by [`Module::save`] or by DSPy's `save` (DSPy's `load`).
    fn load(&mut self, path: impl AsRef<std::path::Path>) -> Result<(), super::StateError>
    where
        Self: Sized,
    {
        super::state::load(self, path.as_ref())
    }
}

/// Implements [`Module`] for a wrapper by visiting its fields:
///
/// - `delegate_module!(impl[P: Module, F] Map<P, F> => inner);` visits one field under the same
///   path (the wrapper adds no name);
/// - `delegate_module!(impl[P: Module, R] BestOfN<P, R> => module as "module");` visits fields,
///   in order, each under its own name (`path.module`, or `module` at the root).
///
/// Bounds the generics cannot carry go in `where [...]` after the type.
macro_rules! delegate_module {
    (impl[$($generics:tt)*] $ty:ty $(where [$($bounds:tt)*])? => $field:ident) => {
        impl<$($generics)*> $crate::program::Module for $ty $(where $($bounds)*)? {
            fn visit_predictors<'a>(
                &'a self,
                path: &str,
                visit: &mut dyn FnMut(String, &'a $crate::program::PredictorParams),
            ) {
                $crate::program::Module::visit_predictors(&self.$field, path, visit);
            }

            fn visit_predictors_mut<'a>(
                &'a mut self,
                path: &str,
                visit: &mut dyn FnMut(String, &'a mut $crate::program::PredictorParams),
            ) {
                $crate::program::Module::visit_predictors_mut(&mut self.$field, path, visit);
            }

            fn visit_other_state(
                &self,
                path: &str,
                visit: &mut dyn FnMut(String, serde_json::Value),
            ) {
                $crate::program::Module::visit_other_state(&self.$field, path, visit);
            }

            fn load_other_state(
                &mut self,
                path: &str,
                state: &serde_json::Map<String, serde_json::Value>,
                apply: bool,
            ) -> Result<(), $crate::program::StateError> {
                $crate::program::Module::load_other_state(&mut self.$field, path, state, apply)
            }
        }
    };
    (
        impl[$($generics:tt)*] $ty:ty $(where [$($bounds:tt)*])? =>
        $($field:ident as $name:literal),+ $(,)?
    ) => {
        impl<$($generics)*> $crate::program::Module for $ty $(where $($bounds)*)? {
            fn visit_predictors<'a>(
                &'a self,
                path: &str,
                visit: &mut dyn FnMut(String, &'a $crate::program::PredictorParams),
            ) {
                $(
                    $crate::program::Module::visit_predictors(
                        &self.$field,
                        &$crate::program::join_path(path, $name),
                        visit,
                    );
                )+
            }

            fn visit_predictors_mut<'a>(
                &'a mut self,
                path: &str,
                visit: &mut dyn FnMut(String, &'a mut $crate::program::PredictorParams),
            ) {
                $(
                    $crate::program::Module::visit_predictors_mut(
                        &mut self.$field,
                        &$crate::program::join_path(path, $name),
                        visit,
                    );
                )+
            }

            fn visit_other_state(
                &self,
                path: &str,
                visit: &mut dyn FnMut(String, serde_json::Value),
            ) {
                $(
                    $crate::program::Module::visit_other_state(
                        &self.$field,
                        &$crate::program::join_path(path, $name),
                        visit,
                    );
                )+
            }

            fn load_other_state(
                &mut self,
                path: &str,
                state: &serde_json::Map<String, serde_json::Value>,
                apply: bool,
            ) -> Result<(), $crate::program::StateError> {
                $(
                    $crate::program::Module::load_other_state(
                        &mut self.$field,
                        &$crate::program::join_path(path, $name),
                        state,
                        apply,
                    )?;
                )+
                Ok(())
            }
        }
    };
}
pub(crate) use delegate_module;

/// `path.name`, or `name` at the root: how DSPy names nested predictors.
pub fn join_path(path: &str, name: &str) -> String {
    if path.is_empty() {
        name.to_string()
    } else {
        format!("{path}.{name}")
    }
}

impl Module for PredictorParams {
    fn visit_predictors<'a>(
        &'a self,
        path: &str,
        visit: &mut dyn FnMut(String, &'a PredictorParams),
    ) {
        visit(leaf_name(path), self);
    }

    fn visit_predictors_mut<'a>(
        &'a mut self,
        path: &str,
        visit: &mut dyn FnMut(String, &'a mut PredictorParams),
    ) {
        visit(leaf_name(path), self);
    }
}

/// A predictor at the root of a program is called `self`, as in DSPy.
fn leaf_name(path: &str) -> String {
    if path.is_empty() {
        "self".to_string()
    } else {
        path.to_string()
    }
}

impl<T: Module> Module for Vec<T> {
    fn visit_predictors<'a>(
        &'a self,
        path: &str,
        visit: &mut dyn FnMut(String, &'a PredictorParams),
    ) {
        for (i, item) in self.iter().enumerate() {
            item.visit_predictors(&format!("{path}[{i}]"), visit);
        }
    }

    fn visit_predictors_mut<'a>(
        &'a mut self,
        path: &str,
        visit: &mut dyn FnMut(String, &'a mut PredictorParams),
    ) {
        for (i, item) in self.iter_mut().enumerate() {
            item.visit_predictors_mut(&format!("{path}[{i}]"), visit);
        }
    }

    fn visit_other_state(&self, path: &str, visit: &mut dyn FnMut(String, serde_json::Value)) {
        for (i, item) in self.iter().enumerate() {
            item.visit_other_state(&format!("{path}[{i}]"), visit);
        }
    }

    fn load_other_state(
        &mut self,
        path: &str,
        state: &serde_json::Map<String, serde_json::Value>,
        apply: bool,
    ) -> Result<(), super::StateError> {
        for (i, item) in self.iter_mut().enumerate() {
            item.load_other_state(&format!("{path}[{i}]"), state, apply)?;
        }
        Ok(())
    }
}

impl<T: Module> Module for Option<T> {
    fn visit_predictors<'a>(
        &'a self,
        path: &str,
        visit: &mut dyn FnMut(String, &'a PredictorParams),
    ) {
        if let Some(inner) = self {
            inner.visit_predictors(path, visit);
        }
    }

    fn visit_predictors_mut<'a>(
        &'a mut self,
        path: &str,
        visit: &mut dyn FnMut(String, &'a mut PredictorParams),
    ) {
        if let Some(inner) = self {
            inner.visit_predictors_mut(path, visit);
        }
    }

    fn visit_other_state(&self, path: &str, visit: &mut dyn FnMut(String, serde_json::Value)) {
        if let Some(inner) = self {
            inner.visit_other_state(path, visit);
        }
    }

    fn load_other_state(
        &mut self,
        path: &str,
        state: &serde_json::Map<String, serde_json::Value>,
        apply: bool,
    ) -> Result<(), super::StateError> {
        match self {
            Some(inner) => inner.load_other_state(path, state, apply),
            None => Ok(()),
        }
    }
}

impl<T: Module + ?Sized> Module for Box<T> {
    fn visit_predictors<'a>(
        &'a self,
        path: &str,
        visit: &mut dyn FnMut(String, &'a PredictorParams),
    ) {
        (**self).visit_predictors(path, visit);
    }

    fn visit_predictors_mut<'a>(
        &'a mut self,
        path: &str,
        visit: &mut dyn FnMut(String, &'a mut PredictorParams),
    ) {
        (**self).visit_predictors_mut(path, visit);
    }

    fn visit_other_state(&self, path: &str, visit: &mut dyn FnMut(String, serde_json::Value)) {
        (**self).visit_other_state(path, visit);
    }

    fn load_other_state(
        &mut self,
        path: &str,
        state: &serde_json::Map<String, serde_json::Value>,
        apply: bool,
    ) -> Result<(), super::StateError> {
        (**self).load_other_state(path, state, apply)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(sig: &str) -> PredictorParams {
        PredictorParams::new(DynSignature::parse(sig).unwrap())
    }

    #[test]
    fn containers_name_their_items() {
        let mut layers = vec![params("a -> b"), params("b -> c")];
        let names: Vec<_> = layers
            .named_predictors()
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        assert_eq!(names, ["[0]", "[1]"]);
        layers
            .predictor_mut("[1]")
            .unwrap()
            .set_instructions("Second.");
        assert_eq!(layers[1].instructions(), "Second.");
        let none: Option<PredictorParams> = None;
        assert!(none.named_predictors().is_empty());
        assert_eq!(join_path("", "answer"), "answer");
        assert_eq!(
            join_path("generate_query", "predict"),
            "generate_query.predict"
        );
    }
}
