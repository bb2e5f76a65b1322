//! The HTTP application: the routes of the API and the web portal, and the layers around them
//! (body limits and timeouts, request ids, tracing, metrics, refusals recorded in the audit log).

use std::time::Instant;

use axum::Router;
use axum::body::Body;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request};
use axum::http::{HeaderName, Response, StatusCode};
use axum::middleware::{self, Next};
use axum::response::IntoResponse;
use tower::ServiceBuilder;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::timeout::{RequestBodyTimeoutLayer, TimeoutBody};
use tower_http::trace::TraceLayer;

use crate::error::{self, Error, ErrorCode};
use crate::extract::CallerSlot;
use crate::services::actor::{Actor, Origin};
use crate::state::AppState;
use crate::{api, connections, mcp, rate_limit, slack, web};

/// Settings of the HTTP server that the binary reads from its configuration.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// Largest request body accepted, in bytes; larger ones get 413.
    pub body_limit: usize,
    /// API requests per minute per credential (or address); `None` for no limit.
    pub rate_limit_per_minute: Option<u32>,
    /// Timeouts and bounds of connections, which [`serve_with`] applies.
    pub connections: connections::ConnectionLimits,
}

impl Default for ServerOptions {
    fn default() -> Self {
        Self {
            body_limit: 1024 * 1024,
            rate_limit_per_minute: None,
            connections: connections::ConnectionLimits::default(),
        }
    }
}

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The whole HTTP application.
/// An unknown address: a page for a browser, the JSON error for everything else.
async fn no_such_route(uri: axum::http::Uri, headers: axum::http::HeaderMap) -> axum::response::Response {
    let error = Error::new(ErrorCode::NotFound, "there is nothing at this address");
    let accepts_html = headers
        .get(axum::http::header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|accept| accept.contains("text/html"));
    if accepts_html && !uri.path().starts_with("/api/") {
        web::PageError::from(error).into_response()
    } else {
        error.into_response()
    }
}

pub fn router(state: AppState, options: &ServerOptions) -> Router {
    let mut routes = api::router()
        .merge(web::router())
        .merge(mcp::router())
        .merge(slack::router())
        .fallback(no_such_route)
        .method_not_allowed_fallback(|| async {
            Error::new(ErrorCode::MethodNotAllowed, "method not allowed on this route")
        })
        .layer(DefaultBodyLimit::max(options.body_limit))
        .layer(middleware::from_fn(record_metrics))
        .layer(middleware::from_fn_with_state(state.clone(), record_refusals));
    if let Some(per_minute) = options.rate_limit_per_minute {
        routes =
            routes.layer(middleware::from_fn_with_state(rate_limit::RateLimiter::new(per_minute), rate_limit::limit));
    }
    // Port's paths (`/v1/...`) are the API's own: one implementation, two mounts.
    Router::new()
        .fallback_service(ServiceBuilder::new().map_request(port_paths).service(routes.with_state(state)))
        // A body must keep arriving: a request that sends its headers and then stalls would
        // otherwise hold its connection (and a place in the connection bounds) for ever.
        .layer(
            ServiceBuilder::new()
                .layer(RequestBodyTimeoutLayer::new(options.connections.header_read_timeout))
                .map_request(|request: Request<TimeoutBody<Body>>| request.map(Body::new)),
        )
        .layer(
            ServiceBuilder::new()
                .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid))
                .layer(
                    TraceLayer::new_for_http()
                        .make_span_with(|request: &Request| {
                            let header = |name: &str| request.headers().get(name).and_then(|v| v.to_str().ok());
                            let trace = crate::telemetry::TraceContext::for_request(
                                header("traceparent"),
                                header(REQUEST_ID.as_str()),
                            );
                            tracing::info_span!(
                                "request",
                                method = %request.method(),
                                uri = %request.uri().path(),
                                request_id = %header(REQUEST_ID.as_str()).unwrap_or(""),
                                trace_id = %trace.trace_id,
                                parent_span_id = trace.parent_span_id.as_deref(),
                                status = tracing::field::Empty,
                            )
                        })
                        .on_response(RecordStatus),
                )
                .layer(PropagateRequestIdLayer::new(REQUEST_ID))
                .layer(CatchPanicLayer::custom(|_panic| {
                    Error::new(ErrorCode::Internal, "the request handler panicked").into_response()
                })),
        )
}

/// Writes a response's status into its request span (a trace shows which requests failed).
#[derive(Clone, Copy)]
struct RecordStatus;

impl<B> tower_http::trace::OnResponse<B> for RecordStatus {
    fn on_response(self, response: &Response<B>, _latency: std::time::Duration, span: &tracing::Span) {
        span.record("status", response.status().as_u16());
    }
}

/// `/v1/...` (Port's paths) as `/api/v1/...`, before routing.
fn port_paths(mut request: Request) -> Request {
    let path = request.uri().path();
    if path == "/v1" || path.starts_with("/v1/") {
        let query = request.uri().query().map(|q| format!("?{q}")).unwrap_or_default();
        if let Ok(uri) = format!("/api{path}{query}").parse() {
            *request.uri_mut() = uri;
            request.extensions_mut().insert(crate::extract::PortMount(true));
        }
    }
    request
}

/// Records every request that permissions refused (403, or a 404 hiding what the caller may not
/// read) in the audit log, once the request's own transaction is over.
async fn record_refusals(
    axum::extract::State(app): axum::extract::State<AppState>,
    mut request: Request,
    next: Next,
) -> Response<axum::body::Body> {
    let slot = CallerSlot::default();
    request.extensions_mut().insert(slot.clone());
    let target = format!("{} {}", request.method(), request.uri().path());
    let request_id = request.headers().get(REQUEST_ID).and_then(|v| v.to_str().ok()).map(str::to_string);
    let response = next.run(request).await;
    if let Some(refusal) = response.extensions().get::<error::Refusal>() {
        let actor = slot.caller().unwrap_or_else(|| "anonymous".into());
        let mut entry = Actor::system(actor, Origin::Api).entry(app.core.now(), "request", "request", &target);
        entry.request_id = request_id;
        app.audit.record_apart(entry.denied(refusal.0.clone())).await;
    }
    response
}

async fn record_metrics(request: Request, next: Next) -> Response<axum::body::Body> {
    let started = Instant::now();
    let method = request.method().to_string();
    let route =
        request.extensions().get::<MatchedPath>().map(|p| p.as_str().to_string()).unwrap_or_else(|| "unmatched".into());
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    let labels = [("method", method), ("route", route), ("status", status)];
    metrics::counter!("portolan_http_requests_total", &labels).increment(1);
    metrics::histogram!("portolan_http_request_duration_seconds", &labels).record(started.elapsed().as_secs_f64());
    if response.status() == StatusCode::INTERNAL_SERVER_ERROR {
        metrics::counter!("portolan_http_internal_errors_total").increment(1);
    }
    response
}

/// Serves until `shutdown` resolves, then finishes in-flight requests; with the default
/// [`connections::ConnectionLimits`].
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_with(listener, router, connections::ConnectionLimits::default(), shutdown).await
}

/// [`serve`] with the given connection timeouts and bounds.
pub async fn serve_with(
    listener: tokio::net::TcpListener,
    router: Router,
    limits: connections::ConnectionLimits,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    connections::serve(listener, router, &limits, shutdown).await
}
