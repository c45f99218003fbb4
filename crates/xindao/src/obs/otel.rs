//! Optional OpenTelemetry trace export (`otel_endpoint`): the spans the server already opens for its log
//! lines (`http`, `ws`, `req`, `bus`) and the debug-level ones only the exporter asks for (`commit`,
//! `fanout`) become one span tree per request, sent over OTLP/HTTP (protobuf) to Jaeger, Tempo or a collector.
//!
//! Why here and like this: the tree must cross three hand-offs that `tracing` alone cannot follow (a proxy
//! before us, the store's writer task, another node behind the bus), so W3C trace contexts (`traceparent`)
//! are read from HTTP headers, carried beside a commit ([`Parent`]) and written into bus envelopes. When export
//! is off, nothing of it runs: no layer is installed, the debug spans stay disabled at their callsites, and every
//! function here returns after one relaxed atomic load.
//!
//! Spans are batched on the tokio runtime (a bounded queue: past it, spans are dropped, never waited for)
//! and sent with the server's own reqwest client; a collector that is down costs a warning every 10 s.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use axum::http::HeaderMap;
use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
use opentelemetry::Context;
use opentelemetry_http::{Bytes, HttpClient, HttpError, Request, Response};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::span_processor_with_async_runtime::BatchSpanProcessor;
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};
use opentelemetry_sdk::Resource;
use tracing::level_filters::LevelFilter;
use tracing::{Level, Span, Subscriber};
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::filter::filter_fn;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::Layer;

use crate::config::Config;
use crate::error::{Error, Result};

/// Whether this process exports traces (set once, when the layer is built).
static EXPORTING: AtomicBool = AtomicBool::new(false);

/// Longest wait for the collector's answer to one batch.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);
/// Most bytes of a collector's answer that are read (it is a small protobuf message).
const MAX_ANSWER_BYTES: usize = 64 * 1024;
/// Export failures are warned about at most this often.
const WARN_EVERY_MS: u64 = 10_000;

/// Whether spans are exported.
pub fn exporting() -> bool {
    EXPORTING.load(Ordering::Relaxed)
}

/// The running export: flush it at shutdown ([`Traces::shutdown`]) so the last spans are sent.
pub struct Traces {
    provider: SdkTracerProvider,
}

impl Traces {
    /// Sends what is queued and stops the exporter (waits at most the export timeout).
    pub async fn shutdown(self) {
        let provider = self.provider;
        let stopped = tokio::task::spawn_blocking(move || provider.shutdown()).await;
        if let Ok(Err(error)) = stopped {
            tracing::warn!(%error, "trace export did not shut down cleanly");
        }
    }
}

/// The subscriber layer that exports spans.
pub type TracesLayer<S> = Box<dyn Layer<S> + Send + Sync>;

/// The layer that turns spans into exported traces, or `None` when `otel_endpoint` is unset. Call it on
/// the runtime: the batch exporter runs there.
pub fn layer<S>(config: &Config) -> Result<Option<(TracesLayer<S>, Traces)>>
where
    S: Subscriber + for<'a> LookupSpan<'a> + Send + Sync,
{
    let Some(endpoint) = config.otel_endpoint.as_deref() else {
        return Ok(None);
    };
    use opentelemetry_otlp::{Protocol, WithExportConfig, WithHttpConfig};
    let client = reqwest::Client::builder()
        .timeout(EXPORT_TIMEOUT)
        .build()
        .map_err(|e| Error::Internal(format!("trace export client: {e}")))?;
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_http_client(Collector {
            client,
            url: traces_url(endpoint),
            last_warn_ms: AtomicU64::new(0),
        })
        .with_protocol(Protocol::HttpBinary)
        .with_endpoint(traces_url(endpoint))
        .with_timeout(EXPORT_TIMEOUT)
        .build()
        .map_err(|e| Error::Internal(format!("trace exporter: {e}")))?;
    let processor =
        BatchSpanProcessor::builder(exporter, opentelemetry_sdk::runtime::Tokio).build();
    let provider = SdkTracerProvider::builder()
        .with_span_processor(processor)
        .with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(
            config.otel_sample_ratio,
        ))))
        .with_resource(
            Resource::builder()
                .with_service_name(config.otel_service_name.clone())
                .build(),
        )
        .build();
    // xindao's own spans down to debug (commit, fanout) and its warnings and errors as span events; no other
    // crate's spans, none of the debug lines.
    let only_ours = filter_fn(|meta| {
        let limit = if meta.is_span() {
            Level::DEBUG
        } else {
            Level::WARN
        };
        meta.target().starts_with("xindao") && *meta.level() <= limit
    })
    .with_max_level_hint(LevelFilter::DEBUG);
    let layer = tracing_opentelemetry::layer()
        .with_tracer(provider.tracer("xindao"))
        .with_location(false)
        .with_threads(false)
        .with_tracked_inactivity(false)
        .with_filter(only_ours);
    EXPORTING.store(true, Ordering::Relaxed);
    Ok(Some((Box::new(layer), Traces { provider })))
}

/// Where the spans go: the collector's base URL plus the OTLP path (kept when already given).
fn traces_url(endpoint: &str) -> String {
    let base = endpoint.trim_end_matches('/');
    if base.ends_with("/v1/traces") {
        base.to_string()
    } else {
        format!("{base}/v1/traces")
    }
}

/// A trace context carried across a hand-off (a commit's, from the sending request to fan-out): empty when
/// export is off.
#[derive(Debug, Clone, Default)]
pub struct Parent(Option<Context>);

impl Parent {
    /// The context of `span`, if spans are exported.
    pub fn of(span: &Span) -> Parent {
        Parent(exporting().then(|| span.context()))
    }

    /// Makes `span` (just created) a child of this context.
    pub fn adopt(&self, span: &Span) {
        if let Some(context) = &self.0 {
            let _ = span.set_parent(context.clone());
        }
    }
}

/// The W3C `traceparent` of the current span, for a bus envelope; `None` when export is off.
pub fn traceparent() -> Option<String> {
    if !exporting() {
        return None;
    }
    let context = Span::current().context();
    if !context.span().span_context().is_valid() {
        return None;
    }
    let mut carrier = OneField(None);
    TraceContextPropagator::new().inject_context(&context, &mut carrier);
    carrier.0
}

/// Makes `span` (just created) a child of another node's span, named by the `traceparent` of a bus
/// envelope. A malformed value is ignored: the span starts a trace of its own.
pub fn adopt_traceparent(span: &Span, traceparent: &str) {
    if exporting() {
        adopt_valid(
            span,
            TraceContextPropagator::new().extract(&OneField(Some(traceparent.into()))),
        );
    }
}

/// Makes `span` (just created) a child of the caller's span when the request carries a W3C `traceparent`
/// (and `tracestate`); a malformed one is ignored.
pub fn adopt_headers(span: &Span, headers: &HeaderMap) {
    if exporting() {
        adopt_valid(
            span,
            TraceContextPropagator::new().extract(&opentelemetry_http::HeaderExtractor(headers)),
        );
    }
}

fn adopt_valid(span: &Span, context: Context) {
    if context.span().span_context().is_valid() {
        let _ = span.set_parent(context);
    }
}

/// Sets an attribute on `span` for the exporter only (the log lines stay as they are).
pub fn attribute(span: &Span, key: &'static str, value: impl FnOnce() -> String) {
    if exporting() {
        span.set_attribute(key, value());
    }
}

/// A carrier of `traceparent` alone (the bus carries no `tracestate`).
struct OneField(Option<String>);

impl Injector for OneField {
    fn set(&mut self, key: &str, value: String) {
        if key == "traceparent" {
            self.0 = Some(value);
        }
    }
}

impl Extractor for OneField {
    fn get(&self, key: &str) -> Option<&str> {
        (key == "traceparent")
            .then_some(self.0.as_deref())
            .flatten()
    }

    fn keys(&self) -> Vec<&str> {
        vec!["traceparent"]
    }
}

/// The collector, reached with the server's reqwest client; failures are warned about, rate-limited.
#[derive(Debug)]
struct Collector {
    client: reqwest::Client,
    url: String,
    last_warn_ms: AtomicU64,
}

impl Collector {
    fn warn(&self, problem: &str) {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |since| since.as_millis() as u64);
        let last = self.last_warn_ms.load(Ordering::Relaxed);
        if now.saturating_sub(last) >= WARN_EVERY_MS
            && self
                .last_warn_ms
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            tracing::warn!(url = %self.url, problem, "trace export failed (spans dropped)");
        }
    }
}

#[async_trait::async_trait]
impl HttpClient for Collector {
    async fn send_bytes(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        let answer = async {
            let mut response = self.client.execute(request.try_into()?).await?;
            let mut answer = Response::builder().status(response.status());
            if let Some(headers) = answer.headers_mut() {
                *headers = std::mem::take(response.headers_mut());
            }
            let mut body = Vec::new();
            while let Some(chunk) = response.chunk().await? {
                if body.len() + chunk.len() > MAX_ANSWER_BYTES {
                    return Err("collector answer too large".into());
                }
                body.extend_from_slice(&chunk);
            }
            Ok::<_, HttpError>(answer.body(Bytes::from(body))?)
        }
        .await;
        match &answer {
            Ok(response) if !response.status().is_success() => {
                self.warn(&format!("HTTP status {}", response.status()))
            }
            Ok(_) => {}
            Err(error) => self.warn(&error.to_string()),
        }
        answer
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_traces_path_is_added_once() {
        assert_eq!(traces_url("http://c:4318"), "http://c:4318/v1/traces");
        assert_eq!(traces_url("http://c:4318/"), "http://c:4318/v1/traces");
        assert_eq!(traces_url("http://c/v1/traces"), "http://c/v1/traces");
    }

    #[test]
    fn only_a_well_formed_traceparent_names_a_parent() {
        let extract = |value: &str| {
            TraceContextPropagator::new()
                .extract(&OneField(Some(value.into())))
                .span()
                .span_context()
                .clone()
        };
        let good = extract("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01");
        assert!(good.is_valid() && good.is_sampled() && good.is_remote());
        for bad in [
            "",
            "garbage",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331",
            "00-00000000000000000000000000000000-b7ad6b7169203331-01",
            "00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01",
            "zz-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01\nforged",
        ] {
            assert!(!extract(bad).is_valid(), "{bad:?}");
        }
        let mut carrier = OneField(None);
        TraceContextPropagator::new()
            .inject_context(&Context::new().with_remote_span_context(good), &mut carrier);
        assert_eq!(
            carrier.0.as_deref(),
            Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
        );
    }

    #[test]
    fn without_export_nothing_is_carried() {
        assert!(traceparent().is_none());
        assert!(Parent::of(&Span::current()).0.is_none());
    }
}
