//! Telemetry: the `tracing` spans every hop opens, their attribute names, and (feature `otel`)
//! their export with OpenTelemetry.
//!
//! - [`span`] — the span names: program, module, adapter format and parse, LM call, tool,
//!   evaluation and its examples, optimizer trial, bridge request.
//! - [`attr`] / [`metric`] — attribute and metric names: the OpenTelemetry semantic conventions
//!   for generative AI where they exist (`gen_ai.*`), `dspex.*` for the rest.
//! - [`set_capture_content`] — whether prompts, completions and tool arguments go into the
//!   spans (off by default). API keys never do.
//! - `otel` (feature `otel`) — `otel::init` installs a
//!   `tracing-opentelemetry` layer with an OTLP exporter (gRPC or HTTP/protobuf) and an OTel
//!   meter provider for the metrics.
//!
//! The spans are plain `tracing` spans: without a subscriber (or with one that ignores them)
//! they cost a disabled-callsite check each, and no OpenTelemetry code is compiled without the
//! feature. Each span's OpenTelemetry name is set with the `otel.name` field (the LM call's is
//! `chat {model}`, a tool's `execute_tool {tool}`), so `tracing` subscribers see the stable
//! names of [`span`] and OpenTelemetry backends the conventional ones.
//!
//! # The span tree
//!
//! ```text
//! tracing name                            OpenTelemetry name     attributes
//! dspex.optimize.trial                    "optimize.trial"       dspex.optimize.phase, dspex.optimize.trial, dspex.score
//! └─ dspex.evaluate                       "evaluate"             dspex.evaluate.examples, dspex.score
//!    └─ dspex.evaluate.example            "evaluate.example"     dspex.example.index
//!       └─ dspex.program                  "program {name}"       dspex.program.name (ProgramExt::instrumented)
//!          └─ dspex.module                "module ReAct"         dspex.module.name
//!             ├─ dspex.module             "module Predict"
//!             │  ├─ dspex.adapter.format  "adapter.format"       dspex.adapter.name
//!             │  ├─ lm.call               "chat {model}"         gen_ai.*, server.*, dspex.lm.*, dspex.cache.hit
//!             │  └─ dspex.adapter.parse   "adapter.parse"        dspex.adapter.name, dspex.completion.index
//!             └─ dspex.tool               "execute_tool add"     gen_ai.tool.name
//! dspex.predict.stream                    "predict.stream"       a streamed call across its polls (lm.stream inside)
//! dspex.bridge.request                    "bridge.request"       dspex.bridge.op, dspex.bridge.session
//! ```

#[cfg(feature = "otel")]
pub mod otel;

pub use dspex_lm::telemetry::{attr, capture_content, metric, set_capture_content};

/// The span names (the `tracing` names; the OpenTelemetry names are in the
/// [table above](self#the-span-tree)).
pub mod span {
    /// A program made instrumented with [`ProgramExt::instrumented`](crate::ProgramExt).
    pub const PROGRAM: &str = "dspex.program";
    /// A module call (`Predict`, `ChainOfThought`, `ReAct`, `BestOfN`, `Refine`, …):
    /// `dspex.module.name`.
    pub const MODULE: &str = "dspex.module";
    /// The adapter rendering a call's messages: `dspex.adapter.name`.
    pub const ADAPTER_FORMAT: &str = "dspex.adapter.format";
    /// The adapter reading one completion: `dspex.adapter.name`.
    pub const ADAPTER_PARSE: &str = "dspex.adapter.parse";
    /// One LM call of [`LM`](crate::lm::LM), retries and cache included.
    pub const LM_CALL: &str = "lm.call";
    /// One streamed LM call, up to its first byte.
    pub const LM_STREAM: &str = "lm.stream";
    /// One streamed predictor call (`stream`, `stream_with`), across its polls:
    /// `dspex.predictor`, `dspex.lm.model`, `dspex.adapter.name`.
    pub const PREDICT_STREAM: &str = "dspex.predict.stream";
    /// One tool call: `gen_ai.tool.name`.
    pub const TOOL: &str = "dspex.tool";
    /// One evaluation: `dspex.evaluate.examples`, and `dspex.score` at the end.
    pub const EVALUATE: &str = "dspex.evaluate";
    /// One example of an evaluation: `dspex.example.index`.
    pub const EVALUATE_EXAMPLE: &str = "dspex.evaluate.example";
    /// One candidate an optimizer scores (an evaluation through the shared evaluation — COPRO,
    /// MIPROv2, InferRules and others —, a GEPA candidate on a minibatch or the valset, a SIMBA
    /// batch of rollouts): `dspex.optimize.phase`, `dspex.optimize.trial`, `dspex.score` (the
    /// mean score).
    pub const OPTIMIZE_TRIAL: &str = "dspex.optimize.trial";
    /// One request to the Python bridge's pool: `dspex.bridge.op`, `dspex.bridge.session`.
    pub const BRIDGE_REQUEST: &str = "dspex.bridge.request";
}

/// A module call's span, unnamed: [`name_module_span`] names it (the name is computed only
/// for an enabled span).
pub(crate) fn module_span() -> tracing::Span {
    tracing::info_span!(
        "dspex.module",
        otel.name = tracing::field::Empty,
        otel.status_code = tracing::field::Empty,
        dspex.module.name = tracing::field::Empty,
        error.type = tracing::field::Empty,
    )
}

/// Names a module span.
pub(crate) fn name_module_span(span: &tracing::Span, name: &str) {
    span.record("dspex.module.name", name);
    span.record(
        "otel.name",
        tracing::field::display(format_args!("module {name}")),
    );
}

/// An instrumented program's span.
pub(crate) fn program_span(name: &str) -> tracing::Span {
    tracing::info_span!(
        "dspex.program",
        otel.name = %format_args!("program {name}"),
        otel.status_code = tracing::field::Empty,
        dspex.program.name = name,
        error.type = tracing::field::Empty,
    )
}

/// The adapter's format span.
pub(crate) fn format_span(adapter: &str) -> tracing::Span {
    tracing::info_span!(
        "dspex.adapter.format",
        otel.name = "adapter.format",
        otel.status_code = tracing::field::Empty,
        dspex.adapter.name = adapter,
        error.type = tracing::field::Empty,
    )
}

/// The adapter's parse span, for completion `index`.
pub(crate) fn parse_span(adapter: &str, index: usize) -> tracing::Span {
    tracing::info_span!(
        "dspex.adapter.parse",
        otel.name = "adapter.parse",
        otel.status_code = tracing::field::Empty,
        dspex.adapter.name = adapter,
        dspex.completion.index = index as i64,
        error.type = tracing::field::Empty,
    )
}

/// A tool call's span; with content capture on, its arguments.
pub(crate) fn tool_span(
    name: &str,
    args: &serde_json::Map<String, serde_json::Value>,
) -> tracing::Span {
    let span = tracing::info_span!(
        "dspex.tool",
        otel.name = %format_args!("execute_tool {name}"),
        otel.status_code = tracing::field::Empty,
        gen_ai.operation.name = "execute_tool",
        gen_ai.tool.name = name,
        gen_ai.tool.call.arguments = tracing::field::Empty,
        gen_ai.tool.call.result = tracing::field::Empty,
        error.type = tracing::field::Empty,
    );
    if capture_content() && !span.is_disabled() {
        span.record(
            "gen_ai.tool.call.arguments",
            serde_json::Value::Object(args.clone()).to_string(),
        );
    }
    span
}

/// A tool's result on its span, with content capture on.
pub(crate) fn record_tool_result(span: &tracing::Span, result: &serde_json::Value) {
    if capture_content() && !span.is_disabled() {
        span.record("gen_ai.tool.call.result", result.to_string());
    }
}

/// A failure on `span`: its class in `error.type` and the span's status.
pub(crate) fn record_failure(span: &tracing::Span, error_type: &dyn std::fmt::Debug) {
    if !span.is_disabled() {
        span.record("error.type", tracing::field::debug(error_type));
        span.record("otel.status_code", "ERROR");
    }
}

#[cfg(test)]
mod tests {
    use super::testing::Tree;
    use super::*;

    #[test]
    fn spans_without_a_subscriber_are_disabled_and_record_nothing() {
        // Scoped: another test of this binary may have installed a global subscriber.
        tracing::subscriber::with_default(tracing::subscriber::NoSubscriber::default(), || {
            let span = tool_span("add", &serde_json::Map::new());
            assert!(span.is_disabled());
            record_failure(&span, &"x");
            record_tool_result(&span, &serde_json::json!(1));
            assert!(module_span().is_disabled());
        });
    }

    #[tokio::test]
    async fn an_optimizer_trial_holds_its_evaluation_and_the_modules_inside() {
        use crate::evaluate::answer_exact_match;
        use crate::lm::ScriptedLM;
        use crate::module::{CallConfig, DynPredict};
        use crate::optimize::JobContext;
        use tracing::instrument::WithSubscriber;
        use tracing_subscriber::layer::SubscriberExt;

        let tree = Tree::default();
        let subscriber = tracing_subscriber::registry().with(tree.clone());
        let lm = ScriptedLM::from_fields([serde_json::json!({"answer": "A0"})]).repeat_last();
        let program = DynPredict::new(crate::DynSignature::parse("question -> answer").unwrap())
            .with_config(CallConfig::new().lm(lm));
        let metric: std::sync::Arc<dyn crate::evaluate::Metric> =
            std::sync::Arc::new(answer_exact_match());
        let devset = crate::optimize::qa_trainset(2);
        let ctx = JobContext::detached();
        let score = crate::optimize::score_program(&program, &devset, &metric, 1, &ctx)
            .with_subscriber(subscriber)
            .await
            .unwrap();
        assert_eq!(score, 50.0);
        let seen = tree.0.lock().unwrap().clone();
        for edge in [
            "dspex.optimize.trial < -",
            "dspex.evaluate < dspex.optimize.trial",
            "dspex.evaluate.example < dspex.evaluate",
            "dspex.module < dspex.evaluate.example",
            "dspex.adapter.format < dspex.module",
            "dspex.adapter.parse < dspex.module",
        ] {
            assert!(seen.iter().any(|s| s == edge), "no {edge:?} in {seen:?}");
        }
    }
}

/// Span-tree capture for the unit tests of other modules.
#[cfg(test)]
pub(crate) mod testing {
    /// Records each new span as `name < parent name`.
    #[derive(Clone, Default)]
    pub(crate) struct Tree(pub(crate) std::sync::Arc<std::sync::Mutex<Vec<String>>>);

    impl<S> tracing_subscriber::Layer<S> for Tree
    where
        S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    {
        fn on_new_span(
            &self,
            _: &tracing::span::Attributes<'_>,
            id: &tracing::span::Id,
            ctx: tracing_subscriber::layer::Context<'_, S>,
        ) {
            let Some(span) = ctx.span(id) else { return };
            let parent = span.parent().map(|p| p.name()).unwrap_or("-");
            self.0
                .lock()
                .unwrap()
                .push(format!("{} < {parent}", span.name()));
        }
    }
}
