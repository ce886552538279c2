//! [`CallConfig`]: the LM, adapter and sampling parameters of a predictor or of one call. It
//! lives with the settings (whose call defaults are one) rather than with the modules that use
//! it, so the settings never name the module layer; `dspex::module::CallConfig` is the same type.

use crate::adapter::Adapter;
use crate::lm::LanguageModel;
use serde_json::{Map, Value};
use std::sync::Arc;

/// The LM, adapter and sampling parameters for a predictor or one call. Unset fields fall back
/// to the predictor's config, then to the settings in effect ([`crate::settings`]), then to the
/// LM's own defaults.
#[derive(Clone, Default)]
pub struct CallConfig {
    /// The LM to call.
    pub lm: Option<Arc<dyn LanguageModel>>,
    /// The adapter to format and parse with (default: `ChatAdapter`).
    pub adapter: Option<Arc<dyn Adapter>>,
    /// Sampling temperature.
    pub temperature: Option<f64>,
    /// Most tokens to generate.
    pub max_tokens: Option<u32>,
    /// Completions wanted; `n > 1` returns all of them.
    pub n: Option<u32>,
    /// Distinguishes deliberate resamples (part of the cache key, never sent).
    pub rollout_id: Option<u64>,
    /// Other provider parameters.
    pub extra: Map<String, Value>,
}

impl std::fmt::Debug for CallConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CallConfig")
            .field("lm", &self.lm.as_ref().map(|lm| lm.model().to_string()))
            .field("adapter", &self.adapter.as_ref().map(|a| a.name()))
            .field("temperature", &self.temperature)
            .field("max_tokens", &self.max_tokens)
            .field("n", &self.n)
            .field("rollout_id", &self.rollout_id)
            .field("extra", &self.extra)
            .finish()
    }
}

impl CallConfig {
    /// Nothing set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Call this LM.
    #[must_use]
    pub fn lm(mut self, lm: impl LanguageModel + 'static) -> Self {
        self.lm = Some(Arc::new(lm));
        self
    }

    /// Format and parse with this adapter.
    #[must_use]
    pub fn adapter(mut self, adapter: impl Adapter + 'static) -> Self {
        self.adapter = Some(Arc::new(adapter));
        self
    }

    /// Sample at this temperature.
    #[must_use]
    pub fn temperature(mut self, t: f64) -> Self {
        self.temperature = Some(t);
        self
    }

    /// Generate at most this many tokens.
    #[must_use]
    pub fn max_tokens(mut self, n: u32) -> Self {
        self.max_tokens = Some(n);
        self
    }

    /// Ask for `n` completions.
    #[must_use]
    pub fn n(mut self, n: u32) -> Self {
        self.n = Some(n);
        self
    }

    /// `self`, with what `over` sets replacing it.
    #[must_use]
    pub fn merged(&self, over: &CallConfig) -> CallConfig {
        let mut extra = self.extra.clone();
        extra.extend(over.extra.iter().map(|(k, v)| (k.clone(), v.clone())));
        CallConfig {
            lm: over.lm.clone().or_else(|| self.lm.clone()),
            adapter: over.adapter.clone().or_else(|| self.adapter.clone()),
            temperature: over.temperature.or(self.temperature),
            max_tokens: over.max_tokens.or(self.max_tokens),
            n: over.n.or(self.n),
            rollout_id: over.rollout_id.or(self.rollout_id),
            extra,
        }
    }
}
