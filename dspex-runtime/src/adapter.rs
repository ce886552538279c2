//! Adapters: DSPy's prompt formats and their parsers (`dspex_core::adapter`, re-exported here
//! whole), and [`TwoStepAdapter`], which reads its outputs with a second LM and so lives with
//! the LM layer's users.

#[doc(inline)]
pub use dspex_core::adapter::*;

use crate::error::Error;
use crate::example::Example;
use crate::lm::{LanguageModel, Message};
use crate::module::CallConfig;
use crate::signature::DynSignature;
use serde_json::{Map, Value};
use std::fmt;
use std::sync::Arc;
use two_step::{ExtractFuture, Extractor};

/// DSPy's `dspy.TwoStepAdapter`: the main LM gets a free-form prompt (the task, the inputs as
/// `name: value` lines) and answers as it likes; a second, usually smaller, LM reads the output
/// fields from that answer through a ChatAdapter call of the extraction signature (`text` → the
/// outputs). Useful with reasoning models, which struggle with structured formats.
///
/// As in DSPy, the extraction call is a plain ChatAdapter call — with its JSONAdapter retry when
/// the answer does not parse — and not a traced predictor, so optimizers cannot tune it. A
/// failure to read the fields is an [`AdapterError::Parse`] naming `TwoStepAdapter` and the main
/// LM's completion; an LM error of the extraction call is returned as it is. Streaming
/// (`Predict::stream`) needs a parser and fails with such an error.
///
/// ```
/// use dspex_runtime::adapter::TwoStepAdapter;
/// use dspex_runtime::lm::ScriptedLM;
/// use dspex_runtime::module::{CallConfig, DynPredict};
/// use dspex_runtime::{DynSignature, Example};
/// use serde_json::json;
///
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let main = ScriptedLM::new(["Each cat has 4 legs, so 12 legs in total."]);
/// let extraction = ScriptedLM::from_fields([json!({"answer": 12, "unit": "legs"})]);
/// let predict = DynPredict::new(DynSignature::parse("question -> answer: int, unit")?)
///     .with_config(CallConfig::new().lm(main).adapter(TwoStepAdapter::new(extraction)));
/// let out = predict.call(&Example::new().with("question", "Legs of 3 cats?")).await?;
/// assert_eq!(out.get("answer"), Some(&json!(12)));
/// # Ok::<(), dspex_runtime::Error>(())
/// # }).unwrap();
/// ```
#[derive(Clone)]
pub struct TwoStepAdapter {
    extraction: Arc<dyn LanguageModel>,
}

impl TwoStepAdapter {
    /// A TwoStepAdapter whose outputs are read by `extraction_lm`.
    pub fn new(extraction_lm: impl LanguageModel + 'static) -> Self {
        TwoStepAdapter {
            extraction: Arc::new(extraction_lm),
        }
    }

    /// [`new`](TwoStepAdapter::new) with an LM already shared.
    pub fn from_arc(extraction_lm: Arc<dyn LanguageModel>) -> Self {
        TwoStepAdapter {
            extraction: extraction_lm,
        }
    }

    /// The extraction LM.
    pub fn extraction_lm(&self) -> &Arc<dyn LanguageModel> {
        &self.extraction
    }
}

impl fmt::Debug for TwoStepAdapter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TwoStepAdapter")
            .field("extraction_lm", &self.extraction.model())
            .finish()
    }
}

impl Adapter for TwoStepAdapter {
    fn name(&self) -> &'static str {
        two_step::NAME
    }

    fn format(
        &self,
        signature: &DynSignature,
        demos: &[Example],
        inputs: &Example,
    ) -> Result<Vec<Message>, AdapterError> {
        two_step::format(signature, demos, inputs)
    }

    /// Always an error: the outputs are read by the extraction LM, which a module call runs.
    fn parse(
        &self,
        _signature: &DynSignature,
        completion: &str,
    ) -> Result<Map<String, Value>, AdapterError> {
        Err(two_step::parse_needs_extraction(completion))
    }

    fn extractor(&self) -> Option<&dyn Extractor> {
        Some(self)
    }
}

impl Extractor for TwoStepAdapter {
    fn extract<'a>(
        &'a self,
        signature: &'a DynSignature,
        completion: &'a str,
    ) -> ExtractFuture<'a> {
        Box::pin(async move {
            let extractor = two_step::extractor_signature(signature)?;
            let inputs = Example::new().with("text", completion);
            let result = crate::module::predict::run_with_fallback(
                &*self.extraction,
                &ChatAdapter,
                &CallConfig::default(),
                &extractor,
                &[],
                &inputs,
            )
            .await;
            match result {
                Ok(prediction) => Ok(prediction.into_map()),
                Err(
                    e
                    @ (Error::Adapter(AdapterError::Parse { .. }) | Error::AdapterFallback { .. }),
                ) => Err(Box::new(Error::Adapter(AdapterError::Parse {
                    adapter: two_step::NAME,
                    field: None,
                    message: format!("Failed to parse response from the original completion: {e}"),
                    completion: completion.to_string(),
                }))
                    as Box<dyn std::error::Error + Send + Sync>),
                Err(e) => Err(Box::new(e) as Box<dyn std::error::Error + Send + Sync>),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lm::ScriptedLM;

    #[tokio::test]
    async fn an_unreadable_answer_is_a_two_step_parse_error_with_the_main_completion() {
        let main = ScriptedLM::new(["twelve legs"]);
        let extraction = ScriptedLM::new(["nothing useful", "still nothing"]);
        let predict =
            crate::module::DynPredict::new(DynSignature::parse("question -> answer: int").unwrap())
                .with_config(
                    CallConfig::new()
                        .lm(main)
                        .adapter(TwoStepAdapter::new(extraction.clone())),
                );
        let err = predict
            .call(&Example::new().with("question", "Legs?"))
            .await
            .unwrap_err();
        match err {
            Error::Adapter(AdapterError::Parse {
                adapter,
                completion,
                message,
                ..
            }) => {
                assert_eq!(adapter, "TwoStepAdapter");
                assert_eq!(completion, "twelve legs");
                assert!(message.starts_with("Failed to parse response"), "{message}");
            }
            other => panic!("{other:?}"),
        }
        // The extraction call retried with the JSONAdapter, as ChatAdapter calls do.
        assert_eq!(extraction.calls(), 2);
    }

    #[tokio::test]
    async fn the_extraction_lms_own_failure_is_returned_as_it_is() {
        let main = ScriptedLM::new(["twelve legs"]);
        let extraction = ScriptedLM::new(Vec::<String>::new());
        let predict =
            crate::module::DynPredict::new(DynSignature::parse("question -> answer: int").unwrap())
                .with_config(
                    CallConfig::new()
                        .lm(main)
                        .adapter(TwoStepAdapter::new(extraction)),
                );
        let err = predict
            .call(&Example::new().with("question", "Legs?"))
            .await
            .unwrap_err();
        assert!(matches!(err, Error::Lm(_)), "{err:?}");
    }
}
