//! OpenTelemetry export (feature `otel`): the spans of [`telemetry`](super) through a
//! `tracing-opentelemetry` layer, and the [metrics](super::metric) through an OTel meter
//! provider, both to an OTLP endpoint over gRPC or HTTP/protobuf.
//!
//! - [`init`] — installs the layer as the process's `tracing` subscriber and the meter
//!   provider as the global one; returns an [`OtelGuard`] that flushes and shuts both down
//!   when dropped.
//! - [`layer`] — the layer and the guard, for a subscriber of your own (with a `fmt` layer,
//!   an `EnvFilter`, …).
//! - [`OtelConfig`] — endpoint, [`Protocol`], service name, content capture, export intervals.
//!   Unset, the endpoint, protocol and service name come from the standard environment
//!   variables `OTEL_EXPORTER_OTLP_ENDPOINT` (and the per-signal
//!   `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` / `…_METRICS_ENDPOINT`), `OTEL_EXPORTER_OTLP_PROTOCOL`
//!   (`grpc` or `http/protobuf`, the default) and `OTEL_SERVICE_NAME`
//!   (`OTEL_RESOURCE_ATTRIBUTES` is read too).
//!
//! A collector that is down or slow never fails or slows a call: spans and metrics are queued
//! and exported by background threads; a failed export is dropped and reported through
//! `tracing` (targets `opentelemetry_sdk` and `opentelemetry_otlp`; at shutdown, as a warning
//! of target `dspex::telemetry`), which [`init`] prints on stderr.
//!
//! ```no_run
//! use dspex_runtime::telemetry::otel::{self, OtelConfig, Protocol};
//!
//! # async fn run() -> Result<(), otel::OtelError> {
//! let _guard = otel::init(
//!     OtelConfig::new()
//!         .endpoint("http://localhost:4318")
//!         .protocol(Protocol::HttpProtobuf)
//!         .service_name("qa-service"),
//! )?;
//! // … run programs: their spans and metrics go to the collector …
//! # Ok(()) }
//! // Dropping the guard flushes what is left.
//! ```
//!
//! With gRPC the exporter runs on the tokio runtime it was made in: call [`init`] or [`layer`]
//! inside a runtime, keep that runtime alive while the guard is, and drop the guard on a
//! multi-threaded runtime or outside any (its final flush waits for that runtime's tasks).

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{
    MetricExporter, SpanExporter, WithExportConfig as _, WithHttpConfig as _,
};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::metrics::{PeriodicReader, SdkMeterProvider};
use opentelemetry_sdk::trace::SdkTracerProvider;
use std::time::Duration;
use tracing_subscriber::Layer;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt as _;

/// The OTLP transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Protocol {
    /// OTLP/gRPC (tonic), port 4317 by convention.
    Grpc,
    /// OTLP/HTTP with binary protobuf bodies, port 4318 by convention: the specification's
    /// default.
    HttpProtobuf,
}

impl Protocol {
    /// The protocol named by `OTEL_EXPORTER_OTLP_PROTOCOL` (`grpc`, `http/protobuf`); `None`
    /// for anything else (`http/json` is not supported).
    fn from_env() -> Option<Protocol> {
        match std::env::var("OTEL_EXPORTER_OTLP_PROTOCOL").ok()?.trim() {
            "grpc" => Some(Protocol::Grpc),
            "http/protobuf" => Some(Protocol::HttpProtobuf),
            _ => None,
        }
    }
}

/// How spans and metrics are exported. Every setting has a default; see the
/// [module docs](self) for the environment variables that fill in what is left unset.
#[derive(Debug, Clone)]
#[must_use]
pub struct OtelConfig {
    endpoint: Option<String>,
    protocol: Option<Protocol>,
    service_name: Option<String>,
    capture_content: bool,
    level: tracing::Level,
    metrics_interval: Duration,
    export_timeout: Duration,
}

impl Default for OtelConfig {
    fn default() -> Self {
        OtelConfig {
            endpoint: None,
            protocol: None,
            service_name: None,
            capture_content: false,
            level: tracing::Level::INFO,
            metrics_interval: Duration::from_secs(60),
            export_timeout: Duration::from_secs(10),
        }
    }
}

impl OtelConfig {
    /// The defaults: endpoint, protocol and service name from the environment, no content
    /// capture, spans at `INFO` and above, metrics exported every 60 s.
    pub fn new() -> Self {
        Self::default()
    }

    /// The collector's base URL (`http://localhost:4318` for HTTP, `http://localhost:4317` for
    /// gRPC). For HTTP, `/v1/traces` and `/v1/metrics` are appended. Unset:
    /// `OTEL_EXPORTER_OTLP_ENDPOINT`, else the protocol's localhost default.
    pub fn endpoint(mut self, url: impl Into<String>) -> Self {
        self.endpoint = Some(url.into());
        self
    }

    /// The transport. Unset: `OTEL_EXPORTER_OTLP_PROTOCOL`, else HTTP/protobuf.
    pub fn protocol(mut self, protocol: Protocol) -> Self {
        self.protocol = Some(protocol);
        self
    }

    /// The `service.name` resource attribute. Unset: `OTEL_SERVICE_NAME`, else the SDK's
    /// default (`unknown_service`).
    pub fn service_name(mut self, name: impl Into<String>) -> Self {
        self.service_name = Some(name.into());
        self
    }

    /// Whether spans carry content: the LM calls' messages and completions
    /// (`gen_ai.input.messages`, `gen_ai.output.messages`) and the tools' arguments and
    /// results. Off by default; API keys are never exported either way. Sets
    /// [`set_capture_content`](super::set_capture_content) for the process while the guard
    /// lives.
    pub fn capture_content(mut self, on: bool) -> Self {
        self.capture_content = on;
        self
    }

    /// The least severe span level exported (`INFO` by default: every span of the
    /// [span tree](super#the-span-tree); `DEBUG` adds the LM attempts and retrievers).
    pub fn level(mut self, level: tracing::Level) -> Self {
        self.level = level;
        self
    }

    /// How often metrics are exported (60 s by default; the guard exports the rest when it
    /// is dropped).
    pub fn metrics_interval(mut self, interval: Duration) -> Self {
        self.metrics_interval = interval;
        self
    }

    /// How long one export may take before it is abandoned (10 s by default).
    pub fn export_timeout(mut self, timeout: Duration) -> Self {
        self.export_timeout = timeout;
        self
    }

    fn resolved_protocol(&self) -> Protocol {
        self.protocol
            .or_else(Protocol::from_env)
            .unwrap_or(Protocol::HttpProtobuf)
    }
}

/// Why the exporter could not be set up. Failures of the export itself are never errors of
/// calls; they are logged.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OtelError {
    /// An exporter could not be built (an invalid endpoint, …).
    #[error("the OTLP {signal} exporter could not be built: {source}")]
    Exporter {
        /// `traces` or `metrics`.
        signal: &'static str,
        /// What failed.
        #[source]
        source: opentelemetry_otlp::ExporterBuildError,
    },
    /// The gRPC exporter was set up outside a tokio runtime.
    #[error(
        "the OTLP gRPC exporter needs a tokio runtime: call `init`/`layer` inside one \
         (or choose Protocol::HttpProtobuf)"
    )]
    NoRuntime,
    /// [`init`] found a global `tracing` subscriber already set (nothing was started); use
    /// [`layer`] to add the OpenTelemetry layer to yours.
    #[error("a global tracing subscriber is already set ({0}); add `otel::layer` to it instead")]
    SubscriberAlreadySet(String),
}

/// Keeps the exporters running: dropping it exports what is still queued (spans, and a last
/// collection of the metrics), shuts the providers down, and turns content capture off again.
/// Export failures at shutdown are logged, never raised.
#[must_use = "dropping the guard shuts the exporters down"]
pub struct OtelGuard {
    tracer_provider: SdkTracerProvider,
    meter_provider: SdkMeterProvider,
}

impl std::fmt::Debug for OtelGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OtelGuard").finish_non_exhaustive()
    }
}

impl OtelGuard {
    /// Exports the spans queued so far and the metrics collected so far, now. Blocks until
    /// both exports finished or failed (failures are logged).
    pub fn flush(&self) {
        if let Err(e) = self.tracer_provider.force_flush() {
            tracing::warn!(target: "dspex::telemetry", error = %e, "exporting the spans failed");
        }
        if let Err(e) = self.meter_provider.force_flush() {
            tracing::warn!(target: "dspex::telemetry", error = %e, "exporting the metrics failed");
        }
    }
}

impl Drop for OtelGuard {
    fn drop(&mut self) {
        if let Err(e) = self.tracer_provider.shutdown() {
            tracing::warn!(target: "dspex::telemetry", error = %e, "shutting the span exporter down failed");
        }
        if let Err(e) = self.meter_provider.shutdown() {
            tracing::warn!(target: "dspex::telemetry", error = %e, "shutting the metric exporter down failed");
        }
        dspex_lm::telemetry::reset_instruments();
        super::set_capture_content(false);
    }
}

/// Sets up the exporters and returns the `tracing` layer that feeds spans to them, with the
/// guard that keeps them running. The meter provider becomes the global one
/// (`opentelemetry::global`), which dspex's metrics report to, and content capture is set as
/// `config` says: both are process-wide, so the last `layer`/`init` whose guard lives wins. Add the layer to a subscriber of your own:
///
/// ```no_run
/// use dspex_runtime::telemetry::otel::{self, OtelConfig};
/// use tracing_subscriber::layer::SubscriberExt;
///
/// # fn run() -> Result<(), otel::OtelError> {
/// let (layer, guard) = otel::layer(OtelConfig::new().endpoint("http://localhost:4318"))?;
/// let subscriber = tracing_subscriber::registry().with(layer);
/// tracing::subscriber::set_global_default(subscriber).expect("no subscriber yet");
/// # drop(guard); Ok(()) }
/// ```
///
/// # Errors
///
/// [`OtelError::Exporter`] for an endpoint the exporter refuses; [`OtelError::NoRuntime`]
/// for gRPC outside a tokio runtime.
pub fn layer<S>(
    config: OtelConfig,
) -> Result<(impl Layer<S> + Send + Sync + 'static, OtelGuard), OtelError>
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a> + Send + Sync,
{
    let (layer, providers) = build(&config)?;
    Ok((layer, providers.activate(config.capture_content)))
}

/// The exporters' providers, built but not yet process-wide.
struct Providers {
    tracer_provider: SdkTracerProvider,
    meter_provider: SdkMeterProvider,
}

impl Providers {
    /// Makes the meter provider the global one and sets content capture.
    fn activate(self, capture_content: bool) -> OtelGuard {
        opentelemetry::global::set_meter_provider(self.meter_provider.clone());
        dspex_lm::telemetry::reset_instruments();
        super::set_capture_content(capture_content);
        OtelGuard {
            tracer_provider: self.tracer_provider,
            meter_provider: self.meter_provider,
        }
    }

    /// Stops the exporters of providers that were never activated.
    fn discard(self) {
        let _ = self.tracer_provider.shutdown();
        let _ = self.meter_provider.shutdown();
    }
}

/// The exporters, their providers and the layer, with no process-wide effect yet.
fn build<S>(
    config: &OtelConfig,
) -> Result<(impl Layer<S> + Send + Sync + 'static + use<S>, Providers), OtelError>
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a> + Send + Sync,
{
    let protocol = config.resolved_protocol();
    if protocol == Protocol::Grpc && tokio::runtime::Handle::try_current().is_err() {
        return Err(OtelError::NoRuntime);
    }
    let mut resource = Resource::builder();
    if let Some(name) = &config.service_name {
        resource = resource.with_service_name(name.clone());
    }
    let resource = resource.build();
    let (spans, metrics) = exporters(config, protocol)?;
    let tracer_provider = SdkTracerProvider::builder()
        .with_batch_exporter(spans)
        .with_resource(resource.clone())
        .build();
    let meter_provider = SdkMeterProvider::builder()
        .with_reader(
            PeriodicReader::builder(metrics)
                .with_interval(config.metrics_interval)
                .build(),
        )
        .with_resource(resource)
        .build();

    let tracer = tracer_provider.tracer("dspex");
    let level = config.level;
    let layer = tracing_opentelemetry::layer()
        .with_tracer(tracer)
        .with_filter(tracing_subscriber::filter::filter_fn(move |meta| {
            // The exporters' own logs stay out of the spans they export.
            *meta.level() <= level
                && !["opentelemetry", "tonic", "h2", "hyper", "reqwest", "tower"]
                    .iter()
                    .any(|t| meta.target().starts_with(t))
        }));
    Ok((
        layer,
        Providers {
            tracer_provider,
            meter_provider,
        },
    ))
}

/// [`layer`] installed as the process's global `tracing` subscriber, with a log of warnings and
/// errors on stderr (export failures among them). Keep the guard for as long as telemetry
/// should be exported. For other logging, add [`layer`] to a subscriber of your own instead.
///
/// ```no_run
/// use dspex_runtime::telemetry::otel::{self, OtelConfig};
///
/// # async fn run() -> Result<(), otel::OtelError> {
/// // OTEL_EXPORTER_OTLP_ENDPOINT / OTEL_SERVICE_NAME are honoured when left unset here.
/// let guard = otel::init(OtelConfig::new().capture_content(false))?;
/// // …
/// drop(guard); // flushes
/// # Ok(()) }
/// ```
///
/// # Errors
///
/// As [`layer`], and [`OtelError::SubscriberAlreadySet`] when the process has a global
/// subscriber already (the exporters are shut down again).
pub fn init(config: OtelConfig) -> Result<OtelGuard, OtelError> {
    let (layer, providers) = build::<tracing_subscriber::Registry>(&config)?;
    let log = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_filter(tracing_subscriber::filter::LevelFilter::WARN);
    match tracing_subscriber::registry()
        .with(layer)
        .with(log)
        .try_init()
    {
        Ok(()) => Ok(providers.activate(config.capture_content)),
        // A refused `init` leaves the running exporters, metrics and capture alone.
        Err(e) => {
            providers.discard();
            Err(OtelError::SubscriberAlreadySet(e.to_string()))
        }
    }
}

/// The exporters' blocking HTTP client, with dspex's TLS set-up
/// ([`dspex_lm::rustls_config`]: rustls on ring). Built on a thread of its own, as reqwest's
/// blocking client must not be built inside an async context.
fn http_client(
    timeout: Duration,
) -> Result<reqwest::blocking::Client, opentelemetry_otlp::ExporterBuildError> {
    let failed = opentelemetry_otlp::ExporterBuildError::InternalFailure;
    std::thread::spawn(move || {
        let tls = dspex_lm::rustls_config()?;
        reqwest::blocking::Client::builder()
            .tls_backend_preconfigured(tls)
            .timeout(timeout)
            .build()
            .map_err(|e| e.to_string())
    })
    .join()
    .map_err(|_| failed("the thread building the HTTP client panicked".into()))?
    .map_err(|e| failed(format!("cannot build the HTTP client: {e}")))
}

/// The span and metric exporters for `protocol`.
fn exporters(
    config: &OtelConfig,
    protocol: Protocol,
) -> Result<(SpanExporter, MetricExporter), OtelError> {
    let traces = |source| OtelError::Exporter {
        signal: "traces",
        source,
    };
    let metrics = |source| OtelError::Exporter {
        signal: "metrics",
        source,
    };
    let timeout = config.export_timeout;
    match protocol {
        Protocol::Grpc => {
            let mut spans = SpanExporter::builder().with_tonic().with_timeout(timeout);
            let mut meters = MetricExporter::builder().with_tonic().with_timeout(timeout);
            if let Some(url) = &config.endpoint {
                spans = spans.with_endpoint(url.clone());
                meters = meters.with_endpoint(url.clone());
            }
            Ok((
                spans.build().map_err(traces)?,
                meters.build().map_err(metrics)?,
            ))
        }
        Protocol::HttpProtobuf => {
            let client = http_client(timeout).map_err(traces)?;
            let mut spans = SpanExporter::builder()
                .with_http()
                .with_http_client(client.clone())
                .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
                .with_timeout(timeout);
            let mut meters = MetricExporter::builder()
                .with_http()
                .with_http_client(client)
                .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
                .with_timeout(timeout);
            if let Some(url) = &config.endpoint {
                let base = url.trim_end_matches('/');
                spans = spans.with_endpoint(format!("{base}/v1/traces"));
                meters = meters.with_endpoint(format!("{base}/v1/metrics"));
            }
            Ok((
                spans.build().map_err(traces)?,
                meters.build().map_err(metrics)?,
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_outside_a_runtime_is_an_error_not_a_panic() {
        let config = OtelConfig::new()
            .protocol(Protocol::Grpc)
            .endpoint("http://127.0.0.1:1");
        let result = layer::<tracing_subscriber::Registry>(config);
        assert!(matches!(result, Err(OtelError::NoRuntime)));
    }

    #[test]
    fn an_invalid_endpoint_is_an_error() {
        let config = OtelConfig::new()
            .protocol(Protocol::HttpProtobuf)
            .endpoint("not a url");
        let result = layer::<tracing_subscriber::Registry>(config);
        assert!(matches!(
            result,
            Err(OtelError::Exporter {
                signal: "traces",
                ..
            })
        ));
    }
}
