//! [`ChainOfThought`]: Predict with a `reasoning` output first.

use super::predict::{CallConfig, DynPredict};
use crate::error::Result;
use crate::example::{Example, Prediction};
use crate::program::{Module, PredictorParams, Program, join_path};
use crate::signature::{FieldSpec, Signature, TypeSpec};
use serde::{Deserialize, Serialize};
use std::marker::PhantomData;

/// A typed output with the model's reasoning before it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reasoned<T> {
    /// The reasoning the model wrote first.
    pub reasoning: String,
    /// The signature's outputs.
    #[serde(flatten)]
    pub output: T,
}

/// DSPy's `dspy.ChainOfThought`: the signature with `reasoning` prepended to the outputs (type
/// `str`, DSPy's default description), one predictor named `predict`.
pub struct ChainOfThought<S> {
    predict: DynPredict,
    _signature: PhantomData<fn() -> S>,
}

impl<S> Clone for ChainOfThought<S> {
    fn clone(&self) -> Self {
        ChainOfThought {
            predict: self.predict.clone(),
            _signature: PhantomData,
        }
    }
}

impl<S> std::fmt::Debug for ChainOfThought<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChainOfThought")
            .field("predict", &self.predict)
            .finish()
    }
}

impl<S: Signature> Default for ChainOfThought<S> {
    fn default() -> Self {
        Self::new()
    }
}

impl<S: Signature> ChainOfThought<S> {
    /// A chain of thought over `S`.
    pub fn new() -> Self {
        let signature = S::signature()
            .prepend(FieldSpec::output("reasoning", TypeSpec::Str))
            // A signature with a `reasoning` output already cannot take another; keep it.
            .unwrap_or_else(|_| S::signature().clone());
        ChainOfThought {
            predict: DynPredict::new(signature),
            _signature: PhantomData,
        }
    }

    /// The same module with these defaults for every call.
    #[must_use]
    pub fn with_config(mut self, config: CallConfig) -> Self {
        self.predict = self.predict.with_config(config);
        self
    }

    /// The inner predictor's parameters.
    pub fn params(&self) -> &PredictorParams {
        self.predict.params()
    }

    /// The inner predictor's parameters, to change instructions or demos.
    pub fn params_mut(&mut self) -> &mut PredictorParams {
        self.predict.params_mut()
    }

    /// Runs on `input` with per-call overrides.
    pub async fn forward_with(
        &self,
        input: S::Input,
        config: &CallConfig,
    ) -> Result<Reasoned<S::Output>> {
        let prediction: Prediction = self
            .predict
            .call_with(&Example::from_typed(&input)?, config)
            .await?;
        Ok(prediction.to_typed()?)
    }
}

impl<S: Signature> Program for ChainOfThought<S> {
    type Input = S::Input;
    type Output = Reasoned<S::Output>;

    async fn forward(&self, input: S::Input) -> Result<Self::Output> {
        self.forward_with(input, &CallConfig::default()).await
    }
}

impl<S> Module for ChainOfThought<S> {
    fn visit_predictors<'a>(
        &'a self,
        path: &str,
        visit: &mut dyn FnMut(String, &'a PredictorParams),
    ) {
        self.predict
            .visit_predictors(&join_path(path, "predict"), visit);
    }

    fn visit_predictors_mut<'a>(
        &'a mut self,
        path: &str,
        visit: &mut dyn FnMut(String, &'a mut PredictorParams),
    ) {
        self.predict
            .visit_predictors_mut(&join_path(path, "predict"), visit);
    }
}
