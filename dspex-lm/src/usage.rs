//! Usage accounting: per LM, and per program run like `dspy.track_usage()`.

use super::types::Usage;
use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex};

/// Prices of one model, in US dollars per million tokens.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Price {
    /// Per million prompt tokens.
    pub input_per_million: f64,
    /// Per million completion tokens.
    pub output_per_million: f64,
}

impl Price {
    /// The cost of `usage` at this price.
    pub fn cost(&self, usage: Usage) -> f64 {
        (usage.prompt_tokens as f64 * self.input_per_million
            + usage.completion_tokens as f64 * self.output_per_million)
            / 1_000_000.0
    }
}

/// What one model used.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ModelUsage {
    /// Token counts (cache hits add nothing, as in DSPy).
    pub usage: Usage,
    /// Calls answered by the provider.
    pub calls: u64,
    /// Requests sent to the provider, answered or not: every attempt of a retried call, the
    /// top-up requests of a call that got fewer choices than it asked for, a request whose call
    /// failed or was dropped while it waited. Cache hits send none. (What the provider saw, as
    /// far as the client knows; an LM without HTTP, such as `ScriptedLM`, counts one per call.)
    pub requests: u64,
    /// Calls answered from the cache.
    pub cache_hits: u64,
    /// Estimated cost in US dollars, when the LM has a price.
    pub cost_usd: Option<f64>,
}

/// Usage per model string.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct UsageReport {
    /// Keyed by model string (`openai/gpt-4o-mini`).
    pub per_model: BTreeMap<String, ModelUsage>,
}

impl UsageReport {
    /// All models together.
    pub fn total(&self) -> ModelUsage {
        let mut total = ModelUsage::default();
        for m in self.per_model.values() {
            total.usage += m.usage;
            total.calls += m.calls;
            total.requests += m.requests;
            total.cache_hits += m.cache_hits;
            total.cost_usd = match (total.cost_usd, m.cost_usd) {
                (Some(a), Some(b)) => Some(a + b),
                (a, b) => a.or(b),
            };
        }
        total
    }

    /// The entry of `model`, created empty if needed.
    fn entry(&mut self, model: &str) -> Option<&mut ModelUsage> {
        // The model is almost always known already: avoid allocating its name on every call.
        if !self.per_model.contains_key(model) {
            self.per_model
                .insert(model.to_string(), ModelUsage::default());
        }
        self.per_model.get_mut(model)
    }

    pub(crate) fn record_request(&mut self, model: &str) {
        if let Some(entry) = self.entry(model) {
            entry.requests += 1;
        }
    }

    pub(crate) fn record(
        &mut self,
        model: &str,
        usage: Usage,
        cache_hit: bool,
        price: Option<Price>,
    ) {
        let Some(entry) = self.entry(model) else {
            return;
        };
        if cache_hit {
            entry.cache_hits += 1;
            return;
        }
        entry.calls += 1;
        entry.usage += usage;
        if let Some(price) = price {
            *entry.cost_usd.get_or_insert(0.0) += price.cost(usage);
        }
    }
}

/// A shared usage counter. Clone it to share; every LM call made inside [`track_usage`] (or with
/// the tracker entered through [`UsageTracker::scope`]) is added to it.
#[derive(Debug, Clone, Default)]
pub struct UsageTracker(Arc<Mutex<UsageReport>>);

impl UsageTracker {
    /// An empty tracker.
    pub fn new() -> Self {
        Self::default()
    }

    /// What was used so far.
    pub fn report(&self) -> UsageReport {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub(crate) fn record(&self, model: &str, usage: Usage, cache_hit: bool, price: Option<Price>) {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .record(model, usage, cache_hit, price);
    }

    pub(crate) fn record_request(&self, model: &str) {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .record_request(model);
    }

    /// Runs `fut` with this tracker as the current one: LM calls made by `fut` count here. Use
    /// it to carry a tracker into tasks you spawn (task-locals do not cross `tokio::spawn`).
    pub async fn scope<F: Future>(&self, fut: F) -> F::Output {
        let mut stack = CURRENT.try_with(Clone::clone).unwrap_or_default();
        stack.push(self.clone());
        CURRENT.scope(stack, fut).await
    }

    /// The trackers of the running task, innermost last (empty outside [`track_usage`]).
    pub fn current() -> Vec<UsageTracker> {
        CURRENT.try_with(Clone::clone).unwrap_or_default()
    }
}

tokio::task_local! {
    static CURRENT: Vec<UsageTracker>;
}

/// Runs `fut` and returns its output with the LM usage it caused, like DSPy's
/// `with dspy.track_usage() as tracker:`. Nested tracking rolls up: an outer tracker also sees
/// the calls of an inner one.
pub async fn track_usage<F: Future>(fut: F) -> (F::Output, UsageReport) {
    let tracker = UsageTracker::new();
    let out = tracker.scope(fut).await;
    (out, tracker.report())
}

/// Adds a call to every tracker of the running task.
pub(crate) fn record_current(model: &str, usage: Usage, cache_hit: bool, price: Option<Price>) {
    let _ = CURRENT.try_with(|stack| {
        for tracker in stack {
            tracker.record(model, usage, cache_hit, price);
        }
    });
}

/// Adds a request sent to every tracker of the running task.
pub(crate) fn record_request_current(model: &str) {
    let _ = CURRENT.try_with(|stack| {
        for tracker in stack {
            tracker.record_request(model);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usage(p: u64, c: u64) -> Usage {
        Usage {
            prompt_tokens: p,
            completion_tokens: c,
            total_tokens: p + c,
        }
    }

    #[tokio::test]
    async fn tracks_per_model_and_nests() {
        let price = Price {
            input_per_million: 1.0,
            output_per_million: 2.0,
        };
        let (inner, outer) = track_usage(async {
            record_request_current("a");
            record_current("a", usage(10, 5), false, Some(price));
            let ((), inner) = track_usage(async {
                record_request_current("b");
                record_request_current("b");
                record_current("b", usage(1, 1), false, None);
                record_current("b", usage(100, 100), true, None);
            })
            .await;
            inner
        })
        .await;
        assert_eq!(inner.per_model["b"].calls, 1);
        assert_eq!(inner.per_model["b"].requests, 2);
        assert_eq!(outer.total().requests, 3);
        assert_eq!(inner.per_model["b"].cache_hits, 1);
        assert_eq!(inner.per_model["b"].usage, usage(1, 1));
        assert_eq!(outer.per_model.len(), 2);
        assert_eq!(outer.per_model["a"].cost_usd, Some(20.0 / 1_000_000.0));
        assert_eq!(outer.total().usage, usage(11, 6));
        // Outside any tracker nothing is recorded and nothing fails.
        record_current("c", usage(1, 1), false, None);
    }
}
