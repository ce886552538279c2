//! [`TracingCallback`]: every call as `tracing` events.

use super::{Callback, EndEvent, StartEvent};

/// A callback that reports each call's start and end as `tracing` events at `DEBUG` level, with
/// target `dspex::callback` and the fields `call_id`, `parent_id` (empty at the top), `kind`
/// (`module`, `lm`, `adapter_format`, `adapter_parse`, `tool`, `evaluate`) and `name`; end
/// events add `elapsed_ms`, and `error` when the call failed. With
/// [`with_payloads`](TracingCallback::with_payloads), `inputs` and `outputs` are added as JSON.
///
/// The events are emitted on the callback's delivery thread, after the call emitted them, so
/// they sit outside the caller's spans; relate them by `call_id` and `parent_id`. Show them
/// with a subscriber filter such as `RUST_LOG=dspex::callback=debug`.
///
/// ```
/// use dspex_runtime::callback::{Callbacks, TracingCallback};
/// use dspex_runtime::settings::Settings;
///
/// // For the process: `configure(settings)`; for one scope: `with_settings(settings, fut)`.
/// let settings = Settings::new().callbacks(Callbacks::new().with(TracingCallback::new()));
/// # let _ = settings;
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct TracingCallback {
    payloads: bool,
}

impl TracingCallback {
    /// Ids, kinds, names, times and errors; no inputs or outputs.
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether to add each call's inputs and outputs as JSON (they can be long: whole prompts
    /// and completions).
    #[must_use]
    pub fn with_payloads(mut self, on: bool) -> Self {
        self.payloads = on;
        self
    }

    fn start(&self, e: &StartEvent) {
        let parent = e.parent_id.map(|p| p.to_string()).unwrap_or_default();
        if self.payloads {
            tracing::debug!(target: "dspex::callback", call_id = %e.call_id, parent_id = %parent, kind = %e.kind, name = %e.name, inputs = %e.inputs, "call started");
        } else {
            tracing::debug!(target: "dspex::callback", call_id = %e.call_id, parent_id = %parent, kind = %e.kind, name = %e.name, "call started");
        }
    }

    fn end(&self, e: &EndEvent) {
        let parent = e.parent_id.map(|p| p.to_string()).unwrap_or_default();
        let elapsed_ms = e.elapsed.as_secs_f64() * 1000.0;
        match (&e.error, self.payloads) {
            (Some(error), _) => {
                tracing::debug!(target: "dspex::callback", call_id = %e.call_id, parent_id = %parent, kind = %e.kind, name = %e.name, elapsed_ms, %error, "call failed");
            }
            (None, true) => {
                let outputs = e
                    .outputs
                    .as_ref()
                    .map(ToString::to_string)
                    .unwrap_or_default();
                tracing::debug!(target: "dspex::callback", call_id = %e.call_id, parent_id = %parent, kind = %e.kind, name = %e.name, elapsed_ms, outputs = %outputs, "call finished");
            }
            (None, false) => {
                tracing::debug!(target: "dspex::callback", call_id = %e.call_id, parent_id = %parent, kind = %e.kind, name = %e.name, elapsed_ms, "call finished");
            }
        }
    }
}

impl Callback for TracingCallback {
    fn on_module_start(&self, event: &StartEvent) {
        self.start(event);
    }
    fn on_module_end(&self, event: &EndEvent) {
        self.end(event);
    }
    fn on_lm_start(&self, event: &StartEvent) {
        self.start(event);
    }
    fn on_lm_end(&self, event: &EndEvent) {
        self.end(event);
    }
    fn on_adapter_format_start(&self, event: &StartEvent) {
        self.start(event);
    }
    fn on_adapter_format_end(&self, event: &EndEvent) {
        self.end(event);
    }
    fn on_adapter_parse_start(&self, event: &StartEvent) {
        self.start(event);
    }
    fn on_adapter_parse_end(&self, event: &EndEvent) {
        self.end(event);
    }
    fn on_tool_start(&self, event: &StartEvent) {
        self.start(event);
    }
    fn on_tool_end(&self, event: &EndEvent) {
        self.end(event);
    }
    fn on_evaluate_start(&self, event: &StartEvent) {
        self.start(event);
    }
    fn on_evaluate_end(&self, event: &EndEvent) {
        self.end(event);
    }
}
