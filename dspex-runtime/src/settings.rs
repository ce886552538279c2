//! Settings: a default LM and adapter for the process, overridable per task and per call — DSPy's
//! `dspy.configure` and `dspy.context`, without thread-unsafe globals.
//!
//! [`configure`] sets the process defaults (behind a lock, read by cloning `Arc`s).
//! [`with_settings`] runs a future with overrides that apply to it and everything it awaits;
//! other tasks are unaffected, so concurrent programs can use different LMs safely.
//! Task-locals do not follow `tokio::spawn`: carry them with [`Settings::current`] and
//! [`with_settings`].

use crate::adapter::Adapter;
use crate::lm::LanguageModel;
use std::future::Future;
use std::sync::{Arc, RwLock};

/// The settings in effect: each field is `None` when not set at that level.
#[derive(Clone, Default)]
pub struct Settings {
    /// The LM modules call.
    pub lm: Option<Arc<dyn LanguageModel>>,
    /// The adapter modules format and parse with.
    pub adapter: Option<Arc<dyn Adapter>>,
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings")
            .field("lm", &self.lm.as_ref().map(|lm| lm.model().to_string()))
            .field("adapter", &self.adapter.as_ref().map(|a| a.name()))
            .finish()
    }
}

impl Settings {
    /// No settings.
    pub fn new() -> Self {
        Self::default()
    }

    /// With this LM.
    #[must_use]
    pub fn lm(mut self, lm: impl LanguageModel + 'static) -> Self {
        self.lm = Some(Arc::new(lm));
        self
    }

    /// With this shared LM.
    #[must_use]
    pub fn lm_arc(mut self, lm: Arc<dyn LanguageModel>) -> Self {
        self.lm = Some(lm);
        self
    }

    /// With this adapter.
    #[must_use]
    pub fn adapter(mut self, adapter: impl Adapter + 'static) -> Self {
        self.adapter = Some(Arc::new(adapter));
        self
    }

    /// `self`, with the fields that `over` sets replaced.
    #[must_use]
    pub fn merged(&self, over: &Settings) -> Settings {
        Settings {
            lm: over.lm.clone().or_else(|| self.lm.clone()),
            adapter: over.adapter.clone().or_else(|| self.adapter.clone()),
        }
    }

    /// The settings in effect here: task overrides over the process defaults.
    pub fn current() -> Settings {
        let global = GLOBAL.read().unwrap_or_else(|e| e.into_inner()).clone();
        match SCOPED.try_with(Clone::clone) {
            Ok(scoped) => global.merged(&scoped),
            Err(_) => global,
        }
    }
}

static GLOBAL: RwLock<Settings> = RwLock::new(Settings {
    lm: None,
    adapter: None,
});

tokio::task_local! {
    static SCOPED: Settings;
}

/// Sets the process-wide defaults (`dspy.configure`): the fields `settings` sets replace the
/// current ones.
pub fn configure(settings: Settings) {
    let mut global = GLOBAL.write().unwrap_or_else(|e| e.into_inner());
    *global = global.merged(&settings);
}

/// Runs `fut` with `overrides` on top of the settings in effect (`with dspy.context(...)`). The
/// overrides hold for `fut` only, nested calls stack, and other tasks never see them.
pub async fn with_settings<F: Future>(overrides: Settings, fut: F) -> F::Output {
    let scoped = match SCOPED.try_with(Clone::clone) {
        Ok(outer) => outer.merged(&overrides),
        Err(_) => overrides,
    };
    SCOPED.scope(scoped, fut).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lm::ScriptedLM;

    fn model() -> Option<String> {
        Settings::current().lm.map(|lm| lm.model().to_string())
    }

    #[tokio::test]
    async fn scoped_overrides_stack_and_stay_in_their_task() {
        // Only this test touches the process defaults.
        configure(Settings::new().lm(ScriptedLM::new(["g"])));
        assert_eq!(model().as_deref(), Some("scripted"));
        let named = |name: &str| {
            let lm = crate::lm::LM::builder(format!("openai/{name}"))
                .api_base("http://127.0.0.1:9/v1")
                .cache(false)
                .build()
                .unwrap();
            Settings::new().lm(lm)
        };
        let inner = with_settings(named("outer"), async {
            let outer = model();
            let nested = with_settings(named("inner"), async { model() }).await;
            (outer, nested, model())
        })
        .await;
        assert_eq!(inner.0.as_deref(), Some("openai/outer"));
        assert_eq!(inner.1.as_deref(), Some("openai/inner"));
        assert_eq!(inner.2.as_deref(), Some("openai/outer"));
        assert_eq!(model().as_deref(), Some("scripted"));
        // A concurrent task does not see another task's override.
        let other = tokio::spawn(async { model() });
        let _ = with_settings(named("x"), async { tokio::task::yield_now().await }).await;
        assert_eq!(other.await.unwrap().as_deref(), Some("scripted"));
    }
}
