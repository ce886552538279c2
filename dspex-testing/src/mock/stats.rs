//! Request and fault counters: plain atomics, no lock on the hot path.

use super::fault::FaultKind;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};

/// What the mock server has served since it started (or since
/// [`MockLmServer::reset_stats`](super::MockLmServer::reset_stats)). Also served as JSON at
/// `GET /stats`. Only the API endpoints are counted (`/stats` and `/health` are not); keys with
/// a zero count are left out.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MockStats {
    /// Requests per path as sent, e.g. `"/v1/chat/completions"` (bad requests included).
    pub requests: BTreeMap<String, u64>,
    /// Injected faults per [`Fault::name`](super::Fault::name), e.g. `"status_503"`, `"hang"`.
    pub faults: BTreeMap<String, u64>,
    /// All counted requests.
    pub total: u64,
    /// The longest chain of requests each sent after the one before it was answered: the
    /// sequential waves of LM calls the clients made (a request's wave is one more than the
    /// highest wave answered before it arrived). With a fixed latency, no client can finish in
    /// less than `waves × latency`; benchmarks read it as a program's own floor. Reset with the
    /// other counters (a request in flight across a reset counts from its old wave).
    #[serde(default)]
    pub waves: u64,
}

impl MockStats {
    /// Requests to `path` (0 when none).
    pub fn requests_to(&self, path: &str) -> u64 {
        self.requests.get(path).copied().unwrap_or(0)
    }

    /// Injected faults named `name` (0 when none).
    pub fn faults_of(&self, name: &str) -> u64 {
        self.faults.get(name).copied().unwrap_or(0)
    }

    /// All injected faults.
    pub fn total_faults(&self) -> u64 {
        self.faults.values().sum()
    }
}

/// The counted API routes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Route {
    ChatV1,
    Chat,
    CompletionsV1,
    Completions,
    EmbeddingsV1,
    Embeddings,
    ModelsV1,
    Models,
    AzureChat,
    AzureCompletions,
    AzureEmbeddings,
    ResponsesV1,
    Responses,
    GeminiGenerate,
    GeminiStream,
    MessagesV1,
    Messages,
}

impl Route {
    pub(crate) const ALL: [Route; 17] = [
        Route::ChatV1,
        Route::Chat,
        Route::CompletionsV1,
        Route::Completions,
        Route::EmbeddingsV1,
        Route::Embeddings,
        Route::ModelsV1,
        Route::Models,
        Route::AzureChat,
        Route::AzureCompletions,
        Route::AzureEmbeddings,
        Route::ResponsesV1,
        Route::Responses,
        Route::GeminiGenerate,
        Route::GeminiStream,
        Route::MessagesV1,
        Route::Messages,
    ];

    pub(crate) fn path(self) -> &'static str {
        match self {
            Route::ChatV1 => "/v1/chat/completions",
            Route::Chat => "/chat/completions",
            Route::CompletionsV1 => "/v1/completions",
            Route::Completions => "/completions",
            Route::EmbeddingsV1 => "/v1/embeddings",
            Route::Embeddings => "/embeddings",
            Route::ModelsV1 => "/v1/models",
            Route::Models => "/models",
            Route::AzureChat => "/openai/deployments/{deployment}/chat/completions",
            Route::AzureCompletions => "/openai/deployments/{deployment}/completions",
            Route::AzureEmbeddings => "/openai/deployments/{deployment}/embeddings",
            Route::ResponsesV1 => "/v1/responses",
            Route::Responses => "/responses",
            Route::GeminiGenerate => "/v1beta/models/{model}:generateContent",
            Route::GeminiStream => "/v1beta/models/{model}:streamGenerateContent",
            Route::MessagesV1 => "/v1/messages",
            Route::Messages => "/messages",
        }
    }
}

/// The live counters.
pub(crate) struct Stats {
    requests: [AtomicU64; Route::ALL.len()],
    faults: Box<[AtomicU64]>,
    /// The highest wave among the requests answered so far.
    answered_wave: AtomicU64,
}

impl Stats {
    pub(crate) fn new() -> Self {
        Stats {
            requests: std::array::from_fn(|_| AtomicU64::new(0)),
            faults: (0..FaultKind::SLOTS).map(|_| AtomicU64::new(0)).collect(),
            answered_wave: AtomicU64::new(0),
        }
    }

    /// The wave of a request arriving now: one more than the highest answered.
    pub(crate) fn arrive(&self) -> u64 {
        self.answered_wave.load(Ordering::Acquire) + 1
    }

    /// A request of wave `wave` is answered.
    pub(crate) fn answered(&self, wave: u64) {
        self.answered_wave.fetch_max(wave, Ordering::AcqRel);
    }

    pub(crate) fn count_request(&self, route: Route) {
        self.requests[route as usize].fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn count_fault(&self, kind: FaultKind) {
        if let Some(counter) = self.faults.get(kind.slot()) {
            counter.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub(crate) fn snapshot(&self) -> MockStats {
        let mut stats = MockStats::default();
        for route in Route::ALL {
            let n = self.requests[route as usize].load(Ordering::Relaxed);
            if n > 0 {
                stats.requests.insert(route.path().to_owned(), n);
                stats.total += n;
            }
        }
        for code in 100..=999u16 {
            let n = self.faults[FaultKind::Status(code).slot()].load(Ordering::Relaxed);
            if n > 0 {
                stats.faults.insert(format!("status_{code}"), n);
            }
        }
        for kind in FaultKind::OTHERS {
            let n = self.faults[kind.slot()].load(Ordering::Relaxed);
            if n > 0 {
                stats.faults.insert(kind.name().to_owned(), n);
            }
        }
        stats.waves = self.answered_wave.load(Ordering::Acquire);
        stats
    }

    pub(crate) fn reset(&self) {
        for counter in self.requests.iter().chain(self.faults.iter()) {
            counter.store(0, Ordering::Relaxed);
        }
        self.answered_wave.store(0, Ordering::Release);
    }
}
