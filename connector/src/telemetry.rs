//! Logging and traces: human-readable lines on a terminal, JSON lines with `--log-format json`; with
//! `traces.otlp_endpoint` set, every span also goes to an OpenTelemetry collector over OTLP/HTTP (decision 0029).
//!
//! Trace context travels as W3C `traceparent`: read from every incoming request ([`adopt`]) and written on every
//! outgoing DSP, DCP and data plane request ([`traced`]), so that one negotiation can be followed across connectors.

use std::io::IsTerminal;
use std::sync::OnceLock;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{WithExportConfig, WithHttpConfig as _};
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

use crate::config::{LogFormat, OtlpProtocol, TracesConfig};

/// The tracer provider, once traces are exported: flushed at shutdown.
static PROVIDER: OnceLock<SdkTracerProvider> = OnceLock::new();

/// Installs the global subscriber. `RUST_LOG`, when set, wins over the configured level. Calling it again (as tests
/// that start several connectors in one process do) keeps the first subscriber.
pub fn init(level: &str, format: LogFormat) {
    init_with_traces(level, format, &TracesConfig::default());
}

/// Like [`init`], exporting spans as `traces` says.
pub fn init_with_traces(level: &str, format: LogFormat, traces: &TracesConfig) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level));
    let otel = traces.otlp_endpoint.as_ref().and_then(|endpoint| match provider(endpoint, traces) {
        Ok(provider) => {
            let tracer = provider.tracer("hanse");
            opentelemetry::global::set_text_map_propagator(
                opentelemetry_sdk::propagation::TraceContextPropagator::new(),
            );
            let _ = PROVIDER.set(provider);
            Some(tracing_opentelemetry::layer().with_tracer(tracer))
        }
        Err(error) => {
            eprintln!("traces.otlp_endpoint: cannot export to {endpoint}: {error}");
            None
        }
    });
    let registry = tracing_subscriber::registry().with(filter).with(otel);
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Human => registry.with(fmt.with_ansi(std::io::stderr().is_terminal())).try_init(),
        LogFormat::Json => registry.with(fmt.json().flatten_event(true).with_current_span(true)).try_init(),
    };
}

fn provider(endpoint: &str, traces: &TracesConfig) -> Result<SdkTracerProvider, String> {
    let protocol = match traces.protocol {
        OtlpProtocol::Protobuf => opentelemetry_otlp::Protocol::HttpBinary,
        OtlpProtocol::Json => opentelemetry_otlp::Protocol::HttpJson,
    };
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_http_client(
            reqwest::blocking::Client::builder()
                .timeout(std::time::Duration::from_secs(10))
                .build()
                .map_err(|e| e.to_string())?,
        )
        .with_protocol(protocol)
        .with_endpoint(endpoint)
        .build()
        .map_err(|e| e.to_string())?;
    let sampler = Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(traces.sample_ratio)));
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_sampler(sampler)
        .with_resource(opentelemetry_sdk::Resource::builder().with_service_name(traces.service_name.clone()).build())
        .build())
}

/// Sends the spans not yet exported (at shutdown).
pub fn flush() {
    if let Some(provider) = PROVIDER.get()
        && let Err(error) = provider.force_flush()
    {
        eprintln!("traces: cannot export the last spans: {error}");
    }
}

/// Whether spans are exported (trace context is only read and written then).
pub fn tracing_on() -> bool {
    PROVIDER.get().is_some()
}

/// Makes `span` a child of the trace context an incoming request carries (`traceparent`), if any.
pub fn adopt(span: &tracing::Span, headers: &axum::http::HeaderMap) {
    if !tracing_on() {
        return;
    }
    let parent = opentelemetry::global::get_text_map_propagator(|propagator| {
        propagator.extract(&opentelemetry_http::HeaderExtractor(headers))
    });
    let _ = span.set_parent(parent);
}

/// `request` with the current span's trace context (`traceparent`), when spans are exported.
pub fn traced(request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
    if !tracing_on() {
        return request;
    }
    let mut headers = axum::http::HeaderMap::new();
    let context = tracing::Span::current().context();
    opentelemetry::global::get_text_map_propagator(|propagator| {
        propagator.inject_context(&context, &mut opentelemetry_http::HeaderInjector(&mut headers))
    });
    request.headers(headers)
}
