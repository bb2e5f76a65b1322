//! Traces over OTLP. When an OpenTelemetry collector's address is configured, every span (a
//! request, a store transaction, a worker job, a webhook delivery) goes to its OTLP/HTTP endpoint
//! (`/v1/traces`, JSON encoding) in batches, from a thread of its own. A request continues the
//! trace its caller names in a W3C `traceparent` header; a delivery passes its own on. The trace
//! id is a field of the request span, so every log line inside it carries it.

use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};
use tokio::sync::{mpsc, oneshot};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Subscriber, span};
use tracing_subscriber::Layer;
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;

/// Spans sent in one request at most.
const BATCH: usize = 512;
/// Spans waiting to be sent at most; beyond, new ones are dropped (and counted in the log).
const QUEUE: usize = 8_192;
/// How long a span waits for its batch.
const INTERVAL: Duration = Duration::from_secs(1);
const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);

/// A trace and, when the caller sent one, the span it continues: from a `traceparent` header
/// (`00-<32 hex trace id>-<16 hex span id>-<flags>`), else a new trace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceContext {
    pub trace_id: String,
    pub parent_span_id: Option<String>,
}

impl TraceContext {
    /// A request's: its caller's trace, or one named after its request id when that is a UUID
    /// (as the server makes them: random already, and the id a user quotes finds the trace).
    pub fn for_request(traceparent: Option<&str>, request_id: Option<&str>) -> TraceContext {
        let parsed = TraceContext::parse(traceparent);
        let from_id = || {
            let id = request_id?.replace('-', "");
            is_trace_hex(&id, 32).then_some(TraceContext { trace_id: id, parent_span_id: None })
        };
        parsed.or_else(from_id).unwrap_or_else(TraceContext::new)
    }

    pub fn from_traceparent(header: Option<&str>) -> TraceContext {
        TraceContext::parse(header).unwrap_or_else(TraceContext::new)
    }

    fn new() -> TraceContext {
        TraceContext { trace_id: random_hex(16), parent_span_id: None }
    }

    fn parse(header: Option<&str>) -> Option<TraceContext> {
        let mut parts = header?.trim().split('-');
        let (version, trace, parent, flags) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        let valid = version == "00"
            && parts.next().is_none()
            && is_trace_hex(trace, 32)
            && is_trace_hex(parent, 16)
            && flags.len() == 2;
        valid.then(|| TraceContext { trace_id: trace.to_string(), parent_span_id: Some(parent.to_string()) })
    }
}

/// W3C's form of an id: lowercase hex of this length, not all zeros.
fn is_trace_hex(text: &str, len: usize) -> bool {
    text.len() == len
        && text.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        && text.bytes().any(|b| b != b'0')
}

/// The `traceparent` header that continues the current span's trace, if spans are being kept.
pub fn current_traceparent() -> Option<String> {
    tracing::Span::current().with_subscriber(|(id, dispatch)| {
        let registry = dispatch.downcast_ref::<tracing_subscriber::Registry>()?;
        let span = registry.span(id)?;
        let extensions = span.extensions();
        let state = extensions.get::<SpanState>()?;
        Some(format!("00-{}-{}-01", state.trace_id, state.span_id))
    })?
}

fn random_hex(bytes: usize) -> String {
    let mut buffer = vec![0u8; bytes];
    if getrandom::fill(&mut buffer).is_err() || buffer.iter().all(|b| *b == 0) {
        buffer[0] = 1;
    }
    portolan_model::hex(&buffer)
}

fn now_nanos() -> u128 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or_default()
}

/// What the layer keeps of an open span.
struct SpanState {
    trace_id: String,
    span_id: String,
    parent_span_id: Option<String>,
    start: u128,
    attributes: Vec<(String, Value)>,
}

#[derive(Default)]
struct Fields(Vec<(String, Value)>);

impl Fields {
    fn put(&mut self, field: &Field, value: Value) {
        let name = field.name().to_string();
        match self.0.iter_mut().find(|(key, _)| *key == name) {
            Some(slot) => slot.1 = value,
            None => self.0.push((name, value)),
        }
    }

    fn take(&mut self, name: &str) -> Option<String> {
        let at = self.0.iter().position(|(key, _)| key == name)?;
        match self.0.remove(at).1 {
            Value::String(text) if !text.is_empty() => Some(text),
            _ => None,
        }
    }
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.put(field, Value::from(value));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.put(field, Value::from(value));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.put(field, Value::from(value));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.put(field, Value::from(value));
    }
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.put(field, Value::from(format!("{value:?}")));
    }
}

enum Message {
    Span(Value),
    Flush(oneshot::Sender<()>),
}

static EXPORTER: OnceLock<mpsc::Sender<Message>> = OnceLock::new();

/// A layer that sends every closed span to the collector at `endpoint` (its base address, as
/// `OTEL_EXPORTER_OTLP_ENDPOINT` is: `http://collector:4318`).
pub struct OtlpLayer {
    sender: mpsc::Sender<Message>,
}

impl OtlpLayer {
    pub fn start(endpoint: &str, service: &str) -> std::io::Result<OtlpLayer> {
        let url = format!("{}/v1/traces", endpoint.trim_end_matches('/'));
        let (sender, receiver) = mpsc::channel(QUEUE);
        let resource = json!({"attributes": [
            attribute("service.name", &Value::from(service)),
            attribute("service.version", &Value::from(env!("CARGO_PKG_VERSION"))),
        ]});
        std::thread::Builder::new().name("otlp-export".into()).spawn(move || export(url, resource, receiver))?;
        let _ = EXPORTER.set(sender.clone());
        Ok(OtlpLayer { sender })
    }
}

/// Sends the spans still waiting, for a graceful stop (at most a few seconds).
pub async fn flush() {
    let Some(exporter) = EXPORTER.get() else { return };
    let (done, flushed) = oneshot::channel();
    if exporter.send(Message::Flush(done)).await.is_ok() {
        let _ = tokio::time::timeout(EXPORT_TIMEOUT, flushed).await;
    }
}

impl<S> Layer<S> for OtlpLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        let mut fields = Fields::default();
        attrs.record(&mut fields);
        let parent = span.parent().and_then(|parent| {
            let extensions = parent.extensions();
            extensions.get::<SpanState>().map(|state| (state.trace_id.clone(), state.span_id.clone()))
        });
        // A root span may name its trace (a request continuing its caller's).
        let (trace_id, parent_span_id) = match parent {
            Some((trace_id, span_id)) => (trace_id, Some(span_id)),
            None => (fields.take("trace_id").unwrap_or_else(|| random_hex(16)), fields.take("parent_span_id")),
        };
        span.extensions_mut().insert(SpanState {
            trace_id,
            span_id: random_hex(8),
            parent_span_id,
            start: now_nanos(),
            attributes: fields.0,
        });
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        let mut extensions = span.extensions_mut();
        if let Some(state) = extensions.get_mut::<SpanState>() {
            let mut fields = Fields(std::mem::take(&mut state.attributes));
            values.record(&mut fields);
            state.attributes = fields.0;
        }
    }

    fn on_close(&self, id: span::Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(&id) else { return };
        let Some(state) = span.extensions_mut().remove::<SpanState>() else { return };
        let name = span.name();
        // Server for a request, client for a delivery, internal for the rest (OTLP's SpanKind).
        let kind = match name {
            "request" => 2,
            "deliver" => 3,
            _ => 1,
        };
        let failed = state.attributes.iter().any(|(key, value)| {
            (key == "status" && value.as_u64().is_some_and(|status| status >= 500)) || key == "error"
        });
        let mut record = json!({
            "traceId": state.trace_id,
            "spanId": state.span_id,
            "name": name,
            "kind": kind,
            "startTimeUnixNano": state.start.to_string(),
            "endTimeUnixNano": now_nanos().to_string(),
            "attributes": state.attributes.iter().map(|(key, value)| attribute(key, value)).collect::<Vec<_>>(),
            "status": {"code": if failed { 2 } else { 0 }},
        });
        if let Some(parent) = state.parent_span_id {
            record["parentSpanId"] = Value::from(parent);
        }
        // A full queue drops the span rather than hold up the request that made it.
        let _ = self.sender.try_send(Message::Span(record));
    }
}

/// An OTLP `KeyValue`.
fn attribute(key: &str, value: &Value) -> Value {
    let value = match value {
        Value::Bool(flag) => json!({"boolValue": flag}),
        Value::Number(n) if n.is_i64() || n.is_u64() => json!({"intValue": n.to_string()}),
        Value::Number(n) => json!({"doubleValue": n.as_f64()}),
        Value::String(text) => json!({"stringValue": text}),
        other => json!({"stringValue": other.to_string()}),
    };
    json!({"key": key, "value": value})
}

/// The export thread: batches spans and posts them; a collector that fails or is away costs
/// that batch (logged), never the server's own work.
fn export(url: String, resource: Value, mut receiver: mpsc::Receiver<Message>) {
    let Ok(runtime) = tokio::runtime::Builder::new_current_thread().enable_all().build() else { return };
    crate::outbound::install_crypto();
    let client = reqwest::Client::builder().timeout(EXPORT_TIMEOUT).build().unwrap_or_default();
    runtime.block_on(async move {
        let mut batch = Vec::new();
        let mut waiting = Vec::new();
        loop {
            let message = tokio::time::timeout(INTERVAL, receiver.recv()).await;
            let idle = message.is_err();
            match message {
                Ok(Some(Message::Span(span))) => batch.push(span),
                Ok(Some(Message::Flush(done))) => waiting.push(done),
                Ok(None) => break,
                Err(_elapsed) => {}
            }
            let due = batch.len() >= BATCH || !waiting.is_empty() || idle;
            if due && !batch.is_empty() {
                let spans = std::mem::take(&mut batch);
                let count = spans.len();
                let body = json!({"resourceSpans": [{
                    "resource": resource,
                    "scopeSpans": [{"scope": {"name": "portolan", "version": env!("CARGO_PKG_VERSION")}, "spans": spans}],
                }]});
                match client.post(&url).json(&body).send().await {
                    Ok(response) if response.status().is_success() => {}
                    Ok(response) => tracing::warn!(status = %response.status(), count, "the trace collector refused spans"),
                    Err(error) => tracing::warn!(%error, count, "cannot send spans to the trace collector"),
                }
            }
            for done in waiting.drain(..) {
                let _ = done.send(());
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_traceparent_is_continued_and_anything_else_starts_a_trace() {
        let header = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let continued = TraceContext::from_traceparent(Some(header));
        assert_eq!(continued.trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(continued.parent_span_id.as_deref(), Some("00f067aa0ba902b7"));
        for bad in [
            "",
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x",
        ] {
            let fresh = TraceContext::from_traceparent(Some(bad));
            assert_eq!((fresh.trace_id.len(), fresh.parent_span_id), (32, None), "{bad}");
            assert_ne!(fresh.trace_id, continued.trace_id);
        }
    }

    #[test]
    fn a_request_without_a_caller_s_trace_is_traced_under_its_request_id() {
        let id = Some("0b3c5e7a-1d2f-4a6b-8c9d-0e1f2a3b4c5d");
        let traced = TraceContext::for_request(None, id);
        assert_eq!((traced.trace_id.as_str(), traced.parent_span_id), ("0b3c5e7a1d2f4a6b8c9d0e1f2a3b4c5d", None));
        let header = Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
        assert_eq!(TraceContext::for_request(header, id).trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
        let chosen = TraceContext::for_request(None, Some("my-request"));
        assert_eq!(chosen.trace_id.len(), 32, "a request id that is not a UUID: a new trace");
    }
}
